//! User-data → assignments: size cap, gzip, MIME (kiln's part of a user-data shared with
//! cloud-init), UTF-8, then dotenv, TOML or JSON.
//!
//! The cap holds after decompression and decompression stops one byte past it, so a small gzip
//! bomb costs at most `user_data_limit` bytes of memory. Every error says where (a part and a
//! line when the format has them) and what, never a value.
//!
//! # Beside cloud-init
//!
//! A MIME multi-part user-data (cloud-init's format) is read for its one part of type
//! [`KILN_PART_TYPE`]; every other part is cloud-init's. Such a part must not begin with a
//! variable: cloud-init logs the first line (or 24 bytes) of every part it has no handler for,
//! to its log and the console, so the part starts with a comment line of at least
//! [`CLOUD_INIT_EXCERPT`] bytes, or is gzip-compressed. User-data that is cloud-init's alone
//! (`#cloud-config`, a script, a multi-part without kiln's part) is refused, unless
//! `[metadata] user_data_foreign = "ignore"` says kiln's variables come from elsewhere.

use super::{dotenv, mime};
use crate::config::{ForeignUserData, UserDataFormat};
use std::collections::HashSet;
use std::io::Read;

/// The content type of kiln's part in a MIME multi-part user-data.
pub const KILN_PART_TYPE: &str = "text/x-kiln-env";

/// How much of a part it does not handle cloud-init writes to its log: the first line, cut at
/// this many bytes, or this many bytes when the first line is shorter
/// (`cloudinit/handlers/__init__.py`, `_extract_first_or_bytes`).
pub const CLOUD_INIT_EXCERPT: usize = 24;

/// One variable from user-data, and where it was (`user-data line 3`, `user-data part 2`).
pub(super) struct Entry {
    pub name: String,
    pub value: String,
    pub step: String,
}

/// Where in user-data, and what is wrong.
pub(super) struct UserDataError {
    /// `user-data`, `user-data line 3`, `user-data part 2 line 3`, `user-data (toml)`.
    pub step: String,
    pub reason: String,
}

fn whole(reason: impl Into<String>) -> UserDataError {
    UserDataError {
        step: "user-data".into(),
        reason: reason.into(),
    }
}

/// Where a text being parsed is: the whole user-data or one of its MIME parts.
#[derive(Clone, Copy)]
struct Place(Option<usize>);

impl Place {
    fn name(self) -> String {
        match self.0 {
            None => "user-data".into(),
            Some(part) => format!("user-data part {part}"),
        }
    }

    fn at_line(self, line: usize) -> String {
        format!("{} line {line}", self.name())
    }

    fn err(self, reason: impl Into<String>) -> UserDataError {
        UserDataError {
            step: self.name(),
            reason: reason.into(),
        }
    }

    fn err_at(self, line: usize, reason: impl Into<String>) -> UserDataError {
        UserDataError {
            step: self.at_line(line),
            reason: reason.into(),
        }
    }

    /// `user-data (toml)`, `user-data part 2 (toml)`.
    fn err_in(self, format: &str, reason: String) -> UserDataError {
        UserDataError {
            step: format!("{} ({format})", self.name()),
            reason,
        }
    }
}

/// Decodes and parses raw user-data in the configured format (`None` is not called here).
/// `foreign` says what to do with user-data that is cloud-init's alone.
pub(super) fn parse(
    raw: &[u8],
    format: UserDataFormat,
    limit: u64,
    foreign: ForeignUserData,
) -> Result<Vec<Entry>, UserDataError> {
    let bytes = decompress(raw, limit, Place(None))?;
    if mime::is_mime(&bytes) {
        return parse_mime(&bytes, format, limit, foreign);
    }
    let text = check_text(&bytes, Place(None))?;
    if let Some((what, noun)) = foreign_kind(text) {
        return match foreign {
            ForeignUserData::Refuse => Err(whole(format!(
                "is {what}: kiln takes environment variables (dotenv, TOML [env] or JSON), not {noun}; set [metadata] user_data_foreign = \"ignore\" if kiln's variables come from elsewhere"
            ))),
            ForeignUserData::Ignore => {
                tracing::info!(
                    "user-data is {what}, cloud-init's: kiln takes no variables from it (user_data_foreign = \"ignore\")"
                );
                Ok(Vec::new())
            }
        };
    }
    parse_text(text, format, Place(None))
}

/// kiln's part of a MIME multi-part user-data; the other parts are cloud-init's.
fn parse_mime(
    document: &[u8],
    format: UserDataFormat,
    limit: u64,
    foreign: ForeignUserData,
) -> Result<Vec<Entry>, UserDataError> {
    let parts = mime::parts(document).map_err(|e| whole(format!("is MIME multi-part, but {e}")))?;
    let mut ours = parts.iter().filter(|p| p.content_type == KILN_PART_TYPE);
    let Some(part) = ours.next() else {
        return match foreign {
            ForeignUserData::Refuse => Err(whole(format!(
                "is a MIME multi-part document (cloud-init) without a {KILN_PART_TYPE} part: put kiln's variables in a part of that type, or set [metadata] user_data_foreign = \"ignore\" if they come from elsewhere"
            ))),
            ForeignUserData::Ignore => {
                tracing::info!(
                    parts = parts.len(),
                    "user-data is MIME multi-part without a {KILN_PART_TYPE} part: kiln takes no variables from it (user_data_foreign = \"ignore\")"
                );
                Ok(Vec::new())
            }
        };
    };
    if let Some(second) = ours.next() {
        return Err(whole(format!(
            "parts {} and {} are both {KILN_PART_TYPE}: give kiln one part",
            part.number, second.number
        )));
    }
    let place = Place(Some(part.number));
    if let Some(charset) = part
        .charset
        .as_deref()
        .filter(|c| !matches!(*c, "utf-8" | "utf8" | "us-ascii"))
    {
        return Err(place.err(format!(
            "charset {:?}: kiln reads UTF-8 only",
            charset.chars().take(40).collect::<String>()
        )));
    }
    check_cloud_init_excerpt(&part.body, place)?;
    let bytes = decompress(&part.body, limit, place)?;
    let text = check_text(&bytes, place)?;
    if let Some((what, _)) = foreign_kind(text) {
        return Err(place.err(format!(
            "is {what}, but it is the {KILN_PART_TYPE} part: kiln's variables go there"
        )));
    }
    parse_text(text, format, place)
}

/// cloud-init logs the start of a part it does not handle (see the module's doc): refuses a
/// part whose start would put a variable there.
fn check_cloud_init_excerpt(body: &[u8], place: Place) -> Result<(), UserDataError> {
    if body.starts_with(&[0x1f, 0x8b]) {
        return Ok(());
    }
    let first = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let first = first.strip_prefix("\u{feff}".as_bytes()).unwrap_or(first);
    if first.starts_with(b"#") && first.len() >= CLOUD_INIT_EXCERPT {
        return Ok(());
    }
    Err(place.err(format!(
        "does not begin with a comment line of at least {CLOUD_INIT_EXCERPT} characters: cloud-init writes the first line or {CLOUD_INIT_EXCERPT} bytes of a part it does not handle to its log and the console, where a value must not go; begin the part with a line like \"# kiln environment, not for cloud-init\", or gzip it"
    )))
}

/// UTF-8 without NUL, a leading BOM dropped.
fn check_text(bytes: &[u8], place: Place) -> Result<&str, UserDataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = line_of(bytes, e.valid_up_to());
        place.err_at(line, "is not UTF-8 text")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(offset) = text.find('\0') {
        return Err(place.err_at(line_of(text.as_bytes(), offset), "has a NUL byte"));
    }
    Ok(text)
}

/// Environment text in `format` (`auto`: told by its look).
fn parse_text(text: &str, format: UserDataFormat, place: Place) -> Result<Vec<Entry>, UserDataError> {
    let format = match format {
        UserDataFormat::Auto => sniff(text),
        other => other,
    };
    match format {
        UserDataFormat::Dotenv => dotenv::parse(text)
            .map(|list| {
                list.into_iter()
                    .map(|a| Entry {
                        name: a.name,
                        value: a.value,
                        step: place.at_line(a.line),
                    })
                    .collect()
            })
            .map_err(|e| place.err_at(e.line, e.reason)),
        UserDataFormat::Toml => parse_toml(text, place),
        UserDataFormat::Json => parse_json(text, place),
        UserDataFormat::Auto | UserDataFormat::None => Ok(Vec::new()),
    }
}

/// gzip (by its magic number) is inflated up to `limit`; anything else must fit as it is.
fn decompress(raw: &[u8], limit: u64, place: Place) -> Result<Vec<u8>, UserDataError> {
    let over = || place.err(format!("is larger than user_data_limit ({limit} bytes)"));
    if raw.len() as u64 > limit {
        return Err(over());
    }
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|_| place.err("is gzip-compressed but does not decompress (corrupt or truncated)"))?;
    if out.len() as u64 > limit {
        return Err(place.err(format!(
            "is larger than user_data_limit ({limit} bytes) once decompressed"
        )));
    }
    Ok(out)
}

/// What user-data that is not environment is, and what kiln does not take: said instead of
/// failing on its first line.
fn foreign_kind(text: &str) -> Option<(&'static str, &'static str)> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.starts_with("#cloud-config") {
        Some(("a #cloud-config document", "cloud-config"))
    } else if first.starts_with("#!") {
        Some(("a script (#!)", "a script"))
    } else {
        None
    }
}

/// A `[table]` header line anywhere → TOML; else `{` or `[` first → JSON; else dotenv.
fn sniff(text: &str) -> UserDataFormat {
    if text.lines().any(is_toml_header) {
        UserDataFormat::Toml
    } else if text.trim_start().starts_with(['{', '[']) {
        UserDataFormat::Json
    } else {
        UserDataFormat::Dotenv
    }
}

/// `[env]`, `[ env ]  # comment`: a bare-key table header (a JSON array line is not one).
fn is_toml_header(line: &str) -> bool {
    let line = line.split('#').next().unwrap_or("").trim();
    line.strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .map(str::trim)
        .is_some_and(|key| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

fn parse_toml(text: &str, place: Place) -> Result<Vec<Entry>, UserDataError> {
    let fail = |reason: String| place.err_in("toml", reason);
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The message names what was expected, never the text; the span gives the line. A key
        // given twice is named the way dotenv and JSON name it.
        let line = e.span().map(|s| line_of(text.as_bytes(), s.start)).unwrap_or(1);
        let key = e
            .span()
            .and_then(|s| text.get(s))
            .map(|k| k.trim().trim_matches(['"', '\'']));
        let reason = match key {
            Some(name) if e.message().starts_with("duplicate key") => match crate::config::check_name(name) {
                Ok(()) => format!("{name} is set twice"),
                Err(bad) => bad,
            },
            _ => format!("not valid TOML: {}", e.message().trim_end()),
        };
        place.err_at(line, reason)
    })?;
    let mut entries = Vec::new();
    for (key, value) in table {
        if key != "env" {
            return Err(fail(format!(
                "unknown top-level key {key:?}: put the variables in an [env] table"
            )));
        }
        let toml::Value::Table(env) = value else {
            return Err(fail("env must be a table: [env]".into()));
        };
        for (name, value) in env {
            let toml::Value::String(value) = value else {
                return Err(fail(format!(
                    "{name} must be a string (found {})",
                    value.type_str()
                )));
            };
            entries.push(Entry {
                name,
                value,
                step: place.name(),
            });
        }
    }
    Ok(entries)
}

fn parse_json(text: &str, place: Place) -> Result<Vec<Entry>, UserDataError> {
    let fail = |reason: String| place.err_in("json", reason);
    // serde_json's errors give a position, never the text.
    let doc: JsonDoc = serde_json::from_str(text).map_err(|e| {
        let reason = e.to_string();
        let reason = reason.split(" at line ").next().unwrap_or(&reason).to_string();
        let reason = if e.is_data() {
            reason
        } else {
            format!("not valid JSON: {reason}")
        };
        place.err_at(e.line(), reason)
    })?;
    let JsonDoc::Object(members) = doc else {
        return Err(fail("must be an object of strings: {\"NAME\": \"value\"}".into()));
    };
    members
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(value) => Ok(Entry {
                name,
                value,
                step: place.name(),
            }),
            other => Err(fail(format!(
                "{name} must be a string (found {})",
                json_type(&other)
            ))),
        })
        .collect()
}

/// A user-data JSON document: the top-level object's members in order, or not an object.
/// A name given twice is refused, as dotenv and TOML refuse it (`serde_json::Value` would keep
/// the last one silently).
enum JsonDoc {
    Object(Vec<(String, serde_json::Value)>),
    NotAnObject,
}

impl<'de> serde::Deserialize<'de> for JsonDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonDocVisitor)
    }
}

struct JsonDocVisitor;

impl<'de> serde::de::Visitor<'de> for JsonDocVisitor {
    type Value = JsonDoc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonDoc, A::Error> {
        use serde::de::Error;
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                // A name that is not one is shown the way the name rules show it.
                let reason = match crate::config::check_name(&name) {
                    Ok(()) => format!("{name} is set twice"),
                    Err(e) => e,
                };
                return Err(A::Error::custom(reason));
            }
            seen.insert(name.clone());
            members.push((name, map.next_value()?));
        }
        Ok(JsonDoc::Object(members))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonDoc, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<JsonDoc, E> {
        Ok(JsonDoc::NotAnObject)
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// 1-based line of a byte offset.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

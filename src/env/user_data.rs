//! User-data → assignments: size cap, gzip, UTF-8, then dotenv, TOML or JSON.
//!
//! The cap holds after decompression and decompression stops one byte past it, so a small gzip
//! bomb costs at most `user_data_limit` bytes of memory. Every error says where (a line when the
//! format has lines) and what, never a value.

use super::dotenv;
use crate::config::UserDataFormat;
use std::collections::HashSet;
use std::io::Read;

/// One variable from user-data; `line` where the format tells it.
pub(super) struct Entry {
    pub name: String,
    pub value: String,
    pub line: Option<usize>,
}

/// Where in user-data, and what is wrong.
pub(super) struct UserDataError {
    /// `user-data`, `user-data line 3`, `user-data (toml)`.
    pub step: String,
    pub reason: String,
}

fn whole(reason: impl Into<String>) -> UserDataError {
    UserDataError {
        step: "user-data".into(),
        reason: reason.into(),
    }
}

fn at_line(line: usize, reason: impl Into<String>) -> UserDataError {
    UserDataError {
        step: format!("user-data line {line}"),
        reason: reason.into(),
    }
}

/// Decodes and parses raw user-data in the configured format (`None` is not called here).
pub(super) fn parse(raw: &[u8], format: UserDataFormat, limit: u64) -> Result<Vec<Entry>, UserDataError> {
    let bytes = decompress(raw, limit)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = line_of(&bytes, e.valid_up_to());
        at_line(line, "is not UTF-8 text")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(offset) = text.find('\0') {
        return Err(at_line(line_of(text.as_bytes(), offset), "has a NUL byte"));
    }
    refuse_foreign(text)?;
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
                        line: Some(a.line),
                    })
                    .collect()
            })
            .map_err(|e| at_line(e.line, e.reason)),
        UserDataFormat::Toml => parse_toml(text),
        UserDataFormat::Json => parse_json(text),
        UserDataFormat::Auto | UserDataFormat::None => Ok(Vec::new()),
    }
}

/// gzip (by its magic number) is inflated up to `limit`; anything else must fit as it is.
fn decompress(raw: &[u8], limit: u64) -> Result<Vec<u8>, UserDataError> {
    let over = || whole(format!("is larger than user_data_limit ({limit} bytes)"));
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
        .map_err(|_| whole("is gzip-compressed but does not decompress (corrupt or truncated)"))?;
    if out.len() as u64 > limit {
        return Err(whole(format!(
            "is larger than user_data_limit ({limit} bytes) once decompressed"
        )));
    }
    Ok(out)
}

/// Formats that are not environment: say so instead of failing on their first line.
fn refuse_foreign(text: &str) -> Result<(), UserDataError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.starts_with("#cloud-config") {
        return Err(whole(
            "is a #cloud-config document: kiln takes environment variables (dotenv, TOML [env] or JSON), not cloud-config",
        ));
    }
    if first.starts_with("#!") {
        return Err(whole(
            "is a script (#!): kiln takes environment variables (dotenv, TOML [env] or JSON), not a script",
        ));
    }
    let lower = first.to_ascii_lowercase();
    if lower.starts_with("content-type:") || lower.starts_with("mime-version:") {
        return Err(whole(
            "is a MIME multi-part document (cloud-init): kiln takes environment variables (dotenv, TOML [env] or JSON)",
        ));
    }
    Ok(())
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

fn parse_toml(text: &str) -> Result<Vec<Entry>, UserDataError> {
    let fail = |reason: String| UserDataError {
        step: "user-data (toml)".into(),
        reason,
    };
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
        at_line(line, reason)
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
                line: None,
            });
        }
    }
    Ok(entries)
}

fn parse_json(text: &str) -> Result<Vec<Entry>, UserDataError> {
    let fail = |reason: String| UserDataError {
        step: "user-data (json)".into(),
        reason,
    };
    // serde_json's errors give a position, never the text.
    let doc: JsonDoc = serde_json::from_str(text).map_err(|e| {
        let reason = e.to_string();
        let reason = reason.split(" at line ").next().unwrap_or(&reason).to_string();
        let reason = if e.is_data() {
            reason
        } else {
            format!("not valid JSON: {reason}")
        };
        at_line(e.line(), reason)
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
                line: None,
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

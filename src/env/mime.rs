//! The MIME of user-data shared with cloud-init (RFC 2045/2046, the part of it cloud-init and the
//! tools that write its user-data use): a header block, `multipart/*` bodies split at their
//! boundary lines, parts nested at most [`DEPTH_MAX`] deep, bodies in 7bit, 8bit, binary, base64
//! or quoted-printable. Charsets other than UTF-8 and ASCII are not converted (kiln reads UTF-8
//! only). Hand-written, as the subset is small: `mailparse` brings `encoding_rs` for charsets kiln
//! refuses anyway, and `mail-parser` needs a newer Rust than kiln's `rust-version`.
//!
//! Errors name the part (`part 2`, counted as cloud-init counts them: leaves in order, from 1) and
//! what is wrong, never its content.

use base64::Engine;

/// Nested `multipart/*` levels accepted (cloud-init's tools write one).
pub const DEPTH_MAX: usize = 8;
/// Leaf parts accepted in one document.
pub const PARTS_MAX: usize = 256;

/// One leaf part, its body decoded from its transfer encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based, in document order.
    pub number: usize,
    /// Lowercase `type/subtype`; `text/plain` when the part has none (RFC 2045's default).
    pub content_type: String,
    /// The `charset` parameter, lowercase, when given.
    pub charset: Option<String>,
    pub body: Vec<u8>,
}

/// Whether `text` is a MIME document, as the tools that write one begin it: its first line is a
/// `Content-Type` or `MIME-Version` header.
pub fn is_mime(text: &[u8]) -> bool {
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let lower = first.to_ascii_lowercase();
    lower.starts_with(b"content-type:") || lower.starts_with(b"mime-version:")
}

/// The leaf parts of a MIME document, in order.
pub fn parts(document: &[u8]) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    walk(document, 0, &mut out)?;
    Ok(out)
}

fn walk(entity: &[u8], depth: usize, out: &mut Vec<Part>) -> Result<(), String> {
    let number = out.len() + 1;
    let (headers, body) = split_head(entity);
    let headers = parse_headers(headers).map_err(|e| format!("part {number}: {e}"))?;
    let content_type = header(&headers, "content-type").unwrap_or("text/plain");
    let (mimetype, params) = parse_content_type(content_type);
    if mimetype.starts_with("multipart/") {
        if depth >= DEPTH_MAX {
            return Err(format!("multipart nested deeper than {DEPTH_MAX} levels"));
        }
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.as_str())
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or_else(|| format!("part {number}: {mimetype} without a usable boundary parameter"))?;
        for child in split_multipart(body, boundary.as_bytes()) {
            walk(child, depth + 1, out)?;
        }
        return Ok(());
    }
    if out.len() >= PARTS_MAX {
        return Err(format!("more than {PARTS_MAX} parts"));
    }
    let encoding = header(&headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let body = decode(body, &encoding).map_err(|e| format!("part {number} ({mimetype}): {e}"))?;
    let charset = params
        .into_iter()
        .find(|(k, _)| k == "charset")
        .map(|(_, v)| v.to_ascii_lowercase());
    out.push(Part {
        number,
        content_type: mimetype,
        charset,
        body,
    });
    Ok(())
}

/// Header block and body, split at the first empty line (LF or CRLF). No empty line: all head.
fn split_head(entity: &[u8]) -> (&[u8], &[u8]) {
    let mut start = 0;
    for line in entity.split_inclusive(|&b| b == b'\n') {
        let end = start + line.len();
        if line == b"\n" || line == b"\r\n" {
            return (&entity[..start], &entity[end..]);
        }
        start = end;
    }
    (entity, &[])
}

/// `Name: value` lines, continuation lines (starting with a space or tab) unfolded.
fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(block).map_err(|_| "its headers are not UTF-8 text".to_string())?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            let (_, value) = headers
                .last_mut()
                .ok_or("its headers start with a continuation line")?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or("a header line is not `Name: value`")?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `type/subtype; name=value; name="quoted \" value"`: the lowercase type and the parameters
/// (names lowercase, values as written).
pub fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut rest = value;
    let end = rest.find(';').unwrap_or(rest.len());
    let mimetype = rest[..end].trim().to_ascii_lowercase();
    rest = &rest[end..];
    let mut params = Vec::new();
    while let Some(after) = rest.strip_prefix(';') {
        let Some((name, after)) = after.split_once('=') else {
            break;
        };
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.push((name, value));
        rest = after.trim_start();
        // Skip to the next `;` (anything after a closing quote).
        if !rest.starts_with(';') {
            rest = rest.find(';').map_or("", |i| &rest[i..]);
        }
    }
    (mimetype, params)
}

/// A quoted string's value (`\` escapes the next character) and what follows its closing quote.
fn unquote(quoted: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[i + 1..]),
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            c => value.push(c),
        }
    }
    (value, "")
}

/// The bodies between `--boundary` delimiter lines (the preamble before the first and the
/// epilogue after `--boundary--` dropped). The line break before a delimiter belongs to it.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut start = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let end = start + line.len();
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if let Some(after) = content.strip_prefix(b"--").and_then(|c| c.strip_prefix(boundary)) {
            let closing = after.starts_with(b"--");
            let after = if closing { &after[2..] } else { after };
            if after.iter().all(|b| matches!(b, b' ' | b'\t')) {
                if let Some(from) = current {
                    parts.push(strip_line_break(&body[from..start]));
                }
                if closing {
                    return parts;
                }
                current = Some(end);
            }
        }
        start = end;
    }
    // No closing delimiter: the last part runs to the end, as cloud-init (Python's email) reads it.
    if let Some(from) = current {
        parts.push(&body[from..]);
    }
    parts
}

fn strip_line_break(part: &[u8]) -> &[u8] {
    let part = part.strip_suffix(b"\n").unwrap_or(part);
    part.strip_suffix(b"\r").unwrap_or(part)
}

fn decode(body: &[u8], encoding: &str) -> Result<Vec<u8>, String> {
    match encoding {
        "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|_| "its base64 body does not decode".to_string())
        }
        "quoted-printable" => Ok(quoted_printable(body)),
        other => Err(format!(
            "Content-Transfer-Encoding {:?} is not one of 7bit, 8bit, binary, base64, quoted-printable",
            other.chars().take(40).collect::<String>()
        )),
    }
}

/// RFC 2045 6.7: `=XX` is a byte, `=` at the end of a line joins it to the next; anything else
/// is taken as it is (as Python's `quopri` does).
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'=' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let rest = &body[i + 1..];
        let hex = |b: u8| (b as char).to_digit(16);
        if let [a, b, ..] = rest
            && let (Some(a), Some(b)) = (hex(*a), hex(*b))
        {
            out.push((a * 16 + b) as u8);
            i += 3;
        } else if rest.starts_with(b"\r\n") {
            i += 3;
        } else if rest.starts_with(b"\n") {
            i += 2;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "Content-Type: multipart/mixed; boundary=\"===b==\"\nMIME-Version: 1.0\n\npreamble\n--===b==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nContent-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"cloud.yaml\"\n\n#cloud-config\nhostname: web\n\n--===b==\nContent-Type: text/x-kiln-env; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\nQVBQX0VOVj1wcm9k\nCg==\n--===b==--\nepilogue\n";

    #[test]
    fn splits_and_decodes_the_parts() {
        let parts = parts(DOC.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/cloud-config");
        assert_eq!(parts[0].body, b"#cloud-config\nhostname: web\n");
        assert_eq!(parts[1].number, 2);
        assert_eq!(parts[1].content_type, "text/x-kiln-env");
        assert_eq!(parts[1].charset.as_deref(), Some("utf-8"));
        assert_eq!(parts[1].body, b"APP_ENV=prod\n");
    }

    #[test]
    fn crlf_nested_and_quoted_printable() {
        let doc = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=outer\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"in ner\"\r\n\r\n--in ner\r\nContent-Type: text/x-kiln-env\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nA=3Db=\r\nc\r\n--in ner--\r\n--outer\r\n\r\nplain\r\n--outer--\r\n";
        let parts = parts(doc.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"A=bc");
        assert_eq!(parts[1].content_type, "text/plain");
        assert_eq!(parts[1].body, b"plain");
    }

    #[test]
    fn content_type_parameters() {
        let (t, p) = parse_content_type("Multipart/Mixed; boundary=\"a\\\"b; c\" ; charset=UTF-8");
        assert_eq!(t, "multipart/mixed");
        assert_eq!(
            p,
            [
                ("boundary".into(), "a\"b; c".into()),
                ("charset".into(), "UTF-8".into())
            ]
        );
    }

    #[test]
    fn refusals_name_the_part_never_the_content() {
        let bad64 =
            "Content-Type: text/x-kiln-env\nContent-Transfer-Encoding: base64\n\nnot base64 secret!\n";
        let e = parts(bad64.as_bytes()).unwrap_err();
        assert_eq!(e, "part 1 (text/x-kiln-env): its base64 body does not decode");
        let no_boundary = "Content-Type: multipart/mixed\n\n--x\n\nA=1\n";
        assert!(parts(no_boundary.as_bytes()).unwrap_err().contains("boundary"));
        let mut deep = String::new();
        for n in 0..=DEPTH_MAX {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{n}\n\n--b{n}\n"
            ));
        }
        assert!(parts(deep.as_bytes()).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn mime_is_told_by_its_first_line() {
        assert!(is_mime(b"Content-Type: multipart/mixed; boundary=x\n"));
        assert!(is_mime(b"MIME-Version: 1.0\r\n"));
        assert!(!is_mime(b"APP_ENV=prod\nContent-Type: x\n"));
    }
}

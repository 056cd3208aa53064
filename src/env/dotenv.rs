//! The dotenv user-data format, strict enough to catch mistakes before a service starts.
//!
//! ```text
//! # comment                  blank lines and lines starting with # are ignored
//! APP_ENV=prod               unquoted: to the end of the line, trailing blanks and ` # comment` cut
//! export APP_DEBUG=0         `export ` is allowed (the file can be sourced by a shell too)
//! GREETING='it is $HOME'     single quotes: literal, may span lines
//! MOTD="line 1\nline 2"      double quotes: \n \t \r \" \\ \$ \' escapes, may span lines
//! EMPTY=""                   an empty value must be written so; `EMPTY=` is an error
//! ```
//!
//! There is no `$VAR` expansion: values are taken as written. Errors name the line and the
//! variable, never the value.

use std::collections::HashMap;

/// One assignment, with the line it starts on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Assignment {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A parse error: the line and what is wrong there.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ParseError {
    pub line: usize,
    pub reason: String,
}

pub(super) fn parse(text: &str) -> Result<Vec<Assignment>, ParseError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let mut out: Vec<Assignment> = Vec::new();
    // The line each name was first set on: one lookup per assignment keeps the parse linear.
    let mut first_set: HashMap<String, usize> = HashMap::new();
    while let Some((line_no, line)) = lines.next() {
        let fail = |reason: String| ParseError {
            line: line_no,
            reason,
        };
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let body = trimmed
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(trimmed);
        let Some((name, rest)) = body.split_once('=') else {
            return Err(fail("expected NAME=value".into()));
        };
        let name = name.trim_end();
        crate::config::check_name(name).map_err(&fail)?;
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            None | Some('#') => {
                return Err(fail(format!(
                    "{name}= is missing a value (write {name}=\"\" for an empty one)"
                )));
            }
            Some(quote @ ('\'' | '"')) => {
                let (value, after) = quoted(&rest[1..], quote, &mut lines)
                    .ok_or_else(|| fail(format!("{name}: unterminated {} quote", quote_name(quote))))?;
                let after = after.trim_start();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(fail(format!("{name}: unexpected text after the closing quote")));
                }
                value
            }
            Some(_) => unquoted(rest),
        };
        if let Some(first) = first_set.insert(name.to_string(), line_no) {
            return Err(fail(format!("{name} is set twice (first on line {first})")));
        }
        out.push(Assignment {
            name: name.to_string(),
            value,
            line: line_no,
        });
    }
    Ok(out)
}

fn quote_name(quote: char) -> &'static str {
    if quote == '"' { "double" } else { "single" }
}

/// An unquoted value: up to a ` #` comment, trailing blanks cut.
fn unquoted(rest: &str) -> String {
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && bytes[i - 1].is_ascii_whitespace() {
            end = i;
            break;
        }
    }
    rest[..end].trim_end().to_string()
}

/// A quoted value starting just after the opening quote, continuing over following lines until
/// the closing quote. Returns the value and the text after the closing quote, or None when the
/// quote never closes.
fn quoted<'a>(
    first: &'a str,
    quote: char,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut current = first;
    loop {
        let mut chars = current.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                return Some((value, &current[i + 1..]));
            }
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, e @ ('"' | '\\' | '$' | '\''))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    // A backslash at the end of a line keeps it, then the newline.
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        let (_, next) = lines.next()?;
        value.push('\n');
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect()
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.line, e.reason)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn the_documented_forms() {
        let text = "# c\n\nAPP_ENV=prod\nexport DEBUG=0\nA = spaced value  # comment\nB=x#not-a-comment\nS='it is $HOME \\n'\nD=\"l1\\nl2 \\\"q\\\" \\$x \\\\ \\q\"\nE=\"\"\nM='multi\nline'\r\nN=end\r\n";
        assert_eq!(
            ok(text),
            pairs(&[
                ("APP_ENV", "prod"),
                ("DEBUG", "0"),
                ("A", "spaced value"),
                ("B", "x#not-a-comment"),
                ("S", "it is $HOME \\n"),
                ("D", "l1\nl2 \"q\" $x \\ \\q"),
                ("E", ""),
                ("M", "multi\nline"),
                ("N", "end"),
            ])
        );
    }

    /// 100,000 variables took 28 s when each name was compared with every earlier one.
    #[test]
    fn a_hundred_thousand_variables_parse() {
        let text: String = (0..100_000).map(|i| format!("VAR_{i}=value {i}\n")).collect();
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.len(), 100_000);
        assert_eq!(parsed[99_999].name, "VAR_99999");
        assert_eq!(parsed[99_999].line, 100_000);
        let twice = format!("{text}VAR_5=again\n");
        assert_eq!(
            parse(&twice).unwrap_err(),
            ParseError {
                line: 100_001,
                reason: "VAR_5 is set twice (first on line 6)".into()
            }
        );
    }

    #[test]
    fn errors_name_the_line_and_the_variable_only() {
        assert_eq!(
            err("A=1\nB=2\nAPP_SECRET=\n"),
            (
                3,
                "APP_SECRET= is missing a value (write APP_SECRET=\"\" for an empty one)".into()
            )
        );
        assert_eq!(err("A=1\nsecretvalue\n"), (2, "expected NAME=value".into()));
        assert_eq!(err("A=\"abc\nB=1\n"), (1, "A: unterminated double quote".into()));
        assert_eq!(
            err("A='abc' x\n"),
            (1, "A: unexpected text after the closing quote".into())
        );
        assert_eq!(err("A=1\nA=2\n"), (2, "A is set twice (first on line 1)".into()));
        let (line, reason) = err("1A=x\n");
        assert_eq!(line, 1);
        assert!(
            reason.starts_with("a name starting with a digit is not a valid variable name"),
            "{reason}"
        );
        assert_eq!(
            err("A= # c\n").1,
            "A= is missing a value (write A=\"\" for an empty one)"
        );
    }
}

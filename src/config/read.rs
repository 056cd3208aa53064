//! Reading kiln.toml in two steps, so that one `kiln check` lists every problem of the file.
//!
//! First the TOML structure ([`DeTable::parse`]): a syntax error stops there, since nothing after
//! it can be read reliably. Then the values, through serde: a key whose value is refused (a
//! duration of `"10 parsecs"`, an unknown key, a string where a list goes) is noted with its place
//! and line, left out, and the document read again, until it reads. A key left out takes its
//! default, so the checks that follow see a whole config.

use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue, Deserializer};

/// At most this many problems of values are listed: each one costs another reading of the file.
const MAX_PROBLEMS: usize = 100;

/// The file and the config it holds, read as far as its values allow.
pub(super) struct Read<T> {
    pub value: T,
    /// One line per key left out, in file order: `[[service]] #2 "nginx": stop_timeout: invalid
    /// duration "10 parsecs" (...) (line 12)`.
    pub problems: Vec<String>,
    /// The key paths left out, to spare the checks a second word on them.
    pub dropped: Vec<Vec<Step>>,
}

/// One step of a key path: a key of a table, or an element of an array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// Reads `text` as `T`. `Err` holds a syntax error alone, or the problems found before one that
/// could not be left out (it comes last, as the parser words it).
pub(super) fn read<T: DeserializeOwned>(text: &str) -> Result<Read<T>, Vec<String>> {
    let mut doc = DeTable::parse(text).map_err(|e| vec![e.to_string().trim_end().to_string()])?;
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut dropped: Vec<Vec<Step>> = Vec::new();
    loop {
        let mut error = match T::deserialize(Deserializer::from(doc.clone())) {
            Ok(value) => {
                found.sort_by_key(|(at, _)| *at);
                let problems = found.into_iter().map(|(_, p)| p).collect();
                return Ok(Read {
                    value,
                    problems,
                    dropped,
                });
            }
            Err(e) => e,
        };
        let located = error
            .span()
            .and_then(|span| Some((locate(doc.get_ref(), &span)?, span)));
        let Some((path, span)) = located else {
            error.set_input(Some(text));
            return Err(in_order(found, error.to_string().trim_end().to_string()));
        };
        if found.len() >= MAX_PROBLEMS {
            let more = format!("and more: only the first {MAX_PROBLEMS} problems of values are listed");
            return Err(in_order(found, more));
        }
        if !follows_from(&error, &path, &dropped) {
            let line = line_of(text, span.start);
            let problem = place_problem(doc.get_ref(), &path, error.message(), line);
            found.push((span.start, problem));
        }
        remove(doc.get_mut(), &path);
        dropped.push(path);
    }
}

/// The problems found, in file order, and `last` after them.
fn in_order(mut found: Vec<(usize, String)>, last: String) -> Vec<String> {
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, p)| p).chain([last]).collect()
}

/// The keys directly under `prefix` that the reading left out (`name` of `[[service]] #2`).
pub(super) fn dropped_under<'a>(dropped: &'a [Vec<Step>], prefix: &[Step]) -> Vec<&'a str> {
    dropped
        .iter()
        .filter_map(|path| match path.strip_prefix(prefix)?.first()? {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(_) => None,
        })
        .collect()
}

/// "missing field `K`" on a table whose key K was left out for a problem already listed: not a
/// second problem. (serde's wording of [`serde::de::Error::missing_field`].)
fn follows_from(error: &toml::de::Error, path: &[Step], dropped: &[Vec<Step>]) -> bool {
    let Some(field) = error
        .message()
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    else {
        return false;
    };
    dropped.iter().any(|d| {
        d.split_last()
            .is_some_and(|(last, table)| table == path && *last == Step::Key(field.to_string()))
    })
}

/// The 1-based line of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    let before = text.get(..at).unwrap_or(text);
    before.bytes().filter(|b| *b == b'\n').count().saturating_add(1)
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The deepest key (or element of an array of tables) whose key or value holds `span`.
fn locate(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (key, value) in table.iter() {
        let inner = locate_in(value, span);
        if inner.is_some() || covers(&key.span(), span) || covers(&value.span(), span) {
            let mut path = vec![Step::Key(key.get_ref().to_string())];
            path.extend(inner.unwrap_or_default());
            return Some(path);
        }
    }
    None
}

/// Within a value: the keys of a table, the elements of an array of tables. The elements of
/// other arrays are not keys of their own: a problem there is the array's key's.
fn locate_in(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Vec<Step>> {
    match value.get_ref() {
        DeValue::Table(table) => locate(table, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let DeValue::Table(table) = item.get_ref() else {
                return None;
            };
            let inner = locate(table, span);
            (inner.is_some() || covers(&item.span(), span)).then(|| {
                let mut path = vec![Step::Index(i)];
                path.extend(inner.unwrap_or_default());
                path
            })
        }),
        _ => None,
    }
}

/// The value at `path`.
fn at<'a, 'i>(table: &'a DeTable<'i>, path: &[Step]) -> Option<&'a DeValue<'i>> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else { return None };
    within(table.get(key.as_str())?.get_ref(), rest)
}

fn within<'a, 'i>(value: &'a DeValue<'i>, path: &[Step]) -> Option<&'a DeValue<'i>> {
    match (path.first(), value) {
        (None, value) => Some(value),
        (Some(Step::Key(_)), DeValue::Table(table)) => at(table, path),
        (Some(Step::Index(i)), DeValue::Array(items)) => within(items.get(*i)?.get_ref(), path.get(1..)?),
        _ => None,
    }
}

/// Leaves the key (or element) at `path` out of the document.
fn remove<'i>(table: &mut DeTable<'i>, path: &[Step]) {
    let Some((Step::Key(key), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.remove(key.as_str());
    } else if let Some(value) = table.get_mut(key.as_str()) {
        remove_within(value.get_mut(), rest);
    }
}

fn remove_within<'i>(value: &mut DeValue<'i>, path: &[Step]) {
    match (path.split_first(), value) {
        (Some((Step::Key(_), _)), DeValue::Table(table)) => remove(table, path),
        (Some((Step::Index(i), [])), DeValue::Array(items)) => {
            let mut kept: DeArray<'i> = DeArray::new();
            for (j, item) in items.iter().enumerate() {
                if j != *i {
                    kept.push(item.clone());
                }
            }
            *items = kept;
        }
        (Some((Step::Index(i), rest)), DeValue::Array(items)) => {
            if let Some(item) = items.get_mut(*i) {
                remove_within(item.get_mut(), rest);
            }
        }
        _ => {}
    }
}

/// `PLACE: MESSAGE (line N)`, the place written as the checks write theirs: `[metadata]
/// deadline`, `[[service]] #2 "nginx": [service.ready] period`, `[seal]`.
fn place_problem(doc: &DeTable<'_>, path: &[Step], message: &str, line: usize) -> String {
    let place = place(doc, path);
    let gap = if place.ends_with(']') { " " } else { ": " };
    format!("{place}{gap}{message} (line {line})")
}

fn place(doc: &DeTable<'_>, path: &[Step]) -> String {
    let is_table = |p: &[Step]| matches!(at(doc, p), Some(DeValue::Table(_)));
    match path {
        [Step::Key(section), Step::Index(i), rest @ ..] if matches!(section.as_str(), "service" | "task") => {
            let mut place = format!("[[{section}]] #{}", i.saturating_add(1));
            let name = at(doc, path.get(..2).unwrap_or_default()).and_then(|s| match s {
                DeValue::Table(t) => t.get("name").map(|v| v.get_ref()),
                _ => None,
            });
            if let Some(DeValue::String(name)) = name {
                place.push_str(&format!(" {name:?}"));
            }
            match rest {
                [] => place,
                [Step::Key(probe), tail @ ..]
                    if section == "service"
                        && matches!(probe.as_str(), "startup" | "ready" | "live")
                        && is_table(path.get(..3).unwrap_or_default()) =>
                {
                    let keys = keys(tail);
                    let sep = if keys.is_empty() { "" } else { " " };
                    format!("{place}: [service.{probe}]{sep}{keys}")
                }
                _ => format!("{place}: {}", keys(rest)),
            }
        }
        [Step::Key(section)] if is_table(path) => format!("[{section}]"),
        [Step::Key(key)] => key.clone(),
        [Step::Key(section), rest @ ..] => format!("[{section}] {}", keys(rest)),
        _ => keys(path),
    }
}

/// `defaults.APP_ENV`, `tags#2`.
fn keys(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("#{}", i.saturating_add(1))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(
        dead_code,
        reason = "what serde reads and refuses is the test, not the values"
    )]
    struct Doc {
        #[serde(default)]
        a: Option<Section>,
        #[serde(default, rename = "service")]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(
        dead_code,
        reason = "what serde reads and refuses is the test, not the values"
    )]
    struct Section {
        need: u32,
        #[serde(default)]
        n: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(
        dead_code,
        reason = "what serde reads and refuses is the test, not the values"
    )]
    struct Item {
        #[serde(default)]
        name: String,
        #[serde(default)]
        n: u32,
        #[serde(default)]
        list: Vec<u32>,
    }

    fn problems(text: &str) -> Vec<String> {
        read::<Doc>(text).map(|r| r.problems).unwrap_or_else(|e| e)
    }

    #[test]
    fn every_bad_value_and_unknown_key_is_listed_in_file_order() {
        let text = "[a]\nneed = 1\nn = \"x\"\nzz = 1\n[[service]]\nname = \"one\"\nn = -1\n[[service]]\nlist = [1, \"2\"]\nb = 2\n";
        assert_eq!(
            problems(text),
            [
                "[a] n: invalid type: string \"x\", expected u32 (line 3)",
                "[a] zz: unknown field `zz`, expected `need` or `n` (line 4)",
                "[[service]] #1 \"one\": n: invalid value: integer `-1`, expected u32 (line 7)",
                "[[service]] #2: list: invalid type: string \"2\", expected u32 (line 9)",
                "[[service]] #2: b: unknown field `b`, expected one of `name`, `n`, `list` (line 10)",
            ]
        );
    }

    #[test]
    fn the_list_stops_after_a_hundred_problems() {
        let text: String = (0..150).map(|i| format!("[[service]]\nn = \"{i}\"\n")).collect();
        let listed = problems(&text);
        assert_eq!(listed.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            listed[0],
            "[[service]] #1: n: invalid type: string \"0\", expected u32 (line 2)"
        );
        assert_eq!(
            listed[MAX_PROBLEMS],
            "and more: only the first 100 problems of values are listed"
        );
    }

    #[test]
    fn a_syntax_error_comes_alone_with_its_line() {
        let err = problems("[a]\nneed = 1\nn = \n");
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].contains("line 3"), "{err:?}");
    }

    #[test]
    fn a_missing_field_after_its_bad_value_is_not_listed_twice() {
        let got = read::<Doc>("[a]\nneed = \"one\"\n").unwrap();
        assert_eq!(
            got.problems,
            ["[a] need: invalid type: string \"one\", expected u32 (line 2)"]
        );
        assert!(got.value.a.is_none());
        let got = read::<Doc>("[a]\nn = 1\n").unwrap();
        assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
        assert!(
            got.problems[0].starts_with("[a] missing field `need`"),
            "{:?}",
            got.problems
        );
    }
}

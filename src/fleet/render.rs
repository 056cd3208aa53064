//! The person's view of a [`Report`]: the verdict first, what needs attention, then one row per
//! member. `--json` prints the report itself.

use super::Report;
use super::words::short_hash;
use crate::terminal::{printable, printable_lines};
use std::fmt::Write;
use std::time::Duration;

const HEADER: [&str; 8] = [
    "ADDRESS", "LB", "KILN", "INSTANCE", "RELEASE", "ROOT", "EXPECTED", "UPTIME",
];

/// The table, every field escaped ([`printable`]) and the whole once more ([`printable_lines`]):
/// members and load balancers are peers, and what they say must not drive the terminal or
/// forge a line.
pub fn table(r: &Report) -> String {
    printable_lines(&lines(r)).into_owned()
}

fn lines(r: &Report) -> String {
    let mut out = String::new();
    let a = &r.assessment;
    let _ = writeln!(out, "{}: {}", a.verdict.word(), printable(&a.summary));
    let count = match r.members.len() {
        1 => "1 member".to_string(),
        n => format!("{n} members"),
    };
    match &r.error {
        None => writeln!(
            out,
            "  {}: {count}, asked in {}ms",
            printable(&r.source),
            r.elapsed_ms
        ),
        Some(_) => writeln!(out, "  {}", printable(&r.source)),
    }
    .ok();
    for p in &a.problems {
        let _ = writeln!(out, "  why: {}", printable(p));
    }
    if r.members.is_empty() {
        return out;
    }
    let rows: Vec<[String; 8]> = r
        .members
        .iter()
        .map(|m| row(m).map(|cell| printable(&cell).into_owned()))
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    out.push('\n');
    for cells in std::iter::once(HEADER.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn row(m: &super::Member) -> [String; 8] {
    let dash = || "-".to_string();
    let k = m.kiln.as_ref();
    [
        m.address
            .clone()
            .or_else(|| m.health.clone())
            .unwrap_or_else(dash),
        m.lb_word.clone().unwrap_or_else(|| "not listed".into()),
        k.map_or_else(|| "no answer".into(), |k| k.phase_word.clone()),
        k.and_then(|k| k.instance_id.clone())
            .or_else(|| m.name.clone())
            .unwrap_or_else(dash),
        k.and_then(|k| k.release.clone()).unwrap_or_else(dash),
        k.and_then(|k| k.root_hash.as_deref().map(|h| short_hash(h).to_string()))
            .unwrap_or_else(dash),
        k.and_then(|k| k.expected.as_ref().map(ToString::to_string))
            .unwrap_or_else(dash),
        k.and_then(|k| k.uptime_ms)
            .map(|ms| uptime(Duration::from_millis(ms)))
            .unwrap_or_else(dash),
    ]
}

/// `3m2s`, `1h4m7s`: whole seconds, no spaces (one cell of a table).
fn uptime(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_are_whole_seconds() {
        assert_eq!(uptime(Duration::from_millis(182_400)), "3m2s");
        assert_eq!(uptime(Duration::from_millis(400)), "0s");
    }
}

//! Text from outside kiln (instance facts, service output, answers of probes and load balancers)
//! made safe to print on a terminal: a control character in it could move the cursor, recolour
//! the screen, set the window title or forge a line of `kiln status`.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1; line breaks included) written as an escape
/// (`\u{1b}`, `\n`), for one field of a line.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_controls(text, |_| true)
}

/// `text` with every control character but the line break escaped: for a whole report whose
/// lines kiln wrote itself, as a last guard behind the per-field [`printable`].
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape_controls(text, |c| c != '\n')
}

/// The most characters kiln keeps of one text a peer gave it.
pub const PEER_TEXT_CHARS: usize = 300;

/// Text a peer gave (a load balancer's answer, a member kiln's `/readyz`, the cloud's notices
/// and events, a secret store's error), as kiln keeps it in its state, its log and what it
/// prints: one line, control characters escaped as [`printable`] does, at most
/// [`PEER_TEXT_CHARS`] characters (a longer text is cut and ends in `…`). A peer decides how
/// long its answer is; kiln decides how much of it it repeats.
pub fn peer_text(text: &str) -> String {
    bounded(text, PEER_TEXT_CHARS)
}

/// The most characters of a peer's value quoted inside one of kiln's sentences.
pub const PEER_WORD_CHARS: usize = 64;

/// A peer's value quoted inside one of kiln's sentences (`unknown action "..."; not acted
/// on`): as [`peer_text`], at most [`PEER_WORD_CHARS`] characters, so the sentence around it
/// stays whole.
pub fn peer_word(text: &str) -> String {
    bounded(text, PEER_WORD_CHARS)
}

fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut kept = 0usize;
    for c in text.chars() {
        let escaped: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let width = escaped.chars().count();
        if kept.saturating_add(width) > max {
            out.push('…');
            return out;
        }
        kept = kept.saturating_add(width);
        out.push_str(&escaped);
    }
    out
}

fn escape_controls(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() && escape(c);
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().saturating_add(16));
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_reach_the_terminal_as_text() {
        assert_eq!(printable("i-0abc"), "i-0abc");
        assert_eq!(printable("café 日本"), "café 日本");
        assert_eq!(
            printable("i-\u{1b}[31mred\u{7}\nFAKE"),
            "i-\\u{1b}[31mred\\u{7}\\nFAKE"
        );
        assert_eq!(printable("\u{9b}2J\u{7f}"), "\\u{9b}2J\\u{7f}");
        assert_eq!(
            printable_lines("a\u{1b}]0;x\u{7}\nb\tc\n"),
            "a\\u{1b}]0;x\\u{7}\nb\\tc\n"
        );
    }

    #[test]
    fn a_peers_text_is_one_bounded_printable_line() {
        assert_eq!(peer_text("UP 1/3"), "UP 1/3");
        assert_eq!(peer_text("a\u{1b}]0;x\u{7}\nb"), "a\\u{1b}]0;x\\u{7}\\nb");
        let long = peer_text(&"é".repeat(200 * 1024));
        assert_eq!(long.chars().count(), PEER_TEXT_CHARS + 1);
        assert!(long.ends_with("é…"));
        // An escape is not cut in half.
        let escapes = peer_text(&"\u{1b}".repeat(100));
        assert!(escapes.ends_with("\\u{1b}…"), "{escapes}");
        assert!(escapes.chars().count() <= PEER_TEXT_CHARS + 1);
        assert_eq!(
            peer_text(&peer_text("a\u{7}b")),
            peer_text("a\u{7}b"),
            "applied twice, same text"
        );
        assert_eq!(peer_word(&"x".repeat(100)).chars().count(), PEER_WORD_CHARS + 1);
    }
}

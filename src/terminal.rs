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
}

//! Text from other devices, made safe for a terminal or a desktop label.
//!
//! Paths, device names and messages can come from the namespace journal,
//! which any holder of the namespace token can write. Printed as they are,
//! control characters in them could move the cursor, rewrite the window
//! title or hide text; bidirectional overrides could make a name read as
//! another. Every human-readable output passes such text through
//! [`printable`]; `--json` output stays exact (JSON escapes them itself).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as it is.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `text` with every control character and bidirectional override written
/// as an escape (`\x1b`, `\u{202e}`); borrowed when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_escaped() {
        assert!(matches!(printable("plain näme.txt"), Cow::Borrowed(_)));
        assert_eq!(printable("a\x1b[31mred\x07"), "a\\x1b[31mred\\x07");
        assert_eq!(printable("line\nbreak"), "line\\nbreak");
        assert_eq!(printable("\u{9b}2J"), "\\x9b2J");
        assert_eq!(printable("gpj.\u{202e}exe"), "gpj.\\u{202e}exe");
    }
}

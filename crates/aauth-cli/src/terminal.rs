//! Text from tokens and the network, made safe for the operator's terminal: a control
//! character (an escape sequence a token's `typ`, a server's problem `detail` or an
//! `alg` carried, a C1 control, a newline that would forge a line of output) or a
//! bidirectional override is shown escaped, as `\u{1b}`, never sent to the terminal.

/// Whether `c` must not reach a terminal as itself.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one line on the operator's terminal (a table cell, an error line): every
/// control character and bidirectional override shown escaped, as `\u{1b}`.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s`, several lines of our own making around untrusted text (pretty-printed JSON), as
/// [`printable`] line by line: its newlines are kept, nothing else.
pub(crate) fn printable_lines(s: &str) -> String {
    s.split('\n').map(printable).collect::<Vec<_>>().join("\n")
}

/// Serialized JSON with what [`printable`] escapes written as JSON's `\uXXXX` escapes
/// (its newlines, which a serializer writes only between members, kept): the same
/// document, every string the same value, nothing a terminal acts on.
pub(crate) fn printable_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && unsafe_char(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_json, printable_lines};

    #[test]
    fn a_cell_never_carries_a_control_character_to_the_terminal() {
        assert_eq!(
            printable("approved by the person"),
            "approved by the person"
        );
        assert_eq!(printable("Zürich"), "Zürich");
        assert_eq!(
            printable("denied\n2026-01-01\tforged\u{1b}]0;x\u{7}\u{202e}\u{9b}"),
            "denied\\u{a}2026-01-01\\u{9}forged\\u{1b}]0;x\\u{7}\\u{202e}\\u{9b}"
        );
        assert_eq!(printable_lines("a\u{1b}[2J\nb"), "a\\u{1b}[2J\nb");
    }

    #[test]
    fn json_stays_the_same_document() {
        let v = serde_json::json!({"typ": "x\u{9b}2J\u{202e}\u{1b}", "n": 1});
        let shown = printable_json(&format!("{v:#}"));
        assert!(!shown.chars().any(|c| c != '\n' && super::unsafe_char(c)));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            v
        );
    }
}

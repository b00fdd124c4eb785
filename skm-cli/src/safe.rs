//! Text that crosses a trust boundary: names read from a backend or a file before they reach a terminal or a
//! generated document, and parser errors that must name a position, never the text at it.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1) and every bidirectional-override character escaped, so
/// that a secret's key or path read from a backend cannot move the cursor, recolour the terminal, hide text
/// or start a new line in a table or a generated file.
///
/// Printable text comes back borrowed and unchanged.
pub(crate) fn display(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`display`] line by line: our own multi-line messages keep their line breaks, nothing else passes.
pub(crate) fn display_lines(s: &str) -> String {
    s.split('\n').map(display).collect::<Vec<_>>().join("\n")
}

/// Control characters, Unicode line separators, and the formatting characters that reorder or hide text
/// ("Trojan Source").
pub(crate) fn unsafe_char(c: char) -> bool {
    // U+2028/2029 are line breaks to YAML 1.1 and JavaScript, so they could start a line in a document.
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A parser's message with everything it quotes from the input removed.
///
/// serde and the TOML parser quote input in their messages (`invalid type: string "postgres://…"`,
/// `unknown field `…``), and toml's `Display` adds the whole source line. What the message *expects* comes
/// from our own schema or the grammar, so it is kept: `invalid type: string; expected u32`.
/// `missing field `x`` names one of our fields, so it is kept whole.
pub(crate) fn parse_message(message: &str) -> String {
    let first_line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first_line.starts_with("missing field `") && first_line.matches('`').count() == 2 {
        return first_line.to_string();
    }
    let (what, expected) = match first_line.split_once(", expected ") {
        Some((what, expected)) => (what, Some(expected)),
        None => (first_line, None),
    };
    // Up to the first quote: the kind of problem, without the offending text.
    let kind = what
        .split(['"', '\'', '`'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(':')
        .trim();
    let kind = if kind.is_empty() { "malformed" } else { kind };
    match expected {
        // serde_json appends " at line L column C" to its messages; the position is reported separately.
        Some(e) => format!("{kind}; expected {}", strip_position(e)),
        None => strip_position(kind).to_string(),
    }
}

fn strip_position(s: &str) -> &str {
    match s.find(" at line ") {
        Some(i) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(display("app/db"), "app/db");
        assert_eq!(display("a\x1b[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert_eq!(display("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(display("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_col("ab\ncdé\nf", 0), (1, 1));
        assert_eq!(line_col("ab\ncdé\nf", 3), (2, 1));
        assert_eq!(line_col("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(line_col("ab\ncdé\nf", 7), (2, 4));
    }

    #[test]
    fn messages_lose_the_quoted_input() {
        let m = parse_message("invalid type: string \"SENTINEL\", expected u32");
        assert_eq!(m, "invalid type: string; expected u32");
        let m = parse_message("unknown field `SENTINEL`, expected one of `field`, `path`");
        assert_eq!(m, "unknown field; expected one of `field`, `path`");
        assert_eq!(parse_message("missing field `struct`"), "missing field `struct`");
        let m = parse_message("invalid value: string 'SENTINEL' at line 3 column 4");
        assert!(!m.contains("SENTINEL") && !m.contains("line"), "{m}");
        let m = parse_message("expected `.`, `=`\n  |\n1 | DATABASE_URL=SENTINEL\n  |   ^\n");
        assert!(!m.contains("SENTINEL"), "{m}");
    }
}

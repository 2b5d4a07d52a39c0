//! Client-supplied text in log lines: control characters (a `\n` that would start a forged
//! line, terminal escapes) and Unicode line separators and bidirectional overrides are written
//! as `\n`, `\u{1b}`, ..., so that one record stays one line and reads as it is.

use std::fmt::{self, Write};

/// Whether `c` must not reach a log line as is.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` to `out`, escaping what [`needs_escape`].
fn write_escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some((at, c)) = rest.char_indices().find(|(_, c)| needs_escape(*c)) {
        out.write_str(&rest[..at])?;
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// Displays a client-supplied string escaped for a log line (unchanged when it holds nothing
/// to escape): `tracing::info!("set {}", Escaped(&name))`.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

/// A `fmt::Write` into `String` that escapes everything written through it (the log files'
/// last line of defence: whatever a record's message holds, it is one line).
pub(crate) struct EscapingWriter<'a>(pub(crate) &'a mut String);

impl Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_separators_are_escaped_the_rest_is_kept() {
        assert_eq!(Escaped("plain-name é").to_string(), "plain-name é");
        assert_eq!(Escaped("a\nb\r\tc").to_string(), "a\\nb\\r\\tc");
        assert_eq!(Escaped("\u{1b}[31mred\u{2028}x\u{202e}").to_string(), "\\u{1b}[31mred\\u{2028}x\\u{202e}");
        let mut line = String::new();
        let (name, count) = ("x\ny", 5);
        write!(EscapingWriter(&mut line), "{name} {count}").unwrap();
        assert_eq!(line, "x\\ny 5");
    }
}

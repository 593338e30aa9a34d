//! Client-supplied text (ids, room names, paths, section titles) in log lines: control characters
//! are escaped, so no request can forge a log line or send escape sequences to a terminal.

use std::fmt::{self, Display, Write};

/// Formats its text with control characters escaped (`\n`, `\u{1b}`); everything else as is.
pub struct Shown<'a>(pub &'a str);

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Shown;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Shown("a\nb\u{1b}[31m\tc é").to_string(),
            "a\\nb\\u{1b}[31m\\tc é"
        );
    }
}

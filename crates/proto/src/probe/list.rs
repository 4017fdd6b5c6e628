//! Target lists (`-iL FILE`, `--excludefile FILE`), one syntax for `probe` surveys and
//! `scan` (nmap's): whitespace separates targets, `#` starts a comment to the end of the
//! line. A line must be text — UTF-8 without control characters other than whitespace —
//! so that a binary file given by mistake is named as such, not read as odd host names.

/// Longest line read whole; a longer one is reported and skipped, so a file without line
/// breaks (binary, or one giant line) cannot make the reader grow without bound.
pub const MAX_LINE: usize = 16 * 1024;

/// Why a line yields no targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadLine {
    NotText,
    TooLong,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLine::NotText => f.write_str("not text (is this a list of targets?)"),
            BadLine::TooLong => write!(f, "longer than {MAX_LINE} bytes"),
        }
    }
}

/// The targets on one line (without its line break).
pub fn specs(line: &[u8]) -> Result<impl Iterator<Item = &str>, BadLine> {
    let text = std::str::from_utf8(line).map_err(|_| BadLine::NotText)?;
    // A byte-order mark (Windows editors start a UTF-8 file with one) is not text of the
    // first target; invisible in a message, it made `198.18.0.1` "not an address".
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text
        .chars()
        .any(|c| c.is_control() && !c.is_ascii_whitespace())
    {
        return Err(BadLine::NotText);
    }
    let text = text.split('#').next().unwrap_or("");
    Ok(text.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(line: &[u8]) -> Result<Vec<&str>, BadLine> {
        specs(line).map(Iterator::collect)
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_target() {
        assert_eq!(
            all("\u{feff}198.18.0.1:80\r".as_bytes()),
            Ok(vec!["198.18.0.1:80"])
        );
    }

    #[test]
    fn whitespace_separates_and_hash_comments() {
        assert_eq!(
            all(b" 198.18.0.1\t198.18.0.0/30 # gateway\r"),
            Ok(vec!["198.18.0.1", "198.18.0.0/30"])
        );
        assert_eq!(all(b"# all comment"), Ok(vec![]));
        assert_eq!(all(b""), Ok(vec![]));
        assert_eq!(all(b"http://h/p#frag"), Ok(vec!["http://h/p"]));
    }

    #[test]
    fn binary_is_not_text() {
        assert_eq!(all(b"\x7fELF\x02\x01"), Err(BadLine::NotText));
        assert_eq!(all(b"host\x00name"), Err(BadLine::NotText));
        assert_eq!(all(b"\xff\xfe"), Err(BadLine::NotText));
        assert_eq!(all(b"h\x1b[31m"), Err(BadLine::NotText));
    }
}

//! Target lists at run time, read the same way by every command (`probe -iL`, `scan -iL`,
//! `scan --excludefile`): line by line, each bad line named by file and number, reported
//! and skipped (exit 1 at the end), never a reason to read the file whole.

use anyhow::Result;
use std::io::{self, BufRead, Read};
use std::os::fd::AsFd;
use std::path::Path;
use tcpshake_proto::probe::list::{self, BadLine};

/// Bad lines reported one by one; past this, only counted (a binary file is not worth a
/// thousand messages).
const REPORTED_BAD_LINES: u64 = 10;

pub struct TargetList {
    name: String,
    reader: Box<dyn BufRead>,
    line_no: usize,
    buf: Vec<u8>,
    done: bool,
    /// Lines skipped (bad text, bad targets, a read error): the command exits 1.
    pub skipped: u64,
    /// The first line with targets, read ahead by [`TargetList::refuse_if_empty`].
    peeked: Option<(String, Vec<String>)>,
    /// The list is a regular file (stdin too, when it is one): a read never waits for a
    /// writer, so the list may be read ahead of need.
    regular: bool,
}

impl TargetList {
    /// `-` is stdin. A list that cannot be opened is a mistake on the command line.
    pub fn open(path: &Path) -> Result<TargetList> {
        TargetList::open_as(path, "the target list")
    }

    /// [`TargetList::open`] for a list that is `what` (`the exclusion list`): what an error
    /// opening it calls it.
    pub fn open_as(path: &Path, what: &str) -> Result<TargetList> {
        let regular = |f: &std::fs::File| f.metadata().is_ok_and(|m| m.is_file());
        let (name, reader, regular): (String, Box<dyn BufRead>, bool) = if path == Path::new("-") {
            let stdin = io::stdin();
            let file = stdin.as_fd().try_clone_to_owned().map(std::fs::File::from);
            let is_file = file.as_ref().is_ok_and(regular);
            ("stdin".into(), Box::new(io::BufReader::new(stdin)), is_file)
        } else {
            let f = super::open_input(path, what)?;
            let is_file = regular(&f);
            (
                path.display().to_string(),
                Box::new(io::BufReader::new(f)),
                is_file,
            )
        };
        Ok(TargetList {
            name,
            reader,
            line_no: 0,
            buf: Vec::new(),
            done: false,
            skipped: 0,
            peeked: None,
            regular,
        })
    }

    /// The list as messages name it: its path, or `stdin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How messages name line `line` of list `name`: `FILE, line N`.
    pub fn origin(name: &str, line: impl std::fmt::Display) -> String {
        format!("{name}, line {line}")
    }

    /// The number of the line [`TargetList::next_line`] gave last.
    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// Whether the list is a regular file, whose reads never wait for a writer (those of a
    /// pipe or a terminal do).
    pub fn is_regular_file(&self) -> bool {
        self.regular
    }

    /// A list with no target on any line — empty, blank lines and comments only — is a
    /// mistake (a generated list that came out empty, the wrong file): refused, exit 2,
    /// rather than a run over nothing that looks like a success. Reads ahead to the first
    /// line with targets (kept for [`TargetList::next_line`]); a list whose every line was
    /// bad is left to the command (those lines were reported; exit 1).
    pub fn refuse_if_empty(&mut self) -> Result<()> {
        if self.peeked.is_none() {
            self.peeked = self.read_line();
        }
        if self.peeked.is_none() && self.skipped == 0 {
            return Err(super::exit::UsageError(format!(
                "{} holds no target (only blank lines and comments): nothing to do",
                self.name
            ))
            .into());
        }
        Ok(())
    }

    /// Report a bad line (or a bad target on it) and count it as skipped.
    pub fn skip(&mut self, origin: &str, why: impl std::fmt::Display) {
        self.skipped += 1;
        if self.skipped <= REPORTED_BAD_LINES {
            eprintln!("tcpshake: {origin}: {why}; skipped");
        } else if self.skipped == REPORTED_BAD_LINES + 1 {
            eprintln!(
                "tcpshake: {}: more bad lines; skipped without a message",
                self.name
            );
        }
    }

    /// At the end of a list with more bad lines than were named one by one, how many there
    /// were in all: "more bad lines; skipped without a message" left the count untold.
    fn total_skipped(&self) -> Option<String> {
        (self.skipped > REPORTED_BAD_LINES).then(|| {
            format!(
                "{}: {} bad lines skipped in all (the first {REPORTED_BAD_LINES} named above)",
                self.name, self.skipped
            )
        })
    }

    /// The targets of the next line that has any, with where they come from
    /// (`fleet.txt, line 3`); `None` at the end of the list.
    pub fn next_line(&mut self) -> Option<(String, Vec<String>)> {
        self.peeked.take().or_else(|| self.read_line())
    }

    fn read_line(&mut self) -> Option<(String, Vec<String>)> {
        // Bounded by the file: each pass consumes one line.
        while !self.done {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(list::MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => {
                    self.done = true;
                    if let Some(total) = self.total_skipped() {
                        eprintln!("tcpshake: {total}");
                    }
                }
                Ok(_) => {
                    self.line_no += 1;
                    let origin = Self::origin(&self.name, self.line_no);
                    let complete = self.buf.last() == Some(&b'\n');
                    if !complete && self.buf.len() > list::MAX_LINE {
                        self.discard_rest_of_line();
                        self.skip(&origin, BadLine::TooLong);
                        continue;
                    }
                    let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    let specs = list::specs(line).map(|s| s.map(String::from).collect());
                    match specs {
                        Ok(specs) => {
                            let specs: Vec<String> = specs;
                            if !specs.is_empty() {
                                return Some((origin, specs));
                            }
                        }
                        Err(bad) => self.skip(&origin, bad),
                    }
                }
                Err(e) => {
                    let origin = Self::origin(&self.name, self.line_no + 1);
                    self.skip(&origin, e);
                    self.done = true;
                }
            }
        }
        None
    }

    /// Skip to the next line break (a line too long to keep), in bounded chunks.
    fn discard_rest_of_line(&mut self) {
        loop {
            let (found, used) = match self.reader.fill_buf() {
                Ok([]) | Err(_) => return,
                Ok(chunk) => match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (true, i + 1),
                    None => (false, chunk.len()),
                },
            };
            self.reader.consume(used);
            if found {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bytes: &'static [u8]) -> TargetList {
        TargetList {
            name: "fleet.txt".into(),
            reader: Box::new(io::BufReader::with_capacity(64, bytes)),
            line_no: 0,
            buf: Vec::new(),
            done: false,
            skipped: 0,
            peeked: None,
            regular: true,
        }
    }

    #[test]
    fn a_list_is_empty_only_when_no_line_has_a_target() {
        for empty in [&b""[..], b"\n", b"# a comment\n  \n#another\n"] {
            let mut l = list(empty);
            let e = l.refuse_if_empty().expect_err("refused");
            assert!(e.to_string().contains("fleet.txt holds no target"), "{e}");
        }
        // Read ahead, the first line is still the first.
        let mut l = list(b"# head\n198.18.0.1\n198.18.0.2\n");
        l.refuse_if_empty().expect("not empty");
        assert_eq!(
            l.next_line().map(|(_, s)| s),
            Some(vec!["198.18.0.1".to_string()])
        );
        assert_eq!(
            l.next_line().map(|(_, s)| s),
            Some(vec!["198.18.0.2".to_string()])
        );
        assert_eq!(l.next_line(), None);
        // Only bad lines (not text): reported, and left to the command (exit 1), not
        // called empty.
        let mut l = list(b"\x7fELF\x00\x01\n");
        l.refuse_if_empty()
            .expect("bad lines are not an empty list");
        assert_eq!(l.skipped, 1);
    }

    #[test]
    fn lines_are_numbered_and_bad_ones_skipped() {
        let mut junk = b"198.18.0.1 198.18.0.2 # two\n\n".to_vec();
        junk.extend_from_slice(b"\x7fELF\x00\x01\n");
        junk.extend(std::iter::repeat_n(b'a', list::MAX_LINE + 10));
        junk.extend_from_slice(b"\nfd00::1\nlast");
        let mut l = list(junk.leak());
        assert_eq!(
            l.next_line(),
            Some((
                "fleet.txt, line 1".into(),
                vec!["198.18.0.1".into(), "198.18.0.2".into()]
            ))
        );
        assert_eq!(
            l.next_line(),
            Some(("fleet.txt, line 5".into(), vec!["fd00::1".into()]))
        );
        assert_eq!(l.skipped, 2, "line 3 is not text, line 4 too long");
        assert_eq!(
            l.next_line(),
            Some(("fleet.txt, line 6".into(), vec!["last".into()]))
        );
        assert_eq!(l.next_line(), None);
        assert_eq!(l.next_line(), None);
    }
}

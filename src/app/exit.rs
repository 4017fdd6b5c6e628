//! Exit codes and the kinds of error that lead to them: one table every command maps
//! through. `--help` prints it, and README's exit-code table is checked against it
//! (`readme_lists_every_exit_code`).

use std::fmt;

/// How a command ended, from the user's side. Each has one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything asked for was done and went well.
    Ok,
    /// Done, but something failed: a port not open, a name that did not resolve, an
    /// exchange or a run-time error, a target list line that was skipped.
    Failed,
    /// An `--slo` objective was breached (wins over `Failed`).
    SloBreached,
    /// The command line asks for something that cannot be done as written.
    Usage,
    /// The host cannot do what is needed: privileges, kernel features.
    Environment,
    /// Ctrl-C (SIGINT): stopped early; everything finished before it was written.
    Interrupted,
    /// SIGTERM: the same as Ctrl-C.
    Terminated,
}

impl Exit {
    /// Every exit, in the order of their codes.
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Environment,
        Exit::SloBreached,
        Exit::Interrupted,
        Exit::Terminated,
    ];

    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Environment => 3,
            Exit::SloBreached => 4,
            // 128 + the signal's number, as a shell reports a process the signal killed.
            Exit::Interrupted => 128 + 2,
            Exit::Terminated => 128 + 15,
        }
    }

    /// What the code means, as README's table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => {
                "every probe reached `open` and its exchange (HTTP, TLS, close) worked; a scan ran to its end"
            }
            Exit::Failed => {
                "some port not open (closed, filtered), a name did not resolve, a target had no route or a target-list line was skipped, or an exchange or run-time error"
            }
            Exit::Usage => {
                "usage: a bad option, option value or target, refused before anything was sent"
            }
            Exit::Environment => {
                "environment: missing privileges, nftables missing or too old, kernel refused"
            }
            Exit::SloBreached => {
                "an `--slo` objective was breached (`probe` survey or `report`); wins over 1"
            }
            Exit::Interrupted => {
                "interrupted by Ctrl-C (SIGINT): what finished before was written; wins over 1 and 4"
            }
            Exit::Terminated => "stopped by SIGTERM, as for Ctrl-C",
        }
    }

    /// The exit of a command stopped by `signal` (SIGINT or SIGTERM).
    pub fn stopped_by(signal: i32) -> Exit {
        if signal == SIGTERM {
            Exit::Terminated
        } else {
            Exit::Interrupted
        }
    }

    /// The exit of a command that ended `self` and also saw `other`: the more telling one
    /// (interrupted over SLO breached over failed over ok).
    pub fn and(self, other: Exit) -> Exit {
        self.max(other)
    }
}

/// Linux's SIGTERM (signal(7)).
const SIGTERM: i32 = 15;

/// The exit-code list `--help` ends with.
pub fn help_text() -> String {
    let mut s = String::from("Exit codes:\n");
    for e in Exit::ALL {
        s += &format!("  {:>3}  {}\n", e.code(), e.meaning());
    }
    s
}

/// A command line that parsed but asks for something impossible: exit 2. The message says
/// what to type instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit an error ends the command with.
pub fn classify(e: &anyhow::Error) -> Exit {
    if tcpshake_io::is_environment_error(e) {
        Exit::Environment
    } else if e
        .chain()
        .any(|c| c.is::<UsageError>() || c.is::<tcpshake_io::ports::PortTaken>())
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// How a run-time error is said on stderr. A write error with nothing said around it —
/// what a full disk, a file-size limit or a quota does to stdout (`> out.jsonl` on a full
/// disk, `> /dev/full`), every other output having its file named in its message — says
/// what was being written, in words: "No space left on device (os error 28)" alone told
/// no one which file (curl: "Failure writing output to destination").
pub fn describe(e: &anyhow::Error) -> String {
    let kind = e
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        });
    let why = match kind {
        _ if e.chain().count() > 1 => None,
        Some(std::io::ErrorKind::StorageFull) => Some("no space left on the device"),
        Some(std::io::ErrorKind::QuotaExceeded) => Some("the disk quota is exceeded"),
        Some(std::io::ErrorKind::FileTooLarge) => Some("the file is larger than the system allows"),
        _ => None,
    };
    match why {
        Some(why) => format!(
            "writing the output to stdout: {why}; what was written before is whole up to its \
             last complete line: free space, or send the output elsewhere"
        ),
        None => format!("{e:#}"),
    }
}

/// Whether `e` is a write to a closed pipe (`tcpshake … | head`): the reader has all it
/// wants, so every command stops quietly and exits 0, as ripgrep does.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            // serde_json wraps the writer's error and does not give it as its source: a
            // `--json` writer's closed pipe is found only by asking it.
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_in_order() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        assert_eq!(Exit::stopped_by(2), Exit::Interrupted);
        assert_eq!(Exit::stopped_by(15).code(), 143);
    }

    #[test]
    fn the_more_telling_exit_wins() {
        assert_eq!(Exit::Failed.and(Exit::SloBreached), Exit::SloBreached);
        assert_eq!(Exit::SloBreached.and(Exit::Interrupted), Exit::Interrupted);
        assert_eq!(Exit::Ok.and(Exit::Failed), Exit::Failed);
    }

    /// A writer whose reader is gone.
    struct ClosedPipe;

    impl std::io::Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn errors_map_to_their_kind() {
        let usage = anyhow::Error::new(UsageError("bad".into())).context("while reading");
        assert_eq!(classify(&usage), Exit::Usage);
        let env = anyhow::Error::new(tcpshake_io::EnvironmentError("no".into()));
        assert_eq!(classify(&env), Exit::Environment);
        assert_eq!(classify(&anyhow::anyhow!("other")), Exit::Failed);
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe.context("writing")));
        // What `serde_json::to_writer` returns when the pipe is closed.
        let json = serde_json::to_writer(ClosedPipe, &[1, 2, 3]).unwrap_err();
        assert!(is_broken_pipe(&anyhow::Error::new(json).context("writing")));
        let not = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(!is_broken_pipe(&anyhow::Error::new(not)));
    }

    /// A full disk under stdout is said as such, in words, whoever wrote (a plain write or
    /// serde_json's); an error with a context keeps its own words.
    #[test]
    fn a_full_disk_under_stdout_says_what_was_written() {
        struct Full;
        impl std::io::Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::StorageFull.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let plain = anyhow::Error::new(std::io::Error::from_raw_os_error(28) /* ENOSPC */);
        let json = anyhow::Error::new(serde_json::to_writer(Full, &[1]).unwrap_err());
        for e in [plain, json] {
            let said = describe(&e);
            assert!(
                said.starts_with("writing the output to stdout: no space left on the device"),
                "{said}"
            );
            assert!(!said.contains("os error"), "{said}");
        }
        let named = anyhow::Error::new(std::io::Error::from_raw_os_error(28) /* ENOSPC */)
            .context("writing the capture file");
        assert!(describe(&named).starts_with("writing the capture file: "));
        assert_eq!(describe(&anyhow::anyhow!("other")), "other");
    }

    /// README's exit-code table is this table: every code, once, with its meaning.
    #[test]
    fn readme_lists_every_exit_code() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### Exit codes")
            .expect("README has an exit-code section");
        let rows: Vec<(u8, String)> = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| code"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let (code, meaning) = l
                    .trim_matches('|')
                    .split_once('|')
                    .unwrap_or_else(|| panic!("README exit-code row without two cells: {l}"));
                let code = code
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("README exit-code row without a code: {l}"));
                (code, meaning.trim().to_string())
            })
            .collect();
        let want: Vec<(u8, String)> = Exit::ALL
            .iter()
            .map(|e| (e.code(), e.meaning().to_string()))
            .collect();
        assert_eq!(rows, want, "README's exit codes differ from app/exit.rs");
    }
}

//! `tcpshake generate man|completions SHELL` (hidden): what a package installs beside the
//! binary, generated from the same clap definitions as `--help`, so they cannot drift.
//!
//! ```sh
//! tcpshake generate man /usr/share/man/man1   # tcpshake.1, tcpshake-probe.1, …
//! tcpshake generate completions bash > /usr/share/bash-completion/completions/tcpshake
//! ```

use super::exit::{Exit, UsageError};
use crate::cli::{Cli, Generate};
use anyhow::Result;
use clap::CommandFactory;
use std::io::{self, Write};
use std::path::Path;

pub(super) fn run(what: &Generate) -> Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = io::stdout().lock();
    match what {
        Generate::Man { dir } => {
            // A directory that is missing, not one, or not writable is a usage error
            // (exit 2), as an output file that cannot be created is in every command; the
            // first page's creation finds it, before anything is written. A write that
            // fails later (a full disk) is a run-time error (exit 1).
            clap_mangen::generate_to(cmd, dir).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::ReadOnlyFilesystem => usage_dir(dir, &e),
                _ => anyhow::Error::new(e)
                    .context(format!("writing the man pages into {}", dir.display())),
            })?;
        }
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "tcpshake", &mut out);
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// Why the man pages cannot go into `dir`, and what to give instead.
fn usage_dir(dir: &Path, e: &io::Error) -> anyhow::Error {
    let d = dir.display();
    let (why, hint) = if !dir.exists() {
        (
            "no such directory".to_string(),
            format!("create it first (`mkdir -p {d}`) or give another"),
        )
    } else if !dir.is_dir() {
        (
            "it is not a directory".to_string(),
            "give a directory".to_string(),
        )
    } else {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "files cannot be created there".to_string(),
            _ => super::io_reason(e),
        };
        (why, "give a directory you can write to".to_string())
    };
    UsageError(format!(
        "generate man: cannot write the man pages into {d}: {why}; {hint}"
    ))
    .into()
}

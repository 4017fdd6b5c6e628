//! `tcpshake generate man|completions SHELL` (hidden): what a package installs beside the
//! binary, generated from the same clap definitions as `--help`, so they cannot drift.
//!
//! ```sh
//! tcpshake generate man /usr/share/man/man1   # tcpshake.1, tcpshake-probe.1, …
//! tcpshake generate completions bash > /usr/share/bash-completion/completions/tcpshake
//! ```

use super::exit::Exit;
use crate::cli::{Cli, Generate};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::{self, Write};

pub(super) fn run(what: &Generate) -> Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = io::stdout().lock();
    match what {
        Generate::Man { dir } => {
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
        }
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "tcpshake", &mut out);
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

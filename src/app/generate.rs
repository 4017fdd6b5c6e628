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
            write_man_pages(cmd, dir).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::ReadOnlyFilesystem => usage_dir(dir, &e),
                _ => anyhow::Error::new(e)
                    .context(format!("writing the man pages into {}", dir.display())),
            })?;
        }
        Generate::Completions { shell } => {
            // Into memory first: clap_complete panics on a write error (a full disk), and
            // ours is said as every command's is.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "tcpshake", &mut script);
            out.write_all(&script)?;
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// Each page's EXAMPLES (page name, then command and what it does): a man page without
/// them sends the reader to a README `cargo install` does not install. Addresses are the
/// benchmarking block and unique-local ones (RFC 2544, RFC 4193), as everywhere in the docs.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "tcpshake",
        &[
            (
                "sudo tcpshake lab",
                "See what it does, on a throwaway pair of namespaces.",
            ),
            (
                "tcpshake probe 198.18.0.2:80",
                "One probe: every segment and every leg.",
            ),
            (
                "tcpshake scan 198.18.0.0/24 -p 22,80,443",
                "Which ports are open, nmap's way.",
            ),
        ],
    ),
    (
        "tcpshake-probe",
        &[
            (
                "tcpshake probe 198.18.0.2:80",
                "Handshake, HTTP HEAD and close, each segment with its kernel timestamp.",
            ),
            (
                "tcpshake probe https://198.18.0.2/ --cacert ca.pem --pcapng x.pcapng",
                "HTTPS over our own connection; the capture carries the TLS keys for tshark.",
            ),
            (
                "tcpshake probe [fd00::2]:80 --no-http --json",
                "The handshake and the close alone, as one JSON record.",
            ),
            (
                "tcpshake probe -iL fleet.txt -p 80,443 -c 20 -i 200ms -j 64 --json",
                "A survey: every target 20 times, 64 at once, records on stdout, statistics on stderr.",
            ),
        ],
    ),
    (
        "tcpshake-scan",
        &[
            (
                "tcpshake scan 198.18.0.0/24 -p 22,80,443",
                "A SYN scan of a /24 on three ports; the table lists the open ones.",
            ),
            (
                "tcpshake scan 198.18.0.7 -p - -oA full",
                "Every port of one host; full.nmap, full.gnmap and full.xml as nmap writes them.",
            ),
            (
                "tcpshake scan -iL hosts.txt --top-ports 100 --rate 10000 --json",
                "nmap's 100 most common ports of each listed host, one JSON line per answer.",
            ),
        ],
    ),
    (
        "tcpshake-trace",
        &[
            (
                "tcpshake trace 198.18.0.2:443",
                "Which hop answers SYNs to port 443, and what each changed.",
            ),
            (
                "tcpshake trace 198.18.0.2:80 --in-session --json",
                "The same with segments inside an open connection (past stateful firewalls).",
            ),
        ],
    ),
    (
        "tcpshake-report",
        &[
            (
                "tcpshake report survey.jsonl --slo 'syn_to_synack.p99<5ms'",
                "The statistics of a survey; exit 4 when the objective is missed.",
            ),
            (
                "tcpshake report a.jsonl b.jsonl --svg legs.svg --plot cdf",
                "Two surveys together, and their distributions drawn.",
            ),
        ],
    ),
    (
        "tcpshake-exporter",
        &[
            (
                "tcpshake exporter --config /etc/tcpshake/exporter.toml --check-config",
                "Read the configuration and its target lists, say what would run, exit.",
            ),
            (
                "tcpshake exporter --config /etc/tcpshake/exporter.toml --listen 127.0.0.1:9917",
                "Serve /metrics and /probe?target=HOST:PORT to Prometheus.",
            ),
        ],
    ),
    (
        "tcpshake-lab",
        &[(
            "sudo tcpshake lab",
            "Probe a built-in HTTP peer over IPv4 and IPv6.",
        )],
    ),
];

/// README's sections a page carries (page, its section's title, README's `##` heading):
/// what `--help` points to (`--json`'s schema, the exporter's configuration) and the rest
/// of what README says of each command.
const README_SECTIONS: &[(&str, &str, &str)] = &[
    (
        "tcpshake-probe",
        "SURVEYS",
        "Surveys: many targets, repeated probes, statistics",
    ),
    (
        "tcpshake-probe",
        "ICMP ERRORS AND THE PATH MTU",
        "ICMP errors and the path MTU",
    ),
    ("tcpshake-probe", "JSON OUTPUT", "JSON output (schema 1)"),
    (
        "tcpshake-report",
        "SURVEYS",
        "Surveys: many targets, repeated probes, statistics",
    ),
    ("tcpshake-scan", "DETAILS", "Scanning: `tcpshake scan`"),
    (
        "tcpshake-trace",
        "DETAILS",
        "Finding the hop: `tcpshake trace`",
    ),
    (
        "tcpshake-exporter",
        "CONFIGURATION AND METRICS",
        "Monitoring: `tcpshake exporter`",
    ),
];
const README: &str = include_str!("../../README.md");

/// clap_mangen's pages (its `generate_to`: this command's and every visible
/// subcommand's), each followed by the README sections
/// it carries and its EXAMPLES.
fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    fn write(cmd: clap::Command, dir: &Path) -> io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let name = man.get_filename();
        let mut page = Vec::new();
        man.render(&mut page)?;
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        for (page_stem, title, heading) in README_SECTIONS {
            if *page_stem == stem {
                let md = super::manmd::section(README, heading).ok_or_else(|| {
                    io::Error::other(format!("README.md has no section `## {heading}`"))
                })?;
                page.extend_from_slice(format!(".SH {title}\n").as_bytes());
                page.extend_from_slice(super::manmd::to_roff(md).as_bytes());
            }
        }
        if let Some((_, examples)) = EXAMPLES.iter().find(|(p, _)| *p == stem) {
            page.extend_from_slice(b".SH EXAMPLES\n");
            for (command, what) in examples.iter() {
                // roff: a tagged paragraph, the command in bold; `\-` keeps a minus a minus.
                let roff = |t: &str| t.replace('\\', "\\e").replace('-', "\\-");
                page.extend_from_slice(
                    format!(".TP\n\\fB{}\\fR\n{}\n", roff(command), roff(what)).as_bytes(),
                );
            }
        }
        std::fs::write(dir.join(&name), page)
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every example parses as the command line it shows: an option renamed fails here.
    #[test]
    fn every_example_is_a_command_line_tcpshake_takes() {
        for (page, examples) in EXAMPLES {
            for (command, _) in examples.iter() {
                // As a shell splits these (no spaces inside their quotes).
                let args: Vec<&str> = command
                    .split_whitespace()
                    .filter(|a| *a != "sudo")
                    .map(|a| a.trim_matches('\''))
                    .collect();
                assert_eq!(args[0], "tcpshake", "{command}");
                assert!(
                    page.strip_prefix("tcpshake-")
                        .is_none_or(|sub| args[1] == sub),
                    "{page}: {command}"
                );
                // As main reads a command line: nmap's spellings (`-iL`, `-oA`) first.
                let args = crate::cli::nmap_spellings(args.iter().map(std::ffi::OsString::from))
                    .unwrap_or_else(|e| panic!("{command}: {}", e.0));
                if let Err(e) = crate::cli::Cli::try_parse_from(&args) {
                    panic!("{command}: {e}");
                }
            }
        }
    }
}

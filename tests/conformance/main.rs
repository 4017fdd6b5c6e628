//! tcpshake's conformance suite: packetdrill-style scripts against the real binary.
//!
//! Each `tests/conformance/scripts/*.pkt` lists, with timing, the segments a scripted
//! server sends and the segments the client must send back, and what the client must
//! conclude. Every script runs as its own test against tcpshake (`tcpshake probe` in a
//! client network namespace) and, unless it says `@tcpshake-only`, against the Linux
//! kernel's client (a Python socket doing what a probe does) in the same kind of lab, so
//! the run shows tcpshake and Linux behave the same on the wire — or where they differ on
//! purpose, the script says so (`@differs-from-linux ID: why`) and README.md's table
//! lists it (checked by `conformance::readme_lists_every_difference`).
//!
//! Decisions:
//! - **The peer is Rust in the test process**, on an AF_PACKET socket made in the server
//!   namespace (`peer.rs`), with `meta l4proto tcp drop` at the server's input so its
//!   kernel never answers; no Python, no scapy on the peer's side. Packets are built and
//!   read by `packet.rs`, written for this suite: tcpshake's `wire` module is what is
//!   under test, so it is not used to judge itself.
//! - **One trial per (script, client)**, named `conformance::<script>::<client>`, each a
//!   separate nextest process with its own namespaces (`tests/lab`), so trials run in
//!   parallel and clean up by `Drop` on failure. A custom harness (libtest-mimic) finds
//!   the scripts at run time: adding a scenario is adding a file.
//! - **Script syntax** is packetdrill's where packetdrill has one (README.md, section
//!   "Conformance scripts"): relative sequence numbers (ours from the client's ISN, the
//!   peer's from its own), `+t` times relative to the previous event's actual time, `<…>`
//!   options, `< icmp … [seq:end(len)]`. System-call lines of client scripts brought over
//!   are skipped: the client's actions are fixed by `@app`.
//! - **Outgoing TSvals are bound, not checked**: the first `TS val V` binds V to what the
//!   client sent, and a later injected `ecr V` echoes that value (packetdrill's trick);
//!   `ecr ?` echoes the client's latest TSval. Options are compared as a set without NOPs.
//! - **Strict silence**: a client segment no line expects fails the run, also after the
//!   last line until the client has exited and the wire was quiet for `@quiet`.
//! - **xfail is a promise, not a skip**: `@xfail CLIENT: why (issue item)` expects the run
//!   to fail; a run that passes (XPASS) fails the trial, so the mark must go when the fix
//!   lands. The failure is still printed, so the trial's output is the bug report.
//! - **Timing**: each `>` line must arrive within its time (or range `lo~hi`) ± the
//!   tolerance (`@tolerance`, 80 ms by default: wide enough for a loaded 2-CPU CI machine,
//!   narrow enough to tell "at once" from "after a 200 ms RTO").

#[path = "../lab/mod.rs"]
mod lab;
mod packet;
mod peer;
mod runner;
mod script;

use libtest_mimic::{Arguments, Failed, Trial};
use script::{Client, Script};
use std::path::{Path, PathBuf};

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/scripts")
}

fn script_paths() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("tests/conformance/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pkt"))
        .collect();
    v.sort();
    v
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

fn run_trial(script: &Script, client: Client) -> Result<(), Failed> {
    // Under CI=true a missing root fails here; elsewhere the trial was listed as ignored.
    lab::require_root();
    let outcome = runner::run(script, client);
    match (script.xfail(client), outcome) {
        (None, Ok(())) => Ok(()),
        (None, Err(report)) => Err(report.into()),
        (Some(why), Err(report)) => {
            eprintln!("expected failure ({why}):\n{report}");
            Ok(())
        }
        (Some(why), Ok(())) => Err(format!(
            "XPASS: {} passed against {} but is marked `@xfail {}: {why}`; the bug is \
             fixed, remove the mark",
            script.path.display(),
            client.name(),
            client.name()
        )
        .into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let root = is_root();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut trials = vec![Trial::test(
        "conformance::readme_lists_every_difference",
        || readme::check().map_err(Failed::from),
    )];
    for path in script_paths() {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match script::parse_file(&path) {
            Err(e) => trials.push(Trial::test(
                format!("conformance::{stem}::parse"),
                move || Err(e.clone().into()),
            )),
            Ok(s) => {
                for client in s.clients.clone() {
                    let s = s.clone();
                    let name = format!("conformance::{stem}::{}", client.name());
                    trials.push(
                        Trial::test(name, move || run_trial(&s, client))
                            .with_ignored_flag(!root && !ci),
                    );
                }
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

mod readme {
    //! README.md's table of deliberate differences from Linux's client, generated from the
    //! scripts' `@differs-from-linux` notes. `CONFORMANCE_WRITE_README=1` rewrites it
    //! (scripts/conformance-table does that); otherwise the test checks it is current.

    use super::*;

    const BEGIN: &str = "<!-- conformance-differences: generated from tests/conformance/scripts by scripts/conformance-table -->";
    const END: &str = "<!-- end of conformance-differences -->";

    pub fn table() -> Result<String, String> {
        // id → (why, scripts)
        let mut rows: std::collections::BTreeMap<String, (String, Vec<String>)> =
            Default::default();
        for p in script_paths() {
            let s = script::parse_file(&p)?;
            for (id, why) in &s.differs {
                let row = rows
                    .entry(id.clone())
                    .or_insert_with(|| (why.clone(), Vec::new()));
                if row.0 != *why {
                    return Err(format!(
                        "{}: @differs-from-linux {id} is explained differently elsewhere:\n  {why}\n  {}",
                        p.display(),
                        row.0
                    ));
                }
                row.1.push(format!("`{}`", s.name));
            }
        }
        let mut t =
            String::from("| difference | what differs, and why | scenarios |\n|---|---|---|\n");
        for (id, (why, scripts)) in rows {
            t.push_str(&format!("| `{id}` | {why} | {} |\n", scripts.join(", ")));
        }
        Ok(t)
    }

    pub fn check() -> Result<(), String> {
        let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&readme_path).map_err(|e| e.to_string())?;
        let table = table()?;
        let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
            return Err(format!("README.md lacks the markers {BEGIN} … {END}"));
        };
        let current = readme[b + BEGIN.len()..e].trim();
        if current == table.trim() {
            return Ok(());
        }
        if std::env::var_os("CONFORMANCE_WRITE_README").is_some() {
            let new = format!("{}{BEGIN}\n{}{}", &readme[..b], table, &readme[e..]);
            std::fs::write(&readme_path, new).map_err(|e| e.to_string())?;
            return Ok(());
        }
        Err(format!(
            "README.md's table of differences from Linux is out of date; run \
             scripts/conformance-table. It should read:\n{table}"
        ))
    }
}

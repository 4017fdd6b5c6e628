//! `tcpshake report FILE…`: the statistics of surveys' JSON Lines (several shards
//! concatenate), as a table or JSON, an SVG plot, and the `--slo` verdicts.

use super::exit::{Exit, UsageError};
use crate::cli::PlotKind;
use crate::config::ReportConfig;
use crate::report::survey::{parse_record, stats_json, write_table};
use anyhow::{Context, Result};
use std::io::{self, BufRead, Write};
use std::path::Path;
use tcpshake_proto::probe::stats::{Slo, Survey};

pub(super) fn run(args: &ReportConfig) -> Result<Exit> {
    // The plot's path is checked first, not after the whole table was printed: opened for
    // writing, not truncated (a report refused below leaves an existing file as it was).
    // Removed on refusal only when this run created it — as root, `--svg /dev/null` once
    // removed /dev/null.
    let created_svg = match &args.svg {
        Some(svg) => {
            let existed = svg.symlink_metadata().is_ok();
            super::open_output(
                svg,
                "--svg",
                std::fs::OpenOptions::new().write(true).create(true),
            )?;
            !existed
        }
        None => false,
    };
    refuse_repeated_files(&args.files)?;
    let mut stats = Survey::default();
    let read = args
        .files
        .iter()
        .try_for_each(|path| read_jsonl(path, &mut stats));
    let read = read.and_then(|()| {
        if stats.probes() == 0 {
            return Err(UsageError(
                "no probe records in the input; give files written by `tcpshake probe --json`"
                    .into(),
            )
            .into());
        }
        Ok(())
    });
    if let Err(e) = read {
        if let Some(svg) = args.svg.as_ref().filter(|_| created_svg) {
            let _ = std::fs::remove_file(svg);
        }
        return Err(e);
    }
    // Records come in the order probes ended; the table lists targets as they were given.
    stats.order_by_first_start();
    // A closed stdout (`report … --svg F | head`) must not leave the SVG unwritten.
    let mut out = super::Stdout::new(args.svg.is_some());
    if args.json {
        let mut j = stats_json(&stats);
        // -q: the overall statistics only, in JSON as in the table.
        if args.quiet
            && let Some(o) = j.as_object_mut()
        {
            o.remove("targets");
        }
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
    } else {
        // Flushed here, not by the drop, which would swallow a write error (a full disk:
        // the table lost, exit 0).
        let mut table = io::BufWriter::new(&mut out);
        write_table(&mut table, &stats, args.quiet)?;
        table.flush()?;
    }
    out.flush()?;
    if let Some(svg) = &args.svg {
        crate::report::svg::write_svg(&stats, svg, args.plot == PlotKind::Cdf)
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok(if judge(&args.slos, &stats) {
        Exit::SloBreached
    } else {
        Exit::Ok
    })
}

/// A file given twice (by any path; stdin `-` twice) would count each of its probes twice:
/// refused before anything is read.
fn refuse_repeated_files(files: &[std::path::PathBuf]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut seen: Vec<(Option<(u64, u64)>, &Path)> = Vec::new();
    for f in files {
        let id = match f.as_os_str() == "-" {
            true => None,
            // One that cannot be read is reported when it is read.
            false => match std::fs::metadata(f) {
                Ok(m) => Some((m.dev(), m.ino())),
                Err(_) => continue,
            },
        };
        if let Some((_, first)) = seen.iter().find(|(other, _)| *other == id) {
            let same = if first == f {
                format!("{} is given twice", f.display())
            } else {
                format!("{} and {} are the same file", first.display(), f.display())
            };
            return Err(UsageError(format!(
                "{same}: its probes would count twice; give each file once"
            ))
            .into());
        }
        seen.push((id, f));
    }
    Ok(())
}

/// Add every record of one JSON Lines file. A last line cut short (a survey killed while
/// writing it) is skipped with a warning, and so is a record cut short anywhere (the next
/// run appended after it); any other bad line is an error naming it.
fn read_jsonl(path: &Path, stats: &mut Survey) -> Result<()> {
    let (name, mut reader) = if path.as_os_str() == "-" {
        (
            "stdin".to_string(),
            Box::new(io::BufReader::new(io::stdin())) as Box<dyn BufRead>,
        )
    } else {
        let f = super::open_input(path, "")?;
        (
            path.display().to_string(),
            Box::new(io::BufReader::new(f)) as Box<dyn BufRead>,
        )
    };
    let mut line = String::new();
    let mut n = 0usize;
    // Bounded by the file: each pass consumes one line.
    loop {
        line.clear();
        n += 1;
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(not_ours(&name, n, "is not UTF-8 text").into());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match parse_record(text) {
            Ok((target, Some(sample))) => stats.add(&target, &sample),
            // An interrupted probe is in no statistic, but its target was asked for: the
            // title counts it ("and 1 target without a finished probe"), as the survey's
            // own table did for the same records.
            Ok((target, None)) => stats.declare(&target),
            Err(_) if !line.ends_with('\n') => {
                eprintln!(
                    "tcpshake: {name}, line {n}: the last line is cut short (a run still writing, or stopped mid-line); skipped"
                );
            }
            // A record cut short and ended by the next run that appended to the file (the
            // exporter's `--records` ends a killed run's last line before it writes; so
            // does a shell's `>>` of the next survey): skipped the same way, wherever it is.
            Err(_) if text.starts_with(RECORD_START) => {
                eprintln!(
                    "tcpshake: {name}, line {n}: a record cut short (a run killed while writing it, the file appended to after); skipped"
                );
            }
            // Not JSON, or JSON but not an object: some other file.
            Err(_)
                if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                    .is_err() =>
            {
                return Err(not_ours(&name, n, "is not a JSON object").into());
            }
            // An object, but not a record: what is wrong with it may help.
            Err(e) => {
                return Err(UsageError(format!(
                    "{name}, line {n}: not a tcpshake probe record (schema 1): {e}; give files \
                     written by `tcpshake probe --json`"
                ))
                .into());
            }
        }
    }
}

/// How every probe record's line begins (`"schema"` is its first field).
const RECORD_START: &str = "{\"schema\":";

/// A file that is not tcpshake's JSON Lines at all: which, where, what to give instead.
fn not_ours(name: &str, line: usize, what: &str) -> UsageError {
    UsageError(format!(
        "{name} is not a tcpshake JSON Lines file (line {line} {what}); give files written by \
         `tcpshake probe --json`"
    ))
}

/// Print each SLO's verdict on stderr; true when one was breached.
pub(super) fn judge(slos: &[Slo], stats: &Survey) -> bool {
    if slos.is_empty() {
        return false;
    }
    let all = stats.overall();
    let mut breached = false;
    for slo in slos {
        let v = slo.judge(&all);
        eprintln!("{v}");
        breached |= !v.met;
    }
    breached
}

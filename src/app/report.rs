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
    let mut stats = Survey::default();
    for path in &args.files {
        read_jsonl(path, &mut stats)?;
    }
    // Records come in the order probes ended; the table lists targets as they were given.
    stats.order_by_first_start();
    if stats.probes() == 0 {
        return Err(UsageError(
            "no probe records in the input; give files written by `tcpshake probe --json`".into(),
        )
        .into());
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &stats_json(&stats))?;
        writeln!(out)?;
    } else {
        write_table(&mut io::BufWriter::new(&mut out), &stats, args.quiet)?;
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

/// Add every record of one JSON Lines file. A last line cut short (a survey killed while
/// writing it) is skipped with a warning; any other bad line is an error naming it.
fn read_jsonl(path: &Path, stats: &mut Survey) -> Result<()> {
    let (name, mut reader) = if path.as_os_str() == "-" {
        (
            "stdin".to_string(),
            Box::new(io::BufReader::new(io::stdin())) as Box<dyn BufRead>,
        )
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
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
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {name}"))?
            == 0
        {
            return Ok(());
        }
        n += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match parse_record(text) {
            Ok((target, Some(sample))) => stats.add(&target, &sample),
            Ok((_, None)) => {}
            Err(_) if !line.ends_with('\n') => {
                eprintln!("tcpshake: {name}:{n}: last line is cut short; skipped");
            }
            Err(e) => {
                return Err(UsageError(format!(
                    "{name}:{n}: not a tcpshake probe record (schema 1): {e}"
                ))
                .into());
            }
        }
    }
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

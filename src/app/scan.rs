//! `tcpshake scan`: command line → targets, ports and plan; run; write the reports.

use super::exit::{Exit, UsageError};
use super::targets::TargetList;
use crate::config::{Exchange, ScanConfig, scan_spec};
use crate::report::scan_nmap::{self, RunInfo};
use crate::report::scan_text;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::{Family, resolve_name};
use tcpshake_io::run;
use tcpshake_io::scan::{self, Progress, ScanPlan};
use tcpshake_io::{is_environment_error, random, signals};
use tcpshake_proto::probe::ProbeConfig;
use tcpshake_proto::probe::record::{Legs, PortState};
use tcpshake_proto::probe::scan::targets::{Spec, TargetSet, TargetSpec};
use tcpshake_proto::probe::scan::{Completion, ScanRecord};

pub(super) fn run(args: &ScanConfig) -> Result<Exit> {
    let (plan, skipped) = plan(args)?;
    let Some(plan) = plan else {
        return Ok(Exit::Failed);
    };
    let stop = signals::stop_flag();
    let keep =
        !args.json || args.output_greppable.is_some() || args.output_xml.is_some() || args.complete;
    // With --complete an open port's line waits for its connection.
    let defer = |r: &ScanRecord| args.complete && r.state == PortState::Open;
    let mut records: Vec<ScanRecord> = Vec::new();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let bar = progress_bar(plan.planned());
    let start_secs = unix_now();
    let outcome = scan::run(
        &plan,
        stop,
        |r| {
            if args.json && !defer(r) {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
            if keep {
                records.push(r.clone());
            }
            Ok(())
        },
        |p: &Progress| {
            if let Some(bar) = &bar {
                update_bar(bar, p);
            }
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let outcome = outcome?;
    if args.complete {
        complete_open(&mut records, stop)?;
        if args.json {
            for r in records.iter().filter(|r| defer(r)) {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        }
    }
    let summary = scan_text::summary(
        &outcome.totals,
        outcome.duration,
        outcome.send_time,
        outcome.interrupted,
    );
    if args.json {
        out.flush()?;
        eprintln!("{summary}");
    } else {
        write!(out, "{}", scan_text::render(&records, args.all))?;
        writeln!(out, "{summary}")?;
    }
    let info = RunInfo {
        args: &std::env::args().collect::<Vec<_>>().join(" "),
        start_secs,
        end_secs: unix_now(),
        elapsed: outcome.duration,
        ports: &plan.ports,
        addresses: plan.targets.len(),
    };
    if let Some(p) = &args.output_greppable {
        write_file(p, &scan_nmap::greppable(&records, &info), &mut out)?;
    }
    if let Some(p) = &args.output_xml {
        write_file(p, &scan_nmap::xml(&records, &info), &mut out)?;
    }
    out.flush()?;
    // An interrupted scan exits as every interrupted command does (`app::main`).
    Ok(if skipped || outcome.interrupted {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// `--complete`: connect to every open port found, one at a time, and keep the handshake
/// and close legs. The scan itself already reset its half-open connection; this is a new
/// one, from a new source port, that the probe machinery completes (RFC 9293 §3.5) and
/// closes with our FIN (§3.6), so the target keeps neither a half-open nor a CLOSE-WAIT
/// connection. Ctrl-C stops it; the ports not yet connected keep no completion.
fn complete_open(records: &mut [ScanRecord], stop: &AtomicBool) -> Result<()> {
    if !records.iter().any(|r| r.state == PortState::Open) {
        return Ok(());
    }
    let mut guard = Guard::install(MARK)?;
    for r in records.iter_mut().filter(|r| r.state == PortState::Open) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let remote = SocketAddr::new(r.addr, r.port);
        r.complete = Some(complete_one(remote, &mut guard, stop)?);
    }
    Ok(())
}

/// One `tcpshake probe --no-http` connection. Only an environment error (no privilege, no
/// raw socket) stops the command; anything else is this port's `complete_error`.
fn complete_one(remote: SocketAddr, guard: &mut Guard, stop: &AtomicBool) -> Result<Completion> {
    let failed = |e: anyhow::Error| Completion {
        legs_ns: Legs::default(),
        close_initiator: None,
        complete_error: Some(format!("{e:#}")),
    };
    let path = match run::Path::new(remote, None) {
        Ok(p) => p,
        Err(e) if is_environment_error(&e) => return Err(e),
        Err(e) => return Ok(failed(e)),
    };
    // The probe's defaults (`tcpshake probe --no-http`): Linux's SYN, a random ISN
    // (RFC 6528).
    let ex = Exchange::default();
    let cfg = ProbeConfig {
        target: remote.to_string(),
        tcp: super::tcp_config(&ex, path.local, remote, path.mss()),
        http: None,
        timeout: ex.timeout,
        linger: ex.linger,
        tls: None,
    };
    match run::run(path, cfg, guard, false, stop) {
        Ok(o) => Ok(Completion {
            legs_ns: o.result.legs_ns,
            close_initiator: o.result.close_initiator,
            complete_error: o.result.error,
        }),
        Err(e) if is_environment_error(&e) => Err(e),
        Err(e) => Ok(failed(e)),
    }
}

fn write_file(path: &Path, text: &str, stdout: &mut impl Write) -> Result<()> {
    if path.as_os_str() == "-" {
        stdout.write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The plan: targets read and resolved, exclusions applied. `None` when no target is
/// left; `true` when something was skipped (a bad list line, a name that did not
/// resolve), which the exit code says.
fn plan(args: &ScanConfig) -> Result<(Option<ScanPlan>, bool)> {
    let mut skipped = false;
    let mut targets = resolve_specs(&args.targets, args.family, &mut skipped);
    if let Some(p) = &args.list {
        let specs = read_list(p, args.family, &mut skipped)?;
        targets.extend(resolve_specs(&specs, args.family, &mut skipped));
    }
    let mut exclude = Vec::new();
    let mut exclude_specs = args.exclude.clone();
    if let Some(p) = &args.exclude_list {
        exclude_specs.extend(read_list(p, Family::Any, &mut skipped)?);
    }
    // An excluded name is excluded at every address it has.
    for spec in exclude_specs {
        match spec {
            TargetSpec::Addrs(s) => exclude.push(s),
            TargetSpec::Name { name, prefix } => match resolve_name(&name, Family::Any) {
                Ok(addrs) => {
                    for a in addrs {
                        exclude.push(Spec::cidr(a, prefix, &name).map_err(UsageError)?);
                    }
                }
                Err(e) => {
                    eprintln!("tcpshake: --exclude: {e:#}");
                    skipped = true;
                }
            },
        }
    }
    if targets.is_empty() {
        eprintln!("tcpshake: no target left to scan");
        return Ok((None, true));
    }
    let targets = TargetSet::new(targets, exclude).map_err(|e| UsageError(e.to_string()))?;
    let total = targets.len().checked_mul(args.ports.len() as u64);
    if total.is_none_or(|t| t >= 1 << 62) {
        return Err(UsageError("too many (address, port) pairs for one scan".into()).into());
    }
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()));
    let plan = ScanPlan {
        targets,
        ports: args.ports.clone(),
        seed,
        shard: args.shard,
        rate: args.rate,
        retries: args.retries,
        wait: args.wait,
        source_port: args.source_port,
    };
    Ok((Some(plan), skipped))
}

/// Address specs as they are; a name at its first address of the wanted family (as nmap
/// does), or reported and skipped.
fn resolve_specs(specs: &[TargetSpec], family: Family, skipped: &mut bool) -> Vec<Spec> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            TargetSpec::Addrs(s) => out.push(s.clone()),
            TargetSpec::Name { name, prefix } => {
                let cidr = resolve_name(name, family)
                    .and_then(|a| Spec::cidr(a[0], *prefix, name).map_err(anyhow::Error::msg));
                match cidr {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        eprintln!("tcpshake: {e:#}");
                        *skipped = true;
                    }
                }
            }
        }
    }
    out
}

/// A target list's specs; its bad lines and bad specs are reported and skipped.
fn read_list(path: &Path, family: Family, skipped: &mut bool) -> Result<Vec<TargetSpec>> {
    let mut list = TargetList::open(path)?;
    let mut out = Vec::new();
    while let Some((origin, specs)) = list.next_line() {
        for text in specs {
            match scan_spec(&text, family) {
                Ok(s) => out.push(s),
                Err(e) => list.skip(&origin, e),
            }
        }
    }
    *skipped |= list.skipped > 0;
    Ok(out)
}

fn progress_bar(planned: u64) -> Option<ProgressBar> {
    if !super::live_stderr() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} round {prefix} · {msg} · ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

fn update_bar(bar: &ProgressBar, p: &Progress) {
    let t = &p.totals;
    bar.set_position(p.done.min(p.planned));
    bar.set_prefix((p.round + 1).to_string());
    bar.set_message(format!(
        "sent {} · replies {} · open {} · {:.0} pps",
        t.sent,
        t.open + t.closed + t.filtered_icmp,
        t.open,
        bar.per_sec()
    ));
}

//! `tcpshake scan`: command line → targets, ports and plan; run; write the reports.

use super::{EXIT_NOT_OPEN, EXIT_OK, UsageError};
use crate::cli::ScanArgs;
use crate::report::scan_nmap::{self, RunInfo};
use crate::report::scan_text;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::run;
use tcpshake_io::scan::{self, Progress, ScanPlan};
use tcpshake_io::{is_environment_error, random, signals};
use tcpshake_proto::probe::ProbeConfig;
use tcpshake_proto::probe::record::{Legs, PortState};
use tcpshake_proto::probe::scan::permute::Shard;
use tcpshake_proto::probe::scan::targets::{self, Spec, TargetSet, TargetSpec};
use tcpshake_proto::probe::scan::{Completion, ScanRecord, ports};

pub fn scan_command(args: &ScanArgs) -> Result<u8> {
    let plan = plan(args)?;
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
    Ok(if outcome.interrupted {
        EXIT_NOT_OPEN
    } else {
        EXIT_OK
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
    // The probe's defaults (`tcpshake probe`): Linux's SYN, a random ISN (RFC 6528).
    let tcp = super::default_tcp_config(path.local, remote, path.mss());
    let cfg = ProbeConfig {
        target: remote.to_string(),
        tcp,
        http: None,
        timeout: Duration::from_secs(5),
        linger: Duration::from_millis(200),
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

/// Validate the command line into a plan. Every mistake is a [`UsageError`] naming it.
fn plan(args: &ScanArgs) -> Result<ScanPlan> {
    let mut specs_text: Vec<String> = args.targets.clone();
    if let Some(p) = &args.input_list {
        let text = read_list(p)?;
        specs_text.extend(targets::split_list(&text).map(String::from));
    }
    if specs_text.is_empty() {
        return Err(UsageError(
            "no targets: give addresses, ranges or CIDR blocks, or -iL FILE".into(),
        )
        .into());
    }
    let want = family(args);
    let mut specs = Vec::new();
    for t in &specs_text {
        match targets::parse(t).map_err(UsageError)? {
            TargetSpec::Addrs(s) => specs.push(s),
            TargetSpec::Name { name, prefix } => match resolve(&name, want).first() {
                Some(&a) => specs.push(Spec::cidr(a, prefix, t).map_err(UsageError)?),
                None => eprintln!("tcpshake: cannot resolve `{name}`; skipping it"),
            },
        }
    }
    if specs.is_empty() {
        return Err(UsageError("no target could be resolved".into()).into());
    }
    let mut exclude_text: Vec<String> = args.exclude.clone();
    if let Some(p) = &args.excludefile {
        let text = read_list(p)?;
        exclude_text.extend(targets::split_list(&text).map(String::from));
    }
    let mut exclude = Vec::new();
    for t in &exclude_text {
        match targets::parse(t).map_err(|e| UsageError(format!("--exclude: {e}")))? {
            TargetSpec::Addrs(s) => exclude.push(s),
            TargetSpec::Name { name, prefix } => {
                for a in resolve(&name, None) {
                    exclude.push(Spec::cidr(a, prefix, t).map_err(UsageError)?);
                }
            }
        }
    }
    let targets = TargetSet::new(specs, exclude).map_err(|e| UsageError(e.to_string()))?;
    let ports = match (&args.ports, args.top_ports) {
        (Some(p), _) => ports::parse(p),
        (None, Some(n)) => ports::top(n),
        (None, None) => ports::top(1000),
    }
    .map_err(UsageError)?;
    let total = targets.len().checked_mul(ports.len() as u64);
    if total.is_none_or(|t| t >= 1 << 62) {
        return Err(UsageError("too many (address, port) pairs for one scan".into()).into());
    }
    let shard = match &args.shard {
        Some(s) => {
            let shard = Shard::parse(s).map_err(UsageError)?;
            if args.seed.is_none() {
                return Err(UsageError(format!(
                    "--shard {s} needs --seed N, the same N for every shard, so that the \
                     shards cut one order into disjoint slices"
                ))
                .into());
            }
            shard
        }
        None => Shard::WHOLE,
    };
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()));
    Ok(ScanPlan {
        targets,
        ports,
        seed,
        shard,
        rate: args.rate,
        retries: args.retries,
        wait: args.wait,
        source_port: args.source_port,
    })
}

fn family(args: &ScanArgs) -> Option<bool> {
    match (args.ipv4, args.ipv6) {
        (true, _) => Some(false),
        (_, true) => Some(true),
        _ => None,
    }
}

/// A name's addresses (the system resolver), optionally of one family (`Some(true)`: v6).
fn resolve(name: &str, v6: Option<bool>) -> Vec<IpAddr> {
    (name, 0)
        .to_socket_addrs()
        .map(|it| {
            it.map(|a| a.ip())
                .filter(|a| v6.is_none_or(|v6| a.is_ipv6() == v6))
                .collect()
        })
        .unwrap_or_default()
}

fn read_list(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("reading targets from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| UsageError(format!("{e:#}")).into())
}

fn progress_bar(planned: u64) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
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

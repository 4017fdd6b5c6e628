//! `tcpshake scan`: command line → targets, ports and plan; run; write the reports.

use super::{EXIT_NOT_OPEN, EXIT_OK, UsageError};
use crate::cli::ScanArgs;
use crate::report::scan_nmap::{Greppable, RunEnd, RunInfo, Xml};
use crate::report::scan_text;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
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
use tcpshake_proto::probe::record::{Legs, PortState, Reason};
use tcpshake_proto::probe::scan::permute::Shard;
use tcpshake_proto::probe::scan::results::{Answers, Coverage, Walk};
use tcpshake_proto::probe::scan::targets::{self, Spec, TargetSet, TargetSpec};
use tcpshake_proto::probe::scan::{Completion, ScanRecord, ports};

/// The host names typed on the command line (or in -iL), by the address each resolved to.
type Names = BTreeMap<IpAddr, Vec<String>>;

/// nmap's stylesheet: the local copy when nmap is installed (what nmap itself points at),
/// else the copy nmap's `--webxml` points at.
const XSL_LOCAL: &str = "/usr/share/nmap/nmap.xsl";
const XSL_WEB: &str = "https://svn.nmap.org/nmap/docs/nmap.xsl";

/// Where -oX / -oG go: a file, created before the scan so a bad path fails at once, or
/// stdout (`-`), which that format then has to itself.
type Sink = BufWriter<Box<dyn Write>>;

fn open_sink(path: &Path, flag: &str) -> Result<Sink> {
    if path.as_os_str() == "-" {
        return Ok(BufWriter::new(Box::new(io::stdout())));
    }
    let f = File::create(path).map_err(|e| {
        UsageError(format!(
            "{flag} {}: cannot write there ({e}); give a writable path",
            path.display()
        ))
    })?;
    Ok(BufWriter::new(Box::new(f)))
}

fn is_stdout(p: &Option<std::path::PathBuf>) -> bool {
    p.as_ref().is_some_and(|p| p.as_os_str() == "-")
}

/// Only one format can own stdout, as with nmap's `-oX -`: a parser reading it must find
/// nothing else there.
fn check_stdout(args: &ScanArgs) -> Result<()> {
    let (x, g) = (
        is_stdout(&args.output_xml),
        is_stdout(&args.output_greppable),
    );
    let clash = match (args.json, x, g) {
        (true, true, _) => Some("--json and -oX -"),
        (true, _, true) => Some("--json and -oG -"),
        (_, true, true) => Some("-oX - and -oG -"),
        _ => None,
    };
    match clash {
        Some(both) => Err(UsageError(format!(
            "{both} both write to stdout; send one of them to a file (e.g. -oX scan.xml)"
        ))
        .into()),
        None => Ok(()),
    }
}

pub fn scan_command(args: &ScanArgs) -> Result<u8> {
    let (plan, names) = plan(args)?;
    check_stdout(args)?;
    let mut xml = args
        .output_xml
        .as_deref()
        .map(|p| open_sink(p, "-oX"))
        .transpose()?;
    let mut greppable = args
        .output_greppable
        .as_deref()
        .map(|p| open_sink(p, "-oG"))
        .transpose()?;
    // The table goes to stdout unless stdout carries a format (JSON Lines, XML, -oG).
    let table = !args.json && !is_stdout(&args.output_xml) && !is_stdout(&args.output_greppable);
    // The reports after the scan need every silent port: walk the scanned pairs.
    let walk = xml.is_some() || greppable.is_some() || args.all;
    // Kept for after the scan: the walk needs every answered port; the table without
    // --all and --complete need the open ones only.
    let keep = |r: &ScanRecord| walk || ((table || args.complete) && r.state == PortState::Open);
    let stop = signals::stop_flag();
    // With --complete an open port's line waits for its connection.
    let defer = |r: &ScanRecord| args.complete && r.state == PortState::Open;
    let mut answers = Answers::default();
    let mut out = BufWriter::new(io::stdout().lock());
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
            if keep(r) {
                answers.insert(r);
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
    answers.sort();
    if args.complete {
        complete_open(&mut answers, stop)?;
        if args.json {
            for (addr, a) in answers.iter() {
                for p in a.iter().filter(|p| p.state == PortState::Open) {
                    serde_json::to_writer(&mut out, &p.record(addr))?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    let summary = scan_text::summary(
        &outcome.totals,
        outcome.duration,
        outcome.send_time,
        outcome.interrupted,
    );
    let args_line = std::env::args().collect::<Vec<_>>().join(" ");
    let stylesheet = if Path::new(XSL_LOCAL).exists() {
        format!("file://{XSL_LOCAL}")
    } else {
        XSL_WEB.to_string()
    };
    let info = RunInfo {
        args: &args_line,
        start_secs,
        ports: &plan.ports,
        stylesheet: &stylesheet,
    };
    let mut xml = xml.take().map(|w| Xml::start(w, &info)).transpose()?;
    let mut greppable = greppable
        .take()
        .map(|w| Greppable::start(w, &info))
        .transpose()?;
    let no_names = Vec::new();
    let names_of = |a: IpAddr| names.get(&a).unwrap_or(&no_names);
    // A silent port's line is dated when the scan stopped waiting for it.
    let gave_up_ns = (outcome.started + outcome.duration).as_nanos();
    let (mut up, mut down) = (0, 0);
    if walk {
        let coverage = Coverage::new(
            &plan.targets,
            &plan.ports,
            plan.seed,
            plan.shard,
            outcome.walked,
        );
        let mut hosts = Walk::new(&coverage, &answers, args.all);
        for h in hosts.by_ref() {
            if let Some(x) = &mut xml {
                x.host(&h, names_of(h.addr))?;
            }
            if let Some(g) = &mut greppable {
                g.host(&h)?;
            }
            if table {
                scan_text::host(&mut out, &h, names_of(h.addr), args.all)?;
            }
            if args.json && args.all {
                for &port in &h.silent {
                    serde_json::to_writer(&mut out, &silent_record(h.addr, port, gave_up_ns))?;
                    out.write_all(b"\n")?;
                }
            }
        }
        (up, down) = (hosts.up_hosts(), hosts.silent_hosts());
    } else if table {
        for (addr, answered) in answers.iter() {
            let h = tcpshake_proto::probe::scan::results::HostPorts {
                addr,
                answered,
                silent: Vec::new(),
            };
            scan_text::host(&mut out, &h, names_of(addr), false)?;
        }
    }
    if table {
        writeln!(out, "{summary}")?;
    }
    out.flush()?;
    let error = "interrupted by a signal: only the pairs sent before it are reported";
    let end = RunEnd {
        end_secs: unix_now(),
        elapsed: outcome.duration,
        up,
        down,
        error: outcome.interrupted.then_some(error),
    };
    if let Some(x) = xml {
        x.finish(&end).context("writing -oX")?;
    }
    if let Some(g) = greppable {
        g.finish(&end).context("writing -oG")?;
    }
    if !table {
        eprintln!("{summary}");
    }
    Ok(if outcome.interrupted {
        EXIT_NOT_OPEN
    } else {
        EXIT_OK
    })
}

/// A port that never answered, as `--all --json` lists it: filtered/no-response with no
/// reply (TTL 0, as nmap's `reason_ttl`; no RTT), dated when the scan gave up on it.
fn silent_record(addr: IpAddr, port: u16, gave_up_ns: u64) -> ScanRecord {
    ScanRecord {
        addr,
        port,
        state: PortState::Filtered,
        reason: Reason::NoResponse,
        reply_ttl: 0,
        rtt_ns: None,
        t_ns: gave_up_ns,
        complete: None,
    }
}

/// `--complete`: connect to every open port found, one at a time, and keep the handshake
/// and close legs. The scan itself already reset its half-open connection; this is a new
/// one, from a new source port, that the probe machinery completes (RFC 9293 §3.5) and
/// closes with our FIN (§3.6), so the target keeps neither a half-open nor a CLOSE-WAIT
/// connection. Ctrl-C stops it; the ports not yet connected keep no completion.
fn complete_open(answers: &mut Answers, stop: &AtomicBool) -> Result<()> {
    if !answers
        .iter()
        .any(|(_, a)| a.iter().any(|p| p.state == PortState::Open))
    {
        return Ok(());
    }
    let mut guard = Guard::install(MARK)?;
    for (addr, p) in answers
        .iter_mut()
        .filter(|(_, p)| p.state == PortState::Open)
    {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let remote = SocketAddr::new(addr, p.port);
        p.complete = Some(Box::new(complete_one(remote, &mut guard, stop)?));
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Validate the command line into a plan, and the host names typed by the address each
/// stands for. Every mistake is a [`UsageError`] naming it.
fn plan(args: &ScanArgs) -> Result<(ScanPlan, Names)> {
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
    let mut names = Names::new();
    for t in &specs_text {
        match targets::parse(t).map_err(UsageError)? {
            TargetSpec::Addrs(s) => specs.push(s),
            TargetSpec::Name { name, prefix } => match resolve(&name, want).first() {
                Some(&a) => {
                    specs.push(Spec::cidr(a, prefix, t).map_err(UsageError)?);
                    // The name is the address it resolved to, not its whole block (nmap
                    // names only that one in `name/24`).
                    let typed = names.entry(a).or_default();
                    if !typed.contains(&name) {
                        typed.push(name);
                    }
                }
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
    let plan = ScanPlan {
        targets,
        ports,
        seed,
        shard,
        rate: args.rate,
        retries: args.retries,
        wait: args.wait,
        source_port: args.source_port,
    };
    Ok((plan, names))
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

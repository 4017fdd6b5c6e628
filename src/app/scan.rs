//! `tcpshake scan`: command line → targets, ports and plan; run; write the reports.

use super::exit::{Exit, UsageError};
use super::targets::TargetList;
use crate::config::{Exchange, ScanConfig, defaults, exclude_spec, scan_spec};
use crate::report::scan_nmap::{Greppable, Normal, RunEnd, RunInfo, Xml, has_open_port};
use crate::report::scan_text;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::{Family, resolve_name};
use tcpshake_io::run;
use tcpshake_io::scan::{self, Progress, ScanPlan};
use tcpshake_io::{is_environment_error, random, signals, teardown};
use tcpshake_proto::probe::ProbeConfig;
use tcpshake_proto::probe::record::{HostRecord, HostState, Legs, PortState, Reason};
use tcpshake_proto::probe::scan::neighbours::HostLink;
use tcpshake_proto::probe::scan::rate;
use tcpshake_proto::probe::scan::results::{Answers, Coverage, HostPorts, Rare, Walk};
use tcpshake_proto::probe::scan::rtt::Wait;
use tcpshake_proto::probe::scan::targets::{Spec, TargetSet, TargetSpec};
use tcpshake_proto::probe::scan::unroutable::NoPath;
use tcpshake_proto::probe::scan::{Completion, ScanRecord};

/// The host names typed on the command line (or in -iL), by the address each resolved to.
type Names = BTreeMap<IpAddr, Vec<String>>;

/// nmap's stylesheet: the local copy when nmap is installed (what nmap itself points at),
/// else the copy nmap's `--webxml` points at.
const XSL_LOCAL: &str = "/usr/share/nmap/nmap.xsl";
const XSL_WEB: &str = "https://svn.nmap.org/nmap/docs/nmap.xsl";

/// Where -oN / -oX / -oG go: a file, created before the scan so a bad path fails at once, or
/// stdout (`-`), which that format then has to itself (the configuration checked that no
/// two outputs claim it).
type Sink = BufWriter<Box<dyn Write>>;

/// `files`: whether other outputs go to files, which a closed stdout must not cut short
/// (see [`super::Stdout`]).
fn open_sink(path: &Path, flag: &str, files: bool) -> Result<Sink> {
    if path.as_os_str() == "-" {
        return Ok(BufWriter::new(Box::new(super::Stdout::new(files))));
    }
    let f = super::create_output(path, flag)?;
    Ok(BufWriter::new(Box::new(f)))
}

/// Some report goes to a file (not stdout): the scan then outlives stdout's reader.
fn report_files(args: &ScanConfig) -> bool {
    [
        &args.output_xml,
        &args.output_greppable,
        &args.output_normal,
    ]
    .into_iter()
    .flatten()
    .any(|p| p.as_os_str() != "-")
}

/// `href` of -oX's stylesheet: nmap's own file when installed, else its web copy.
fn stylesheet() -> String {
    if Path::new(XSL_LOCAL).exists() {
        format!("file://{XSL_LOCAL}")
    } else {
        XSL_WEB.to_string()
    }
}

/// The reports of a scan every target of which was skipped (a name that did not resolve,
/// a list entry that could not be read, no route): written, as nmap writes them (its `-oX`
/// with a `<target status="skipped">` per target and 0 hosts), so a script that compares
/// today's report with yesterday's (`ndiff`) finds today's, not yesterday's left in place.
fn empty_reports(args: &ScanConfig, ports: &[u16], skipped: &[String]) -> Result<()> {
    let [normal_flag, greppable_flag, xml_flag] = args.output_flags;
    let files = report_files(args);
    let args_line = std::env::args().collect::<Vec<_>>().join(" ");
    let stylesheet = stylesheet();
    let now = unix_now();
    let info = RunInfo {
        args: &args_line,
        start_secs: now,
        ports,
        stylesheet: &stylesheet,
        open_only: args.open,
        skipped,
    };
    let end = RunEnd {
        end_secs: now,
        elapsed: std::time::Duration::ZERO,
        up: 0,
        down: 0,
        error: None,
    };
    if let Some(p) = &args.output_xml {
        Xml::start(open_sink(p, xml_flag, files)?, &info)
            .and_then(|x| x.finish(&end))
            .with_context(|| format!("writing {xml_flag}"))?;
    }
    if let Some(p) = &args.output_greppable {
        Greppable::start(open_sink(p, greppable_flag, files)?, &info)
            .and_then(|g| g.finish(&end))
            .with_context(|| format!("writing {greppable_flag}"))?;
    }
    if let Some(p) = args.output_normal.as_ref().filter(|p| p.as_os_str() != "-") {
        Normal::start(open_sink(p, normal_flag, files)?, &info)
            .and_then(|n| n.finish(&end))
            .with_context(|| format!("writing {normal_flag}"))?;
    }
    Ok(())
}

/// Output files this run made (none was there before), to remove if the scan could not
/// start — each only while it is still empty.
struct EmptyOutputs(Vec<std::path::PathBuf>);

impl EmptyOutputs {
    fn remove_empty(&self) {
        for p in &self.0 {
            if std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn is_stdout(p: &Option<std::path::PathBuf>) -> bool {
    p.as_ref().is_some_and(|p| p.as_os_str() == "-")
}

/// Targets with no route said one line each at most: the rest in one line.
const NO_PATH_LINES: usize = 20;

pub(super) fn run(args: &ScanConfig) -> Result<Exit> {
    // Targets skipped (a name that did not resolve, a list entry that could not be read,
    // later no route), as written: -oX lists them as nmap does (`log_bogus_target`).
    let mut skipped_specs: Vec<String> = Vec::new();
    let (plan, mut skipped, names) = plan(args, &mut skipped_specs)?;
    let Some(mut plan) = plan else {
        empty_reports(args, &args.ports, &skipped_specs)?;
        return Ok(Exit::Failed);
    };
    // Targets nothing can be sent to are named and skipped, as nmap skips a host it cannot
    // route; the others are scanned. The exit code is 1, as for every skipped target (a
    // name that did not resolve, a bad -iL line). All of them: the scan fails with those
    // words alone.
    let unroutable = scan::unroutable(&plan.targets)?;
    if !unroutable.is_empty() {
        let notes = unroutable.notes(&plan.targets);
        plan.targets.leave_out(unroutable.runs());
        let others = plan.targets.first_included().is_some();
        // A line per target as written, as nmap says each host it cannot route; a list of
        // thousands is not thousands of lines.
        for n in notes.iter().take(NO_PATH_LINES) {
            eprintln!("tcpshake: {}", n.text(others));
        }
        if let Some(rest) = notes.get(NO_PATH_LINES..).filter(|r| !r.is_empty()) {
            let addrs = rest.iter().map(|n| n.count).fold(0u64, u64::saturating_add);
            eprintln!(
                "tcpshake: and {} more {} nothing can be sent to ({}: no route, or a blackhole \
                 or prohibit route){}",
                rest.len(),
                if rest.len() == 1 { "target" } else { "targets" },
                crate::report::count(addrs, "address", "addresses"),
                if others { "; skipped" } else { "" }
            );
        }
        skipped |= !notes.is_empty();
        // Targets skipped whole, each once (a range with two kinds of failure is two
        // lines but one target; a range scanned in part is no skipped target).
        let mut listed = std::collections::HashSet::new();
        for n in notes.iter().filter(|n| n.whole) {
            let spec = n.spec.clone().unwrap_or_else(|| n.first.to_string());
            if listed.insert(spec.clone()) {
                skipped_specs.push(spec);
            }
        }
        if !others {
            if notes.is_empty() {
                eprintln!("tcpshake: no target left to scan");
            }
            empty_reports(args, &plan.ports, &skipped_specs)?;
            return Ok(Exit::Failed);
        }
    }
    warn_other_interfaces(&plan);
    // The output files are made before anything else, so a bad path fails at once; a scan
    // that then cannot start (no privileges, no nftables) leaves none it made behind,
    // empty (nmap makes none). One that was there is left (emptied, as nmap would).
    let made = EmptyOutputs(
        [
            &args.output_xml,
            &args.output_greppable,
            &args.output_normal,
        ]
        .into_iter()
        .flatten()
        .filter(|p| p.as_os_str() != "-" && !p.exists())
        .cloned()
        .collect(),
    );
    let [normal_flag, greppable_flag, xml_flag] = args.output_flags;
    // Reports to files are finished even when stdout's reader goes (`… -oX out.xml |
    // head`): the scan runs to its end, what would go to stdout dropped.
    let files = report_files(args);
    let mut xml = args
        .output_xml
        .as_deref()
        .map(|p| open_sink(p, xml_flag, files))
        .transpose()?;
    let mut greppable = args
        .output_greppable
        .as_deref()
        .map(|p| open_sink(p, greppable_flag, files))
        .transpose()?;
    // -oN FILE: the table to a file as well (-oN - is the table on stdout, as without it).
    let mut normal = args
        .output_normal
        .as_deref()
        .filter(|p| p.as_os_str() != "-")
        .map(|p| open_sink(p, normal_flag, files))
        .transpose()?;
    // The table goes to stdout unless stdout carries a format (JSON Lines, XML, -oG).
    let table = !args.json && !is_stdout(&args.output_xml) && !is_stdout(&args.output_greppable);
    // The reports after the scan need every silent port, and -oN's last line the hosts
    // up: walk the scanned pairs.
    let walk = xml.is_some() || greppable.is_some() || normal.is_some() || args.all;
    // Kept for after the scan: the walk needs every answered port; the table without
    // --all and --complete need the open ones only.
    let keep = |r: &ScanRecord| walk || ((table || args.complete) && r.state == PortState::Open);
    let stop = signals::stop_flag();
    // With --complete an open port's line waits for its connection.
    let defer = |r: &ScanRecord| args.complete && r.state == PortState::Open;
    let mut answers = Answers::default();
    let mut out = BufWriter::new(super::Stdout::new(files));
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
            } else if table {
                // The table's `Not shown:` line counts what it does not list.
                answers.tally(r);
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
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            drop((xml.take(), greppable.take(), normal.take()));
            made.remove_empty();
            return Err(e);
        }
    };
    answers.sort();
    // Hosts the kernel refused to send to (a route gone since the check above, policy
    // routing): left out of the reports as the ones found before, and named.
    if !outcome.refused.is_empty() {
        plan.targets
            .leave_out_hosts(outcome.refused.iter().map(|r| r.0));
        // One line per kind of refusal, as the check before the scan words it.
        for why in [NoPath::NoRoute, NoPath::Prohibited, NoPath::Blackhole] {
            let hosts: Vec<IpAddr> = outcome
                .refused
                .iter()
                .filter(|r| r.1 == why)
                .map(|r| r.0)
                .collect();
            let Some(&first) = hosts.first() else {
                continue;
            };
            let what = match hosts.len() {
                1 => first.to_string(),
                n => format!("{n} target addresses ({first} the first)"),
            };
            eprintln!(
                "tcpshake: {} (the kernel refused the SYN); skipped",
                why.message(&what, first)
            );
        }
        skipped = true;
        skipped_specs.extend(outcome.refused.iter().map(|r| r.0.to_string()));
    }
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
    let summary = scan_text::summary(&scan_text::Summary {
        totals: outcome.totals,
        duration: outcome.duration,
        send_time: outcome.send_time,
        interrupted: outcome.interrupted,
        tap_drops: outcome.tap_drops,
        resolution: outcome.resolution,
        // The send log leaves out retry rounds slowed on purpose (schedule::Slowdown, said
        // in the summary): they are no shortfall of --rate.
        shortfall: rate::check(args.rate, &outcome.send_log),
        short_wait: match plan.wait {
            Wait::Fixed(w) => outcome.rtt.srtt().filter(|&r| r > w).map(|r| (w, r)),
            Wait::Adaptive => None,
        },
    });
    let args_line = std::env::args().collect::<Vec<_>>().join(" ");
    let stylesheet = stylesheet();
    let info = RunInfo {
        args: &args_line,
        start_secs,
        ports: &plan.ports,
        stylesheet: &stylesheet,
        open_only: args.open,
        skipped: &skipped_specs,
    };
    let mut xml = xml.take().map(|w| Xml::start(w, &info)).transpose()?;
    let mut greppable = greppable
        .take()
        .map(|w| Greppable::start(w, &info))
        .transpose()?;
    let mut normal = normal.take().map(|w| Normal::start(w, &info)).transpose()?;
    let no_names = Vec::new();
    let names_of = |a: IpAddr| names.get(&a).unwrap_or(&no_names);
    // A silent port's line is dated when the scan stopped waiting for it.
    let gave_up_ns = (outcome.started + outcome.duration).as_nanos();
    let (mut up, mut down) = (0, 0);
    // Which pairs the scan sent: what the walk and the table's left-out counts rebuild.
    let coverage = Coverage::new(
        &plan.targets,
        &plan.ports,
        plan.seed,
        plan.shard,
        outcome.walked,
    )
    .with_neighbours(&outcome.neighbours);
    if walk {
        let mut hosts = Walk::new(&coverage, &answers, args.all);
        for h in hosts.by_ref() {
            let left_out = (!args.all).then(|| h.not_open());
            // nmap's --open: a host with no open port is in no report (still counted up).
            let shown = !args.open || has_open_port(&h);
            if let Some(x) = &mut xml {
                x.host(&h, names_of(h.addr))?;
            }
            if let Some(g) = &mut greppable {
                g.host(&h)?;
            }
            if table && shown {
                scan_text::host(
                    &mut out,
                    &h,
                    names_of(h.addr),
                    args.all,
                    left_out.as_deref(),
                )?;
            }
            if let Some(n) = &mut normal
                && shown
            {
                scan_text::host(n.out(), &h, names_of(h.addr), args.all, left_out.as_deref())?;
            }
            if args.json && args.all {
                if let Some(HostLink::Unresolved(how)) = h.link {
                    let rec = HostRecord {
                        addr: h.addr,
                        state: HostState::Down,
                        reason: how.down_reason(),
                        t_ns: gave_up_ns,
                    };
                    serde_json::to_writer(&mut out, &rec)?;
                    out.write_all(b"\n")?;
                }
                for &port in &h.silent {
                    serde_json::to_writer(&mut out, &silent_record(h.addr, port, gave_up_ns))?;
                    out.write_all(b"\n")?;
                }
            }
        }
        (up, down) = (hosts.up_hosts(), hosts.silent_hosts() + hosts.down_hosts());
    } else if table {
        // Only the open ports were kept, the other answers counted.
        // Hosts whose answers of their own were only counted (every port closed) too: up,
        // so listed; not those only a router's ICMP errors spoke for.
        for addr in answers.hosts_up() {
            let h = HostPorts {
                addr,
                answered: answers.host(addr),
                silent: Vec::new(),
                link: outcome.neighbours.host(addr),
                counted_up: answers.answered_itself(addr),
            };
            if args.open && !has_open_port(&h) {
                continue; // nmap's --open
            }
            let left_out = answers.left_out(addr, &coverage);
            scan_text::host(&mut out, &h, names_of(addr), false, left_out.as_deref())?;
        }
    }
    if table {
        writeln!(out, "{summary}")?;
    }
    if let Some(n) = &mut normal {
        writeln!(n.out(), "{summary}")?;
    }
    out.flush()?;
    // Whether every pair had its first SYN: if so, only retries were cut short, and what
    // is silent may be a retry's loss rather than filtering.
    let error = if outcome.interrupted_in_retries {
        "interrupted by a signal during the retry rounds: every pair got its first SYN; \
         silent ones reported filtered may have answered a retry"
    } else {
        "interrupted by a signal: only the pairs sent before it are reported"
    };
    let end = RunEnd {
        end_secs: unix_now(),
        elapsed: outcome.duration,
        up,
        down,
        error: outcome.interrupted.then_some(error),
    };
    if let Some(x) = xml {
        x.finish(&end)
            .with_context(|| format!("writing {xml_flag}"))?;
    }
    if let Some(g) = greppable {
        g.finish(&end)
            .with_context(|| format!("writing {greppable_flag}"))?;
    }
    if let Some(n) = normal {
        n.finish(&end)
            .with_context(|| format!("writing {normal_flag}"))?;
    }
    if !table {
        eprintln!("{summary}");
    }
    // An interrupted scan exits as every interrupted command does (`app::main`).
    Ok(if skipped || outcome.interrupted {
        Exit::Failed
    } else {
        Exit::Ok
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
        reply_from: None,
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
        let c = complete_one(remote, &mut guard, stop)?;
        p.rare = Some(Box::new(Rare::Complete(Box::new(c))));
    }
    // The connections' shared tap closes while the guard's table goes (each waits for the
    // kernel's RCU grace periods: together, about as long as the tap alone).
    run::close_spare();
    teardown::close_together(vec![Box::new(guard)]);
    run::wait_closing();
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
        mss_hint: ex.mss_hint,
    };
    match run::run(path, cfg, guard, run::Capture::Off, &mut |_| {}, stop) {
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

/// The plan: targets read and resolved, exclusions applied. `None` when no target is
/// left; `true` when something was skipped (a bad list line, a name that did not
/// resolve), which the exit code says; the host names typed, by the address each stands
/// for (for -oX).
fn plan(args: &ScanConfig, bogus: &mut Vec<String>) -> Result<(Option<ScanPlan>, bool, Names)> {
    // A command-line address that is a subnet's broadcast address (its route says so) is
    // refused before anything is sent, as `config` refused 224.0.0.1 or 0.0.0.0.
    let singles: Vec<(String, IpAddr)> = args
        .targets
        .iter()
        .filter_map(|t| match t {
            TargetSpec::Addrs(s) if s.len() == 1 => s.get(0),
            _ => None,
        })
        .map(|a| (a.to_string(), a))
        .collect();
    super::refuse_broadcast_targets(singles.iter().map(|(s, a)| (s.as_str(), *a)))?;
    let mut skipped = false;
    // Exclusions first: one that cannot be read or resolved refuses the scan (exit 2), as
    // nmap QUITs — skipped, it would leave in what it was meant to keep out, and the scan
    // would send there. Before any target name is looked up, so the refusal is the one
    // message.
    let mut exclude_specs: Vec<(Option<String>, TargetSpec)> =
        args.exclude.iter().map(|s| (None, s.clone())).collect();
    if let Some(p) = &args.exclude_list {
        let listed = read_list(p, Family::Any, &mut skipped, false, true, &mut Vec::new())?;
        exclude_specs.extend(listed.into_iter().map(|(origin, s)| (Some(origin), s)));
    }
    let exclude = resolve_exclusions(exclude_specs, |name| resolve_name(name, Family::Any))?;
    let mut names = Names::new();
    let typed = args.targets.iter().map(|s| (None, s));
    let mut targets = resolve_specs(typed, args.family, &mut skipped, &mut names, bogus);
    if let Some(p) = &args.list {
        let specs = read_list(
            p,
            args.family,
            &mut skipped,
            args.targets.is_empty(),
            false,
            bogus,
        )?;
        let listed = specs.iter().map(|(origin, s)| (Some(origin.as_str()), s));
        targets.extend(resolve_specs(
            listed,
            args.family,
            &mut skipped,
            &mut names,
            bogus,
        ));
    }
    if targets.is_empty() {
        // One mistake, one message: the targets left out were each reported already.
        if !skipped {
            eprintln!("tcpshake: no target left to scan");
        }
        return Ok((None, true, names));
    }
    let targets = TargetSet::new(targets, exclude).map_err(|e| UsageError(e.to_string()))?;
    // Exclusions that leave nothing would make a scan of nothing that looks like a success
    // (`scanned 0 ports`, exit 0): refused as an empty target list is.
    if targets.first_included().is_none() {
        let by = match (args.exclude.is_empty(), &args.exclude_list) {
            (false, Some(f)) => format!("--exclude and --excludefile {}", f.display()),
            (true, Some(f)) => format!("--excludefile {}", f.display()),
            _ => "--exclude".to_string(),
        };
        return Err(UsageError(format!(
            "{by} excludes every target: nothing to scan; narrow the exclusions or give other \
             targets"
        ))
        .into());
    }
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
        rate: args.rate.unwrap_or(defaults::SCAN_RATE_UNLIMITED),
        retries: args.retries,
        wait: args.wait,
        source_port: args.source_port,
        send_ip: args.send_ip,
    };
    Ok((Some(plan), skipped, names))
}

/// The addresses the exclusions stand for, an excluded name at every address `resolve`
/// gives it. `origin`: `FILE, line N` for an `--excludefile` line, `None` for
/// `--exclude`. A name that does not resolve is a usage error naming the option (and the
/// file and line): an exclusion left out would leave in what it was meant to keep out.
fn resolve_exclusions(
    specs: Vec<(Option<String>, TargetSpec)>,
    resolve: impl Fn(&str) -> Result<Vec<IpAddr>>,
) -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    for (origin, spec) in specs {
        match spec {
            TargetSpec::Addrs(s) => out.push(s),
            TargetSpec::Name { name, prefix } => {
                let addrs = resolve(&name).map_err(|e| {
                    let at = match &origin {
                        Some(o) => format!("--excludefile {o}"),
                        None => "--exclude".to_string(),
                    };
                    UsageError(format!(
                        "{at}: {e:#} (an exclusion that cannot be resolved would leave in \
                         what it was meant to keep out: nothing was scanned)"
                    ))
                })?;
                for a in addrs {
                    out.push(Spec::cidr(a, prefix, &name).map_err(UsageError)?);
                }
            }
        }
    }
    Ok(out)
}

/// Targets whose route leaves through another interface than the one their family's scan
/// listens on (its first target's route, `TargetSet::route_by`): their replies arrive
/// where no tap is, and they would come out `filtered` without a word. Said before the
/// scan, once per interface, from one route lookup per target spec (the first 256).
fn warn_other_interfaces(plan: &ScanPlan) {
    use tcpshake_io::{neighbour, route::Router};
    let Ok(mut router) = Router::new() else {
        return;
    };
    for v6 in [false, true] {
        if plan.targets.first_of_family(v6).is_none() {
            continue;
        }
        let own: Vec<(u128, u128)> = neighbour::local_prefixes(v6)
            .unwrap_or_default()
            .iter()
            .map(|p| p.bounds())
            .collect();
        let Some(first) = plan.targets.route_by(v6, &own) else {
            continue;
        };
        let Ok(main) = router.lookup(first) else {
            continue;
        };
        let mut elsewhere: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (lo, _, _) in plan.targets.bounds().filter(|b| b.2 == v6).take(256) {
            let addr = if v6 {
                IpAddr::V6(std::net::Ipv6Addr::from(lo))
            } else {
                match u32::try_from(lo) {
                    Ok(a) => IpAddr::V4(std::net::Ipv4Addr::from(a)),
                    Err(_) => continue,
                }
            };
            if own.iter().any(|r| r.0 <= lo && lo <= r.1) {
                continue;
            }
            if let Ok(r) = router.lookup(addr)
                && r.oif != main.oif
                && !r.is_loopback
                && tcpshake_proto::probe::target::connectable_address(addr).is_ok()
            {
                elsewhere
                    .entry(r.ifname.clone())
                    .or_default()
                    .push(addr.to_string());
            }
        }
        for (ifname, addrs) in elsewhere {
            let shown: Vec<&str> = addrs.iter().take(3).map(String::as_str).collect();
            let more = addrs.len().saturating_sub(3);
            eprintln!(
                "tcpshake: warning: {}{} route{} through {ifname}, but this scan listens on {} \
                 (the route of {first}): replies from there are not seen, and those ports will \
                 read filtered; scan them in a run of their own",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                if addrs.len() == 1 { "s" } else { "" },
                main.ifname
            );
        }
    }
}

/// Address specs as they are; a name at its first address of the wanted family, or
/// reported and skipped. Without `-4`/`-6` that is its first IPv4 address, as nmap's
/// (IPv4 unless `-6`), so `ndiff` against nmap's report of the same name compares the
/// same host (a walk: the resolver listed the IPv6 address first, and ndiff saw one host
/// removed and another added); its IPv6 address when it has no IPv4 one. A name is kept
/// for the address it resolved to, not its whole block (nmap names only that one in
/// `name/24`).
/// Each spec's addresses, its names resolved; `origin` (`FILE, line N`) says where a
/// listed one came from when it cannot be resolved.
fn resolve_specs<'a>(
    specs: impl IntoIterator<Item = (Option<&'a str>, &'a TargetSpec)>,
    family: Family,
    skipped: &mut bool,
    names: &mut Names,
    bogus: &mut Vec<String>,
) -> Vec<Spec> {
    let mut out = Vec::new();
    for (origin, spec) in specs {
        match spec {
            TargetSpec::Addrs(s) => out.push(s.clone()),
            TargetSpec::Name { name, prefix } => {
                let cidr = resolve_name(name, family).and_then(|mut a| {
                    if family == Family::Any
                        && let Some(i) = a.iter().position(IpAddr::is_ipv4)
                    {
                        a.swap(0, i);
                    }
                    // A name for 0.0.0.0 (what DNS blocklists answer) or a multicast group,
                    // alone; with a prefix (`name/24`) it is a block, scanned as the
                    // literal block would be.
                    if prefix.is_none() {
                        tcpshake_io::route::connectable_address(a[0])
                            .map_err(|e| e.context(format!("`{name}` resolved to {}", a[0])))?;
                    }
                    let s = Spec::cidr(a[0], *prefix, name).map_err(anyhow::Error::msg)?;
                    crate::config::not_a_peer_spec(name, &s)
                        .map_err(|e| anyhow::anyhow!("`{name}` resolved to {}: {e}", a[0]))?;
                    Ok((a[0], s))
                });
                match cidr {
                    Ok((addr, s)) => {
                        out.push(s);
                        let typed = names.entry(addr).or_default();
                        if !typed.contains(name) {
                            typed.push(name.clone());
                        }
                    }
                    Err(e) => {
                        match origin {
                            Some(o) => eprintln!("tcpshake: {o}: {e:#}"),
                            None => eprintln!("tcpshake: {e:#}"),
                        }
                        *skipped = true;
                        bogus.push(name.clone());
                    }
                }
            }
        }
    }
    out
}

/// The specs of a list file: targets (`-iL`) or, with `exclusions`, `--excludefile`'s.
/// `needed`: the list is the only source of targets, so an empty one is refused (an empty
/// `--excludefile` is fine). A target line that cannot be read is reported and skipped
/// (exit 1 at the end); an exclusion line refuses the scan (exit 2): skipped, it would
/// leave in what it was meant to keep out, and the scan would send there.
fn read_list(
    path: &Path,
    family: Family,
    skipped: &mut bool,
    needed: bool,
    exclusions: bool,
    bogus: &mut Vec<String>,
) -> Result<Vec<(String, TargetSpec)>> {
    let parse = if exclusions { exclude_spec } else { scan_spec };
    let what = if exclusions {
        "the exclusion list (--excludefile)"
    } else {
        "the target list"
    };
    let mut list = TargetList::open_as(path, what)?;
    if needed {
        list.refuse_if_empty()?;
    }
    let mut out = Vec::new();
    while let Some((origin, specs)) = list.next_line() {
        for text in specs {
            match parse(&text, family) {
                Ok(s) => out.push((origin.to_string(), s)),
                Err(e) if exclusions => {
                    return Err(UsageError(format!(
                        "--excludefile {origin}: {e}; an exclusion that cannot be read would \
                         leave in what it was meant to keep out: fix or remove the line"
                    ))
                    .into());
                }
                Err(e) => {
                    list.skip(&origin, e);
                    bogus.push(text.to_string());
                }
            }
        }
    }
    if exclusions && list.skipped > 0 {
        return Err(UsageError(format!(
            "--excludefile {}: {} could not be read; an exclusion left out would leave in what \
             it was meant to keep out: fix the file",
            path.display(),
            if list.skipped == 1 { "a line" } else { "lines" }
        ))
        .into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::scan::targets;

    fn spec(t: &str) -> TargetSpec {
        targets::parse(t).unwrap()
    }

    /// No lookup leaves this host: the resolver is the test's.
    fn resolver(name: &str) -> Result<Vec<IpAddr>> {
        match name {
            "gw.lab.test" => Ok(vec![
                "198.18.0.1".parse().unwrap(),
                "fd00::1".parse().unwrap(),
            ]),
            _ => Err(anyhow::anyhow!(
                "cannot resolve `{name}`: no such name; check the name, or give an address \
                 instead"
            )),
        }
    }

    /// Walk 14: `--exclude nosuch.invalid` warned and scanned everything (exit 1), and a
    /// name in `--excludefile` that did not resolve said `--exclude:` with no file or
    /// line. Each is now a usage error before anything is sent, naming the option, the
    /// file and line, and what to do.
    #[test]
    fn an_exclusion_that_does_not_resolve_refuses_the_scan() {
        let usage = |r: Result<Vec<Spec>>| -> String {
            let e = r.expect_err("refused");
            assert!(e.downcast_ref::<UsageError>().is_some(), "exit 2: {e:#}");
            format!("{e:#}")
        };
        let msg = usage(resolve_exclusions(
            vec![(None, spec("nosuch.invalid"))],
            resolver,
        ));
        assert!(
            msg.starts_with("--exclude: cannot resolve `nosuch.invalid`"),
            "{msg}"
        );
        assert!(msg.contains("check the name, or give an address"), "{msg}");
        assert!(msg.contains("nothing was scanned"), "{msg}");
        let msg = usage(resolve_exclusions(
            vec![
                (Some("excl.txt, line 1".into()), spec("198.18.0.3")),
                (Some("excl.txt, line 2".into()), spec("nosuch.invalid")),
            ],
            resolver,
        ));
        assert!(
            msg.starts_with("--excludefile excl.txt, line 2: cannot resolve `nosuch.invalid`"),
            "{msg}"
        );
        // A name that resolves is excluded at every address it has.
        let got = resolve_exclusions(
            vec![(None, spec("198.18.0.9")), (None, spec("gw.lab.test"))],
            resolver,
        )
        .unwrap();
        let firsts: Vec<_> = got.iter().map(|s| (s.get(0), s.len())).collect();
        assert_eq!(
            firsts,
            [
                (Some("198.18.0.9".parse().unwrap()), 1),
                (Some("198.18.0.1".parse().unwrap()), 1),
                (Some("fd00::1".parse().unwrap()), 1),
            ]
        );
    }
}

//! The edge of `tcpshake probe` as a survey (many targets, `-c`, `-j`, `-i`) and of
//! `tcpshake report`: stream targets in, records and statistics out, map the outcome to an
//! exit code (README.md: 0 all fine, 1 some probe failed, 2 usage, 3 environment, 4 an SLO
//! was breached).

use crate::app::{EXIT_NOT_OPEN, EXIT_OK, TlsShared, UsageError, tcp_config, tls_setup};
use crate::cli::{CommonArgs, OutputFormat, PlotKind, ProbeArgs, ReportArgs};
use crate::report::pcap::PcapWriter;
use crate::report::survey::{
    csv_header, csv_row, parse_record, probe_line, stats_json, write_table,
};
use crate::report::text::human_ns;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::{Family, resolve};
use tcpshake_io::run::Outcome;
use tcpshake_io::signals;
use tcpshake_io::survey::{self, Progress, Report, SurveyOptions, SurveyTarget};
use tcpshake_proto::probe::record::{Leg, ProbeResult};
use tcpshake_proto::probe::stats::{Sample, Slo, Survey, parse_slos};
use tcpshake_proto::probe::target::{self, Target};
use tcpshake_proto::probe::{HttpRequest, ProbeConfig};
use tcpshake_proto::wire::SeqNumber;

/// An SLO was breached (`--slo`).
pub const EXIT_SLO: u8 = 4;

/// Default probes in flight.
const DEFAULT_JOBS: u32 = 16;
/// The live display appears once a survey has run this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// The live percentiles cover this many recent probes.
const LIVE_WINDOW: usize = 1000;

/// Targets as they come: the command line first, then the input list, line by line; each
/// expanded over the `-p` ports and resolved. Never holds more than one line.
struct TargetStream {
    cli: std::vec::IntoIter<String>,
    list: Option<(String, Box<dyn BufRead>)>,
    line_no: usize,
    ports: Vec<u16>,
    family: Family,
    common: CommonArgs,
    pending: VecDeque<Target>,
    shard: Option<(u32, u32)>,
    /// Targets that could not be probed (syntax in the list, resolution).
    failed: u64,
    tls: TlsShared,
}

impl TargetStream {
    fn next_spec(&mut self) -> Option<(String, String)> {
        if let Some(s) = self.cli.next() {
            return Some((s.clone(), s));
        }
        let (name, reader) = self.list.as_mut()?;
        let mut line = String::new();
        // Bounded by the file: each pass consumes one line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line_no += 1;
                    let spec = line.split('#').next().unwrap_or("").trim();
                    if !spec.is_empty() {
                        return Some((spec.to_string(), format!("{name}:{}", self.line_no)));
                    }
                }
                Err(e) => {
                    eprintln!("tcpshake: reading {name}: {e}");
                    self.failed += 1;
                    return None;
                }
            }
        }
    }

    fn expand(&mut self, spec: &str, origin: &str) {
        let ports: Vec<Option<u16>> = if self.ports.is_empty() {
            vec![None]
        } else {
            self.ports.iter().map(|&p| Some(p)).collect()
        };
        let mut seen = Vec::new();
        for p in ports {
            match target::parse(spec, p) {
                Ok(mut t) => {
                    if seen.contains(&t.port) {
                        continue; // the spec names its own port: once is enough
                    }
                    seen.push(t.port);
                    if self.ports.len() > 1 && !spec_has_port(spec) {
                        // One label per (host, port), so statistics keep them apart.
                        t.spec = format!("{}:{}", t.host, t.port);
                    }
                    if self.shard.is_none_or(|s| in_shard(&t.spec, s)) {
                        self.pending.push_back(t);
                    }
                }
                Err(e) => {
                    eprintln!("tcpshake: {origin}: {e}");
                    self.failed += 1;
                    return;
                }
            }
        }
    }
}

/// `--shard K/N`: a target belongs to shard 1 + FNV-1a(label) mod N, a hash that every
/// build and machine computes alike, so N runs over the same list split it exactly.
fn in_shard(label: &str, (k, n): (u32, u32)) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % u64::from(n) == u64::from(k - 1)
}

fn spec_has_port(spec: &str) -> bool {
    target::parse(spec, None).is_ok()
}

impl Iterator for TargetStream {
    type Item = SurveyTarget;

    fn next(&mut self) -> Option<SurveyTarget> {
        // Bounded by the input: each pass consumes a pending target or a line.
        loop {
            if let Some(t) = self.pending.pop_front() {
                match resolve(&t, self.family) {
                    Ok(remote) => {
                        let c = &self.common;
                        let https = t.tls || c.tls;
                        let tls = match https.then(|| tls_setup(c, &t, &mut self.tls)) {
                            None => None,
                            Some(Ok(s)) => Some(s),
                            Some(Err(e)) => {
                                eprintln!("tcpshake: {}: {e:#}", t.spec);
                                self.failed += 1;
                                continue;
                            }
                        };
                        let http = (!c.no_http).then(|| HttpRequest {
                            path: t.path.clone().unwrap_or_else(|| c.path.clone()),
                            host: c
                                .host_header
                                .clone()
                                .unwrap_or_else(|| t.host_header_for(https)),
                        });
                        return Some(SurveyTarget {
                            label: t.spec,
                            remote,
                            http,
                            tls,
                        });
                    }
                    Err(e) => {
                        eprintln!("tcpshake: {e:#}");
                        self.failed += 1;
                        continue;
                    }
                }
            }
            let (spec, origin) = self.next_spec()?;
            self.expand(&spec, &origin);
        }
    }
}

fn open_list(path: &Path) -> Result<(String, Box<dyn BufRead>)> {
    if path == Path::new("-") {
        return Ok(("stdin".into(), Box::new(io::BufReader::new(io::stdin()))));
    }
    let f = std::fs::File::open(path).map_err(|e| {
        UsageError(format!(
            "cannot read the target list {}: {e}",
            path.display()
        ))
    })?;
    Ok((path.display().to_string(), Box::new(io::BufReader::new(f))))
}

/// Where per-probe records go and how.
struct Sink {
    format: OutputFormat,
    quiet: bool,
    records: Records,
    /// Records of this loop pass, handed to the writer together when it ends.
    pending: Vec<Outcome>,
    stats: Survey,
    failed: u64,
    live: Live,
}

/// Where the records go, and the pcap's packets.
struct Output {
    format: OutputFormat,
    out: io::BufWriter<io::Stdout>,
    /// One record, made whole before it is written: a line is one `write(2)`, so a kill
    /// cannot leave half of it (a BufWriter alone would write a long record in pieces).
    line: Vec<u8>,
    pcap: Option<PcapWriter<io::BufWriter<std::fs::File>>>,
}

impl Output {
    /// One probe's record (JSON Lines or CSV) and packets, flushed: a survey killed at any
    /// moment keeps every finished probe.
    fn write(&mut self, outcome: &Outcome) -> Result<()> {
        let r = &outcome.result;
        if let Some(w) = &mut self.pcap {
            for p in &outcome.packets {
                w.write(p.at.as_nanos(), &p.bytes)
                    .context("writing the pcap file")?;
            }
        }
        self.line.clear();
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.line, r)?;
                self.line.push(b'\n');
            }
            OutputFormat::Csv => writeln!(self.line, "{}", csv_row(r))?,
            OutputFormat::Text => {}
        }
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        if let Some(w) = self.pcap.take() {
            w.into_inner().context("writing the pcap file")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Machine-readable records are written by a thread of their own as probes end (handed
/// over once per loop pass, each written and flushed on its own): serializing and writing
/// them was a tenth of the survey loop's time, which the loop then spent on probes instead,
/// and waking the writer for each one another 2%. Text lines stay with the loop (they share
/// the terminal with the live display).
enum Records {
    Inline(Output),
    Writer {
        to_writer: std::sync::mpsc::SyncSender<Vec<Outcome>>,
        writer: std::thread::JoinHandle<Result<Output>>,
    },
}

impl Records {
    fn new(output: Output) -> Result<Records> {
        if output.format == OutputFormat::Text {
            return Ok(Records::Inline(output));
        }
        // Bounded: a writer that falls behind (a slow pipe) slows the survey down rather
        // than holding its records in memory.
        let (to_writer, from_loop) = std::sync::mpsc::sync_channel::<Vec<Outcome>>(64);
        let writer = std::thread::Builder::new()
            .name("record writer".into())
            .spawn(move || {
                let mut output = output;
                for batch in from_loop {
                    for outcome in batch {
                        output.write(&outcome)?;
                    }
                }
                Ok(output)
            })
            .context("starting the record writer thread")?;
        Ok(Records::Writer { to_writer, writer })
    }

    /// All records written; the output flushed and closed.
    fn finish(self) -> Result<()> {
        match self {
            Records::Inline(output) => output.finish(),
            Records::Writer { to_writer, writer } => {
                drop(to_writer);
                writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("the record writer thread panicked"))??
                    .finish()
            }
        }
    }
}

impl Sink {
    fn record(&mut self, outcome: Box<Outcome>) -> Result<()> {
        let r = &outcome.result;
        if !r.succeeded() {
            self.failed += 1;
        }
        if let Some(sample) = Sample::of(r) {
            self.stats.add(&r.target, &sample);
        }
        self.live.update(r, &self.stats);
        match &mut self.records {
            Records::Inline(output) => {
                if !self.quiet {
                    let line = probe_line(r);
                    let out = &mut output.out;
                    self.live.suspend(|| writeln!(out, "{line}"))?;
                }
                output.write(&outcome)
            }
            Records::Writer { .. } => {
                self.pending.push(*outcome);
                Ok(())
            }
        }
    }

    /// The loop pass ended: hand this pass's records to the writer.
    fn pass_done(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match &mut self.records {
            Records::Inline(_) => Ok(()),
            Records::Writer { to_writer, .. } => {
                let batch = std::mem::take(&mut self.pending);
                if to_writer.send(batch).is_err() {
                    // The writer stopped on an error; take it.
                    let records = std::mem::replace(
                        &mut self.records,
                        Records::Inline(Output {
                            format: self.format,
                            out: io::BufWriter::new(io::stdout()),
                            line: Vec::new(),
                            pcap: None,
                        }),
                    );
                    records.finish()?;
                    anyhow::bail!("the record writer stopped");
                }
                Ok(())
            }
        }
    }
}

/// The live display on a terminal (indicatif), shown on runs longer than a second.
struct Live {
    enabled: bool,
    started: Instant,
    bar: Option<ProgressBar>,
    recent: VecDeque<u64>,
    last_draw: Option<Instant>,
    progress: Progress,
}

impl Live {
    fn new(enabled: bool) -> Live {
        Live {
            enabled,
            started: Instant::now(),
            bar: None,
            recent: VecDeque::new(),
            last_draw: None,
            progress: Progress::default(),
        }
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    fn update(&mut self, r: &ProbeResult, stats: &Survey) {
        if let Some(v) = r.legs_ns.get(Leg::SynToSynack) {
            self.recent.push_back(v);
            if self.recent.len() > LIVE_WINDOW {
                self.recent.pop_front();
            }
        }
        if !self.enabled || self.started.elapsed() < PROGRESS_AFTER {
            return;
        }
        // Percentiles of the window, at most four times a second.
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} probes  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        });
        let mut w: Vec<u64> = self.recent.iter().copied().collect();
        w.sort_unstable();
        let pct = |p| {
            tcpshake_proto::probe::stats::percentile(&w, p)
                .map(human_ns)
                .unwrap_or_else(|| "-".into())
        };
        let all = stats.probes();
        bar.set_position(all);
        bar.set_message(format!(
            "{} in flight  {} failed  SYN→SYN-ACK (last {}) median {}  p99 {}",
            self.progress.in_flight,
            self.progress.finished.saturating_sub(all),
            w.len(),
            pct(50.0),
            pct(99.0)
        ));
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

pub fn survey_command(args: &ProbeArgs) -> Result<u8> {
    let sv = &args.survey;
    let jobs = sv.jobs.unwrap_or(DEFAULT_JOBS) as usize;
    // First, while this process has one thread (see the function).
    survey::grow_file_table(jobs);
    let slos = match &sv.slo {
        Some(s) => parse_slos(s).map_err(UsageError)?,
        None => Vec::new(),
    };
    // Command-line targets are checked before anything is sent: a typo is a usage error.
    for t in &args.targets {
        target::parse(t, args.port.first().copied()).map_err(UsageError)?;
    }
    // So is an unreadable --cacert: load the trust anchors now when they will be needed.
    let mut tls = TlsShared::default();
    if args.common.tls || args.common.cacert.is_some() {
        tls.preload(&args.common)?;
    }
    let list = sv.input_list.as_deref().map(open_list).transpose()?;
    let format = match (sv.output, args.common.json) {
        (Some(f), _) => f,
        (None, true) => OutputFormat::Jsonl,
        (None, false) => OutputFormat::Text,
    };
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let mut stream = TargetStream {
        cli: args.targets.clone().into_iter(),
        list,
        line_no: 0,
        ports: args.port.clone(),
        family,
        common: args.common.clone(),
        pending: VecDeque::new(),
        shard: sv.shard,
        failed: 0,
        tls,
    };
    let pcap = match &args.common.pcap {
        Some(p) => Some(PcapWriter::new(io::BufWriter::new(create(p)?))?),
        None => None,
    };
    let stop = signals::stop_flag();
    let mut guard = Guard::install_for_survey(MARK)?;
    let mut out = io::BufWriter::new(io::stdout());
    if format == OutputFormat::Csv {
        writeln!(out, "{}", csv_header())?;
        out.flush()?;
    }
    let mut sink = Sink {
        format,
        quiet: sv.quiet,
        records: Records::new(Output {
            format,
            out,
            line: Vec::new(),
            pcap,
        })?,
        pending: Vec::new(),
        stats: Survey::default(),
        failed: 0,
        live: Live::new(io::stderr().is_terminal()),
    };
    let opts = SurveyOptions {
        jobs,
        count: sv.count.unwrap_or(1),
        interval: sv.interval.unwrap_or(Duration::ZERO),
        capture: args.common.pcap.is_some(),
    };
    let common = &args.common;
    let pair_secret = PairSecret::new();
    let mut make_cfg = |t: &SurveyTarget, local: SocketAddr, mss: u16| {
        let mut tcp = tcp_config(local, t.remote, mss, common);
        // Successive probes of one server must look like successive connections of one
        // host, or a new SYN that meets the server's TIME-WAIT of an earlier probe (same
        // port pair, after a port was reused) is refused: Linux accepts it only when its
        // sequence number or timestamp is newer (RFC 6191 §2). So, as Linux itself does:
        // ISN = a 4 µs clock + a keyed hash (RFC 6528 §3), TSval offset per host pair
        // (RFC 7323 §5.4), both increasing across probes and across runs.
        let now = tcpshake_io::clock::now().as_nanos();
        tcp.isn =
            SeqNumber(((now / 4_000) as u32).wrapping_add(pair_secret.hash(local, t.remote, 1)));
        tcp.ts_offset = pair_secret.hash(local, t.remote, 2);
        // The request rides on the handshake's ACK unless asked otherwise: one segment
        // less per probe, for the server and for us (tcp::Config::ack_with_data).
        tcp.ack_with_data = !sv.separate_ack;
        ProbeConfig {
            target: t.label.clone(),
            tcp,
            http: t.http.clone(),
            timeout: common.timeout,
            linger: common.linger,
            tls: t.tls.clone(),
        }
    };
    let mut on_report = |r: Report<'_>, p: Progress| -> Result<()> {
        sink.live.progress = p;
        match r {
            Report::Done { outcome, .. } => sink.record(outcome),
            Report::PassDone => sink.pass_done(),
            Report::Failed { target, error } => {
                sink.live
                    .suspend(|| eprintln!("tcpshake: {}: {error:#}", target.label));
                sink.failed += 1;
                Ok(())
            }
        }
    };
    let run = survey::survey(
        &mut stream,
        opts,
        &mut make_cfg,
        &mut on_report,
        &mut guard,
        stop,
    );
    sink.live.finish();
    let handed = sink.pass_done();
    // The survey deleted the guard's table when it ended (the kernel waits out its RCU
    // grace period, 15–20 ms here, in a worker; removing again is a no-op, and covers a
    // survey that failed before its loop began); closing the socket waits for that worker,
    // so let it happen beside the table printing. The process does not exit before this
    // thread ends.
    let _ = guard.remove();
    let closing = std::thread::spawn(move || drop(guard));
    let losses = run?;
    handed?;
    if losses.dropped > 0 || losses.truncated > 0 {
        eprintln!(
            "tcpshake: warning: the capture socket missed {} packet(s) ({} dropped with its \
             queue full, {} too long): the records of some probes lack segments and their \
             timings may include the server's retransmissions; lower -j",
            losses.dropped + losses.truncated,
            losses.dropped,
            losses.truncated
        );
    }
    let Sink {
        records,
        stats,
        failed,
        ..
    } = sink;
    records.finish()?;
    // The table goes where it does not mix with machine-readable records.
    if format == OutputFormat::Text {
        let mut out = io::BufWriter::new(io::stdout().lock());
        if !sv.quiet {
            writeln!(out)?;
        }
        write_table(&mut out, &stats, false)?;
        out.flush()?;
    } else {
        let mut err = io::BufWriter::new(io::stderr().lock());
        write_table(&mut err, &stats, false)?;
        err.flush()?;
    }
    let breached = judge(&slos, &stats);
    let _ = closing.join();
    Ok(if breached {
        EXIT_SLO
    } else if failed > 0 || stream.failed > 0 {
        EXIT_NOT_OPEN
    } else {
        EXIT_OK
    })
}

/// The key of the per-host-pair hashes: this boot's id (readable by local users only, so
/// unknown off-path, and the same for every run until reboot, which keeps ISNs and
/// timestamps increasing across runs).
struct PairSecret(Vec<u8>);

impl PairSecret {
    fn new() -> PairSecret {
        let boot = std::fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_else(|_| {
            // No procfs: a random key, which keeps them increasing within this run.
            tcpshake_io::random::random_u32().to_le_bytes().to_vec()
        });
        PairSecret(boot)
    }

    /// A keyed hash of the two addresses (not the ports: every port pair of one host pair
    /// shares the sequence and timestamp space, as in Linux).
    fn hash(&self, local: SocketAddr, remote: SocketAddr, what: u8) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.0, local.ip(), remote.ip(), what).hash(&mut h);
        h.finish() as u32
    }
}

fn create(p: &Path) -> Result<std::fs::File> {
    std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))
}

/// Print each SLO's verdict on stderr; true when one was breached.
fn judge(slos: &[Slo], stats: &Survey) -> bool {
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

pub fn report_command(args: &ReportArgs) -> Result<u8> {
    let slos = match &args.slo {
        Some(s) => parse_slos(s).map_err(UsageError)?,
        None => Vec::new(),
    };
    let mut stats = Survey::default();
    for path in &args.files {
        read_jsonl(path, &mut stats)?;
    }
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
    Ok(if judge(&slos, &stats) {
        EXIT_SLO
    } else {
        EXIT_OK
    })
}

/// Add every record of one JSON Lines file. A last line cut short (a survey killed while
/// writing it) is skipped with a warning; any other bad line is an error naming it.
fn read_jsonl(path: &PathBuf, stats: &mut Survey) -> Result<()> {
    let (name, mut reader) = if path.as_os_str() == "-" {
        open_list(path)?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_list_exactly() {
        let labels: Vec<String> = (0..1000)
            .map(|i| format!("198.18.{}.{}:80", i / 250, i % 250))
            .collect();
        let mut total = 0;
        for k in 1..=4 {
            let n = labels.iter().filter(|l| in_shard(l, (k, 4))).count();
            assert!((150..=350).contains(&n), "shard {k}/4 has {n} of 1000");
            total += n;
        }
        assert_eq!(total, 1000);
        assert!(labels.iter().all(|l| in_shard(l, (1, 1))));
    }
}

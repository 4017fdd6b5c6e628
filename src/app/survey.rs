//! `tcpshake probe` as a survey (many targets, `-c`, `-j`, `-i`): stream targets in,
//! records and statistics out, and say how it went (`exit::Exit`).

use super::exit::Exit;
use super::report::judge;
use super::targets::TargetList;
use super::{
    TlsShared, capture_mode, http_request, live_stderr, open_captures, tcp_config, tls_setup,
};
use crate::cli::OutputFormat;
use crate::config::{Exchange, SurveyConfig};
use crate::report::capture::CaptureFiles;
use crate::report::survey::{csv_header, csv_row, probe_line, write_table};
use crate::report::text::human_ns;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::{Answer, Family, Lookups, Ticket, resolve};
use tcpshake_io::run::{Captured, Outcome};
use tcpshake_io::survey::{self, Feed, Next, Progress, Report, SurveyOptions, SurveyTarget};
use tcpshake_io::{signals, teardown};
use tcpshake_proto::probe::ProbeConfig;
use tcpshake_proto::probe::record::{Leg, ProbeResult};
use tcpshake_proto::probe::shard::Shard;
use tcpshake_proto::probe::stats::{Group, Sample, Survey};
use tcpshake_proto::probe::target::{self, Host, Target};
use tcpshake_proto::wire::SeqNumber;

/// The live display appears once a survey has run this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// The live percentiles cover this many recent probes.
const LIVE_WINDOW: usize = 1000;

/// Targets read ahead of the loop at most, when reading ahead cannot block (see
/// [`TargetStream`]); the names among them are looked up meanwhile.
const LOOKAHEAD: usize = 256;
/// Threads looking names up at once, at most.
const RESOLVER_THREADS: usize = 4;
/// While the next target's name is being looked up, the loop asks again this often.
const LOOKUP_POLL: Duration = Duration::from_millis(1);

/// Targets as they come: the command line's first (checked already), then the input
/// list's, line by line, each expanded over the `-p` ports and resolved — host names on
/// other threads ([`Lookups`]), so a lookup never holds up the probes in flight (a
/// resolver that does not answer took seconds, during which no probe was answered).
///
/// Targets start in input order: one whose name is still being looked up holds back
/// itself and the targets behind it, not the loop (the feed says [`Next::Later`]); a name
/// that does not resolve is said when its turn comes, as before. The names among the
/// targets read are looked up ahead ([`LOOKAHEAD`] targets, [`RESOLVER_THREADS`] at once,
/// a name's ports by one lookup). The list is read ahead only when it is a regular file:
/// from a pipe or a terminal a line is read when the loop needs a target, as before (a
/// read ahead there would wait for lines the loop does not need yet). So memory stays
/// bounded by the lookahead and one line's targets, whatever the list's length. A literal
/// address is no lookup: it is checked here, when its turn comes.
struct TargetStream<'a> {
    /// Targets in input order, each with the list line it came from (none: the command
    /// line) and where its address stands.
    pending: VecDeque<Pending>,
    /// How many of `pending`, from the front, had their names asked for (or need none).
    looked: usize,
    /// The host last asked for, and its lookup: the next target of the same host (its
    /// next port) shares it.
    last_asked: Option<(Host, Addr)>,
    list: Option<TargetList>,
    /// The list is a regular file: reading ahead never waits.
    read_ahead: bool,
    lookups: Lookups,
    ports: &'a [u16],
    family: Family,
    exchange: &'a Exchange,
    shard: Option<Shard>,
    /// Targets that could not be probed (a name that did not resolve, a bad TLS name).
    failed: u64,
    /// The host whose target failed last: its other ports fail alike, said once.
    last_failed: Option<Host>,
    /// Where the targets that could not be probed are declared, in input order, beside
    /// those the loop started (`run`'s `declared`): the table's title counts them among
    /// the targets without a finished probe, as it counts a target with no route.
    declared: Rc<RefCell<Vec<String>>>,
    tls: TlsShared,
}

/// A target on its way to the loop.
struct Pending {
    target: Target,
    from: Option<Rc<str>>,
    /// Its `-iL` line's number (0: the command line), handed to the loop as the target's
    /// tag, so that a probe that cannot start (a broadcast address, no route) is named by
    /// its line, as a bad line is.
    line: u64,
    addr: Addr,
}

/// Where a pending target's address stands.
#[derive(Clone, Debug)]
enum Addr {
    /// An address already: checked when its turn comes.
    Literal,
    /// A name not asked for yet.
    Unasked,
    /// A name being looked up.
    Asked(Ticket),
    /// A name's lookup, answered.
    Known(Answer),
}

impl Pending {
    fn new(target: Target, from: Option<Rc<str>>, line: u64) -> Pending {
        let addr = match target.host {
            Host::Ip(_) => Addr::Literal,
            Host::Name(_) => Addr::Unasked,
        };
        Pending {
            target,
            from,
            line,
            addr,
        }
    }
}

impl TargetStream<'_> {
    fn new<'a>(c: &'a SurveyConfig, list: Option<TargetList>, tls: TlsShared) -> TargetStream<'a> {
        TargetStream {
            pending: c
                .targets
                .iter()
                .filter(|t| c.shard.is_none_or(|s| s.owns(&t.spec)))
                .map(|t| Pending::new(t.clone(), None, 0))
                .collect(),
            looked: 0,
            last_asked: None,
            read_ahead: list.as_ref().is_some_and(TargetList::is_regular_file),
            list,
            lookups: Lookups::new(RESOLVER_THREADS),
            ports: &c.ports,
            family: c.family,
            exchange: &c.exchange,
            shard: c.shard,
            failed: 0,
            last_failed: None,
            declared: Rc::default(),
            tls,
        }
    }

    /// A target that could not be probed: counted, and declared to the statistics.
    fn failed_target(&mut self, label: &str) {
        self.failed += 1;
        self.declared.borrow_mut().push(label.to_string());
    }

    /// The next list line's targets into `pending`; false at the end of the list.
    fn read_line(&mut self) -> bool {
        let Some(list) = self.list.as_mut() else {
            return false;
        };
        let Some((origin, specs)) = list.next_line() else {
            return false;
        };
        let from: Rc<str> = Rc::from(origin.as_str());
        let line = list.line_no() as u64;
        for spec in specs {
            let checked = target::expand(&spec, self.ports, self.family);
            match checked {
                Ok(ts) => self.pending.extend(
                    ts.into_iter()
                        .filter(|t| self.shard.is_none_or(|s| s.owns(&t.spec)))
                        .map(|t| Pending::new(t, Some(Rc::clone(&from)), line)),
                ),
                Err(e) => list.skip(&origin, e),
            }
        }
        true
    }

    /// Ask for the names of the targets within the lookahead that were not asked for yet.
    fn ask_ahead(&mut self) {
        // Bounded by the lookahead.
        while self.looked < self.pending.len().min(LOOKAHEAD) {
            let p = &mut self.pending[self.looked];
            self.looked += 1;
            let Host::Name(name) = &p.target.host else {
                continue;
            };
            if !matches!(p.addr, Addr::Unasked) {
                continue;
            }
            p.addr = match &self.last_asked {
                Some((host, addr)) if *host == p.target.host => addr.clone(),
                _ => {
                    let addr = Addr::Asked(self.lookups.ask(name, self.family));
                    self.last_asked = Some((p.target.host.clone(), addr.clone()));
                    addr
                }
            };
        }
    }

    /// The lookups answered since last time, to the targets waiting for them.
    fn collect_answers(&mut self) {
        if self.lookups.outstanding() == 0 {
            return;
        }
        let answers: Vec<(Ticket, Answer)> = self.lookups.answers().collect();
        for (ticket, answer) in answers {
            let asked = |a: &Addr| matches!(a, Addr::Asked(t) if *t == ticket);
            // Only the looked-at targets were asked for.
            for p in self.pending.iter_mut().take(self.looked) {
                if asked(&p.addr) {
                    p.addr = Addr::Known(answer.clone());
                }
            }
            if let Some((_, a)) = self.last_asked.as_mut()
                && asked(a)
            {
                *a = Addr::Known(answer);
            }
        }
    }

    /// The front target, taken.
    fn take_front(&mut self) -> Option<Pending> {
        let p = self.pending.pop_front()?;
        self.looked = self.looked.saturating_sub(1);
        Some(p)
    }

    /// A resolved target made ready to probe, or why not.
    fn prepare(&mut self, t: Target, remote: SocketAddr, line: u64) -> Result<SurveyTarget> {
        let ex = self.exchange;
        let tls = match ex.is_https(&t) {
            true => Some(tls_setup(&ex.tls, &t, &mut self.tls)?),
            false => None,
        };
        Ok(SurveyTarget {
            http: http_request(ex, &t)?,
            label: t.spec,
            remote,
            tls,
            tag: line,
            budget: None,
        })
    }

    /// Lines skipped and targets that could not be probed.
    fn failed(&self) -> u64 {
        self.failed + self.list.as_ref().map_or(0, |l| l.skipped)
    }
}

impl Feed for TargetStream<'_> {
    /// Never waits for a lookup; reading the list from a pipe waits for its next line when
    /// no target is left, as before.
    fn next_target(&mut self, now: tcpshake_proto::time::Instant) -> Next {
        self.collect_answers();
        // One line more each time, up to the lookahead: no wait for a long read before the
        // first probes, and names are found before their turn.
        if self.read_ahead && self.pending.len() < LOOKAHEAD {
            self.read_line();
        }
        // Bounded by the input: each pass consumes a pending target or a line.
        loop {
            self.ask_ahead();
            let Some(front) = self.pending.front() else {
                if self.read_line() {
                    continue;
                }
                return Next::End;
            };
            if self.last_failed.as_ref() == Some(&front.target.host) {
                if let Some(p) = self.take_front() {
                    self.failed_target(&p.target.spec);
                }
                continue;
            }
            if let Addr::Asked(_) | Addr::Unasked = front.addr {
                // Its turn, not its address: what can be looked up meanwhile is.
                while self.read_ahead && self.pending.len() < LOOKAHEAD && self.read_line() {}
                self.ask_ahead();
                return Next::Later(Some(now + LOOKUP_POLL));
            }
            let Some(Pending {
                target: t,
                from,
                line,
                addr,
            }) = self.take_front()
            else {
                continue;
            };
            // A list's target is named by its line, as a bad line is.
            let at = || from.as_ref().map_or(String::new(), |f| format!("{f}: "));
            let remote = match addr {
                Addr::Known(Ok(ip)) => Ok(SocketAddr::new(ip, t.port)),
                Addr::Known(Err(e)) => Err(e),
                _ => resolve(&t, self.family).map_err(|e| format!("{e:#}")),
            };
            let remote = match remote {
                Ok(a) => a,
                Err(e) => {
                    // As `probe` says it; the host's other ports fail alike, silently.
                    eprintln!("tcpshake: {}{e}", at());
                    self.failed_target(&t.spec);
                    self.last_failed = Some(t.host);
                    continue;
                }
            };
            let label = t.spec.clone();
            match self.prepare(t, remote, line) {
                Ok(st) => return Next::Target(Box::new(st)),
                Err(e) => {
                    // As the loop's failures are said (`FILE, line N: `label`: …`).
                    eprintln!("tcpshake: {}`{label}`: {e:#}", at());
                    self.failed_target(&label);
                    continue;
                }
            }
        }
    }
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
    /// Targets whose probes could not start, said once each (`-c 50` of a target with no
    /// route said the same line 50 times); how many times more they failed.
    failures_said: std::collections::HashSet<String>,
    failed_again: u64,
    live: Live,
}

/// Where the records go, and the packets.
struct Output {
    format: OutputFormat,
    /// Outlives its reader when there are capture files to finish (see [`super::Stdout`]).
    out: io::BufWriter<super::Stdout>,
    /// Records made whole before they are written: whole lines in one `write(2)`, so a
    /// kill cannot leave half of one (a BufWriter alone would write a long record in
    /// pieces).
    line: Vec<u8>,
    /// `--pcap`, `--pcapng`: packets as the loop saw them, put in time order.
    capture: Option<CaptureFiles>,
    /// `-o influx`: the timestamp last given a probe that sent nothing.
    influx_ns: u64,
}

impl Output {
    /// One probe's record (JSON Lines or CSV) and packets, flushed: a survey killed at any
    /// moment keeps every finished probe.
    fn write(&mut self, outcome: &Outcome) -> Result<()> {
        self.stage(outcome)?;
        self.emit()
    }

    /// One probe's record, made whole behind the others staged, not written yet.
    fn stage(&mut self, outcome: &Outcome) -> Result<()> {
        let r = &outcome.result;
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.line, r)?;
                self.line.push(b'\n');
            }
            OutputFormat::Csv => writeln!(self.line, "{}", csv_row(r))?,
            OutputFormat::Influx => {
                // Strictly later than the last line dated so, so no two such lines of a
                // series share a timestamp (InfluxDB would keep only one).
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, tcpshake_proto::time::nanos);
                self.influx_ns = now.max(self.influx_ns + 1);
                let line = crate::report::influx::line(r, self.influx_ns);
                writeln!(self.line, "{line}")?;
            }
            OutputFormat::Text => {}
        }
        Ok(())
    }

    /// The staged records, whole lines, in one `write(2)`, flushed.
    fn emit(&mut self) -> Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        self.line.clear();
        Ok(())
    }

    /// Packets the loop saw (in its order): to the capture files, in time order.
    fn packets(&mut self, packets: Vec<Captured>) -> Result<Vec<Captured>> {
        match &mut self.capture {
            Some(c) => c.seen(packets).context("writing the capture file"),
            None => Ok(packets),
        }
    }

    fn write_batch(&mut self, batch: Batch) -> Result<()> {
        self.stage_batch(batch)?;
        self.emit()
    }

    /// A batch's records staged (see [`Output::emit`]), its packets to the capture files.
    /// What is done with is given back: see [`Records::Writer`]'s `spent`.
    fn stage_batch(&mut self, batch: Batch) -> Result<Batch> {
        Ok(match batch {
            Batch::Records(outcomes) => {
                outcomes.iter().try_for_each(|o| self.stage(o))?;
                Batch::Records(outcomes)
            }
            Batch::Packets(packets) => Batch::Packets(self.packets(packets)?),
        })
    }

    fn finish(mut self) -> Result<()> {
        if let Some(c) = self.capture.take() {
            let late = c.finish().context("writing the capture file")?;
            if late > 0 {
                eprintln!(
                    "tcpshake: warning: {late} packet(s) reached the capture file more than \
                     {} ms behind later ones and were written out of time order",
                    crate::report::capture::WINDOW / 1_000_000
                );
            }
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Records staged at most before they are written (a few hundred JSON records).
const STAGED_MAX: usize = 256 * 1024;

/// Machine-readable records are written by a thread of their own as probes end (handed
/// over once per loop pass, written and flushed as soon as the thread gets to them, all it
/// has at hand in one write): serializing and writing
/// them was a tenth of the survey loop's time, which the loop then spent on probes instead,
/// and waking the writer for each one another 2%. Text lines stay with the loop (they share
/// the terminal with the live display).
enum Records {
    Inline(Box<Output>),
    Writer {
        to_writer: std::sync::mpsc::SyncSender<Batch>,
        /// Records and packets the writer has written, handed back for the loop to free.
        /// The loop allocated them, so glibc's malloc keeps their memory in the loop's
        /// arena, and a `free` on another thread takes that arena's lock: the writer
        /// freeing them held it against the loop's own `malloc`, and the loop blocked in
        /// `futex` 1 000-5 000 times in a 40 960-probe survey at `-j 64` (`perf record -e
        /// syscalls:sys_enter_futex`: `__lll_lock_wait_private`), asleep with SYN-ACKs
        /// waiting (with `--pcap`, its packets the same). Freed by their owner, they take
        /// the lock uncontended.
        spent: std::sync::mpsc::Receiver<Batch>,
        writer: std::thread::JoinHandle<Result<Output>>,
    },
}

/// Written batches (records or packets) in the hand-back at most; past that the writer
/// frees them itself (a loop that does not take them back must not block the writer, which
/// it may be waiting on). With the 64 on their way to the writer, at most 192 batches are
/// held at once.
const SPENT_MAX: usize = 128;

/// What the loop hands the writer: the records of a pass, or packets it saw.
enum Batch {
    Records(Vec<Outcome>),
    Packets(Vec<Captured>),
}

impl Records {
    fn new(output: Output) -> Result<Records> {
        if output.format == OutputFormat::Text {
            return Ok(Records::Inline(Box::new(output)));
        }
        // Bounded: a writer that falls behind (a slow pipe) slows the survey down rather
        // than holding its records in memory.
        let (to_writer, from_loop) = std::sync::mpsc::sync_channel::<Batch>(64);
        let (to_loop, spent) = std::sync::mpsc::sync_channel::<Batch>(SPENT_MAX);
        // Full or gone: freed here after all.
        let give_back = move |done: Batch| {
            let _ = to_loop.try_send(done);
        };
        let writer = std::thread::Builder::new()
            .name("record writer".into())
            .spawn(move || {
                let mut output = output;
                for batch in &from_loop {
                    give_back(output.stage_batch(batch)?);
                    // What the loop handed over meanwhile goes out in the same write(2): a
                    // write per record was a third of this thread's time, which on a small
                    // machine the loop and the server wait for.
                    while output.line.len() < STAGED_MAX {
                        let Ok(more) = from_loop.try_recv() else {
                            break;
                        };
                        give_back(output.stage_batch(more)?);
                    }
                    output.emit()?;
                }
                Ok(output)
            })
            .context("starting the record writer thread")?;
        Ok(Records::Writer {
            to_writer,
            spent,
            writer,
        })
    }

    /// All records written; the output flushed and closed.
    fn finish(self) -> Result<()> {
        match self {
            Records::Inline(output) => output.finish(),
            Records::Writer {
                to_writer,
                spent,
                writer,
            } => {
                drop(to_writer);
                drop(spent);
                writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("the record writer thread panicked"))??
                    .finish()
            }
        }
    }
}

impl Sink {
    fn record(&mut self, outcome: Box<Outcome>, declared: &RefCell<Vec<String>>) -> Result<()> {
        // Targets enter the statistics in the order they were started, which is the input
        // order, before this probe's sample: the table lists them as given.
        declare_started(&mut self.stats, declared);
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
                    // Flushed line by line, as ping and hping3 print theirs: block-buffered
                    // into a pipe, a text survey's lines came only at its end (`| head -1`
                    // did not stop it, `| grep` showed nothing live, a kill lost them all).
                    self.live.suspend(|| {
                        writeln!(out, "{line}")?;
                        out.flush()
                    })?;
                }
                output.write(&outcome)
            }
            Records::Writer { .. } => {
                self.pending.push(*outcome);
                Ok(())
            }
        }
    }

    /// The loop pass ended: free what the writer gave back, hand this pass's records to
    /// the writer.
    fn pass_done(&mut self) -> Result<()> {
        if let Records::Writer { spent, .. } = &self.records {
            // Bounded: the writer gives back only what the loop handed it.
            while let Ok(done) = spent.try_recv() {
                drop(done);
            }
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = Batch::Records(std::mem::take(&mut self.pending));
        self.hand(batch)
    }

    /// Packets the loop saw: to the capture files (by the writer, when there is one).
    fn captured(&mut self, packets: Vec<Captured>) -> Result<()> {
        match &mut self.records {
            Records::Inline(output) => output.packets(packets).map(drop),
            Records::Writer { .. } => self.hand(Batch::Packets(packets)),
        }
    }

    fn hand(&mut self, batch: Batch) -> Result<()> {
        match &mut self.records {
            Records::Inline(output) => output.write_batch(batch),
            Records::Writer { to_writer, .. } => {
                if to_writer.send(batch).is_err() {
                    // The writer stopped on an error; take it.
                    let records = std::mem::replace(
                        &mut self.records,
                        Records::Inline(Box::new(Output {
                            format: self.format,
                            out: io::BufWriter::new(super::Stdout::new(false)),
                            line: Vec::new(),
                            capture: None,
                            influx_ns: 0,
                        })),
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

pub(super) fn run(c: &SurveyConfig) -> Result<Exit> {
    let jobs = c.jobs as usize;
    // First, while this process has one thread (see the function).
    survey::grow_file_table(jobs);
    // An unreadable --cacert is a usage error before anything is sent: load the trust
    // anchors now when they will be needed.
    // Every refusal before the capture files are made: a refused run leaves no empty file.
    let mut tls = TlsShared::default();
    if c.exchange.tls.force || c.exchange.tls.cacert.is_some() {
        tls.preload(&c.exchange.tls, "--cacert")?;
    }
    super::refuse_broadcast_targets(super::literal_addrs(&c.targets))?;
    let mut list = c.list.as_deref().map(TargetList::open).transpose()?;
    if let Some(l) = list.as_mut().filter(|_| c.targets.is_empty()) {
        l.refuse_if_empty()?;
    }
    let capture = open_captures(c.pcap.as_deref(), c.pcapng.as_deref(), &mut tls)?;
    let capture_as = capture_mode(&capture);
    let format = c.format;
    // A list's target that cannot start is named by its line (its tag), as a bad line is.
    let list_name = list.as_ref().map(|l| l.name().to_string());
    let mut stream = TargetStream::new(c, list, tls);
    let stop = signals::stop_flag();
    let mut guard = Guard::install_for_survey(MARK)?;
    // A closed stdout (`| head`) must not leave the capture files empty: the survey then
    // runs to its end, its records dropped.
    let files = capture.is_some();
    let mut out = io::BufWriter::new(super::Stdout::new(files));
    if format == OutputFormat::Csv {
        writeln!(out, "{}", csv_header())?;
        out.flush()?;
    }
    let mut sink = Sink {
        format,
        quiet: c.quiet,
        records: Records::new(Output {
            format,
            out,
            line: Vec::new(),
            capture,
            influx_ns: 0,
        })?,
        pending: Vec::new(),
        stats: Survey::default(),
        failed: 0,
        failures_said: std::collections::HashSet::new(),
        failed_again: 0,
        live: Live::new(live_stderr()),
    };
    let opts = SurveyOptions {
        jobs,
        count: c.count,
        interval: c.interval,
        capture: capture_as,
        reflex: c.reflex,
    };
    let ex = &c.exchange;
    let pair_secret = PairSecret::new();
    // Labels of the probes started since the last record: a target's first probe starts
    // as it is taken from the input, so this is the input order (see Sink::record).
    let declared = Rc::clone(&stream.declared);
    let mut make_cfg = |t: &SurveyTarget, local: SocketAddr, mss: u16| {
        declared.borrow_mut().push(t.label.clone());
        probe_config(ex, t, local, mss, &pair_secret, c.separate_ack)
    };
    let mut on_report = |r: Report<'_>, p: Progress| -> Result<()> {
        sink.live.progress = p;
        match r {
            Report::Done { outcome, .. } => sink.record(outcome, &declared),
            Report::PassDone => sink.pass_done(),
            Report::Captured(packets) => sink.captured(packets),
            Report::Failed { target, error } => {
                // Counted among the targets, in input order: "(and 1 target without a
                // finished probe)" says it was asked for.
                declared.borrow_mut().push(target.label.clone());
                if sink.failures_said.insert(target.label.clone()) {
                    let at = match &list_name {
                        Some(name) if target.tag > 0 => {
                            format!("{}: ", TargetList::origin(name, target.tag))
                        }
                        _ => String::new(),
                    };
                    sink.live
                        .suspend(|| eprintln!("tcpshake: {at}`{}`: {error:#}", target.label));
                } else {
                    sink.failed_again += 1;
                }
                sink.failed += 1;
                Ok(())
            }
        }
    };
    let run = survey::survey_feed(
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
    // A one-shot survey's socket closes after it exits (teardown.rs).
    let closing = teardown::keep(Box::new(guard)).map(|g| std::thread::spawn(move || drop(g)));
    let losses = run?;
    handed?;
    if losses.dropped > 0 || losses.truncated > 0 {
        eprintln!(
            "tcpshake: warning: the capture socket missed {} ({} dropped for want of room, \
             {} too long): the records of some probes lack segments and their timings may \
             include the server's retransmissions; lower -j",
            crate::report::count(losses.dropped + losses.truncated, "packet", "packets"),
            losses.dropped,
            losses.truncated
        );
    }
    let progress = sink.live.progress;
    let Sink {
        records,
        mut stats,
        failed,
        failed_again,
        ..
    } = sink;
    // Targets started (or failed to) after the last record.
    declare_started(&mut stats, &declared);
    records.finish()?;
    if failed_again > 0 {
        eprintln!(
            "tcpshake: and {} of those targets failed as said above",
            crate::report::count(failed_again, "more probe", "more probes")
        );
    }
    // The table goes where it does not mix with machine-readable records.
    if stats.target_count() + stats.unsampled_count() == 0 && stream.failed() > 0 {
        // Every target was a bad line, each reported (one mistake, one message): no empty
        // table after them (it printed a blank line on stdout), as `scan` prints nothing.
    } else if format == OutputFormat::Text {
        let mut out = io::BufWriter::new(super::Stdout::new(files));
        if !c.quiet {
            writeln!(out)?;
        }
        write_table(&mut out, &stats, false)?;
        out.flush()?;
    } else {
        let mut err = io::BufWriter::new(io::stderr().lock());
        write_table(&mut err, &stats, false)?;
        err.flush()?;
    }
    let synacks = stats.overall().states().0;
    if let Some(line) = reflex_line(&progress, synacks, c.reflex, c.quiet) {
        eprintln!("{line}");
    }
    let breached = judge(&c.slos, &stats);
    if let Some(c) = closing {
        let _ = c.join();
    }
    Ok(if breached {
        Exit::SloBreached
    } else if failed > 0 || stream.failed() > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// Who answered the SYN-ACKs, when it is worth a line: how many handshakes the kernel
/// program acknowledged (tcpshake_io::reflex), or why it could not. `-q` keeps the
/// count to itself, not the reason: that one says why the SYN-ACK→ACK row is a
/// user-space loop's. `synacks`: the probes that found the port open (a survey of closed
/// or filtered ports had no SYN-ACK for it to answer, and gets no count).
fn reflex_line(p: &Progress, synacks: u64, wanted: bool, quiet: bool) -> Option<String> {
    if !wanted {
        return None;
    }
    // Out of the probes it could answer: counted out of all probes, a survey of an open
    // and a closed port read as if the program had missed half (a walk).
    let answered = |n: u64| crate::report::count(n, "probe", "probes") + " answered with a SYN-ACK";
    if p.reflex_acks > 0 {
        if quiet {
            return None;
        }
        return Some(format!(
            "tcpshake: the kernel program sent the handshake's ACK of {} of {} \
             (the segment tcpshake would send, from the softirq that took the SYN-ACK; \
             `--no-reflex` sends them all from tcpshake)",
            p.reflex_acks,
            answered(synacks.max(p.reflex_acks))
        ));
    }
    match p.reflex_unavailable {
        Some(why) => Some(format!(
            "tcpshake: note: SYN-ACKs were answered from tcpshake itself: the kernel program \
             that answers them as fast as the kernel's own TCP is {why}"
        )),
        // Loaded, but not in place when any of their SYNs left: the first SYNs wait for it
        // for REFLEX_WAIT (tcpshake_io::survey) at most, and a short survey can end before a
        // slow verifier or attachment does.
        None if synacks > 0 && !quiet && p.reflex_in_place == 0 => Some(format!(
            "tcpshake: the kernel program sent the handshake's ACK of 0 of {} (it was not in \
             place yet when their SYNs left: loading and attaching it took longer than the {} \
             ms the first SYNs wait for it; tcpshake answered them)",
            answered(synacks),
            survey::REFLEX_WAIT.as_millis()
        )),
        // In place, and none was for it: it answers only a SYN-ACK our TCP would answer
        // with the segment it planned (README "Surveys" says which).
        None if synacks > 0 && !quiet => Some(format!(
            "tcpshake: the kernel program sent the handshake's ACK of 0 of {} (none of their \
             SYN-ACKs was one it answers: a path MTU, MSS or window too small for the \
             request, an option it does not read, a SYN sent again; tcpshake answered them)",
            answered(synacks)
        )),
        None => None,
    }
}

/// The targets started since the last record, into the statistics in that order.
fn declare_started(stats: &mut Survey, declared: &RefCell<Vec<String>>) {
    for label in declared.borrow_mut().drain(..) {
        stats.declare(&label);
    }
}

/// One survey probe's configuration (the exporter's too).
pub(super) fn probe_config(
    ex: &Exchange,
    t: &SurveyTarget,
    local: SocketAddr,
    mss: u16,
    pair_secret: &PairSecret,
    separate_ack: bool,
) -> ProbeConfig {
    let mut tcp = tcp_config(ex, local, t.remote, mss);
    // Successive probes of one server must look like successive connections of one
    // host, or a new SYN that meets the server's TIME-WAIT of an earlier probe (same
    // port pair, after a port was reused) is refused: Linux accepts it only when its
    // sequence number or timestamp is newer (RFC 6191 §2). So, as Linux itself does:
    // ISN = a 4 µs clock + a keyed hash (RFC 6528 §3), TSval offset per host pair
    // (RFC 7323 §5.4), both increasing across probes and across runs.
    let now = tcpshake_io::clock::now().as_nanos();
    tcp.isn = SeqNumber(((now / 4_000) as u32).wrapping_add(pair_secret.hash(local, t.remote, 1)));
    tcp.ts_offset = pair_secret.hash(local, t.remote, 2);
    // The request rides on the handshake's ACK unless asked otherwise: one segment
    // less per probe, for the server and for us (tcp::Config::ack_with_data).
    tcp.ack_with_data = !separate_ack;
    ProbeConfig {
        target: t.label.clone(),
        tcp,
        http: t.http.clone(),
        timeout: ex.timeout,
        linger: ex.linger,
        tls: t.tls.clone(),
        mss_hint: ex.mss_hint,
    }
}

/// The key of the per-host-pair hashes: this boot's id (readable by local users only, so
/// unknown off-path, and the same for every run until reboot, which keeps ISNs and
/// timestamps increasing across runs).
pub(super) struct PairSecret(Vec<u8>);

impl PairSecret {
    pub(super) fn new() -> PairSecret {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn survey(args: &[&str]) -> SurveyConfig {
        let argv = std::iter::once("tcpshake").chain(args.iter().copied());
        match Config::parse_from(argv) {
            Ok(Config::Survey(c)) => c,
            _ => panic!("{args:?}: not a survey"),
        }
    }

    /// What the stream hands the loop, asked as the loop asks (bounded), in order.
    fn drain(s: &mut TargetStream<'_>) -> Vec<(String, SocketAddr)> {
        let mut got = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            match s.next_target(tcpshake_io::clock::now()) {
                Next::Target(t) => got.push((t.label, t.remote)),
                Next::Later(_) => std::thread::sleep(LOOKUP_POLL),
                Next::End => return got,
            }
        }
        panic!("the stream did not end: {got:?}");
    }

    /// `-q` (statistics only) still says why the kernel program did not answer — the
    /// SYN-ACK→ACK row is then a user-space loop's — but not how many it answered;
    /// `--no-reflex` says neither.
    #[test]
    fn quiet_keeps_the_kernel_programs_absence_said() {
        let missing = Progress {
            reflex_unavailable: Some(
                "not permitted (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)",
            ),
            finished: 5,
            ..Default::default()
        };
        for quiet in [false, true] {
            let line = reflex_line(&missing, 5, true, quiet).unwrap_or_default();
            assert!(
                line.starts_with("tcpshake: note: SYN-ACKs were answered from tcpshake itself")
                    && line.ends_with(
                        "is not permitted (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
                    ),
                "{line:?}"
            );
            assert_eq!(reflex_line(&missing, 5, false, quiet), None);
        }
        let answered = Progress {
            reflex_acks: 4,
            reflex_in_place: 5,
            finished: 5,
            ..Default::default()
        };
        let line = reflex_line(&answered, 5, true, false).unwrap_or_default();
        assert!(
            line.starts_with(
                "tcpshake: the kernel program sent the handshake's ACK of 4 of 5 probes \
                 answered with a SYN-ACK"
            ),
            "{line:?}"
        );
        assert_eq!(reflex_line(&answered, 5, true, true), None);
        // Out of those it could answer: a closed port's probes are not counted.
        let half_closed = Progress {
            finished: 12,
            ..answered
        };
        let line = reflex_line(&half_closed, 6, true, false).unwrap_or_default();
        assert!(
            line.contains("ACK of 4 of 6 probes answered with a SYN-ACK ("),
            "{line:?}"
        );
        // In place, and none was for it: said, not left out.
        let none = Progress {
            finished: 5,
            reflex_in_place: 5,
            ..Default::default()
        };
        let line = reflex_line(&none, 5, true, false).unwrap_or_default();
        assert!(
            line.starts_with(
                "tcpshake: the kernel program sent the handshake's ACK of 0 of 5 probes \
                 answered with a SYN-ACK (none"
            ),
            "{line:?}"
        );
        assert_eq!(reflex_line(&none, 5, true, true), None);
        // Loaded, but never in place while a SYN left: that reason, not the other.
        let late = Progress {
            finished: 5,
            ..Default::default()
        };
        let line = reflex_line(&late, 5, true, false).unwrap_or_default();
        assert!(
            line.starts_with(
                "tcpshake: the kernel program sent the handshake's ACK of 0 of 5 probes \
                 answered with a SYN-ACK (it was not in place yet"
            ),
            "{line:?}"
        );
        assert_eq!(reflex_line(&late, 5, true, true), None);
        // No SYN-ACK at all (every port closed or filtered): nothing it could have
        // answered, no count; why it is missing is still said.
        assert_eq!(reflex_line(&none, 0, true, false), None);
        assert_eq!(reflex_line(&late, 0, true, false), None);
        assert!(reflex_line(&missing, 0, true, false).is_some());
    }

    /// Records the writer has staged come back to the loop's side to be freed there (see
    /// `Records::Writer`'s `spent`): the very allocation handed over, not a copy.
    /// A JSON Lines output's records, through the writer thread; the tests hand it no
    /// record, so nothing reaches stdout.
    fn json_writer() -> Records {
        Records::new(Output {
            format: OutputFormat::Jsonl,
            out: io::BufWriter::new(crate::app::Stdout::new(false)),
            line: Vec::new(),
            capture: None,
            influx_ns: 0,
        })
        .unwrap()
    }

    #[test]
    fn the_writer_hands_written_records_back() {
        let records = json_writer();
        let Records::Writer {
            to_writer, spent, ..
        } = &records
        else {
            panic!("JSON Lines go through the writer thread");
        };
        // No records in it (the test writes nothing to stdout), only room for them.
        let batch: Vec<Outcome> = Vec::with_capacity(1000);
        let at = batch.as_ptr();
        to_writer.send(Batch::Records(batch)).unwrap();
        let Batch::Records(back) = spent.recv_timeout(Duration::from_secs(10)).unwrap() else {
            panic!("records handed over, something else handed back");
        };
        assert_eq!((back.as_ptr(), back.capacity()), (at, 1000));
        records.finish().unwrap();
    }

    /// A loop that never takes written batches back does not hold the writer up: past
    /// SPENT_MAX the writer frees them itself, and finishing still ends.
    #[test]
    fn a_full_hand_back_does_not_block_the_writer() {
        let records = json_writer();
        assert!(matches!(records, Records::Writer { .. }));
        // On a thread of its own: a writer that blocked on the hand-back would block these
        // sends too, and the test would wait on it below, not hang.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Records::Writer { to_writer, .. } = &records {
                for _ in 0..SPENT_MAX * 3 {
                    if to_writer.send(Batch::Records(Vec::new())).is_err() {
                        break;
                    }
                }
            }
            let _ = done_tx.send(records.finish().is_ok());
        });
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    }

    /// A directory removed on drop (a failing test's too).
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Names are looked up on the resolver's threads (`localhost`: /etc/hosts, no
    /// resolver asked), one lookup for a name's ports; the targets come in input order,
    /// the list's after the command line's, a name's after the addresses before it.
    #[test]
    fn targets_come_in_input_order_with_names_looked_up_aside() {
        let dir =
            TempDir(std::env::temp_dir().join(format!("tcpshake-stream-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("list.txt");
        std::fs::write(&file, "198.18.0.3\nlocalhost 198.18.0.4\n").unwrap();
        let list_arg = file.to_string_lossy().into_owned();
        let c = survey(&[
            "probe",
            "198.18.0.1:80",
            "localhost",
            "198.18.0.2",
            "-p",
            "80,8080",
            "-4",
            "-iL",
            &list_arg,
        ]);
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let at = |a: [u8; 4], p| SocketAddr::from((a, p));
        let want = [
            ("198.18.0.1:80", at([198, 18, 0, 1], 80)),
            ("localhost:80", lo(80)),
            ("localhost:8080", lo(8080)),
            ("198.18.0.2:80", at([198, 18, 0, 2], 80)),
            ("198.18.0.2:8080", at([198, 18, 0, 2], 8080)),
            ("198.18.0.3:80", at([198, 18, 0, 3], 80)),
            ("198.18.0.3:8080", at([198, 18, 0, 3], 8080)),
            ("localhost:80", lo(80)),
            ("localhost:8080", lo(8080)),
            ("198.18.0.4:80", at([198, 18, 0, 4], 80)),
            ("198.18.0.4:8080", at([198, 18, 0, 4], 8080)),
        ];
        let want: Vec<(String, SocketAddr)> =
            want.iter().map(|(l, a)| (l.to_string(), *a)).collect();
        // Read ahead (a file) or line by line (as from a pipe): the same targets.
        for read_ahead in [true, false] {
            let list = c.list.as_deref().map(TargetList::open).transpose().unwrap();
            assert!(list.as_ref().is_some_and(TargetList::is_regular_file));
            let mut stream = TargetStream::new(&c, list, TlsShared::default());
            stream.read_ahead = read_ahead;
            let got = drain(&mut stream);
            assert_eq!(got, want, "read ahead: {read_ahead}");
            assert_eq!(stream.failed(), 0);
            assert_eq!(stream.lookups.outstanding(), 0);
        }
    }
}

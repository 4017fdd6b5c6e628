//! The survey loop: many probes in flight at once, driven by one thread over non-blocking
//! sockets — one AF_PACKET tap per egress interface, one raw sender per address family (per
//! source address for IPv6), one timer heap over every probe's deadlines.
//!
//! ```text
//!   targets (streamed) ─► due heap ─► start ≤ jobs probes ─► slots ◄─ tap packets, demuxed
//!                          ▲  repeat after --interval           │    by (local addr, port)
//!                          └────────── finished ◄── drain ◄─────┘ ◄─ timer heap (RTO, deadlines)
//! ```
//!
//! Each probe is the same sans-IO [`Probe`] that `tcpshake probe` runs alone (run.rs); only
//! the shuttling differs. Every probe gets a source port of its own, reserved from the
//! kernel by a bound socket and guarded in nftables; a port recently used towards the same
//! remote is not used for it again, so a new SYN never lands on the server's TIME-WAIT of
//! an earlier probe (RFC 9293 §3.6.1, RFC 6191). No port serves two probes. Reserving,
//! guarding and giving ports back is done beside the loop, on another thread (ports.rs).
//!
//! Targets are pulled from the caller's iterator only when there is room, and a finished
//! probe leaves nothing here: memory is bounded by `jobs`, not by the number of targets.
//!
//! A pass answers first and keeps its books after (`probe::survey::Pass`): packets are read
//! from the tap's memory-mapped ring (tap.rs; a tap opened with probes in flight reads its
//! queue instead, tapqueue.rs) and answered a run at a time — what the ring held filled,
//! or at once after a SYN-ACK —, each probe's answer (the ACK of a SYN-ACK) sent ahead of
//! everything else; ended probes are settled and new ones started one at a
//! time, with the taps read in between. Before, a pass read everything, then answered,
//! then kept its books and sent a train of 64 SYNs at once: at `-j 64` a SYN-ACK waited
//! ~400 µs for our ACK (over veth the server's kernel answers each SYN inside our
//! `sendmmsg`, so the first SYN-ACK waited for the other 63 SYNs to be sent); now ~3 µs.
//!
//! run.rs stays the path for the classic one-at-a-time probe: it taps one port only (the
//! quietest filter), and its behaviour is pinned by the probe tests; this loop shares its
//! pieces (flush, hard limit).

use super::guard::Guard;
use super::guard::MARK;
use super::ports::PortKeeper;
use super::ports::PortReservation;
use super::reflex::{Ask, Claim, IpFields, Ready, Reflex, Setup};
use super::route::{Route, Router};
use super::run::{
    Capture, Captured, DRAIN_MAX, DRAIN_QUIET, IP_TTL, MAX_SLEEP, Outcome, build_segment,
    local_refusal, send_error,
};
use super::sender::RawSender;
use super::tap::{Tap, TapLosses};
use super::{clock, is_environment_error};
use anyhow::{Context, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tcpshake_proto::probe::survey::{
    Admit, GiveUp, Idle, Pass, PathMtuCache, RecentPairs, Schedule, deadline_passed, give_up_at,
};
use tcpshake_proto::probe::tls::TlsSetup;
use tcpshake_proto::probe::{HttpRequest, LocalRefusal, Probe, ProbeConfig};
use tcpshake_proto::tcp::HandshakeAck;
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::defrag::{Defrag, Defragged};
use tcpshake_proto::wire::ip::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use tcpshake_proto::wire::{IcmpError, IpPacket};

/// One target of a survey, as the caller resolved it.
#[derive(Clone, Debug)]
pub struct SurveyTarget {
    /// The name statistics group by (the target as written, with its port).
    pub label: String,
    pub remote: SocketAddr,
    /// What to ask once connected (None: handshake and close only).
    pub http: Option<HttpRequest>,
    /// HTTPS: a TLS handshake first.
    pub tls: Option<TlsSetup>,
    /// The caller's own number for this target, handed back with it in every report (the
    /// exporter matches a `/probe` request to its result by it); the loop ignores it.
    pub tag: u64,
    /// A limit of the caller's on the probe's whole run, shorter than its own (the
    /// exporter's: the scrape's timeout), and why a probe that reaches it ends (its error
    /// `gave up: WHY`, or a note when it was only waiting out TIME-WAIT).
    pub budget: Option<Budget>,
}

/// When a probe must have ended at the latest, and why (the error it gets when it ran
/// out). A deadline, not a length: a probe that waited for a free place (`jobs`) past it
/// is not started at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub until: Instant,
    pub why: &'static str,
}

/// What a [`Feed`] has for the loop.
pub enum Next {
    /// Start this target now (boxed: a target is large beside the other answers).
    Target(Box<SurveyTarget>),
    /// Nothing to start now: ask again at this time at the latest (or at the next loop
    /// pass, whichever comes first); `None`: whenever.
    Later(Option<Instant>),
    /// No more targets: the survey ends when the probes in flight have.
    End,
}

/// Where a survey's targets come from. A finite list is an [`Iterator`]; a feed that is
/// never done (the exporter's continuous surveys and `/probe` requests) answers
/// [`Next::Later`] until something is due, so the loop keeps serving the probes in flight
/// instead of blocking in it.
pub trait Feed {
    /// Asked whenever there is room for another probe; must not block.
    fn next_target(&mut self, now: Instant) -> Next;
}

impl<I: Iterator<Item = SurveyTarget>> Feed for I {
    fn next_target(&mut self, _now: Instant) -> Next {
        match self.next() {
            Some(t) => Next::Target(Box::new(t)),
            None => Next::End,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SurveyOptions {
    /// Probes in flight at once.
    pub jobs: usize,
    /// Probes per target.
    pub count: u32,
    /// Between the starts of two probes of one target; they never overlap.
    pub interval: Duration,
    /// Keep the packets of the probes (for --pcap, --pcapng): they are handed to the caller
    /// as they are seen ([`Report::Captured`]), not held until their probe ends.
    pub capture: Capture,
    /// Have the kernel answer each SYN-ACK with our ACK (reflex.rs) where it can.
    pub reflex: bool,
}

/// What the loop tells its caller.
pub enum Report<'a> {
    /// A probe ended; its record is final.
    Done {
        target: &'a SurveyTarget,
        outcome: Box<Outcome>,
    },
    /// A probe could not start (no route, no port); not an environment problem.
    Failed {
        target: &'a SurveyTarget,
        error: anyhow::Error,
    },
    /// The loop finished a pass in which probes ended: what was reported so far can go out
    /// together (the loop is about to read the taps again or to sleep).
    PassDone,
    /// Packets of the probes, in the order the taps gave them (with `capture` on), handed
    /// over at the end of each pass that saw some, or sooner when many came: a pcap file
    /// written from these is in time order but for what crosses taps or comes in fragments
    /// (the caller keeps a short reorder window).
    Captured(Vec<Captured>),
}

/// Counters for the caller's progress display.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub in_flight: usize,
    pub finished: u64,
    /// Packets the taps missed so far (ring or queue full, or too long), read at most once a
    /// second: a long-running caller (the exporter) shows them as they happen.
    pub capture_missed: u64,
    /// Handshakes whose ACK the kernel program sent (reflex.rs).
    pub reflex_acks: u64,
    /// Probes whose SYN left with the kernel program in place for its family (the rest left
    /// while it was still being loaded or attached), whether or not it could answer them.
    pub reflex_in_place: u64,
    /// Why the kernel program is not answering (`SurveyOptions::reflex` on), once known.
    pub reflex_unavailable: Option<&'static str>,
}

// A finished probe's record is final once the tap has shown every segment it sent (an
// outgoing copy is in the ring before `sendto` returns, so this is usually at once).
// Should a copy never come (lost to a full ring), it waits until the tap has been quiet
// for it for `DRAIN_QUIET`, at most `DRAIN_MAX` (run.rs: the same as a single probe's).

/// Route lookups remembered (one netlink request each otherwise).
const ROUTE_CACHE: usize = 4_096;
/// How many stocked ports a new probe looks at for one not used towards its remote lately.
const STOCK_SCAN: usize = 64;
/// Ports per source address the keeper keeps ready, and per guard transaction.
const PORT_BATCH: usize = 64;
/// How long a survey's first SYNs wait for the kernel program (reflex.rs) at most.
pub const REFLEX_WAIT: Duration = Duration::from_millis(250);

/// Probes the kernel program can hold at once (slots past it answer from user space).
const MAX_REFLEX_SLOTS: usize = 4_096;

/// Why the kernel program could not be set up, in a word a user can act on: it completes
/// "the kernel program … is {why}" (the survey's closing note).
fn reflex_why(e: &std::io::Error) -> &'static str {
    // A verifier's refusal comes back with its log (`ebpf::load_sched_cls`), no errno but
    // its kind: with CAP_BPF but neither CAP_PERFMON nor CAP_SYS_ADMIN the verifier
    // refuses the program's pointer arithmetic on the packet ("prohibited for !root").
    let permission = e.kind() == std::io::ErrorKind::PermissionDenied;
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => REFLEX_NOT_PERMITTED,
        _ if permission => REFLEX_NOT_PERMITTED,
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            "not supported by this kernel (needs Linux 6.6 or later: TCX)"
        }
        Some(libc::ENOMEM) => "out of locked memory (RLIMIT_MEMLOCK)",
        _ => "unavailable (the kernel would not load or attach it)",
    }
}

const REFLEX_NOT_PERMITTED: &str = "not permitted (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)";

/// Segments per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// How often the taps' loss counters are read for [`Progress::capture_missed`].
const LOSSES_EVERY: Duration = Duration::from_secs(1);
/// The error of a probe that reached its own limit (`ProbeConfig::hard_limit`).
const GAVE_UP: &str = "the exchange exceeded its time budget";

/// A segment built and waiting for this pass's `sendmmsg`.
struct Queued {
    start: usize,
    len: usize,
    sender: usize,
    remote: SocketAddr,
    /// Its probe: the slot and the slot's generation (the slot may be another probe's by
    /// the time a send fails).
    slot: (usize, u64),
    /// Its place in the order of sending (`Pass::send_rank`): a SYN-ACK's answer first.
    rank: u8,
}

#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    packets: Vec<Queued>,
}

struct Slot {
    probe: Probe,
    active: usize,
    local: SocketAddr,
    remote: SocketAddr,
    sender: usize,
    reservation: PortReservation,
    /// The port is in the guard (one holder), to be released when the probe ends; false for
    /// a port the loop reserved itself until `launch` guards it.
    guarded: bool,
    started: Instant,
    give_up_at: Instant,
    /// The error a probe still running at `give_up_at` gets.
    give_up_why: &'static str,
    drain_until: Option<Instant>,
    done_at: Option<Instant>,
    /// Reset with data in flight: the slot stays until this time to answer the server's
    /// challenge ACK with a RST (`Probe::challenge_wait`).
    challenge_until: Option<Instant>,
    /// The earliest deadline this slot has in the timer heap.
    armed: Option<Instant>,
    generation: u64,
    /// The tap its packets come through (taps[tap]).
    tap: usize,
    /// In `Loop::touched`: packets of it were read since the last answer.
    touched: bool,
    /// Its SYN-ACK was among them: its answer goes out ahead of all others.
    synack: bool,
    /// The handshake's ACK the kernel program may send (armed with its SYN).
    reflex_plan: Option<HandshakeAck>,
    /// In `Loop::due`: it ended or a deadline of it came; `settle` will see to it.
    due: bool,
}

/// The loop's sockets and tables.
struct Loop<'k, 'g> {
    opts: SurveyOptions,
    ports: &'k PortKeeper<'g>,
    taps: Vec<Tap>,
    /// One reassembler per tap: fragments carry no ports until whole (wire/defrag.rs).
    defrags: Vec<Defrag>,
    /// What each tap had lost when last looked at (`Tap::losses`, cumulative).
    tap_lost: Vec<u64>,
    /// Which taps gave packets this pass (their losses are looked at when it ends).
    tap_read: Vec<bool>,
    tap_by_oif: HashMap<u32, usize>,
    senders: Vec<RawSender>,
    sender_by_src: HashMap<IpAddr, usize>,
    routes: HashMap<IpAddr, Rc<Route>>,
    /// Path MTUs the survey's probes learned (tcp::Config::known_path_mtu).
    pmtu: PathMtuCache,
    router: Router,
    port_range: (u16, u16),
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    by_local: HashMap<SocketAddr, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    generation: u64,
    /// Which target gets the next probe (pure policy: `probe::survey`). A target is shared
    /// with its probe in flight (a clone per probe was a measurable share).
    schedule: Schedule<Rc<SurveyTarget>>,
    /// (remote, local port) pairs used lately: a port is not used towards a server that may
    /// still hold it in TIME-WAIT.
    recent: RecentPairs,
    finished: u64,
    ident: u16,
    tx: Vec<u8>,
    last_tx: Instant,
    /// Slots made this pass, waiting for their ports to be guarded (one nftables
    /// transaction for all of them) before their SYNs go out.
    starting: Vec<usize>,
    outbox: Outbox,
    /// Packets of the probes seen this pass (with `capture` on), for [`Report::Captured`].
    captured: Vec<Captured>,
    /// What the taps missed, as last read ([`Loop::refresh_losses`]).
    capture_missed: u64,
    losses_read_at: Instant,
    /// How a pass is paced (pure policy: `probe::survey::Pass`).
    pass: Pass,
    /// When `react` last read the taps.
    last_read: Instant,
    /// Room for one packet off a tap.
    rx: Vec<u8>,
    /// Probes with packets read since the last answer (`react`).
    touched: Vec<usize>,
    /// Probes that ended or whose deadline came, for `settle`.
    due: Vec<usize>,
    /// Segments sent so far (`react` reads again after an answer that sent some).
    segments_sent: u64,
    /// The kernel program's tables (reflex.rs), once loaded.
    reflex: Option<Reflex>,
    reflex_setup: Option<Setup>,
    tap_reflex: Vec<TapReflex>,
    /// The survey's first SYNs waited for the kernel program (`reflex_ask`).
    reflex_waited: bool,
    /// Per tap: its interface may bring SYN-ACKs whose checksum was left to offload.
    tap_offload: Vec<bool>,
    reflex_acks: u64,
    reflex_in_place: u64,
    reflex_unavailable: Option<&'static str>,
}

/// Per tap, the kernel program of each family (indexed by `usize::from(v6)`).
#[derive(Clone, Copy, Debug, Default)]
struct TapReflex {
    /// The tap's interface.
    oif: u32,
    /// Asked of `reflex::Setup` for the interface.
    asked: [bool; 2],
    /// A probe of the family started here, the ask is held to the pass's end
    /// (`Loop::reflex_asks`).
    wanted: [bool; 2],
    /// Its answer came (`Ready::Attached`).
    done: [bool; 2],
    /// It answers SYN-ACKs there.
    on: [bool; 2],
}

/// Run a survey over `targets`; `report` is called as each probe ends (in the order they
/// end). Returns when every target had `count` probes, or soon after `stop` is set (probes
/// in flight are reset and still reported), with what the taps missed (a loop too busy to
/// read them: those probes' records lack segments). The guard's table is gone by then.
pub fn survey(
    targets: &mut dyn Iterator<Item = SurveyTarget>,
    opts: SurveyOptions,
    make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
    report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    guard: &mut Guard,
    stop: &AtomicBool,
) -> Result<TapLosses> {
    let mut feed = targets;
    survey_feed(&mut feed, opts, make_cfg, report, guard, stop)
}

/// [`survey`] over a [`Feed`]: runs until the feed says [`Next::End`] and the probes in
/// flight are over, or soon after `stop` is set.
pub fn survey_feed(
    targets: &mut dyn Feed,
    opts: SurveyOptions,
    make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
    report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    guard: &mut Guard,
    stop: &AtomicBool,
) -> Result<TapLosses> {
    let plan = FilePlan::new(opts.jobs);
    let (batch, stock) = (plan.batch, plan.stock);
    let opts = SurveyOptions {
        jobs: plan.jobs,
        ..opts
    };
    let port_range = super::ports::ephemeral_range();
    let keeper = PortKeeper::new(guard, batch, stock, port_range);
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("port keeper".into())
            .spawn_scoped(scope, || keeper.run())
            .context("starting the port keeper thread")?;
        // Stops the keeper however the loop ends — a panic too, or the scope would wait
        // for the keeper forever.
        struct StopKeeper<'a, 'g>(&'a PortKeeper<'g>);
        impl Drop for StopKeeper<'_, '_> {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        let stopper = StopKeeper(&keeper);
        let (result, taps) =
            survey_with(targets, opts, make_cfg, report, &keeper, port_range, stop);
        drop(stopper);
        let _ = helper.join();
        let finished = keeper.finish();
        // Closing a tap waits out an RCU grace period in the kernel (`synchronize_net()` in
        // packet_release), 10–20 ms here, and so does the table just deleted (its destroy
        // work, which closing the guard's socket waits for). Started together they share
        // one grace period; a tap closed before the table was deleted cost the two of them
        // one and a half. A one-shot survey keeps them until after it exits (teardown.rs);
        // the exporter's close on a thread, which process exit still waits for.
        if let Some(taps) = super::teardown::keep(Box::new(taps)) {
            std::thread::spawn(move || drop(taps));
        }
        let losses = result?;
        finished?;
        Ok(losses)
    })
}

fn survey_with(
    targets: &mut dyn Feed,
    opts: SurveyOptions,
    make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
    report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    ports: &PortKeeper<'_>,
    port_range: (u16, u16),
    stop: &AtomicBool,
) -> (Result<TapLosses>, Vec<Tap>) {
    let router = match Router::new() {
        Ok(r) => r,
        Err(e) => return (Err(e), Vec::new()),
    };
    let mut lp = Loop {
        opts,
        ports,
        taps: Vec::new(),
        defrags: Vec::new(),
        tap_lost: Vec::new(),
        tap_read: Vec::new(),
        tap_by_oif: HashMap::new(),
        senders: Vec::new(),
        sender_by_src: HashMap::new(),
        routes: HashMap::new(),
        pmtu: PathMtuCache::default(),
        router,
        port_range,
        slots: Vec::new(),
        free_slots: Vec::new(),
        by_local: HashMap::new(),
        timers: BinaryHeap::new(),
        generation: 0,
        schedule: Schedule::new(opts.jobs, opts.count, opts.interval),
        recent: RecentPairs::default(),
        finished: 0,
        ident: 1,
        tx: vec![0u8; 65536 + 60],
        last_tx: Instant::from_nanos(0),
        starting: Vec::new(),
        outbox: Outbox::default(),
        captured: Vec::new(),
        capture_missed: 0,
        losses_read_at: Instant::from_nanos(0),
        pass: Pass::default(),
        last_read: Instant::from_nanos(0),
        rx: vec![0u8; super::tap::PACKET_ROOM],
        touched: Vec::new(),
        due: Vec::new(),
        segments_sent: 0,
        reflex: None,
        // The tables and the dispatcher load now; each family's program is verified (~10
        // ms) and the dispatcher attached when a tap's first probe of that family asks.
        reflex_setup: opts.reflex.then(|| {
            let slots = opts.jobs.saturating_mul(2).clamp(16, MAX_REFLEX_SLOTS);
            Setup::start(port_range, slots, MARK)
        }),
        tap_reflex: Vec::new(),
        reflex_waited: false,
        tap_offload: Vec::new(),
        reflex_acks: 0,
        reflex_in_place: 0,
        reflex_unavailable: None,
    };
    let result = lp.run(targets, make_cfg, report, stop);
    // The kernel program answers nothing more (no entry stays armed), and its detaching,
    // which waits out an RCU grace period, is not this thread's wait: after our exit
    // (teardown.rs), or on a thread of its own.
    // Attachments still on their way are the reflex's too (closed with it, not here); an
    // ask not yet begun attaches nothing now (one begun cannot be called off).
    if let Some(setup) = &lp.reflex_setup {
        setup.over();
    }
    lp.reflex_ready();
    if let Some(r) = &lp.reflex {
        for (i, slot) in lp.slots.iter().enumerate() {
            if let Some(slot) = slot {
                r.disarm(i, slot.local.port());
            }
        }
    }
    // The set-up goes with it: what its worker still sends (an attachment that was under
    // way) stays in the channel, whose links would detach on this thread if dropped here.
    let reflex = (lp.reflex.take(), lp.reflex_setup.take());
    if (reflex.0.is_some() || reflex.1.is_some())
        && let Some(reflex) = super::teardown::keep(Box::new(reflex))
    {
        let _ = std::thread::Builder::new()
            .name("reflex-detach".into())
            .spawn(move || drop(reflex));
    }
    // Whatever happened, give every port back (the table itself dies with the guard).
    for slot in lp.slots.iter_mut().filter_map(Option::take) {
        if slot.guarded {
            ports.give_back(slot.reservation);
        }
    }
    let losses = lp.taps.iter_mut().fold(TapLosses::default(), |sum, t| {
        let l = t.losses();
        TapLosses {
            dropped: sum.dropped + l.dropped,
            truncated: sum.truncated + l.truncated,
        }
    });
    // The caller closes the taps, once the guard's table is gone (see there).
    (result.map(|()| losses), std::mem::take(&mut lp.taps))
}

impl Loop<'_, '_> {
    fn run(
        &mut self,
        targets: &mut dyn Feed,
        make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
        report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let mut exhausted = false;
        let mut stopping = false;
        let mut reported = 0;
        let mut reported_in_flight = 0;
        // Bounded by the work: every pass either starts, advances or finishes probes, or
        // sleeps until the next deadline; targets are finite.
        //
        // A pass answers first and keeps its books after (`probe::survey::Pass`): what the
        // taps hold is read and answered batch by batch (`react`), deadlines that came are
        // served, then ended probes are settled and new ones started a few at a time, the
        // taps read again between them, so a SYN-ACK never waits behind a record being
        // made or behind a long train of SYNs.
        loop {
            let now = clock::now();
            if !stopping && stop.load(Ordering::Relaxed) {
                stopping = true;
                exhausted = true;
                // What the taps hold first: a SYN-ACK the kernel program answered (our
                // request is with the server) brings its probe to ESTABLISHED, so the
                // reset below is one the server takes, not a SYN-SENT probe's silence.
                self.react()?;
                for i in 0..self.slots.len() {
                    if let Some(s) = self.slots[i].as_mut() {
                        s.probe.interrupt(now);
                    }
                    self.service(i, now, report)?;
                }
                self.send_queued()?;
            }

            self.react()?;
            self.expire()?;
            self.settle(report)?;
            self.reflex_ready();

            // Start what is due, then new targets, while there is room: a few at a time,
            // each group's SYNs sent and the taps answered before the next. At most `jobs`
            // per pass: probes that end meanwhile make room again, and a pass that never
            // ended would hold back what the caller does at its end (records handed to
            // the writer, packets to the capture files).
            let mut feed_wake = None;
            // The feed said "not now" this pass: its own time, not a free place, wakes us.
            let mut feed_deferred = false;
            if !stopping {
                let mut group = 0;
                let mut started = 0;
                // Bounded: each turn starts a probe or ends the loop, `jobs` times at most.
                while started < self.opts.jobs {
                    started += 1;
                    let now = clock::now();
                    match self.schedule.admit(now, !exhausted) {
                        Admit::Start(a) => self.start(a, now, make_cfg, report)?,
                        Admit::AskFeed => match targets.next_target(now) {
                            Next::Target(t) => {
                                let a = self.schedule.add(Rc::from(t));
                                self.start(a, now, make_cfg, report)?;
                            }
                            Next::Later(at) => {
                                feed_wake = at;
                                feed_deferred = true;
                                break;
                            }
                            Next::End => {
                                exhausted = true;
                                continue;
                            }
                        },
                        Admit::Wait => break,
                    }
                    group += 1;
                    if group >= self.pass.start_group() {
                        group = 0;
                        self.launch(report)?;
                        self.react()?;
                        self.settle(report)?;
                    }
                }
            }
            self.launch(report)?;
            self.react()?;
            self.settle(report)?;
            if self.tap_reflex.iter().any(|r| r.wanted != [false, false]) {
                let more = !stopping && self.schedule.more_to_start(!exhausted);
                self.reflex_asks(more);
            }

            if let Some(e) = self.ports.take_error() {
                return Err(e);
            }
            // What the taps that gave packets this pass lost (one system call each): a
            // queue that overflowed is read in the next pass, so looking only after passes
            // that read something misses no loss.
            for t in 0..self.taps.len() {
                if std::mem::take(&mut self.tap_read[t]) {
                    self.note_losses(t);
                }
            }
            self.hand_over_captured(report)?;
            // Also when only the probes in flight changed (they started): a caller's gauge
            // of them (the exporter's) said 0 for a minute-long probe until something ended.
            let in_flight = self.schedule.in_flight();
            if self.finished != reported || in_flight != reported_in_flight {
                reported = self.finished;
                reported_in_flight = in_flight;
                self.refresh_losses(clock::now());
                report(Report::PassDone, self.progress())?;
            }

            if self.schedule.finished(!exhausted, stopping) {
                // Done: the last probe ended this pass; no deadline left is worth a sleep.
                return Ok(());
            }

            // Sleep until a packet or the next deadline — but while an answer may come at
            // once, spin: the reply is handled without the scheduler's wake-up delay.
            let now = clock::now();
            let mut wake = now + MAX_SLEEP;
            if let Some(&Reverse((at, _, _))) = self.timers.peek() {
                wake = wake.min(at);
            }
            if let Some(at) = self.schedule.next_due() {
                wake = wake.min(at);
            }
            if let Some(at) = feed_wake {
                wake = wake.min(at);
            }
            if wake <= now {
                continue;
            }
            // A place is free and something could take it (the pass started `jobs` probes
            // and some ended meanwhile): start it now. Sleeping here left it empty until a
            // packet or a deadline came — at `-j 1`, up to MAX_SLEEP between probes.
            if !stopping && !feed_deferred && self.schedule.can_start(now, !exhausted) {
                continue;
            }
            match self.pass.idle(now, self.last_tx, self.schedule.in_flight()) {
                Idle::Spin => {
                    std::hint::spin_loop();
                    continue;
                }
                Idle::Sleep => {
                    self.ports.flush();
                    self.wait(wake.saturating_since(now))?;
                }
            }
        }
    }

    /// Read everything the taps hold and answer it: after each run of packets a tap held
    /// (the filled frames of its ring, or a `recvmmsg` batch of its queue), the probes it
    /// touched queue their answers (one answer to all of a probe's packets in it: a FIN
    /// right behind the data is ACKed once) and the answers go out before the tap is read
    /// again; after a SYN-ACK, at once. A probe that ended waits in `due` for
    /// [`Loop::settle`].
    fn react(&mut self) -> Result<()> {
        self.last_read = clock::now();
        for t in 0..self.taps.len() {
            let mut read = false;
            // Packets read since the last answer went out.
            let mut run = 0;
            // Bounded: at most this many packets per call, then timers get their turn.
            for _ in 0..4096 {
                let Some(meta) = self.taps[t]
                    .recv(&mut self.rx)
                    .context("reading the AF_PACKET tap")?
                else {
                    break;
                };
                read = true;
                run += 1;
                let synack = self.deliver(t, meta);
                if self.pass.answer_now(synack, self.taps[t].buffered(), run) {
                    run = 0;
                    let sent = self.segments_sent;
                    self.answer()?;
                    // Then read on: over veth what we send is answered inside the call,
                    // and a look at an empty ring costs no system call. But a queue the
                    // read emptied, with nothing sent since, would answer an `EAGAIN`:
                    // two reads in five were, before this check.
                    if sent == self.segments_sent && self.taps[t].drained() {
                        break;
                    }
                }
            }
            self.answer()?;
            if read {
                self.tap_read[t] = true;
            }
        }
        Ok(())
    }

    /// One packet off tap `t` to the probe it belongs to. Whether it ended that probe's
    /// wait for a SYN-ACK (its answer is due at once).
    fn deliver(&mut self, t: usize, meta: super::tap::TapMeta) -> bool {
        let bytes = &self.rx[..meta.len];
        // A fragment waits for the rest of its datagram, which is then demultiplexed like
        // any packet (only it has the ports).
        let whole = if meta.outgoing {
            Defragged::Whole
        } else {
            self.defrags[t].push(meta.at, bytes, meta.checksum_offloaded)
        };
        let (bytes, offloaded, fragments, originals) = match &whole {
            Defragged::Whole => (bytes, meta.checksum_offloaded, 1, None),
            Defragged::Complete(d) => (
                &d.bytes[..],
                d.checksum_offloaded,
                d.fragments,
                Some(&d.originals),
            ),
            Defragged::Held | Defragged::Dropped(_) => return false,
        };
        let Some(i) = self.demux(bytes, meta.outgoing) else {
            return false;
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return false;
        };
        let connecting = slot.probe.awaiting_synack();
        let ours = slot
            .probe
            .handle_datagram(meta.at, meta.outgoing, bytes, offloaded, fragments);
        if !ours {
            return false;
        }
        let synack = connecting && !slot.probe.awaiting_synack();
        slot.synack |= synack;
        // Still waiting, and what came changed what our ACK will be (a frag-needed that
        // lowered the path MTU): the kernel program must not send the old one.
        if slot.reflex_plan.is_some()
            && !meta.outgoing
            && slot.probe.awaiting_synack()
            && slot.probe.handshake_ack() != slot.reflex_plan
            && let Some(r) = &self.reflex
            && r.claim(i) == Claim::Ours
        {
            slot.reflex_plan = None;
        }
        let capture = self.opts.capture;
        if capture.is_on() {
            match originals {
                Some(o) => capture.fragments(
                    &slot.probe,
                    meta.at,
                    o.iter().map(|(at, b)| (*at, b.clone())),
                    &mut self.captured,
                ),
                None => self.captured.push(Captured {
                    at: meta.at,
                    bytes: bytes.to_vec(),
                    note: capture.note(&slot.probe),
                }),
            }
        }
        if let Some(d) = slot.done_at {
            // Still draining: wait for quiet again, within the cap (and for a challenge
            // ACK's time, when one may come).
            let until = (clock::now() + DRAIN_QUIET)
                .min(d + DRAIN_MAX)
                .max(slot.challenge_until.unwrap_or(d));
            slot.drain_until = Some(until);
        }
        if !slot.touched {
            slot.touched = true;
            self.touched.push(i);
        }
        synack
    }

    /// The probes touched by the packets read since the last answer queue what they have
    /// to send, which goes out now; those that ended wait for [`Loop::settle`].
    fn answer(&mut self) -> Result<()> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            slot.touched = false;
            self.flush_slot(i, true)?;
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            if slot.probe.is_done() || slot.done_at.is_some() {
                self.mark_due(i);
            } else {
                self.arm(i);
            }
        }
        self.touched = touched;
        self.touched.clear();
        self.send_queued()
    }

    /// Deadlines that have come: retransmissions, give-ups, drains over.
    fn expire(&mut self) -> Result<()> {
        let now = clock::now();
        // Bounded: each turn pops an entry; entries are pushed only by `arm`, at most one
        // per slot and deadline.
        while let Some(&Reverse((at, i, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match self.slots.get_mut(i).and_then(Option::as_mut) {
                Some(s) if s.generation == generation => {
                    if s.armed == Some(at) {
                        s.armed = None;
                    }
                }
                _ => continue,
            }
            self.mark_due(i);
        }
        Ok(())
    }

    /// Slot `i` ended or has a deadline to serve: into `due` for `settle`, once.
    fn mark_due(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut)
            && !s.due
        {
            s.due = true;
            self.due.push(i);
        }
    }

    /// Book-keeping for the probes that ended or whose deadline came (`due`): their
    /// timeouts and transmits, and for those that are over, the record and the port given
    /// back — one probe at a time, the taps read again whenever the last read is
    /// `Pass::reread_after` old.
    fn settle(&mut self, report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>) -> Result<()> {
        // Bounded: each turn takes one entry; `service` re-queues none (react may add
        // probes that ended meanwhile, at most one entry per slot).
        while let Some(i) = self.due.pop() {
            if let Some(s) = self.slots[i].as_mut() {
                s.due = false;
            }
            let now = clock::now();
            let ended = self.service(i, now, report)?;
            self.send_queued()?;
            if ended && self.pass.reread(self.last_read, clock::now()) {
                self.react()?;
            }
        }
        Ok(())
    }

    fn start(
        &mut self,
        a: usize,
        now: Instant,
        make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
        report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    ) -> Result<()> {
        let Some(target) = self.schedule.target(a).map(Rc::clone) else {
            return Ok(());
        };
        match self.open_slot(a, &target, now, make_cfg) {
            Ok(()) => Ok(()),
            Err(e) if is_environment_error(&e) => Err(e),
            Err(error) => {
                self.finished += 1;
                let progress = self.progress();
                report(
                    Report::Failed {
                        target: &target,
                        error,
                    },
                    progress,
                )?;
                self.schedule.over(a, now, now);
                Ok(())
            }
        }
    }

    fn open_slot(
        &mut self,
        a: usize,
        target: &SurveyTarget,
        now: Instant,
        make_cfg: &mut dyn FnMut(&SurveyTarget, SocketAddr, u16) -> ProbeConfig,
    ) -> Result<()> {
        let remote = target.remote;
        let deadline = target.budget.as_ref().map(|b| b.until);
        if let Some(b) = target
            .budget
            .as_ref()
            .filter(|_| deadline_passed(now, deadline))
        {
            // Its caller gave up waiting (the scrape's timeout passed while every place
            // was taken): no SYN for an answer nobody waits for.
            anyhow::bail!(
                "{} before a free place came (every one of `jobs` was busy)",
                b.why
            );
        }
        super::route::connectable_address(remote.ip())?;
        let route = self.route(remote.ip())?;
        route.connectable(remote.ip())?;
        let (reservation, fresh) = self.reserve(route.src, remote)?;
        let local = SocketAddr::new(route.src, reservation.port);
        let tap = self.tap_for(&route)?;
        self.reflex_ask(tap, local.is_ipv6());
        let sender = self.sender_for(route.src)?;
        let mut cfg = make_cfg(target, local, route.mss(local.is_ipv6()));
        cfg.tcp.known_path_mtu = self.pmtu.known(remote.ip(), now);
        // The caller's deadline, when it comes before the probe's own limit.
        let (give_up_at, give_up_why) = match give_up_at(now, cfg.hard_limit(), deadline) {
            GiveUp::At { at, callers } => (
                at,
                match &target.budget {
                    Some(b) if callers => b.why,
                    _ => GAVE_UP,
                },
            ),
            // Refused above, before a port was reserved.
            GiveUp::Passed => (now, GAVE_UP),
        };
        let probe = Probe::new(cfg);
        self.generation += 1;
        let slot = Slot {
            probe,
            active: a,
            local,
            remote,
            sender,
            reservation,
            guarded: !fresh,
            started: now,
            give_up_at,
            give_up_why,
            drain_until: None,
            done_at: None,
            challenge_until: None,
            armed: None,
            generation: self.generation,
            tap,
            touched: false,
            synack: false,
            reflex_plan: None,
            due: false,
        };
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.by_local.insert(local, i);
        self.starting.push(i);
        Ok(())
    }

    /// Guard the ports of the slots made this pass, then send their SYNs.
    fn launch(&mut self, report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>) -> Result<()> {
        if self.starting.is_empty() {
            return Ok(());
        }
        let starting = std::mem::take(&mut self.starting);
        let ports: Vec<u16> = starting
            .iter()
            .filter_map(|&i| self.slots[i].as_ref().filter(|s| !s.guarded))
            .map(|s| s.local.port())
            .collect();
        let guarded = if ports.is_empty() {
            Ok(())
        } else {
            self.ports.guard().protect_ports(&ports)
        };
        if let Err(e) = guarded {
            // Nothing was sent: the probes end unstarted, and the error ends the survey.
            let now = clock::now();
            for &i in &starting {
                if let Some(s) = self.slots[i].as_mut() {
                    s.probe.abort(now, "the nftables guard failed");
                }
                self.finish(i, now, report)?;
            }
            return Err(e);
        }
        for i in starting {
            let now = clock::now();
            if let Some(s) = self.slots[i].as_mut() {
                s.guarded = true;
                s.started = now;
                s.probe.start(now);
            }
            self.flush_slot(i, false)?;
            self.arm(i);
        }
        self.send_queued()
    }

    /// Give the caller the packets captured so far.
    fn hand_over_captured(
        &mut self,
        report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    ) -> Result<()> {
        if self.captured.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.captured);
        report(Report::Captured(batch), self.progress())
    }

    fn progress(&self) -> Progress {
        Progress {
            in_flight: self.schedule.in_flight(),
            finished: self.finished,
            capture_missed: self.capture_missed,
            reflex_acks: self.reflex_acks,
            reflex_in_place: self.reflex_in_place,
            reflex_unavailable: self.reflex_unavailable,
        }
    }

    /// What the taps missed, from the kernel's counters (one getsockopt per tap), at most
    /// once a second.
    fn refresh_losses(&mut self, now: Instant) {
        if now < self.losses_read_at + LOSSES_EVERY {
            return;
        }
        self.losses_read_at = now;
        self.capture_missed = self
            .taps
            .iter_mut()
            .map(|t| {
                let l = t.losses();
                l.dropped + l.truncated
            })
            .sum();
    }

    fn route(&mut self, dst: IpAddr) -> Result<Rc<Route>> {
        if let Some(r) = self.routes.get(&dst) {
            return Ok(Rc::clone(r));
        }
        let r = self.router.lookup(dst)?;
        if self.routes.len() >= ROUTE_CACHE {
            self.routes.clear();
        }
        let r = Rc::new(r);
        self.routes.insert(dst, Rc::clone(&r));
        Ok(r)
    }

    /// A source port on `src` no probe used yet and not used towards `remote` lately: from
    /// the stock (already guarded), or from the kernel (`true`: still to be guarded).
    fn reserve(&mut self, src: IpAddr, remote: SocketAddr) -> Result<(PortReservation, bool)> {
        let recent = &self.recent;
        if let Some(r) = self
            .ports
            .take(src, STOCK_SCAN, |port| !recent.contains(remote, port))
        {
            return Ok((r, false));
        }
        let mut held = Vec::new();
        // Bounded: the walk hands out a different port while we hold the earlier ones.
        for _ in 0..64 {
            let r = self.ports.reserve(src)?;
            if !self.recent.contains(remote, r.port) {
                return Ok((r, true));
            }
            held.push(r);
        }
        anyhow::bail!(
            "no fresh source port on {src} for {remote}: every free port was used towards it \
             recently; widen net.ipv4.ip_local_port_range"
        )
    }

    /// What tap `t` lost since it was last looked at goes into the record of every probe
    /// in flight through it: the packets may have been any of theirs (the record says so).
    fn note_losses(&mut self, t: usize) {
        let lost = self.taps[t].losses().total();
        let Some(seen) = self.tap_lost.get_mut(t) else {
            return;
        };
        let new = lost.saturating_sub(*seen);
        *seen = lost;
        if new == 0 {
            return;
        }
        for slot in self.slots.iter_mut().flatten().filter(|s| s.tap == t) {
            slot.probe.capture_lost(new);
        }
    }

    /// The tap for `route`'s interface. The first one off the loopback also takes what
    /// arrives on this host's other links, where a reply may come back (asymmetric
    /// routing) — but not on a link that has a tap of its own: each packet is seen once.
    fn tap_for(&mut self, route: &Route) -> Result<usize> {
        if let Some(&t) = self.tap_by_oif.get(&route.oif) {
            return Ok(t);
        }
        let range = self.port_range;
        let collector = self.taps.iter().position(|t| t.others().is_some());
        let others = match collector {
            None => {
                let mut o = super::route::other_links(route.oif, route.is_loopback);
                o.ifaces.retain(|i| !self.tap_by_oif.contains_key(i));
                o
            }
            Some(_) => super::route::OtherLinks::default(),
        };
        // The collector stops listening on this interface first: nothing of ours arrives
        // there before the probe this tap is for sends its SYN, so nothing is missed and
        // nothing is seen twice.
        if let Some(c) = collector
            && let Some(o) = self.taps[c].others()
            && o.ifaces.contains(&route.oif)
        {
            let mut rest = o.clone();
            rest.ifaces.retain(|&i| i != route.oif);
            self.taps[c].listen_also(range, &rest)?;
        }
        // A ring's set-up stops the loop for an RCU grace period (~8 ms): while nothing is
        // on the wire that is start-up, but with probes in flight their answers would wait
        // for it, so a tap opened then reads its queue (about 1 µs slower to answer from).
        // Slots made this pass whose SYN has not left yet (`starting`) wait for nothing.
        let idle = self
            .slots
            .iter()
            .enumerate()
            .all(|(i, s)| s.is_none() || self.starting.contains(&i));
        // A SYN-ACK with its TCP checksum left to offload comes only from a sender on this
        // host: through loopback, or a veth (or tun, netkit) pair whose other end is in
        // another namespace. Not a VLAN, bond or bridge: those carry the wire's packets
        // too, where that checksum would be a bad one. Asked before the kernel program's
        // attachment is: the driver's name takes the rtnl lock, which an attachment holds
        // through its grace period.
        let offload = route.is_loopback
            || matches!(
                super::link::driver(&route.ifname).as_deref(),
                Some("veth" | "tun" | "netkit")
            );
        // The kernel program's attachment sleeps through a grace period as the ring's
        // set-up does: asked for first, the two overlap — for the survey's first tap,
        // which its first SYNs wait for; a later one's ask is held to the pass's end
        // (`reflex_ask`).
        let v6 = route.src.is_ipv6();
        let asked = !self.reflex_waited && self.reflex_request(route.oif, v6);
        let tap = Tap::open_range(
            route.oif,
            &route.ifname,
            range,
            route.is_loopback,
            idle.then_some(self.opts.jobs),
            &others,
        )?;
        self.taps.push(tap);
        self.tap_lost.push(0);
        self.tap_read.push(false);
        self.defrags.push(Defrag::new(self.opts.capture.is_on()));
        self.tap_by_oif.insert(route.oif, self.taps.len() - 1);
        let mut reflex = TapReflex {
            oif: route.oif,
            ..TapReflex::default()
        };
        reflex.asked[usize::from(v6)] = asked;
        self.tap_reflex.push(reflex);
        self.tap_offload.push(offload);
        Ok(self.taps.len() - 1)
    }

    /// Ask for the kernel program of `v6`'s family on tap `t`'s interface, once (made off
    /// this thread: `reflex::Setup`); the survey's first ask waits for it. Without it (an old kernel, no CAP_BPF) the loop answers SYN-ACKs
    /// itself, as it always could; the reason is in [`Progress::reflex_unavailable`].
    fn reflex_ask(&mut self, t: usize, v6: bool) {
        let family = usize::from(v6);
        if !self.tap_reflex[t].asked[family] {
            if self.reflex_waited {
                // Not the first: held to the end of the pass (`reflex_asks`).
                self.tap_reflex[t].wanted[family] = true;
                return;
            }
            self.tap_reflex[t].asked[family] = self.reflex_request(self.tap_reflex[t].oif, v6);
        }
        if self.tap_reflex[t].asked[family] && !std::mem::replace(&mut self.reflex_waited, true) {
            // The first SYNs wait for it — their family's program (~10 ms here: its
            // verifier, while the dispatcher's attachment sleeps through an RCU grace
            // period beside it). A survey whose first probes were answered from here and
            // the rest from the kernel would time its SYN-ACK → ACK two ways. Nothing is
            // in flight yet. (An interface or a family first needed later is not waited
            // for, probes being in flight then: those are answered from here meanwhile.)
            let until = clock::now() + REFLEX_WAIT;
            // Bounded: by REFLEX_WAIT, and by the worker's messages (a load, then one per
            // ask).
            while self.reflex_unavailable.is_none() && !self.tap_reflex[t].done[family] {
                let now = clock::now();
                let Some(ready) = self
                    .reflex_setup
                    .as_ref()
                    .and_then(|s| s.wait(until.saturating_since(now)))
                else {
                    break;
                };
                self.take_ready(ready);
                if clock::now() >= until {
                    break;
                }
            }
        }
    }

    /// The asks held this pass (a family or an interface the survey's first probes did not
    /// need), sent only when a probe may still start (`more`): the probes in flight are
    /// answered from here either way, and an attachment under way when the survey ends
    /// holds the process's exit through its grace period (it cannot be called off) — a
    /// `-c 1` list of both families ended ~25 ms late for an IPv6 program nothing used.
    fn reflex_asks(&mut self, more: bool) {
        for t in 0..self.tap_reflex.len() {
            for family in 0..2 {
                if !std::mem::take(&mut self.tap_reflex[t].wanted[family])
                    || self.tap_reflex[t].asked[family]
                    || !more
                {
                    continue;
                }
                let oif = self.tap_reflex[t].oif;
                self.tap_reflex[t].asked[family] = self.reflex_request(oif, family == 1);
            }
        }
    }

    /// Send `reflex::Setup` the ask for `v6`'s family on interface `oif`; false when
    /// there is no one to ask (no kernel program for this survey).
    fn reflex_request(&self, oif: u32, v6: bool) -> bool {
        match &self.reflex_setup {
            Some(setup) if self.reflex_unavailable.is_none() => {
                setup.ask(if v6 { Ask::Ipv6(oif) } else { Ask::Ipv4(oif) });
                true
            }
            _ => false,
        }
    }

    /// What the kernel program's setup finished since the last pass.
    fn reflex_ready(&mut self) {
        // Bounded: one message per load and per interface asked for.
        while let Some(ready) = self.reflex_setup.as_ref().and_then(Setup::poll) {
            self.take_ready(ready);
        }
    }

    /// One thing the kernel program's setup finished.
    fn take_ready(&mut self, ready: Ready) {
        match ready {
            Ready::Loaded(r) => self.reflex = Some(r),
            Ready::Attached {
                ask,
                links,
                answers,
            } => {
                let (oif, family) = match ask {
                    Ask::Ipv4(oif) => (oif, 0),
                    Ask::Ipv6(oif) => (oif, 1),
                };
                if let Some(r) = self.reflex.as_mut() {
                    r.add_links(oif, links);
                }
                if let Some(&t) = self.tap_by_oif.get(&oif) {
                    self.tap_reflex[t].done[family] = true;
                    self.tap_reflex[t].on[family] = answers;
                }
            }
            Ready::Failed(e) => {
                self.reflex_unavailable.get_or_insert(reflex_why(&e));
            }
        }
    }

    /// IPv4 needs one IPPROTO_RAW socket for every source; IPv6 one per source address.
    fn sender_for(&mut self, src: IpAddr) -> Result<usize> {
        let key = match src {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            v6 => v6,
        };
        if let Some(&s) = self.sender_by_src.get(&key) {
            return Ok(s);
        }
        self.senders.push(RawSender::new(src, MARK)?);
        self.sender_by_src.insert(key, self.senders.len() - 1);
        Ok(self.senders.len() - 1)
    }

    /// Which probe a tap packet belongs to: by our (address, port), the destination of what
    /// arrives and the source of what leaves; ICMP errors by the segment they quote.
    fn demux(&self, bytes: &[u8], outgoing: bool) -> Option<usize> {
        let pkt = IpPacket::parse(bytes).ok()?;
        let (addr, port) = match pkt.ip.protocol {
            PROTO_TCP => {
                let ports = pkt.payload.get(..4)?;
                let sport = u16::from_be_bytes([ports[0], ports[1]]);
                let dport = u16::from_be_bytes([ports[2], ports[3]]);
                if outgoing {
                    (pkt.ip.src, sport)
                } else {
                    // On loopback both ends are local: try the destination first.
                    match self.by_local.get(&SocketAddr::new(pkt.ip.dst, dport)) {
                        Some(&i) => return Some(i),
                        None => (pkt.ip.src, sport),
                    }
                }
            }
            PROTO_ICMP | PROTO_ICMPV6 if !outgoing => {
                let v6 = pkt.ip.protocol == PROTO_ICMPV6;
                let err = IcmpError::parse(pkt.payload, v6, pkt.ip.src, pkt.ip.dst)
                    .ok()
                    .flatten()?;
                (err.quoted_src, err.quoted_src_port)
            }
            _ => return None,
        };
        self.by_local.get(&SocketAddr::new(addr, port)).copied()
    }

    /// Queue everything slot `i` has to send; [`Loop::send_queued`] puts it on the wire.
    /// `answer`: this is the probe's answer to packets that just came; its first segment
    /// (the ACK of a SYN-ACK, of data, of a FIN) goes out before anything else queued.
    fn flush_slot(&mut self, i: usize, answer: bool) -> Result<()> {
        let Some(slot) = self.slots[i].as_mut() else {
            return Ok(());
        };
        let v6 = self.senders[slot.sender].is_v6();
        let mut first = answer;
        let synack = answer && std::mem::take(&mut slot.synack);
        // One time for the segments that leave together (`run::flush` says why).
        let now = clock::now();
        // Bounded: a connection queues a handful of segments per input.
        for _ in 0..256 {
            let Some(seg) = slot.probe.poll_transmit(now) else {
                break;
            };
            let len = build_segment(
                &seg,
                v6,
                &mut self.tx,
                &mut self.ident,
                slot.local,
                slot.remote,
            )?;
            if let Some(r) = self.reflex.as_mut() {
                if seg.flags.syn() && !seg.flags.ack() {
                    // The program was in place for this SYN's family when it left, whether
                    // or not it can answer this handshake (a request too long for it, or
                    // for our MSS, is left to us): the survey's line tells the two apart.
                    let on = self
                        .tap_reflex
                        .get(slot.tap)
                        .is_some_and(|r| r.on[usize::from(v6)]);
                    if !seg.retransmission && on {
                        self.reflex_in_place += 1;
                    }
                    if let Some(_plan) = slot.reflex_plan.take() {
                        // The SYN again: the SYN-ACK to come may echo its newer TSval, and a
                        // reflex ACK with the first SYN's would fail the server's PAWS check
                        // (RFC 7323 §5.3). This handshake is answered from here.
                        let _ = r.claim(i);
                    } else if !seg.retransmission
                        && on
                        && let Some(plan) = slot.probe.handshake_ack()
                    {
                        let ident = self.ident;
                        self.ident = self.ident.wrapping_add(1);
                        let ip = IpFields {
                            ident,
                            ttl: IP_TTL,
                            offload: self.tap_offload.get(slot.tap).copied().unwrap_or(false),
                        };
                        if r.arm(i, slot.local, slot.remote, &plan, ip) {
                            slot.reflex_plan = Some(plan);
                        }
                    }
                } else if let Some(plan) = slot.reflex_plan.take() {
                    // The handshake's ACK (with the request, when it rides): sent already
                    // if the kernel program claimed it — and the same segment as ours.
                    let same = seg.seq.0 == plan.seq
                        && seg.payload == plan.payload
                        && !seg.flags.syn()
                        && !seg.flags.fin()
                        && !seg.flags.rst();
                    if r.claim(i) == Claim::Kernel && same {
                        self.reflex_acks += 1;
                        slot.probe.sent_by_kernel(seg.seq.0, seg.payload.len());
                        continue;
                    }
                }
            }
            let start = self.outbox.bytes.len();
            self.outbox.bytes.extend_from_slice(&self.tx[..len]);
            self.outbox.packets.push(Queued {
                start,
                len,
                sender: slot.sender,
                remote: slot.remote,
                slot: (i, slot.generation),
                rank: self.pass.send_rank(first, synack),
            });
            first = false;
        }
        Ok(())
    }

    /// Send what the probes queued this pass, one `sendmmsg(2)` per sender and batch: a
    /// system call per segment was a measurable share of a busy survey's time.
    fn send_queued(&mut self) -> Result<()> {
        if self.outbox.packets.is_empty() {
            return Ok(());
        }
        let mut packets = std::mem::take(&mut self.outbox.packets);
        let packets_sent = packets.len() as u64;
        // Answers first, a SYN-ACK's first of all (`Pass::send_rank`): in a lab (veth) each
        // segment sent costs the server's processing of it inside our system call, so a
        // SYN-ACK's ACK queued behind others' segments leaves that much later; a probe's
        // own segments keep their order (its first is its first either way). A stable
        // sort, so the rest keep theirs.
        packets.sort_by_key(|q| q.rank);
        // Consecutive packets of one sender go together (almost always all of them).
        let mut rest = &packets[..];
        // Bounded: every turn sends or fails at least one packet, or returns an error, but
        // for a few turns a signal interrupts.
        let mut interrupted = 0;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take(SEND_BATCH)
                .take_while(|q| q.sender == first.sender)
                .count();
            let batch: Vec<(&[u8], IpAddr)> = rest[..run]
                .iter()
                .map(|q| (&self.outbox.bytes[q.start..q.start + q.len], q.remote.ip()))
                .collect();
            let sent = match self.senders[first.sender].send_batch(&batch) {
                Ok(0) => {
                    anyhow::bail!("sending to {}: the kernel took no segment", first.remote)
                }
                Ok(n) => n,
                // A signal came (the handlers do not restart calls): send again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted && interrupted < 8 => {
                    interrupted += 1;
                    0
                }
                // `sendmmsg` fails only when its first segment does. This host declined
                // it (too big for its path MTU, dropped on the way out): lost, as Linux's
                // TCP takes it; the probe goes on.
                Err(e) if let Some(why) = local_refusal(&e, first.remote.ip()) => {
                    self.send_refused(first.slot, why, first.len);
                    1
                }
                // Any other refusal: that segment's probe ends with the error, and the
                // rest go on (one target the kernel will not send to — a broadcast
                // address, a destination a local firewall rule refuses (EPERM) — cost the
                // whole survey, the exporter with it). Only when nothing has gone out yet
                // is a refusal the host's, not the target's: a missing capability, a
                // firewall closed to everything.
                Err(e) => {
                    let error = send_error(e, first.remote);
                    if is_environment_error(&error) && self.segments_sent == 0 {
                        return Err(error);
                    }
                    self.send_failed(first.slot, &error);
                    1
                }
            };
            rest = &rest[sent..];
        }
        self.outbox.bytes.clear();
        self.outbox.packets = packets;
        self.outbox.packets.clear();
        self.segments_sent += packets_sent;
        self.last_tx = clock::now();
        Ok(())
    }

    /// This host declined a segment of the probe in `slot` (`run::local_refusal`): the
    /// probe takes it as lost, and `settle` sends what it queues again (the flight at a
    /// smaller size, after a lower path MTU) and arms its timer.
    fn send_refused(&mut self, slot: (usize, u64), why: LocalRefusal, len: usize) {
        self.with_probe_of(slot, |p| p.send_refused(clock::now(), why, len));
    }

    /// A segment of the probe in `slot` could not be sent: the probe ends with the error
    /// (its record says it), and `settle` finishes it.
    fn send_failed(&mut self, slot: (usize, u64), error: &anyhow::Error) {
        self.with_probe_of(slot, |p| p.abort(clock::now(), &format!("{error:#}")));
    }

    /// `f` to the probe a queued segment came from, if its slot still holds that probe
    /// (same generation), which then waits in `due` for `settle`.
    fn with_probe_of(&mut self, (i, generation): (usize, u64), f: impl FnOnce(&mut Probe)) {
        let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        f(&mut s.probe);
        self.mark_due(i);
    }

    /// Put the slot's next deadline on the timer heap, unless an earlier one is there.
    fn arm(&mut self, i: usize) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        let next = match slot.drain_until {
            Some(d) => d,
            None => slot
                .probe
                .poll_timeout()
                .map_or(slot.give_up_at, |t| t.min(slot.give_up_at)),
        };
        if slot.armed.is_none_or(|a| next < a) {
            slot.armed = Some(next);
            self.timers.push(Reverse((next, i, slot.generation)));
        }
    }

    /// Bring slot `i` up to date at `now`: timeouts, transmits, the drain, the end.
    fn service(
        &mut self,
        i: usize,
        now: Instant,
        report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    ) -> Result<bool> {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return Ok(false);
        };
        if !slot.probe.is_done() {
            if now >= slot.give_up_at {
                slot.probe.out_of_time(now, slot.give_up_why);
            } else if slot.probe.poll_timeout().is_some_and(|d| now >= d) {
                slot.probe.handle_timeout(now);
            }
        }
        self.flush_slot(i, false)?;
        let Some(slot) = self.slots[i].as_mut() else {
            return Ok(false);
        };
        if slot.probe.is_done() && slot.done_at.is_none() {
            slot.done_at = Some(now);
            slot.challenge_until = slot.probe.challenge_wait().map(|w| now + w);
            slot.drain_until = Some((now + DRAIN_QUIET).max(slot.challenge_until.unwrap_or(now)));
        }
        // A challenge ACK may still come: the copies being in is not the end then.
        let copies_in = slot.done_at.is_some()
            && !slot.probe.awaiting_own_copies()
            && slot
                .challenge_until
                .is_none_or(|c| now >= c || slot.probe.answered_challenge());
        if copies_in || slot.drain_until.is_some_and(|d| now >= d) {
            self.finish(i, now, report)?;
            return Ok(true);
        }
        self.arm(i);
        Ok(false)
    }

    fn finish(
        &mut self,
        i: usize,
        now: Instant,
        report: &mut dyn FnMut(Report<'_>, Progress) -> Result<()>,
    ) -> Result<()> {
        let Some(slot) = self.slots[i].take() else {
            return Ok(());
        };
        if let Some(r) = &self.reflex {
            r.disarm(i, slot.local.port());
        }
        self.free_slots.push(i);
        self.by_local.remove(&slot.local);
        self.finished += 1;
        // The port stays guarded until its drain is over; then the kernel may have it back.
        self.recent.remember(slot.remote, slot.local.port());
        let mut probe = slot.probe;
        if let Some(k) = probe.learned_path_mtu() {
            self.pmtu.learned(slot.remote.ip(), k, now);
        }
        if let Some(route) = self.routes.get(&slot.remote.ip()) {
            super::run::explain_unsent(&mut probe, route, slot.remote.ip());
        }
        let outcome = Box::new(Outcome {
            result: probe.into_result(),
        });
        if slot.guarded {
            self.ports.give_back(slot.reservation);
        }
        let progress = self.progress();
        if let Some(target) = self.schedule.target(slot.active) {
            report(Report::Done { target, outcome }, progress)?;
        }
        self.schedule.over(slot.active, slot.started, now);
        Ok(())
    }

    /// Sleep until some tap has a packet or `timeout` passes.
    fn wait(&self, timeout: Duration) -> Result<()> {
        if self.taps.is_empty() {
            std::thread::sleep(timeout.min(MAX_SLEEP));
            return Ok(());
        }
        // Nanoseconds, not poll(2)'s milliseconds: rounding a 100 µs deadline up to 1 ms
        // would hold every probe waiting on it for ten times as long.
        let fds: Vec<_> = self.taps.iter().map(|t| t.as_fd()).collect();
        super::poll::wait_readable(&fds, Some(timeout)).context("waiting for the taps")?;
        Ok(())
    }
}

/// How many files a survey holds: each port held is an open file (the reservation), in
/// flight (`jobs`), in the keeper's stock, and given back but not yet released (about a
/// batch).
struct FilePlan {
    jobs: usize,
    batch: usize,
    stock: usize,
    /// What [`fd_budget`] allows.
    budget: usize,
}

impl FilePlan {
    fn new(jobs: usize) -> FilePlan {
        let budget = fd_budget();
        let jobs = jobs.clamp(1, budget);
        let spare = budget - jobs;
        let batch = PORT_BATCH.min(spare / 8).max(1);
        let stock = (4 * batch).min(spare / 2).max(1);
        FilePlan {
            jobs,
            batch,
            stock,
            budget,
        }
    }

    /// Descriptors open at the peak: the ports above (one source address), their batch
    /// being guarded, and room for the taps, senders, sockets and files of the rest —
    /// within the open-files limit (the budget keeps 64 under it).
    fn peak(&self) -> usize {
        (self.jobs + self.stock + 4 * self.batch + 64).min(self.budget + 63)
    }
}

/// Grow this process's file table now, for a survey of `jobs`, and call it while the process
/// has one thread. The kernel grows the table by doubling as descriptors are opened, and
/// once threads share it each doubling waits out an RCU grace period (fs/file.c,
/// `expand_fdtable`: `synchronize_rcu()` when `files->count > 1`) with every thread that
/// opens a file stuck behind it: ~10–20 ms each here, two of them (at 256 and 512 files)
/// ~8% of a 64-job survey of 5 000 probes. With one thread the kernel skips the wait.
/// Failure only costs that time, so it is ignored.
pub fn grow_file_table(jobs: usize) {
    let want = FilePlan::new(jobs).peak();
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    let Ok(lowest) = libc::c_int::try_from(want.saturating_sub(1)) else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own onto the lowest free number
    // ≥ `lowest`; the copy is an fd we then own and close.
    let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) };
    if copy >= 0 {
        // SAFETY: `copy` was just returned by fcntl and nothing else refers to it.
        drop(unsafe { OwnedFd::from_raw_fd(copy) });
    }
}

/// Probes in flight each hold a socket (the port reservation): raise the soft limit on open
/// files to the hard one, and keep `jobs` under it with room for the rest.
fn fd_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1000;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit; raising the soft limit up to the hard one is
        // always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(64)
        .max(1)
}

#[cfg(test)]
mod reflex_why_tests {
    use super::*;

    /// Each reason completes the survey's closing note, "… the kernel program that answers
    /// them as fast as the kernel's own TCP is {why}" (src/app/survey.rs), a verifier's
    /// refusal included, whose error carries its log and no errno (it read "is could not
    /// be loaded").
    #[test]
    fn every_reason_completes_the_note() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "Permission denied (os error 13); the verifier said:\nR4 has pointer with \
             unsupported alu operation, pointer arithmetic with it prohibited for !root",
        );
        assert_eq!(reflex_why(&refused), REFLEX_NOT_PERMITTED);
        let odd = std::io::Error::new(std::io::ErrorKind::InvalidInput, "E2BIG, say");
        for e in [
            std::io::Error::from_raw_os_error(libc::EPERM),
            std::io::Error::from_raw_os_error(libc::EACCES),
            std::io::Error::from_raw_os_error(libc::EINVAL),
            std::io::Error::from_raw_os_error(libc::ENOMEM),
            std::io::Error::from_raw_os_error(libc::E2BIG),
            odd,
        ] {
            let why = reflex_why(&e);
            assert!(
                ["not ", "out of ", "unavailable "]
                    .iter()
                    .any(|p| why.starts_with(p)),
                "\"… is {why}\" ({e})"
            );
        }
    }

    /// With CAP_BPF and CAP_NET_ADMIN but neither CAP_PERFMON nor CAP_SYS_ADMIN (root's
    /// other capabilities dropped from this thread's effective set: capabilities are per
    /// thread), the program is refused, and the survey says what it needs.
    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn without_cap_perfmon_the_survey_says_what_the_program_needs() {
        crate::netns::testutil::require_root(
            "without_cap_perfmon_the_survey_says_what_the_program_needs",
        );
        let got = std::thread::spawn(|| {
            drop_effective(&[21, 38]); // CAP_SYS_ADMIN, CAP_PERFMON
            Reflex::new((32768, 60999), 64, MARK).map(|_| ())
        })
        .join()
        .unwrap();
        let e = got.expect_err("the verifier refuses it without CAP_PERFMON");
        assert_eq!(reflex_why(&e), REFLEX_NOT_PERMITTED, "{e}");
    }

    /// Clear `caps` from the calling thread's effective set (capset(2), version 3).
    fn drop_effective(caps: &[u32]) {
        const VERSION_3: u32 = 0x2008_0522;
        let mut header = [VERSION_3, 0];
        let mut data = [0u32; 6];
        // SAFETY: capget(2) reads the header and writes two `__user_cap_data_struct`s
        // (effective, permitted, inheritable: 6 words), which `data` holds.
        let rc = unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
        for &c in caps {
            data[3 * (c as usize / 32)] &= !(1 << (c % 32));
        }
        // SAFETY: capset(2) reads the same header and data; it changes this thread only.
        let rc = unsafe { libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
    }
}

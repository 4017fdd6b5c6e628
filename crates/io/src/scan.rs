//! The scan loop: send SYNs in permuted order at a held rate, read replies on the tap, send
//! RSTs to SYN-ACKs, retry the unanswered, drain, and hand every answered port back.
//!
//! Two threads. The sender (the caller's thread) walks the permutation, takes tokens from a
//! bucket, and batches SYNs into `sendmmsg`. The receiver owns the taps: it remembers the
//! kernel timestamp of each outgoing SYN for a bounded window, matches replies against the
//! cookies, answers SYN-ACKs with a RST at once (as nmap does, so the target keeps no
//! half-open connection), and passes verdicts to the sender over a channel. Nothing per
//! target is kept except the set of answered ports (needed for retries and deduplication):
//! memory grows with what is found, not with what is scanned.
//!
//! Each family uses the route (interface, source address) of its first target; targets that
//! route elsewhere are still sent to, but their replies arrive on an interface we do not tap.

use super::guard::Guard;
use super::guard::MARK;
use super::ports::PortReservation;
use super::route;
use super::sender::RawSender;
use super::tap::{RingShape, Tap};
use super::{EnvironmentError, clock, random};
use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tcpshake_proto::probe::record::PortState;
use tcpshake_proto::probe::scan::permute::{Permutation, Shard};
use tcpshake_proto::probe::scan::targets::TargetSet;
use tcpshake_proto::probe::scan::{
    self, Cookie, Locals, Reply, ScanRecord, ScanTotals, Seen, build_rst, build_syn,
};
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::defrag::{Defrag, Defragged};

/// SYNs per `sendmmsg`.
const BATCH: usize = 64;
/// SYN send times remembered at most (≈ 40 bytes each); beyond it rtt_ns is null.
const TX_TIMES_CAP: usize = 4 << 20;
/// How often the sender reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What to scan and how; validated by the CLI.
#[derive(Clone, Debug)]
pub struct ScanPlan {
    pub targets: TargetSet,
    pub ports: Vec<u16>,
    /// Keys the permutation: the same seed gives the same order (needed by shards).
    pub seed: u64,
    pub shard: Shard,
    /// Packets per second (SYNs, retries included).
    pub rate: u64,
    /// Extra SYNs for ports that stayed silent.
    pub retries: u8,
    /// After the last SYN (and before each retry round): how long to wait for replies.
    pub wait: Duration,
    /// Use this source port instead of a kernel-chosen one.
    pub source_port: Option<u16>,
}

impl ScanPlan {
    /// (address, port) pairs this shard covers, excluded addresses included.
    pub fn planned(&self) -> u64 {
        self.shard.len(self.targets.len() * self.ports.len() as u64)
    }
}

/// Progress as the sender sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub totals: ScanTotals,
    /// Positions of the permutation walked in the current round.
    pub done: u64,
    pub planned: u64,
    pub round: u8,
}

pub struct ScanOutcome {
    pub totals: ScanTotals,
    pub started: Instant,
    /// First SYN to the last one.
    pub send_time: Duration,
    /// Whole scan, drain included.
    pub duration: Duration,
    pub interrupted: bool,
    pub locals: Locals,
    /// Positions of this shard the first round got through (each sent, or skipped as
    /// excluded): the shard's length unless interrupted. With the plan, it says which
    /// pairs were sent (`probe::scan::results::Coverage`).
    pub walked: u64,
}

/// One family's sending side.
struct Side {
    local: SocketAddr,
    sender: RawSender,
    ident: u16,
    /// Built packets waiting for the next `sendmmsg`.
    bufs: Vec<[u8; 64]>,
    lens: Vec<usize>,
    dsts: Vec<IpAddr>,
}

impl Side {
    fn flush(&mut self) -> Result<u64> {
        let mut done = 0;
        // Bounded: a full socket queue (ENOBUFS) is waited out at most ~1 s per batch.
        for _ in 0..10_000 {
            if done == self.lens.len() {
                break;
            }
            let pkts: Vec<(&[u8], IpAddr)> = (done..self.lens.len())
                .map(|i| (&self.bufs[i][..self.lens[i]], self.dsts[i]))
                .collect();
            match self.sender.send_batch(&pkts) {
                Ok(n) => done += n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(EnvironmentError(format!(
                        "sending SYNs from {} was refused by the local firewall or a missing \
                         capability (EPERM)",
                        self.local
                    ))
                    .into());
                }
                // One unreachable destination must not stop the scan: skip it.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES)
                    ) =>
                {
                    done += 1;
                }
                Err(e) => return Err(anyhow::Error::new(e).context("sending SYNs")),
            }
        }
        let sent = done as u64;
        self.lens.clear();
        self.dsts.clear();
        Ok(sent)
    }
}

/// A token bucket (RFC 2697's idea, one rate, one burst): tokens arrive at `rate` per
/// second up to `burst`; each packet takes one.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket {
            rate,
            // 5 ms worth: enough to ride out the scheduler, small enough to stay smooth.
            burst: (rate / 200.0).max(1.0),
            tokens: 1.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// How long until one token is there.
    fn wait_for_one(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

/// What the receiver hands the sender.
struct Answer {
    reply: Reply,
    at: Instant,
    rtt: Option<Duration>,
}

/// Run the scan. `on_record` gets every answered port once, as soon as it is known;
/// `on_progress` is called about every 100 ms.
pub fn run(
    plan: &ScanPlan,
    stop: &AtomicBool,
    mut on_record: impl FnMut(&ScanRecord) -> Result<()>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<ScanOutcome> {
    if plan.ports.is_empty() || plan.targets.is_empty() {
        bail!("nothing to scan");
    }
    let mut guard = Guard::install(MARK)?;
    let mut reservations = Vec::new();
    let mut sides: [Option<Side>; 2] = [None, None];
    let mut taps = Vec::new();
    let mut rst_senders: [Option<RawSender>; 2] = [None, None];
    let mut locals = Locals::default();
    for v6 in [false, true] {
        let Some(first) = plan.targets.first_of_family(v6) else {
            continue;
        };
        let r = route::lookup(first)
            .with_context(|| format!("no route to {first}: check `ip route get {first}`"))?;
        let port = match plan.source_port {
            Some(p) => p,
            None => {
                let res = PortReservation::new(r.src)?;
                let p = res.port;
                reservations.push(res);
                p
            }
        };
        let local = SocketAddr::new(r.src, port);
        guard.protect_port(port)?;
        // Each tap answers for its own family only: its BPF filter passes every ICMP and
        // ICMPv6 error, and the other family's tap must not race this one's SYN copies.
        let only = if v6 {
            Locals {
                v4: None,
                v6: Some(local),
            }
        } else {
            Locals {
                v4: Some(local),
                v6: None,
            }
        };
        taps.push((
            Tap::open_shaped(r.oif, &r.ifname, port, r.is_loopback, RingShape::SCAN)?,
            only,
        ));
        let sender = RawSender::new(r.src, MARK)?;
        rst_senders[usize::from(v6)] = Some(RawSender::new(r.src, MARK)?);
        sides[usize::from(v6)] = Some(Side {
            local,
            sender,
            ident: random::random_u32() as u16,
            bufs: vec![[0u8; 64]; BATCH],
            lens: Vec::with_capacity(BATCH),
            dsts: Vec::with_capacity(BATCH),
        });
        if v6 {
            locals.v6 = Some(local);
        } else {
            locals.v4 = Some(local);
        }
    }
    // The cookie key is secret and fresh per run (replies cannot be forged); only the
    // order is reproducible.
    let cookie = Cookie::new(
        u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()),
        u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()),
    );
    let receiving = AtomicBool::new(true);
    let unmatched = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Answer>();
    let horizon = plan.wait * 2 + Duration::from_secs(2);

    let outcome = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            receive(
                &mut taps,
                &rst_senders,
                &cookie,
                plan.retries,
                horizon,
                &receiving,
                &unmatched,
                tx,
            )
        });
        let sent = send_all(
            plan,
            &mut sides,
            &cookie,
            stop,
            &rx,
            &unmatched,
            &mut on_record,
            &mut on_progress,
        );
        receiving.store(false, Ordering::Relaxed);
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiver thread panicked")));
        let (mut state, send_time) = sent?;
        // Whatever the receiver passed on before it stopped.
        while let Ok(a) = rx.try_recv() {
            state.take(a, &mut on_record)?;
        }
        received?;
        state.totals.unmatched = unmatched.load(Ordering::Relaxed);
        Ok::<_, anyhow::Error>((state, send_time))
    });
    for p in guard_ports(&locals) {
        let _ = guard.release_port(p);
    }
    drop(reservations);
    let (state, send_time) = outcome?;
    Ok(ScanOutcome {
        totals: state.totals,
        started: state.started,
        send_time,
        duration: clock::now().saturating_since(state.started),
        interrupted: state.interrupted,
        locals,
        walked: state.walked,
    })
}

fn guard_ports(l: &Locals) -> Vec<u16> {
    [l.v4, l.v6].iter().flatten().map(|a| a.port()).collect()
}

/// The sender's view of the results.
struct State {
    answered: HashSet<(IpAddr, u16)>,
    totals: ScanTotals,
    started: Instant,
    interrupted: bool,
    /// First-round positions walked (see `ScanOutcome::walked`).
    walked: u64,
}

impl State {
    fn take(
        &mut self,
        a: Answer,
        on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
    ) -> Result<()> {
        let key = (a.reply.remote.ip(), a.reply.remote.port());
        if !self.answered.insert(key) {
            self.totals.duplicates += 1;
            return Ok(());
        }
        match a.reply.state {
            PortState::Open => self.totals.open += 1,
            PortState::Closed => self.totals.closed += 1,
            PortState::Filtered => self.totals.filtered_icmp += 1,
            // A scan's reply is never "interrupted": that is a probe's state.
            PortState::Interrupted => {}
        }
        on_record(&ScanRecord {
            addr: key.0,
            port: key.1,
            state: a.reply.state,
            reason: a.reply.reason,
            reply_ttl: a.reply.ttl,
            rtt_ns: a
                .rtt
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            t_ns: a.at.as_nanos(),
            complete: None,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn send_all(
    plan: &ScanPlan,
    sides: &mut [Option<Side>; 2],
    cookie: &Cookie,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    unmatched: &AtomicU64,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(State, Duration)> {
    let n_ports = plan.ports.len() as u64;
    let n = plan.targets.len() * n_ports;
    let perm = Permutation::new(n, plan.seed);
    let started = clock::now();
    let mut state = State {
        answered: HashSet::new(),
        totals: ScanTotals::default(),
        started,
        interrupted: false,
        walked: 0,
    };
    let mut bucket = Bucket::new(plan.rate, started);
    let mut progress = Progress {
        planned: plan.planned(),
        ..Progress::default()
    };
    let mut next_progress = started;
    let mut last_send = started;

    let mut send_time = Duration::ZERO;
    let (mut round_first, mut round_last): (Option<Instant>, Option<Instant>) = (None, None);
    'rounds: for round in 0..=plan.retries {
        progress.round = round;
        progress.done = 0;
        if round > 0 {
            // Every probed port answered: nothing to retry.
            if state.answered.len() as u64 >= state.totals.scanned {
                break 'rounds;
            }
            // Give the previous round's SYNs their full wait before asking again.
            if wait_draining(last_send + plan.wait, stop, rx, &mut state, on_record)? {
                state.interrupted = true;
                break 'rounds;
            }
        }
        for i in plan.shard.positions(n) {
            progress.done += 1;
            if stop.load(Ordering::Relaxed) {
                state.interrupted = true;
                break 'rounds;
            }
            // From here this position is sent (its SYN batched, flushed before the drain)
            // or skipped: either way the first round is past it.
            if round == 0 {
                state.walked += 1;
            }
            let v = perm.at(i);
            let Some(addr) = plan.targets.get(v / n_ports) else {
                continue;
            };
            let port = plan.ports[(v % n_ports) as usize];
            if round > 0 && state.answered.contains(&(addr, port)) {
                continue;
            }
            if sides[usize::from(addr.is_ipv6())].is_none() {
                continue;
            }
            // A token for this packet; while none is there, send what is batched, read
            // answers, and sleep.
            let mut now = clock::now();
            bucket.refill(now);
            while bucket.tokens < 1.0 {
                for s in sides.iter_mut().flatten() {
                    state.totals.sent += s.flush()?;
                }
                drain(rx, &mut state, on_record)?;
                let d = bucket.wait_for_one();
                if d >= Duration::from_micros(200) {
                    std::thread::sleep(d);
                } else {
                    std::thread::yield_now();
                }
                now = clock::now();
                bucket.refill(now);
            }
            bucket.tokens -= 1.0;
            let side = sides[usize::from(addr.is_ipv6())]
                .as_mut()
                .context("no sender for this family")?;
            let remote = SocketAddr::new(addr, port);
            if round > 0 {
                // Clear what the previous attempt may have left: a target whose SYN-ACK was
                // lost sits in SYN-RECEIVED with rcv_nxt = that cookie + 1 and would answer
                // this SYN (same 4-tuple, another sequence number) with a rate-limited ACK
                // only. A RST in its window removes the half-open connection (RFC 9293
                // §3.10.7.4); with no such state the RST is silently dropped (§3.10.7.1).
                let prev = cookie.seq(side.local, remote, round - 1).add(1);
                let slot = side.lens.len();
                let len = build_rst(side.local, remote, prev, side.ident, &mut side.bufs[slot])
                    .context("building a RST")?;
                side.ident = side.ident.wrapping_add(1);
                side.lens.push(len);
                side.dsts.push(addr);
                if side.lens.len() == BATCH {
                    state.totals.sent += side.flush()?;
                }
            }
            let seq = cookie.seq(side.local, remote, round);
            let slot = side.lens.len();
            let len = build_syn(side.local, remote, seq, side.ident, &mut side.bufs[slot])
                .context("building a SYN")?;
            side.ident = side.ident.wrapping_add(1);
            side.lens.push(len);
            side.dsts.push(addr);
            if round == 0 {
                state.totals.scanned += 1;
            }
            if side.lens.len() == BATCH {
                state.totals.sent += side.flush()?;
                drain(rx, &mut state, on_record)?;
            }
            // Sending time counts from each round's first SYN to its last.
            round_first.get_or_insert(now);
            round_last = Some(now);
            last_send = now;
            if now >= next_progress {
                next_progress = now + PROGRESS_EVERY;
                progress.totals = state.totals;
                progress.totals.unmatched = unmatched.load(Ordering::Relaxed);
                on_progress(&progress);
            }
        }
        for s in sides.iter_mut().flatten() {
            state.totals.sent += s.flush()?;
        }
        if let (Some(a), Some(b)) = (round_first.take(), round_last.take()) {
            last_send = clock::now();
            send_time += last_send.saturating_since(a).max(b.saturating_since(a));
        }
    }
    for s in sides.iter_mut().flatten() {
        state.totals.sent += s.flush()?;
    }
    // An interrupted round still counts its sending time.
    if let (Some(a), Some(b)) = (round_first, round_last) {
        send_time += b.saturating_since(a);
    }
    // The drain: a Ctrl-C stops the sending, not the listening for what is on its way.
    let until = last_send + plan.wait;
    let never = AtomicBool::new(false);
    // Bounded by `until`; each turn lasts at most PROGRESS_EVERY.
    while clock::now() < until {
        progress.totals = state.totals;
        progress.totals.unmatched = unmatched.load(Ordering::Relaxed);
        on_progress(&progress);
        let turn = (clock::now() + PROGRESS_EVERY).min(until);
        wait_draining(turn, &never, rx, &mut state, on_record)?;
    }
    Ok((state, send_time))
}

fn drain(
    rx: &mpsc::Receiver<Answer>,
    state: &mut State,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    // Bounded per call; the rest waits for the next call.
    for _ in 0..100_000 {
        match rx.try_recv() {
            Ok(a) => state.take(a, on_record)?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Take answers until `until`. True when `stop` was set meanwhile.
fn wait_draining(
    until: Instant,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    state: &mut State,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<bool> {
    loop {
        let now = clock::now();
        if stop.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if now >= until {
            return Ok(false);
        }
        let d = until.saturating_since(now).min(Duration::from_millis(20));
        match rx.recv_timeout(d) {
            Ok(a) => state.take(a, on_record)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(d);
            }
        }
    }
}

/// The receiver thread: read the taps until the sender says stop, then once more until
/// they are empty.
#[allow(clippy::too_many_arguments)]
fn receive(
    taps: &mut [(Tap, Locals)],
    rst_senders: &[Option<RawSender>; 2],
    cookie: &Cookie,
    retries: u8,
    horizon: Duration,
    receiving: &AtomicBool,
    unmatched: &AtomicU64,
    tx: mpsc::Sender<Answer>,
) -> Result<()> {
    let mut tx_times: HashMap<(IpAddr, u16, u32), Instant> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut rst = [0u8; 64];
    let mut rst_ident: u16 = random::random_u32() as u16;
    let mut next_expiry = clock::now() + horizon;
    let mut last_round = false;
    // One reassembler per tap: a fragmented SYN-ACK is matched once whole (defrag.rs).
    let mut defrags: Vec<Defrag> = taps.iter().map(|_| Defrag::new(false)).collect();
    loop {
        let mut got = 0usize;
        for ((tap, locals), defrag) in taps.iter_mut().zip(defrags.iter_mut()) {
            // Bounded per pass so both taps get their turn.
            for _ in 0..4096 {
                let Some(meta) = tap.recv(&mut buf).context("reading the AF_PACKET tap")? else {
                    break;
                };
                got += 1;
                let bytes = &buf[..meta.len];
                let whole = if meta.outgoing {
                    Defragged::Whole
                } else {
                    defrag.push(meta.at, bytes, meta.checksum_offloaded)
                };
                let (bytes, offloaded) = match &whole {
                    Defragged::Whole => (bytes, meta.checksum_offloaded),
                    Defragged::Complete(d) => (&d.bytes[..], d.checksum_offloaded),
                    Defragged::Held | Defragged::Dropped(_) => continue,
                };
                match scan::inspect(bytes, offloaded, locals, cookie, retries) {
                    Seen::OurSyn { remote, seq } => {
                        if tx_times.len() < TX_TIMES_CAP {
                            tx_times.insert((remote.ip(), remote.port(), seq.0), meta.at);
                        }
                    }
                    Seen::Reply(reply) => {
                        let remote = reply.remote;
                        if let Some(seq) = reply.rst_seq
                            && let Some(sender) = &rst_senders[usize::from(remote.is_ipv6())]
                            && let Some(local) = if remote.is_ipv6() {
                                locals.v6
                            } else {
                                locals.v4
                            }
                            && let Ok(n) = build_rst(local, remote, seq, rst_ident, &mut rst)
                        {
                            rst_ident = rst_ident.wrapping_add(1);
                            // Best effort: the target times its half-open connection out
                            // anyway (RFC 9293 §3.8.1).
                            let _ = sender.send(&rst[..n], remote.ip());
                        }
                        let rtt = tx_times
                            .get(&(remote.ip(), remote.port(), reply.syn_seq.0))
                            .map(|&t| meta.at.saturating_since(t));
                        if tx
                            .send(Answer {
                                reply,
                                at: meta.at,
                                rtt,
                            })
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    Seen::Unmatched => {
                        unmatched.fetch_add(1, Ordering::Relaxed);
                    }
                    Seen::Other => {}
                }
            }
        }
        let now = clock::now();
        if now >= next_expiry {
            next_expiry = now + horizon / 2;
            tx_times.retain(|_, t| now.saturating_since(*t) < horizon);
        }
        if last_round && got == 0 {
            return Ok(());
        }
        if !receiving.load(Ordering::Relaxed) {
            last_round = true;
            continue;
        }
        if got == 0 {
            poll_any(taps, Duration::from_millis(10))?;
        }
    }
}

/// Sleep until one of the taps has a packet or `timeout` passes.
fn poll_any(taps: &[(Tap, Locals)], timeout: Duration) -> Result<()> {
    let fds: Vec<_> = taps.iter().map(|(t, _)| t.as_fd()).collect();
    super::poll::wait_readable(&fds, Some(timeout)).context("polling the taps")?;
    Ok(())
}

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
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tcpshake_proto::probe::scan::rtt::{self, Wait};
pub use tcpshake_proto::probe::scan::schedule::{Progress, ScanPlan};
use tcpshake_proto::probe::scan::schedule::{Schedule, Step};
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
    /// Builds one packet for `dst` into the batch with `build(buf, local, ident)`.
    fn push(
        &mut self,
        dst: IpAddr,
        build: impl FnOnce(&mut [u8], SocketAddr, u16) -> tcpshake_proto::wire::Result<usize>,
    ) -> tcpshake_proto::wire::Result<()> {
        let slot = self.lens.len();
        let len = build(&mut self.bufs[slot], self.local, self.ident)?;
        self.ident = self.ident.wrapping_add(1);
        self.lens.push(len);
        self.dsts.push(dst);
        Ok(())
    }

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
    let horizon = match plan.wait {
        Wait::Fixed(w) => w * 2 + Duration::from_secs(2),
        Wait::Adaptive => rtt::CEILING * 2,
    };

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
        let mut schedule = sent?;
        // Whatever the receiver passed on before it stopped.
        while let Ok(a) = rx.try_recv() {
            take(&mut schedule, a, &mut on_record)?;
        }
        received?;
        schedule.set_unmatched(unmatched.load(Ordering::Relaxed));
        Ok::<_, anyhow::Error>(ScanOutcome {
            totals: schedule.totals(),
            started: schedule.started(),
            send_time: schedule.send_time(),
            duration: clock::now().saturating_since(schedule.started()),
            interrupted: schedule.interrupted(),
            locals,
            walked: schedule.walked(),
        })
    });
    for p in guard_ports(&locals) {
        let _ = guard.release_port(p);
    }
    drop(reservations);
    outcome
}

fn guard_ports(l: &Locals) -> Vec<u16> {
    [l.v4, l.v6].iter().flatten().map(|a| a.port()).collect()
}

/// The sending thread: does what the pure [`Schedule`] asks (builds, batches and sends
/// SYNs, and a retry's RST), takes the receiver's answers whenever it waits, and reports
/// progress.
#[allow(clippy::too_many_arguments)]
fn send_all<'p>(
    plan: &'p ScanPlan,
    sides: &mut [Option<Side>; 2],
    cookie: &Cookie,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    unmatched: &AtomicU64,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Schedule<'p>> {
    let families = [sides[0].is_some(), sides[1].is_some()];
    let mut schedule = Schedule::new(plan, families, clock::now());
    let mut next_progress = schedule.started();
    // Bounded by the schedule: it ends once the walk, the retry rounds and the drain are
    // through, and a stop cuts everything but the drain.
    loop {
        let now = clock::now();
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            schedule.set_unmatched(unmatched.load(Ordering::Relaxed));
            on_progress(&schedule.progress());
        }
        match schedule.poll(now, stop.load(Ordering::Relaxed)) {
            Step::Send(p) => {
                let side = sides[usize::from(p.remote.is_ipv6())]
                    .as_mut()
                    .context("no sender for this family")?;
                if p.reset_previous {
                    let prev = cookie.seq(side.local, p.remote, p.attempt - 1).add(1);
                    side.push(p.remote.ip(), |buf, local, ident| {
                        build_rst(local, p.remote, prev, ident, buf)
                    })
                    .context("building a RST")?;
                }
                let seq = cookie.seq(side.local, p.remote, p.attempt);
                side.push(p.remote.ip(), |buf, local, ident| {
                    build_syn(local, p.remote, seq, ident, buf)
                })
                .context("building a SYN")?;
                if side.lens.len() + 2 > BATCH {
                    let n = side.flush()?;
                    schedule.sent(n, clock::now());
                    drain(rx, &mut schedule, on_record)?;
                }
            }
            Step::Wait(until) => {
                // Send what is batched, then take answers until it is time again.
                for s in sides.iter_mut().flatten() {
                    let n = s.flush()?;
                    schedule.sent(n, clock::now());
                }
                drain(rx, &mut schedule, on_record)?;
                let until = until.min(clock::now() + PROGRESS_EVERY);
                if until.saturating_since(clock::now()) >= Duration::from_micros(200) {
                    wait_draining(until, stop, rx, &mut schedule, on_record)?;
                } else {
                    std::thread::yield_now();
                }
            }
            Step::Done => break,
        }
    }
    for s in sides.iter_mut().flatten() {
        let n = s.flush()?;
        schedule.sent(n, clock::now());
    }
    Ok(schedule)
}

fn drain(
    rx: &mpsc::Receiver<Answer>,
    schedule: &mut Schedule<'_>,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    // Bounded per call; the rest waits for the next call.
    for _ in 0..100_000 {
        match rx.try_recv() {
            Ok(a) => take(schedule, a, on_record)?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// One answer into the schedule, and out as a record unless it repeats one.
fn take(
    schedule: &mut Schedule<'_>,
    a: Answer,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    match schedule.answer(&a.reply, a.at, a.rtt) {
        Some(r) => on_record(&r),
        None => Ok(()),
    }
}

/// Take answers until `until`, or until a stop request the schedule has not seen yet (it
/// decides what a stop means: after it, only the drain is left, which a stop does not cut).
fn wait_draining(
    until: Instant,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    schedule: &mut Schedule<'_>,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    loop {
        let now = clock::now();
        if now >= until || (stop.load(Ordering::Relaxed) && !schedule.interrupted()) {
            return Ok(());
        }
        let d = until.saturating_since(now).min(Duration::from_millis(20));
        match rx.recv_timeout(d) {
            Ok(a) => take(schedule, a, on_record)?,
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

//! The scan loop: resolve on-link neighbours, send SYNs in permuted order at a held rate,
//! read replies on the tap, send RSTs to SYN-ACKs, retry the unanswered, drain, and hand
//! every answered port back. The policy is pure (`tcpshake_proto::probe::scan::schedule`,
//! `neighbours`, `rtt`, `rate`); this is its driver.
//!
//! Send paths, per family (chosen here, measured by scripts/bench-send):
//! - **frames** (an Ethernet interface, unless `--send-ip`): whole Ethernet frames,
//!   `sendmmsg(2)` on an AF_PACKET socket with `PACKET_QDISC_BYPASS` (link.rs) — no IP
//!   layer, netfilter hook or neighbour table per packet. Destination MACs come from our
//!   own resolution (neighbour.rs: ARP / ND for on-link targets, the kernel's table or ARP
//!   / ND for the gateway). The tap does not see bypassing frames, so each SYN's send time
//!   is the driver's software transmit stamp read back from the socket's error queue with
//!   a copy of the frame (`SO_TIMESTAMPING`). A driver without software transmit stamps
//!   (`ethtool -T`) gets the socket without the bypass, and the tap stamps the SYNs.
//!   A fast scan on a host with a second CPU sends through a second socket too, from a
//!   thread of its own (link.rs, "Two senders"; `rate::second_sender` decides).
//! - **kernel** (loopback, non-Ethernet interfaces, this host's own addresses, routes
//!   through another interface, a gateway that does not answer, `--send-ip`): raw IP
//!   sockets with `sendmmsg`, stamped by the tap as before.
//!
//! No rings: a `TPACKET_V2` ring sends about as fast as `sendmmsg` here (bench-send), but
//! setting one up and closing it waits for RCU grace periods (`packet_set_ring`,
//! `packet_release`: ~10 ms each here, two at close), which a full-port scan of 0.2 s
//! felt as a fifth of its time; the taps read their sockets' queues for the same reason.
//!
//! Two threads (three with the second sender). The sender (the caller's thread) runs the
//! schedule, builds and batches, and reads the transmit stamps of both sockets. The
//! receiver owns the taps: it matches replies against the cookies, answers SYN-ACKs
//! with a RST at once (a frame to the MAC the SYN went to, or through the kernel),
//! remembers the tap's stamps of SYNs it sees leave, and passes answers to the sender
//! over a channel; a reply whose SYN the tap did not stamp is timed by the sender from
//! its transmit stamps. Nothing per target is kept except the set of answered ports and
//! the MACs resolution found: memory grows with what is found, not with what is scanned.
//!
//! The kernel still sees the replies (a SYN-ACK to a port it has no socket for makes it
//! answer RST): the guard's prerouting rule keeps them from its TCP, as before — frames
//! skip the OUTPUT hook, but no rule there was needed for our own packets.
//!
//! Each family uses the route (interface, source address) of its first target that is not
//! one of this host's own addresses (those are answered over the loopback, tapped too);
//! on the kernel's path, targets that route elsewhere are still sent to, but their replies
//! arrive on an interface we do not tap.

use super::guard::Guard;
use super::guard::MARK;
use super::link::{self, FrameSender, Mode};
use super::neighbour;
use super::ports::PortReservation;
use super::route;
use super::sender::RawSender;
use super::tap::Tap;
use super::{EnvironmentError, clock, random};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tcpshake_proto::probe::scan::neighbours::{
    Class, Neighbours, NextHop, Prefix, ResolvePlan, ResolveTotals,
};
use tcpshake_proto::probe::scan::pairhash::PairMap;
use tcpshake_proto::probe::scan::rate::{self, SendLog};
use tcpshake_proto::probe::scan::rtt::{self, RttEstimator, Wait};
pub use tcpshake_proto::probe::scan::schedule::{Progress, ScanPlan};
use tcpshake_proto::probe::scan::schedule::{Schedule, Step};
use tcpshake_proto::probe::scan::unroutable::{self, NoPath, Unroutable};
use tcpshake_proto::probe::scan::{
    self, Cookie, Locals, Reply, ScanRecord, ScanTotals, Seen, build_rst, build_rst_frame,
    build_syn, build_syn_frame, syn_of_frame,
};
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::defrag::{Defrag, Defragged};
use tcpshake_proto::wire::ethernet::MacAddr;

/// Packets per `sendmmsg` or ring flush.
const BATCH: usize = 64;
/// SYN send times remembered at most (≈ 40 bytes each); beyond it rtt_ns is null.
const TX_TIMES_CAP: usize = 4 << 20;
/// Stamps the table has room for from the start (a full-port scan's, ~6 MiB).
const TX_TIMES_RESERVE: u64 = 1 << 17;
/// How often the sender reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Room for one built frame (a SYN frame is 14 + 40 + 24 bytes).
const FRAME_ROOM: usize = 128;
/// The capture's queue (kernel memory, as the kernel counts it: about a kilobyte per
/// reply): room for ~30 000 replies, ~60 ms at 500 000 a second should the receiver be kept
/// off the CPU that long. The taps read their socket's queue, not a ring, for the same
/// reason the senders use `sendmmsg`: a ring costs RCU grace periods to set up and to close
/// (module doc), and a scan is short.
const SCAN_QUEUE_BYTES: usize = 32 << 20;

/// How one family's packets leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendPath {
    /// Ethernet frames of our own; `stamps`: transmit stamps from the error queue (with
    /// the qdisc bypassed), else the tap's.
    Frames { stamps: bool },
    /// Raw IP sockets through the kernel.
    Kernel,
}

pub struct ScanOutcome {
    pub totals: ScanTotals,
    pub started: Instant,
    /// First SYN to the last one.
    pub send_time: Duration,
    /// Whole scan, resolution and drain included.
    pub duration: Duration,
    pub interrupted: bool,
    /// Interrupted in a retry round: every pair had its first SYN.
    pub interrupted_in_retries: bool,
    pub locals: Locals,
    /// Positions of this shard the first round got through (each sent, or skipped as
    /// excluded): the shard's length unless interrupted. With the plan, it says which
    /// pairs were sent (`probe::scan::results::Coverage`).
    pub walked: u64,
    /// Where each target's packets went; which on-link hosts are down.
    pub neighbours: Neighbours,
    /// Neighbour resolution's counts, when it ran.
    pub resolution: Option<ResolveTotals>,
    /// The sending, resolution included: what the rate check judges.
    pub send_log: SendLog,
    /// Packets the taps had no room for (PACKET_STATISTICS): replies never seen.
    pub tap_drops: u64,
    /// The reply times measured.
    pub rtt: RttEstimator,
    /// Per family (IPv4, IPv6), when it was scanned.
    pub paths: [Option<SendPath>; 2],
    /// Hosts the kernel refused to send to when their SYN went (no route, a prohibit or
    /// blackhole route or rule), and why: not scanned, to be left out of the reports and
    /// named.
    pub refused: Vec<(IpAddr, NoPath)>,
}

/// A batch of built packets for one sender.
struct Batch {
    bufs: Vec<[u8; FRAME_ROOM]>,
    lens: Vec<usize>,
    /// Each packet's pair, and whether it is the pair's first SYN (what a refusal of it
    /// uncounts, `Schedule::refused`).
    dsts: Vec<(SocketAddr, bool)>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bufs: vec![[0u8; FRAME_ROOM]; BATCH],
            lens: Vec::with_capacity(BATCH),
            dsts: Vec::with_capacity(BATCH),
        }
    }

    fn room(&self) -> usize {
        BATCH - self.lens.len()
    }

    fn push(
        &mut self,
        dst: (SocketAddr, bool),
        build: impl FnOnce(&mut [u8]) -> tcpshake_proto::wire::Result<usize>,
    ) -> tcpshake_proto::wire::Result<()> {
        let slot = self.lens.len();
        let len = build(&mut self.bufs[slot])?;
        self.lens.push(len);
        self.dsts.push(dst);
        Ok(())
    }

    fn clear(&mut self) {
        self.lens.clear();
        self.dsts.clear();
    }
}

/// One family's frame path.
struct FrameSide {
    sender: FrameSender,
    mac: MacAddr,
    stamps: bool,
    batch: Batch,
}

/// One family's sending side.
struct Side {
    local: SocketAddr,
    raw: RawSender,
    raw_batch: Batch,
    frames: Option<FrameSide>,
    ident: u16,
    /// Packets the kernel refused since the last look (the pair, whether it was the pair's
    /// first SYN, the errno): the raw path's only.
    refused: Vec<(SocketAddr, bool, i32)>,
}

/// Where the driver's sending time went (rate.rs judges it).
#[derive(Default)]
struct Accounting {
    blocked: Duration,
    full: u64,
}

impl Side {
    /// Queue a packet for `remote` (a SYN, or a RST at `seq`) on the path its next hop
    /// says; `first`: the pair's first SYN. Returns false when it has no path (a down
    /// host).
    fn push(
        &mut self,
        hop: NextHop,
        remote: SocketAddr,
        seq: tcpshake_proto::wire::SeqNumber,
        syn: bool,
        first: bool,
    ) -> Result<bool> {
        let (local, ident) = (self.local, self.ident);
        self.ident = self.ident.wrapping_add(1);
        match (hop, &mut self.frames) {
            (NextHop::Mac(dst), Some(f)) => {
                let macs = (f.mac, dst);
                f.batch
                    .push((remote, first), |b| {
                        if syn {
                            build_syn_frame(macs, local, remote, seq, ident, b)
                        } else {
                            build_rst_frame(macs, local, remote, seq, ident, b)
                        }
                    })
                    .context("building a frame")?;
            }
            (NextHop::Down, _) => return Ok(false),
            _ => {
                self.raw_batch
                    .push((remote, first), |b| {
                        if syn {
                            build_syn(local, remote, seq, ident, b)
                        } else {
                            build_rst(local, remote, seq, ident, b)
                        }
                    })
                    .context("building a packet")?;
            }
        }
        Ok(true)
    }

    fn room(&self) -> usize {
        let f = self.frames.as_ref().map_or(BATCH, |f| f.batch.room());
        f.min(self.raw_batch.room())
    }

    /// Send both batches; returns how many packets left.
    fn flush(&mut self, acc: &mut Accounting) -> Result<u64> {
        let mut sent = 0;
        if let Some(f) = &mut self.frames {
            let b = &mut f.batch;
            sent += send_all(
                self.local,
                acc,
                b.lens.len(),
                |from| {
                    let v: Vec<&[u8]> = (from..b.lens.len())
                        .map(|i| &b.bufs[i][..b.lens[i]])
                        .collect();
                    f.sender.send_batch(&v)
                },
                |_, _| {},
            )?;
            b.clear();
        }
        let b = &mut self.raw_batch;
        let raw = &self.raw;
        let refused = &mut self.refused;
        sent += send_all(
            self.local,
            acc,
            b.lens.len(),
            |from| {
                let v: Vec<(&[u8], IpAddr)> = (from..b.lens.len())
                    .map(|i| (&b.bufs[i][..b.lens[i]], b.dsts[i].0.ip()))
                    .collect();
                raw.send_batch(&v)
            },
            |i, errno| refused.extend(b.dsts.get(i).map(|&(d, first)| (d, first, errno))),
        )?;
        b.clear();
        Ok(sent)
    }
}

/// Hand `n` packets to the kernel through `send(first_unsent)`, waiting out a full queue;
/// `refused(i, errno)` for packet `i` when the kernel would not route it. Returns how many
/// left.
fn send_all(
    local: SocketAddr,
    acc: &mut Accounting,
    n: usize,
    mut send: impl FnMut(usize) -> std::io::Result<usize>,
    mut refused: impl FnMut(usize, i32),
) -> Result<u64> {
    let mut done = 0;
    let mut skipped = 0;
    // Bounded: a full socket queue (ENOBUFS) is waited out at most ~1 s per batch.
    for _ in 0..10_000 {
        if done >= n {
            break;
        }
        match send(done) {
            Ok(k) => done += k,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                // The sleep counts as waiting (flush_side measures it).
                acc.full += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(EnvironmentError(format!(
                    "sending SYNs from {local} was refused by the local firewall or a missing \
                     capability (EPERM)"
                ))
                .into());
            }
            // One destination the kernel will not route must not stop the scan: the caller
            // skips that host (`sendmmsg` returned the packets before it; this call failed
            // on it). No route (ENETUNREACH / EHOSTUNREACH), a blackhole route (EINVAL), a
            // prohibit route or rule — or a subnet's broadcast address (no SO_BROADCAST) —
            // (EACCES): the caller tells which (`no_path_of`).
            Err(e)
                if let Some(
                    errno @ (libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EINVAL | libc::EACCES),
                ) = e.raw_os_error() =>
            {
                refused(done, errno);
                done += 1;
                skipped += 1;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("sending SYNs")),
        }
    }
    Ok(done.min(n).saturating_sub(skipped) as u64)
}

/// SYN send times by (address, port, sequence number), bounded in count and age.
struct TxTimes {
    map: PairMap<(IpAddr, u16, u32), Instant>,
    horizon: Duration,
    next_expiry: Instant,
}

impl TxTimes {
    /// Room for `expected` stamps made at once: a full-port scan's table grown by
    /// doubling rehashed it five times, a twentieth of the sending thread's time.
    fn new(horizon: Duration, expected: usize) -> TxTimes {
        TxTimes {
            map: PairMap::with_capacity_and_hasher(expected.min(TX_TIMES_CAP), Default::default()),
            horizon,
            next_expiry: clock::now() + horizon,
        }
    }

    fn insert(&mut self, key: (IpAddr, u16, u32), at: Instant) {
        if self.map.len() < TX_TIMES_CAP {
            // A frame sent twice (a drop, then the ring's retry) keeps its last stamp:
            // the copy that left.
            self.map.insert(key, at);
        }
    }

    fn rtt(&self, key: &(IpAddr, u16, u32), at: Instant) -> Option<Duration> {
        self.map.get(key).map(|&t| at.saturating_since(t))
    }

    fn expire(&mut self, now: Instant) {
        if now >= self.next_expiry {
            self.next_expiry = now + self.horizon / 2;
            let h = self.horizon;
            self.map.retain(|_, t| now.saturating_since(*t) < h);
        }
    }
}

/// What the receiver hands the sender.
struct Answer {
    reply: Reply,
    at: Instant,
    /// From the tap's stamp of the SYN, when the tap saw it leave.
    rtt: Option<Duration>,
}

/// One family as set up for the scan.
struct Family {
    side: Side,
    tap: Tap,
    /// A second tap on the loopback interface, when a target is one of our addresses.
    loopback_tap: Option<Tap>,
    only: Locals,
    rst_raw: RawSender,
    rst_frames: Option<FrameSender>,
    path: SendPath,
    /// For resolution: the routes as the interface sees them, its index and name.
    link: Option<(
        tcpshake_proto::probe::scan::neighbours::LinkRoutes,
        u32,
        String,
    )>,
    oif: u32,
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
    let started = clock::now();
    let mut guard = Guard::install(MARK)?;
    // A port asked for serves both families; else each has its own, so that each
    // family's tap passes only its own replies.
    let mut reservations = Vec::new();
    // The ports put in the guard, released from it at the end.
    let mut guarded = Vec::new();
    if let Some(p) = plan.source_port {
        reservations.extend(PortReservation::chosen(p)?);
        guard.protect_port(p)?;
        guarded.push(p);
    }
    let mut families: [Option<Family>; 2] = [None, None];
    let mut locals = Locals::default();
    for v6 in [false, true] {
        if plan.targets.first_of_family(v6).is_none() {
            continue;
        }
        // This host's own addresses and prefixes (the local table): the family's route is
        // that of its first target that is not one of them (`TargetSet::route_by`).
        let own = neighbour::local_prefixes(v6).unwrap_or_default();
        let own_runs: Vec<(u128, u128)> = own.iter().map(Prefix::bounds).collect();
        let Some(first) = plan.targets.route_by(v6, &own_runs) else {
            continue;
        };
        // The lookup's errors name the address and say what to check.
        let r = route::lookup(first)?;
        let port = match plan.source_port {
            Some(p) => p,
            None => {
                let res = PortReservation::new()?;
                let p = res.port;
                guard.protect_port(p)?;
                guarded.push(p);
                reservations.push(res);
                p
            }
        };
        let local = SocketAddr::new(r.src, port);
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
        // Replies may come back on another of this host's links (asymmetric routing): the
        // tap takes those too, as Linux's TCP would.
        let others = route::other_links(r.oif, r.is_loopback);
        let tap = Tap::open_queue(
            r.oif,
            &r.ifname,
            port,
            r.is_loopback,
            SCAN_QUEUE_BYTES,
            &others,
        )?;
        let (frames, link) = frame_path(plan, &r, first)?;
        // A target that is this host's own address is answered over the loopback
        // interface, which the tap above does not see: tap that too (nmap scans such a
        // target through lo as well).
        let loopback_tap = match own_target(plan, v6, &own) {
            Some(own) if !r.is_loopback => {
                let lo = route::lookup(own)?;
                Some(Tap::open_queue(
                    lo.oif,
                    &lo.ifname,
                    port,
                    lo.is_loopback,
                    SCAN_QUEUE_BYTES,
                    &route::OtherLinks::default(),
                )?)
            }
            _ => None,
        };
        let path = frames
            .as_ref()
            .map_or(SendPath::Kernel, |f| SendPath::Frames { stamps: f.stamps });
        // The receiver's RSTs are few: sendmmsg, no ring (a ring costs an RCU grace
        // period to set up, `packet_set_ring`'s `synchronize_net`).
        let rst_frames = match &frames {
            Some(_) => Some(FrameSender::open(r.oif, Mode::SendmmsgBypass, MARK)?),
            None => None,
        };
        families[usize::from(v6)] = Some(Family {
            side: Side {
                local,
                raw: RawSender::new(r.src, MARK)?,
                raw_batch: Batch::new(),
                frames,
                ident: random::random_u32() as u16,
                refused: Vec::new(),
            },
            tap,
            loopback_tap,
            only,
            rst_raw: RawSender::new(r.src, MARK)?,
            rst_frames,
            path,
            link,
            oif: r.oif,
        });
        if v6 {
            locals.v6 = Some(local);
        } else {
            locals.v4 = Some(local);
        }
    }
    let paths = [0, 1].map(|i| families[i].as_ref().map(|f| f.path));

    // Neighbour resolution, before the first SYN: it decides who gets one.
    let mut send_log = SendLog::default();
    let mut resolution = None;
    let mut closing: Vec<Box<dyn Send>> = Vec::new();
    let mut seed = RttEstimator::new();
    let mut resolve_interrupted = false;
    let neighbours = if families.iter().flatten().any(|f| f.link.is_some()) {
        let mut known = HashMap::new();
        let mut links = [None, None];
        let mut senders: [Option<&mut FrameSender>; 2] = [None, None];
        for (i, f) in families.iter_mut().enumerate() {
            let Some(f) = f else { continue };
            if let Some(l) = f.link.take() {
                // Gateways the kernel has already resolved are not asked again.
                known.extend(neighbour::kernel_neighbours(f.oif, i == 1).unwrap_or_default());
                links[i] = Some(l);
                senders[i] = f.side.frames.as_mut().map(|s| &mut s.sender);
            }
        }
        let r = neighbour::resolve(
            &plan.targets,
            links,
            &mut senders,
            known,
            ResolvePlan {
                rate: plan.rate,
                retries: plan.retries,
                wait: plan.wait,
            },
            stop,
        )?;
        send_log.add(&r.log);
        for p in r.reply_sockets {
            closing.push(Box::new(p));
        }
        // The requests' transmit stamps wait on the senders' error queues, which are
        // bounded (RCVBUF): a sweep of 32 768 on-link addresses filled them, and every SYN
        // stamp after was dropped — no RTT for any host (walk: fd00::/113, a /17). None
        // of them names a SYN: read and drop them all before the first SYN goes.
        for f in families.iter_mut().flatten() {
            if let Some(fs) = f.side.frames.as_mut().filter(|fs| fs.stamps) {
                // Bounded: what the queues hold, 8 MiB of stamps at most.
                let _ = fs.sender.read_stamps(1 << 20, |_, _| {});
            }
        }
        resolution = Some(r.totals);
        seed = r.rtt;
        resolve_interrupted = r.interrupted;
        r.neighbours
    } else {
        Neighbours::kernel_only()
    };
    // The cookie key is secret and fresh per run (replies cannot be forged); only the
    // order is reproducible.
    let cookie = Cookie::new(
        u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()),
        u64::from(random::random_u32()) << 32 | u64::from(random::random_u32()),
    );
    let receiving = AtomicBool::new(true);
    // Wakes the receiver from its poll the moment the sender is done (else it would
    // notice only at its next timeout).
    let (wake_tx, wake_rx) =
        std::os::unix::net::UnixDatagram::pair().context("making the receiver's wake-up socket")?;
    let unmatched = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Answer>();
    let horizon = match plan.wait {
        Wait::Fixed(w) => w * 2 + Duration::from_secs(2),
        Wait::Adaptive => rtt::CEILING * 2,
    };
    let mut sides: [Option<Side>; 2] = [None, None];
    let mut taps = Vec::new();
    let mut rst: [Option<(RawSender, Option<FrameSender>)>; 2] = [None, None];
    for (i, f) in families.into_iter().enumerate() {
        if let Some(f) = f {
            sides[i] = Some(f.side);
            taps.push((f.tap, f.only));
            if let Some(t) = f.loopback_tap {
                taps.push((t, f.only));
            }
            rst[i] = Some((f.rst_raw, f.rst_frames));
        }
    }

    let outcome = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            receive(
                &mut taps,
                &wake_rx,
                &mut rst,
                &neighbours,
                &cookie,
                plan.retries,
                horizon,
                &receiving,
                &unmatched,
                tx,
            )
        });
        let sent = if resolve_interrupted {
            Ok(None)
        } else {
            send_all_syns(
                plan,
                &mut sides,
                &neighbours,
                seed,
                &cookie,
                &locals,
                horizon,
                stop,
                &rx,
                &unmatched,
                &mut on_record,
                &mut on_progress,
            )
            .map(Some)
        };
        receiving.store(false, Ordering::Relaxed);
        let _ = wake_tx.send(&[1]);
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiver thread panicked")));
        let tap_drops = received?;
        let Some(mut run) = sent? else {
            return Ok::<_, anyhow::Error>(ScanOutcome {
                totals: ScanTotals::default(),
                started,
                send_time: Duration::ZERO,
                duration: clock::now().saturating_since(started),
                interrupted: true,
                interrupted_in_retries: false,
                locals,
                walked: 0,
                neighbours: Neighbours::kernel_only(),
                resolution,
                send_log,
                tap_drops,
                rtt: seed,
                paths,
                refused: Vec::new(),
            });
        };
        // Whatever the receiver passed on before it stopped.
        while let Ok(a) = rx.try_recv() {
            take_timed(a, &mut run, &mut sides, &locals, &mut on_record)?;
        }
        let s = &mut run.schedule;
        s.set_unmatched(unmatched.load(Ordering::Relaxed));
        // Rounds slowed on purpose (a path that limits its answers) are left out: the
        // check asks whether this host sent at --rate when it was asked to.
        let (slowed_sent, slowed_time) = s.slowed_send();
        let send_time = s.send_time().saturating_sub(slowed_time);
        send_log.add(&SendLog {
            sent: s.totals().sent.saturating_sub(slowed_sent),
            send_time,
            busy: run.cpu.min(send_time),
            preempted: run.preempted.min(send_time),
            blocked: run.acc.blocked.min(send_time),
            full: run.acc.full,
        });
        Ok(ScanOutcome {
            totals: s.totals(),
            started,
            send_time: s.send_time(),
            duration: clock::now().saturating_since(started),
            interrupted: s.interrupted(),
            interrupted_in_retries: s.interrupted_in_retries(),
            locals,
            walked: s.walked(),
            neighbours: Neighbours::kernel_only(),
            resolution,
            send_log,
            tap_drops,
            rtt: s.rtt(),
            paths,
            refused: std::mem::take(&mut run.refused),
        })
    });
    for p in guarded {
        let _ = guard.release_port(p);
    }
    closing.push(Box::new(guard));
    closing.push(Box::new(reservations));
    closing.extend(taps.into_iter().map(|t| Box::new(t) as Box<dyn Send>));
    closing.extend(
        sides
            .into_iter()
            .flatten()
            .map(|s| Box::new(s) as Box<dyn Send>),
    );
    closing.extend(
        rst.into_iter()
            .flatten()
            .map(|r| Box::new(r) as Box<dyn Send>),
    );
    // The guard's table goes with them (its deletion commits through RCU too).
    super::teardown::close_together(closing);
    outcome.map(|mut o| {
        o.neighbours = neighbours;
        o
    })
}

/// The targets nothing can be sent to (no route, a prohibit or blackhole route), for the
/// caller to name and leave out before [`run`] (`TargetSet::leave_out`): nmap skips such a
/// host (`failed to determine route`) and scans the others; stopping at the first (which
/// also chose each family's route) lost them all, and one further on read filtered.
///
/// One `ip route get` per stretch of address space every route prefix leaves alike
/// (`unroutable::cells`), not per address: a /16 with no route costs one lookup and a dump
/// of the routes, a single address one lookup. Lookups that fail otherwise (no source
/// address…) are left to the scan's own, as before.
pub fn unroutable(targets: &tcpshake_proto::probe::scan::targets::TargetSet) -> Result<Unroutable> {
    let mut out = Unroutable::default();
    let mut router = route::Router::new()?;
    for v6 in [false, true] {
        let one = targets
            .bounds()
            .filter(|b| b.2 == v6)
            .take(2)
            .collect::<Vec<_>>();
        let cells = match one.as_slice() {
            [] => continue,
            // One address: its own lookup is all it needs (no dump: the spec its own cell).
            [(lo, hi, _)] if lo == hi => unroutable::cells(targets, v6, &[], unroutable::MAX_CELLS),
            _ => match neighbour::route_prefixes(v6) {
                Ok(p) => unroutable::cells(targets, v6, &p, unroutable::MAX_CELLS),
                // A table too big to read whole (a full BGP table is past the netlink
                // reader's bound; the check must not cost the scan: review): single
                // addresses are looked up one by one, ranges left to the kernel's
                // refusals at the send.
                Err(_) => Some(
                    targets
                        .bounds()
                        .filter(|b| b.2 == v6 && b.0 == b.1)
                        .take(unroutable::MAX_CELLS)
                        .map(|(at, _, _)| (at, at, at))
                        .collect(),
                ),
            },
        };
        let Some(cells) = cells else {
            continue; // too many to look up: the kernel's refusals find them
        };
        for (lo, hi, at) in cells {
            let Some(addr) = unroutable::addr_of(at, v6) else {
                continue;
            };
            if let Err(e) = router.lookup(addr)
                && let Some(n) = e.downcast_ref::<route::NoPathTo>()
            {
                out.add(lo, hi, v6, n.why);
            }
        }
    }
    Ok(out)
}

/// A target of family `v6` that is one of this host's own addresses, if any (by the
/// targets' bounds: a spec that reaches into a local prefix).
fn own_target(plan: &ScanPlan, v6: bool, local: &[Prefix]) -> Option<IpAddr> {
    plan.targets
        .bounds()
        .filter(|b| b.2 == v6)
        .flat_map(|(lo, hi, _)| local.iter().map(move |p| (lo, hi, *p)))
        .find_map(|(lo, hi, p)| {
            let (plo, phi) = p.bounds();
            let a = lo.max(plo);
            (a <= hi.min(phi)).then(|| {
                if v6 {
                    IpAddr::V6(std::net::Ipv6Addr::from(a))
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::from(a as u32))
                }
            })
        })
}

/// The frame path for a family whose first target routes as `r` says, with the routes
/// resolution needs; `None` for the kernel's path.
#[allow(clippy::type_complexity)]
fn frame_path(
    plan: &ScanPlan,
    r: &route::Route,
    first: IpAddr,
) -> Result<(
    Option<FrameSide>,
    Option<(
        tcpshake_proto::probe::scan::neighbours::LinkRoutes,
        u32,
        String,
    )>,
)> {
    let Some(mac) = r.mac.filter(|_| !plan.send_ip && !r.is_loopback) else {
        return Ok((None, None));
    };
    let Ok(routes) = neighbour::link_routes(r.oif, r.src, mac) else {
        return Ok((None, None));
    };
    // Our reading of the routes must agree with the kernel's lookup for the first target
    // (policy routing, which we do not model, could send it elsewhere): else the kernel
    // keeps the family.
    let agrees = match (routes.classify(first), r.gateway) {
        (Class::OnLink, None) => true,
        (Class::Gateway(g), Some(k)) => g == k,
        (Class::Kernel, _) => true,
        _ => false,
    };
    if !agrees {
        return Ok((None, None));
    }
    let mut stamps = link::tx_software_stamps(&r.ifname);
    let mode = if stamps {
        Mode::SendmmsgBypass
    } else {
        Mode::Sendmmsg
    };
    // A second sender on a thread of its own, when sending is what bounds the scan.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let open = match rate::second_sender(plan.rate, plan.planned(), cpus) {
        true => FrameSender::open_twinned,
        false => FrameSender::open,
    };
    let mut sender = open(r.oif, mode, MARK)?;
    if stamps && !sender.enable_tx_stamps() {
        // Without stamps the frames must pass the tap: no bypass.
        drop(sender);
        sender = open(r.oif, Mode::Sendmmsg, MARK)?;
        stamps = false;
    }
    Ok((
        Some(FrameSide {
            sender,
            mac,
            stamps,
            batch: Batch::new(),
        }),
        Some((routes, r.oif, r.ifname.clone())),
    ))
}

/// The sender's state while the schedule runs.
struct SendRun<'p> {
    schedule: Schedule<'p>,
    tx_times: TxTimes,
    acc: Accounting,
    /// The thread's time on a CPU, and waiting for one, while sending.
    cpu: Duration,
    preempted: Duration,
    /// Hosts the kernel refused to send to, each once, and why.
    refused: Vec<(IpAddr, NoPath)>,
}

impl SendRun<'_> {
    /// One answer into the schedule, timed from the transmit stamps when the tap did not
    /// time it, and out as a record unless it repeats one.
    fn take(
        &mut self,
        a: Answer,
        on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
    ) -> Result<()> {
        let r = &a.reply;
        let rtt = a.rtt.or_else(|| {
            self.tx_times
                .rtt(&(r.remote.ip(), r.remote.port(), r.syn_seq.0), a.at)
        });
        match self.schedule.answer(&a.reply, a.at, rtt) {
            Some(rec) => on_record(&rec),
            None => Ok(()),
        }
    }
}

/// The sending thread: does what the pure [`Schedule`] asks (builds, batches and sends
/// SYNs, and a retry's RST), reads transmit stamps, takes the receiver's answers whenever
/// it waits, and reports progress.
#[allow(clippy::too_many_arguments)]
fn send_all_syns<'p>(
    plan: &'p ScanPlan,
    sides: &mut [Option<Side>; 2],
    neighbours: &'p Neighbours,
    seed: RttEstimator,
    cookie: &Cookie,
    locals: &Locals,
    horizon: Duration,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    unmatched: &AtomicU64,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<SendRun<'p>> {
    let families = [sides[0].is_some(), sides[1].is_some()];
    let schedule = Schedule::new(plan, families, clock::now())
        .skip_down(neighbours)
        .seed_rtt(seed);
    let mut run = SendRun {
        schedule,
        tx_times: TxTimes::new(horizon, plan.planned().min(TX_TIMES_RESERVE) as usize),
        acc: Accounting::default(),
        cpu: Duration::ZERO,
        preempted: Duration::ZERO,
        refused: Vec::new(),
    };
    let sched0 = clock::thread_sched();
    let mut next_progress = run.schedule.started();
    let mut last_hop: Option<(IpAddr, NextHop)> = None;
    // Bounded by the schedule: it ends once the walk, the retry rounds and the drain are
    // through, and a stop cuts everything but the drain.
    loop {
        let now = clock::now();
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            run.schedule
                .set_unmatched(unmatched.load(Ordering::Relaxed));
            on_progress(&run.schedule.progress());
        }
        match run.schedule.poll(now, stop.load(Ordering::Relaxed)) {
            Step::Send(p) => {
                let side = sides[usize::from(p.remote.is_ipv6())]
                    .as_mut()
                    .context("no sender for this family")?;
                // A host's ports come one after another in a full-port scan: look its
                // next hop up once.
                let hop = match last_hop {
                    Some((a, h)) if a == p.remote.ip() => h,
                    _ => {
                        let h = neighbours.next_hop(p.remote.ip());
                        last_hop = Some((p.remote.ip(), h));
                        h
                    }
                };
                if p.reset_previous {
                    let prev = cookie.seq(side.local, p.remote, p.attempt - 1).add(1);
                    side.push(hop, p.remote, prev, false, false)?;
                }
                let seq = cookie.seq(side.local, p.remote, p.attempt);
                side.push(hop, p.remote, seq, true, p.attempt == 0 && !p.ping)?;
                if side.room() < 2 {
                    flush_side(side, &mut run, locals)?;
                    drain(rx, &mut run, sides, locals, on_record)?;
                }
            }
            Step::Wait(until) => {
                // Send what is batched, then take answers until it is time again.
                for s in sides.iter_mut().flatten() {
                    flush_side(s, &mut run, locals)?;
                }
                if drain(rx, &mut run, sides, locals, on_record)? > 0 {
                    continue; // the schedule may be done now: ask before sleeping
                }
                run.tx_times.expire(clock::now());
                let until = until.min(clock::now() + PROGRESS_EVERY);
                if until.saturating_since(clock::now()) >= Duration::from_micros(200) {
                    wait_draining(until, stop, rx, &mut run, sides, locals, on_record)?;
                } else {
                    std::thread::yield_now();
                }
            }
            Step::Done => break,
        }
    }
    for s in sides.iter_mut().flatten() {
        flush_side(s, &mut run, locals)?;
        if let Some(f) = &mut s.frames {
            let _ = f.sender.drain(Duration::from_millis(100));
        }
        // Every SYN has left: its stamp is waiting, for the answers taken after this.
        read_stamps(s, &mut run, locals, STAMPS_BEFORE_ANSWERS)?;
    }
    if let (Some((run0, wait0)), Some((run1, wait1))) = (sched0, clock::thread_sched()) {
        run.cpu = run1.saturating_sub(run0);
        run.preempted = wait1.saturating_sub(wait0);
    }
    Ok(run)
}

/// Why the kernel refused a packet to `dst` with `errno`, as the check before the scan
/// would have said it (a review: a prohibit route's EACCES read `filtered`, a blackhole's
/// EINVAL stopped the whole scan); `None` for a subnet's broadcast address (EACCES without
/// SO_BROADCAST), which is that packet's alone, as before.
fn no_path_of(errno: i32, dst: IpAddr) -> Option<NoPath> {
    match errno {
        libc::ENETUNREACH | libc::EHOSTUNREACH => Some(NoPath::NoRoute),
        libc::EINVAL => Some(NoPath::Blackhole),
        // Rare (a refusal), so a route lookup to tell the two apart costs nothing.
        _ => match route::lookup(dst) {
            Err(e) => Some(
                e.downcast_ref::<route::NoPathTo>()
                    .map_or(NoPath::Prohibited, |n| n.why),
            ),
            Ok(r) if r.is_broadcast() => None,
            Ok(_) => Some(NoPath::Prohibited),
        },
    }
}

/// Send a side's batches, tell the schedule, and read the transmit stamps they made.
fn flush_side(side: &mut Side, run: &mut SendRun<'_>, locals: &Locals) -> Result<()> {
    // Wall time in the send calls beyond the CPU they used is time the kernel made us
    // wait (a blocking socket whose buffer is full: packets held in neighbour resolution
    // queues, a slow device), which the rate check must see.
    let (wall0, cpu0, sw0) = (clock::now(), clock::thread_cpu(), voluntary_switches());
    let n = side.flush(&mut run.acc)?;
    for (remote, first, errno) in side.refused.drain(..) {
        let Some(why) = no_path_of(errno, remote.ip()) else {
            continue;
        };
        if run.schedule.refused(remote, first) {
            run.refused.push((remote.ip(), why));
        }
    }
    // Only a call that slept (a voluntary context switch) was held back: the rest of the
    // wall time beyond our CPU time is the kernel's softirq work done in our send calls —
    // on a veth, the peer's whole receive path — which is the send path's own cost.
    if voluntary_switches() > sw0 {
        let wall = clock::now().saturating_since(wall0);
        let cpu = clock::thread_cpu().saturating_sub(cpu0);
        run.acc.blocked += wall.saturating_sub(cpu);
    }
    run.schedule.sent(n, clock::now());
    read_stamps(side, run, locals, 4 * BATCH)
}

/// The calling thread's voluntary context switches so far (`getrusage(RUSAGE_THREAD)`).
fn voluntary_switches() -> i64 {
    // SAFETY: rusage is plain data; zeroed is valid, and getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to write into.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw
}

/// Up to `max` transmit stamps off the side's error queues into the run's send times.
fn read_stamps(side: &mut Side, run: &mut SendRun<'_>, locals: &Locals, max: usize) -> Result<()> {
    if let Some(f) = side.frames.as_mut().filter(|f| f.stamps) {
        let times = &mut run.tx_times;
        f.sender
            .read_stamps(max, |frame, at| {
                if let Some(key) = syn_of_frame(frame, locals) {
                    times.insert(key, at);
                }
            })
            .context("reading transmit timestamps")?;
    }
    Ok(())
}

/// Transmit stamps read when an answer's SYN has none yet: every stamp waiting, up to
/// this many per socket.
const STAMPS_BEFORE_ANSWERS: usize = 1 << 16;

/// One answer into the run, its SYN's transmit stamp read first if it is not yet. A SYN's
/// stamp is queued when the driver takes it, before its answer can exist; but on a
/// twinned sender (link.rs) the other thread may have sent thousands of frames since this
/// one last read its stamps, the answered SYN among them.
fn take_timed(
    a: Answer,
    run: &mut SendRun<'_>,
    sides: &mut [Option<Side>; 2],
    locals: &Locals,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    let key = (
        a.reply.remote.ip(),
        a.reply.remote.port(),
        a.reply.syn_seq.0,
    );
    if a.rtt.is_none() && run.tx_times.rtt(&key, a.at).is_none() {
        for s in sides.iter_mut().flatten() {
            read_stamps(s, run, locals, STAMPS_BEFORE_ANSWERS)?;
        }
    }
    run.take(a, on_record)
}

/// Take the answers waiting in the channel; how many.
fn drain(
    rx: &mpsc::Receiver<Answer>,
    run: &mut SendRun<'_>,
    sides: &mut [Option<Side>; 2],
    locals: &Locals,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<usize> {
    // Bounded per call; the rest waits for the next call.
    for n in 0..100_000 {
        match rx.try_recv() {
            Ok(a) => take_timed(a, run, sides, locals, on_record)?,
            Err(_) => return Ok(n),
        }
    }
    Ok(100_000)
}

/// Take answers until `until`, or until a stop request the schedule has not seen yet (it
/// decides what a stop means: after it, only the drain is left, which a stop does not cut).
fn wait_draining(
    until: Instant,
    stop: &AtomicBool,
    rx: &mpsc::Receiver<Answer>,
    run: &mut SendRun<'_>,
    sides: &mut [Option<Side>; 2],
    locals: &Locals,
    on_record: &mut impl FnMut(&ScanRecord) -> Result<()>,
) -> Result<()> {
    loop {
        let now = clock::now();
        if now >= until || (stop.load(Ordering::Relaxed) && !run.schedule.interrupted()) {
            return Ok(());
        }
        let d = until.saturating_since(now).min(Duration::from_millis(20));
        match rx.recv_timeout(d) {
            Ok(a) => {
                take_timed(a, run, sides, locals, on_record)?;
                // The schedule may be done now (every pair answered): let it say so.
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(d);
            }
        }
    }
}

/// While a packet came within `BUSY`, the receiver naps `NAP` between passes over an
/// empty tap instead of waiting in poll (see `receive`).
const BUSY: Duration = Duration::from_millis(5);
const NAP: Duration = Duration::from_micros(200);
/// After the sender is done, how long the receiver goes on reading taps that are never
/// empty: what the rings held then takes a few ms at most (~100 ms of replies at 300 kpps
/// fill one); packets that keep coming past it (a flood, a replay) are the scan's no more.
const LAST_READ_MAX: Duration = Duration::from_millis(200);

/// The receiver's ways to send a RST, per family.
type RstSenders = [Option<(RawSender, Option<FrameSender>)>; 2];

/// The receiver thread: read the taps until the sender says stop, then once more until
/// they are empty. Returns what the taps dropped.
#[allow(clippy::too_many_arguments)]
fn receive(
    taps: &mut [(Tap, Locals)],
    wake: &std::os::unix::net::UnixDatagram,
    rst: &mut RstSenders,
    neighbours: &Neighbours,
    cookie: &Cookie,
    retries: u8,
    horizon: Duration,
    receiving: &AtomicBool,
    unmatched: &AtomicU64,
    tx: mpsc::Sender<Answer>,
) -> Result<u64> {
    // A receiver kept off the CPU (other work on the machine) lets the capture fill and
    // drop replies: it runs at the lowest real-time priority, which ordinary work cannot
    // preempt, when there is a second CPU for the sender (lib.rs `set_realtime`; without
    // CAP_SYS_NICE this does nothing). It sleeps in poll whenever the taps are empty.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        super::set_realtime();
    }
    let mut tx_times = TxTimes::new(horizon, 0);
    let mut buf = vec![0u8; 65536];
    let mut pkt = [0u8; FRAME_ROOM];
    let mut rst_ident: u16 = random::random_u32() as u16;
    // Set when the sender is done: the taps are read until a pass finds them empty, or
    // until this time at the latest (a flood that never lets up must not hold the scan's
    // end, nor Ctrl-C, without end).
    let mut last_round: Option<Instant> = None;
    let mut last_packet = clock::now();
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
                    // Only a copy leaving this host is our SYN: a frame from the link with
                    // our address as its source is someone else's, and must not set (or
                    // flood) the table of send times. On the loopback, whose tap hands out
                    // the arriving copy only (tap.rs), a packet from our reserved port is
                    // ours: nothing off this host reaches lo. (Stamped on arrival, as a
                    // probe on lo times its SYN: within a µs of its leaving.)
                    Seen::OurSyn { remote, seq } if meta.outgoing || tap.is_loopback() => {
                        tx_times.insert((remote.ip(), remote.port(), seq.0), meta.at);
                    }
                    Seen::OurSyn { .. } => {}
                    Seen::Reply(reply) => {
                        let remote = reply.remote;
                        if let Some(seq) = reply.rst_seq
                            && let Some(local) = if remote.is_ipv6() {
                                locals.v6
                            } else {
                                locals.v4
                            }
                            && let Some((raw, frames)) = &mut rst[usize::from(remote.is_ipv6())]
                        {
                            rst_ident = rst_ident.wrapping_add(1);
                            // Best effort: the target times its half-open connection out
                            // anyway (RFC 9293 §3.8.1). To the MAC the SYN went to.
                            match (neighbours.next_hop(remote.ip()), frames) {
                                (NextHop::Mac(dst), Some(f)) => {
                                    let macs =
                                        neighbours.routes(remote.is_ipv6()).map(|l| (l.mac, dst));
                                    if let Some(macs) = macs
                                        && let Ok(n) = build_rst_frame(
                                            macs, local, remote, seq, rst_ident, &mut pkt,
                                        )
                                    {
                                        let _ = f.send_batch(&[&pkt[..n]]);
                                    }
                                }
                                _ => {
                                    if let Ok(n) =
                                        build_rst(local, remote, seq, rst_ident, &mut pkt)
                                    {
                                        let _ = raw.send(&pkt[..n], remote.ip());
                                    }
                                }
                            }
                        }
                        let rtt =
                            tx_times.rtt(&(remote.ip(), remote.port(), reply.syn_seq.0), meta.at);
                        if tx
                            .send(Answer {
                                reply,
                                at: meta.at,
                                rtt,
                            })
                            .is_err()
                        {
                            return Ok(drops(taps));
                        }
                    }
                    Seen::Unmatched => {
                        unmatched.fetch_add(1, Ordering::Relaxed);
                    }
                    Seen::Other => {}
                }
            }
        }
        tx_times.expire(clock::now());
        if let Some(until) = last_round
            && (got == 0 || clock::now() >= until)
        {
            return Ok(drops(taps));
        }
        if last_round.is_none() && !receiving.load(Ordering::Relaxed) {
            last_round = Some(clock::now() + LAST_READ_MAX);
            continue;
        }
        if last_round.is_some() {
            continue;
        }
        if got > 0 {
            last_packet = clock::now();
        } else if clock::now().saturating_since(last_packet) < BUSY {
            // Replies are flowing: nap instead of polling. In poll, every packet the
            // kernel puts in the ring wakes this thread (a wake-up per reply, most of
            // the receiver's CPU at a few hundred thousand replies a second); a nap
            // lets a few hundred gather and takes them in one pass. The ring holds
            // ~100 ms of them.
            std::thread::sleep(NAP);
        } else {
            poll_any(taps, wake, Duration::from_millis(10))?;
        }
    }
}

/// The taps' drops so far (PACKET_STATISTICS).
fn drops(taps: &mut [(Tap, Locals)]) -> u64 {
    taps.iter_mut().map(|(t, _)| t.losses().dropped).sum()
}

/// Sleep until one of the taps has a packet, `wake` is written to, or `timeout` passes.
fn poll_any(
    taps: &[(Tap, Locals)],
    wake: &std::os::unix::net::UnixDatagram,
    timeout: Duration,
) -> Result<()> {
    let mut fds: Vec<_> = taps.iter().map(|(t, _)| t.as_fd()).collect();
    fds.push(wake.as_fd());
    super::poll::wait_readable(&fds, Some(timeout)).context("polling the taps")?;
    Ok(())
}

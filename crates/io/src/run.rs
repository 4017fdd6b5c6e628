//! The run loop for one probe: route, reserve a port, guard it, open the tap and the raw
//! sender, then shuttle between the sans-IO [`Probe`] and the wire until it is done.

use super::guard::{Guard, MARK};
use super::ports::PortReservation;
use super::route;
use super::sender::RawSender;
use super::tap::{PACKET_ROOM, Tap, TapMeta};
use super::{EnvironmentError, clock};
use anyhow::{Context, Result};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tcpshake_proto::probe::record::ProbeResult;
use tcpshake_proto::probe::spin::{SpinPolicy, Spinner, Wait};
use tcpshake_proto::probe::{LocalRefusal, PacketNote, Probe, ProbeConfig};
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::IpRepr;
use tcpshake_proto::wire::defrag::{Defrag, Defragged, Discard};
use tcpshake_proto::wire::ip::PROTO_TCP;

/// Longest single sleep, so Ctrl-C is noticed promptly.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);

/// A packet as the tap saw it, kept for `--pcap` / `--pcapng`.
pub struct Captured {
    pub at: Instant,
    pub bytes: Vec<u8>,
    /// What the probe made of it when it handled it ([`Capture::Annotated`]); None for an
    /// IP fragment that did not complete its datagram (the one that did carries the note).
    pub note: Option<PacketNote>,
}

/// What a run keeps of the packets that belonged to its probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Capture {
    #[default]
    Off,
    /// The packets (for a pcap file).
    Packets,
    /// The packets, each with the probe's note (for a pcapng file's comments).
    Annotated,
}

impl Capture {
    pub fn is_on(self) -> bool {
        self != Capture::Off
    }

    /// The note for the packet `probe` just handled, when notes are kept.
    pub(crate) fn note(self, probe: &Probe) -> Option<PacketNote> {
        (self == Capture::Annotated).then(|| probe.packet_note())
    }

    /// Keep a datagram that arrived in fragments as its fragments, each with its own
    /// stamp (as tcpdump shows them); the one that completed it (stamped `at`) carries the
    /// note of the machine that handled it.
    pub(crate) fn fragments(
        self,
        fed: &impl Fed,
        at: Instant,
        originals: impl IntoIterator<Item = (Instant, Vec<u8>)>,
        packets: &mut Vec<Captured>,
    ) {
        let start = packets.len();
        packets.extend(originals.into_iter().map(|(at, bytes)| Captured {
            at,
            bytes,
            note: None,
        }));
        if let Some(last) = packets[start..].iter_mut().rev().find(|c| c.at == at) {
            last.note = (self == Capture::Annotated).then(|| fed.note());
        }
    }
}

/// A pure machine the tap feeds (a probe, a trace): one whole packet or reassembled
/// datagram in, whether it was the machine's, and the capture note for what it just
/// handled.
pub(crate) trait Fed {
    fn packet(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        offloaded: bool,
        fragments: u16,
    ) -> bool;
    fn note(&self) -> PacketNote;
    /// Whether fragments from `src` may be part of what this machine hears (a probe hears
    /// only its server); the others never take a reassembly slot.
    fn fragments_from(&self, _src: std::net::IpAddr) -> bool {
        true
    }
    /// The reassembler dropped a fragment this machine hears, at `at`.
    fn fragment_dropped(&mut self, _at: Instant, _why: Discard) {}
    /// Whether the fragments `fragments_from` takes go into the capture as they arrive —
    /// also a copy, and those of a datagram that never completes — rather than with their
    /// datagram once it is whole and found to be this machine's.
    fn captures_fragments_as_they_come(&self) -> bool {
        false
    }
}

impl Fed for Probe {
    fn packet(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        offloaded: bool,
        fragments: u16,
    ) -> bool {
        self.handle_datagram(at, outgoing, bytes, offloaded, fragments)
    }

    fn note(&self) -> PacketNote {
        self.packet_note()
    }

    fn fragments_from(&self, src: std::net::IpAddr) -> bool {
        src == self.remote().ip()
    }

    fn fragment_dropped(&mut self, at: Instant, why: Discard) {
        Probe::fragment_dropped(self, at, why);
    }

    /// A probe hears fragments from its server only, and each is a packet of its exchange
    /// as tcpdump shows it: a copy the path made, or the pieces of a datagram that never
    /// completed (a lost fragment, an overlap Linux refuses) — which the capture left out
    /// when it kept fragments only with a datagram that completed. In arrival order too:
    /// kept with their datagram, they were written after packets that came between them.
    fn captures_fragments_as_they_come(&self) -> bool {
        true
    }
}

/// Where a single probe's packets go (with its [`Capture`] on), as the tap shows them:
/// handed over as they come — after the answer to them has left — so a flood costs the
/// capture files their size and the process nothing.
pub type CaptureSink<'a> = &'a mut dyn FnMut(Captured);

pub struct Outcome {
    pub result: ProbeResult,
}

/// Where a probe to `remote` leaves from, decided before anything is sent.
pub struct Path {
    pub local: SocketAddr,
    pub route: route::Route,
    /// None only for a privileged port asked for (`PortReservation::chosen`).
    reservation: Option<PortReservation>,
}

impl Path {
    /// Look up the route like the kernel would and reserve a source port on its address.
    pub fn new(remote: SocketAddr, src: Option<IpAddr>) -> Result<Path> {
        route::connectable_address(remote.ip())?;
        let route = route::lookup_from(remote.ip(), src)?;
        route.connectable(remote.ip())?;
        let reservation = PortReservation::new()?;
        let local = SocketAddr::new(route.src, reservation.port);
        let reservation = Some(reservation);
        Ok(Path {
            local,
            route,
            reservation,
        })
    }

    /// The same from a source port of the caller's choosing (it must be free).
    pub fn with_port(remote: SocketAddr, src: Option<IpAddr>, port: u16) -> Result<Path> {
        route::connectable_address(remote.ip())?;
        let route = route::lookup_from(remote.ip(), src)?;
        route.connectable(remote.ip())?;
        let reservation = PortReservation::chosen(port)?;
        let local = SocketAddr::new(route.src, port);
        Ok(Path {
            local,
            route,
            reservation,
        })
    }

    /// Give the port back (the caller is done with it).
    pub fn release(self) {
        drop(self.reservation);
    }

    /// MSS to advertise ([`Route::mss`](super::route::Route::mss)).
    pub fn mss(&self) -> u16 {
        self.route.mss(self.local.is_ipv6())
    }
}

/// Run one probe to completion (or until `stop` is set, then reset it and return); with
/// `capture` on, each of its packets goes to `sink`.
pub fn run(
    path: Path,
    cfg: ProbeConfig,
    guard: &mut Guard,
    capture: Capture,
    sink: CaptureSink<'_>,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let local = path.local;
    let remote = cfg.tcp.remote;
    guard.protect_port(local.port())?;
    let outcome = run_guarded(&path, cfg, capture, sink, stop);
    // The port stays guarded until the loop is over (TIME-WAIT included).
    let _ = guard.release_port(local.port());
    drop(path.reservation);
    outcome.with_context(|| format!("probe {local} → {remote}"))
}

fn run_guarded(
    path: &Path,
    cfg: ProbeConfig,
    capture: Capture,
    sink: CaptureSink<'_>,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let (local, remote) = (path.local, cfg.tcp.remote);
    let mut tap = open_tap(
        path.route.oif,
        &path.route.ifname,
        local.port(),
        path.route.is_loopback,
        cfg.tcp.rcv_buf,
    )?;
    // A tap kept from an earlier probe has counted that probe's losses.
    let lost_before = tap.losses().total();
    let sender = RawSender::new(local.ip(), MARK)?;
    let hard_limit = cfg.hard_limit();
    let mut tx = vec![0u8; 65536 + 60];
    let mut ident: u16 = 1;
    let mut probe = Probe::new(cfg.clone());
    // The captured packets of one batch, handed to `sink` once it is answered.
    let mut packets = Vec::new();
    // Arriving fragments wait here until their datagram is whole (wire/defrag.rs); a
    // capture takes them as they come (`Fed::captures_fragments_as_they_come`), so the
    // reassembler need not keep them.
    let mut defrag = Defrag::new(false);
    let mut rx = vec![vec![0u8; PACKET_ROOM]; super::tap::BATCH];
    let mut batch = Vec::with_capacity(super::tap::BATCH);

    super::lock_memory();
    // Until the SYN-ACK is answered, nothing of the peer's needs a CPU (its kernel
    // answers a SYN in softirq), so we may hold one at real-time priority; afterwards its
    // application (nginx reading our request) may need ours, and we spin politely.
    // Last before the SYN: locking memory walked through enough to push the handshake's
    // code out of the caches.
    Probe::rehearse(&cfg, |seg| {
        let _ = build_segment(seg, sender.is_v6(), &mut tx, &mut ident, local, remote);
    });
    tap.recv_batch(&mut rx, &mut batch)
        .context("reading the AF_PACKET tap")?;
    drop(cfg);
    // Taken after the rehearsal, just before the SYN: the CPU is held for the exchange,
    // not for the warm-up. Taken before it, the rehearsal counted into every real-time
    // hold: beside a pinned sleeper (`bench-probe --wakeup-only`, open
    // port) the holds it waited on went from median 97-113 µs (>100 µs: 475-546 of
    // ~950) to 73-88 µs (158-378), max 269-469 → 206-292 µs; SYN-ACK → ACK 7.7 µs before,
    // 8.4 µs after, one run each (runs differ by more).
    let mut realtime = Some(super::Realtime::enter());
    let start = clock::now();
    let give_up_at = start + hard_limit;
    probe.start(start);
    let mut last_tx =
        flush(&mut probe, &sender, &mut tx, &mut ident, local, remote)?.unwrap_or(start);
    let mut interrupted = false;
    let mut spinner = Spinner::new(SpinPolicy::default());
    // The CPU has been held since the priority was taken, just before the SYN: the SYN's
    // send counts.
    spinner.held_since(start);

    while !probe.is_done() {
        // Everything the tap holds (one recvmmsg), then one answer to all of it: a FIN that
        // arrived right behind the data is ACKed once, not twice.
        let received = read_batch(&mut tap, &mut rx, &mut batch, |meta, bytes| {
            deliver(&mut probe, &mut defrag, meta, bytes, capture, &mut packets)
        })?;
        if received && let Some(t) = flush(&mut probe, &sender, &mut tx, &mut ident, local, remote)?
        {
            last_tx = t;
        }
        packets.drain(..).for_each(&mut *sink);
        if !probe.awaiting_synack() {
            realtime = None;
        }
        if probe.is_done() {
            break;
        }
        let now = clock::now();
        if !interrupted && stop.load(Ordering::Relaxed) {
            interrupted = true;
            probe.interrupt(now);
        } else if now >= give_up_at {
            probe.abort(now, "gave up: the exchange exceeded its time budget");
        } else if probe.poll_timeout().is_some_and(|d| now >= d) {
            probe.handle_timeout(now);
        } else {
            // Spin a while after a transmit, bounded (probe::spin): at real-time priority
            // for at most 100 µs, then asleep (a packet wakes us at once); politely for up
            // to 3 ms, in slices of 100 µs with a short sleep between them.
            let rt = realtime.as_ref().is_some_and(|r| r.active());
            match spinner.next(now, last_tx, rt) {
                Wait::Spin if rt => std::hint::spin_loop(),
                // Let anything runnable on this CPU (the peer's application) go first.
                Wait::Spin => std::thread::yield_now(),
                Wait::HandOver(d) => {
                    tap.wait(Some(d))?;
                }
                Wait::Sleep => {
                    let until = probe.poll_timeout().unwrap_or(give_up_at).min(give_up_at);
                    tap.wait(Some(until.saturating_since(now).min(MAX_SLEEP)))?;
                }
            }
            continue;
        }
        if let Some(t) = flush(&mut probe, &sender, &mut tx, &mut ident, local, remote)? {
            last_tx = t;
        }
    }

    // A probe that ended without a SYN-ACK (filtered) still holds real-time priority: the
    // drain below needs none.
    drop(realtime);
    // Reset with data in flight: the server may answer with a challenge ACK, which the
    // closed connection answers with a RST at its ACK (`Probe::challenge_wait`).
    if let Some(w) = probe.challenge_wait() {
        let until = clock::now() + w;
        // Bounded by `until`.
        while clock::now() < until {
            let received = read_batch(&mut tap, &mut rx, &mut batch, |meta, bytes| {
                deliver(&mut probe, &mut defrag, meta, bytes, capture, &mut packets)
            })?;
            packets.drain(..).for_each(&mut *sink);
            if received && flush(&mut probe, &sender, &mut tx, &mut ident, local, remote)?.is_some()
            {
                break; // answered: the server's side is closed
            }
            tap.wait(Some(until.saturating_since(clock::now())))?;
        }
    }
    // Our last segment's copy (and a loopback's arrival copy) may still be on its way.
    drain_tap(&mut tap, &mut rx[0], |meta, bytes| {
        deliver(&mut probe, &mut defrag, meta, bytes, capture, &mut packets);
    })?;
    packets.drain(..).for_each(&mut *sink);
    // What the ring had no room for (or could not give whole) never reached our TCP:
    // the record says so.
    probe.capture_lost(tap.losses().total().saturating_sub(lost_before));
    explain_unsent(&mut probe, &path.route, remote.ip());
    keep_spare(path.route.oif, path.route.is_loopback, tap);
    Ok(Outcome {
        result: probe.into_result(),
    })
}

/// When none of the probe's segments was seen leaving (rare: an on-link target that is
/// down), ask the kernel whether its next hop went unresolved (the packets wait behind
/// ARP / ND and are dropped when it fails), and tell the probe, which says so in the
/// record. One neighbour entry asked per such probe; nothing for the others.
pub(super) fn explain_unsent(probe: &mut Probe, route: &route::Route, dst: IpAddr) {
    if !probe.nothing_seen_leaving() {
        return;
    }
    if let Some(what) = unresolved_next_hop(route, dst) {
        probe.next_hop_unresolved(what);
    }
}

/// Why nothing we sent to `dst` left this host, if the kernel's neighbour table says: the
/// next hop (the gateway, or `dst` itself on link) did not answer ARP / Neighbor
/// Discovery, in words (`198.18.0.9 did not answer ARP on eth0 (down, or not on this
/// link), so the kernel never sent our SYNs`). Every command that finds none of its
/// packets on the tap asks this, so all of them say it alike.
pub(crate) fn unresolved_next_hop(route: &route::Route, dst: IpAddr) -> Option<String> {
    if route.is_loopback {
        return None;
    }
    let hop = route.gateway.unwrap_or(dst);
    let Ok(Some(failed)) = super::neighbour::kernel_unresolved(route.oif, hop) else {
        return None;
    };
    // INCOMPLETE: resolution still running (ARP gives up after ~3 s); the kernel may yet
    // send what it holds. FAILED: it gave up and dropped it.
    let (answer, sent) = if failed {
        ("did not answer", "so the kernel never sent our SYNs")
    } else {
        ("had not answered", "so the kernel held our SYNs")
    };
    let by = if hop.is_ipv6() {
        "Neighbor Discovery"
    } else {
        "ARP"
    };
    Some(if route.gateway.is_some() {
        format!(
            "the gateway {hop} {answer} {by} on {}, {sent}",
            route.ifname
        )
    } else {
        format!(
            "{hop} {answer} {by} on {} (down, or not on this link), {sent}",
            route.ifname
        )
    })
}

/// A probe's tap, kept once the probe is over for the next probe through the same
/// interface ([`Tap::retarget`]): the probes of one command (`tcpshake probe A B C`) then
/// set up one ring, not one each, and close it once ([`wait_closing`]).
static SPARE: Mutex<Option<Spare>> = Mutex::new(None);

struct Spare {
    ifindex: u32,
    loopback: bool,
    tap: Tap,
}

/// A tap for one probe on `port`: the spare one if it taps this interface with this
/// ring's shape, else a new one (the spare then closes). It also listens on this host's
/// other links, where a reply may come back (asymmetric routing); a host with one link
/// gets a tap bound to it alone, as before.
fn open_tap(ifindex: u32, ifname: &str, port: u16, loopback: bool, rcv_buf: u32) -> Result<Tap> {
    let others = route::other_links(ifindex, loopback);
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(Spare {
        ifindex: i,
        loopback: l,
        mut tap,
    }) = spare
    {
        let shape = Some(super::tap::RingShape::for_window(rcv_buf));
        if i == ifindex
            && l == loopback
            && tap.ring_shape() == shape
            && tap.others().cloned().unwrap_or_default() == others
            && tap.retarget(port).is_ok()
        {
            return Ok(tap);
        }
        close_later(tap);
    }
    Tap::open(ifindex, ifname, port, loopback, rcv_buf, &others)
}

/// Keep a probe's tap for the next probe.
fn keep_spare(ifindex: u32, loopback: bool, tap: Tap) {
    let old = SPARE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(Spare {
            ifindex,
            loopback,
            tap,
        });
    if let Some(old) = old {
        close_later(old.tap);
    }
}

/// The tap last handed to [`close_later`], closing.
static CLOSING: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Close a probe's tap off the caller's path. Closing it waits out two RCU grace periods
/// in the kernel, one after the other (its ring, `packet_set_ring`, then the socket,
/// `packet_release`: `synchronize_net` each), 20–30 ms here: time the record's output, the
/// next probe and the guard's own teardown (another grace period) need not wait for. At
/// most one close is pending: the next waits for it, so threads never pile up behind a
/// slow kernel.
pub(crate) fn close_later(tap: Tap) {
    // A one-shot command's taps close after it exits (teardown.rs).
    let Some(tap) = super::teardown::keep(Box::new(tap)) else {
        return;
    };
    let mut slot = CLOSING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(previous) = slot.take() {
        let _ = previous.join();
    }
    // Should no thread start, the closure and the tap in it are dropped here: closed now.
    *slot = std::thread::Builder::new()
        .name("closing tap".into())
        .spawn(move || drop(tap))
        .ok();
}

/// Start closing the spare tap (`SPARE`), so that it closes beside whatever the caller
/// does next (the guard's teardown); [`wait_closing`] waits for it.
pub fn close_spare() {
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(s) = spare {
        close_later(s.tap);
    }
}

/// Close the spare tap and wait until every tap handed to `close_later` is closed. The
/// process would not exit before anyway (a thread in `close(2)` finishes its system call
/// first); this keeps a command's end where its code says.
pub fn wait_closing() {
    close_spare();
    if let Some(h) = CLOSING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        let _ = h.join();
    }
}

/// Everything the tap holds (one `recvmmsg`), each packet to `each`; whether any was the
/// probe's.
fn read_batch(
    tap: &mut Tap,
    rx: &mut [Vec<u8>],
    batch: &mut Vec<(usize, TapMeta)>,
    mut each: impl FnMut(TapMeta, &[u8]) -> bool,
) -> Result<bool> {
    tap.recv_batch(rx, batch)
        .context("reading the AF_PACKET tap")?;
    let mut received = false;
    for &(slot, meta) in batch.iter() {
        received |= each(meta, &rx[slot][..meta.len]);
    }
    Ok(received)
}

/// How long the tap must be quiet after a probe's last segment before its copy is taken as
/// lost, and how long to wait for it at most.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(1);
pub(crate) const DRAIN_MAX: Duration = Duration::from_millis(20);

/// Reads what is still on its way to the tap after the last packet we sent (its copy, a
/// loopback arrival): every packet to `each`, until the tap has been quiet for
/// [`DRAIN_QUIET`], for [`DRAIN_MAX`] at most.
pub(crate) fn drain_tap(
    tap: &mut Tap,
    buf: &mut [u8],
    mut each: impl FnMut(TapMeta, &[u8]),
) -> Result<()> {
    let drain_until = clock::now() + DRAIN_MAX;
    let mut quiet_since = clock::now();
    // Bounded by `drain_until`.
    loop {
        let now = clock::now();
        if now >= drain_until || now.saturating_since(quiet_since) >= DRAIN_QUIET {
            return Ok(());
        }
        match tap.recv(buf)? {
            Some(meta) => {
                each(meta, &buf[..meta.len]);
                quiet_since = clock::now();
            }
            // Nothing here needs a quick answer: sleep (a spin here, even yielding, kept
            // a woken task off this CPU for ~1 ms per probe).
            None => {
                let quiet_end = quiet_since + DRAIN_QUIET;
                tap.wait(Some(quiet_end.min(drain_until).saturating_since(now)))?;
            }
        }
    }
}

/// Hand one packet off the tap to `fed` (a probe, a trace). Arriving packets go through
/// `defrag` first: a fragment is held until its datagram is whole, which then reaches the
/// machine stamped with the completing fragment's arrival, and (for `--pcap`) each fragment
/// is kept as it came, as tcpdump would show it. Returns whether the packet was the
/// machine's.
pub(crate) fn deliver<F: Fed>(
    fed: &mut F,
    defrag: &mut Defrag,
    meta: TapMeta,
    bytes: &[u8],
    capture: Capture,
    packets: &mut Vec<Captured>,
) -> bool {
    let whole = if meta.outgoing {
        Defragged::Whole
    } else {
        defrag.push_from(meta.at, bytes, meta.checksum_offloaded, |src| {
            fed.fragments_from(src)
        })
    };
    // A fragment the reassembler took (from a source the machine hears), as it came.
    let as_they_come = capture.is_on() && !meta.outgoing && fed.captures_fragments_as_they_come();
    let keep_fragment = |fed: &mut F, packets: &mut Vec<Captured>, note: bool| {
        packets.push(Captured {
            at: meta.at,
            bytes: bytes.to_vec(),
            note: (note && capture == Capture::Annotated).then(|| fed.note()),
        });
    };
    match whole {
        Defragged::Whole => {
            let ours = fed.packet(meta.at, meta.outgoing, bytes, meta.checksum_offloaded, 1);
            if capture.is_on() && ours {
                packets.push(Captured {
                    at: meta.at,
                    bytes: bytes.to_vec(),
                    note: (capture == Capture::Annotated).then(|| fed.note()),
                });
            }
            ours
        }
        Defragged::Complete(d) => {
            let ours = fed.packet(meta.at, false, &d.bytes, d.checksum_offloaded, d.fragments);
            if as_they_come {
                // The others went in as they came; this one carries the note.
                keep_fragment(fed, packets, ours);
            } else if capture.is_on() && ours {
                capture.fragments(fed, meta.at, d.originals, packets);
            }
            ours
        }
        Defragged::Dropped(why) => {
            if as_they_come && why != Discard::Foreign {
                keep_fragment(fed, packets, false);
            }
            fed.fragment_dropped(meta.at, why);
            false
        }
        Defragged::Held => {
            if as_they_come {
                keep_fragment(fed, packets, false);
            }
            false
        }
    }
}

/// Write `seg` into `buf`: the whole IPv4 datagram (we write the header), or for IPv6 the
/// TCP segment alone (the kernel writes the header). Returns its length.
/// The IPv4 TTL of our segments (Linux's default, `net.ipv4.ip_default_ttl`; the IPv6
/// sender's hop limit is the same).
pub(crate) const IP_TTL: u8 = 64;

pub(crate) fn build_segment(
    seg: &tcpshake_proto::tcp::Segment,
    v6: bool,
    buf: &mut [u8],
    ident: &mut u16,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<usize> {
    let repr = seg.repr(local.port(), remote.port());
    let ip_len = if v6 {
        0
    } else {
        let mut ip = IpRepr::new(
            local.ip(),
            remote.ip(),
            PROTO_TCP,
            IP_TTL,
            repr.buffer_len(),
        );
        // DF unless the path MTU was locked at IPv4's floor (tcp::Segment::dont_frag).
        ip.dont_frag = seg.dont_frag;
        ip.ident = *ident;
        *ident = ident.wrapping_add(1);
        ip.emit(buf).context("building the IPv4 header")?
    };
    let tcp_len = repr
        .emit(local.ip(), remote.ip(), &mut buf[ip_len..])
        .context("building the TCP segment")?;
    Ok(ip_len + tcp_len)
}

/// Send everything the probe has queued. Returns when the last one left, if any did.
pub(crate) fn flush(
    probe: &mut Probe,
    sender: &RawSender,
    buf: &mut [u8],
    ident: &mut u16,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<Option<Instant>> {
    let mut last = None;
    // One time for all the segments that leave together, as Linux stamps a write's
    // segments with one `tcp_mstamp`: RACK (RFC 8985 §6.2) orders segments sent at once by
    // where they end. Stamped one by one, a request's first segment looked 25 µs older
    // than its second (over veth each send carries the server's processing of it) and was
    // called lost the moment the second was SACKed, before any reordering window.
    let mut now = clock::now();
    // Bounded: a connection queues a handful of segments per input.
    for _ in 0..256 {
        let Some(seg) = probe.poll_transmit(now) else {
            break;
        };
        let len = build_segment(&seg, sender.is_v6(), buf, ident, local, remote)?;
        match sender.send(&buf[..len], remote.ip()) {
            Ok(()) => last = Some(clock::now()),
            // This host would not send it: lost, not the probe's end (what the probe does
            // about it may queue the flight again, smaller: this loop sends it — stamped
            // from then on with the time of the refusal, so nothing sent after the re-cut
            // looks older to RACK than the re-cut segments).
            Err(e) => match local_refusal(&e, remote.ip()) {
                Some(why) => {
                    now = clock::now();
                    probe.send_refused(now, why, len);
                }
                None => return Err(send_error(e, remote)),
            },
        }
    }
    Ok(last)
}

/// A send error that is this host declining the segment — too big for the path MTU its
/// route holds (EMSGSIZE; the MTU read from the route, where a cached PMTU or an `ip route
/// … mtu lock` lives), or dropped on the way out (ENOBUFS: a full queue, a peer device
/// that would not take it) — which Linux's TCP takes as a loss, not a failure; `None` for
/// any other error.
pub(crate) fn local_refusal(e: &io::Error, remote: std::net::IpAddr) -> Option<LocalRefusal> {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => Some(LocalRefusal::TooBig {
            mtu: super::route::lookup(remote).ok().and_then(|r| r.mtu),
        }),
        Some(libc::ENOBUFS) => Some(LocalRefusal::Dropped),
        _ => None,
    }
}

pub(crate) fn send_error(e: io::Error, remote: SocketAddr) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
            anyhow::Error::new(e).context(format!(
                "no route to {}: check `ip route get {}`",
                remote.ip(),
                remote.ip()
            ))
        }
        Some(libc::EPERM) => anyhow::Error::new(EnvironmentError(format!(
            "sending to {remote} was refused on this host (EPERM): a firewall rule on output \
             (nftables, iptables), a security module or a cgroup BPF program, or a missing \
             capability"
        ))),
        _ => anyhow::Error::new(e).context(format!("sending a segment to {remote}")),
    }
}

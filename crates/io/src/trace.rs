//! The run loop of `tcpshake trace`: guard the source port, open the tap and the raw
//! sender, then shuttle between the sans-IO [`Trace`] and the wire until it is done.
//!
//! The tap is the one a probe uses (bpf.rs): TCP to and from our port — our probes on
//! their way out, with the kernel's timestamp of their departure (on loopback, their
//! arriving copy), and the destination's answers — and every ICMP/ICMPv6 packet, which
//! the trace matches against what it sent. What the tap saw leave is what counts as sent:
//! the kernel may hold a packet it was handed (behind ARP / ND) and drop it.
//! It reads a ring of small frames (a burst of probes and their answers at once).
//! The guard keeps the kernel's TCP away from our port, so a SYN-ACK is answered by our
//! RST, not the kernel's, and an in-session connection is ours alone.

use super::guard::{Guard, MARK};
use super::run::{
    Capture, Captured, Fed, MAX_SLEEP, Path, close_later, deliver, drain_tap, send_error,
    unresolved_next_hop,
};
use super::sender::RawSender;
use super::tap::{Tap, TapMeta};
use super::{EnvironmentError, clock};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use tcpshake_proto::probe::PacketNote;
use tcpshake_proto::time::Instant;
use tcpshake_proto::trace::record::TraceRecord;
use tcpshake_proto::trace::{Trace, TraceConfig};
use tcpshake_proto::wire::defrag::Defrag;

/// The tap's queue (kernel memory, about a kilobyte per packet as the kernel counts it):
/// room for thousands of replies, where a trace draws a few per hop.
const TRACE_QUEUE_BYTES: usize = 4 << 20;

/// Probes and answers read per pass.
const BATCH: usize = 64;
/// Packets kept for `--pcap` at most (a trace sends at most 1024 probes; what is beyond
/// this is a flood of errors quoting our port, not worth the memory).
const MAX_CAPTURED: usize = 16_384;

pub struct TraceOutcome {
    pub record: TraceRecord,
    /// Every packet of the trace as the tap saw it, for `--pcap`.
    pub packets: Vec<Captured>,
}

/// Run one trace to its end (or until `stop` is set: then the trace stops sending, closes
/// an in-session connection, and returns what it found).
pub fn run(
    path: Path,
    cfg: TraceConfig,
    guard: &mut Guard,
    capture: Capture,
    stop: &AtomicBool,
) -> Result<TraceOutcome> {
    let local = path.local;
    let remote = cfg.tcp.remote;
    guard.protect_port(local.port())?;
    let outcome = run_guarded(&path, cfg, capture, stop);
    // Guarded until the loop is over: late SYN-ACKs are still ours to reset.
    let _ = guard.release_port(local.port());
    path.release();
    outcome.with_context(|| format!("trace {local} → {remote}"))
}

fn run_guarded(
    path: &Path,
    cfg: TraceConfig,
    capture: Capture,
    stop: &AtomicBool,
) -> Result<TraceOutcome> {
    let local = path.local;
    // The socket's queue, not a ring: a trace is short, and a ring costs RCU grace
    // periods to set up and close (~10 ms each here) — most of a one-hop trace's time.
    // Answers (a hop's ICMP error, the destination's) may come back on another of this
    // host's links (asymmetric routing): the tap takes those too.
    let others = super::route::other_links(path.route.oif, path.route.is_loopback);
    let mut tap = Tap::open_queue(
        path.route.oif,
        &path.route.ifname,
        local.port(),
        path.route.is_loopback,
        TRACE_QUEUE_BYTES,
        &others,
    )?;
    let sender = RawSender::new(local.ip(), MARK)?;
    sender
        .set_traffic_class(cfg.tos)
        .context("setting IPV6_TCLASS")?;
    let mut trace = Trace::new(cfg);
    trace.over_loopback(path.route.is_loopback);
    // On the target's own link: no gateway, on a link with neighbours (Ethernet: a MAC).
    // A point-to-point device (`default dev wg0`, ppp, tun) has no gateway either, and
    // routers beyond it (review).
    trace.on_link(
        path.route.gateway.is_none() && !path.route.is_loopback && path.route.mac.is_some(),
    );
    let mut defrag = Defrag::new(capture.is_on());
    let mut packets = Vec::new();
    let mut rx = vec![vec![0u8; 2048]; BATCH];
    let mut batch = Vec::with_capacity(BATCH);
    let mut hop_limit = None;

    trace.start(clock::now());
    flush(&mut trace, &sender, &mut hop_limit)?;
    let mut interrupted = false;
    // Bounded: the trace's own hard limit ends it (`Trace::handle_timeout`), and every
    // pass either handles a packet, a deadline, or sleeps at most MAX_SLEEP.
    while !trace.is_done() {
        tap.recv_batch(&mut rx, &mut batch)
            .context("reading the AF_PACKET tap")?;
        for &(slot, meta) in &batch {
            let bytes = &rx[slot][..meta.len];
            // An answer may have queued a RST (a SYN-ACK's): out before the rest of the
            // batch is read, so the destination's half-open connection lives one round
            // trip, not a batch of reading and formatting longer.
            if hand_in(&mut trace, &mut defrag, meta, bytes, capture, &mut packets)
                && !meta.outgoing
            {
                flush(&mut trace, &sender, &mut hop_limit)?;
            }
        }
        flush(&mut trace, &sender, &mut hop_limit)?;
        if trace.is_done() {
            break;
        }
        let now = clock::now();
        if !interrupted && stop.load(Ordering::Relaxed) {
            interrupted = true;
            trace.interrupt(now);
        } else if trace.poll_timeout().is_some_and(|d| now >= d) {
            trace.handle_timeout(now);
        } else if batch.is_empty() {
            let until = trace.poll_timeout().unwrap_or(now + MAX_SLEEP);
            tap.wait(Some(until.saturating_since(now).min(MAX_SLEEP)))?;
            continue;
        } else {
            continue;
        }
        flush(&mut trace, &sender, &mut hop_limit)?;
    }

    // The copies of our last packets may still be on their way to the tap: the trace,
    // done, takes those alone (they count as sent and are named in the capture, like the
    // RSTs before them), and nothing else.
    drain_tap(&mut tap, &mut rx[0], |meta, bytes| {
        hand_in(&mut trace, &mut defrag, meta, bytes, capture, &mut packets);
    })?;
    let losses = tap.losses();
    // It closes beside the output and the guard's teardown (run::wait_closing).
    close_later(tap);
    // None of our packets on the tap: ask the kernel whether the next hop went unresolved
    // (ARP / ND), as a probe does, so the record says why rather than blame the routers.
    if trace.nothing_seen_leaving()
        && let Some(what) = unresolved_next_hop(&path.route, trace.remote().ip())
    {
        trace.next_hop_unresolved(what);
    }
    let mut record = trace.into_record();
    if losses.dropped > 0 {
        record.notes.push(format!(
            "the tap's queue overflowed: {} packets were not seen",
            losses.dropped
        ));
    }
    if packets.len() >= MAX_CAPTURED {
        record.notes.push(format!(
            "the pcap holds the first {MAX_CAPTURED} packets of the trace only"
        ));
    }
    packets.sort_by_key(|p| p.at);
    Ok(TraceOutcome { record, packets })
}

/// One packet off the tap to the trace, kept for the capture while there is room (at most
/// [`MAX_CAPTURED`]); a truncated copy is left out. Whether it was handed in.
fn hand_in(
    trace: &mut Trace,
    defrag: &mut Defrag,
    meta: TapMeta,
    bytes: &[u8],
    capture: Capture,
    packets: &mut Vec<Captured>,
) -> bool {
    if meta.truncated {
        return false;
    }
    let keep = if packets.len() < MAX_CAPTURED {
        capture
    } else {
        Capture::Off
    };
    deliver(trace, defrag, meta, bytes, keep, packets);
    true
}

/// The trace as the tap's machine: a datagram's fragment count does not matter to it, and
/// its capture note is the line it gave the packet.
impl Fed for Trace {
    fn packet(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        offloaded: bool,
        _: u16,
    ) -> bool {
        self.handle_packet(at, outgoing, bytes, offloaded)
    }

    fn note(&self) -> PacketNote {
        text_note(self.packet_note())
    }
}

/// A capture comment (pcapng) of one line of text.
fn text_note(text: Option<&str>) -> PacketNote {
    PacketNote {
        segment: None,
        legs: Vec::new(),
        label: None,
        notes: text.map(|t| vec![t.to_string()]).unwrap_or_default(),
    }
}

/// Send everything the trace has queued.
fn flush(
    trace: &mut Trace,
    sender: &RawSender,
    hop_limit: &mut Option<u8>,
) -> Result<Option<Instant>> {
    let mut last = None;
    let remote = trace.remote();
    // Bounded: a pass queues at most a window of probes and a few RSTs.
    for _ in 0..1024 {
        let now = clock::now();
        let Some(t) = trace.poll_transmit(now) else {
            break;
        };
        if *hop_limit != Some(t.hop_limit) {
            sender
                .set_hop_limit(t.hop_limit)
                .context("setting IPV6_UNICAST_HOPS")?;
            *hop_limit = Some(t.hop_limit);
        }
        match sender.send(&t.bytes, t.dst) {
            Ok(()) => last = Some(now),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(EnvironmentError(format!(
                    "sending to {remote} was refused by the local firewall or a missing \
                     capability (EPERM)"
                ))
                .into());
            }
            // Dropped on its way out (a full queue): lost, as on the wire; the trace
            // counts what its tap saw leave, and a probe unanswered is given up.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) => return Err(send_error(e, remote)),
        }
    }
    Ok(last)
}

//! One client TCP connection, sans-IO (RFC 9293, RFC 6298, RFC 5961, RFC 7323, RFC 2018;
//! ICMP errors and the path MTU: RFC 5927, RFC 1191, RFC 8201, RFC 2923).
//!
//! ```text
//!   CLOSED --connect/SYN--> SYN-SENT --SYN-ACK/ACK--> ESTABLISHED
//!   SYN-SENT --SYN/SYN-ACK--> SYN-RECEIVED --ACK (or SYN-ACK)/ACK--> ESTABLISHED
//!   ESTABLISHED --close/FIN--> FIN-WAIT-1 --ACK--> FIN-WAIT-2 --FIN/ACK--> TIME-WAIT
//!   FIN-WAIT-1 --FIN/ACK--> CLOSING --ACK--> TIME-WAIT --2MSL(configured)--> CLOSED
//!   ESTABLISHED --FIN/ACK--> CLOSE-WAIT --close/FIN--> LAST-ACK --ACK--> CLOSED
//! ```
//!
//! Polling order after every input (`connect`, `send`, `close`, `abort`,
//! `handle_segment`, `handle_icmp`, `handle_timeout`): drain `poll_transmit`, then
//! `poll_event`, then ask `poll_timeout` when to call `handle_timeout` next.
//!
//! Choices made because tcpshake is a measuring tool, not a bulk-transfer stack:
//! - data is ACKed at once (no delayed ACK, RFC 9293 §3.8.6.3 allows it), so the peer's
//!   timing is never skewed by ours: each out-of-order or duplicate segment draws its own
//!   ACK, and what one tap batch delivers in order draws one ACK of all of it (as a
//!   GRO-merged packet draws one from Linux) — under a burst, fewer than RFC 5681 §4.2's
//!   one per two full-sized segments;
//! - no congestion control (RFC 5681): we send what the peer's window allows, which for a
//!   HEAD request is one segment;
//! - RTT samples come from the echoed timestamp when timestamps are on (RFC 7323 §4: the
//!   TSecr names the transmission it answers, so a retransmitted SYN still gives a sample
//!   and a sane RTO), else from Karn's rule (RFC 6298 §3);
//! - challenge ACKs (RFC 5961) are not rate-limited: at most one per received segment;
//! - an ICMP error counts only if it quotes a sequence number in flight (RFC 5927 §4.1);
//!   a smaller path MTU resends the segments that were too big at once, and a PMTU black
//!   hole is assumed after two timeouts of a full-sized segment (see [`icmp`]);
//! - zero-window probing (RFC 9293 §3.8.6.1) goes on while the peer answers the probes
//!   (MUST-36, as Linux does); unanswered probes give up like retransmissions (R2). The
//!   caller's own limit (tcpshake's `--timeout`, Linux's `TCP_USER_TIMEOUT`) ends the rest.
//!
//! Where RFC 9293 leaves room, we tolerate what Linux tolerates, because a stricter client
//! would make an open port look filtered (each rule cites Linux where it is applied):
//! - an option with a bad length costs that option, not the segment (MUST-7; parsed in
//!   `wire::options`, reported here);
//! - MSS 0 is no MSS option; an MSS below Linux's floor of 48 (`TCP_MIN_SND_MSS`) is
//!   raised to it rather than honoured with tiny segments;
//! - out-of-order bytes that overlap bytes already queued: the copy that starts lower in
//!   sequence wins, as in Linux's queue; a copy that differs is reported (a middlebox
//!   rewriting data, or an injection);
//! - a bare SYN in SYN-SENT is a simultaneous open (MUST-10): SYN-RECEIVED and a SYN-ACK;
//! - PAWS (RFC 7323 §5.3 R1) drops a segment whose TSval is older than TS.Recent by more
//!   than Linux's one-tick `TCP_PAWS_WINDOW`, except RSTs and Linux's "disordered" pure
//!   duplicate ACKs; a SYN-ACK whose TSecr echoes nothing we sent gets a RST and the SYN
//!   is retransmitted (Linux's `tcp_rcv_synsent_state_process`);
//! - after the peer's FIN, in CLOSE-WAIT, LAST-ACK and CLOSING, a RST at the FIN's
//!   sequence number (RCV.NXT − 1) resets as one at RCV.NXT does (Linux's
//!   `tcp_reset_check`; RFC 5961 §3.2 alone would ignore it): the peer answered a segment
//!   of ours that crossed its FIN;
//! - in TIME-WAIT, a segment below RCV.NXT is ACKed again (RFC 9293 §3.10.7.4, as Linux's
//!   TIME-WAIT), and a RST at RCV.NXT ends TIME-WAIT as a completed close, not a reset
//!   (Linux's default `tcp_rfc1337` = 0; RFC 1337 §3 would ignore the RST).

mod display;
mod flight;
pub mod icmp;
mod rack;
mod reassembly;
pub(crate) mod rto;
/// The most of a RST's data shown ([`Event::Reset`]'s `text`).
pub const RST_TEXT_MAX: usize = 200;

/// A RST's data as text: printable ASCII kept, the rest escaped (`\n`, `\xNN`), cut at
/// [`RST_TEXT_MAX`] bytes (`…` then); `None` when it carried none.
fn rst_text(payload: &[u8]) -> Option<String> {
    if payload.is_empty() {
        return None;
    }
    let shown = &payload[..payload.len().min(RST_TEXT_MAX)];
    let mut text = shown.escape_ascii().to_string();
    if payload.len() > RST_TEXT_MAX {
        text.push('…');
    }
    Some(text)
}

#[cfg(test)]
mod tests;
mod timer;

use crate::time::Instant;
use crate::wire::tcp::MAX_SACK_BLOCKS;
use crate::wire::{IcmpError, IcmpKind, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use flight::Flight;
pub use icmp::{IcmpIgnored, IcmpOutcome, PmtuChange};
use rack::Rack;
use reassembly::Reassembly;
use rto::RttEstimator;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use timer::{Timer, TimerTable};

/// RFC 9293 §3.3.2 states a client passes through.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum State {
    Closed,
    SynSent,
    /// Simultaneous open (RFC 9293 §3.5, MUST-10): the peer's SYN crossed ours.
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    Closing,
    TimeWait,
    CloseWait,
    LastAck,
}

impl State {
    /// The state spelled `name` (`SYN-SENT`), as [`State::name`] writes it.
    pub fn from_name(name: &str) -> Option<State> {
        use State::*;
        [
            Closed,
            SynSent,
            SynReceived,
            Established,
            FinWait1,
            FinWait2,
            Closing,
            TimeWait,
            CloseWait,
            LastAck,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// The RFC's spelling: `SYN-SENT`, `FIN-WAIT-1`, …
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::Closing => "CLOSING",
            State::TimeWait => "TIME-WAIT",
            State::CloseWait => "CLOSE-WAIT",
            State::LastAck => "LAST-ACK",
        }
    }
}

/// Everything a connection needs from outside; random values (ISN, timestamp offset) are
/// chosen by the caller so tests can pick them.
#[derive(Clone, Debug)]
pub struct Config {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Initial send sequence number (RFC 9293 §3.4.1: from a CSPRNG in production).
    pub isn: SeqNumber,
    /// MSS we advertise.
    pub mss: u16,
    /// Window we advertise in the SYN (unscaled, as Linux's 64240).
    pub syn_window: u16,
    /// Our receive buffer in bytes: we never accept data beyond `rcv_nxt + rcv_buf`.
    pub rcv_buf: u32,
    /// Our window-scale shift (RFC 7323 §2), offered in the SYN.
    pub wscale: u8,
    pub sack_permitted: bool,
    pub timestamps: bool,
    /// Added to our millisecond clock for TSval (RFC 7323 §5.4: random per connection).
    pub ts_offset: u32,
    /// SYN retransmissions before giving up.
    pub syn_retries: u32,
    /// Retransmissions of data or FIN before giving up.
    pub data_retries: u32,
    /// RFC 6298 §2.1: 1 s.
    pub rto_initial: Duration,
    /// Floor for the RTO (Linux's 200 ms rather than RFC 6298's 1 s, documented).
    pub rto_min: Duration,
    pub rto_max: Duration,
    /// How long TIME-WAIT lasts (short by default; 2×MSL would be minutes).
    pub time_wait: Duration,
    /// Data queued by the time the SYN-ACK is acknowledged rides on that acknowledgment
    /// (RFC 9293 §3.5 allows data in the handshake's third segment; Linux sends it so when
    /// the application's write was waiting for the connection). Off: a bare ACK first,
    /// then the data, as curl's connections go.
    pub ack_with_data: bool,
    /// The path MTU an earlier connection to this address learned from an ICMP error
    /// (RFC 1191 §5, RFC 8201 §5.2: a host caches it per destination; Linux keeps it in
    /// the route for 10 minutes): used from the start, so a survey pays the error and the
    /// resend once, not on every probe.
    pub known_path_mtu: Option<KnownPathMtu>,
}

/// The handshake's third segment as [`Connection::handshake_ack`] foresees it: all of it
/// but what the SYN-ACK will say (its sequence number, its TSval to echo, whether it
/// agreed to window scaling and timestamps). A driver may hand it to a faster path — the
/// kernel program of io/reflex.rs sends it from the softirq that receives the SYN-ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeAck {
    /// Its sequence number, ISS + 1: also the acknowledgment an acceptable SYN-ACK carries
    /// (RFC 9293 §3.10.7.3).
    pub seq: u32,
    /// The window field when the SYN-ACK agreed to window scaling (RFC 7323 §2.2)…
    pub window_scaled: u16,
    /// …and when it did not.
    pub window_unscaled: u16,
    /// Our SYN offered window scaling.
    pub wscale_offered: bool,
    /// Our TSval, when our SYN offered timestamps: the SYN's own. RFC 7323 §5.4 lets the
    /// clock tick as slowly as once a second; repeating the SYN's value keeps every later
    /// TSval of ours at or above it, however another clock would round (a TSval below one
    /// the server already holds would have our segment dropped by PAWS, §5.3).
    pub tsval: Option<u32>,
    /// The data that rides on it (`Config::ack_with_data`), all there is; empty for a
    /// bare ACK. Sent with PSH, as the last of what we were given (RFC 9293 §3.9.1.2).
    pub payload: Vec<u8>,
}

/// A path MTU learned before ([`Config::known_path_mtu`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KnownPathMtu {
    pub mtu: u32,
    /// IPv4, below the floor: segments go without DF (see `Connection::pmtu_locked`).
    pub locked: bool,
}

/// IP and TCP headers without options: what the MSS leaves out of the MTU.
fn ip_and_tcp_header_len(cfg: &Config) -> u32 {
    (if cfg.local.is_ipv6() { 40 } else { 20 }) + TCP_HEADER_LEN
}

/// The peer's data as received so far ([`Connection::receive_gap`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReceiveGap {
    /// Bytes taken in order (the FIN not counted; after an in-order FIN, one more).
    pub in_order: u32,
    /// Bytes missing between those and the first out-of-order bytes held (0: no hole).
    pub hole: u32,
    /// Bytes held beyond the hole.
    pub beyond: u32,
    /// The peer's FIN came beyond the hole.
    pub fin_beyond: bool,
    /// The most payload one segment from the peer carried.
    pub largest_segment: u32,
    /// How many segments carried that much: two or more are the peer's full-sized
    /// segments, which the path does carry.
    pub largest_count: u32,
}

/// The peer's SYN-ACK options, as negotiated.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

/// Why a segment was retransmitted or what odd thing the peer did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Anomaly {
    /// SYN and FIN (or SYN and RST) together.
    BadFlagCombination { flags: TcpFlags },
    /// RST whose sequence number is in the window but not exactly `rcv_nxt`
    /// (RFC 5961 §3.2): answered with a challenge ACK.
    RstChallenged { seq: SeqNumber },
    /// RST outside the window: ignored.
    RstIgnored { seq: SeqNumber },
    /// A RST at `rcv_nxt` ended the connection while what we had queued in answer to the
    /// segments before it, read together with it, had not left: `acks` bare ACKs (the
    /// challenge ACKs of the notes before), `data` bytes, `fin` our FIN. None is sent: the
    /// connection is gone. (Linux, handling each segment as it comes, would have sent them
    /// before the RST arrived; its notes here would be wrong, not its wire.)
    ResetBeforeSent { acks: u16, data: u32, fin: bool },
    /// SYN in a synchronized state (RFC 5961 §4): challenge ACK. `again`: the peer's own
    /// SYN-ACK once more (its ISN: our ACK of it was lost, most likely).
    SynChallenged { seq: SeqNumber, again: bool },
    /// The peer's SYN-ACK again, `after` the one we took: sooner than any retransmission
    /// timer runs (200 ms), so a copy (the path duplicated it, or the server answered a
    /// second copy of our SYN), not our ACK lost. Challenge-ACKed like any SYN (RFC 5961 §4).
    SynAckCopy { seq: SeqNumber, after: Duration },
    /// ACK for data we never sent (RFC 5961 §5 / RFC 9293 §3.10.7.4).
    AckOfUnsentData { ack: SeqNumber },
    /// An ACK (`syn`: on a SYN-ACK) in SYN-SENT that does not acknowledge our SYN:
    /// answered with RST (RFC 9293 §3.10.7.3); the first one also brings the SYN's
    /// retransmission forward to 2 ms after it, as Linux does.
    BadSynAck { ack: SeqNumber, syn: bool },
    /// Segment outside the receive window: dropped (and ACKed).
    OutOfWindow { seq: SeqNumber, len: u32 },
    /// Data beyond our advertised window was trimmed.
    BeyondWindow { seq: SeqNumber, len: u32 },
    /// A retransmitted FIN in TIME-WAIT, ACKed again.
    FinInTimeWait,
    /// A RST at RCV.NXT in TIME-WAIT: our close had completed, the RST ended TIME-WAIT
    /// early (RFC 9293 §3.10.7.4, as Linux by default); no reset of the connection.
    RstInTimeWait { seq: SeqNumber },
    /// A SYN without ACK in SYN-SENT (simultaneous open, RFC 9293 §3.5): answered with a
    /// SYN-ACK, SYN-RECEIVED.
    SimultaneousOpen { seq: SeqNumber },
    /// ACK older than `snd_una - max_snd_wnd` (RFC 5961 §5.2): dropped and ACKed.
    AckTooOld { ack: SeqNumber },
    /// An option whose length is wrong for its kind (or cannot be framed): that option was
    /// ignored, the segment kept (RFC 9293 §3.1 MUST-7).
    MalformedOption { kind: u8 },
    /// The peer's MSS was unusable: 0 (taken as no option, so 536; IPv6: 1220) or below
    /// Linux's floor of 48 (raised to 48).
    MssAdjusted { offered: u16, used: u16 },
    /// Out-of-order bytes that overlap bytes already queued but differ from them (the copy
    /// that starts lower in sequence was kept, as Linux keeps it).
    OverlapConflict { seq: SeqNumber, len: u32 },
    /// A segment entirely below `rcv_nxt`: bytes we already have, sent again. ACKed.
    Duplicate { seq: SeqNumber, len: u32 },
    /// PAWS (RFC 7323 §5.3 R1): a TSval older than TS.Recent. Dropped and ACKed.
    PawsRejected { tsval: u32, ts_recent: u32 },
    /// A SYN-ACK whose TSecr is no TSval of ours (RFC 7323 §3.2 / Linux): answered with
    /// RST, SYN-SENT kept.
    SynAckBadTsecr { tsecr: u32 },
    /// The urgent pointer was set (URG): reported, not acted on (RFC 6093 discourages it).
    Urgent { seq: SeqNumber, pointer: u16 },
    /// A segment without the timestamps option both sides negotiated (RFC 7323 §3.2 says
    /// drop it; Linux takes it, and so do we, or a middlebox that strips options would
    /// hang the exchange). Noted once per connection.
    TimestampsMissing { seq: SeqNumber },
    /// A timestamps option on a connection that did not negotiate them: ignored (RFC 7323
    /// §3.2), as Linux ignores it. Noted once per connection.
    TimestampsUnnegotiated { seq: SeqNumber },
    /// No window scaling was agreed, and the peer's first window after its SYN-ACK's is a
    /// sixteenth of it or less: the sign of a window scale option stripped from the SYN-ACK
    /// alone (the peer, which saw ours, scales what it advertises; we read it unscaled).
    WindowScaleStripped { synack_window: u16, window: u16 },
}

/// What happened, for the layers above. Every event carries the time of the input that
/// caused it (a kernel RX timestamp for segments).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    StateChanged {
        from: State,
        to: State,
        at: Instant,
    },
    /// ESTABLISHED reached; the peer's options.
    Connected {
        at: Instant,
        peer: PeerOptions,
    },
    /// RST in SYN-SENT acknowledging our SYN: the port is closed. `text`: what the RST
    /// carried, as [`Event::Reset`]'s.
    Refused {
        at: Instant,
        text: Option<String>,
    },
    /// RST accepted in a synchronized state, TIME-WAIT excepted (there the close had
    /// completed: [`Anomaly::RstInTimeWait`] and [`Event::Closed`]).
    /// `at_peer_fin`: its sequence number was the peer's FIN's (RCV.NXT − 1), accepted as
    /// Linux accepts it after that FIN: the peer, having closed, answered a segment of ours
    /// that did not yet acknowledge its FIN.
    Reset {
        at: Instant,
        state: State,
        at_peer_fin: bool,
        /// What the RST carried, if anything, as printable ASCII (others escaped, at most
        /// [`RST_TEXT_MAX`] bytes): RFC 9293 §3.5.3 lets a RST carry data explaining why
        /// (SHLD-2), and a diagnostic tool shows it where Linux drops it.
        text: Option<String>,
    },
    /// In-order bytes newly delivered.
    Data {
        at: Instant,
        bytes: Vec<u8>,
    },
    /// The peer's FIN was accepted (in order).
    PeerFin {
        at: Instant,
    },
    /// A segment is being sent again (the segment itself comes from `poll_transmit` with
    /// `retransmission: true`).
    Retransmit {
        at: Instant,
        seq: SeqNumber,
        flags: TcpFlags,
        attempt: u32,
    },
    Anomaly {
        at: Instant,
        anomaly: Anomaly,
    },
    /// Retransmissions exhausted in `state`; the connection is CLOSED (no RST is sent).
    /// `answered`: segments the peer sent since it last acknowledged anything new (so it
    /// had not stopped answering, only stopped acknowledging); `zero_window`: we were
    /// probing its closed window.
    TimedOut {
        at: Instant,
        state: State,
        answered: u32,
        zero_window: bool,
    },
    /// CLOSED reached after an orderly close (TIME-WAIT expired or was ended by the peer's
    /// RST, or LAST-ACK acked).
    Closed {
        at: Instant,
    },
    /// A full-sized segment was lost twice in a row: suspecting a path MTU black hole
    /// (RFC 2923 §2.1), the connection now sends at most `mss` bytes per segment, as if
    /// the path MTU were `mtu`, and has sent what was in flight again at that size.
    BlackHoleSuspected {
        at: Instant,
        mtu: u32,
        mss: u16,
    },
    /// Segments at the smaller size got through where the big ones had vanished: the path
    /// drops big packets without saying so (a PMTU black hole).
    BlackHoleConfirmed {
        at: Instant,
        mtu: u32,
    },
}

/// A segment to send. `payload` is owned: it comes from the send queue.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Segment {
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
    pub retransmission: bool,
    /// IPv4's Don't Fragment bit: set, as on every TCP segment that does path MTU
    /// discovery (RFC 1191 §3), until a router reported an MTU below IPv4's floor; see
    /// [`Connection::pmtu_locked`]. IPv6 segments are never fragmented by routers (RFC
    /// 8200 §5), and the raw socket is told not to fragment them either.
    pub dont_frag: bool,
}

impl Segment {
    /// The wire view of this segment between the given ports.
    pub fn repr(&self, src_port: u16, dst_port: u16) -> TcpRepr<'_> {
        TcpRepr {
            src_port,
            dst_port,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            urgent: 0,
            options: self.options,
            payload: &self.payload,
        }
    }
}

/// RFC 9293 §3.7.1 (MUST-15): the send MSS when the peer sends no MSS option, IPv4's
/// (576 − 20 − 20).
const DEFAULT_MSS: u16 = 536;
/// The same for IPv6: 1280 − 40 − 20 (RFC 8200 §5's minimum link MTU). Linux takes it too
/// (`tcp_v6_connect` clamps to IPV6_MIN_MTU's); conformance script
/// `syn_sent__synack_ipv6_no_mss__default_1220`.
const DEFAULT_MSS_V6: u16 = 1220;

/// `DEFAULT_MSS` or `DEFAULT_MSS_V6`, by the peer's family.
pub fn default_mss(v6: bool) -> u16 {
    if v6 { DEFAULT_MSS_V6 } else { DEFAULT_MSS }
}

/// RFC 7323 §2.3: larger shifts are treated as 14.
const MAX_WSCALE: u8 = 14;
/// Bytes of the timestamps option as Linux lays it out (NOP, NOP, kind, len, 8 bytes):
/// subtracted from the MSS when timestamps are on (RFC 9293 §3.7.1: the MSS counts
/// data only, options come out of it).
const TS_OPTION_LEN: u16 = 12;
/// Linux's smallest send MSS (`TCP_MIN_SND_MSS` in include/net/tcp.h, the default of
/// `net.ipv4.tcp_min_snd_mss`): room for the full set of options and 8 bytes of data.
/// `__tcp_mtu_to_mss()` raises a smaller one to it, before options come out.
const MIN_SND_MSS: u16 = 48;
/// Linux's PAWS tolerance in timestamp ticks (`TCP_PAWS_WINDOW` in include/net/tcp.h).
const PAWS_WINDOW: i32 = 1;
/// The TCP header without options.
const TCP_HEADER_LEN: u32 = 20;
/// RTO expiries of the same full-sized segment after which a path MTU black hole is
/// suspected (RFC 2923 §2.1; Linux's `tcp_mtu_probing` waits for `tcp_retries1` = 3 and is
/// off by default). Two: the first loss may be chance, the second in a row of the same
/// big segment, after a handshake whose small segments got through, is the path.
const BLACK_HOLE_AFTER: u32 = 2;
/// Most segments one path MTU change sends again at once; the rest follow by the
/// retransmission timer (the flight of a probe is a request or a TLS flight: a few).
const MAX_RESEND: u32 = 64;

/// Added to RACK's reordering timer (RFC 8985 §6.3), as Linux adds `TCP_TIMEOUT_MIN` (two
/// jiffies: 2 ms at HZ=1000, 8 ms at HZ=250) in `tcp_rack_reo_timeout`'s arming. Without
/// it, on a sub-millisecond path the segment went again 130 µs after the last one sent,
/// and Wireshark's analysis, which calls a resend within the handshake's round trip of
/// the highest segment out-of-order, warned about it.
const REO_TIMER_SLACK: Duration = Duration::from_millis(2);

/// The shortest tail loss probe timeout. RFC 8985 §7.2 has 2·SRTT alone, which on a
/// sub-millisecond path is less than a busy server takes to acknowledge: a probe (and a
/// retransmission counted) for nothing. Linux adds two jiffies (`TCP_TIMEOUT_MIN`: 8 ms
/// at HZ=250, its probe went 9.2 ms after the request here); the TLP draft
/// (draft-dukkipati-tcpm-tcp-loss-probe) had max(2·SRTT, 10 ms) for a flight of more
/// than one segment, which this is.
const TLP_MIN: Duration = Duration::from_millis(10);
/// Pure ACKs queued at most before a new one supersedes the last (see
/// `Connection::queue_data_ack`): room for a tap batch's worth of duplicate ACKs.
const MAX_QUEUED_ACKS: usize = 32;
/// How soon our SYN goes again after an ACK that does not acknowledge it, the first time:
/// Linux's `TCP_TIMEOUT_MIN` (2 jiffies, 2 ms at HZ=1000) in `tcp_rcv_synsent_state_process`
/// ("Previous FIN/ACK or RST/ACK might be ignored", since Linux 5.10). Such an ACK comes
/// most often from a server still holding an earlier connection of the same address pair
/// in TIME-WAIT that took our SYN for an old duplicate (RFC 6191: a SYN whose timestamp or
/// sequence number is not newer): our RST ends that TIME-WAIT (RFC 9293 §3.10.7.4, Linux
/// without `tcp_rfc1337`), and the SYN sent again gets a SYN-ACK. Waiting the full initial
/// RTO instead added a second to the probe.
const SYN_AGAIN_AFTER_BAD_ACK: Duration = Duration::from_millis(2);

/// Sooner than this, a SYN-ACK again is not the server's timer: a server sends it again
/// after its initial RTO (1 s: RFC 6298 §2.1, Linux's `TCP_TIMEOUT_INIT`), and no
/// retransmission timer runs shorter than Linux's floor, 200 ms (`TCP_RTO_MIN`). A copy
/// sooner than that is no sign that our ACK was lost.
const SYNACK_RETRANSMIT_FLOOR: Duration = Duration::from_millis(200);

/// Where the path MTU black hole search stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BlackHole {
    No,
    /// Fell back to the safe size; waiting for an ACK to tell.
    Suspected,
    /// The smaller segments were acknowledged.
    Confirmed,
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    state: State,
    /// `connect` was called once; a connection is not reused.
    opened: bool,

    // --- send sequence space, RFC 9293 §3.3.1 ---
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Peer's window in bytes, already scaled.
    snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Largest window the peer ever offered (RFC 5961 §5.2 MAX.SND.WND).
    max_snd_wnd: u32,
    /// Shift applied to the peer's window field (0 unless both sides sent wscale).
    snd_wscale: u8,
    /// Data from `snd_una` on (after the SYN), sent or not, not yet acknowledged.
    send_buf: VecDeque<u8>,
    /// `close` was called: a FIN follows `send_buf`.
    fin_queued: bool,
    /// RSTs sent (`rsts_sent`).
    rsts_sent: u32,
    /// The ACK of the SYN-ACK is queued and has not left: it leaves alone, never folded
    /// into our FIN (see `next_transmit`).
    handshake_ack_queued: bool,
    /// The FIN has been sent (it then sits at `snd_una + send_buf.len()`).
    fin_sent: bool,
    /// The send MSS: payload bytes per segment (RFC 9293 §3.7.1: the peer's MSS, ours,
    /// the path MTU, less the options every segment carries).
    send_mss: u16,
    /// The peer's MSS (or [`default_mss`]: 536, IPv6 1220) and ours, the smaller: the
    /// ceiling of `send_mss`.
    mss_limit: u16,
    /// The path MTU once an ICMP error or a black hole lowered it below the route's
    /// (RFC 1191, RFC 8201); `None` while it is the route's.
    path_mtu: Option<u32>,
    /// IPv4: a router reported an MTU below [`icmp::IPV4_MIN_PMTU`], the floor we do not
    /// go under. Segments of the floor's size still do not pass it with DF set, so from
    /// then on they go without DF and the router fragments them: Linux's answer (the
    /// route's MTU is locked at `min_pmtu`, and `ip_dont_fragment()` clears DF for a locked
    /// route). RFC 1191 §3 allows MTUs down to 68; a floor that kept DF would be a dead end
    /// (a walk: MTU 500 on the path, the request refused at 552 until the timeout, where
    /// Linux's went through fragmented in 52 ms).
    pmtu_locked: bool,
    /// An ICMP error lowered (or locked) the path MTU during this connection: what
    /// [`Connection::learned_path_mtu`] hands on. One known from before is not handed on
    /// again, so it expires when the cache says (RFC 1191 §6.3: try larger after a while).
    pmtu_learned: bool,
    black_hole: BlackHole,
    /// The longest segment of ours the peer acknowledged or SACKed: a path that carried it
    /// has no black hole for segments up to that size.
    largest_delivered: u32,
    /// Our unacknowledged data as it went out (what a path MTU change resends, what RACK
    /// judges).
    flight: Flight,
    /// RFC 8985 loss detection: what the peer's ACKs and SACKs delivered last.
    rack: Rack,
    /// RFC 8985 §7: TLP.end_seq, SND.NXT when a tail loss probe went; no other probe goes
    /// until an ACK covers it.
    tlp_end: Option<SeqNumber>,

    // --- receive sequence space ---
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Shift we apply to the window we advertise (0 unless both sides sent wscale).
    rcv_wscale: u8,
    reassembly: Reassembly,
    /// Sequence number of a FIN seen out of order, processed once `rcv_nxt` reaches it.
    peer_fin: Option<SeqNumber>,
    /// The most payload any one segment from the peer carried: what the path back to us
    /// has shown it passes (see [`Connection::receive_gap`]).
    largest_rcv_payload: u32,
    /// Segments from the peer that carried `largest_rcv_payload` bytes.
    largest_rcv_count: u32,

    // --- options ---
    peer: PeerOptions,
    /// RFC 7323 §4.3 TS.Recent and Last.ACK.sent.
    ts_recent: u32,
    /// TS.Recent holds a TSval of the peer's (PAWS applies only then, RFC 7323 §5.3).
    ts_recent_valid: bool,
    last_ack_sent: SeqNumber,
    /// TSval of our first SYN: a SYN-ACK's TSecr must lie between it and now.
    syn_tsval: Option<u32>,

    // --- retransmission ---
    rtt: RttEstimator,
    /// The one segment being timed (RFC 6298 §3, Karn): its end and send time.
    rtt_probe: Option<(SeqNumber, Instant)>,
    /// TSvals of segments in flight that occupy sequence space, with when the first of
    /// them left and whether it was a retransmission (RFC 7323 §4.1), oldest first, bounded.
    ts_sent: VecDeque<(u32, Instant, bool)>,
    /// The highest TSval sent so far: TSvals never go back (RFC 7323 §5.4).
    tsval_sent: Option<u32>,
    /// Consecutive expiries of the retransmission timer for the current `snd_una`.
    retries: u32,
    /// The current run of retransmissions: when its first went, and the RTO it went
    /// after. It gives up once `retries` reached the limit *and* as much time passed as
    /// the back-off alone would have taken — a run whose back-off ICMP errors undid (RFC
    /// 6069) counts more retransmissions in that time, as Linux's `retransmits_timed_out`
    /// measures time, not count.
    rtx_run: Option<(Instant, Duration)>,
    /// When the last retransmission went (the timer an undone back-off re-arms from).
    last_rtx_at: Option<Instant>,
    /// Zero-window probes sent since the window closed or data was last acked.
    persist_probes: u32,
    /// A one-byte zero-window probe is outstanding (it is in `snd_nxt` already).
    persist_probe_out: bool,
    /// Zero-window probes the peer has not answered (any acceptable ACK answers them).
    persist_unanswered: u32,
    /// Some zero-window probe was answered since the window last closed: the peer is
    /// there and keeps its window shut, as opposed to gone silent.
    persist_answered: bool,
    /// Segments from the peer since `snd_una` last advanced.
    rx_since_progress: u32,
    /// Of them, how many were dropped unread: outside our receive window, or refused by
    /// PAWS (what a middlebox that rewrites sequence numbers or timestamps makes of all).
    dropped_since_progress: u32,
    /// A timestamps-option oddity was noted ([`Anomaly::TimestampsMissing`],
    /// [`Anomaly::TimestampsUnnegotiated`]): once per connection is enough.
    ts_oddity_noted: bool,
    /// The window of the peer's SYN (-ACK), and whether its next segment's was looked at
    /// for [`Anomaly::WindowScaleStripped`].
    synack_window: u16,
    /// When the peer's SYN (-ACK) we took arrived: a copy of it soon after is
    /// [`Anomaly::SynAckCopy`].
    synack_at: Option<Instant>,
    /// The peer's FINs taken again in TIME-WAIT ([`Anomaly::FinInTimeWait`]).
    fins_in_time_wait: u32,
    wscale_checked: bool,
    retransmissions: u32,
    timers: TimerTable,

    // --- outputs ---
    /// Segments built when an input demanded them (ACKs, RSTs, retransmissions, probes).
    /// New SYN/data/FIN segments are built in `poll_transmit`, so their send time is the
    /// caller's `now`.
    tx: VecDeque<Segment>,
    events: VecDeque<Event>,
}

impl Connection {
    pub fn new(cfg: Config) -> Connection {
        let rtt = RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max);
        Connection {
            state: State::Closed,
            opened: false,
            snd_una: cfg.isn,
            snd_nxt: cfg.isn,
            snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: SeqNumber(0),
            max_snd_wnd: 0,
            snd_wscale: 0,
            send_buf: VecDeque::new(),
            fin_queued: false,
            rsts_sent: 0,
            handshake_ack_queued: false,
            fin_sent: false,
            send_mss: default_mss(cfg.remote.is_ipv6()),
            mss_limit: default_mss(cfg.remote.is_ipv6()),
            // Only ever below the route's (what the MSS came from).
            path_mtu: cfg
                .known_path_mtu
                .map(|k| k.mtu)
                .filter(|&m| m < u32::from(cfg.mss) + ip_and_tcp_header_len(&cfg)),
            pmtu_locked: cfg.known_path_mtu.is_some_and(|k| k.locked),
            pmtu_learned: false,
            black_hole: BlackHole::No,
            largest_delivered: 0,
            flight: Flight::default(),
            rack: Rack::default(),
            tlp_end: None,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_wscale: 0,
            reassembly: Reassembly::default(),
            peer_fin: None,
            largest_rcv_payload: 0,
            largest_rcv_count: 0,
            peer: PeerOptions::default(),
            ts_recent: 0,
            ts_recent_valid: false,
            last_ack_sent: SeqNumber(0),
            syn_tsval: None,
            rtt,
            rtt_probe: None,
            ts_sent: VecDeque::new(),
            tsval_sent: None,
            retries: 0,
            rtx_run: None,
            last_rtx_at: None,
            persist_probes: 0,
            persist_probe_out: false,
            persist_unanswered: 0,
            persist_answered: false,
            rx_since_progress: 0,
            dropped_since_progress: 0,
            ts_oddity_noted: false,
            synack_window: 0,
            synack_at: None,
            fins_in_time_wait: 0,
            wscale_checked: false,
            retransmissions: 0,
            timers: TimerTable::default(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
        }
    }

    // --- getters ---

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn snd_una(&self) -> SeqNumber {
        self.snd_una
    }
    /// RSTs sent so far (an abort's, and the closed connection's answers).
    pub fn rsts_sent(&self) -> u32 {
        self.rsts_sent
    }

    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd_nxt
    }
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.rcv_nxt
    }
    /// TS.Recent (RFC 7323 §4.3): the TSval our next segment echoes, once the peer's SYN
    /// (or SYN-ACK) set it and timestamps are on.
    pub fn ts_recent(&self) -> Option<u32> {
        self.ts_recent_valid.then_some(self.ts_recent)
    }
    /// Retransmissions of the current `snd_una` so far (0 once it is acknowledged).
    pub fn retries(&self) -> u32 {
        self.retries
    }
    /// Retransmitted segments so far.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }
    /// Smoothed RTT (RFC 6298), once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }
    /// The peer's initial sequence number (valid once a SYN-ACK was accepted).
    pub fn irs(&self) -> SeqNumber {
        self.irs
    }
    /// The peer's current window in bytes (scaled).
    pub fn snd_wnd(&self) -> u32 {
        self.snd_wnd
    }
    /// What the SYN-ACK negotiated (all default before).
    pub fn peer_options(&self) -> PeerOptions {
        self.peer
    }
    /// Payload bytes per segment we send.
    pub fn send_mss(&self) -> u16 {
        self.send_mss
    }
    /// The path MTU, once an ICMP error (RFC 1191, RFC 8201) or a black hole lowered it
    /// below the route's; `None` until then.
    pub fn path_mtu(&self) -> Option<u32> {
        self.path_mtu
    }

    /// Whether a router reported an IPv4 MTU below our floor, so segments now go without
    /// DF for routers to fragment (see the field).
    pub fn pmtu_locked(&self) -> bool {
        self.pmtu_locked
    }
    /// Big segments vanished without an ICMP error and smaller ones got through: the
    /// path is a PMTU black hole (RFC 2923 §2.1).
    pub fn pmtu_black_hole(&self) -> bool {
        self.black_hole == BlackHole::Confirmed
    }
    /// Window (bytes) within which we accept data: `rcv_buf`, capped at what the
    /// window field can say with the shift our SYN offered. The field we send says as
    /// much of it as the shift agreed allows (`advertised_window`); the two
    /// differ only when the SYN-ACK carried no window scale. A peer without one honours
    /// our unscaled 65 535 and never sends past it. But a middlebox may have stripped the
    /// option from the SYN-ACK alone (RFC 7323 §2.2 then has us not scale, while the
    /// peer, which saw ours, reads our 65 535 as 8 MiB): such a peer sends far past the
    /// 64 KiB. Data up to our buffer is within the window it was told and within what we
    /// can hold, so we take it, as RFC 9293 §3.8.6 has the window say what the receiver is
    /// "prepared to accept": a path that then reordered the peer's burst left the segments
    /// above the hole held and SACKed (RFC 2018), and the peer's SACK-based recovery
    /// resent the hole. Dropping all past 64 KiB left nothing to SACK; on a SACK
    /// connection Linux's sender counts SACKed segments, not duplicate ACKs
    /// (`tcp_dupack_heuristics`; RACK, RFC 8985, needs SACKs too), so our blockless
    /// duplicate ACKs moved nothing; its tail loss probe (RFC 8985 §7) was past the
    /// window too, and it waited for its RTO (a fault walk,
    /// 900 KB through such a box, initcwnd 1000, `--mss 536`: 9 of 22 probes at ~230 ms;
    /// 1 of 22 now; Linux's client 7 of 22). Linux's client takes such data too: its
    /// receive buffer autotuning grows the window it accepts (`tcp_rcv_space_adjust`
    /// raises `window_clamp`) past the 65 535 it can advertise; it SACKed 580 KB past
    /// its ACK. Our buffer stays the bound, so the reassembly queue is bounded as before.
    pub fn rcv_wnd(&self) -> u32 {
        self.cfg
            .rcv_buf
            .min(65_535u32 << self.cfg.wscale.min(MAX_WSCALE))
    }
    /// What our ACK of an acceptable SYN-ACK will be, while we wait for one, given
    /// `riding`: what the caller will have written by the time it is sent (a request
    /// written when the connection opens). `None` when no SYN is out, when our segments
    /// go without DF (the ACK's IP header is not ours to foresee then), or when data
    /// would ride on it (`Config::ack_with_data`) that might not fit one segment. With
    /// data, `payload` is all of it, and it fits one segment whatever the SYN-ACK says,
    /// but for the peer's MSS and window, which whoever sends it must check:
    /// `payload.len()` plus the options (12 bytes with timestamps) within the MSS (without
    /// the option 536, IPv6 1220: [`default_mss`]), and within the window.
    pub fn handshake_ack(&self, riding: &[u8]) -> Option<HandshakeAck> {
        if self.state != State::SynSent || self.snd_nxt != self.cfg.isn.add(1) || self.pmtu_locked {
            return None;
        }
        let payload: Vec<u8> = if self.cfg.ack_with_data {
            self.send_buf.iter().chain(riding).copied().collect()
        } else {
            Vec::new()
        };
        // Our side's bound on one segment, with room for the timestamps either way.
        let ours = u32::from(self.cfg.mss.max(MIN_SND_MSS))
            .min(u32::from(self.mtu_to_mss(self.current_mtu())));
        if payload.len() as u32 + u32::from(TS_OPTION_LEN) > ours || self.fin_queued {
            return None;
        }
        let shift = self.cfg.wscale.min(MAX_WSCALE);
        Some(HandshakeAck {
            seq: self.snd_nxt.0,
            window_scaled: (self.rcv_wnd() >> shift).min(65_535) as u16,
            window_unscaled: self.rcv_wnd().min(65_535) as u16,
            wscale_offered: true,
            tsval: if self.cfg.timestamps {
                self.syn_tsval
            } else {
                None
            },
            payload,
        })
    }
    /// Segments the peer sent since it last acknowledged something new of ours (it may
    /// be talking without acknowledging).
    pub fn peer_segments_since_progress(&self) -> u32 {
        self.rx_since_progress
    }

    /// Of [`Self::peer_segments_since_progress`], those dropped unread: outside the receive
    /// window or refused by PAWS (RFC 9293 §3.10.7.4, RFC 7323 §5.3).
    pub fn peer_segments_dropped_since_progress(&self) -> u32 {
        self.dropped_since_progress
    }
    /// The peer's window is closed and we are probing it (RFC 9293 §3.8.6.1): what we
    /// wait for is the peer's window, not an acknowledgment of something lost.
    pub fn zero_window_probing(&self) -> bool {
        self.snd_wnd == 0 && (self.persist_probe_out || self.timers.is_set(Timer::Persist))
    }
    /// Whether the peer answered some zero-window probe since its window last closed: it
    /// is there, holding its window shut; `false` while probing means nothing came back.
    pub fn zero_window_probes_answered(&self) -> bool {
        self.persist_answered
    }
    /// Bytes held in the out-of-order queue (never more than `rcv_wnd`).
    pub fn reassembly_buffered(&self) -> usize {
        self.reassembly.buffered()
    }
    /// The peer's data as it stands: what was taken in order, and the first hole with what
    /// arrived beyond it. A hole that never fills while later bytes keep arriving is what a
    /// path that drops the peer's bigger segments looks like from this end.
    pub fn receive_gap(&self) -> ReceiveGap {
        let (hole, beyond) = self.reassembly.first_hole();
        // A FIN beyond a hole with no data beyond it: the hole runs up to the FIN.
        let hole = match self.peer_fin {
            Some(fin) if beyond == 0 => fin.diff(self.rcv_nxt).max(0) as u32,
            _ => hole,
        };
        ReceiveGap {
            in_order: self.rcv_nxt.diff(self.irs.add(1)).max(0) as u32,
            hole,
            beyond,
            fin_beyond: self.peer_fin.is_some(),
            largest_segment: self.largest_rcv_payload,
            largest_count: self.largest_rcv_count,
        }
    }

    // --- inputs ---

    /// CLOSED → SYN-SENT; queues the SYN.
    pub fn connect(&mut self, now: Instant) {
        if self.opened || self.state != State::Closed {
            return;
        }
        self.opened = true;
        self.snd_una = self.cfg.isn;
        self.snd_nxt = self.cfg.isn;
        self.set_state(State::SynSent, now);
    }

    /// Queue bytes to send (ESTABLISHED or CLOSE-WAIT; ignored otherwise).
    pub fn send(&mut self, data: &[u8]) {
        if matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued {
            self.send_buf.extend(data);
        }
    }

    /// Send FIN after the queued data (RFC 9293 §3.10.4).
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1, now);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck, now);
            }
            // RFC 9293 §3.10.4: SYN-SENT just deletes the TCB.
            State::SynSent => self.set_state(State::Closed, now),
            // RFC 9293 §3.10.4 would send a FIN once ESTABLISHED; a probe closes before
            // that only to give up, so it resets, as `abort` does.
            State::SynReceived => {
                self.abort(now);
            }
            // Closing already, or closed: nothing more to do.
            _ => {}
        }
    }

    /// Send RST and go to CLOSED at once (RFC 9293 §3.10.5).
    ///
    /// The RST must be acceptable to the peer (RFC 9293 §3.10.7.4, RFC 5961 §3.2): its
    /// SEG.SEQ lies in the peer's receive window. That is SND.NXT (Linux's
    /// `tcp_acceptable_seq()`), except when the peer's window is closed: then only its
    /// RCV.NXT is acceptable, which is our SND.UNA (a zero-window probe's byte, already
    /// counted in SND.NXT, was never taken).
    ///
    /// Returns whether a RST went out: not in SYN-SENT (no connection yet, the TCB just
    /// goes), TIME-WAIT (the close had completed) or CLOSED.
    pub fn abort(&mut self, now: Instant) -> bool {
        match self.state {
            State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::CloseWait
            | State::LastAck => {
                let seq = if self.snd_wnd == 0 && self.state != State::SynReceived {
                    self.snd_una
                } else {
                    self.snd_nxt
                };
                self.set_state(State::Closed, now);
                let rst = self.bare_segment(seq, self.rcv_nxt, TcpFlags::RST | TcpFlags::ACK);
                self.tx.push_back(rst);
                true
            }
            // SYN-SENT and TIME-WAIT: the TCB goes without a word.
            State::SynSent | State::TimeWait => {
                self.set_state(State::Closed, now);
                false
            }
            State::Closed => false,
        }
    }

    /// A segment for this connection (ports already matched), received at `rx_at`
    /// (kernel timestamp).
    pub fn handle_segment(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        let flags = seg.flags;
        if flags.syn() && (flags.fin() || flags.rst()) {
            self.anomaly(rx_at, Anomaly::BadFlagCombination { flags });
        }
        for kind in seg.options.malformed_kinds() {
            self.anomaly(rx_at, Anomaly::MalformedOption { kind });
        }
        if flags.urg() {
            self.anomaly(
                rx_at,
                Anomaly::Urgent {
                    seq: seg.seq,
                    pointer: seg.urgent,
                },
            );
        }
        self.rx_since_progress = self.rx_since_progress.saturating_add(1);
        match self.state {
            State::Closed => self.closed_segment(seg),
            State::SynSent => self.syn_sent_segment(rx_at, seg),
            _ => self.synchronized_segment(rx_at, seg),
        }
    }

    /// An ICMP or ICMPv6 error received at `rx_at` that quotes a TCP segment. It must
    /// prove it is about this connection: the quoted 4-tuple is ours and the quoted
    /// sequence number is in flight (RFC 5927 §4.1), in every state; otherwise it is
    /// ignored, and the caller is told why.
    ///
    /// What a believed error does, as Linux's `tcp_v4_err` / `tcp_v6_err` decide it:
    /// - fragmentation needed / Packet Too Big: the path MTU goes down and what is in
    ///   flight is sent again at once at the new size (RFC 1191, RFC 8201); in SYN-SENT it
    ///   is only remembered for the MSS negotiated next;
    /// - any other error in SYN-SENT aborts the attempt (RFC 9293 §3.10.7.2 and RFC 5461
    ///   allow it; Linux does so for every unreachable code up to 15 and time exceeded);
    /// - in a synchronized state it is soft (RFC 1122 §4.2.3.9): the connection goes on
    ///   retransmitting until it succeeds or times out.
    pub fn handle_icmp(&mut self, rx_at: Instant, err: &IcmpError) -> IcmpOutcome {
        if !icmp::quote_names(err, self.cfg.local, self.cfg.remote) {
            return IcmpOutcome::Ignored(IcmpIgnored::OtherConnection);
        }
        if matches!(self.state, State::Closed | State::TimeWait) {
            return IcmpOutcome::Ignored(IcmpIgnored::Closed);
        }
        if !icmp::quote_in_flight(err.quoted_seq, self.snd_una, self.snd_nxt) {
            return IcmpOutcome::Ignored(IcmpIgnored::SeqOutside {
                seq: err.quoted_seq,
                snd_una: self.snd_una,
                snd_nxt: self.snd_nxt,
            });
        }
        if let Some(code) = icmp::unknown_code(err) {
            return IcmpOutcome::Ignored(IcmpIgnored::UnknownCode { code });
        }
        if let IcmpKind::PacketTooBig { mtu } = err.kind {
            return self.on_packet_too_big(rx_at, mtu);
        }
        if self.state == State::SynSent && icmp::aborts_syn_sent(err) {
            self.set_state(State::Closed, rx_at);
            return IcmpOutcome::Aborted;
        }
        // RFC 6069 §4 (Linux's `tcp_ld_RTO_revert`): about the segment being sent again,
        // with a back-off to undo. The timer then runs from the last retransmission with
        // the smaller RTO, and fires at once if that time has passed.
        if self.state != State::SynSent
            && self.retries > 0
            && err.quoted_seq == self.snd_una
            && icmp::reverts_backoff(err)
            && self.rtt.undo_back_off()
        {
            let due = self.last_rtx_at.map_or(rx_at, |t| t + self.rtt.rto());
            if due <= rx_at {
                self.on_retransmit_timeout(rx_at);
            } else {
                self.timers.set(Timer::Retransmit, due);
            }
            return IcmpOutcome::SoftReverted;
        }
        IcmpOutcome::Soft
    }

    /// This host's own kernel would not send one of our segments (EMSGSIZE) because its
    /// path MTU to the peer is `mtu` — what Linux's TCP learns from the same route (a
    /// cached PMTU, `ip route … mtu lock`) without a message on the wire. Handled as a
    /// fragmentation needed that needs no proof (it comes from this host, not the
    /// network): the path MTU goes down and the flight is sent again at the new size.
    /// `None` when the connection is over.
    pub fn handle_local_too_big(&mut self, now: Instant, mtu: u32) -> Option<PmtuChange> {
        if matches!(self.state, State::Closed | State::TimeWait) {
            return None;
        }
        match self.on_packet_too_big(now, mtu) {
            IcmpOutcome::PathMtu(change) => Some(change),
            _ => None,
        }
    }

    /// Timers that are due at `now` fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if self.state == State::Closed {
                return;
            }
            if self.timers.take_expired(timer, now) {
                match timer {
                    Timer::TimeWait => self.on_time_wait_timeout(now),
                    Timer::Retransmit => self.on_retransmit_timeout(now),
                    Timer::Reorder => self.rack_detect(now, 1),
                    Timer::Probe => self.on_probe_timeout(now),
                    Timer::Persist => self.on_persist_timeout(now),
                }
            }
        }
    }

    // --- outputs ---

    /// The next segment to send, built at `now` (its send time for RTT sampling). Call
    /// until `None`: each call returns one segment, and the number of calls that return
    /// `Some` is bounded by the queued control segments plus the peer's window / MSS.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        let mut seg = self.next_transmit(now)?;
        self.monotone_tsval(&mut seg);
        self.note_ts_sent(&seg, now);
        Some(seg)
    }

    /// RFC 7323 §5.4: TSval comes from a clock that is "monotone non-decreasing". Ours is
    /// the time each segment was made, and an ACK is made at the kernel's stamp of the
    /// segment it answers, which can be older than when our last segment left: across a
    /// millisecond boundary the ACK's TSval was one below the one before it (HTTPS walk: 20
    /// of 4001 segments of a survey through a lossy link). Linux tolerates one tick
    /// (TCP_PAWS_WINDOW); a stricter PAWS (RFC 7323 §5.3, FreeBSD's) drops the segment.
    fn monotone_tsval(&mut self, seg: &mut Segment) {
        if let Some((tsval, tsecr)) = seg.options.timestamps {
            let tsval = match self.tsval_sent {
                Some(last) if (tsval.wrapping_sub(last) as i32) < 0 => last,
                _ => tsval,
            };
            seg.options.timestamps = Some((tsval, tsecr));
            self.tsval_sent = Some(tsval);
        }
    }

    fn next_transmit(&mut self, now: Instant) -> Option<Segment> {
        if let Some(seg) = self.tx.pop_front() {
            // A pure ACK with our FIN right behind it (we close as soon as the peer's FIN
            // arrives): the FIN carries the same acknowledgment, so it goes alone, as
            // Linux's does (in CLOSING with the data queued before it: `fin_fits`). Not the handshake's ACK: Linux acknowledges the SYN-ACK as it
            // arrives, before the application can close, and a SYN proxy (nftables'
            // synproxy, iptables' SYNPROXY) takes the third segment for its cookie's ACK
            // and drops what rides on it — a FIN there came again only at the RTO, 200 ms
            // into the close (fault walk, `probe --no-http` through nft synproxy).
            let pure_ack = seg.flags == TcpFlags::ACK && seg.payload.is_empty();
            let handshake_ack = pure_ack && std::mem::take(&mut self.handshake_ack_queued);
            if pure_ack
                && !handshake_ack
                && self.tx.is_empty()
                && self.fin_queued
                && self.fin_fits()
                && let Some(fin) = self.new_data(now)
            {
                self.on_transmit(&fin);
                self.on_new_transmit(&fin, now);
                return Some(fin);
            }
            // The handshake's ACK with data right behind it: the data carries it.
            if pure_ack
                && self.cfg.ack_with_data
                && self.tx.is_empty()
                && self.state == State::Established
                && self.unsent_data() > 0
                && let Some(data) = self.new_data(now)
            {
                self.on_transmit(&data);
                self.on_new_transmit(&data, now);
                return Some(data);
            }
            self.on_transmit(&seg);
            return Some(seg);
        }
        let seg = match self.state {
            State::SynSent if self.snd_nxt == self.cfg.isn => Some(self.new_syn(now)),
            _ if self.sends_data() => self.new_data(now),
            _ => None,
        };
        match &seg {
            Some(s) => {
                self.on_transmit(s);
                self.on_new_transmit(s, now);
            }
            None => self.maybe_arm_persist(now),
        }
        seg
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How many events [`Connection::poll_event`] has waiting.
    #[must_use]
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    // --- segment arrival, by state (RFC 9293 §3.10.7) ---

    /// RFC 9293 §3.10.7.1: in CLOSED every non-RST segment gets a RST.
    fn closed_segment(&mut self, seg: &TcpRepr<'_>) {
        if seg.flags.rst() {
            return;
        }
        let rst = if seg.flags.ack() {
            self.bare_segment(seg.ack, SeqNumber(0), TcpFlags::RST)
        } else {
            let ack = seg.seq.add(seg.segment_len());
            self.bare_segment(SeqNumber(0), ack, TcpFlags::RST | TcpFlags::ACK)
        };
        self.tx.push_back(rst);
    }

    /// RFC 9293 §3.10.7.3.
    fn syn_sent_segment(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        let flags = seg.flags;
        // First: the ACK. snd_una = ISS, snd_nxt = ISS + 1, so "SND.UNA < SEG.ACK =<
        // SND.NXT" means exactly snd_nxt (and the SYN must have gone out).
        let ack_ok = flags.ack() && seg.ack == self.snd_nxt && self.snd_nxt != self.snd_una;
        if flags.ack() && !ack_ok {
            if flags.rst() {
                self.anomaly(rx_at, Anomaly::RstIgnored { seq: seg.seq });
            } else {
                let rst = self.bare_segment(seg.ack, SeqNumber(0), TcpFlags::RST);
                self.tx.push_back(rst);
                self.anomaly(
                    rx_at,
                    Anomaly::BadSynAck {
                        ack: seg.ack,
                        syn: flags.syn(),
                    },
                );
            }
            // An old connection's segment got in the way (most often a server's TIME-WAIT
            // answering our SYN with its ACK): the SYN goes again soon, as Linux's does,
            // once, before any retransmission (`icsk_retransmits == 0`); later ones keep
            // the backed-off timer, so a peer that keeps answering so cannot make us send
            // SYNs faster than the RTO. Not when no retransmission is allowed: the timer
            // would end the wait for a SYN-ACK early.
            if self.retries == 0 && self.cfg.syn_retries > 0 && self.snd_nxt != self.snd_una {
                let at = rx_at + SYN_AGAIN_AFTER_BAD_ACK;
                if self.timers.get(Timer::Retransmit).is_none_or(|t| t > at) {
                    self.timers.set(Timer::Retransmit, at);
                }
            }
            return;
        }
        // Second: RST, acceptable only with an ACK of our SYN (RFC 9293 §3.10.7.3, "If the
        // RST bit is set: If the ACK was acceptable, then signal ... drop the segment, enter
        // CLOSED"; RFC 5961 §3.2's exact-sequence rule is for synchronized states only).
        if flags.rst() {
            if ack_ok {
                self.events.push_back(Event::Refused {
                    at: rx_at,
                    text: rst_text(seg.payload),
                });
                self.set_state(State::Closed, rx_at);
            } else {
                self.anomaly(rx_at, Anomaly::RstIgnored { seq: seg.seq });
            }
            return;
        }
        // Fourth: SYN. Without SYN there is nothing to do here.
        if !flags.syn() {
            return;
        }
        if !ack_ok {
            self.simultaneous_open(rx_at, seg);
            return;
        }
        // RFC 7323 §3.2: the TSecr of a SYN-ACK echoes the TSval of one of our SYNs. Linux
        // (`tcp_rcv_synsent_state_process`, LINUX_MIB_PAWSACTIVEREJECTED) takes a non-zero
        // TSecr outside [first SYN's TSval, now] for a stale or forged SYN-ACK: it answers
        // "reset_and_undo" (a RST with SEG.SEQ = SEG.ACK, RFC 9293 §3.10.7.3 for a bad
        // segment) and stays in SYN-SENT, its SYN retransmitted when the timer fires.
        if let (true, Some(first), Some((_, tsecr))) =
            (self.cfg.timestamps, self.syn_tsval, seg.options.timestamps)
        {
            let now = self.ts_now(rx_at);
            let echoes_ours = tsecr.wrapping_sub(first) <= now.wrapping_sub(first);
            if tsecr != 0 && !echoes_ours {
                let rst = self.bare_segment(seg.ack, SeqNumber(0), TcpFlags::RST);
                self.tx.push_back(rst);
                self.anomaly(rx_at, Anomaly::SynAckBadTsecr { tsecr });
                return;
            }
        }
        self.take_peer_syn(rx_at, seg);
        self.snd_una = seg.ack;
        self.snd_wl2 = seg.ack;
        if !self.ts_rtt_sample(rx_at, seg) {
            self.take_rtt_sample(rx_at);
        }
        self.establish(rx_at);
        self.queue_ack(rx_at);
        self.handshake_ack_queued = true;
        // RFC 9293 §3.10.7.3: "other controls or text" continue at the sixth step.
        if !seg.payload.is_empty() || flags.fin() {
            self.process_text(rx_at, seg.seq.add(1), seg.payload, flags.fin());
        }
    }

    /// What a SYN (with or without ACK) tells us: the peer's ISN, options and window.
    fn take_peer_syn(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        self.irs = seg.seq;
        self.synack_window = seg.window;
        self.synack_at = Some(rx_at);
        self.rcv_nxt = seg.seq.add(1);
        self.negotiate(rx_at, &seg.options);
        // RFC 7323 §2.2: the window of a SYN segment is never scaled.
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        if let (true, Some((tsval, _))) = (self.peer.timestamps, seg.options.timestamps) {
            self.ts_recent = tsval;
            self.ts_recent_valid = true;
        }
    }

    /// ESTABLISHED: our SYN is acknowledged.
    fn establish(&mut self, rx_at: Instant) {
        if self.rtt.srtt().is_none() {
            // Our SYN was sent again and no sample is unambiguous: start the connection
            // from the initial RTO rather than the SYN's backed-off one (RFC 6298 §5.7 would
            // say 3 s; a probe waits `--timeout`, 5 s by default, and a lossy path needs
            // its retransmissions inside that).
            self.rtt = RttEstimator::new(self.cfg.rto_initial, self.cfg.rto_min, self.cfg.rto_max);
        }
        self.retries = 0;
        self.rtx_run = None;
        self.rx_since_progress = 0;
        self.dropped_since_progress = 0;
        self.timers.stop(Timer::Retransmit);
        self.set_state(State::Established, rx_at);
        self.events.push_back(Event::Connected {
            at: rx_at,
            peer: self.peer,
        });
    }

    /// RFC 9293 §3.10.7.3 fourth step, a SYN without ACK (MUST-10): the peer's SYN crossed
    /// ours. SYN-RECEIVED, and our SYN again with an ACK of theirs. Linux does the same
    /// (`tcp_rcv_synsent_state_process`: "simultaneous connect with crossed SYNs"), sends
    /// its SYN-ACK with the ISN of its SYN, and, like it, we drop any data the SYN carried
    /// ("discard packet for sanity": RFC 9293 lets it be queued, nothing requires it).
    fn simultaneous_open(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        if self.snd_nxt == self.snd_una {
            // Our SYN has not gone out: nothing crossed.
            return;
        }
        self.anomaly(rx_at, Anomaly::SimultaneousOpen { seq: seg.seq });
        self.take_peer_syn(rx_at, seg);
        self.set_state(State::SynReceived, rx_at);
        let synack = self.synack_segment(rx_at, false);
        self.tx.push_back(synack);
        // The retransmission timer of our SYN keeps running: it now repeats the SYN-ACK.
    }

    /// RFC 7323 §2.2, §3.2 and RFC 2018 §2: an option is used only if both sides sent it.
    fn negotiate(&mut self, rx_at: Instant, opts: &TcpOptions) {
        let wscale = opts.wscale.map(|s| s.min(MAX_WSCALE));
        if let Some(s) = wscale {
            self.snd_wscale = s;
            self.rcv_wscale = self.cfg.wscale.min(MAX_WSCALE);
        }
        let timestamps = self.cfg.timestamps && opts.timestamps.is_some();
        let sack_permitted = self.cfg.sack_permitted && opts.sack_permitted;
        // Linux's `tcp_parse_options`: "if (in_mss)": an MSS of 0 sets nothing, and the
        // default of RFC 9293 §3.7.1 stands, as if there were no option.
        let offered = opts.mss.filter(|&m| m != 0);
        let default = default_mss(self.cfg.remote.is_ipv6());
        let peer_mss = offered.unwrap_or(default);
        // Linux's `__tcp_mtu_to_mss`: never below TCP_MIN_SND_MSS (48), before options
        // come out; a peer asking for less would get 1-byte segments otherwise.
        let floored = peer_mss.max(MIN_SND_MSS);
        if let Some(m) = opts.mss
            && (m == 0 || m < MIN_SND_MSS)
        {
            let used = if m == 0 { default } else { floored };
            self.anomaly(rx_at, Anomaly::MssAdjusted { offered: m, used });
        }
        self.mss_limit = floored.min(self.cfg.mss.max(MIN_SND_MSS));
        self.peer = PeerOptions {
            mss: opts.mss,
            wscale,
            sack_permitted,
            timestamps,
        };
        // A path MTU learned in SYN-SENT (a Packet Too Big about our SYN) applies now.
        self.update_send_mss();
    }

    // --- path MTU (RFC 1191, RFC 8201, RFC 2923) ---

    /// The MSS our SYN offers: the route's, or less when a path MTU known from before is
    /// lower (Linux's advmss comes from the route's MTU, a learned one included).
    fn advertised_mss(&self) -> u16 {
        match self.path_mtu {
            Some(mtu) => {
                let fit = mtu.saturating_sub(ip_and_tcp_header_len(&self.cfg));
                self.cfg
                    .mss
                    .min(u16::try_from(fit).unwrap_or(u16::MAX).max(MIN_SND_MSS))
            }
            None => self.cfg.mss,
        }
    }

    /// A path MTU an ICMP error taught this connection (not a black hole's guess), for the
    /// next connection to the same address ([`Config::known_path_mtu`]).
    pub fn learned_path_mtu(&self) -> Option<KnownPathMtu> {
        if self.black_hole != BlackHole::No || !self.pmtu_learned {
            return None;
        }
        self.path_mtu.map(|mtu| KnownPathMtu {
            mtu,
            locked: self.pmtu_locked,
        })
    }

    /// The route's MTU, as our own MSS was derived from it (RFC 9293 §3.7.1).
    fn route_mtu(&self) -> u32 {
        u32::from(self.cfg.mss) + ip_and_tcp_header_len(&self.cfg)
    }

    /// The path MTU in use: the route's until something lowered it.
    fn current_mtu(&self) -> u32 {
        self.path_mtu.unwrap_or_else(|| self.route_mtu())
    }

    /// Options every data segment carries (timestamps, once negotiated).
    fn option_overhead(&self) -> u32 {
        if self.peer.timestamps {
            u32::from(TS_OPTION_LEN)
        } else {
            0
        }
    }

    /// Payload bytes that fit a packet of `mtu` bytes (Linux's `tcp_mtu_to_mss`).
    fn mtu_to_mss(&self, mtu: u32) -> u16 {
        let mss = mtu.saturating_sub(ip_and_tcp_header_len(&self.cfg) + self.option_overhead());
        u16::try_from(mss).unwrap_or(u16::MAX)
    }

    /// RFC 9293 §3.7.1 (the effective send MSS) with RFC 1191 §3's path MTU: the smaller
    /// of the two MSS values and what fits the path, less the options in use.
    fn update_send_mss(&mut self) {
        let limit = u32::from(self.mss_limit).saturating_sub(self.option_overhead());
        let mut mss = u16::try_from(limit).unwrap_or(u16::MAX);
        if let Some(mtu) = self.path_mtu {
            mss = mss.min(self.mtu_to_mss(mtu));
        }
        self.send_mss = mss.max(1);
    }

    /// The IPv4 floor or IPv6 minimum below which no path MTU goes.
    fn min_mtu(&self) -> u32 {
        if self.cfg.local.is_ipv6() {
            icmp::IPV6_MIN_MTU
        } else {
            icmp::IPV4_MIN_PMTU
        }
    }

    /// A fragmentation-needed (RFC 1191 §4) or Packet Too Big (RFC 8201 §4) about a
    /// segment in flight: lower the path MTU, never raise it (RFC 1191 §3, RFC 8201 §4),
    /// and send what is in flight again at once at the new size.
    fn on_packet_too_big(&mut self, now: Instant, reported: u32) -> IcmpOutcome {
        if self.cfg.local.is_ipv6() && reported < icmp::IPV6_MIN_MTU {
            return IcmpOutcome::Ignored(IcmpIgnored::MtuBelowMinimum { mtu: reported });
        }
        // IPv4: Linux takes anything below its floor (0 from an old router included) as
        // the floor itself, and locks the path MTU there: DF goes (see `pmtu_locked`).
        let mtu = reported.max(self.min_mtu());
        let newly_locked = !self.cfg.local.is_ipv6() && reported < mtu && !self.pmtu_locked;
        self.pmtu_locked |= newly_locked;
        self.pmtu_learned |= newly_locked;
        let mss_before = self.send_mss;
        let mut change = PmtuChange {
            reported,
            path_mtu: self.current_mtu(),
            lowered: false,
            locked: newly_locked,
            mss_before,
            mss_after: mss_before,
            resent: 0,
            withdrawn: 0,
        };
        if mtu >= self.current_mtu() {
            // Already at the floor: nothing to cut. What the router refused goes again when
            // its timer fires, without DF now (Linux: no `tcp_simple_retransmit` when the
            // MTU did not go down).
            return IcmpOutcome::PathMtu(change);
        }
        self.path_mtu = Some(mtu);
        self.pmtu_learned = true;
        change.path_mtu = mtu;
        change.lowered = true;
        if self.state == State::SynSent {
            // The SYN is small; the hint takes effect once the MSS is negotiated.
            return IcmpOutcome::PathMtu(change);
        }
        self.update_send_mss();
        change.mss_after = self.send_mss;
        if self.send_mss < mss_before {
            change.withdrawn = self.unqueue_too_big();
            change.resent = self.resend_flight(now);
        }
        IcmpOutcome::PathMtu(change)
    }

    /// Take back the segments still queued that no longer fit the path: retransmissions
    /// an earlier, larger path MTU cut (two errors read in one batch, 1400 then 1200 from
    /// routers one behind the other) would only draw another error each. Their bytes are
    /// in the flight at that size, so [`Self::resend_flight`] cuts them again; Linux's
    /// `tcp_simple_retransmit` likewise cuts its queue at the current MSS as it sends.
    /// They never left, so they are not counted as sent again. Returns how many.
    fn unqueue_too_big(&mut self) -> u32 {
        let mss = usize::from(self.send_mss);
        let before = self.tx.len();
        let mut taken = 0u32;
        self.tx.retain(|seg| {
            let keep = seg.payload.len() <= mss;
            taken += u32::from(!keep && seg.retransmission);
            keep
        });
        if self.tx.len() < before {
            self.retransmissions = self.retransmissions.saturating_sub(taken);
        }
        (before - self.tx.len()) as u32
    }

    /// Take back the retransmissions still queued whose bytes the ACK just read covers:
    /// an earlier packet of the same tap read (RACK's loss call, a SACK) queued them, and
    /// sent after this one they would carry only acknowledged data — a spurious
    /// retransmission the peer D-SACKs (walk 16, `reorder=25%`: 5 of 12 probes sent
    /// acknowledged bytes again; Linux, which sends as it reads, none). They never left,
    /// so they are not counted as sent again. Segments with a FIN keep it.
    fn unqueue_acked(&mut self) {
        let una = self.snd_una;
        let mut taken = 0u32;
        self.tx.retain(|seg| {
            let acked = seg.retransmission
                && !seg.payload.is_empty()
                && !seg.flags.syn()
                && !seg.flags.fin()
                && seg.seq.add(seg.payload.len() as u32).le(una);
            taken += u32::from(acked);
            !acked
        });
        self.retransmissions = self.retransmissions.saturating_sub(taken);
    }

    /// Send again, now, the bytes in flight that went out in segments longer than the
    /// send MSS, cut at it (RFC 1191 §6.4; Linux's `tcp_simple_retransmit`, whose
    /// retransmissions also join adjacent lost bytes into full segments). Shorter segments
    /// fit the path and may have arrived: the retransmission timer covers them. A router
    /// dropped these for their size, so this says nothing about congestion: the RTO is not
    /// backed off and no retry is counted; by Karn's rule nothing in flight is timed.
    /// Returns the segments queued.
    fn resend_flight(&mut self, now: Instant) -> u32 {
        if self.persist_probe_out {
            return 0;
        }
        let mss = u32::from(self.send_mss);
        let mut queued = 0;
        for (start, len) in self.flight.runs_longer_than(mss) {
            // PSH on the last of each run, as Linux's re-cut segments carry it.
            queued += self.resend(now, start, len, true, MAX_RESEND.saturating_sub(queued));
        }
        if queued > 0 {
            self.rtt_probe = None;
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        queued
    }

    /// Queues `[start, start + len)` again, cut at the MSS, at most `budget` segments.
    /// PSH on the last of them where it first was, on the last byte the caller gave (RFC
    /// 9293 §3.9.1.2) — or, with `push_run_end`, whatever it ends at. Never past the
    /// peer's window (RFC 9293 §3.8.6 SHLD-16, as in `earliest_unacked`): only the head
    /// goes into a zero window. Returns the segments queued.
    fn resend(
        &mut self,
        now: Instant,
        start: SeqNumber,
        len: u32,
        push_run_end: bool,
        budget: u32,
    ) -> u32 {
        let mss = u32::from(self.send_mss).max(1);
        let data_end = self.snd_una.add(self.send_buf.len() as u32);
        let wnd_end = self.snd_una.add(self.snd_wnd);
        let (mut offset, mut queued) = (0, 0);
        while offset < len && queued < budget {
            let seq = start.add(offset);
            let room = match self.snd_wnd {
                0 if seq == self.snd_una => u32::MAX,
                _ => wnd_end.diff(seq).max(0) as u32,
            };
            if room == 0 {
                break;
            }
            let n = (len - offset).min(mss).min(room);
            let fin = self.fin_sent && seq.add(n) == data_end;
            let mut seg = self.data_segment(seq, n as usize, fin, now, true);
            if offset + n == len && (push_run_end || seq.add(n) == data_end) {
                seg.flags = seg.flags | TcpFlags::PSH;
            }
            self.flight.sent(seq, n, now, true);
            self.retransmissions += 1;
            self.events.push_back(Event::Retransmit {
                at: now,
                seq: seg.seq,
                flags: seg.flags,
                attempt: self.retries,
            });
            self.tx.push_back(seg);
            queued += 1;
            offset += n;
        }
        queued
    }

    /// At an RTO expiry: is this the black hole (RFC 2923 §2.1)? The same segment, bigger
    /// than the safe size, lost [`BLACK_HOLE_AFTER`] times in a row after a handshake
    /// whose small segments got through — and no segment of ours as big got through (a
    /// SACK or an ACK of one refutes it: on a lossy path the same segment lost twice is
    /// chance, and a walk's survey at 15 % loss reported a black hole on a path whose
    /// other full-sized segments were SACKed). If so, fall back to the safe MTU (IPv6:
    /// 1280, RFC 8200 §5; IPv4: 576, segments of the default MSS 536) and send the flight
    /// again at that size. Returns whether it did.
    fn black_hole_fallback(&mut self, now: Instant) -> bool {
        let safe = if self.cfg.local.is_ipv6() {
            icmp::IPV6_MIN_MTU
        } else {
            icmp::IPV4_SAFE_MTU
        };
        // What the timeouts were of: the head as `earliest_unacked` sends it (a shrunk
        // window's small segments are no sign of a black hole).
        let mut head = self.sent_data().min(usize::from(self.send_mss));
        if self.snd_wnd > 0 {
            head = head.min(self.snd_wnd as usize);
        }
        if self.retries != BLACK_HOLE_AFTER
            || self.largest_delivered as usize >= head
            || self.black_hole != BlackHole::No
            || self.persist_probe_out
            || self.current_mtu() <= safe
            || head <= usize::from(self.mtu_to_mss(safe))
        {
            return false;
        }
        self.black_hole = BlackHole::Suspected;
        self.path_mtu = Some(safe);
        self.update_send_mss();
        self.events.push_back(Event::BlackHoleSuspected {
            at: now,
            mtu: safe,
            mss: self.send_mss,
        });
        self.resend_flight(now) > 0
    }

    /// RFC 9293 §3.10.7.4 for ESTABLISHED and later states, with RFC 5961's RST, SYN and
    /// ACK checks.
    fn synchronized_segment(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        let flags = seg.flags;
        let seg_len = seg.segment_len();

        // A retransmitted FIN in TIME-WAIT (our last ACK was lost): ACK it again and
        // restart the timer (RFC 9293 §3.10.7.4 eighth step, TIME-WAIT).
        if self.state == State::TimeWait
            && flags.fin()
            && !flags.rst()
            && !flags.syn()
            && seg.seq.add(seg_len) == self.rcv_nxt
        {
            self.anomaly(rx_at, Anomaly::FinInTimeWait);
            self.fins_in_time_wait = self.fins_in_time_wait.saturating_add(1);
            self.queue_ack(rx_at);
            self.timers.set(Timer::TimeWait, rx_at + self.cfg.time_wait);
            return;
        }

        // RFC 7323 §3.2: after timestamps were negotiated every segment but a RST carries
        // them, and only then may one. A middlebox stripping or adding options breaks
        // that; we take the segment, as Linux does, and say so once.
        if !flags.rst() && !self.ts_oddity_noted {
            let has = seg.options.timestamps.is_some();
            let odd = match (self.peer.timestamps, has) {
                (true, false) => Some(Anomaly::TimestampsMissing { seq: seg.seq }),
                (false, true) => Some(Anomaly::TimestampsUnnegotiated { seq: seg.seq }),
                _ => None,
            };
            if let Some(a) = odd {
                self.ts_oddity_noted = true;
                self.anomaly(rx_at, a);
            }
        }

        // RFC 7323 §2.2: a window scale option is honoured only when both SYNs carried one.
        // A middlebox that strips it from the SYN-ACK alone leaves the peer scaling what it
        // advertises and us reading it unscaled: a window of 65160 in the SYN-ACK, then 64
        // (a fault walk's nft `reset tcp option window` did that; Linux is as blind). Said
        // once, at the peer's first segment after the handshake.
        if !self.wscale_checked && !flags.syn() && !flags.rst() && self.state != State::SynSent {
            self.wscale_checked = true;
            let (was, now) = (self.synack_window, seg.window);
            if self.snd_wscale == 0
                && self.cfg.wscale > 0
                && was >= 1024
                && u32::from(now) * 16 <= u32::from(was)
            {
                self.anomaly(
                    rx_at,
                    Anomaly::WindowScaleStripped {
                        synack_window: was,
                        window: now,
                    },
                );
            }
        }

        // RFC 7323 §5.3 R1 (PAWS), before the sequence check as there; RSTs are exempt
        // (§5.3: "RST segments ... acceptable regardless of their timestamp", and Linux's
        // "Reset is accepted even if it did not pass PAWS").
        if !flags.rst() && self.paws_rejects(seg) {
            if let Some((tsval, _)) = seg.options.timestamps {
                self.anomaly(
                    rx_at,
                    Anomaly::PawsRejected {
                        tsval,
                        ts_recent: self.ts_recent,
                    },
                );
            }
            self.dropped_since_progress = self.dropped_since_progress.saturating_add(1);
            self.queue_dupack(rx_at, seg_len);
            return;
        }

        // Second step, RFC 5961 §3.2: exact RST resets (after the peer's FIN, so does one
        // at the FIN's own sequence number, as in Linux: `rst_at_peer_fin`), in-window RST
        // is challenged, any other ignored.
        if flags.rst() {
            if seg.seq == self.rcv_nxt && self.state == State::TimeWait {
                // TIME-WAIT: both FINs are acknowledged, the connection is closed and only
                // waits out stray segments. RFC 9293 §3.10.7.4 ends TIME-WAIT on a RST, as
                // Linux does by default (`tcp_timewait_state_process`, `tcp_rfc1337` = 0;
                // RFC 1337 §3 would ignore it instead). Linux tells no one: its application
                // closed long ago. Neither is it a reset of the connection here: a peer
                // that has forgotten the connection answers any segment of ours this way,
                // e.g. our ACK of an old segment of its own that a path reordered behind
                // its FIN. The close stays an orderly close; the RST is noted.
                self.anomaly(rx_at, Anomaly::RstInTimeWait { seq: seg.seq });
                self.set_state(State::Closed, rx_at);
                self.events.push_back(Event::Closed { at: rx_at });
            } else if seg.seq == self.rcv_nxt || self.rst_at_peer_fin(seg.seq) {
                self.note_unsent_at_reset(rx_at);
                self.events.push_back(Event::Reset {
                    at: rx_at,
                    state: self.state,
                    at_peer_fin: seg.seq != self.rcv_nxt,
                    text: rst_text(seg.payload),
                });
                self.set_state(State::Closed, rx_at);
            } else if seg.seq.in_window(self.rcv_nxt, self.rcv_wnd()) {
                self.queue_ack(rx_at);
                self.anomaly(rx_at, Anomaly::RstChallenged { seq: seg.seq });
            } else {
                self.anomaly(rx_at, Anomaly::RstIgnored { seq: seg.seq });
            }
            return;
        }

        // Simultaneous open, SYN-RECEIVED: the peer's own SYN-ACK (its SYN again, now with
        // an ACK of ours) completes the handshake. RFC 5961 §4 would challenge it; Linux
        // lets exactly this one through (`tcp_validate_incoming`: SYN-RECV, SEG.SEQ + 1 =
        // RCV.NXT, SEG.ACK = SND.NXT) and ACKs it, as an old segment.
        if self.state == State::SynReceived
            && flags.syn()
            && flags.ack()
            && seg.seq == self.irs
            && seg.ack == self.snd_nxt
        {
            self.update_ts_recent(seg);
            self.complete_simultaneous_open(rx_at, seg);
            self.queue_ack(rx_at);
            return;
        }

        // Fourth step, RFC 5961 §4: any SYN gets a challenge ACK, whatever its sequence.
        if flags.syn() {
            self.queue_ack(rx_at);
            let again = flags.ack() && seg.seq == self.irs;
            let after = self.synack_at.map(|first| rx_at.saturating_since(first));
            let anomaly = match after {
                Some(after) if again && after < SYNACK_RETRANSMIT_FLOOR => Anomaly::SynAckCopy {
                    seq: seg.seq,
                    after,
                },
                _ => Anomaly::SynChallenged {
                    seq: seg.seq,
                    again,
                },
            };
            self.anomaly(rx_at, anomaly);
            return;
        }

        // First step: the acceptability test.
        if !self.acceptable(seg.seq, seg_len) {
            self.queue_dupack(rx_at, seg_len);
            // Entirely below RCV.NXT: bytes we already have, sent again (the peer missed
            // our ACK, or a path duplicated it). Not "outside the window" in any sense a
            // reader cares about.
            let anomaly = if seg.seq.lt(self.rcv_nxt) && seg.seq.add(seg_len).le(self.rcv_nxt) {
                Anomaly::Duplicate {
                    seq: seg.seq,
                    len: seg_len,
                }
            } else {
                self.dropped_since_progress = self.dropped_since_progress.saturating_add(1);
                Anomaly::OutOfWindow {
                    seq: seg.seq,
                    len: seg_len,
                }
            };
            self.anomaly(rx_at, anomaly);
            return;
        }
        self.update_ts_recent(seg);

        // Fifth step: the ACK field.
        if !flags.ack() {
            return;
        }
        if self.state == State::SynReceived {
            // RFC 9293 §3.10.7.4, SYN-RECEIVED: SND.UNA < SEG.ACK =< SND.NXT enters
            // ESTABLISHED; any other ACK gets <SEQ=SEG.ACK><CTL=RST>.
            if seg.ack.gt(self.snd_una) && seg.ack.le(self.snd_nxt) {
                self.complete_simultaneous_open(rx_at, seg);
            } else {
                let rst = self.bare_segment(seg.ack, SeqNumber(0), TcpFlags::RST);
                self.tx.push_back(rst);
                self.anomaly(rx_at, Anomaly::AckOfUnsentData { ack: seg.ack });
                return;
            }
        }
        if seg.ack.gt(self.snd_nxt) {
            // RFC 5961 §5.2 / RFC 9293: ACK of something not yet sent.
            self.queue_ack(rx_at);
            self.anomaly(rx_at, Anomaly::AckOfUnsentData { ack: seg.ack });
            return;
        }
        if seg.ack.lt(self.snd_una.sub(self.max_snd_wnd)) {
            self.queue_ack(rx_at);
            self.anomaly(rx_at, Anomaly::AckTooOld { ack: seg.ack });
            return;
        }
        self.process_ack(rx_at, seg);

        let fin_acked = self.our_fin_acked();
        match self.state {
            State::Closing if fin_acked => {
                self.enter_time_wait(rx_at);
                return;
            }
            State::LastAck if fin_acked => {
                self.set_state(State::Closed, rx_at);
                self.events.push_back(Event::Closed { at: rx_at });
                return;
            }
            _ => {}
        }

        // Seventh and eighth steps: text and FIN, while the peer may still send.
        if matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) && (!seg.payload.is_empty() || flags.fin())
        {
            self.process_text(rx_at, seg.seq, seg.payload, flags.fin());
        }
        // Done after the FIN so that FIN-WAIT-1 + FIN + ACK of our FIN goes straight
        // to TIME-WAIT.
        if self.state == State::FinWait1 && fin_acked {
            self.set_state(State::FinWait2, rx_at);
        }
    }

    /// SYN-RECEIVED → ESTABLISHED on an ACK of our SYN (its window as in RFC 9293
    /// §3.10.7.4: SND.WND, SND.WL1, SND.WL2 from this segment).
    fn complete_simultaneous_open(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        self.snd_una = seg.ack;
        // A SYN-ACK's window is never scaled (RFC 7323 §2.2); a plain ACK's is.
        self.snd_wnd = if seg.flags.syn() {
            u32::from(seg.window)
        } else {
            u32::from(seg.window) << self.snd_wscale
        };
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        if !self.ts_rtt_sample(rx_at, seg) {
            self.take_rtt_sample(rx_at);
        }
        self.establish(rx_at);
    }

    /// RFC 7323 §5.3 R1: a TSval older than TS.Recent marks an old duplicate (or a
    /// forgery). Linux's `tcp_paws_discard`: older by more than `TCP_PAWS_WINDOW` (1),
    /// and not a "disordered ACK" (`tcp_disordered_ack`: a pure duplicate ACK at RCV.NXT
    /// that updates no window, its TSval within an RTO of TS.Recent, can be reordered
    /// behind newer data on a fast sender and is harmless).
    fn paws_rejects(&self, seg: &TcpRepr<'_>) -> bool {
        let (true, true, Some((tsval, _))) = (
            self.peer.timestamps,
            self.ts_recent_valid,
            seg.options.timestamps,
        ) else {
            return false;
        };
        let behind = self.ts_recent.wrapping_sub(tsval) as i32;
        if behind <= PAWS_WINDOW {
            return false;
        }
        let window = u32::from(seg.window) << self.snd_wscale;
        let disordered_ack = seg.flags.ack()
            && seg.segment_len() == 0
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_una
            && !(seg.seq.gt(self.snd_wl1)
                || (seg.seq == self.snd_wl1 && (window > self.snd_wnd || window == 0)))
            && i64::from(behind) <= (self.rtt.rto().as_millis() as i64) * 1024 / 1000;
        !disordered_ack
    }

    /// RFC 9293 §3.10.7.4, first step: the four cases.
    fn acceptable(&self, seq: SeqNumber, seg_len: u32) -> bool {
        let wnd = self.rcv_wnd();
        match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_window(self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => {
                seq.in_window(self.rcv_nxt, wnd)
                    || seq.add(seg_len - 1).in_window(self.rcv_nxt, wnd)
            }
        }
    }

    /// RFC 7323 §4.3: TS.Recent follows the peer's TSval for segments that are not
    /// ahead of our last ACK (an older TSval that PAWS let through is not taken).
    fn update_ts_recent(&mut self, seg: &TcpRepr<'_>) {
        if !self.peer.timestamps {
            return;
        }
        if let Some((tsval, _)) = seg.options.timestamps {
            let newer = tsval.wrapping_sub(self.ts_recent) as i32 >= 0;
            if newer && seg.seq.le(self.last_ack_sent) {
                self.ts_recent = tsval;
                self.ts_recent_valid = true;
            }
        }
    }

    /// RFC 9293 §3.10.7.4 fifth step for an acceptable ACK value, plus RFC 6298 timer
    /// management.
    fn process_ack(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        let ack = seg.ack;
        if ack.lt(self.snd_una) {
            // Old duplicate within MAX.SND.WND: nothing to learn from its ACK field, but
            // its SACK blocks still say what the peer holds (RFC 6675 §5: the scoreboard
            // is updated by every ACK with SACK information; Linux's `tcp_ack` tags them
            // at `old_ack`). ACKs overtaken by newer ones (a reordering return path) may
            // carry blocks the newer ones dropped for want of room (three or four per
            // ACK): left unread, RACK sent those segments again.
            let delivered = self.read_sack_blocks(rx_at, seg);
            if delivered > 0 {
                self.rack_detect(rx_at, delivered);
                self.arm_loss_probe(rx_at);
            }
            return;
        }
        // Segments this ACK delivered, cumulatively or in SACK blocks (RACK's budget), one
        // more when it moves SND.UNA: RFC 6937 §3.1's PRR-SSRB adds an MSS while the pipe
        // is below ssthresh, as Linux's `tcp_cwnd_reduction` does on such an ACK. Without
        // it a request lost whole went back one segment per round trip (walk 16: 81 ms to
        // the first byte, curl 59 ms on the same wire).
        let mut delivered = u32::from(ack.gt(self.snd_una));
        // Any acceptable ACK answers a zero-window probe (Linux resets `icsk_probes_out`
        // on every ACK): the peer is alive, and RFC 9293 §3.8.6.1 (MUST-36) keeps the
        // connection open for as long as it answers.
        self.persist_answered |= self.persist_unanswered > 0;
        self.persist_unanswered = 0;
        if ack.gt(self.snd_una) {
            let acked = ack.diff(self.snd_una) as u32;
            let data = (acked as usize).min(self.send_buf.len());
            self.send_buf.drain(..data);
            self.snd_una = ack;
            let (rack, largest) = (&mut self.rack, &mut self.largest_delivered);
            self.flight.acked(ack, |s| {
                delivered += 1;
                *largest = (*largest).max(s.len);
                rack.delivered(rx_at, s);
            });
            if self.flight.head_sacked() {
                // RFC 2018 §8: the ACK stops at data the peer SACKed, so it no longer
                // holds it (reneged: Linux's receiver prunes its out-of-order queue under
                // memory pressure). The marks go; this ACK's SACK blocks (below) mark
                // again what it still holds, and RACK (RFC 8985 §6.2) judges the rest.
                // Kept, each reneged segment waited for one more backed-off RTO.
                self.flight.forget_sacks();
            }
            if self.black_hole == BlackHole::Suspected {
                // Acknowledged only after the fall back to the safe size: the smaller
                // segments got through where the big ones had vanished, twice.
                self.black_hole = BlackHole::Confirmed;
                self.events.push_back(Event::BlackHoleConfirmed {
                    at: rx_at,
                    mtu: self.current_mtu(),
                });
            }
            if !self.ts_rtt_sample(rx_at, seg) {
                self.take_rtt_sample(rx_at);
            }
            self.unqueue_acked();
            self.retries = 0;
            self.rtx_run = None;
            self.rx_since_progress = 0;
            self.dropped_since_progress = 0;
            self.persist_probes = 0;
            self.persist_probe_out = false;
            // RFC 6298 §5.2, §5.3.
            if self.snd_una == self.snd_nxt {
                self.timers.stop(Timer::Retransmit);
            } else {
                self.timers.set(Timer::Retransmit, rx_at + self.rtt.rto());
            }
        }
        // SND.UNA =< SEG.ACK =< SND.NXT: window update if the segment is newer than the
        // one that last set it (SND.WL1/WL2).
        if self.snd_wl1.lt(seg.seq) || (self.snd_wl1 == seg.seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            if self.snd_wnd > 0 {
                self.timers.stop(Timer::Persist);
                self.persist_probes = 0;
                self.persist_unanswered = 0;
                self.persist_answered = false;
                self.persist_probe_out = false;
                if self.snd_una != self.snd_nxt && !self.timers.is_set(Timer::Retransmit) {
                    self.timers.set(Timer::Retransmit, rx_at + self.rtt.rto());
                }
            }
        }
        // RFC 8985 §6.2 steps 1–2: what this ACK delivered, cumulatively or in its SACK
        // blocks, then step 5.
        delivered += self.read_sack_blocks(rx_at, seg);
        if self.tlp_end.is_some_and(|end| ack.ge(end)) {
            self.tlp_end = None;
        }
        self.rack_detect(rx_at, delivered);
        self.arm_loss_probe(rx_at);
    }

    /// Data of ours is unacknowledged and may be sent again by RACK or a loss probe: not
    /// while a zero window is probed (the probe's byte is the persist timer's), nor in a
    /// state that sends no data.
    fn data_to_recover(&self) -> bool {
        self.snd_una != self.snd_nxt && !self.persist_probe_out && self.sends_data()
    }

    /// The ACK's SACK blocks (RFC 2018; read only when SACK was agreed on) mark what they
    /// cover in the flight; each segment newly marked teaches RACK (RFC 8985 §6.2 step 2)
    /// and shows the path carries segments that big (`black_hole_fallback`). Returns how
    /// many were newly marked.
    fn read_sack_blocks(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) -> u32 {
        let mut delivered = 0;
        if self.peer.sack_permitted {
            let (rack, largest) = (&mut self.rack, &mut self.largest_delivered);
            self.flight.sack(seg.options.sack(), |s| {
                delivered += 1;
                *largest = (*largest).max(s.len);
                rack.delivered(rx_at, s);
            });
        }
        delivered
    }

    /// RFC 8985 §7.2: while data is in flight and nothing else will find a lost tail (no
    /// reordering timer, no probe out, not in timeout recovery, nothing SACKed), arm the
    /// tail loss probe: 2·SRTT, at least [`TLP_MIN`], and only when that comes before the
    /// RTO. Needs SACK (the probe's answer tells what was lost, §7.4), as in Linux. Not for
    /// a flight of one segment: there the probe waits for the peer's delayed ACK too
    /// (200 ms, §7.2's WCDelAckT) and would go with the RTO.
    fn arm_loss_probe(&mut self, now: Instant) {
        self.timers.stop(Timer::Probe);
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        // §7.2: not "in fast recovery, RTO recovery, or [when] segments have been SACKed
        // (i.e., RACK.segs_sacked is not zero)" (Linux: only in TCP_CA_Open). A SACK
        // means RACK and its timer judge the flight; a probe then sent the SACKed tail
        // again (a retransmission for nothing) 2·SRTT after each duplicate ACK.
        if !self.peer.sack_permitted
            || self.tlp_end.is_some()
            || self.retries > 0
            || self.flight.sacked_count() > 0
            || self.flight.len() < 2
            || self.snd_wnd == 0
            || !self.data_to_recover()
            || self.timers.is_set(Timer::Reorder)
        {
            return;
        }
        let at = now + srtt.saturating_mul(2).max(TLP_MIN);
        // A probe no sooner than the RTO is left to the RTO (RFC 8985 §7.2 would send the
        // probe in its place, un-backed-off; Linux too).
        if self
            .timers
            .get(Timer::Retransmit)
            .is_some_and(|rto_at| rto_at <= at)
        {
            return;
        }
        self.timers.set(Timer::Probe, at);
    }

    /// RFC 8985 §7.3: the tail went unanswered for a PTO. New data would have gone
    /// already (only the peer's window holds ours back), so the last segment goes again:
    /// if only the tail was lost, the peer's ACK of it now shows the rest (RACK then
    /// finds what else is missing); no back-off, the RTO restarts.
    fn on_probe_timeout(&mut self, now: Instant) {
        if !self.data_to_recover() {
            return;
        }
        let Some(&last) = self.flight.last() else {
            return;
        };
        let mss = u32::from(self.send_mss).max(1);
        // One segment's worth: the end of the last one sent.
        let len = last.len.min(mss);
        let start = last.end().sub(len);
        if self.resend(now, start, len, false, 1) == 0 {
            return;
        }
        self.tlp_end = Some(self.snd_nxt);
        self.rtt_probe = None;
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// RFC 8985 §6.2 step 5 (and §6.3's timer): sends again what RACK finds lost, at
    /// most `budget` segments, and sets the reordering timer for what it may find lost
    /// later. The budget is what the ACK delivered, one more when it moved SND.UNA (one
    /// on the timer): what goes out in recovery follows what arrives, as Linux's PRR (RFC
    /// 6937) lets one segment go for each delivered and one more on such an ACK — the
    /// rest stays lost and goes with the next ACKs (or the RTO).
    /// Not while a zero window is probed (the probe's byte is the persist timer's).
    fn rack_detect(&mut self, now: Instant, budget: u32) {
        self.timers.stop(Timer::Reorder);
        if !self.data_to_recover() {
            return;
        }
        let found = self.rack.detect(now, &self.flight, self.rtt.srtt());
        if let Some(at) = found.recheck {
            self.timers.set(Timer::Reorder, at + REO_TIMER_SLACK);
        }
        let budget = budget.min(MAX_RESEND);
        let mut queued = 0;
        for s in found.lost {
            queued += self.resend(now, s.seq, s.len, false, budget.saturating_sub(queued));
        }
        if queued > 0 {
            // Karn: an ACK of these bytes no longer times one transmission.
            self.rtt_probe = None;
            // Linux's `tcp_retransmit_skb` restarts the timer for the head it sends again.
            if self
                .flight
                .unsacked()
                .next()
                .is_some_and(|s| s.seq == self.snd_una && s.again)
            {
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
        }
    }

    /// Seventh and eighth steps: trim to the window, reassemble, deliver, take an
    /// in-order FIN, and ACK at once.
    fn process_text(&mut self, rx_at: Instant, seq: SeqNumber, payload: &[u8], fin: bool) {
        let len = payload.len() as u32;
        if len > self.largest_rcv_payload {
            self.largest_rcv_payload = len;
            self.largest_rcv_count = 1;
        } else if len == self.largest_rcv_payload && len > 0 {
            self.largest_rcv_count = self.largest_rcv_count.saturating_add(1);
        }
        let wnd = self.rcv_wnd();
        let mut seq = seq;
        let mut data = payload;
        let mut fin = fin;
        // Left edge: drop what we already have.
        if seq.lt(self.rcv_nxt) {
            let skip = self.rcv_nxt.diff(seq).unsigned_abs() as usize;
            if skip > data.len() {
                data = &[];
                fin = false; // an old FIN, already taken
            } else {
                data = &data[skip..];
            }
            seq = self.rcv_nxt;
        }
        let offset = seq.diff(self.rcv_nxt).max(0) as u32;
        // Right edge: never hold more than the window. The FIN uses no buffer, so it is
        // kept when the data just fills the window.
        let room = wnd.saturating_sub(offset) as usize;
        if data.len() > room {
            let cut = (data.len() - room) as u32 + u32::from(fin);
            self.anomaly(
                rx_at,
                Anomaly::BeyondWindow {
                    seq: self.rcv_nxt.add(wnd),
                    len: cut,
                },
            );
            data = &data[..room];
            fin = false;
        }
        if self.reassembly.insert(offset, data) {
            self.anomaly(
                rx_at,
                Anomaly::OverlapConflict {
                    seq,
                    len: data.len() as u32,
                },
            );
        }
        // After the data, so a FIN with data is the most recent arrival of its block.
        if fin {
            self.peer_fin = Some(seq.add(data.len() as u32));
            self.reassembly.fin_arrived();
        }
        let bytes = self.reassembly.take_in_order();
        if !bytes.is_empty() {
            self.rcv_nxt = self.rcv_nxt.add(bytes.len() as u32);
            self.events.push_back(Event::Data { at: rx_at, bytes });
        }
        if self.peer_fin == Some(self.rcv_nxt) {
            self.peer_fin = None;
            self.rcv_nxt = self.rcv_nxt.add(1);
            self.events.push_back(Event::PeerFin { at: rx_at });
            match self.state {
                State::Established => self.set_state(State::CloseWait, rx_at),
                State::FinWait1 if self.our_fin_acked() => self.enter_time_wait(rx_at),
                State::FinWait1 => self.set_state(State::Closing, rx_at),
                State::FinWait2 => self.enter_time_wait(rx_at),
                _ => {}
            }
        }
        self.queue_data_ack(rx_at);
    }

    /// How many times the peer sent its FIN again in TIME-WAIT (each restarted it).
    pub fn fins_in_time_wait(&self) -> u32 {
        self.fins_in_time_wait
    }

    // --- timers ---

    /// End TIME-WAIT now, as its timer would: the caller has no more time to give it (the
    /// close had completed; RFC 9293 §3.6.1's 2·MSL guards the next incarnation of the
    /// 4-tuple, which the survey keeps from being reused soon anyway).
    pub fn end_time_wait(&mut self, now: Instant) {
        self.on_time_wait_timeout(now);
    }

    fn on_time_wait_timeout(&mut self, now: Instant) {
        if self.state == State::TimeWait {
            self.set_state(State::Closed, now);
            self.events.push_back(Event::Closed { at: now });
        }
    }

    /// RFC 6298 §5.4–5.6: retransmit the earliest unacknowledged segment, back off,
    /// restart the timer; give up after the configured number of retries.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        if self.snd_una == self.snd_nxt {
            return;
        }
        let limit = if matches!(self.state, State::SynSent | State::SynReceived) {
            self.cfg.syn_retries
        } else {
            self.cfg.data_retries
        };
        let run = *self.rtx_run.get_or_insert((now, self.rtt.rto()));
        if self.retries >= limit && now >= run.0 + self.backoff_time(run.1, limit) {
            self.time_out(now, false);
            return;
        }
        self.retries = self.retries.saturating_add(1);
        self.last_rtx_at = Some(now);
        self.rtt.back_off();
        // Timeout recovery: no loss probe until new data is acknowledged (RFC 8985 §7.2).
        self.timers.stop(Timer::Probe);
        self.tlp_end = None;
        // Karn: nothing sent before this retransmission may be timed.
        self.rtt_probe = None;
        if self.state != State::SynSent && self.black_hole_fallback(now) {
            return;
        }
        let seg = if self.state == State::SynSent {
            let mut s = self.syn_segment(now);
            s.retransmission = true;
            s
        } else if self.state == State::SynReceived {
            // Linux's `tcp_send_synack` turns the queued SYN into a SYN-ACK: that is what
            // goes again.
            self.synack_segment(now, true)
        } else {
            // RFC 2018 §8: a timeout may mean the peer reneged. As Linux's
            // `tcp_timeout_mark_lost`, the marks go when the head itself is marked (the
            // ACKs' check, `process_ack`, catches the rest); not all at every timeout: a
            // peer holding more ranges than its SACK option can list would then see
            // what it holds but cannot list sent again.
            if self.flight.head_sacked() {
                self.flight.forget_sacks();
            }
            let seg = self.earliest_unacked(now);
            self.flight
                .sent(seg.seq, seg.payload.len() as u32, now, true);
            seg
        };
        self.record_retransmit(&seg, now, self.retries);
        self.tx.push_back(seg);
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// How long `retries` retransmissions take from a first RTO of `rto`, each timeout
    /// twice the one before up to the ceiling: when the last of them times out.
    fn backoff_time(&self, rto: Duration, retries: u32) -> Duration {
        let (mut total, mut next) = (Duration::ZERO, rto);
        // Bounded: `retries` is the configuration's limit.
        for _ in 0..retries {
            next = next
                .saturating_mul(2)
                .min(self.cfg.rto_max.max(self.cfg.rto_min));
            total = total.saturating_add(next);
        }
        total
    }

    /// RFC 9293 §3.8.6.1: while the peer's window is zero and data waits, send one byte
    /// beyond the window now and then. The peer ACKs it (with its window) or drops it; a
    /// probe that stays unacknowledged is sent again. Probing goes on as long as the peer
    /// answers (MUST-36); probes it leaves unanswered count like retransmissions and give
    /// up after as many (RFC 9293 §3.8.3 R2; Linux's `tcp_probe_timer` gives up after
    /// `tcp_retries2` unanswered probes). The caller's own limit bounds the rest.
    fn on_persist_timeout(&mut self, now: Instant) {
        if !self.sends_data() || self.snd_wnd != 0 {
            return;
        }
        if self.persist_unanswered >= self.cfg.data_retries {
            self.time_out(now, true);
            return;
        }
        self.persist_unanswered += 1;
        self.rtt_probe = None;
        if self.persist_probe_out {
            let seg = self.data_segment(self.snd_una, 1, false, now, true);
            self.flight.sent(seg.seq, 1, now, true);
            self.persist_probes += 1;
            self.record_retransmit(&seg, now, self.persist_probes);
            self.tx.push_back(seg);
        } else if self.unsent_data() > 0 && self.snd_una == self.snd_nxt {
            let seg = self.data_segment(self.snd_nxt, 1, false, now, false);
            self.flight.sent(seg.seq, 1, now, false);
            self.snd_nxt = self.snd_nxt.add(1);
            self.persist_probe_out = true;
            self.persist_probes += 1;
            self.tx.push_back(seg);
        } else {
            return;
        }
        self.timers.stop(Timer::Retransmit);
        self.timers
            .set(Timer::Persist, now + self.persist_interval());
    }

    fn persist_interval(&self) -> Duration {
        let shift = self.persist_probes.min(16);
        self.rtt
            .rto()
            .saturating_mul(1u32 << shift)
            .min(self.cfg.rto_max.max(self.cfg.rto_min))
    }

    /// Arm the persist timer when the window is closed and data waits with nothing in
    /// flight (otherwise the retransmission timer is what gets an ACK back).
    fn maybe_arm_persist(&mut self, now: Instant) {
        if self.sends_data()
            && self.snd_wnd == 0
            && self.unsent_data() > 0
            && self.snd_una == self.snd_nxt
            && !self.timers.is_set(Timer::Persist)
        {
            self.timers
                .set(Timer::Persist, now + self.persist_interval());
        }
    }

    /// A RST at the sequence number of the peer's FIN (RCV.NXT − 1) after that FIN: the
    /// FIN-consumed-sequence case. RFC 5961 §3.2 resets only at exactly RCV.NXT, but a peer
    /// that has sent its FIN and then answers a segment of ours sent before we had
    /// acknowledged that FIN (built before the FIN was read, crossing it) takes the RST's
    /// sequence number from that segment's stale ACK field, one short of RCV.NXT. Linux
    /// accepts exactly this RST, in CLOSE-WAIT, LAST-ACK and CLOSING only — the states in
    /// which the peer's FIN was taken and the close is not complete — whether or not it
    /// passed the sequence check (`tcp_reset_check()`, called from both steps of
    /// `tcp_validate_incoming()`); elsewhere it gets what any other RST gets. Ignoring it
    /// would cost a retransmission timeout, then a reset anyway. The window a blind attacker
    /// must hit stays one sequence number, next to RCV.NXT.
    fn rst_at_peer_fin(&self, seq: SeqNumber) -> bool {
        matches!(
            self.state,
            State::CloseWait | State::LastAck | State::Closing
        ) && seq.add(1) == self.rcv_nxt
    }

    /// Give up (RFC 9293 §3.8.3 R2): CLOSED without a RST, as Linux's `tcp_write_err`.
    fn time_out(&mut self, now: Instant, zero_window: bool) {
        self.events.push_back(Event::TimedOut {
            at: now,
            state: self.state,
            answered: self.rx_since_progress,
            zero_window,
        });
        self.set_state(State::Closed, now);
    }

    fn record_retransmit(&mut self, seg: &Segment, now: Instant, attempt: u32) {
        self.retransmissions += 1;
        self.events.push_back(Event::Retransmit {
            at: now,
            seq: seg.seq,
            flags: seg.flags,
            attempt,
        });
    }

    fn enter_time_wait(&mut self, at: Instant) {
        self.timers.stop_all();
        self.set_state(State::TimeWait, at);
        self.timers.set(Timer::TimeWait, at + self.cfg.time_wait);
    }

    // --- building segments ---

    /// The SYN (RFC 9293 §3.5) with our options (RFC 7323, RFC 2018), TSecr 0.
    fn syn_segment(&self, now: Instant) -> Segment {
        let options = TcpOptions {
            mss: Some(self.advertised_mss()),
            wscale: Some(self.cfg.wscale.min(MAX_WSCALE)),
            sack_permitted: self.cfg.sack_permitted,
            timestamps: self.cfg.timestamps.then(|| (self.ts_now(now), 0)),
            ..TcpOptions::default()
        };
        Segment {
            seq: self.cfg.isn,
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: self.cfg.syn_window,
            options,
            payload: Vec::new(),
            retransmission: false,
            dont_frag: !self.pmtu_locked,
        }
    }

    fn new_syn(&mut self, now: Instant) -> Segment {
        let seg = self.syn_segment(now);
        self.snd_nxt = self.cfg.isn.add(1);
        self.syn_tsval = seg.options.timestamps.map(|(v, _)| v);
        seg
    }

    /// Simultaneous open: our SYN again, now acknowledging the peer's (RFC 9293 §3.5
    /// figure 7), with TSecr echoing its TSval. The options are our SYN's, as they were
    /// offered, whatever the peer's SYN carried: Linux's `tcp_send_synack` turns the queued
    /// SYN into this SYN-ACK and sends the same options (checked on the wire; RFC 7323
    /// §2.2's rule for a SYN-ACK's window scale answers a SYN that had none, and ours, a
    /// SYN of its own, already offered it).
    fn synack_segment(&self, now: Instant, retransmission: bool) -> Segment {
        let mut seg = self.syn_segment(now);
        seg.flags = TcpFlags::SYN | TcpFlags::ACK;
        seg.ack = self.rcv_nxt;
        if let Some((tsval, _)) = seg.options.timestamps {
            seg.options.timestamps = Some((tsval, self.ts_recent));
        }
        seg.retransmission = retransmission;
        seg
    }

    /// Bytes of `send_buf` already sent (the FIN, if sent, is not a byte of the buffer).
    fn sent_data(&self) -> usize {
        let in_flight = self.snd_nxt.diff(self.snd_una).max(0) as usize;
        in_flight.min(self.send_buf.len())
    }

    fn unsent_data(&self) -> usize {
        self.send_buf.len() - self.sent_data()
    }

    /// Whether the FIN can take a pure ACK's place: nothing unsent before it — or, in
    /// CLOSING (the peer's FIN came in before our queued FIN left), what is unsent fits
    /// one segment with it (an MSS, the peer's window). Elsewhere an ACK of data goes as
    /// it comes, as Linux's does, before what we send next.
    fn fin_fits(&self) -> bool {
        let unsent = self.unsent_data();
        unsent == 0
            || (self.state == State::Closing
                && unsent <= usize::from(self.send_mss)
                && unsent <= self.usable_window())
    }

    /// The states in which queued data (and the FIN behind it) may still go: CLOSING too,
    /// as the peer's FIN can come after our close queued the FIN but before it (or data
    /// queued ahead of it, a TLS alert) left; both still go (RFC 9293 §3.10.4: the FIN
    /// follows what was queued; so does Linux's).
    fn sends_data(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// What the peer's window still takes beyond what is in flight (RFC 9293 §3.8.6's
    /// usable window).
    fn usable_window(&self) -> usize {
        self.snd_una.add(self.snd_wnd).diff(self.snd_nxt).max(0) as usize
    }

    /// New data (and the FIN after the last byte) within the peer's window.
    fn new_data(&mut self, now: Instant) -> Option<Segment> {
        if self.fin_sent {
            return None;
        }
        let unsent = self.unsent_data();
        let len = unsent
            .min(usize::from(self.send_mss))
            .min(self.usable_window());
        let fin = self.fin_queued && len == unsent;
        if len == 0 && !fin {
            return None;
        }
        let mut seg = self.data_segment(self.snd_nxt, len, fin, now, false);
        if len > 0 && len == unsent {
            // RFC 9293 §3.9.1.2: PSH on the last segment of what the caller gave us.
            seg.flags = seg.flags | TcpFlags::PSH;
        }
        self.flight.sent(seg.seq, len as u32, now, false);
        self.snd_nxt = self.snd_nxt.add(len as u32 + u32::from(fin));
        self.fin_sent |= fin;
        Some(seg)
    }

    /// The earliest unacknowledged segment again: up to one MSS of data from
    /// `snd_una`, plus our FIN if it follows directly. Never beyond the peer's window
    /// when it has one: a window the peer shrank since the data first left ends the
    /// retransmission there (RFC 9293 §3.8.6, SHLD-16; Linux's `tcp_retransmit_skb`
    /// trims to `tcp_wnd_end` the same way, and sends the head whole only into a zero
    /// window).
    fn earliest_unacked(&self, now: Instant) -> Segment {
        let outstanding = self.sent_data();
        let mut len = outstanding.min(usize::from(self.send_mss));
        if self.snd_wnd > 0 {
            len = len.min(self.snd_wnd as usize);
        }
        let fin = self.fin_sent && len == self.send_buf.len();
        let mut seg = self.data_segment(self.snd_una, len, fin, now, true);
        if len > 0 && len == outstanding {
            seg.flags = seg.flags | TcpFlags::PSH;
        }
        seg
    }

    /// ACK (+FIN) segment carrying `len` bytes of `send_buf` starting at `seq`.
    fn data_segment(
        &self,
        seq: SeqNumber,
        len: usize,
        fin: bool,
        now: Instant,
        retransmission: bool,
    ) -> Segment {
        let start = seq.diff(self.snd_una).max(0) as usize;
        let end = (start + len).min(self.send_buf.len());
        let start = start.min(end);
        let payload: Vec<u8> = self.send_buf.range(start..end).copied().collect();
        let mut flags = TcpFlags::ACK;
        if fin {
            flags = flags | TcpFlags::FIN;
        }
        Segment {
            seq,
            ack: self.rcv_nxt,
            flags,
            window: self.advertised_window(),
            options: self.options(now),
            payload,
            retransmission,
            dont_frag: !self.pmtu_locked,
        }
    }

    /// A segment without options or payload (RSTs).
    fn bare_segment(&self, seq: SeqNumber, ack: SeqNumber, flags: TcpFlags) -> Segment {
        Segment {
            seq,
            ack,
            flags,
            window: 0,
            options: TcpOptions::default(),
            payload: Vec::new(),
            retransmission: false,
            dont_frag: !self.pmtu_locked,
        }
    }

    /// Queue an ACK of `rcv_nxt`. An ACK still waiting unpolled at the end of the queue
    /// is superseded rather than duplicated, so the queue stays bounded if the caller
    /// falls behind.
    fn queue_ack(&mut self, now: Instant) {
        let seg = self.data_segment(self.snd_nxt, 0, false, now, false);
        self.queue_ack_segment(seg);
    }

    /// The ACK of a segment of data. One that acknowledges nothing new (data out of order,
    /// or bytes we already had) is a duplicate ACK, and each one counts: RFC 5681 §4.2 has
    /// the receiver send one at once for every out-of-order segment, and the sender
    /// retransmits at the third (§3.2). So it does not supersede the ACK queued before it
    /// — nor does any ACK supersede one carrying SACK blocks — up to
    /// [`MAX_QUEUED_ACKS`]: a tap batch of ten out-of-order segments drew one ACK, the
    /// server (without SACK) waited for its timer, 210 ms where Linux's client got its
    /// twelve duplicate ACKs and a fast retransmit in 1 ms (a walk).
    fn queue_data_ack(&mut self, now: Instant) {
        let seg = self.data_segment(self.snd_nxt, 0, false, now, false);
        let is_pure_ack =
            |s: &Segment| s.flags == TcpFlags::ACK && s.payload.is_empty() && !s.retransmission;
        let keep_last = self.tx.back().is_some_and(|last| {
            is_pure_ack(last) && (last.ack == seg.ack || last.options.sack_blocks[0].is_some())
        });
        if keep_last && self.tx.iter().filter(|s| is_pure_ack(s)).count() < MAX_QUEUED_ACKS {
            self.tx.push_back(seg);
        } else {
            self.queue_ack_segment(seg);
        }
    }

    /// The duplicate ACK an unacceptable segment draws (RFC 9293 §3.10.7.4 first step,
    /// RFC 7323 §5.3 R1): one for each that carried data, as Linux sends them
    /// (`tcp_send_dupack`; its rate limit, `tcp_oow_rate_limited`, spares data segments),
    /// so a sender that overran our window — a window scale a middlebox stripped from the
    /// SYN-ACK only — hears of every segment it must send again (a walk counted 32 where
    /// Linux sent 609–1 346); folded into one when it carried none.
    fn queue_dupack(&mut self, now: Instant, seg_len: u32) {
        if seg_len > 0 {
            self.queue_data_ack(now);
        } else {
            self.queue_ack(now);
        }
    }

    /// Queue `seg`, a pure ACK, superseding one still waiting at the end of the queue.
    fn queue_ack_segment(&mut self, seg: Segment) {
        if let Some(last) = self.tx.back_mut()
            && last.flags == TcpFlags::ACK
            && last.payload.is_empty()
            && !last.retransmission
        {
            *last = seg;
        } else {
            self.tx.push_back(seg);
        }
    }

    /// Options of every synchronized non-RST segment: timestamps (RFC 7323 §3.2) and
    /// SACK blocks for the out-of-order queue (RFC 2018 §4), most recent first.
    fn options(&self, now: Instant) -> TcpOptions {
        let mut opts = TcpOptions::default();
        if self.peer.timestamps {
            opts.timestamps = Some((self.ts_now(now), self.ts_recent));
        }
        if self.peer.sack_permitted {
            // The peer's FIN, while it waits above a hole (its offset from RCV.NXT).
            let fin = self
                .peer_fin
                .map(|f| f.diff(self.rcv_nxt))
                .filter(|&d| d > 0)
                .map(|d| d as u32);
            // 40 option bytes: 4 blocks alone, 3 next to timestamps (RFC 2018 §3).
            let max = if self.peer.timestamps {
                3
            } else {
                MAX_SACK_BLOCKS
            };
            for (slot, (start, end)) in opts
                .sack_blocks
                .iter_mut()
                .zip(self.reassembly.blocks(fin).into_iter().take(max))
            {
                *slot = Some((self.rcv_nxt.add(start), self.rcv_nxt.add(end)));
            }
        }
        opts
    }

    /// RFC 7323 §2.3: the window field is the window shifted by our scale (the agreed
    /// one: without an agreement the field is unscaled and says at most 65 535 of
    /// [`Connection::rcv_wnd`]).
    fn advertised_window(&self) -> u16 {
        (self.rcv_wnd() >> self.rcv_wscale).min(65_535) as u16
    }

    /// RFC 7323 §5.4: a millisecond clock plus a per-connection offset.
    fn ts_now(&self, now: Instant) -> u32 {
        ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.cfg.ts_offset)
    }

    // --- bookkeeping ---

    /// RFC 7323 §4.3 Last.ACK.sent.
    fn on_transmit(&mut self, seg: &Segment) {
        if seg.flags.ack() && !seg.flags.rst() && self.state != State::Closed {
            self.last_ack_sent = seg.ack;
        }
        if seg.flags.rst() {
            self.rsts_sent = self.rsts_sent.saturating_add(1);
        }
    }

    /// A new (not retransmitted) segment left: time it if nothing is being timed and
    /// start the retransmission timer if it is not running (RFC 6298 §5.1).
    fn on_new_transmit(&mut self, seg: &Segment, now: Instant) {
        let len =
            seg.payload.len() as u32 + u32::from(seg.flags.syn()) + u32::from(seg.flags.fin());
        if len == 0 {
            return;
        }
        if self.ack_segment_timing_allowed() && self.rtt_probe.is_none() {
            self.rtt_probe = Some((seg.seq.add(len), now));
        }
        if !self.timers.is_set(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if !seg.flags.syn() {
            self.arm_loss_probe(now);
        }
    }

    /// Karn (RFC 6298 §3): after a retransmission of the current `snd_una`, nothing is
    /// timed until new data is acked.
    fn ack_segment_timing_allowed(&self) -> bool {
        self.retries == 0
    }

    /// Remember when a TSval first went out on a segment an ACK will answer.
    fn note_ts_sent(&mut self, seg: &Segment, now: Instant) {
        let occupies = seg.flags.syn() || seg.flags.fin() || !seg.payload.is_empty();
        if let (true, Some((tsval, _))) = (occupies, seg.options.timestamps) {
            if self.ts_sent.back().is_none_or(|&(v, _, _)| v != tsval) {
                self.ts_sent.push_back((tsval, now, seg.retransmission));
            }
            while self.ts_sent.len() > 64 {
                self.ts_sent.pop_front();
            }
        }
    }

    /// An RTT sample from the TSecr of an ACK that acknowledged new data (RFC 7323 §4.1):
    /// now minus when the echoed TSval first left. Entries up to it are done with.
    fn ts_rtt_sample(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) -> bool {
        if !self.peer.timestamps {
            return false;
        }
        let Some((_, tsecr)) = seg.options.timestamps else {
            return false;
        };
        let Some(i) = self.ts_sent.iter().position(|&(v, _, _)| v == tsecr) else {
            return false;
        };
        let sent = self.ts_sent[i].1;
        // Echoing a transmission we have since repeated: the peer's answer to it may itself
        // have been a retransmission after its own timeout (a SYN-ACK sent again 1 s
        // later), so the sample would hold the peer's timer, not the path. No sample.
        let repeated_since = self.ts_sent.iter().skip(i + 1).any(|&(_, _, re)| re);
        self.ts_sent.drain(..=i);
        if repeated_since {
            return false;
        }
        self.rtt_probe = None;
        self.rtt.on_sample(rx_at.saturating_since(sent));
        self.rack.rtt_sample(rx_at.saturating_since(sent));
        true
    }

    fn take_rtt_sample(&mut self, rx_at: Instant) {
        if let Some((end, sent)) = self.rtt_probe
            && self.snd_una.ge(end)
        {
            self.rtt_probe = None;
            self.rtt.on_sample(rx_at.saturating_since(sent));
            self.rack.rtt_sample(rx_at.saturating_since(sent));
        }
    }

    fn our_fin_acked(&self) -> bool {
        self.fin_sent && self.snd_una == self.snd_nxt
    }

    /// Before a RST clears it: what of ours was queued and never left (see
    /// [`Anomaly::ResetBeforeSent`]), so no note claims an answer that was not sent.
    fn note_unsent_at_reset(&mut self, at: Instant) {
        // A FIN we queued (close) goes out with the next new data, never put in `tx`.
        let (mut acks, mut data, mut fin) = (0u16, 0u32, self.fin_queued && !self.fin_sent);
        // Retransmissions waiting here had left once: not what "never left" means.
        for s in self.tx.iter().filter(|s| !s.retransmission) {
            fin |= s.flags.fin();
            data = data.saturating_add(u32::try_from(s.payload.len()).unwrap_or(u32::MAX));
            if s.payload.is_empty() && !s.flags.fin() && !s.flags.syn() && !s.flags.rst() {
                acks = acks.saturating_add(1);
            }
        }
        if acks > 0 || data > 0 || fin {
            self.anomaly(at, Anomaly::ResetBeforeSent { acks, data, fin });
        }
    }

    fn anomaly(&mut self, at: Instant, anomaly: Anomaly) {
        self.events.push_back(Event::Anomaly { at, anomaly });
    }

    fn set_state(&mut self, to: State, at: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.events.push_back(Event::StateChanged { from, to, at });
        if to == State::Closed {
            // Nothing more goes out for this connection (no RST after a timeout either).
            self.timers.stop_all();
            self.tx.clear();
            self.flight.clear();
        }
    }
}

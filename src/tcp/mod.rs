//! One client TCP connection, sans-IO (RFC 9293, RFC 6298, RFC 5961, RFC 7323, RFC 2018).
//!
//! ```text
//!   CLOSED --connect/SYN--> SYN-SENT --SYN-ACK/ACK--> ESTABLISHED
//!   ESTABLISHED --close/FIN--> FIN-WAIT-1 --ACK--> FIN-WAIT-2 --FIN/ACK--> TIME-WAIT
//!   FIN-WAIT-1 --FIN/ACK--> CLOSING --ACK--> TIME-WAIT --2MSL(configured)--> CLOSED
//!   ESTABLISHED --FIN/ACK--> CLOSE-WAIT --close/FIN--> LAST-ACK --ACK--> CLOSED
//! ```
//!
//! Polling order after every input (`connect`, `send`, `close`, `abort`,
//! `handle_segment`, `handle_timeout`): drain `poll_transmit`, then `poll_event`, then ask
//! `poll_timeout` when to call `handle_timeout` next.

use crate::time::Instant;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use std::net::SocketAddr;
use std::time::Duration;

/// RFC 9293 §3.3.2 states a client passes through.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum State {
    Closed,
    SynSent,
    Established,
    FinWait1,
    FinWait2,
    Closing,
    TimeWait,
    CloseWait,
    LastAck,
}

impl State {
    /// The RFC's spelling: `SYN-SENT`, `FIN-WAIT-1`, …
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::SynSent => "SYN-SENT",
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
}

/// The peer's SYN-ACK options, as negotiated.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
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
    /// SYN in a synchronized state (RFC 5961 §4): challenge ACK.
    SynChallenged { seq: SeqNumber },
    /// ACK for data we never sent (RFC 5961 §5 / RFC 9293 §3.10.7.4).
    AckOfUnsentData { ack: SeqNumber },
    /// SYN-ACK whose ACK does not acknowledge our SYN: answered with RST.
    BadSynAck { ack: SeqNumber },
    /// Segment outside the receive window: dropped (and ACKed).
    OutOfWindow { seq: SeqNumber, len: u32 },
    /// Data beyond our advertised window was trimmed.
    BeyondWindow { seq: SeqNumber, len: u32 },
    /// A retransmitted FIN in TIME-WAIT, ACKed again.
    FinInTimeWait,
}

/// What happened, for the layers above. Every event carries the time of the input that
/// caused it (a kernel RX timestamp for segments).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    StateChanged { from: State, to: State, at: Instant },
    /// ESTABLISHED reached; the peer's options.
    Connected { at: Instant, peer: PeerOptions },
    /// RST in SYN-SENT acknowledging our SYN: the port is closed.
    Refused { at: Instant },
    /// RST accepted in a synchronized state.
    Reset { at: Instant, state: State },
    /// In-order bytes newly delivered.
    Data { at: Instant, bytes: Vec<u8> },
    /// The peer's FIN was accepted (in order).
    PeerFin { at: Instant },
    /// A segment is being sent again (the segment itself comes from `poll_transmit` with
    /// `retransmission: true`).
    Retransmit { at: Instant, seq: SeqNumber, flags: TcpFlags, attempt: u32 },
    Anomaly { at: Instant, anomaly: Anomaly },
    /// Retransmissions exhausted in `state`; the connection is CLOSED (no RST is sent).
    TimedOut { at: Instant, state: State },
    /// CLOSED reached after an orderly close (TIME-WAIT expired or LAST-ACK acked).
    Closed { at: Instant },
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

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
}

impl Connection {
    pub fn new(cfg: Config) -> Connection {
        Connection { cfg }
    }

    // --- getters ---

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn state(&self) -> State {
        todo!()
    }
    pub fn snd_una(&self) -> SeqNumber {
        todo!()
    }
    pub fn snd_nxt(&self) -> SeqNumber {
        todo!()
    }
    pub fn rcv_nxt(&self) -> SeqNumber {
        todo!()
    }
    /// Retransmitted segments so far.
    pub fn retransmissions(&self) -> u32 {
        todo!()
    }
    /// Smoothed RTT (RFC 6298), once measured.
    pub fn srtt(&self) -> Option<Duration> {
        todo!()
    }
    pub fn rto(&self) -> Duration {
        todo!()
    }

    // --- inputs ---

    /// CLOSED → SYN-SENT; queues the SYN.
    pub fn connect(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// Queue bytes to send (ESTABLISHED or CLOSE-WAIT; ignored otherwise).
    pub fn send(&mut self, data: &[u8]) {
        let _ = data;
        todo!()
    }
    /// Send FIN after the queued data (RFC 9293 §3.10.4).
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// Send RST and go to CLOSED at once (RFC 9293 §3.10.5).
    pub fn abort(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// A segment for this connection (ports already matched), received at `rx_at`
    /// (kernel timestamp).
    pub fn handle_segment(&mut self, rx_at: Instant, seg: &TcpRepr<'_>) {
        let _ = (rx_at, seg);
        todo!()
    }
    /// Timers that are due at `now` fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    // --- outputs ---

    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        let _ = now;
        todo!()
    }
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
}

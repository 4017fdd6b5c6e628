//! What a user asks for, decided without I/O.
//!
//! [`Probe`] runs one exchange: handshake → HTTP HEAD → orderly close, over a
//! [`tcp::Connection`], and classifies the port (open / closed / filtered with nmap's
//! reason words). It is fed every packet the tap saw — ours and the peer's, each with its
//! kernel timestamp — and keeps the log that legs and reports are computed from.
//!
//! Polling order, after `start` and after every `handle_*`: drain `poll_transmit`, then
//! check `is_done`, then sleep until a packet or `poll_timeout`.

pub mod legs;
pub mod list;
pub mod log;
pub mod record;
pub mod scan;
pub mod shard;
pub mod spin;
pub mod stats;
pub mod survey;
pub mod target;
pub mod tls;
pub mod verdict;

use crate::tcp::{self, Connection, Event, IcmpIgnored, IcmpOutcome, State};
use crate::time::Instant;
use crate::wire::http::{HttpParse, MAX_HEAD, head_request, parse_response};
use crate::wire::ip::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::wire::{self, IcmpError, IcmpKind, IpPacket, SeqNumber, TcpRepr};
use log::{Bounds, Kept, SegmentLog};
use record::{
    CloseInitiator, Dir, HttpRecord, Leg, ProbeResult, RequestRecord, SCHEMA, SegmentRecord,
    TimerRecord, Transition,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use verdict::Verdict;

/// Most notes (anomalies) and timer lines one probe records; past them it counts what it
/// left out and says so ("…and 81000 more"), so a flood cannot grow a record.
const MAX_NOTES: usize = 64;

/// What to ask of the server once connected: a well-formed `HEAD` request, always — its
/// path and `Host:` value were checked when it was made, so nothing a user typed can end
/// a line early or add a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    path: String,
    host: String,
}

impl HttpRequest {
    pub fn new(path: impl Into<String>, host: impl Into<String>) -> Result<HttpRequest, String> {
        let (path, host) = (path.into(), host.into());
        wire::http::check_request_target(&path)
            .map_err(|e| format!("request path `{}`: {e}", path.escape_debug()))?;
        wire::http::check_host_field(&host)
            .map_err(|e| format!("Host header `{}`: {e}", host.escape_debug()))?;
        Ok(HttpRequest { path, host })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The target as the user wrote it.
    pub target: String,
    pub tcp: tcp::Config,
    pub http: Option<HttpRequest>,
    /// How long to wait for the server after the handshake: for the response, and for each
    /// step of the close.
    pub timeout: Duration,
    /// After a complete response, how long to wait for the server's FIN (it was asked for
    /// `Connection: close`) before closing ourselves.
    pub linger: Duration,
    /// HTTPS: a TLS handshake before the request (see [`tls`]).
    pub tls: Option<tls::TlsSetup>,
    /// How the user sets the MSS we advertise, for messages that suggest a smaller one,
    /// with `{}` where the value goes: "`--mss {}`" on the command line, an exporter
    /// module's key.
    pub mss_hint: &'static str,
}

impl ProbeConfig {
    /// An upper bound on one exchange, however the peer behaves: the driver's backstop
    /// (the probe's own timers end every exchange well before it; reaching it means a bug,
    /// and the probe is aborted with a note saying so).
    pub fn hard_limit(&self) -> Duration {
        let t = &self.tcp;
        // The SYN's backoff; then the request's and the FIN's, each at most as long as a
        // backoff that starts from four times the initial RTO (the RTO after a slow
        // handshake); then the waits for the server, TIME-WAIT and a margin.
        let data = self.data_backoff();
        self.backoff(t.rto_initial, t.syn_retries)
            + data * 2
            + self.timeout * 3
            + self.linger
            + t.time_wait
            + Duration::from_secs(5)
    }

    /// `retries` + 1 timeouts from `first`, doubling up to the ceiling.
    fn backoff(&self, first: Duration, retries: u32) -> Duration {
        let (mut total, mut rto) = (Duration::ZERO, first);
        // Bounded: the configuration caps the retries.
        for _ in 0..=retries {
            total += rto;
            rto = (rto * 2).min(self.tcp.rto_max);
        }
        total
    }

    /// How long the connection may go on sending one thing again (the request, the
    /// ClientHello, our FIN) before its retries run out, from an RTO four times the
    /// initial one (a handshake through loss).
    fn data_backoff(&self) -> Duration {
        self.backoff(self.tcp.rto_initial * 4, self.tcp.data_retries)
    }
}

/// What made the connection emit an event.
#[derive(Clone, Copy, Debug)]
enum Cause {
    /// The incoming segment at this index of the log.
    Segment(usize),
    /// Our own call (connect, close, abort): shown with the next segment we send.
    Ours,
    Timer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    AwaitingResponse,
    /// Response complete; waiting (until the deadline) for the server to close first.
    Lingering,
    Closing,
    Done,
}

/// One segment we handed to `net`, waiting for its copy on the tap.
#[derive(Clone, Debug)]
struct Sent {
    seq: SeqNumber,
    ack: SeqNumber,
    flags: wire::TcpFlags,
    len: usize,
    /// Our state changes this segment goes out with (it is the first sent after them).
    transitions: Vec<Transition>,
}

/// What a capture's comment says about one packet: see [`Probe::packet_note`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketNote {
    /// The segment the packet became, as logged then (its transitions, retransmission…);
    /// None for an ICMP error, a segment that did not parse, an IP fragment.
    pub segment: Option<SegmentRecord>,
    /// The legs this segment ended, with their values (ns).
    pub legs: Vec<(Leg, u64)>,
    /// `HEAD / HTTP/1.1` on the segment that carried (the first byte of) our request, the
    /// status line on the one that completed the response head.
    pub label: Option<String>,
    /// Timer lines and notes the packet caused (an ICMP error's effect, an anomaly).
    pub notes: Vec<String>,
}

/// Where the log, the notes and the timer lines stood when the last packet came in.
#[derive(Clone, Copy, Debug, Default)]
struct Handled {
    logged: Option<usize>,
    anomalies_from: usize,
    timers_from: usize,
}

/// Why this host's kernel did not send a segment it was handed ([`Probe::send_refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalRefusal {
    /// EMSGSIZE: larger than the path MTU the kernel holds for the destination — `mtu`,
    /// as its route says, when it could be read.
    TooBig { mtu: Option<u32> },
    /// ENOBUFS: dropped on the way out.
    Dropped,
}

/// The TTL (hop limit) a run of segments came with, while it was one and the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OneTtl {
    Unseen,
    Same(u8),
    /// Two differed: a path that changes.
    Varied,
}

impl OneTtl {
    fn seen(self, ttl: u8) -> OneTtl {
        match self {
            OneTtl::Unseen => OneTtl::Same(ttl),
            OneTtl::Same(t) if t != ttl => OneTtl::Varied,
            same => same,
        }
    }
}

pub struct Probe {
    cfg: ProbeConfig,
    /// The cleartext HTTP request, sent once connected (None without HTTP, or with TLS,
    /// whose request goes inside its session).
    request: Option<Vec<u8>>,
    /// The segment (sequence number, length) the kernel program sent for us, until its
    /// copy is seen ([`Probe::sent_by_kernel`]).
    kernel_sent: Option<(u32, usize)>,
    /// TLS: the ClientHello, made before the SYN, until the connection opens.
    tls_hello: Option<Vec<u8>>,
    conn: Connection,
    phase: Phase,
    deadline: Option<Instant>,
    /// When the wait the deadline ends began (a request sent, a close begun): the deadline
    /// may be pushed on while our segments are still being sent again, and a failure says
    /// how long it waited in all.
    wait_began: Option<Instant>,
    started_at: Option<Instant>,
    /// When the server last made progress: acknowledged something new of ours, or gave us
    /// new bytes or its FIN. A server that only repeats itself is not progress.
    last_progress: Option<Instant>,
    /// When the server last acknowledged something we had to send more than once (the
    /// request, the ClientHello, our FIN): only then did it have it, so its silence counts
    /// from there (see `handle_timeout`).
    acked_after_repeat: Option<Instant>,
    /// Every segment seen, bounded (log.rs); marks are ids into it.
    log: SegmentLog,
    marks: legs::Marks,
    sent: VecDeque<Sent>,
    /// State changes caused by our own calls, shown with the next segment we send.
    pending_out_transitions: Vec<(Instant, Transition)>,
    response: Vec<u8>,
    http: Option<HttpRecord>,
    state: Option<Verdict>,
    reply_ttl: Option<u8>,
    reply_from: Option<std::net::IpAddr>,
    /// The TTL (hop limit) the server's segments with data or a FIN came with (the
    /// server's own, past any SYN proxy), and that of all its segments but RSTs.
    server_ttl_data: OneTtl,
    server_ttl_any: OneTtl,
    /// The TTL of the segment being handled (a RST's, when it ends the connection).
    last_in_ttl: u8,
    peer_options: Option<tcp::PeerOptions>,
    irs: Option<u32>,
    close_initiator: Option<CloseInitiator>,
    timers: Vec<TimerRecord>,
    anomalies: Vec<String>,
    /// Notes and timer lines past [`MAX_NOTES`], counted, not kept.
    notes_omitted: u64,
    timers_omitted: u64,
    /// Our segments sent again (counted here: the log may leave some out).
    retransmissions: u32,
    /// An outgoing SYN-ACK was logged (ours in a simultaneous open).
    sent_synack: bool,
    /// Packets the capture dropped while the probe ran, as the driver counted them.
    capture_lost: u64,
    error: Option<String>,
    /// The driver's word that the next hop's link-layer address went unresolved (ARP, ND):
    /// why none of our segments left, when none was seen leaving.
    unresolved: Option<String>,
    /// The user stopped the probe before it ended (Ctrl-C, SIGTERM).
    interrupted: bool,
    tls: Option<tls::TlsSession>,
    tls_setup_error: Option<String>,
    /// ICMP errors about our 4-tuple that the connection did not believe.
    icmp_ignored: u32,
    /// The last soft ICMP error (what, from whom): the likely reason if we time out.
    last_soft_icmp: Option<String>,
    /// Just past the highest sequence number our segments on the tap have covered: a
    /// segment starting before it is a retransmission, whatever its length.
    out_end: Option<SeqNumber>,
    /// The last packet handed in: what it added (for [`Probe::packet_note`]).
    last_handled: Handled,
}

impl Probe {
    pub fn new(cfg: ProbeConfig) -> Probe {
        Probe::with_log_bounds(cfg, Bounds::DEFAULT)
    }

    /// A probe whose segment log keeps at most `bounds` records (tests use small ones).
    pub fn with_log_bounds(cfg: ProbeConfig, bounds: Bounds) -> Probe {
        let conn = Connection::new(cfg.tcp.clone());
        // Made now, not when the SYN-ACK comes: that moment's work delays our ACK.
        let request = cfg.http.as_ref().filter(|_| cfg.tls.is_none()).map(|req| {
            let ua = concat!("tcpshake/", env!("CARGO_PKG_VERSION"));
            head_request(&req.path, &req.host, ua)
        });
        Probe {
            request,
            kernel_sent: None,
            tls_hello: None,
            cfg,
            conn,
            phase: Phase::Connecting,
            deadline: None,
            wait_began: None,
            started_at: None,
            last_progress: None,
            acked_after_repeat: None,
            log: SegmentLog::new(bounds),
            marks: legs::Marks::default(),
            sent: VecDeque::new(),
            pending_out_transitions: Vec::new(),
            response: Vec::new(),
            http: None,
            state: None,
            reply_ttl: None,
            reply_from: None,
            server_ttl_data: OneTtl::Unseen,
            server_ttl_any: OneTtl::Unseen,
            last_in_ttl: 0,
            peer_options: None,
            irs: None,
            close_initiator: None,
            timers: Vec::new(),
            anomalies: Vec::new(),
            notes_omitted: 0,
            timers_omitted: 0,
            retransmissions: 0,
            sent_synack: false,
            capture_lost: 0,
            error: None,
            unresolved: None,
            interrupted: false,
            tls: None,
            tls_setup_error: None,
            icmp_ignored: 0,
            last_soft_icmp: None,
            out_end: None,
            last_handled: Handled::default(),
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.cfg.tcp.local
    }

    pub fn remote(&self) -> SocketAddr {
        self.cfg.tcp.remote
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A new wait for the server, begun at `began`, ending at `until` (`--timeout`, the
    /// linger, TIME-WAIT).
    pub(super) fn wait_from(&mut self, began: Instant, until: Instant) {
        self.deadline = Some(until);
        self.wait_began = Some(began);
    }

    /// `--timeout` as a failure says it: `5s`, or, when the wait was pushed on while what
    /// we sent was still being sent again, also how long it lasted in all (`5s of the
    /// server's silence (15.3 s in all, while what we sent was being sent again)`).
    fn waited(&self, now: Instant) -> String {
        let timeout = self.cfg.timeout;
        match self.wait_began.map(|b| now.saturating_since(b)) {
            Some(all) if all > timeout + Duration::from_millis(10) => format!(
                "{timeout:?} of the server's silence ({} in all, while what we sent was being \
                 sent again)",
                crate::time::human_ns(crate::time::nanos(all))
            ),
            _ => format!("{timeout:?}"),
        }
    }

    /// After our RST with data still unacknowledged, how long to keep listening for the
    /// server's challenge ACK: our RST carried SND.NXT (RFC 9293 §3.10.5, as Linux's),
    /// but a server that never got that data has its RCV.NXT lower, and RFC 5961 §3.2
    /// has it answer such a RST with an ACK, not close. Linux, its socket gone, answers
    /// that ACK with a RST at its ACK number, which closes the server's side; our kernel is
    /// kept from doing so, so the closed connection does (RFC 9293 §3.10.7.1): two round
    /// trips and 10 ms, at most a second. None otherwise (walk 14: a probe whose request
    /// was dropped left the server's connection ESTABLISHED for good).
    /// Whether the closed connection answered something with a RST after ours (the
    /// challenge ACK, most likely): the wait of [`Probe::challenge_wait`] is over.
    pub fn answered_challenge(&self) -> bool {
        self.conn.rsts_sent() > 1
    }

    pub fn challenge_wait(&self) -> Option<Duration> {
        if self.close_initiator != Some(CloseInitiator::Reset)
            || self.conn.snd_una() == self.conn.snd_nxt()
        {
            return None;
        }
        let rtt = self.conn.srtt().unwrap_or(Duration::from_millis(200));
        Some(
            rtt.saturating_mul(2)
                .saturating_add(Duration::from_millis(10))
                .min(Duration::from_secs(1)),
        )
    }

    /// Some segment we sent has not been seen on the tap yet (its copy carries the time it
    /// left): a finished probe waits for these before its record is final.
    pub fn awaiting_own_copies(&self) -> bool {
        !self.sent.is_empty()
    }

    /// Still waiting for the SYN-ACK: the one reply that only the peer's kernel makes, with
    /// no application of the peer's needing a CPU to make it.
    pub fn awaiting_synack(&self) -> bool {
        self.phase == Phase::Connecting
    }

    /// The driver did not send the segment of `seq` and `len` bytes just polled: the
    /// kernel program had sent it (io/reflex.rs). Its copy on the tap is recorded so.
    pub fn sent_by_kernel(&mut self, seq: u32, len: usize) {
        self.kernel_sent = Some((seq, len));
    }

    /// Our ACK of the SYN-ACK as our TCP foresees it, while we wait for one
    /// ([`crate::tcp::Connection::handshake_ack`]), with what rides on it: the request,
    /// or the ClientHello (made before the SYN, `tls_prepare`).
    pub fn handshake_ack(&self) -> Option<crate::tcp::HandshakeAck> {
        if !self.awaiting_synack() {
            return None;
        }
        let riding = if self.cfg.tls.is_some() {
            // No session (a setup error): the probe fails when the connection opens.
            self.tls_hello.as_deref()?
        } else {
            self.request.as_deref().unwrap_or_default()
        };
        self.conn.handshake_ack(riding)
    }

    pub fn start(&mut self, now: Instant) {
        self.started_at = Some(now);
        if let Some(mtu) = self.conn.path_mtu() {
            // A survey's earlier probe to this address learned it (tcp::Config's
            // known_path_mtu): said, so its lower MSS and `path_mtu` are not a mystery.
            self.note(format!(
                "path MTU {mtu}, learned by an earlier probe to this address from an ICMP \
                 error, used from the start (RFC 1191 §5)"
            ));
        }
        self.tls_prepare(now);
        self.conn.connect(now);
        self.drain_events(now, Cause::Ours);
    }

    /// A path MTU this probe learned from an ICMP error, for the next probe to the same
    /// address (see `tcp::Config::known_path_mtu`).
    pub fn learned_path_mtu(&self) -> Option<tcp::KnownPathMtu> {
        self.conn.learned_path_mtu()
    }

    /// The next segment to put on the wire.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<tcp::Segment> {
        let seg = self.conn.poll_transmit(now)?;
        // A change our call made shows with the segment that carries it: our SYN (into
        // SYN-SENT), our FIN (into FIN-WAIT-1 or LAST-ACK, RFC 9293 §3.10.4) — not with an
        // ACK the connection still owed and sends first.
        let carries = |t: &Transition| match t.to {
            State::SynSent => seg.flags.syn(),
            State::FinWait1 | State::LastAck => seg.flags.fin(),
            _ => true,
        };
        // In order: a change waits for its segment, and the changes after it wait too.
        let shown = self
            .pending_out_transitions
            .iter()
            .take_while(|(_, t)| carries(t))
            .count();
        let transitions = self
            .pending_out_transitions
            .drain(..shown)
            .map(|(_, t)| t)
            .collect();
        self.sent.push_back(Sent {
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            len: seg.payload.len(),
            transitions,
        });
        // Bounded: copies that never showed up on the tap are forgotten. The bound must
        // exceed one flush (net::run sends up to 256 segments before it reads the tap
        // again), or a burst's early copies are forgotten before they are read and then
        // reported as segments tcpshake did not send.
        while self.sent.len() > 1024 {
            self.sent.pop_front();
        }
        Some(seg)
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        match (self.conn.poll_timeout(), self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.drain_events(now, Cause::Timer);
        if self.phase == Phase::Done {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            // `--timeout` counts the server's silence. While our own TCP is still
            // retransmitting (request, ClientHello or FIN not yet acknowledged), the path
            // may be lossy rather than dead: keep waiting if the server spoke within the
            // last `--timeout`, or while what we sent has been repeated fewer than three
            // times (an RTO inflated by a handshake through loss can put even the first
            // repetition seconds away). The connection's bounded retries still end it.
            // A closed window is no lossy path: the server answers and says it takes
            // nothing, which `--timeout` bounds as it bounds silence (like Linux's
            // TCP_USER_TIMEOUT bounds zero-window probing).
            let zero_window = self.conn.zero_window_probing();
            let retransmitting = self.conn.snd_una() != self.conn.snd_nxt()
                && !zero_window
                && matches!(self.phase, Phase::AwaitingResponse | Phase::Closing);
            let progressed_lately = self
                .last_progress
                .is_some_and(|h| now < h + self.cfg.timeout);
            // Pushed on for no longer than the connection would go on sending it again, plus
            // `--timeout`: a server that acknowledges a byte at a time, each inside
            // `--timeout`, is progress every time and starts the retries over (RFC 6298
            // §5.3), and held a probe a `--timeout` per byte (a review: 480 s).
            let cap = self
                .wait_began
                .map(|b| b + self.cfg.data_backoff() + self.cfg.timeout);
            let within_cap = cap.is_none_or(|c| now < c);
            if retransmitting && within_cap && (progressed_lately || self.conn.retries() < 3) {
                // Looked at again when something can change: the next retransmission (the
                // retries), the silence since the last progress reaching `--timeout`, the
                // cap. Not every `--timeout`: `--timeout 1ms` woke the driver 1 400 times
                // between three retransmissions (a review).
                let mut next = self.conn.poll_timeout().unwrap_or(now + self.cfg.timeout);
                if let Some(h) = self.last_progress.filter(|_| progressed_lately) {
                    next = next.min(h + self.cfg.timeout);
                }
                if let Some(c) = cap {
                    next = next.min(c);
                }
                self.deadline = Some(next.max(now + Duration::from_nanos(1)));
                return;
            }
            // The same silence, once what we repeated got through: the server acknowledged
            // it lately, so it has had it only since then. A survey through 10% loss each
            // way gave up on 2 probes in 600 whose request went twice and was acknowledged
            // 1.5 s before the deadline — the server's answer was lost and its own
            // retransmission was not due yet (3 s after its SYN-ACK went twice, RFC 6298
            // §5.7) — and the error blamed a hung server or the path MTU. A server that
            // acknowledges a request it got the first time is timed from the request, as
            // before.
            if !zero_window
                && within_cap
                && matches!(self.phase, Phase::AwaitingResponse | Phase::Closing)
                && let Some(acked) = self.acked_after_repeat
                && now < acked + self.cfg.timeout
            {
                self.deadline = Some(acked + self.cfg.timeout);
                return;
            }
            match self.phase {
                Phase::AwaitingResponse | Phase::Closing if zero_window => {
                    let what = if self.phase == Phase::Closing {
                        "our FIN"
                    } else {
                        "the request"
                    };
                    let why = if self.conn.zero_window_probes_answered() {
                        format!(
                            "the server's receive window stayed closed for {:?}: {what} could not be sent (RFC 9293 §3.8.6.1 zero-window probes were answered, the window never opened); connection reset",
                            self.cfg.timeout
                        )
                    } else {
                        // Nothing came back at all: not a full server, a silent one — or a
                        // SYN proxy (its SYN-ACK offers window 0 until the server behind
                        // it answers) whose server never did.
                        format!(
                            "the server's receive window was closed and nothing answered our zero-window probes (RFC 9293 §3.8.6.1) for {:?}: {what} could not be sent; the server went silent — or, with window 0 in its SYN-ACK, a SYN proxy answered for a server that never did; connection reset",
                            self.cfg.timeout
                        )
                    };
                    self.fail(now, why);
                }
                Phase::Lingering => {
                    // The server kept the connection open despite `Connection: close`.
                    self.begin_close(now);
                }
                Phase::AwaitingResponse
                    if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) =>
                {
                    let why = self.return_path_note("our ClientHello");
                    self.fail(
                        now,
                        format!(
                            "TLS: the handshake did not finish within {}{why}; connection reset",
                            self.waited(now)
                        ),
                    );
                }
                Phase::AwaitingResponse => {
                    let mut why = self.unacknowledged_note();
                    if why.is_empty() {
                        why = self.return_path_note("the request");
                    }
                    self.fail(
                        now,
                        format!(
                            "no complete HTTP response within {}{why}{}; connection reset",
                            self.waited(now),
                            self.soft_icmp_hint()
                        ),
                    );
                }
                // The exchange is over (the response is whole, or no request was asked
                // for) and the server took our FIN, but keeps its own side open: it
                // ignored `Connection: close`. Linux's client has returned by then (its
                // FIN-WAIT-2 lingers, orphaned, for `tcp_fin_timeout`); the probe did
                // what it was asked, so this is a note, and our RST ends the server's
                // half-open connection.
                Phase::Closing
                    if self.conn.state() == State::FinWait2
                        && (self.http.is_some() || self.cfg.http.is_none()) =>
                {
                    // Without a request (`--no-http`) there was no response and no
                    // `Connection: close` to ignore: a server that takes the handshake
                    // and never reads (a listener that does not accept) does this.
                    let why = if self.cfg.http.is_some() {
                        " (it did not close after the response, `Connection: close` notwithstanding)"
                    } else {
                        ""
                    };
                    self.note(format!(
                        "the server acknowledged our FIN but kept its side of the connection open for {:?}{why}: reset",
                        self.cfg.timeout
                    ));
                    self.close_initiator.get_or_insert(CloseInitiator::Client);
                    self.conn.abort(now);
                    self.finish();
                }
                // Both FINs are acknowledged and no FIN came again: TIME-WAIT is merely
                // longer (`--time-wait`) than what `--timeout` left of the close. It is
                // waited out as asked; its own timer ends it, at the latest one
                // `--time-wait` from now unless FINs come again and restart it.
                Phase::Closing
                    if self.conn.state() == State::TimeWait
                        && self.conn.fins_in_time_wait() == 0 =>
                {
                    self.wait_from(now, now + self.cfg.tcp.time_wait);
                }
                // Both FINs are acknowledged: the close is complete, and only TIME-WAIT
                // goes on, restarted by each FIN the server sends again (RFC 9293
                // §3.10.7.4) — our ACKs of it lost on the way back, or a server that
                // ignores them. Linux's client has returned long before (its TIME-WAIT
                // lives on in the kernel); the probe did what it was asked, so this is a
                // note, and TIME-WAIT ends without a word, as Linux's does.
                Phase::Closing if self.conn.state() == State::TimeWait => {
                    self.note(format!(
                        "the server kept sending its FIN again in TIME-WAIT ({} times; our ACKs of it lost on the way back, or ignored), past --timeout ({:?}) after our close began: TIME-WAIT cut short",
                        self.conn.fins_in_time_wait(),
                        self.cfg.timeout
                    ));
                    self.conn.abort(now);
                    self.finish();
                }
                Phase::Closing => {
                    let st = self.conn.state();
                    self.fail(
                        now,
                        format!(
                            "close did not finish within {} (stuck in {}); connection reset",
                            self.waited(now),
                            st.name()
                        ),
                    );
                }
                Phase::Connecting | Phase::Done => {}
            }
            self.drain_events(now, Cause::Ours);
        }
    }

    /// A packet the tap saw at `at`: `outgoing` copies of what left this host, or arrivals.
    /// `checksum_offloaded`: the kernel left the transport checksum unfinished (veth), so it
    /// cannot be verified. Returns whether the packet belonged to this probe.
    pub fn handle_packet(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        checksum_offloaded: bool,
    ) -> bool {
        self.handle_datagram(at, outgoing, bytes, checksum_offloaded, 1)
    }

    /// [`Probe::handle_packet`] for a datagram that arrived in `fragments` IP fragments and
    /// was put back together by the driver (wire::defrag); `at` is when the fragment that
    /// completed it arrived. A fragment itself is never read as TCP: its payload is only a
    /// piece of a segment (the first one's checksum would fail, the others carry no
    /// header), so it is not ours until reassembled.
    pub fn handle_datagram(
        &mut self,
        at: Instant,
        outgoing: bool,
        bytes: &[u8],
        checksum_offloaded: bool,
        fragments: u16,
    ) -> bool {
        let before = (self.log.total(), self.anomalies.len(), self.timers.len());
        self.last_handled = Handled {
            logged: None,
            anomalies_from: before.1,
            timers_from: before.2,
        };
        let Ok(pkt) = IpPacket::parse(bytes) else {
            return false;
        };
        if pkt.fragment.is_some() {
            return false;
        }
        let ours = match pkt.ip.protocol {
            PROTO_TCP => self.handle_tcp(at, &pkt, checksum_offloaded, fragments),
            PROTO_ICMP | PROTO_ICMPV6 if !outgoing => self.handle_icmp(at, &pkt),
            _ => false,
        };
        if self.log.total() > before.0 {
            self.last_handled.logged = Some(self.log.total() - 1);
        }
        ours
    }

    fn handle_tcp(
        &mut self,
        at: Instant,
        pkt: &IpPacket<'_>,
        checksum_offloaded: bool,
        fragments: u16,
    ) -> bool {
        let (local, remote) = (self.local(), self.remote());
        let hdr = match TcpRepr::parse_unchecked(pkt.payload) {
            Ok(hdr) => hdr,
            Err(e) => return self.handle_malformed_tcp(pkt, e),
        };
        let dir = if pkt.ip.src == local.ip()
            && hdr.src_port == local.port()
            && pkt.ip.dst == remote.ip()
            && hdr.dst_port == remote.port()
        {
            Dir::Out
        } else if pkt.ip.src == remote.ip()
            && hdr.src_port == remote.port()
            && pkt.ip.dst == local.ip()
            && hdr.dst_port == local.port()
        {
            Dir::In
        } else {
            return false;
        };
        // Our own segments need no check (their copies are read before any link could
        // damage them); the peer's do, unless the kernel left the sum to hardware.
        let bad_checksum = dir == Dir::In
            && !checksum_offloaded
            && !wire::checksum::verify_upper_layer(pkt.ip.src, pkt.ip.dst, PROTO_TCP, pkt.payload);
        let base = self.log.first().map(|r| r.ts_ns).unwrap_or(at.as_nanos());
        let mut rec = SegmentRecord {
            dir,
            t_ns: at.as_nanos() as i64 - base as i64,
            ts_ns: at.as_nanos(),
            flags: hdr.flags,
            seq: hdr.seq.0,
            ack: hdr.ack.0,
            win: hdr.window,
            len: hdr.payload.len() as u32,
            options: hdr.options,
            ttl: pkt.ip.ttl,
            retransmission: false,
            transitions: Vec::new(),
            bad_checksum,
            foreign: false,
            kernel: false,
            urgent: hdr.flags.urg().then_some(hdr.urgent),
            fragments,
            omitted_before: 0,
        };
        match dir {
            Dir::Out => {
                // Sent again: it covers sequence space an earlier segment of ours did
                // (as tcpdump's and Wireshark's analysis say), also when it was cut at a
                // smaller size after the path MTU went down. A simultaneous open's first
                // SYN-ACK re-uses our SYN's sequence number but is no repeat of it.
                let len = hdr.segment_len();
                let synack = hdr.flags.syn() && hdr.flags.ack();
                let first_synack = synack && !self.sent_synack;
                self.sent_synack |= synack;
                rec.retransmission =
                    len > 0 && !first_synack && self.out_end.is_some_and(|end| hdr.seq.lt(end));
                if rec.retransmission {
                    self.retransmissions = self.retransmissions.saturating_add(1);
                }
                let end = hdr.seq.add(len);
                // It carries bytes never sent before: TLS finds its records by stream
                // offset in the first segment that carried them (tls.rs `out_segment`).
                let new_bytes = len > 0 && self.out_end.is_none_or(|e| end.gt(e));
                if new_bytes {
                    self.out_end = Some(end);
                }
                match self.sent.iter().position(|s| {
                    s.seq == hdr.seq
                        && s.ack == hdr.ack
                        && s.flags == hdr.flags
                        && s.len == hdr.payload.len()
                }) {
                    Some(i) => {
                        if let Some(sent) = self.sent.remove(i) {
                            rec.transitions = sent.transitions;
                        }
                        if self
                            .kernel_sent
                            .take_if(|&mut (seq, len)| seq == hdr.seq.0 && len == hdr.payload.len())
                            .is_some()
                        {
                            rec.kernel = true;
                        }
                    }
                    None => {
                        rec.foreign = true;
                        self.note(format!(
                            "a {} segment left this host that tcpshake did not send (the kernel's?)",
                            hdr.flags
                        ));
                    }
                }
                let id = self.log.push(rec);
                if new_bytes && !hdr.payload.is_empty() {
                    self.log.pin(id);
                }
            }
            Dir::In => {
                let idx = self.log.push(rec);
                if bad_checksum {
                    self.note(format!(
                        "ignored a {} segment with a bad TCP checksum",
                        hdr.flags
                    ));
                    return true;
                }
                if self.state.is_none() && (hdr.flags.syn() || hdr.flags.rst()) {
                    self.reply_ttl = Some(pkt.ip.ttl);
                    self.reply_from = Some(pkt.ip.src);
                }
                self.last_in_ttl = pkt.ip.ttl;
                if !hdr.flags.rst() {
                    if !hdr.payload.is_empty() || hdr.flags.fin() {
                        self.server_ttl_data = self.server_ttl_data.seen(pkt.ip.ttl);
                    }
                    self.server_ttl_any = self.server_ttl_any.seen(pkt.ip.ttl);
                }
                let (una, rcv) = (self.conn.snd_una(), self.conn.rcv_nxt());
                let repeated = self.conn.retries() > 0;
                self.conn.handle_segment(at, &hdr);
                if self.conn.snd_una() != una || self.conn.rcv_nxt() != rcv {
                    self.last_progress = Some(at);
                }
                if repeated
                    && self.conn.snd_una() != una
                    && matches!(self.phase, Phase::AwaitingResponse | Phase::Closing)
                {
                    self.acked_after_repeat = Some(at);
                }
                self.drain_events(at, Cause::Segment(idx));
            }
        }
        true
    }

    /// A TCP segment that does not parse (an impossible option length, a data offset past
    /// the end). If its ports say it is the peer's, report it and drop it — RFC 9293 §3.1
    /// (MUST-7) asks a receiver to survive an illegal option length; silently treating it
    /// as someone else's packet would hide a misbehaving peer. Returns whether it was ours.
    fn handle_malformed_tcp(&mut self, pkt: &IpPacket<'_>, e: wire::Error) -> bool {
        let (local, remote) = (self.local(), self.remote());
        let port = |i: usize| {
            pkt.payload
                .get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let from_peer = pkt.ip.src == remote.ip()
            && pkt.ip.dst == local.ip()
            && port(0) == Some(remote.port())
            && port(2) == Some(local.port());
        if from_peer {
            self.note(format!("ignored a segment from the server: {e}"));
        }
        from_peer
    }

    /// An ICMP error that may be about our connection. The connection judges it (is it
    /// about a segment in flight? what does it do in this state?, see
    /// [`Connection::handle_icmp`]); here it becomes the port's verdict, a line in the
    /// view, or a note saying why it was ignored. Returns whether it quoted our 4-tuple.
    fn handle_icmp(&mut self, at: Instant, pkt: &IpPacket<'_>) -> bool {
        let v6 = pkt.ip.protocol == PROTO_ICMPV6;
        let Ok(Some(err)) = IcmpError::parse(pkt.payload, v6, pkt.ip.src, pkt.ip.dst) else {
            return false;
        };
        let t = self.rel(at);
        let from = pkt.ip.src;
        let what = match err.kind {
            IcmpKind::PacketTooBig { mtu } if v6 => format!("packet-too-big mtu {mtu}"),
            IcmpKind::PacketTooBig { mtu } => format!("frag-needed mtu {mtu}"),
            kind => Verdict::of_icmp(kind).reason.to_string(),
        };
        let state = self.conn.state();
        let outcome = self.conn.handle_icmp(at, &err);
        match outcome {
            IcmpOutcome::Ignored(IcmpIgnored::OtherConnection) => return false,
            IcmpOutcome::Ignored(why) => {
                self.icmp_ignored = self.icmp_ignored.saturating_add(1);
                let why = match why {
                    // Relative to our ISN, as the view numbers our segments.
                    IcmpIgnored::SeqOutside {
                        seq,
                        snd_una,
                        snd_nxt,
                    } => {
                        let isn = self.cfg.tcp.isn;
                        format!(
                            "it quotes sequence number {}, not one in flight \
                             ({} ≤ seq < {}, relative to our ISN; RFC 5927 §4.1)",
                            seq.diff(isn),
                            snd_una.diff(isn),
                            snd_nxt.diff(isn)
                        )
                    }
                    other => other.to_string(),
                };
                self.note(format!(
                    "ignored ICMP {what} from {from} at {} µs in {}: {why}",
                    t / 1000,
                    state.name()
                ));
            }
            IcmpOutcome::Aborted => {
                // The connection gave up (as Linux's connect() fails); nmap calls the port
                // filtered with the ICMP error as its reason.
                let verdict = Verdict::of_icmp(err.kind);
                let reason = verdict.reason;
                if self.state.is_none() {
                    self.state = Some(verdict);
                    self.reply_ttl = Some(pkt.ip.ttl);
                    self.reply_from = Some(from);
                }
                self.timer(TimerRecord {
                    t_ns: t,
                    what: format!("ICMP {reason} from {from}"),
                });
                self.marks.icmp_end_ns = Some(at.as_nanos());
                self.drain_events(at, Cause::Ours);
                self.finish();
            }
            IcmpOutcome::Soft | IcmpOutcome::SoftReverted => {
                self.last_soft_icmp = Some(format!("{what} from {from}"));
                // RFC 6069: the path said why our segment went unanswered, so the timer's
                // last back-off was no congestion's; said, since it moves the next resend.
                let reverted = match outcome {
                    IcmpOutcome::SoftReverted => {
                        "; the last back-off of the retransmission timer is undone (RFC 6069)"
                    }
                    _ => "",
                };
                self.note(format!(
                    "ICMP {what} from {from} at {} µs: a soft error in {}, the connection \
                     goes on (RFC 1122 §4.2.3.9){reverted}",
                    t / 1000,
                    state.name()
                ));
            }
            IcmpOutcome::PathMtu(c) => {
                let mut line = format!("ICMP {what} from {from}: ");
                if !c.lowered {
                    // RFC 1191 §3 / RFC 8201 §4: never raised by a message.
                    let _ = write!(line, "path MTU stays {}", c.path_mtu);
                } else if state == State::SynSent {
                    let _ = write!(line, "path MTU {}, used once connected", c.path_mtu);
                } else if c.mss_after < c.mss_before {
                    let _ = write!(
                        line,
                        "path MTU {}, MSS {} → {}, {} segment{} sent again",
                        c.path_mtu,
                        c.mss_before,
                        c.mss_after,
                        c.resent,
                        if c.resent == 1 { "" } else { "s" }
                    );
                    if c.withdrawn > 0 {
                        // Queued, too big for this path, never left (an earlier error's
                        // cut, read with this one; or segments queued with it).
                        let _ = write!(
                            line,
                            " ({} queued segment{} too big for it taken back unsent)",
                            c.withdrawn,
                            if c.withdrawn == 1 { "" } else { "s" }
                        );
                    }
                } else {
                    let _ = write!(line, "path MTU {}, MSS stays {}", c.path_mtu, c.mss_after);
                }
                if c.path_mtu != c.reported && (c.lowered || c.locked) {
                    // IPv4's floor (Linux's min_pmtu) raised what the router said.
                    let _ = write!(line, " (floor {}; it said {})", c.path_mtu, c.reported);
                }
                if c.locked {
                    let _ = write!(
                        line,
                        "; segments go without DF from now on, for routers to fragment (as \
                         Linux's locked path MTU)"
                    );
                }
                self.timer(TimerRecord {
                    t_ns: t,
                    what: line,
                });
                self.drain_events(at, Cause::Ours);
            }
        }
        true
    }

    /// Why the server may have seemed silent: the last soft ICMP error, as Linux reports
    /// it on a timeout (`sk_err_soft`) instead of a bare "timed out".
    fn soft_icmp_hint(&self) -> String {
        self.last_soft_icmp
            .as_ref()
            .map(|w| format!(" (last ICMP error: {w})"))
            .unwrap_or_default()
    }

    /// A note for the record, within bounds (a flood of odd packets cannot grow it): past
    /// [`MAX_NOTES`] it is only counted, and the record ends its notes with the count.
    fn note(&mut self, text: String) {
        if self.anomalies.len() < MAX_NOTES {
            self.anomalies.push(text);
        } else {
            self.notes_omitted = self.notes_omitted.saturating_add(1);
        }
    }

    /// A timer line, within bounds like [`Probe::note`].
    fn timer(&mut self, t: TimerRecord) {
        if self.timers.len() < MAX_NOTES {
            self.timers.push(t);
        } else {
            self.timers_omitted = self.timers_omitted.saturating_add(1);
        }
    }

    /// The driver's capture dropped `packets` packets (a full ring or queue) while this
    /// probe ran: segments our TCP never saw. The record says so (`capture_lost`).
    pub fn capture_lost(&mut self, packets: u64) {
        self.capture_lost = self.capture_lost.saturating_add(packets);
    }

    /// Whether none of our segments was seen leaving (on the tap) so far.
    pub fn nothing_seen_leaving(&self) -> bool {
        self.out_end.is_none()
    }

    /// The driver asked the kernel why nothing left: the next hop's link-layer address
    /// went unresolved (`what`: which address, on which interface, by ARP or ND). The
    /// kernel holds packets for an unresolved neighbour and drops them when resolution
    /// fails, so our SYNs never reached the wire; the record says so rather than leave
    /// "filtered, no-response" unexplained (a scan says `no-arp`/`no-nd` for such a host).
    pub fn next_hop_unresolved(&mut self, what: String) {
        self.unresolved = Some(what);
    }

    /// ns since our first SYN.
    fn rel(&self, at: Instant) -> i64 {
        let base = self
            .log
            .first()
            .map(|r| r.ts_ns)
            .or(self.started_at.map(Instant::as_nanos))
            .unwrap_or(0);
        at.as_nanos() as i64 - base as i64
    }

    /// Handle the connection's events. The first batch is due to `cause`; whatever our
    /// reactions to it make the connection emit (closing, resetting) is due to us.
    fn drain_events(&mut self, now: Instant, mut cause: Cause) {
        // Bounded: each round is a reaction to the one before, and reactions end quickly.
        // A round is the events queued when it began; those its handlers queue are ours.
        for _ in 0..8 {
            let round = self.conn.pending_events().min(1024);
            if round == 0 {
                break;
            }
            for _ in 0..round {
                let Some(ev) = self.conn.poll_event() else {
                    break;
                };
                self.on_event(now, ev, cause);
            }
            cause = Cause::Ours;
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event, cause: Cause) {
        let caused_by = match cause {
            Cause::Segment(i) => Some(i),
            Cause::Ours | Cause::Timer => None,
        };
        match ev {
            Event::StateChanged { from, to, at } => {
                let change = Transition { from, to };
                match cause {
                    Cause::Segment(i) => {
                        if let Some(r) = self.log.get_mut(i) {
                            r.transitions.push(change);
                        }
                        self.log.pin(i);
                    }
                    Cause::Ours => self.pending_out_transitions.push((at, change)),
                    Cause::Timer => {
                        let t = self.rel(at);
                        self.timer(TimerRecord {
                            t_ns: t,
                            what: change.to_string(),
                        });
                    }
                }
                if to == State::SynReceived {
                    // The peer answered our SYN with a SYN of its own (a simultaneous open,
                    // or a "split handshake"): it is listening. nmap's reason word for
                    // exactly this reply is `split-handshake-syn` (its ER_SYN), port open.
                    self.state = Some(Verdict::SPLIT_HANDSHAKE);
                    self.marks.synack = caused_by;
                    self.marks.simultaneous_open = true;
                    if let Some(i) = caused_by {
                        self.log.synack_marked(i);
                    }
                }
                if from == State::FinWait1 && to == State::Closing {
                    self.close_initiator = Some(CloseInitiator::Simultaneous);
                }
                if from == State::Established && to == State::CloseWait {
                    self.close_initiator.get_or_insert(CloseInitiator::Server);
                }
                if from == State::Established && to == State::FinWait1 {
                    self.close_initiator.get_or_insert(CloseInitiator::Client);
                }
            }
            Event::Connected { peer, .. } => {
                // A simultaneous open already named its reason at the peer's SYN.
                self.state.get_or_insert(Verdict::OPEN);
                if self.marks.synack.is_none()
                    && let Some(i) = caused_by
                {
                    self.marks.synack = Some(i);
                    self.log.synack_marked(i);
                }
                self.irs = Some(self.conn.irs().0);
                self.peer_options = Some(peer);
                if self.cfg.tls.is_some() {
                    self.tls_start(now);
                    return;
                }
                match self.request.take() {
                    Some(request) => {
                        self.conn.send(&request);
                        self.phase = Phase::AwaitingResponse;
                        self.wait_from(now, now + self.cfg.timeout);
                    }
                    None => self.begin_close(now),
                }
            }
            Event::Refused { text, .. } => {
                self.state = Some(Verdict::CLOSED);
                // RFC 9293 §3.5.3: a RST may say why (a firewall's reason, say).
                if let Some(t) = text {
                    self.note(format!("the RST that refused our SYN said \"{t}\""));
                }
                self.finish();
            }
            Event::Reset {
                state,
                at_peer_fin,
                text,
                ..
            } => {
                // A RST at the server's FIN's sequence number answers a segment of ours that
                // did not yet acknowledge that FIN (it crossed it): the server had begun the
                // close, and the RST only refused our late segment. It says nothing new
                // about who closed first, so the close keeps its initiator (`server`, or
                // `simultaneous` when our FIN crossed its FIN), as a RST in TIME-WAIT
                // does; only a RST that ended the connection otherwise is `reset`.
                let late = if at_peer_fin {
                    self.close_initiator
                        .get_or_insert(if state == State::Closing {
                            CloseInitiator::Simultaneous
                        } else {
                            CloseInitiator::Server
                        });
                    " (its RST answered a segment of ours that did not yet acknowledge its \
                     FIN: at the FIN's sequence number, accepted as Linux accepts it)"
                } else {
                    self.close_initiator = Some(CloseInitiator::Reset);
                    ""
                };
                // RFC 9293 §3.5.3: a RST may say why; show what it said.
                let mut said = text
                    .map(|t| format!("; its RST said \"{t}\""))
                    .unwrap_or_default();
                // A RST that comes with another TTL than every segment the server sent was
                // made nearer to us or farther: a firewall or load balancer resetting the
                // connection in the server's name (curl says "reset by peer" alike). With
                // only the handshake to compare, a SYN proxy may have made that instead.
                let rst_ttl = self.last_in_ttl;
                match (self.server_ttl_data, self.server_ttl_any) {
                    (OneTtl::Same(ttl), _) if rst_ttl != ttl => {
                        let from = if rst_ttl > ttl {
                            "from fewer hops away than the server"
                        } else {
                            "by something other than the server"
                        };
                        said.push_str(&format!(
                            "; the RST came with TTL {rst_ttl} where every segment of the \
                             server's came with {ttl}: it was sent {from} — most likely a \
                             firewall or load balancer resetting the connection in its name"
                        ));
                    }
                    (OneTtl::Unseen, OneTtl::Same(ttl)) if rst_ttl != ttl => {
                        said.push_str(&format!(
                            "; the RST came with TTL {rst_ttl} where the server's handshake \
                             came with {ttl}: the two came from different hops — a firewall \
                             resetting the connection, or a SYN proxy that answered the \
                             handshake for the server"
                        ));
                    }
                    _ => {}
                }
                if self.phase == Phase::AwaitingResponse || self.phase == Phase::Connecting {
                    // How far the response got: a server that resets on the request (a
                    // policy, a WAF) from one that fell over while answering (curl's
                    // "Recv failure: Connection reset by peer" says neither).
                    let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
                    let progress = match (self.phase, self.cfg.http.is_some(), self.response.len())
                    {
                        (Phase::AwaitingResponse, _, _) if handshaking => {
                            " during the TLS handshake".to_string()
                        }
                        (Phase::AwaitingResponse, true, 0) => {
                            " before any byte of the response".to_string()
                        }
                        (Phase::AwaitingResponse, true, 1) => {
                            " after 1 byte of the response head, before its end".to_string()
                        }
                        (Phase::AwaitingResponse, true, n) => {
                            format!(" after {n} bytes of the response head, before its end")
                        }
                        _ => String::new(),
                    };
                    self.error = Some(format!(
                        "connection reset by the server in {}{progress}{late}{said}",
                        state.name()
                    ));
                } else if self.phase == Phase::Lingering || self.phase == Phase::Closing {
                    self.note(format!(
                        "the server reset the connection in {}{late}{said}",
                        state.name()
                    ));
                }
                self.finish();
            }
            Event::Data { at, bytes } if self.tls.is_some() => {
                self.tls_on_data(at, &bytes, caused_by)
            }
            Event::Data { at, bytes } => self.on_data(at, &bytes, caused_by),
            Event::PeerFin { .. } => {
                if let Some(t) = self.tls.as_mut().filter(|t| t.is_handshaking()) {
                    self.error = Some(t.closed_mid_handshake());
                } else if self.phase == Phase::AwaitingResponse {
                    self.error = Some(
                        "the server closed the connection before a complete HTTP response".into(),
                    );
                }
                if self.conn.state() == State::CloseWait {
                    self.begin_close(now);
                }
            }
            Event::Retransmit { .. } => {}
            Event::Anomaly { at, anomaly } => {
                let t = self.rel(at);
                self.note(format!("{anomaly} (at {} µs)", t / 1000));
            }
            Event::TimedOut {
                at,
                state,
                answered,
                zero_window,
            } => {
                let t = self.rel(at);
                self.timer(TimerRecord {
                    t_ns: t,
                    what: {
                        let n = self.conn.retransmissions();
                        let mut what = format!(
                            "gave up in {} after {n} retransmission{}",
                            state.name(),
                            if n == 1 { "" } else { "s" }
                        );
                        // Sent by our TCP, but none seen on the wire (the record's
                        // `retransmissions` counts those): said, or the line contradicts
                        // the record's 0 (a walk: a neighbour that never answered ARP).
                        if self.nothing_seen_leaving() {
                            what += ", none of which left this host";
                        }
                        what
                    },
                });
                if state == State::SynSent {
                    self.state = Some(Verdict::NO_RESPONSE);
                } else if zero_window {
                    self.error = Some(format!(
                        "the server stopped answering our zero-window probes in {}",
                        state.name()
                    ));
                } else if answered > 0 {
                    // It spoke, so it did not stop answering: it never acknowledged what
                    // we kept sending.
                    self.error = Some(format!(
                        "the server never acknowledged our retransmitted segment in {} (it sent {answered} segments meanwhile)",
                        state.name()
                    ));
                } else {
                    self.error = Some(format!(
                        "the server stopped answering in {}{}",
                        state.name(),
                        self.soft_icmp_hint()
                    ));
                }
                self.finish();
            }
            Event::Closed { .. } => self.finish(),
            Event::BlackHoleSuspected { at, mtu, mss } => {
                let t = self.rel(at);
                self.timer(TimerRecord {
                    t_ns: t,
                    what: format!(
                        "a full-sized segment lost twice: sending at MSS {mss} (path MTU {mtu}), \
                         suspecting a path MTU black hole"
                    ),
                });
            }
            Event::BlackHoleConfirmed { at, mtu } => {
                let t = self.rel(at);
                // ICMP errors that came but could not be believed (see the notes on each)
                // did not tell us the size either.
                let icmp = match self.icmp_ignored {
                    0 => "without an ICMP error",
                    _ => "without an ICMP error we could use",
                };
                self.note(format!(
                    "path MTU black hole: full-sized segments vanished {icmp}, segments for a \
                     path MTU of {mtu} got through (at {} µs; RFC 2923 §2.1)",
                    t / 1000
                ));
            }
        }
    }

    fn on_data(&mut self, at: Instant, bytes: &[u8], caused_by: Option<usize>) {
        if self.phase != Phase::AwaitingResponse {
            if !bytes.is_empty() && self.http.is_some() {
                self.note(format!(
                    "{} bytes after the response head (ignored)",
                    bytes.len()
                ));
            }
            return;
        }
        // A HEAD response has no body (RFC 9110 §9.3.2): the head is the whole response.
        // Bound what we keep so a server that streams garbage cannot grow us without limit.
        let room = MAX_HEAD.saturating_sub(self.response.len());
        let before = self.response.len();
        self.response
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        // Parse only once the head can be complete: its blank line has arrived (a head
        // of 1 MiB in 1448-byte segments would otherwise be parsed 700 times).
        let from = before.saturating_sub(3);
        let tail = self.response.get(from..).unwrap_or(&[]);
        // A line feed followed by an empty line: `\n\n` or `\n\r\n` (which `\r\n\r\n`
        // contains). One pass over the new bytes, looking at line feeds only.
        let ended = tail.iter().enumerate().any(|(i, &b)| {
            b == b'\n' && matches!(tail.get(i + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..]))
        });
        // The first bytes are parsed at once, so a reply that is not HTTP is named at once.
        let early = before < 64;
        if !ended && !early && self.response.len() < MAX_HEAD {
            return;
        }
        match parse_response(&self.response) {
            HttpParse::Partial if self.response.len() >= MAX_HEAD => {
                self.fail(
                    at,
                    format!(
                        "HTTP response head larger than {} KiB (the most tcpshake reads)",
                        MAX_HEAD / 1024
                    ),
                );
            }
            HttpParse::Partial => {}
            HttpParse::Complete(resp) => {
                let mut headers: BTreeMap<String, String> = BTreeMap::new();
                for (k, v) in resp.headers {
                    headers
                        .entry(k.to_ascii_lowercase())
                        .and_modify(|e| {
                            e.push_str(", ");
                            e.push_str(&v);
                        })
                        .or_insert(v);
                }
                self.http = Some(HttpRecord {
                    request: self.request_line().unwrap_or_default(),
                    status: resp.status,
                    reason: resp.reason,
                    version: format!("HTTP/1.{}", resp.version),
                    headers,
                });
                self.marks.response_complete = caused_by;
                if let Some(i) = caused_by {
                    self.log.pin(i);
                }
                if self.conn.state() == State::CloseWait {
                    // The FIN came with the response; PeerFin will start our close.
                    self.phase = Phase::Closing;
                } else {
                    self.phase = Phase::Lingering;
                    self.wait_from(at, at + self.cfg.linger);
                }
            }
            HttpParse::Invalid(why) => {
                // What came, as the TLS error quotes a cleartext answer: an SSH or SMTP
                // banner says at once what listens there.
                let shown = printable(&self.response[..self.response.len().min(16)]);
                self.fail(
                    at,
                    format!("the reply is not HTTP: {why} (it began \"{shown}…\")"),
                );
            }
        }
    }

    /// `: the server never acknowledged our request …` when that is why we wait: what we
    /// sent is still unacknowledged after retransmissions. Says whether the server spoke
    /// meanwhile, so "no answer" is never claimed of a server that did answer.
    fn unacknowledged_note(&self) -> String {
        if self.conn.snd_una() == self.conn.snd_nxt() || self.conn.retries() == 0 {
            return String::new();
        }
        match self.conn.peer_segments_since_progress() {
            0 => format!(
                ": the server stopped answering (our request sent {} times, unacknowledged)",
                self.conn.retries() + 1
            ),
            n => {
                let dropped = self.conn.peer_segments_dropped_since_progress();
                let unread = if dropped == n {
                    // What it sent may well have acknowledged the request: we could not
                    // read any of it (a middlebox rewriting sequence numbers or timestamps,
                    // a SYN proxy that mismatched them: the notes say which).
                    ", all dropped unread: outside our receive window or refused by PAWS \
                     (see the notes)"
                        .to_string()
                } else if dropped > 0 {
                    format!(
                        ", {dropped} of them dropped unread: outside our receive window or \
                         refused by PAWS (see the notes)"
                    )
                } else {
                    String::new()
                };
                format!(
                    ": the server never acknowledged our request (sent {} times) though it sent {n} segments meanwhile{unread}",
                    self.conn.retries() + 1
                )
            }
        }
    }

    /// What the server's data that did arrive says about the rest, when it never came
    /// (`what`: what we sent it, acknowledged). A hole that never filled while later bytes
    /// came, with none of the segments that came as big as a full-sized one, is the mark
    /// of a path MTU black hole on the way back (RFC 2923 §2.1): a link with a smaller MTU
    /// drops the server's big segments and no ICMP error reaches the server, while its
    /// small last segment passes. Nothing at all after the acknowledgment may be the same
    /// thing or a server that hangs; an MSS every path carries tells the two apart (Linux's
    /// client just waits, as curl does, with no word of either).
    fn return_path_note(&self, what: &str) -> String {
        if self.conn.snd_una() != self.conn.snd_nxt() {
            return String::new(); // the note on our unacknowledged segments says more
        }
        let gap = self.conn.receive_gap();
        let cfg = self.conn.config();
        let (family, floor) = if cfg.remote.is_ipv6() {
            // RFC 8200 §5: every IPv6 link carries 1280 bytes; less 40 + 20 of headers.
            ("IPv6", 1220u16)
        } else {
            // RFC 1122 §3.3.3 / RFC 9293 §3.7.1: 576-byte datagrams; less 20 + 20.
            ("IPv4", 536)
        };
        // A full-sized segment from the server: our MSS, or the server's own when smaller
        // (its link's), less the timestamps option every segment then carries (RFC 7323
        // §3.2).
        let peer = self.conn.peer_options();
        let options = if peer.timestamps { 12 } else { 0 };
        let full = u32::from(cfg.mss.min(peer.mss.unwrap_or(cfg.mss))).saturating_sub(options);
        let smaller_helps = cfg.mss > floor;
        let suggest = format!(
            "{} asks the server for segments every {family} path carries",
            self.cfg.mss_hint.replace("{}", &floor.to_string())
        );
        if gap.hole > 0 && (gap.beyond > 0 || gap.fin_beyond) {
            let after = match (gap.beyond, gap.fin_beyond) {
                (0, _) => "its FIN did".to_string(),
                (b, true) => format!("{b} bytes after them and its FIN did"),
                (b, false) => format!("{b} bytes after them did"),
            };
            let first = u64::from(gap.in_order) + 1;
            let mut note = format!(
                ": bytes {first}–{} from the server never arrived, though {after}",
                first + u64::from(gap.hole) - 1
            );
            // The path's size limit explains the hole only if what is missing is more than
            // any segment that came carried (a lost small segment is loss), that was less
            // than a full-sized one, and the hole is more than the smallest segments every
            // path carries (below that it is no MTU but loss or a filter).
            let largest = gap.largest_segment;
            // Two segments or more of that size are the server's full-sized ones, and the
            // path carried them: something on the path lowered the MSS our SYN offered
            // (MSS clamping), and the hole is loss, not size (a walk: an MSS clamped to
            // 1000 and two of the server's 988-byte segments lost read as a black hole,
            // with advice to lower --mss that could not help).
            if largest < full && gap.largest_count >= 2 {
                let _ = write!(
                    note,
                    " — the server's segments carried at most {largest} bytes, where a \
                     full-sized one carries {full}, and several of that size came: a \
                     middlebox on the path seems to lower the MSS our SYN offered (MSS \
                     clamping); the missing bytes were lost on the way, not too big for it"
                );
            } else if largest < full && gap.hole > largest && gap.hole > u32::from(floor) {
                let came = match largest {
                    0 => "no data segment came".to_string(),
                    l => format!("no segment that came carried more than {l} bytes"),
                };
                let _ = write!(
                    note,
                    " — {came} where a full-sized one carries {full}: the path back to us seems to drop bigger packets, and no ICMP error reaches the server (a path MTU black hole, RFC 2923 §2.1); "
                );
                if smaller_helps {
                    note += &suggest;
                } else {
                    let _ = write!(
                        note,
                        "even at an MSS of {floor}, what every {family} path must carry: a link with a smaller MTU, or a filter dropping packets by size"
                    );
                }
            }
            return note;
        }
        if gap.in_order == 0 && gap.beyond == 0 && !gap.fin_beyond {
            let mut note = format!(": the server acknowledged {what} but sent nothing back");
            if smaller_helps {
                let _ = write!(
                    note,
                    " — a server that hangs does this, and so does a path that drops the server's full-sized segments without an ICMP error reaching it (a path MTU black hole, RFC 2923 §2.1); {suggest}: if the probe then completes, it was the path"
                );
            }
            // A fault walk: a firewall with a 2 s idle timeout forgot the connection while
            // the server took 4 s, and dropped its answer as invalid; the notes above (or,
            // at the floor MSS, nothing) named only the server and the MTU.
            note += "; a stateful firewall or NAT on the path whose idle timeout is shorter than the server's time to answer drops the answer the same way (a longer timeout does not help then; the firewall's counters of invalid packets show it)";
            return note;
        }
        String::new()
    }

    fn begin_close(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        self.wait_from(now, now + self.cfg.timeout);
        // RFC 8446 §6.1: close_notify before the FIN, so the server knows nothing was cut.
        if let Some(t) = self.tls.as_mut() {
            let notify = t.close_notify(self.conn.state() == State::CloseWait);
            self.conn.send(&notify);
        }
        self.conn.close(now);
    }

    /// Give up on the exchange: record why and reset the connection.
    fn fail(&mut self, now: Instant, why: String) {
        self.error.get_or_insert(why);
        // The segment that made us give up may have carried the server's FIN too (it is
        // processed whole before its events reach us): then the server closed first, and
        // our RST only ends what it began.
        if matches!(self.conn.state(), State::CloseWait | State::LastAck) {
            self.close_initiator.get_or_insert(CloseInitiator::Server);
        }
        // `reset` only if our RST really goes out. In SYN-SENT there is no connection to
        // close (the TCB just goes, nothing is sent): null, as for SYNs that timed out;
        // in TIME-WAIT the close had completed and keeps its initiator.
        if self.conn.abort(now) {
            self.close_initiator.get_or_insert(CloseInitiator::Reset);
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.deadline = None;
    }

    /// The user stopped us (Ctrl-C, SIGTERM): reset the connection if it is open. The
    /// record says so, and a probe that had no verdict yet is `interrupted`, not filtered.
    pub fn interrupt(&mut self, now: Instant) {
        if self.phase != Phase::Done {
            self.interrupted = true;
            self.abort(now, "interrupted");
        }
    }

    /// A fragment from the server was dropped by the reassembler (`wire::defrag`): the
    /// record says why, in a note (bounded), as a Linux receiver counts it in its
    /// statistics — else a segment lost that way would leave no trace but a retransmission.
    pub fn fragment_dropped(&mut self, at: Instant, why: crate::wire::defrag::Discard) {
        if let Some(what) = why.describe() {
            let t = self.rel(at);
            self.note(format!(
                "a fragment from the server at {} µs was dropped: {what}",
                t / 1000
            ));
        }
    }

    /// This host's kernel would not send a segment of `len` bytes we handed it: too big for
    /// its path MTU to the peer (EMSGSIZE, with that MTU when the route could tell it), or
    /// dropped on the way out (ENOBUFS: a full queue, a device that would not take it).
    /// Not the end of the probe, as for Linux's own TCP: the segment stays in flight, lost;
    /// a smaller path MTU sends the flight again at once at the new size, and anything
    /// else is sent again by the retransmission timer.
    pub fn send_refused(&mut self, now: Instant, refusal: LocalRefusal, len: usize) {
        if self.phase == Phase::Done {
            return;
        }
        let t = self.rel(now);
        let change = match refusal {
            LocalRefusal::TooBig { mtu: Some(mtu) } => self.conn.handle_local_too_big(now, mtu),
            _ => None,
        };
        match change {
            Some(c) if c.lowered => {
                let mut what = format!(
                    "this host would not send a {len}-byte segment (EMSGSIZE): its path MTU to \
                     the server is {}",
                    c.path_mtu
                );
                if c.mss_after < c.mss_before {
                    let _ = write!(
                        what,
                        ", MSS {} → {}, {} segment{} sent again",
                        c.mss_before,
                        c.mss_after,
                        c.resent,
                        if c.resent == 1 { "" } else { "s" }
                    );
                }
                self.timer(TimerRecord { t_ns: t, what });
            }
            _ => {
                let why = match refusal {
                    LocalRefusal::TooBig { .. } => "too big for this host's path MTU (EMSGSIZE)",
                    LocalRefusal::Dropped => "dropped by this host on its way out (ENOBUFS)",
                };
                self.note(format!(
                    "a {len}-byte segment at {} µs was {why}: counted as lost, sent again by \
                     the retransmission timer",
                    t / 1000
                ));
            }
        }
        self.drain_events(now, Cause::Ours);
    }

    /// The caller's own deadline came (the exporter's: the scrape's timeout): a probe still
    /// exchanging is aborted as by [`Probe::abort`], its error `gave up: {why}`; one waiting
    /// out TIME-WAIT had completed its exchange, so TIME-WAIT just ends early, with a note,
    /// and the exchange stays a success.
    pub fn out_of_time(&mut self, now: Instant, why: &str) {
        if self.phase != Phase::Done && self.conn.state() == State::TimeWait {
            let t = self.rel(now);
            self.note(format!(
                "TIME-WAIT ended early at {:.3} ms: {why}",
                t as f64 / 1e6
            ));
            self.conn.end_time_wait(now);
            self.drain_events(now, Cause::Ours);
            return;
        }
        self.abort(now, &format!("gave up: {why}"));
    }

    /// Stop now (the caller's own limit, a failure of the I/O around us): reset the
    /// connection if it is open.
    pub fn abort(&mut self, now: Instant, why: &str) {
        if self.phase != Phase::Done {
            self.fail(now, why.to_string());
            self.drain_events(now, Cause::Ours);
        }
    }

    /// `timers` (the timer records), plus our own state changes that no segment went out
    /// with (an abort in SYN-SENT sends nothing), in time order.
    fn with_unsent(&self, mut all: Vec<TimerRecord>) -> Vec<TimerRecord> {
        for (at, change) in &self.pending_out_transitions {
            all.push(TimerRecord {
                t_ns: self.rel(*at),
                what: change.to_string(),
            });
        }
        all.sort_by_key(|t| t.t_ns);
        all
    }

    /// Run the handshake once in memory against a made-up SYN-ACK, sending nothing.
    ///
    /// The first time code runs it waits on the page cache, TLB and branch predictors;
    /// after a SYN-ACK arrives that is microseconds of a reaction budget the kernel itself
    /// meets in ~10 µs. A rehearsal before the real SYN moves that cost out of every leg.
    pub fn rehearse(cfg: &ProbeConfig, mut emit: impl FnMut(&tcp::Segment)) {
        let mut p = Probe::new(cfg.clone());
        let t0 = Instant::from_nanos(1);
        p.start(t0);
        let Some(syn) = p.poll_transmit(t0) else {
            return;
        };
        emit(&syn);
        let synack = TcpRepr {
            src_port: p.remote().port(),
            dst_port: p.local().port(),
            seq: SeqNumber(1),
            ack: syn.seq.add(1),
            flags: wire::TcpFlags::SYN | wire::TcpFlags::ACK,
            window: 64_000,
            urgent: 0,
            options: syn.options,
            payload: &[],
        };
        let ip = wire::IpRepr::new(
            p.remote().ip(),
            p.local().ip(),
            PROTO_TCP,
            64,
            synack.buffer_len(),
        );
        let mut buf = [0u8; 128];
        let Ok(n) = ip.emit(&mut buf) else { return };
        let Ok(m) = synack.emit(ip.src, ip.dst, &mut buf[n..]) else {
            return;
        };
        p.handle_packet(t0, false, &buf[..n + m], false);
        while let Some(seg) = p.poll_transmit(t0) {
            emit(&seg);
        }
        let _ = p.result();
    }

    pub fn result(&self) -> ProbeResult {
        self.result_with(
            self.log.kept(),
            self.http.clone(),
            self.anomalies.clone(),
            self.timers.clone(),
        )
    }

    /// [`Probe::result`] for a probe that is over: its records move, not copied (a survey
    /// makes one per probe, thousands a second).
    pub fn into_result(mut self) -> ProbeResult {
        let log = std::mem::replace(&mut self.log, SegmentLog::taken());
        let http = self.http.take();
        let anomalies = std::mem::take(&mut self.anomalies);
        let timers = std::mem::take(&mut self.timers);
        self.result_with(log.into_kept(), http, anomalies, timers)
    }

    fn result_with(
        &self,
        kept: Kept<'_>,
        http: Option<HttpRecord>,
        mut anomalies: Vec<String>,
        timers: Vec<TimerRecord>,
    ) -> ProbeResult {
        let unknown = if self.interrupted {
            Verdict::INTERRUPTED
        } else {
            Verdict::NO_RESPONSE
        };
        let Verdict { state, reason } = self.state.unwrap_or(unknown);
        let (legs, leg_notes) = self.legs(&kept);
        // What the bounds left out is said, never silently dropped.
        if kept.pinned_dropped > 0 {
            anomalies.push(format!(
                "the segment log left out {} segments a leg may end at (more than it keeps): \
                 legs may be wrong",
                kept.pinned_dropped
            ));
        }
        if self.timers_omitted > 0 {
            anomalies.push(format!(
                "…and {} more timer lines (a record keeps {MAX_NOTES})",
                self.timers_omitted
            ));
        }
        if self.notes_omitted > 0 {
            anomalies.push(format!(
                "…and {} more notes (a record keeps {MAX_NOTES})",
                self.notes_omitted
            ));
        }
        let tls = self
            .tls
            .as_ref()
            .map(|t| t.record(&kept.records, self.cfg.tcp.isn.0, &|i| kept.position(i)));
        ProbeResult {
            schema: SCHEMA,
            target: self.cfg.target.clone(),
            addr: self.remote().ip().to_string(),
            port: self.remote().port(),
            src_addr: self.local().ip().to_string(),
            src_port: self.local().port(),
            state,
            reason,
            reply_ttl: self.reply_ttl,
            reply_from: self.reply_from.map(|a| a.to_string()),
            legs_ns: legs,
            leg_notes,
            retransmissions: self.retransmissions,
            peer_options: self.peer_options,
            request_sent: self.request_sent(&kept.records),
            module: None,
            http,
            close_initiator: self.close_initiator,
            isn: self.cfg.tcp.isn.0,
            irs: self.irs,
            tls,
            segments_omitted: kept.omitted,
            capture_lost: self.capture_lost,
            segments: kept.records.into_owned(),
            timers: self.with_unsent(timers),
            anomalies,
            icmp_ignored: self.icmp_ignored,
            path_mtu: self.conn.path_mtu(),
            pmtu_black_hole: self.conn.pmtu_black_hole(),
            error: match (&self.error, &self.unresolved) {
                (None, Some(what))
                    if state == verdict::PortState::Filtered && self.nothing_seen_leaving() =>
                {
                    Some(format!("none of our SYNs left this host: {what}"))
                }
                (e, _) => e.clone(),
            },
            interrupted: self.interrupted,
        }
    }

    /// `HEAD /path HTTP/1.1`: the request line of the request this probe makes, if any.
    fn request_line(&self) -> Option<String> {
        let http = self.cfg.http.as_ref()?;
        Some(format!("HEAD {} HTTP/1.1", http.path))
    }

    /// The request, when a segment of ours carrying its first byte is in the log: the
    /// record of a request that went unanswered (`http` is null then).
    fn request_sent(&self, log: &[SegmentRecord]) -> Option<RequestRecord> {
        let line = self.request_line()?;
        // Where its first byte is in our stream: the first data with plain HTTP; with TLS,
        // where the session put the record carrying it (after the handshake's flights).
        let offset = match &self.tls {
            Some(t) => t.request_offset()?,
            None => 0,
        };
        let i = tls::out_segment(log, self.cfg.tcp.isn.0, offset)?;
        let first = self.cfg.tcp.isn.0.wrapping_add(1);
        Some(RequestRecord {
            line,
            seq: first.wrapping_add(offset as u32),
            t_ns: log[i].t_ns,
        })
    }

    fn legs(&self, kept: &Kept<'_>) -> (record::Legs, legs::LegNotes) {
        let (m, notes) = self.measure(kept);
        (m.legs, notes)
    }

    /// The legs with the segments each runs between (positions of `kept`), computed on the
    /// kept records with the marks moved to their positions (the log keeps every record a
    /// leg may pick: log.rs).
    fn measure(&self, kept: &Kept<'_>) -> (legs::Measured, legs::LegNotes) {
        let pos = |i: Option<usize>| i.and_then(|i| kept.position(i));
        let marks = legs::Marks {
            synack: pos(self.marks.synack),
            response_complete: pos(self.marks.response_complete),
            ..self.marks
        };
        let (mut m, mut notes) = legs::compute(&kept.records, marks);
        if let Some(t) = &self.tls {
            t.legs(
                &kept.records,
                self.cfg.tcp.isn.0,
                marks.response_complete,
                &mut m,
                &|i| kept.position(i),
            );
            // TLS measures request→first byte its own way (to the first plaintext): a note
            // about the plain-TCP measure no longer applies.
            if m.legs.get(record::Leg::RequestToFirstByte).is_some() {
                notes.remove(record::Leg::RequestToFirstByte.name());
            }
        }
        (m, notes)
    }

    /// What the probe made of the packet it was last handed ([`Probe::handle_datagram`]),
    /// as it stood then: for a capture's comments (pcapng), written as packets are seen,
    /// before the record is final. A leg is named at the segment that ended it once that
    /// segment is known to end it — at once for all but our Finished in a full TLS 1.2
    /// handshake (known only when the server's Finished came) and `total` (whose end is
    /// the last segment, known at the end), which are left out.
    pub fn packet_note(&self) -> PacketNote {
        let h = self.last_handled;
        let logged = h.logged.and_then(|i| Some((i, self.log.get(i)?)));
        // Legs end, and labels stand, only at records the log keeps for them (log.rs): past
        // the head, under a flood, the others are not worth a copy of the log each.
        let view = logged
            .filter(|&(i, _)| self.log.needed(i))
            .and_then(|(i, seg)| {
                let kept = self.log.kept();
                Some((kept.position(i)?, seg, kept))
            });
        let mut legs = Vec::new();
        if let Some((i, _, kept)) = &view {
            let (m, _) = self.measure(kept);
            for leg in Leg::ALL {
                if leg != Leg::Total
                    && m.span(leg).is_some_and(|(_, to)| to == *i)
                    && let Some(ns) = m.legs.get(leg)
                {
                    legs.push((leg, ns));
                }
            }
        }
        PacketNote {
            segment: logged.map(|(_, seg)| seg.clone()),
            legs,
            label: view.and_then(|(i, seg, kept)| self.http_label(&kept, i, seg)),
            notes: self.notes_since(h),
        }
    }

    /// `HEAD / HTTP/1.1` for the segment carrying the first byte of our request (with TLS:
    /// of the encrypted request, `… in TLS`), the status line for the segment that completed
    /// the response head; `TLS ClientHello` and `TLS ServerHello` for theirs. `i`: the
    /// segment's position among the `kept` records.
    fn http_label(&self, kept: &Kept<'_>, i: usize, seg: &SegmentRecord) -> Option<String> {
        let isn = self.cfg.tcp.isn.0;
        let log = &kept.records[..];
        if let Some(t) = &self.tls
            && !seg.retransmission
        {
            match t.hello_segments(log, isn, &|id| kept.position(id)) {
                (Some(h), _) if h == i => return Some("TLS ClientHello".into()),
                (_, Some(sh)) if sh == i => return Some("TLS ServerHello".into()),
                _ => {}
            }
        }
        let http = self.cfg.http.as_ref()?;
        let in_tls = if self.tls.is_some() { " in TLS" } else { "" };
        let request = match &self.tls {
            Some(t) => t.request_segment(log, isn),
            None => log
                .iter()
                .position(|r| r.dir == Dir::Out && r.len > 0 && !r.foreign),
        };
        if request == Some(i) && !seg.retransmission {
            return Some(format!("HEAD {} HTTP/1.1{in_tls}", http.path));
        }
        let h = self.http.as_ref()?;
        let complete = self
            .marks
            .response_complete
            .and_then(|id| kept.position(id));
        (complete == Some(i)).then(|| {
            format!(
                "{} {} {} (response complete){in_tls}",
                h.version, h.status, h.reason
            )
        })
    }

    /// Notes and timer lines added since the packet `h` was handed in.
    fn notes_since(&self, h: Handled) -> Vec<String> {
        let timers = self.timers.get(h.timers_from..).unwrap_or_default();
        let notes = self.anomalies.get(h.anomalies_from..).unwrap_or_default();
        timers
            .iter()
            .map(|t| t.what.clone())
            .chain(notes.iter().cloned())
            .collect()
    }
}

/// Bytes a server sent, shown as text in a message: printable ASCII as it is, anything
/// else as `.` (a banner or an HTML page reads; binary cannot reach the terminal).
pub(crate) fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;

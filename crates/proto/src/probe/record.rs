//! The record schema: what one probe found, as a script reads it (`--json`, schema 1,
//! documented in README.md). Every type here serializes to exactly the JSON `probe` writes
//! and deserializes from it, so `tcpshake report` reads back what `probe` wrote (the golden
//! tests in `tests.rs` pin both directions).

use crate::tcp::{PeerOptions, State};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;

pub const SCHEMA: u32 = 1;

pub use super::verdict::{PortState, Reason, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Out,
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseInitiator {
    Client,
    Server,
    Simultaneous,
    Reset,
}

/// One leg of the exchange: the time between two segments on the wire.
///
/// This table is the one place the legs are listed: the JSON keys (in the schema's order),
/// the labels of the tables, the CSV columns, the statistics and the SLOs all iterate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    SynToSynack,
    SynackToAck,
    RequestToFirstByte,
    RequestToComplete,
    /// The first FIN (whoever sent it) → the other side's ACK of it.
    FinToAck,
    /// The first FIN → the other side's FIN.
    FinToPeerFin,
    /// The second FIN → its ACK (the last ACK of the exchange).
    PeerFinToLastAck,
    /// First SYN → last segment of the exchange.
    Total,
    // HTTPS only (see `probe::tls` for where each starts and ends).
    TlsClienthelloToServerhello,
    TlsClienthelloToServerFinished,
    TlsClienthelloToClientFinished,
    TlsSynToAppconnect,
    TlsCloseNotifyToFin,
}

/// Which part of the exchange a leg times (the single probe's view prints one line each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegGroup {
    Connect,
    Http,
    Close,
    Total,
    Tls,
}

/// (leg, JSON key, short label for tables, phrase for the segment view, group)
const LEG_TABLE: [(Leg, &str, &str, &str, LegGroup); Leg::COUNT] = {
    use LegGroup::*;
    [
        (
            Leg::SynToSynack,
            "syn_to_synack",
            "SYN→SYN-ACK",
            "SYN→SYN-ACK",
            Connect,
        ),
        (
            Leg::SynackToAck,
            "synack_to_ack",
            "SYN-ACK→ACK",
            "SYN-ACK→ACK",
            Connect,
        ),
        (
            Leg::RequestToFirstByte,
            "request_to_first_byte",
            "req→1st byte",
            "request→first byte",
            Http,
        ),
        (
            Leg::RequestToComplete,
            "request_to_complete",
            "req→complete",
            "→complete",
            Http,
        ),
        (Leg::FinToAck, "fin_to_ack", "FIN→ACK", "FIN→ACK", Close),
        (
            Leg::FinToPeerFin,
            "fin_to_peer_fin",
            "FIN→peer FIN",
            "FIN→peer FIN",
            Close,
        ),
        (
            Leg::PeerFinToLastAck,
            "peer_fin_to_last_ack",
            "peer FIN→ACK",
            "→last ACK",
            Close,
        ),
        (Leg::Total, "total", "total", "total", Total),
        (
            Leg::TlsClienthelloToServerhello,
            "tls_clienthello_to_serverhello",
            "CH→SH",
            "ClientHello→ServerHello",
            Tls,
        ),
        (
            Leg::TlsClienthelloToServerFinished,
            "tls_clienthello_to_server_finished",
            "CH→srv Fin",
            "→server Finished",
            Tls,
        ),
        (
            Leg::TlsClienthelloToClientFinished,
            "tls_clienthello_to_client_finished",
            "CH→our Fin",
            "→our Finished",
            Tls,
        ),
        (
            Leg::TlsSynToAppconnect,
            "tls_syn_to_appconnect",
            "SYN→appconn",
            "SYN→appconnect",
            Tls,
        ),
        (
            Leg::TlsCloseNotifyToFin,
            "tls_close_notify_to_fin",
            "notify→FIN",
            "close_notify→FIN",
            Tls,
        ),
    ]
};

impl Leg {
    pub const COUNT: usize = 13;
    /// Every leg, in the schema's order: the eight TCP/HTTP legs, then the TLS ones.
    pub const ALL: [Leg; Leg::COUNT] = {
        let mut all = [Leg::Total; Leg::COUNT];
        let mut i = 0;
        while i < Leg::COUNT {
            all[i] = LEG_TABLE[i].0;
            i += 1;
        }
        all
    };
    /// The legs every record has (HTTPS records add the TLS ones).
    pub const TCP: &'static [Leg] = Leg::ALL.split_at(8).0;

    /// Position in [`Leg::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The JSON key (`syn_to_synack`).
    pub fn name(self) -> &'static str {
        LEG_TABLE[self.index()].1
    }

    /// A short label for tables (`SYN→SYN-ACK`, `req→1st byte`).
    pub fn label(self) -> &'static str {
        LEG_TABLE[self.index()].2
    }

    /// The phrase in a single probe's view, read after the leg before it on its line
    /// (`request→first byte   →complete`).
    pub fn phrase(self) -> &'static str {
        LEG_TABLE[self.index()].3
    }

    pub fn group(self) -> LegGroup {
        LEG_TABLE[self.index()].4
    }

    pub fn is_tls(self) -> bool {
        self.group() == LegGroup::Tls
    }

    /// A leg by its JSON key, or one of the short aliases `connect` (SYN→SYN-ACK) and
    /// `ttfb` (request→first byte).
    pub fn from_name(name: &str) -> Option<Leg> {
        match name {
            "connect" => Some(Leg::SynToSynack),
            "ttfb" => Some(Leg::RequestToFirstByte),
            _ => LEG_TABLE.iter().find(|e| e.1 == name).map(|e| e.0),
        }
    }
}

/// A leg is written as its JSON key.
impl Serialize for Leg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Every leg is a difference of two kernel timestamps, in ns; `None` when that leg did not
/// happen. The TLS legs belong to HTTPS probes only: a plain probe's record has no
/// `tls_*` keys at all, an HTTPS probe's has all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Legs {
    ns: [Option<u64>; Leg::COUNT],
    tls: bool,
}

impl Legs {
    /// No leg measured yet; `tls`: the record carries the TLS legs.
    pub fn new(tls: bool) -> Legs {
        Legs {
            ns: [None; Leg::COUNT],
            tls,
        }
    }

    pub fn get(&self, leg: Leg) -> Option<u64> {
        self.ns[leg.index()]
    }

    /// Sets a leg; setting a TLS leg makes the record an HTTPS one.
    pub fn set(&mut self, leg: Leg, ns: Option<u64>) {
        self.ns[leg.index()] = ns;
        self.tls |= leg.is_tls();
    }

    /// Whether the record carries the TLS legs.
    pub fn has_tls(&self) -> bool {
        self.tls
    }

    /// The legs this record carries, in the schema's order, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (Leg, Option<u64>)> + '_ {
        let carried = if self.tls { Leg::COUNT } else { Leg::TCP.len() };
        Leg::ALL[..carried].iter().map(|&l| (l, self.get(l)))
    }
}

impl Serialize for Legs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (leg, v) in self.iter() {
            m.serialize_entry(leg.name(), &v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Legs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Legs, D::Error> {
        let map: BTreeMap<String, Option<u64>> = BTreeMap::deserialize(d)?;
        let mut legs = Legs::default();
        for (k, v) in map {
            // Unknown keys are a newer tcpshake's legs: kept out, not an error.
            if let Some(leg) = LEG_TABLE.iter().find(|e| e.1 == k).map(|e| e.0) {
                legs.set(leg, v);
            }
        }
        Ok(legs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRecord {
    /// Our request line, e.g. `HEAD / HTTP/1.1`.
    pub request: String,
    pub status: u16,
    pub reason: String,
    /// "HTTP/1.1" or "HTTP/1.0".
    pub version: String,
    /// Header names lower-cased; repeated headers joined with ", " (RFC 9110 §5.3).
    pub headers: BTreeMap<String, String>,
}

/// The request we sent, whether or not a response came: `http` is null without one, and
/// a request that went unanswered is the first thing to know about such a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Our request line, e.g. `HEAD / HTTP/1.1` (as `http.request`).
    pub line: String,
    /// The sequence number of its first byte, absolute as in `segments` (with TLS, of the
    /// first byte of the TLS record carrying it).
    pub seq: u32,
    /// ns since our first SYN: when the first segment carrying that byte left.
    pub t_ns: i64,
}

/// One segment as the tap saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub dir: Dir,
    /// ns since our first SYN left (negative only for nothing: the first SYN is 0).
    pub t_ns: i64,
    /// The kernel timestamp, ns since the epoch (same clock and tap as tcpdump).
    pub ts_ns: u64,
    #[serde(serialize_with = "ser_flags", deserialize_with = "de_flags")]
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub len: u32,
    #[serde(serialize_with = "ser_options", deserialize_with = "de_options")]
    pub options: TcpOptions,
    pub ttl: u8,
    /// Sent again: same sequence range and SYN/FIN as an earlier segment of ours.
    pub retransmission: bool,
    /// State changes this segment caused (or, outgoing, came with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Checksum did not verify: the segment was ignored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bad_checksum: bool,
    /// An outgoing segment tcpshake did not make (the kernel's, or another program's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
    /// Ours, but sent by tcpshake's program in the kernel (the handshake's ACK, and the
    /// request riding on it, sent from the softirq that received the SYN-ACK: io/reflex.rs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kernel: bool,
    /// The urgent pointer, when URG is set (reported, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgent: Option<u16>,
    /// How many IP fragments the segment arrived in (wire::defrag); 1 for an unfragmented
    /// one, which JSON leaves out. `ts_ns` is then the arrival of the fragment that
    /// completed it.
    #[serde(default = "one", skip_serializing_if = "unfragmented")]
    pub fragments: u16,
    /// Segments left out of the log right before this one (the log is bounded: a flood
    /// keeps its first and last records and those a leg needs); 0, left out of JSON, when
    /// none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_before: u64,
}

fn one() -> u16 {
    1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn unfragmented(n: &u16) -> bool {
    *n <= 1
}

/// A state change, written `FROM → TO` in RFC 9293's names (`SYN-SENT → ESTABLISHED`).
/// Kept as the two states, not as text: a probe makes five or so, a survey thousands of
/// probes a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from.name(), self.to.name())
    }
}

impl Serialize for Transition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Transition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Transition, D::Error> {
        let text = String::deserialize(d)?;
        let state = |name: &str| {
            State::from_name(name.trim()).ok_or_else(|| {
                serde::de::Error::custom(format!("`{name}` is not an RFC 9293 state"))
            })
        };
        let (from, to) = text
            .split_once('→')
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not FROM → TO")))?;
        Ok(Transition {
            from: state(from)?,
            to: state(to)?,
        })
    }
}

/// A state change no segment caused (a timer, or giving up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub t_ns: i64,
    pub what: String,
}

/// One probe's record: one JSON line of `probe --json`.
///
/// Reading one back (`tcpshake report`) needs the verdict and the legs: `schema`, `target`,
/// `addr`, `port`, `state`, `reason`, `legs_ns`; what a record made by other means may
/// leave out is empty (`#[serde(default)]`, missing options are null).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub schema: u32,
    pub target: String,
    pub addr: String,
    pub port: u16,
    #[serde(default)]
    pub src_addr: String,
    #[serde(default)]
    pub src_port: u16,
    pub state: PortState,
    pub reason: Reason,
    pub reply_ttl: Option<u8>,
    /// Who answered (the target, or the router that sent an ICMP error).
    pub reply_from: Option<String>,
    pub legs_ns: Legs,
    /// Why a leg is null although both its ends were seen (a response that came before
    /// the request…), or how a leg was measured when not as its name says; by leg name.
    /// Left out when there is none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub leg_notes: super::legs::LegNotes,
    #[serde(default)]
    pub retransmissions: u32,
    pub peer_options: Option<PeerOptions>,
    pub http: Option<HttpRecord>,
    /// The request, once a segment of ours carrying its first byte left; absent when none
    /// did (no HTTP, no connection, or the TLS handshake failed first). Added to schema 1
    /// compatibly: a reader that does not know it is unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sent: Option<RequestRecord>,
    /// The exporter's module that made the probe (`records` files); absent elsewhere.
    /// Added to schema 1 compatibly. `tcpshake report` keeps one module's probes of a
    /// target apart from another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub close_initiator: Option<CloseInitiator>,
    #[serde(default)]
    pub isn: u32,
    pub irs: Option<u32>,
    #[serde(default)]
    pub segments: Vec<SegmentRecord>,
    /// Segments seen but left out of `segments` (a flood: the log keeps at most 896, see
    /// `omitted_before`); only written when some were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub segments_omitted: u64,
    /// Packets the capture dropped while this probe ran (the tap's ring or queue was full,
    /// PACKET_STATISTICS): segments our TCP never saw, so the server had to send them again
    /// and legs may be wrong. A survey's tap is shared, so they may have been another
    /// probe's. Only written when some were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub capture_lost: u64,
    #[serde(default)]
    pub timers: Vec<TimerRecord>,
    #[serde(default)]
    pub anomalies: Vec<String>,
    /// ICMP errors quoting our 4-tuple that were not believed: their quoted sequence
    /// number was not in flight (RFC 5927 §4.1), or their content was impossible. Each
    /// has a note in `anomalies` saying why.
    #[serde(default)]
    pub icmp_ignored: u32,
    /// The path MTU, once a fragmentation-needed / Packet Too Big (RFC 1191, RFC 8201) or
    /// a black hole lowered it below the route's; null while it was the route's.
    #[serde(default)]
    pub path_mtu: Option<u32>,
    /// Full-sized segments vanished without an ICMP error and smaller ones got through
    /// (RFC 2923 §2.1).
    #[serde(default)]
    pub pmtu_black_hole: bool,
    pub error: Option<String>,
    /// The user stopped this probe before it ended (Ctrl-C, SIGTERM): its legs are
    /// partial, and statistics leave it out. Only written when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// HTTPS only: what the TLS handshake negotiated and showed.
    pub tls: Option<TlsRecord>,
}

/// One certificate of the chain the server sent, leaf first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName (RFC 5280 §4.2.1.6).
    pub sans: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// Whole days from the handshake to `not_after` (negative once expired).
    pub days_to_expiry: i64,
}

/// The `tls` object of a probe record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRecord {
    /// `TLSv1.3`, `TLSv1.2`, or null before a ServerHello.
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub alpn: Option<String>,
    pub key_exchange_group: Option<String>,
    /// The SNI we sent (null for an address target without `--sni`).
    pub sni: Option<String>,
    /// The name or address the certificate was checked against.
    pub server_name: String,
    /// `system` or the `--cacert` file.
    pub trust: String,
    /// null when no certificate was seen (the server never got that far).
    pub verified: Option<bool>,
    pub verify_error: Option<String>,
    /// `--insecure`: a failed verification was reported, not fatal.
    pub insecure: bool,
    pub certificates: Vec<CertRecord>,
    /// Who sent close_notify first: `client`, `server`, or null.
    pub close_notify_first: Option<String>,
    /// Whether we sent close_notify (not when the server had closed completely first).
    pub close_notify_sent: bool,
    /// What went wrong in TLS itself (alert, not TLS, closed mid-handshake).
    pub error: Option<String>,
}

impl ProbeResult {
    /// One line of `probe --json` output, checked to be schema 1.
    pub fn from_json_line(line: &str) -> Result<ProbeResult, String> {
        #[derive(Deserialize)]
        struct Schema {
            schema: u32,
        }
        let v: Schema = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if v.schema != SCHEMA {
            return Err(format!(
                "schema {} (this tcpshake reads schema {SCHEMA})",
                v.schema
            ));
        }
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    /// The handshake's ACK was sent by tcpshake's kernel program (a segment marked
    /// `kernel`): CSV's and Influx's `kernel_ack`.
    pub fn kernel_ack(&self) -> bool {
        self.segments.iter().any(|s| s.kernel)
    }

    /// Did the exchange do everything that was asked (for the exit code)?
    pub fn succeeded(&self) -> bool {
        self.state == PortState::Open && self.error.is_none()
    }

    /// Why the probe did not succeed, in one line: the port's state and nmap's reason when
    /// it was not open (and who said so, when a router did), then the exchange's error.
    /// None when it succeeded. What the exporter logs for a failed `/probe`, and the first
    /// line of its `debug=true` account.
    pub fn failure(&self) -> Option<String> {
        if self.succeeded() {
            return None;
        }
        let mut why = match self.state {
            PortState::Open => String::new(),
            PortState::Interrupted => "stopped before any answer".to_string(),
            state => {
                let mut w = format!("port {} ({}", state.as_str(), self.reason.as_str());
                if let Some(from) = self.reply_from.as_deref().filter(|f| *f != self.addr) {
                    let _ = write!(w, " from {from}");
                }
                w.push(')');
                w
            }
        };
        if let Some(e) = &self.error
            && !(self.state == PortState::Interrupted && e == "interrupted")
        {
            if !why.is_empty() {
                why.push_str(": ");
            }
            why.push_str(e);
        }
        if why.is_empty() {
            why.push_str("failed");
        }
        // One line whatever an error quoted (a server's bytes are escaped before they get
        // here; this is the last guard of a log line).
        Some(
            why.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

/// One answered port, as `scan --json` writes it (one line each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub addr: IpAddr,
    pub port: u16,
    pub state: PortState,
    pub reason: Reason,
    pub reply_ttl: u8,
    /// Who sent the reply, when not the target: the router or firewall whose ICMP error
    /// decided the port (nmap's `reason_ip`, its `--reason` "from …"). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_from: Option<IpAddr>,
    /// SYN (kernel TX timestamp) → reply (kernel RX timestamp); null when the SYN's
    /// timestamp was no longer remembered.
    pub rtt_ns: Option<u64>,
    /// When the reply arrived (kernel timestamp, ns since the Unix epoch).
    pub t_ns: u64,
    /// `--complete`, open ports only: the full connection made after the scan.
    #[serde(flatten)]
    pub complete: Option<Completion>,
}

/// An on-link host neighbour resolution found down, as `scan --all --json` writes it:
/// one line among the port lines, told apart by having no `port`. It was not scanned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub addr: IpAddr,
    /// Always `down` (hosts that are up have port lines).
    pub state: HostState,
    /// `no-arp` (IPv4) or `no-nd` (IPv6): which resolution went unanswered.
    pub reason: Reason,
    /// When the scan gave up on it (ns since the Unix epoch).
    pub t_ns: u64,
}

/// A host's state, nmap's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Up,
    Down,
}

/// `--complete`: a second, full connection to an open port (handshake, then our FIN, RFC
/// 9293 §3.6), timed like `tcpshake probe --no-http` does it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The probe's legs: SYN→SYN-ACK, SYN-ACK→ACK, then the close.
    pub legs_ns: Legs,
    /// Who closed first: `client` when the close went as planned.
    pub close_initiator: Option<CloseInitiator>,
    /// Why the connection did not complete, if it did not (null when it did).
    pub complete_error: Option<String>,
}

fn ser_flags<S: Serializer>(f: &TcpFlags, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(f)
}

fn ser_options<S: Serializer>(o: &TcpOptions, s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    if let Some(mss) = o.mss {
        m.serialize_entry("mss", &mss)?;
    }
    if o.sack_permitted {
        m.serialize_entry("sack_permitted", &true)?;
    }
    if let Some((val, ecr)) = o.timestamps {
        m.serialize_entry("ts", &[val, ecr])?;
    }
    if let Some(ws) = o.wscale {
        m.serialize_entry("wscale", &ws)?;
    }
    let blocks: Vec<[u32; 2]> = o
        .sack_blocks
        .iter()
        .flatten()
        .map(|(l, r)| [l.0, r.0])
        .collect();
    if !blocks.is_empty() {
        m.serialize_entry("sack", &blocks)?;
    }
    if o.unknown_count > 0 {
        m.serialize_entry("unknown", &UnknownKinds(o))?;
        // More than the kinds kept: the count says how many there were (a review: read
        // back, the record had said as many as it listed).
        let kept = o.unknown.iter().flatten().count();
        if usize::from(o.unknown_count) > kept {
            m.serialize_entry("unknown_count", &o.unknown_count)?;
        }
    }
    if o.malformed_count > 0 {
        let kinds: Vec<u8> = o.malformed_kinds().collect();
        let kept = kinds.len();
        m.serialize_entry("malformed", &kinds)?;
        if usize::from(o.malformed_count) > kept {
            m.serialize_entry("malformed_count", &o.malformed_count)?;
        }
    }
    m.end()
}

fn de_flags<'de, D: Deserializer<'de>>(d: D) -> Result<TcpFlags, D::Error> {
    let text = String::deserialize(d)?;
    TcpFlags::from_letters(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a set of TCP flags")))
}

/// The options object as `ser_options` writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsIn {
    mss: Option<u16>,
    #[serde(default)]
    sack_permitted: bool,
    ts: Option<[u32; 2]>,
    wscale: Option<u8>,
    #[serde(default)]
    sack: Vec<[u32; 2]>,
    #[serde(default)]
    unknown: Vec<u8>,
    #[serde(default)]
    malformed: Vec<u8>,
    /// Present when there were more than the kinds listed.
    unknown_count: Option<u8>,
    malformed_count: Option<u8>,
}

fn de_options<'de, D: Deserializer<'de>>(d: D) -> Result<TcpOptions, D::Error> {
    let o = OptionsIn::deserialize(d)?;
    let mut out = TcpOptions {
        mss: o.mss,
        wscale: o.wscale,
        sack_permitted: o.sack_permitted,
        timestamps: o.ts.map(|[v, e]| (v, e)),
        ..Default::default()
    };
    for (slot, [l, r]) in out.sack_blocks.iter_mut().zip(o.sack) {
        *slot = Some((SeqNumber(l), SeqNumber(r)));
    }
    for (slot, k) in out.unknown.iter_mut().zip(&o.unknown) {
        *slot = Some(*k);
    }
    out.unknown_count = o
        .unknown_count
        .unwrap_or(u8::try_from(o.unknown.len()).unwrap_or(u8::MAX));
    for (slot, k) in out.malformed.iter_mut().zip(&o.malformed) {
        *slot = Some(*k);
    }
    out.malformed_count = o
        .malformed_count
        .unwrap_or(u8::try_from(o.malformed.len()).unwrap_or(u8::MAX));
    Ok(out)
}

struct UnknownKinds<'a>(&'a TcpOptions);

impl Serialize for UnknownKinds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for k in self.0.unknown.iter().flatten() {
            seq.serialize_element(k)?;
        }
        seq.end()
    }
}

/// Options the way tcpdump shows them: `mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7`
/// (we leave out NOPs, which we do not keep). SACK blocks are relative to `sack_base`,
/// the initial sequence number the segment's acknowledgment is shown relative to, as
/// tcpdump shows them beside relative `seq`/`ack` (0 for absolute numbers).
pub fn options_text(o: &TcpOptions, sack_base: u32) -> String {
    let mut parts = Vec::new();
    if let Some(mss) = o.mss {
        parts.push(format!("mss {mss}"));
    }
    if o.sack_permitted {
        parts.push("sackOK".to_string());
    }
    if let Some((val, ecr)) = o.timestamps {
        parts.push(format!("TS val {val} ecr {ecr}"));
    }
    if let Some(ws) = o.wscale {
        parts.push(format!("wscale {ws}"));
    }
    for (l, r) in o.sack_blocks.iter().flatten() {
        parts.push(format!(
            "sack {}:{}",
            l.0.wrapping_sub(sack_base),
            r.0.wrapping_sub(sack_base)
        ));
    }
    for k in o.unknown.iter().flatten() {
        parts.push(format!("opt-{k}"));
    }
    for k in o.malformed_kinds() {
        parts.push(format!("bad-opt-{k}"));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: &str, reason: &str, from: &str, error: Option<&str>) -> ProbeResult {
        let json = serde_json::json!({
            "schema": 1, "target": "198.18.0.2:443", "addr": "198.18.0.2", "port": 443,
            "state": state, "reason": reason, "reply_ttl": 64, "reply_from": from,
            "legs_ns": {}, "peer_options": null, "http": null, "close_initiator": null,
            "irs": null, "error": error, "tls": null,
        });
        serde_json::from_value(json).unwrap()
    }

    /// The one line a failed `/probe` is logged with: the state when not open, the error,
    /// both when there are both, nothing for a success.
    #[test]
    fn a_failure_says_why_in_one_line() {
        assert_eq!(
            record("open", "syn-ack", "198.18.0.2", None).failure(),
            None
        );
        let tls = "TLS: certificate verification failed for 198.18.0.2: invalid peer \
                   certificate: UnknownIssuer";
        assert_eq!(
            record("open", "syn-ack", "198.18.0.2", Some(tls))
                .failure()
                .as_deref(),
            Some(tls)
        );
        assert_eq!(
            record("closed", "reset", "198.18.0.2", None)
                .failure()
                .as_deref(),
            Some("port closed (reset)")
        );
        assert_eq!(
            record("filtered", "host-unreach", "198.18.0.254", None)
                .failure()
                .as_deref(),
            Some("port filtered (host-unreach from 198.18.0.254)")
        );
        assert_eq!(
            record(
                "filtered",
                "no-response",
                "198.18.0.2",
                Some("none of our SYNs left")
            )
            .failure()
            .as_deref(),
            Some("port filtered (no-response): none of our SYNs left")
        );
        assert_eq!(
            record(
                "interrupted",
                "interrupted",
                "198.18.0.2",
                Some("interrupted")
            )
            .failure()
            .as_deref(),
            Some("stopped before any answer")
        );
        let odd = record("open", "syn-ack", "198.18.0.2", Some("a\nb\tc")).failure();
        assert_eq!(odd.as_deref(), Some("a b c"));
    }

    #[test]
    fn leg_table_is_in_declaration_order() {
        for (i, e) in LEG_TABLE.iter().enumerate() {
            assert_eq!(e.0.index(), i, "{:?}", e.0);
            assert_eq!(Leg::from_name(e.1), Some(e.0));
        }
        assert_eq!(Leg::TCP.len(), 8);
        assert!(Leg::TCP.iter().all(|l| !l.is_tls()));
        assert!(Leg::ALL[8..].iter().all(|l| l.is_tls()));
        assert_eq!(Leg::from_name("ttfb"), Some(Leg::RequestToFirstByte));
    }

    #[test]
    fn plain_legs_have_no_tls_keys_and_https_legs_have_all() {
        let mut l = Legs::default();
        l.set(Leg::SynToSynack, Some(5));
        let plain = serde_json::to_string(&l).unwrap();
        assert_eq!(
            plain,
            r#"{"syn_to_synack":5,"synack_to_ack":null,"request_to_first_byte":null,"request_to_complete":null,"fin_to_ack":null,"fin_to_peer_fin":null,"peer_fin_to_last_ack":null,"total":null}"#
        );
        l.set(Leg::TlsSynToAppconnect, None);
        let https = serde_json::to_string(&l).unwrap();
        assert!(https.starts_with(&plain[..plain.len() - 1]));
        assert!(https.ends_with(r#","tls_clienthello_to_serverhello":null,"tls_clienthello_to_server_finished":null,"tls_clienthello_to_client_finished":null,"tls_syn_to_appconnect":null,"tls_close_notify_to_fin":null}"#), "{https}");
        for json in [plain, https] {
            let back: Legs = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }

    #[test]
    fn flags_and_transitions_read_back() {
        for bits in 0..0x200u16 {
            let f = TcpFlags(bits);
            assert_eq!(TcpFlags::from_letters(&f.to_string()), Some(f), "{f}");
        }
        assert_eq!(TcpFlags::from_letters("X"), None);
        let t = Transition {
            from: State::SynSent,
            to: State::Established,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"SYN-SENT → ESTABLISHED\"");
        assert_eq!(serde_json::from_str::<Transition>(&json).unwrap(), t);
    }

    #[test]
    fn options_serialize_as_an_object() {
        let o = TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some((5, 0)),
            ..Default::default()
        };
        #[derive(Serialize)]
        struct W(#[serde(serialize_with = "ser_options")] TcpOptions);
        let v = serde_json::to_value(W(o)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"mss":1460,"sack_permitted":true,"ts":[5,0],"wscale":7})
        );
        assert_eq!(
            options_text(&o, 0),
            "mss 1460,sackOK,TS val 5 ecr 0,wscale 7"
        );
    }
}

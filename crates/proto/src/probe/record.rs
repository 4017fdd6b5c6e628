//! What one probe found, as a script reads it (`--json`, schema 1, documented in README.md).

use crate::tcp::{PeerOptions, State};
use crate::wire::{TcpFlags, TcpOptions};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

pub const SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    Open,
    Closed,
    Filtered,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Out,
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseInitiator {
    Client,
    Server,
    Simultaneous,
    Reset,
}

/// Every leg is a difference of two kernel timestamps, in ns; `None` when that leg did not
/// happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Legs {
    pub syn_to_synack: Option<u64>,
    pub synack_to_ack: Option<u64>,
    pub request_to_first_byte: Option<u64>,
    pub request_to_complete: Option<u64>,
    /// The first FIN (whoever sent it) → the other side's ACK of it.
    pub fin_to_ack: Option<u64>,
    /// The first FIN → the other side's FIN.
    pub fin_to_peer_fin: Option<u64>,
    /// The second FIN → its ACK (the last ACK of the exchange).
    pub peer_fin_to_last_ack: Option<u64>,
    /// First SYN → last segment of the exchange.
    pub total: Option<u64>,
    /// HTTPS only: the `tls_*` legs (see `probe::tls`).
    #[serde(flatten)]
    pub tls: Option<super::tls::TlsLegs>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// One segment as the tap saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentRecord {
    pub dir: Dir,
    /// ns since our first SYN left (negative only for nothing: the first SYN is 0).
    pub t_ns: i64,
    /// The kernel timestamp, ns since the epoch (same clock and tap as tcpdump).
    pub ts_ns: u64,
    #[serde(serialize_with = "ser_flags")]
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub len: u32,
    #[serde(serialize_with = "ser_options")]
    pub options: TcpOptions,
    pub ttl: u8,
    /// Sent again: same sequence range and SYN/FIN as an earlier segment of ours.
    pub retransmission: bool,
    /// State changes this segment caused (or, outgoing, came with).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Checksum did not verify: the segment was ignored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bad_checksum: bool,
    /// An outgoing segment tcpshake did not make (the kernel's, or another program's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
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

/// A state change no segment caused (a timer, or giving up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimerRecord {
    pub t_ns: i64,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub schema: u32,
    pub target: String,
    pub addr: String,
    pub port: u16,
    pub src_addr: String,
    pub src_port: u16,
    pub state: PortState,
    pub reason: String,
    pub reply_ttl: Option<u8>,
    /// Who answered (the target, or the router that sent an ICMP error).
    pub reply_from: Option<String>,
    pub legs_ns: Legs,
    pub retransmissions: u32,
    pub peer_options: Option<PeerOptions>,
    pub http: Option<HttpRecord>,
    pub close_initiator: Option<CloseInitiator>,
    pub isn: u32,
    pub irs: Option<u32>,
    pub segments: Vec<SegmentRecord>,
    pub timers: Vec<TimerRecord>,
    pub anomalies: Vec<String>,
    pub error: Option<String>,
    /// HTTPS only: what the TLS handshake negotiated and showed.
    pub tls: Option<super::tls::TlsRecord>,
}

impl ProbeResult {
    /// Did the exchange do everything that was asked (for the exit code)?
    pub fn succeeded(&self) -> bool {
        self.state == PortState::Open && self.error.is_none()
    }
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
    }
    m.end()
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
/// (we leave out NOPs, which we do not keep).
pub fn options_text(o: &TcpOptions) -> String {
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
        parts.push(format!("sack {}:{}", l.0, r.0));
    }
    for k in o.unknown.iter().flatten() {
        parts.push(format!("opt-{k}"));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(options_text(&o), "mss 1460,sackOK,TS val 5 ecr 0,wscale 7");
    }
}

//! The binary's JSON Lines output (schema 1), as the tests read it.
//!
//! Every field the contract names is required here, so a missing field fails the test
//! that reads it with serde's message; extra fields are allowed.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct ProbeRecord {
    pub schema: u32,
    pub target: String,
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub src_addr: Option<String>,
    pub src_port: Option<u16>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub reply_ttl: Option<u8>,
    pub legs_ns: Option<Legs>,
    pub retransmissions: Option<u64>,
    pub peer_options: Option<serde_json::Value>,
    pub http: Option<Http>,
    pub close_initiator: Option<String>,
    pub segments: Vec<Segment>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Legs {
    pub syn_to_synack: Option<u64>,
    pub synack_to_ack: Option<u64>,
    pub request_to_first_byte: Option<u64>,
    pub request_to_complete: Option<u64>,
    pub fin_to_ack: Option<u64>,
    pub fin_to_peer_fin: Option<u64>,
    pub peer_fin_to_last_ack: Option<u64>,
    pub total: Option<u64>,
}

impl Legs {
    /// (name, value) for every leg, in the contract's order.
    pub fn all(&self) -> [(&'static str, Option<u64>); 8] {
        [
            ("syn_to_synack", self.syn_to_synack),
            ("synack_to_ack", self.synack_to_ack),
            ("request_to_first_byte", self.request_to_first_byte),
            ("request_to_complete", self.request_to_complete),
            ("fin_to_ack", self.fin_to_ack),
            ("fin_to_peer_fin", self.fin_to_peer_fin),
            ("peer_fin_to_last_ack", self.peer_fin_to_last_ack),
            ("total", self.total),
        ]
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Http {
    pub status: Option<u16>,
    pub headers: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Segment {
    pub dir: String,
    pub t_ns: u64,
    pub ts_ns: u64,
    pub flags: String,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub len: u32,
    pub options: serde_json::Value,
    #[serde(default)]
    pub foreign: bool,
    #[serde(default)]
    pub kernel: bool,
}

impl ProbeRecord {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("<null>")
    }

    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("<null>")
    }

    pub fn http_status(&self) -> Option<u16> {
        self.http.as_ref().and_then(|h| h.status)
    }

    pub fn retransmissions(&self) -> u64 {
        self.retransmissions.unwrap_or(0)
    }
}

/// Parses every non-empty stdout line as a record; panics naming the line that is not one.
pub fn parse_lines(stdout: &str) -> Vec<ProbeRecord> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a schema-1 probe record ({e}):\n{l}"))
        })
        .collect()
}

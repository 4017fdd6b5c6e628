//! `-o influx`: one probe per line in InfluxDB's line protocol, so Telegraf's `exec` and
//! `execd` inputs (data_format = "influx") take a survey's output as it comes:
//!
//! ```text
//! tcpshake,target=198.18.0.2:80,addr=198.18.0.2,port=80,state=open,reason=syn-ack syn_to_synack_ns=21800i,…,retransmissions=0i,kernel_ack=true,http_status=200i,success=true 1796379630123456789
//! ```
//!
//! Tags: `target`, `addr`, `port`, `state`, `reason`. Fields: every leg the record has that
//! happened, as integer ns (`<leg>_ns`), `retransmissions`, `kernel_ack` (the handshake's
//! ACK came from tcpshake's kernel program), `http_status` (when there was a response),
//! `success`, and `error` (a string) when the exchange failed. The timestamp is
//! the kernel's of the probe's first SYN, in ns; a probe that sent nothing (no route, no
//! ARP answer) is dated when its line was written: left without a timestamp, such lines
//! took the reader's clock, the same for a batch, and InfluxDB kept one point of each
//! series (a walk: 1 of 4).

use std::fmt::Write as _;
use tcpshake_proto::probe::record::ProbeResult;

/// Measurement names escape commas and spaces.
fn measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Tag keys and values escape commas, equals signs and spaces; line breaks cannot be
/// written at all, so they become spaces (escaped).
fn tag(s: &str, out: &mut String) {
    for c in s.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// String field values are quoted, with `"` and `\` escaped.
fn string_field(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// One record as one line (without the line break); `written_ns`, the wall clock now,
/// dates a probe that sent nothing.
pub fn line(r: &ProbeResult, written_ns: u64) -> String {
    let mut out = String::with_capacity(256);
    measurement("tcpshake", &mut out);
    let port = r.port.to_string();
    for (k, v) in [
        ("target", r.target.as_str()),
        ("addr", r.addr.as_str()),
        ("port", port.as_str()),
        ("state", r.state.as_str()),
        ("reason", r.reason.as_str()),
    ] {
        // An empty tag value is not allowed: left out.
        if !v.is_empty() {
            out.push(',');
            tag(k, &mut out);
            out.push('=');
            tag(v, &mut out);
        }
    }
    out.push(' ');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    for (leg, v) in r.legs_ns.iter() {
        if let Some(ns) = v {
            sep(&mut out);
            let _ = write!(out, "{}_ns={ns}i", leg.name());
        }
    }
    sep(&mut out);
    let _ = write!(out, "retransmissions={}i", r.retransmissions);
    sep(&mut out);
    let _ = write!(out, "kernel_ack={}", r.kernel_ack());
    if let Some(h) = &r.http {
        sep(&mut out);
        let _ = write!(out, "http_status={}i", h.status);
    }
    sep(&mut out);
    let _ = write!(out, "success={}", r.succeeded());
    if let Some(e) = &r.error {
        sep(&mut out);
        out.push_str("error=");
        string_field(e, &mut out);
    }
    let ts = r.segments.first().map_or(written_ns, |s| s.ts_ns);
    let _ = write!(out, " {ts}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ProbeResult {
        let json = r#"{"schema":1,"target":"web 1,a=b","addr":"198.18.0.2","port":80,
            "state":"open","reason":"syn-ack","reply_ttl":64,"reply_from":"198.18.0.2",
            "legs_ns":{"syn_to_synack":21800,"synack_to_ack":20500,"request_to_first_byte":null,
            "request_to_complete":null,"fin_to_ack":17500,"fin_to_peer_fin":17500,
            "peer_fin_to_last_ack":22900,"total":378200},
            "peer_options":null,"http":null,"close_initiator":"server","irs":5,
            "segments":[{"dir":"out","t_ns":0,"ts_ns":1796379630123456789,"flags":"S","seq":1,"ack":0,"win":64240,"len":0,"options":{},"ttl":64,"retransmission":false}],
            "error":"the reply is not HTTP: \"x\\y\"\nmore","tls":null}"#;
        ProbeResult::from_json_line(&json.replace('\n', " ")).unwrap()
    }

    #[test]
    fn a_record_is_one_escaped_line() {
        let l = line(&record(), 7);
        assert_eq!(
            l,
            "tcpshake,target=web\\ 1\\,a\\=b,addr=198.18.0.2,port=80,state=open,reason=syn-ack \
             syn_to_synack_ns=21800i,synack_to_ack_ns=20500i,fin_to_ack_ns=17500i,\
             fin_to_peer_fin_ns=17500i,peer_fin_to_last_ack_ns=22900i,total_ns=378200i,\
             retransmissions=0i,kernel_ack=false,success=false,\
             error=\"the reply is not HTTP: \\\"x\\\\y\\\" more\" 1796379630123456789"
        );
        assert!(!l.contains('\n'));
        // A probe that sent nothing is dated by the caller (when its line was written).
        let mut none = record();
        none.segments.clear();
        assert!(line(&none, 1_796_379_631_000_000_000).ends_with("\" 1796379631000000000"));
    }
}

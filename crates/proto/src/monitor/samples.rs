//! One probe's record as metric samples: what `GET /probe` answers (blackbox_exporter's
//! multi-target pattern), named and labelled once here for every format.
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `tcpshake_probe_success` | | 1 when the port was open and the exchange worked |
//! | `tcpshake_probe_duration_seconds` | | the probe's wall time, as the exporter saw it |
//! | `tcpshake_leg_seconds` | `leg` | each leg the record has (kernel timestamps); absent when it did not happen |
//! | `tcpshake_port_state` | `state`, `reason` | 1 (nmap's state and reason words) |
//! | `tcpshake_retransmissions` | | segments we sent again |
//! | `tcpshake_path_mtu_bytes` | | the path MTU a frag-needed / Packet Too Big (or a black hole) lowered; absent while it was the route's |
//! | `tcpshake_capture_missed_packets` | | packets the capture missed while the probe ran: its legs may be absent or wrong |
//! | `tcpshake_reply_ttl` | | TTL / hop limit of the reply that decided the state |
//! | `tcpshake_peer_mss_bytes`, `tcpshake_peer_window_scale`, `tcpshake_peer_sack_permitted`, `tcpshake_peer_timestamps` | | the SYN-ACK's options |
//! | `tcpshake_http_status_code` | | the response's status |
//! | `tcpshake_tls_version_info` | `version`, `cipher` | 1 |
//! | `tcpshake_tls_cert_expiry_timestamp_seconds` | | the earliest `notAfter` of the chain, Unix time |

use crate::probe::record::ProbeResult;
use std::time::Duration;

/// A gauge family and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The full name, unit suffix included (`tcpshake_leg_seconds`).
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

fn one(name: &'static str, help: &'static str, value: f64) -> Family {
    Family {
        name,
        help,
        samples: vec![(Vec::new(), value)],
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `tcpshake_probe_success` and `tcpshake_probe_duration_seconds`, which every answer has.
fn verdict(success: bool, duration: Duration) -> Vec<Family> {
    vec![
        one(
            "tcpshake_probe_success",
            "Whether the port was open and the exchange (HTTP, TLS, close) worked",
            flag(success),
        ),
        one(
            "tcpshake_probe_duration_seconds",
            "How long the probe took, from the request to its record",
            duration.as_secs_f64(),
        ),
    ]
}

/// The samples of a probe that could not be made — its name did not resolve, or no route
/// leads to its address: a failed probe (`tcpshake_probe_success 0`), as blackbox_exporter
/// answers a DNS or connection failure, so the alert on the success gauge fires for it
/// rather than the scrape failing (`up 0`, no series) as when the exporter is down.
/// `duration`: from the request to the failure.
pub fn unmade_probe_samples(duration: Duration) -> Vec<Family> {
    verdict(false, duration)
}

/// The samples of one probe. `duration`: from the request to the record.
pub fn probe_samples(r: &ProbeResult, duration: Duration) -> Vec<Family> {
    let mut out = verdict(r.succeeded(), duration);
    let legs: Vec<_> = r
        .legs_ns
        .iter()
        .filter_map(|(leg, v)| v.map(|ns| (vec![("leg", leg.name().to_string())], ns as f64 / 1e9)))
        .collect();
    out.push(Family {
        name: "tcpshake_leg_seconds",
        help: "Each leg of the exchange, between two kernel timestamps on the wire",
        samples: legs,
    });
    out.push(Family {
        name: "tcpshake_port_state",
        help: "The port's state and the reason for it, in nmap's words",
        samples: vec![(
            vec![
                ("state", r.state.as_str().to_string()),
                ("reason", r.reason.as_str().to_string()),
            ],
            1.0,
        )],
    });
    out.push(one(
        "tcpshake_retransmissions",
        "Segments tcpshake sent again during the probe",
        f64::from(r.retransmissions),
    ));
    // Segments re-cut for a smaller path are retransmissions too: without this, a path
    // whose MTU a router announced reads as a lossy one.
    if let Some(mtu) = r.path_mtu {
        out.push(one(
            "tcpshake_path_mtu_bytes",
            "The path MTU an ICMP frag-needed / Packet Too Big (or a black hole) lowered during the probe",
            f64::from(mtu),
        ));
    }
    // A leg is measured between two captured segments: without this, a leg absent because
    // its segment was not captured reads the same as one that did not happen.
    out.push(one(
        "tcpshake_capture_missed_packets",
        "Packets the capture missed while the probe ran (its legs may be absent or wrong)",
        r.capture_lost as f64,
    ));
    if let Some(ttl) = r.reply_ttl {
        out.push(one(
            "tcpshake_reply_ttl",
            "TTL or hop limit of the reply that decided the port's state",
            f64::from(ttl),
        ));
    }
    if let Some(o) = &r.peer_options {
        if let Some(mss) = o.mss {
            out.push(one(
                "tcpshake_peer_mss_bytes",
                "The MSS option of the server's SYN-ACK",
                f64::from(mss),
            ));
        }
        if let Some(ws) = o.wscale {
            out.push(one(
                "tcpshake_peer_window_scale",
                "The window scale option of the server's SYN-ACK",
                f64::from(ws),
            ));
        }
        out.push(one(
            "tcpshake_peer_sack_permitted",
            "Whether the server's SYN-ACK permitted SACK",
            flag(o.sack_permitted),
        ));
        out.push(one(
            "tcpshake_peer_timestamps",
            "Whether the server's SYN-ACK carried TCP timestamps",
            flag(o.timestamps),
        ));
    }
    if let Some(h) = &r.http {
        out.push(one(
            "tcpshake_http_status_code",
            "The HTTP response's status code",
            f64::from(h.status),
        ));
    }
    if let Some(t) = &r.tls {
        if let Some(v) = &t.version {
            out.push(Family {
                name: "tcpshake_tls_version_info",
                help: "The TLS version and cipher suite negotiated",
                samples: vec![(
                    vec![
                        ("version", v.clone()),
                        ("cipher", t.cipher_suite.clone().unwrap_or_default()),
                    ],
                    1.0,
                )],
            });
        }
        let expiry = t
            .certificates
            .iter()
            .filter_map(|c| rfc3339_to_unix(&c.not_after))
            .min();
        if let Some(e) = expiry {
            out.push(one(
                "tcpshake_tls_cert_expiry_timestamp_seconds",
                "The earliest notAfter of the certificate chain the server sent, in Unix time",
                e as f64,
            ));
        }
    }
    out
}

/// `2026-12-04T10:20:30Z` (RFC 3339, UTC, as the record writes it) → seconds since the
/// Unix epoch. Fractions of a second and offsets other than `Z`/`+00:00` are refused.
pub fn rfc3339_to_unix(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let mut t = time.splitn(3, ':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next()?.parse().ok()?;
    // RFC 3339 §5.6: a four-digit year (a far one would overflow the arithmetic below).
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::record::{Leg, Legs, PortState, Reason};

    pub(crate) fn record() -> ProbeResult {
        let json = r#"{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,
            "state":"open","reason":"syn-ack","reply_ttl":64,"reply_from":"198.18.0.2",
            "legs_ns":{"syn_to_synack":21800,"synack_to_ack":20500,"request_to_first_byte":249600,
            "request_to_complete":249600,"fin_to_ack":17500,"fin_to_peer_fin":17500,
            "peer_fin_to_last_ack":22900,"total":378200},
            "peer_options":{"mss":1460,"wscale":10,"sack_permitted":true,"timestamps":true},
            "http":{"request":"HEAD / HTTP/1.1","status":200,"reason":"OK","version":"HTTP/1.1","headers":{}},
            "close_initiator":"server","irs":5,"error":null,"tls":null}"#;
        ProbeResult::from_json_line(&json.replace('\n', " ")).unwrap()
    }

    fn find<'a>(f: &'a [Family], name: &str) -> Option<&'a Family> {
        f.iter().find(|x| x.name == name)
    }

    #[test]
    fn an_open_http_probe_maps_to_every_family() {
        let r = record();
        let f = probe_samples(&r, Duration::from_millis(3));
        assert_eq!(
            find(&f, "tcpshake_probe_success").unwrap().samples[0].1,
            1.0
        );
        assert_eq!(
            find(&f, "tcpshake_probe_duration_seconds").unwrap().samples[0].1,
            0.003
        );
        let legs = &find(&f, "tcpshake_leg_seconds").unwrap().samples;
        assert_eq!(legs.len(), 8);
        assert_eq!(legs[0].0, vec![("leg", "syn_to_synack".to_string())]);
        assert!((legs[0].1 - 21.8e-6).abs() < 1e-12);
        let st = &find(&f, "tcpshake_port_state").unwrap().samples[0];
        assert_eq!(
            st.0,
            vec![("state", "open".into()), ("reason", "syn-ack".into())]
        );
        assert_eq!(
            find(&f, "tcpshake_http_status_code").unwrap().samples[0].1,
            200.0
        );
        assert_eq!(
            find(&f, "tcpshake_peer_mss_bytes").unwrap().samples[0].1,
            1460.0
        );
        assert_eq!(
            find(&f, "tcpshake_peer_window_scale").unwrap().samples[0].1,
            10.0
        );
        assert!(find(&f, "tcpshake_tls_version_info").is_none());
        assert!(find(&f, "tcpshake_path_mtu_bytes").is_none());
        assert_eq!(
            find(&f, "tcpshake_capture_missed_packets").unwrap().samples[0].1,
            0.0
        );
        // Fault walk: two routers' frag-needed (1400, then 1200) re-cut the request five
        // times; /probe said only `tcpshake_retransmissions 5`, which reads as loss.
        let mut cut = record();
        cut.path_mtu = Some(1200);
        cut.retransmissions = 5;
        let f = probe_samples(&cut, Duration::ZERO);
        assert_eq!(
            find(&f, "tcpshake_path_mtu_bytes").unwrap().samples[0].1,
            1200.0
        );
        let mut lossy = record();
        lossy.capture_lost = 3;
        let f = probe_samples(&lossy, Duration::ZERO);
        assert_eq!(
            find(&f, "tcpshake_capture_missed_packets").unwrap().samples[0].1,
            3.0
        );
    }

    #[test]
    fn legs_that_did_not_happen_are_absent() {
        let mut r = record();
        r.state = PortState::Closed;
        r.reason = Reason::Reset;
        r.http = None;
        r.peer_options = None;
        let mut legs = Legs::default();
        legs.set(Leg::SynToSynack, Some(1000));
        r.legs_ns = legs;
        let f = probe_samples(&r, Duration::ZERO);
        assert_eq!(
            find(&f, "tcpshake_probe_success").unwrap().samples[0].1,
            0.0
        );
        assert_eq!(find(&f, "tcpshake_leg_seconds").unwrap().samples.len(), 1);
        assert!(find(&f, "tcpshake_http_status_code").is_none());
        assert!(find(&f, "tcpshake_peer_mss_bytes").is_none());
        let st = &find(&f, "tcpshake_port_state").unwrap().samples[0];
        assert_eq!(st.0[0].1, "closed");
        assert_eq!(st.0[1].1, "reset");
    }

    #[test]
    fn rfc3339_times_convert_to_unix_seconds() {
        assert_eq!(rfc3339_to_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_unix("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(rfc3339_to_unix("2026-12-04T10:20:30Z"), Some(1_796_379_630));
        assert_eq!(
            rfc3339_to_unix("2026-12-04T10:20:30+00:00"),
            Some(1_796_379_630)
        );
        assert_eq!(rfc3339_to_unix("2026-13-04T10:20:30Z"), None);
        assert_eq!(rfc3339_to_unix("2026-12-04 10:20:30"), None);
        assert_eq!(rfc3339_to_unix(""), None);
    }
}

//! The human view of a trace: a table per TTL as mtr and traceroute users read it, the
//! changes each hop made under it, then the verdict at the far end.

use super::count;
use super::text::{Style, human_ns};
use std::fmt::Write;
use tcpshake_proto::probe::record::PortState;
use tcpshake_proto::trace::record::{HopRecord, QuoteKind, TraceMode, TraceRecord};

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[u64]) -> u64 {
    let n = sorted.len();
    match n {
        0 => 0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => {
            sorted[n / 2 - 1] / 2
                + sorted[n / 2] / 2
                + (sorted[n / 2 - 1] % 2 + sorted[n / 2] % 2) / 2
        }
    }
}

/// min / median / max of the answered probes, in ms; for a hop that answered with no
/// round trip (the copy of its probe leaving was not seen: a note says so), `not timed`
/// rather than columns left empty.
fn rtt_columns(h: &HopRecord) -> String {
    let mut v = h.rtt_ns.clone();
    v.sort_unstable();
    match v.len() {
        0 if h.addr.is_some() => format!("{:>9}", "not timed"),
        0 => String::new(),
        n => format!("{:>9} {:>9} {:>9}", ms(v[0]), ms(median(&v)), ms(v[n - 1])),
    }
}

fn quote_text(h: &HopRecord) -> String {
    let Some(len) = h.quote_len else {
        return String::new();
    };
    let kind = match h.quote {
        Some(QuoteKind::Rfc792) => "8 B of TCP (RFC 792)",
        Some(QuoteKind::Partial) => "partial",
        Some(QuoteKind::Full) => "full",
        None => "?",
    };
    let ext = if h.rfc4884 { ", RFC 4884" } else { "" };
    format!("{len} B {kind}{ext}")
}

pub fn render(r: &TraceRecord, style: Style) -> String {
    let mut s = String::new();
    let mode = match r.mode {
        TraceMode::Syn => "SYN",
        TraceMode::InSession => "in-session",
    };
    let _ = writeln!(
        s,
        "tcpshake trace {} ({mode} from {}, {} max, {} per hop)",
        r.target,
        r.local,
        super::count(u64::from(r.max_ttl), "hop", "hops"),
        super::count(u64::from(r.probes), "probe", "probes")
    );
    // No rows, no header (nothing left this host, or an in-session handshake failed).
    if !r.hops.is_empty() {
        let _ = writeln!(
            s,
            "{:>4}  {:<26} {:<17} {:>5} {:>9} {:>9} {:>9}  quote",
            "hop", "address", "reply", "loss", "min ms", "med ms", "max ms"
        );
    }
    for h in &r.hops {
        let addr = h.addr.map_or_else(|| "*".to_string(), |a| a.to_string());
        // Fewer probes than -q (a silent TTL beyond the last answer gets one, the window
        // passing it): a percentage would read as -q sent (walk 15: "100%" of 1).
        let loss = if h.sent == 0 {
            String::new()
        } else if h.sent < r.probes {
            format!("{} of {} lost", h.lost, h.sent)
        } else {
            format!("{}%", u32::from(h.lost) * 100 / u32::from(h.sent))
        };
        let reply = h.reply.clone().unwrap_or_default();
        let line = format!(
            "{:>4}  {:<26} {:<17} {:>5} {:<29}  {}",
            h.ttl,
            addr,
            reply,
            loss,
            rtt_columns(h),
            quote_text(h)
        );
        let _ = writeln!(s, "{}", line.trim_end());
        for a in &h.other_addrs {
            let _ = writeln!(s, "      {a} (also answered at this TTL)");
        }
        if let Some(q) = h.quoted_ttl
            && q > 1
        {
            let _ = writeln!(
                s,
                "        quoted TTL {q}: a hop before did not decrement it (an MPLS tunnel?)"
            );
        }
        for c in &h.changes {
            let note = c
                .note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            let text = format!("{:<20} {} → {}{note}", c.field, c.sent, c.seen);
            let _ = writeln!(s, "        {}", style.paint("33", &text));
        }
    }
    let d = &r.destination;
    let at = match (d.ttl, d.addr) {
        (Some(t), Some(a)) => format!(" at hop {t} ({a})"),
        (None, Some(a)) => format!(" ({a})"),
        _ => String::new(),
    };
    // -m stopped the trace before anything answered for the destination: it was not
    // reached, which "filtered (no-response)" does not say (the exit code stays 1).
    let stopped_by_max = d.state == PortState::Filtered
        && d.ttl.is_none()
        && d.addr.is_none()
        && r.error.is_none()
        && r.hops.last().is_some_and(|h| h.ttl == r.max_ttl)
        // On the target's link every TTL reached it: its silence is the verdict.
        && !r.on_link;
    let verdict = if d.state == PortState::Interrupted {
        "interrupted before it answered".to_string()
    } else if stopped_by_max {
        format!("not reached (max TTL {})", r.max_ttl)
    } else {
        format!("{} ({})", d.state, d.reason)
    };
    let verdict = match d.state {
        PortState::Open => style.paint("32", &verdict),
        _ => style.paint("31", &verdict),
    };
    let _ = write!(s, "destination: {verdict}{at}");
    if !d.rtt_ns.is_empty() {
        let mut v = d.rtt_ns.clone();
        v.sort_unstable();
        let _ = write!(s, "  rtt {}", human_ns(median(&v)));
    } else if d.ttl.is_some() {
        let _ = write!(s, "  rtt not timed");
    }
    if let Some(h) = d.handshake_rtt_ns {
        // A refused in-session handshake timed our SYN to the RST: no handshake took
        // place, and "handshake 27 µs" beside "closed" read as if one had.
        let what = if d.state == PortState::Closed {
            "SYN→RST"
        } else {
            "handshake"
        };
        let _ = write!(s, "  {what} {}", human_ns(h));
    }
    if let Some(c) = &d.close {
        let _ = write!(s, "  connection {c}");
    }
    let _ = writeln!(s);
    if let Some(n) = r.lost_after_ttl {
        let line = if n == 0 {
            "no reply from any hop: the probes are dropped before the first router answers"
                .to_string()
        } else if r.mode == TraceMode::InSession {
            // The connection's ACKs passed (it opened); its probes did not: a stateful box
            // that takes them for invalid (a SYN proxy's conntrack, a strict firewall).
            format!(
                "no reply beyond TTL {n}: the in-session probes are likely dropped after hop \
                 {n} (a stateful firewall or SYN proxy there or at the next hop that takes \
                 them for invalid; without --in-session the probes are SYNs)"
            )
        } else {
            // A router that cannot resolve the target on its last link answers host
            // unreachable only after its ARP / ND gives up (Linux: ~3 s), beyond the
            // default -w: the silence looks like a firewall's (walk 15).
            format!(
                "no reply beyond TTL {n}: the SYN is likely dropped after hop {n} (a firewall \
                 there or at the next hop; or no host answers ARP / ND for the target on the \
                 next hop's link, whose host unreachable Linux sends after ~3 s: -w 4s shows \
                 it)"
            )
        };
        let _ = writeln!(s, "{}", style.paint("31", &line));
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "error: {e}");
    }
    // Said once: the destination's line says it when the stop came before its answer.
    if r.interrupted && d.state != PortState::Interrupted {
        let _ = writeln!(s, "interrupted");
    }
    let _ = writeln!(
        s,
        "{} in {}{}",
        count(u64::from(r.packets_sent), "packet sent", "packets sent"),
        human_ns(r.duration_ns),
        if r.unmatched > 0 {
            format!(
                ", {} no probe",
                count(u64::from(r.unmatched), "answer matched", "answers matched")
            )
        } else {
            String::new()
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::record::Reason;
    use tcpshake_proto::trace::record::{ChangeRecord, DestinationRecord, IcmpRecord};

    fn hop(ttl: u8, addr: Option<&str>, rtt: &[u64]) -> HopRecord {
        HopRecord {
            ttl,
            addr: addr.map(|a| a.parse().unwrap()),
            other_addrs: Vec::new(),
            reply: addr.map(|_| "time-exceeded".into()),
            icmp: addr.map(|_| IcmpRecord {
                icmp_type: 11,
                code: 0,
            }),
            rtt_ns: rtt.to_vec(),
            sent: 3,
            lost: 3 - rtt.len() as u8,
            quote_len: addr.map(|_| 28),
            quote: addr.map(|_| QuoteKind::Rfc792),
            rfc4884: false,
            quoted_ttl: addr.map(|_| 1),
            reply_ttl: None,
            changes: Vec::new(),
        }
    }

    fn record() -> TraceRecord {
        let mut h2 = hop(2, Some("198.18.0.30"), &[3_000_000, 1_000_000, 2_000_000]);
        h2.quote = Some(QuoteKind::Full);
        h2.quote_len = Some(60);
        h2.quoted_ttl = Some(3);
        h2.changes.push(ChangeRecord {
            field: "tcp.mss".into(),
            sent: "1460".into(),
            seen: "1200".into(),
            note: None,
        });
        TraceRecord {
            schema: 1,
            command: "trace".into(),
            target: "198.18.0.78:80".into(),
            mode: TraceMode::Syn,
            local: "198.18.0.1:40000".into(),
            remote: "198.18.0.78:80".into(),
            first_ttl: 1,
            max_ttl: 30,
            probes: 3,
            t_ns: 0,
            duration_ns: 1_200_000_000,
            hops: vec![
                hop(1, Some("198.18.0.14"), &[100_000, 300_000]),
                h2,
                hop(3, None, &[]),
            ],
            destination: DestinationRecord {
                state: PortState::Filtered,
                reason: Reason::NoResponse,
                addr: None,
                ttl: None,
                rtt_ns: Vec::new(),
                handshake_rtt_ns: None,
                close: None,
            },
            lost_after_ttl: Some(2),
            on_link: false,
            packets_sent: 9,
            unmatched: 1,
            notes: vec!["a note".into()],
            interrupted: false,
            error: None,
        }
    }

    /// A silent target on the link is not "not reached": every TTL reached it.
    #[test]
    fn a_silent_target_on_the_link_is_filtered_not_unreached() {
        let mut r = record();
        r.hops.truncate(0);
        r.hops.push(hop(30, None, &[]));
        r.lost_after_ttl = None;
        let unreached = render(&r, Style { color: false });
        assert!(
            unreached.contains("destination: not reached (max TTL 30)"),
            "{unreached}"
        );
        r.on_link = true;
        let text = render(&r, Style { color: false });
        assert!(
            text.contains("destination: filtered (no-response)"),
            "{text}"
        );
    }

    #[test]
    fn the_table() {
        let text = render(&record(), Style { color: false });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("tcpshake trace 198.18.0.78:80 (SYN from 198.18.0.1:40000"));
        assert!(lines[1].contains("min ms") && lines[1].contains("quote"));
        // Two answers: the median of two is their mean.
        assert!(lines[2].contains("198.18.0.14"), "{text}");
        assert!(lines[2].contains("33%"), "{text}");
        assert!(
            lines[2].contains("0.100") && lines[2].contains("0.200") && lines[2].contains("0.300"),
            "{text}"
        );
        assert!(lines[2].ends_with("28 B 8 B of TCP (RFC 792)"), "{text}");
        assert!(
            lines[3].contains("1.000") && lines[3].contains("2.000") && lines[3].contains("3.000")
        );
        assert!(lines[3].ends_with("60 B full"));
        assert!(lines[4].contains("quoted TTL 3"), "{text}");
        assert!(lines[5].contains("tcp.mss") && lines[5].contains("1460 → 1200"));
        assert_eq!(
            lines[6].split_whitespace().collect::<Vec<_>>(),
            ["3", "*", "100%"]
        );
        assert!(text.contains("destination: filtered (no-response)\n"));
        assert!(text.contains("no reply beyond TTL 2"));
        assert!(text.contains("note: a note"));
        assert!(text.contains("9 packets sent in 1.200 s, 1 answer matched no probe"));
    }

    /// -m stopped the trace with no answer from the destination: "not reached", not
    /// "filtered (no-response)"; a silent TTL sent fewer probes than -q says how many.
    #[test]
    fn max_ttl_reached_and_fewer_probes_are_said() {
        let mut r = record();
        r.max_ttl = 3;
        r.hops[2].sent = 1;
        r.hops[2].lost = 1;
        let text = render(&r, Style { color: false });
        assert!(
            text.contains("destination: not reached (max TTL 3)\n"),
            "{text}"
        );
        let row: Vec<&str> = text.lines().nth(6).unwrap().split_whitespace().collect();
        assert_eq!(row, ["3", "*", "1", "of", "1", "lost"], "{text}");
    }

    /// Stopped before the destination answered: said once, on its line.
    #[test]
    fn an_interruption_is_said_once() {
        let mut r = record();
        r.interrupted = true;
        r.destination.state = PortState::Interrupted;
        r.destination.reason = Reason::Interrupted;
        let text = render(&r, Style { color: false });
        assert!(
            text.contains("destination: interrupted before it answered\n"),
            "{text}"
        );
        assert_eq!(text.matches("interrupted").count(), 1, "{text}");
        // Stopped after it answered (an in-session close cut short): its own line.
        r.destination.state = PortState::Open;
        r.destination.reason = Reason::SynAck;
        let text = render(&r, Style { color: false });
        assert!(text.contains("\ninterrupted\n"), "{text}");
    }

    /// An in-session handshake refused with a RST times SYN → RST, and says so: not a
    /// "handshake" beside "closed".
    #[test]
    fn a_refused_handshake_is_timed_as_syn_to_rst() {
        let mut r = record();
        r.mode = TraceMode::InSession;
        r.destination = DestinationRecord {
            state: PortState::Closed,
            reason: Reason::Reset,
            addr: Some("198.18.0.78".parse().unwrap()),
            ttl: None,
            rtt_ns: Vec::new(),
            handshake_rtt_ns: Some(27_300),
            close: None,
        };
        let text = render(&r, Style { color: false });
        assert!(text.contains("closed (reset)"), "{text}");
        assert!(text.contains("SYN→RST 27.3 µs"), "{text}");
        assert!(!text.contains("handshake 27"), "{text}");
        r.destination.state = PortState::Open;
        r.destination.reason = Reason::SynAck;
        let text = render(&r, Style { color: false });
        assert!(text.contains("handshake 27.3 µs"), "{text}");
    }

    /// A hop that answered without a round trip says so; it is not left blank.
    #[test]
    fn an_answer_without_a_round_trip_says_it_was_not_timed() {
        let mut r = record();
        r.hops[0].rtt_ns.clear();
        r.destination = DestinationRecord {
            state: PortState::Open,
            reason: Reason::SynAck,
            addr: Some("198.18.0.78".parse().unwrap()),
            ttl: Some(4),
            rtt_ns: Vec::new(),
            handshake_rtt_ns: None,
            close: None,
        };
        r.lost_after_ttl = None;
        let text = render(&r, Style { color: false });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].contains("198.18.0.14") && lines[2].contains("not timed"));
        assert!(
            text.contains("destination: open (syn-ack) at hop 4 (198.18.0.78)  rtt not timed\n"),
            "{text}"
        );
    }

    /// Nothing left this host (an unresolved next hop): no table, no router blamed, the
    /// error and the count of what left.
    #[test]
    fn nothing_sent_shows_the_error_and_no_table() {
        let mut r = record();
        r.hops.clear();
        r.lost_after_ttl = None;
        r.notes.clear();
        r.unmatched = 0;
        r.packets_sent = 0;
        r.duration_ns = 300_000_000;
        r.error = Some(
            "none of our SYNs left this host: 198.18.0.78 had not answered ARP on eth0 (down, \
             or not on this link), so the kernel held our SYNs"
                .into(),
        );
        let text = render(&r, Style { color: false });
        assert!(!text.contains("min ms"), "{text}");
        assert!(!text.contains("no reply"), "{text}");
        assert!(
            text.contains(
                "\nerror: none of our SYNs left this host: 198.18.0.78 had not answered ARP on eth0"
            ),
            "{text}"
        );
        assert!(text.ends_with("0 packets sent in 300.000 ms\n"), "{text}");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5]), 5);
        assert_eq!(median(&[1, 2]), 1);
        assert_eq!(median(&[1, 3]), 2);
        assert_eq!(median(&[1, 2, 9]), 2);
        assert_eq!(median(&[u64::MAX - 1, u64::MAX]), u64::MAX - 1);
    }
}

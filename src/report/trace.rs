//! The human view of a trace: a table per TTL as mtr and traceroute users read it, the
//! changes each hop made under it, then the verdict at the far end.

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

/// min / median / max of the answered probes, in ms.
fn rtt_columns(rtts: &[u64]) -> String {
    let mut v = rtts.to_vec();
    v.sort_unstable();
    match v.len() {
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
        "tcpshake trace {} ({mode} from {}, {} hops max, {} probes per hop)",
        r.target, r.local, r.max_ttl, r.probes
    );
    let _ = writeln!(
        s,
        "{:>4}  {:<26} {:<17} {:>5} {:>9} {:>9} {:>9}  quote",
        "hop", "address", "reply", "loss", "min ms", "med ms", "max ms"
    );
    for h in &r.hops {
        let addr = h.addr.map_or_else(|| "*".to_string(), |a| a.to_string());
        let loss = if h.sent == 0 {
            String::new()
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
            rtt_columns(&h.rtt_ns),
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
    let verdict = format!("{} ({})", d.state, d.reason);
    let verdict = match d.state {
        PortState::Open => style.paint("32", &verdict),
        _ => style.paint("31", &verdict),
    };
    let _ = write!(s, "destination: {verdict}{at}");
    if !d.rtt_ns.is_empty() {
        let mut v = d.rtt_ns.clone();
        v.sort_unstable();
        let _ = write!(s, "  rtt {}", human_ns(median(&v)));
    }
    if let Some(h) = d.handshake_rtt_ns {
        let _ = write!(s, "  handshake {}", human_ns(h));
    }
    if let Some(c) = &d.close {
        let _ = write!(s, "  connection {c}");
    }
    let _ = writeln!(s);
    if let Some(n) = r.lost_after_ttl {
        let line = if n == 0 {
            "no reply from any hop: the probes are dropped before the first router answers"
                .to_string()
        } else {
            format!(
                "no reply beyond TTL {n}: the SYN is likely dropped after hop {n} (a firewall \
                 there or at the next hop)"
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
    if r.interrupted {
        let _ = writeln!(s, "interrupted");
    }
    let _ = writeln!(
        s,
        "{} packets sent in {}{}",
        r.packets_sent,
        human_ns(r.duration_ns),
        if r.unmatched > 0 {
            format!(", {} answers matched no probe", r.unmatched)
        } else {
            String::new()
        }
    );
    s
}

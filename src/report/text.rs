//! The human view: every segment with its time, relative sequence numbers and the state
//! changes it caused, then the legs.

use std::fmt::Write;
use tcpshake_proto::probe::record::{
    CloseInitiator, Dir, Leg, LegGroup, Legs, PortState, ProbeResult, SegmentRecord, options_text,
};
use tcpshake_proto::wire::TcpFlags;

/// ANSI colours, or none.
#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Flags as in the README example: `S`, `SA`, `A`, `PA`, `FA`, `R`, `RA`.
pub fn short_flags(f: TcpFlags) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (TcpFlags::SYN, 'S'),
        (TcpFlags::FIN, 'F'),
        (TcpFlags::RST, 'R'),
        (TcpFlags::PSH, 'P'),
        (TcpFlags::URG, 'U'),
        (TcpFlags::ECE, 'E'),
        (TcpFlags::CWR, 'C'),
        (TcpFlags::ACK, 'A'),
    ] {
        if f.contains(bit) {
            s.push(c);
        }
    }
    if s.is_empty() { "-".into() } else { s }
}

/// A duration in ns as people read it: `41.2 µs`, `12.345 ms`, `1.234 s`.
pub fn human_ns(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else {
        format!("{:.3} s", ns as f64 / 1e9)
    }
}

fn segment_line(r: &ProbeResult, s: &SegmentRecord, style: Style) -> String {
    let isn = r.isn;
    let irs = r.irs.unwrap_or(s.seq);
    let (seq, ack, arrow) = match s.dir {
        Dir::Out => (
            s.seq.wrapping_sub(isn),
            s.ack.wrapping_sub(irs),
            style.paint("36", ">"),
        ),
        Dir::In => (
            s.seq.wrapping_sub(irs),
            s.ack.wrapping_sub(isn),
            style.paint("35", "<"),
        ),
    };
    let mut fields = format!("seq={seq}");
    if s.flags.ack() {
        let _ = write!(fields, " ack={ack}");
    }
    let mut line = format!(
        "  {:>10.3} ms  {arrow}  {:<5} {fields:<22} win={:<6}",
        s.t_ns as f64 / 1e6,
        short_flags(s.flags),
        s.win
    );
    if s.len > 0 {
        let _ = write!(line, " len={}", s.len);
    }
    if let Some(urg) = s.urgent {
        let _ = write!(line, " urg={urg}");
    }
    let opts = options_text(&s.options);
    if !opts.is_empty() {
        let _ = write!(line, " <{opts}>");
    }
    if s.retransmission {
        let _ = write!(line, "  {}", style.paint("33", "[retransmission]"));
    }
    if s.bad_checksum {
        let _ = write!(line, "  {}", style.paint("31", "[bad checksum: ignored]"));
    }
    if s.foreign {
        let _ = write!(line, "  {}", style.paint("31", "[not sent by tcpshake]"));
    }
    if s.fragments > 1 {
        let _ = write!(
            line,
            "  {}",
            style.paint("33", &format!("[{} fragments]", s.fragments))
        );
    }
    if !s.transitions.is_empty() {
        let changes: Vec<String> = s.transitions.iter().map(ToString::to_string).collect();
        let _ = write!(line, "   {}", style.paint("33", &changes.join(", ")));
    }
    line
}

pub fn render(r: &ProbeResult, style: Style) -> String {
    let mut out = String::new();
    let server = r
        .http
        .as_ref()
        .and_then(|h| h.headers.get("server"))
        .map(|s| format!(" ({})", s.split('/').next().unwrap_or(s)))
        .unwrap_or_default();
    let state = match r.state {
        PortState::Open => style.paint("32;1", "open"),
        PortState::Closed => style.paint("31;1", "closed"),
        PortState::Filtered => style.paint("33;1", "filtered"),
        PortState::Interrupted => style.paint("33", "interrupted"),
    };
    let _ = write!(
        out,
        "tcpshake probe {}{server}  {state}  reason={}",
        r.target, r.reason
    );
    if let Some(ttl) = r.reply_ttl {
        let _ = write!(out, "  ttl={ttl}");
    }
    if let Some(from) = &r.reply_from
        && *from != r.addr
    {
        let _ = write!(out, "  from={from}");
    }
    let _ = writeln!(
        out,
        "\n  {}:{} → {}:{}",
        r.src_addr, r.src_port, r.addr, r.port
    );

    // Segments and timer events, in time order; the request and response lines beside
    // the first segments that carry them.
    let mut noted = (false, false);
    let mut timers = r.timers.iter().peekable();
    for s in &r.segments {
        while let Some(t) = timers.next_if(|t| t.t_ns <= s.t_ns) {
            let _ = writeln!(
                out,
                "  {:>10.3} ms  ·  {}",
                t.t_ns as f64 / 1e6,
                style.paint("33", &t.what)
            );
        }
        let _ = writeln!(
            out,
            "{}{}",
            segment_line(r, s, style),
            http_note(r, s, &mut noted)
        );
    }
    for t in timers {
        let _ = writeln!(
            out,
            "  {:>10.3} ms  ·  {}",
            t.t_ns as f64 / 1e6,
            style.paint("33", &t.what)
        );
    }

    tls_lines(&mut out, r, style);
    let l = &r.legs_ns;
    let connect = leg_phrases(l, LegGroup::Connect);
    if !connect.is_empty() {
        let _ = writeln!(out, "  connect   {}", connect.join("   "));
    }
    let http = leg_phrases(l, LegGroup::Http);
    if !http.is_empty() {
        let _ = writeln!(out, "  http      {}", http.join("   "));
    }
    let close = leg_phrases(l, LegGroup::Close);
    let who = match r.close_initiator {
        Some(CloseInitiator::Client) => "(client closed)",
        Some(CloseInitiator::Server) => "(server closed)",
        Some(CloseInitiator::Simultaneous) => "(simultaneous close)",
        Some(CloseInitiator::Reset) => "(reset)",
        None => "",
    };
    if !close.is_empty() || !who.is_empty() {
        let _ = writeln!(out, "  close     {}   {who}", close.join("   "));
    }
    if let Some(t) = l.get(Leg::Total) {
        let _ = write!(out, "  total     {}", human_ns(t));
        if r.retransmissions > 0 {
            let _ = write!(out, "   retransmissions {}", r.retransmissions);
        }
        let _ = writeln!(out);
    }
    for (leg, why) in &r.leg_notes {
        let _ = writeln!(out, "  {} {leg}: {why}", style.paint("33", "leg:"));
    }
    for a in &r.anomalies {
        let _ = writeln!(out, "  {} {a}", style.paint("33", "note:"));
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  {} {e}", style.paint("31;1", "error:"));
    }
    out
}

/// `  HEAD / HTTP/1.1` beside our first data segment, `  HTTP/1.1 200 OK (Server: …)`
/// beside the server's.
fn http_note(r: &ProbeResult, s: &SegmentRecord, noted: &mut (bool, bool)) -> String {
    let Some(h) = &r.http else {
        return String::new();
    };
    if s.len == 0 {
        return String::new();
    }
    match s.dir {
        Dir::Out if !noted.0 => {
            noted.0 = true;
            format!("   {}", h.request)
        }
        Dir::In if !noted.1 => {
            noted.1 = true;
            let shown: Vec<String> = ["server", "content-length", "content-type"]
                .iter()
                .filter_map(|k| h.headers.get(*k).map(|v| format!("{}: {v}", title_case(k))))
                .collect();
            format!(
                "   {} {} {} ({})",
                h.version,
                h.status,
                h.reason,
                shown.join(", ")
            )
        }
        _ => String::new(),
    }
}

/// HTTPS: what was negotiated, the verification verdict, the chain, the TLS legs.
fn tls_lines(out: &mut String, r: &ProbeResult, style: Style) {
    let Some(t) = &r.tls else {
        return;
    };
    let mut parts: Vec<String> = [&t.version, &t.cipher_suite, &t.key_exchange_group]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if let Some(a) = &t.alpn {
        parts.push(format!("alpn {a}"));
    }
    parts.push(match &t.sni {
        Some(s) => format!("sni {s}"),
        None => "no sni".into(),
    });
    let verdict = match (t.verified, &t.verify_error) {
        (Some(true), _) => style.paint(
            "32",
            &format!("verified ({} for {})", t.trust, t.server_name),
        ),
        (Some(false), e) => style.paint(
            "31;1",
            &format!(
                "NOT VERIFIED{}: {}",
                if t.insecure {
                    " (--insecure: went on)"
                } else {
                    ""
                },
                e.as_deref().unwrap_or("?")
            ),
        ),
        (None, _) => "no certificate seen".into(),
    };
    parts.push(verdict);
    let _ = writeln!(out, "  tls       {}", parts.join("  "));
    for (i, c) in t.certificates.iter().enumerate() {
        let label = if i == 0 {
            "cert".to_string()
        } else {
            format!("cert #{i}")
        };
        let sans = if c.sans.is_empty() {
            String::new()
        } else {
            format!("  SAN {}", c.sans.join(", "))
        };
        let left = if c.days_to_expiry < 0 {
            style.paint("31", &format!("expired {} days ago", -c.days_to_expiry))
        } else {
            format!("{} days left", c.days_to_expiry)
        };
        let _ = writeln!(
            out,
            "  {label:<9} {}  issuer {}{sans}  {} → {} ({left})",
            c.subject,
            c.issuer,
            c.not_before.get(..10).unwrap_or(&c.not_before),
            c.not_after.get(..10).unwrap_or(&c.not_after),
        );
    }
    let legs = leg_phrases(&r.legs_ns, LegGroup::Tls);
    if !legs.is_empty() {
        let _ = writeln!(out, "  tls legs  {}", legs.join("   "));
    }
}

/// `SYN→SYN-ACK 21.8 µs` for each leg of `group` that happened.
fn leg_phrases(legs: &Legs, group: LegGroup) -> Vec<String> {
    legs.iter()
        .filter(|(l, _)| l.group() == group)
        .filter_map(|(l, v)| v.map(|ns| format!("{} {}", l.phrase(), human_ns(ns))))
        .collect()
}

fn title_case(k: &str) -> String {
    k.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_ns(41_200), "41.2 µs");
        assert_eq!(human_ns(12_345_678), "12.346 ms");
        assert_eq!(human_ns(1_234_000_000), "1.234 s");
    }

    #[test]
    fn a_fragmented_segment_says_so() {
        let golden =
            include_str!("../../crates/proto/src/probe/golden/open_http_server_closes.json");
        let mut r: ProbeResult = serde_json::from_str(golden).unwrap();
        assert!(!render(&r, Style { color: false }).contains("fragments]"));
        let synack = r.segments.iter().position(|s| s.dir == Dir::In).unwrap();
        r.segments[synack].fragments = 3;
        let text = render(&r, Style { color: false });
        let line = text
            .lines()
            .find(|l| l.contains("[3 fragments]"))
            .unwrap_or_default();
        assert!(line.contains(" SA "), "{text}");
        assert_eq!(text.matches("fragments]").count(), 1, "{text}");
    }

    #[test]
    fn flags_read_like_the_readme() {
        assert_eq!(short_flags(TcpFlags::SYN | TcpFlags::ACK), "SA");
        assert_eq!(short_flags(TcpFlags::FIN | TcpFlags::ACK), "FA");
        assert_eq!(short_flags(TcpFlags::PSH | TcpFlags::ACK), "PA");
        assert_eq!(title_case("content-length"), "Content-Length");
    }
}

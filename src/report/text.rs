//! The human view: every segment with its time, relative sequence numbers and the state
//! changes it caused, then the legs.

use std::fmt::Write;
use tcpshake_proto::probe::record::{
    CloseInitiator, Dir, Leg, LegGroup, Legs, PortState, ProbeResult, SegmentRecord, Transition,
    options_text,
};
use tcpshake_proto::tcp::State;
use tcpshake_proto::wire::TcpFlags;

/// ANSI colours, or none.
#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(self, code: &str, s: &str) -> String {
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

/// A duration in ns as people read it: `41.2 µs`, `12.345 ms`, `1.234 s` (one form with
/// the SLO verdicts: `tcpshake_proto::time::human_ns`).
pub use tcpshake_proto::time::human_ns;

fn segment_line(
    r: &ProbeResult,
    s: &SegmentRecord,
    transitions: &[Transition],
    style: Style,
) -> String {
    let isn = r.isn;
    let irs = r.irs.unwrap_or(s.seq);
    // SACK blocks name the bytes the acknowledgment counts: relative to the same base.
    let (seq, ack, ack_base, arrow) = match s.dir {
        Dir::Out => (
            s.seq.wrapping_sub(isn),
            s.ack.wrapping_sub(irs),
            irs,
            style.paint("36", ">"),
        ),
        Dir::In => (
            s.seq.wrapping_sub(irs),
            s.ack.wrapping_sub(isn),
            isn,
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
    let opts = options_text(&s.options, ack_base);
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
    if s.kernel {
        let _ = write!(
            line,
            "  {}",
            style.paint("36", "[by tcpshake's kernel program]")
        );
    }
    if s.fragments > 1 {
        let _ = write!(
            line,
            "  {}",
            style.paint("33", &format!("[{} fragments]", s.fragments))
        );
    }
    if !transitions.is_empty() {
        let changes: Vec<String> = transitions.iter().map(ToString::to_string).collect();
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
    // An IPv6 address with a port goes in brackets, as every other place writes it.
    let endpoint = |addr: &str, port: u16| match addr.contains(':') {
        true => format!("[{addr}]:{port}"),
        false => format!("{addr}:{port}"),
    };
    let _ = writeln!(
        out,
        "\n  {} → {}",
        endpoint(&r.src_addr, r.src_port),
        endpoint(&r.addr, r.port)
    );

    // Segments and timer events, in time order; the request and response lines beside
    // the segments that carry them; each state change beside its cause.
    let labels = segment_labels(r);
    let mut shown = StateTrack::new(r);
    let mut timers = r.timers.iter().peekable();
    for (i, s) in r.segments.iter().enumerate() {
        while let Some(t) = timers.next_if(|t| t.t_ns <= s.t_ns) {
            shown.timer(&t.what);
            let _ = writeln!(
                out,
                "  {:>10.3} ms  ·  {}",
                t.t_ns as f64 / 1e6,
                style.paint("33", &t.what)
            );
        }
        if s.omitted_before > 0 {
            let _ = writeln!(
                out,
                "  {:>10}     {}",
                "…",
                style.paint("33", &format!("{} segments left out", s.omitted_before))
            );
        }
        if let Some(early) = shown.hoist(i) {
            let _ = writeln!(out, "{:>16}·  {}", "", style.paint("33", &early));
        }
        let mut line = segment_line(r, s, shown.remaining(i), style);
        if let Some(l) = &labels[i] {
            let _ = write!(line, "   {l}");
        }
        let _ = writeln!(out, "{line}");
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
        // No legs (a reset): the initiator alone, with no gap before it.
        let gap = if close.is_empty() || who.is_empty() {
            ""
        } else {
            "   "
        };
        let _ = writeln!(out, "  close     {}{gap}{who}", close.join("   "));
    }
    if let Some(t) = l.get(Leg::Total) {
        let _ = write!(out, "  total     {}", human_ns(t));
        if r.retransmissions > 0 {
            let _ = write!(out, "   retransmissions {}", r.retransmissions);
        }
        let _ = writeln!(out);
    }
    if r.capture_lost > 0 {
        let _ = writeln!(
            out,
            "  {} the capture dropped {} packet{}: legs may be wrong",
            style.paint("31;1", "capture:"),
            r.capture_lost,
            if r.capture_lost == 1 { "" } else { "s" }
        );
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

/// The state the lines so far have brought the connection to, and the state changes of
/// ours shown ahead of the segment they went out with.
///
/// A line's state changes are those its segment caused, or, for our segment, those it went
/// out with (our own call: connect, close, abort). Lines are in wire order; the probe acts
/// in the order it reads the tap. The two differ when a segment of the server's reached
/// the tap while ours was leaving: FINs that cross (a simultaneous close, RFC 9293 §3.6)
/// can show the server's FIN first, handled in FIN-WAIT-1 → CLOSING, and then our FIN,
/// with the ESTABLISHED → FIN-WAIT-1 that came before it. Such changes of ours are shown
/// on a line of their own before the segment that found us in their state.
struct StateTrack<'a> {
    segments: &'a [SegmentRecord],
    state: Option<State>,
    /// Per segment, how many of its leading transitions are already shown.
    shown: Vec<usize>,
}

/// How far ahead an out-of-order change of ours is looked for.
const HOIST_AHEAD: usize = 8;

impl<'a> StateTrack<'a> {
    fn new(r: &'a ProbeResult) -> StateTrack<'a> {
        StateTrack {
            segments: &r.segments,
            state: None,
            shown: vec![0; r.segments.len()],
        }
    }

    /// A timer line: `TIME-WAIT → CLOSED` moves the state, other lines do not.
    fn timer(&mut self, what: &str) {
        if let Some((from, to)) = what.split_once(" → ")
            && State::from_name(from.trim()).is_some()
            && let Some(to) = State::from_name(to.trim())
        {
            self.state = Some(to);
        }
    }

    /// Segment `i`'s changes not shown yet; the state moves past them.
    fn remaining(&mut self, i: usize) -> &'a [Transition] {
        let rest = self.segments[i]
            .transitions
            .get(self.shown[i]..)
            .unwrap_or_default();
        if let Some(t) = rest.last() {
            self.state = Some(t.to);
        }
        rest
    }

    /// When segment `i` was handled in a state the lines so far have not reached, and a
    /// segment of ours a little further down went out with the changes that lead there:
    /// those changes, to be shown first, with where they went out.
    fn hoist(&mut self, i: usize) -> Option<String> {
        let seg = &self.segments[i];
        let first = seg.transitions.get(self.shown[i])?;
        let now = self.state?;
        if first.from == now || seg.dir != Dir::In {
            return None;
        }
        let base = self.segments.first().map_or(0, |s| s.t_ns);
        for (k, later) in self
            .segments
            .iter()
            .enumerate()
            .skip(i + 1)
            .take(HOIST_AHEAD)
        {
            if later.dir != Dir::Out || self.shown[k] > 0 {
                continue;
            }
            let chain = later.transitions.first().is_some_and(|t| t.from == now);
            let n = later.transitions.iter().position(|t| t.to == first.from);
            if let (true, Some(n)) = (chain, n) {
                let moved = &later.transitions[..=n];
                self.shown[k] = n + 1;
                self.state = Some(first.from);
                let changes: Vec<String> = moved.iter().map(ToString::to_string).collect();
                return Some(format!(
                    "{}   (made before the segment below was read; our {} at {:.3} ms carried it)",
                    changes.join(", "),
                    short_flags(later.flags),
                    (later.t_ns - base) as f64 / 1e6
                ));
            }
        }
        None
    }
}

/// What goes beside each segment: `HEAD / HTTP/1.1` beside the segment carrying our
/// request, `HTTP/1.1 200 OK (Server: …)` beside the first that carries the response; with
/// HTTPS, `TLS ClientHello` and `TLS ServerHello` beside theirs and the HTTP lines beside
/// the encrypted request and response (see [`https_segments`]).
fn segment_labels(r: &ProbeResult) -> Vec<Option<String>> {
    let mut labels = vec![None; r.segments.len()];
    let usable = |s: &SegmentRecord| !s.foreign && !s.bad_checksum && s.len > 0;
    let (request, response) = if r.tls.is_some() {
        let marks = https_segments(r);
        if let Some(h) = marks.hello {
            labels[h] = Some("TLS ClientHello".to_string());
        }
        if let Some(sh) = marks.serverhello {
            labels[sh] = Some("TLS ServerHello".to_string());
        }
        (marks.request, marks.first_byte)
    } else {
        (
            r.segments
                .iter()
                .position(|s| s.dir == Dir::Out && usable(s)),
            r.segments
                .iter()
                .position(|s| s.dir == Dir::In && usable(s)),
        )
    };
    let encrypted = if r.tls.is_some() { " in TLS" } else { "" };
    // The request the record says left, beside the segment that carried its first byte,
    // answered or not; a record without `request_sent` (older) has it only in `http`.
    match &r.request_sent {
        Some(q) => {
            if let Some(i) = carrying(&r.segments, q.seq) {
                labels[i] = Some(format!("{}{encrypted}", q.line));
            }
        }
        None => {
            if let (Some(i), Some(h)) = (request, &r.http) {
                labels[i] = Some(format!("{}{encrypted}", h.request));
            }
        }
    }
    let Some(h) = &r.http else {
        return labels;
    };
    if let Some(i) = response {
        let shown: Vec<String> = ["server", "content-length", "content-type"]
            .iter()
            .filter_map(|k| h.headers.get(*k).map(|v| format!("{}: {v}", title_case(k))))
            .collect();
        // No Server / Content-* header: nothing in brackets, not an empty `()`.
        let shown = if shown.is_empty() {
            String::new()
        } else {
            format!(" ({})", shown.join(", "))
        };
        labels[i] = Some(format!(
            "{} {} {}{shown}{encrypted}",
            h.version, h.status, h.reason,
        ));
    }
    labels
}

/// The first segment of ours (not a retransmission) whose payload holds sequence number
/// `seq`.
fn carrying(segments: &[SegmentRecord], seq: u32) -> Option<usize> {
    segments.iter().position(|s| {
        s.dir == Dir::Out
            && !s.foreign
            && !s.retransmission
            && s.len > 0
            && !s.flags.syn()
            && seq.wrapping_sub(s.seq) < s.len
    })
}

/// Where the TLS handshake and the encrypted HTTP exchange are in the segments.
#[derive(Debug, Default, PartialEq, Eq)]
struct HttpsSegments {
    hello: Option<usize>,
    serverhello: Option<usize>,
    request: Option<usize>,
    first_byte: Option<usize>,
}

/// The segments of an HTTPS record, found from its legs: a leg is the exact difference of
/// the kernel timestamps of the two segments it runs between (README, `legs_ns`), so the
/// segment at the far end of a leg is the one stamped exactly that many ns after the near
/// one. The ClientHello is our first data segment; the ServerHello segment ends
/// `tls_clienthello_to_serverhello`; the encrypted request is the first data segment of
/// ours, from the one carrying our Finished on, that has an incoming data segment exactly
/// `request_to_first_byte` later, and that segment is the first response byte. A leg that
/// was not measured leaves its segments unlabelled rather than guessed.
fn https_segments(r: &ProbeResult) -> HttpsSegments {
    let segs = &r.segments;
    let data = |s: &SegmentRecord, dir: Dir| {
        s.dir == dir && s.len > 0 && !s.foreign && !s.bad_checksum && !s.flags.syn()
    };
    let at = |from: usize, dir: Dir, ns: u64| {
        let t = segs[from].ts_ns.checked_add(ns)?;
        (from..segs.len()).find(|&j| data(&segs[j], dir) && segs[j].ts_ns == t)
    };
    let mut m = HttpsSegments {
        hello: segs
            .iter()
            .position(|s| data(s, Dir::Out) && !s.retransmission),
        ..Default::default()
    };
    let Some(hello) = m.hello else {
        return m;
    };
    let leg = |l: Leg| r.legs_ns.get(l);
    m.serverhello = leg(Leg::TlsClienthelloToServerhello).and_then(|v| at(hello, Dir::In, v));
    let finished = leg(Leg::TlsClienthelloToClientFinished)
        .and_then(|v| at(hello, Dir::Out, v))
        .unwrap_or(hello + 1);
    if let Some(v) = leg(Leg::RequestToFirstByte) {
        let found = segs
            .iter()
            .enumerate()
            .skip(finished)
            .filter(|(_, s)| data(s, Dir::Out) && !s.retransmission)
            .find_map(|(c, _)| Some((c, at(c, Dir::In, v)?)));
        if let Some((c, fb)) = found {
            m.request = Some(c);
            m.first_byte = Some(fb);
        }
    }
    m
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
    use tcpshake_proto::wire::SeqNumber;

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

    /// The exporter's `debug=true` shows a survey probe this way: the segment the kernel
    /// program sent (the record's `kernel`) says so, as `[not sent by tcpshake]` does.
    #[test]
    fn the_kernel_programs_segment_says_so() {
        let mut r = golden("open_http_server_closes");
        assert!(!render(&r, Style { color: false }).contains("kernel program"));
        let req = r
            .segments
            .iter()
            .position(|s| s.dir == Dir::Out && s.len > 0)
            .unwrap();
        r.segments[req].kernel = true;
        let text = render(&r, Style { color: false });
        let line = line_of(&text, "[by tcpshake's kernel program]");
        assert!(line.contains(">  PA"), "{text}");
        assert_eq!(text.matches("kernel program").count(), 1, "{text}");
    }

    /// Fault walk (two frag-needed in a row): the server's SACK of our re-cut request
    /// read `sack 3287841087:3287841287` beside `seq=1 ack=1`; tcpdump shows blocks
    /// relative, as the acknowledgment beside them.
    #[test]
    fn sack_blocks_are_relative_like_seq_and_ack() {
        let mut r = golden("open_http_server_closes");
        let (isn, irs) = (r.isn, r.irs.unwrap());
        let inc = r
            .segments
            .iter()
            .position(|s| s.dir == Dir::In && s.len > 0)
            .unwrap();
        r.segments[inc].options.sack_blocks[0] = Some((
            SeqNumber(isn.wrapping_add(50)),
            SeqNumber(isn.wrapping_add(96)),
        ));
        let out = r.segments.iter().rposition(|s| s.dir == Dir::Out).unwrap();
        r.segments[out].options.sack_blocks[0] = Some((
            SeqNumber(irs.wrapping_add(100)),
            SeqNumber(irs.wrapping_add(200)),
        ));
        let text = render(&r, Style { color: false });
        assert!(line_of(&text, "len=60").contains("<sack 50:96>"), "{text}");
        assert!(
            line_of(&text, "FA    seq=98").contains("<sack 100:200>"),
            "{text}"
        );
    }

    fn golden(name: &str) -> ProbeResult {
        let path = format!(
            "{}/crates/proto/src/probe/golden/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// The line of `text` that shows the segment with these flags and relative seq.
    fn line_of<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{text}"))
    }

    #[test]
    fn crossing_fins_show_each_change_beside_its_cause_in_order() {
        let r = golden("simultaneous_close_crossing");
        let text = render(&r, Style { color: false });
        let lines: Vec<&str> = text.lines().collect();
        let fin_in = lines.iter().position(|l| l.contains("<  FA")).unwrap();
        let fin_out = lines.iter().position(|l| l.contains(">  FA")).unwrap();
        // The server's FIN came first on the wire and was handled in FIN-WAIT-1: our close,
        // made before it was read, is shown before it, once, and the states read in order.
        assert!(fin_in < fin_out, "{text}");
        assert!(
            lines[fin_in - 1].contains("·  ESTABLISHED → FIN-WAIT-1"),
            "{text}"
        );
        assert!(lines[fin_in].ends_with("FIN-WAIT-1 → CLOSING"), "{text}");
        assert!(!lines[fin_out].contains("→"), "{text}");
        assert_eq!(
            text.matches("ESTABLISHED → FIN-WAIT-1").count(),
            1,
            "{text}"
        );
        // Each change's `from`, in the order the lines show them.
        let order: Vec<&str> = text
            .lines()
            .flat_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (1..w.len())
                    .filter(|&k| w[k] == "→")
                    .map(|k| w[k - 1])
                    .filter(|a| State::from_name(a).is_some())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            order,
            [
                "CLOSED",
                "SYN-SENT",
                "ESTABLISHED",
                "FIN-WAIT-1",
                "CLOSING",
                "TIME-WAIT"
            ],
            "{text}"
        );
    }

    #[test]
    fn states_in_wire_order_are_left_where_they_are() {
        let r = golden("open_http_server_closes");
        let text = render(&r, Style { color: false });
        assert!(!text.contains("made before"), "{text}");
        assert!(
            line_of(&text, "<  FA").ends_with("ESTABLISHED → CLOSE-WAIT"),
            "{text}"
        );
        assert!(
            line_of(&text, ">  FA").contains("CLOSE-WAIT → LAST-ACK"),
            "{text}"
        );
    }

    /// Lab records of nginx over HTTPS (TLS 1.3: our Finished and the request in one
    /// segment, two NewSessionTickets before the response; TLS 1.2: our Finished first).
    fn https(version: &str) -> ProbeResult {
        let text = match version {
            "1.3" => include_str!("testdata/https_tls13.json"),
            _ => include_str!("testdata/https_tls12.json"),
        };
        serde_json::from_str(text.trim()).unwrap()
    }

    #[test]
    fn https_labels_the_encrypted_request_and_response_not_the_hellos() {
        for (version, request_len, response_len) in [("1.3", 201, 165), ("1.2", 128, 172)] {
            let r = https(version);
            let text = render(&r, Style { color: false });
            let request = line_of(&text, "HEAD / HTTP/1.1");
            assert!(request.contains(">  PA"), "{text}");
            assert!(request.contains(&format!("len={request_len} ")), "{text}");
            assert!(request.ends_with("HEAD / HTTP/1.1 in TLS"), "{text}");
            let response = line_of(&text, "HTTP/1.1 200 OK");
            assert!(response.contains(&format!("len={response_len} ")), "{text}");
            assert!(response.contains("<  PA"), "{text}");
            assert!(
                line_of(&text, "TLS ClientHello").contains("len=229 "),
                "{text}"
            );
            assert!(
                line_of(&text, "TLS ServerHello").contains("<  PA"),
                "{text}"
            );
            assert_eq!(text.matches("HEAD /").count(), 1, "{text}");
            assert_eq!(text.matches("200 OK").count(), 1, "{text}");
            // The labelled segments are the ends of request→first byte.
            let m = https_segments(&r);
            let (rq, fb) = (m.request.unwrap(), m.first_byte.unwrap());
            assert_eq!(
                r.segments[fb].ts_ns - r.segments[rq].ts_ns,
                r.legs_ns.get(Leg::RequestToFirstByte).unwrap()
            );
        }
    }

    #[test]
    fn https_without_the_legs_labels_nothing_it_would_guess() {
        let mut r = https("1.3");
        r.legs_ns.set(Leg::RequestToFirstByte, None);
        r.legs_ns.set(Leg::TlsClienthelloToServerhello, None);
        let text = render(&r, Style { color: false });
        assert!(!text.contains("HEAD /"), "{text}");
        assert!(!text.contains("200 OK"), "{text}");
        assert!(!text.contains("ServerHello"), "{text}");
        assert!(text.contains("TLS ClientHello"), "{text}");
    }

    #[test]
    fn left_out_segments_and_capture_losses_are_shown() {
        let golden =
            include_str!("../../crates/proto/src/probe/golden/open_http_server_closes.json");
        let mut r: ProbeResult = serde_json::from_str(golden).unwrap();
        let plain = render(&r, Style { color: false });
        assert!(!plain.contains("left out") && !plain.contains("capture:"));
        r.segments[3].omitted_before = 81_000;
        r.segments_omitted = 81_000;
        r.capture_lost = 58;
        let text = render(&r, Style { color: false });
        let lines: Vec<&str> = text.lines().collect();
        let gap = lines
            .iter()
            .position(|l| l.contains("… ") && l.ends_with("81000 segments left out"))
            .unwrap_or_else(|| panic!("{text}"));
        // Right before the segment it precedes (the fourth: after the title and the
        // address line).
        assert_eq!(gap, 2 + 3, "{text}");
        assert!(
            text.contains("capture: the capture dropped 58 packets: legs may be wrong"),
            "{text}"
        );
    }

    /// The request is shown beside the segment that carried it whether or not a response
    /// came (README: "The request and response lines go beside the segments that carry
    /// them"); a record from before `request_sent` shows it only with a response.
    #[test]
    fn an_unanswered_request_is_shown_beside_its_segment() {
        let mut r = golden("open_http_server_closes");
        assert!(r.request_sent.is_some());
        r.http = None;
        let text = render(&r, Style { color: false });
        let line = line_of(&text, "HEAD / HTTP/1.1");
        assert!(line.contains(">  PA") && line.contains("len=97 "), "{text}");
        assert_eq!(text.matches("HEAD /").count(), 1, "{text}");
        r.request_sent = None;
        assert!(!render(&r, Style { color: false }).contains("HEAD /"));
    }

    #[test]
    fn flags_read_like_the_readme() {
        assert_eq!(short_flags(TcpFlags::SYN | TcpFlags::ACK), "SA");
        assert_eq!(short_flags(TcpFlags::FIN | TcpFlags::ACK), "FA");
        assert_eq!(short_flags(TcpFlags::PSH | TcpFlags::ACK), "PA");
        assert_eq!(title_case("content-length"), "Content-Length");
    }
}

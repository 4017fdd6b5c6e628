//! The human view of a scan: one table per host (open ports, or with `--all` every port
//! sent to, silent ones included), and the summary line.

use super::count;
use super::scan_nmap::nmap_state_number;
use std::cmp::Reverse;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;
use tcpshake_proto::probe::record::{CloseInitiator, Leg, PortState, Reason};
use tcpshake_proto::probe::scan::neighbours::{HostLink, ResolveTotals};
use tcpshake_proto::probe::scan::rate::Shortfall;
use tcpshake_proto::probe::scan::results::HostPorts;
use tcpshake_proto::probe::scan::{Completion, ScanTotals};
use tcpshake_proto::time::{format_duration, human_ns, nanos};

/// One host's table: its open ports, or with `all` every port with its verdict (silent
/// ones as filtered/no-response, TTL and RTT `-`). A host that is up (it answered) with no
/// open port gets its title and `Not shown:` line, as nmap writes it, and as the XML and
/// greppable formats list it; nothing for a host with nothing to show.
/// `names`: the host names typed for this address. `left_out`: without `all`, the host's
/// ports that are not open, counted — nmap's `Not shown:` line under the title (`None`:
/// not known, no line).
pub fn host(
    out: &mut impl Write,
    h: &HostPorts<'_>,
    names: &[String],
    all: bool,
    left_out: Option<&[(PortState, Reason, u64)]>,
) -> io::Result<()> {
    if h.is_down() {
        if all && let Some(HostLink::Unresolved(how)) = h.link {
            writeln!(
                out,
                "scan report for {} [host down, {}]\n",
                h.addr,
                how.down_reason()
            )?;
        }
        return Ok(());
    }
    let mut shown = h
        .verdicts()
        .filter(|&(_, state, _)| all || state == PortState::Open)
        .peekable();
    let not_shown_line = left_out.filter(|_| !all).and_then(not_shown);
    // Up: it answered itself (a port, kept or only counted, or ARP / ND). Counted answers
    // are no sign of that: a router's ICMP errors about a host that is not there are
    // counted too.
    if shown.peek().is_none() && !(h.is_up() && not_shown_line.is_some()) {
        return Ok(());
    }
    let mut s = String::new();
    match names {
        [] => {
            let _ = writeln!(s, "scan report for {}", h.addr);
        }
        names => {
            let _ = writeln!(s, "scan report for {} ({})", names.join(", "), h.addr);
        }
    }
    if let Some(line) = not_shown_line {
        let _ = writeln!(s, "{line}");
    }
    if shown.peek().is_some() {
        let _ = writeln!(
            s,
            "{:<11} {:<9} {:<17} {:>4}  RTT",
            "PORT", "STATE", "REASON", "TTL"
        );
    }
    let mut answered = h.answered.iter().peekable();
    for (port, state, reason) in shown {
        while answered.next_if(|a| a.port < port).is_some() {}
        let answer = answered.next_if(|a| a.port == port);
        let ttl = answer.map_or_else(|| "-".to_string(), |a| a.reply_ttl.to_string());
        let rtt = answer
            .and_then(|a| a.rtt_ns)
            .map_or_else(|| "-".into(), human_ns);
        // An ICMP error from someone other than the target (a router, a firewall, or a
        // forger who saw the SYN): who, as nmap's `--reason` says "from …".
        let from = answer
            .and_then(|a| a.reply_from())
            .map_or_else(String::new, |f| format!("  from {f}"));
        let _ = writeln!(
            s,
            "{:<11} {:<9} {:<17} {:>4}  {rtt}{from}",
            format!("{port}/tcp"),
            state.as_str(),
            reason,
            ttl
        );
        if let Some(c) = answer.and_then(|a| a.complete()) {
            let _ = writeln!(s, "{:<11} {}", "", completion(c));
        }
        // A host of 65535 ports is written as it goes, not held.
        if s.len() > 1 << 16 {
            out.write_all(s.as_bytes())?;
            s.clear();
        }
    }
    if let Some(HostLink::Resolved(mac, _)) = h.link {
        let _ = writeln!(s, "MAC Address: {mac}");
    }
    s.push('\n');
    out.write_all(s.as_bytes())
}

/// `Not shown: 65532 closed tcp ports (reset), 1 filtered tcp port (no-response)`, as nmap
/// words it: states by how many ports they hold (ties in nmap's state order), each state's
/// reasons by count. `None` when nothing was left out.
fn not_shown(t: &[(PortState, Reason, u64)]) -> Option<String> {
    let mut states: Vec<(PortState, u64)> = Vec::new();
    for &(state, _, n) in t {
        match states.iter_mut().find(|(s, _)| *s == state) {
            Some((_, total)) => *total += n,
            None => states.push((state, n)),
        }
    }
    states.sort_by_key(|&(s, n)| (Reverse(n), nmap_state_number(s)));
    let mut parts = Vec::new();
    for (state, _) in states {
        let mut reasons: Vec<_> = t.iter().filter(|x| x.0 == state && x.2 > 0).collect();
        reasons.sort_by_key(|x| (Reverse(x.2), x.1.as_str()));
        for &&(_, reason, n) in &reasons {
            let noun = if n == 1 { "port" } else { "ports" };
            parts.push(format!("{n} {} tcp {noun} ({reason})", state.as_str()));
        }
    }
    (!parts.is_empty()).then(|| format!("Not shown: {}", parts.join(", ")))
}

/// What the summary says about a scan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub totals: ScanTotals,
    /// Resolution, scan and drain.
    pub duration: Duration,
    /// First SYN to last, summed over rounds.
    pub send_time: Duration,
    pub interrupted: bool,
    /// Packets the capture's ring had no room for.
    pub tap_drops: u64,
    /// Neighbour resolution's counts, when it ran.
    pub resolution: Option<ResolveTotals>,
    /// The rate not met, and why.
    pub shortfall: Option<Shortfall>,
    /// `--wait` given shorter than the round trip this scan measured (ARP / ND and the
    /// answers): (the wait, the smoothed round trip).
    pub short_wait: Option<(Duration, Duration)>,
}

/// `scanned 4096 ports: 12 open, 4000 closed, 84 filtered in 1.52 s (4100 packets sent,
/// 2690 pps achieved, 0 dropped by the capture)`, then a line on neighbour resolution when
/// it ran, and warnings: a rate not met, packets the capture dropped.
pub fn summary(x: &Summary) -> String {
    let t = &x.totals;
    // The rate while sending; a send too short to time (one packet, or a few within a
    // millisecond: "1 packet sent, 155183 pps" once) counts over the whole run instead.
    let over = if x.send_time >= Duration::from_millis(1) {
        x.send_time
    } else {
        x.duration
    };
    let pps = if over.is_zero() {
        t.sent as f64
    } else {
        t.sent as f64 / over.as_secs_f64()
    };
    let mut s = format!(
        "scanned {}: {} open, {} closed, {} filtered in {:.2} s ({}, {:.0} pps achieved, {} dropped by the capture)",
        count(t.scanned, "port", "ports"),
        t.open,
        t.closed,
        t.filtered(),
        x.duration.as_secs_f64(),
        count(t.sent, "packet sent", "packets sent"),
        pps,
        x.tap_drops
    );
    if t.unmatched > 0 {
        let _ = write!(
            s,
            "; {} ignored",
            count(t.unmatched, "unmatched reply", "unmatched replies")
        );
    }
    if x.interrupted {
        s += "; interrupted: partial results";
    }
    if let Some(r) = x.resolution.filter(|r| r.asked > 0) {
        // Hosts are the on-link targets; a gateway asked about is no host "down, not
        // scanned" (a walk: a silent gateway was counted as one, and its targets then read
        // `filtered` with nothing said of it).
        let (asked, resolved) = (
            r.asked.saturating_sub(r.gateways_asked),
            r.resolved.saturating_sub(r.gateways_resolved),
        );
        let how = format!(
            "{}, {}",
            count(r.sent, "request", "requests"),
            count(r.rounds as u64, "round", "rounds")
        );
        if asked > 0 {
            let _ = write!(
                s,
                "\nneighbours: {resolved} of {} answered ARP / ND ({how}); {} down, not scanned",
                count(asked, "on-link address", "on-link addresses"),
                asked.saturating_sub(resolved)
            );
        } else {
            let _ = write!(
                s,
                "\nneighbours: {resolved_gw} of {} answered ARP / ND ({how})",
                count(r.gateways_asked, "gateway", "gateways"),
                resolved_gw = r.gateways_resolved
            );
        }
        if let Some(g) = r.silent_gateway {
            let _ = write!(
                s,
                "\nwarning: gateway {g} did not answer ARP / ND: what goes through it was left \
                 to the kernel, which cannot deliver it either (its targets are reported \
                 filtered); check `ip neigh show {g}`"
            );
        }
    }
    if let Some(d) = &t.slowed {
        // A trial (the rounds before got a few answers each, all early in their SYNs): said
        // first, then what came of it.
        if let Some(n) = d.trial {
            let _ = write!(
                s,
                "\nnote: rounds {} and {} got a steady few answers (a limit that passes a few \
                 at a time?): retry round {} sent {n} of its SYNs at {} a second as a trial",
                d.round.saturating_sub(2),
                d.round.saturating_sub(1),
                d.round,
                d.syns
            );
        }
        let _ = if d.undone {
            write!(
                s,
                "\nnote: retry round {} sent {} SYNs a second, as the rounds before it passed a \
                 steady {} answers a second; it answered no larger share of its SYNs than the \
                 round before (the path seems to lose packets, not to limit them), so the \
                 rounds after it went at the scan's rate",
                d.round, d.syns, d.answers
            )
        } else {
            write!(
                s,
                "\nnote: retry rounds from round {} sent {} SYNs a second: the rounds before \
                 passed a steady {} answers a second, whatever was sent (a rate limit at the \
                 host or on the way?), and SYNs beyond it lose their answers",
                d.round, d.syns, d.answers
            )
            .and_then(|()| match d.again {
                Some(a) => write!(
                    s,
                    "; rounds {} and {} still passed a steady {} a second, at most half their \
                     SYNs, so the rounds from round {} sent {} SYNs a second",
                    d.round,
                    d.round + 1,
                    a.answers,
                    a.round,
                    a.syns
                ),
                None => Ok(()),
            })
            .and_then(|()| match d.released {
                Some(r) => write!(
                    s,
                    "; round {} passed under a quarter of that (few ports left to answer), so \
                     the rounds from round {r} went at the scan's rate",
                    r - 1
                ),
                None => Ok(()),
            })
        };
    }
    if t.allowance_answers > 0 {
        let _ = write!(
            s,
            "\nnote: {} a second after the last round that got answers, as the round \
             between got none, and got {}: answers came a second's allowance at a time \
             (FreeBSD and macOS limit their RSTs so, to 200 and 250 a second)",
            count(
                u64::from(t.allowance_rounds),
                "retry round went",
                "retry rounds went"
            ),
            count(t.allowance_answers, "answer", "answers"),
        );
    }
    if let Some(f) = &x.shortfall {
        let _ = write!(s, "\nwarning: {f}");
    }
    // Ports that answered a retry but not the first SYN: the path lost packets (a burst
    // faster than a link or a middlebox takes drops them together). Retry rounds go on
    // while they get such answers, as nmap's do; when `--retries` ran out with the last
    // round still answered, the ports still silent may be lost the same way, not
    // filtered: say so, and what to do (the schedule slows retry rounds down by itself
    // only as far as SLOWED_ROUND_MAX allows: a stricter limit is the user's to choose).
    if t.retries_ran_out && t.silent() > 0 {
        // The last rounds' answers came at a steady rate of the path's, well under their
        // SYNs' (a host or middlebox that rate-limits its answers: limit.rs): sent a
        // little under it, every port gets its answer. Said as a number to use: 9/10 of
        // it (as the schedule's own slowed rounds send), rounded down. Named only when
        // the schedule could read it (`ScanTotals::path_limit`).
        let lower = match t.path_limit.filter(|&r| r > 0) {
            Some(r) => format!(
                "the last rounds' answers came back at a steady {r} a second{}, whatever was \
                 sent (a rate limit at the host or on the way?): scan {}again with --rate {} \
                 or lower",
                t.path_limit_host
                    .map_or(String::new(), |h| format!(", all from {h}")),
                t.path_limit_host.map_or(String::new(), |h| format!("{h} ")),
                round_down(r * 9 / 10)
            ),
            None => "scan again with a lower --rate".to_string(),
        };
        let _ = write!(
            s,
            "\nwarning: {} only to a retry (the first SYN or its answer was lost on the way), \
             and --retries ran out before that loss was ruled out, so the {} still silent may \
             be lost too rather than filtered: {lower}{}",
            count(t.answered_on_retry, "port answered", "ports answered"),
            t.silent(),
            // At the most --retries takes, only the rate is left to change.
            if t.retries < crate::config::defaults::SCAN_RETRIES_MAX {
                " or more --retries"
            } else {
                ""
            }
        );
    }
    if x.tap_drops > 0 {
        let _ = write!(
            s,
            "\nwarning: the capture dropped {} packets (its ring was full): replies among them \
             are missing, their ports may show as filtered; a lower --rate avoids it",
            x.tap_drops
        );
    }
    // Answers slower than the wait came after the scan had moved on or ended: the ports
    // still silent may have answered (walk 14: `--wait 10ms` on a 60 ms link called
    // every port filtered, and said nothing).
    if let Some((wait, rtt)) = x.short_wait.filter(|_| t.silent() > 0) {
        let _ = write!(
            s,
            "\nwarning: --wait {} is shorter than the round trip measured here ({}): answers \
             after it were not waited for, so the {} still silent may have answered; scan \
             again without --wait (it then waits from the round trips measured) or with \
             --wait {} or more",
            format_duration(wait),
            human_ns(nanos(rtt)),
            t.silent(),
            // Twice the round trip, in whole milliseconds (what one types).
            format_duration(Duration::from_millis(
                u64::try_from(rtt.saturating_mul(2).as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
            ))
        );
    }
    s
}

/// `n` rounded down to two significant digits (4987 → 4900, 173 → 170, 52 → 52): a rate
/// to give, a little under the one measured.
fn round_down(n: u64) -> u64 {
    let mut unit = 1;
    while n / unit >= 100 {
        unit *= 10;
    }
    (n / unit * unit).max(1)
}

/// `--complete`'s line under an open port: the handshake's legs, then the close's, named
/// like `tcpshake probe` names them.
fn completion(c: &Completion) -> String {
    let leg = |ns: Option<u64>| ns.map(human_ns).unwrap_or_else(|| "-".into());
    let l = &c.legs_ns;
    let mut s = format!(
        "connect: SYN→SYN-ACK {}, SYN-ACK→ACK {}",
        leg(l.get(Leg::SynToSynack)),
        leg(l.get(Leg::SynackToAck))
    );
    let by = match c.close_initiator {
        Some(CloseInitiator::Client) => "client",
        Some(CloseInitiator::Server) => "server",
        Some(CloseInitiator::Simultaneous) => "simultaneous",
        Some(CloseInitiator::Reset) => "reset",
        None => "-",
    };
    let _ = write!(
        s,
        "; close by {by}: FIN→ACK {}, FIN→FIN {}, peer FIN→ACK {}",
        leg(l.get(Leg::FinToAck)),
        leg(l.get(Leg::FinToPeerFin)),
        leg(l.get(Leg::PeerFinToLastAck))
    );
    if let Some(e) = &c.complete_error {
        let _ = write!(s, "; failed: {e}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::record::Reason;
    use tcpshake_proto::probe::scan::ScanRecord;
    use tcpshake_proto::probe::scan::neighbours::Resolution;
    use tcpshake_proto::probe::scan::results::{Answers, Rare};
    use tcpshake_proto::wire::ethernet::MacAddr;

    fn sample() -> Answers {
        let rec = |a: &str, port, state, reason: &str| ScanRecord {
            addr: a.parse().unwrap(),
            port,
            state,
            reason: Reason::from_word(reason).unwrap(),
            reply_ttl: 64,
            reply_from: None,
            rtt_ns: Some(41_500),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        };
        let mut a = Answers::default();
        for r in [
            rec("198.18.0.9", 80, PortState::Open, "syn-ack"),
            rec("198.18.0.9", 22, PortState::Open, "syn-ack"),
            rec("198.18.0.9", 23, PortState::Closed, "reset"),
            rec("198.18.0.3", 25, PortState::Filtered, "port-unreach"),
        ] {
            a.insert(&r);
        }
        a.sort();
        a
    }

    /// `addr`'s answered ports in `a`, no silent ones, not on the link.
    fn answered_host(a: &Answers, addr: std::net::IpAddr) -> HostPorts<'_> {
        HostPorts {
            addr,
            answered: a.host(addr),
            silent: vec![],
            link: None,
            counted_up: false,
        }
    }

    fn render(a: &Answers, silent: &[u16], all: bool) -> String {
        let mut out = Vec::new();
        for (addr, answered) in a.iter() {
            let h = HostPorts {
                addr,
                answered,
                silent: silent.to_vec(),
                link: None,
                counted_up: false,
            };
            host(&mut out, &h, &[], all, None).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    /// Fault walk: a filtered port decided by someone else's ICMP error says who, as
    /// nmap's `--reason` ("admin-prohibited from 198.18.99.99"); the target's own answers
    /// say nothing more.
    #[test]
    fn an_icmp_error_from_another_address_says_from_whom() {
        let mut a = sample();
        a.insert(&ScanRecord {
            addr: "198.18.0.9".parse().unwrap(),
            port: 84,
            state: PortState::Filtered,
            reason: Reason::AdminProhibited,
            reply_ttl: 64,
            reply_from: Some("198.18.99.99".parse().unwrap()),
            rtt_ns: Some(33_237_000),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        });
        a.sort();
        let t = render(&a, &[], true);
        let line = t.lines().find(|l| l.starts_with("84/tcp")).unwrap();
        assert!(line.ends_with("33.237 ms  from 198.18.99.99"), "{t}");
        let line = t.lines().find(|l| l.starts_with("23/tcp")).unwrap();
        assert!(!line.contains("from"), "{t}");
    }

    #[test]
    fn open_ports_per_host_by_default() {
        let t = render(&sample(), &[81], false);
        assert!(t.starts_with("scan report for 198.18.0.9\n"), "{t}");
        assert!(!t.contains("198.18.0.3"), "{t}");
        let p22 = t.find("22/tcp").unwrap();
        let p80 = t.find("80/tcp").unwrap();
        assert!(p22 < p80, "ports ascending:\n{t}");
        assert!(t.contains("41.5 µs"));
        assert!(!t.contains("23/tcp") && !t.contains("81/tcp"), "{t}");
    }

    /// nmap 7.93 on the same host (`nmap -sS -p 1-1000`, 22 open, the rest closed, dropped
    /// or refused by an admin filter) wrote `Not shown: 937 closed tcp ports (reset), 55
    /// filtered tcp ports (no-response), 7 filtered tcp ports (admin-prohibited)` under the
    /// title: states by count, reasons by count within each.
    #[test]
    fn the_ports_left_out_are_counted_as_nmap_words_them() {
        let a = sample();
        let addr = "198.18.0.9".parse().unwrap();
        let h = answered_host(&a, addr);
        let left_out = [
            (PortState::Filtered, Reason::AdminProhibited, 7),
            (PortState::Closed, Reason::Reset, 937),
            (PortState::Filtered, Reason::NoResponse, 55),
        ];
        let text = |all: bool, left: &[(PortState, Reason, u64)]| {
            let mut out = Vec::new();
            host(&mut out, &h, &[], all, Some(left)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let t = text(false, &left_out);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "Not shown: 937 closed tcp ports (reset), 55 filtered tcp ports (no-response), 7 filtered tcp ports (admin-prohibited)",
            "{t}"
        );
        assert!(lines[2].starts_with("PORT "), "{t}");
        // One of a kind is singular; a tie between states puts closed first, as nmap.
        let t = text(
            false,
            &[
                (PortState::Filtered, Reason::NoResponse, 1),
                (PortState::Closed, Reason::Reset, 1),
            ],
        );
        assert!(
            t.contains("Not shown: 1 closed tcp port (reset), 1 filtered tcp port (no-response)\n"),
            "{t}"
        );
        // Nothing left out, or every port listed: no line.
        assert!(!text(false, &[]).contains("Not shown"));
        assert!(!text(true, &left_out).contains("Not shown"));
    }

    /// A host that answered with no open port is not left out of the table (it was from
    /// `-oN` while `-oX` and `-oG` listed it): its title, the ports not shown, no header.
    /// nmap 7.93 (`nmap -sS -Pn -p 81`, closed) wrote the host with its port; with more
    /// ports it writes `Not shown:`.
    #[test]
    fn a_host_up_with_no_open_port_shows_what_was_not_shown() {
        let a = sample();
        let addr = "198.18.0.3".parse().unwrap();
        let h = answered_host(&a, addr);
        let mut out = Vec::new();
        let left = [(PortState::Filtered, Reason::PortUnreach, 1)];
        host(&mut out, &h, &[], false, Some(&left)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "scan report for 198.18.0.3\nNot shown: 1 filtered tcp port (port-unreach)\n\n"
        );
        // A host nothing came from, not on the link: nothing to say.
        let silent = HostPorts {
            addr: "198.18.0.4".parse().unwrap(),
            answered: &[],
            silent: vec![81],
            link: None,
            counted_up: false,
        };
        let mut out = Vec::new();
        let left = [(PortState::Filtered, Reason::NoResponse, 1)];
        host(&mut out, &silent, &[], false, Some(&left)).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    /// Walk 14: the router's errors about a host that is not there are counted as what
    /// the table leaves out, but say nothing of the host: no title for it.
    #[test]
    fn a_host_only_a_router_answered_for_has_no_table() {
        let addr = "198.18.4.1".parse().unwrap();
        let mut a = Answers::default();
        a.insert(&ScanRecord {
            addr,
            port: 22,
            state: PortState::Filtered,
            reason: Reason::HostUnreach,
            reply_ttl: 64,
            reply_from: Some("198.18.1.254".parse().unwrap()),
            rtt_ns: Some(3_000_000),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        });
        a.sort();
        let h = answered_host(&a, addr);
        let left = [(PortState::Filtered, Reason::HostUnreach, 1)];
        let mut out = Vec::new();
        host(&mut out, &h, &[], false, Some(&left)).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        // The table without the walk keeps no closed port: its count says the host
        // answered itself.
        let counted = HostPorts {
            answered: &[],
            counted_up: true,
            ..h.clone()
        };
        let left = [(PortState::Closed, Reason::Reset, 1)];
        let mut out = Vec::new();
        host(&mut out, &counted, &[], false, Some(&left)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "scan report for 198.18.4.1\nNot shown: 1 closed tcp port (reset)\n\n"
        );
    }

    #[test]
    fn the_names_typed_head_the_table() {
        let a = sample();
        let addr = "198.18.0.9".parse().unwrap();
        let h = answered_host(&a, addr);
        let mut out = Vec::new();
        host(&mut out, &h, &["srv.lab.test".into()], false, None).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.starts_with("scan report for srv.lab.test (198.18.0.9)\n"),
            "{t}"
        );
    }

    #[test]
    fn complete_adds_the_connection_legs_under_its_port() {
        let mut a = sample();
        for (addr, p) in a.iter_mut() {
            if addr.to_string() == "198.18.0.9" && p.port == 22 {
                p.rare = Some(Box::new(Rare::Complete(Box::new(Completion {
                    legs_ns: {
                        let mut l = tcpshake_proto::probe::record::Legs::default();
                        l.set(Leg::SynToSynack, Some(48_000));
                        l.set(Leg::SynackToAck, Some(12_000));
                        l.set(Leg::FinToAck, Some(30_000));
                        l.set(Leg::FinToPeerFin, Some(40_000));
                        l.set(Leg::PeerFinToLastAck, Some(10_000));
                        l
                    },
                    close_initiator: Some(CloseInitiator::Client),
                    complete_error: None,
                }))));
            }
        }
        let t = render(&a, &[], false);
        let p22 = t.find("22/tcp").unwrap();
        let conn = t
            .find("connect: SYN→SYN-ACK 48.0 µs, SYN-ACK→ACK 12.0 µs")
            .unwrap();
        let p80 = t.find("80/tcp").unwrap();
        assert!(p22 < conn && conn < p80, "under port 22:\n{t}");
        assert!(
            t.contains("close by client: FIN→ACK 30.0 µs, FIN→FIN 40.0 µs, peer FIN→ACK 10.0 µs"),
            "{t}"
        );
        assert_eq!(t.matches("connect:").count(), 1, "{t}");
    }

    #[test]
    fn all_shows_every_port_sent_to_silent_ones_too() {
        let t = render(&sample(), &[81], true);
        assert!(t.find("198.18.0.3").unwrap() < t.find("198.18.0.9").unwrap());
        assert!(t.contains("port-unreach") && t.contains("reset"), "{t}");
        let silent = t
            .lines()
            .find(|l| l.starts_with("81/tcp"))
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(
            silent.split_whitespace().collect::<Vec<_>>(),
            ["81/tcp", "filtered", "no-response", "-", "-"]
        );
    }

    /// One port, one packet: singular (a user saw `scanned 1 ports`, `1 packets sent`).
    #[test]
    fn summary_of_one_is_singular() {
        let x = Summary {
            totals: ScanTotals {
                scanned: 1,
                sent: 1,
                unmatched: 1,
                ..ScanTotals::default()
            },
            duration: Duration::from_secs(1),
            send_time: Duration::from_secs(1),
            ..Summary::default()
        };
        let s = summary(&x);
        assert!(s.starts_with("scanned 1 port: "), "{s}");
        assert!(s.contains("(1 packet sent, "), "{s}");
        assert!(s.contains("1 unmatched reply ignored"), "{s}");
    }

    /// `--wait` shorter than the round trip measured (ARP / ND, answers): the silent ports
    /// may have answered after it, and the warning says which wait would do.
    #[test]
    fn summary_warns_when_the_wait_is_shorter_than_the_round_trip() {
        let t = ScanTotals {
            scanned: 100,
            closed: 10,
            sent: 200,
            ..ScanTotals::default()
        };
        let x = Summary {
            totals: t,
            duration: Duration::from_secs(1),
            send_time: Duration::from_millis(10),
            short_wait: Some((Duration::from_millis(10), Duration::from_millis(60))),
            ..Summary::default()
        };
        let s = summary(&x);
        assert!(
            s.contains(
                "warning: --wait 10ms is shorter than the round trip measured here (60.000 \
                 ms): answers after it were not waited for, so the 90 still silent may have \
                 answered; scan again without --wait (it then waits from the round trips \
                 measured) or with --wait 120ms or more"
            ),
            "{s}"
        );
        // Nothing silent: nothing to say.
        let all = ScanTotals { closed: 100, ..t };
        assert!(!summary(&Summary { totals: all, ..x }).contains("--wait"));
    }

    /// Ports silent to the first SYN that answered a retry, the last round allowed too: the
    /// path lost packets, so the ones still silent may be lost too (a fault walk: a full-port scan through a link
    /// that drops what comes faster than it forwards called 15 390 of 65 535 ports
    /// filtered; nmap on the same wire, slowing down, none).
    #[test]
    fn summary_warns_that_silence_may_be_loss_when_retries_were_answered() {
        let t = ScanTotals {
            scanned: 100,
            open: 10,
            closed: 80,
            filtered_icmp: 2,
            sent: 120,
            answered_on_retry: 7,
            retries_ran_out: true,
            retries: 3,
            ..ScanTotals::default()
        };
        let x = Summary {
            totals: t,
            duration: Duration::from_secs(1),
            send_time: Duration::from_secs(1),
            ..Summary::default()
        };
        let s = summary(&x);
        let warning = s.lines().nth(1).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(
            warning,
            "warning: 7 ports answered only to a retry (the first SYN or its answer was lost on \
             the way), and --retries ran out before that loss was ruled out, so the 8 still \
             silent may be lost too rather than filtered: scan again with a lower --rate or more \
             --retries"
        );
        // At the most --retries takes (the default), only the rate is left to change.
        let s = summary(&Summary {
            totals: ScanTotals { retries: 10, ..t },
            ..x
        });
        let warning = s.lines().nth(1).unwrap_or_else(|| panic!("{s}"));
        assert!(
            warning.ends_with("filtered: scan again with a lower --rate"),
            "{warning}"
        );
        // The schedule read the path's limit from the last rounds: the rate to give is
        // said, 9/10 of it rounded down.
        let s = summary(&Summary {
            totals: ScanTotals {
                path_limit: Some(57),
                ..t
            },
            ..x
        });
        let warning = s.lines().nth(1).unwrap_or_else(|| panic!("{s}"));
        assert!(
            warning.ends_with(
                "filtered: the last rounds' answers came back at a steady 57 a second, \
                 whatever was sent (a rate limit at the host or on the way?): scan again with \
                 --rate 51 or lower or more --retries"
            ),
            "{warning}"
        );
        assert_eq!(
            [4987, 173, 52, 100, 99_999, 1, 0].map(round_down),
            [4900, 170, 52, 100, 99_000, 1, 1]
        );
        // In a sweep, the one host the last rounds' answers came from is named.
        let s = summary(&Summary {
            totals: ScanTotals {
                path_limit: Some(200),
                path_limit_host: Some("198.18.0.7".parse().unwrap()),
                ..t
            },
            ..x
        });
        assert!(
            s.contains(
                "came back at a steady 200 a second, all from 198.18.0.7, whatever was sent \
                 (a rate limit at the host or on the way?): scan 198.18.0.7 again with --rate \
                 180 or lower"
            ),
            "{s}"
        );
        // Retry rounds slowed to the path's rate: a note before any warning.
        let slowed = tcpshake_proto::probe::scan::schedule::Slowdown {
            round: 2,
            answers: 5014,
            syns: 4513,
            undone: false,
            again: None,
            released: None,
            trial: None,
        };
        let s = summary(&Summary {
            totals: ScanTotals {
                slowed: Some(slowed),
                retries_ran_out: false,
                ..t
            },
            ..x
        });
        assert_eq!(
            s.lines().nth(1),
            Some(
                "note: retry rounds from round 2 sent 4513 SYNs a second: the rounds before \
                 passed a steady 5014 answers a second, whatever was sent (a rate limit at the \
                 host or on the way?), and SYNs beyond it lose their answers"
            ),
            "{s}"
        );
        // A trial first: said before the slowdown it kept.
        let s = summary(&Summary {
            totals: ScanTotals {
                slowed: Some(tcpshake_proto::probe::scan::schedule::Slowdown {
                    trial: Some(116),
                    syns: 116,
                    answers: 129,
                    ..slowed
                }),
                retries_ran_out: false,
                ..t
            },
            ..x
        });
        assert_eq!(
            s.lines().nth(1),
            Some(
                "note: rounds 0 and 1 got a steady few answers (a limit that passes a few at a \
                 time?): retry round 2 sent 116 of its SYNs at 116 a second as a trial"
            ),
            "{s}"
        );
        // Slowed again: both said.
        let s = summary(&Summary {
            totals: ScanTotals {
                slowed: Some(tcpshake_proto::probe::scan::schedule::Slowdown {
                    round: 3,
                    answers: 2094,
                    syns: 1885,
                    undone: false,
                    again: Some(tcpshake_proto::probe::scan::schedule::SlowedAgain {
                        round: 5,
                        answers: 201,
                        syns: 181,
                    }),
                    released: Some(7),
                    trial: None,
                }),
                retries_ran_out: false,
                ..t
            },
            ..x
        });
        assert!(
            s.contains(
                "SYNs beyond it lose their answers; rounds 3 and 4 still passed a steady 201 a \
                 second, at most half their SYNs, so the rounds from round 5 sent 181 SYNs a \
                 second; round 6 passed under a quarter of that (few ports left to answer), so \
                 the rounds from round 7 went at the scan's rate"
            ),
            "{s}"
        );
        // Rounds that waited for a host's next second got answers: said, as a note.
        let s = summary(&Summary {
            totals: ScanTotals {
                allowance_rounds: 3,
                allowance_answers: 600,
                retries_ran_out: false,
                ..t
            },
            ..x
        });
        assert_eq!(
            s.lines().nth(1),
            Some(
                "note: 3 retry rounds went a second after the last round that got answers, as \
                 the round between got none, and got 600 answers: answers came a second's \
                 allowance at a time (FreeBSD and macOS limit their RSTs so, to 200 and 250 a \
                 second)"
            ),
            "{s}"
        );
        // One that got nothing (silence, confirmed a second on): nothing to say.
        let s = summary(&Summary {
            totals: ScanTotals {
                allowance_rounds: 1,
                retries_ran_out: false,
                ..t
            },
            ..x
        });
        assert_eq!(s.lines().count(), 1, "{s}");
        // Nothing still silent (ICMP answers are not silence), or the retries ended by a
        // round that broke no silence (what is silent then is filtered): nothing to say.
        for t in [
            ScanTotals {
                filtered_icmp: 10,
                ..t
            },
            ScanTotals {
                retries_ran_out: false,
                ..t
            },
        ] {
            let s = summary(&Summary { totals: t, ..x });
            assert_eq!(s.lines().count(), 1, "{s}");
        }
    }

    #[test]
    fn summary_counts_silence_as_filtered() {
        let t = ScanTotals {
            scanned: 10,
            open: 2,
            closed: 5,
            filtered_icmp: 1,
            sent: 12,
            ..ScanTotals::default()
        };
        let mut x = Summary {
            totals: t,
            duration: Duration::from_secs(2),
            send_time: Duration::from_secs(1),
            ..Summary::default()
        };
        assert_eq!(
            summary(&x),
            "scanned 10 ports: 2 open, 5 closed, 3 filtered in 2.00 s (12 packets sent, 12 pps achieved, 0 dropped by the capture)"
        );
        x.tap_drops = 3;
        x.resolution = Some(ResolveTotals {
            asked: 255,
            resolved: 3,
            sent: 507,
            rounds: 2,
            ..ResolveTotals::default()
        });
        let s = summary(&x);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(lines[0].ends_with("(12 packets sent, 12 pps achieved, 3 dropped by the capture)"));
        assert_eq!(
            lines[1],
            "neighbours: 3 of 255 on-link addresses answered ARP / ND (507 requests, 2 rounds); 252 down, not scanned"
        );
        assert!(
            lines[2].starts_with("warning: the capture dropped 3 packets"),
            "{s}"
        );
        // A gateway asked about is no host down; a silent one is said.
        let mut g = x;
        g.tap_drops = 0;
        g.resolution = Some(ResolveTotals {
            asked: 3,
            resolved: 1,
            sent: 5,
            rounds: 2,
            gateways_asked: 1,
            gateways_resolved: 0,
            silent_gateway: Some("198.18.77.99".parse().unwrap()),
        });
        let s = summary(&g);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[1],
            "neighbours: 1 of 2 on-link addresses answered ARP / ND (5 requests, 2 rounds); 1 down, not scanned"
        );
        assert!(
            lines[2].starts_with("warning: gateway 198.18.77.99 did not answer ARP / ND"),
            "{s}"
        );
        // One packet (an interrupted scan): too short a send to time, so over the run.
        x.totals.sent = 1;
        x.send_time = Duration::from_micros(6);
        x.duration = Duration::from_secs(5);
        assert!(
            summary(&x).contains("(1 packet sent, 0 pps achieved,"),
            "{}",
            summary(&x)
        );
    }

    #[test]
    fn down_hosts_show_with_all_and_found_ones_show_their_mac() {
        let a = sample();
        let mac = MacAddr([0x9a, 0x86, 0x31, 0x63, 0x91, 0xac]);
        let addr = "198.18.0.9".parse().unwrap();
        let h = HostPorts {
            addr,
            answered: a.host(addr),
            silent: vec![],
            link: Some(HostLink::Resolved(mac, Resolution::Arp)),
            counted_up: false,
        };
        let mut out = Vec::new();
        host(&mut out, &h, &[], false, None).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(t.ends_with("MAC Address: 9A:86:31:63:91:AC\n\n"), "{t}");
        let down = HostPorts {
            addr: "fd00::4".parse().unwrap(),
            answered: &[],
            silent: vec![],
            link: Some(HostLink::Unresolved(Resolution::Nd)),
            counted_up: false,
        };
        let mut out = Vec::new();
        host(&mut out, &down, &[], false, None).unwrap();
        assert!(out.is_empty());
        host(&mut out, &down, &[], true, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "scan report for fd00::4 [host down, no-nd]\n\n"
        );
    }
}

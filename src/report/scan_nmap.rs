//! nmap's file formats for a scan, so nmap's tools read ours: `-oN` (the table, between
//! nmap's comment lines), `-oG` (greppable) and `-oX`
//! (XML valid against nmap's `nmap.dtd`, xmloutputversion 1.05, so `xmllint --dtdvalid`,
//! `ndiff`, `xsltproc` and the parsers written for nmap take it).
//!
//! Both are written host by host as the scan's hosts are walked after it (see
//! `probe::scan::results`), so a scan of many hosts never holds its report in memory.
//! Every port sent to is there: the answered ones as answered, the silent ones as
//! filtered/no-response. As nmap does (`PortList::isIgnoredState`, non-verbose), a host's
//! non-open states with more than 25 ports are folded into `<extraports>` (-oG: `Ignored
//! State`, only when exactly one state is folded), the most common first, ties in nmap's
//! state order (closed before filtered); each with `<extrareasons>` per reason, the most
//! common first, naming its ports. Hosts that answered nothing are not listed (nmap lists
//! a host only once it found it up) but are counted as down. With nmap's `--open`
//! ([`RunInfo::open_only`]), as nmap's `isIgnoredState` and `--open` do: a host with no open
//! port is not listed (still counted up), and every non-open state is folded, whatever
//! its count.
//!
//! Deliberate differences from nmap's own files: `scanner="nmap"` because the DTD allows
//! no other value, with tcpshake's version in `version` and the command line (which starts
//! with `tcpshake`) in `args` and the leading comment; no `<hosthint>` or MAC address (no
//! host discovery was made); host names are the ones typed (`type="user"`), never PTR.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;
use tcpshake_proto::probe::record::{PortState, Reason};
use tcpshake_proto::probe::scan::neighbours::HostLink;
use tcpshake_proto::probe::scan::ports::{self, service_name};
use tcpshake_proto::probe::scan::results::{HostPorts, PortAnswer};

/// nmap folds a state into `<extraports>` when more ports than this have it.
const EXTRAPORTS_THRESHOLD: usize = 25;

/// What the headers say about the run.
#[derive(Clone, Debug)]
pub struct RunInfo<'a> {
    /// The command line, as typed.
    pub args: &'a str,
    pub start_secs: u64,
    /// The ports scanned, ascending.
    pub ports: &'a [u16],
    /// `href` of the `xml-stylesheet` processing instruction.
    pub stylesheet: &'a str,
    /// nmap's `--open`: hosts with an open port only, their other ports folded.
    pub open_only: bool,
    /// Targets as written that were skipped (no route): -oX lists each as nmap does a host
    /// it "failed to determine route to", `<target status="skipped" reason="invalid">`.
    pub skipped: &'a [String],
}

/// What the footers say.
#[derive(Clone, Debug)]
pub struct RunEnd<'a> {
    pub end_secs: u64,
    pub elapsed: Duration,
    /// Scanned hosts that answered something.
    pub up: u64,
    /// Scanned hosts that answered nothing.
    pub down: u64,
    /// Why the scan did not finish (`exit="error"` and `errormsg` in -oX).
    pub error: Option<&'a str>,
}

/// One port of a host: its verdict and, when it answered, the answer.
#[derive(Clone, Copy, Debug)]
struct Row<'a> {
    port: u16,
    state: PortState,
    reason: Reason,
    answer: Option<&'a PortAnswer>,
}

fn rows<'a>(h: &'a HostPorts<'a>) -> impl Iterator<Item = Row<'a>> + 'a {
    let mut answered = h.answered.iter().peekable();
    h.verdicts().map(move |(port, state, reason)| {
        while answered.next_if(|a| a.port < port).is_some() {}
        let answer = answered.next_if(|a| a.port == port);
        Row {
            port,
            state,
            reason,
            answer,
        }
    })
}

/// A folded state: how many ports, and per reason (most common first) which ports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Folded {
    state: PortState,
    count: usize,
    reasons: Vec<(Reason, Vec<u16>)>,
}

/// nmap's state numbers (portlist.h), which break ties between folded states.
pub(super) fn nmap_state_number(s: PortState) -> u8 {
    match s {
        PortState::Closed => 1,
        PortState::Open => 2,
        PortState::Filtered => 3,
        // A single probe's state; a scan's pairs are never in it.
        PortState::Interrupted => 0,
    }
}

/// Whether a host has an open port: with `--open`, the only hosts shown.
pub fn has_open_port(h: &HostPorts<'_>) -> bool {
    h.answered.iter().any(|a| a.state == PortState::Open)
}

/// The states of a host that nmap would fold, in the order it prints them: those with
/// more than 25 ports, or with `open_only` (nmap's `--open`) every state but open.
fn fold(h: &HostPorts<'_>, open_only: bool) -> Vec<Folded> {
    let mut by_state: Vec<Folded> = Vec::new();
    for r in rows(h).filter(|r| r.state != PortState::Open) {
        let f = match by_state.iter_mut().position(|f| f.state == r.state) {
            Some(i) => &mut by_state[i],
            None => {
                by_state.push(Folded {
                    state: r.state,
                    count: 0,
                    reasons: Vec::new(),
                });
                by_state.last_mut().expect("just pushed")
            }
        };
        f.count += 1;
        match f.reasons.iter_mut().find(|(reason, _)| *reason == r.reason) {
            Some((_, ports)) => ports.push(r.port),
            None => f.reasons.push((r.reason, vec![r.port])),
        }
    }
    by_state.retain(|f| open_only || f.count > EXTRAPORTS_THRESHOLD);
    by_state.sort_by_key(|f| (std::cmp::Reverse(f.count), nmap_state_number(f.state)));
    for f in &mut by_state {
        f.reasons
            .sort_by_key(|(reason, ports)| (std::cmp::Reverse(ports.len()), reason.as_str()));
    }
    by_state
}

/// `1 IP address (1 host up)`, `3 IP addresses (2 hosts up)`: nmap's wording.
fn addresses_phrase(total: u64, up: u64) -> String {
    format!(
        "{total} IP address{} ({up} host{} up)",
        if total == 1 { "" } else { "es" },
        if up == 1 { "" } else { "s" }
    )
}

/// The first line of nmap's -oN and -oG files.
fn initiated(w: &mut impl Write, info: &RunInfo<'_>) -> io::Result<()> {
    writeln!(
        w,
        "# tcpshake {} scan initiated {} as: {}",
        env!("CARGO_PKG_VERSION"),
        ctime(info.start_secs),
        info.args
    )
}

/// The last line of nmap's -oN and -oG files.
fn done(w: &mut impl Write, end: &RunEnd<'_>) -> io::Result<()> {
    writeln!(
        w,
        "# tcpshake done at {} -- {} scanned in {:.2} seconds",
        ctime(end.end_secs),
        addresses_phrase(end.up + end.down, end.up),
        end.elapsed.as_secs_f64()
    )
}

/// nmap's `-oN` format: what the terminal shows (the tables and the summary, written by
/// the caller into [`Normal::out`]) between nmap's first and last comment lines.
pub struct Normal<W: Write> {
    w: W,
}

impl<W: Write> Normal<W> {
    pub fn start(mut w: W, info: &RunInfo<'_>) -> io::Result<Normal<W>> {
        initiated(&mut w, info)?;
        Ok(Normal { w })
    }

    pub fn out(&mut self) -> &mut W {
        &mut self.w
    }

    pub fn finish(mut self, end: &RunEnd<'_>) -> io::Result<W> {
        done(&mut self.w, end)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// nmap's `-oG` format, written host by host.
pub struct Greppable<W: Write> {
    w: W,
    open_only: bool,
}

impl<W: Write> Greppable<W> {
    pub fn start(mut w: W, info: &RunInfo<'_>) -> io::Result<Greppable<W>> {
        initiated(&mut w, info)?;
        Ok(Greppable {
            w,
            open_only: info.open_only,
        })
    }

    /// One host that answered (others are not listed, as nmap lists only hosts up); with
    /// `--all`, an on-link host that never answered ARP / ND as nmap -v writes it,
    /// `Status: Down`.
    pub fn host(&mut self, h: &HostPorts<'_>) -> io::Result<()> {
        if h.is_down() {
            return writeln!(self.w, "Host: {} ()\tStatus: Down", h.addr);
        }
        if !h.is_up() || (self.open_only && !has_open_port(h)) {
            return Ok(());
        }
        let addr = h.addr;
        // The parentheses hold a reverse-DNS name in nmap's file; we look none up.
        writeln!(self.w, "Host: {addr} ()\tStatus: Up")?;
        let folded = fold(h, self.open_only);
        let fields: Vec<String> = rows(h)
            .filter(|r| !folded.iter().any(|f| f.state == r.state))
            .map(|r| {
                format!(
                    "{}/{}/tcp//{}///",
                    r.port,
                    r.state,
                    service_name(r.port).unwrap_or("")
                )
            })
            .collect();
        write!(self.w, "Host: {addr} ()\tPorts: {}", fields.join(", "))?;
        // nmap names the folded state only when there is exactly one.
        if let [f] = folded.as_slice() {
            write!(self.w, "\tIgnored State: {} ({})", f.state, f.count)?;
        }
        writeln!(self.w)
    }

    pub fn finish(mut self, end: &RunEnd<'_>) -> io::Result<W> {
        done(&mut self.w, end)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// nmap's `-oX` format, written host by host.
pub struct Xml<W: Write> {
    w: W,
    open_only: bool,
}

impl<W: Write> Xml<W> {
    pub fn start(mut w: W, info: &RunInfo<'_>) -> io::Result<Xml<W>> {
        let version = env!("CARGO_PKG_VERSION");
        let start = ctime(info.start_secs);
        writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
        writeln!(w, "<!DOCTYPE nmaprun>")?;
        writeln!(
            w,
            "<?xml-stylesheet href=\"{}\" type=\"text/xsl\"?>",
            escape(info.stylesheet)
        )?;
        writeln!(
            w,
            "<!-- tcpshake {version} scan initiated {start} as: {} -->",
            comment_safe(info.args)
        )?;
        writeln!(
            w,
            "<nmaprun scanner=\"nmap\" args=\"{}\" start=\"{}\" startstr=\"{start}\" version=\"{version}\" xmloutputversion=\"1.05\">",
            escape(info.args),
            info.start_secs,
        )?;
        writeln!(
            w,
            "<scaninfo type=\"syn\" protocol=\"tcp\" numservices=\"{}\" services=\"{}\"/>",
            info.ports.len(),
            ports::compact(info.ports)
        )?;
        writeln!(w, "<verbose level=\"0\"/>\n<debugging level=\"0\"/>")?;
        for t in info.skipped {
            writeln!(
                w,
                "<target specification=\"{}\" status=\"skipped\" reason=\"invalid\"/>",
                escape(t)
            )?;
        }
        Ok(Xml {
            w,
            open_only: info.open_only,
        })
    }

    /// One host that answered, with the names typed for it (others are not listed). An
    /// on-link host that never answered ARP / ND comes only with `--all`, as nmap -v
    /// writes one: down, reason `no-response` (nmap's word for a silent ARP / ND ping).
    pub fn host(&mut self, h: &HostPorts<'_>, names: &[String]) -> io::Result<()> {
        let addrtype = if matches!(h.addr, IpAddr::V6(_)) {
            "ipv6"
        } else {
            "ipv4"
        };
        if h.is_down() {
            return writeln!(
                self.w,
                "<host><status state=\"down\" reason=\"no-response\" reason_ttl=\"0\"/>\n<address addr=\"{}\" addrtype=\"{addrtype}\"/>\n</host>",
                h.addr
            );
        }
        if !h.is_up() || (self.open_only && !has_open_port(h)) {
            return Ok(());
        }
        let mut out = String::new();
        let first = h.answered.iter().min_by_key(|a| a.t_ns);
        let last = h.answered.iter().max_by_key(|a| a.t_ns);
        let secs = |a: Option<&PortAnswer>| a.map_or(0, |a| a.t_ns / 1_000_000_000);
        let _ = write!(
            out,
            "<host starttime=\"{}\" endtime=\"{}\">",
            secs(first),
            secs(last)
        );
        // The host is up because it answered ARP / ND (nmap's `arp-response`,
        // `nd-response`, TTL 0), or because of its first reply of its own (nmap's
        // `--reason` for a host found by a port's reply: `syn-ack`, `reset`, ...; a
        // router's ICMP error before it said nothing of the host).
        let first_own = h
            .answered
            .iter()
            .filter(|a| a.from_target())
            .min_by_key(|a| a.t_ns);
        let (reason, ttl) = match (h.link, first_own) {
            (Some(HostLink::Resolved(_, how)), _) => (how.up_reason().as_str(), 0),
            (_, Some(a)) => (a.reason.as_str(), a.reply_ttl),
            (_, None) => ("user-set", 0),
        };
        let _ = writeln!(
            out,
            "<status state=\"up\" reason=\"{reason}\" reason_ttl=\"{ttl}\"/>"
        );
        let _ = writeln!(
            out,
            "<address addr=\"{}\" addrtype=\"{addrtype}\"/>",
            h.addr
        );
        if let Some(HostLink::Resolved(mac, _)) = h.link {
            let _ = writeln!(out, "<address addr=\"{mac}\" addrtype=\"mac\"/>");
        }
        out += "<hostnames>\n";
        for n in names {
            let _ = writeln!(out, "<hostname name=\"{}\" type=\"user\"/>", escape(n));
        }
        out += "</hostnames>\n<ports>";
        let folded = fold(h, self.open_only);
        for f in &folded {
            let _ = writeln!(
                out,
                "<extraports state=\"{}\" count=\"{}\">",
                f.state, f.count
            );
            for (reason, ports) in &f.reasons {
                let _ = writeln!(
                    out,
                    "<extrareasons reason=\"{reason}\" count=\"{}\" proto=\"tcp\" ports=\"{}\"/>",
                    ports.len(),
                    ports::compact(ports)
                );
            }
            out += "</extraports>\n";
        }
        for r in rows(h).filter(|r| !folded.iter().any(|f| f.state == r.state)) {
            // nmap's reason_ip: only when the answer came from another address.
            let reason_ip = r
                .answer
                .and_then(|a| a.reply_from())
                .map_or_else(String::new, |ip| format!(" reason_ip=\"{ip}\""));
            let _ = write!(
                out,
                "<port protocol=\"tcp\" portid=\"{}\"><state state=\"{}\" reason=\"{}\" reason_ttl=\"{}\"{reason_ip}/>",
                r.port,
                r.state,
                r.reason,
                r.answer.map_or(0, |a| a.reply_ttl)
            );
            if let Some(name) = service_name(r.port) {
                let _ = write!(
                    out,
                    "<service name=\"{}\" method=\"table\" conf=\"3\"/>",
                    escape(name)
                );
            }
            out += "</port>\n";
        }
        out += "</ports>\n";
        // nmap's smoothed RTT and variance, in µs, from this host's measured SYN→reply
        // times (mean and mean deviation, as RFC 6298 §2 estimates them).
        let rtts: Vec<u64> = h.answered.iter().filter_map(|a| a.rtt_ns).collect();
        if !rtts.is_empty() {
            let srtt = rtts.iter().sum::<u64>() / rtts.len() as u64 / 1000;
            let var =
                rtts.iter().map(|&r| (r / 1000).abs_diff(srtt)).sum::<u64>() / rtts.len() as u64;
            let to = (srtt + 4 * var).max(100_000);
            let _ = writeln!(out, "<times srtt=\"{srtt}\" rttvar=\"{var}\" to=\"{to}\"/>");
        }
        out += "</host>\n";
        self.w.write_all(out.as_bytes())
    }

    pub fn finish(mut self, end: &RunEnd<'_>) -> io::Result<W> {
        let t = ctime(end.end_secs);
        let elapsed = end.elapsed.as_secs_f64();
        let exit = match end.error {
            None => "exit=\"success\"".to_string(),
            Some(e) => format!("exit=\"error\" errormsg=\"{}\"", escape(e)),
        };
        writeln!(
            self.w,
            "<runstats><finished time=\"{}\" timestr=\"{t}\" summary=\"tcpshake done at {t}; {} scanned in {elapsed:.2} seconds\" elapsed=\"{elapsed:.2}\" {exit}/><hosts up=\"{}\" down=\"{}\" total=\"{}\"/>",
            end.end_secs,
            addresses_phrase(end.up + end.down, end.up),
            end.up,
            end.down,
            end.up + end.down
        )?;
        writeln!(self.w, "</runstats>\n</nmaprun>")?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// XML attribute escaping (XML 1.0 §2.4 and §3.3.3).
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o += "&amp;",
            '<' => o += "&lt;",
            '>' => o += "&gt;",
            '"' => o += "&quot;",
            '\'' => o += "&apos;",
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "&#{};", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// Text for an XML comment, which may not contain `--` (XML 1.0 §2.5): nmap writes the
/// second dash as `&#45;` (a comment holds no references, so it reads literally).
fn comment_safe(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut prev_dash = false;
    for c in s.chars() {
        if c == '-' && prev_dash {
            o += "&#45;";
            prev_dash = false;
            continue;
        }
        prev_dash = c == '-';
        if (c as u32) < 0x20 && c != '\t' {
            o.push(' ');
        } else {
            o.push(c);
        }
    }
    if o.ends_with('-') {
        o.push(' ');
    }
    o
}

/// `Thu Jan  1 00:00:00 1970`, C's `ctime` layout (UTC), as nmap prints times.
fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1).clamp(0, 11) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::scan::ScanRecord;
    use tcpshake_proto::probe::scan::results::Answers;

    const ADDR: &str = "198.18.0.9";

    fn answers(extra: impl IntoIterator<Item = (u16, PortState, &'static str)>) -> Answers {
        let mut a = Answers::default();
        let rec = |port, state, reason: &str| ScanRecord {
            addr: ADDR.parse().unwrap(),
            port,
            state,
            reason: Reason::from_word(reason).unwrap(),
            reply_ttl: 64,
            reply_from: None,
            rtt_ns: Some(50_000),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        };
        a.insert(&rec(22, PortState::Open, "syn-ack"));
        a.insert(&rec(25, PortState::Filtered, "admin-prohibited"));
        for (p, s, r) in extra {
            a.insert(&rec(p, s, r));
        }
        a.sort();
        a
    }

    fn host<'a>(a: &'a Answers, silent: impl IntoIterator<Item = u16>) -> HostPorts<'a> {
        let addr = ADDR.parse().unwrap();
        HostPorts {
            addr,
            answered: a.host(addr),
            silent: silent.into_iter().collect(),
            link: None,
            counted_up: false,
        }
    }

    fn info(ports: &[u16]) -> RunInfo<'_> {
        RunInfo {
            args: "tcpshake scan 198.18.0.9 -p \"22,25,1000-1029\" --rate 10 & more",
            start_secs: 1_700_000_000,
            ports,
            stylesheet: "https://svn.nmap.org/nmap/docs/nmap.xsl",
            open_only: false,
            skipped: &[],
        }
    }

    fn end(error: Option<&str>) -> RunEnd<'_> {
        RunEnd {
            end_secs: 1_700_000_002,
            elapsed: Duration::from_millis(2500),
            up: 1,
            down: 0,
            error,
        }
    }

    fn xml(h: &HostPorts<'_>, names: &[String], error: Option<&str>) -> String {
        let mut x = Xml::start(Vec::new(), &info(&[22, 25])).unwrap();
        x.host(h, names).unwrap();
        String::from_utf8(x.finish(&end(error)).unwrap()).unwrap()
    }

    fn greppable(h: &HostPorts<'_>) -> String {
        let mut g = Greppable::start(Vec::new(), &info(&[22, 25])).unwrap();
        g.host(h).unwrap();
        String::from_utf8(g.finish(&end(None)).unwrap()).unwrap()
    }

    /// Fault walk: an admin-prohibited from a router is nmap's `reason_ip`; the target's
    /// own answers carry none (nmap 7.93 on the same wire).
    #[test]
    fn an_icmp_error_from_another_address_is_its_reason_ip() {
        let mut a = answers([]);
        a.insert(&ScanRecord {
            addr: ADDR.parse().unwrap(),
            port: 84,
            state: PortState::Filtered,
            reason: Reason::AdminProhibited,
            reply_ttl: 64,
            reply_from: Some("198.18.99.99".parse().unwrap()),
            rtt_ns: None,
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        });
        a.sort();
        let x = xml(&host(&a, []), &[], None);
        assert!(x.contains("portid=\"84\"><state state=\"filtered\" reason=\"admin-prohibited\" reason_ttl=\"64\" reason_ip=\"198.18.99.99\"/>"), "{x}");
        assert!(x.contains("portid=\"25\"><state state=\"filtered\" reason=\"admin-prohibited\" reason_ttl=\"64\"/>"), "{x}");
    }

    #[test]
    fn ctime_matches_c() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn few_ports_are_listed_one_by_one_silent_ones_too() {
        let a = answers([(23, PortState::Closed, "reset")]);
        let h = host(&a, [81]);
        let x = xml(&h, &[], None);
        for needle in [
            "<port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"64\"/><service name=\"ssh\" method=\"table\" conf=\"3\"/></port>",
            "<port protocol=\"tcp\" portid=\"23\"><state state=\"closed\" reason=\"reset\" reason_ttl=\"64\"/>",
            "<port protocol=\"tcp\" portid=\"25\"><state state=\"filtered\" reason=\"admin-prohibited\" reason_ttl=\"64\"/>",
            "<port protocol=\"tcp\" portid=\"81\"><state state=\"filtered\" reason=\"no-response\" reason_ttl=\"0\"/><service name=\"hosts2-ns\" method=\"table\" conf=\"3\"/></port>",
        ] {
            assert!(x.contains(needle), "missing {needle}:\n{x}");
        }
        assert!(!x.contains("extraports"), "{x}");
        let order: Vec<usize> = ["\"22\"", "\"23\"", "\"25\"", "\"81\""]
            .iter()
            .map(|p| x.find(&format!("portid={p}")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "ascending:\n{x}");
        let g = greppable(&h);
        assert!(
            g.contains("Ports: 22/open/tcp//ssh///, 23/closed/tcp//telnet///, 25/filtered/tcp//smtp///, 81/filtered/tcp//hosts2-ns///\n"),
            "{g}"
        );
    }

    #[test]
    fn states_above_25_ports_fold_most_common_first_with_their_reasons() {
        // 30 closed, 31 filtered (1 admin-prohibited + 30 silent): filtered first.
        let a = answers((1000..1030).map(|p| (p, PortState::Closed, "reset")));
        let h = host(&a, 2000..2030);
        let x = xml(&h, &[], None);
        let filtered = x
            .find("<extraports state=\"filtered\" count=\"31\">\n<extrareasons reason=\"no-response\" count=\"30\" proto=\"tcp\" ports=\"2000-2029\"/>\n<extrareasons reason=\"admin-prohibited\" count=\"1\" proto=\"tcp\" ports=\"25\"/>\n</extraports>")
            .unwrap_or_else(|| panic!("{x}"));
        let closed = x
            .find("<extraports state=\"closed\" count=\"30\">\n<extrareasons reason=\"reset\" count=\"30\" proto=\"tcp\" ports=\"1000-1029\"/>\n</extraports>")
            .unwrap_or_else(|| panic!("{x}"));
        assert!(filtered < closed, "{x}");
        assert!(x.contains("portid=\"22\""), "open is never folded:\n{x}");
        assert!(
            !x.contains("portid=\"1000\"") && !x.contains("portid=\"25\""),
            "{x}"
        );
        // Two folded states: -oG names none of them (nmap's rule).
        let g = greppable(&h);
        assert!(g.contains("Ports: 22/open/tcp//ssh///\n"), "{g}");
        assert!(!g.contains("Ignored"), "{g}");
    }

    #[test]
    fn a_tie_folds_closed_before_filtered_and_greppable_names_a_single_fold() {
        let a = answers((1000..1030).map(|p| (p, PortState::Closed, "reset")));
        let h = host(&a, 2000..2029); // 30 filtered with port 25
        let x = xml(&h, &[], None);
        let closed = x
            .find("<extraports state=\"closed\" count=\"30\">")
            .unwrap();
        let filtered = x
            .find("<extraports state=\"filtered\" count=\"30\">")
            .unwrap();
        assert!(closed < filtered, "{x}");

        let a = answers((1000..1030).map(|p| (p, PortState::Closed, "reset")));
        let h = host(&a, []);
        let g = greppable(&h);
        assert!(
            g.contains(
                "Ports: 22/open/tcp//ssh///, 25/filtered/tcp//smtp///\tIgnored State: closed (30)\n"
            ),
            "{g}"
        );
    }

    /// Walk 14: `--open` beside -oG / -oX was refused, though `nmap --open -oG -` is a
    /// habit. As nmap's (`isIgnoredState` with --open): every state but open folds,
    /// however few its ports, and a host with no open port is not listed.
    #[test]
    fn open_only_folds_every_other_state_and_skips_hosts_without_an_open_port() {
        let open_only = |h: &HostPorts<'_>| {
            let info = RunInfo {
                open_only: true,
                skipped: &[],
                ..info(&[22, 23, 25, 81])
            };
            let mut x = Xml::start(Vec::new(), &info).unwrap();
            x.host(h, &[]).unwrap();
            let x = String::from_utf8(x.finish(&end(None)).unwrap()).unwrap();
            let mut g = Greppable::start(Vec::new(), &info).unwrap();
            g.host(h).unwrap();
            let g = String::from_utf8(g.finish(&end(None)).unwrap()).unwrap();
            (x, g)
        };
        // 22 open, 23 closed, 25 admin-prohibited, 81 silent.
        let a = answers([(23, PortState::Closed, "reset")]);
        let h = host(&a, [81]);
        let (x, g) = open_only(&h);
        assert!(x.contains("<ports><extraports state=\"filtered\" count=\"2\">\n<extrareasons reason=\"admin-prohibited\" count=\"1\" proto=\"tcp\" ports=\"25\"/>\n<extrareasons reason=\"no-response\" count=\"1\" proto=\"tcp\" ports=\"81\"/>\n</extraports>\n<extraports state=\"closed\" count=\"1\">\n<extrareasons reason=\"reset\" count=\"1\" proto=\"tcp\" ports=\"23\"/>\n</extraports>\n<port protocol=\"tcp\" portid=\"22\">"), "{x}");
        assert_eq!(x.matches("<port ").count(), 1, "{x}");
        // Two states folded: -oG names neither (nmap's rule), and lists the open port.
        assert!(
            g.contains("Host: 198.18.0.9 ()\tPorts: 22/open/tcp//ssh///\n"),
            "{g}"
        );
        // One state folded: named.
        let a = answers([]);
        let (_, g) = open_only(&host(&a, []));
        assert!(
            g.contains("Ports: 22/open/tcp//ssh///\tIgnored State: filtered (1)\n"),
            "{g}"
        );
        // Without --open the same host lists every port.
        let g = greppable(&host(&a, []));
        assert!(
            g.contains("Ports: 22/open/tcp//ssh///, 25/filtered/tcp//smtp///\n"),
            "{g}"
        );
        // Up, but no open port: not listed (the counts still say it was up).
        let mut a = Answers::default();
        a.insert(&ScanRecord {
            addr: ADDR.parse().unwrap(),
            port: 23,
            state: PortState::Closed,
            reason: Reason::Reset,
            reply_ttl: 64,
            reply_from: None,
            rtt_ns: Some(50_000),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        });
        a.sort();
        let h = host(&a, [81]);
        assert!(h.is_up() && !has_open_port(&h));
        let (x, g) = open_only(&h);
        assert!(
            !x.contains("<host ") && x.contains("<hosts up=\"1\""),
            "{x}"
        );
        assert!(!g.contains("Host:") && g.contains("(1 host up)"), "{g}");
        assert!(xml(&h, &[], None).contains("<host "));
    }

    #[test]
    fn xml_names_the_host_as_typed_escapes_and_says_how_it_ended() {
        let a = answers([]);
        let h = host(&a, []);
        let x = xml(&h, &["srv.lab.test".to_string()], None);
        for needle in [
            "<?xml-stylesheet href=\"https://svn.nmap.org/nmap/docs/nmap.xsl\" type=\"text/xsl\"?>\n",
            "<nmaprun scanner=\"nmap\" args=\"tcpshake scan 198.18.0.9 -p &quot;22,25,1000-1029&quot; --rate 10 &amp; more\"",
            "<!-- tcpshake ",
            "as: tcpshake scan 198.18.0.9 -p \"22,25,1000-1029\" -&#45;rate 10 & more -->",
            "<scaninfo type=\"syn\" protocol=\"tcp\" numservices=\"2\" services=\"22,25\"/>",
            "<address addr=\"198.18.0.9\" addrtype=\"ipv4\"/>\n<hostnames>\n<hostname name=\"srv.lab.test\" type=\"user\"/>\n</hostnames>",
            "<times srtt=\"50\" rttvar=\"0\" to=\"100000\"/>",
            "exit=\"success\"/><hosts up=\"1\" down=\"0\" total=\"1\"/>",
            "summary=\"tcpshake done at Tue Nov 14 22:13:22 2023; 1 IP address (1 host up) scanned in 2.50 seconds\"",
        ] {
            assert!(x.contains(needle), "missing {needle}:\n{x}");
        }
        let comment = x.lines().find(|l| l.starts_with("<!--")).unwrap();
        assert!(!comment[4..comment.len() - 3].contains("--"), "{comment}");
        let x = xml(&h, &[], Some("interrupted <by> a signal"));
        assert!(
            x.contains("exit=\"error\" errormsg=\"interrupted &lt;by&gt; a signal\"/>"),
            "{x}"
        );
    }

    #[test]
    fn hosts_that_answered_nothing_are_not_listed() {
        let h = HostPorts {
            addr: ADDR.parse().unwrap(),
            answered: &[],
            silent: vec![22, 25],
            link: None,
            counted_up: false,
        };
        assert!(!xml(&h, &[], None).contains("<host "));
        assert!(!greppable(&h).contains("Host:"));
    }

    /// Walk 14: a host whose every answer was a router's ICMP error (no such host behind
    /// it) was listed `Status: Up` / `<status state="up" reason="host-unreach">`; nmap
    /// -sS calls it down. A host that did answer is up by its own first answer, not by a
    /// router's error that came before it.
    #[test]
    fn a_host_only_a_router_answered_for_is_not_listed() {
        let router = "198.18.1.254".parse().unwrap();
        let rec = |port, state, reason, from, t_ns| ScanRecord {
            addr: ADDR.parse().unwrap(),
            port,
            state,
            reason,
            reply_ttl: 63,
            reply_from: from,
            rtt_ns: Some(50_000),
            t_ns,
            complete: None,
        };
        let t = 1_700_000_000_000_000_000;
        let mut a = Answers::default();
        a.insert(&rec(
            22,
            PortState::Filtered,
            Reason::HostUnreach,
            Some(router),
            t,
        ));
        a.insert(&rec(
            25,
            PortState::Filtered,
            Reason::HostUnreach,
            Some(router),
            t,
        ));
        a.sort();
        let h = host(&a, []);
        assert!(!h.is_up());
        let x = xml(&h, &[], None);
        assert!(!x.contains("<host ") && !x.contains("<host>"), "{x}");
        assert!(!greppable(&h).contains("Host:"));
        // The host's own RST, after the router's error about another port.
        let mut a = Answers::default();
        a.insert(&rec(
            22,
            PortState::Filtered,
            Reason::AdminProhibited,
            Some(router),
            t,
        ));
        a.insert(&rec(25, PortState::Closed, Reason::Reset, None, t + 1));
        a.sort();
        let h = host(&a, []);
        let x = xml(&h, &[], None);
        assert!(
            x.contains("<status state=\"up\" reason=\"reset\" reason_ttl=\"63\"/>"),
            "{x}"
        );
        assert!(greppable(&h).contains("Host: 198.18.0.9 ()\tStatus: Up\n"));
    }

    #[test]
    fn hosts_found_by_arp_are_up_with_their_mac_and_silent_ones_down_as_nmap_writes_them() {
        use tcpshake_proto::probe::scan::neighbours::Resolution;
        use tcpshake_proto::wire::ethernet::MacAddr;
        let mac = MacAddr([0x9a, 0x86, 0x31, 0x63, 0x91, 0xac]);
        // Up by ARP though every port stayed silent: listed, as nmap lists it.
        let up = HostPorts {
            addr: ADDR.parse().unwrap(),
            answered: &[],
            silent: vec![22, 25],
            link: Some(HostLink::Resolved(mac, Resolution::Arp)),
            counted_up: false,
        };
        let x = xml(&up, &[], None);
        assert!(x.contains("<status state=\"up\" reason=\"arp-response\" reason_ttl=\"0\"/>\n<address addr=\"198.18.0.9\" addrtype=\"ipv4\"/>\n<address addr=\"9A:86:31:63:91:AC\" addrtype=\"mac\"/>"), "{x}");
        assert!(x.contains("<port protocol=\"tcp\" portid=\"22\"><state state=\"filtered\" reason=\"no-response\""), "{x}");
        assert!(greppable(&up).contains("Host: 198.18.0.9 ()\tStatus: Up"));
        let v6 = HostPorts {
            addr: "fd00::9".parse().unwrap(),
            link: Some(HostLink::Resolved(mac, Resolution::Nd)),
            ..up.clone()
        };
        assert!(xml(&v6, &[], None).contains("reason=\"nd-response\""));
        // Down (only walked with --all): nmap -v's element, nmap's reason word.
        let down = HostPorts {
            addr: "198.18.0.4".parse().unwrap(),
            answered: &[],
            silent: vec![],
            link: Some(HostLink::Unresolved(Resolution::Arp)),
            counted_up: false,
        };
        let x = xml(&down, &[], None);
        assert!(x.contains("<host><status state=\"down\" reason=\"no-response\" reason_ttl=\"0\"/>\n<address addr=\"198.18.0.4\" addrtype=\"ipv4\"/>\n</host>\n"), "{x}");
        assert!(greppable(&down).contains("Host: 198.18.0.4 ()\tStatus: Down\n"));
    }

    #[test]
    fn nmaps_wording_for_counts() {
        assert_eq!(addresses_phrase(1, 1), "1 IP address (1 host up)");
        assert_eq!(addresses_phrase(3, 2), "3 IP addresses (2 hosts up)");
        assert_eq!(addresses_phrase(1, 0), "1 IP address (0 hosts up)");
    }

    #[test]
    fn comments_never_hold_two_dashes() {
        assert_eq!(comment_safe("a --b ---c"), "a -&#45;b -&#45;-c");
        assert_eq!(comment_safe("x -"), "x - ");
    }
}

//! nmap's file formats for a scan, so nmap's ecosystem reads ours: `-oG` (greppable) and
//! `-oX` (XML, the element and attribute names of nmap's `nmap.dtd`, xmloutputversion 1.05).
//!
//! As nmap does, a host's most common non-open state is folded into one "extraports" entry
//! (`Ignored State:` in -oG) when more than 25 ports share it; silent ports
//! (filtered/no-response) are never listed one by one since no per-port state is kept for
//! them.

use super::scan_text::by_host;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;
use tcpshake_proto::probe::record::PortState;
use tcpshake_proto::probe::scan::ports::service_name;
use tcpshake_proto::probe::scan::{ScanRecord, ports};

/// nmap folds a state into "extraports" above this many ports.
const EXTRAPORTS_THRESHOLD: usize = 25;

/// What the headers and footers say about the run.
#[derive(Clone, Debug)]
pub struct RunInfo<'a> {
    /// The command line, as typed.
    pub args: &'a str,
    pub start_secs: u64,
    pub end_secs: u64,
    pub elapsed: Duration,
    pub ports: &'a [u16],
    /// Addresses in the target list (this shard's scan covered a share of them).
    pub addresses: u64,
}

/// Split a host's records into listed ports and the folded state (state, reason counts).
type Folded<'r> = (
    Vec<&'r ScanRecord>,
    Option<(PortState, usize, BTreeMap<&'static str, usize>)>,
);

fn fold<'r>(ports: &[&'r ScanRecord]) -> Folded<'r> {
    let mut count: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in ports.iter().filter(|r| r.state != PortState::Open) {
        *count.entry(r.state.as_str()).or_default() += 1;
    }
    let top = count
        .iter()
        .max_by_key(|&(_, n)| *n)
        .filter(|&(_, n)| *n > EXTRAPORTS_THRESHOLD)
        .map(|(s, _)| *s);
    let Some(top) = top else {
        return (ports.to_vec(), None);
    };
    let mut listed = Vec::new();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut state = PortState::Closed;
    let mut n = 0;
    for r in ports {
        if r.state.as_str() == top {
            state = r.state;
            n += 1;
            *reasons.entry(r.reason.as_str()).or_default() += 1;
        } else {
            listed.push(*r);
        }
    }
    (listed, Some((state, n, reasons)))
}

/// nmap's `-oG` format.
pub fn greppable(records: &[ScanRecord], info: &RunInfo<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tcpshake {} scan initiated {} as: {}",
        env!("CARGO_PKG_VERSION"),
        ctime(info.start_secs),
        info.args
    );
    let hosts = by_host(records);
    for (addr, ports) in &hosts {
        let _ = writeln!(out, "Host: {addr} ()\tStatus: Up");
        let (listed, folded) = fold(ports);
        let fields: Vec<String> = listed
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/tcp//{}///",
                    r.port,
                    r.state.as_str(),
                    service_name(r.port).unwrap_or("")
                )
            })
            .collect();
        let _ = write!(out, "Host: {addr} ()\tPorts: {}", fields.join(", "));
        if let Some((state, n, _)) = folded {
            let _ = write!(out, "\tIgnored State: {} ({n})", state.as_str());
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# tcpshake done at {} -- {} IP addresses ({} hosts up) scanned in {:.2} seconds",
        ctime(info.end_secs),
        info.addresses,
        hosts.len(),
        info.elapsed.as_secs_f64()
    );
    out
}

/// nmap's `-oX` format.
pub fn xml(records: &[ScanRecord], info: &RunInfo<'_>) -> String {
    let mut out = String::new();
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE nmaprun>\n";
    let _ = writeln!(
        out,
        "<nmaprun scanner=\"tcpshake\" args=\"{}\" start=\"{}\" startstr=\"{}\" version=\"{}\" xmloutputversion=\"1.05\">",
        escape(info.args),
        info.start_secs,
        ctime(info.start_secs),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "<scaninfo type=\"syn\" protocol=\"tcp\" numservices=\"{}\" services=\"{}\"/>",
        info.ports.len(),
        ports::compact(info.ports)
    );
    out += "<verbose level=\"0\"/>\n<debugging level=\"0\"/>\n";
    let hosts = by_host(records);
    for (addr, ports) in &hosts {
        let first = ports.iter().min_by_key(|r| r.t_ns);
        let last = ports.iter().max_by_key(|r| r.t_ns);
        let secs = |r: Option<&&ScanRecord>| r.map(|r| r.t_ns / 1_000_000_000).unwrap_or(0);
        let _ = write!(
            out,
            "<host starttime=\"{}\" endtime=\"{}\">",
            secs(first),
            secs(last)
        );
        let (reason, ttl) = first
            .map(|r| (r.reason.as_str(), r.reply_ttl))
            .unwrap_or(("user-set", 0));
        let _ = writeln!(
            out,
            "<status state=\"up\" reason=\"{reason}\" reason_ttl=\"{ttl}\"/>"
        );
        let addrtype = if matches!(addr, IpAddr::V6(_)) {
            "ipv6"
        } else {
            "ipv4"
        };
        let _ = writeln!(out, "<address addr=\"{addr}\" addrtype=\"{addrtype}\"/>");
        out += "<hostnames>\n</hostnames>\n<ports>";
        let (listed, folded) = fold(ports);
        if let Some((state, n, reasons)) = folded {
            let _ = writeln!(
                out,
                "<extraports state=\"{}\" count=\"{n}\">",
                state.as_str()
            );
            for (reason, count) in reasons {
                let _ = writeln!(out, "<extrareasons reason=\"{reason}\" count=\"{count}\"/>");
            }
            out += "</extraports>\n";
        }
        for r in listed {
            let _ = write!(
                out,
                "<port protocol=\"tcp\" portid=\"{}\"><state state=\"{}\" reason=\"{}\" reason_ttl=\"{}\"/>",
                r.port,
                r.state.as_str(),
                r.reason,
                r.reply_ttl
            );
            if let Some(name) = service_name(r.port) {
                let _ = write!(
                    out,
                    "<service name=\"{name}\" method=\"table\" conf=\"3\"/>"
                );
            }
            out += "</port>\n";
        }
        out += "</ports>\n";
        // nmap's smoothed RTT and variance, in µs, from this host's measured SYN→reply
        // times (mean and mean deviation, as RFC 6298 §2 estimates them).
        let rtts: Vec<u64> = ports.iter().filter_map(|r| r.rtt_ns).collect();
        if !rtts.is_empty() {
            let srtt = rtts.iter().sum::<u64>() / rtts.len() as u64 / 1000;
            let var =
                rtts.iter().map(|&r| (r / 1000).abs_diff(srtt)).sum::<u64>() / rtts.len() as u64;
            let to = (srtt + 4 * var).max(100_000);
            let _ = writeln!(out, "<times srtt=\"{srtt}\" rttvar=\"{var}\" to=\"{to}\"/>");
        }
        out += "</host>\n";
    }
    let up = hosts.len() as u64;
    let _ = writeln!(
        out,
        "<runstats><finished time=\"{}\" timestr=\"{}\" summary=\"tcpshake done at {}; {} IP addresses ({} hosts up) scanned in {:.2} seconds\" elapsed=\"{:.2}\" exit=\"success\"/><hosts up=\"{up}\" down=\"{}\" total=\"{}\"/>",
        info.end_secs,
        ctime(info.end_secs),
        ctime(info.end_secs),
        info.addresses,
        up,
        info.elapsed.as_secs_f64(),
        info.elapsed.as_secs_f64(),
        info.addresses.saturating_sub(up),
        info.addresses
    );
    out += "</runstats>\n</nmaprun>\n";
    out
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
    use tcpshake_proto::probe::record::Reason;

    fn records() -> Vec<ScanRecord> {
        let mut v = Vec::new();
        let rec = |port, state, reason: &str| ScanRecord {
            addr: "198.18.0.9".parse().unwrap(),
            port,
            state,
            reason: Reason::from_word(reason).unwrap(),
            reply_ttl: 64,
            rtt_ns: Some(50_000),
            t_ns: 1_700_000_000_000_000_000,
            complete: None,
        };
        v.push(rec(22, PortState::Open, "syn-ack"));
        v.push(rec(25, PortState::Filtered, "admin-prohibited"));
        for p in 1000..1030 {
            v.push(rec(p, PortState::Closed, "reset"));
        }
        v
    }

    fn info(ports: &[u16]) -> RunInfo<'_> {
        RunInfo {
            args: "tcpshake scan 198.18.0.9 -p \"22,25,1000-1029\" & more",
            start_secs: 1_700_000_000,
            end_secs: 1_700_000_002,
            elapsed: Duration::from_millis(2500),
            ports,
            addresses: 1,
        }
    }

    #[test]
    fn ctime_matches_c() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn greppable_folds_the_common_state() {
        let ports: Vec<u16> = [22, 25].into_iter().chain(1000..1030).collect();
        let g = greppable(&records(), &info(&ports));
        assert!(g.contains("Host: 198.18.0.9 ()\tStatus: Up\n"), "{g}");
        assert!(
            g.contains(
                "Ports: 22/open/tcp//ssh///, 25/filtered/tcp//smtp///\tIgnored State: closed (30)\n"
            ),
            "{g}"
        );
        assert!(g.contains("(1 hosts up) scanned in 2.50 seconds"), "{g}");
    }

    #[test]
    fn xml_has_nmaps_elements_and_escapes_args() {
        let ports: Vec<u16> = [22, 25].into_iter().chain(1000..1030).collect();
        let x = xml(&records(), &info(&ports));
        for needle in [
            "<nmaprun scanner=\"tcpshake\"",
            "&quot;22,25,1000-1029&quot; &amp; more",
            "<scaninfo type=\"syn\" protocol=\"tcp\" numservices=\"32\" services=\"22,25,1000-1029\"/>",
            "<address addr=\"198.18.0.9\" addrtype=\"ipv4\"/>",
            "<extraports state=\"closed\" count=\"30\">",
            "<extrareasons reason=\"reset\" count=\"30\"/>",
            "<port protocol=\"tcp\" portid=\"22\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"64\"/><service name=\"ssh\" method=\"table\" conf=\"3\"/></port>",
            "<times srtt=\"50\" rttvar=\"0\" to=\"100000\"/>",
            "<hosts up=\"1\" down=\"0\" total=\"1\"/>",
        ] {
            assert!(x.contains(needle), "missing {needle}:\n{x}");
        }
        assert!(!x.contains("portid=\"1000\""));
    }
}

//! Results formatting, never deciding: the human views of a probe (`text`), a survey
//! (`survey`: its lines, CSV, the statistics table), a scan (`scan_text`) and a trace
//! (`trace`); nmap's XML and
//! greppable formats (`scan_nmap`); captures (`pcap`, `pcapng` with comments and TLS keys,
//! `capture`: both written in time order); the SVG plots. JSON and JSON Lines are serde on
//! the record types of `tcpshake_proto::probe::record`.

pub mod capture;
pub mod influx;
pub mod leg_histograms;
pub mod metrics;
pub mod pcap;
pub mod pcapng;
pub mod scan_nmap;
pub mod scan_text;
pub mod survey;
pub mod svg;
pub mod text;
pub mod trace;

/// `1 target`, `2 targets`, `0 targets`: a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

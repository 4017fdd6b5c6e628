//! Results formatting: the human view, pcap files. (JSON is serde on the records.)

pub mod pcap;
pub mod scan_nmap;
pub mod scan_text;
pub mod survey;
pub mod svg;
pub mod text;

/// `1 target`, `2 targets`, `0 targets`: a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

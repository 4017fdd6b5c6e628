//! Results formatting: the human view, pcap files. (JSON is serde on the records.)

pub mod pcap;
pub mod scan_nmap;
pub mod scan_text;
pub mod survey;
pub mod svg;
pub mod text;

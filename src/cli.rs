//! Command-line definitions (clap) and their validation into plain values.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
pub use tcpshake_proto::time::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "tcpshake",
    version,
    about = "A hand-made TCP client: every segment visible, every leg timed on the wire",
    after_help = "Exit codes: 0 every probe reached `open` (and its HTTP exchange worked), \
1 some port not open or an exchange failed, 2 usage, 3 environment (privileges, kernel), \
4 an --slo objective was breached."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Connect by hand, send HTTP HEAD, close; show and time every segment.
    Probe(ProbeArgs),
    /// Build a throwaway network namespace with a built-in HTTP peer, probe it, tear it down.
    Lab(LabArgs),
    /// Stateless half-open SYN scan of many addresses and ports, in nmap's syntax.
    Scan(ScanArgs),
    /// Statistics (and an SVG plot) from the JSON Lines of one or more surveys.
    Report(ReportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// HOST:PORT, [V6ADDR]:PORT, HOST with -p, or http://HOST[:PORT]/PATH
    #[arg(required_unless_present = "input_list", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Port for targets that do not name one; a list (80,443) probes each of them.
    #[arg(short = 'p', long = "port", value_name = "PORT", value_delimiter = ',')]
    pub port: Vec<u16>,
    /// Use IPv4 only (for host names).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (for host names).
    #[arg(short = '6')]
    pub ipv6: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub survey: SurveyArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Request path for HEAD (a URL target's path wins).
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Host: header value (default: the name or address as given).
    #[arg(long, value_name = "HOST")]
    pub host_header: Option<String>,
    /// Handshake and close only; no HTTP request.
    #[arg(long)]
    pub no_http: bool,
    /// One JSON object per probe on stdout (schema in README.md).
    #[arg(long)]
    pub json: bool,
    /// Write every segment sent and received, with kernel timestamps, to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// How long to wait for the server after the handshake (response, each close step).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// SYN retransmissions before calling the port filtered.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,
    /// Initial retransmission timeout (RFC 6298 §2.1: 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub rto: Duration,
    /// How long TIME-WAIT lasts (a retransmitted FIN is ACKed again meanwhile).
    #[arg(long, default_value = "250ms", value_parser = parse_duration, value_name = "DUR")]
    pub time_wait: Duration,
    /// After the response, how long to wait for the server to close first.
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DUR")]
    pub linger: Duration,
    /// HTTPS: a TLS handshake (1.3 or 1.2) before the request (implied by https:// targets).
    #[arg(long)]
    pub tls: bool,
    /// TLS server name to send and verify (default: the target's host name; none for an
    /// address target, whose certificate is checked for that address).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Report a failed certificate verification but finish the exchange anyway.
    #[arg(long)]
    pub insecure: bool,
    /// Our initial sequence number, for tests (e.g. near 2^32 to cross the wrap); random
    /// otherwise (RFC 6528). Hidden: a fixed ISN is for labs only.
    #[arg(long, hide = true, value_name = "N")]
    pub isn: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Many probes from one event loop (any of these flags makes `probe` a survey).
#[derive(Args, Debug, Clone, Default)]
pub struct SurveyArgs {
    /// Read targets from FILE, one per line (`-` for stdin; `#` starts a comment). `-iL` works too.
    #[arg(long = "input-list", value_name = "FILE")]
    pub input_list: Option<PathBuf>,
    /// Probes per target.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Between the starts of two probes of one target (never overlapping).
    #[arg(short = 'i', long = "interval", value_parser = parse_duration, value_name = "DUR")]
    pub interval: Option<Duration>,
    /// Probes in flight at once (one thread drives them all).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub jobs: Option<u32>,
    /// Per-probe output: text lines, JSON Lines (same as --json) or CSV (one column per leg).
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Statistics only: no per-probe lines (records asked for with --json or -o are still written).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Exit 4 when an objective is breached, e.g. 'syn_to_synack.p99<5ms,total.loss<1%'.
    #[arg(long = "slo", value_name = "SLO")]
    pub slo: Option<String>,
    /// Probe only shard K of N (1-based): N machines with the same list split it, and their
    /// JSON Lines concatenate.
    #[arg(long = "shard", value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Surveys: acknowledge the SYN-ACK with a segment of its own, then send the request
    /// (as curl does). By default a survey's request rides on that ACK (RFC 9293 §3.5): one
    /// segment less per probe. A single probe always sends the ACK alone.
    #[arg(long = "separate-ack")]
    pub separate_ack: bool,
}

/// `K/N` with 1 ≤ K ≤ N.
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a shard; write K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

impl SurveyArgs {
    /// Did the user ask for a survey (rather than the classic one-at-a-time probe)?
    pub fn wanted(&self) -> bool {
        self.input_list.is_some()
            || self.count.is_some()
            || self.interval.is_some()
            || self.jobs.is_some()
            || self.output.is_some()
            || self.quiet
            || self.slo.is_some()
            || self.shard.is_some()
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Jsonl,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON Lines files written by `probe --json` (several shards concatenate; `-` is stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Draw each target's latency distribution (SYN→SYN-ACK and request→first byte) to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Kind of plot for --svg.
    #[arg(long, value_name = "KIND", default_value = "box")]
    pub plot: PlotKind,
    /// Exit 4 when an objective is breached, e.g. 'syn_to_synack.p99<5ms,total.loss<1%'.
    #[arg(long, value_name = "SLO")]
    pub slo: Option<String>,
    /// The statistics as one JSON object (exact ns) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Overall statistics only, no per-target rows.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// Box plot per target: whiskers at min and max, box from p25 to p75, median line, p99 mark.
    Box,
    /// Cumulative distribution per target.
    Cdf,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Exit codes: 0 the scan ran to the end, 1 interrupted (results are \
partial) or a run-time error, 2 usage, 3 environment (privileges, kernel). nmap's -iL, -oG and -oX \
spellings are accepted."
)]
pub struct ScanArgs {
    /// Addresses, CIDR blocks (198.18.0.0/24), ranges (198.18.0.1-20), host names.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Read targets from FILE (`-` for stdin); nmap's -iL.
    #[arg(long = "input-list", value_name = "FILE")]
    pub input_list: Option<PathBuf>,
    /// Ports: 22,80,8000-8100; `-` for 1-65535 (nmap's -p-). Default: --top-ports 1000.
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "PORTS",
        allow_hyphen_values = true
    )]
    pub ports: Option<String>,
    /// The N ports nmap finds open most often.
    #[arg(long, value_name = "N", conflicts_with = "ports")]
    pub top_ports: Option<usize>,
    /// Targets to skip (comma-separated, same syntax as targets).
    #[arg(long, value_name = "SPECS", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Targets to skip, read from FILE.
    #[arg(long, value_name = "FILE")]
    pub excludefile: Option<PathBuf>,
    /// SYNs per second, retries included.
    #[arg(long, default_value_t = 1000, value_name = "PPS", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub rate: u64,
    /// Extra SYNs for ports that stayed silent (nmap's --max-retries).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=10))]
    pub retries: u8,
    /// After the last SYN of a round, how long replies are awaited.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub wait: Duration,
    /// Key of the scan order; shards of one scan must share it.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Scan slice K of N (1-based) of the permuted (address, port) sequence.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Show every port sent to (closed, filtered and silent too), not only open ones; with
    /// --json, a line for each silent port as well.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per answered port on stdout (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Also write nmap's greppable format to FILE (`-` for stdout); nmap's -oG.
    #[arg(long = "output-greppable", value_name = "FILE")]
    pub output_greppable: Option<PathBuf>,
    /// Also write nmap's XML format to FILE (`-` for stdout); nmap's -oX.
    #[arg(long = "output-xml", value_name = "FILE")]
    pub output_xml: Option<PathBuf>,
    /// Send from this source port instead of a reserved ephemeral one.
    #[arg(long, value_name = "PORT")]
    pub source_port: Option<u16>,
    /// Resolve host names to IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Resolve host names to IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// After the scan, connect to each open port (full handshake, then close with our FIN)
    /// and report the handshake and close legs.
    #[arg(long)]
    pub complete: bool,
}

/// nmap spells some options as one dash and two letters (`-iL`, `-oG`, `-oX`); clap reads
/// those as a short flag with a value, so they are renamed before parsing.
pub fn nmap_spellings(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-iL") => "--input-list".into(),
            Some("-oG") => "--output-greppable".into(),
            Some("-oX") => "--output-xml".into(),
            _ => a,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn shards() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        assert_eq!(parse_shard("1/1"), Ok((1, 1)));
        assert!(parse_shard("0/4").is_err());
        assert!(parse_shard("5/4").is_err());
        assert!(parse_shard("2").unwrap_err().contains("K/N"));
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

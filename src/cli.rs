//! The command line as typed (clap): raw arguments, checked only for their own syntax
//! (a number, a duration with its unit, a shard). What they mean together, and every
//! default that is not shown by `--help`, is decided once in [`crate::config`].

use crate::app::exit;
use crate::config::defaults;
use clap::{Args, Parser, Subcommand};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tcpshake_proto::probe::shard::Shard;
use tcpshake_proto::time::{format_duration, parse_duration};

#[derive(Parser, Debug)]
#[command(
    name = "tcpshake",
    version,
    about = "A hand-made TCP client: every segment visible, every leg timed on the wire",
    after_help = exit::help_text()
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
    /// Find the hop: copies of our SYN (or segments inside a connection) with increasing
    /// TTL; who answers each, and which header fields each hop changed.
    Trace(TraceArgs),
    /// Prometheus exporter: continuous surveys as histograms (/metrics), probes on demand
    /// (/probe?target=HOST:PORT).
    Exporter(ExporterArgs),
    /// For packagers: write the man pages or print a shell's completion script.
    Generate(GenerateArgs),
}

/// A duration as every option writes it (a number and a unit: `250ms`, `2s`); shown back
/// in the same form, so `--help` prints defaults that parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

#[derive(Args, Debug, Clone)]
// Targets on the command line, or a list (-iL) instead: clap's own usage showed only the
// first, so `tcpshake probe` alone read as if a target were the only way (a walk).
#[command(
    override_usage = "tcpshake probe [OPTIONS] <TARGET>...\n       tcpshake probe [OPTIONS] -iL FILE"
)]
pub struct ProbeArgs {
    // The help is an attribute, not a doc comment: rustdoc would read its brackets as links.
    #[arg(
        required_unless_present = "input_list",
        value_name = "TARGET",
        help = "HOST:PORT, [V6ADDR]:PORT, HOST with -p, or http(s)://HOST[:PORT]/PATH"
    )]
    pub targets: Vec<String>,
    /// Port for targets that do not name one; a list (80,443) probes each of them.
    // Read as text: `config` gives the one port message (`target::port_number`), and says
    // that ranges are `scan`'s.
    // `--ports` too: scan's spelling, and this takes a list as well.
    // Hyphen values: nmap's `-p -1024` is a range, said as such (clap would read `-1`).
    #[arg(
        short = 'p',
        long = "port",
        alias = "ports",
        value_name = "PORT",
        allow_hyphen_values = true
    )]
    pub port: Vec<String>,
    /// Use IPv4 only (for host names).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (for host names).
    #[arg(short = '6')]
    pub ipv6: bool,
    #[command(flatten)]
    pub exchange: ExchangeArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub survey: SurveyArgs,
}

/// What one exchange does and how long it waits: `probe`, its surveys and `lab`.
#[derive(Args, Debug, Clone)]
pub struct ExchangeArgs {
    /// Request path for HEAD, starting with `/` (a URL target's path wins). [default: /]
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Host: header value (default: the name or address as given).
    #[arg(long, value_name = "HOST")]
    pub host_header: Option<String>,
    /// Handshake and close only; no HTTP request.
    #[arg(long)]
    pub no_http: bool,
    /// How long to wait for the server after the handshake (response, each close step).
    #[arg(long, value_name = "DUR", default_value_t = Dur(defaults::TIMEOUT), allow_hyphen_values = true)]
    pub timeout: Dur,
    /// SYN retransmissions before calling the port filtered.
    #[arg(long, value_name = "N", default_value_t = defaults::SYN_RETRIES, value_parser = whole::<u32>(0, defaults::MAX_SYN_RETRIES), allow_hyphen_values = true)]
    pub retries: u32,
    /// Initial retransmission timeout (RFC 6298 §2.1), doubled on each retry.
    #[arg(long, value_name = "DUR", default_value_t = Dur(defaults::RTO), allow_hyphen_values = true)]
    pub rto: Dur,
    /// How long TIME-WAIT lasts (a retransmitted FIN is ACKed again meanwhile).
    #[arg(long, value_name = "DUR", default_value_t = Dur(defaults::TIME_WAIT), allow_hyphen_values = true)]
    pub time_wait: Dur,
    /// After the response, how long to wait for the server to close first.
    #[arg(long, value_name = "DUR", default_value_t = Dur(defaults::LINGER), allow_hyphen_values = true)]
    pub linger: Dur,
    /// The most MSS our SYN advertises (the route's when lower): asks the server for
    /// smaller segments, e.g. to tell a path MTU black hole on the way back from a server
    /// that hangs (536 passes every IPv4 path, 1220 every IPv6 one).
    #[arg(long, value_name = "BYTES", value_parser = whole::<u16>(88, 65495), allow_hyphen_values = true)]
    pub mss: Option<u16>,
    /// Our initial sequence number, for tests (e.g. near 2^32 to cross the wrap); random
    /// otherwise (RFC 6528). Hidden: a fixed ISN is for labs only.
    #[arg(long, hide = true, value_name = "N", allow_hyphen_values = true)]
    pub isn: Option<u32>,
}

/// HTTPS: `probe` and its surveys (the lab's peer speaks plain HTTP).
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
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
}

#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// One JSON object per probe on stdout (fields: JSON OUTPUT in tcpshake-probe(1), or
    /// README.md).
    #[arg(long)]
    pub json: bool,
    /// Write every segment sent and received, with kernel timestamps, to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// The same as pcapng, each packet with a comment (state changes, retransmissions, the
    /// legs it ends) and, for HTTPS, the session keys, so Wireshark decrypts it on open.
    #[arg(long, value_name = "FILE")]
    pub pcapng: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
// The lab takes no target: the shared options' help says what they do here.
#[command(
    mut_arg("path", |a| a.help("Request path for HEAD, starting with `/`. [default: /]")),
    mut_arg("host_header", |a| a.help("Host: header value (default: the lab server's address)"))
)]
pub struct LabArgs {
    #[command(flatten)]
    pub exchange: ExchangeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Many probes from one event loop (any of these flags makes `probe` a survey).
#[derive(Args, Debug, Clone, Default)]
pub struct SurveyArgs {
    /// Read targets from FILE (`-` for stdin): whitespace between them, `#` starts a
    /// comment. `-iL` works too.
    #[arg(long = "input-list", value_name = "FILE")]
    pub input_list: Option<PathBuf>,
    /// Probes per target. [default: 1]
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = whole::<u32>(1, u32::MAX), allow_hyphen_values = true)]
    pub count: Option<u32>,
    /// Between the starts of two probes of one target (never overlapping). [default: 0s]
    #[arg(
        short = 'i',
        long = "interval",
        value_name = "DUR",
        allow_hyphen_values = true
    )]
    pub interval: Option<Dur>,
    /// Probes in flight at once (one thread drives them all). [default: 16]
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = whole::<u32>(1, 20000), allow_hyphen_values = true)]
    pub jobs: Option<u32>,
    /// Per-probe output: text lines, JSON Lines (same as --json), CSV (one column per leg) or
    /// InfluxDB line protocol.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// `--csv`, `--influx`: a natural guess beside `--json`, refused saying `-o FORMAT`
    /// (clap's own word was a tip to pass it as a target).
    #[arg(long = "csv", hide = true)]
    pub csv_guess: bool,
    #[arg(long = "influx", hide = true)]
    pub influx_guess: bool,
    /// Statistics only: no per-probe lines (records asked for with --json or -o are still written).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Exit 4 when an objective is breached, e.g. 'syn_to_synack.p99<5ms,connect.loss<1%'.
    #[arg(long = "slo", value_name = "SLO")]
    pub slo: Option<String>,
    /// Probe only shard K of N (1-based): N machines with the same list split it, and their
    /// JSON Lines concatenate.
    #[arg(long = "shard", value_name = "K/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Surveys: acknowledge the SYN-ACK with a segment of its own, then send the request
    /// (as curl does). By default a survey's request rides on that ACK (RFC 9293 §3.5): one
    /// segment less per probe. A single probe always sends the ACK alone (refused there).
    #[arg(long = "separate-ack")]
    pub separate_ack: bool,
    /// Surveys: answer every SYN-ACK from this program, never from the kernel program that
    /// otherwise sends our ACK (Linux ≥ 6.6 with CAP_BPF and CAP_PERFMON) in the softirq that
    /// received the SYN-ACK, as Linux's own TCP answers. A single probe always does (refused
    /// there).
    #[arg(long = "no-reflex")]
    pub no_reflex: bool,
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
    /// InfluxDB line protocol, one line per probe (Telegraf's exec/execd inputs read it).
    Influx,
}

/// `exporter --help`'s and tcpshake-exporter(1)'s account of the configuration file and the
/// endpoints: a packaged install has the man page, not README.md, and the file's keys were
/// nowhere in it.
fn exporter_help() -> String {
    format!(
        "Configuration (TOML; a key not given takes its default; a mistake is refused with \
its file and line, exit 2):
  [exporter]      jobs = {jobs}  (probes in flight at once, surveys and /probe together)
                  reflex = true  (the kernel program answers SYN-ACKs; false: as probe \
--no-reflex)
  [probe]         allow = [\"198.18.0.0/15\", …]  (the addresses /probe may reach; none: \
every target refused, 403)
                  allow_names = [\"*.lab.test\"]  (names it may resolve; their address must \
be allowed too)
                  max_in_flight = {mif}, rate = {rate}, burst = {burst}  (more get 429)
                  default_module = \"http\"
  [histograms]    buckets = {{ start = \"10us\", factor = 2, count = 21 }} or [\"100us\", \
\"1ms\", …]  (default: 10us to 10s, 1-2-5)
                  type = \"classic\"  (\"native\" and \"both\" are refused: this build serves text)
  [modules.NAME]  prober = \"http\" | \"https\" | \"tcp\"  (http, https and tcp exist already)
                  path, host_header, sni, cacert, insecure, timeout, retries, rto, time_wait, \
linger, mss  (as probe's options)
                  family = \"any\" | \"ipv4\" | \"ipv6\";  valid_status_codes = [200, …]  \
(default: any 2xx or 3xx)
                  separate_ack = true  (http/https: as probe --separate-ack, behind a SYN proxy)
  [[survey]]      name = \"fleet\"  (required; a label of every series)
                  targets = [\"198.18.0.2:80\", …];  target_files = [\"FILE\"]  (-iL's syntax)
                  interval = \"{interval}\";  modules = [\"http\"];  slo = [\"syn_to_synack.p99<5ms\"]

Endpoints:
  /metrics                                   the surveys' histograms and counters, the \
exporter's health
  /probe?target=HOST:PORT[&module=NAME]      one probe now, as gauges \
(tcpshake_probe_success, tcpshake_leg_seconds{{leg}}, …)
  /probe?…&debug=true                        the same probe told in plain text: why it failed

A /probe ends before Prometheus gives up on it: its scrape timeout \
(X-Prometheus-Scrape-Timeout-Seconds) less 0.5 s bounds the probe, as in blackbox_exporter. A \
module's `timeout` is how long each step after the handshake may wait, not the whole probe.",
        jobs = defaults::EXPORTER_JOBS,
        mif = defaults::PROBE_MAX_IN_FLIGHT,
        rate = defaults::PROBE_RATE,
        burst = defaults::PROBE_BURST,
        interval = Dur(defaults::EXPORTER_INTERVAL),
    )
}

#[derive(Args, Debug, Clone)]
#[command(after_long_help = exporter_help())]
pub struct ExporterArgs {
    /// Where to serve /metrics and /probe over HTTP (a non-loopback address exposes them).
    #[arg(long, value_name = "ADDR:PORT", default_value = defaults::EXPORTER_LISTEN)]
    pub listen: String,
    /// The configuration (TOML): modules, surveys, the /probe allow-list (CONFIGURATION AND
    /// METRICS in tcpshake-exporter(1), or README.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Also write every survey probe's record to FILE (JSON Lines, as `probe --json`), appended
    /// to what FILE holds (a restart keeps the earlier runs' records).
    #[arg(long, value_name = "FILE")]
    pub records: Option<PathBuf>,
    /// Check the configuration (and the target files it names), print a summary, exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON Lines files written by `probe --json` (several shards concatenate; `-` is stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Draw each target's latency distribution (SYN→SYN-ACK and request→first byte) to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Kind of plot for --svg. [default: box]
    #[arg(long, value_name = "KIND")]
    pub plot: Option<PlotKind>,
    /// Exit 4 when an objective is breached, e.g. 'syn_to_synack.p99<5ms,connect.loss<1%'.
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
    after_help = "nmap's -iL, -oN, -oG, -oX and -oA spellings are accepted (-oA BASE writes \
                  BASE.nmap, BASE.gnmap and BASE.xml), and --max-rate is --rate. So are -sS, \
                  -Pn and -n, which ask for what tcpshake scan always does (a SYN scan, no \
                  host discovery, no reverse lookups). --open shows only hosts with an open \
                  port, and only their open ports, in the table, -oN, -oG and -oX, as nmap's \
                  does (refused beside --all and --json, which list every port). \
                  -F is --top-ports 100, --max-retries is --retries, and --reason is always on \
                  (the REASON column). Other scan types, -T timing templates, --min-rate, \
                  nmap's RTT timeouts and delays, scripts, discovery probes, -e, -S, -f, --ttl, \
                  -iR, -O, -A, -v, -d, -r, --packet-trace, --stats-every, \
                  --defeat-rst-ratelimit, the stylesheet options and --resume are refused \
                  with what to use instead."
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
        // `--port` too: probe's and trace's spelling.
        alias = "port",
        value_name = "PORTS",
        allow_hyphen_values = true
    )]
    pub ports: Option<String>,
    /// The N ports nmap finds open most often.
    #[arg(long, value_name = "N", conflicts_with = "ports", value_parser = whole::<usize>(0, usize::MAX), allow_hyphen_values = true)]
    pub top_ports: Option<usize>,
    /// Targets to skip (comma-separated, same syntax as targets).
    #[arg(long, value_name = "SPECS", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Targets to skip, read from FILE.
    #[arg(long, value_name = "FILE")]
    pub excludefile: Option<PathBuf>,
    /// Packets per second on the wire: SYNs, retries with the RST before each, the RST to
    /// each SYN-ACK, ARP / ND requests; a ceiling, nmap's --max-rate. [default: as fast as
    /// this host sends; on shared networks, give a rate]
    #[arg(long, value_name = "PPS", value_parser = whole::<u64>(1, 100_000_000), allow_hyphen_values = true)]
    pub rate: Option<u64>,
    /// nmap's name for --rate, which is a ceiling as nmap's is (a token bucket).
    #[arg(long, value_name = "PPS", hide = true, conflicts_with = "rate", value_parser = whole::<u64>(1, 100_000_000), allow_hyphen_values = true)]
    pub max_rate: Option<u64>,
    /// At most N extra SYNs for a port that stays silent (nmap's --max-retries): one retry
    /// round, and another while the last one got answers (packets were lost), as nmap;
    /// after a short round that got none, one more a second after the last that got some,
    /// if those stopped part-way through its SYNs (a host passing a second's allowance of
    /// answers at once, as FreeBSD and macOS do).
    #[arg(long, alias = "max-retries", value_name = "N", default_value_t = defaults::SCAN_RETRIES, value_parser = whole::<u8>(0, defaults::SCAN_RETRIES_MAX), allow_hyphen_values = true)]
    pub retries: u8,
    /// After the last SYN of a round, how long replies are awaited. [default: from the
    /// replies' times: SRTT + 4·RTTVAR, at least 50 ms; 1 s until a reply is timed]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub wait: Option<Dur>,
    /// Send IP packets through the kernel (raw sockets) instead of Ethernet frames of our
    /// own: no ARP / Neighbor Discovery of our own either (nmap's --send-ip).
    #[arg(long = "send-ip")]
    pub send_ip: bool,
    /// Key of the scan order; shards of one scan must share it.
    #[arg(long, value_name = "N", value_parser = whole::<u64>(0, u64::MAX), allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Scan slice K of N (1-based) of the permuted (address, port) sequence.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Show every port sent to (closed, filtered and silent too), not only open ones; with
    /// --json, a line for each silent port as well.
    #[arg(long)]
    pub all: bool,
    /// nmap's --open: only hosts with an open port, and only their open ports, in the
    /// table and in -oN, -oG and -oX (the others counted, as nmap folds them).
    #[arg(long, hide = true)]
    pub open: bool,
    /// One JSON object per answered port on stdout (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Also write the table (nmap's normal output) to FILE (`-` for stdout); nmap's -oN.
    #[arg(long = "output-normal", value_name = "FILE")]
    pub output_normal: Option<PathBuf>,
    /// Write the table, the greppable and the XML formats to BASE.nmap, BASE.gnmap and
    /// BASE.xml; nmap's -oA.
    #[arg(long = "output-all", value_name = "BASE")]
    pub output_all: Option<PathBuf>,
    /// Also write nmap's greppable format to FILE (`-` for stdout); nmap's -oG.
    #[arg(long = "output-greppable", value_name = "FILE")]
    pub output_greppable: Option<PathBuf>,
    /// Also write nmap's XML format to FILE (`-` for stdout); nmap's -oX.
    #[arg(long = "output-xml", value_name = "FILE")]
    pub output_xml: Option<PathBuf>,
    /// Send from this source port instead of a reserved ephemeral one (nmap's -g); refused
    /// when another socket on this host holds it.
    #[arg(short = 'g', long, value_name = "PORT", value_parser = whole::<u16>(1, u16::MAX), allow_hyphen_values = true)]
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

#[derive(Args, Debug, Clone)]
// A trace is not a probe: the shared output options' help says what they write here.
#[command(
    mut_arg("json", |a| a.help(
        "One JSON object per trace on stdout, every hop and probe in it (fields: DETAILS in \
         tcpshake-trace(1), or README.md)"
    )),
    mut_arg("pcapng", |a| a.help(
        "The same as pcapng, each packet with a comment (the TTL and attempt it belongs to, its round trip)"
    ))
)]
pub struct TraceArgs {
    // The help is an attribute, not a doc comment: rustdoc would read its brackets as links.
    #[arg(
        value_name = "TARGET",
        help = "HOST:PORT, [V6ADDR]:PORT, or HOST with -p"
    )]
    pub target: String,
    /// Port, for a target that does not name one.
    // Hyphen values: nmap's `-p -1024` is a range, said as such (clap would read `-1`).
    #[arg(
        short = 'p',
        long = "port",
        alias = "ports",
        value_name = "PORT",
        allow_hyphen_values = true
    )]
    pub port: Option<String>,
    /// Use IPv4 only (for host names).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (for host names).
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Open a connection first and trace with segments inside it (through stateful
    /// firewalls that drop a bare SYN); close it afterwards.
    #[arg(long)]
    pub in_session: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Highest TTL / hop limit probed.
    #[arg(short = 'm', long, value_name = "N", default_value_t = defaults::TRACE_MAX_TTL, value_parser = whole::<u8>(1, u8::MAX), allow_hyphen_values = true)]
    pub max_ttl: u8,
    /// First TTL probed.
    #[arg(short = 'f', long, value_name = "N", default_value_t = 1, value_parser = whole::<u8>(1, u8::MAX), allow_hyphen_values = true)]
    pub first_ttl: u8,
    /// Probes per TTL.
    #[arg(short = 'q', long, value_name = "N", default_value_t = defaults::TRACE_PROBES, value_parser = whole::<u8>(1, 10), allow_hyphen_values = true)]
    pub probes: u8,
    /// TTLs probed at once, ahead of the highest whose first probe was answered or lost.
    #[arg(long, value_name = "N", default_value_t = defaults::TRACE_PARALLEL, value_parser = whole::<u8>(1, 64), allow_hyphen_values = true)]
    pub parallel: u8,
    /// How long a probe is waited for.
    #[arg(short = 'w', long, value_name = "DUR", default_value_t = Dur(defaults::TRACE_TIMEOUT), allow_hyphen_values = true)]
    pub timeout: Dur,
    /// Between the probes of one TTL.
    #[arg(long, value_name = "DUR", default_value_t = Dur(defaults::TRACE_INTERVAL), allow_hyphen_values = true)]
    pub interval: Dur,
    /// Silent TTLs in a row that end the trace.
    #[arg(long, value_name = "N", default_value_t = defaults::TRACE_GAP, value_parser = whole::<u8>(1, u8::MAX), allow_hyphen_values = true)]
    pub gap: u8,
    /// TOS byte / IPv6 traffic class of every packet (DSCP << 2 | ECN), e.g. 0x02 for
    /// ECT(0), so a hop that clears ECN shows.
    #[arg(short = 't', long, value_name = "BYTE", default_value = "0", value_parser = parse_byte, allow_hyphen_values = true)]
    pub tos: u8,
    /// Send from this source port instead of a reserved ephemeral one (-g as in scan and
    /// nmap).
    #[arg(short = 'g', long, value_name = "PORT", value_parser = whole::<u16>(1, u16::MAX), allow_hyphen_values = true)]
    pub source_port: Option<u16>,
    /// Our first ISN, for tests. Hidden: a fixed ISN is for labs only.
    #[arg(long, hide = true, value_name = "N", allow_hyphen_values = true)]
    pub isn: Option<u32>,
}

/// A whole number from `lo` to `hi`, refused in our words: clap's own parsers would pass
/// on Rust's (`invalid digit found in string`). A `k` or `M` suffix is not read (`--rate
/// 10k`): the message says what to write instead.
pub fn whole<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let t = s.trim();
        match t.parse::<T>() {
            Ok(v) if v >= lo && v <= hi => Ok(v),
            _ => {
                let multiple = match t.char_indices().last() {
                    Some((i, 'k' | 'K')) => Some((&t[..i], 1_000u64)),
                    Some((i, 'M' | 'm')) => Some((&t[..i], 1_000_000u64)),
                    _ => None,
                };
                let hint = match multiple {
                    Some((n, m)) if n.parse::<u64>().is_ok() => format!(
                        " (no suffixes: write {} for {t})",
                        n.parse::<u64>().unwrap_or(0).saturating_mul(m)
                    ),
                    _ => String::new(),
                };
                Err(format!(
                    "`{}` is not a whole number from {lo} to {hi}{hint}",
                    t.escape_debug()
                ))
            }
        }
    }
}

/// A byte in decimal or `0x` hex.
pub fn parse_byte(s: &str) -> Result<u8, String> {
    let s = s.trim();
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("`{s}` is not a byte: give 0 to 255, or 0x00 to 0xff"))
}

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Generate {
    /// The man pages, tcpshake(1) and one per command (tcpshake-probe(1)…), written into
    /// DIR: `tcpshake generate man /usr/share/man/man1`.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// A completion script: `tcpshake generate completions bash > tcpshake.bash`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// nmap spells some options as one dash and two letters (`-iL`, `-oN`, `-oG`, `-oX`,
/// `-oA`); clap reads those as a short flag with a value, so they are renamed before
/// parsing.
///
/// `scan` also meets nmap's habits: `-sS`, `-Pn` and `-n` ask for what it always does (a
/// SYN scan, no host discovery, no reverse lookups), so they are dropped; other scan types
/// (`-sT`, `-sU`…) and timing templates (`-T4`) are refused with what to use instead —
/// clap would say "unexpected argument '-s'" and suggest `-- -s`, which makes it a target.
pub fn nmap_spellings(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, exit::UsageError> {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let scan = args.get(1).is_some_and(|a| a == "scan");
    // nmap's fast mode names the ports too: beside another port selection it is refused
    // in its own name, as nmap refuses it (clap would name the --top-ports it stands for).
    if scan {
        let opts = args
            .iter()
            .take_while(|a| *a != "--")
            .filter_map(|a| a.to_str());
        let (mut fast, mut ports) = (false, None);
        for a in opts {
            if a == "-F" {
                fast = true;
            } else if a == "-p" || a.starts_with("--ports") || a.starts_with("--top-ports") {
                ports = Some(a.split('=').next().unwrap_or(a).to_string());
            } else if a.starts_with("-p") && a.len() > 2 {
                ports = Some("-p".to_string());
            }
        }
        if let (true, Some(p)) = (fast, ports) {
            return Err(exit::UsageError(format!(
                "-F is nmap's fast mode, the 100 most common ports (--top-ports 100): it \
                 cannot go with {p}, which names the ports too; drop one of them"
            )));
        }
    }
    let probe = args.get(1).is_some_and(|a| a == "probe");
    let trace = args.get(1).is_some_and(|a| a == "trace");
    let mut out = Vec::with_capacity(args.len());
    let mut after_dashes = false;
    let mut prev: Option<String> = None;
    for a in args {
        let Some(text) = a.to_str().filter(|_| !after_dashes) else {
            out.push(a);
            continue;
        };
        let after = prev.replace(text.to_string());
        // hping3's interval in microseconds (`-i u1000`): our durations carry a unit.
        if probe
            && matches!(after.as_deref(), Some("-i" | "--interval"))
            && let Some(us) = text.strip_prefix('u').filter(|n| n.parse::<u64>().is_ok())
        {
            return Err(exit::UsageError(format!(
                "-i {text}: hping3's microseconds; here every duration names its unit: write \
                 -i {us}us (-i is between the starts of two probes of one target)"
            )));
        }
        match text {
            "--" => after_dashes = true,
            "-iL" => {
                out.push("--input-list".into());
                continue;
            }
            "-oG" => {
                out.push("--output-greppable".into());
                continue;
            }
            "-oX" => {
                out.push("--output-xml".into());
                continue;
            }
            "-oN" => {
                out.push("--output-normal".into());
                continue;
            }
            "-oA" => {
                out.push("--output-all".into());
                continue;
            }
            // nmap's fast mode is its 100 most common ports: `--top-ports 100` here.
            "-F" if scan => {
                out.push("--top-ports".into());
                out.push("100".into());
                continue;
            }
            _ if scan && nmap_no_op(text)? => continue,
            _ if probe && hping_no_op(text, after.as_deref())? => continue,
            _ if trace && traceroute_no_op(text)? => continue,
            _ => {}
        }
        out.push(a);
    }
    Ok(out)
}

/// Whether `text` is one of hping3's options that `probe` does anyway (to drop); a refusal,
/// naming what to use, for one that asks for what `probe` does not do. clap would say
/// "unexpected argument '-S'" and suggest `-- -S`, which makes it a target.
fn hping_no_op(text: &str, after: Option<&str>) -> Result<bool, exit::UsageError> {
    let refuse = |m: String| Err(exit::UsageError(m));
    // hping3's modes `-0`, `-1`, `-2`, `-8` look like a negative value: after an option
    // (`--retries -1`) they are its value, for its own parser to refuse.
    let numeric = text.len() == 2 && text.as_bytes()[1].is_ascii_digit();
    if numeric && after.is_some_and(|a| a.starts_with('-')) {
        return Ok(false);
    }
    let name = option_name(text);
    // curl's attached spellings (`-w%{time_total}`, `-m5`) are its -w and -m.
    let name = match name.get(..2) {
        Some(short @ ("-w" | "-m")) if name.len() > 2 => short,
        _ => name,
    };
    match name {
        // Always so: our first segment is a SYN; addresses are never resolved back.
        "-S" | "--syn" | "-n" | "--numeric" => Ok(true),
        "--flood" | "--faster" | "--fast" => refuse(format!(
            "{text}: tcpshake probe times whole exchanges (handshake, HEAD, close), one after \
             another per target; for more, give -c N (probes) and -i DUR (e.g. -i 1ms) and -j N \
             in flight; for a rate of bare SYNs, `tcpshake scan HOST -p PORT --rate PPS`; drop \
             {text}"
        )),
        "-a" | "--spoof" | "--rand-source" => refuse(format!(
            "{text}: tcpshake probe sends from this host's own address (the route's source), \
             never a spoofed one; drop {text} and its address"
        )),
        // curl's -k, -s and -I mean something else than hping3's: say both.
        "-k" => refuse(
            "-k: curl's --insecure is --insecure here (an https:// target's certificate not \
             checked); hping3's --keep (one source port) is not offered: every probe takes a \
             fresh ephemeral port (one reused could meet the server's TIME-WAIT)"
                .into(),
        ),
        // curl's timing and verbosity, which a curl user reaches for first; clap would
        // say "unexpected argument" and suggest `-- -w`, which makes it a target.
        "-w" => refuse(
            "-w: curl's --write-out is --json here: one JSON object per probe, every leg in \
             ns (`tcpshake probe URL --json | jq .legs_ns`); hping3's -w (the SYN's window) is \
             not offered: the SYN advertises Linux's 64240; drop -w and its value"
                .into(),
        ),
        "--write-out" => refuse(format!(
            "{text}: curl's --write-out is --json here: one JSON object per probe, every leg \
             in ns (`tcpshake probe URL --json | jq .legs_ns`); drop {text} and its format"
        )),
        "-m" => refuse(
            "-m: curl's --max-time: here --timeout DUR bounds each wait after the handshake, \
             and the SYN's wait is --rto DUR and --retries N; hping3's -m (MTU, fragments) is \
             not offered: segments fit the path MTU; drop -m and its value"
                .into(),
        ),
        "--max-time" => refuse(format!(
            "{text}: here --timeout DUR bounds each wait after the handshake (the response, \
             each step of the close), and the SYN's wait is --rto DUR and --retries N (7s with \
             the defaults); drop {text} and its value"
        )),
        "--connect-timeout" => refuse(format!(
            "{text}: the handshake's wait is --rto DUR and --retries N here: the SYN is sent \
             1+N times, the wait doubling from --rto (7s with the defaults; e.g. --rto 500ms \
             --retries 1 gives up after 1.5s); drop {text} and its value"
        )),
        "-v" | "-vv" | "-vvv" | "--verbose" => refuse(format!(
            "{text}: tcpshake probe always shows every segment, its timestamp and the state \
             it led to (a survey: one line per probe; --json or --pcapng has every segment); \
             drop {text}"
        )),
        "--keep" => refuse(format!(
            "{text}: tcpshake probe takes a fresh ephemeral source port for every probe (one \
             reused could meet the server's TIME-WAIT); drop {text}"
        )),
        "-s" => refuse(
            "-s: curl's --silent is -q here (no table on stderr; records still as asked); \
             hping3's -s PORT is not offered: every probe takes a fresh ephemeral source port \
             (`tcpshake trace -g PORT` traces from a chosen one); drop -s (and hping3's port)"
                .into(),
        ),
        "--baseport" => refuse(format!(
            "{text}: tcpshake probe takes a fresh ephemeral source port for every probe (one \
             reused could meet the server's TIME-WAIT); drop {text} and its port (`tcpshake \
             trace -g PORT` traces from a chosen port)"
        )),
        "-F" | "--fin" | "-R" | "--rst" | "-P" | "--push" | "-A" | "--ack" | "-U" | "--urg"
        | "-X" | "--xmas" | "-Y" | "--ymas" | "-0" | "--rawip" | "-1" | "--icmp" | "-2"
        | "--udp" | "-8" | "--scan" => refuse(format!(
            "{text}: tcpshake probe sends only what a TCP client does (a SYN, then the \
             connection's own segments); drop {text} (`tcpshake scan HOST -p PORTS` is a SYN \
             scan)"
        )),
        "-I" => refuse(
            "-I: curl's HEAD request is what tcpshake probe sends already; hping3's interface \
             is the one the route names (`ip route get ADDR` shows which); drop -I (and \
             hping3's interface name)"
                .into(),
        ),
        "--interface" => refuse(format!(
            "{text}: tcpshake probe sends out of the interface the route names (`ip route get \
             ADDR` shows which); drop {text} and its name"
        )),
        "-t" | "--ttl" | "-T" | "--traceroute" | "--tr-keep-ttl" => refuse(format!(
            "{text}: tcpshake probe sends with the system's TTL; to find the hop, `tcpshake trace \
             HOST:PORT` sends the probe's SYN with increasing TTL; drop {text}"
        )),
        _ => Ok(false),
    }
}

/// Whether `text` is one of traceroute's or mtr's options that `trace` does anyway (to
/// drop); a refusal naming our option for one that is spelled differently here.
fn traceroute_no_op(text: &str) -> Result<bool, exit::UsageError> {
    let refuse = |m: String| Err(exit::UsageError(m));
    let name = option_name(text);
    match name {
        // Always so: TCP SYNs (traceroute -T, mtr -T, hping3 -S as `probe` takes it), one
        // report at the end (mtr -r), no reverse lookups (-n).
        "-T" | "--tcp" | "-S" | "--syn" | "-r" | "--report" | "-n" | "--no-dns" => Ok(true),
        "-P" => refuse(
            "-P: mtr's port is -p here (or HOST:PORT), e.g. `tcpshake trace HOST -p 80`".into(),
        ),
        "-c" | "--report-cycles" => refuse(format!(
            "{text}: mtr's cycles are -q N here, probes per TTL (at most 10); each hop's loss \
             and min/median/max are over them"
        )),
        // traceroute's -I is ICMP, mtr's is an interface: neither is ours.
        "-I" => refuse(
            "-I: tcpshake trace sends TCP SYNs only (traceroute -T), out of the interface \
             the route names (`ip route get ADDR` shows which); drop -I (and, for mtr's \
             interface, its name)"
                .into(),
        ),
        "--icmp" | "-U" | "--udp" | "-u" | "-M" => refuse(format!(
            "{text}: tcpshake trace sends TCP SYNs only (traceroute -T); drop {text}"
        )),
        "-N" | "--sim-queries" => refuse(format!(
            "{text}: TTLs in flight at once are --parallel N here; drop {text}"
        )),
        "-z" | "--sendwait" => refuse(format!(
            "{text}: the wait between the probes of one TTL is --interval DUR here (e.g. \
             --interval 100ms)"
        )),
        _ => Ok(false),
    }
}

/// An option's name: a long option may carry its value after `=` (`--script=http-title`).
fn option_name(text: &str) -> &str {
    match text.strip_prefix("--") {
        Some(_) => text.split_once('=').map_or(text, |(n, _)| n),
        None => text,
    }
}

/// Whether `text` is one of nmap's options that `scan` does anyway (to drop); a refusal
/// for one that asks for what tcpshake does not do.
fn nmap_no_op(text: &str) -> Result<bool, exit::UsageError> {
    let refuse = |m: String| Err(exit::UsageError(m));
    let name = option_name(text);
    match name {
        // Always so: a SYN scan, no ping first, no reverse DNS, every port's reason shown
        // (the table's REASON column, the XML's `reason` attribute).
        // (`-P0` and `-PN` are nmap's older names of -Pn.)
        "-sS" | "-Pn" | "-P0" | "-PN" | "-n" | "--reason" => Ok(true),
        // nmap's rate floor: clap would suggest --max-rate, its opposite.
        "--min-rate" => refuse(
            "--min-rate: tcpshake scan has no rate floor: it sends as fast as this host can \
             unless --rate PPS (nmap's --max-rate) caps it; drop --min-rate"
                .into(),
        ),
        // nmap's adaptive timing knobs: here one wait after each round, from the replies'
        // round trips (clap would suggest --max-rate for --max-rtt-timeout).
        "--min-rtt-timeout"
        | "--max-rtt-timeout"
        | "--initial-rtt-timeout"
        | "--host-timeout"
        | "--scan-delay"
        | "--max-scan-delay"
        | "--min-hostgroup"
        | "--max-hostgroup"
        | "--min-parallelism"
        | "--max-parallelism" => refuse(format!(
            "{text}: tcpshake scan has no per-probe timeouts or delays: it waits once after \
             each round (--wait DUR; by default from the replies' round trips), sends again \
             to silent ports (--retries N) and paces with --rate PPS; drop {text}"
        )),
        "--script" | "-sC" | "--traceroute" => refuse(format!(
            "{text}: tcpshake scan runs no scripts and no traceroute; drop {text} \
             (`tcpshake trace HOST:PORT` finds the path to a port, `tcpshake probe` times an \
             HTTP exchange with it)"
        )),
        "--append-output" => refuse(
            "--append-output: tcpshake scan writes its output files anew; drop \
             --append-output and append yourself (-oN - >> FILE)"
                .into(),
        ),
        "-e" => refuse(
            "-e: tcpshake scan sends each SYN out of the interface the route to its target \
             names; drop -e (`ip route get ADDR` shows which)"
                .into(),
        ),
        "-S" | "-D" | "--spoof-mac" => refuse(format!(
            "{text}: tcpshake scan sends from this host's own address and MAC (the route's \
             source), never a spoofed or decoy one; drop {text}"
        )),
        "-f" | "--mtu" | "--ttl" | "--badsum" | "--data-length" | "--data" | "--data-string"
        | "--ip-options" => refuse(format!(
            "{text}: tcpshake scan sends only well-formed SYNs as Linux would (whole, \
             checksummed, the system's TTL); drop {text}"
        )),
        "-iR" => refuse(
            "-iR: tcpshake scan sends only to the targets it is given; drop -iR and list \
             them (-iL FILE)"
                .into(),
        ),
        "--exclude-ports" => refuse(
            "--exclude-ports: give the ports to scan with -p (e.g. -p 1-79,81-1024); drop \
             --exclude-ports"
                .into(),
        ),
        "-R" | "--dns-servers" | "--system-dns" => refuse(format!(
            "{text}: tcpshake scan never resolves addresses back to names, and names go \
             through the system resolver; drop {text}"
        )),
        // nmap's discovery probes (-PS80, -PE…): tcpshake scan never pings first (-Pn).
        _ if name.starts_with("-P") && name.len() > 2 => refuse(format!(
            "{text}: tcpshake scan does no host discovery: every target is scanned, as with \
             nmap's -Pn (on a local link, a host that does not answer ARP / ND is down); \
             drop {text}"
        )),
        "-oS" | "-oM" => refuse(format!(
            "{text}: tcpshake scan writes nmap's normal (-oN), greppable (-oG) and XML (-oX) \
             formats; drop {text}"
        )),
        "-sT" => refuse(
            "-sT: tcpshake scan is a SYN scan (nmap's -sS) and has no connect scan; drop -sT \
             (add --complete to connect to each open port after the scan)"
                .into(),
        ),
        _ if text.starts_with("-s") && text.len() > 2 => refuse(format!(
            "{text}: tcpshake scan does one scan type, a TCP SYN scan (nmap's -sS, always on); \
             drop {text}"
        )),
        _ if text.starts_with("-T") && text.len() > 2 => refuse(format!(
            "{text}: tcpshake scan has no timing templates: use --rate PPS (and --wait/--retries)"
        )),
        "-r" => refuse(
            "-r: tcpshake scan sends in a random order, a permutation of every (address, port) \
             keyed by --seed N, which reproduces it; drop -r"
                .into(),
        ),
        "--stats-every" => refuse(
            "--stats-every: tcpshake scan draws a progress bar on a terminal, with the rate and \
             what is left; drop --stats-every"
                .into(),
        ),
        "--packet-trace" => refuse(
            "--packet-trace: tcpshake scan prints no packet trace; capture with tcpdump on the \
             interface the route names (`ip route get ADDR`), or take one port with \
             `tcpshake probe HOST:PORT --pcap FILE`; drop --packet-trace"
                .into(),
        ),
        "--defeat-rst-ratelimit" => refuse(
            "--defeat-rst-ratelimit: tcpshake scan reads a host's RST rate limit and slows its \
             retries to it, exact (its notes say so); drop --defeat-rst-ratelimit"
                .into(),
        ),
        "--no-stylesheet" | "--stylesheet" | "--webxml" => refuse(format!(
            "{text}: tcpshake scan's -oX names nmap's stylesheet: /usr/share/nmap/nmap.xsl \
             when nmap is installed, else the copy --webxml names; drop {text}"
        )),
        "--resume" => refuse(
            "--resume: tcpshake scan cannot resume a scan; split a long one with --shard K/N \
             (the same --seed N in each) and run the shards one by one"
                .into(),
        ),
        // nmap's debug levels (-d, -dd, -d3): the output is the same whatever the level.
        _ if text.strip_prefix("-d").is_some_and(|r| {
            r.bytes().all(|b| b == b'd') || r.bytes().all(|b| b.is_ascii_digit())
        }) =>
        {
            refuse(format!(
                "{text}: tcpshake scan has no debug levels: drop {text} (--all shows every port \
                 sent to with its reason, TTL and RTT)"
            ))
        }
        "-O" => refuse(
            "-O: tcpshake scan does no OS detection; drop -O (the table's TTL column hints at \
             it: replies start at 64 from Linux, 128 from Windows, 255 from much network gear)"
                .into(),
        ),
        "-A" => refuse(
            "-A: tcpshake scan does no OS or version detection, scripts or traceroute; drop -A \
             (`tcpshake trace HOST:PORT` finds the path to a port, `tcpshake probe` times an \
             exchange with it)"
                .into(),
        ),
        // nmap's verbosity (-v, -vv…): the output is the same whatever the level.
        // Only an option: a target or a value may be made of v's too (a host `tv`, `é`).
        _ if text
            .strip_prefix('-')
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b == b'v')) =>
        {
            refuse(format!(
                "{text}: tcpshake scan has no verbosity levels: drop {text} (the table shows open \
             ports, --all every port sent to with its reason, TTL and RTT; a progress bar is \
             drawn on a terminal)"
            ))
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_options_are_taken_for_nmap_verbosity() {
        for refused in ["-v", "-vv", "-vvv"] {
            assert!(nmap_no_op(refused).is_err(), "{refused}");
        }
        // A host named `tv`, a first character of two bytes (it panicked), an option value.
        for target in ["tv", "vv", "é", "éé", "-", "v"] {
            assert!(matches!(nmap_no_op(target), Ok(false)), "{target}");
        }
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(nmap_spellings(args(&["tcpshake", "scan", "tv", "-p", "80"])).is_ok());
        assert!(nmap_spellings(args(&["tcpshake", "scan", "é", "-p", "80"])).is_ok());
        assert!(nmap_spellings(args(&["tcpshake", "scan", "tv", "-vv"])).is_err());
    }

    /// hping3's, traceroute's and mtr's habits: what `probe` and `trace` do anyway is
    /// dropped, the rest refused naming what to use (clap said "use '-- -S'", which makes
    /// the flag a target).
    #[test]
    fn hping_and_traceroute_spellings() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let ok = |v: &[&str]| nmap_spellings(args(v)).expect("accepted");
        let refused = |v: &[&str]| match nmap_spellings(args(v)) {
            Err(exit::UsageError(m)) => m,
            Ok(a) => panic!("{v:?} accepted as {a:?}"),
        };
        assert_eq!(
            ok(&["tcpshake", "probe", "-S", "-p", "80", "h", "-c", "5"]),
            args(&["tcpshake", "probe", "-p", "80", "h", "-c", "5"])
        );
        assert_eq!(
            ok(&["tcpshake", "trace", "-T", "h:80", "-r", "-n"]),
            args(&["tcpshake", "trace", "h:80"])
        );
        // hping3's -S, dropped as probe drops it (clap said "unexpected argument").
        assert_eq!(
            ok(&["tcpshake", "trace", "-S", "h:80", "--syn"]),
            args(&["tcpshake", "trace", "h:80"])
        );
        for (v, says) in [
            (&["tcpshake", "probe", "h:80", "--flood"][..], "-i DUR"),
            (
                &["tcpshake", "probe", "h:80", "-a", "198.18.0.9"],
                "own address",
            ),
            (&["tcpshake", "probe", "h:80", "-i", "u1000"], "-i 1000us"),
            (&["tcpshake", "probe", "h:80", "-1"], "drop -1"),
            (
                &["tcpshake", "probe", "h:80", "--ttl", "3"],
                "tcpshake trace",
            ),
            (&["tcpshake", "trace", "h", "-P", "80"], "-p"),
            (&["tcpshake", "trace", "h:80", "-c", "5"], "-q N"),
            (&["tcpshake", "trace", "h:80", "-I"], "TCP SYNs only"),
            (
                &["tcpshake", "probe", "h:80", "-I", "eth0"],
                "hping3's interface name",
            ),
            (
                &["tcpshake", "probe", "-k", "https://h/"],
                "--insecure here",
            ),
            (
                &["tcpshake", "probe", "-s", "h:80"],
                "curl's --silent is -q",
            ),
            (
                &["tcpshake", "probe", "-w", "%{time_connect}", "h:80"],
                "--json here",
            ),
            (
                &["tcpshake", "probe", "h:80", "--write-out=%{time_total}"],
                "--json here",
            ),
            (&["tcpshake", "probe", "h:80", "-m", "3"], "--timeout DUR"),
            (&["tcpshake", "probe", "h:80", "-m5"], "--timeout DUR"),
            (
                &["tcpshake", "probe", "-w%{time_total}", "h:80"],
                "--json here",
            ),
            (
                &["tcpshake", "probe", "h:80", "--max-time", "3"],
                "--timeout DUR",
            ),
            (
                &["tcpshake", "probe", "h:80", "--connect-timeout", "2"],
                "--rto DUR and --retries N",
            ),
            (&["tcpshake", "probe", "-v", "h:80"], "every segment"),
        ] {
            let m = refused(v);
            assert!(m.contains(says), "{v:?}: {m}");
        }
        // A negative value after an option is that option's, and a scan's -S stays nmap's.
        assert!(nmap_spellings(args(&["tcpshake", "probe", "h:80", "--retries", "-1"])).is_ok());
        assert!(nmap_spellings(args(&["tcpshake", "probe", "h:80", "-i", "1ms"])).is_ok());
        assert!(nmap_spellings(args(&["tcpshake", "scan", "h", "-S", "x"])).is_err());
        // trace's own -q, -p and probe's -c, -i, -p pass as they are.
        assert!(nmap_spellings(args(&["tcpshake", "trace", "h", "-p", "80", "-q", "5"])).is_ok());
    }

    /// `exporter --help` (and so tcpshake-exporter(1)) names every section and key of the
    /// configuration and the endpoints: the man page said only "(README.md)", which a
    /// packaged install does not have.
    #[test]
    fn exporter_help_names_every_configuration_key() {
        let mut cmd = Cli::command();
        let text = cmd
            .find_subcommand_mut("exporter")
            .expect("exporter")
            .render_long_help()
            .to_string();
        for key in [
            "[exporter]",
            "jobs",
            "reflex =",
            "[probe]",
            "allow =",
            "allow_names",
            "max_in_flight",
            "rate",
            "burst",
            "default_module",
            "[histograms]",
            "buckets",
            "[modules.NAME]",
            "prober",
            "path",
            "host_header",
            "sni",
            "cacert",
            "insecure",
            "timeout",
            "retries",
            "rto",
            "time_wait",
            "linger",
            "mss",
            "family",
            "valid_status_codes",
            "separate_ack",
            "type = \"classic\"",
            "[[survey]]",
            "name =",
            "targets",
            "target_files",
            "interval",
            "modules =",
            "slo =",
            "/metrics",
            "/probe?target=HOST:PORT",
            "debug=true",
            "X-Prometheus-Scrape-Timeout-Seconds",
        ] {
            assert!(text.contains(key), "exporter --help lacks {key}:\n{text}");
        }
    }

    /// Defaults clap cannot show (the options are optional) are written in the help text;
    /// they must be the ones `config` applies.
    #[test]
    fn defaults_written_in_the_help_are_the_applied_ones() {
        let mut cmd = Cli::command();
        let probe = cmd
            .find_subcommand_mut("probe")
            .expect("probe")
            .render_long_help();
        let text = probe.to_string();
        for want in [
            format!("[default: {}]", defaults::COUNT),
            format!("[default: {}]", defaults::JOBS),
            format!("[default: {}]", Dur(defaults::INTERVAL)),
            format!("[default: {}]", defaults::PATH),
        ] {
            assert!(text.contains(&want), "probe --help lacks {want}");
        }
    }
}

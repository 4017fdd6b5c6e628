//! One validated configuration per command, made once from the raw command line
//! ([`crate::cli`]): after [`Config::from_args`] no command checks an option again, and
//! every default lives in [`defaults`]. Like ripgrep's `LowArgs` → `HiArgs`.
//!
//! Validation is pure: syntax, ranges, options that contradict each other or that would be
//! silently ignored. What needs the system (reading `-iL` files, resolving names, loading
//! `--cacert`) happens when the command runs, with the same messages and exit codes in
//! every command (`app::targets`, `app::exit`).

use crate::app::exit::UsageError;
use crate::cli::{
    Cli, Command, ExchangeArgs, Generate, LabArgs, OutputArgs, OutputFormat, PlotKind, ProbeArgs,
    ReportArgs, ScanArgs, TlsArgs, TraceArgs,
};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tcpshake_proto::probe::scan::ports;
use tcpshake_proto::probe::scan::rtt::Wait;
use tcpshake_proto::probe::scan::targets::{self as scan_targets, Spec, TargetSpec};
use tcpshake_proto::probe::shard::Shard;
use tcpshake_proto::probe::stats::{Slo, parse_slos};
use tcpshake_proto::probe::target::{self, Family, Target};
use tcpshake_proto::time::format_duration;
use tcpshake_proto::wire::http::{check_host_field, check_request_target};

/// Every default, in one place. `--help` shows those of options with a value.
pub mod defaults {
    use std::time::Duration;
    use tcpshake_proto::probe::scan::rtt::Wait;

    /// `--path`.
    pub const PATH: &str = "/";
    /// `--timeout`: waiting for the server after the handshake.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// `--retries`: SYN retransmissions (Linux's `tcp_syn_retries` is 6; a probe is
    /// impatient).
    pub const SYN_RETRIES: u32 = 2;
    /// At most this many, so a probe's time budget stays minutes, not hours.
    pub const MAX_SYN_RETRIES: u32 = 10;
    /// `--rto`: the initial retransmission timeout (RFC 6298 §2.1).
    pub const RTO: Duration = Duration::from_secs(1);
    /// The RTO's floor: Linux's `TCP_RTO_MIN` (RFC 6298 §2.4 says 1 s; Linux and
    /// tcpshake use 200 ms). `--rto` below it is refused, not raised silently.
    pub const RTO_MIN: Duration = Duration::from_millis(200);
    /// The RTO's ceiling (RFC 6298 §2.5 allows one of at least 60 s; Linux's is 120 s).
    pub const RTO_MAX: Duration = Duration::from_secs(60);
    /// `--time-wait`.
    pub const TIME_WAIT: Duration = Duration::from_millis(250);
    /// `--linger`: waiting for the server to close first after the response.
    pub const LINGER: Duration = Duration::from_millis(200);
    /// `-c`.
    pub const COUNT: u32 = 1;
    /// `-i`.
    pub const INTERVAL: Duration = Duration::ZERO;
    /// `-j`.
    pub const JOBS: u32 = 16;
    /// `report --plot`.
    pub const PLOT: crate::cli::PlotKind = crate::cli::PlotKind::Box;
    /// `scan` without `--rate`: as fast as this host sends. The token bucket gets the
    /// option's maximum, which no send path here comes near (~0.5 M pps is this kind of
    /// host's ceiling), so the send path is the limit, as with nmap -T5 or masscan's
    /// highest rates; the rate check has nothing to hold it to.
    pub const SCAN_RATE_UNLIMITED: u64 = 100_000_000;
    /// `scan --retries`: a ceiling, as nmap's `--max-retries` (10 by default too); the
    /// rounds themselves follow the answers (one retry round, another while the last one
    /// got first answers).
    pub const SCAN_RETRIES: u8 = 10;
    /// The most `scan --retries` takes (nmap's default ceiling; more rounds than this only
    /// repeat what a lower `--rate` does better).
    pub const SCAN_RETRIES_MAX: u8 = 10;
    /// `scan --wait`: adaptive (tcpshake_proto::probe::scan::rtt).
    pub const SCAN_WAIT: Wait = Wait::Adaptive;
    /// `scan` without `-p`: nmap's most frequently open ports.
    pub const TOP_PORTS: usize = 1000;
    /// `trace --max-ttl`: as traceroute and mtr.
    pub const TRACE_MAX_TTL: u8 = 30;
    /// `trace --probes`: per TTL, as traceroute.
    pub const TRACE_PROBES: u8 = 3;
    /// `trace --parallel`: TTLs ahead of the highest whose first probe is settled.
    pub const TRACE_PARALLEL: u8 = 8;
    /// `trace --timeout`: a probe unanswered this long is lost.
    pub const TRACE_TIMEOUT: Duration = Duration::from_secs(1);
    /// `trace --interval`: between the probes of one TTL (Linux routers let a peer have 6
    /// ICMP errors at once, then one a second: three at once stay within it).
    pub const TRACE_INTERVAL: Duration = Duration::from_millis(10);
    /// `trace --gap`: silent TTLs in a row that end the trace.
    pub const TRACE_GAP: u8 = 5;
    /// `trace --in-session`: how long the close may take at least.
    pub const TRACE_CLOSE: Duration = Duration::from_secs(2);
    /// `exporter --listen`: loopback only unless told otherwise (9917: next to
    /// blackbox_exporter's 9115 range of exporter ports, unassigned).
    pub const EXPORTER_LISTEN: &str = "127.0.0.1:9917";
    /// `exporter`: probes in flight at once, surveys and /probe together.
    pub const EXPORTER_JOBS: usize = 64;
    /// `exporter`: a survey's interval.
    pub const EXPORTER_INTERVAL: Duration = Duration::from_secs(10);
    /// `exporter` /probe: requests a second, burst, in flight.
    pub const PROBE_RATE: f64 = 10.0;
    pub const PROBE_BURST: u32 = 20;
    pub const PROBE_MAX_IN_FLIGHT: usize = 8;
}

/// What to do: one command, validated.
#[derive(Debug)]
pub enum Config {
    /// `probe` with one exchange per target, one after the other.
    Probe(ProbeConfig),
    /// `probe` as a survey (`-iL`, `-c`, `-j`, a port list…).
    Survey(SurveyConfig),
    Lab(LabConfig),
    Scan(ScanConfig),
    Report(ReportConfig),
    Trace(TraceConfig),
    Exporter(ExporterConfig),
    Generate(Generate),
}

/// `tcpshake exporter`: the file is read and validated when the command runs (it may name
/// target files), with every refusal naming its line.
#[derive(Debug)]
pub struct ExporterConfig {
    pub listen: std::net::SocketAddr,
    pub file: PathBuf,
    pub records: Option<PathBuf>,
    pub check_only: bool,
}

/// The exporter's configuration file's defaults: `probe`'s own, and the exporter's.
pub fn monitor_defaults() -> tcpshake_proto::monitor::config::Defaults {
    tcpshake_proto::monitor::config::Defaults {
        timeout: defaults::TIMEOUT,
        retries: defaults::SYN_RETRIES,
        max_retries: defaults::MAX_SYN_RETRIES,
        rto: defaults::RTO,
        rto_min: defaults::RTO_MIN,
        rto_max: defaults::RTO_MAX,
        time_wait: defaults::TIME_WAIT,
        linger: defaults::LINGER,
        jobs: defaults::EXPORTER_JOBS,
        interval: defaults::EXPORTER_INTERVAL,
        probe_rate: defaults::PROBE_RATE,
        probe_burst: defaults::PROBE_BURST,
        probe_max_in_flight: defaults::PROBE_MAX_IN_FLIGHT,
    }
}

/// One exchange: what `probe`, a survey and `lab` do per target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// `None`: `--no-http`.
    pub http: Option<HttpOptions>,
    pub timeout: Duration,
    pub linger: Duration,
    pub syn_retries: u32,
    pub rto: Duration,
    pub time_wait: Duration,
    /// A fixed ISN (hidden `--isn`, for labs); random otherwise.
    pub isn: Option<u32>,
    pub tls: TlsOptions,
    /// `--mss`: the most our SYN advertises (the route's MSS when lower).
    pub mss: Option<u16>,
    /// How a message tells the user to set it (`{}`: the value): see
    /// `probe::ProbeConfig::mss_hint`.
    pub mss_hint: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// `--path`; a URL target's own path wins.
    pub path: String,
    /// `--host-header`; otherwise the target's name or address (and port).
    pub host_header: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tls`: HTTPS for every target, not only `https://` ones and port 443.
    pub force: bool,
    pub sni: Option<String>,
    pub cacert: Option<PathBuf>,
    pub insecure: bool,
    /// What a failed verification's message tells the user to set to go on anyway: the
    /// option (`--insecure`), or an exporter module's key. `None`: `--insecure`.
    pub insecure_hint: Option<&'static str>,
}

impl Default for Exchange {
    /// `tcpshake probe`'s defaults, without HTTP: what `scan --complete` does per port.
    fn default() -> Exchange {
        Exchange {
            http: None,
            timeout: defaults::TIMEOUT,
            linger: defaults::LINGER,
            syn_retries: defaults::SYN_RETRIES,
            rto: defaults::RTO,
            time_wait: defaults::TIME_WAIT,
            isn: None,
            tls: TlsOptions::default(),
            mss: None,
            mss_hint: "`--mss {}`",
        }
    }
}

impl Exchange {
    /// Whether the exchange with `t` is HTTPS.
    pub fn is_https(&self, t: &Target) -> bool {
        t.tls || self.tls.force
    }
}

#[derive(Debug)]
pub struct ProbeConfig {
    pub targets: Vec<Target>,
    pub family: Family,
    pub exchange: Exchange,
    pub json: bool,
    pub pcap: Option<PathBuf>,
    pub pcapng: Option<PathBuf>,
}

#[derive(Debug)]
pub struct LabConfig {
    pub exchange: Exchange,
    pub json: bool,
    pub pcap: Option<PathBuf>,
    pub pcapng: Option<PathBuf>,
}

#[derive(Debug)]
pub struct SurveyConfig {
    /// The command line's targets, already over the `-p` ports.
    pub targets: Vec<Target>,
    /// `-iL`: read as the survey goes (`-` is stdin).
    pub list: Option<PathBuf>,
    /// `-p`, for the list's targets.
    pub ports: Vec<u16>,
    pub family: Family,
    pub exchange: Exchange,
    pub format: OutputFormat,
    pub quiet: bool,
    pub slos: Vec<Slo>,
    pub shard: Option<Shard>,
    pub count: u32,
    pub interval: Duration,
    pub jobs: u32,
    pub separate_ack: bool,
    pub reflex: bool,
    pub pcap: Option<PathBuf>,
    pub pcapng: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ScanConfig {
    pub targets: Vec<TargetSpec>,
    pub list: Option<PathBuf>,
    pub exclude: Vec<TargetSpec>,
    pub exclude_list: Option<PathBuf>,
    pub ports: Vec<u16>,
    pub seed: Option<u64>,
    pub shard: Shard,
    /// `--rate`; none: as fast as this host sends.
    pub rate: Option<u64>,
    pub retries: u8,
    pub wait: Wait,
    /// `--send-ip`: the kernel's path, no frames and no resolution of our own.
    pub send_ip: bool,
    pub source_port: Option<u16>,
    pub family: Family,
    pub all: bool,
    pub json: bool,
    /// `-oN`: the table, to a file as well (`-`: stdout, where it goes anyway).
    pub output_normal: Option<PathBuf>,
    pub output_greppable: Option<PathBuf>,
    pub output_xml: Option<PathBuf>,
    /// The options that named the -oN, -oG and -oX files, for messages about them (`-oA`
    /// for all three when it named them).
    pub output_flags: [&'static str; 3],
    pub complete: bool,
    /// nmap's `--open`: the table, -oN, -oG and -oX show only hosts with an open port, and
    /// of them only the open ports.
    pub open: bool,
}

/// The file nmap's `-oA BASE` writes a format to: `BASE.nmap`, `BASE.gnmap`, `BASE.xml`
/// (appended, as nmap does: `-oA scan.v2` writes `scan.v2.xml`).
fn with_suffix(base: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn nmap_suffix(flag: &str) -> &'static str {
    match flag {
        "-oN" => "nmap",
        "-oG" => "gnmap",
        _ => "xml",
    }
}

#[derive(Debug)]
pub struct ReportConfig {
    pub files: Vec<PathBuf>,
    pub svg: Option<PathBuf>,
    pub plot: PlotKind,
    pub slos: Vec<Slo>,
    pub json: bool,
    pub quiet: bool,
}

#[derive(Debug)]
pub struct TraceConfig {
    pub target: Target,
    pub family: Family,
    pub in_session: bool,
    pub json: bool,
    pub pcap: Option<PathBuf>,
    pub pcapng: Option<PathBuf>,
    pub first_ttl: u8,
    pub max_ttl: u8,
    pub probes: u8,
    pub parallel: u8,
    pub timeout: Duration,
    pub interval: Duration,
    pub gap: u8,
    pub tos: u8,
    pub source_port: Option<u16>,
    pub isn: Option<u32>,
}

/// Why a command line was not accepted: clap's own error (its message, exit 2; or help
/// and version, exit 0), or ours.
#[derive(Debug)]
pub enum Refused {
    Clap(clap::Error),
    Usage(UsageError),
}

type Result<T> = std::result::Result<T, UsageError>;

fn refuse<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()))
}

impl Config {
    /// Parse and validate a whole command line (`argv[0]` first).
    pub fn parse_from<I, T>(argv: I) -> std::result::Result<Config, Refused>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        let argv =
            crate::cli::nmap_spellings(argv.into_iter().map(Into::into)).map_err(Refused::Usage)?;
        let lab = argv.get(1).is_some_and(|a| a == "lab");
        let cli = Cli::try_parse_from(argv).map_err(|e| match lab_refusal(lab, &e) {
            Some(m) => Refused::Usage(UsageError(m)),
            None => Refused::Clap(e),
        })?;
        Config::from_args(cli).map_err(Refused::Usage)
    }

    /// Validate parsed arguments into the command's configuration.
    pub fn from_args(cli: Cli) -> Result<Config> {
        match cli.command {
            Command::Probe(a) => {
                for (given, format) in [
                    (a.survey.csv_guess, "csv"),
                    (a.survey.influx_guess, "influx"),
                ] {
                    if given {
                        return refuse(format!(
                            "--{format} is not an option; write -o {format} (a survey's \
                             per-probe output format: text, jsonl, csv or influx)"
                        ));
                    }
                }
                let ports = probe_ports(&a.port)?;
                if a.survey.wanted() || ports.len() > 1 {
                    survey(a, ports)
                } else {
                    probe(a, ports)
                }
            }
            Command::Lab(a) => lab(a),
            Command::Scan(a) => scan(a),
            Command::Report(a) => report(a),
            Command::Trace(a) => trace(a),
            Command::Exporter(a) => exporter(a),
            Command::Generate(g) => Ok(Config::Generate(g.what)),
        }
    }
}

fn exchange(a: &ExchangeArgs, tls: &TlsArgs) -> Result<Exchange> {
    let timeout = a.timeout.0;
    if timeout.is_zero() {
        return refuse(
            "--timeout 0s would give up before the server could answer; give a positive \
             duration, e.g. --timeout 5s",
        );
    }
    let rto = a.rto.0;
    if rto < defaults::RTO_MIN {
        return refuse(format!(
            "--rto {} is below the floor of {} (Linux's minimum RTO; RFC 6298 §2.4 asks for \
             1s): give at least --rto {}",
            format_duration(rto),
            format_duration(defaults::RTO_MIN),
            format_duration(defaults::RTO_MIN)
        ));
    }
    if rto > defaults::RTO_MAX {
        return refuse(format!(
            "--rto {} is above the ceiling of {} (RFC 6298 §2.5); give at most --rto {}",
            format_duration(rto),
            format_duration(defaults::RTO_MAX),
            format_duration(defaults::RTO_MAX)
        ));
    }
    let http = if a.no_http {
        for (given, name) in [
            (a.path.is_some(), "--path"),
            (a.host_header.is_some(), "--host-header"),
        ] {
            if given {
                return refuse(format!(
                    "{name} shapes the HTTP request, which --no-http leaves out; drop one of them"
                ));
            }
        }
        None
    } else {
        let path = a.path.clone().unwrap_or_else(|| defaults::PATH.to_string());
        check_request_target(&path)
            .or_else(|e| refuse(format!("--path `{}`: {e}", path.escape_debug())))?;
        if let Some(h) = &a.host_header {
            check_host_field(h)
                .or_else(|e| refuse(format!("--host-header `{}`: {e}", h.escape_debug())))?;
        }
        Some(HttpOptions {
            path,
            host_header: a.host_header.clone(),
        })
    };
    if let Some(sni) = &tls.sni
        && rustls::pki_types::ServerName::try_from(sni.as_str()).is_err()
    {
        return refuse(format!(
            "--sni `{}` is not a DNS name or an address",
            sni.escape_debug()
        ));
    }
    Ok(Exchange {
        http,
        timeout,
        linger: a.linger.0,
        syn_retries: a.retries,
        rto,
        time_wait: a.time_wait.0,
        isn: a.isn,
        tls: TlsOptions {
            force: tls.tls,
            sni: tls.sni.clone(),
            cacert: tls.cacert.clone(),
            insecure: tls.insecure,
            insecure_hint: None,
        },
        mss: a.mss,
        mss_hint: "`--mss {}`",
    })
}

/// `--sni`, `--cacert` and `--insecure` act on HTTPS exchanges only: given where none can
/// happen, they would be ignored, so they are refused.
fn check_tls_used(exchange: &Exchange, targets: &[Target]) -> Result<()> {
    if exchange.tls.force || targets.iter().any(|t| t.tls) {
        return Ok(());
    }
    let t = &exchange.tls;
    for (given, name) in [
        (t.sni.is_some(), "--sni"),
        (t.cacert.is_some(), "--cacert"),
        (t.insecure, "--insecure"),
    ] {
        if given {
            return refuse(format!(
                "{name} applies to HTTPS, and no target is HTTPS; use an https:// target, \
                 port 443, or add --tls"
            ));
        }
    }
    Ok(())
}

/// Command-line targets: each parsed and checked against `-4`/`-6`. A mistake here is a
/// usage error before anything is sent.
fn probe_targets(specs: &[String], ports: &[u16], family: Family) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(target::expand(spec, ports, family).map_err(UsageError)?);
    }
    Ok(out)
}

/// `probe -p` (each `-p` a port or a list of them): single ports, no ranges (those are
/// `scan`'s), and no port 0.
fn probe_ports(given: &[String]) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    for list in given {
        for item in list.split(',') {
            // As `scan -p` says it: the same mistake, the same words in every command.
            if item.trim().is_empty() && list.contains(',') {
                return refuse(format!(
                    "-p `{list}`: an empty item between commas; write e.g. -p 80,443"
                ));
            }
            if let Some(range) = port_range(item) {
                let Some((example, scan)) = range_instead(range) else {
                    return Err(only_port_zero(list));
                };
                return refuse(format!(
                    "-p `{list}`: probe takes single ports, not ranges; list them \
                     (-p {example}) or scan the range: {scan}"
                ));
            }
            out.push(
                target::port_number(item, 1)
                    .map_err(|e| UsageError(format!("-p `{list}`: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// A port range as `scan -p` writes them (`80-82`, nmap's open ends `80-`, `-1024`, and
/// `-` for all): its two ends, each `None` when left open. Where a command takes single
/// ports, a range is said as a range, not as "not a port" — and `80-`, which clap would
/// take for a port followed by nothing, gets the same answer as `80-82`.
fn port_range(item: &str) -> Option<(Option<u16>, Option<u16>)> {
    let (a, b) = item.trim().split_once('-')?;
    let end = |e: &str| match e.trim() {
        "" => Ok(None),
        e => e.parse::<u16>().map(Some),
    };
    Some((end(a).ok()?, end(b).ok()?))
}

/// A range that holds no port but 0 (`0-0`, `-0`): port 0's own message.
fn only_port_zero(given: &str) -> UsageError {
    let why = target::port_number("0", 1).err().unwrap_or_default();
    UsageError(format!("-p `{given}`: {why}"))
}

/// What to type instead of a range where single ports are taken: the first ports of it
/// listed, and the scan that takes the range (ends swapped when both are given backwards,
/// which `scan` would refuse). `None` when it holds no port but 0 (`0-0`, `-0`): that is
/// port 0's mistake, and its message says so.
fn range_instead((a, b): (Option<u16>, Option<u16>)) -> Option<(String, String)> {
    let (lo, hi) = match (a, b) {
        (Some(a), Some(b)) => (a.min(b), a.max(b)),
        (a, b) => (a.unwrap_or(1), b.unwrap_or(u16::MAX)),
    };
    let lo = lo.max(1);
    if hi < lo {
        return None;
    }
    let example = (lo..=hi.min(lo.saturating_add(2)))
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    Some((example, format!("`tcpshake scan HOST -p {lo}-{hi}`")))
}

/// `-p` is the port of targets that do not name one (and of `-iL` lines): when every
/// target on the command line names its own and no list is read, it would be ignored, so
/// it is refused. `given`: `-p` as written.
fn check_port_used(given: &str, specs: &[String], list: bool) -> Result<()> {
    if given.is_empty() || list || specs.is_empty() || !specs.iter().all(|s| target::names_port(s))
    {
        return Ok(());
    }
    let instead = match target::parse(&specs[0], None) {
        Ok(t) if !target::is_url(&specs[0]) => format!(" (`{} -p {given}`)", t.host),
        _ => String::new(),
    };
    if let [spec] = specs {
        refuse(format!(
            "-p {given} would be ignored: `{spec}` names its own port, and a target's port wins; \
             drop -p, or drop the port from the target{instead}"
        ))
    } else {
        refuse(format!(
            "-p {given} would be ignored: every target names its own port, and a target's port \
             wins; drop -p, or drop the ports from the targets"
        ))
    }
}

/// A URL's path is its request's: `--path` beside a URL on the command line would be
/// ignored for it, so it is refused. (In an `-iL` list, `--path` is for the lines that are
/// not URLs.)
fn check_path_used(path: Option<&str>, specs: &[String], list: bool) -> Result<()> {
    // As for -p: refused when it would be ignored for every target; beside a target that is
    // not a URL, or a list whose lines may not be, it has its use.
    if list || !specs.iter().all(|s| target::is_url(s)) {
        return Ok(());
    }
    let (Some(path), Some(url)) = (path, specs.first()) else {
        return Ok(());
    };
    // The URL with --path in it: scheme and authority, then the path.
    let (scheme, rest) = url.trim().split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    refuse(format!(
        "--path {path} would be ignored: `{url}` is a URL, and a URL's path is the one sent; \
         drop --path, or put the path in the URL (`{scheme}://{authority}{path}`)"
    ))
}

fn probe(a: ProbeArgs, ports: Vec<u16>) -> Result<Config> {
    // What would be ignored is refused: a single probe always sends the handshake's ACK
    // alone, from this program (the kernel program is a survey's).
    for (given, name, why) in [
        (
            a.survey.separate_ack,
            "--separate-ack",
            "always sends the handshake's ACK alone",
        ),
        (
            a.survey.no_reflex,
            "--no-reflex",
            "always sends its ACK from this program",
        ),
    ] {
        if given {
            return refuse(format!(
                "{name} is for surveys, and a single probe {why}: drop it, or make this a \
                 survey (-c 1 probes each target once)"
            ));
        }
    }
    let family = Family::from_flags(a.ipv4, a.ipv6);
    check_port_used(&a.port.join(","), &a.targets, false)?;
    check_path_used(a.exchange.path.as_deref(), &a.targets, false)?;
    let exchange = exchange(&a.exchange, &a.tls)?;
    let targets = probe_targets(&a.targets, &ports, family)?;
    check_tls_used(&exchange, &targets)?;
    check_captures(&a.output)?;
    Ok(Config::Probe(ProbeConfig {
        targets,
        family,
        exchange,
        json: a.output.json,
        pcap: a.output.pcap,
        pcapng: a.output.pcapng,
    }))
}

fn survey(a: ProbeArgs, ports: Vec<u16>) -> Result<Config> {
    let family = Family::from_flags(a.ipv4, a.ipv6);
    check_port_used(&a.port.join(","), &a.targets, a.survey.input_list.is_some())?;
    check_path_used(
        a.exchange.path.as_deref(),
        &a.targets,
        a.survey.input_list.is_some(),
    )?;
    let exchange = exchange(&a.exchange, &a.tls)?;
    let targets = probe_targets(&a.targets, &ports, family)?;
    let sv = &a.survey;
    if sv.input_list.is_none() {
        check_tls_used(&exchange, &targets)?;
    }
    let format = match (sv.output, a.output.json) {
        (Some(f), false) | (Some(f @ OutputFormat::Jsonl), true) => f,
        (Some(f), true) => {
            let name = match f {
                OutputFormat::Csv => "csv",
                OutputFormat::Influx => "influx",
                _ => "text",
            };
            return refuse(format!(
                "--json and -o {name} ask for two formats; give one of them"
            ));
        }
        (None, true) => OutputFormat::Jsonl,
        (None, false) => OutputFormat::Text,
    };
    let slos = match &sv.slo {
        Some(s) => parse_slos(s).map_err(UsageError)?,
        None => Vec::new(),
    };
    let count = sv.count.unwrap_or(defaults::COUNT);
    // What would be ignored is refused: -i spaces the probes of one target, of which one
    // probe has none to space.
    if let Some(i) = sv.interval
        && count == 1
        && !i.0.is_zero()
    {
        return refuse(format!(
            "-i {} spaces the probes of each target, and each gets one (-c {count}): give -c 2 \
             or more, or drop -i",
            format_duration(i.0)
        ));
    }
    check_captures(&a.output)?;
    Ok(Config::Survey(SurveyConfig {
        targets,
        list: sv.input_list.clone(),
        ports,
        family,
        exchange,
        format,
        quiet: sv.quiet,
        slos,
        shard: sv.shard,
        count,
        interval: sv.interval.map_or(defaults::INTERVAL, |d| d.0),
        jobs: sv.jobs.unwrap_or(defaults::JOBS),
        separate_ack: sv.separate_ack,
        reflex: !sv.no_reflex,
        pcap: a.output.pcap.clone(),
        pcapng: a.output.pcapng.clone(),
    }))
}

fn lab(a: LabArgs) -> Result<Config> {
    check_captures(&a.output)?;
    let LabArgs {
        exchange: ex,
        output: OutputArgs { json, pcap, pcapng },
    } = a;
    Ok(Config::Lab(LabConfig {
        exchange: exchange(&ex, &TlsArgs::default())?,
        json,
        pcap,
        pcapng,
    }))
}

/// `lab` probes its own server and takes no target, nor `probe`'s survey and TLS options: a
/// newcomer who tries `tcpshake lab 198.18.0.2:80` or `lab -c 5` is told where those go, not
/// only clap's "unexpected argument".
fn lab_refusal(lab: bool, e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !lab || e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
    Some(if name.starts_with('-') {
        // Only `probe`'s own options are sent there; anything else stays clap's.
        let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        let probe = cmd.find_subcommand("probe")?;
        let known = probe
            .get_arguments()
            .any(|a| match name.strip_prefix("--") {
                // Hidden aliases too (`--ports`, scan's spelling of `-p`).
                Some(long) => {
                    a.get_long() == Some(long)
                        || a.get_all_aliases().is_some_and(|l| l.contains(&long))
                }
                None => a.get_short().is_some_and(|c| name == format!("-{c}")),
            });
        if !known {
            return None;
        }
        format!(
            "{name}: tcpshake lab takes only the options of its one exchange per family \
             (`tcpshake lab --help`); {name} is for `tcpshake probe TARGET…`"
        )
    } else {
        format!(
            "`{arg}`: tcpshake lab takes no target: it builds its own namespaces and probes \
             its server, 198.18.0.2 and fd00::2; to probe `{arg}`, `tcpshake probe {arg}`"
        )
    })
}

/// An output file given as `-` is refused: tcpdump's `-w -` and `-iL -`/`-oX -` here mean
/// stdout or stdin, but where stdout carries the command's output the file would be one
/// named `-`, made in the working directory unasked.
fn not_stdout(flag: &str, path: Option<&std::path::Path>, example: &str, read: &str) -> Result<()> {
    if path.is_some_and(|p| p.as_os_str() == "-") {
        return refuse(format!(
            "{flag} -: this is written to a file, not to stdout (which carries the command's \
             output); give a file (e.g. {flag} {example}), then read it with {read}, or write \
             ./- for a file named -"
        ));
    }
    Ok(())
}

/// `--pcap F --pcapng F`: two formats cannot share one file; neither may be `-`.
fn check_captures(o: &OutputArgs) -> Result<()> {
    not_stdout("--pcap", o.pcap.as_deref(), "x.pcap", "`tshark -r FILE`")?;
    not_stdout(
        "--pcapng",
        o.pcapng.as_deref(),
        "x.pcapng",
        "`tshark -r FILE`",
    )?;
    match (&o.pcap, &o.pcapng) {
        (Some(a), Some(b)) if a == b => refuse(format!(
            "--pcap and --pcapng both name {}; give each its own file",
            a.display()
        )),
        _ => Ok(()),
    }
}

/// A scan target spec, checked against `-4`/`-6` when it is made of addresses; one no TCP
/// peer can be at is refused (`not_a_peer_spec`).
pub fn scan_spec(text: &str, family: Family) -> std::result::Result<TargetSpec, String> {
    let spec = addr_spec(text, family)?;
    if let TargetSpec::Addrs(s) = &spec {
        not_a_peer_spec(text, s)?;
        // As every command refuses it (`target::mapped_message`).
        if let Some(std::net::IpAddr::V6(first)) = s.get(0)
            && let Some(v4) = first.to_ipv4_mapped()
        {
            return Err(format!(
                "`{text}`: {}; give the IPv4 address: {v4}",
                target::mapped_message(first)
            ));
        }
    }
    Ok(spec)
}

/// A spec of addresses to leave out (`--exclude`, `--excludefile`): as a target's, but
/// multicast, broadcast and unspecified addresses are welcome — bogon lists (masscan's
/// exclude.conf) name exactly those, and refusing or skipping them would scan them.
pub fn exclude_spec(text: &str, family: Family) -> std::result::Result<TargetSpec, String> {
    // A scan's IPv6 targets are /112 blocks at most, and so are the exclusions it keeps
    // (a wider block does not fit its ranges): say so in an exclusion's words.
    if let Some((addr, bits)) = text.trim().split_once('/')
        && addr.contains(':')
        && let Ok(bits) = bits.parse::<u32>()
        && bits < 128 - scan_targets::MAX_V6_PREFIX_BITS
    {
        return Err(format!(
            "`{text}`: IPv6 exclusions wider than a /{} are not supported (the widest IPv6 \
             block a scan takes): exclude the /{} blocks of it that you scan",
            128 - scan_targets::MAX_V6_PREFIX_BITS,
            128 - scan_targets::MAX_V6_PREFIX_BITS
        ));
    }
    // An exclusion leaves addresses out, never ports: "scan it with -p" would be the
    // opposite of what was asked.
    if let Some((host, _)) = with_port(text) {
        return Err(format!(
            "`{text}`: an exclusion is addresses only, every port of them left out; write \
             `{host}` (the ports scanned are -p's)"
        ));
    }
    addr_spec(text, family)
}

/// A spec written with a port after it: its host part, and the port when it is one.
/// HOST:PORT and URLs (`target::parse`), and SPEC:SOMETHING that is no port
/// (`198.18.0.2:8o`, `198.18.0.2:`, `198.18.0.1-5:80`, `198.18.0.0/24:80`, `[fd00::2]:8o`),
/// for which "not an IPv6 address" or "not a prefix length" would send the user the wrong
/// way. One colon is no IPv6 address; brackets end one.
fn with_port(text: &str) -> Option<(String, Option<u16>)> {
    if text.parse::<std::net::IpAddr>().is_err()
        && let Ok(t) = target::parse(text, None)
    {
        let host = match &t.host {
            target::Host::Ip(ip) => ip.to_string(),
            target::Host::Name(n) => n.clone(),
        };
        return Some((host, Some(t.port)));
    }
    let host = match text.strip_prefix('[').and_then(|t| t.split_once("]:")) {
        Some((v6, _)) => Some(v6),
        None => text
            .split_once(':')
            .filter(|(_, rest)| !rest.contains(':') && !text.contains("://"))
            .map(|(host, _)| host),
    }?;
    (target::Host::parse(host).is_ok() || scan_targets::parse(host).is_ok())
        .then(|| (host.to_string(), None))
}

/// What target and exclusion specs share: one spec in nmap's syntax, checked against
/// `-4`/`-6` when it is made of addresses.
fn addr_spec(text: &str, family: Family) -> std::result::Result<TargetSpec, String> {
    // nmap's habit is addresses and -p; a HOST:PORT (or a URL) is said the scan's way.
    match with_port(text) {
        Some((host, Some(port))) => {
            return Err(format!(
                "`{text}`: scan takes ports with -p: `tcpshake scan {host} -p {port}`"
            ));
        }
        Some((host, None)) => {
            return Err(format!(
                "`{text}`: scan takes ports with -p, not after the address: \
                 `tcpshake scan {host} -p PORTS`"
            ));
        }
        None => {}
    }
    let spec = scan_targets::parse(text)?;
    if let TargetSpec::Addrs(s) = &spec {
        let v6 = matches!(s, Spec::Range { v6: true, .. });
        let fits = match family {
            Family::Any => true,
            Family::V4 => !v6,
            Family::V6 => v6,
        };
        if !fits {
            return Err(target::family_mismatch(text, v6, family));
        }
    }
    Ok(spec)
}

/// A spec of one address no TCP connection can be made to (`target::not_a_peer`), or a
/// block of multicast addresses only (`224.0.0.0/24`), is refused: no SYN to it can be
/// answered. A block that merely includes one (`0.0.0.0/8`, a subnet's broadcast address)
/// is scanned as nmap scans it.
pub(crate) fn not_a_peer_spec(text: &str, s: &Spec) -> std::result::Result<(), String> {
    let (Some(first), Some(last)) = (s.get(0), s.len().checked_sub(1).and_then(|i| s.get(i)))
    else {
        return Ok(());
    };
    if s.len() == 1 {
        return target::connectable_address(first).map_err(|e| {
            match text.trim() == first.to_string() {
                true => e,
                false => format!("`{text}`: {e}"),
            }
        });
    }
    // Multicast is one block per family (224.0.0.0/4, ff00::/8): both ends in it, all in it.
    if first.is_multicast() && last.is_multicast() {
        return Err(format!(
            "`{text}`: every address in it is a multicast address: no TCP connection can be \
             made to them; give unicast addresses"
        ));
    }
    Ok(())
}

fn scan(a: ScanArgs) -> Result<Config> {
    let family = Family::from_flags(a.ipv4, a.ipv6);
    if a.targets.is_empty() && a.input_list.is_none() {
        return refuse("no targets: give addresses, ranges or CIDR blocks, or -iL FILE");
    }
    let targets = a
        .targets
        .iter()
        .map(|t| scan_spec(t, family))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(UsageError)?;
    let exclude = a
        .exclude
        .iter()
        .map(|t| exclude_spec(t, Family::Any).map_err(|e| format!("--exclude: {e}")))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(UsageError)?;
    // One stdin: both would read it, the first to get there taking everything, and the
    // exclusions came back empty without a word — a scan of what was to be kept out.
    let stdin = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if stdin(&a.input_list) && stdin(&a.excludefile) {
        return refuse(
            "-iL - and --excludefile - both read stdin, which only one of them can: put the \
             exclusions (or the targets) in a file, e.g. --excludefile exclude.txt",
        );
    }
    let ports = match (&a.ports, a.top_ports) {
        (Some(p), _) => ports::parse(p).map_err(|e| format!("-p `{p}`: {e}")),
        (None, Some(n)) => ports::top(n),
        (None, None) => ports::top(defaults::TOP_PORTS),
    }
    .map_err(UsageError)?;
    // nmap's -oA BASE: the three formats, each to its own file.
    let (mut output_normal, mut output_greppable, mut output_xml) =
        (a.output_normal, a.output_greppable, a.output_xml);
    if let Some(base) = &a.output_all {
        if base.as_os_str() == "-" {
            return refuse(
                "-oA - would send three formats to stdout; give a base name (-oA scan writes \
                 scan.nmap, scan.gnmap and scan.xml), or one format with -oN/-oG/-oX -",
            );
        }
        for (given, flag) in [
            (output_normal.is_some(), "-oN"),
            (output_greppable.is_some(), "-oG"),
            (output_xml.is_some(), "-oX"),
        ] {
            if given {
                return refuse(format!(
                    "-oA {} already writes {flag}'s format (to {}); drop {flag} or -oA",
                    base.display(),
                    with_suffix(base, nmap_suffix(flag)).display()
                ));
            }
        }
        output_normal = Some(with_suffix(base, "nmap"));
        output_greppable = Some(with_suffix(base, "gnmap"));
        output_xml = Some(with_suffix(base, "xml"));
    }
    // Only one format can own stdout, as with nmap's `-oX -`: a parser reading it must
    // find nothing else there. (`-oN -` is the table, which stdout has anyway.)
    let stdout = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let on_stdout: Vec<&str> = [
        (a.json, "--json"),
        (stdout(&output_normal), "-oN -"),
        (stdout(&output_xml), "-oX -"),
        (stdout(&output_greppable), "-oG -"),
    ]
    .into_iter()
    .filter_map(|(given, name)| given.then_some(name))
    .collect();
    if let [one, two, ..] = on_stdout.as_slice() {
        return refuse(format!(
            "{one} and {two} both write to stdout; send one of them to a file (e.g. -oX scan.xml)"
        ));
    }
    // nmap's --open: only hosts with an open port, and only their open ports, in the table
    // and in nmap's formats, which fold the rest as nmap does (`report::scan_nmap`).
    // --all asks for every port and --json is a line per answer, not nmap's: either would
    // ignore it.
    if a.open {
        for (given, name) in [(a.all, "--all"), (a.json, "--json")] {
            if given {
                return refuse(format!(
                    "--open would be ignored by {name}, which lists closed and filtered ports \
                     too; drop --open, or pick the open ports from it (--json: \
                     `jq 'select(.state==\"open\")'`)"
                ));
            }
        }
    }
    let shard = match a.shard {
        Some(s) if a.seed.is_none() => {
            return refuse(format!(
                "--shard {s} needs --seed N, the same N for every shard, so that the shards \
                 cut one order into disjoint slices"
            ));
        }
        Some(s) => s,
        None => Shard::WHOLE,
    };
    Ok(Config::Scan(ScanConfig {
        targets,
        list: a.input_list,
        exclude,
        exclude_list: a.excludefile,
        ports,
        seed: a.seed,
        shard,
        rate: a.rate.or(a.max_rate),
        retries: a.retries,
        wait: a.wait.map_or(defaults::SCAN_WAIT, |d| Wait::Fixed(d.0)),
        send_ip: a.send_ip,
        source_port: a.source_port,
        family,
        all: a.all,
        json: a.json,
        output_normal,
        output_greppable,
        output_xml,
        output_flags: if a.output_all.is_some() {
            ["-oA"; 3]
        } else {
            ["-oN", "-oG", "-oX"]
        },
        complete: a.complete,
        open: a.open,
    }))
}

fn exporter(a: crate::cli::ExporterArgs) -> Result<Config> {
    not_stdout(
        "--records",
        a.records.as_deref(),
        "records.jsonl",
        "`tcpshake report FILE` or `tail -f FILE`",
    )?;
    let listen = a.listen.parse().or_else(|_| {
        refuse(format!(
            "--listen `{}` is not ADDR:PORT; write e.g. 127.0.0.1:9917 or [::1]:9917",
            a.listen.escape_debug()
        ))
    })?;
    Ok(Config::Exporter(ExporterConfig {
        listen,
        file: a.config,
        records: a.records,
        check_only: a.check_config,
    }))
}

fn report(a: ReportArgs) -> Result<Config> {
    not_stdout("--svg", a.svg.as_deref(), "plot.svg", "a browser")?;
    if a.plot.is_some() && a.svg.is_none() {
        return refuse("--plot chooses the kind of --svg plot; give --svg FILE too");
    }
    let slos = match &a.slo {
        Some(s) => parse_slos(s).map_err(UsageError)?,
        None => Vec::new(),
    };
    Ok(Config::Report(ReportConfig {
        files: a.files,
        svg: a.svg,
        plot: a.plot.unwrap_or(defaults::PLOT),
        slos,
        json: a.json,
        quiet: a.quiet,
    }))
}

fn trace(a: TraceArgs) -> Result<Config> {
    let family = Family::from_flags(a.ipv4, a.ipv6);
    if let Some(p) = &a.port {
        check_port_used(p, std::slice::from_ref(&a.target), false)?;
    }
    let ports = match &a.port {
        // One port: a list or a range is said as such, not as "not a port"; a stray comma
        // as probe and scan say it.
        Some(p) if p.contains(',') && p.split(',').any(|i| i.trim().is_empty()) => {
            return refuse(format!(
                "-p `{p}`: an empty item between commas; trace follows one port: write e.g. \
                 -p 80"
            ));
        }
        Some(p) if p.contains(',') => {
            return refuse(format!(
                "-p `{p}`: trace follows one port; trace each port in a run of its own"
            ));
        }
        Some(p) if let Some(range) = port_range(p) => {
            let Some((_, scan)) = range_instead(range) else {
                return Err(only_port_zero(p));
            };
            return refuse(format!(
                "-p `{p}`: trace follows one port, not a range; give one, or scan the \
                 range: {scan}"
            ));
        }
        Some(p) => {
            vec![target::port_number(p, 1).map_err(|e| UsageError(format!("-p `{p}`: {e}")))?]
        }
        None => Vec::new(),
    };
    let target = target::expand(&a.target, &ports, family)
        .map_err(UsageError)?
        .into_iter()
        .next()
        .ok_or_else(|| UsageError(format!("`{}`: no target", a.target)))?;
    // What would be ignored is refused: a trace sends no HTTP request.
    if let Some(path) = target.path.as_deref().filter(|p| *p != "/") {
        return refuse(format!(
            "`{}`: a trace sends no HTTP request, so the path `{path}` would go unused; give \
             the URL without it, or {}:{}",
            a.target, target.host, target.port
        ));
    }
    if a.first_ttl > a.max_ttl {
        return refuse(format!(
            "--first-ttl {} is above --max-ttl {}; give a first TTL at or below the last",
            a.first_ttl, a.max_ttl
        ));
    }
    let probes = (usize::from(a.max_ttl - a.first_ttl) + 1) * usize::from(a.probes);
    if probes > tcpshake_proto::trace::MAX_PROBES {
        return refuse(format!(
            "{probes} probes (TTLs {} to {} × --probes {}); at most {}: lower --max-ttl or --probes",
            a.first_ttl,
            a.max_ttl,
            a.probes,
            tcpshake_proto::trace::MAX_PROBES
        ));
    }
    check_captures(&a.output)?;
    if a.timeout.0.is_zero() {
        return refuse(
            "--timeout 0s would give up every probe at once; give a positive duration, e.g. \
             --timeout 1s",
        );
    }
    Ok(Config::Trace(TraceConfig {
        target,
        family,
        in_session: a.in_session,
        json: a.output.json,
        pcap: a.output.pcap,
        pcapng: a.output.pcapng,
        first_ttl: a.first_ttl,
        max_ttl: a.max_ttl,
        probes: a.probes,
        parallel: a.parallel,
        timeout: a.timeout.0,
        interval: a.interval.0,
        gap: a.gap,
        tos: a.tos,
        source_port: a.source_port,
        isn: a.isn,
    }))
}

#[cfg(test)]
mod tests;

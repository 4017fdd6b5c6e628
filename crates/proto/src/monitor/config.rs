//! The exporter's configuration file, validated once at start: every refusal names the
//! line it is about (`line 12: …`; the caller adds the file's name).
//!
//! The format is TOML, not the YAML of blackbox_exporter's `blackbox.yml`: the parser
//! (the `toml` crate, the one Cargo reads its manifests with) keeps the byte span of every
//! value, so a refusal found after parsing — a CIDR with host bits set, a module no survey
//! can use — still names its line, and TOML has no implicit typing (YAML 1.1 reads `no` as
//! false and `010` as eight; serde_yaml is archived). A blackbox module maps over as a
//! table: `[modules.http_2xx]` with `prober = "http"`.
//!
//! ```toml
//! [exporter]
//! jobs = 64                     # probes in flight at once, surveys and /probe together
//! reflex = true                 # the kernel program answers SYN-ACKs; false: as --no-reflex
//!
//! [probe]                       # GET /probe?target=HOST:PORT&module=NAME
//! allow = ["198.18.0.0/15"]     # addresses /probe may reach (none: /probe refuses all)
//! allow_names = ["*.lab.test"]  # names it may resolve; their addresses must be in `allow`
//! max_in_flight = 8
//! rate = 10                     # requests a second, bursts of `burst`
//! burst = 20
//! default_module = "http"
//!
//! [histograms]
//! type = "classic"              # classic buckets (text), or native / both (protobuf)
//! buckets = { start = "10us", factor = 2, count = 21 }   # or a list: ["100us", "1ms"]
//!
//! [modules.web]
//! prober = "https"              # http | https | tcp
//! path = "/healthz"
//! host_header = "www.lab.test"
//! sni = "www.lab.test"
//! cacert = "/etc/tcpshake/ca.pem"
//! timeout = "5s"
//! family = "ipv4"               # any | ipv4 | ipv6
//!
//! [[survey]]
//! name = "fleet"
//! targets = ["198.18.0.2:80", "www.lab.test:443"]
//! target_files = ["/etc/tcpshake/fleet.txt"]
//! interval = "10s"
//! modules = ["http"]
//! slo = ["syn_to_synack.p99<5ms"]
//! ```

use crate::monitor::allow::{AllowList, Cidr, NamePattern};
use crate::probe::record::ProbeResult;
use crate::probe::stats::{Slo, parse_slo};
use crate::probe::target::{self, Family, Host, Target};
use crate::time::{format_duration, parse_duration};
use crate::wire::http::{check_host_field, check_request_target};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Defaults the binary decides (`config::defaults`), so that a module without a `timeout`
/// waits as long as `tcpshake probe` does.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub timeout: Duration,
    pub retries: u32,
    pub max_retries: u32,
    pub rto: Duration,
    pub rto_min: Duration,
    pub rto_max: Duration,
    pub time_wait: Duration,
    pub linger: Duration,
    pub jobs: usize,
    pub interval: Duration,
    pub probe_rate: f64,
    pub probe_burst: u32,
    pub probe_max_in_flight: usize,
}

/// The shortest survey interval: a target probed more often than this would mostly
/// measure its own TIME-WAIT churn.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Most buckets one histogram may have (each is a series per target and leg).
pub const MAX_BUCKETS: usize = 64;
/// Most probes in flight at once.
pub const MAX_JOBS: usize = 20_000;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct ExporterConfig {
    pub jobs: usize,
    /// The kernel program answers the surveys' SYN-ACKs (`[exporter] reflex`; `probe
    /// --no-reflex` turns it off the same way).
    pub reflex: bool,
    pub probe: ProbeEndpoint,
    pub histograms: Histograms,
    /// By name; the built-in `http`, `https` and `tcp` unless the file redefines them.
    pub modules: BTreeMap<String, Module>,
    pub surveys: Vec<SurveySpec>,
}

/// `GET /probe`.
#[derive(Clone, Debug)]
pub struct ProbeEndpoint {
    pub allow: AllowList,
    pub max_in_flight: usize,
    /// Requests a second (token bucket).
    pub rate: f64,
    pub burst: u32,
    pub default_module: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramKind {
    /// Classic buckets, in the text format every Prometheus reads.
    Classic,
    /// Native (sparse exponential) buckets only: protobuf exposition.
    Native,
    /// Both: classic in text, both in protobuf.
    Both,
}

#[derive(Clone, Debug)]
pub struct Histograms {
    pub kind: HistogramKind,
    /// The line of `type`, for a refusal of what it asks (the exporter serves no native
    /// histograms).
    pub kind_line: Option<usize>,
    /// Upper bounds in seconds, ascending (the `+Inf` bucket is implied).
    pub buckets: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prober {
    Http,
    Https,
    /// Handshake and close only.
    Tcp,
}

impl Prober {
    pub fn name(self) -> &'static str {
        match self {
            Prober::Http => "http",
            Prober::Https => "https",
            Prober::Tcp => "tcp",
        }
    }
}

/// How one probe is made: blackbox_exporter's module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub prober: Prober,
    pub path: String,
    /// `Host:`; by default the target's name or address (with the port when not the
    /// scheme's).
    pub host_header: Option<String>,
    pub sni: Option<String>,
    pub cacert: Option<PathBuf>,
    /// The line of its `cacert` setting: the file is read at start, and a refusal of it
    /// names the key and the line, as every refusal of the configuration does.
    pub cacert_line: Option<usize>,
    pub insecure: bool,
    pub timeout: Duration,
    pub retries: u32,
    pub rto: Duration,
    pub time_wait: Duration,
    pub linger: Duration,
    pub family: Family,
    /// The line of its `family` setting, for messages about it.
    pub family_line: Option<usize>,
    /// The most MSS its SYNs advertise (`probe --mss`); `None`: the route's.
    pub mss: Option<u16>,
    /// HTTP statuses that count as success (blackbox_exporter's `valid_status_codes`);
    /// empty: any 2xx or 3xx. blackbox's default is 2xx of the status it ends at after
    /// following redirects; tcpshake follows none, so a redirect is the status it judges.
    pub valid_status_codes: Vec<u16>,
    /// `probe --separate-ack`: the handshake's ACK goes alone, the request after it (a SYN
    /// proxy in front of the server drops what rides on the ACK it takes for its cookie's).
    pub separate_ack: bool,
}

impl Module {
    /// Whether an HTTP response with `status` is a success for this module.
    pub fn accepts_status(&self, status: u16) -> bool {
        match self.valid_status_codes.as_slice() {
            [] => (200..=399).contains(&status),
            codes => codes.contains(&status),
        }
    }

    /// Judges a finished probe's HTTP status as blackbox_exporter's http prober does: a
    /// response outside the valid statuses fails the probe (its record's `error` says so),
    /// so `tcpshake_probe_success` and the surveys' exchange failures count it.
    pub fn judge_status(&self, r: &mut ProbeResult) {
        if self.prober == Prober::Tcp || r.error.is_some() {
            return;
        }
        if let Some(h) = &r.http
            && !self.accepts_status(h.status)
        {
            let valid = match self.valid_status_codes.as_slice() {
                [] => "by default any 2xx or 3xx".to_string(),
                codes => codes
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            r.error = Some(format!(
                "HTTP status {} is not one of module `{}`'s valid_status_codes ({valid})",
                h.status, self.name
            ));
        }
    }

    /// The module as a `[modules.NAME]` table would write it, every setting with the value
    /// in force (defaults included): the end of `/probe?debug=true`'s account, as
    /// blackbox_exporter ends its own with the module's configuration.
    pub fn settings(&self) -> String {
        let q = |v: &str| toml_string(v);
        // A bare key when it can be one (TOML: A-Z a-z 0-9 _ -), else quoted.
        let bare = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let name = if bare {
            self.name.clone()
        } else {
            q(&self.name)
        };
        let mut lines = vec![
            format!("[modules.{name}]"),
            format!("prober = {}", q(self.prober.name())),
        ];
        if self.prober != Prober::Tcp {
            lines.push(format!("path = {}", q(&self.path)));
            if let Some(h) = &self.host_header {
                lines.push(format!("host_header = {}", q(h)));
            }
        }
        if self.prober == Prober::Https {
            if let Some(n) = &self.sni {
                lines.push(format!("sni = {}", q(n)));
            }
            lines.push(match &self.cacert {
                Some(c) => format!("cacert = {}", q(&c.display().to_string())),
                None => "# cacert: none, the system's trust store".into(),
            });
            lines.push(format!("insecure = {}", self.insecure));
        }
        for (key, d) in [
            ("timeout", self.timeout),
            ("rto", self.rto),
            ("time_wait", self.time_wait),
            ("linger", self.linger),
        ] {
            lines.push(format!("{key} = {}", q(&format_duration(d))));
        }
        lines.push(format!("retries = {}", self.retries));
        if self.prober != Prober::Tcp {
            lines.push(match self.valid_status_codes.as_slice() {
                [] => "# valid_status_codes: any 2xx or 3xx".into(),
                codes => format!(
                    "valid_status_codes = [{}]",
                    codes
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if self.prober != Prober::Tcp {
            lines.push(format!("separate_ack = {}", self.separate_ack));
        }
        lines.push(match self.mss {
            Some(m) => format!("mss = {m}"),
            None => "# mss: the route's".into(),
        });
        let family = match self.family {
            Family::Any => "any",
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        lines.push(format!("family = {}", q(family)));
        lines.join("\n") + "\n"
    }

    /// A literal address of the other family than the module's `family` is a mistake in
    /// the configuration (or the /probe request): the message names the module, its
    /// setting and where it is. (The exporter has no `-4`/`-6`; `family` is its word.)
    pub fn check_family(&self, host: &Host) -> Result<(), String> {
        match host {
            Host::Ip(ip) if !self.family.admits(*ip) => {
                let is = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
                Err(format!(
                    "{ip} is an {is} address, but {}; give an {} address or use a module with \
                     family = \"any\"",
                    self.family_setting(),
                    self.family.name()
                ))
            }
            _ => Ok(()),
        }
    }

    /// "module `v6` has family = "ipv6" (line 3)": what a message about an address of the
    /// wrong family says is in the way (the line when the file gave it).
    pub fn family_setting(&self) -> String {
        let setting = match self.family {
            Family::V6 => "ipv6",
            Family::V4 => "ipv4",
            Family::Any => "any",
        };
        let at = self
            .family_line
            .map_or(String::new(), |l| format!(" (line {l})"));
        format!("module `{}` has family = \"{setting}\"{at}", self.name)
    }
}

/// One `[[survey]]`: targets probed with each module, every `interval`.
#[derive(Clone, Debug)]
pub struct SurveySpec {
    pub name: String,
    /// Targets written in the file, each with the line it is on.
    pub targets: Vec<(Target, usize)>,
    /// Target lists to read at start (`-iL` syntax), each with its line in this file.
    pub target_files: Vec<(PathBuf, usize)>,
    pub interval: Duration,
    pub modules: Vec<String>,
    pub slos: Vec<Slo>,
}

/// Why a configuration was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based; `None` for a refusal about the whole file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

// The file as written. Every value a check may refuse keeps its span.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    exporter: Option<RawExporter>,
    probe: Option<RawProbe>,
    histograms: Option<RawHistograms>,
    #[serde(default)]
    modules: BTreeMap<Spanned<String>, Spanned<RawModule>>,
    #[serde(default)]
    survey: Vec<Spanned<RawSurvey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExporter {
    jobs: Option<Spanned<i64>>,
    reflex: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    allow_names: Vec<Spanned<String>>,
    max_in_flight: Option<Spanned<i64>>,
    rate: Option<Spanned<f64>>,
    burst: Option<Spanned<i64>>,
    default_module: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistograms {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    buckets: Option<Spanned<RawBuckets>>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "`buckets` must be a list of durations ([\"100us\", \"1ms\"]) or { start = \"10us\", factor = 2, count = 21 }"
)]
enum RawBuckets {
    List(Vec<String>),
    Exponential(RawExponential),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExponential {
    start: String,
    factor: f64,
    count: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    prober: Spanned<String>,
    path: Option<Spanned<String>>,
    host_header: Option<Spanned<String>>,
    sni: Option<Spanned<String>>,
    cacert: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    rto: Option<Spanned<String>>,
    time_wait: Option<Spanned<String>>,
    linger: Option<Spanned<String>>,
    family: Option<Spanned<String>>,
    mss: Option<Spanned<i64>>,
    valid_status_codes: Option<Spanned<Vec<i64>>>,
    separate_ack: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSurvey {
    name: Spanned<String>,
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    target_files: Vec<Spanned<String>>,
    interval: Option<Spanned<String>>,
    modules: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    slo: Vec<Spanned<String>>,
}

/// The default buckets: 10 µs to 10 s in a 1-2-5 series (19 bounds), from a loopback
/// handshake to a server that answers after its SYN retransmissions.
pub fn default_buckets() -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 1e-5;
    while decade < 10.0 {
        for m in [1.0, 2.0, 5.0] {
            out.push(round_bound(decade * m));
        }
        decade *= 10.0;
    }
    out.push(10.0);
    out
}

/// Bounds computed by multiplication carry float noise (`2.0000000000000004e-5`); rounded
/// to 12 significant digits they print as written.
fn round_bound(v: f64) -> f64 {
    format!("{v:.11e}").parse().unwrap_or(v)
}

/// The parser's message in the words of the file's format: serde says "sequence" for
/// TOML's array and "a string" where a duration is written quoted with its unit; and a
/// file in blackbox_exporter's YAML (`modules:`) is told it must be TOML.
fn in_toml_words(message: &str, text: &str) -> String {
    let mut m = message
        .replace("expected a sequence", "expected an array: [\"…\", …]")
        .replace(
            "expected a string",
            "expected a string in quotes (e.g. \"http\", or a duration with its unit: \"5s\")",
        )
        // serde's names of Rust types, in words a configuration's reader uses.
        .replace(
            "expected f64",
            "expected a number (e.g. 10 or 2.5, without quotes)",
        )
        .replace("expected u64", "expected a whole number (without quotes)")
        .replace("expected i64", "expected a whole number (without quotes)")
        .replace("expected u32", "expected a whole number (without quotes)")
        .replace(
            "expected a boolean",
            "expected true or false (without quotes)",
        );
    let yaml = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.ends_with(':') || (l.contains(": ") && !l.contains('=')));
    if yaml {
        m.push_str(
            "; the configuration is TOML (`key = value`, `[modules.NAME]`), not \
             blackbox_exporter's YAML: `exporter --help` shows its keys",
        );
    }
    m
}

/// Validate a configuration file's text.
pub fn parse(text: &str, d: &Defaults) -> Result<ExporterConfig, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: in_toml_words(e.message().trim(), text),
    })?;
    let at = |span: std::ops::Range<usize>, message: String| ConfigError {
        line: Some(line_of(text, span.start)),
        message,
    };

    let reflex = raw.exporter.as_ref().and_then(|e| e.reflex).unwrap_or(true);
    let jobs = match raw.exporter.and_then(|e| e.jobs) {
        Some(j) => {
            let v = *j.get_ref();
            usize::try_from(v)
                .ok()
                .filter(|n| (1..=MAX_JOBS).contains(n))
                .ok_or_else(|| at(j.span(), format!("jobs = {v}: give 1 to {MAX_JOBS}")))?
        }
        None => d.jobs,
    };

    let mut modules = builtin_modules(d);
    for (name, m) in raw.modules {
        let span = name.span();
        let name = name.into_inner();
        check_name(&name).map_err(|e| at(span.clone(), format!("module `{name}`: {e}")))?;
        let module = module(&name, m.into_inner(), d, &at)?;
        modules.insert(name, module);
    }

    let probe = match raw.probe {
        Some(p) => probe_endpoint(p, jobs, &modules, d, &at)?,
        None => ProbeEndpoint {
            allow: AllowList::default(),
            max_in_flight: d.probe_max_in_flight.min(jobs),
            rate: d.probe_rate,
            burst: d.probe_burst,
            default_module: "http".into(),
        },
    };

    let histograms = match raw.histograms {
        Some(h) => histograms(h, &at)?,
        None => Histograms {
            kind: HistogramKind::Classic,
            kind_line: None,
            buckets: default_buckets(),
        },
    };

    let mut surveys: Vec<SurveySpec> = Vec::new();
    for s in raw.survey {
        // The second `name = …`'s line, not its `[[survey]]` header's.
        let span = s.get_ref().name.span();
        let s = survey(s.into_inner(), &modules, d, text, &at)?;
        if surveys.iter().any(|o| o.name == s.name) {
            return Err(at(
                span,
                format!(
                    "a second survey named `{}`; names label the metrics and must differ",
                    s.name
                ),
            ));
        }
        surveys.push(s);
    }

    Ok(ExporterConfig {
        jobs,
        reflex,
        probe,
        histograms,
        modules,
        surveys,
    })
}

type At<'a> = dyn Fn(std::ops::Range<usize>, String) -> ConfigError + 'a;

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Names label metrics: letters, digits, `_` and `-`, 1 to 64 of them.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("a name has only letters, digits, `_` and `-`".into());
    }
    Ok(())
}

fn builtin_modules(d: &Defaults) -> BTreeMap<String, Module> {
    [Prober::Http, Prober::Https, Prober::Tcp]
        .into_iter()
        .map(|p| {
            (
                p.name().to_string(),
                Module {
                    name: p.name().to_string(),
                    prober: p,
                    path: "/".into(),
                    host_header: None,
                    sni: None,
                    cacert: None,
                    cacert_line: None,
                    insecure: false,
                    timeout: d.timeout,
                    retries: d.retries,
                    rto: d.rto,
                    time_wait: d.time_wait,
                    linger: d.linger,
                    family: Family::Any,
                    family_line: None,
                    mss: None,
                    valid_status_codes: Vec::new(),
                    separate_ack: false,
                },
            )
        })
        .collect()
}

fn duration(v: &Spanned<String>, what: &str, at: &At<'_>) -> Result<Duration, ConfigError> {
    parse_duration(v.get_ref()).map_err(|e| at(v.span(), format!("{what}: {e}")))
}

fn module(name: &str, m: RawModule, d: &Defaults, at: &At<'_>) -> Result<Module, ConfigError> {
    let prober = match m.prober.get_ref().as_str() {
        "http" => Prober::Http,
        "https" => Prober::Https,
        "tcp" => Prober::Tcp,
        other => {
            return Err(at(
                m.prober.span(),
                format!("prober `{other}`: use http, https or tcp"),
            ));
        }
    };
    if prober == Prober::Tcp {
        for (v, key) in [(&m.path, "path"), (&m.host_header, "host_header")] {
            if let Some(v) = v {
                return Err(at(
                    v.span(),
                    format!(
                        "{key} shapes the HTTP request, which prober \"tcp\" leaves out; \
                         drop it or use prober \"http\""
                    ),
                ));
            }
        }
        if let Some(v) = &m.valid_status_codes {
            return Err(at(
                v.span(),
                "valid_status_codes judges the HTTP response, which prober \"tcp\" never \
                 asks for; drop it or use prober \"http\""
                    .into(),
            ));
        }
        if let Some(v) = &m.separate_ack {
            return Err(at(
                v.span(),
                "separate_ack keeps the request off the handshake's ACK; prober \"tcp\" \
                 sends no request (and nothing rides on that ACK): drop it"
                    .into(),
            ));
        }
    }
    // blackbox_exporter's `valid_status_codes`: a list of statuses; none given, any 2xx or
    // 3xx (blackbox judges 2xx after following redirects; we follow none).
    let valid_status_codes = match &m.valid_status_codes {
        Some(v) if v.get_ref().is_empty() => {
            return Err(at(
                v.span(),
                "valid_status_codes = []: no status would count as success; give e.g. \
                 [200, 301], or drop the key for any 2xx or 3xx"
                    .into(),
            ));
        }
        Some(v) => v
            .get_ref()
            .iter()
            .map(|&c| {
                u16::try_from(c)
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        at(
                            v.span(),
                            format!("valid_status_codes: {c} is no HTTP status; give 100 to 599"),
                        )
                    })
            })
            .collect::<Result<Vec<u16>, ConfigError>>()?,
        None => Vec::new(),
    };
    if prober != Prober::Https {
        let tls_only = [
            m.sni.as_ref().map(|v| (v.span(), "sni")),
            m.cacert.as_ref().map(|v| (v.span(), "cacert")),
            m.insecure.as_ref().map(|v| (v.span(), "insecure")),
        ];
        if let Some((span, key)) = tls_only.into_iter().flatten().next() {
            return Err(at(
                span,
                format!(
                    "{key} applies to HTTPS; module `{name}` has prober \"{}\": use prober \
                     \"https\" or drop {key}",
                    prober.name()
                ),
            ));
        }
    }
    let path = match &m.path {
        Some(p) => {
            check_request_target(p.get_ref()).map_err(|e| {
                at(
                    p.span(),
                    format!("path `{}`: {e}", p.get_ref().escape_debug()),
                )
            })?;
            p.get_ref().clone()
        }
        None => "/".into(),
    };
    if let Some(h) = &m.host_header {
        check_host_field(h.get_ref()).map_err(|e| {
            at(
                h.span(),
                format!("host_header `{}`: {e}", h.get_ref().escape_debug()),
            )
        })?;
    }
    if let Some(s) = &m.sni
        && rustls::pki_types::ServerName::try_from(s.get_ref().as_str()).is_err()
    {
        return Err(at(
            s.span(),
            format!(
                "sni `{}` is not a DNS name or an address",
                s.get_ref().escape_debug()
            ),
        ));
    }
    let timeout = match &m.timeout {
        Some(t) => {
            let v = duration(t, "timeout", at)?;
            if v.is_zero() {
                return Err(at(
                    t.span(),
                    "timeout = \"0s\" would give up before the server could answer; give e.g. \"5s\"".into(),
                ));
            }
            v
        }
        None => d.timeout,
    };
    let retries = match &m.retries {
        Some(r) => {
            let v = *r.get_ref();
            u32::try_from(v)
                .ok()
                .filter(|n| *n <= d.max_retries)
                .ok_or_else(|| {
                    at(
                        r.span(),
                        format!("retries = {v}: give 0 to {}", d.max_retries),
                    )
                })?
        }
        None => d.retries,
    };
    let rto = match &m.rto {
        Some(r) => {
            let v = duration(r, "rto", at)?;
            if v < d.rto_min || v > d.rto_max {
                return Err(at(
                    r.span(),
                    format!(
                        "rto = \"{}\": give {} to {} (Linux's floor; RFC 6298 §2.5's ceiling)",
                        format_duration(v),
                        format_duration(d.rto_min),
                        format_duration(d.rto_max)
                    ),
                ));
            }
            v
        }
        None => d.rto,
    };
    let time_wait = match &m.time_wait {
        Some(t) => duration(t, "time_wait", at)?,
        None => d.time_wait,
    };
    let linger = match &m.linger {
        Some(t) => duration(t, "linger", at)?,
        None => d.linger,
    };
    // As `probe --mss`: 88 (Linux's TCP_MIN_MSS) to 65495 (IPv4's largest datagram).
    let mss = match &m.mss {
        Some(v) => {
            let n = *v.get_ref();
            Some(
                u16::try_from(n)
                    .ok()
                    .filter(|n| (88..=65495).contains(n))
                    .ok_or_else(|| at(v.span(), format!("mss = {n}: give 88 to 65495")))?,
            )
        }
        None => None,
    };
    let family = match &m.family {
        Some(f) => match f.get_ref().as_str() {
            "any" => Family::Any,
            "ipv4" | "ip4" => Family::V4,
            "ipv6" | "ip6" => Family::V6,
            other => {
                return Err(at(
                    f.span(),
                    format!("family `{other}`: use any, ipv4 or ipv6"),
                ));
            }
        },
        None => Family::Any,
    };
    Ok(Module {
        name: name.to_string(),
        prober,
        path,
        host_header: m.host_header.map(Spanned::into_inner),
        sni: m.sni.map(Spanned::into_inner),
        cacert_line: m
            .cacert
            .as_ref()
            .and_then(|c| at(c.span(), String::new()).line),
        cacert: m.cacert.map(|c| PathBuf::from(c.into_inner())),
        insecure: m.insecure.is_some_and(|i| *i.get_ref()),
        timeout,
        retries,
        rto,
        time_wait,
        linger,
        family,
        family_line: m
            .family
            .as_ref()
            .and_then(|f| at(f.span(), String::new()).line),
        mss,
        valid_status_codes,
        separate_ack: m.separate_ack.is_some_and(|v| *v.get_ref()),
    })
}

fn module_ref(
    name: &Spanned<String>,
    modules: &BTreeMap<String, Module>,
    at: &At<'_>,
) -> Result<String, ConfigError> {
    let n = name.get_ref();
    if modules.contains_key(n) {
        return Ok(n.clone());
    }
    let known: Vec<&str> = modules.keys().map(String::as_str).collect();
    Err(at(
        name.span(),
        format!("no module named `{n}`; modules are {}", known.join(", ")),
    ))
}

fn probe_endpoint(
    p: RawProbe,
    jobs: usize,
    modules: &BTreeMap<String, Module>,
    d: &Defaults,
    at: &At<'_>,
) -> Result<ProbeEndpoint, ConfigError> {
    let mut allow = AllowList::default();
    for c in &p.allow {
        let cidr = Cidr::parse(c.get_ref()).map_err(|e| at(c.span(), format!("allow: {e}")))?;
        allow.cidrs.push(cidr);
    }
    for n in &p.allow_names {
        let pat = NamePattern::parse(n.get_ref())
            .map_err(|e| at(n.span(), format!("allow_names: {e}")))?;
        allow.names.push(pat);
    }
    if allow.cidrs.is_empty()
        && let Some(n) = p.allow_names.first()
    {
        return Err(at(
            n.span(),
            "allow_names lets /probe resolve these names, but a name's address must also be \
             in `allow`, which is empty: add the CIDR blocks the names may resolve to"
                .into(),
        ));
    }
    let max_in_flight = match &p.max_in_flight {
        Some(m) => {
            let v = *m.get_ref();
            usize::try_from(v)
                .ok()
                .filter(|n| (1..=jobs).contains(n))
                .ok_or_else(|| {
                    at(
                        m.span(),
                        format!(
                            "max_in_flight = {v}: give 1 to {jobs} (the exporter's jobs, \
                             [exporter] jobs)"
                        ),
                    )
                })?
        }
        None => d.probe_max_in_flight.min(jobs),
    };
    let rate = match &p.rate {
        Some(r) => {
            let v = *r.get_ref();
            if !(v.is_finite() && v > 0.0 && v <= 1e6) {
                return Err(at(
                    r.span(),
                    format!("rate = {v}: give requests a second, above 0 (e.g. 10)"),
                ));
            }
            v
        }
        None => d.probe_rate,
    };
    let burst = match &p.burst {
        Some(b) => {
            let v = *b.get_ref();
            u32::try_from(v)
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| at(b.span(), format!("burst = {v}: give at least 1")))?
        }
        None => d.probe_burst,
    };
    let default_module = match &p.default_module {
        Some(m) => module_ref(m, modules, at)?,
        None => "http".into(),
    };
    Ok(ProbeEndpoint {
        allow,
        max_in_flight,
        rate,
        burst,
        default_module,
    })
}

fn histograms(h: RawHistograms, at: &At<'_>) -> Result<Histograms, ConfigError> {
    let kind = match &h.kind {
        Some(k) => match k.get_ref().as_str() {
            "classic" => HistogramKind::Classic,
            "native" => HistogramKind::Native,
            "both" => HistogramKind::Both,
            other => {
                return Err(at(
                    k.span(),
                    format!("type `{other}`: use classic, native or both"),
                ));
            }
        },
        None => HistogramKind::Classic,
    };
    let buckets = match h.buckets {
        None => default_buckets(),
        Some(b) => {
            let span = b.span();
            let bounds = match b.into_inner() {
                RawBuckets::List(list) => list
                    .iter()
                    .map(|s| parse_duration(s).map(|d| d.as_secs_f64()))
                    .collect::<Result<Vec<f64>, String>>()
                    .map_err(|e| at(span.clone(), format!("buckets: {e}")))?,
                RawBuckets::Exponential(e) => {
                    let start = parse_duration(&e.start)
                        .map_err(|m| at(span.clone(), format!("buckets start: {m}")))?
                        .as_secs_f64();
                    if !(e.factor.is_finite() && e.factor > 1.0) {
                        return Err(at(
                            span,
                            format!("buckets factor = {}: give a number above 1", e.factor),
                        ));
                    }
                    let count = usize::try_from(e.count)
                        .ok()
                        .filter(|n| (1..=MAX_BUCKETS).contains(n))
                        .ok_or_else(|| {
                            at(
                                span.clone(),
                                format!("buckets count = {}: give 1 to {MAX_BUCKETS}", e.count),
                            )
                        })?;
                    (0..count)
                        .map(|i| round_bound(start * e.factor.powi(i as i32)))
                        .collect()
                }
            };
            if bounds.is_empty() || bounds.len() > MAX_BUCKETS {
                return Err(at(span, format!("buckets: give 1 to {MAX_BUCKETS} bounds")));
            }
            if bounds[0] <= 0.0 {
                return Err(at(span, "buckets: bounds must be above 0".into()));
            }
            if bounds.windows(2).any(|w| w[0] >= w[1]) {
                return Err(at(span, "buckets: bounds must increase strictly".into()));
            }
            bounds
        }
    };
    Ok(Histograms {
        kind,
        kind_line: h
            .kind
            .as_ref()
            .and_then(|k| at(k.span(), String::new()).line),
        buckets,
    })
}

fn survey(
    s: RawSurvey,
    modules: &BTreeMap<String, Module>,
    d: &Defaults,
    text: &str,
    at: &At<'_>,
) -> Result<SurveySpec, ConfigError> {
    let name = s.name.get_ref().clone();
    check_name(&name).map_err(|e| at(s.name.span(), format!("survey `{name}`: {e}")))?;
    let mut targets = Vec::new();
    for t in &s.targets {
        let line = line_of(text, t.span().start);
        targets.push((
            survey_target(t.get_ref()).map_err(|e| at(t.span(), e))?,
            line,
        ));
    }
    let target_files: Vec<(PathBuf, usize)> = s
        .target_files
        .iter()
        .map(|f| (PathBuf::from(f.get_ref()), line_of(text, f.span().start)))
        .collect();
    if targets.is_empty() && target_files.is_empty() {
        return Err(at(
            s.name.span(),
            format!(
                "survey `{name}` has no targets: give targets = [\"HOST:PORT\", …] or target_files"
            ),
        ));
    }
    let interval = match &s.interval {
        Some(i) => {
            let v = duration(i, "interval", at)?;
            if v < MIN_INTERVAL {
                return Err(at(
                    i.span(),
                    format!(
                        "interval = \"{}\": give at least \"{}\"",
                        format_duration(v),
                        format_duration(MIN_INTERVAL)
                    ),
                ));
            }
            v
        }
        None => d.interval,
    };
    let modules_by_name = modules;
    let modules = match &s.modules {
        Some(list) if list.is_empty() => {
            return Err(at(
                s.name.span(),
                format!("survey `{name}`: modules = [] probes nothing; name at least one"),
            ));
        }
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for m in list {
                let n = module_ref(m, modules_by_name, at)?;
                if out.contains(&n) {
                    return Err(at(m.span(), format!("module `{n}` is listed twice")));
                }
                out.push(n);
            }
            out
        }
        None => vec!["http".into()],
    };
    // A literal address its modules cannot probe is a mistake found now, at its line;
    // target files' lines are checked when they are read (the exporter, at start).
    for (t, src) in targets.iter().zip(&s.targets) {
        for m in &modules {
            if let Some(module) = modules_by_name.get(m) {
                module
                    .check_family(&t.0.host)
                    .map_err(|e| at(src.span(), format!("survey `{name}`: {e}")))?;
            }
        }
    }
    let slos = s
        .slo
        .iter()
        .map(|o| parse_slo(o.get_ref()).map_err(|e| at(o.span(), format!("slo {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SurveySpec {
        name,
        targets,
        target_files,
        interval,
        modules,
        slos,
    })
}

/// A survey's or a /probe's target: `HOST:PORT` or `[V6]:PORT`. The module says the
/// protocol and the request, so a URL (`https://h/path`) is refused rather than half-used;
/// the message shows the HOST:PORT and module a blackbox user's URL stands for (this is
/// also /probe's answer, where "the survey's modules" named none).
pub fn survey_target(spec: &str) -> Result<Target, String> {
    if spec.contains("://") {
        let instead = match target::parse(spec, None) {
            Ok(t) => format!(
                " (`{}:{}` and a module whose prober is {})",
                t.host,
                t.port,
                if t.tls { "https" } else { "http" }
            ),
            Err(_) => String::new(),
        };
        return Err(format!(
            "`{spec}`: give HOST:PORT{instead}; the module says the protocol, path and \
             Host header"
        ));
    }
    // The exporter has no -p: a target names its own port.
    let t = target::parse_host_port(spec)?;
    // An address no TCP connection can be made to is refused here, with its line, as
    // `probe` refuses it — not found out once the surveys run (`--check-config` passed
    // it). A subnet's broadcast address needs the route: the survey says that one.
    if let target::Host::Ip(ip) = t.host {
        target::connectable_address(ip).map_err(|e| format!("`{spec}`: {e}"))?;
    }
    Ok(t)
}

/// `v` as a TOML basic string: `\` and `"` escaped, control characters as `\uXXXX` (Rust's
/// `escape_debug` writes `\'` and `\u{7f}`, which TOML does not read).
fn toml_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;

//! The exporter's metrics in Prometheus' formats, through the Prometheus project's own
//! client (prometheus-client): OpenMetrics text when the scraper asks for it (Prometheus
//! does), the classic text format 0.0.4 otherwise (curl, `promtool check metrics`).
//!
//! `/metrics` (the continuous surveys and the exporter's health):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tcpshake_survey_leg_seconds` | histogram | `survey`, `target`, `module`, `leg` |
//! | `tcpshake_survey_probes_total` | counter | `survey`, `target`, `module`, `state`, `reason` |
//! | `tcpshake_survey_retransmissions_total` | counter | `survey`, `target`, `module` |
//! | `tcpshake_survey_failures_total` | counter | `survey`, `target`, `module` (a probe that could not start: no route, no port) |
//! | `tcpshake_survey_exchange_failures_total` | counter | `survey`, `target`, `module` (the port was open, the exchange failed: TLS, HTTP, the close) |
//! | `tcpshake_survey_icmp_ignored_total` | counter | `survey`, `target`, `module` (ICMP errors about a probe's connection not believed: forged or stale) |
//! | `tcpshake_survey_path_mtu_bytes` | gauge | `survey`, `target`, `module` (the path MTU the last probe lowered its segments to; absent when none) |
//! | `tcpshake_survey_slo_windows_total`, `tcpshake_survey_slo_breaches_total` | counter | `survey`, `slo` |
//! | `tcpshake_survey_rounds_skipped_total` | counter | (a target still busy, or the exporter behind) |
//! | `tcpshake_exporter_probes_in_flight` | gauge | |
//! | `tcpshake_exporter_loop_lag_seconds` | histogram | (how late a due probe started) |
//! | `tcpshake_exporter_probe_requests_total` | counter | `result` (`/probe` answers) |
//! | `tcpshake_exporter_capture_missed_packets_total` | counter | |
//! | `tcpshake_exporter_kernel_acks_total` | counter | (handshakes whose ACK tcpshake's kernel program sent) |
//!
//! `/probe` answers the gauges of [`tcpshake_proto::monitor::samples`].

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt;
use std::io;
use std::sync::Arc;
use tcpshake_proto::monitor::samples;
use tcpshake_proto::probe::record::{PortState, ProbeResult, Verdict};

use super::leg_histograms::LegHistograms;
use super::text::{self, human_ns};
use tcpshake_proto::monitor::config::Module;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub survey: String,
    pub target: String,
    pub module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LegLabels {
    survey: String,
    target: String,
    module: String,
    leg: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    survey: String,
    target: String,
    module: String,
    state: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SloLabels {
    survey: String,
    slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How `/probe` requests are answered: every value of `result`, each series there (at 0)
/// from the start.
pub const REQUEST_RESULTS: [&str; 8] = [
    "probed",
    "bad-request",
    "denied",
    "unresolved",
    "busy",
    "rate-limited",
    "stopping",
    "error",
];

/// The verdicts each configured target's `tcpshake_survey_probes_total` starts with, at 0:
/// one per nmap state that every port can end in. The rarer reasons (the ICMP errors, the
/// split handshake) appear when first seen; thirteen series per target × module more
/// would cost every scrape for what most targets never show.
const INITIAL_VERDICTS: [Verdict; 3] = [Verdict::OPEN, Verdict::CLOSED, Verdict::NO_RESPONSE];

/// Buckets of the loop lag: 100 µs to 10 s.
const LAG_BUCKETS: [f64; 6] = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0];

/// The `/metrics` registry and handles on its metrics (they share their state with it).
#[derive(Clone)]
pub struct ExporterMetrics {
    registry: Arc<Registry>,
    /// Not in `registry`: written by hand, first, in the library's format (see
    /// leg_histograms.rs: most of a scrape's lines).
    legs: Arc<LegHistograms<LegLabels>>,
    probes: Family<StateLabels, Counter>,
    retransmissions: Family<TargetLabels, Counter>,
    failures: Family<TargetLabels, Counter>,
    exchange_failures: Family<TargetLabels, Counter>,
    icmp_ignored: Family<TargetLabels, Counter>,
    path_mtu: Family<TargetLabels, Gauge>,
    slo_windows: Family<SloLabels, Counter>,
    slo_breaches: Family<SloLabels, Counter>,
    skipped: Counter,
    in_flight: Gauge,
    loop_lag: Histogram,
    requests: Family<ResultLabels, Counter>,
    capture_missed: Counter,
    kernel_acks: Counter,
}

impl ExporterMetrics {
    pub fn new(buckets: &[f64]) -> ExporterMetrics {
        let mut r = Registry::default();
        let legs = Arc::new(LegHistograms::new(
            "tcpshake_survey_leg_seconds",
            "Each leg of the surveys' exchanges, between two kernel timestamps on the wire",
            buckets,
        ));
        let probes = Family::<StateLabels, Counter>::default();
        r.register(
            "tcpshake_survey_probes",
            "Survey probes that ended, by the port's state and the reason for it",
            probes.clone(),
        );
        let retransmissions = Family::<TargetLabels, Counter>::default();
        r.register(
            "tcpshake_survey_retransmissions",
            "Segments the surveys' probes sent again",
            retransmissions.clone(),
        );
        let failures = Family::<TargetLabels, Counter>::default();
        r.register(
            "tcpshake_survey_failures",
            "Survey probes that could not start (no route, no source port)",
            failures.clone(),
        );
        let exchange_failures = Family::<TargetLabels, Counter>::default();
        r.register(
            "tcpshake_survey_exchange_failures",
            "Survey probes that found the port open but whose exchange failed (TLS, HTTP, \
             the close); the records' error says why",
            exchange_failures.clone(),
        );
        // Forged ICMP errors (a blind attack on the connections, RFC 5927) change no
        // verdict — the records say so in `anomalies` — and counted here an alert sees them.
        let icmp_ignored = Family::<TargetLabels, Counter>::default();
        r.register(
            "tcpshake_survey_icmp_ignored",
            "ICMP errors quoting a survey probe's connection that were not believed (the \
             quoted sequence number was not in flight, RFC 5927 §4.1: forged or stale); the \
             records' anomalies say why",
            icmp_ignored.clone(),
        );
        // What `/probe` answers as `tcpshake_path_mtu_bytes`: a path that shrinks its MTU
        // (a tunnel, a VPN) makes a fleet's large responses re-cut, or hang on a black
        // hole, and the legs alone do not say why.
        let path_mtu = Family::<TargetLabels, Gauge>::default();
        r.register(
            "tcpshake_survey_path_mtu_bytes",
            "The path MTU the target's last probe lowered its segments to (an ICMP frag-needed \
             / Packet Too Big, or a black hole found); absent when it needed none",
            path_mtu.clone(),
        );
        let slo_windows = Family::<SloLabels, Counter>::default();
        r.register(
            "tcpshake_survey_slo_windows",
            "Survey intervals in which an SLO was judged (over the probes that ended in it)",
            slo_windows.clone(),
        );
        let slo_breaches = Family::<SloLabels, Counter>::default();
        r.register(
            "tcpshake_survey_slo_breaches",
            "Survey intervals in which an SLO was breached",
            slo_breaches.clone(),
        );
        let skipped = Counter::default();
        r.register(
            "tcpshake_survey_rounds_skipped",
            "Survey probes not made when due: the target's previous probe was still running, \
             or the exporter was more than an interval behind",
            skipped.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "tcpshake_exporter_probes_in_flight",
            "Probes running now, surveys and /probe together",
            in_flight.clone(),
        );
        let loop_lag = Histogram::new(LAG_BUCKETS);
        r.register(
            "tcpshake_exporter_loop_lag_seconds",
            "How late a due survey probe was started by the exporter's loop",
            loop_lag.clone(),
        );
        let requests = Family::<ResultLabels, Counter>::default();
        for result in REQUEST_RESULTS {
            let _ = requests.get_or_create(&ResultLabels { result });
        }
        r.register(
            "tcpshake_exporter_probe_requests",
            "Requests to /probe, by how they were answered",
            requests.clone(),
        );
        let capture_missed = Counter::default();
        r.register(
            "tcpshake_exporter_capture_missed_packets",
            "Packets the capture sockets missed (ring or queue full, or too long): those probes' \
             records lack segments",
            capture_missed.clone(),
        );
        let kernel_acks = Counter::default();
        r.register(
            "tcpshake_exporter_kernel_acks",
            "Handshakes whose ACK (with the request riding on it) tcpshake's program in the \
             kernel sent, from the softirq that received the SYN-ACK; the others were \
             answered from the exporter's loop",
            kernel_acks.clone(),
        );
        ExporterMetrics {
            registry: Arc::new(r),
            legs,
            probes,
            retransmissions,
            failures,
            exchange_failures,
            icmp_ignored,
            path_mtu,
            slo_windows,
            slo_breaches,
            skipped,
            in_flight,
            loop_lag,
            requests,
            capture_missed,
            kernel_acks,
        }
    }

    /// A target × module of a survey is configured: its counters exist from now on, at 0
    /// (client_golang's advice: initialise the label sets you know of). A counter that
    /// appears only at its first increment loses that increment to `rate()` and
    /// `increase()`, which need two samples, and an alert on it sees no data meanwhile.
    pub fn target_configured(&self, who: &TargetLabels) {
        let _ = self.failures.get_or_create(who);
        let _ = self.exchange_failures.get_or_create(who);
        let _ = self.icmp_ignored.get_or_create(who);
        let _ = self.retransmissions.get_or_create(who);
        for v in INITIAL_VERDICTS {
            let _ = self.probes.get_or_create(&StateLabels {
                survey: who.survey.clone(),
                target: who.target.clone(),
                module: who.module.clone(),
                state: v.state.as_str(),
                reason: v.reason.as_str(),
            });
        }
    }

    /// A survey's SLO is configured: its windows and breaches exist from now on, at 0.
    pub fn slo_configured(&self, survey: &str, slo: &str) {
        let l = SloLabels {
            survey: survey.to_string(),
            slo: slo.to_string(),
        };
        let _ = self.slo_windows.get_or_create(&l);
        let _ = self.slo_breaches.get_or_create(&l);
    }

    /// A survey probe ended. A probe the exporter's own stop interrupted counts as a probe
    /// (state `interrupted`) but its partial legs stay out of the histograms, as they stay
    /// out of `tcpshake report`'s statistics.
    pub fn record(&self, who: &TargetLabels, r: &ProbeResult) {
        let legs = r.legs_ns.iter().filter(|_| !r.interrupted);
        for (leg, v) in legs {
            if let Some(ns) = v {
                let labels = LegLabels {
                    survey: who.survey.clone(),
                    target: who.target.clone(),
                    module: who.module.clone(),
                    leg: leg.name(),
                };
                self.legs.observe(&labels, ns as f64 / 1e9);
            }
        }
        self.probes
            .get_or_create(&StateLabels {
                survey: who.survey.clone(),
                target: who.target.clone(),
                module: who.module.clone(),
                state: r.state.as_str(),
                reason: r.reason.as_str(),
            })
            .inc();
        self.retransmissions
            .get_or_create(who)
            .inc_by(u64::from(r.retransmissions));
        if r.state == PortState::Open && !r.succeeded() && !r.interrupted {
            self.exchange_failures.get_or_create(who).inc();
        }
        self.icmp_ignored
            .get_or_create(who)
            .inc_by(u64::from(r.icmp_ignored));
        // The last finished probe's: a path whose MTU came back drops the series (an
        // interrupted probe may not have got as far as a large segment).
        if !r.interrupted {
            match r.path_mtu {
                Some(mtu) => {
                    self.path_mtu.get_or_create(who).set(i64::from(mtu));
                }
                None => {
                    self.path_mtu.remove(who);
                }
            }
        }
    }

    pub fn failed(&self, who: &TargetLabels) {
        self.failures.get_or_create(who).inc();
    }

    pub fn slo_judged(&self, survey: &str, slo: &str, breached: bool) {
        let l = SloLabels {
            survey: survey.to_string(),
            slo: slo.to_string(),
        };
        self.slo_windows.get_or_create(&l).inc();
        // Created at 0 with the first window, so a breach is an increase, not a new series.
        let b = self.slo_breaches.get_or_create(&l);
        if breached {
            b.inc();
        }
    }

    pub fn set_skipped(&self, total: u64) {
        let now = self.skipped.get();
        if total > now {
            self.skipped.inc_by(total - now);
        }
    }

    /// The taps' running total of missed packets.
    pub fn set_capture_missed(&self, total: u64) {
        let now = self.capture_missed.get();
        if total > now {
            self.capture_missed.inc_by(total - now);
        }
    }

    /// The survey loop's running total of handshakes the kernel program answered.
    pub fn set_kernel_acks(&self, total: u64) {
        let now = self.kernel_acks.get();
        if total > now {
            self.kernel_acks.inc_by(total - now);
        }
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn lag(&self, seconds: f64) {
        self.loop_lag.observe(seconds);
    }

    pub fn request(&self, result: &'static str) {
        debug_assert!(REQUEST_RESULTS.contains(&result), "{result}");
        self.requests.get_or_create(&ResultLabels { result }).inc();
    }

    /// Write the registry to `w` in the format `accept` prefers.
    pub fn encode(&self, openmetrics: bool, w: &mut dyn io::Write) -> io::Result<()> {
        self.legs.encode(openmetrics, w)?;
        encode_registry(&self.registry, openmetrics, w)
    }
}

/// Whether the scraper's `Accept` asks for OpenMetrics (Prometheus lists it first).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics { OPENMETRICS } else { TEXT }
}

/// prometheus-client writes to a `fmt::Write`; this forwards to a socket and keeps the
/// I/O error that `fmt::Error` cannot carry.
struct FmtToIo<'a> {
    w: &'a mut dyn io::Write,
    error: Option<io::Error>,
}

impl fmt::Write for FmtToIo<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

fn encode_registry(r: &Registry, openmetrics: bool, w: &mut dyn io::Write) -> io::Result<()> {
    let mut f = FmtToIo { w, error: None };
    let done = if openmetrics {
        prometheus_client::encoding::text::encode(&mut f, r)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut f, r)
    };
    match (done, f.error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(_), None) => Err(io::Error::other("encoding the metrics failed")),
    }
}

/// `/probe`'s answer: one probe's gauges.
pub fn probe_body(
    r: &ProbeResult,
    took: std::time::Duration,
    openmetrics: bool,
) -> io::Result<Vec<u8>> {
    families_body(samples::probe_samples(r, took), openmetrics)
}

/// `/probe`'s answer for a probe that could not be made (a name that did not resolve, no
/// route): `tcpshake_probe_success 0` and its duration.
pub fn unmade_probe_body(took: std::time::Duration, openmetrics: bool) -> io::Result<Vec<u8>> {
    families_body(samples::unmade_probe_samples(took), openmetrics)
}

fn families_body(families: Vec<samples::Family>, openmetrics: bool) -> io::Result<Vec<u8>> {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(InOrder(families)));
    let mut out = Vec::new();
    encode_registry(&reg, openmetrics, &mut out)?;
    Ok(out)
}

/// One probe's gauges, each family's samples in the order they were made: registered as a
/// `Family` (a hash map), `tcpshake_leg_seconds`'s legs came in another order on each
/// request (a walk: diffs of two answers, and reading one, were harder than need be);
/// blackbox_exporter's answer keeps one order.
#[derive(Debug)]
struct InOrder(Vec<samples::Family>);

impl Collector for InOrder {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for fam in &self.0 {
            let mut family =
                encoder.encode_descriptor(fam.name, fam.help, None, MetricType::Gauge)?;
            for (labels, v) in &fam.samples {
                ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// `/probe?debug=true`'s answer (blackbox_exporter's convention): a plain-text account of
/// the probe — whether it succeeded and why not, the exchange as `tcpshake probe` shows it
/// (every segment, the legs, the notes, the error), the metrics the request would have
/// returned, and the module's settings.
pub fn probe_debug(
    r: &ProbeResult,
    took: std::time::Duration,
    module: &Module,
) -> io::Result<String> {
    let verdict = match r.failure() {
        None => "tcpshake_probe_success 1".to_string(),
        Some(why) => format!("tcpshake_probe_success 0: {why}"),
    };
    let metrics = probe_body(r, took, false)?;
    // A name's address, which the target as written does not show.
    let addr = if r.target.contains(&r.addr) {
        String::new()
    } else {
        format!(" ({})", r.addr)
    };
    Ok(format!(
        "/probe of {}{addr} with module `{}`, {}: {verdict}\n\n\
         The probe, as `tcpshake probe` shows it:\n{}\n\
         Metrics that would have been returned:\n{}\n\
         Module configuration:\n{}",
        r.target,
        module.name,
        human_ns(tcpshake_proto::time::nanos(took)),
        text::render(r, text::Style { color: false }),
        String::from_utf8_lossy(&metrics),
        module.settings().trim_end(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ProbeResult {
        let json = r#"{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,
            "state":"open","reason":"syn-ack","reply_ttl":64,"reply_from":"198.18.0.2",
            "legs_ns":{"syn_to_synack":21800,"synack_to_ack":20500,"request_to_first_byte":249600,
            "request_to_complete":249600,"fin_to_ack":17500,"fin_to_peer_fin":17500,
            "peer_fin_to_last_ack":22900,"total":378200},
            "peer_options":{"mss":1460,"wscale":10,"sack_permitted":true,"timestamps":true},
            "http":{"request":"HEAD / HTTP/1.1","status":200,"reason":"OK","version":"HTTP/1.1","headers":{}},
            "close_initiator":"server","irs":5,"error":null,"tls":null}"#;
        ProbeResult::from_json_line(&json.replace('\n', " ")).unwrap()
    }

    #[test]
    fn survey_histograms_and_counters_encode() {
        let m = ExporterMetrics::new(&[1e-5, 1e-4, 1e-3]);
        let who = TargetLabels {
            survey: "fleet".into(),
            target: "198.18.0.2:80".into(),
            module: "http".into(),
        };
        m.record(&who, &record());
        m.record(&who, &record());
        m.slo_judged("fleet", "syn_to_synack.p99<5ms", false);
        let mut out = Vec::new();
        m.encode(true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("# TYPE tcpshake_survey_leg_seconds histogram"),
            "{text}"
        );
        assert!(text.contains(
            "tcpshake_survey_leg_seconds_bucket{le=\"0.0001\",survey=\"fleet\",target=\"198.18.0.2:80\",module=\"http\",leg=\"syn_to_synack\"} 2"
        ), "{text}");
        assert!(text.contains(
            "tcpshake_survey_probes_total{survey=\"fleet\",target=\"198.18.0.2:80\",module=\"http\",state=\"open\",reason=\"syn-ack\"} 2"
        ), "{text}");
        assert!(text.contains("tcpshake_survey_slo_breaches_total{survey=\"fleet\",slo=\"syn_to_synack.p99<5ms\"} 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let mut plain = Vec::new();
        m.encode(false, &mut plain).unwrap();
        assert!(!String::from_utf8(plain).unwrap().contains("# EOF"));
    }

    /// A configured target's counters are there at 0 before its first probe, failure or
    /// SLO window, and every `/probe` result before its first request: `rate()` has a
    /// series to work on, and the first increment is an increase, not a new series.
    #[test]
    fn configured_series_start_at_zero() {
        let m = ExporterMetrics::new(&[1e-3]);
        let who = TargetLabels {
            survey: "fleet".into(),
            target: "198.18.0.2:80".into(),
            module: "http".into(),
        };
        m.target_configured(&who);
        m.slo_configured("fleet", "connect.loss<1%");
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let l = "survey=\"fleet\",target=\"198.18.0.2:80\",module=\"http\"";
        for want in [
            format!("tcpshake_survey_failures_total{{{l}}} 0"),
            format!("tcpshake_survey_retransmissions_total{{{l}}} 0"),
            format!("tcpshake_survey_icmp_ignored_total{{{l}}} 0"),
            format!("tcpshake_survey_probes_total{{{l},state=\"open\",reason=\"syn-ack\"}} 0"),
            format!("tcpshake_survey_probes_total{{{l},state=\"closed\",reason=\"reset\"}} 0"),
            format!(
                "tcpshake_survey_probes_total{{{l},state=\"filtered\",reason=\"no-response\"}} 0"
            ),
            "tcpshake_survey_slo_windows_total{survey=\"fleet\",slo=\"connect.loss<1%\"} 0".into(),
            "tcpshake_survey_slo_breaches_total{survey=\"fleet\",slo=\"connect.loss<1%\"} 0".into(),
        ] {
            assert!(text.contains(&want), "no `{want}` in\n{text}");
        }
        for result in REQUEST_RESULTS {
            let want = format!("tcpshake_exporter_probe_requests_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&want), "no `{want}` in\n{text}");
        }
        // A failure is then an increase of the series that was there.
        m.failed(&who);
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("tcpshake_survey_failures_total{{{l}}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tcpshake_survey_exchange_failures_total{{{l}}} 0")),
            "{text}"
        );
        // An open port whose exchange failed counts as open and as a failed exchange; one
        // that worked only as open.
        m.record(&who, &record());
        let mut failed = record();
        failed.error = Some("TLS: the server does not speak TLS on this port".into());
        // Two forged ICMP errors about it, not believed.
        failed.icmp_ignored = 2;
        m.record(&who, &failed);
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            format!("tcpshake_survey_exchange_failures_total{{{l}}} 1"),
            format!("tcpshake_survey_icmp_ignored_total{{{l}}} 2"),
            format!("tcpshake_survey_probes_total{{{l},state=\"open\",reason=\"syn-ack\"}} 2"),
        ] {
            assert!(text.contains(&want), "no `{want}` in\n{text}");
        }
        assert!(!text.contains("tcpshake_survey_path_mtu_bytes{"), "{text}");
        // A probe whose segments a frag-needed lowered to a 1280-byte path: its gauge; the
        // next one at the full MTU drops it.
        let mut lowered = record();
        lowered.path_mtu = Some(1280);
        m.record(&who, &lowered);
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = format!("tcpshake_survey_path_mtu_bytes{{{l}}} 1280");
        assert!(text.contains(&want), "no `{want}` in\n{text}");
        m.record(&who, &record());
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("tcpshake_survey_path_mtu_bytes{"), "{text}");
    }

    /// The dashboard in contrib/grafana queries only metrics the exporter serves.
    #[test]
    fn the_grafana_dashboard_names_served_metrics() {
        let dash = include_str!("../../contrib/grafana/tcpshake-legs.json");
        let m = ExporterMetrics::new(&[1e-3]);
        let who = TargetLabels {
            survey: "s".into(),
            target: "t".into(),
            module: "m".into(),
        };
        m.record(&who, &record());
        m.failed(&who);
        m.slo_judged("s", "x", true);
        m.request("probed");
        let mut out = Vec::new();
        m.encode(false, &mut out).unwrap();
        let served = String::from_utf8(out).unwrap();
        let mut checked = 0;
        for (i, _) in dash.match_indices("tcpshake_") {
            let name: String = dash[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "tcpshake_" || name.starts_with("tcpshake_legs") {
                continue;
            }
            assert!(
                served.contains(&name),
                "the dashboard queries {name}, not served"
            );
            checked += 1;
        }
        assert!(checked >= 10, "{checked}");
    }

    /// `debug=true`: why it failed first, then the exchange, the metrics it would have
    /// answered and the module.
    #[test]
    fn a_debug_answer_says_why_then_shows_the_probe_and_its_metrics() {
        let golden =
            include_str!("../../crates/proto/src/probe/golden/open_http_server_closes.json");
        let mut r = ProbeResult::from_json_line(golden.trim()).unwrap();
        r.http = None;
        r.error = Some("no complete HTTP response within 5s".into());
        let m = tcpshake_proto::monitor::config::parse("", &crate::config::monitor_defaults())
            .unwrap()
            .modules["http"]
            .clone();
        let text = probe_debug(&r, std::time::Duration::from_millis(3), &m).unwrap();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "/probe of 198.18.0.2:80 with module `http`, 3.000 ms: tcpshake_probe_success 0: \
             no complete HTTP response within 5s"
        );
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("no `{needle}` in\n{text}"))
        };
        let order = [
            at("The probe, as `tcpshake probe` shows it:"),
            at("HEAD / HTTP/1.1"),
            at("error: no complete HTTP response"),
            at("Metrics that would have been returned:"),
            at("\ntcpshake_probe_success 0"),
            at("Module configuration:\n[modules.http]\nprober = \"http\""),
        ];
        assert!(order.is_sorted(), "{order:?}\n{text}");
        r.http = record().http;
        r.error = None;
        let ok = probe_debug(&r, std::time::Duration::from_millis(3), &m).unwrap();
        assert!(
            ok.lines()
                .next()
                .unwrap()
                .ends_with(": tcpshake_probe_success 1"),
            "{ok}"
        );
    }

    #[test]
    fn a_probe_answer_has_its_gauges() {
        let body = probe_body(&record(), std::time::Duration::from_millis(2), true).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("tcpshake_probe_success 1.0"), "{text}");
        assert!(
            text.contains("tcpshake_leg_seconds{leg=\"syn_to_synack\"} 0.0000218"),
            "{text}"
        );
        assert!(
            text.contains("tcpshake_port_state{state=\"open\",reason=\"syn-ack\"} 1"),
            "{text}"
        );
        assert!(text.contains("tcpshake_http_status_code 200.0"), "{text}");
    }

    /// The legs come in the record's order on every answer (they came from a hash map).
    #[test]
    fn a_probe_answer_keeps_one_order() {
        let legs = |body: Vec<u8>| -> Vec<String> {
            String::from_utf8(body)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("tcpshake_leg_seconds{"))
                .map(String::from)
                .collect()
        };
        let took = std::time::Duration::from_millis(2);
        let first = legs(probe_body(&record(), took, false).unwrap());
        let want: Vec<String> = record()
            .legs_ns
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(leg, _)| format!("tcpshake_leg_seconds{{leg=\"{}\"}}", leg.name()))
            .collect();
        let got: Vec<&str> = first.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(got, want);
        for _ in 0..20 {
            assert_eq!(legs(probe_body(&record(), took, false).unwrap()), first);
        }
    }
}

//! Review 15: what reaches proto from a configuration file, a target list, the command
//! line or an HTTP client, written by someone hostile or careless: no parser panics, and
//! the survey schedule stays sane across a clock step.

use crate::monitor::config::{self, Defaults};
use crate::monitor::schedule::Schedule;
use crate::monitor::{allow, query};
use crate::probe::{list, shard::Shard, stats, target};
use crate::time::Instant;
use proptest::prelude::*;
use std::time::Duration;

fn defaults() -> Defaults {
    Defaults {
        timeout: Duration::from_secs(5),
        retries: 2,
        max_retries: 10,
        rto: Duration::from_secs(1),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(60),
        time_wait: Duration::from_millis(250),
        linger: Duration::from_millis(200),
        jobs: 64,
        interval: Duration::from_secs(10),
        probe_rate: 10.0,
        probe_burst: 20,
        probe_max_in_flight: 8,
    }
}

/// Text with the characters the parsers split on, and some that are not ASCII.
fn texty() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('0', '9'),
            2 => proptest::char::range('a', 'z'),
            3 => proptest::sample::select(vec![
                ':', '[', ']', '/', '.', '%', '?', '#', '&', '=', '+', '<', '>', '*', '-', ',',
                ' ', '@', '\t', 'é', '\u{feff}', '→', '\u{7f}', '\n', 'p', 's', 'm', 'u',
            ]),
            1 => any::<char>(),
        ],
        0..60,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// A value TOML reads as any of its types, extremes included.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("9223372036854775807".to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("inf".to_string()),
        Just("nan".to_string()),
        Just("1e308".to_string()),
        Just("1.0000000000001".to_string()),
        texty().prop_map(|s| format!("{s:?}")),
        prop_oneof![
            Just("0s"),
            Just("24h"),
            Just("86400s"),
            Just("1ns"),
            Just("1e300s"),
            Just("-1s"),
            Just("0.0000000001ns"),
            Just("1.5"),
            Just("99999999999999999999h"),
        ]
        .prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("[\"1ms\", \"1ms\"]".to_string()),
        Just("{ start = \"1ns\", factor = 1e308, count = 64 }".to_string()),
        Just("{ start = \"24h\", factor = 1.0000001, count = 64 }".to_string()),
        Just("{ start = \"1ns\", factor = 2, count = 9223372036854775807 }".to_string()),
        Just("true".to_string()),
    ]
}

fn section(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(keys), toml_value()), 0..4).prop_map(|kv| {
        let mut seen = std::collections::HashSet::new();
        kv.into_iter()
            .filter(|(k, _)| seen.insert(*k))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

fn toml_file() -> impl Strategy<Value = String> {
    (
        section(&["jobs"]),
        section(&["max_in_flight", "rate", "burst", "allow", "allow_names"]),
        section(&["type", "buckets"]),
        section(&[
            "path",
            "host_header",
            "sni",
            "insecure",
            "timeout",
            "retries",
            "rto",
            "time_wait",
            "linger",
            "family",
            "mss",
            "valid_status_codes",
            "separate_ack",
        ]),
        section(&["interval", "slo", "target_files"]),
    )
        .prop_map(|(e, p, h, m, s)| {
            format!(
                "[exporter]\n{e}[probe]\n{p}[histograms]\n{h}[modules.m]\nprober = \"http\"\n{m}\
                 [[survey]]\nname = \"s\"\ntargets = [\"198.18.0.2:80\"]\nmodules = [\"m\"]\n{s}"
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn prop_review15_text_parsers_never_panic(s in texty(), port in proptest::option::of(any::<u16>())) {
        let _ = target::parse(&s, port);
        let _ = target::parse_host_port(&s);
        let _ = target::Host::parse(&s);
        let _ = target::expand(&s, &[80, 443, 80], target::Family::Any);
        let _ = target::names_port(&s);
        let _ = stats::parse_slos(&s);
        let _ = Shard::parse(&s);
        let _ = allow::Cidr::parse(&s);
        if let Ok(p) = allow::NamePattern::parse(&s) {
            let _ = p.matches(&s);
        }
        let _ = list::specs(s.as_bytes()).map(|i| i.count());
        let _ = query::percent_decode(&s);
        let _ = query::probe_query(Some(&s));
        let _ = config::survey_target(&s);
        let _ = crate::time::parse_duration(&s);
    }

    #[test]
    fn prop_review15_http_request_heads_never_panic(
        head in proptest::collection::vec(any::<u8>(), 0..300),
        scrape in texty(),
    ) {
        let _ = query::parse_head(&head);
        let h = format!("GET /probe?{scrape} HTTP/1.1\r\nX-Prometheus-Scrape-Timeout-Seconds: {scrape}\r\n\r\n");
        if let Ok(Some(h)) = query::parse_head(h.as_bytes()) {
            let _ = query::probe_query(h.query.as_deref());
            if let Some(t) = h.scrape_timeout {
                let _ = query::probe_budget(t);
            }
        }
    }

    /// Whatever the file says, `parse` answers (a configuration or a refusal with a line);
    /// what it accepts gives probes a bounded time budget.
    #[test]
    fn prop_review15_exporter_config_never_panics(text in toml_file()) {
        if let Ok(c) = config::parse(&text, &defaults()) {
            for m in c.modules.values() {
                let _ = m.settings();
                prop_assert!(m.timeout <= Duration::from_secs(86_400));
                prop_assert!(m.retries <= 10);
            }
            prop_assert!(!c.histograms.buckets.is_empty());
            prop_assert!(c.histograms.buckets.iter().all(|b| b.is_finite() && *b > 0.0), "{:?}", c.histograms.buckets);
        }
    }
}

fn t(ms: u64) -> Instant {
    Instant::from_nanos(1_000_000 + ms * 1_000_000)
}

/// The exporter's clock is `CLOCK_REALTIME`: a host that boots with its clock at 1970 and
/// is set by NTP later jumps decades forward. An entry that was 2^32 intervals or more
/// behind (100 ms intervals: 13.6 years) was moved on by at most u32::MAX intervals
/// (`interval * u32::try_from(behind + 1).unwrap_or(u32::MAX)`), which left it due
/// again at once: it ran back to back, once per poll, until it had caught up — four
/// rounds in a row after a 56-year step, with their misses counted each time.
#[test]
fn a_clock_step_of_decades_runs_a_survey_entry_once() {
    let mut s = Schedule::new();
    let a = s.add(Duration::from_millis(100), t(0));
    assert!(s.poll(t(0)).is_some());
    s.done(a);
    let step = t(56 * 365 * 86_400 * 1000);
    let d = s.poll(step).expect("due after the step");
    assert_eq!(d.entry, a);
    s.done(a);
    assert!(
        s.next_due().is_some_and(|n| n > step),
        "next due {:?}, now {step:?}",
        s.next_due()
    );
    assert_eq!(s.poll(step), None, "ran again at once");
}

/// `samples::rfc3339_to_unix` (public; the exporter reads a certificate's `notAfter` back
/// with it) takes any year that parses as an i64: `days * 86_400` (or `era * 146_097`
/// before it) overflows, a panic in a debug build.
#[test]
fn rfc3339_with_any_year_never_panics() {
    use crate::monitor::samples::rfc3339_to_unix;
    for y in [
        "9999999999999999",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        let s = format!("{y}-01-01T00:00:00Z");
        let r = std::panic::catch_unwind(|| rfc3339_to_unix(&s));
        assert!(r.is_ok(), "{s}: panicked");
    }
}

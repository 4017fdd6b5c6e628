//! `tcpshake exporter` in the lab: a real Prometheus (Debian's `prometheus`) scrapes it,
//! its histograms agree with `tcpshake report` over the same probes' records, `promtool
//! check metrics` finds nothing to say, `/probe` answers only what the allow-list allows
//! and refuses hostile requests, and SIGTERM resets the probes in flight and exits 0
//! without leaving the guard table behind.

use crate::lab;

use lab::faults::Reject;
use lab::peers::ListenerMode;
use lab::{Lab, in_ns, poll_until, run_bounded, signal};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the exporter listens inside the client namespace (private to the test).
const LISTEN: &str = "127.0.0.1:9917";

fn write_config(lab: &Lab, text: &str) -> PathBuf {
    let p = lab.dir().join("exporter.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts the exporter in the client namespace; waits until it answers.
fn start_exporter(lab: &mut Lab, config: &Path, records: Option<&Path>) -> u32 {
    let mut cmd = lab.client_cmd(["exporter", "--listen", LISTEN, "--config"]);
    cmd.arg(config);
    if let Some(r) = records {
        cmd.arg("--records").arg(r);
    }
    let log = std::fs::File::create(lab.dir().join("exporter.log")).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    let pid = lab.spawn_owned("tcpshake exporter", &mut cmd);
    let up = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        get(lab, "/").0 == 200
    });
    assert!(up, "the exporter did not answer:\n{}", exporter_log(lab));
    pid
}

fn exporter_log(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join("exporter.log")).unwrap_or_default()
}

/// `GET path` from inside the client namespace: (status, body); status 0 if no answer.
fn get(lab: &Lab, path: &str) -> (u16, String) {
    get_with(lab, path, &[])
}

fn get_with(lab: &Lab, path: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = in_ns(&lab.client_ns, "curl");
    cmd.args(["-s", "-g", "--max-time", "20", "-w", "\n%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://{LISTEN}{path}"));
    let out = cmd.stdin(Stdio::null()).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Raw bytes to the exporter (python in the namespace); the status line it answered.
fn raw(lab: &Lab, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',9917),timeout=10)\n\
         s.sendall(bytes.fromhex('{hex}'))\ns.shutdown(socket.SHUT_WR)\nd=b''\n\
         while True:\n c=s.recv(4096)\n if not c: break\n d+=c\n\
         print(d.split(b'\\r\\n')[0].decode())\n"
    );
    let out = run_bounded(
        in_ns(&lab.client_ns, "python3").args(["-c", &script]),
        Duration::from_secs(20),
    );
    out.stdout.trim().to_string()
}

/// `promtool check metrics` on `text`: (clean, what it said).
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

struct Prometheus {
    pid: u32,
}

/// Prometheus in the client namespace, scraping the exporter every second.
fn start_prometheus(lab: &mut Lab) -> Prometheus {
    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: tcpshake\n    static_configs:\n      - targets: ['{LISTEN}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut cmd = in_ns(&lab.client_ns, "prometheus");
    cmd.arg(format!("--config.file={}", conf.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(log);
    let pid = lab.spawn_owned("prometheus", &mut cmd);
    Prometheus { pid }
}

/// An instant query's vector result.
fn query(lab: &Lab, q: &str) -> Vec<Value> {
    let out = in_ns(&lab.client_ns, "curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "http://127.0.0.1:9090/api/v1/query",
        ])
        .args(["--data-urlencode", &format!("query={q}")])
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn scalar(v: &Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The value of the sample `series` (name and labels, as written) in an exposition; NaN
/// when it is not there.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Index of the bucket (upper bounds `bounds`, `+Inf` last) a value in seconds falls in.
fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds
        .iter()
        .position(|&b| v <= b * (1.0 + 1e-9))
        .unwrap_or(bounds.len())
}

lab_test! {
fn prometheus_scrapes_histograms_that_agree_with_report() {
    let mut lab = Lab::new("exporter-prom");
    lab.start_nginx(80);
    let server = lab.server_v4;
    // 10 µs × 2^k: 20 buckets up to 5.2 s.
    let bounds: Vec<f64> = (0..20).map(|k| 1e-5 * f64::from(1u32 << k)).collect();
    let config = write_config(
        &lab,
        &format!(
            "[histograms]\nbuckets = {{ start = \"10us\", factor = 2, count = 20 }}\n\n\
             [[survey]]\nname = \"lab\"\ntargets = [\"{server}:80\"]\ninterval = \"100ms\"\n\
             modules = [\"http\", \"tcp\"]\nslo = [\"syn_to_synack.p99<1s\"]\n"
        ),
    );
    let records = lab.dir().join("records.jsonl");
    let exporter = start_exporter(&mut lab, &config, Some(&records));
    let prom = start_prometheus(&mut lab);
    // Enough probes for the quantiles to mean something: ~10 s at 10 a second per module.
    let enough = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        query(
            &lab,
            "tcpshake_survey_leg_seconds_count{module=\"http\",leg=\"syn_to_synack\"}",
        )
        .first()
        .is_some_and(|v| scalar(v) >= 80.0)
    });
    assert!(
        enough,
        "Prometheus has not scraped 80 probes:\nexporter:\n{}\nprometheus:\n{}",
        exporter_log(&lab),
        std::fs::read_to_string(lab.dir().join("prometheus/log")).unwrap_or_default()
    );
    // The exporter is healthy in its own metrics, and the scrape is clean for promtool.
    let (status, text) = get(&lab, "/metrics");
    assert_eq!(status, 200);
    let (clean, said) = promtool(&text);
    assert!(
        clean,
        "promtool check metrics:\n{said}\n--- metrics ---\n{text}"
    );
    assert!(
        text.contains("tcpshake_exporter_probes_in_flight"),
        "{text}"
    );
    assert!(
        text.contains("tcpshake_exporter_capture_missed_packets_total 0"),
        "{text}"
    );
    // The exporter's loop waited for its kernel program before its first SYNs: it sent
    // the handshakes' ACKs.
    let kernel_acks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tcpshake_exporter_kernel_acks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tcpshake_exporter_kernel_acks_total\n{text}"));
    assert!(kernel_acks > 0, "{text}");
    assert!(
        text.contains(
            "tcpshake_survey_slo_windows_total{survey=\"lab\",slo=\"syn_to_synack.p99<1s\"}"
        ),
        "{text}"
    );
    let (status, om) = get_with(
        &lab,
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0"],
    );
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(
        query(&lab, "up{job=\"tcpshake\"}").first().map(scalar),
        Some(1.0)
    );

    // One instant: the count Prometheus holds and the quantiles over it.
    let legs = [
        "syn_to_synack",
        "synack_to_ack",
        "request_to_first_byte",
        "fin_to_ack",
        "total",
    ];
    let mut promql = Vec::new();
    for leg in legs {
        let sel = format!("{{module=\"http\",leg=\"{leg}\"}}");
        let n = query(&lab, &format!("tcpshake_survey_leg_seconds_count{sel}"))
            .first()
            .map(scalar)
            .unwrap();
        let qs: Vec<f64> = [0.5, 0.9, 0.99]
            .iter()
            .map(|q| {
                let r = query(
                    &lab,
                    &format!("histogram_quantile({q}, tcpshake_survey_leg_seconds_bucket{sel})"),
                );
                r.first().map(scalar).unwrap_or(f64::NAN)
            })
            .collect();
        promql.push((leg, n as usize, qs));
    }
    // Stop: the exporter flushes its records and exits 0 on SIGTERM.
    signal(exporter, "TERM");
    let mut exited = false;
    let mut code = None;
    for _ in 0..100 {
        if !lab.owned_alive(exporter) {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if exited {
        code = lab.owned_exit_code(exporter);
    }
    assert!(exited, "the exporter did not stop on SIGTERM");
    assert_eq!(code, Some(0), "{}", exporter_log(&lab));
    lab.stop_owned(prom.pid);

    // The same probes' records, as `tcpshake report` reads them: the first N http-module
    // records (the histograms and the records file take probes in the same order).
    let text = std::fs::read_to_string(&records).unwrap();
    let http: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"module\":\"http\""))
        .filter(|l| !l.contains("\"interrupted\":true"))
        .collect();
    // The whole file: one series per module, as the exporter's metrics have them (the
    // handshake-only probes' totals are not mixed into the HTTP ones').
    let out = run_bounded(
        Command::new(lab::tcpshake_bin())
            .args(["report", "--json"])
            .arg(&records),
        Duration::from_secs(30),
    );
    let rep: Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    let mut series: Vec<String> = rep["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap_or_default().to_string())
        .collect();
    series.sort();
    assert_eq!(
        series,
        [format!("{server}:80 module=http"), format!("{server}:80 module=tcp")]
    );
    for (leg, n, qs) in promql {
        // Probes in which this leg happened, in order, until the histogram's count.
        let mut chosen = Vec::new();
        for l in &http {
            let v: Value = serde_json::from_str(l).unwrap();
            if v["legs_ns"][leg].is_u64() {
                chosen.push(*l);
            }
            if chosen.len() == n {
                break;
            }
        }
        assert_eq!(
            chosen.len(),
            n,
            "{leg}: fewer records than the histogram counts"
        );
        let file = lab.dir().join(format!("records-{leg}.jsonl"));
        std::fs::write(&file, chosen.join("\n") + "\n").unwrap();
        let out = run_bounded(
            Command::new(lab::tcpshake_bin())
                .args(["report", "--json"])
                .arg(&file),
            Duration::from_secs(30),
        );
        let rep: Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
        let row = rep["overall"]["legs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["leg"] == leg)
            .cloned()
            .unwrap();
        assert_eq!(row["count"].as_u64(), Some(n as u64), "{leg}");
        for (q, (name, est)) in ["median_ns", "p90_ns", "p99_ns"].iter().zip(qs).enumerate() {
            let exact = row[name].as_u64().unwrap() as f64 / 1e9;
            let (a, b) = (bucket(&bounds, exact), bucket(&bounds, est));
            eprintln!(
                "{leg} {name}: report {exact} s (bucket {a}), histogram_quantile {est} s (bucket {b}), n = {n}"
            );
            assert!(
                a.abs_diff(b) <= 1,
                "{leg} {name}: tcpshake report {exact} s (bucket {a}) vs histogram_quantile \
                 {est} s (bucket {b}), quantile #{q}"
            );
        }
    }
}
}

lab_test! {
fn probe_answers_allowed_targets_and_refuses_the_rest() {
    let mut lab = Lab::new("exporter-probe");
    lab.start_nginx(80);
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{server}/32\", \"{}/128\"]\nallow_names = [\"localhost\"]\n\
             rate = 0.2\nburst = 5\n\n[modules.syn]\nprober = \"tcp\"\n\n\
             [modules.only204]\nprober = \"http\"\nvalid_status_codes = [204]\n",
            lab.server_v6
        ),
    );
    start_exporter(&mut lab, &config, None);

    let (status, body) = get(&lab, &format!("/probe?target={server}:80"));
    // With no answer (a guarded port once took curl's: see the narrow-range test), what
    // the exporter said and its own health.
    assert_eq!(
        status,
        200,
        "{body}\nexporter log:\n{}\n/metrics:\n{}",
        exporter_log(&lab),
        get(&lab, "/metrics").1
    );
    let (clean, said) = promtool(&body);
    assert!(clean, "promtool on /probe:\n{said}\n{body}");
    for want in [
        "tcpshake_probe_success 1",
        "tcpshake_leg_seconds{leg=\"syn_to_synack\"}",
        "tcpshake_leg_seconds{leg=\"request_to_first_byte\"}",
        "tcpshake_port_state{state=\"open\",reason=\"syn-ack\"} 1",
        "tcpshake_http_status_code 200",
        "tcpshake_peer_mss_bytes",
        "tcpshake_retransmissions 0",
        "tcpshake_capture_missed_packets 0",
    ] {
        // Rare full-suite failures here had the legs of our request absent: say what the
        // exporter saw then, not only the answer.
        assert!(
            body.contains(want),
            "no `{want}` in\n{body}\nexporter log:\n{}\n/metrics:\n{}",
            exporter_log(&lab),
            get(&lab, "/metrics").1
        );
    }
    // The tcp module: handshake and close, no HTTP legs.
    let (status, body) = get(
        &lab,
        &format!("/probe?target=[{}]:80&module=syn", lab.server_v6),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tcpshake_leg_seconds{leg=\"fin_to_ack\"}"),
        "{body}"
    );
    assert!(!body.contains("request_to_first_byte"), "{body}");
    // A status outside the module's valid_status_codes fails the probe, as blackbox's
    // http prober: the gauge says 0, the status is still there, debug says why.
    let (status, body) = get(&lab, &format!("/probe?target={server}:80&module=only204"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tcpshake_probe_success 0"), "{body}");
    assert!(body.contains("tcpshake_http_status_code 200"), "{body}");
    let log = exporter_log(&lab);
    assert!(
        log.contains("HTTP status 200 is not one of module `only204`'s valid_status_codes (204)"),
        "{log}"
    );
    // A closed port is an answer, not an error.
    let (status, body) = get(&lab, &format!("/probe?target={server}:81&module=syn"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tcpshake_probe_success 0"), "{body}");
    assert!(body.contains("state=\"closed\",reason=\"reset\""), "{body}");

    // Outside the allow-list: refused before anything is sent.
    let o = server.octets();
    let outside = format!("{}.{}.{}.{}", o[0], o[1], o[2], 3);
    for (path, words) in [
        (
            format!("/probe?target={outside}:80"),
            "not in the exporter's allowed",
        ),
        (
            "/probe?target=127.0.0.1:9917".to_string(),
            "not in the exporter's allowed",
        ),
        (
            "/probe?target=[::ffff:127.0.0.1]:9917".to_string(),
            "not in the exporter's allowed",
        ),
        (
            "/probe?target=example.com:80".to_string(),
            "not in the exporter's allowed names",
        ),
        ("/probe?target=localhost:80".to_string(), "resolved to"),
    ] {
        let (status, body) = get(&lab, &path);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains(words), "{path}: {body}");
    }
    // Hostile and malformed requests: 4xx with a reason, never a crash.
    for path in [
        "/probe",
        "/probe?target=",
        "/probe?target=%zz",
        "/probe?target=a%00b:80",
        "/probe?target=198.18.0.2:99999",
        "/probe?target=198.18.0.2:80&target=198.18.0.2:80",
        "/probe?target=198.18.0.2:80&module=nope",
        "/probe?target=http://198.18.0.2/",
        "/probe?debug=yes&target=198.18.0.2:80",
        "/probe?verbose=true&target=198.18.0.2:80",
        "/probe?target=%C0%AF:80",
        "/probe?target=[fd00::2:80",
    ] {
        let (status, body) = get(&lab, path);
        assert_eq!(status, 400, "{path}: {body}");
    }
    let long = format!("/probe?target={}", "a".repeat(20_000));
    assert_eq!(get(&lab, &long).0, 431);
    assert_eq!(get(&lab, "/nothing").0, 404);
    assert!(raw(&lab, b"POST /probe HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(
        raw(
            &lab,
            b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03\r\n\r\n"
        )
        .starts_with("HTTP/1.1 400")
    );
    assert!(
        raw(&lab, b"GET /probe?target=\xff\xfe:80 HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400")
    );
    // The rate: the burst of 5 was spent by the 4 probes above and this one; then 429.
    let (status, _) = get(&lab, &format!("/probe?target={server}:80&module=syn"));
    assert_eq!(status, 200);
    let (status, body) = get(&lab, &format!("/probe?target={server}:80&module=syn"));
    assert_eq!(status, 429, "{body}");
    // Still serving, and it counted what it refused.
    let (status, m) = get(&lab, "/metrics");
    assert_eq!(status, 200);
    for want in [
        "result=\"denied\"} 5",
        "result=\"rate-limited\"} 1",
        "result=\"probed\"} 5",
    ] {
        assert!(m.contains(want), "no `{want}` in\n{m}");
    }
}
}

lab_test! {
/// The exporter's ports never take one a kernel connection holds, whatever its address:
/// the guard drops by port, and a `/probe` request's own connection (curl on 127.0.0.1)
/// once lost its answer to a port the exporter had reserved on the lab's address. A
/// range of eight ports makes that nearly certain within a few requests. Six of them:
/// each request's connection may leave its port in TIME-WAIT (when the client closes
/// first), so an eighth request found all eight held — five, and the one in use, leave
/// two free (3 runs in 15 failed so, "no free source port in 40000-40007").
fn probe_requests_keep_their_connections_in_a_narrow_port_range() {
    let mut lab = Lab::new("exporter-narrow");
    lab.start_nginx(80);
    let sysctl = run_bounded(
        in_ns(&lab.client_ns, "sysctl").args(["-qw", "net.ipv4.ip_local_port_range=40000 40007"]),
        Duration::from_secs(10),
    );
    assert_eq!(sysctl.code, Some(0), "{}", sysctl.stderr);
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{}/32\", \"{}/128\"]\nrate = 100\nburst = 100\n",
            lab.server_v4, lab.server_v6
        ),
    );
    start_exporter(&mut lab, &config, None);
    for k in 0..6 {
        let target = if k % 2 == 0 {
            format!("{}:80", lab.server_v4)
        } else {
            format!("[{}]:80", lab.server_v6)
        };
        let (status, body) = get(&lab, &format!("/probe?target={target}"));
        assert_eq!(
            status,
            200,
            "request {k} ({target}): {body}\nexporter log:\n{}",
            exporter_log(&lab)
        );
        assert!(body.contains("tcpshake_probe_success 1"), "{target}: {body}");
    }
}
}

lab_test! {
/// A target no connection can be made to — the subnet's broadcast address, allowed by a
/// /24 — costs only itself: `/probe` answers with why, a survey of it beside a real one
/// goes on, and the exporter keeps serving (one such request used to stop it: the
/// kernel's EACCES ended the whole loop).
fn a_broadcast_target_costs_only_itself() {
    let mut lab = Lab::new("exporter-bcast");
    lab.start_nginx(80);
    let o = lab.server_v4.octets();
    let subnet = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
    let broadcast = format!("{}.{}.{}.255", o[0], o[1], o[2]);
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{subnet}\"]\nrate = 100\nburst = 100\n\n[[survey]]\n\
             name = \"lan\"\ninterval = \"1s\"\ntargets = [\"{broadcast}:80\", \"{}:80\"]\n",
            lab.server_v4
        ),
    );
    start_exporter(&mut lab, &config, None);
    // A failed probe (as blackbox answers a connection it cannot make), with why.
    let (status, body) = get(&lab, &format!("/probe?target={broadcast}:80"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body, "tcpshake_probe_success"), 0.0, "{body}");
    let (status, body) = get(&lab, &format!("/probe?target={broadcast}:80&debug=true"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("is a broadcast address"), "{body}");
    // Still serving, and still surveying the real target.
    let (status, body) = get(&lab, &format!("/probe?target={}:80", lab.server_v4));
    assert_eq!(status, 200, "{body}\n{}", exporter_log(&lab));
    std::thread::sleep(Duration::from_millis(2500));
    let (status, metrics) = get(&lab, "/metrics");
    assert_eq!(status, 200, "{}", exporter_log(&lab));
    let real = format!("survey=\"lan\",target=\"{}:80\",module=\"http\"", lab.server_v4);
    let probes = value(
        &metrics,
        &format!("tcpshake_survey_probes_total{{{real},state=\"open\",reason=\"syn-ack\"}}"),
    );
    assert!(probes >= 2.0, "{metrics}\n{}", exporter_log(&lab));
    let failures = value(
        &metrics,
        &format!("tcpshake_survey_failures_total{{survey=\"lan\",target=\"{broadcast}:80\",module=\"http\"}}"),
    );
    assert!(failures >= 1.0, "{metrics}");
    // The target that never failed has its failure counter all the same, at 0: `rate()`
    // of it has data from the first scrape (client_golang's advice).
    assert_eq!(
        value(&metrics, &format!("tcpshake_survey_failures_total{{{real}}}")),
        0.0,
        "{metrics}"
    );
    assert!(promtool(&metrics).0, "{}", promtool(&metrics).1);
    assert!(exporter_log(&lab).contains("is a broadcast address"), "{}", exporter_log(&lab));
}
}

lab_test! {
fn sigterm_resets_probes_in_flight_exits_0_and_removes_the_guard() {
    let mut lab = Lab::new("exporter-term");
    // Accepts and never answers: every HTTP probe waits for its response.
    lab.start_kernel_listener(8080, ListenerMode::ReadUntilEof);
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{server}/32\"]\n\n[[survey]]\nname = \"hang\"\n\
             targets = [\"{server}:8080\"]\ninterval = \"100ms\"\n"
        ),
    );
    let exporter = start_exporter(&mut lab, &config, None);
    // A /probe in flight too, answered when the exporter stops.
    let mut waiting = in_ns(&lab.client_ns, "curl");
    waiting
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg(format!("http://{LISTEN}/probe?target={server}:8080"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let waiting = waiting.spawn().unwrap();
    let established = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        lab.server_sockets()
            .iter()
            .filter(|(state, local, _)| state == "ESTAB" && local.ends_with(":8080"))
            .count()
            >= 2
    });
    assert!(established, "{:?}", lab.server_sockets());
    assert_eq!(
        lab.client_nft_tables().len(),
        1,
        "one guard table for everything"
    );
    signal(exporter, "TERM");
    let out = waiting.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("503") || text.contains("tcpshake_probe_success 0"),
        "{text}"
    );
    let stopped = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        !lab.owned_alive(exporter)
    });
    assert!(stopped);
    assert_eq!(
        lab.owned_exit_code(exporter),
        Some(0),
        "{}",
        exporter_log(&lab)
    );
    assert!(exporter_log(&lab).contains("exporter stopped (SIGTERM)"));
    // Our RSTs ended the server's connections; nothing of ours is left.
    let gone = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        !lab.server_sockets()
            .iter()
            .any(|(state, local, _)| state == "ESTAB" && local.ends_with(":8080"))
    });
    assert!(gone, "{:?}", lab.server_sockets());
    assert!(lab.client_nft_tables().is_empty());
}
}

#[test]
fn a_bad_configuration_is_refused_with_its_line() {
    let dir = std::env::temp_dir().join(format!("tsk-{}-exporter-config", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    // `tcpshake exporter --check-config` of `cfg` as it is written now.
    let check_config = || {
        run_bounded(
            Command::new(lab::tcpshake_bin())
                .args(["exporter", "--check-config", "--config"])
                .arg(&cfg),
            Duration::from_secs(10),
        )
    };
    // The kernel program turned off: said, as the rest of what the file decides.
    std::fs::write(&cfg, "[exporter]\nreflex = false\n").unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("OK:") && out.stdout.contains("(reflex = false)"),
        "{out}"
    );
    // An allow-list wide open: a warning, exit 0 (a lab may want it).
    std::fs::write(
        &cfg,
        "[probe]\nallow = [\"0.0.0.0/0\", \"198.18.0.0/15\"]\n",
    )
    .unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("warning:")
            && out
                .stderr
                .contains("allow `0.0.0.0/0` lets /probe reach every IPv4 address")
            && !out.stderr.contains("198.18.0.0/15"),
        "{out}"
    );
    std::fs::write(&cfg, "[probe]\nallow = [\"198.18.0.0/15\"]\n\n[[survey]]\nname = \"x\"\ntargets = [\"198.18.0.2\"]\n").unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains(&format!("{}, line 6:", cfg.display())),
        "{out}"
    );
    // Every refusal names its line: the histogram type this build cannot serve, buckets
    // written neither way, and a missing file in words.
    for (text, line, words) in [
        (
            "# a\n[histograms]\ntype = \"native\"\n",
            3,
            "use type = \"classic\"",
        ),
        (
            "[histograms]\nbuckets = \"1ms\"\n",
            2,
            "`buckets` must be a list",
        ),
        (
            "[[survey]]\nname = \"x\"\ntargets = [\"198.18.0.010:80\"]\n",
            3,
            "leading zero",
        ),
        // A file read at start: the key, not a command-line option.
        (
            "[modules.x]\nprober = \"https\"\ncacert = \"/nonexistent/ca.pem\"\n",
            3,
            "module `x`: cannot read cacert /nonexistent/ca.pem: no such file",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = check_config();
        assert_eq!(out.code, Some(2), "{text}\n{out}");
        let at = format!("{}, line {line}:", cfg.display());
        assert!(
            out.stderr.contains(&at) && out.stderr.contains(words),
            "{text}\n{out}"
        );
        assert!(!out.stderr.contains("--"), "the file has no options: {out}");
    }
    let out = run_bounded(
        Command::new(lab::tcpshake_bin()).args(["exporter", "--config", "/nonexistent/x.toml"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("x.toml: no such file or directory"),
        "{out}"
    );
    let list = dir.join("fleet.txt");
    std::fs::write(&list, "198.18.0.2:80\n\n198.18.0.3\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[[survey]]\nname = \"x\"\ntarget_files = [\"{}\"]\n",
            list.display()
        ),
    )
    .unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains(&format!("{}, line 3:", list.display())),
        "{out}"
    );
    // A target its module's family cannot reach: the module and its setting named, exit 2
    // (the exporter has no -4 to drop).
    std::fs::write(&list, "198.18.0.2:80\n[fd00:77::2]:80\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[modules.v4]\nprober = \"tcp\"\nfamily = \"ipv4\"\n\n[[survey]]\nname = \"x\"\nmodules = [\"v4\"]\ntarget_files = [\"{}\"]\n",
            list.display()
        ),
    )
    .unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}, line 2: survey x: fd00:77::2 is an IPv6 address, but module `v4` has family = \"ipv4\" (line 3)",
            list.display()
        )),
        "{out}"
    );
    // (Not `-4` alone: the lab's directory name holds the test's pid, `tsk-494-…`.)
    assert!(!out.stderr.contains(" -4"), "{out}");
    std::fs::write(
        &cfg,
        format!(
            "[[survey]]\nname = \"x\"\ntarget_files = [\"{}\"]\n",
            list.display()
        ),
    )
    .unwrap();
    std::fs::write(&list, "198.18.0.2:80 198.18.0.3:80\n").unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("2 probes every interval"), "{out}");
    // A target in `targets` and in the file too: its series would be sampled twice an
    // interval. Refused, naming both places.
    std::fs::write(
        &cfg,
        format!(
            "[[survey]]\nname = \"x\"\ntargets = [\"198.18.0.3:80\"]\ntarget_files = [\"{}\"]\n",
            list.display()
        ),
    )
    .unwrap();
    let out = check_config();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}, line 1: survey x: target 198.18.0.3:80 is listed already ({}, line 3)",
            list.display(),
            cfg.display()
        )),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

lab_test! {
fn https_probes_report_tls_facts_and_tls_legs() {
    let mut lab = Lab::new("exporter-tls");
    let pki = lab.make_pki("exporter", lab::tls::VALID);
    lab.start_nginx_tls(443, &pki.chain, &pki.key, "TLSv1.2 TLSv1.3");
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{server}/32\"]\n\n[modules.web]\nprober = \"https\"\n\
             cacert = \"{}\"\n\n[[survey]]\nname = \"tls\"\ntargets = [\"{server}:443\"]\n\
             interval = \"200ms\"\nmodules = [\"web\"]\n",
            pki.ca.display()
        ),
    );
    start_exporter(&mut lab, &config, None);
    let (status, body) = get(&lab, &format!("/probe?target={server}:443&module=web"));
    assert_eq!(status, 200, "{body}");
    assert!(promtool(&body).0, "{body}");
    for want in [
        "tcpshake_probe_success 1",
        "tcpshake_tls_version_info{version=\"TLSv1.3\",cipher=\"TLS13_",
        // The lab's chain: every certificate ends on 2099-01-01 (tests/lab/tls.rs).
        "tcpshake_tls_cert_expiry_timestamp_seconds 4070908800",
        "tcpshake_leg_seconds{leg=\"tls_syn_to_appconnect\"}",
        "tcpshake_http_status_code 200",
    ] {
        assert!(body.contains(want), "no `{want}` in\n{body}");
    }
    // Without the module's CA, the same server is a failed probe, not a failed request.
    let (status, body) = get(&lab, &format!("/probe?target={server}:443&module=https"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tcpshake_probe_success 0"), "{body}");
    // Why, on stderr: the target, the module and the reason, one line.
    let why = "TLS: certificate verification failed";
    let logged = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        exporter_log(&lab).lines().any(|l| {
            l.starts_with(&format!("tcpshake: /probe target={server}:443 module=https: {why}"))
        })
    });
    assert!(logged, "{}", exporter_log(&lab));
    // And with debug=true (blackbox_exporter's convention), in the answer: why first,
    // then the exchange, then the metrics the request would have returned.
    let (status, text) = get(
        &lab,
        &format!("/probe?target={server}:443&module=https&debug=true"),
    );
    assert_eq!(status, 200, "{text}");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("/probe of {server}:443 with module `https`"))
            && first.contains(&format!("tcpshake_probe_success 0: {why}")),
        "{text}"
    );
    // What to set to go on anyway is the module's key: the exporter has no --insecure.
    assert!(
        first.contains("`insecure = true` in the module to go on anyway")
            && !first.contains("--insecure"),
        "{first}"
    );
    for want in [
        "TLS ClientHello",
        "NOT VERIFIED",
        "Metrics that would have been returned:",
        "\ntcpshake_tls_cert_expiry_timestamp_seconds 4070908800",
        "Module configuration:\n[modules.https]",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    // A successful probe's account says so, and its metrics are the usual answer's.
    let (status, text) = get(
        &lab,
        &format!("/probe?target={server}:443&module=web&debug=1"),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.lines().next().unwrap_or_default().ends_with("tcpshake_probe_success 1"),
        "{text}"
    );
    assert!(text.contains("HEAD / HTTP/1.1 in TLS"), "{text}");
    let (_, metrics) = get(&lab, "/metrics");
    assert!(
        metrics.contains("tcpshake_exporter_probe_requests_total{result=\"probed\"} 4"),
        "{metrics}"
    );
    // The survey keeps the TLS legs as histograms too.
    let seen = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        get(&lab, "/metrics")
            .1
            .contains("leg=\"tls_clienthello_to_serverhello\"")
    });
    assert!(seen, "{}", get(&lab, "/metrics").1);
}
}

lab_test! {
/// An address to listen on that the system refuses is the environment's answer (exit 3),
/// with what to do: the port another program holds, an address this host does not have.
fn a_listen_address_the_system_refuses_says_why_and_exits_3() {
    let lab = Lab::new("exporter-listen");
    let config = write_config(
        &lab,
        &format!("[probe]\nallow = [\"{}/32\"]\n", lab.server_v4),
    );
    let config = config.to_str().unwrap();
    // A kernel listener holds the port; the exporter is started beside it.
    let script = "import socket,subprocess,sys\n\
         s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n\
         port=s.getsockname()[1]\n\
         r=subprocess.run([sys.argv[1],'exporter','--config',sys.argv[2],'--listen',f'127.0.0.1:{port}'],\
         capture_output=True,text=True,timeout=20)\n\
         print(r.returncode); print(r.stderr)\n";
    let run = run_bounded(
        in_ns(&lab.client_ns, "python3").args(["-c", script, lab::tcpshake_bin(), config]),
        Duration::from_secs(30),
    );
    assert!(run.stdout.starts_with("3\n"), "{run}");
    assert!(run.stdout.contains("another program listens there"), "{run}");
    let run = lab.run_client_bounded(
        ["exporter", "--config", config, "--listen", &format!("{}:9917", lab.server_v4)],
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(3), "{run}");
    assert!(run.stderr.contains("is not an address of this host"), "{run}");
}
}

lab_test! {
/// Prometheus says how long it waits (`X-Prometheus-Scrape-Timeout-Seconds`): a `/probe`
/// of a port that never answers ends half a second before that, as blackbox_exporter's
/// does, and answers `tcpshake_probe_success 0` with why — rather than running its SYN
/// retries out (63 s with `retries = 5`) after Prometheus gave up with "context deadline
/// exceeded", holding a `max_in_flight` place meanwhile, so that the next scrapes of every
/// other target got 429.
fn a_probe_ends_before_the_scrape_timeout() {
    let mut lab = Lab::new("exporter-scrape-timeout");
    let server = lab.server_v4;
    lab.fault_reject(82, Reject::Drop);
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{server}/32\"]\nmax_in_flight = 1\n\n\
             [modules.patient]\nprober = \"tcp\"\nretries = 5\n"
        ),
    );
    start_exporter(&mut lab, &config, None);
    let header = "X-Prometheus-Scrape-Timeout-Seconds: 2";
    let started = std::time::Instant::now();
    let (status, body) = get_with(
        &lab,
        &format!("/probe?target={server}:82&module=patient"),
        &[header],
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}\n{}", exporter_log(&lab));
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(1900),
        "answered after {took:?}, not 1.5 s (the scrape's 2 s less 0.5 s):\n{body}"
    );
    assert_eq!(value(&body, "tcpshake_probe_success"), 0.0, "{body}");
    assert_eq!(
        value(&body, "tcpshake_port_state{state=\"filtered\",reason=\"no-response\"}"),
        1.0,
        "{body}"
    );
    // Its place is free at once: the next request is probed, not refused with 429.
    let (status, body) = get_with(
        &lab,
        &format!("/probe?target={server}:82&module=patient&debug=true"),
        &[header],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("the scrape's timeout ran out"), "{body}");
    // A header that is not a number of seconds is refused, not taken as no limit.
    let (status, body) = get_with(
        &lab,
        &format!("/probe?target={server}:82"),
        &["X-Prometheus-Scrape-Timeout-Seconds: soon"],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not a number of seconds"), "{body}");
}
}

lab_test! {
/// A `/probe` that waits for a free place — every one of `[exporter] jobs` taken by a
/// survey probe that will not end soon — is answered by the scrape's timeout too, and never
/// started after it (a review's repro: `jobs = 1`, answered after 12–14 s to a 2 s scrape).
fn a_probe_waiting_for_a_place_is_answered_by_the_scrape_timeout() {
    let mut lab = Lab::new("exporter-scrape-queue");
    let server = lab.server_v4;
    lab.fault_reject(82, Reject::Drop);
    let config = write_config(
        &lab,
        &format!(
            "[exporter]\njobs = 1\n\n[probe]\nallow = [\"{server}/32\"]\n\n\
             [modules.patient]\nprober = \"tcp\"\nretries = 5\n\n\
             [[survey]]\nname = \"hog\"\ninterval = \"1s\"\nmodules = [\"patient\"]\n\
             targets = [\"{server}:82\"]\n"
        ),
    );
    start_exporter(&mut lab, &config, None);
    // The survey's probe has its place (it starts within its interval, then retries for a
    // minute), and the gauge says so while it runs.
    let busy = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, m) = get_with(&lab, "/metrics", &[]);
        m.lines().any(|l| l == "tcpshake_exporter_probes_in_flight 1")
    });
    assert!(busy, "{}", exporter_log(&lab));
    let started = std::time::Instant::now();
    let (status, body) = get_with(
        &lab,
        &format!("/probe?target={server}:82&module=tcp&debug=true"),
        &["X-Prometheus-Scrape-Timeout-Seconds: 2"],
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}\n{}", exporter_log(&lab));
    assert!(
        took < Duration::from_millis(1950),
        "answered after {took:?}, past the scrape's 2 s:\n{body}"
    );
    assert!(
        body.contains("tcpshake_probe_success 0")
            && body.contains("it waited for a free place"),
        "{body}"
    );
}
}

lab_test! {
/// `--records` is appended to: a restarted exporter (systemd, a new configuration) keeps the
/// records of the runs before — it used to truncate the file, losing them. A last line a
/// killed run left unfinished is cut off with a warning (ended with a newline instead, it
/// stayed a broken line mid-file that `jq` and pandas stop at), so every line is a record.
fn records_are_appended_across_restarts() {
    let mut lab = Lab::new("exporter-append");
    lab.start_nginx(80);
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[[survey]]\nname = \"again\"\ninterval = \"200ms\"\ntargets = [\"{server}:80\"]\n"
        ),
    );
    let records = lab.dir().join("records.jsonl");
    let earlier = "{\"schema\":1,\"target\":\"earlier run\"}\n{\"schema\":1,\"target\":\"cut";
    std::fs::write(&records, earlier).unwrap();
    for run in 1..=2 {
        let exporter = start_exporter(&mut lab, &config, Some(&records));
        let written = |n: usize| {
            std::fs::read_to_string(&records)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"module\":\"http\""))
                .count()
                >= n
        };
        assert!(
            poll_until(Duration::from_secs(10), Duration::from_millis(50), || written(run * 2)),
            "run {run}: no records:\n{}",
            exporter_log(&lab)
        );
        signal(exporter, "TERM");
        assert!(poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !lab.owned_alive(exporter)
        }));
        // The first run found the cut line; the second, a file whose lines are whole.
        let warned = exporter_log(&lab).contains("its last line was cut short (25 bytes");
        assert_eq!(warned, run == 1, "run {run}:\n{}", exporter_log(&lab));
    }
    let text = std::fs::read_to_string(&records).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{\"schema\":1,\"target\":\"earlier run\"}", "{text}");
    assert!(text.ends_with('\n'), "{text}");
    for l in &lines[1..] {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(v["module"], "http", "{l}");
    }
    assert!(lines.len() >= 5, "the earlier record and four new: {text}");
}
}

lab_test! {
/// A `/probe` that cannot be made — no route to the address — is a failed probe, 200 with
/// `tcpshake_probe_success 0` (blackbox_exporter answers a connection or DNS failure so),
/// not a 502: Prometheus took that for a failed scrape (`up 0`, no success gauge), so the
/// alert on the gauge never fired. `debug=true` says why; the log line and the request's
/// `result` count stay.
fn a_probe_that_cannot_be_made_is_a_failed_probe() {
    let mut lab = Lab::new("exporter-unmade");
    let unrouted = lab.elsewhere_v4(0);
    let config = write_config(&lab, &format!("[probe]\nallow = [\"{unrouted}/32\"]\n"));
    start_exporter(&mut lab, &config, None);
    let (status, body) = get(&lab, &format!("/probe?target={unrouted}:80"));
    assert_eq!(status, 200, "{body}\n{}", exporter_log(&lab));
    assert_eq!(value(&body, "tcpshake_probe_success"), 0.0, "{body}");
    assert!(value(&body, "tcpshake_probe_duration_seconds") >= 0.0, "{body}");
    assert!(promtool(&body).0, "{}", promtool(&body).1);
    let (status, body) = get(&lab, &format!("/probe?target={unrouted}:80&debug=true"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("tcpshake_probe_success 0: could not start: no route to {unrouted}")), "{body}");
    assert!(exporter_log(&lab).contains(&format!("/probe target={unrouted}:80 module=http: could not start: no route")), "{}", exporter_log(&lab));
    let (_, metrics) = get(&lab, "/metrics");
    assert_eq!(
        value(&metrics, "tcpshake_exporter_probe_requests_total{result=\"error\"}"),
        2.0,
        "{metrics}"
    );
}
}

lab_test! {
/// A module's `separate_ack = true` is `probe --separate-ack`: the handshake's ACK goes
/// alone and the request after it (for servers behind a SYN proxy); without it the
/// request rides on that ACK, as every survey's does.
fn a_module_with_separate_ack_sends_the_handshakes_ack_alone() {
    let mut lab = Lab::new("exporter-sepack");
    lab.start_nginx(80);
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[probe]\nallow = [\"{server}/32\"]\n\n[modules.proxied]\nprober = \"http\"\n\
             separate_ack = true\n"
        ),
    );
    start_exporter(&mut lab, &config, None);
    // Our segments' flags, in order, from the debug view's segment lines (`>` is ours).
    let ours = |module: &str| {
        let (status, text) = get(
            &lab,
            &format!("/probe?target={server}:80&module={module}&debug=true"),
        );
        assert_eq!(status, 200, "{text}");
        let flags: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                (t.len() > 3 && t[1] == "ms" && t[2] == ">").then(|| t[3].to_string())
            })
            .collect();
        (flags, text)
    };
    let (flags, text) = ours("proxied");
    assert!(
        flags.len() >= 3 && flags[0] == "S" && flags[1] == "A" && flags[2] == "PA",
        "{flags:?}\n{text}"
    );
    let (flags, text) = ours("http");
    assert!(
        flags.len() >= 2 && flags[0] == "S" && flags[1] == "PA",
        "{flags:?}\n{text}"
    );
}
}

lab_test! {
/// `[exporter] reflex = false` is `probe --no-reflex`: every SYN-ACK of the surveys is
/// answered from the exporter's loop, the counter of the kernel program's ACKs stays at 0,
/// and the log says nothing of a program it was told not to load.
fn reflex_false_answers_every_synack_from_the_loop() {
    let mut lab = Lab::new("exporter-noreflex");
    lab.start_nginx(80);
    let server = lab.server_v4;
    let config = write_config(
        &lab,
        &format!(
            "[exporter]\nreflex = false\n\n[[survey]]\nname = \"lab\"\n\
             targets = [\"{server}:80\"]\ninterval = \"100ms\"\nmodules = [\"http\"]\n"
        ),
    );
    start_exporter(&mut lab, &config, None);
    let series = format!(
        "tcpshake_survey_probes_total{{survey=\"lab\",target=\"{server}:80\",module=\"http\",\
         state=\"open\",reason=\"syn-ack\"}}"
    );
    let mut text = String::new();
    let enough = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        text = get(&lab, "/metrics").1;
        value(&text, &series) >= 10.0
    });
    assert!(enough, "10 probes did not finish:\n{text}\n{}", exporter_log(&lab));
    assert_eq!(
        value(&text, "tcpshake_exporter_kernel_acks_total"),
        0.0,
        "{text}"
    );
    assert!(
        !exporter_log(&lab).contains("kernel program"),
        "{}",
        exporter_log(&lab)
    );
}
}

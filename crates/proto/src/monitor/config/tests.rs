use super::*;

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

fn ok(text: &str) -> ExporterConfig {
    parse(text, &defaults()).unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
}

/// The refusal, which must name `line` and contain `words`.
fn refused(text: &str, line: usize, words: &str) {
    let e = parse(text, &defaults()).expect_err(text);
    assert_eq!(e.line, Some(line), "{e}\n{text}");
    assert!(
        e.message.contains(words),
        "`{}` lacks `{words}`\n{text}",
        e.message
    );
}

const FULL: &str = r#"# a full configuration
[exporter]
jobs = 128

[probe]
allow = ["198.18.0.0/15", "fd00::/8"]
allow_names = ["*.lab.test"]
max_in_flight = 4
rate = 5
burst = 10
default_module = "web"

[histograms]
type = "both"
buckets = { start = "10us", factor = 2, count = 10 }

[modules.web]
prober = "https"
path = "/healthz"
host_header = "www.lab.test"
sni = "www.lab.test"
cacert = "/etc/ca.pem"
insecure = true
timeout = "2s"
retries = 1
rto = "500ms"
family = "ipv6"
mss = 1220
valid_status_codes = [200, 301]

[modules.syn]
prober = "tcp"

[[survey]]
name = "fleet"
targets = ["198.18.0.2:80", "[fd00::2]:443", "www.lab.test:8080"]
target_files = ["fleet.txt"]
interval = "2s"
modules = ["http", "syn"]
slo = ["syn_to_synack.p99<5ms", "connect.loss<1%"]

[[survey]]
name = "web-2"
targets = ["[fd00::3]:443"]
modules = ["web"]
"#;

#[test]
fn a_full_configuration_is_read() {
    let c = ok(FULL);
    assert_eq!(c.jobs, 128);
    assert_eq!(c.probe.max_in_flight, 4);
    assert_eq!(c.probe.rate, 5.0);
    assert_eq!(c.probe.burst, 10);
    assert_eq!(c.probe.default_module, "web");
    assert_eq!(c.probe.allow.cidrs.len(), 2);
    assert_eq!(c.histograms.kind, HistogramKind::Both);
    assert_eq!(c.histograms.buckets.len(), 10);
    assert_eq!(c.histograms.buckets[0], 1e-5);
    assert_eq!(c.histograms.buckets[9], 0.00512);
    let web = &c.modules["web"];
    assert_eq!(web.prober, Prober::Https);
    assert_eq!(web.path, "/healthz");
    assert_eq!(web.family, Family::V6);
    assert_eq!(web.retries, 1);
    assert_eq!(web.rto, Duration::from_millis(500));
    assert_eq!(web.mss, Some(1220));
    assert_eq!(web.valid_status_codes, [200, 301]);
    assert!(c.modules["http"].valid_status_codes.is_empty());
    assert!(!web.separate_ack && !c.modules["http"].separate_ack);
    let proxied = ok("[modules.proxied]\nprober = \"https\"\nseparate_ack = true\n");
    assert!(proxied.modules["proxied"].separate_ack);
    assert_eq!(c.modules["syn"].mss, None);
    assert!(web.insecure);
    assert_eq!(web.cacert, Some(PathBuf::from("/etc/ca.pem")));
    // Where it was set, for a refusal of the file when it is read at start.
    assert_eq!(web.cacert_line, Some(22));
    assert_eq!(c.modules["syn"].prober, Prober::Tcp);
    // The built-in modules stay.
    assert_eq!(c.modules["http"].prober, Prober::Http);
    assert_eq!(c.surveys.len(), 2);
    let s = &c.surveys[0];
    assert_eq!(s.targets.len(), 3);
    assert_eq!(s.targets[0].1, 36);
    assert_eq!(s.target_files, vec![(PathBuf::from("fleet.txt"), 37)]);
    assert_eq!(s.interval, Duration::from_secs(2));
    assert_eq!(s.modules, vec!["http", "syn"]);
    assert_eq!(s.slos.len(), 2);
    assert_eq!(c.surveys[1].interval, Duration::from_secs(10));
}

#[test]
fn an_empty_file_is_a_quiet_exporter() {
    let c = ok("");
    assert_eq!(c.jobs, 64);
    assert!(c.surveys.is_empty());
    assert!(c.probe.allow.is_empty());
    assert_eq!(c.histograms.buckets, default_buckets());
    assert_eq!(c.modules.len(), 3);
    assert!(
        c.reflex,
        "the kernel program is on unless the file says otherwise"
    );
}

#[test]
fn reflex_false_turns_the_kernel_program_off() {
    assert!(!ok("[exporter]\nreflex = false\n").reflex);
    assert!(ok("[exporter]\nreflex = true\njobs = 8\n").reflex);
    refused("[exporter]\nreflex = \"no\"\n", 2, "invalid type");
}

#[test]
fn default_buckets_are_a_clean_1_2_5_series() {
    let b = default_buckets();
    assert_eq!(b.len(), 19);
    assert_eq!(b[0], 1e-5);
    assert_eq!(b[1], 2e-5);
    assert_eq!(b[2], 5e-5);
    assert_eq!(b[17], 5.0);
    assert_eq!(b[18], 10.0);
    assert!(b.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn syntax_errors_name_their_line() {
    refused("[probe]\nallow = [\"198.18.0.0/15\"\n", 2, "");
    refused("\n\n[exporter]\njobs = \"many\"\n", 4, "invalid type");
    // In a configuration's words, not Rust's type names.
    for (text, words) in [
        (
            "[exporter]\njobs = \"many\"\n",
            "expected a whole number (without quotes)",
        ),
        (
            "[probe]\nrate = \"ten\"\n",
            "expected a number (e.g. 10 or 2.5, without quotes)",
        ),
    ] {
        let e = parse(text, &defaults()).expect_err(text);
        assert!(e.message.contains(words), "{e}");
        assert!(
            !e.message.contains("f64") && !e.message.contains("u64"),
            "{e}"
        );
    }
    refused("[exporter]\njbos = 3\n", 2, "unknown field `jbos`");
    refused(
        "[[survey]]\nname = \"a\"\ntargets = [\"198.18.0.2:80\"]\nfoo = 1\n",
        4,
        "foo",
    );
    refused("[modules.x]\npath = \"/\"\n", 1, "prober");
}

/// serde's words ("a sequence") are said in TOML's, and a blackbox YAML file is told
/// what the format is.
#[test]
fn type_mistakes_are_said_in_tomls_words() {
    refused(
        "[probe]\nallow = \"198.18.0.0/15\"\n",
        2,
        "expected an array: [\"…\", …]",
    );
    refused(
        "[modules.x]\nprober = \"tcp\"\ntimeout = 5\n",
        3,
        "a duration with its unit: \"5s\"",
    );
    refused(
        "modules:\n  http_2xx:\n    prober: http\n",
        1,
        "the configuration is TOML (`key = value`, `[modules.NAME]`), not blackbox_exporter's YAML",
    );
    let e = parse("[exporter]\njbos = 3\n", &defaults()).expect_err("refused");
    assert!(!e.message.contains("YAML"), "{e}");
}

#[test]
fn every_refusal_names_its_line() {
    refused("[exporter]\njobs = 0\n", 2, "jobs = 0");
    refused("[probe]\nallow = [\"198.18.0.1/15\"]\n", 2, "198.18.0.0/15");
    refused(
        "[probe]\nallow = [\"10.0.0.0/8\"]\nallow_names = [\"*.com\"]\n",
        3,
        "top-level",
    );
    refused(
        "[probe]\nallow_names = [\"*.lab.test\"]\n",
        2,
        "`allow`, which is empty",
    );
    refused(
        "[probe]\nallow = [\"10.0.0.0/8\"]\nmax_in_flight = 100\n",
        3,
        "1 to 64",
    );
    refused("[probe]\nrate = 0\n", 2, "rate = 0");
    refused("[probe]\nburst = 0\n", 2, "burst");
    refused(
        "[probe]\n\ndefault_module = \"nope\"\n",
        3,
        "no module named `nope`",
    );
    refused(
        "[histograms]\ntype = \"sparse\"\n",
        2,
        "classic, native or both",
    );
    refused(
        "[histograms]\nbuckets = [\"1ms\", \"1ms\"]\n",
        2,
        "increase strictly",
    );
    refused("[histograms]\nbuckets = [\"1ms\", \"2\"]\n", 2, "no unit");
    refused(
        "[histograms]\nbuckets = { start = \"1ms\", factor = 1, count = 5 }\n",
        2,
        "factor",
    );
    refused(
        "[histograms]\nbuckets = { start = \"1ms\", factor = 2, count = 500 }\n",
        2,
        "count",
    );
    refused("[modules.x]\nprober = \"icmp\"\n", 2, "http, https or tcp");
    refused(
        "[modules.x]\nprober = \"tcp\"\npath = \"/\"\n",
        3,
        "leaves out",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nsni = \"a.test\"\n",
        3,
        "applies to HTTPS",
    );
    refused(
        "[modules.x]\nprober = \"http\"\n\ninsecure = true\n",
        4,
        "applies to HTTPS",
    );
    refused(
        "[modules.x]\nprober = \"http\"\npath = \"no-slash\"\n",
        3,
        "path",
    );
    refused(
        "[modules.x]\nprober = \"http\"\npath = \"/a\\r\\nX: y\"\n",
        3,
        "path",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nhost_header = \"a\\nb\"\n",
        3,
        "host_header",
    );
    refused(
        "[modules.x]\nprober = \"https\"\nsni = \"bad name!\"\n",
        3,
        "sni",
    );
    refused(
        "[modules.x]\nprober = \"http\"\ntimeout = \"0s\"\n",
        3,
        "timeout",
    );
    refused(
        "[modules.x]\nprober = \"http\"\ntimeout = \"5\"\n",
        3,
        "no unit",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nretries = 11\n",
        3,
        "retries = 11",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nrto = \"100ms\"\n",
        3,
        "rto",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nmss = 40\n",
        3,
        "mss = 40: give 88 to 65495",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nvalid_status_codes = [200, 2000]\n",
        3,
        "valid_status_codes: 2000 is no HTTP status",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nvalid_status_codes = []\n",
        3,
        "no status would count as success",
    );
    refused(
        "[modules.x]\nprober = \"tcp\"\nvalid_status_codes = [200]\n",
        3,
        "prober \"tcp\" never asks for",
    );
    refused(
        "[modules.x]\nprober = \"tcp\"\nseparate_ack = true\n",
        3,
        "prober \"tcp\" sends no request",
    );
    refused(
        "[modules.x]\nprober = \"http\"\nfamily = \"ipx\"\n",
        3,
        "family",
    );
    refused(
        "[modules.\"bad name\"]\nprober = \"http\"\n",
        1,
        "module `bad name`",
    );
    let survey = "[[survey]]\nname = \"s\"\n";
    refused(&format!("{survey}targets = [\"198.18.0.2\"]\n"), 3, "port");
    refused(
        &format!("{survey}\ntargets = [\"https://a.test/\"]\n"),
        4,
        "HOST:PORT",
    );
    refused(survey, 2, "no targets");
    // Addresses no TCP connection can be made to: refused with their line, as `probe`
    // refuses them (`--check-config` passed them; the surveys found out).
    for (bad, what) in [
        ("224.0.0.5:80", "a multicast address"),
        ("0.0.0.0:80", "the unspecified address"),
        ("255.255.255.255:80", "the limited broadcast address"),
        ("[ff02::1]:80", "a multicast address"),
    ] {
        refused(
            &format!("{survey}targets = [\"198.18.0.2:80\",\n  \"{bad}\"]\n"),
            4,
            what,
        );
    }
    // The exporter has no -p and no -4: its own words, not probe's.
    let e = parse(
        &format!("{survey}targets = [\"198.18.0.2\"]\n"),
        &defaults(),
    )
    .unwrap_err();
    assert!(e.message.contains("HOST:PORT"), "{e}");
    assert!(!e.message.contains("-p"), "{e}");
    refused(
        &format!(
            "[modules.v4]\nprober = \"tcp\"\nfamily = \"ipv4\"\n\n{survey}modules = [\"v4\"]\ntargets = [\"[fd00:77::2]:80\"]\n"
        ),
        8,
        "fd00:77::2 is an IPv6 address, but module `v4` has family = \"ipv4\" (line 3)",
    );
    refused(
        &format!("{survey}targets = [\"a.test:80\"]\ninterval = \"10ms\"\n"),
        4,
        "at least",
    );
    refused(
        &format!("{survey}targets = [\"a.test:80\"]\nmodules = [\"http\", \"nope\"]\n"),
        4,
        "no module named `nope`",
    );
    refused(
        &format!("{survey}targets = [\"a.test:80\"]\nmodules = [\"tcp\", \"tcp\"]\n"),
        4,
        "twice",
    );
    refused(
        &format!("{survey}targets = [\"a.test:80\"]\nmodules = []\n"),
        2,
        "probes nothing",
    );
    refused(
        &format!("{survey}targets = [\"a.test:80\"]\nslo = [\"syn_to_synack.p99<5\"]\n"),
        4,
        "unit",
    );
    refused(
        &format!(
            "{survey}targets = [\"a.test:80\"]\n\n[[survey]]\nname = \"s\"\ntargets = [\"b.test:80\"]\n"
        ),
        // The second name's line (was its `[[survey]]` header's, line 5).
        6,
        "second survey named `s`",
    );
    refused(
        "[[survey]]\nname = \"a b\"\ntargets = [\"a.test:80\"]\n",
        2,
        "survey `a b`",
    );
}

/// As blackbox_exporter's http prober: a status outside `valid_status_codes` (any 2xx or
/// 3xx by default: tcpshake follows no redirect) fails the probe, and the record says why; a tcp module has no status.
#[test]
fn a_status_outside_the_valid_ones_fails_the_probe() {
    let c = ok(FULL);
    let line = |status: u16| {
        format!(
            r#"{{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,"state":"open","reason":"syn-ack","legs_ns":{{}},"http":{{"request":"HEAD / HTTP/1.1","status":{status},"reason":"X","version":"HTTP/1.1","headers":{{}}}},"error":null,"tls":null}}"#
        )
    };
    let judged = |module: &str, status: u16| {
        let mut r = ProbeResult::from_json_line(&line(status)).unwrap();
        c.modules[module].judge_status(&mut r);
        r.error
    };
    assert_eq!(judged("http", 204), None);
    // A redirect is not followed, so it is what is judged: a success by default.
    assert_eq!(judged("http", 301), None);
    let e = judged("http", 400).unwrap();
    assert_eq!(
        e,
        "HTTP status 400 is not one of module `http`'s valid_status_codes (by default any 2xx or 3xx)"
    );
    assert_eq!(judged("web", 301), None);
    assert!(judged("web", 204).unwrap().contains("(200, 301)"));
    assert_eq!(
        judged("syn", 500),
        None,
        "a tcp module has no status to judge"
    );
}

#[test]
fn a_module_may_replace_a_builtin() {
    let c = ok("[modules.http]\nprober = \"http\"\npath = \"/health\"\n");
    assert_eq!(c.modules["http"].path, "/health");
}

/// A module's settings, as `/probe?debug=true` shows them, read back as the same module.
#[test]
fn module_settings_read_back_as_the_same_module() {
    let c = ok(FULL);
    for name in ["web", "syn", "http", "https", "tcp"] {
        let m = &c.modules[name];
        let text = m.settings();
        assert!(text.starts_with(&format!("[modules.{name}]\n")), "{text}");
        let back = ok(&text);
        let mut again = back.modules[name].clone();
        // Only where the settings were written differs.
        again.family_line = m.family_line;
        again.cacert_line = m.cacert_line;
        assert_eq!(&again, m, "{text}");
    }
    assert!(
        c.modules["https"]
            .settings()
            .contains("system's trust store")
    );
    // What Rust's escape_debug wrote and TOML does not read (`\'`): written as TOML.
    let text = "[modules.odd]\nprober = \"http\"\npath = \"/it's\\\"x\\\\y\"\n";
    let c = ok(text);
    let m = &c.modules["odd"];
    assert_eq!(m.path, "/it's\"x\\y");
    let back = ok(&m.settings());
    assert_eq!(back.modules["odd"].path, m.path, "{}", m.settings());
}

//! Surveys: many probes from one event loop (`probe -c -j -iL -p LIST`), their records,
//! statistics, `report` (table, JSON, SVG) and SLO exit codes, against real peers in the
//! lab's namespaces, with faults injected by nftables.

use crate::lab;

use lab::faults::Reject;
use lab::report::ProbeRecord;
use lab::{Lab, in_ns, run_bounded, run_ok};
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const LEGS: [&str; 8] = [
    "syn_to_synack",
    "synack_to_ack",
    "request_to_first_byte",
    "request_to_complete",
    "fin_to_ack",
    "fin_to_peer_fin",
    "peer_fin_to_last_ack",
    "total",
];

/// `tcpshake report ARGS…` (no namespace needed: it only reads files).
fn report(args: &[&str]) -> lab::Run {
    let mut cmd = Command::new(lab::tcpshake_bin());
    cmd.arg("report").args(args);
    run_bounded(&mut cmd, Duration::from_secs(30))
}

/// Nearest rank, as README.md documents: the sample of rank ⌈p/100·n⌉.
fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Statistics recomputed here from the records, independently of the binary, and compared
/// with `report --json`: per target and overall, every leg.
fn check_stats_against_records(records: &[ProbeRecord], stats: &serde_json::Value) {
    let mut groups: BTreeMap<String, Vec<&ProbeRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(r.target.clone()).or_default().push(r);
    }
    let mut expected: Vec<(String, Vec<&ProbeRecord>)> = groups.into_iter().collect();
    expected.push(("all".into(), records.iter().collect()));
    for (name, recs) in expected {
        let got = if name == "all" {
            &stats["overall"]
        } else {
            stats["targets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["target"] == name.as_str())
                .unwrap_or_else(|| panic!("no statistics for {name}: {stats:#}"))
        };
        assert_eq!(got["probes"], recs.len() as u64, "{name}");
        let open = recs.iter().filter(|r| r.state() == "open").count() as u64;
        assert_eq!(got["open"], open, "{name}");
        for (li, leg) in LEGS.iter().enumerate() {
            let st = &got["legs"][li];
            assert_eq!(st["leg"], *leg);
            let with: Vec<(u64, bool)> = recs
                .iter()
                .filter_map(|r| {
                    let v = r.legs_ns.as_ref()?.all()[li].1?;
                    Some((v, r.retransmissions() > 0))
                })
                .collect();
            let mut v: Vec<u64> = with.iter().map(|x| x.0).collect();
            v.sort_unstable();
            let ctx = format!("{name} {leg}: {st}");
            assert_eq!(st["count"], v.len() as u64, "{ctx}");
            let loss = (recs.len() - v.len()) as f64 * 100.0 / recs.len() as f64;
            assert!(
                (st["loss_pct"].as_f64().unwrap() - loss).abs() < 1e-9,
                "{ctx}"
            );
            let retx = with.iter().filter(|x| x.1).count() as u64;
            assert_eq!(st["retransmitted"], retx, "{ctx}");
            if v.is_empty() {
                assert!(st["min_ns"].is_null() && st["p99_ns"].is_null(), "{ctx}");
                continue;
            }
            assert_eq!(st["min_ns"], v[0], "{ctx}");
            assert_eq!(st["max_ns"], *v.last().unwrap(), "{ctx}");
            assert_eq!(st["median_ns"], nearest_rank(&v, 50.0), "{ctx}");
            assert_eq!(st["p90_ns"], nearest_rank(&v, 90.0), "{ctx}");
            assert_eq!(st["p99_ns"], nearest_rank(&v, 99.0), "{ctx}");
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            assert!(close(st["mean_ns"].as_f64().unwrap(), mean), "{ctx}");
            assert!(close(st["stddev_ns"].as_f64().unwrap(), sd), "{ctx}");
        }
    }
}

/// Drops `percent`% of the segments that reach the server on `port` only (numgen), so the
/// other targets stay clean.
fn lossy_port(lab: &Lab, port: u16, percent: u8) {
    run_ok(in_ns(&lab.server_ns, "nft").args([
        "add table inet tsk_survey_loss; \
         add chain inet tsk_survey_loss input { type filter hook input priority 0; policy accept; }; "
            .to_string()
            + &format!(
                "add rule inet tsk_survey_loss input tcp dport {port} numgen random mod 100 < {percent} drop"
            ),
    ]));
}

lab_test! {
/// A survey of four ports on the lab server: nginx (clean), nginx behind 30 % loss, a port
/// whose SYNs are dropped (filtered), a closed port. The records, the binary's statistics,
/// `report`'s statistics and tcpdump's capture of the same run must all agree.
fn survey_statistics_match_records_and_tcpdump() {
    let mut lab = Lab::new("survey-stats");
    lab.start_nginx(80);
    lab.start_nginx(8080);
    lab.fault_reject(81, Reject::Drop);
    lossy_port(&lab, 8080, 30);
    let cap = lab.start_capture("survey");
    let server = lab.server_v4.to_string();
    let run = lab.run_client_bounded(
        [
            "probe",
            &server,
            "-p",
            "80,8080,81,82",
            "-c",
            "5",
            "-j",
            "8",
            "--json",
            "--rto",
            "200ms",
            "--retries",
            "1",
            "--timeout",
            "1s",
            "--linger",
            "50ms",
            "--time-wait",
            "20ms",
        ],
        Duration::from_secs(60),
    );
    let packets = lab.stop_capture(&cap);
    assert_eq!(run.code, Some(1), "filtered and closed ports exit 1\n{run}");
    let records = run.records();
    assert_eq!(records.len(), 20, "4 targets × 5 probes\n{run}");
    let by_port = |p: u16| -> Vec<&ProbeRecord> {
        records
            .iter()
            .filter(|r| r.target == format!("{server}:{p}"))
            .collect()
    };
    for p in [80, 8080, 81, 82] {
        assert_eq!(by_port(p).len(), 5, "port {p}\n{run}");
    }
    for r in by_port(80) {
        assert_eq!((r.state(), r.http_status()), ("open", Some(200)), "{r:?}");
    }
    assert!(by_port(81).iter().all(|r| r.reason() == "no-response"));
    assert!(by_port(82).iter().all(|r| r.reason() == "reset"));
    // Each probe had its own source port.
    let ports: HashSet<u16> = records.iter().filter_map(|r| r.src_port).collect();
    assert_eq!(ports.len(), records.len(), "source ports reused");

    // The binary's own table (stderr, since stdout holds the records) equals report's.
    let file = lab.dir().join("survey.jsonl");
    std::fs::write(&file, &run.stdout).unwrap();
    let text = report(&[file.to_str().unwrap()]);
    assert_eq!(text.code, Some(0), "{text}");
    assert!(
        run.stderr.contains(&text.stdout),
        "the survey's table differs from report's:\n{}\n---\n{}",
        run.stderr,
        text.stdout
    );
    let json = report(&["--json", file.to_str().unwrap()]);
    assert_eq!(json.code, Some(0), "{json}");
    let stats: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    check_stats_against_records(&records, &stats);

    // tcpdump saw the same SYN→SYN-ACK for every probe: outgoing copies carry the same
    // timestamps; incoming ones differ by a few µs (ARCHITECTURE.md), more on a loaded
    // machine, so: median ≤ 2 µs, none over 100 µs.
    let mut diffs = Vec::new();
    for r in records.iter().filter(|r| r.state() == "open") {
        let sport = r.src_port.unwrap();
        let Some(leg) = r.legs_ns.as_ref().and_then(|l| l.syn_to_synack) else {
            continue;
        };
        let seg = |flags: u8, out: bool| {
            packets.iter().rev().find(|p| {
                p.tcp().is_some_and(|t| {
                    t.flags & 0x3f == flags
                        && if out {
                            t.sport == sport
                        } else {
                            t.dport == sport
                        }
                })
            })
        };
        let (Some(syn), Some(synack)) = (seg(lab::capture::SYN, true), seg(0x12, false)) else {
            let seen: Vec<String> = packets
                .iter()
                .filter_map(|p| p.tcp())
                .filter(|t| t.sport == sport || t.dport == sport)
                .map(|t| format!("{}>{} {:#x} len {}", t.sport, t.dport, t.flags, t.len))
                .collect();
            panic!(
                "capture lacks the handshake of port {sport} ({} packets in all; of this \
                 port: {seen:?}); record: {r:?}",
                packets.len()
            );
        };
        if r.retransmissions() > 0 {
            continue; // which SYN was answered is the probe's call (echoed timestamp)
        }
        let from_capture = synack.ts_ns - syn.ts_ns;
        let d = from_capture.abs_diff(leg);
        assert!(
            d <= 100_000,
            "port {sport}: tcpshake {leg} ns, tcpdump {from_capture} ns"
        );
        diffs.push(d);
    }
    assert!(
        diffs.len() >= 5,
        "only {} probes compared with tcpdump",
        diffs.len()
    );
    diffs.sort_unstable();
    let median = diffs[(diffs.len() - 1) / 2];
    assert!(
        median <= 2_000,
        "median |tcpshake − tcpdump| {median} ns: {diffs:?}"
    );
}
}

lab_test! {
/// Killed with SIGKILL in the middle of a survey: every line written is a complete record
/// (each was flushed when its probe ended), and the guard table is gone with the process.
fn sigkill_halfway_keeps_finished_records_and_no_table() {
    let mut lab = Lab::new("survey-kill");
    lab.start_nginx(80);
    let out_path = lab.dir().join("killed.jsonl");
    let out = std::fs::File::create(&out_path).unwrap();
    let server = lab.server_v4.to_string();
    let mut cmd = lab.client_cmd([
        "probe", &server, "-p", "80", "-c", "200", "-i", "20ms", "-j", "4", "--json",
    ]);
    cmd.stdout(Stdio::from(out)).stderr(Stdio::null());
    let pid = lab.spawn_owned("tcpshake survey", &mut cmd);
    let lines = || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        lab::poll_until(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || lines() >= 10
        ),
        "no records appeared"
    );
    assert!(
        !lab.client_nft_tables().is_empty(),
        "no guard table while running"
    );
    lab::signal(pid, "KILL");
    lab.stop_owned(pid);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.ends_with('\n'), "a record was cut short:\n{text}");
    let records = lab::report::parse_lines(&text);
    assert!(
        records.len() >= 10 && records.len() < 200,
        "{}",
        records.len()
    );
    assert!(records.iter().all(|r| r.state() == "open"));
    assert!(
        lab::poll_until(Duration::from_secs(1), Duration::from_millis(20), || lab
            .client_nft_tables()
            .is_empty()),
        "tables left 1 s after SIGKILL: {:?}",
        lab.client_nft_tables()
    );
}
}

lab_test! {
/// A fleet from `-iL`: 32 addresses of a /24 that the server answers on by AnyIP, two probes
/// each, 16 in flight: every probe open, every one with its own source port.
fn input_list_fleet_on_anyip_addresses() {
    let mut lab = Lab::new("survey-fleet");
    // A /24 next to the lab's own, routed to the server, which owns all of it (AnyIP).
    let o = lab.server_v4.octets();
    let fleet = Ipv4Addr::new(198, 18 + 19 - o[1], o[2], 0);
    run_ok(Command::new("ip").args([
        "-n",
        &lab.server_ns,
        "route",
        "add",
        "local",
        &format!("{fleet}/24"),
        "dev",
        "lo",
    ]));
    run_ok(Command::new("ip").args([
        "-n",
        &lab.client_ns,
        "route",
        "add",
        &format!("{fleet}/24"),
        "via",
        &lab.server_v4.to_string(),
    ]));
    // A kernel listener on every address: Python's HTTP server bound to 0.0.0.0.
    let www = lab.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "fleet\n").unwrap();
    let mut py = in_ns(&lab.server_ns, "python3");
    py.args([
        "-m",
        "http.server",
        "8000",
        "--bind",
        "0.0.0.0",
        "--directory",
    ])
    .arg(&www)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.spawn_owned("python http.server (fleet)", &mut py);
    let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
    assert!(lab.wait_listening(any, Duration::from_secs(10)));

    let list = lab.dir().join("fleet.txt");
    let mut text = String::from("# the fleet\n\n");
    for i in 1..=32u8 {
        let o = fleet.octets();
        text += &format!("{}.{}.{}.{}\n", o[0], o[1], o[2], i);
    }
    std::fs::write(&list, text).unwrap();
    let run = lab.run_client_bounded(
        [
            "probe",
            "-iL",
            list.to_str().unwrap(),
            "-p",
            "8000",
            "-c",
            "2",
            "-j",
            "16",
            "--json",
            "-q",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 64, "{run}");
    let targets: HashSet<&str> = records.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets.len(), 32);
    assert!(
        records.iter().all(|r| r.http_status() == Some(200)),
        "{run}"
    );
    // Ports are taken in turn through the ephemeral range: no two probes of a run share
    // one (so a capture splits into probes by source port alone).
    let ports: HashSet<Option<u16>> = records.iter().map(|r| r.src_port).collect();
    assert_eq!(ports.len(), 64, "a source port served two probes");
    assert!(
        run.stderr.contains("all 32 targets   probes 64   open 64"),
        "{run}"
    );
}
}

lab_test! {
/// `-o csv`: a header, then one row per probe with one column per leg.
fn csv_has_one_row_per_probe_and_a_column_per_leg() {
    let mut lab = Lab::new("survey-csv");
    lab.start_nginx(80);
    let run = lab.run_client([
        "probe",
        &lab.target(false, 80),
        "-c",
        "3",
        "-o",
        "csv",
        "-q",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for leg in LEGS {
        assert!(header.contains(&format!("{leg}_ns").as_str()), "{header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{run}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in &rows {
        assert_eq!(row.len(), header.len());
        assert_eq!(row[col("state")], "open");
        assert!(row[col("syn_to_synack_ns")].parse::<u64>().unwrap() > 0);
        assert_eq!(row[col("http_status")], "200");
    }
}
}

/// Synthetic records: two targets, known legs.
fn synthetic(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (i, target) in ["alpha.example:80", "198.18.9.9:443"].iter().enumerate() {
        for k in 1..=10u64 {
            let syn = 1_000 * k * (i as u64 + 1);
            text += &serde_json::json!({
                "schema": 1, "target": target, "addr": "198.18.9.9", "port": 80,
                "state": "open", "reason": "syn-ack", "retransmissions": u64::from(k == 10),
                "legs_ns": {"syn_to_synack": syn, "synack_to_ack": 500,
                    "request_to_first_byte": syn * 3, "request_to_complete": syn * 3,
                    "fin_to_ack": null, "fin_to_peer_fin": null, "peer_fin_to_last_ack": null,
                    "total": syn * 10},
                "segments": []
            })
            .to_string();
            text.push('\n');
        }
    }
    let path = dir.join(format!("synthetic-{}.jsonl", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// `report --svg` writes SVG that parses and names every target; --plot cdf too.
#[test]
fn report_svg_parses_and_names_targets() {
    let dir = std::env::temp_dir();
    let input = synthetic(&dir);
    for kind in ["box", "cdf"] {
        let svg = dir.join(format!("survey-{}-{kind}.svg", std::process::id()));
        let run = report(&[
            input.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--plot",
            kind,
        ]);
        assert_eq!(run.code, Some(0), "{run}");
        let check = Command::new("python3")
            .args([
                "-c",
                "import sys,xml.etree.ElementTree as E\n\
                 t=E.parse(sys.argv[1]).getroot()\n\
                 assert t.tag.endswith('svg'), t.tag\n\
                 print('\\n'.join(''.join(e.itertext()) for e in t.iter() if e.tag.endswith('text')))",
            ])
            .arg(&svg)
            .output()
            .unwrap();
        let texts = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{kind}: not valid SVG: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        for name in ["alpha.example:80", "198.18.9.9:443", "SYN→SYN-ACK"] {
            assert!(
                texts.contains(name),
                "{kind}: {name} missing from:\n{texts}"
            );
        }
        let _ = std::fs::remove_file(&svg);
    }
    let _ = std::fs::remove_file(&input);
}

/// A closed stdout (`report F --svg S | head`) does not cost the SVG, written after the
/// table (the walk's closed-pipe finding, in `report`); the SLO's exit code stays.
#[test]
fn report_writes_its_svg_when_stdout_is_closed() {
    let dir = std::env::temp_dir();
    let input = synthetic(&dir);
    let svg = dir.join(format!("closed-{}.svg", std::process::id()));
    let run = lab::run_stdout_closed(
        Command::new(lab::tcpshake_bin())
            .args([
                "report",
                input.to_str().unwrap(),
                "--svg",
                svg.to_str().unwrap(),
            ])
            .args(["--slo", "syn_to_synack.p99<=1us"]),
        Duration::from_secs(10),
    );
    assert_eq!(run.code, Some(4), "{run}");
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(text.trim_end().ends_with("</svg>"), "{text}");
    let _ = std::fs::remove_file(&svg);
    let _ = std::fs::remove_file(&input);
}

/// `--slo` exits 4 when breached, 0 when met, 2 when it cannot be parsed; the verdict names
/// the measured value.
#[test]
fn report_slo_exit_codes() {
    let input = synthetic(&std::env::temp_dir());
    let f = input.to_str().unwrap();
    // Overall SYN→SYN-ACK: 1..10 µs and 2..20 µs → p99 = 20 µs, median 6 µs (nearest rank).
    let met = report(&[f, "-q", "--slo", "syn_to_synack.p99<=20us,ttfb.median<22us"]);
    assert_eq!(met.code, Some(0), "{met}");
    assert!(met.stderr.contains("met (measured 20.0 µs)"), "{met}");
    let breached = report(&[f, "-q", "--slo", "syn_to_synack.p99<20us"]);
    assert_eq!(breached.code, Some(4), "{breached}");
    assert!(breached.stderr.contains("BREACHED"), "{breached}");
    let retx = report(&[f, "-q", "--slo", "total.retransmitted<2"]);
    assert_eq!(retx.code, Some(4), "two probes retransmitted\n{retx}");
    let bad = report(&[f, "--slo", "syn_to_synack.p99<5"]);
    assert_eq!(bad.code, Some(2), "{bad}");
    assert!(bad.stderr.contains("no unit"), "{bad}");
    let _ = std::fs::remove_file(&input);
}

lab_test! {
/// `probe --slo` judges the survey it just ran.
fn probe_slo_breach_exits_4() {
    let mut lab = Lab::new("survey-slo");
    lab.start_nginx(80);
    let t = lab.target(false, 80);
    let ok = lab.run_client([
        "probe",
        &t,
        "-c",
        "3",
        "-q",
        "--slo",
        "syn_to_synack.p99<5s",
    ]);
    assert_eq!(ok.code, Some(0), "{ok}");
    let bad = lab.run_client([
        "probe",
        &t,
        "-c",
        "3",
        "-q",
        "--slo",
        "syn_to_synack.max<1ns",
    ]);
    assert_eq!(bad.code, Some(4), "{bad}");
    assert!(bad.stderr.contains("BREACHED"), "{bad}");
}
}

lab_test! {
/// Targets that leave by two interfaces, each with a tap of its own (the veth's a ring, the
/// loopback's, opened with the first probes under way, its queue — which of the two only
/// changes how fast an answer leaves): every probe through either is whole, its
/// handshake and our ACK timed, the response and the close.
fn targets_on_two_interfaces_in_one_survey() {
    let mut lab = Lab::new("survey-2if");
    lab.start_nginx(80);
    // A listener on the client's own loopback: answers each request, then closes.
    let script = "import os,socket\n\
        s=socket.socket()\n\
        s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
        s.bind(('127.0.0.1',8080)); s.listen(512)\n\
        open(os.environ['READY_FILE'],'w').close()\n\
        while True:\n\
        \x20c,_=s.accept(); c.recv(4096)\n\
        \x20c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n'); c.close()\n";
    let mut cmd = in_ns(&lab.client_ns, "python3");
    cmd.args(["-c", script]).stdout(Stdio::null()).stderr(Stdio::null());
    lab.spawn_ready("a loopback listener", &mut cmd);
    let v4 = lab.target(false, 80);
    let lo = "127.0.0.1:8080".to_string();
    let run = lab.run_client(["probe", &v4, &lo, "-c", "10", "-j", "8", "--json"]);
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 20, "{run}");
    for t in [&v4, &lo] {
        let mine: Vec<&ProbeRecord> = records.iter().filter(|r| &r.target == t).collect();
        assert_eq!(mine.len(), 10, "{t}\n{run}");
        for r in mine {
            assert_eq!(r.http_status(), Some(200), "{t}\n{run}");
            let legs = r.legs_ns.as_ref().expect("legs");
            for (leg, v) in legs.all() {
                if ["syn_to_synack", "synack_to_ack", "total"].contains(&leg) {
                    assert!(v.is_some(), "{t}: no {leg}\n{run}");
                }
            }
        }
    }
    assert!(!run.stdout.contains("capture_lost"), "{run}");
}
}

lab_test! {
/// IPv4 and IPv6 targets in one survey: one tap serves both, one raw sender per family.
fn v4_and_v6_targets_in_one_survey() {
    let mut lab = Lab::new("survey-v6");
    lab.start_nginx(80);
    let (v4, v6) = (lab.target(false, 80), lab.target(true, 80));
    let run = lab.run_client(["probe", &v4, &v6, "-c", "3", "-j", "4", "--json"]);
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 6, "{run}");
    for t in [&v4, &v6] {
        let mine: Vec<&ProbeRecord> = records.iter().filter(|r| &r.target == t).collect();
        assert_eq!(mine.len(), 3, "{t}\n{run}");
        assert!(mine.iter().all(|r| r.http_status() == Some(200)), "{run}");
    }
}
}

lab_test! {
/// Source ports come from the namespace's ephemeral range, skip the ports an administrator
/// reserved (`ip_local_reserved_ports`: the kernel's own choice skips them, an explicit bind
/// would not), and no two probes share one.
fn source_ports_stay_in_the_range_and_out_of_reserved_ports() {
    let mut lab = Lab::new("survey-ports");
    lab.start_nginx(80);
    // 127 usable ports: enough that the keeper's stock and the probes never run a
    // single-target survey out of fresh ones.
    for (key, value) in [
        ("net.ipv4.ip_local_port_range", "40000 40255"),
        ("net.ipv4.ip_local_reserved_ports", "40000-40127,40200"),
    ] {
        run_ok(lab::in_ns(&lab.client_ns, "sysctl").args(["-qw", &format!("{key}={value}")]));
    }
    let server = lab.server_v4.to_string();
    let run = lab.run_client_bounded(
        [
            "probe", &server, "-p", "80", "-c", "24", "-j", "4", "--json", "-q",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let ports: Vec<u16> = run.records().iter().filter_map(|r| r.src_port).collect();
    assert_eq!(ports.len(), 24, "{run}");
    for p in &ports {
        assert!(
            (40128..=40255).contains(p) && *p != 40200,
            "port {p}\n{run}"
        );
    }
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        24,
        "a source port served two probes: {ports:?}"
    );
}
}

lab_test! {
/// `--pcap` and `--pcapng` of a survey: packets of probes in flight together are written
/// in the order they were on the wire (capinfos: strict time order), each segment of every
/// record once, at its own timestamp; the pcapng's comments name each packet's segment.
fn survey_captures_are_in_time_order() {
    let mut lab = Lab::new("survey-pcap");
    lab.start_nginx(80);
    lab.start_nginx(8080);
    let (pcap, png) = (
        lab.dir().join("survey.pcap"),
        lab.dir().join("survey.pcapng"),
    );
    let targets = [
        lab.target(false, 80),
        lab.target(true, 80),
        lab.target(false, 8080),
        lab.target(true, 8080),
    ];
    let mut args: Vec<&str> = vec!["probe"];
    args.extend(targets.iter().map(String::as_str));
    args.extend(["-c", "10", "-j", "16", "--json", "-q"]);
    args.extend([
        "--pcap",
        pcap.to_str().unwrap(),
        "--pcapng",
        png.to_str().unwrap(),
    ]);
    let run = lab.run_client(&args);
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 40, "{run}");
    let json: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // (ts, seq) of every segment of every record.
    let mut want: Vec<(u64, u64)> = json
        .iter()
        .flat_map(|r| r["segments"].as_array().cloned().unwrap_or_default())
        .map(|s| (s["ts_ns"].as_u64().unwrap(), s["seq"].as_u64().unwrap()))
        .collect();
    want.sort_unstable();
    // The probes overlapped: some probe started before another one ended.
    let spans: Vec<(u64, u64)> = json
        .iter()
        .filter_map(|r| {
            let s = r["segments"].as_array()?;
            Some((s.first()?["ts_ns"].as_u64()?, s.last()?["ts_ns"].as_u64()?))
        })
        .collect();
    let overlapping = spans
        .iter()
        .any(|a| spans.iter().any(|b| a != b && b.0 > a.0 && b.0 < a.1));
    assert!(overlapping, "the probes never overlapped: {spans:?}");

    for file in [&pcap, &png] {
        let info = lab::capture::capinfos(file);
        assert_eq!(
            lab::capture::capinfo(&info, "Strict time order"),
            "True",
            "{file:?}\n{info}"
        );
        let frames = lab::capture::tshark_fields(file, "", &["frame.time_epoch", "tcp.seq_raw"]);
        let mut got: Vec<(u64, u64)> = frames
            .iter()
            .map(|f| (epoch_ns(&f[0]), f[1].parse().unwrap_or(u64::MAX)))
            .collect();
        got.sort_unstable();
        assert_eq!(
            got, want,
            "{file:?}: the capture is not the records' segments"
        );
    }
    let comments = lab::capture::tshark_fields(&png, "", &["frame.comment"]);
    let with = |t: &str| comments.iter().filter(|c| c[0].contains(t)).count();
    assert_eq!(with("tcpshake: "), want.len());
    assert_eq!(with("SYN-SENT → ESTABLISHED"), 40);
    assert_eq!(with("HEAD / HTTP/1.1"), 40);
    assert_eq!(with("syn_to_synack "), 40);
}
}

lab_test! {
/// A closed stdout (`probe -iL … --json --pcap F | head`) ends only what goes to stdout:
/// the survey runs to its end and its capture files hold every probe's packets (a walk:
/// both files were left with their headers only, exit 0). Without a capture file the
/// survey stops at the closed pipe as before, exit 0.
fn a_closed_stdout_does_not_cut_the_capture_files() {
    let mut lab = Lab::new("survey-closed-pipe");
    lab.start_nginx(80);
    let (pcap, png) = (lab.dir().join("s.pcap"), lab.dir().join("s.pcapng"));
    let target = lab.target(false, 80);
    let files = [
        "--pcap",
        pcap.to_str().unwrap(),
        "--pcapng",
        png.to_str().unwrap(),
    ];
    for (format, with_files) in [("--json", true), ("-q", true), ("--json", false)] {
        let mut args = vec!["probe", &target, "-c", "20", "-j", "4", format];
        if with_files {
            args.extend(files);
        }
        let run = lab::run_stdout_closed(&mut lab.client_cmd(&args), Duration::from_secs(30));
        assert_eq!(run.code, Some(0), "{args:?}\n{run}");
        if !with_files {
            continue;
        }
        for file in [&pcap, &png] {
            let frames = lab::capture::tshark_fields(file, "tcp.flags.syn == 1 && tcp.flags.ack == 0", &["tcp.srcport"]);
            assert_eq!(frames.len(), 20, "{args:?} {file:?}: a SYN per probe\n{run}");
        }
    }
}
}

/// `frame.time_epoch` as tshark prints it for a nanosecond capture.
fn epoch_ns(s: &str) -> u64 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    sec.parse::<u64>().unwrap_or(0) * 1_000_000_000 + frac[..9].parse::<u64>().unwrap_or(0)
}

lab_test! {
/// The statistics list targets in the order they were given, whatever order their probes
/// end in: here the first target's SYNs are dropped (it ends last, after its
/// retransmissions), the others answer at once. `report` on the records agrees.
fn statistics_list_targets_in_input_order() {
    let mut lab = Lab::new("survey-order");
    lab.start_nginx(80);
    lab.fault_reject(81, Reject::Drop);
    let targets = [
        lab.target(false, 81),
        lab.target(true, 80),
        lab.target(false, 80),
    ];
    let mut args: Vec<&str> = vec!["probe"];
    args.extend(targets.iter().map(String::as_str));
    args.extend(["-j", "8", "--json", "--retries", "1", "--rto", "200ms"]);
    let run = lab.run_client(&args);
    assert_eq!(
        run.code,
        Some(1),
        "the filtered port fails the survey: {run}"
    );
    let ended: Vec<String> = run.records().into_iter().map(|r| r.target).collect();
    assert_eq!(
        ended.last(),
        Some(&targets[0]),
        "the dropped port should end last: {run}"
    );
    // The table (on stderr, stdout has the records): one title line per target.
    let titles = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                l.split("   probes")
                    .next()
                    .filter(|_| l.contains("   probes "))
            })
            .filter(|t| !t.starts_with("all "))
            .map(String::from)
            .collect()
    };
    assert_eq!(titles(&run.stderr), targets, "{run}");
    let file = lab.dir().join("order.jsonl");
    std::fs::write(&file, &run.stdout).expect("write records");
    let rep = report(&[file.to_str().unwrap()]);
    assert_eq!(rep.code, Some(0), "{rep}");
    assert_eq!(titles(&rep.stdout), targets, "{rep}");
}
}

lab_test! {
/// What could not be probed is said once per target, where it came from: a list line
/// (its `FILE, line N`, a byte-order mark at the file's start ignored), and a target with
/// no route under `-c 3` once, not three times.
fn failures_are_said_once_each_with_their_line() {
    let mut lab = Lab::new("survey-said");
    lab.start_python_http(false, 80);
    let list = lab.dir().join("bom.txt");
    std::fs::write(
        &list,
        format!(
            "\u{feff}{}\r\nno-such-name.invalid:80\n",
            lab.target(false, 80)
        ),
    )
    .unwrap();
    let list = list.to_string_lossy().into_owned();
    let unrouted = lab.elsewhere_v4(0);
    let run = lab.run_client_bounded(
        [
            "probe", "-iL", &list, &format!("{unrouted}:80"), "-c", "3", "-i", "10ms", "-q",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains(&format!("{list}, line 2: cannot resolve `no-such-name.invalid`")),
        "{run}"
    );
    assert!(!run.stderr.contains("line 1"), "the BOM line is a target:\n{run}");
    assert_eq!(run.stderr.matches(&format!("no route to {unrouted}")).count(), 1, "{run}");
    assert!(run.stderr.contains("and 2 more probes of those targets failed"), "{run}");
    assert!(run.stdout.contains(&format!("{}   probes 3", lab.target(false, 80))), "{run}");
    // The targets that never started (no route; a name that did not resolve) are ones
    // the survey was asked for.
    assert!(run.stdout.contains("all 1 target (and 2 targets without a finished probe)"), "{run}");
}
}

/// A resolver that never answers, for the client namespace: `/etc/netns/<ns>/resolv.conf`
/// (which `ip netns exec` mounts over /etc/resolv.conf) names 127.0.0.53, where a UDP
/// socket inside that namespace reads the queries, logs their names and answers none.
/// glibc gives up after `timeout` seconds (one attempt). The directory goes on drop (with
/// /etc/netns when it made it and nothing else is in it); the socket's process is the
/// lab's.
struct DeafResolver {
    dir: std::path::PathBuf,
    made_etc_netns: bool,
    log: std::path::PathBuf,
}

impl DeafResolver {
    fn start(lab: &mut Lab, timeout: u32) -> DeafResolver {
        let etc_netns = Path::new("/etc/netns");
        let made_etc_netns = !etc_netns.exists();
        // The guard first: whatever fails next, the directory goes.
        let resolver = DeafResolver {
            dir: etc_netns.join(&lab.client_ns),
            made_etc_netns,
            log: lab.dir().join("queries.log"),
        };
        std::fs::create_dir_all(&resolver.dir).expect("mkdir /etc/netns/<ns>");
        std::fs::write(
            resolver.dir.join("resolv.conf"),
            format!("nameserver 127.0.0.53\noptions timeout:{timeout} attempts:1\n"),
        )
        .expect("write resolv.conf");
        let script = r#"
import os, socket, sys
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.53", 53))
open(os.environ["READY_FILE"], "w").close()
while True:
    q, _ = s.recvfrom(4096)
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    log.write(".".join(labels) + "\n")
"#;
        let mut cmd = in_ns(&lab.client_ns, "python3");
        cmd.args(["-c", script]).arg(&resolver.log);
        lab.spawn_ready("deaf resolver", &mut cmd);
        resolver
    }

    /// Whether a query for `name` reached it.
    fn asked_for(&self, name: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(|l| l == name)
    }
}

impl Drop for DeafResolver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_etc_netns {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

lab_test! {
/// A name whose lookup takes seconds (a resolver that never answers) holds up no probe in
/// flight: the survey loop does not wait in getaddrinfo. Before, the loop sat there 2 s
/// while nginx's answer waited for our ACK and FIN (fin_to_ack of seconds, the server
/// retransmitting). The name fails as it always did, with its list line, exit 1.
fn a_slow_lookup_holds_up_no_probe_in_flight() {
    let mut lab = Lab::new("survey-slowdns");
    lab.start_nginx(80);
    let resolver = DeafResolver::start(&mut lab, 2);
    let list = lab.dir().join("slow.txt");
    std::fs::write(&list, format!("{}\nslow.invalid\n", lab.server_v4)).unwrap();
    let list = list.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let run = lab.run_client_bounded(
        ["probe", "-iL", &list, "-p", "80", "-c", "3", "-i", "200ms", "--json"],
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    // The lookup did hang (this test tests something): the resolver was asked, and the
    // survey ended only when glibc gave up.
    assert!(resolver.asked_for("slow.invalid"), "no query reached the resolver\n{run}");
    assert!(took >= Duration::from_millis(1500), "the lookup was not slow ({took:?})\n{run}");
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains(&format!("tcpshake: {list}, line 2: cannot resolve `slow.invalid`")),
        "{run}"
    );
    let records = run.records();
    assert_eq!(records.len(), 3, "{run}");
    for r in &records {
        assert_eq!(r.error, None, "{run}");
        assert_eq!(r.state(), "open", "{run}");
        let legs = r.legs_ns.as_ref().expect("legs");
        let fin_to_ack = legs.fin_to_ack.expect("fin_to_ack");
        assert!(fin_to_ack < 100_000_000, "fin_to_ack {fin_to_ack} ns\n{run}");
        for (leg, v) in legs.all() {
            assert!(v.is_none_or(|v| v < 500_000_000), "{leg} {v:?} ns\n{run}");
        }
    }
}
}

lab_test! {
/// Ctrl-C ends a survey at once even while a lookup is stuck in getaddrinfo (which
/// cannot be cancelled: nothing waits for it). Before, the loop sat in it until the
/// resolver's timeout, 20 s here.
fn ctrl_c_ends_a_survey_waiting_for_a_lookup() {
    let mut lab = Lab::new("survey-slowdns-int");
    lab.start_nginx(80);
    let resolver = DeafResolver::start(&mut lab, 20);
    let out_path = lab.dir().join("out.jsonl");
    let err_path = lab.dir().join("err.txt");
    let target = lab.target(false, 80);
    let mut cmd = lab.client_cmd([
        "probe", &target, "slow.invalid:80", "-c", "2", "-i", "100ms", "--json",
    ]);
    cmd.stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()));
    let pid = lab.spawn_owned("tcpshake survey", &mut cmd);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let waiting = lab::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        resolver.asked_for("slow.invalid") && read(&out_path).lines().count() == 2
    });
    assert!(waiting, "no record or no query\n{}\n{}", read(&out_path), read(&err_path));
    lab::signal(pid, "INT");
    let ended = lab::poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        !lab.owned_alive(pid)
    });
    assert!(ended, "still running 3 s after SIGINT\n{}", read(&err_path));
    assert_eq!(lab.owned_exit_code(pid), Some(130), "{}", read(&err_path));
    let err = read(&err_path);
    assert!(err.contains("tcpshake: interrupted"), "{err}");
    let records = lab::report::parse_lines(&read(&out_path));
    assert!(
        records.len() == 2
            && records
                .iter()
                .all(|r| r.error.is_none() && r.state() == "open"),
        "{records:?}"
    );
}
}

lab_test! {
/// The kernel program (io/reflex.rs) answers a survey's SYN-ACKs: the records mark what it
/// sent (`kernel`), each the handshake's ACK with the request riding on it, leaving
/// within a millisecond of its SYN-ACK (microseconds, as the kernel's own); every
/// probe gets its answer, no segment of ours is foreign, and tshark finds nothing to
/// warn about in what we sent. The survey says how many it sent; `--no-reflex`, none.
fn the_kernel_program_sends_the_handshakes_ack() {
    let mut lab = Lab::new("reflex");
    lab.start_nginx(80);
    let server = lab.server_v4.to_string();
    let (t4, t6) = (lab.target(false, 80), lab.target(true, 80));
    let pcap = lab.dir().join("reflex.pcap");
    // The first SYNs wait for the programs (tens of ms: the verifier, RCU grace periods;
    // 250 ms at most), so every probe should be the kernel's; the margin below is for a
    // machine so loaded that the wait ran out (40 probes of each target, 10 ms apart).
    let run = lab.run_client_bounded(
        [
            "probe", &t4, &t6, "-c", "40", "--interval", "10ms", "--json", "--pcap",
            pcap.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 80, "{run}");
    let mut by_kernel = 0;
    let mut by_kernel_v6 = 0;
    for r in &records {
        assert_eq!(r.http_status(), Some(200), "{r:?}");
        assert!(r.segments.iter().all(|s| !s.foreign), "{r:?}");
        let kernel: Vec<_> = r.segments.iter().filter(|s| s.kernel).collect();
        assert!(kernel.len() <= 1, "{r:?}");
        let Some(k) = kernel.first() else { continue };
        by_kernel += 1;
        by_kernel_v6 += usize::from(r.target == t6);
        let synack = r
            .segments
            .iter()
            .find(|s| s.dir == "in" && s.flags == "S.")
            .unwrap_or_else(|| panic!("no SYN-ACK before the kernel's segment: {r:?}"));
        assert_eq!((k.dir.as_str(), k.flags.as_str()), ("out", "P."), "{r:?}");
        assert_eq!(k.ack, synack.seq.wrapping_add(1), "{r:?}");
        assert_eq!(k.seq, synack.ack, "{r:?}");
        assert!(k.len > 0, "the request rides on it: {r:?}");
        assert!(
            k.ts_ns >= synack.ts_ns && k.ts_ns - synack.ts_ns < 1_000_000,
            "{r:?}"
        );
    }
    assert!(by_kernel >= 50, "only {by_kernel} of 80 by the kernel program\n{run}");
    assert!(by_kernel_v6 >= 25, "only {by_kernel_v6} of 40 IPv6 ones\n{run}");
    assert!(
        run.stderr.contains(&format!(
            "the kernel program sent the handshake's ACK of {by_kernel} of 80 probes"
        )),
        "{run}"
    );
    let (report, problems) = lab::capture::tshark_expert(
        &pcap,
        &format!("ip.src == {} || ipv6.src == {}", lab.client_v4, lab.client_v6),
    );
    assert_eq!(problems, 0, "tshark on our segments:\n{report}");

    // CSV's last column says which rows' ACK the program sent, as many as the survey's
    // line counts.
    let run = lab.run_client_bounded(
        [
            "probe", &server, "-p", "80", "-c", "10", "--interval", "10ms", "-o", "csv",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let mut lines = run.stdout.lines();
    assert!(
        lines.next().is_some_and(|h| h.ends_with(",error,kernel_ack")),
        "{run}"
    );
    let last: Vec<&str> = lines.map(|l| l.rsplit(',').next().unwrap_or("")).collect();
    assert_eq!(last.len(), 10, "{run}");
    assert!(last.iter().all(|v| *v == "true" || *v == "false"), "{run}");
    let trues = last.iter().filter(|v| **v == "true").count();
    assert!(trues >= 5, "only {trues} of 10 by the kernel program\n{run}");
    assert!(
        run.stderr.contains(&format!(
            "the kernel program sent the handshake's ACK of {trues} of 10 probes"
        )),
        "{run}"
    );

    // A request longer than the program's entry holds is left to us: the program was in
    // place (a second of probes), so the line says none was one it answers, not that it
    // came too late.
    let long = format!("/{}", "a".repeat(1100));
    let run = lab.run_client_bounded(
        [
            "probe", &server, "-p", "80", "-c", "10", "--interval", "100ms", "--path", &long,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains(
            "the kernel program sent the handshake's ACK of 0 of 10 probes answered with a \
             SYN-ACK (none of their SYN-ACKs was one it answers"
        ),
        "{run}"
    );

    // IPv6 alone, five probes at once: their SYNs wait for IPv6's program (verified only
    // now) and its egress program, which learns our flow label. Without that wait none
    // would be the program's (it takes tens of ms to be ready, the probes about one); all
    // five are, unless a machine so loaded that the wait (250 ms) ran out.
    let run = lab.run_client_bounded(["probe", &t6, "-c", "5", "--json"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{run}");
    let v6_alone = run
        .records()
        .iter()
        .filter(|r| r.segments.iter().any(|s| s.kernel))
        .count();
    assert!(v6_alone >= 1, "none of 5 IPv6 probes by the kernel program\n{run}");

    // A list that begins with IPv6, then an IPv4 target, whose program is made while
    // probes are in flight, and which answers its later probes.
    let run = lab.run_client_bounded(
        [
            "probe", &t6, &t4, "-c", "20", "--interval", "10ms", "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 40, "{run}");
    let by_kernel = |v6: bool| {
        let t = if v6 { &t6 } else { &t4 };
        records
            .iter()
            .filter(|r| &r.target == t && r.segments.iter().any(|s| s.kernel))
            .count()
    };
    assert!(by_kernel(true) >= 10, "only {} of 20 IPv6 ones\n{run}", by_kernel(true));
    assert!(by_kernel(false) >= 10, "only {} of 20 IPv4 ones\n{run}", by_kernel(false));
    assert!(
        run.stderr.contains(&format!(
            "the kernel program sent the handshake's ACK of {} of 40 probes",
            by_kernel(true) + by_kernel(false)
        )),
        "{run}"
    );

    let run = lab.run_client_bounded(
        [
            "probe", &server, "-p", "80", "-c", "10", "--interval", "10ms", "--json",
            "--no-reflex",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert_eq!(records.len(), 10, "{run}");
    assert!(
        records.iter().all(|r| r.segments.iter().all(|s| !s.kernel && !s.foreign)),
        "{run}"
    );
    assert!(!run.stderr.contains("kernel program"), "{run}");
}
}

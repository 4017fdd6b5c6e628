//! Fault lab: tcpshake against real peers through a link emulator and a router, with
//! deterministic faults (scripted per-segment drops, duplicates, holds and corruption in
//! `tcpshake-linkem`, nft rules, router routes), each test asserting the segments
//! exchanged and the verdict. Shares the harness with tests/probe.rs.

#[path = "lab/mod.rs"]
mod lab;

use lab::Lab;
use lab::middle::RouterFault;
use lab::peers::ListenerMode;
use lab::report::ProbeRecord;
use lab::require_root;
use std::time::Duration;

fn probe_args(target: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "probe".to_string(),
        target.to_string(),
        "--json".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `dir flags` of every segment, e.g. `["out S", "in S.", "out ."]`.
fn exchange(rec: &ProbeRecord) -> Vec<String> {
    rec.segments
        .iter()
        .map(|s| format!("{} {}", s.dir, s.flags))
        .collect()
}

/// The emulator keeps a fixed 10 ms each way to within ~100 µs: ping's RTT through it is
/// 20 ms plus the stacks' own few µs.
#[test]
fn emulator_delay_is_accurate_at_10ms() {
    if !require_root() {
        return;
    }
    let mut lab = Lab::with_link_emulator("delay", "delay=10ms", "delay=10ms", 1);
    let out = lab::run_ok(
        lab::in_ns(&lab.client_ns, "ping")
            .args(["-c", "60", "-i", "0.03"])
            .arg(lab.server_v4.to_string()),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = lab.stop_link_emulator();
    // "64 bytes from …: icmp_seq=1 ttl=64 time=20.1 ms"
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").parse().ok())
        .collect();
    rtts.sort_by(f64::total_cmp);
    assert!(rtts.len() >= 55, "{text}");
    let (min, median, p90) = (rtts[0], rtts[rtts.len() / 2], rtts[rtts.len() * 9 / 10]);
    eprintln!(
        "RTT through 10 ms + 10 ms: min {min:.3} median {median:.3} p90 {p90:.3} ms; \
         emulator lateness mean {} µs / {} µs",
        report.ab.late_mean_ns / 1000,
        report.ba.late_mean_ns / 1000
    );
    assert!(min >= 20.0, "faster than the configured delay: {text}");
    // Each way within 100 µs: the round trip within 200 µs, at the median (a loaded
    // 2-core CI machine preempts now and then; the tail is reported, not asserted).
    assert!(
        median - 20.0 < 0.2,
        "median RTT over 20.2 ms: {text}\n{report:?}"
    );
    assert_eq!(report.ab.dropped + report.ba.dropped, 0, "{report:?}");
}

/// One probe's outcome: the run, its record, and the raw JSON (for fields the shared
/// record type does not carry: anomalies, timers, bad_checksum, retransmission).
struct Probed {
    run: lab::Run,
    rec: ProbeRecord,
    json: serde_json::Value,
}

impl Probed {
    fn ctx(&self) -> String {
        format!("{:?}\n{}", exchange(&self.rec), self.run)
    }

    fn anomalies(&self) -> Vec<String> {
        self.json["anomalies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn seg(&self, i: usize) -> &serde_json::Value {
        &self.json["segments"][i]
    }

    /// Indices of segments with this direction and flags.
    fn find(&self, dir: &str, flags: &str) -> Vec<usize> {
        self.rec
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dir == dir && s.flags == flags)
            .map(|(i, _)| i)
            .collect()
    }

    fn last_out_flags(&self) -> String {
        self.rec
            .segments
            .iter()
            .rev()
            .find(|s| s.dir == "out")
            .map(|s| s.flags.clone())
            .unwrap_or_default()
    }
}

fn probe(lab: &Lab, v6: bool, port: u16, extra: &[&str]) -> Probed {
    let pcap = lab.dir().join(format!("probe-{port}-{v6}.pcap"));
    let mut args = probe_args(&lab.target(v6, port), extra);
    args.push("--pcap".into());
    args.push(pcap.to_string_lossy().into_owned());
    let run = lab.run_client(args);
    let rec = run.record();
    let json: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let p = Probed { run, rec, json };
    // Every packet tcpshake crafted decodes in tshark without an expert warning or error
    // (the peers' packets are theirs to answer for: hostile ones are malformed on purpose).
    let filter = format!(
        "ip.src == {} || ipv6.src == {}",
        lab.client_v4, lab.client_v6
    );
    let (report, problems) = lab::capture::tshark_expert(&pcap, &filter);
    assert_eq!(
        problems,
        0,
        "tshark on our segments:\n{report}\n{}",
        p.ctx()
    );
    p
}

/// A lost SYN is retransmitted after the RTO (RFC 6298 §5) and the probe still succeeds.
#[test]
fn lost_syn_is_retransmitted() {
    if !require_root() {
        return;
    }
    let mut lab = Lab::with_link_emulator("lostsyn", "port=80,script=1:drop", "", 1);
    lab.start_nginx(80);
    let p = probe(&lab, false, 80, &["--rto", "200ms"]);
    assert_eq!(p.run.code, Some(0), "{}", p.ctx());
    assert_eq!(p.find("out", "S"), vec![0, 1], "{}", p.ctx());
    assert_eq!(p.seg(1)["retransmission"], true, "{}", p.ctx());
    assert_eq!(p.rec.segments[2].flags, "S.", "{}", p.ctx());
    assert_eq!(p.rec.http_status(), Some(200), "{}", p.ctx());
    let report = lab.stop_link_emulator();
    assert_eq!(report.ab.dropped, 1, "{report:?}");
}

/// A lost SYN-ACK: our SYN is retransmitted, the server answers it again.
#[test]
fn lost_synack_syn_is_retransmitted() {
    if !require_root() {
        return;
    }
    let mut lab = Lab::with_link_emulator("lostsynack", "", "port=80,script=1:drop", 1);
    lab.start_nginx(80);
    let p = probe(&lab, false, 80, &["--rto", "200ms"]);
    assert_eq!(p.run.code, Some(0), "{}", p.ctx());
    // The dropped SYN-ACK never reached the tap: two SYNs, then one SYN-ACK.
    assert_eq!(
        &exchange(&p.rec)[..3],
        ["out S", "out S", "in S."],
        "{}",
        p.ctx()
    );
    assert_eq!(p.rec.retransmissions(), 1, "{}", p.ctx());
    assert_eq!(p.rec.http_status(), Some(200), "{}", p.ctx());
    assert_eq!(lab.stop_link_emulator().ba.dropped, 1);
}

/// Our handshake ACK and FIN are lost until the server retransmits its SYN-ACK (after its
/// 1 s RTO): tcpshake, already past SYN-SENT, must ACK the duplicate SYN-ACK (RFC 9293
/// §3.10.7.4: an unacceptable segment is answered with an ACK), which completes the
/// server's handshake.
#[test]
fn lost_ack_server_retransmits_synack_and_we_reack() {
    if !require_root() {
        return;
    }
    // Client→server TCP segments: 1 SYN, 2 FIN (our ACK rides on it), 3 and 4 its
    // retransmissions (RTO 200 ms, then 400 ms) all lost; the server's SYN-ACK
    // retransmission comes at ~1 s, before our third FIN retransmission at 1.4 s.
    let mut lab =
        Lab::with_link_emulator("lostack", "port=9000,script=2:drop;3:drop;4:drop", "", 1);
    lab.start_kernel_listener(9000, ListenerMode::ReadUntilEof);
    let p = probe(
        &lab,
        false,
        9000,
        &[
            "--no-http",
            "--rto",
            "200ms",
            "--timeout",
            "5s",
            "--time-wait",
            "100ms",
        ],
    );
    assert_eq!(p.run.code, Some(0), "{}", p.ctx());
    let synacks = p.find("in", "S.");
    assert_eq!(
        synacks.len(),
        2,
        "the server retransmits its SYN-ACK: {}",
        p.ctx()
    );
    let irs = p.rec.segments[synacks[0]].seq;
    let reack = p.rec.segments[synacks[1] + 1..]
        .iter()
        .find(|s| s.dir == "out")
        .unwrap_or_else(|| panic!("no answer to the second SYN-ACK: {}", p.ctx()));
    assert!(reack.flags.contains('.'), "{}", p.ctx());
    assert_eq!(
        reack.ack,
        irs.wrapping_add(1),
        "re-ACK acknowledges the SYN: {}",
        p.ctx()
    );
    assert_eq!(
        p.rec.close_initiator.as_deref(),
        Some("client"),
        "{}",
        p.ctx()
    );
    assert_eq!(p.rec.error, None, "{}", p.ctx());
}

/// The request is lost: retransmitted after the RTO, answered once.
#[test]
fn lost_request_is_retransmitted() {
    if !require_root() {
        return;
    }
    let mut lab = Lab::with_link_emulator("lostreq", "port=80,script=3:drop", "", 1);
    lab.start_nginx(80);
    let p = probe(&lab, false, 80, &[]);
    assert_eq!(p.run.code, Some(0), "{}", p.ctx());
    let requests = p.find("out", "P.");
    assert_eq!(requests.len(), 2, "{}", p.ctx());
    assert_eq!(p.seg(requests[1])["retransmission"], true, "{}", p.ctx());
    assert_eq!(
        p.rec.segments[requests[0]].seq,
        p.rec.segments[requests[1]].seq
    );
    assert_eq!(p.rec.http_status(), Some(200), "{}", p.ctx());
    assert_eq!(lab.stop_link_emulator().ab.dropped, 1);
}

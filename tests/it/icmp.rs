//! ICMP errors against real paths: a router whose next link is narrower than the ends
//! think (frag-needed / Packet Too Big), a router that drops big packets without a word
//! (a PMTU black hole), and errors forged by someone who knows the 4-tuple but not our
//! sequence numbers (RFC 5927 §4.1). Linux's client (curl) goes through the same router
//! for comparison. Shares the harness with tests/faults.rs.

use crate::lab;

use lab::capture::{L4, Packet};
use lab::report::ProbeRecord;
use lab::{Lab, in_ns, poll_until};
use std::time::Duration;

/// A request line of more than 3 kB: three segments at MSS 1448.
fn long_path() -> String {
    format!("/{}", "a".repeat(3000))
}

struct Probed {
    run: lab::Run,
    rec: ProbeRecord,
    json: serde_json::Value,
}

impl Probed {
    fn ctx(&self) -> String {
        self.run.to_string()
    }

    fn strings(&self, field: &str, key: Option<&str>) -> Vec<String> {
        self.json[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| match key {
                        Some(k) => v[k].as_str().map(String::from),
                        None => v.as_str().map(String::from),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `what` of every timer line (ICMP errors that changed something are there).
    fn timers(&self) -> Vec<String> {
        self.strings("timers", Some("what"))
    }

    fn anomalies(&self) -> Vec<String> {
        self.strings("anomalies", None)
    }

    /// Payload lengths of our data segments sent after `t_ns`.
    fn data_out_after(&self, t_ns: i64) -> Vec<u64> {
        self.json["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["dir"] == "out" && s["t_ns"].as_i64() > Some(t_ns))
            .filter_map(|s| s["len"].as_u64())
            .filter(|&l| l > 0)
            .collect()
    }

    /// `legs_ns.total`: our first SYN to the exchange's last segment.
    fn total_ns(&self) -> u64 {
        self.rec
            .legs_ns
            .as_ref()
            .and_then(|l| l.total)
            .unwrap_or(u64::MAX)
    }

    /// When the first timer line containing `what` happened.
    fn timer_at(&self, what: &str) -> Option<i64> {
        self.json["timers"]
            .as_array()?
            .iter()
            .find(|t| t["what"].as_str().is_some_and(|w| w.contains(what)))?["t_ns"]
            .as_i64()
    }
}

/// `tcpshake probe` from the client to the server's port 80 with `extra` options, as JSON
/// and pcap; every packet tcpshake made must decode in tshark without a warning.
fn probe(lab: &Lab, v6: bool, tag: &str, extra: &[&str]) -> Probed {
    probe_tolerating(lab, v6, tag, extra, &[])
}

/// What tshark says of a request re-cut after a frag-needed, on Linux's client's capture of
/// the same path as on ours: the originals are in the capture (the router dropped them
/// beyond it), so a re-cut piece that follows them sooner than the handshake's round trip
/// reads as "out-of-order", and its bytes as overlapping the originals' in the HTTP
/// reassembly. Linux's curl drew both in 4 of 4 runs here; ours, when our handshake ACK was
/// slow enough to stretch tshark's round trip past the re-cut's delay (3 of 20).
const RECUT: &[&str] = &[
    "(suspected) out-of-order segment",
    "New fragment overlaps old data (retransmission?)",
];

/// [`probe`], with tshark's items containing one of `tolerated` allowed.
fn probe_tolerating(lab: &Lab, v6: bool, tag: &str, extra: &[&str], tolerated: &[&str]) -> Probed {
    let pcap = lab.dir().join(format!("{tag}.pcap"));
    let mut args = vec![
        "probe".to_string(),
        lab.target(v6, 80),
        "--json".to_string(),
        "--pcap".to_string(),
        pcap.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = lab.run_client(args);
    let rec = run.record();
    let json: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let filter = format!(
        "ip.src == {} || ipv6.src == {}",
        lab.client_v4, lab.client_v6
    );
    // Each re-cut piece may be called out of order once and overlap once, no more.
    let recut = json["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["dir"] == "out" && s["retransmission"] == true && s["len"] != 0)
        .count();
    let (report, problems) =
        lab::capture::tshark_expert_tolerating(&pcap, &filter, tolerated, 2 * recut);
    assert_eq!(problems, 0, "tshark on our segments:\n{report}\n{run}");
    Probed { run, rec, json }
}

fn is_frag_needed(p: &Packet) -> bool {
    matches!(
        p.l4,
        L4::Icmp {
            v6: false,
            kind: 3,
            code: 4
        } | L4::Icmp {
            v6: true,
            kind: 2,
            ..
        }
    )
}

lab_test! {
/// A survey's repeated probes through a router whose next link carries 1000 bytes: the
/// first learns the path MTU from the frag-needed and sends again; the next ones start
/// with it (RFC 1191 §5's cache, as Linux's route keeps it), so they pay neither the error
/// nor the resend (a walk: every probe did, where only Linux's first connection did).
fn a_survey_remembers_the_path_mtu_it_learned() {
    let mut lab = Lab::with_router("pmtucache");
    lab.start_nginx(80);
    lab.router_server_mtu(1000);
    let path = long_path();
    let target = lab.target(false, 80);
    let run = lab.run_client([
        "probe", &target, "--path", &path, "-c", "3", "-j", "1", "-i", "100ms", "--json",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let recs = run.json_lines();
    assert_eq!(recs.len(), 3, "{run}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["http"]["status"], 404, "{r}");
        assert_eq!(r["path_mtu"], 1000, "{r}");
        let learned_before = r["anomalies"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| {
                n.as_str().unwrap_or("").starts_with(
                    "path MTU 1000, learned by an earlier probe to this address from an ICMP \
                     error, used from the start (RFC 1191 §5)",
                )
            });
        let sent_again = r["retransmissions"].as_u64().unwrap_or(0) > 0;
        if i == 0 {
            assert!(sent_again && !learned_before, "{r}");
        } else {
            assert!(!sent_again && learned_before, "{r}");
            assert_eq!(r["segments"][0]["options"]["mss"], 960, "{r}");
        }
    }
}
}

lab_test! {
/// A router whose link toward the server carries 500 bytes, below IPv4's path MTU floor
/// (552, Linux's `min_pmtu`): segments of the floor's size with DF would be refused for
/// good. As Linux does, the path MTU is locked at 552 and the segments go without DF, for
/// the router to fragment; the exchange finishes in milliseconds (a walk: before, the
/// request was refused at 552 until the timeout, where Linux's went through in 52 ms).
fn frag_needed_below_the_floor_goes_on_without_df_like_linux() {
    let mut lab = Lab::with_router("pmtu500");
    lab.start_nginx(80);
    lab.router_server_mtu(500);
    let path = long_path();
    let p = probe_tolerating(&lab, false, "pmtu500", &["--path", &path], RECUT);
    assert_eq!(p.rec.http_status(), Some(404), "{}", p.ctx());
    assert_eq!(p.rec.error, None, "{}", p.ctx());
    assert_eq!(p.json["path_mtu"], 552, "{}", p.ctx());
    assert!(
        p.timers()
            .iter()
            .any(|t| t.contains("(floor 552; it said 500); segments go without DF")),
        "{:?}\n{}",
        p.timers(),
        p.ctx()
    );
    let total = p.total_ns();
    assert!(total < 150_000_000, "total {total} ns\n{}", p.ctx());
    // Linux's client through the same router gets there too.
    let (code, status) = lab.curl(&lab.url(false, 80, &path), Duration::from_secs(5));
    assert_eq!((code, status), (0, 404), "curl through the router");
}
}

lab_test! {
/// A router whose link toward the server carries 1000 bytes (IPv6: 1280) between ends
/// that both say MSS 1460. The request's big segments draw frag-needed / Packet Too Big;
/// tcpshake lowers its MSS and sends them again at once, re-cut, as Linux's curl does
/// through the same router: both finish in milliseconds, no retransmission timer.
fn frag_needed_mid_path_resegments_at_once_like_linux() {
    let mut lab = Lab::with_router("pmtu");
    lab.start_nginx(80);
    lab.router_server_mtu(1000);
    let path = long_path();
    let router = lab.router_v4(true).to_string();

    let p = probe_tolerating(&lab, false, "pmtu4", &["--path", &path], RECUT);
    assert_eq!(p.rec.state(), "open", "{}", p.ctx());
    assert_eq!(p.rec.http_status(), Some(404), "{}", p.ctx());
    assert_eq!(p.rec.error, None, "{}", p.ctx());
    assert_eq!(p.json["path_mtu"], 1000, "{}", p.ctx());
    assert_eq!(p.json["icmp_ignored"], 0, "{}", p.ctx());
    assert_eq!(p.json["pmtu_black_hole"], false, "{}", p.ctx());
    let line = format!("ICMP frag-needed mtu 1000 from {router}: path MTU 1000, MSS 1448 → 948");
    let at = p
        .timer_at(&line)
        .unwrap_or_else(|| panic!("no `{line}` in {:?}\n{}", p.timers(), p.ctx()));
    // What went out after the error fits 1000-byte packets (some originals may still have
    // been on their way out when it arrived: those are the ones before their own ICMP).
    let after = p.data_out_after(at);
    assert!(!after.is_empty(), "{}", p.ctx());
    let resent: Vec<u64> = after.iter().copied().filter(|&l| l <= 948).collect();
    assert!(resent.len() >= 3, "re-cut segments: {after:?}\n{}", p.ctx());
    // No timer was needed: well under the 200 ms minimum RTO.
    let total = p.total_ns();
    assert!(total < 150_000_000, "total {total} ns\n{}", p.ctx());
    eprintln!(
        "tcpshake over a 1000-byte path: {:.3} ms",
        total as f64 / 1e6
    );

    // Linux's client through the same router: the same errors, the same re-cut.
    let cap = lab.start_capture("curl4");
    let t0 = std::time::Instant::now();
    let (code, status) = lab.curl(&lab.url(false, 80, &path), Duration::from_secs(5));
    let took = t0.elapsed();
    let pkts = lab.stop_capture(&cap);
    assert_eq!((code, status), (0, 404), "curl through the router");
    // What tshark says of Linux's re-cut: see RECUT.
    let (linux_report, _) = lab::capture::tshark_expert(&lab.dir().join("curl4.pcap"), "");
    eprintln!("tshark on Linux's exchange:\n{linux_report}");
    let icmp_at = pkts
        .iter()
        .find(|p| is_frag_needed(p))
        .map(|p| p.ts_ns)
        .expect("Linux's segments drew a frag-needed too");
    let linux_after: Vec<u32> = pkts
        .iter()
        .filter(|p| p.ts_ns > icmp_at && p.src == lab.client_addr(false))
        .filter_map(|p| p.tcp().map(|t| t.len))
        .filter(|&l| l > 0)
        .collect();
    assert!(
        linux_after.iter().filter(|&&l| l <= 948).count() >= 3,
        "{linux_after:?}"
    );
    let tcp_ts: Vec<u64> = pkts
        .iter()
        .filter(|p| p.tcp().is_some())
        .map(|p| p.ts_ns)
        .collect();
    let wire = tcp_ts.last().unwrap_or(&0) - tcp_ts.first().unwrap_or(&0);
    eprintln!(
        "curl over the same path: {:.3} ms on the wire, {took:?} in all (its segments after \
         the ICMP: {linux_after:?})",
        wire as f64 / 1e6
    );

    // IPv6: the link carries 1280, the minimum (RFC 8200 §5).
    lab.router_server_mtu(1280);
    let p = probe_tolerating(&lab, true, "pmtu6", &["--path", &path], RECUT);
    assert_eq!(p.rec.http_status(), Some(404), "{}", p.ctx());
    assert_eq!(p.json["path_mtu"], 1280, "{}", p.ctx());
    let line = format!(
        "ICMP packet-too-big mtu 1280 from {}: path MTU 1280, MSS 1428 → 1208",
        lab.router_v6(true)
    );
    assert!(
        p.timer_at(&line).is_some(),
        "no `{line}` in {:?}\n{}",
        p.timers(),
        p.ctx()
    );
    let total = p.total_ns();
    assert!(total < 150_000_000, "total {total} ns\n{}", p.ctx());
}
}

lab_test! {
/// The router drops big packets without a word (IPv4 over 1000 bytes, IPv6 over 1400).
/// tcpshake's full-sized request segment is lost twice; it then sends at the size every
/// path carries, gets through and names the black hole. (Linux's client does nothing of
/// the kind unless `net.ipv4.tcp_mtu_probing` is on, and then after seconds.)
fn pmtu_black_hole_is_detected_and_named() {
    let mut lab = Lab::with_router("blackhole");
    lab.start_nginx(80);
    lab.router_black_hole(1000, 1400);
    let path = long_path();
    for (v6, mtu) in [(false, 576), (true, 1280)] {
        let p = probe(&lab, v6, &format!("bh{v6}"), &["--path", &path]);
        assert_eq!(p.rec.http_status(), Some(404), "{}", p.ctx());
        assert_eq!(p.rec.error, None, "{}", p.ctx());
        assert_eq!(p.json["pmtu_black_hole"], true, "{}", p.ctx());
        assert_eq!(p.json["path_mtu"], mtu, "{}", p.ctx());
        assert_eq!(p.json["icmp_ignored"], 0, "{}", p.ctx());
        let at = p
            .timer_at("suspecting a path MTU black hole")
            .unwrap_or_else(|| panic!("{:?}\n{}", p.timers(), p.ctx()));
        let mss = if v6 { 1208 } else { 524 };
        let after = p.data_out_after(at);
        assert!(
            !after.is_empty() && after.iter().all(|&l| l <= mss),
            "{after:?}\n{}",
            p.ctx()
        );
        assert!(
            p.anomalies()
                .iter()
                .any(|a| a.starts_with("path MTU black hole")),
            "{:?}\n{}",
            p.anomalies(),
            p.ctx()
        );
        // Two retransmission timeouts (200 ms, then 400 ms) and the rest in milliseconds.
        let total = p.total_ns();
        assert!(total < 2_000_000_000, "total {total} ns\n{}", p.ctx());
        eprintln!(
            "black hole (IPv{}): {:.1} ms",
            if v6 { 6 } else { 4 },
            total as f64 / 1e6
        );
    }
}
}

/// Sniffs our SYN in the server namespace (an AF_PACKET socket sees it before nft drops
/// it), then sends ICMP errors that quote its 4-tuple but not its sequence number —
/// port, host/address unreachable, time exceeded, frag-needed / Packet Too Big — and one
/// frag-needed / Packet Too Big that does quote our ISN (a real hint about size). Then it
/// deletes the nft table that kept the SYN from the server, so the retransmitted SYN is
/// answered.
const SPOOFER: &str = r#"
import socket, struct, subprocess, sys, time, select
v6 = sys.argv[1] == "6"; port = int(sys.argv[2]); ifname = sys.argv[3]
table = sys.argv[4]; ready = sys.argv[5]; ns_mtu = int(sys.argv[6])
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sniff.bind((ifname, 0))
open(ready, "w").write("ready\n")
end = time.time() + 15
syn = None
while time.time() < end and syn is None:
    if not select.select([sniff], [], [], 0.1)[0]:
        continue
    f = sniff.recv(65535)
    eth, p = struct.unpack("!H", f[12:14])[0], f[14:]
    if not v6 and eth == 0x0800 and p[9] == 6:
        ihl = (p[0] & 15) * 4
        ip, t, client = p[:ihl], p[ihl:], socket.inet_ntop(socket.AF_INET, p[12:16])
    elif v6 and eth == 0x86DD and p[6] == 6:
        ip, t, client = p[:40], p[40:], socket.inet_ntop(socket.AF_INET6, p[8:24])
    else:
        continue
    sport, dport, seq = struct.unpack("!HHI", t[:8])
    if dport == port and t[13] & 0x12 == 0x02:
        syn = (ip, sport, dport, seq, client)
if syn is None:
    sys.exit("no SYN seen")
ip, sport, dport, seq, client = syn
def quote(s):
    return ip + struct.pack("!HHI", sport, dport, s & 0xFFFFFFFF)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
if v6:
    # type, code, 32-bit field (the MTU of a Packet Too Big), quoted sequence number
    msgs = [(1, 4, 0, seq + 1), (1, 3, 0, seq + 12345), (3, 0, 0, seq - 1), (2, 0, 1280, seq + 1)]
    good = (2, 0, ns_mtu, seq)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    for ty, code, rest, q in msgs + [good]:
        s.sendto(struct.pack("!BBHI", ty, code, 0, rest) + quote(q), (client, 0))
else:
    msgs = [(3, 3, 0, seq + 1), (3, 1, 0, seq ^ 0x5A5A5A5A), (11, 0, 0, seq - 1), (3, 4, 600, seq + 1000)]
    good = (3, 4, ns_mtu, seq)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    for ty, code, mtu, q in msgs + [good]:
        m = struct.pack("!BBHHH", ty, code, 0, 0, mtu) + quote(q)
        m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
        s.sendto(m, (client, 0))
subprocess.run(["nft", "delete", "table", "inet", table], check=True)
print("sent", len(msgs) + 1, "errors about seq", seq)
"#;

lab_test! {
/// Someone who knows the 4-tuple but not our ISN sends port-unreach, host-unreach, time
/// exceeded and frag-needed while our SYN waits for its answer (the first SYN is kept
/// from the server, so the wait is a whole RTO). None of them is believed: the port reads
/// open, each is counted and named. The one frag-needed that quotes our ISN is a hint:
/// the request goes out in segments that fit it.
fn icmp_errors_with_a_wrong_sequence_number_leave_an_open_port_open() {
    let mut lab = Lab::with_router("spoof");
    lab.start_nginx(80);
    let script = lab.dir().join("spoof.py");
    std::fs::write(&script, SPOOFER).expect("write spoof.py");
    let path = long_path();
    for (v6, hint, mss) in [(false, 1000, 948), (true, 1280, 1208)] {
        let table = format!("tsk_hold_syn{}", u8::from(v6));
        lab::middle::nft_script(
            &lab.server_ns,
            &format!(
                "table inet {table} {{\n\
                 \x20 chain input {{ type filter hook input priority -10; policy accept;\n\
                 \x20   tcp dport 80 tcp flags & (syn | ack) == syn drop\n\
                 \x20 }}\n\
                 }}\n"
            ),
        );
        let ready = lab.dir().join(format!("spoof{v6}.ready"));
        let mut cmd = in_ns(&lab.server_ns, "python3");
        cmd.arg(&script)
            .arg(if v6 { "6" } else { "4" })
            .arg("80")
            .arg(lab::SERVER_IF)
            .arg(&table)
            .arg(&ready)
            .arg(hint.to_string());
        let pid = lab.spawn_owned("spoofer", &mut cmd);
        assert!(
            poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
                ready.exists()
            }),
            "the spoofer did not start"
        );
        let p = probe(&lab, v6, &format!("spoof{v6}"), &["--path", &path]);
        assert!(
            poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
                !lab.owned_alive(pid)
            }),
            "the spoofer did not finish"
        );
        lab.stop_owned(pid);
        assert_eq!(
            (p.rec.state(), p.rec.reason()),
            ("open", "syn-ack"),
            "{}",
            p.ctx()
        );
        assert_eq!(p.rec.http_status(), Some(404), "{}", p.ctx());
        assert_eq!(
            p.json["icmp_ignored"],
            4,
            "{:?}\n{}",
            p.anomalies(),
            p.ctx()
        );
        let notes = p.anomalies();
        let server = lab.server_addr(v6).to_string();
        let ignored: Vec<&String> = notes
            .iter()
            .filter(|a| a.starts_with("ignored ICMP") && a.contains(&format!("from {server}")))
            .collect();
        assert_eq!(ignored.len(), 4, "{notes:?}");
        assert!(
            ignored
                .iter()
                .all(|a| a.contains("in SYN-SENT") && a.contains("not one in flight (0 ≤ seq < 1")),
            "{notes:?}"
        );
        // The quoted-ISN hint, and the request cut to it from the start.
        assert_eq!(p.json["path_mtu"], hint, "{}", p.ctx());
        assert!(
            p.timers()
                .iter()
                .any(|w| w.ends_with(&format!("path MTU {hint}, used once connected"))),
            "{:?}\n{}",
            p.timers(),
            p.ctx()
        );
        let data = p.data_out_after(i64::MIN);
        assert!(
            !data.is_empty() && data.iter().all(|&l| l <= mss),
            "{data:?}\n{}",
            p.ctx()
        );
        // The SYN was sent again after a whole RTO: the errors came in between.
        assert!(p.rec.retransmissions.unwrap_or(0) >= 1, "{}", p.ctx());
    }
}
}

//! `tcpshake probe` against real peers in throwaway network namespaces: `harness` checks
//! the lab itself without tcpshake, the rest drive the binary by its documented contract
//! (JSON Lines schema 1, the exit codes).

use crate::lab;

use lab::Lab;
use lab::capture::{self, L4, Packet, flags_str};
use lab::faults::{Direction, Reject};
use lab::peers::ListenerMode;
use lab::report::ProbeRecord;
use std::net::IpAddr;
use std::time::Duration;

/// Harness self-tests: they need root but not tcpshake.
mod harness {
    use super::*;

    lab_test! {
    fn nginx_answers_curl_on_v4_and_v6() {
        let mut lab = Lab::new("h_nginx");
        lab.start_nginx(80);
        for v6 in [false, true] {
            let url = lab.url(v6, 80, "/");
            assert_eq!(
                lab.curl(&url, Duration::from_secs(5)),
                (0, 200),
                "{url}\n{}",
                lab.describe()
            );
            let missing = lab.url(v6, 80, "/nope");
            assert_eq!(
                lab.curl(&missing, Duration::from_secs(5)),
                (0, 404),
                "{missing}"
            );
        }
    }
    }

    lab_test! {
    fn python_http_and_kernel_listener_accept() {
        let mut lab = Lab::new("h_peers");
        lab.start_python_http(false, 8000);
        lab.start_python_http(true, 8000);
        for v6 in [false, true] {
            assert_eq!(
                lab.curl(&lab.url(v6, 8000, "/"), Duration::from_secs(5)),
                (0, 200)
            );
        }
        // curl's 52 is "empty reply from server": connected, then closed without a word;
        // 56 when the close found curl's request unread and so became a RST (RFC 1122
        // §4.2.2.13: a close with received data pending SHOULD reset).
        lab.start_kernel_listener(9001, ListenerMode::CloseAfterAccept);
        for v6 in [false, true] {
            let code = lab.curl(&lab.url(v6, 9001, "/"), Duration::from_secs(5)).0;
            assert!(code == 52 || code == 56, "curl exit {code}");
        }
        // A listener that never answers: curl connects and then times out (28).
        lab.start_kernel_listener(9002, ListenerMode::ReadUntilEof);
        assert_eq!(
            lab.curl(&lab.url(false, 9002, "/"), Duration::from_secs(1))
                .0,
            28
        );
    }
    }

    lab_test! {
    /// Each fault, applied to its own port, shows up in the client's capture as exactly the
    /// reply the tests expect tcpshake to classify.
    fn faults_produce_expected_replies() {
        let mut lab = Lab::new("h_faults");
        lab.start_nginx(80);
        lab.fault_reject(81, Reject::Drop);
        lab.fault_reject(82, Reject::TcpReset);
        lab.fault_reject(83, Reject::PortUnreachable);
        lab.fault_reject(84, Reject::AdminProhibited);
        let cap = lab.start_capture("faults");
        for v6 in [false, true] {
            let t = Duration::from_secs(1);
            // curl: 28 timeout, 7 could not connect. Linux takes an ICMP error to a SYN as
            // fatal over v4 but keeps retrying over v6 (a soft error), so for ICMP only the
            // capture below tells what came back.
            assert_eq!(lab.curl(&lab.url(v6, 81, "/"), t).0, 28, "drop v6={v6}");
            assert_eq!(lab.curl(&lab.url(v6, 82, "/"), t).0, 7, "reset v6={v6}");
            for port in [83, 84] {
                let code = lab.curl(&lab.url(v6, port, "/"), t).0;
                assert!(
                    code == 7 || code == 28,
                    "port {port} v6={v6}: curl exit {code}"
                );
            }
            assert_eq!(
                lab.curl(&lab.url(v6, 80, "/"), t),
                (0, 200),
                "unfaulted port v6={v6}"
            );
        }
        let packets = lab.stop_capture(&cap);
        for v6 in [false, true] {
            let server = lab.server_addr(v6);
            let from_server: Vec<&Packet> = packets.iter().filter(|p| p.src == server).collect();
            let tcp_from = |port: u16| {
                from_server
                    .iter()
                    .filter(|p| p.tcp().is_some_and(|t| t.sport == port))
                    .count()
            };
            let icmp = |kind: u8, code: u8| {
                from_server
                    .iter()
                    .filter(|p| p.l4 == L4::Icmp { v6, kind, code })
                    .count()
            };
            assert_eq!(tcp_from(81), 0, "dropped port answered (v6={v6})");
            assert!(
                from_server.iter().any(|p| p
                    .tcp()
                    .is_some_and(|t| t.sport == 82 && t.flags & capture::RST != 0)),
                "no RST from port 82 (v6={v6})"
            );
            // ICMP dest unreachable 3/3 and 3/13 (RFC 792, RFC 1812 §5.2.7.1);
            // ICMPv6 1/4 port unreachable and 1/1 administratively prohibited (RFC 4443 §3.1).
            let (port_unreach, admin) = if v6 {
                ((1, 4), (1, 1))
            } else {
                ((3, 3), (3, 13))
            };
            assert!(
                icmp(port_unreach.0, port_unreach.1) > 0,
                "no port unreachable (v6={v6})"
            );
            assert!(icmp(admin.0, admin.1) > 0, "no admin prohibited (v6={v6})");
            assert!(tcp_from(80) > 0, "nginx silent (v6={v6})");
        }
        // The same capture proves `tshark_expert` counts problems: RSTs are Warnings.
        let (report, problems) = capture::tshark_expert(&cap.path, "tcp.flags.reset == 1");
        assert!(problems > 0, "tshark reported no RST warning:\n{report}");
    }
    }

    lab_test! {
    fn loss_fault_drops_and_clears() {
        let mut lab = Lab::new("h_loss");
        lab.start_nginx(80);
        lab.fault_loss(100, Direction::FromServer);
        assert_eq!(
            lab.curl(&lab.url(false, 80, "/"), Duration::from_secs(1)).0,
            28
        );
        lab.clear_faults();
        lab.fault_loss(100, Direction::ToServer);
        assert_eq!(
            lab.curl(&lab.url(true, 80, "/"), Duration::from_secs(1)).0,
            28
        );
        lab.clear_faults();
        // 20 % both ways still lets TCP through, given time to retransmit.
        lab.fault_loss(20, Direction::Both);
        assert_eq!(
            lab.curl(&lab.url(false, 80, "/"), Duration::from_secs(15)),
            (0, 200),
            "{}",
            lab.fault_ruleset()
        );
    }
    }

    lab_test! {
    /// The pcap reader agrees with tcpdump's own decoding (flags, sequence numbers) and
    /// with tshark's nanosecond epoch timestamps, packet for packet.
    fn pcap_reader_agrees_with_tcpdump_and_tshark() {
        let mut lab = Lab::new("h_pcap");
        lab.start_nginx(80);
        let cap = lab.start_capture("curl");
        for v6 in [false, true] {
            assert_eq!(
                lab.curl(&lab.url(v6, 80, "/"), Duration::from_secs(5)),
                (0, 200)
            );
        }
        let packets = lab.stop_capture(&cap);
        assert_eq!(
            capture::pcap_linktype(&cap.path),
            Ok(1),
            "tcpdump on veth writes Ethernet"
        );
        let tcp: Vec<&Packet> = packets.iter().filter(|p| p.tcp().is_some()).collect();
        assert!(
            tcp.len() >= 12,
            "two HTTP exchanges are at least 12 segments: {packets:?}"
        );

        let out = lab::run_ok(
            std::process::Command::new("tcpdump")
                .args(["-r"])
                .arg(&cap.path)
                .args(["-nn", "-S", "-tt", "--time-stamp-precision", "nano", "tcp"]),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), tcp.len(), "{text}");
        for (line, p) in lines.iter().zip(&tcp) {
            let t = p.tcp().expect("tcp");
            let ts = format!("{}.{:09}", p.ts_ns / 1_000_000_000, p.ts_ns % 1_000_000_000);
            assert!(line.starts_with(&ts), "timestamp {ts} vs {line}");
            assert!(
                line.contains(&format!("Flags [{}]", t.flags_str())),
                "flags {} vs {line}",
                t.flags_str()
            );
            if t.len > 0 || t.flags & (capture::SYN | capture::FIN) != 0 {
                assert!(
                    line.contains(&format!("seq {}", t.seq)),
                    "seq {} vs {line}",
                    t.seq
                );
            }
            assert!(
                line.contains(&format!(".{} > ", t.sport)),
                "sport {} vs {line}",
                t.sport
            );
        }

        let out = lab::run_ok(
            std::process::Command::new("tshark")
                .arg("-r")
                .arg(&cap.path)
                .args([
                    "-n",
                    "-T",
                    "fields",
                    "-e",
                    "frame.time_epoch",
                    "-e",
                    "tcp.seq_raw",
                    "tcp",
                ]),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for (line, p) in text.lines().zip(&tcp) {
            let mut f = line.split('\t');
            let epoch = f.next().unwrap_or("");
            let ts = format!("{}.{:09}", p.ts_ns / 1_000_000_000, p.ts_ns % 1_000_000_000);
            assert_eq!(epoch, ts, "tshark epoch vs pcap reader");
            assert_eq!(
                f.next(),
                Some(p.tcp().expect("tcp").seq.to_string().as_str())
            );
        }
        let (report, problems) = capture::tshark_expert(&cap.path, "");
        assert_eq!(
            problems, 0,
            "clean curl exchanges raise no tshark warnings:\n{report}"
        );
    }
    }

    #[test]
    fn flags_are_spelled_like_tcpdump() {
        use capture::{ACK, ECE, FIN, PSH, RST, SYN};
        assert_eq!(flags_str(SYN), "S");
        assert_eq!(flags_str(SYN | ACK), "S.");
        assert_eq!(flags_str(ACK), ".");
        assert_eq!(flags_str(PSH | ACK), "P.");
        assert_eq!(flags_str(FIN | PSH | ACK), "FP.");
        assert_eq!(flags_str(RST), "R");
        assert_eq!(flags_str(RST | ACK), "R.");
        assert_eq!(flags_str(SYN | ACK | ECE), "S.E");
    }

    lab_test! {
    /// Drop removes namespaces, processes and the temp dir, also when the test panics.
    fn drop_cleans_up_even_on_panic() {
        let seen = std::sync::Mutex::new(None);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut lab = Lab::new("h_drop");
            let pid = lab.start_nginx(80);
            *seen.lock().expect("lock") = Some((
                lab.client_ns.clone(),
                lab.server_ns.clone(),
                lab.dir().to_path_buf(),
                pid,
            ));
            panic!("deliberate");
        }));
        assert!(result.is_err());
        let (c, s, dir, pid) = seen.lock().expect("lock").clone().expect("lab was built");
        let list = lab::run_ok(std::process::Command::new("ip").args(["netns", "list"]));
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(
            !list.contains(&c) && !list.contains(&s),
            "namespaces left: {list}"
        );
        assert!(!dir.exists(), "temp dir left: {dir:?}");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "nginx {pid} still runs"
        );
    }
    }

    lab_test! {
    /// `Lab::new` removes `tsk-` namespaces of dead processes and leaves live ones alone.
    fn sweep_removes_only_dead_owners_namespaces() {
        let mut dead = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead_pid = dead.id();
        dead.wait().expect("wait true");
        let stale = format!("tsk-{dead_pid}-0-stale-c");
        let live = format!("tsk-{}-999999-live-c", std::process::id());
        for ns in [&stale, &live] {
            lab::run_ok(std::process::Command::new("ip").args(["netns", "add", ns]));
        }
        let _lab = Lab::new("h_sweep");
        let list = lab::run_ok(std::process::Command::new("ip").args(["netns", "list"]));
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &live])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &stale])
            .status();
        if std::path::Path::new(&format!("/proc/{dead_pid}")).exists() {
            // The pid was reused in the meantime: the sweep was right to keep it.
            return;
        }
        assert!(!list.contains(&stale), "stale namespace kept: {list}");
        assert!(list.contains(&live), "live namespace swept: {list}");
    }
    }
}

/// `probe TARGET --json` plus `extra`.
fn probe_args(target: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "probe".to_string(),
        target.to_string(),
        "--json".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The checks every successful HTTP probe must pass.
fn assert_open_http(lab: &Lab, rec: &ProbeRecord, v6: bool, port: u16, ctx: &str) {
    assert_eq!(rec.schema, 1, "{ctx}");
    assert_eq!(rec.state(), "open", "{ctx}");
    assert_eq!(rec.reason(), "syn-ack", "{ctx}");
    assert_eq!(rec.http_status(), Some(200), "{ctx}");
    assert_eq!(rec.error, None, "{ctx}");
    assert_eq!(rec.port, Some(port), "{ctx}");
    let addr: Option<IpAddr> = rec.addr.as_deref().and_then(|a| a.parse().ok());
    assert_eq!(addr, Some(lab.server_addr(v6)), "{ctx}");
    let src: Option<IpAddr> = rec.src_addr.as_deref().and_then(|a| a.parse().ok());
    assert_eq!(src, Some(lab.client_addr(v6)), "{ctx}");
    let first = rec
        .segments
        .first()
        .unwrap_or_else(|| panic!("no segments: {ctx}"));
    assert_eq!(
        (first.dir.as_str(), first.flags.as_str()),
        ("out", "S"),
        "{ctx}"
    );
}

fn nginx_probe(v6: bool) {
    let mut lab = Lab::new(if v6 { "nginx6" } else { "nginx4" });
    lab.start_nginx(80);
    let run = lab.run_client(probe_args(&lab.target(v6, 80), &["--timeout", "5s"]));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(0), "{ctx}");
    let rec = run.record();
    assert_open_http(&lab, &rec, v6, 80, &ctx);
    let legs = rec
        .legs_ns
        .as_ref()
        .unwrap_or_else(|| panic!("no legs_ns: {ctx}"));
    for (name, value) in legs.all() {
        assert!(value.is_some(), "leg {name} is null: {ctx}");
    }
    // nginx answers `Connection: close` and closes first (RFC 9112 §9.6).
    assert_eq!(rec.close_initiator.as_deref(), Some("server"), "{ctx}");
    let headers = rec
        .http
        .as_ref()
        .map(|h| h.headers.to_string())
        .unwrap_or_default();
    assert!(
        headers.contains("nginx"),
        "Server header (server_tokens on) missing: {ctx}"
    );
}

lab_test! {
fn nginx_v4_open_200_every_leg_server_closes() {
    nginx_probe(false);
}
}

lab_test! {
fn nginx_v6_open_200_every_leg_server_closes() {
    nginx_probe(true);
}
}

lab_test! {
fn python_http_server_v4_open_200() {
    let mut lab = Lab::new("python4");
    lab.start_python_http(false, 8000);
    let run = lab.run_client(probe_args(&lab.target(false, 8000), &["--timeout", "5s"]));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(0), "{ctx}");
    assert_open_http(&lab, &run.record(), false, 8000, &ctx);
}
}

lab_test! {
fn no_http_against_kernel_listener_client_closes_with_fin_legs() {
    let mut lab = Lab::new("nohttp");
    lab.start_kernel_listener(9000, ListenerMode::ReadUntilEof);
    let run = lab.run_client(probe_args(
        &lab.target(false, 9000),
        &["--no-http", "--timeout", "5s", "--time-wait", "200ms"],
    ));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(0), "{ctx}");
    let rec = run.record();
    assert_eq!((rec.state(), rec.reason()), ("open", "syn-ack"), "{ctx}");
    assert!(rec.http.is_none(), "--no-http sent a request: {ctx}");
    assert_eq!(rec.close_initiator.as_deref(), Some("client"), "{ctx}");
    let legs = rec
        .legs_ns
        .as_ref()
        .unwrap_or_else(|| panic!("no legs_ns: {ctx}"));
    // Our FIN is ACKed, the listener's FIN follows, and we ACK it (RFC 9293 §3.6, case 1).
    for (name, value) in [
        ("syn_to_synack", legs.syn_to_synack),
        ("fin_to_ack", legs.fin_to_ack),
        ("fin_to_peer_fin", legs.fin_to_peer_fin),
        ("peer_fin_to_last_ack", legs.peer_fin_to_last_ack),
        ("total", legs.total),
    ] {
        assert!(value.is_some(), "leg {name} is null: {ctx}");
    }
}
}

lab_test! {
/// A listener that accepts and never answers: no response, but the request that left is
/// recorded (`request_sent`) and the view labels the segment that carried it.
fn an_unanswered_request_is_recorded_and_labelled() {
    let mut lab = Lab::new("unanswered");
    lab.start_kernel_listener(9000, ListenerMode::ReadUntilEof);
    let target = lab.target(false, 9000);
    let run = lab.run_client(probe_args(&target, &["--timeout", "500ms"]));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(1), "{ctx}");
    let rec: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect(&ctx);
    assert!(rec["http"].is_null(), "{ctx}");
    assert!(
        rec["error"].as_str().unwrap_or("").contains("no complete HTTP response"),
        "{ctx}"
    );
    let sent = &rec["request_sent"];
    assert_eq!(sent["line"], "HEAD / HTTP/1.1", "{ctx}");
    let carrier = rec["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["dir"] == "out" && s["len"].as_u64() > Some(0))
        .expect(&ctx);
    assert_eq!(carrier["seq"], sent["seq"], "{ctx}");
    assert_eq!(carrier["t_ns"], sent["t_ns"], "{ctx}");
    let view = lab.run_client(["probe", target.as_str(), "--timeout", "500ms"]);
    let line = view
        .stdout
        .lines()
        .find(|l| l.contains(">  PA"))
        .unwrap_or_else(|| panic!("{view}"));
    assert!(line.ends_with("HEAD / HTTP/1.1"), "{view}");
}
}

lab_test! {
fn closed_port_is_closed_reset_exit_1() {
    let lab = Lab::new("closed");
    let run = lab.run_client(probe_args(&lab.target(false, 81), &["--timeout", "3s"]));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(1), "{ctx}");
    let rec = run.record();
    assert_eq!((rec.state(), rec.reason()), ("closed", "reset"), "{ctx}");
}
}

/// Applies `reject` to port 81 and probes it over v4 (and v6 when `both`).
fn fault_case(name: &str, reject: Reject, families: &[bool], state: &str, reason: &str) {
    let lab = Lab::new(name);
    lab.fault_reject(81, reject);
    for &v6 in families {
        let run = lab.run_client_bounded(
            probe_args(&lab.target(v6, 81), &["--retries", "1", "--timeout", "3s"]),
            Duration::from_secs(20),
        );
        let ctx = format!(
            "v6={v6}\n{run}\n{}\n{}",
            lab.describe(),
            lab.fault_ruleset()
        );
        assert_eq!(run.code, Some(1), "{ctx}");
        let rec = run.record();
        assert_eq!((rec.state(), rec.reason()), (state, reason), "{ctx}");
        assert!(rec.http.is_none(), "{ctx}");
    }
}

lab_test! {
fn nft_drop_is_filtered_no_response() {
    fault_case("drop", Reject::Drop, &[false], "filtered", "no-response");
}
}

lab_test! {
fn nft_reject_tcp_reset_is_closed_reset_v4_v6() {
    fault_case("rst", Reject::TcpReset, &[false, true], "closed", "reset");
}
}

lab_test! {
fn nft_reject_port_unreachable_is_filtered_port_unreach_v4_v6() {
    fault_case(
        "unreach",
        Reject::PortUnreachable,
        &[false, true],
        "filtered",
        "port-unreach",
    );
}
}

lab_test! {
fn nft_reject_admin_prohibited_is_filtered_admin_prohibited_v4_v6() {
    fault_case(
        "admin",
        Reject::AdminProhibited,
        &[false, true],
        "filtered",
        "admin-prohibited",
    );
}
}

/// Median of a non-empty list.
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Finds the captured packet for one reported segment: same direction, ports, seq, ack and
/// flags; among retransmissions of it, the one closest in time.
fn find_packet<'a>(
    packets: &'a [Packet],
    lab: &Lab,
    rec: &ProbeRecord,
    seg: &lab::report::Segment,
) -> Option<&'a Packet> {
    let v6 = rec.addr.as_deref().is_some_and(|a| a.contains(':'));
    let (client, server) = (lab.client_addr(v6), lab.server_addr(v6));
    let (src, dst) = if seg.dir == "out" {
        (client, server)
    } else {
        (server, client)
    };
    let sport = rec.src_port?;
    let port = rec.port?;
    let (sp, dp) = if seg.dir == "out" {
        (sport, port)
    } else {
        (port, sport)
    };
    packets
        .iter()
        .filter(|p| p.src == src && p.dst == dst)
        .filter(|p| {
            p.tcp().is_some_and(|t| {
                t.sport == sp
                    && t.dport == dp
                    && t.seq == seg.seq
                    && t.ack == seg.ack
                    && t.flags_str() == seg.flags
            })
        })
        .min_by_key(|p| p.ts_ns.abs_diff(seg.ts_ns))
}

lab_test! {
/// Every reported segment is a packet tcpdump saw; outgoing kernel timestamps are
/// identical to tcpdump's; incoming ones are the kernel's receive stamp, taken as the
/// packet entered the stack, so never later than tcpdump's (libpcap asks for no
/// PACKET_TIMESTAMP: its stamp is the moment the packet reached its socket), within 2 µs
/// of it at the median and 10 µs for nine in ten. The rest within 100 µs but for one: on a
/// busy 2-CPU VM the delivery to tcpdump's socket, after ours, is now and then held up
/// (this test alone: up to 72 µs; once, in CI's full parallel suite, 0.9 ms for one
/// segment of 50). The legs agree.
fn segments_and_timestamps_agree_with_tcpdump() {
    let mut lab = Lab::new("tcpdump_agree");
    lab.start_nginx(80);
    let cap = lab.start_capture("agree");
    let mut records = Vec::new();
    for i in 0..10 {
        let v6 = i % 2 == 1;
        let run = lab.run_client(probe_args(&lab.target(v6, 80), &["--timeout", "5s"]));
        assert_eq!(run.code, Some(0), "{run}");
        records.push(run.record());
    }
    let packets = lab.stop_capture(&cap);
    let (mut out_diffs, mut in_diffs) = (Vec::new(), Vec::new());
    // Incoming: how much later our stamp is than tcpdump's (must be ~0).
    let mut in_later = Vec::new();
    for rec in &records {
        let ctx = format!("{rec:#?}");
        let first_ts = rec.segments.first().map(|s| s.ts_ns).unwrap_or(0);
        for seg in &rec.segments {
            let p = find_packet(&packets, &lab, rec, seg)
                .unwrap_or_else(|| panic!("segment not in tcpdump's capture: {seg:?}\n{ctx}"));
            let diff = p.ts_ns.abs_diff(seg.ts_ns);
            if seg.dir == "out" {
                out_diffs.push(diff);
            } else {
                in_diffs.push(diff);
                in_later.push(seg.ts_ns.saturating_sub(p.ts_ns));
            }
            assert_eq!(
                seg.t_ns,
                seg.ts_ns - first_ts,
                "t_ns is ns since the first SYN: {seg:?}"
            );
            let t = p.tcp().expect("tcp");
            assert_eq!((seg.win, seg.len), (t.win, t.len), "{seg:?} vs {p:?}");
        }
        // reply_ttl is the SYN-ACK's TTL / hop limit as tcpdump saw it.
        if let Some(synack) = rec
            .segments
            .iter()
            .find(|s| s.dir == "in" && s.flags == "S.")
        {
            let p = find_packet(&packets, &lab, rec, synack).expect("SYN-ACK captured");
            assert_eq!(rec.reply_ttl, Some(p.ttl), "{ctx}");
        }
    }
    assert!(!out_diffs.is_empty() && !in_diffs.is_empty());
    let out_max = out_diffs.iter().copied().max().unwrap_or(0);
    let in_max = in_diffs.iter().copied().max().unwrap_or(0);
    let in_later_max = in_later.iter().copied().max().unwrap_or(0);
    let in_median = median(&mut in_diffs);
    // `median` sorted them.
    let in_p90 = in_diffs[(in_diffs.len() * 9).div_ceil(10) - 1];
    println!(
        "tcpdump agreement over {} probes: outgoing {} segments, max diff {out_max} ns; \
         incoming {} segments, max diff {in_max} ns, p90 {in_p90} ns, median {in_median} ns, \
         at most {in_later_max} ns later than tcpdump's",
        records.len(),
        out_diffs.len(),
        in_diffs.len()
    );
    assert_eq!(out_max, 0, "outgoing timestamps must be tcpdump's own");
    assert!(
        in_later_max <= 1_000,
        "an incoming timestamp is {in_later_max} ns later than tcpdump's: not the kernel's \
         receive stamp"
    );
    assert!(
        in_p90 <= 10_000,
        "incoming timestamps off by {in_p90} ns at the 90th percentile (> 10 µs)"
    );
    // tcpdump's stamp of an incoming packet is taken on delivery to its socket, ours on
    // arrival (never later, checked above): on a loaded machine its delivery can trail by
    // a softirq's deferral — CI, the whole suite in parallel, once saw one of 50 segments
    // 0.9 ms apart (the other 49 within 2 µs). That is tcpdump's lateness, not ours: one
    // such outlier is allowed, within 5 ms; more would be a pattern.
    let far = in_diffs.iter().filter(|&&d| d > 100_000).count();
    assert!(
        far <= 1 && in_max <= 5_000_000,
        "incoming timestamps off by more than 100 µs: {far} of {} (max {in_max} ns)",
        in_diffs.len()
    );
    assert!(
        in_median <= 2_000,
        "incoming median off by {in_median} ns (> 2 µs)"
    );
}
}

lab_test! {
/// tshark's expert analysis finds nothing wrong with the client's segments, neither in
/// tcpdump's capture nor in tcpshake's own `--pcap` file (nanosecond, raw IP).
fn tshark_expert_finds_no_warnings() {
    let mut lab = Lab::new("tshark");
    lab.start_nginx(80);
    let cap = lab.start_capture("tshark");
    for v6 in [false, true] {
        let pcap = lab.dir().join(format!("own-{v6}.pcap"));
        let pcap_s = pcap.to_string_lossy().into_owned();
        let run = lab.run_client(probe_args(
            &lab.target(v6, 80),
            &["--timeout", "5s", "--pcap", &pcap_s],
        ));
        assert_eq!(run.code, Some(0), "{run}");
        let rec = run.record();
        assert_eq!(
            capture::pcap_is_nanosecond(&pcap),
            Ok(true),
            "--pcap must be a nanosecond pcap"
        );
        assert_eq!(
            capture::pcap_linktype(&pcap),
            Ok(101),
            "--pcap link type must be LINKTYPE_RAW"
        );
        let own = capture::read_pcap(&pcap).expect("read --pcap");
        let own_tcp: Vec<&Packet> = own.iter().filter(|p| p.tcp().is_some()).collect();
        assert_eq!(
            own_tcp.len(),
            rec.segments.len(),
            "--pcap holds every segment: {rec:#?}"
        );
        let (report, problems) = capture::tshark_expert(&pcap, "");
        assert_eq!(problems, 0, "tshark on --pcap (v6={v6}):\n{report}");
    }
    lab.stop_capture(&cap);
    let filter = format!(
        "ip.src == {} || ipv6.src == {}",
        lab.client_v4, lab.client_v6
    );
    let (report, problems) = capture::tshark_expert(&cap.path, &filter);
    assert_eq!(problems, 0, "tshark on tcpdump's capture:\n{report}");
}
}

lab_test! {
/// The kernel never answers tcpshake's peers with a RST of its own: every RST from the
/// client host in the capture is one tcpshake reports having sent.
fn no_kernel_rst_from_client_host() {
    let mut lab = Lab::new("norst");
    lab.start_nginx(80);
    lab.start_kernel_listener(9000, ListenerMode::CloseAfterAccept);
    let cap = lab.start_capture("norst");
    let mut records = Vec::new();
    for (v6, port, extra) in [
        (false, 80, vec![]),
        (true, 80, vec![]),
        (false, 81, vec![]),
        (false, 9000, vec!["--no-http", "--time-wait", "200ms"]),
    ] {
        let mut args = vec!["--timeout", "3s"];
        args.extend(extra);
        let run = lab.run_client(probe_args(&lab.target(v6, port), &args));
        let rec = run.record();
        let want = if port == 81 { "closed" } else { "open" };
        assert_eq!(rec.state(), want, "port {port} v6={v6}\n{run}");
        records.push(rec);
    }
    let packets = lab.stop_capture(&cap);
    // The kernel had SYN-ACKs to answer: without tcpshake's guard it would have reset them.
    let synacks_to_client = packets
        .iter()
        .filter(|p| p.tcp().is_some_and(|t| t.flags_str() == "S."))
        .count();
    assert!(
        synacks_to_client >= 3,
        "expected SYN-ACKs in the capture: {packets:?}"
    );
    let reported: Vec<(u16, u32)> = records
        .iter()
        .flat_map(|r| {
            r.segments
                .iter()
                .filter(|s| s.dir == "out" && s.flags.contains('R'))
                .map(move |s| (r.src_port.unwrap_or(0), s.seq))
        })
        .collect();
    for p in &packets {
        let Some(t) = p.tcp() else { continue };
        let from_client = p.src == lab.client_addr(false) || p.src == lab.client_addr(true);
        if from_client && t.flags & capture::RST != 0 {
            assert!(
                reported.contains(&(t.sport, t.seq)),
                "RST from the client host that tcpshake did not send: {p:?}\nreported: {reported:?}"
            );
        }
    }
}
}

lab_test! {
/// The nftables guard table has the owner flag: SIGKILL removes it with the process.
fn sigkill_leaves_no_guard_table() {
    let mut lab = Lab::new("sigkill");
    lab.fault_reject(81, Reject::Drop);
    let mut cmd = lab.client_cmd(probe_args(
        &lab.target(false, 81),
        &["--timeout", "20s", "--retries", "3"],
    ));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = lab.spawn_owned("tcpshake", &mut cmd);
    let installed = lab::poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        !lab.client_nft_tables().is_empty()
    });
    assert!(
        installed,
        "no tcpshake table appeared while probing a dropped port"
    );
    lab::signal(pid, "KILL");
    let gone = lab::poll_until(Duration::from_secs(1), Duration::from_millis(20), || {
        lab.client_nft_tables().is_empty()
    });
    assert!(
        gone,
        "tables left 1 s after SIGKILL: {:?}",
        lab.client_nft_tables()
    );
    lab.stop_owned(pid);
}
}

lab_test! {
/// tcpshake finishes the close properly: the server has no socket stuck in CLOSE-WAIT or
/// LAST-ACK (which a lost or missing final ACK would leave, RFC 9293 §3.6).
fn server_has_no_close_wait_or_last_ack_after_probe() {
    let mut lab = Lab::new("closewait");
    lab.start_nginx(80);
    let run = lab.run_client(probe_args(&lab.target(false, 80), &["--timeout", "5s"]));
    assert_eq!(run.code, Some(0), "{run}");
    let rec = run.record();
    assert_eq!(
        (rec.state(), rec.http_status()),
        ("open", Some(200)),
        "{run}"
    );
    let mut stuck = Vec::new();
    let clean = lab::poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        stuck = lab
            .server_sockets()
            .into_iter()
            .filter(|(state, local, _)| {
                (state == "CLOSE-WAIT" || state == "LAST-ACK") && local.ends_with(":80")
            })
            .collect();
        stuck.is_empty()
    });
    assert!(clean, "server sockets stuck: {stuck:?}");
}
}

lab_test! {
/// 20 % random loss each way: retransmission (RFC 6298) still gets every probe through.
fn twenty_percent_loss_still_completes() {
    let mut lab = Lab::new("loss");
    lab.start_nginx(80);
    lab.fault_loss(20, Direction::Both);
    let mut retransmissions = 0;
    let mut probes = 0;
    // Five probes, and more (ten at most) until one of them had to retransmit: a probe
    // goes through without any a quarter of the time (its SYN, request and FIN each
    // answered at the first try: 0.64^3), five in a row one run in a thousand.
    for i in 0..10 {
        if i >= 5 && retransmissions > 0 {
            break;
        }
        probes += 1;
        // 20% each way loses 36% of round trips. A 5 s --timeout of server silence covers
        // five transmissions of our FIN (RTO 200 ms doubling): all five unanswered is
        // 0.36^5 ≈ 0.6% per probe, 3% per run of five, and it happened (a close reset in
        // LAST-ACK). 15 s covers seven: 0.08% per probe.
        let run = lab.run_client_bounded(
            probe_args(
                &lab.target(i % 2 == 1, 80),
                &["--retries", "6", "--timeout", "15s"],
            ),
            Duration::from_secs(45),
        );
        let rec = run.record();
        let segs: Vec<String> = rec
            .segments
            .iter()
            .map(|g| format!("{} {} {} len {}", g.t_ns / 1000, g.dir, g.flags, g.len))
            .collect();
        let ctx = format!(
            "probe {i}: error {:?}\nsegments (µs): {segs:?}\n{run}",
            rec.error
        );
        assert_eq!(run.code, Some(0), "{ctx}");
        assert_eq!(
            (rec.state(), rec.http_status()),
            ("open", Some(200)),
            "{ctx}"
        );
        retransmissions += rec.retransmissions();
    }
    println!("20% loss: {retransmissions} retransmissions over {probes} probes");
    assert!(
        retransmissions > 0,
        "{probes} probes through 20% loss and not one retransmission"
    );
}
}

lab_test! {
fn lab_subcommand_exits_0_with_open_result() {
    // The lab's own namespaces die with it; the capture file is ours to remove.
    let png = std::env::temp_dir().join(format!("tsk-{}-labcmd.pcapng", std::process::id()));
    let run = lab::run_bounded(
        std::process::Command::new(lab::tcpshake_bin())
            .args(["lab", "--json", "--pcapng"])
            .arg(&png),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let records = run.records();
    assert!(
        records.iter().any(|r| r.state() == "open"),
        "no open result:\n{run}"
    );
    // --pcapng: both probes' segments, in time order, each with tcpshake's comment.
    let segments: usize = records.iter().map(|r| r.segments.len()).sum();
    let info = capture::capinfos(&png);
    let comments = capture::tshark_fields(&png, "", &["frame.comment"]);
    // Every segment's checksum whole, the server kernel's too: the lab's veths send with
    // no checksum offload (a partial checksum was every server segment's, on capture).
    let checked = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&png)
        .args(["-n", "-o", "tcp.check_checksum:TRUE", "-T", "fields"])
        .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.checksum.status"])
        .output()
        .expect("tshark");
    let checked = String::from_utf8_lossy(&checked.stdout).into_owned();
    let _ = std::fs::remove_file(&png);
    assert!(
        checked.lines().count() == segments
            && checked.lines().all(|l| l.trim_end().ends_with("\t1")),
        "checksum status per segment (1: good):\n{checked}"
    );
    assert_eq!(
        capture::capinfo(&info, "Strict time order"),
        "True",
        "{info}"
    );
    assert_eq!(comments.len(), segments, "{comments:?}");
    assert!(
        comments.iter().all(|c| c[0].starts_with("tcpshake: ")),
        "{comments:?}"
    );
    let handshakes = comments
        .iter()
        .filter(|c| c[0].contains("SYN-SENT → ESTABLISHED; syn_to_synack "))
        .count();
    assert_eq!(handshakes, 2, "{comments:?}");
}
}

/// Usage errors exit 2 with a message. None of these has a valid target, so a broken
/// parser still could not send anything from the host's namespace.
#[test]
fn bad_usage_exits_2_with_message() {
    for args in [
        vec![],
        vec!["probe"],
        vec!["probe", "--no-such-flag"],
        vec!["probe", "198.18.0.2:99999"],
        vec!["probe", "--timeout", "soon", "198.18.0.2:http-port"],
    ] {
        let run = lab::run_bounded(
            std::process::Command::new(lab::tcpshake_bin()).args(&args),
            Duration::from_secs(10),
        );
        assert_eq!(run.code, Some(2), "args {args:?}\n{run}");
        assert!(!run.stderr.trim().is_empty(), "no message for {args:?}");
    }
    // A negative value is the option's mistake, not an unknown flag `-1` (clap's reading
    // without allow_hyphen_values); nmap's octet ranges are scan's, never a name to look up.
    for (args, says) in [
        (
            vec!["probe", "198.18.0.2:80", "--timeout", "-1s"],
            "`-1s` is not a duration",
        ),
        (
            vec!["probe", "198.18.0.2:80", "-c", "-1"],
            "`-1` is not a whole number",
        ),
        (
            vec!["scan", "198.18.0.2", "-p", "80", "--wait", "-1s"],
            "`-1s` is not a duration",
        ),
        (
            vec!["trace", "198.18.0.2:80", "-w", "-1s"],
            "`-1s` is not a duration",
        ),
        (
            vec!["probe", "198.18.0.1-2", "-p", "80"],
            "are for `tcpshake scan`",
        ),
        (
            vec!["trace", "https://198.18.0.2/x"],
            "the path `/x` would go unused",
        ),
        (
            vec!["probe", "198.18.0.2:80", "198.18.0.3:80", "-i", "1s"],
            "give -c 2 or more, or drop -i",
        ),
    ] {
        let run = lab::run_bounded(
            std::process::Command::new(lab::tcpshake_bin()).args(&args),
            Duration::from_secs(10),
        );
        assert_eq!(run.code, Some(2), "args {args:?}\n{run}");
        assert!(run.stderr.contains(says), "args {args:?}\n{run}");
    }
}

lab_test! {
/// A `.invalid` name never resolves (RFC 6761 §6.4); run in the client namespace, where
/// no resolver is reachable, so the lookup cannot leave the lab either.
fn unresolvable_name_is_reported_by_name() {
    let lab = Lab::new("resolve");
    let run = lab.run_client_bounded(
        probe_args("nosuchhost.invalid:80", &["--timeout", "2s"]),
        Duration::from_secs(20),
    );
    assert!(matches!(run.code, Some(1 | 2)), "{run}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nosuchhost.invalid"),
        "the message must name the host:\n{run}"
    );
    // From a list, every command names the file and line, once, with no table of zeros
    // after it.
    let list = lab.dir().join("names.txt");
    std::fs::write(&list, "# fleet\nnosuchhost.invalid\n").unwrap();
    let list = list.to_str().unwrap();
    for args in [
        vec!["probe", "-iL", list, "-p", "80", "--timeout", "1s"],
        vec!["scan", "-iL", list, "-p", "80"],
    ] {
        let run = lab.run_client_bounded(args.clone(), Duration::from_secs(30));
        assert_eq!(run.code, Some(1), "{args:?}\n{run}");
        let said = format!("{list}, line 2: cannot resolve `nosuchhost.invalid`");
        assert!(run.stderr.contains(&said), "{args:?}\n{run}");
        assert_eq!(run.stderr.lines().count(), 1, "one message: {args:?}\n{run}");
        assert!(run.stdout.trim().is_empty(), "{args:?}\n{run}");
    }
}
}

lab_test! {
/// Targets on one command line are independent: one with no route gets its message on
/// stderr and exit 1, and the targets after it are still probed (as in a survey).
fn a_target_with_no_route_does_not_stop_the_others() {
    let mut lab = Lab::new("noroute");
    lab.start_python_http(false, 80);
    // Inside the lab's ranges, on no link of the client namespace, and it has no default
    // route: the route lookup fails before any packet.
    let unrouted = lab.elsewhere_v4(0);
    let good = lab.target(false, 80);
    let run = lab.run_client_bounded(
        ["probe", &format!("{unrouted}:80"), &good, "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains(&format!("no route to {unrouted}")),
        "the message names the target\n{run}"
    );
    let records = run.records();
    assert_eq!(records.len(), 1, "the good target is still probed\n{run}");
    assert_eq!(records[0].state(), "open", "{run}");
    // A blackhole route: the kernel's "Invalid argument" said as what it is.
    let holed = lab.elsewhere_v4(1);
    lab::run_ok(lab::in_ns(&lab.client_ns, "ip").args(["route", "add", "blackhole", &format!("{holed}/32")]));
    let run = lab.run_client_bounded(["probe", &format!("{holed}:80")], Duration::from_secs(20));
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains(&format!("the route to {holed} is a blackhole")) && !run.stderr.contains("os error"),
        "{run}"
    );
}
}

lab_test! {
/// An on-link address nothing answers ARP / ND for: the kernel holds our SYNs behind the
/// resolution and drops them, so none reaches the wire. The record says filtered (as nmap
/// -Pn would) and why: no "no-response" left unexplained, no SYN that never left.
fn an_on_link_address_without_a_neighbour_is_named_as_such() {
    let lab = Lab::new("noneigh");
    let (v4, v6) = (lab.server_v4.octets(), lab.server_v6.segments());
    let dead4 = format!("{}.{}.{}.{}:80", v4[0], v4[1], v4[2], v4[3].wrapping_add(50));
    let dead6 = format!(
        "[{}]:80",
        std::net::Ipv6Addr::new(v6[0], v6[1], v6[2], v6[3], v6[4], v6[5], v6[6], v6[7] + 50)
    );
    let list = lab.dir().join("dead.txt");
    std::fs::write(&list, format!("{dead4}\n{dead6}\n")).unwrap();
    let list = list.to_string_lossy().into_owned();
    let common = ["--no-http", "--retries", "1", "--rto", "300ms"];
    // A survey of both, then each alone (the survey's driver and the single probe's).
    let survey = lab.run_client_bounded(
        ["probe", "-iL", &list, "-o", "jsonl"].iter().chain(&common),
        Duration::from_secs(20),
    );
    assert_eq!(survey.code, Some(1), "{survey}");
    let in_survey = survey.records();
    assert_eq!(in_survey.len(), 2, "{survey}");
    for (target, by) in [(dead4, "ARP"), (dead6, "Neighbor Discovery")] {
        let run = lab.run_client_bounded(
            ["probe", &target, "--json"].iter().chain(&common),
            Duration::from_secs(20),
        );
        assert_eq!(run.code, Some(1), "{run}");
        let mut records = run.records();
        assert_eq!(records.len(), 1, "{run}");
        let addr = records[0].addr.clone();
        records.extend(in_survey.iter().filter(|r| r.addr == addr).cloned());
        assert_eq!(records.len(), 2, "{run}\n{survey}");
        for r in &records {
            assert_eq!(r.state(), "filtered", "{run}");
            assert!(r.segments.is_empty(), "nothing left: {run}");
            let e = r.error.as_deref().unwrap_or_default();
            assert!(
                e.contains("none of our SYNs left this host")
                    && (e.contains(&format!("did not answer {by}"))
                        || e.contains(&format!("had not answered {by}"))),
                "{target}: {run}\n{survey}"
            );
        }
    }
}
}

lab_test! {
/// The targets of one command share one tap, its filter moved from probe to probe (run.rs,
/// `Tap::retarget`): across families and verdicts each record and each packet of `--pcap`
/// is its own probe's, none of an earlier one's.
fn consecutive_probes_keep_their_packets_apart() {
    let mut lab = Lab::new("consec");
    lab.start_nginx(80);
    let pcap = lab.dir().join("consec.pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    let targets = [
        (false, 80),
        (false, 81),
        (true, 80),
        (false, 80),
        (true, 81),
    ];
    let mut args = vec!["probe".to_string()];
    args.extend(targets.iter().map(|&(v6, port)| lab.target(v6, port)));
    args.extend(["--json", "--timeout", "5s", "--pcap", &pcap_s].map(String::from));
    let run = lab.run_client_bounded(args, Duration::from_secs(60));
    // Port 81 is closed: exit 1, every target still probed.
    assert_eq!(run.code, Some(1), "{run}");
    let records = run.records();
    assert_eq!(records.len(), targets.len(), "{run}");
    let own = capture::read_pcap(&pcap).expect("read --pcap");
    let mut seen = 0;
    for (rec, &(v6, port)) in records.iter().zip(&targets) {
        let ctx = format!("{rec:#?}\n{run}");
        match port {
            80 => assert_open_http(&lab, rec, v6, port, &ctx),
            _ => assert_eq!((rec.state(), rec.reason()), ("closed", "reset"), "{ctx}"),
        }
        let src = rec.src_port.unwrap_or_else(|| panic!("no src_port: {ctx}"));
        // Its packets in the file: those of its 4-tuple, as many as its segments.
        let mine = own
            .iter()
            .filter_map(Packet::tcp)
            .filter(|t| (t.sport, t.dport) == (src, port) || (t.sport, t.dport) == (port, src))
            .count();
        assert_eq!(mine, rec.segments.len(), "{ctx}");
        seen += mine;
    }
    assert_eq!(
        seen,
        own.iter().filter(|p| p.tcp().is_some()).count(),
        "--pcap holds packets of no probe's 4-tuple"
    );
}
}

lab_test! {
/// A route whose path MTU is below the IPv4 floor our SYN's MSS assumes (Linux's min_pmtu,
/// 552: what a frag-needed reporting less leaves in the route cache for ten minutes, or
/// `ip route … mtu lock 552`): the kernel refuses our larger segments (EMSGSIZE). As
/// Linux's own TCP, the probe takes the route's MTU and cuts again; it ended with
/// "Message too long", no record, and the server holding an established connection.
fn a_path_mtu_the_kernel_holds_below_ours_is_taken_not_fatal() {
    let mut lab = Lab::new("mtu_lock");
    lab.start_nginx(80);
    lab::run_ok(std::process::Command::new("ip").args([
        "-n",
        &lab.client_ns,
        "route",
        "replace",
        &format!("{}/32", lab.server_v4),
        "dev",
        lab::CLIENT_IF,
        "mtu",
        "lock",
        "552",
    ]));
    let path = format!("/{}", "a".repeat(1400));
    let run = lab.run_client(probe_args(
        &lab.target(false, 80),
        &["--path", &path, "--timeout", "3s"],
    ));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(run.code, Some(0), "{ctx}");
    let rec: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect(&ctx);
    assert_eq!(rec["path_mtu"], 552, "{ctx}");
    assert!(rec["http"]["status"].as_u64().is_some(), "{ctx}");
    assert!(
        rec["timers"].as_array().unwrap().iter().any(|t| t["what"]
            .as_str()
            .unwrap_or("")
            .starts_with("this host would not send a")),
        "{ctx}"
    );
    // Every segment that left fits the path.
    for s in rec["segments"].as_array().unwrap() {
        if s["dir"] == "out" {
            assert!(s["len"].as_u64().unwrap() + 52 <= 552, "{s}\n{ctx}");
        }
    }
}
}

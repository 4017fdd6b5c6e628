//! Integration tests: tcpshake against real peers in throwaway network namespaces.
//!
//! One test binary (after ripgrep's tests/): `lab` is the harness, `harness` checks the
//! harness itself without tcpshake, and the rest drive the binary by its documented
//! contract (JSON Lines schema 1, exit codes 0/1/2/3). Every test that needs root starts
//! with `if !require_root() { return; }`.

mod lab;

use lab::capture::{self, L4, Packet, flags_str};
use lab::faults::{Direction, Reject};
use lab::peers::ListenerMode;
use lab::report::ProbeRecord;
use lab::{Lab, require_root};
use std::net::IpAddr;
use std::time::Duration;

/// Harness self-tests: they need root but not tcpshake.
mod harness {
    use super::*;

    #[test]
    fn nginx_answers_curl_on_v4_and_v6() {
        if !require_root() {
            return;
        }
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

    #[test]
    fn python_http_and_kernel_listener_accept() {
        if !require_root() {
            return;
        }
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

    /// Each fault, applied to its own port, shows up in the client's capture as exactly the
    /// reply the tests expect tcpshake to classify.
    #[test]
    fn faults_produce_expected_replies() {
        if !require_root() {
            return;
        }
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

    #[test]
    fn loss_fault_drops_and_clears() {
        if !require_root() {
            return;
        }
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

    /// The pcap reader agrees with tcpdump's own decoding (flags, sequence numbers) and
    /// with tshark's nanosecond epoch timestamps, packet for packet.
    #[test]
    fn pcap_reader_agrees_with_tcpdump_and_tshark() {
        if !require_root() {
            return;
        }
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

    /// Drop removes namespaces, processes and the temp dir, also when the test panics.
    #[test]
    fn drop_cleans_up_even_on_panic() {
        if !require_root() {
            return;
        }
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

    /// `Lab::new` removes `tsk-` namespaces of dead processes and leaves live ones alone.
    #[test]
    fn sweep_removes_only_dead_owners_namespaces() {
        if !require_root() {
            return;
        }
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

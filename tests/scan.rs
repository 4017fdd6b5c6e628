//! Integration tests for `tcpshake scan`: a server namespace that answers on a whole /24
//! (and a few IPv6 addresses) through AnyIP routes, open/closed/dropped/ICMP-rejected
//! ports, and every verdict compared against the ground truth the test set up.

#[path = "lab/mod.rs"]
mod lab;

use lab::faults::{Direction, Reject};
use lab::{Lab, Run, in_ns, require_root, run_ok};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// A lab whose server answers on every address of `v4_prefix()/24` and of
/// `v6_prefix()/120`, routed to it from the client.
struct ScanLab {
    lab: Lab,
    v4_net: Ipv4Addr,
    v6_net: Ipv6Addr,
}

impl ScanLab {
    /// `open` ports listen on every address (v4 and v6) of the AnyIP prefixes.
    fn new(name: &str, open: &[u16]) -> ScanLab {
        let mut lab = Lab::new(name);
        let [_, b, c, _] = lab.client_v4.octets();
        // The other half of 198.18.0.0/15 with the lab's third octet: private to this lab's
        // namespaces.
        let v4_net = Ipv4Addr::new(198, b ^ 1, c, 0);
        let seg = lab.client_v6.segments();
        let v6_net = Ipv6Addr::new(0xfd00, seg[1], 1, 0, 0, 0, 0, 0);
        // AnyIP (Linux local routes): the server's kernel owns every address in the prefix.
        run_ok(
            Command::new("ip")
                .args(["-n", &lab.server_ns, "route", "add", "local"])
                .args([&format!("{v4_net}/24"), "dev", "lo"]),
        );
        run_ok(
            Command::new("ip")
                .args(["-n", &lab.server_ns, "-6", "route", "add", "local"])
                .args([&format!("{v6_net}/120"), "dev", "lo"]),
        );
        run_ok(
            Command::new("ip")
                .args(["-n", &lab.client_ns, "route", "add"])
                .args([&format!("{v4_net}/24"), "via", &lab.server_v4.to_string()]),
        );
        run_ok(
            Command::new("ip")
                .args(["-n", &lab.client_ns, "-6", "route", "add"])
                .args([&format!("{v6_net}/120"), "via", &lab.server_v6.to_string()]),
        );
        if !open.is_empty() {
            let list = open
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let script = format!(
                "import socket,time\n\
                 ls=[]\n\
                 for p in ({list},):\n\
                 \x20for fam,a in ((socket.AF_INET,'0.0.0.0'),(socket.AF_INET6,'::')):\n\
                 \x20 s=socket.socket(fam,socket.SOCK_STREAM)\n\
                 \x20 s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 \x20 if fam==socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n\
                 \x20 s.bind((a,p)); s.listen(4096); ls.append(s)\n\
                 time.sleep(600)\n"
            );
            let mut cmd = in_ns(&lab.server_ns, "python3");
            cmd.args(["-c", &script]);
            lab.spawn_owned("anyip listener", &mut cmd);
            for &p in open {
                for any in [
                    IpAddr::from(Ipv4Addr::UNSPECIFIED),
                    Ipv6Addr::UNSPECIFIED.into(),
                ] {
                    assert!(
                        lab.wait_listening(SocketAddr::new(any, p), Duration::from_secs(5)),
                        "listener on {p}"
                    );
                }
            }
        }
        ScanLab {
            lab,
            v4_net,
            v6_net,
        }
    }

    fn v4(&self, host: u8) -> IpAddr {
        let [a, b, c, _] = self.v4_net.octets();
        Ipv4Addr::new(a, b, c, host).into()
    }

    fn v6(&self, host: u16) -> IpAddr {
        let mut s = self.v6_net.segments();
        s[7] = host;
        Ipv6Addr::from(s).into()
    }

    fn scan(&self, args: &[&str]) -> Run {
        self.lab.run_client_bounded(
            std::iter::once("scan").chain(args.iter().copied()),
            Duration::from_secs(30),
        )
    }
}

/// What differs between two verdict maps, for failure messages.
fn diff<V: PartialEq + std::fmt::Debug>(
    got: &BTreeMap<(IpAddr, u16), V>,
    want: &BTreeMap<(IpAddr, u16), V>,
) -> String {
    let mut s = String::new();
    for (k, v) in want {
        match got.get(k) {
            None => s += &format!("missing {k:?} (want {v:?})\n"),
            Some(g) if g != v => s += &format!("{k:?}: got {g:?}, want {v:?}\n"),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            s += &format!("unexpected {k:?}: {v:?}\n");
        }
    }
    s
}

/// (addr, port) → (state, reason) from --json output, failing on duplicates.
fn verdicts(run: &Run) -> BTreeMap<(IpAddr, u16), (String, String)> {
    let mut m = BTreeMap::new();
    for line in run.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{run}"));
        let addr: IpAddr = v["addr"].as_str().unwrap().parse().unwrap();
        let port = v["port"].as_u64().unwrap() as u16;
        let state = v["state"].as_str().unwrap().to_string();
        let reason = v["reason"].as_str().unwrap().to_string();
        assert!(v["reply_ttl"].as_u64().is_some(), "{line}");
        assert!(v["t_ns"].as_u64().is_some(), "{line}");
        // Every answered port is timed by the kernel, and within the lab it is quick.
        let rtt = v["rtt_ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rtt: {line}"));
        assert!(rtt > 0 && rtt < 1_000_000_000, "{line}");
        assert!(
            m.insert((addr, port), (state, reason)).is_none(),
            "duplicate: {line}"
        );
    }
    m
}

#[test]
fn states_and_reasons_match_the_ground_truth_on_v4_and_v6() {
    if !require_root() {
        return;
    }
    let open = [22, 80, 443];
    let s = ScanLab::new("scan_states", &open);
    s.lab.fault_reject(81, Reject::Drop);
    s.lab.fault_reject(82, Reject::PortUnreachable);
    s.lab.fault_reject(83, Reject::AdminProhibited);
    s.lab.fault_reject(84, Reject::TcpReset);
    // v4: a range of 8 addresses, one excluded; v6: a list from a file.
    let list = s.lab.dir().join("v6.txt");
    std::fs::write(
        &list,
        format!("{}\n# comment\n{} {}\n", s.v6(1), s.v6(2), s.v6(0x20)),
    )
    .unwrap();
    let xml = s.lab.dir().join("out.xml");
    let grep = s.lab.dir().join("out.gnmap");
    let range = format!("{}-8", s.v4(1));
    let run = s.scan(&[
        &range,
        "-iL",
        list.to_str().unwrap(),
        "--exclude",
        &s.v4(5).to_string(),
        "-p",
        "22,23,80,81,84,443",
        "--rate",
        "4000",
        "--wait",
        "300ms",
        "--json",
        "-oX",
        xml.to_str().unwrap(),
        "-oG",
        grep.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let got = verdicts(&run);
    let mut want = BTreeMap::new();
    let hosts: Vec<IpAddr> = (1..=8)
        .filter(|&h| h != 5)
        .map(|h| s.v4(h))
        .chain([s.v6(1), s.v6(2), s.v6(0x20)])
        .collect();
    for &h in &hosts {
        for p in [22u16, 23, 80, 81, 84, 443] {
            let v = match p {
                22 | 80 | 443 => Some(("open", "syn-ack")),
                23 | 84 => Some(("closed", "reset")),
                81 => None,
                _ => unreachable!(),
            };
            if let Some((st, re)) = v {
                want.insert((h, p), (st.to_string(), re.to_string()));
            }
        }
    }
    assert!(got == want, "{}\n{}", diff(&got, &want), run.stderr);
    // 10 hosts × 6 ports; 81 is silent (filtered/no-response).
    assert!(
        run.stderr
            .contains("scanned 60 ports: 30 open, 20 closed, 10 filtered"),
        "{run}"
    );

    // ICMP-rejected ports, on one host per family: the server kernel rate-limits ICMP
    // errors per peer (measured here: a burst of about 6, then 1/s), so a scan of many
    // rejected ports sees only some errors and the rest become no-response, as with nmap.
    let icmp = s.scan(&[
        &s.v4(1).to_string(),
        &s.v6(1).to_string(),
        "-p",
        "82,83",
        "--wait",
        "300ms",
        "--json",
    ]);
    assert_eq!(icmp.code, Some(0), "{icmp}");
    let mut want = BTreeMap::new();
    for h in [s.v4(1), s.v6(1)] {
        want.insert(
            (h, 82),
            ("filtered".to_string(), "port-unreach".to_string()),
        );
        want.insert(
            (h, 83),
            ("filtered".to_string(), "admin-prohibited".to_string()),
        );
    }
    let got = verdicts(&icmp);
    assert!(got == want, "{}\n{}", diff(&got, &want), icmp.stderr);

    // -oX loads with python's xml.etree and uses nmap's element names.
    let check = format!(
        "import xml.etree.ElementTree as ET\n\
         r=ET.parse({:?}).getroot()\n\
         assert r.tag=='nmaprun', r.tag\n\
         assert r.find('scaninfo').get('type')=='syn'\n\
         hosts=r.findall('host')\n\
         assert len(hosts)==10, len(hosts)\n\
         n=0\n\
         for h in hosts:\n\
         \x20a=h.find('address'); assert a.get('addrtype') in ('ipv4','ipv6')\n\
         \x20assert h.find('status').get('state')=='up'\n\
         \x20for p in h.find('ports').findall('port'):\n\
         \x20 st=p.find('state')\n\
         \x20 if st.get('state')=='open':\n\
         \x20  n+=1; assert p.get('protocol')=='tcp' and st.get('reason')=='syn-ack'\n\
         \x20  assert p.find('service').get('name') in ('ssh','http','https')\n\
         assert n==30, n\n\
         assert r.find('runstats').find('finished').get('exit')=='success'\n",
        xml.to_str().unwrap()
    );
    run_ok(Command::new("python3").args(["-c", &check]));
    let g = std::fs::read_to_string(&grep).unwrap();
    let first = s.v4(1);
    assert!(g.contains(&format!("Host: {first} ()\tStatus: Up")), "{g}");
    assert!(g.contains("22/open/tcp//ssh///"), "{g}");
    assert!(g.contains("23/closed/tcp//telnet///"), "{g}");
}

#[test]
fn three_shards_equal_the_whole_scan() {
    if !require_root() {
        return;
    }
    let s = ScanLab::new("scan_shards", &[22, 8080]);
    let net = format!("{}/26", s.v4(0));
    let common = [
        "-p",
        "22,23,8080",
        "--seed",
        "7",
        "--rate",
        "20000",
        "--wait",
        "300ms",
        "--json",
        "--all",
    ];
    let whole = s.scan(&[&[net.as_str()][..], &common[..]].concat());
    assert_eq!(whole.code, Some(0), "{whole}");
    let whole = verdicts(&whole);
    assert_eq!(whole.len(), 64 * 3);
    let mut union = BTreeMap::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let run = s.scan(&[&[net.as_str(), "--shard", shard.as_str()][..], &common[..]].concat());
        assert_eq!(run.code, Some(0), "{run}");
        let part = verdicts(&run);
        assert!(
            !part.is_empty() && part.len() < whole.len(),
            "shard {k}: {}",
            part.len()
        );
        for (key, v) in part {
            assert!(union.insert(key, v).is_none(), "shards overlap at {key:?}");
        }
    }
    assert_eq!(union, whole);
    // A shard without a seed is refused: the shards would not cut the same order.
    let bad = s.scan(&[net.as_str(), "--shard", "1/3", "-p", "22"]);
    assert_eq!(bad.code, Some(2), "{bad}");
    assert!(bad.stderr.contains("--seed"), "{bad}");
}

#[test]
fn two_percent_loss_with_two_retries_finds_every_open_port() {
    if !require_root() {
        return;
    }
    let open = [22, 80];
    let s = ScanLab::new("scan_loss", &open);
    s.lab.fault_loss(2, Direction::Both);
    let net = format!("{}/26", s.v4(0));
    let run = s.scan(&[
        &net,
        "-p",
        "21-23,79-81",
        "--retries",
        "2",
        "--rate",
        "5000",
        "--wait",
        "300ms",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let found: BTreeSet<(IpAddr, u16)> = verdicts(&run)
        .into_iter()
        .filter(|(_, (st, _))| st == "open")
        .map(|(k, _)| k)
        .collect();
    let want: BTreeSet<(IpAddr, u16)> = (0..64u8)
        .flat_map(|h| open.iter().map(move |&p| (h, p)))
        .map(|(h, p)| (s.v4(h), p))
        .collect();
    let missing: Vec<_> = want.difference(&found).collect();
    assert!(missing.is_empty(), "missed {missing:?}\n{}", run.stderr);
}

#[test]
fn bad_specs_are_usage_errors_that_name_the_bad_part() {
    let bin = lab::tcpshake_bin();
    for (args, needle) in [
        (vec!["scan", "198.18.0.300", "-p", "22"], "`300`"),
        (vec!["scan", "198.18.0.1", "-p", "22,8o"], "`8o`"),
        (vec!["scan", "fd00::/64", "-p", "22"], "list the addresses"),
        (
            vec!["scan", "198.18.0.1", "--top-ports", "5000"],
            "--top-ports",
        ),
        (
            vec!["scan", "198.18.0.1", "--shard", "4/3", "--seed", "1"],
            "K is between 1 and 3",
        ),
    ] {
        let run = lab::run_bounded(Command::new(bin).args(&args), Duration::from_secs(10));
        assert_eq!(run.code, Some(2), "{args:?}\n{run}");
        assert!(
            run.stderr.contains(needle),
            "{args:?}: want {needle}\n{run}"
        );
    }
}

/// `--complete`: every open port gets a second, full connection that we close with our FIN;
/// its legs land in the port's record, and the server is left with nothing half-closed.
#[test]
fn complete_connects_to_open_ports_and_closes_them_cleanly() {
    if !require_root() {
        return;
    }
    let mut s = ScanLab::new("scan_complete", &[]);
    // A listener that accepts and closes when the peer does, like a real service: a port
    // whose application never closes would sit in CLOSE-WAIT whatever we send.
    let open = [22u16, 80];
    let script = "import socket,threading,time\n\
         def serve(c):\n\
         \x20try:\n\
         \x20 while c.recv(4096): pass\n\
         \x20except OSError: pass\n\
         \x20c.close()\n\
         def accept(s):\n\
         \x20while True:\n\
         \x20 c,_=s.accept(); threading.Thread(target=serve,args=(c,),daemon=True).start()\n\
         for p in (22,80):\n\
         \x20for fam,a in ((socket.AF_INET,'0.0.0.0'),(socket.AF_INET6,'::')):\n\
         \x20 s=socket.socket(fam,socket.SOCK_STREAM)\n\
         \x20 s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         \x20 if fam==socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n\
         \x20 s.bind((a,p)); s.listen(64)\n\
         \x20 threading.Thread(target=accept,args=(s,),daemon=True).start()\n\
         time.sleep(600)\n";
    let mut cmd = in_ns(&s.lab.server_ns, "python3");
    cmd.args(["-c", script]);
    s.lab.spawn_owned("closing listener", &mut cmd);
    for &p in &open {
        for any in [
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            Ipv6Addr::UNSPECIFIED.into(),
        ] {
            assert!(
                s.lab
                    .wait_listening(SocketAddr::new(any, p), Duration::from_secs(5)),
                "listener on {p}"
            );
        }
    }
    let range = format!("{}-3", s.v4(1));
    let run = s.scan(&[
        &range,
        &s.v6(1).to_string(),
        "-p",
        "22,23,80",
        "--wait",
        "300ms",
        "--complete",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let got = verdicts(&run);
    let hosts = [s.v4(1), s.v4(2), s.v4(3), s.v6(1)];
    assert_eq!(got.len(), hosts.len() * 3, "{run}");
    let mut completed = 0;
    for line in run.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let port = v["port"].as_u64().unwrap() as u16;
        if !open.contains(&port) {
            assert_eq!(v["state"], "closed", "{line}");
            assert!(
                v.get("legs_ns").is_none(),
                "only open ports connect: {line}"
            );
            continue;
        }
        assert_eq!(v["state"], "open", "{line}");
        assert_eq!(v["reason"], "syn-ack", "{line}");
        assert_eq!(v["close_initiator"], "client", "{line}");
        assert!(v["complete_error"].is_null(), "{line}");
        let legs = &v["legs_ns"];
        for leg in [
            "syn_to_synack",
            "synack_to_ack",
            "fin_to_ack",
            "fin_to_peer_fin",
            "peer_fin_to_last_ack",
            "total",
        ] {
            let ns = legs[leg]
                .as_u64()
                .unwrap_or_else(|| panic!("{leg} is null: {line}"));
            assert!(ns < 2_000_000_000, "{leg}: {line}");
        }
        // No HTTP was sent: the request legs did not happen.
        assert!(legs["request_to_first_byte"].is_null(), "{line}");
        completed += 1;
    }
    assert_eq!(completed, hosts.len() * open.len(), "{run}");
    // Both closes finished (LAST-ACK acknowledged), and the scan's own half-open
    // connections were reset: the server keeps only its listeners.
    let left: Vec<_> = s
        .lab
        .server_sockets()
        .into_iter()
        .filter(|(state, _, _)| state != "LISTEN")
        .collect();
    assert!(
        left.iter().all(
            |(st, _, _)| !["CLOSE-WAIT", "LAST-ACK", "SYN-RECV", "ESTAB"].contains(&st.as_str())
        ),
        "server sockets left: {left:?}\n{run}"
    );

    // The text view shows the legs under the open port.
    let text = s.scan(&[
        &s.v4(1).to_string(),
        "-p",
        "22",
        "--wait",
        "300ms",
        "--complete",
    ]);
    assert_eq!(text.code, Some(0), "{text}");
    assert!(text.stdout.contains("22/tcp"), "{text}");
    assert!(
        text.stdout.contains("connect: SYN→SYN-ACK ")
            && text.stdout.contains("close by client: FIN→ACK "),
        "{text}"
    );
    assert!(!text.stdout.contains("failed"), "{text}");
}

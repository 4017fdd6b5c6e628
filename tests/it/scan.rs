//! Integration tests for `tcpshake scan`: a server namespace that answers on a whole /24
//! (and a few IPv6 addresses) through AnyIP routes, open/closed/dropped/ICMP-rejected
//! ports, and every verdict compared against the ground truth the test set up.

use crate::lab;

use lab::faults::{Direction, Reject};
use lab::{Lab, Run, die_with_parent, in_ns, run_ok};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// nmap's DTD, from the nmap package (scripts/test installs it).
const NMAP_DTD: &str = "/usr/share/nmap/nmap.dtd";

/// `/etc/netns/<namespace>/hosts`: `ip netns exec` shows it as `/etc/hosts` to whatever
/// runs in that namespace (tcpshake and nmap alike), so the names a test types resolve
/// there and nowhere else. Removed on drop.
struct NetnsHosts(PathBuf);

impl NetnsHosts {
    fn new(ns: &str, entries: &[(IpAddr, &str)]) -> NetnsHosts {
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        let guard = NetnsHosts(dir);
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (a, name) in entries {
            text += &format!("{a} {name}\n");
        }
        std::fs::write(guard.0.join("hosts"), text).unwrap();
        guard
    }

    /// As [`NetnsHosts::new`], and a `resolv.conf` naming 127.0.0.1, where nothing in the
    /// namespace listens: a name not in the hosts file fails at once, and no query can
    /// leave the lab.
    fn without_dns(ns: &str, entries: &[(IpAddr, &str)]) -> NetnsHosts {
        let guard = NetnsHosts::new(ns, entries);
        std::fs::write(guard.0.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        guard
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
            lab.start_wildcard_listeners("anyip listener", open);
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

    /// nmap, in the client namespace like tcpshake.
    fn nmap(&self, args: &[&str]) -> Run {
        let mut cmd = in_ns(&self.lab.client_ns, "nmap");
        cmd.args(args);
        lab::run_bounded(&mut cmd, Duration::from_secs(120))
    }

    /// The server answers every SYN to a rejected port with its ICMP error: no per-peer
    /// rate limit (Linux's default lets ~6 through, then 1/s).
    fn icmp_unlimited(&self) {
        run_ok(in_ns(&self.lab.server_ns, "sysctl").args([
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ]));
    }
}

/// `xmllint --dtdvalid` against nmap's DTD; the failure message has xmllint's complaint.
fn assert_valid_nmap_xml(path: &Path) {
    let out = Command::new("xmllint")
        .args(["--noout", "--dtdvalid", NMAP_DTD])
        .arg(path)
        .output()
        .expect("cannot run xmllint");
    assert!(
        out.status.success(),
        "{} is not valid against {NMAP_DTD}:\n{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// The `Host:` lines of an -oG file (the comments carry dates and command lines).
/// `ndiff NMAP_XML OURS` finds no difference (exit 0); else the failure shows both files.
fn assert_ndiff_same(nm_xml: &std::path::Path, ts_xml: &std::path::Path, label: &str) {
    let diff = Command::new("ndiff")
        .arg(nm_xml)
        .arg(ts_xml)
        .output()
        .expect("cannot run ndiff");
    assert!(
        diff.status.code() == Some(0),
        "{label}: ndiff finds differences:\n{}{}\n--- nmap ---\n{}\n--- tcpshake ---\n{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr),
        std::fs::read_to_string(nm_xml).unwrap_or_default(),
        std::fs::read_to_string(ts_xml).unwrap_or_default()
    );
}

/// Our `-oG` file's host lines equal nmap's; returns ours.
fn assert_greppable_same(
    ts_grep: &std::path::Path,
    nm_grep: &std::path::Path,
    label: &str,
) -> String {
    let ours = std::fs::read_to_string(ts_grep).unwrap();
    let theirs = std::fs::read_to_string(nm_grep).unwrap();
    assert_eq!(
        greppable_hosts(&ours),
        greppable_hosts(&theirs),
        "{label}: -oG differs\n--- tcpshake ---\n{ours}\n--- nmap ---\n{theirs}"
    );
    ours
}

fn greppable_hosts(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("Host: ")).collect()
}

/// (addr, port) → state from -oG `Ports:` fields (`22/open/tcp//ssh///`).
fn greppable_ports(text: &str) -> BTreeMap<(IpAddr, u16), String> {
    let mut m = BTreeMap::new();
    for l in greppable_hosts(text) {
        let Some((head, ports)) = l.split_once("\tPorts: ") else {
            continue;
        };
        let addr: IpAddr = head["Host: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ports = ports.split('\t').next().unwrap();
        for f in ports.split(", ").filter(|f| !f.is_empty()) {
            let parts: Vec<&str> = f.split('/').collect();
            assert_eq!(parts.len(), 8, "nmap's 7 slashes: {f}");
            assert_eq!(parts[2], "tcp", "{f}");
            m.insert((addr, parts[0].parse().unwrap()), parts[1].to_string());
        }
    }
    m
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
        if reason == "no-response" {
            // `--all`: a port that never answered has no reply and no RTT.
            assert_eq!(v["reply_ttl"], 0, "{line}");
            assert!(v["rtt_ns"].is_null(), "{line}");
        } else {
            // Every answered port is timed by the kernel, and within the lab it is quick.
            let rtt = v["rtt_ns"]
                .as_u64()
                .unwrap_or_else(|| panic!("no rtt: {line}"));
            assert!(rtt > 0 && rtt < 1_000_000_000, "{line}");
        }
        assert!(
            m.insert((addr, port), (state, reason)).is_none(),
            "duplicate: {line}"
        );
    }
    m
}

lab_test! {
fn states_and_reasons_match_the_ground_truth_on_v4_and_v6() {
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
}

lab_test! {
/// `--all` lists every pair sent to, silent ones too; each shard lists its own pairs only
/// (in JSON and in -oG), and the shards together are the whole scan.
fn three_shards_equal_the_whole_scan() {
    let s = ScanLab::new("scan_shards", &[22, 8080]);
    s.lab.fault_reject(81, Reject::Drop);
    let net = format!("{}/26", s.v4(0));
    let common = [
        "-p",
        "22,23,81,8080",
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
    assert_eq!(whole.len(), 64 * 4);
    let silent = whole.values().filter(|(_, r)| r == "no-response").count();
    assert_eq!(silent, 64, "port 81 of every host");
    let mut union = BTreeMap::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let grep = s.lab.dir().join(format!("shard{k}.gnmap"));
        let run = s.scan(
            &[
                &[net.as_str(), "--shard", shard.as_str()][..],
                &common[..],
                &["-oG", grep.to_str().unwrap()][..],
            ]
            .concat(),
        );
        assert_eq!(run.code, Some(0), "{run}");
        let part = verdicts(&run);
        assert!(
            !part.is_empty() && part.len() < whole.len(),
            "shard {k}: {}",
            part.len()
        );
        // -oG lists the same pairs, for the hosts that answered this shard at all.
        let g = std::fs::read_to_string(&grep).unwrap();
        let listed = greppable_ports(&g);
        let up: BTreeSet<IpAddr> = part
            .iter()
            .filter(|(_, (_, r))| r != "no-response")
            .map(|((a, _), _)| *a)
            .collect();
        let want: BTreeMap<(IpAddr, u16), String> = part
            .iter()
            .filter(|((a, _), _)| up.contains(a))
            .map(|(k, (st, _))| (*k, st.clone()))
            .collect();
        assert_eq!(listed, want, "shard {k} -oG:\n{g}");
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
}

/// (addr, port) → state from -oX `<port>` elements (no host here has enough ports of a
/// kind to be folded into `<extraports>`).
fn xml_ports(path: &Path) -> BTreeMap<(IpAddr, u16), String> {
    xml_reasons(path)
        .into_iter()
        .map(|(k, v)| (k, v.split('/').next().unwrap_or("").to_string()))
        .collect()
}

/// (addr, port) → `state/reason` from -oX `<port>` elements (none folded, none twice).
fn xml_reasons(path: &Path) -> BTreeMap<(IpAddr, u16), String> {
    let script = format!(
        "import xml.etree.ElementTree as ET\n\
         for h in ET.parse({:?}).getroot().findall('host'):\n\
         \x20a=h.find('address').get('addr')\n\
         \x20assert h.find('ports').find('extraports') is None\n\
         \x20for p in h.find('ports').findall('port'):\n\
         \x20 s=p.find('state')\n\
         \x20 print(a, p.get('portid'), s.get('state') + '/' + s.get('reason'))\n",
        path.to_str().unwrap()
    );
    let out = run_ok(Command::new("python3").args(["-c", &script]));
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        assert!(
            m.insert(key, f[2].to_string()).is_none(),
            "listed twice: {l}"
        );
    }
    m
}

lab_test! {
/// Walk 14: ICMPv6 destination unreachable code 0 read `net-unreach` and code 6
/// `admin-prohibited`, where nmap says `no-route` and `reject-route`. On the same wire,
/// nmap -sS --reason and our -oX give every port the same state and reason word: IPv6's
/// codes 0, 1, 4, 5 and 6, and IPv4's net-unreach beside them.
fn icmp_unreachable_codes_have_nmaps_reason_words_v4_and_v6() {
    let s = ScanLab::new("scan_icmp6_words", &[]);
    s.icmp_unlimited();
    s.lab.fault_reject(82, Reject::AdminProhibited);
    s.lab.fault_reject(83, Reject::PortUnreachable);
    s.lab.fault_reject(86, Reject::NoRoute);
    s.lab.fault_reject(87, Reject::RouteRejected);
    s.lab.fault_reject(88, Reject::PolicyFail);
    let ports = "82,83,86-88";
    // The server's own addresses, not the AnyIP ones: Linux sends an ICMPv6 error from
    // the address the packet was for only when that address is configured (icmp6_send),
    // else from another of its own — a stranger's error, which says nothing of the host.
    let (v4, v6) = (s.lab.server_v4, s.lab.server_v6);
    for (family, addr) in [(None, IpAddr::V4(v4)), (Some("-6"), IpAddr::V6(v6))] {
        let a = addr.to_string();
        let dir = s.lab.dir();
        let (ours, theirs) = (dir.join(format!("ts-{a}.xml")), dir.join(format!("nm-{a}.xml")));
        let run = s.scan(&[&a, "-p", ports, "-oX", ours.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{run}");
        assert_valid_nmap_xml(&ours);
        let mut nmap = vec!["-sS", "-Pn", "-n", "--reason", "--max-retries", "1", "-p", ports];
        nmap.extend(family);
        nmap.extend(["-oX", theirs.to_str().unwrap(), a.as_str()]);
        let nm = s.nmap(&nmap);
        assert_eq!(nm.code, Some(0), "{nm}");
        let (got, want) = (xml_reasons(&ours), xml_reasons(&theirs));
        assert!(got == want, "{a}: {}", diff(&got, &want));
        let reason = |p: u16| got.get(&(addr, p)).map(String::as_str);
        if addr.is_ipv6() {
            assert_eq!(reason(86), Some("filtered/no-route"), "{got:?}");
            assert_eq!(reason(87), Some("filtered/reject-route"), "{got:?}");
            assert_eq!(reason(88), Some("filtered/admin-prohibited"), "{got:?}");
        } else {
            assert_eq!(reason(86), Some("filtered/net-unreach"), "{got:?}");
            assert_eq!(reason(87), Some("closed/reset"), "{got:?}");
        }
    }
}
}

lab_test! {
/// Walk 14: an exclusion name that did not resolve was warned about, and the scan went on
/// without it (exit 1) — sending to what it was meant to keep out; from --excludefile it
/// said `--exclude:` with no file or line. Now a refusal (exit 2), one message naming the
/// option, the file and line, before anything is sent. The namespace's resolver is
/// 127.0.0.1, where nothing listens: no query leaves the lab.
fn an_exclusion_name_that_does_not_resolve_refuses_the_scan() {
    let s = ScanLab::new("scan_excl_name", &[80]);
    let _dns = NetnsHosts::without_dns(&s.lab.client_ns, &[]);
    let target = s.v4(2).to_string();
    let list = s.lab.dir().join("excl.txt");
    std::fs::write(&list, format!("{}\nnosuch.invalid\n", s.v4(3))).unwrap();
    let list = list.to_str().unwrap();
    for (extra, says) in [
        (
            ["--exclude", "nosuch.invalid"],
            "tcpshake: --exclude: cannot resolve `nosuch.invalid`".to_string(),
        ),
        (
            ["--excludefile", list],
            format!("tcpshake: --excludefile {list}, line 2: cannot resolve `nosuch.invalid`"),
        ),
    ] {
        let run = s.scan(&[&[target.as_str(), "-p", "80"][..], &extra[..]].concat());
        assert_eq!(run.code, Some(2), "{extra:?}\n{run}");
        assert!(run.stderr.starts_with(&says), "{extra:?}\n{run}");
        assert!(run.stderr.contains("nothing was scanned"), "{extra:?}\n{run}");
        assert_eq!(run.stderr.lines().count(), 1, "one message: {extra:?}\n{run}");
        assert!(run.stdout.is_empty(), "{extra:?}: scanned\n{run}");
    }
}
}

lab_test! {
/// An address named more than once — twice on the command line, by a name and by itself,
/// in a list and inside a block the list also holds — is one host scanned once per port:
/// the summary counts distinct pairs, `--all --json` has one line per pair with its real
/// RTT, and -oX, -oG and the table's `Not shown:` line agree with it. Two shards share
/// the distinct pairs between them.
fn an_address_named_several_times_is_one_host_scanned_once_per_port() {
    let s = ScanLab::new("scan_dup", &[80]);
    s.lab.fault_reject(81, Reject::Drop);
    let want_of = |hosts: &[IpAddr]| {
        let mut m = BTreeMap::new();
        for &h in hosts {
            for p in 80..=84u16 {
                let v = match p {
                    80 => ("open", "syn-ack"),
                    81 => ("filtered", "no-response"),
                    _ => ("closed", "reset"),
                };
                m.insert((h, p), (v.0.to_string(), v.1.to_string()));
            }
        }
        m
    };
    let states = |m: &BTreeMap<(IpAddr, u16), (String, String)>| -> BTreeMap<(IpAddr, u16), String> {
        m.iter().map(|(k, v)| (*k, v.0.clone())).collect()
    };
    let dir = s.lab.dir().to_path_buf();
    let (xml, grep) = (dir.join("dup.xml"), dir.join("dup.gnmap"));
    let a = s.v4(2).to_string();
    let common = ["-p", "80-84", "--wait", "300ms", "--all", "--json"];

    // The same address twice, as the new-user walk typed it; --complete connects once.
    let run = s.scan(
        &[
            &[a.as_str(), a.as_str()][..],
            &common[..],
            &["--complete", "-oX", xml.to_str().unwrap()],
            &["-oG", grep.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let got = verdicts(&run);
    assert_eq!(got, want_of(&[s.v4(2)]), "{run}");
    assert!(
        run.stderr
            .contains("scanned 5 ports: 1 open, 3 closed, 1 filtered"),
        "{run}"
    );
    let completed: Vec<&str> = run.stdout.lines().filter(|l| l.contains("legs_ns")).collect();
    assert_eq!(completed.len(), 1, "{run}");
    assert!(completed[0].contains("\"complete_error\":null"), "{run}");
    assert_valid_nmap_xml(&xml);
    assert_eq!(xml_ports(&xml), states(&got));
    assert_eq!(greppable_ports(&std::fs::read_to_string(&grep).unwrap()), states(&got));
    // The table: the open port, what it leaves out, the same summary.
    let run = s.scan(&[a.as_str(), a.as_str(), "-p", "80-84", "--wait", "300ms"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains(
            "\nNot shown: 3 closed tcp ports (reset), 1 filtered tcp port (no-response)\nPORT "
        ),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("scanned 5 ports: 1 open, 3 closed, 1 filtered"),
        "{run}"
    );

    // A name on the command line; in the list its address, twice, another address and a
    // block holding all three.
    let name = "dup.scan.test";
    let _hosts = NetnsHosts::new(&s.lab.client_ns, &[(s.v4(2), name)]);
    let list = dir.join("dup.txt");
    std::fs::write(
        &list,
        format!("{a}\n# again\n{a} {}\n{}/29\n", s.v4(5), s.v4(0)),
    )
    .unwrap();
    let hosts: Vec<IpAddr> = (0..8).map(|h| s.v4(h)).collect();
    let want = want_of(&hosts);
    let args = [&[name, "-iL", list.to_str().unwrap()][..], &common[..]].concat();
    let run = s.scan(
        &[
            &args[..],
            &["-oX", xml.to_str().unwrap(), "-oG", grep.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let got = verdicts(&run);
    assert!(got == want, "{}\n{}", diff(&got, &want), run.stderr);
    assert!(
        run.stderr
            .contains("scanned 40 ports: 8 open, 24 closed, 8 filtered"),
        "{run}"
    );
    assert_valid_nmap_xml(&xml);
    let x = std::fs::read_to_string(&xml).unwrap();
    assert!(x.contains(&format!("<hostname name=\"{name}\" type=\"user\"/>")), "{x}");
    assert!(x.contains("<hosts up=\"8\" down=\"0\" total=\"8\"/>"), "{x}");
    assert_eq!(xml_ports(&xml), states(&got));
    assert_eq!(greppable_ports(&std::fs::read_to_string(&grep).unwrap()), states(&got));

    // Two shards: each distinct pair in exactly one.
    let mut union = BTreeMap::new();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let run = s.scan(&[&args[..], &["--seed", "5", "--shard", shard.as_str()]].concat());
        assert_eq!(run.code, Some(0), "{run}");
        let part = verdicts(&run);
        assert!(!part.is_empty() && part.len() < want.len(), "{run}");
        for (key, v) in part {
            assert!(union.insert(key, v).is_none(), "both shards sent {key:?}");
        }
    }
    assert!(union == want, "{}", diff(&union, &want));
}
}

lab_test! {
/// nmap's own tools read our files as nmap's: `ndiff` against `nmap -sS -oX` of the same
/// ports finds no difference (states, service names, folded counts, host names), the XML
/// is valid against nmap's DTD and carries the stylesheet line, and the -oG host lines
/// are nmap's, byte for byte. Open, closed, dropped (no-response), port-unreachable and
/// admin-prohibited ports; many of a kind (folded into extraports) and few (listed); a
/// host given by name and one by address, over IPv4 and IPv6.
fn xml_and_greppable_match_nmaps_own_for_the_same_ports() {
    let s = ScanLab::new("scan_nmap_diff", &[22, 80]);
    s.icmp_unlimited();
    s.lab.fault_reject(81, Reject::Drop);
    s.lab.fault_reject(82, Reject::PortUnreachable);
    s.lab.fault_reject(83, Reject::AdminProhibited);
    for p in 2000..=2029 {
        s.lab.fault_reject(p, Reject::Drop);
    }
    for p in 3000..=3004 {
        s.lab.fault_reject(p, Reject::AdminProhibited);
    }
    let (name4, name6) = ("srv4.scan.test", "srv6.scan.test");
    let _hosts = NetnsHosts::new(&s.lab.client_ns, &[(s.v4(1), name4), (s.v6(1), name6)]);
    let folded = "22,23,80-83,1000-1029,2000-2029,3000-3004";
    let listed = "22,23,80-83";
    let (a4, a6) = (s.v4(2).to_string(), s.v6(2).to_string());
    // (label, family flag for nmap, targets ascending as typed, ports, -oX on stdout?)
    let cases = [
        ("v4-folded", None, [name4, a4.as_str()], folded, false),
        ("v6-listed", Some("-6"), [name6, a6.as_str()], listed, true),
    ];
    for (label, family, targets, ports, xml_on_stdout) in cases {
        let dir = s.lab.dir();
        let (ts_xml, ts_grep) = (
            dir.join(format!("ts-{label}.xml")),
            dir.join(format!("ts-{label}.gnmap")),
        );
        let (nm_xml, nm_grep) = (
            dir.join(format!("nm-{label}.xml")),
            dir.join(format!("nm-{label}.gnmap")),
        );
        let mut args: Vec<&str> = targets.to_vec();
        args.extend(["-p", ports, "--wait", "500ms"]);
        if xml_on_stdout {
            args.extend(["-oX", "-", "-oG", ts_grep.to_str().unwrap()]);
        } else {
            args.extend(["-oX", ts_xml.to_str().unwrap(), "-oG", "-"]);
        }
        let run = s.scan(&args);
        assert_eq!(run.code, Some(0), "{label}: {run}");
        // The format on stdout is alone there; the summary goes to stderr.
        assert!(run.stderr.contains("scanned "), "{label}: {run}");
        if xml_on_stdout {
            assert!(run.stdout.starts_with("<?xml "), "{label}: {run}");
            std::fs::write(&ts_xml, &run.stdout).unwrap();
        } else {
            assert!(run.stdout.starts_with("# tcpshake "), "{label}: {run}");
            std::fs::write(&ts_grep, &run.stdout).unwrap();
        }

        let mut nargs: Vec<&str> = vec!["-n", "-sS", "-p", ports];
        nargs.extend(family);
        nargs.extend([
            "-oX",
            nm_xml.to_str().unwrap(),
            "-oG",
            nm_grep.to_str().unwrap(),
        ]);
        nargs.extend(targets);
        let nm = s.nmap(&nargs);
        assert_eq!(nm.code, Some(0), "{label}: {nm}");

        assert_valid_nmap_xml(&ts_xml);
        let x = std::fs::read_to_string(&ts_xml).unwrap();
        assert!(
            x.lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("<?xml-stylesheet href=\"")
                    && l.ends_with("\" type=\"text/xsl\"?>")),
            "{label}: no stylesheet line:\n{x}"
        );
        let typed = if family.is_some() { name6 } else { name4 };
        assert!(
            x.contains(&format!(
                "<hostnames>\n<hostname name=\"{typed}\" type=\"user\"/>\n</hostnames>"
            )),
            "{label}: {x}"
        );
        assert!(x.contains("exit=\"success\""), "{label}: {x}");
        assert_ndiff_same(&nm_xml, &ts_xml, label);
        // What ndiff compared is really there: both folded states, or every port listed.
        if ports == folded {
            assert!(
                x.contains("<extraports state=\"filtered\" count=\"38\">"),
                "{label}: {x}"
            );
            assert!(x.contains("<extrareasons reason=\"no-response\" count=\"31\" proto=\"tcp\" ports=\"81,2000-2029\"/>"), "{label}: {x}");
            assert!(
                x.contains("<extraports state=\"closed\" count=\"31\">"),
                "{label}: {x}"
            );
        } else {
            assert!(x.contains("<port protocol=\"tcp\" portid=\"81\"><state state=\"filtered\" reason=\"no-response\" reason_ttl=\"0\"/><service name=\"hosts2-ns\""), "{label}: {x}");
            assert!(x.contains("reason=\"admin-prohibited\""), "{label}: {x}");
        }
        let ours = assert_greppable_same(&ts_grep, &nm_grep, label);
        assert_eq!(greppable_hosts(&ours).len(), 4, "{label}: {ours}");
    }
}
}

lab_test! {
/// Walk 14: `--open` beside -oG / -oX was refused (exit 2), though `nmap --open -oG -` is
/// a habit. Now, as nmap's: only the host with an open port is listed, with its open
/// ports, the rest folded — -oG's host lines byte for byte as nmap's, -oX equal to
/// nmap's for ndiff and valid, and the table and -oN without the host that has none.
fn open_shows_only_hosts_with_open_ports_as_nmap_does() {
    let s = ScanLab::new("scan_open", &[22, 80]);
    s.lab.fault_reject(81, Reject::Drop);
    let (a, b) = (s.v4(2).to_string(), s.v4(3).to_string());
    // b: its listening ports reset too, so it is up with none open.
    let dir = s.lab.dir();
    let rules = dir.join("open.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet tsk_open {{\n chain input {{\n  type filter hook input priority -10; \
             policy accept;\n  ip daddr {b} tcp dport {{ 22, 80 }} reject with tcp reset\n \
             }}\n}}\n"
        ),
    )
    .unwrap();
    run_ok(in_ns(&s.lab.server_ns, "nft").arg("-f").arg(&rules));
    let (ts_xml, ts_grep, ts_norm) = (
        dir.join("ts-open.xml"),
        dir.join("ts-open.gnmap"),
        dir.join("ts-open.nmap"),
    );
    let (nm_xml, nm_grep) = (dir.join("nm-open.xml"), dir.join("nm-open.gnmap"));
    let ports = "22,23,80,81";
    let run = s.scan(&[
        &a,
        &b,
        "-p",
        ports,
        "--open",
        "-oX",
        ts_xml.to_str().unwrap(),
        "-oG",
        ts_grep.to_str().unwrap(),
        "-oN",
        ts_norm.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains(&format!("scan report for {a}\n")), "{run}");
    assert!(!run.stdout.contains(&b), "a host with no open port: {run}");
    let normal = std::fs::read_to_string(&ts_norm).unwrap();
    assert!(normal.contains(&format!("scan report for {a}\n")), "{normal}");
    assert!(!normal.contains(&format!("scan report for {b}")), "{normal}");
    assert!(normal.contains("(2 hosts up)"), "{normal}");
    let nm = s.nmap(&[
        "-n", "-sS", "-Pn", "--open", "-p", ports, "-oX", nm_xml.to_str().unwrap(), "-oG",
        nm_grep.to_str().unwrap(), &a, &b,
    ]);
    assert_eq!(nm.code, Some(0), "{nm}");
    assert_valid_nmap_xml(&ts_xml);
    let ours = assert_greppable_same(&ts_grep, &nm_grep, "--open");
    assert_eq!(greppable_hosts(&ours).len(), 2, "{ours}");
    let x = std::fs::read_to_string(&ts_xml).unwrap();
    assert_ndiff_same(&nm_xml, &ts_xml, "--open");
    assert_eq!(x.matches("<host ").count(), 1, "{x}");
    assert_eq!(x.matches("<port ").count(), 2, "{x}");
    assert!(x.contains("<extraports state=\"closed\" count=\"1\">"), "{x}");
    assert!(x.contains("<hosts up=\"2\" down=\"0\" total=\"2\"/>"), "{x}");
}
}

lab_test! {
/// Ctrl-C mid-scan: the sending stops, the replies on their way are still taken, and every
/// file is complete — XML valid, saying `exit="error"` — listing exactly the pairs that
/// were sent, each with its true verdict.
fn an_interrupted_scan_writes_complete_files_that_say_so() {
    let s = ScanLab::new("scan_sigint", &[22]);
    s.lab.fault_reject(81, Reject::Drop);
    let dir = s.lab.dir().to_path_buf();
    let (xml, grep, json) = (
        dir.join("int.xml"),
        dir.join("int.gnmap"),
        dir.join("int.jsonl"),
    );
    let net = format!("{}/24", s.v4(0));
    // 768 pairs at 300 per second: about 2.6 s, stopped well before the end.
    let mut cmd = s.lab.client_cmd([
        "scan",
        net.as_str(),
        "-p",
        "22,23,81",
        "--rate",
        "300",
        "--wait",
        "300ms",
        "--all",
        "--json",
        "-oX",
        xml.to_str().unwrap(),
        "-oG",
        grep.to_str().unwrap(),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(File::create(&json).unwrap())
        .stderr(File::create(dir.join("int.err")).unwrap());
    let mut child = die_with_parent(&mut cmd)
        .spawn()
        .expect("cannot start tcpshake");
    // Interrupt once replies are coming in (the first JSON Lines reach the file), however
    // slowly the process started on a busy machine.
    let started = lab::poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        std::fs::metadata(&json).is_ok_and(|m| m.len() > 0)
    });
    assert!(started, "no reply within 20 s");
    // `ip netns exec` execs in place: the child's pid is tcpshake's.
    lab::signal(child.id(), "INT");
    let finished = lab::wait_bounded(&mut child, Duration::from_secs(15));
    let code = child.wait().ok().and_then(|st| st.code());
    let err = std::fs::read_to_string(dir.join("int.err")).unwrap_or_default();
    assert!(finished, "did not stop after SIGINT\n{err}");
    assert_eq!(
        code,
        Some(130),
        "interrupted means exit 130 (SIGINT)\n{err}"
    );
    assert!(err.contains("interrupted"), "{err}");
    let scanned: usize = err
        .split("scanned ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {err}"));
    assert!(
        scanned > 0 && scanned < 768,
        "stopped mid-scan: {scanned}\n{err}"
    );

    let run = Run {
        code,
        stdout: std::fs::read_to_string(&json).unwrap(),
        stderr: err.clone(),
    };
    let got = verdicts(&run);
    assert_eq!(got.len(), scanned, "one line per pair sent\n{err}");
    for ((addr, port), (state, reason)) in &got {
        let want = match port {
            22 => ("open", "syn-ack"),
            23 => ("closed", "reset"),
            81 => ("filtered", "no-response"),
            _ => unreachable!(),
        };
        assert_eq!((state.as_str(), reason.as_str()), want, "{addr}:{port}");
    }

    assert_valid_nmap_xml(&xml);
    let x = std::fs::read_to_string(&xml).unwrap();
    assert!(x.contains("exit=\"error\" errormsg=\"interrupted"), "{x}");
    // Three ports a host: none folded, every pair sent is a <port> of a host that answered.
    let up: BTreeSet<IpAddr> = got
        .iter()
        .filter(|(_, (_, r))| r != "no-response")
        .map(|((a, _), _)| *a)
        .collect();
    let want = got.keys().filter(|(a, _)| up.contains(a)).count();
    assert_eq!(x.matches("<port protocol=").count(), want, "{x}");
    let g = std::fs::read_to_string(&grep).unwrap();
    assert!(
        g.lines()
            .last()
            .is_some_and(|l| l.starts_with("# tcpshake done at ")),
        "{g}"
    );
    assert_eq!(greppable_ports(&g).len(), want, "{g}");
}
}

lab_test! {
/// Every port of one host on each family at the default rate (as fast as the host sends):
/// with two CPUs, each family's frames leave through two sockets, one sending from a
/// thread of its own (link.rs, "Two senders"). Exact, and every answer timed by a transmit
/// stamp from whichever socket sent its SYN.
fn a_full_port_scan_at_full_speed_is_exact_and_every_answer_timed() {
    let open = [22, 80, 443, 8080];
    let s = ScanLab::new("scan_full", &open);
    let (v4, v6) = (s.v4(7), s.v6(7));
    let run = s.scan(&[&v4.to_string(), &v6.to_string(), "-p-", "--json"]);
    assert_eq!(run.code, Some(0), "{run}");
    // verdicts(): one line per pair, each answered one with its RTT.
    let got = verdicts(&run);
    assert_eq!(got.len(), 2 * 65_535, "{}", run.stderr);
    for ((addr, port), (state, reason)) in &got {
        let want = match open.contains(port) {
            true => ("open", "syn-ack"),
            false => ("closed", "reset"),
        };
        assert_eq!((state.as_str(), reason.as_str()), want, "{addr} port {port}");
    }
}
}

lab_test! {
fn two_percent_loss_with_three_retries_finds_every_open_port() {
    let open = [22, 80];
    let s = ScanLab::new("scan_loss", &open);
    // 2% each way loses an attempt 4% of the time. With two retries all three attempts of
    // one of the 128 open ports were lost in about 1 run in 120 (6e-5 a port; it failed
    // so in a full local suite run); with three, about 1 in 30 000 (2.5e-6 a port).
    s.lab.fault_loss(2, Direction::Both);
    let net = format!("{}/26", s.v4(0));
    let run = s.scan(&[
        &net,
        "-p",
        "21-23,79-81",
        "--retries",
        "3",
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
}

lab_test! {
/// nmap's -oN FILE (the table, between nmap's comment lines, as stdout shows it) and -oA
/// BASE (BASE.nmap, BASE.gnmap and BASE.xml, each as its own option writes it); -oN -
/// is the table on stdout; --max-rate is --rate, --open changes nothing in the table.
fn normal_output_and_all_formats_as_nmap_writes_them() {
    let s = ScanLab::new("scan_oa", &[80]);
    let dir = s.lab.dir();
    let target = s.v4(1).to_string();
    let normal = dir.join("scan.txt");
    let base = dir.join("all");
    let run = s.scan(&[
        &target,
        "-p",
        "80,81",
        "-oN",
        normal.to_str().unwrap(),
        "--max-rate",
        "1000",
        "--open",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    let text = std::fs::read_to_string(&normal).expect("-oN wrote its file");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("# tcpshake ") && lines[0].contains(" scan initiated "),
        "{text}"
    );
    assert!(
        lines[lines.len() - 1].starts_with("# tcpshake done at ")
            && lines[lines.len() - 1].contains("1 IP address (1 host up)"),
        "{text}"
    );
    // Between them, what stdout showed (its RTTs, and so its text, are the same run's).
    let body = lines[1..lines.len() - 1].join("\n");
    assert_eq!(body, run.stdout.trim_end(), "{text}\n{run}");
    assert!(body.contains(&format!("scan report for {target}")), "{text}");
    assert!(body.contains("80/tcp") && !body.contains("81/tcp"), "{text}");
    assert!(body.contains("scanned 2 ports: 1 open, 1 closed"), "{text}");
    // What the table leaves out, as nmap says it under the title.
    assert!(
        body.contains(&format!(
            "scan report for {target}\nNot shown: 1 closed tcp port (reset)\nPORT "
        )),
        "{text}"
    );

    let run = s.scan(&[&target, "-p", "80,81", "-oA", base.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{run}");
    let file = |suffix: &str| {
        let p = dir.join(format!("all.{suffix}"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}\n{run}", p.display()))
    };
    assert!(file("nmap").contains("80/tcp      open"), "{}", file("nmap"));
    let ports = greppable_ports(&file("gnmap"));
    assert_eq!(ports.get(&(s.v4(1), 81)).map(String::as_str), Some("closed"));
    assert_valid_nmap_xml(&dir.join("all.xml"));
    // The table still goes to stdout, as with -oN FILE.
    assert!(run.stdout.contains("scanned 2 ports"), "{run}");

    let run = s.scan(&[&target, "-p", "80", "-oN", "-"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("scanned 1 port"), "{run}");
    assert!(!run.stdout.contains("# tcpshake"), "{run}");
    assert!(!run.stdout.contains("Not shown"), "nothing left out: {run}");

    // The table alone keeps only the open ports and counts the rest.
    let run = s.scan(&[&target, "-p", "79-90"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains("\nNot shown: 11 closed tcp ports (reset)\nPORT "),
        "{run}"
    );
}
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
        // One format per stdout, as with nmap's `-oX -`.
        (
            vec!["scan", "198.18.0.1", "-p", "22", "--json", "-oX", "-"],
            "--json and -oX - both write to stdout",
        ),
        (
            vec!["scan", "198.18.0.1", "-p", "22", "-oX", "-", "-oG", "-"],
            "-oX - and -oG - both write to stdout",
        ),
        (
            vec!["scan", "198.18.0.1", "-p", "22", "-oN", "-", "--json"],
            "--json and -oN - both write to stdout",
        ),
        (
            vec!["scan", "198.18.0.1", "-p", "22", "-oA", "b", "-oG", "x"],
            "-oA b already writes -oG's format (to b.gnmap)",
        ),
        (
            vec![
                "scan",
                "198.18.0.1",
                "-p",
                "22",
                "-oA",
                "/nonexistent/dir/b",
            ],
            "-oA: cannot create /nonexistent/dir/b.",
        ),
        (
            vec!["scan", "198.18.0.1", "-p", "22", "--open", "--json"],
            "--open would be ignored by --json",
        ),
        (
            vec![
                "scan",
                "198.18.0.1",
                "-p",
                "22",
                "--exclude",
                "198.18.0.0/24",
            ],
            "--exclude excludes every target",
        ),
        (vec!["scan", "198.18.0.1", "-vv"], "no verbosity levels"),
        (
            vec!["scan", "198.18.0.1", "-A"],
            "`tcpshake trace HOST:PORT`",
        ),
        (
            vec!["scan", "224.0.0.1"],
            "224.0.0.1 is a multicast address",
        ),
        (
            vec![
                "scan",
                "198.18.0.1",
                "-p",
                "22",
                "-oX",
                "/nonexistent/dir/scan.xml",
            ],
            "-oX: cannot create",
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

lab_test! {
/// `--complete`: every open port gets a second, full connection that we close with our FIN;
/// its legs land in the port's record, and the server is left with nothing half-closed.
fn complete_connects_to_open_ports_and_closes_them_cleanly() {
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
}

lab_test! {
/// A `--source-port` that another socket on the host holds (here a listener on loopback,
/// another address than the probe's) is refused by `scan` and `trace` alike, exit 2: the
/// guard drops by port and would cut that socket off while the command runs. A free one
/// is taken.
fn a_source_port_another_socket_holds_is_refused() {
    let mut lab = Lab::new("scan-sport-taken");
    let listener = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',45678))\n\
                    s.listen()\ntime.sleep(60)\n";
    lab.spawn_owned(
        "a loopback listener",
        in_ns(&lab.client_ns, "python3").args(["-c", listener]),
    );
    let up = lab::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let ss = lab::run_bounded(
            in_ns(&lab.client_ns, "ss").args(["-Htln", "sport = :45678"]),
            Duration::from_secs(5),
        );
        !ss.stdout.trim().is_empty()
    });
    assert!(up, "the listener did not come up");
    let server = lab.server_v4.to_string();
    let target = format!("{server}:80");
    for args in [
        vec!["scan", &server, "-p", "80", "--source-port", "45678"],
        vec!["trace", &target, "--source-port", "45678"],
    ] {
        let run = lab::run_bounded(&mut lab.client_cmd(&args), Duration::from_secs(20));
        assert_eq!(run.code, Some(2), "{args:?}\n{run}");
        assert!(
            run.stderr.contains("source port 45678 is taken on this host"),
            "{args:?}\n{run}"
        );
    }
    let run = lab::run_bounded(
        &mut lab.client_cmd(["scan", &server, "-p", "80", "--source-port", "45679"]),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("1 closed"), "{run}");
}
}

lab_test! {
/// A host that answered but has no open port is in the table and in -oN, with what was not
/// shown, as nmap prints it (and as -oX and -oG list it up); it vanished from both, so a
/// closed-only host read like one that was not there.
fn a_host_with_no_open_port_is_listed_with_what_was_not_shown() {
    let s = ScanLab::new("scan-closed-only", &[80]);
    let up = s.v4(7);
    let normal = s.lab.dir().join("closed.nmap");
    let target_up = up.to_string();
    let want = format!("scan report for {up}\nNot shown: 1 closed tcp port (reset)\n");
    // The table alone (open ports kept, the others only counted) …
    let run = s.scan(&[&target_up, "-p", "81"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains(&want), "{run}");
    // … and beside -oN (every answer walked).
    let run = s.scan(&[
        &target_up,
        "-p",
        "81",
        "-oN",
        normal.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains(&want), "{run}");
    assert!(!run.stdout.contains("PORT "), "no header over no rows\n{run}");
    let file = std::fs::read_to_string(&normal).expect("-oN file");
    assert!(file.contains(&want), "{file}");
}
}

lab_test! {
/// A closed stdout (`scan … --json -oX F -oG G -oN N | head -1`) ends only what goes to
/// stdout: the scan runs to its end and its report files are whole (a walk: the three
/// files were removed, as a scan that could not start removes what it made; with the table
/// on stdout they were cut short). Exit 0, as for any closed pipe.
fn a_closed_stdout_does_not_cut_the_report_files() {
    let s = ScanLab::new("scan_closed_pipe", &[22, 80]);
    let dir = s.lab.dir();
    let (xml, grep, normal) = (dir.join("p.xml"), dir.join("p.gnmap"), dir.join("p.nmap"));
    let range = format!("{}-4", s.v4(1));
    for table in [false, true] {
        let mut args = vec!["scan", &range, "-p", "1-1000", "--wait", "200ms"];
        if !table {
            args.push("--json");
        }
        args.extend([
            "-oX",
            xml.to_str().unwrap(),
            "-oG",
            grep.to_str().unwrap(),
            "-oN",
            normal.to_str().unwrap(),
        ]);
        // The reader is gone before the first line.
        let run = lab::run_stdout_closed(&mut s.lab.client_cmd(&args), Duration::from_secs(30));
        assert_eq!(run.code, Some(0), "{args:?}\n{run}");
        assert_valid_nmap_xml(&xml);
        let x = std::fs::read_to_string(&xml).unwrap();
        assert!(x.contains("<runstats><finished"), "{x}");
        assert_eq!(x.matches("<port protocol=\"tcp\" portid=\"80\">").count(), 4, "{x}");
        let g = std::fs::read_to_string(&grep).unwrap();
        assert!(g.contains("# tcpshake done at"), "{g}");
        assert_eq!(g.matches("22/open/tcp").count(), 4, "{g}");
        let n = std::fs::read_to_string(&normal).unwrap();
        assert!(n.contains("scanned 4000 ports: 8 open, 3992 closed"), "{n}");
    }
}
}

lab_test! {
/// stderr that cannot be written (`2>/dev/full`) loses the messages, not the scan: before,
/// the first warning panicked ("failed printing to stderr"), exit 101, and no -oX.
fn an_unwritable_stderr_loses_messages_not_the_scan() {
    let s = ScanLab::new("scan_full_stderr", &[80]);
    let xml = s.lab.dir().join("full.xml");
    let range = format!("{}-2", s.v4(1));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // The summary goes to stderr (the table's place taken by --json).
    let args = ["scan", &range, "-p", "79-81", "--json", "-oX", xml.to_str().unwrap()];
    let mut child = s
        .lab
        .client_cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(full))
        .spawn()
        .expect("start tcpshake");
    assert!(
        lab::wait_bounded(&mut child, Duration::from_secs(30)),
        "did not end"
    );
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    assert_valid_nmap_xml(&xml);
}
}

lab_test! {
/// A name with both addresses, its IPv6 one first in the resolver's answer: scanned at its
/// IPv4 address, as nmap does without `-6` (so ndiff against nmap's report of the name
/// compares the same host); `-6` scans the IPv6 one; a name with only an IPv6 address is
/// scanned there.
fn a_name_is_scanned_at_its_ipv4_address_as_nmap_does() {
    let s = ScanLab::new("scan_name_v4", &[80]);
    let (both, v6only) = ("both.scan.test", "six.scan.test");
    let _hosts = NetnsHosts::new(
        &s.lab.client_ns,
        &[(s.v6(7), both), (s.v4(7), both), (s.v6(8), v6only)],
    );
    for (args, want) in [
        (vec![both], s.v4(7)),
        (vec![both, "-6"], s.v6(7)),
        (vec![v6only], s.v6(8)),
    ] {
        let mut all = args.clone();
        all.extend(["-p", "80", "--json"]);
        let run = s.scan(&all);
        assert_eq!(run.code, Some(0), "{args:?}\n{run}");
        let got: Vec<IpAddr> = verdicts(&run).keys().map(|(a, _)| *a).collect();
        assert_eq!(got, vec![want], "{args:?}\n{run}");
    }
}
}

/// The JSON lines of a run, by address: (port, state, reason) each.
fn json_by_addr(run: &Run) -> BTreeMap<String, Vec<(u64, String, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    for v in run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let addr = v["addr"].as_str().unwrap_or_default().to_string();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        out.entry(addr).or_default().push((
            v["port"].as_u64().unwrap_or(0),
            s("state"),
            s("reason"),
        ));
    }
    out
}

lab_test! {
/// A target with no route beside one that has (walk 20): before, `scan X R` stopped at X's
/// route lookup (`no route to X`, exit 1, R never scanned) and `scan R X` called X:80
/// `filtered / no-response` without a word, though nothing could be sent there. Now, in
/// either order, in each family and from `-iL`, X is named once on stderr and skipped —
/// in no output format, not in -oX's hosts (nmap's `failed to determine route`) — R is
/// scanned, and the exit code is 1, as for any skipped target. X alone fails with the
/// route lookup's words, as before.
fn a_target_with_no_route_is_named_and_skipped_wherever_it_is_in_the_list() {
    let s = ScanLab::new("scan_no_route", &[80]);
    let dir = s.lab.dir();
    let (xml, grep, normal) = (dir.join("nr.xml"), dir.join("nr.gnmap"), dir.join("nr.nmap"));
    for v6 in [false, true] {
        let (x, r) = if v6 {
            (IpAddr::from(s.lab.elsewhere_v6(0)), s.v6(7))
        } else {
            // (elsewhere_v4(0) is the ScanLab's routed /24.)
            (IpAddr::from(s.lab.elsewhere_v4(1)), s.v4(7))
        };
        let (xs, rs) = (x.to_string(), r.to_string());
        let said = format!("tcpshake: no route to {x}: check `ip route get {x}`");
        let list = dir.join("nr.txt");
        std::fs::write(&list, format!("{x}\n{r}\n")).unwrap();
        let lists = ["-iL", list.to_str().unwrap()];
        for targets in [vec![xs.as_str(), rs.as_str()], vec![&rs, &xs], lists.to_vec()] {
            let mut args = targets.clone();
            args.extend(["-p", "80", "--all", "--json", "--wait", "200ms"]);
            args.extend(["-oX", xml.to_str().unwrap(), "-oG", grep.to_str().unwrap()]);
            args.extend(["-oN", normal.to_str().unwrap()]);
            let run = s.scan(&args);
            let ctx = format!("{targets:?}\n{run}");
            assert_eq!(run.code, Some(1), "{ctx}");
            let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&xs)).collect();
            assert_eq!(lines, [format!("{said}; skipped")], "{ctx}");
            let json = json_by_addr(&run);
            assert_eq!(
                json.get(&rs),
                Some(&vec![(80, "open".into(), "syn-ack".into())]),
                "{ctx}"
            );
            assert!(!json.contains_key(&xs), "{ctx}");
            assert_valid_nmap_xml(&xml);
            let x_xml = std::fs::read_to_string(&xml).unwrap();
            // No host for it; nmap's element for a target it skipped.
            assert!(!x_xml.contains(&format!("addr=\"{xs}\"")), "{ctx}\n{x_xml}");
            assert!(
                x_xml.contains(&format!(
                    "<target specification=\"{xs}\" status=\"skipped\" reason=\"invalid\"/>"
                )),
                "{ctx}\n{x_xml}"
            );
            assert!(x_xml.contains(&format!("addr=\"{rs}\"")), "{ctx}\n{x_xml}");
            assert!(x_xml.contains("<hosts up=\"1\" down=\"0\" total=\"1\""), "{x_xml}");
            // (The `#` lines quote the command line.)
            for f in [&grep, &normal] {
                let text = std::fs::read_to_string(f).unwrap();
                let named = |l: &&str| {
                    !l.starts_with('#')
                        && l.split(|c: char| !(c.is_ascii_hexdigit() || ".:".contains(c)))
                            .any(|w| w == xs)
                };
                assert!(!text.lines().any(|l| named(&l)), "{ctx}\n{text}");
                assert!(text.lines().any(|l| l.contains(&rs)), "{ctx}\n{text}");
            }
            let n = std::fs::read_to_string(&normal).unwrap();
            assert!(n.contains("scanned 1 port: 1 open, 0 closed, 0 filtered"), "{n}");
        }
        // Alone: nothing to scan, and the lookup's own words, once.
        let run = s.scan(&[&xs, "-p", "80"]);
        assert_eq!(run.code, Some(1), "{run}");
        assert_eq!(run.stderr.trim_end(), said, "{run}");
        assert_eq!(run.stdout, "", "{run}");
        // Its report is still written, as nmap's: 0 hosts, the target skipped (a script
        // comparing reports must not find the last run's left in place).
        let _ = std::fs::remove_file(&xml);
        let run = s.scan(&[&xs, "-p", "80", "-oX", xml.to_str().unwrap()]);
        assert_eq!(run.code, Some(1), "{run}");
        assert_valid_nmap_xml(&xml);
        let x_xml = std::fs::read_to_string(&xml).unwrap();
        assert!(x_xml.contains("<hosts up=\"0\" down=\"0\" total=\"0\""), "{x_xml}");
        assert!(x_xml.contains(&format!("<target specification=\"{xs}\"")), "{x_xml}");
    }
}
}

lab_test! {
/// A wide range mostly without a route is one line (the range, a count and the first
/// address), not one per address, and its routed part is scanned: the /16 around the lab's routed /24.
/// An IPv6 /112 with no route at all fails with that one line.
fn a_range_without_a_route_is_one_line_and_its_routed_part_is_scanned() {
    let s = ScanLab::new("scan_no_route_range", &[80]);
    let [a, b, _, _] = s.v4_net.octets();
    let wide = format!("{a}.{b}.0.0/16");
    let run = s.scan(&[&wide, "-p", "80", "--wait", "300ms"]);
    assert_eq!(run.code, Some(1), "{run}");
    let first = Ipv4Addr::new(a, b, 0, 0);
    assert_eq!(
        run.stderr.lines().filter(|l| l.starts_with("tcpshake: ")).collect::<Vec<_>>(),
        [format!(
            "tcpshake: no route to 65280 addresses of {wide} ({first} the first): check \
             `ip route get {first}`; skipped"
        )],
        "{run}"
    );
    assert!(run.stdout.contains("scanned 256 ports: 256 open, 0 closed, 0 filtered"), "{run}");
    let mut seg = s.lab.elsewhere_v6(1).segments();
    seg[7] = 0;
    let none = Ipv6Addr::from(seg);
    let run = s.scan(&[&format!("{none}/112"), "-p", "80"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "tcpshake: no route to 65536 addresses of {none}/112 ({none} the first): check \
             `ip route get {none}`"
        ),
        "{run}"
    );
}
}

lab_test! {
/// A target the check before the scan finds routed but the kernel refuses when the SYN
/// goes (EHOSTUNREACH: here policy routing by tcpshake's socket mark sends it to an
/// `unreachable` route; a route removed mid-scan does the same) is named and skipped as
/// one with no route, not reported `filtered`, and not sent to again.
fn a_target_the_kernel_refuses_at_the_send_is_skipped_not_filtered() {
    let s = ScanLab::new("scan_refused", &[80]);
    let ns = &s.lab.client_ns;
    let (x, r) = (s.v4(9), s.v4(7));
    // A prohibit route (EACCES) and a blackhole route (EINVAL) too: one read `filtered`,
    // the other stopped the whole scan (a review).
    let (p, b) = (s.v4(10), s.v4(11));
    let mark = format!("{:#x}", tcpshake_io::guard::MARK);
    for args in [
        vec!["route", "add", "unreachable", &format!("{x}/32"), "table", "120"],
        vec!["route", "add", "prohibit", &format!("{p}/32"), "table", "120"],
        vec!["route", "add", "blackhole", &format!("{b}/32"), "table", "120"],
        vec!["rule", "add", "fwmark", &mark, "lookup", "120", "pref", "120"],
    ] {
        lab::run_ok(Command::new("ip").args(["-n", ns]).args(&args));
    }
    let (xs, rs, ps, bs) = (x.to_string(), r.to_string(), p.to_string(), b.to_string());
    // The kernel's path: frames go by no route at all.
    let run = s.scan(&[
        &xs, &rs, &ps, &bs, "-p", "80,81", "--send-ip", "--all", "--json", "--wait", "200ms",
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let json = json_by_addr(&run);
    for gone in [&xs, &ps, &bs] {
        assert!(!json.contains_key(gone), "{gone}: {run}");
    }
    assert_eq!(json.get(&rs).map(Vec::len), Some(2), "{run}");
    for (addr, said) in [
        (&xs, format!("no route to {xs}: check `ip route get {xs}`")),
        (&ps, format!("the route to {ps} is prohibited (a `prohibit` route or rule)")),
        (&bs, format!("the route to {bs} is a blackhole")),
    ] {
        let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(addr.as_str())).collect();
        assert!(
            lines.len() == 1
                && lines[0].starts_with(&format!("tcpshake: {said}"))
                && lines[0].ends_with("(the kernel refused the SYN); skipped"),
            "{addr}: {lines:?}\n{run}"
        );
    }
    assert!(run.stderr.contains("scanned 2 ports: 1 open, 1 closed, 0 filtered"), "{run}");
}
}

lab_test! {
/// An address a policy rule forbids (`ip rule add to X prohibit`) inside a range with
/// routed neighbours is named and skipped as nmap does, not sent to: the routes' prefixes
/// alone left it in the same stretch as its routed neighbours, and the frames went out
/// (a walk: `filtered / no-response`, exit 0, its SYNs on the wire).
fn an_address_a_policy_rule_forbids_is_skipped_inside_a_range() {
    let s = ScanLab::new("scan_rule", &[80]);
    let ns = &s.lab.client_ns;
    let x = s.v4(9);
    lab::run_ok(Command::new("ip").args(["-n", ns, "rule", "add", "to", &format!("{x}/32"), "prohibit"]));
    let range = format!("{}-{}", s.v4(8), s.v4(11));
    let xs = x.to_string();
    let run = s.scan(&[&range, "-p", "80", "--all", "--json", "--wait", "200ms"]);
    assert_eq!(run.code, Some(1), "{run}");
    let json = json_by_addr(&run);
    assert!(!json.contains_key(&xs), "{run}");
    assert_eq!(json.len(), 3, "the other three: {run}");
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&xs)).collect();
    assert_eq!(
        lines,
        [format!(
            "tcpshake: the route to {xs} is prohibited (a `prohibit` route or rule): check `ip route get {xs}`; \
             skipped"
        )],
        "{run}"
    );
}
}

lab_test! {
/// A list entry that cannot be read is a `<target status="skipped">` element in -oX, as
/// nmap writes one for a target it cannot use; a list of nothing but such entries still
/// writes its report, with 0 hosts, as nmap's (a script comparing reports found the last
/// run's left in place).
fn skipped_list_entries_are_in_the_xml_and_an_all_skipped_scan_still_writes_it() {
    let s = ScanLab::new("scan_bogus", &[80]);
    let dir = s.lab.dir();
    let (list, xml) = (dir.join("b.txt"), dir.join("b.xml"));
    let r = s.v4(7).to_string();
    std::fs::write(&list, format!("198.18.0.0/99\n{r}\n")).unwrap();
    let run = s.scan(&["-iL", list.to_str().unwrap(), "-p", "80", "-oX", xml.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_valid_nmap_xml(&xml);
    let text = std::fs::read_to_string(&xml).unwrap();
    let element = "<target specification=\"198.18.0.0/99\" status=\"skipped\" reason=\"invalid\"/>";
    assert!(text.contains(element), "{text}");
    assert!(text.contains(&format!("addr=\"{r}\"")), "{text}");
    std::fs::write(&list, "198.18.0.0/99\n").unwrap();
    std::fs::remove_file(&xml).unwrap();
    let run = s.scan(&["-iL", list.to_str().unwrap(), "-p", "80", "-oX", xml.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_valid_nmap_xml(&xml);
    let text = std::fs::read_to_string(&xml).unwrap();
    assert!(text.contains(element) && text.contains("<hosts up=\"0\" down=\"0\" total=\"0\""), "{text}");
}
}

lab_test! {
/// A routing table too big to dump whole (past the netlink reader's 100 000 replies: a full
/// BGP table) does not stop the scan: the check before it is skipped for ranges, and the
/// scan runs as before it existed (a review: every scan of two addresses or more failed
/// there, blaming a timeout).
fn a_routing_table_too_big_to_dump_does_not_stop_the_scan() {
    let s = ScanLab::new("scan_big_table", &[80]);
    let batch = s.lab.dir().join("routes.batch");
    let mut text = String::with_capacity(100_100 * 48);
    // Documentation addresses, never sent to: only the table's size matters.
    for i in 0..100_100u32 {
        text.push_str(&format!(
            "route add blackhole 2001:db8:ffff::{:x}:{:x}/128\n",
            i >> 16,
            i & 0xffff
        ));
    }
    std::fs::write(&batch, text).unwrap();
    lab::run_ok(Command::new("ip").args(["-n", &s.lab.client_ns, "-6", "-batch"]).arg(&batch));
    let (a, b) = (s.v6(7).to_string(), s.v6(8).to_string());
    let run = s.scan(&[&a, &b, "-p", "80", "--wait", "300ms"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("2 open"), "{run}");
}
}

//! Responses that arrive in IP fragments or behind IPv6 extension headers (issue 12, items
//! 1 and 2), against a scripted server: a Python peer on an AF_PACKET socket in the server
//! namespace that answers our SYN and request with hand-made, fragmented packets, with an
//! nft drop so the server's kernel stays out. Each case is checked with tcpshake (probe,
//! survey, scan) and with the Linux client (curl) against the same peer.

use crate::lab;

use lab::{Lab, in_ns, run_ok};
use std::time::Duration;

const PORT: u16 = 7000;

/// The peer. argv: interface, port, mode, seconds to live.
///
/// Modes (what the SYN-ACK and the response carry):
/// - `v4frag`: the SYN-ACK (28 bytes of TCP) in 8-byte IPv4 fragments sent in reverse order
///   (a tiny first fragment: ports and sequence number only, RFC 1858); the response
///   segment (1 320 bytes) in 552-byte fragments, the second one sent twice.
/// - `v6frag`: the same over IPv6 Fragment headers: the SYN-ACK in two fragments (the
///   first holds the TCP header, as RFC 8200 §4.5 asks), reversed; the response in three.
/// - `v6ext`: the SYN-ACK behind hop-by-hop, destination options, a type-0 routing header
///   with segments left 0 and an atomic fragment (RFC 6946); the response behind
///   hop-by-hop and a segment routing header (RFC 8754, segments left 0), fragmented in
///   three; the FIN's ACK behind destination options.
/// - `v6longext`: every segment behind twelve destination options headers (the response
///   behind eleven and a Fragment header, in three fragments): more than the tap's BPF
///   walks in the kernel (8). RFC 8200 §4.1 has receivers process any chain; Linux does.
/// - `v4overlap`: the SYN-ACK in IPv4 fragments 0–16, 8–24, 24–28: the second overlaps
///   the first without repeating it (RFC 5722's case; Linux discards such datagrams).
/// - `v6tiny`: the SYN-ACK in IPv6 fragments of 8 bytes: the first does not hold the TCP
///   header (RFC 8200 §4.5: discard it).
const PEER: &str = r#"
import os, socket, struct, sys, time
IF, PORT, MODE, LIMIT = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
s.bind((IF, 3))
s.settimeout(0.05)
open(os.environ["READY_FILE"], "w").close()
ISS = 1000
BODY = (b"HTTP/1.1 200 OK\r\nServer: frag-peer\r\nContent-Length: 0\r\nX-Pad: "
        + b"p" * 1240 + b"\r\nConnection: close\r\n\r\n")
ident = [0x4000]

def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def tcp(src, dst, sport, dport, seq, ack, flags, opts=b"", data=b""):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff,
                    (20 + len(opts)) // 4 << 4, flags, 65535, 0, 0) + opts + data
    if len(src) == 4: ph = src + dst + struct.pack("!BBH", 0, 6, len(h))
    else: ph = src + dst + struct.pack("!I3xB", len(h), 6)
    return h[:16] + struct.pack("!H", csum(ph + h)) + h[18:]

def next_ident():
    ident[0] += 1
    return ident[0]

def v4(src, dst, seg, size=None, order="fwd", dup=None, cuts=None):
    pieces = [(0, seg, False)]
    if size:
        pieces = [(o, seg[o:o + size], o + size < len(seg)) for o in range(0, len(seg), size)]
    if cuts:
        pieces = [(a, seg[a:b], b < len(seg)) for a, b in cuts]
    i = next_ident()
    out = []
    for off, data, more in pieces:
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), i,
                        (off // 8) | (0x2000 if more else 0) | (0 if size else 0x4000),
                        64, 6, 0, src, dst)
        h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
        out.append(h + data)
    if dup is not None: out.insert(dup + 1, out[dup])
    return out[::-1] if order == "rev" else out

def chain(exts, last):
    b = b""
    for n, (kind, body) in enumerate(exts):
        b += bytes([exts[n + 1][0] if n + 1 < len(exts) else last]) + body
    return b

def v6(src, dst, exts, upper, payload):
    e = chain(exts, upper)
    first = exts[0][0] if exts else upper
    return struct.pack("!IHBB16s16s", 6 << 28, len(e) + len(payload), first, 64, src, dst) + e + payload

def v6frag(src, dst, unfrag, seg, size, order="fwd"):
    i = next_ident()
    first = unfrag[0][0] if unfrag else 44
    pre = chain(unfrag, 44)  # the unfragmentable headers, the last naming the Fragment header
    out = []
    for off in range(0, len(seg), size):
        more = off + size < len(seg)
        fh = struct.pack("!BBHI", 6, 0, (off // 8) << 3 | int(more), i)
        body = pre + fh + seg[off:off + size]
        out.append(struct.pack("!IHBB16s16s", 6 << 28, len(body), first, 64, src, dst) + body)
    return out[::-1] if order == "rev" else out

HOP = (0, bytes([0, 1, 4, 0, 0, 0, 0]))
# An unknown option whose action bits say "skip" (RFC 8200 §4.2: 0x1e, RFC 3692's
# experimental type), then PadN: Linux refuses more than 7 bytes of padding (RFC 4942).
DEST = (60, bytes([1, 0x1e, 10]) + bytes(10) + bytes([1, 0]))
RT0 = (43, bytes([2, 0, 0]) + bytes(20))
SRH = (43, bytes([2, 4, 0, 0, 0, 0, 0]) + bytes(16))
ATOMIC = (44, bytes([0, 0, 0]) + struct.pack("!I", 77))

def send(pkts, v6, mac):
    proto = 0x86dd if v6 else 0x0800
    for p in pkts:
        s.sendto(p, (IF, proto, 0, 1, mac))

done = {}
end = time.time() + LIMIT
while time.time() < end:
    try:
        p, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] != 0: continue
    if addr[1] == 0x0800 and p[9] == 6:
        ihl = (p[0] & 15) * 4
        src, dst, t, v6p = p[12:16], p[16:20], p[ihl:], False
    elif addr[1] == 0x86dd and p[6] == 6:
        src, dst, t, v6p = p[8:24], p[24:40], p[40:], True
    else:
        continue
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", t[:14])
    if dport != PORT: continue
    n = len(t) - (off >> 4) * 4
    mac = addr[4]
    key = (src, sport)
    def out(seg, kind):
        if MODE == "v4overlap" and kind == "synack" and not v6p:
            # 8..16 comes twice with different neighbours: an overlap, not a duplicate.
            send(v4(dst, src, seg, cuts=[(0, 16), (8, 24), (24, len(seg))]), False, mac)
        elif MODE == "v6tiny" and kind == "synack" and v6p:
            # The first fragment holds 8 bytes of the TCP header (RFC 8200 §4.5 wants 20).
            send(v6frag(dst, src, [], seg, 8), True, mac)
        elif not v6p:
            size = {"synack": 8, "data": 552}.get(kind)
            order = "rev" if kind == "synack" else "fwd"
            send(v4(dst, src, seg, size, order, 1 if kind == "data" else None), False, mac)
        elif MODE == "v6frag" and kind in ("synack", "data"):
            size = 24 if kind == "synack" else 552
            send(v6frag(dst, src, [], seg, size, "rev" if kind == "synack" else "fwd"), True, mac)
        elif MODE == "v6ext" and kind == "synack":
            send([v6(dst, src, [HOP, DEST, RT0, ATOMIC], 6, seg)], True, mac)
        elif MODE == "v6ext" and kind == "data":
            send(v6frag(dst, src, [HOP, SRH], seg, 552), True, mac)
        elif MODE == "v6ext":
            send([v6(dst, src, [DEST], 6, seg)], True, mac)
        elif MODE == "v6longext" and kind == "data":
            send(v6frag(dst, src, [DEST] * 11, seg, 552), True, mac)
        elif MODE == "v6longext":
            send([v6(dst, src, [DEST] * 12, 6, seg)], True, mac)
        else:
            send([v6(dst, src, [], 6, seg)], True, mac)
    if flags & 0x04:
        done.pop(key, None)
        continue
    if flags & 0x02:
        opts = bytes([2, 4, 5, 0xb4, 1, 3, 3, 7])
        out(tcp(dst, src, PORT, sport, ISS, seq + 1, 0x12, opts), "synack")
        continue
    if n > 0:
        done[key] = seq + n
        out(tcp(dst, src, PORT, sport, ISS + 1, seq + n, 0x19, data=BODY), "data")
        continue
    if flags & 0x01:
        out(tcp(dst, src, PORT, sport, ISS + 2 + len(BODY), seq + 1, 0x10), "ack")
"#;

/// Starts the peer in `mode` with the server kernel kept out of port [`PORT`].
fn start_peer(lab: &mut Lab, mode: &str) {
    let table = format!(
        "table inet tsk_frag {{\n chain in {{\n  type filter hook input priority 0;\n  \
         tcp dport {PORT} drop\n }}\n}}\n"
    );
    let mut nft = in_ns(&lab.server_ns, "nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().expect("nft");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), table.as_bytes())
        .expect("nft script");
    assert!(child.wait().expect("nft").success());
    let mut cmd = in_ns(&lab.server_ns, "python3");
    cmd.args(["-c", PEER, lab::SERVER_IF, &PORT.to_string(), mode, "60"]);
    lab.spawn_ready(&format!("fragmenting peer ({mode})"), &mut cmd);
}

/// What the probe's JSON said about fragments: (flags, fragments) of each incoming segment.
fn incoming(json: &serde_json::Value) -> Vec<(String, u64)> {
    json["segments"]
        .as_array()
        .map(|segs| {
            segs.iter()
                .filter(|s| s["dir"] == "in")
                .map(|s| {
                    (
                        s["flags"].as_str().unwrap_or("").to_string(),
                        s["fragments"].as_u64().unwrap_or(1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One probe against the peer: open/syn-ack, the HTTP response complete, and the
/// fragment counts of the SYN-ACK and the response as `want` (flags → fragments);
/// `copies`: fragments the peer sent twice (in the capture, not in the counts).
fn probe_checks(lab: &Lab, v6: bool, want_synack: u64, want_response: u64, copies: u64) {
    let target = lab.target(v6, PORT);
    let pcap = lab.dir().join(format!("probe-{v6}.pcap"));
    let run = lab.run_client([
        "probe",
        &target,
        "--json",
        "--timeout",
        "3s",
        "--pcap",
        pcap.to_str().expect("utf-8 path"),
    ]);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON record ({e}):\n{run}"));
    let ctx = format!("{run}\n{}", lab.describe());
    assert_eq!(json["state"], "open", "{ctx}");
    assert_eq!(json["reason"], "syn-ack", "{ctx}");
    assert_eq!(json["http"]["status"], 200, "{ctx}");
    assert_eq!(json["http"]["headers"]["server"], "frag-peer", "{ctx}");
    assert_eq!(json["error"], serde_json::Value::Null, "{ctx}");
    assert_eq!(run.code, Some(0), "{ctx}");
    let anomalies = json["anomalies"].to_string();
    assert!(!anomalies.contains("checksum"), "{anomalies}\n{ctx}");
    let segs = incoming(&json);
    let synack = segs.iter().find(|(f, _)| f == "S.").expect("a SYN-ACK");
    assert_eq!(synack.1, want_synack, "SYN-ACK fragments\n{ctx}");
    let response = segs
        .iter()
        .find(|(f, _)| f.contains('P'))
        .expect("the response");
    assert_eq!(response.1, want_response, "response fragments\n{ctx}");
    // The text view shows them too.
    let text = lab.run_client(["probe", &target, "--timeout", "3s"]);
    assert!(
        text.stdout
            .contains(&format!("[{want_response} fragments]")),
        "{text}"
    );
    // --pcap keeps each fragment as it came (tcpdump's view): more packets than segments,
    // the copy of a fragment too (reassembly ignores it, as Linux's), in arrival order.
    let packets = lab::capture::read_pcap(&pcap).expect("pcap");
    let segments = json["segments"].as_array().map_or(0, Vec::len) as u64;
    let extra = (want_synack - 1) + (want_response - 1) + copies;
    assert_eq!(packets.len() as u64, segments + extra, "{ctx}");
    assert!(
        packets.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
        "{ctx}"
    );
}

/// The Linux client against the same peer: curl completes the exchange too.
fn curl_checks(lab: &Lab, v6: bool) {
    let (code, status) = lab.curl(&lab.url(v6, PORT, "/"), Duration::from_secs(5));
    assert_eq!(
        (code, status),
        (0, 200),
        "curl against the peer\n{}",
        lab.describe()
    );
}

lab_test! {
fn v4_fragmented_synack_and_response() {
    let mut lab = Lab::new("frag4");
    start_peer(&mut lab, "v4frag");
    // 28 bytes of SYN-ACK in 8-byte pieces; 1 320 bytes of response in 552-byte pieces,
    // the second one sent twice.
    probe_checks(&lab, false, 4, 3, 1);
    curl_checks(&lab, false);
}
}

lab_test! {
fn v6_fragmented_synack_and_response() {
    let mut lab = Lab::new("frag6");
    start_peer(&mut lab, "v6frag");
    probe_checks(&lab, true, 2, 3, 0);
    curl_checks(&lab, true);
}
}

lab_test! {
fn v6_extension_headers_on_synack_and_response() {
    let mut lab = Lab::new("ext6");
    start_peer(&mut lab, "v6ext");
    // The SYN-ACK's atomic fragment is a whole packet (RFC 6946): one "fragment".
    probe_checks(&lab, true, 1, 3, 0);
    // Linux accepts a segment routing header only where seg6 is enabled (ipv6_srh_rcv);
    // the type-0 routing header with segments left 0 it skips like RFC 8200 §4.4 says.
    for key in ["all", lab::CLIENT_IF] {
        run_ok(
            in_ns(&lab.client_ns, "sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{key}.seg6_enabled=1")]),
        );
    }
    curl_checks(&lab, true);
}
}

lab_test! {
/// A chain of extension headers longer than the tap's kernel walk is read like any other,
/// as the Linux client reads it (it was `filtered/no-response`: the filter dropped it).
fn v6_longer_extension_chains_than_the_kernel_filter_walks() {
    let mut lab = Lab::new("longext6");
    start_peer(&mut lab, "v6longext");
    probe_checks(&lab, true, 1, 3, 0);
    curl_checks(&lab, true);
}
}

lab_test! {
/// Fragments that Linux refuses, tcpshake refuses too: an IPv4 SYN-ACK whose fragments
/// overlap (RFC 5722; Linux since 4.19 for IPv4 as well) and an IPv6 one whose first
/// fragment stops inside the TCP header (RFC 8200 §4.5). Neither client connects; both
/// keep retrying the SYN, and tcpshake calls the port filtered, its record saying why.
fn fragments_linux_refuses_are_refused() {
    for (mode, v6) in [("v4overlap", false), ("v6tiny", true)] {
        let mut lab = Lab::new(&format!("fragbad-{mode}"));
        start_peer(&mut lab, mode);
        let (code, status) = lab.curl(&lab.url(v6, PORT, "/"), Duration::from_secs(2));
        assert_eq!((code, status), (28, 0), "{mode}: curl should time out");
        let pcap = lab.dir().join(format!("{mode}.pcap"));
        let run = lab.run_client([
            "probe",
            &lab.target(v6, PORT),
            "--json",
            "--retries",
            "1",
            "--rto",
            "300ms",
            "--pcap",
            pcap.to_str().expect("utf-8 path"),
        ]);
        let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{mode}: one JSON record ({e}):\n{run}"));
        assert_eq!(
            (&json["state"], &json["reason"]),
            (&"filtered".into(), &"no-response".into()),
            "{mode}\n{run}"
        );
        // The peer did answer, twice: nothing of it became a segment, but the record says
        // why (it said nothing: "filtered" with no trace of the answers).
        assert!(incoming(&json).is_empty(), "{mode}\n{run}");
        let why = if v6 { "it was malformed" } else { "it overlapped fragments" };
        let notes: Vec<&str> = json["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            !notes.is_empty()
                && notes.iter().all(|n| n.starts_with("a fragment from the server at ")
                    && n.contains(&format!("was dropped: {why}"))),
            "{mode}: {notes:?}\n{run}"
        );
        // The capture shows the answers as they came, as tcpdump would: our two SYNs
        // and every fragment the peer sent back (it said nothing came back).
        let packets = lab::capture::read_pcap(&pcap).expect("pcap");
        let fragments = if v6 { 2 * 4 } else { 2 * 3 };
        assert_eq!(packets.len(), 2 + fragments, "{mode}\n{run}");
    }
}
}

lab_test! {
/// A survey's loop (one tap for every probe, packets demultiplexed by port) reassembles
/// too: every probe's record shows the fragmented SYN-ACK and response.
fn survey_sees_fragmented_responses() {
    let mut lab = Lab::new("fragsurvey");
    start_peer(&mut lab, "v4frag");
    let run = lab.run_client([
        "probe",
        &lab.target(false, PORT),
        &lab.target(true, PORT),
        "-c",
        "2",
        "-o",
        "jsonl",
        "-q",
        "--timeout",
        "3s",
    ]);
    let records: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(records.len(), 4, "{run}");
    for r in &records {
        assert_eq!(
            (&r["state"], &r["http"]["status"]),
            (&"open".into(), &200.into()),
            "{run}"
        );
        let segs = incoming(r);
        // The v4frag peer answers IPv6 unfragmented.
        let want = if r["addr"].as_str().is_some_and(|a| a.contains(':')) {
            (1, 1)
        } else {
            (4, 3)
        };
        let synack = segs.iter().find(|(f, _)| f == "S.").map(|s| s.1);
        let response = segs.iter().find(|(f, _)| f.contains('P')).map(|s| s.1);
        assert_eq!((synack, response), (Some(want.0), Some(want.1)), "{run}");
    }
}
}

lab_test! {
/// `tcpshake scan` reads a fragmented SYN-ACK (IPv4) and one behind extension headers and
/// a fragment header (IPv6), however many, as open ports.
fn scan_sees_fragmented_synacks() {
    for (mode, v6) in [
        ("v4frag", false),
        ("v6frag", true),
        ("v6ext", true),
        ("v6longext", true),
    ] {
        let mut lab = Lab::new(&format!("fragscan-{mode}"));
        start_peer(&mut lab, mode);
        let addr = lab.server_addr(v6).to_string();
        let run = lab.run_client_bounded(
            [
                "scan",
                &addr,
                "-p",
                &PORT.to_string(),
                "--json",
                "--wait",
                "500ms",
            ],
            Duration::from_secs(30),
        );
        let line = run.stdout.lines().next().unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{mode}: {e}\n{run}"));
        assert_eq!(
            (&json["state"], &json["reason"]),
            (&"open".into(), &"syn-ack".into()),
            "{mode}\n{run}"
        );
        assert!(json["rtt_ns"].as_u64().is_some(), "{mode}\n{run}");
    }
}
}

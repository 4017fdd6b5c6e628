//! tcpdump captures in the client namespace, and a small pcap reader.
//!
//! Timestamps are compared to the nanosecond, so the capture is written with
//! `--time-stamp-precision nano` and read back here rather than through tshark's text output
//! (which formats, and may round, the time). The reader never panics on a damaged file: a
//! truncated record ends the list, an unknown packet becomes `L4::Other`.

use super::{CLIENT_IF, Lab, in_ns, signal, wait_bounded};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// A running tcpdump; `stop` ends it and reads the file.
#[derive(Debug)]
pub struct Capture {
    pub path: PathBuf,
    pid: u32,
}

impl Lab {
    /// Starts tcpdump on the client's veth and returns once it is capturing.
    pub fn start_capture(&mut self, name: &str) -> Capture {
        let path = self.dir().join(format!("{name}.pcap"));
        let mut cmd = in_ns(&self.client_ns, "tcpdump");
        // -U with -w: write each packet as it arrives, so a SIGTERM loses nothing.
        // --immediate-mode: no buffering in libpcap either. -n: no DNS lookups ever.
        // -s/-B: in immediate mode libpcap cuts its 2 MiB buffer into frames of the snap
        // length, 256 KiB by default, so 8 frames: a survey's burst (64 SYNs in one
        // sendmmsg) overflowed it and tcpdump dropped packets ("dropped by kernel").
        cmd.args(["-n", "-i", CLIENT_IF, "-s", "65535", "-B", "65536", "-w"])
            .arg(&path)
            .args(["--immediate-mode", "--time-stamp-precision", "nano", "-U"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let pid = self.spawn_owned("tcpdump", &mut cmd);
        let stderr = self
            .children
            .iter_mut()
            .find(|o| o.child.id() == pid)
            .and_then(|o| o.child.stderr.take())
            .expect("tcpdump stderr");
        // tcpdump says "listening on …" once the capture is active; keep draining stderr
        // afterwards so tcpdump never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut said = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => said.push(line),
                Err(_) => panic!(
                    "tcpdump did not start capturing: {said:?}\n{}",
                    self.describe()
                ),
            }
        }
        // The brief settle time lets the socket's ring see traffic from the very first
        // packet on, whatever libpcap still does after printing.
        std::thread::sleep(Duration::from_millis(300));
        Capture { path, pid }
    }

    /// Stops tcpdump (SIGTERM by pid, so it closes the file cleanly) and reads the capture.
    pub fn stop_capture(&mut self, cap: &Capture) -> Vec<Packet> {
        // Let the last packets reach the ring before tcpdump goes.
        std::thread::sleep(Duration::from_millis(200));
        signal(cap.pid, "TERM");
        if let Some(i) = self.children.iter().position(|o| o.child.id() == cap.pid) {
            let mut o = self.children.remove(i);
            assert!(
                wait_bounded(&mut o.child, Duration::from_secs(5)),
                "tcpdump did not stop on SIGTERM"
            );
        }
        read_pcap(&cap.path).unwrap_or_else(|e| panic!("cannot read {:?}: {e}", cap.path))
    }
}

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Nanoseconds since the epoch, as the capture recorded them.
    pub ts_ns: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub l4: L4,
    /// The whole IP packet as captured.
    pub ip: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpSeg),
    /// ICMP or ICMPv6 (`v6`), with its type and code.
    Icmp {
        v6: bool,
        kind: u8,
        code: u8,
    },
    /// Any other IP protocol number (or a fragment we do not reassemble).
    Other(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSeg {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Byte 13 of the header: CWR ECE URG ACK PSH RST SYN FIN.
    pub flags: u8,
    pub win: u16,
    /// Payload length.
    pub len: u32,
    pub options: Vec<u8>,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

impl TcpSeg {
    /// Flags as tcpdump prints them: F S R P, then "." for ACK, then U E W
    /// (tcpdump's `tcp_flag_values` order), e.g. "S", "S.", "P.", "FP.", "R.".
    pub fn flags_str(&self) -> String {
        flags_str(self.flags)
    }
}

pub fn flags_str(flags: u8) -> String {
    let table = [
        (FIN, 'F'),
        (SYN, 'S'),
        (RST, 'R'),
        (PSH, 'P'),
        (ACK, '.'),
        (URG, 'U'),
        (ECE, 'E'),
        (CWR, 'W'),
    ];
    let s: String = table
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() { "none".to_string() } else { s }
}

impl Packet {
    pub fn tcp(&self) -> Option<&TcpSeg> {
        match &self.l4 {
            L4::Tcp(t) => Some(t),
            _ => None,
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a classic pcap file (µs or ns, either byte order).
pub fn read_pcap(path: &Path) -> Result<Vec<Packet>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let (records, linktype) = pcap_records(&data)?;
    Ok(records
        .into_iter()
        .filter_map(|(ts_ns, frame)| decode_frame(linktype, frame).map(|p| Packet { ts_ns, ..p }))
        .collect())
}

/// The link type of a pcap file.
pub fn pcap_linktype(path: &Path) -> Result<u32, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok(pcap_records(&data)?.1)
}

/// True when the file is a nanosecond pcap (magic a1b23c4d in either byte order).
pub fn pcap_is_nanosecond(path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    match data.get(0..4) {
        Some([0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]) => Ok(true),
        Some(_) => Ok(false),
        None => Err("empty file".into()),
    }
}

type Records<'a> = (Vec<(u64, &'a [u8])>, u32);

fn pcap_records(data: &[u8]) -> Result<Records<'_>, String> {
    let magic = data.get(0..4).ok_or("no pcap header")?;
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return Err(format!("not a classic pcap file (magic {magic:02x?})")),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let linktype = u32_at(20).ok_or("short pcap header")?;
    let mut out = Vec::new();
    let mut at = 24;
    while let (Some(sec), Some(frac), Some(incl)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8)) {
        let start = at + 16;
        let Some(frame) = data.get(start..start + incl as usize) else {
            break;
        };
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        out.push((u64::from(sec) * 1_000_000_000 + frac_ns, frame));
        at = start + incl as usize;
    }
    Ok((out, linktype))
}

/// Decodes one frame; `ts_ns` is filled in by the caller.
fn decode_frame(linktype: u32, frame: &[u8]) -> Option<Packet> {
    let ip = match linktype {
        // LINKTYPE_ETHERNET, with 802.1Q tags skipped.
        1 => {
            let mut off = 12;
            let mut ethertype = be16(frame, off)?;
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                off += 4;
                ethertype = be16(frame, off)?;
            }
            if ethertype != 0x0800 && ethertype != 0x86dd {
                return None;
            }
            frame.get(off + 2..)?
        }
        // LINKTYPE_RAW (and its old DLT numbers), LINKTYPE_IPV4, LINKTYPE_IPV6.
        101 | 12 | 14 | 228 | 229 => frame,
        // LINKTYPE_LINUX_SLL (16-byte header) and LINUX_SLL2 (20 bytes).
        113 => frame.get(16..)?,
        276 => frame.get(20..)?,
        _ => return None,
    };
    decode_ip(ip)
}

fn decode_ip(ip: &[u8]) -> Option<Packet> {
    let version = ip.first()? >> 4;
    let (src, dst, ttl, mut proto, payload) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?).min(ip.len());
            let frag = be16(ip, 6)? & 0x3fff;
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let proto = if frag != 0 { 0xff } else { *ip.get(9)? };
            (
                IpAddr::from(Ipv4Addr::from(src)),
                IpAddr::from(Ipv4Addr::from(dst)),
                *ip.get(8)?,
                proto,
                ip.get(ihl..total)?,
            )
        }
        6 => {
            let len = usize::from(be16(ip, 4)?);
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let end = (40 + len).min(ip.len());
            (
                IpAddr::from(Ipv6Addr::from(src)),
                IpAddr::from(Ipv6Addr::from(dst)),
                *ip.get(7)?,
                *ip.get(6)?,
                ip.get(40..end)?,
            )
        }
        _ => return None,
    };
    let mut payload = payload;
    // IPv6 extension headers that may precede TCP (RFC 8200 §4): hop-by-hop, routing,
    // destination options. A fragment header (44) is left as Other.
    while version == 6 && matches!(proto, 0 | 43 | 60) {
        let next = *payload.first()?;
        let len = (usize::from(*payload.get(1)?) + 1) * 8;
        payload = payload.get(len..)?;
        proto = next;
    }
    let l4 = match proto {
        6 => {
            let doff = usize::from(payload.get(12)? >> 4) * 4;
            L4::Tcp(TcpSeg {
                sport: be16(payload, 0)?,
                dport: be16(payload, 2)?,
                seq: be32(payload, 4)?,
                ack: be32(payload, 8)?,
                flags: *payload.get(13)?,
                win: be16(payload, 14)?,
                len: u32::try_from(payload.len().checked_sub(doff)?).ok()?,
                options: payload.get(20..doff)?.to_vec(),
            })
        }
        1 | 58 => L4::Icmp {
            v6: proto == 58,
            kind: *payload.first()?,
            code: *payload.get(1)?,
        },
        p => L4::Other(p),
    };
    Some(Packet {
        ts_ns: 0,
        src,
        dst,
        ttl,
        l4,
        ip: ip.to_vec(),
    })
}

/// Lines of `tshark -r FILE -q -z expert,<severity>[,filter]` that report problems.
/// Returns the whole report and the count of Error/Warning entries in it.
pub fn tshark_expert(path: &Path, filter: &str) -> (String, usize) {
    let mut spec = String::from("expert,warn");
    if !filter.is_empty() {
        spec.push(',');
        spec.push_str(filter);
    }
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-n", "-q", "-z", &spec])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run tshark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tshark failed on {path:?}:\n{text}");
    // Section headers look like "Errors (2)" / "Warns (1)"; sum their counts.
    let count = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("Errors (")
                .or_else(|| l.strip_prefix("Warns ("))?;
            rest.strip_suffix(')')?.parse::<usize>().ok()
        })
        .sum();
    (text, count)
}

/// [`tshark_expert`], less the items whose summary contains one of `tolerated`, `cap` of
/// them at most: for an exchange where Linux's own client draws the same heuristics from
/// tshark on the same wire (a re-cut retransmission reads as "out-of-order" when it follows
/// the original sooner than the handshake's round trip), as many as the exchange can
/// explain — more would be something else under the same words.
pub fn tshark_expert_tolerating(
    path: &Path,
    filter: &str,
    tolerated: &[&str],
    cap: usize,
) -> (String, usize) {
    let (text, count) = tshark_expert(path, filter);
    // Item lines: "<frequency>  <group>  <protocol>  <summary>".
    let forgiven: usize = text
        .lines()
        .filter(|l| tolerated.iter().any(|t| l.contains(t)))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    (text, count.saturating_sub(forgiven.min(cap)))
}

/// `tshark -r FILE [-Y FILTER] -T fields -e F…`: one row per frame, one string per field.
/// No preference is given and tshark reads no profile of the user's (an empty
/// WIRESHARK_CONFIG_DIR), so whatever it decrypts, it decrypts with what the file holds.
pub fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let empty = std::env::temp_dir().join(format!("tsk-{}-wireshark", std::process::id()));
    let _ = std::fs::create_dir_all(&empty);
    let mut cmd = std::process::Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", &empty)
        .env_remove("SSLKEYLOGFILE")
        .arg("-r")
        .arg(path)
        .args(["-n", "-T", "fields", "-E", "separator=\t"]);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("cannot run tshark");
    assert!(
        out.status.success(),
        "tshark -r {path:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// `capinfos -o FILE` (the summary, with "Strict time order: True|False").
pub fn capinfos(path: &Path) -> String {
    let out = std::process::Command::new("capinfos")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run capinfos (apt install wireshark-common)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "capinfos {path:?}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// capinfos' value for `key` ("Strict time order", "Number of packets"…).
pub fn capinfo<'a>(info: &'a str, key: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("capinfos says nothing of {key:?}:\n{info}"))
}

//! Packets built and read by hand, independently of tcpshake's `wire` module, so the
//! harness does not share its bugs: Ethernet, IPv4 (with fragments), IPv6 (with extension
//! headers and fragments), TCP with raw option bytes, ICMP and ICMPv6 errors.
//!
//! Building never fails: a script may ask for any bytes, malformed ones included. Parsing
//! checks every length before it reads and returns `None` for what is not a well-formed
//! TCP segment from the client.

use std::net::IpAddr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// TCP flag bits, in header order.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// tcpdump's / packetdrill's spelling: `S.`, `P.`, `F.`, `R`, `.`.
pub fn flags_str(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (SYN, 'S'),
        (FIN, 'F'),
        (RST, 'R'),
        (PSH, 'P'),
        (URG, 'U'),
        (ECE, 'E'),
        (CWR, 'W'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & ACK != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// The Internet checksum (RFC 1071) over `data`, starting from `sum`.
fn fold(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of an upper-layer payload with its IPv4 or IPv6 pseudo header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, data: &[u8]) -> u16 {
    let mut sum = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = fold(sum, &s.octets());
            sum = fold(sum, &d.octets());
            sum += u32::from(proto) + data.len() as u32;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum = fold(sum, &s.octets());
            sum = fold(sum, &d.octets());
            sum += data.len() as u32 + u32::from(proto);
        }
        _ => panic!("mixed address families {src} → {dst}"),
    }
    finish(fold(sum, data))
}

/// One TCP segment as the peer sends it.
#[derive(Clone, Debug, Default)]
pub struct TcpOut {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    pub urg: u16,
    /// Option bytes exactly as the script wrote them; [`pad_options`] pads them to a
    /// multiple of four with EOL (zero) bytes when the segment is built.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// Write a wrong checksum on purpose.
    pub bad_checksum: bool,
}

/// Options padded with zero bytes (EOL) to a multiple of four, as RFC 9293 §3.1 lays
/// them out.
pub fn pad_options(mut o: Vec<u8>) -> Vec<u8> {
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    o
}

impl TcpOut {
    pub fn bytes(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let options = pad_options(self.options.clone());
        let hlen = 20 + options.len();
        let mut b = Vec::with_capacity(hlen + self.payload.len());
        b.extend_from_slice(&self.src_port.to_be_bytes());
        b.extend_from_slice(&self.dst_port.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ack.to_be_bytes());
        b.push(((hlen / 4) as u8) << 4);
        b.push(self.flags);
        b.extend_from_slice(&self.win.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.urg.to_be_bytes());
        b.extend_from_slice(&options);
        b.extend_from_slice(&self.payload);
        let mut sum = l4_checksum(src, dst, PROTO_TCP, &b);
        if self.bad_checksum {
            sum ^= 0x5a5a;
        }
        b[16..18].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The IP layer of one packet the peer sends.
#[derive(Clone, Debug)]
pub struct IpOut {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ttl: u8,
    pub ident: u32,
    pub dont_fragment: bool,
    pub tos: u8,
    /// IPv6 extension headers before the upper layer, in order.
    pub ext: Vec<ExtHeader>,
    pub frag: Option<Frag>,
}

/// IPv6 extension headers a script can put in front of the segment (RFC 8200 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Hop-by-hop options with one PadN option (RFC 8200 §4.3).
    HopByHop,
    /// Destination options with one PadN option (RFC 8200 §4.6).
    DestOpts,
    /// A routing header of `rtype` with Segments Left 0: a node ignores it and goes on to
    /// the next header (RFC 8200 §4.4).
    Routing { rtype: u8 },
    /// A fragment header of a whole datagram: offset 0, M = 0 (RFC 6946).
    AtomicFragment,
}

impl ExtHeader {
    fn number(self) -> u8 {
        match self {
            ExtHeader::HopByHop => 0,
            ExtHeader::DestOpts => 60,
            ExtHeader::Routing { .. } => 43,
            ExtHeader::AtomicFragment => 44,
        }
    }

    fn bytes(self, next: u8, ident: u32) -> Vec<u8> {
        match self {
            // Next header, length 0 (8 bytes), PadN of 4 bytes of data.
            ExtHeader::HopByHop | ExtHeader::DestOpts => vec![next, 0, 1, 4, 0, 0, 0, 0],
            ExtHeader::Routing { rtype } => vec![next, 0, rtype, 0, 0, 0, 0, 0],
            ExtHeader::AtomicFragment => {
                let mut b = vec![next, 0, 0, 0];
                b.extend_from_slice(&ident.to_be_bytes());
                b
            }
        }
    }
}

/// How a datagram is cut into fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag {
    /// Bytes of the fragmentable part per fragment (a multiple of 8 but for the last).
    pub size: usize,
    /// Send the fragments last first.
    pub reverse: bool,
}

/// The packets (IP datagrams or fragments) that carry `payload`.
pub fn ip_packets(ip: &IpOut, payload: &[u8]) -> Vec<Vec<u8>> {
    match ip.src {
        IpAddr::V4(_) => ipv4_packets(ip, payload),
        IpAddr::V6(_) => ipv6_packets(ip, payload),
    }
}

fn ipv4_header(ip: &IpOut, payload_len: usize, frag_field: u16) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip.src, ip.dst) else {
        panic!("IPv4 header for {:?}", ip.src);
    };
    let mut h = Vec::with_capacity(20);
    h.push(0x45);
    h.push(ip.tos);
    h.extend_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&(ip.ident as u16).to_be_bytes());
    h.extend_from_slice(&frag_field.to_be_bytes());
    h.push(ip.ttl);
    h.push(ip.proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    let sum = finish(fold(0, &h));
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

fn ipv4_packets(ip: &IpOut, payload: &[u8]) -> Vec<Vec<u8>> {
    let df = if ip.dont_fragment { 0x4000 } else { 0 };
    let Some(frag) = ip.frag else {
        let mut p = ipv4_header(ip, payload.len(), df);
        p.extend_from_slice(payload);
        return vec![p];
    };
    let size = frag.size.max(8) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + size).min(payload.len());
        let more = if end < payload.len() { 0x2000 } else { 0 };
        let field = more | (off / 8) as u16;
        let mut p = ipv4_header(ip, end - off, field);
        p.extend_from_slice(&payload[off..end]);
        out.push(p);
        off = end;
    }
    if frag.reverse {
        out.reverse();
    }
    out
}

fn ipv6_header(ip: &IpOut, next: u8, payload_len: usize) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip.src, ip.dst) else {
        panic!("IPv6 header for {:?}", ip.src);
    };
    let mut h = Vec::with_capacity(40);
    let vtf = (6u32 << 28) | (u32::from(ip.tos) << 20);
    h.extend_from_slice(&vtf.to_be_bytes());
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.push(next);
    h.push(ip.ttl);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    h
}

fn ipv6_packets(ip: &IpOut, payload: &[u8]) -> Vec<Vec<u8>> {
    // The chain of extension headers, each naming the next; the last names the payload.
    let mut chain = Vec::new();
    let mut next = ip.proto;
    for h in ip.ext.iter().rev() {
        let mut b = h.bytes(next, ip.ident);
        b.extend_from_slice(&chain);
        chain = b;
        next = h.number();
    }
    let first = next;
    let Some(frag) = ip.frag else {
        let mut p = ipv6_header(ip, first, chain.len() + payload.len());
        p.extend_from_slice(&chain);
        p.extend_from_slice(payload);
        return vec![p];
    };
    // Fragmented: the extension headers above form the fragmentable part with the payload
    // (RFC 8200 §4.5 puts hop-by-hop and routing before the fragment header; scripts that
    // fragment use none of those).
    let mut whole = chain;
    whole.extend_from_slice(payload);
    let size = frag.size.max(8) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < whole.len() {
        let end = (off + size).min(whole.len());
        let more = u16::from(end < whole.len());
        let field = ((off / 8) as u16) << 3 | more;
        let mut fh = vec![first, 0];
        fh.extend_from_slice(&field.to_be_bytes());
        fh.extend_from_slice(&ip.ident.to_be_bytes());
        let mut p = ipv6_header(ip, 44, 8 + end - off);
        p.extend_from_slice(&fh);
        p.extend_from_slice(&whole[off..end]);
        out.push(p);
        off = end;
    }
    if frag.reverse {
        out.reverse();
    }
    out
}

/// An ICMP (v4) or ICMPv6 message: type, code, the 4 bytes after the checksum, and the
/// quoted invoking packet.
pub fn icmp_bytes(
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut b = vec![icmp_type, code, 0, 0];
    b.extend_from_slice(&rest.to_be_bytes());
    b.extend_from_slice(quoted);
    let sum = if v6 {
        l4_checksum(src, dst, PROTO_ICMPV6, &b)
    } else {
        finish(fold(0, &b))
    };
    b[2..4].copy_from_slice(&sum.to_be_bytes());
    b
}

/// An Ethernet frame.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A TCP option as read from the client's segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    Nop,
    Eol,
    Mss(u16),
    Wscale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Ts(u32, u32),
    Other(u8, Vec<u8>),
}

/// A TCP segment the client sent, as the peer read it.
#[derive(Clone, Debug)]
pub struct TcpIn {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4's don't-fragment bit (true for IPv6, which routers never fragment).
    pub dont_fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    pub urg: u16,
    pub options: Vec<Opt>,
    pub payload: Vec<u8>,
    pub checksum_ok: bool,
}

impl TcpIn {
    pub fn ts(&self) -> Option<(u32, u32)> {
        self.options.iter().find_map(|o| match o {
            Opt::Ts(v, e) => Some((*v, *e)),
            _ => None,
        })
    }
}

fn parse_options(mut b: &[u8]) -> Vec<Opt> {
    let mut out = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => {
                out.push(Opt::Eol);
                break;
            }
            1 => {
                out.push(Opt::Nop);
                b = &b[1..];
            }
            _ => {
                let Some(&len) = b.get(1) else {
                    out.push(Opt::Other(kind, b.to_vec()));
                    break;
                };
                let len = usize::from(len);
                let Some(body) = b.get(2..len.max(2)) else {
                    out.push(Opt::Other(kind, b.to_vec()));
                    break;
                };
                let be16 = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
                let be32 =
                    |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
                out.push(match (kind, body.len()) {
                    (2, 2) => Opt::Mss(be16(0)),
                    (3, 1) => Opt::Wscale(body[0]),
                    (4, 0) => Opt::SackOk,
                    (5, n) if n % 8 == 0 => {
                        Opt::Sack((0..n / 8).map(|i| (be32(8 * i), be32(8 * i + 4))).collect())
                    }
                    (8, 8) => Opt::Ts(be32(0), be32(4)),
                    _ => Opt::Other(kind, body.to_vec()),
                });
                b = &b[len.max(2)..];
            }
        }
    }
    out
}

/// A client's TCP segment inside an Ethernet frame; `None` for anything else (ARP,
/// neighbour discovery, the peer's own frames).
pub fn parse_frame(frame: &[u8]) -> Option<TcpIn> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (src, dst, df, proto, l4) = match ethertype {
        ETH_P_IP => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                frag & 0x4000 != 0,
                ip[9],
                ip.get(ihl..total)?,
            )
        }
        ETH_P_IPV6 => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                true,
                ip[6],
                ip.get(40..40 + plen)?,
            )
        }
        _ => return None,
    };
    if proto != PROTO_TCP {
        return None;
    }
    let hlen = usize::from(l4.get(12)? >> 4) * 4;
    if hlen < 20 || hlen > l4.len() {
        return None;
    }
    let be16 = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
    Some(TcpIn {
        src,
        dst,
        dont_fragment: df,
        src_port: be16(0),
        dst_port: be16(2),
        seq: be32(4),
        ack: be32(8),
        flags: l4[13],
        win: be16(14),
        urg: be16(18),
        options: parse_options(&l4[20..hlen]),
        payload: l4[hlen..].to_vec(),
        checksum_ok: l4_checksum(src, dst, PROTO_TCP, l4) == 0,
    })
}

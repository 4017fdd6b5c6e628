//! TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

use super::checksum;
use super::ip::{PROTO_TCP, same_family};
use super::{Error, Result, SeqNumber};
use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};
use std::fmt;
use std::net::IpAddr;

/// The fixed header (RFC 9293 §3.1).
pub const TCP_HEADER_LEN: usize = 20;
/// Data offset is 4 bits of 32-bit words.
pub const MAX_TCP_HEADER_LEN: usize = 60;

/// The flag bits of a TCP header (low 9 bits of bytes 12–13: NS, CWR, ECE, URG, ACK, PSH,
/// RST, SYN, FIN).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x001);
    pub const SYN: TcpFlags = TcpFlags(0x002);
    pub const RST: TcpFlags = TcpFlags(0x004);
    pub const PSH: TcpFlags = TcpFlags(0x008);
    pub const ACK: TcpFlags = TcpFlags(0x010);
    pub const URG: TcpFlags = TcpFlags(0x020);
    pub const ECE: TcpFlags = TcpFlags(0x040);
    pub const CWR: TcpFlags = TcpFlags(0x080);
    pub const NS: TcpFlags = TcpFlags(0x100);

    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// All nine defined bits, for masking.
    pub const ALL: TcpFlags = TcpFlags(0x1ff);
}

/// tcpdump's notation: `S`, `S.`, `F.`, `FP.`, `R`, `R.`, `P.`, `.`; `none` when no bit is
/// set. Letters in tcpdump's order (F S R P . U E W e), `.` standing for ACK and `e` for
/// the NS/AE bit.
/// tcpdump's letter for each flag, in its order.
const FLAG_LETTERS: [(TcpFlags, char); 9] = [
    (TcpFlags::FIN, 'F'),
    (TcpFlags::SYN, 'S'),
    (TcpFlags::RST, 'R'),
    (TcpFlags::PSH, 'P'),
    (TcpFlags::ACK, '.'),
    (TcpFlags::URG, 'U'),
    (TcpFlags::ECE, 'E'),
    (TcpFlags::CWR, 'W'),
    (TcpFlags::NS, 'e'),
];

impl TcpFlags {
    /// The flags spelled as `Display` writes them (`S.`, `FP.`, `none`).
    pub fn from_letters(s: &str) -> Option<TcpFlags> {
        if s == "none" {
            return Some(TcpFlags(0));
        }
        let mut f = TcpFlags(0);
        for c in s.chars() {
            let (flag, _) = FLAG_LETTERS.iter().find(|(_, l)| *l == c)?;
            f = f | *flag;
        }
        (!s.is_empty()).then_some(f)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 & TcpFlags::ALL.0 == 0 {
            return f.write_str("none");
        }
        for (flag, letter) in FLAG_LETTERS {
            if self.contains(flag) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | o.0)
    }
}

pub use super::options::{MAX_MALFORMED_OPTIONS, MAX_SACK_BLOCKS, MAX_UNKNOWN_OPTIONS, TcpOptions};

/// A parsed or to-be-emitted TCP segment. `payload` borrows from the packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parse a TCP segment carried between `src` and `dst`, verifying the checksum over the
    /// pseudo-header. A bad checksum gives `Err(Error::BadChecksum)`; use
    /// [`TcpRepr::parse_unchecked`] to look at such a segment anyway.
    pub fn parse(bytes: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<TcpRepr<'a>> {
        // Length errors first: a cut segment would fail the checksum too, and "truncated"
        // is the truer report.
        checked_header_len(bytes)?;
        if !same_family(src, dst) {
            return Err(Error::Unsupported);
        }
        if !checksum::verify_upper_layer(src, dst, PROTO_TCP, bytes) {
            return Err(Error::BadChecksum);
        }
        Self::parse_unchecked(bytes)
    }

    /// Parse without verifying the checksum.
    pub fn parse_unchecked(bytes: &'a [u8]) -> Result<TcpRepr<'a>> {
        let header_len = checked_header_len(bytes)?;
        // checked_header_len made sure 20 ≤ header_len ≤ bytes.len().
        let pkt = TcpPacket::new(bytes).ok_or(Error::Truncated)?;
        let options = TcpOptions::parse(bytes.get(TCP_HEADER_LEN..header_len).unwrap_or(&[]));
        // pnet splits byte 12 into data offset and a 4-bit "reserved" whose lowest bit is
        // NS (RFC 3540, now AE); byte 13 holds the other eight flags.
        let ns = u16::from(pkt.get_reserved() & 1) << 8;
        Ok(TcpRepr {
            src_port: pkt.get_source(),
            dst_port: pkt.get_destination(),
            seq: SeqNumber(pkt.get_sequence()),
            ack: SeqNumber(pkt.get_acknowledgement()),
            flags: TcpFlags(ns | u16::from(pkt.get_flags())),
            window: pkt.get_window(),
            urgent: pkt.get_urgent_ptr(),
            options,
            payload: bytes.get(header_len..).unwrap_or(&[]),
        })
    }

    /// Header length including options, padded to 4 bytes.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.emitted_len()
    }

    /// Header + payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Write header, options and payload into `buf` (at least `buffer_len()` bytes) with a
    /// correct checksum for `src`→`dst`. Returns the number of bytes written.
    /// `Err(Unsupported)` for mixed address families, `Err(Truncated)` if `buf` is too
    /// short, `Err(BadLength)` if the segment does not fit a 16-bit IP length.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, buf: &mut [u8]) -> Result<usize> {
        if !same_family(src, dst) {
            return Err(Error::Unsupported);
        }
        let header_len = self.header_len();
        let total = header_len + self.payload.len();
        if total > usize::from(u16::MAX) {
            return Err(Error::BadLength);
        }
        let seg = buf.get_mut(..total).ok_or(Error::Truncated)?;
        let (header, payload) = seg.split_at_mut(header_len);
        self.options
            .emit(header.get_mut(TCP_HEADER_LEN..).unwrap_or(&mut []))?;
        payload.copy_from_slice(self.payload);
        let mut pkt = MutableTcpPacket::new(header).ok_or(Error::Truncated)?;
        pkt.set_source(self.src_port);
        pkt.set_destination(self.dst_port);
        pkt.set_sequence(self.seq.0);
        pkt.set_acknowledgement(self.ack.0);
        // header_len ≤ 60, so the word count fits the 4-bit field.
        pkt.set_data_offset((header_len / 4) as u8);
        pkt.set_reserved(((self.flags.0 >> 8) & 1) as u8);
        pkt.set_flags(self.flags.0 as u8);
        pkt.set_window(self.window);
        pkt.set_checksum(0);
        pkt.set_urgent_ptr(self.urgent);
        let sum = checksum::upper_layer_checksum(src, dst, PROTO_TCP, seg);
        seg[16..18].copy_from_slice(&sum.to_be_bytes());
        Ok(total)
    }

    /// Sequence space this segment occupies: payload length, plus one each for SYN and FIN.
    pub fn segment_len(&self) -> u32 {
        self.payload.len() as u32 + self.flags.syn() as u32 + self.flags.fin() as u32
    }
}

/// The header length from the data offset, checked against the bytes we have.
fn checked_header_len(bytes: &[u8]) -> Result<usize> {
    let offset_byte = *bytes.get(12).ok_or(Error::Truncated)?;
    if bytes.len() < TCP_HEADER_LEN {
        return Err(Error::Truncated);
    }
    // RFC 9293 §3.1: data offset in 32-bit words, at least 5.
    let header_len = usize::from(offset_byte >> 4) * 4;
    if header_len < TCP_HEADER_LEN {
        return Err(Error::BadLength);
    }
    if header_len > bytes.len() {
        return Err(Error::Truncated);
    }
    Ok(header_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::IpPacket;
    use crate::wire::testdata::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

    fn full_syn_options(tsval: u32, mss: u16, shift: u8) -> TcpOptions {
        TcpOptions::default()
            .with_mss(mss)
            .with_sack_permitted()
            .with_timestamps(tsval, 0)
            .with_wscale(shift)
    }

    fn syn(
        src_port: u16,
        dst_port: u16,
        seq: u32,
        window: u16,
        options: TcpOptions,
    ) -> TcpRepr<'static> {
        TcpRepr {
            src_port,
            dst_port,
            seq: SeqNumber(seq),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window,
            urgent: 0,
            options,
            payload: &[],
        }
    }

    /// Parse a whole IP packet and its TCP segment, checksums verified.
    fn parse_ip_tcp(bytes: &[u8]) -> (IpPacket<'_>, TcpRepr<'_>) {
        let ip = IpPacket::parse(bytes).unwrap();
        let tcp = TcpRepr::parse(ip.payload, ip.ip.src, ip.ip.dst).unwrap();
        (ip, tcp)
    }

    #[test]
    fn brief_syn_parses_and_reemits_identically() {
        let (ip, tcp) = parse_ip_tcp(&SYN_1460_V4);
        let expected = syn(
            40000,
            80,
            0x1234_5678,
            64240,
            full_syn_options(0xdead_beef, 1460, 7),
        );
        assert_eq!(tcp, expected);
        assert_eq!(tcp.header_len(), 40);
        let mut out = [0u8; 40];
        assert_eq!(expected.emit(ip.ip.src, ip.ip.dst, &mut out), Ok(40));
        assert_eq!(out[..], SYN_1460_V4[20..]);
    }

    #[test]
    fn linux_syn_and_rst_v4() {
        let (ip, tcp) = parse_ip_tcp(&LINUX_SYN_V4);
        assert_eq!(ip.ip.src, A4);
        let expected = syn(
            47814,
            8081,
            3_918_855_039,
            65495,
            full_syn_options(1_577_634_714, 65495, 10),
        );
        assert_eq!(tcp, expected);
        assert_eq!(tcp.flags.to_string(), "S");
        // Our layout is Linux's: re-emitting gives the kernel's bytes.
        let mut out = [0u8; 40];
        expected.emit(ip.ip.src, ip.ip.dst, &mut out).unwrap();
        assert_eq!(out[..], LINUX_SYN_V4[20..]);

        let (_, rst) = parse_ip_tcp(&LINUX_RST_ACK_V4);
        assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
        assert_eq!(rst.flags.to_string(), "R.");
        assert_eq!(rst.ack, tcp.seq.add(tcp.segment_len()));
        assert_eq!(rst.window, 0);
        assert_eq!(rst.options, TcpOptions::default());
    }

    #[test]
    fn linux_syn_and_rst_v6() {
        let (ip, tcp) = parse_ip_tcp(&LINUX_SYN_V6);
        assert_eq!(ip.ip.protocol, PROTO_TCP);
        let expected = syn(
            48256,
            8081,
            334_714_573,
            65476,
            full_syn_options(2_827_319_564, 65476, 10),
        );
        assert_eq!(tcp, expected);
        let mut out = [0u8; 40];
        expected.emit(ip.ip.src, ip.ip.dst, &mut out).unwrap();
        assert_eq!(out[..], LINUX_SYN_V6[40..]);

        let (_, rst) = parse_ip_tcp(&LINUX_RST_ACK_V6);
        assert_eq!(rst.flags.to_string(), "R.");
        assert_eq!(rst.ack, SeqNumber(334_714_574));
    }

    fn round_trip(repr: &TcpRepr<'_>, src: IpAddr, dst: IpAddr) {
        let mut buf = vec![0u8; repr.buffer_len() + 7];
        let n = repr.emit(src, dst, &mut buf).unwrap();
        assert_eq!(n, repr.buffer_len());
        let back = TcpRepr::parse(&buf[..n], src, dst).unwrap();
        assert_eq!(&back, repr);
        // The checksum covers the addresses: the wrong pseudo-header fails.
        assert_eq!(TcpRepr::parse(&buf[..n], dst, dst), Err(Error::BadChecksum));
    }

    #[test]
    fn syn_round_trips_v4_and_v6() {
        let s = syn(1, 2, u32::MAX, 65535, full_syn_options(5, 1440, 14));
        round_trip(&s, A4, B4);
        round_trip(&s, A6, B6);
    }

    #[test]
    fn data_segments_round_trip() {
        let opts = TcpOptions::default()
            .with_timestamps(100, 200)
            .with_sack_block(SeqNumber(10), SeqNumber(20))
            .with_sack_block(SeqNumber(u32::MAX - 5), SeqNumber(3));
        for payload in [&b""[..], b"x", b"HEAD / HTTP/1.1\r\n\r\n", &[0xff; 1401]] {
            let seg = TcpRepr {
                src_port: 40000,
                dst_port: 443,
                seq: SeqNumber(7),
                ack: SeqNumber(9),
                flags: TcpFlags::PSH | TcpFlags::ACK,
                window: 502,
                urgent: 0,
                options: opts,
                payload,
            };
            assert_eq!(seg.header_len(), 20 + 12 + 20);
            round_trip(&seg, A4, B4);
            round_trip(&seg, A6, B6);
        }
    }

    #[test]
    fn non_syn_timestamps_are_nop_nop_ts() {
        let seg = TcpRepr {
            flags: TcpFlags::ACK,
            options: TcpOptions::default().with_timestamps(1, 2),
            ..syn(1, 2, 3, 4, TcpOptions::default())
        };
        let mut buf = [0u8; 32];
        assert_eq!(seg.emit(A4, B4, &mut buf), Ok(32));
        assert_eq!(buf[12], 8 << 4, "data offset 8 words");
        assert_eq!(&buf[20..24], &[1, 1, 8, 10]);
    }

    #[test]
    fn all_flag_bits_survive() {
        for bits in [0u16, 0x1ff, 0x100, 0x0c2, 0x003] {
            let seg = TcpRepr {
                flags: TcpFlags(bits),
                ..syn(1, 2, 3, 4, TcpOptions::default())
            };
            round_trip(&seg, A4, B4);
        }
        // Bits above the nine defined ones are not sent.
        let seg = TcpRepr {
            flags: TcpFlags(0xfe02),
            ..syn(1, 2, 3, 4, TcpOptions::default())
        };
        let mut buf = [0u8; 20];
        seg.emit(A4, B4, &mut buf).unwrap();
        assert_eq!(
            TcpRepr::parse_unchecked(&buf).unwrap().flags,
            TcpFlags(0x002)
        );
    }

    #[test]
    fn flags_display_like_tcpdump() {
        let cases = [
            (TcpFlags::SYN, "S"),
            (TcpFlags::SYN | TcpFlags::ACK, "S."),
            (TcpFlags::FIN | TcpFlags::ACK, "F."),
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK, "FP."),
            (TcpFlags::PSH | TcpFlags::ACK, "P."),
            (TcpFlags::ACK, "."),
            (TcpFlags::RST, "R"),
            (TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR, "SEW"),
            (TcpFlags::ALL, "FSRP.UEWe"),
            (TcpFlags(0), "none"),
        ];
        for (flags, text) in cases {
            assert_eq!(flags.to_string(), text);
        }
    }

    #[test]
    fn malformed_segments() {
        let seg = syn(1, 2, 3, 4, full_syn_options(1, 1460, 7));
        let mut good = [0u8; 40];
        seg.emit(A4, B4, &mut good).unwrap();

        for len in 0..20 {
            assert_eq!(
                TcpRepr::parse_unchecked(&good[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
            assert_eq!(TcpRepr::parse(&good[..len], A4, B4), Err(Error::Truncated));
        }
        // Data offset says 40 bytes; fewer are here.
        assert_eq!(TcpRepr::parse_unchecked(&good[..39]), Err(Error::Truncated));
        for offset in 0..5u8 {
            let mut b = good;
            b[12] = offset << 4;
            assert_eq!(TcpRepr::parse_unchecked(&b), Err(Error::BadLength));
        }
        let mut b = good;
        b[12] = 15 << 4; // 60-byte header in 40 bytes
        assert_eq!(TcpRepr::parse_unchecked(&b), Err(Error::Truncated));

        let mut b = good;
        b[4] ^= 0x80;
        assert_eq!(TcpRepr::parse(&b, A4, B4), Err(Error::BadChecksum));
        assert!(
            TcpRepr::parse_unchecked(&b).is_ok(),
            "unchecked still looks"
        );
        assert_eq!(TcpRepr::parse(&good, A4, B6), Err(Error::Unsupported));

        // MSS length byte 0 (the checksum is fixed up): the segment still parses, the
        // option walk ends there and says so (RFC 9293 §3.1 MUST-7).
        let mut b = good;
        b[21] = 0;
        fix_checksum(&mut b, A4, B4);
        let seg = TcpRepr::parse(&b, A4, B4).expect("a bad option costs the option");
        assert_eq!(seg.options.mss, None);
        assert_eq!(seg.options.malformed_kinds().collect::<Vec<_>>(), [2]);
        // Timestamps length overrunning the header.
        let mut b = good;
        b[27] = 14;
        let seg = TcpRepr::parse_unchecked(&b).expect("a bad option costs the option");
        assert_eq!(seg.options.timestamps, None);
        assert_eq!(seg.options.malformed_kinds().collect::<Vec<_>>(), [8]);
    }

    fn fix_checksum(seg: &mut [u8], src: IpAddr, dst: IpAddr) {
        seg[16] = 0;
        seg[17] = 0;
        let c = checksum::upper_layer_checksum(src, dst, PROTO_TCP, seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn emit_errors() {
        let seg = syn(1, 2, 3, 4, full_syn_options(1, 1460, 7));
        assert_eq!(seg.emit(A4, B6, &mut [0; 60]), Err(Error::Unsupported));
        assert_eq!(seg.emit(A4, B4, &mut [0; 39]), Err(Error::Truncated));
        let big = [0u8; 65_536];
        let seg = TcpRepr {
            payload: &big,
            ..seg
        };
        assert_eq!(
            seg.emit(A6, B6, &mut vec![0; 70_000]),
            Err(Error::BadLength)
        );
    }

    #[test]
    fn segment_len_counts_syn_and_fin() {
        let s = syn(1, 2, 3, 4, TcpOptions::default());
        assert_eq!(s.segment_len(), 1);
        let f = TcpRepr {
            flags: TcpFlags::FIN | TcpFlags::ACK,
            payload: b"ab",
            ..s
        };
        assert_eq!(f.segment_len(), 3);
    }
}

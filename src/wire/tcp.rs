//! TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

use super::{Error, Result, SeqNumber};
use std::net::IpAddr;

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
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | o.0)
    }
}

/// Up to this many SACK blocks fit in 40 bytes of options (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;
/// Unknown option kinds remembered per segment (more are counted, not kept).
pub const MAX_UNKNOWN_OPTIONS: usize = 8;

/// The options of one segment, decoded. Order on the wire is not kept; `emit` writes
/// them in Linux's order (MSS, SACK-permitted, timestamps, NOP, window scale) so our SYN
/// looks like the kernel's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr), RFC 7323 §3.
    pub timestamps: Option<(u32, u32)>,
    pub sack_blocks: [Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS],
    /// Kinds we do not understand, in order of appearance (at most `MAX_UNKNOWN_OPTIONS`).
    pub unknown: [Option<u8>; MAX_UNKNOWN_OPTIONS],
    /// How many unknown options there were in all.
    pub unknown_count: u8,
}

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
        let _ = (bytes, src, dst, Error::Truncated);
        todo!()
    }

    /// Parse without verifying the checksum.
    pub fn parse_unchecked(bytes: &'a [u8]) -> Result<TcpRepr<'a>> {
        let _ = bytes;
        todo!()
    }

    /// Header length including options, padded to 4 bytes.
    pub fn header_len(&self) -> usize {
        todo!()
    }

    /// Header + payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Write header, options and payload into `buf` (at least `buffer_len()` bytes) with a
    /// correct checksum for `src`→`dst`. Returns the number of bytes written.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, buf: &mut [u8]) -> Result<usize> {
        let _ = (src, dst, buf);
        todo!()
    }

    /// Sequence space this segment occupies: payload length, plus one each for SYN and FIN.
    pub fn segment_len(&self) -> u32 {
        self.payload.len() as u32 + self.flags.syn() as u32 + self.flags.fin() as u32
    }
}

//! What an AF_PACKET socket hands us, for the tap's two readers (the ring in `tap.rs`, the
//! socket queue in `tapqueue.rs`) and the link emulator's frame ports (`frames.rs`).

use tcpshake_proto::time::Instant;

/// `sll_pkttype` of a packet this host sent (linux/if_packet.h).
pub(crate) const PACKET_OUTGOING: u8 = 4;

/// Room for the largest packet a tap can meet: a 64 KiB GSO super-packet (an IPv6 one is
/// 40 bytes of header and 65 535 of payload); a longer one is reported truncated.
pub const PACKET_ROOM: usize = 65_536 + 256;

/// One packet read off the tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapMeta {
    /// Kernel timestamp, `CLOCK_REALTIME`.
    pub at: Instant,
    /// Bytes of the IP packet written into the caller's buffer.
    pub len: usize,
    /// The packet left this host (PACKET_OUTGOING).
    pub outgoing: bool,
    /// The transport checksum is not filled in yet (offloaded); do not verify it.
    pub checksum_offloaded: bool,
    /// Only the start of a packet longer than a frame (its whole copy could not be
    /// queued): not a packet to parse.
    pub truncated: bool,
}

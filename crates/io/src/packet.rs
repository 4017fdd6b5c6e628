//! What an AF_PACKET socket hands us, for the tap's two readers (the ring in `tap.rs`, the
//! socket queue in `tapqueue.rs`) and the link emulator's frame ports (`frames.rs`); and
//! the `TPACKET_V2` ring, mapped the same way for the tap's reception (`tap.rs`) and the
//! scan's transmission (`link.rs`).

use anyhow::{Context, Result};
use socket2::Socket;
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use tcpshake_proto::time::Instant;

// linux/if_packet.h
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// `bind` protocol: every packet, whatever its EtherType.
pub(crate) const ETH_P_ALL: u16 = 0x0003;

/// Bind an AF_PACKET socket to interface `ifindex` for `protocol` (host order): ETH_P_ALL
/// to receive everything there, 0 to send there and receive nothing.
pub(crate) fn bind_to_interface(socket: &Socket, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and we pass its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Which ring of a socket (linux/if_packet.h).
#[derive(Clone, Copy, Debug)]
pub(crate) enum RingKind {
    /// `PACKET_RX_RING`: what the socket receives.
    Rx,
    /// `PACKET_TX_RING`: frames to send.
    Tx,
}

/// A `TPACKET_V2` ring mapped into our memory: `frames` frames of `frame_size` bytes from
/// `base` on. Unmapped on drop (before its socket closes: keep it in a field above the
/// socket's).
pub(crate) struct MappedRing {
    pub base: *mut u8,
    len: usize,
}

impl Drop for MappedRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing borrows the ring
        // past the reader or sender that owns it.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// Ask for a `TPACKET_V2` ring of `frames` frames of `frame_size` bytes in blocks of
/// `block_size` on `socket`, and map it.
pub(crate) fn map_ring(
    socket: &Socket,
    kind: RingKind,
    block_size: usize,
    frame_size: usize,
    frames: usize,
) -> Result<MappedRing> {
    super::set_sockopt(socket, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2)
        .context("PACKET_VERSION")?;
    let req = TpacketReq {
        tp_block_size: block_size as u32,
        tp_block_nr: (frame_size * frames / block_size) as u32,
        tp_frame_size: frame_size as u32,
        tp_frame_nr: frames as u32,
    };
    let (name, what) = match kind {
        RingKind::Rx => (5, "PACKET_RX_RING"),
        RingKind::Tx => (13, "PACKET_TX_RING"),
    };
    super::set_sockopt(socket, libc::SOL_PACKET, name, &req).context(what)?;
    let len = frame_size * frames;
    // SAFETY: mapping the ring the kernel just allocated for this socket, shared, at an
    // address of the kernel's choosing; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            socket.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error())
            .context(format!("mapping the AF_PACKET ring ({what})"));
    }
    Ok(MappedRing {
        base: base.cast(),
        len,
    })
}

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

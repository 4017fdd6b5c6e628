//! Control messages of received packets, decoded in one place: the kernel's timestamp
//! (`SCM_TIMESTAMPNS`) and an AF_PACKET socket's per-packet status (`PACKET_AUXDATA`),
//! for the tap's queue reader and the link emulator's ports.

use tcpshake_proto::time::Instant;

/// `SO_TIMESTAMPNS` (asm-generic/socket.h, `SO_TIMESTAMPNS_OLD`); as a control message it
/// is `SCM_TIMESTAMPNS`, the same number.
pub(crate) const SO_TIMESTAMPNS: libc::c_int = 35;
/// `PACKET_AUXDATA` (linux/if_packet.h): a `tpacket_auxdata` control message per packet.
pub(crate) const PACKET_AUXDATA: libc::c_int = 8;
/// The checksum is left for hardware (CHECKSUM_PARTIAL); the bytes hold only the
/// pseudo-header sum. veth does this for kernel-made packets.
pub(crate) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// Room for both control messages (a timespec and a tpacket_auxdata, each with its
/// header), in `u64`s so the buffer is aligned as `cmsghdr` needs.
pub(crate) const CONTROL_WORDS: usize = 16;

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// What the control messages of one packet said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    /// The kernel's receive timestamp, when it gave one.
    pub at: Option<Instant>,
    /// The checksum was left unfinished (veth offload): it cannot be verified.
    pub checksum_offloaded: bool,
}

/// Decodes the control messages of `msg`.
///
/// # Safety
/// `msg` must be a `msghdr` that `recvmsg(2)`/`recvmmsg(2)` filled: `msg_control` points
/// at a live buffer of at least `msg_controllen` bytes holding the kernel's control
/// messages.
pub(crate) unsafe fn decode(msg: &libc::msghdr) -> PacketInfo {
    let mut info = PacketInfo::default();
    // SAFETY: per this function's contract, CMSG_FIRSTHDR/NXTHDR walk a buffer the kernel
    // filled, and stay within `msg_controllen`; each payload is read unaligned at the size
    // of the type its (level, type) pair announces, which the kernel wrote.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, SO_TIMESTAMPNS) => {
                    let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                    info.at = Some(crate::clock::instant_of(&ts));
                }
                (libc::SOL_PACKET, PACKET_AUXDATA) => {
                    let aux = std::ptr::read_unaligned(data as *const TpacketAuxdata);
                    info.checksum_offloaded = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn control_room_holds_both_messages() {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let need = unsafe {
            libc::CMSG_SPACE(size_of::<libc::timespec>() as u32)
                + libc::CMSG_SPACE(size_of::<TpacketAuxdata>() as u32)
        } as usize;
        assert!(need <= CONTROL_WORDS * 8, "{need}");
    }
}

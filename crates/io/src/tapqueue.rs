//! The tap without a ring: packets read from the AF_PACKET socket's own queue, many per
//! `recvmmsg(2)`, each with the kernel's timestamp (SCM_TIMESTAMPNS, the same stamp the
//! ring shows) and its status (PACKET_AUXDATA: whether the checksum is left to hardware).
//!
//! Surveys read their tap this way. A ring costs an RCU grace period when it is set up and
//! two when it is torn down (the kernel unhooks the socket, waits, and again on close):
//! 10–20 ms each on the machines measured, wall-clock time a 5 000-probe survey of 300 ms
//! spent asleep. A survey's loop is busy anyway, so a system call per batch instead of none
//! per packet costs it nothing measurable; the one-probe path keeps the ring, whose lack of
//! any system call is what its reaction time needs.

use super::tap::{PACKET_OUTGOING, TP_STATUS_CSUMNOTREADY, TapMeta};
use socket2::Socket;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;
use tcpshake_proto::time::Instant;

/// `PACKET_AUXDATA` (linux/if_packet.h): a `tpacket_auxdata` control message per packet.
pub(super) const PACKET_AUXDATA: libc::c_int = 8;
/// `SCM_TIMESTAMPNS` equals `SO_TIMESTAMPNS` (asm-generic/socket.h).
const SCM_TIMESTAMPNS: libc::c_int = super::tap::SO_TIMESTAMPNS;

/// Packets per `recvmmsg`.
const BATCH: usize = 16;
/// Room for the largest packet a tap can meet (a 64 KiB GSO super-packet) and its
/// headers; a longer one is reported truncated.
const PACKET_ROOM: usize = 65_536 + 256;
/// Room for both control messages (a timespec and a tpacket_auxdata, each with its header).
const CONTROL_ROOM: usize = 128;

/// `struct tpacket_auxdata`: per-packet metadata with the `tp_status` bits (the link
/// emulator reads it too).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct TpacketAuxdata {
    pub(super) tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// The last batch read, handed out one packet at a time.
pub(super) struct QueueReader {
    bufs: Vec<Vec<u8>>,
    /// Control-message space, 8-aligned as `cmsghdr` needs.
    controls: Vec<[u64; CONTROL_ROOM / 8]>,
    names: Vec<libc::sockaddr_ll>,
    metas: Vec<TapMeta>,
    next: usize,
}

impl QueueReader {
    pub(super) fn new() -> QueueReader {
        QueueReader {
            bufs: (0..BATCH).map(|_| vec![0u8; PACKET_ROOM]).collect(),
            controls: vec![[0u64; CONTROL_ROOM / 8]; BATCH],
            // SAFETY: sockaddr_ll is plain data; zeroed is valid.
            names: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            metas: Vec::with_capacity(BATCH),
            next: 0,
        }
    }

    /// The next packet, copied into `buf`, reading a new batch when this one is used up.
    pub(super) fn take(&mut self, socket: &Socket, buf: &mut [u8]) -> Option<TapMeta> {
        if self.next == self.metas.len() {
            self.refill(socket);
        }
        let mut meta = *self.metas.get(self.next)?;
        let i = self.next;
        self.next += 1;
        let len = meta.len.min(buf.len());
        buf[..len].copy_from_slice(&self.bufs[i][..len]);
        meta.len = len;
        Some(meta)
    }

    fn refill(&mut self, socket: &Socket) {
        self.metas.clear();
        self.next = 0;
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|i| {
                // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_ll).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = CONTROL_ROOM;
                m
            })
            .collect();
        // SAFETY: `msgs` holds BATCH initialised mmsghdrs whose name, iovec and control
        // pointers point into `self.names`, `iovs`, `self.bufs` and `self.controls`, all
        // alive and not otherwise borrowed for the call, with their true sizes.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        // Nothing there (EAGAIN) or an error: no packets this time; a real error shows up
        // again on the next read and in poll.
        let Ok(n) = usize::try_from(n) else {
            return;
        };
        for (i, m) in msgs.iter().enumerate().take(n) {
            let len = m.msg_len as usize;
            let mut meta = TapMeta {
                at: Instant::from_nanos(0),
                len: len.min(PACKET_ROOM),
                outgoing: self.names[i].sll_pkttype == PACKET_OUTGOING,
                checksum_offloaded: false,
                truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
            // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control
            // messages into this message's control buffer; CMSG_FIRSTHDR/NXTHDR stay
            // within it, and each payload is read unaligned at its own size.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::SOL_SOCKET, SCM_TIMESTAMPNS) => {
                            let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                            meta.at = Instant::from_nanos(
                                (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64,
                            );
                        }
                        (libc::SOL_PACKET, PACKET_AUXDATA) => {
                            let aux = std::ptr::read_unaligned(data as *const TpacketAuxdata);
                            meta.checksum_offloaded = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
                }
            }
            self.metas.push(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_room_holds_both_messages() {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let need = unsafe {
            libc::CMSG_SPACE(size_of::<libc::timespec>() as u32)
                + libc::CMSG_SPACE(size_of::<TpacketAuxdata>() as u32)
        } as usize;
        assert!(need <= CONTROL_ROOM, "{need}");
    }
}

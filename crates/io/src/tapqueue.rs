//! The tap without a ring: packets read from the AF_PACKET socket's own queue, many per
//! `recvmmsg(2)`, each with the kernel's timestamp (SCM_TIMESTAMPNS, the same stamp the
//! ring shows) and its status (PACKET_AUXDATA: whether the checksum is left to hardware).
//!
//! Scans and traces read their tap this way, and so does a survey's tap opened while probes
//! are in flight. A ring costs an RCU grace period when it is set up (~8 ms here) and two
//! when it is torn down (the kernel unhooks the socket, waits, and again on close); neither
//! a scan nor a trace answers what it reads, so a system call per batch costs them nothing
//! a ring would give back, and a survey's loop must not stop 8 ms while its probes wait
//! for answers. Probes, and a survey's taps opened while nothing is on the wire, read a
//! ring: finding a SYN-ACK without a system call is part of answering it quickly (a
//! survey's SYN-ACK → ACK at `-j 64` went from 2.1× the kernel's to 1.5× when its tap
//! moved from this queue to a ring; README's "Reaction time").

use super::cmsg::{self, CONTROL_WORDS};
use super::packet::{PACKET_OUTGOING, PACKET_ROOM, TapMeta};
use socket2::Socket;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;
use tcpshake_proto::time::Instant;

/// Packets per `recvmmsg`.
const BATCH: usize = 16;
/// The last batch read, handed out one packet at a time.
pub(super) struct QueueReader {
    bufs: Vec<Vec<u8>>,
    /// Control-message space, 8-aligned as `cmsghdr` needs.
    controls: Vec<[u64; CONTROL_WORDS]>,
    names: Vec<libc::sockaddr_ll>,
    metas: Vec<TapMeta>,
    next: usize,
    /// The last `recvmmsg` found the queue empty or emptied it (fewer than a batch).
    short: bool,
}

impl QueueReader {
    pub(super) fn new() -> QueueReader {
        QueueReader {
            bufs: (0..BATCH).map(|_| vec![0u8; PACKET_ROOM]).collect(),
            controls: vec![[0u64; CONTROL_WORDS]; BATCH],
            // SAFETY: sockaddr_ll is plain data; zeroed is valid.
            names: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            metas: Vec::with_capacity(BATCH),
            next: 0,
            short: false,
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

    /// Packets of the last batch not handed out yet.
    pub(super) fn buffered(&self) -> bool {
        self.next < self.metas.len()
    }

    /// Everything read was handed out, and the last read left the queue empty: another
    /// read now would find only what came since (most often nothing: an `EAGAIN`).
    pub(super) fn drained(&self) -> bool {
        self.short && !self.buffered()
    }

    fn refill(&mut self, socket: &Socket) {
        self.metas.clear();
        self.next = 0;
        // On the stack, not in Vecs: a survey polls an empty queue between its other work
        // (to answer a SYN-ACK at once), and an allocation per poll was most of its cost.
        // SAFETY: iovec is plain data; zeroed is a valid initial value.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        for (iov, b) in iovs.iter_mut().zip(self.bufs.iter_mut()) {
            iov.iov_base = b.as_mut_ptr().cast();
            iov.iov_len = b.len();
        }
        // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_ll).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
        }
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
            self.short = true;
            return;
        };
        self.short = n < BATCH;
        for (i, m) in msgs.iter().enumerate().take(n) {
            let len = m.msg_len as usize;
            // SAFETY: recvmmsg filled this message's control buffer (`self.controls[i]`,
            // alive and unborrowed) with `msg_controllen` bytes of control messages.
            let info = unsafe { cmsg::decode(&m.msg_hdr) };
            let meta = TapMeta {
                at: info.at.unwrap_or(Instant::from_nanos(0)),
                len: len.min(PACKET_ROOM),
                outgoing: self.names[i].sll_pkttype == PACKET_OUTGOING,
                checksum_offloaded: info.checksum_offloaded,
                truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
            self.metas.push(meta);
        }
    }
}

//! The tap: an AF_PACKET socket on the egress interface, the same place tcpdump listens,
//! read through a `TPACKET_V2` ring mapped into our memory — tcpdump's own mechanism.
//!
//! Every segment we send and every segment or ICMP error we receive is read here with the
//! kernel's timestamp, the one tcpdump records for the same packet (ARCHITECTURE.md,
//! measured). The ring costs no system call per packet: the kernel writes each frame into
//! memory we share, and we see it the moment our run loop looks — after a SYN-ACK that
//! is most of what separates our reaction time from the kernel's. A classic BPF filter
//! (bpf.rs) keeps only TCP to or from our source port, arriving TCP fragments, and
//! ICMP/ICMPv6.
//!
//! A connection's ring must hold everything that can arrive between two looks of the run
//! loop: a server may send its whole window at once (the 128 KiB we advertise is 90
//! full-sized segments), and every ACK we send takes a frame too. A frame the ring has no
//! room for is a segment our TCP never sees — the server must send it again — so the
//! ring is sized from the window ([`RingShape::for_window`]) and the kernel's drop counter
//! is read and reported ([`Tap::losses`], `capture_lost` in the record).
//!
//! Frames are fixed-size in `TPACKET_V2`, and packets come in two sizes: a window's worth
//! of Ethernet-sized segments, and rarely a few giants (GSO/GRO super-packets up to 64 KiB
//! over veth or from a NIC, loopback's 64 KiB MTU). Frames of 2 KiB hold every
//! Ethernet-sized packet; a larger one fills its frame with its start and its whole copy
//! goes to the socket's queue (`PACKET_COPY_THRESH`, `TP_STATUS_COPY`), from which `take`
//! reads it in ring order. Frames of 64 KiB for the giants would make a window's ring
//! 90 × 64 KiB; `TPACKET_V3`'s variable-size frames in blocks would pack both, but a block
//! reaches us only when it is full or its timer (1 ms at least) retires it, which would
//! put a millisecond into our reaction to a SYN-ACK.

use super::cmsg::{PACKET_AUXDATA, SO_TIMESTAMPNS, TP_STATUS_CSUMNOTREADY};
use super::packet::{
    ETH_P_ALL, MappedRing, PACKET_OUTGOING, RingKind, bind_to_interface, map_ring,
};
pub use super::packet::{PACKET_ROOM, TapMeta};
use super::route::OtherLinks;
use super::tapqueue::QueueReader;
use anyhow::{Context, Result};
use socket2::{Domain, SockFilter, Socket, Type};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tcpshake_proto::time::Instant;

// Linux UAPI values (linux/if_packet.h) that the libc crate does not export.
const PACKET_TIMESTAMP: libc::c_int = 17;
const SOF_TIMESTAMPING_SOFTWARE: libc::c_int = 1 << 4;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// The frame holds the start of a packet larger than a frame; the whole of it is in the
/// socket's queue.
const TP_STATUS_COPY: u32 = 1 << 1;
const PACKET_STATISTICS: libc::c_int = 6;
/// Packets larger than a frame are also queued whole (any non-zero value turns it on).
const PACKET_COPY_THRESH: libc::c_int = 7;

/// How the ring is cut into frames (each frame holds one packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingShape {
    pub frame_size: usize,
    pub frames: usize,
    /// A packet larger than a frame is also queued whole on the socket (and read from
    /// there), in a receive buffer of this many bytes (kernel memory, not ours); with 0,
    /// only its start is seen.
    pub copy_queue: usize,
}

/// The smallest segment a server sending a full window is expected to use: RFC 9293's
/// default MSS (§3.7.1), which is also below any MSS we advertise.
const SMALLEST_FULL_SEGMENT: usize = 536;
/// Room in a ring frame before the packet: `tpacket2_hdr` and `sockaddr_ll`, aligned, plus
/// the 16 bytes a `SOCK_DGRAM` ring leaves for a link header (`tpacket_rcv`'s `netoff`).
const FRAME_OVERHEAD: usize = 80;
/// Frames of 2 KiB: every packet of a 1500-byte MTU fits whole.
const CONNECTION_FRAME: usize = 2048;
/// A survey's frames: 432 bytes of packet, which hold a SYN-ACK, an ACK, a FIN, a RST, most
/// ICMP errors and a short HTTP response whole; data segments take the copy path.
const SURVEY_FRAME: usize = 512;
/// The socket buffer for packets larger than a frame (kernel memory, not ours): a
/// window's worth of 64 KiB super-packets many times over.
const COPY_QUEUE_BYTES: usize = 4 << 20;

impl RingShape {
    /// For one connection that advertises a receive window of `rcv_buf` bytes: room for a
    /// whole window of `SMALLEST_FULL_SEGMENT`-byte segments, one ACK of ours for each,
    /// and a margin (SYN retransmissions, ICMP, duplicates), in 2 KiB frames — 1024 of
    /// them (2 MiB) for our 128 KiB window. A full window of 1448-byte segments uses 90
    /// frames, and our ACKs of them fewer. Larger packets take the copy path (module doc).
    pub fn for_window(rcv_buf: u32) -> RingShape {
        let segments = (rcv_buf as usize).div_ceil(SMALLEST_FULL_SEGMENT);
        RingShape {
            frame_size: CONNECTION_FRAME,
            frames: (2 * segments + 64).next_power_of_two().clamp(256, 8192),
            copy_queue: COPY_QUEUE_BYTES,
        }
    }

    /// For a survey's tap, shared by `jobs` probes in flight on one interface: 256 frames a
    /// probe (a window of full-sized segments and our ACKs of them), from 4 096 to 16 384
    /// frames of 512 bytes (2 to 8 MiB). Over veth each ACK we send makes the server send
    /// the next flight of its window inside our call, so one pass's ACKs can put a window
    /// per probe in the ring before the loop looks again. Small packets — the ones a probe
    /// answers at once — lie whole in the ring; a data segment leaves its start there and
    /// the whole of it in the socket's queue (16 MiB, as the queue-read tap had), read in
    /// ring order. With 2 KiB frames and 64 a probe, big responses at `-j 16` and `-j 128`
    /// overflowed the ring in every run where that queue had not. A frame the ring or the
    /// queue had no room for is counted (`capture_lost`).
    pub fn for_survey(jobs: usize) -> RingShape {
        RingShape {
            frame_size: SURVEY_FRAME,
            frames: jobs
                .min(SURVEY_FRAMES_MAX)
                .saturating_mul(256)
                .next_power_of_two()
                .clamp(SURVEY_FRAMES_MIN, SURVEY_FRAMES_MAX),
            copy_queue: QUEUE_BYTES,
        }
    }

    /// The largest packet a frame holds whole.
    pub fn frame_room(self) -> usize {
        self.frame_size.saturating_sub(FRAME_OVERHEAD)
    }

    /// Blocks are at least 64 KiB and a whole number of frames, so frame `i` lies at
    /// `i * frame_size`.
    fn block_size(self) -> usize {
        self.frame_size.max(1 << 16)
    }
}
/// A survey tap's receive buffer — its whole queue, or what its ring's copy path holds
/// (bytes, as the kernel counts them: each small packet costs about a kilobyte of it).
const QUEUE_BYTES: usize = 16 << 20;
/// A survey's ring: at least this many frames, at most that many (2 and 8 MiB).
const SURVEY_FRAMES_MIN: usize = 4096;
const SURVEY_FRAMES_MAX: usize = 16_384;
/// How a tap is read: a ring of this shape, or its socket's queue with a receive buffer of
/// this many bytes.
#[derive(Clone, Copy)]
enum Reading {
    Ring(RingShape),
    Queue(usize),
}

/// At most this many packets per `recv_batch` from a queue-read tap.
const QUEUE_BOUND: usize = 4096;
/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`: where the `sockaddr_ll` starts.
const SLL_OFFSET: usize = 32;

/// `struct tpacket2_hdr`.
#[repr(C)]
struct Tpacket2Hdr {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// What the tap missed, from the kernel's count and our own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapLosses {
    /// Packets the filter passed but the ring had no free frame for (PACKET_STATISTICS).
    pub dropped: u64,
    /// Packets longer than a frame whose whole copy was not available.
    pub truncated: u64,
}

impl TapLosses {
    /// Packets the capture did not deliver whole.
    pub fn total(self) -> u64 {
        self.dropped.saturating_add(self.truncated)
    }
}

/// `struct tpacket_stats`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

pub struct Tap {
    // Field order: the ring is unmapped before the socket closes.
    /// None: packets are read from the socket's queue instead (tapqueue.rs).
    ring: Option<MappedRing>,
    queue: Option<Box<QueueReader>>,
    socket: Socket,
    shape: RingShape,
    /// The frame to look at next.
    next: usize,
    /// On a loopback interface each packet is seen twice (leaving and arriving);
    /// we keep only the arriving copy.
    loopback: bool,
    /// Bound to every interface: the route's (`oif`) and the others replies may come back
    /// on ([`Tap::listen_also`]); `None` when bound to one.
    also: Option<(u32, OtherLinks)>,
    losses: TapLosses,
}

impl Tap {
    /// Open a tap on interface `ifindex` that passes TCP to/from `port` and ICMP errors,
    /// its ring sized for a connection that advertises `rcv_buf` bytes of window. With
    /// `others` (interfaces other than `ifindex`: route.rs `other_receiving_interfaces`)
    /// it also takes what arrives there: a reply that comes back on another link than its
    /// request left by (asymmetric routing), as Linux's TCP takes it.
    pub fn open(
        ifindex: u32,
        ifname: &str,
        port: u16,
        loopback: bool,
        rcv_buf: u32,
        others: &OtherLinks,
    ) -> Result<Tap> {
        let also = listening_also(ifindex, loopback, others);
        Tap::open_with(
            ifindex,
            ifname,
            &port_filter(port, port, also.as_ref())?,
            loopback,
            Reading::Ring(RingShape::for_window(rcv_buf)),
            also,
        )
    }

    /// [`Tap::open`] reading the socket's queue, not a ring (tapqueue.rs), which holds up
    /// to `queue_bytes` (as the kernel counts them: about a kilobyte per small packet).
    /// `others`: as [`Tap::open`]'s.
    pub fn open_queue(
        ifindex: u32,
        ifname: &str,
        port: u16,
        loopback: bool,
        queue_bytes: usize,
        others: &OtherLinks,
    ) -> Result<Tap> {
        let also = listening_also(ifindex, loopback, others);
        let filter = port_filter(port, port, also.as_ref())?;
        Tap::open_with(
            ifindex,
            ifname,
            &filter,
            loopback,
            Reading::Queue(queue_bytes),
            also,
        )
    }

    /// Open a tap that passes TCP to/from any port in `lo..=hi` and ICMP errors: one tap
    /// serves every probe of a survey that leaves through this interface. With
    /// `ring_for: Some(jobs)` it reads a ring sized for `jobs` probes at once, as a probe's
    /// tap does: a SYN-ACK is answered sooner when finding it costs no system call (at
    /// `-j 64` 2.1× the kernel's reaction with the queue's `recvmmsg`, 1.5× with the ring:
    /// README's "Reaction time"). The ring's set-up waits out an RCU grace period (~8 ms
    /// here), and its close two (after our exit: teardown.rs). With `None` it reads its
    /// socket's queue (tapqueue.rs), without that wait; it only checks that the kernel
    /// stamps packets on arrival, which another tap asking for stamps has turned on already
    /// (stamps.rs: a datagram to ourselves, microseconds; until then 1 ms steps).
    /// `others`: as [`Tap::open`]'s.
    pub fn open_range(
        ifindex: u32,
        ifname: &str,
        (lo, hi): (u16, u16),
        loopback: bool,
        ring_for: Option<usize>,
        others: &OtherLinks,
    ) -> Result<Tap> {
        let also = listening_also(ifindex, loopback, others);
        let filter = port_filter(lo, hi, also.as_ref())?;
        Tap::open_with(
            ifindex,
            ifname,
            &filter,
            loopback,
            match ring_for {
                Some(jobs) => Reading::Ring(RingShape::for_survey(jobs)),
                None => Reading::Queue(QUEUE_BYTES),
            },
            also,
        )
    }

    /// A tap bound to every interface ([`Tap::open`]'s `others`) listens on `others` from
    /// now on, for replies to ports `lo..=hi`: a survey that opened a tap of its own for
    /// one of them takes it out of here, so nothing is seen twice. Nothing for a tap bound
    /// to one interface.
    pub fn listen_also(&mut self, (lo, hi): (u16, u16), others: &OtherLinks) -> Result<()> {
        let Some((oif, _)) = self.also else {
            return Ok(());
        };
        let also = (oif, others.clone());
        self.socket
            .attach_filter(&port_filter(lo, hi, Some(&also))?)
            .context("attaching the BPF filter to the AF_PACKET socket")?;
        self.also = Some(also);
        Ok(())
    }

    /// The other interfaces this tap takes replies on, and for which addresses (empty: only
    /// its own interface).
    pub fn others(&self) -> Option<&OtherLinks> {
        self.also.as_ref().map(|(_, o)| o)
    }

    fn open_with(
        ifindex: u32,
        ifname: &str,
        filter: &[SockFilter],
        loopback: bool,
        reading: Reading,
        also: Option<(u32, OtherLinks)>,
    ) -> Result<Tap> {
        // Protocol 0: the socket receives nothing until `bind` names the protocol, so no
        // packet reaches the ring before the filter is in place.
        let socket = Socket::new(Domain::PACKET, Type::DGRAM.cloexec(), None)
            .map_err(|e| super::privilege_error(e, "open an AF_PACKET socket"))?;
        socket
            .attach_filter(filter)
            .context("attaching the BPF filter to the AF_PACKET socket")?;
        // Asking for timestamps turns on the kernel's receive timestamping (a static key),
        // so arriving packets are stamped as they enter the stack; PACKET_TIMESTAMP makes
        // the ring report that stamp rather than the moment it reached this socket.
        // Outgoing copies carry the stamp dev_queue_xmit_nit gives every tap, tcpdump's
        // included. Measured (scripts/bench-probe): outgoing identical to tcpdump's,
        // incoming 0.8 µs earlier than tcpdump's (median), 3.5 µs at most.
        super::set_sockopt(
            &socket,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &1 as &libc::c_int,
        )
        .context("SO_TIMESTAMPNS")?;
        super::set_sockopt(
            &socket,
            libc::SOL_PACKET,
            PACKET_TIMESTAMP,
            &SOF_TIMESTAMPING_SOFTWARE,
        )
        .context("PACKET_TIMESTAMP")?;
        let (ring, queue) = match reading {
            Reading::Ring(shape) => {
                if shape.copy_queue > 0 {
                    super::set_sockopt(
                        &socket,
                        libc::SOL_PACKET,
                        PACKET_COPY_THRESH,
                        &1 as &libc::c_int,
                    )
                    .context("PACKET_COPY_THRESH")?;
                    force_recv_buffer(&socket, shape.copy_queue);
                }
                (
                    Some(map_ring(
                        &socket,
                        RingKind::Rx,
                        shape.block_size(),
                        shape.frame_size,
                        shape.frames,
                    )?),
                    None,
                )
            }
            Reading::Queue(queue_bytes) => {
                // Read with recvmsg, a packet the kernel did not stamp gets the time of the
                // read: wait until it stamps them (stamps.rs).
                super::stamps::await_receive_timestamps();
                super::set_sockopt(
                    &socket,
                    libc::SOL_PACKET,
                    PACKET_AUXDATA,
                    &1 as &libc::c_int,
                )
                .context("PACKET_AUXDATA")?;
                // Room for a burst while the loop is busy sending: 64 probes in flight put
                // hundreds of segments here at once.
                force_recv_buffer(&socket, queue_bytes);
                (None, Some(Box::new(QueueReader::new())))
            }
        };
        // Every interface (index 0) when replies may come back on another: the filter
        // then says which interfaces count (bpf.rs `range_filter_on`).
        let bound = if also.is_some() { 0 } else { ifindex };
        bind_to_interface(&socket, bound, ETH_P_ALL)
            .with_context(|| format!("binding the AF_PACKET socket to interface {ifname}"))?;
        socket.set_nonblocking(true)?;
        Ok(Tap {
            ring,
            queue,
            socket,
            shape: match reading {
                Reading::Ring(shape) => shape,
                Reading::Queue(_) => RingShape {
                    frame_size: 0,
                    frames: QUEUE_BOUND,
                    copy_queue: 0,
                },
            },
            next: 0,
            loopback,
            also,
            losses: TapLosses::default(),
        })
    }

    /// Whether this taps a loopback interface, where only arriving copies are handed out:
    /// a packet from our own address is then ours, on its way in.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Read one packet without waiting. `Ok(None)` when nothing is there.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<TapMeta>> {
        // Bounded: a loopback tap skips at most one lap of the ring.
        for _ in 0..=self.shape.frames {
            match self.take(buf) {
                Some(meta) if self.loopback && meta.outgoing => continue,
                other => return Ok(other),
            }
        }
        Ok(None)
    }

    /// Read every packet the ring holds (up to [`BATCH`]): packet `i` of the result lies
    /// at `bufs[slot][..meta.len]`.
    pub fn recv_batch(
        &mut self,
        bufs: &mut [Vec<u8>],
        out: &mut Vec<(usize, TapMeta)>,
    ) -> io::Result<()> {
        out.clear();
        let mut slot = 0;
        // Bounded by the ring's size.
        for _ in 0..self.shape.frames {
            let Some(buf) = bufs.get_mut(slot) else { break };
            let Some(meta) = self.take(buf) else { break };
            if !(self.loopback && meta.outgoing) {
                out.push((slot, meta));
                slot += 1;
            }
        }
        Ok(())
    }

    /// Copy the next frame out of the ring, if the kernel has filled it, and hand the
    /// frame back.
    fn take(&mut self, buf: &mut [u8]) -> Option<TapMeta> {
        let Some(ring) = &self.ring else {
            let meta = self.queue.as_mut()?.take(&self.socket, buf)?;
            if meta.truncated {
                self.losses.truncated += 1;
            }
            return Some(meta);
        };
        let frame_size = self.shape.frame_size;
        // SAFETY: `next < frames`, so the frame lies inside the mapping.
        let frame = unsafe { ring.base.add(self.next * frame_size) };
        // Acquire: the frame's other bytes, written before the kernel set TP_STATUS_USER,
        // are visible after it.
        let status = frame_status(ring, self.next, frame_size);
        let st = status.load(Ordering::Acquire);
        if st & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the frame is ours until we store TP_STATUS_KERNEL; the header is at its
        // start and the sockaddr_ll at SLL_OFFSET, both inside the frame. Offsets and
        // lengths from the header are clamped to the frame before use.
        let mut meta = unsafe {
            let hdr = &*(frame as *const Tpacket2Hdr);
            let sll = &*(frame.add(SLL_OFFSET) as *const libc::sockaddr_ll);
            let net = usize::from(hdr.tp_net).min(frame_size);
            let len = (hdr.tp_snaplen as usize)
                .min(frame_size - net)
                .min(buf.len());
            std::ptr::copy_nonoverlapping(frame.add(net), buf.as_mut_ptr(), len);
            TapMeta {
                at: Instant::from_nanos(
                    u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
                ),
                len,
                outgoing: sll.sll_pkttype == PACKET_OUTGOING,
                checksum_offloaded: st & TP_STATUS_CSUMNOTREADY != 0,
                truncated: (len as u64) < u64::from(hdr.tp_len),
            }
        };
        if st & TP_STATUS_COPY != 0 {
            // Larger than a frame: the frame has its start (and its time, direction and
            // checksum status: the queued copy's address is blank), the queue the whole of
            // it. Copies are queued in ring order and read only here, so this is its copy.
            meta.truncated = true;
            if let Some(n) = recv_whole(&self.socket, buf) {
                meta.len = n.min(buf.len());
                meta.truncated = n > buf.len();
            }
        }
        if meta.truncated {
            self.losses.truncated += 1;
        }
        status.store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.shape.frames;
        Some(meta)
    }

    /// Serve another probe on the same interface: pass `port`'s packets from now on and
    /// drop what is left of the last probe's. Swapping the filter waits for nothing (the
    /// kernel frees the old one in an RCU callback), where closing this tap and opening
    /// another waits out three RCU grace periods, one after the other (the ring torn
    /// down, the socket released, a new ring set up: ~35 ms here). A packet the old filter
    /// let through just before the swap may still land after the drop: it is not the new
    /// probe's (other port), and the probe's machine ignores it.
    pub fn retarget(&mut self, port: u16) -> Result<()> {
        self.socket
            .attach_filter(&port_filter(port, port, self.also.as_ref())?)
            .context("attaching the BPF filter to the AF_PACKET socket")?;
        let mut buf = vec![0u8; PACKET_ROOM];
        // Bounded: at most one lap of the ring, or one queue's worth.
        for _ in 0..=self.shape.frames {
            if self.take(&mut buf).is_none() {
                break;
            }
        }
        Ok(())
    }

    /// The shape of this tap's ring (None: it reads the socket's queue).
    pub fn ring_shape(&self) -> Option<RingShape> {
        self.ring.as_ref().map(|_| self.shape)
    }

    /// A queue reader's last read emptied the socket's queue and all of it was handed out
    /// (a ring is never "drained": reading it costs no system call).
    pub fn drained(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| q.drained())
    }

    /// Whether another packet is there to be read without a system call: the next frame
    /// of a ring, filled, or packets already read from the socket's queue. A survey answers
    /// what it read once this is false — one send for a run of packets that came together
    /// (each send over veth also carries the server's handling of it, 5–20 µs) — and at
    /// once after a SYN-ACK.
    pub fn buffered(&self) -> bool {
        match &self.ring {
            Some(ring) => {
                frame_status(ring, self.next, self.shape.frame_size).load(Ordering::Acquire)
                    & TP_STATUS_USER
                    != 0
            }
            None => self.queue.as_ref().is_some_and(|q| q.buffered()),
        }
    }

    /// Wait until a packet is there or `timeout` passes (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        super::poll::wait_readable(&[self.socket.as_fd()], timeout).map(|n| n > 0)
    }
}

/// Frame `i`'s status word (`tp_status`), which the kernel writes concurrently: hence an
/// atomic. `i` must be below the ring's frame count.
fn frame_status(ring: &MappedRing, i: usize, frame_size: usize) -> &AtomicU32 {
    // SAFETY: frame `i` lies inside the mapping (`i < frames`, the callers' `next`), and
    // its first u32 is 4-aligned: the mapping is page-aligned and frames are a multiple of
    // 16 bytes (TPACKET_ALIGNMENT) long, as the kernel demands of a ring. The mapping lives
    // as long as `ring`.
    unsafe { &*(ring.base.add(i * frame_size) as *const AtomicU32) }
}

/// The receive buffer: FORCE goes past `rmem_max` (we hold CAP_NET_ADMIN for the guard
/// anyway); without it, what `rmem_max` allows.
fn force_recv_buffer(socket: &Socket, bytes: usize) {
    let asked = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if super::set_sockopt(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &asked).is_err() {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

/// The next packet of the socket's queue, into `buf`: its full length (longer than `buf`
/// when it did not fit), or None when the queue is empty.
fn recv_whole(socket: &Socket, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes for the call.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    usize::try_from(n).ok()
}

impl Tap {
    /// What this tap missed so far (PACKET_STATISTICS: packets the filter passed that the
    /// ring or queue had no room for; and packets we could not read whole). The kernel's
    /// counter resets when read, so the counts accumulate here. One system call.
    pub fn losses(&mut self) -> TapLosses {
        let mut st = TpacketStats::default();
        let mut len = size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` is a writable tpacket_stats and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.losses.dropped += u64::from(st.tp_drops);
        }
        self.losses
    }
}

/// How many packets one `recv_batch` reads at most.
pub const BATCH: usize = 16;

// SAFETY: the ring's mapping belongs to this Tap alone; frames are read through `&mut
// self`, their status words also through `&self` (`buffered`, atomic loads), and it is
// unmapped on drop. A Tap is not Sync (MappedRing holds a raw pointer), so no two threads
// use one at once; it may move to another thread.
unsafe impl Send for Tap {}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// What a tap on `ifindex` listens on besides it: `others`, unless there are none or the
/// tap is on the loopback (bound to its interface alone then).
fn listening_also(ifindex: u32, loopback: bool, others: &OtherLinks) -> Option<(u32, OtherLinks)> {
    (!others.is_empty() && !loopback).then(|| (ifindex, others.clone()))
}

/// The tap's BPF filter for TCP ports `lo..=hi` (bpf.rs says what it passes and why); for
/// a tap bound to every interface when `also` names the route's interface and the others.
fn port_filter(lo: u16, hi: u16, also: Option<&(u32, OtherLinks)>) -> Result<Vec<SockFilter>> {
    let prog = match also {
        Some((oif, o)) => super::bpf::range_filter_on(lo, hi, *oif, &o.ifaces, &o.addrs),
        None => super::bpf::range_filter(lo, hi),
    }
    .map_err(|e| anyhow::anyhow!("building the tap's BPF filter: {e}"))?;
    Ok(prog
        .into_iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::testutil::{in_fresh_netns, require_root};
    use crate::sender::RawSender;
    use std::net::{IpAddr, Ipv4Addr};
    use tcpshake_proto::wire::ip::PROTO_TCP;
    use tcpshake_proto::wire::{IpRepr, SeqNumber, TcpFlags, TcpOptions, TcpRepr};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const PORT: u16 = 40_000;

    /// An IPv4 segment to our port on loopback carrying `payload` bytes, sequence `seq`.
    fn segment(seq: u32, payload: usize) -> Vec<u8> {
        let data = vec![0x5a; payload];
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: PORT,
            seq: SeqNumber(seq),
            ack: SeqNumber(1),
            // A RST: the kernel answers nothing (another RST would take frames too).
            flags: TcpFlags::RST,
            window: 1000,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &data,
        };
        let mut buf = vec![0u8; 20 + tcp.buffer_len()];
        let ip = IpRepr::new(LO, LO, PROTO_TCP, 64, tcp.buffer_len());
        let n = ip.emit(&mut buf).unwrap();
        tcp.emit(LO, LO, &mut buf[n..]).unwrap();
        buf
    }

    /// A tap as a probe opens it, on loopback in a namespace of its own, and a sender.
    fn lab() -> (Tap, RawSender) {
        crate::netns::set_link_up_by_name("lo").unwrap();
        let tap = Tap::open(1, "lo", PORT, true, 128 * 1024, &OtherLinks::default()).unwrap();
        (tap, RawSender::new(LO, 0).unwrap())
    }

    /// Everything the tap holds: (seq, length, truncated) of each arriving packet.
    fn drain(tap: &mut Tap) -> Vec<(u32, usize, bool)> {
        let mut buf = vec![0u8; PACKET_ROOM];
        let mut got = Vec::new();
        for _ in 0..100_000 {
            match tap.recv(&mut buf).unwrap() {
                Some(m) => {
                    let seq = u32::from_be_bytes(buf[24..28].try_into().unwrap());
                    got.push((seq, m.len, m.truncated));
                }
                None if tap.wait(Some(Duration::from_millis(50))).unwrap() => {}
                None => break,
            }
        }
        got
    }

    #[test]
    fn a_connection_ring_holds_a_window_of_small_segments() {
        let shape = RingShape::for_window(128 * 1024);
        assert_eq!((shape.frame_size, shape.frames), (2048, 1024));
        assert_eq!(shape.frame_room(), 1968);
        assert!(
            shape.frame_room() >= 1500,
            "an Ethernet-sized packet fits a frame"
        );
        // 245 segments of 536 bytes and an ACK for each, with room to spare.
        assert!(shape.frames >= 2 * 245 + 64);
        assert_eq!(RingShape::for_window(16 * 1024).frames, 256);
        assert_eq!(RingShape::for_window(16 << 20).frames, 8192);
    }

    #[test]
    fn a_survey_ring_grows_with_its_probes_within_two_to_eight_mebibytes() {
        let frames = |jobs| RingShape::for_survey(jobs).frames;
        let bytes = |jobs| frames(jobs) * RingShape::for_survey(jobs).frame_size;
        assert_eq!(
            (bytes(1), bytes(64), bytes(1000)),
            (2 << 20, 8 << 20, 8 << 20)
        );
        assert_eq!(
            [frames(1), frames(16), frames(32), frames(64)],
            [4096, 4096, 8192, 16_384]
        );
        assert_eq!(frames(100_000), 16_384);
        assert_eq!(frames(usize::MAX), 16_384, "no overflow");
        let shape = RingShape::for_survey(64);
        assert!(
            shape.frames >= 64 * (2 * 90),
            "a window of full segments and an ACK each, for every probe"
        );
        assert!(
            shape.frame_room() >= 60 + 40,
            "a SYN-ACK whole, options and all"
        );
        assert_eq!(shape.copy_queue, 16 << 20, "data whole from the queue");
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn a_survey_tap_says_whether_another_packet_waits_in_its_ring() {
        require_root("a_survey_tap_says_whether_another_packet_waits_in_its_ring");
        in_fresh_netns(|| {
            crate::netns::set_link_up_by_name("lo").unwrap();
            let mut tap = Tap::open_range(
                1,
                "lo",
                (PORT, PORT),
                true,
                Some(64),
                &OtherLinks::default(),
            )
            .unwrap();
            assert_eq!(tap.ring_shape(), Some(RingShape::for_survey(64)));
            let tx = RawSender::new(LO, 0).unwrap();
            let mut buf = vec![0u8; PACKET_ROOM];
            assert!(!tap.buffered(), "nothing sent yet");
            tx.send(&segment(1, 10), LO).unwrap();
            tx.send(&segment(2, 10), LO).unwrap();
            // Bounded: the loopback delivers inside the send; a second at most.
            for _ in 0..20 {
                if tap.buffered() {
                    break;
                }
                tap.wait(Some(Duration::from_millis(50))).unwrap();
            }
            assert!(tap.buffered(), "two packets wait");
            let seq = |buf: &[u8]| u32::from_be_bytes(buf[24..28].try_into().unwrap());
            assert!(tap.recv(&mut buf).unwrap().is_some());
            assert_eq!(seq(&buf), 1);
            // (On the loopback the next frame is packet 2's leaving copy, which `recv`
            // skips: a filled frame either way.)
            assert!(tap.buffered(), "the second still waits");
            assert!(tap.recv(&mut buf).unwrap().is_some());
            assert_eq!(seq(&buf), 2);
            assert!(!tap.buffered(), "both read");
            assert!(tap.recv(&mut buf).unwrap().is_none());
            // A data segment larger than a frame: read whole, from the queue.
            tx.send(&segment(3, 1400), LO).unwrap();
            tap.wait(Some(Duration::from_secs(1))).unwrap();
            let meta = tap.recv(&mut buf).unwrap().expect("the segment");
            assert_eq!((seq(&buf), meta.len, meta.truncated), (3, 1440, false));
            assert_eq!(tap.losses(), TapLosses::default());
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn burst_within_the_ring_is_whole_and_an_overflow_is_counted() {
        require_root("burst_within_the_ring_is_whole_and_an_overflow_is_counted");
        in_fresh_netns(|| {
            let (mut tap, tx) = lab();
            // Loopback shows each packet twice (leaving, arriving): 400 take 800 frames.
            for i in 0..400 {
                tx.send(&segment(i, 1400), LO).unwrap();
            }
            let got = drain(&mut tap);
            assert_eq!(got.len(), 400);
            assert!(got.iter().all(|&(_, len, t)| len == 1440 && !t));
            assert_eq!(tap.losses(), TapLosses::default());
            // Unread, 1 000 packets (2 000 frames) overflow the 1 024 frames: the first
            // 512 are there, and the kernel counted the rest.
            for i in 0..1000 {
                tx.send(&segment(10_000 + i, 1400), LO).unwrap();
            }
            let got = drain(&mut tap);
            assert_eq!(got.len(), 512);
            assert_eq!(got.last().map(|g| g.0), Some(10_511));
            assert_eq!(tap.losses().dropped, 2000 - 1024);
            assert_eq!(tap.losses().total(), 2000 - 1024, "counts accumulate");
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn packets_larger_than_a_frame_are_read_whole_in_order() {
        require_root("packets_larger_than_a_frame_are_read_whole_in_order");
        in_fresh_netns(|| {
            let (mut tap, tx) = lab();
            // Loopback's MTU is 64 KiB: these reach the tap as they were sent.
            let sizes = [100, 9_000, 1_400, 65_000, 1_928, 1_929, 30];
            for (i, &n) in sizes.iter().enumerate() {
                tx.send(&segment(i as u32, n), LO).unwrap();
            }
            let got = drain(&mut tap);
            let want: Vec<(u32, usize, bool)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (i as u32, n + 40, false))
                .collect();
            assert_eq!(got, want);
            assert_eq!(tap.losses(), TapLosses::default());
        })
        .unwrap();
    }
}

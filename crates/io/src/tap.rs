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

use super::cmsg::{PACKET_AUXDATA, SO_TIMESTAMPNS, TP_STATUS_CSUMNOTREADY};
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
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_TIMESTAMP: libc::c_int = 17;
const SOF_TIMESTAMPING_SOFTWARE: libc::c_int = 1 << 4;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const PACKET_STATISTICS: libc::c_int = 6;
pub(super) const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;

/// How the ring is cut into frames (each frame holds one packet).
#[derive(Clone, Copy, Debug)]
pub struct RingShape {
    pub frame_size: usize,
    pub frames: usize,
}

impl RingShape {
    /// For one connection: few frames, each holding the largest packet the tap can meet
    /// (a 64 KiB GSO super-packet — veth hands them over unsegmented — or a loopback
    /// packet, plus the frame header).
    pub const CONNECTION: RingShape = RingShape {
        frame_size: 1 << 17,
        frames: 32,
    };
    /// For scans: thousands of small frames, room for a burst of replies at a high rate
    /// (replies are headers only; anything longer than a frame is cut to its start).
    pub const SCAN: RingShape = RingShape {
        frame_size: 2048,
        frames: 4096,
    };

    /// Blocks are at least 64 KiB and a whole number of frames, so frame `i` lies at
    /// `i * frame_size`.
    fn block_size(self) -> usize {
        self.frame_size.max(1 << 16)
    }
}
/// A queue-read tap's receive buffer (bytes, as the kernel counts them: each small packet
/// costs about a kilobyte of it).
const QUEUE_BYTES: libc::c_int = 16 << 20;
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

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

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

/// What the tap missed, from the kernel's count and our own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapLosses {
    /// Packets the filter passed but the ring had no free frame for (PACKET_STATISTICS).
    pub dropped: u64,
    /// Packets longer than a frame whose whole copy was not available.
    pub truncated: u64,
}

/// `struct tpacket_stats`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// The mapped ring. Unmapped on drop.
struct Ring {
    base: *mut u8,
    len: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing borrows the ring
        // past the Tap that owns it.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

pub struct Tap {
    // Field order: the ring is unmapped before the socket closes.
    /// None: packets are read from the socket's queue instead (tapqueue.rs).
    ring: Option<Ring>,
    queue: Option<Box<QueueReader>>,
    socket: Socket,
    shape: RingShape,
    /// The frame to look at next.
    next: usize,
    /// On a loopback interface each packet is seen twice (leaving and arriving);
    /// we keep only the arriving copy.
    loopback: bool,
    losses: TapLosses,
}

impl Tap {
    /// Open a tap on interface `ifindex` that passes TCP to/from `port` and ICMP errors.
    pub fn open(ifindex: u32, ifname: &str, port: u16, loopback: bool) -> Result<Tap> {
        Tap::open_with(
            ifindex,
            ifname,
            &range_filter(port, port)?,
            loopback,
            RingShape::CONNECTION,
        )
    }

    /// [`Tap::open`] with a ring of the given shape.
    pub fn open_shaped(
        ifindex: u32,
        ifname: &str,
        port: u16,
        loopback: bool,
        shape: RingShape,
    ) -> Result<Tap> {
        Tap::open_with(ifindex, ifname, &range_filter(port, port)?, loopback, shape)
    }

    /// Open a tap that passes TCP to/from any port in `lo..=hi` and ICMP errors: one tap
    /// serves every probe of a survey that leaves through this interface. It reads the
    /// socket's queue, not a ring (tapqueue.rs says why).
    pub fn open_range(ifindex: u32, ifname: &str, lo: u16, hi: u16, loopback: bool) -> Result<Tap> {
        Tap::open_with(ifindex, ifname, &range_filter(lo, hi)?, loopback, None)
    }

    fn open_with(
        ifindex: u32,
        ifname: &str,
        filter: &[SockFilter],
        loopback: bool,
        shape: impl Into<Option<RingShape>>,
    ) -> Result<Tap> {
        let shape: Option<RingShape> = shape.into();
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
        let (ring, queue) = match shape {
            Some(shape) => (Some(map_ring(&socket, shape)?), None),
            None => {
                super::set_sockopt(
                    &socket,
                    libc::SOL_PACKET,
                    PACKET_AUXDATA,
                    &1 as &libc::c_int,
                )
                .context("PACKET_AUXDATA")?;
                // Room for a burst while the loop is busy sending: 64 probes in flight put
                // hundreds of segments here at once. FORCE goes past rmem_max (we hold
                // CAP_NET_ADMIN for the guard anyway); without it, what rmem_max allows.
                if super::set_sockopt(
                    &socket,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &QUEUE_BYTES,
                )
                .is_err()
                {
                    let _ = socket.set_recv_buffer_size(QUEUE_BYTES as usize);
                }
                (None, Some(Box::new(QueueReader::new())))
            }
        };
        bind_to_interface(&socket, ifindex)
            .with_context(|| format!("binding the AF_PACKET socket to interface {ifname}"))?;
        socket.set_nonblocking(true)?;
        Ok(Tap {
            ring,
            queue,
            socket,
            shape: shape.unwrap_or(RingShape {
                frame_size: 0,
                frames: QUEUE_BOUND,
            }),
            next: 0,
            loopback,
            losses: TapLosses::default(),
        })
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
        // SAFETY: tp_status is the frame's first u32, 4-aligned (frames are page-aligned);
        // the kernel writes it concurrently, hence an atomic. Acquire: the frame's other
        // bytes, written before the kernel set TP_STATUS_USER, are visible after it.
        let status = unsafe { &*(frame as *const AtomicU32) };
        let st = status.load(Ordering::Acquire);
        if st & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the frame is ours until we store TP_STATUS_KERNEL; the header is at its
        // start and the sockaddr_ll at SLL_OFFSET, both inside the frame. Offsets and
        // lengths from the header are clamped to the frame before use.
        let meta = unsafe {
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
        if meta.truncated {
            self.losses.truncated += 1;
        }
        status.store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.shape.frames;
        Some(meta)
    }

    /// Wait until a packet is there or `timeout` passes (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        super::poll::wait_readable(&[self.socket.as_fd()], timeout).map(|n| n > 0)
    }
}

/// Ask for a TPACKET_V2 ring of `shape` on `socket` and map it.
fn map_ring(socket: &Socket, shape: RingShape) -> Result<Ring> {
    super::set_sockopt(socket, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2)
        .context("PACKET_VERSION")?;
    let req = TpacketReq {
        tp_block_size: shape.block_size() as u32,
        tp_block_nr: (shape.frame_size * shape.frames / shape.block_size()) as u32,
        tp_frame_size: shape.frame_size as u32,
        tp_frame_nr: shape.frames as u32,
    };
    super::set_sockopt(socket, libc::SOL_PACKET, PACKET_RX_RING, &req).context("PACKET_RX_RING")?;
    let len = shape.frame_size * shape.frames;
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
        return Err(io::Error::last_os_error()).context("mapping the AF_PACKET ring");
    }
    Ok(Ring {
        base: base.cast(),
        len,
    })
}

impl Tap {
    /// What this tap missed so far. The kernel's drop counter resets when read, so the
    /// counts accumulate here.
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

// SAFETY: the ring's mapping belongs to this Tap alone and is only touched through
// `&mut self` (reads) or on drop, so the Tap may move to another thread.
unsafe impl Send for Tap {}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

pub(super) fn bind_to_interface(socket: &Socket, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
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

/// The tap's BPF filter for TCP ports `lo..=hi` (bpf.rs says what it passes and why).
fn range_filter(lo: u16, hi: u16) -> Result<Vec<SockFilter>> {
    let prog = super::bpf::range_filter(lo, hi)
        .map_err(|e| anyhow::anyhow!("building the tap's BPF filter: {e}"))?;
    Ok(prog
        .into_iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect())
}

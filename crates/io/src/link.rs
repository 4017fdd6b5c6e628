//! Whole Ethernet frames put on one interface by an AF_PACKET socket: the scan's fast send
//! path (zmap's and masscan's), beside the raw IP sockets of `sender.rs`.
//!
//! Why: a raw IP socket's packet goes through the IP layer — a route lookup, netfilter's
//! OUTPUT hook (our guard's table included), the neighbour table — before the device. A
//! frame whose addresses we wrote ourselves goes to the device directly. Measured on the
//! lab (scripts/bench-send; README, `tcpshake scan`, "Send path"): `sendmmsg` of frames
//! with the qdisc bypassed sends about 1.5 times as many SYNs a second as the raw socket,
//! and keeps most of that with its transmit stamps read back.
//!
//! Ways in, chosen by [`Mode`]:
//! - `sendmmsg(2)` of prebuilt frames (one system call per batch): the scan's;
//! - a `TPACKET_V2` TX ring (frames written into shared memory, one `send` to flush): no
//!   faster here, and its set-up and close wait for RCU grace periods (below); kept for
//!   `examples/send_ceiling.rs`, which measures every way;
//! - either with `PACKET_QDISC_BYPASS`, which skips the qdisc layer and hands frames to the
//!   driver (`packet_direct_xmit`). Then no tap sees them (`dev_queue_xmit_nit` is on the
//!   qdisc path only): the frames' send times come from the driver's software transmit
//!   stamps instead ([`FrameSender::enable_tx_stamps`]).
//!
//! The socket is bound with protocol 0, so it receives nothing; the kernel reads each
//! frame's EtherType from the frame itself (`packet_parse_headers`). Without the bypass,
//! frames it sends are seen by every other AF_PACKET socket on the interface, our tap
//! included, with the kernel's transmit timestamp — the same stamp a raw socket's packet
//! gets.
//!
//! Setting up a ring, and closing any AF_PACKET socket, waits for an RCU grace period
//! (`packet_set_ring`, `packet_release`: `synchronize_net`); the scan closes its sockets
//! at once.
//!
//! **Two senders** ([`FrameSender::open_twinned`]). The CPU a send call runs on pays for
//! every frame all the way down: the driver, and on a veth the peer's whole receive path
//! in softirq (the server's TCP answering each SYN). One sending thread is thus bound to
//! one CPU however many the host has. A twinned sender has a second socket (with its own
//! ring, in a ring mode) and a thread of its own sending through it: frames go there while
//! that thread waits, and through the first socket, sent by the caller, while it is
//! sending (at most 4 096 frames wait for it). No frame is added to a ring during its
//! `send`: the kernel's loop (`tpacket_snd`) takes frames until it finds none, and fed
//! without pause it would not return — holding a CPU that a kernel without preemption
//! gives to nobody else, the scan's receiver included. Measured (scripts/bench-send, 2
//! CPUs): `ring-bypass-ts` ~405 000 SYNs a second, `ring-bypass-ts-twin` ~630 000.

use super::packet::{MappedRing, RingKind, bind_to_interface, map_ring};
use super::{privilege_error, set_sockopt};
use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use tcpshake_proto::time::Instant;

// linux/if_packet.h
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;
/// `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`: where a TX frame's data starts.
const TX_DATA_OFFSET: usize = 32;
/// Send buffer for frames in flight: a few batches of small frames, many times over.
const SNDBUF: libc::c_int = 4 << 20;
/// Receive buffer, which holds the transmit timestamps waiting on the error queue (each
/// costs a small skb, ~0.5 KiB as the kernel counts it).
const RCVBUF: libc::c_int = 8 << 20;
// linux/net_tstamp.h, asm-generic/socket.h
const SO_TIMESTAMPING: libc::c_int = 37;
const SOF_TIMESTAMPING_TX_SOFTWARE: u32 = 1 << 1;
const SOF_TIMESTAMPING_SOFTWARE: u32 = 1 << 4;
// linux/errqueue.h, linux/if_packet.h
const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;
const SCM_TSTAMP_SND: u32 = 0;
const PACKET_TX_TIMESTAMP: libc::c_int = 16;
/// Error-queue messages read per `recvmmsg`.
const STAMP_BATCH: usize = 64;
/// Bytes of a stamped frame read back: its headers (Ethernet, IPv6, TCP with MSS).
const STAMP_DATA: usize = 128;
/// Room for one message's control data: `scm_timestamping` (3 timespecs) and a
/// `sock_extended_err`, each with its header, in u64s for alignment.
const STAMP_CONTROL_WORDS: usize = 16;

/// How frames reach the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `sendmmsg(2)`, through the qdisc: every tap sees the frames.
    Sendmmsg,
    /// `sendmmsg(2)` with `PACKET_QDISC_BYPASS`: taps do not see the frames.
    SendmmsgBypass,
    /// A `TPACKET_V2` TX ring, through the qdisc.
    TxRing,
    /// A TX ring with `PACKET_QDISC_BYPASS`.
    TxRingBypass,
}

impl Mode {
    pub fn bypass(self) -> bool {
        matches!(self, Mode::SendmmsgBypass | Mode::TxRingBypass)
    }

    pub fn ring(self) -> bool {
        matches!(self, Mode::TxRing | Mode::TxRingBypass)
    }
}

/// The TX ring's shape: small frames (a SYN frame is 78 bytes), many of them.
const RING_FRAME: usize = 256;
const RING_FRAMES: usize = 4096;
const RING_BLOCK: usize = 1 << 16;

/// The mapped TX ring and the frame to fill next.
struct TxRing {
    map: MappedRing,
    next: usize,
}

// SAFETY: the mapping belongs to this ring alone and is only touched through `&mut self`
// (filling) or `&self` (reading statuses atomically), so the ring may move to the thread
// that closes it.
unsafe impl Send for TxRing {}

/// Frames onto one interface. See the module doc.
pub struct FrameSender {
    // Field order: the ring is unmapped before the socket closes.
    ring: Option<TxRing>,
    socket: Socket,
    mode: Mode,
    /// A second socket sending from a thread of its own (module doc, "Two senders").
    twin: Option<Twin>,
    /// Scratch for `sendmmsg`, kept to avoid allocating per batch.
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Scratch for reading transmit timestamps.
    stamp_control: Vec<[u64; STAMP_CONTROL_WORDS]>,
    stamp_data: Vec<[u8; STAMP_DATA]>,
    stamp_iovs: Vec<libc::iovec>,
    stamp_msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the ring's mapping and the scratch vectors' raw pointers belong to this sender
// alone and are only used through `&mut self`, so it may move to another thread.
unsafe impl Send for FrameSender {}

impl FrameSender {
    /// A sender on interface `ifindex`. `mark` is the socket mark (our guard's); frames
    /// skip netfilter's IP hooks anyway, but the mark says they are ours wherever a
    /// netdev-level rule looks.
    pub fn open(ifindex: u32, mode: Mode, mark: u32) -> Result<FrameSender> {
        let (socket, ring) = open_socket(ifindex, mode, mark)?;
        Ok(FrameSender {
            ring,
            socket,
            mode,
            twin: None,
            iovs: Vec::new(),
            msgs: Vec::new(),
            stamp_control: Vec::new(),
            stamp_data: Vec::new(),
            stamp_iovs: Vec::new(),
            stamp_msgs: Vec::new(),
        })
    }

    /// A sender with a second socket (and ring, in a ring mode) that a thread of its own
    /// sends through (module doc, "Two senders").
    pub fn open_twinned(ifindex: u32, mode: Mode, mark: u32) -> Result<FrameSender> {
        let mut sender = FrameSender::open(ifindex, mode, mark)?;
        let (socket, ring) = open_socket(ifindex, mode, mark)?;
        sender.twin = Some(Twin::start(socket, ring)?);
        Ok(sender)
    }

    /// Every socket of this sender: ours, then the twin's.
    fn sockets(&self) -> impl Iterator<Item = &Socket> {
        std::iter::once(&self.socket).chain(self.twin.as_ref().map(|t| &*t.socket))
    }
}

/// One sending socket bound to `ifindex`, with its TX ring when `mode` has one.
fn open_socket(ifindex: u32, mode: Mode, mark: u32) -> Result<(Socket, Option<TxRing>)> {
    let socket = Socket::new(Domain::PACKET, Type::RAW.cloexec(), None)
        .map_err(|e| privilege_error(e, "open an AF_PACKET socket for sending"))?;
    if set_sockopt(&socket, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SNDBUF).is_err() {
        let _ = socket.set_send_buffer_size(SNDBUF as usize);
    }
    socket
        .set_mark(mark)
        .map_err(|e| privilege_error(e, "set SO_MARK on the AF_PACKET socket"))?;
    if mode.bypass() {
        set_sockopt(
            &socket,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &1 as &libc::c_int,
        )
        .context("PACKET_QDISC_BYPASS")?;
    }
    let ring = if mode.ring() {
        Some(map_tx_ring(&socket)?)
    } else {
        None
    };
    // Protocol 0: the socket sends there and receives nothing.
    bind_to_interface(&socket, ifindex, 0)
        .with_context(|| format!("binding the sending AF_PACKET socket to interface {ifindex}"))?;
    Ok((socket, ring))
}

impl FrameSender {
    /// Ask for each frame's transmit timestamp ([`FrameSender::read_stamps`]): the
    /// driver's software stamp (`SOF_TIMESTAMPING_TX_SOFTWARE`, taken where the frame
    /// enters the driver, `skb_tx_timestamp`) — with `PACKET_QDISC_BYPASS`, where no tap
    /// sees the frame. Each stamp comes back with a copy of its frame, so it names its
    /// packet itself: counting frames (`OPT_ID`) would go wrong when the kernel sends a
    /// ring frame twice after a drop (`tpacket_snd` puts it back as SEND_REQUEST). False
    /// when the kernel refuses.
    pub fn enable_tx_stamps(&self) -> bool {
        self.sockets().all(|socket| {
            if set_sockopt(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF).is_err() {
                let _ = socket.set_recv_buffer_size(RCVBUF as usize);
            }
            let flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
            set_sockopt(socket, libc::SOL_SOCKET, SO_TIMESTAMPING, &flags).is_ok()
        })
    }

    /// Read up to `max` transmit timestamps waiting on the error queues (each socket's),
    /// handing each (with the start of its frame) to `each`; returns how many messages
    /// were read. Never blocks.
    pub fn read_stamps(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8], Instant),
    ) -> io::Result<usize> {
        let mut total = self.read_stamps_of(false, max, &mut each)?;
        if self.twin.is_some() {
            total += self.read_stamps_of(true, max.saturating_sub(total), &mut each)?;
        }
        Ok(total)
    }

    /// [`FrameSender::read_stamps`] for one socket: ours, or the twin's.
    fn read_stamps_of(
        &mut self,
        twin: bool,
        max: usize,
        each: &mut impl FnMut(&[u8], Instant),
    ) -> io::Result<usize> {
        let fd = match (&self.twin, twin) {
            (Some(t), true) => t.socket.as_raw_fd(),
            _ => self.socket.as_raw_fd(),
        };
        let mut total = 0;
        // Bounded by `max`.
        while total < max {
            let want = (max - total).min(STAMP_BATCH);
            self.stamp_control.resize(want, [0; STAMP_CONTROL_WORDS]);
            self.stamp_data.resize(want, [0; STAMP_DATA]);
            self.stamp_iovs.clear();
            for d in self.stamp_data.iter_mut() {
                self.stamp_iovs.push(libc::iovec {
                    iov_base: d.as_mut_ptr().cast(),
                    iov_len: STAMP_DATA,
                });
            }
            self.stamp_msgs.clear();
            for (c, iov) in self
                .stamp_control
                .iter_mut()
                .zip(self.stamp_iovs.iter_mut())
            {
                // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = c.as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = STAMP_CONTROL_WORDS * 8;
                self.stamp_msgs.push(m);
            }
            // SAFETY: `stamp_msgs` holds `want` mmsghdrs whose data and control buffers
            // point into `stamp_data`/`stamp_iovs` and `stamp_control`, alive and of the
            // stated lengths for the call; MSG_DONTWAIT never blocks.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.stamp_msgs.as_mut_ptr(),
                    want as u32,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => Ok(total),
                    _ => Err(e),
                };
            }
            let n = rc as usize;
            for (m, d) in self.stamp_msgs[..n].iter().zip(&self.stamp_data) {
                // SAFETY: recvmmsg filled this message's control buffer (alive,
                // `msg_controllen` bytes) with its control messages.
                if let Some(at) = unsafe { decode_stamp(&m.msg_hdr) } {
                    let len = (m.msg_len as usize).min(STAMP_DATA);
                    each(&d[..len], at);
                }
            }
            total += n;
            if n < want {
                break;
            }
        }
        Ok(total)
    }

    /// Frames still in the TX rings, or handed to the twin's thread, not yet to the driver.
    pub fn in_flight(&self) -> usize {
        let twin = self.twin.as_ref().and_then(|t| t.ring.as_ref());
        let rings: usize = self.ring.iter().chain(twin).map(TxRing::in_flight).sum();
        rings + self.twin.as_ref().map_or(0, |t| t.flusher.backlog())
    }

    /// Have the kernel send what the ring holds, until it is empty or `limit` passes;
    /// returns the frames left.
    pub fn drain(&mut self, limit: std::time::Duration) -> io::Result<usize> {
        let end = crate::clock::now() + limit;
        // Bounded by `limit`.
        loop {
            let left = self.in_flight();
            if left == 0 || crate::clock::now() >= end {
                return Ok(left);
            }
            self.kick()?;
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Send whole Ethernet frames; returns how many the kernel took (fewer than given on
    /// a full queue, or a full ring: the caller sends the rest again). An error only when
    /// none was taken.
    pub fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        if frames.is_empty() {
            return Ok(0);
        }
        if self.ring.is_some() {
            return self.send_ring(frames);
        }
        // Twinned: to the other thread unless it is sending (module doc, "Two senders").
        if let Some(t) = &self.twin {
            t.flusher.failure()?;
            let queued = t.flusher.offer(|s| s.hand(frames));
            if queued > 0 {
                return Ok(queued);
            }
        }
        sendmmsg_frames(&self.socket, frames, &mut self.iovs, &mut self.msgs)
    }

    /// Copy frames into free ring slots and have the kernel send them all. Twinned, the
    /// frames go to the twin's ring unless its thread is sending (or the ring is full),
    /// else to ours, sent here (module doc, "Two senders").
    fn send_ring(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        if frames.iter().any(|f| f.len() > RING_FRAME - TX_DATA_OFFSET) {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        if let Some(Twin {
            flusher,
            ring: Some(ring),
            ..
        }) = &mut self.twin
        {
            // What the flusher's last send failed with, said once, here.
            flusher.failure()?;
            let queued = flusher.offer(|_| ring.fill(frames));
            if queued > 0 {
                return Ok(queued);
            }
        }
        let Some(ring) = self.ring.as_mut() else {
            return Ok(0);
        };
        let queued = ring.fill(frames);
        if queued == 0 {
            // Let the kernel drain what it holds, then say "try again".
            kick(&self.socket)?;
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
        kick(&self.socket)?;
        Ok(queued)
    }

    /// Have everything waiting sent: our ring flushed here, the twin's ring flushed or its
    /// handed frames sent on its thread. (A socket without a ring has nothing waiting: a
    /// zero-length send there is a malformed frame, refused.)
    fn kick(&self) -> io::Result<()> {
        if let Some(t) = &self.twin {
            t.flusher.request();
        }
        match self.ring {
            Some(_) => kick(&self.socket),
            None => Ok(()),
        }
    }
}

impl TxRing {
    /// Copy as many of `frames` as there are free slots (each checked to fit) and mark
    /// them for sending; returns how many.
    fn fill(&mut self, frames: &[&[u8]]) -> usize {
        let mut queued = 0;
        for f in frames {
            let len = f.len().min(RING_FRAME - TX_DATA_OFFSET);
            // SAFETY: `next < RING_FRAMES`, so the frame lies inside the mapping.
            let frame = unsafe { self.map.base.add(self.next * RING_FRAME) };
            // SAFETY: tp_status is the frame's first u32, 4-aligned (frames are 256-byte
            // aligned in page-aligned blocks); the kernel writes it concurrently, hence
            // an atomic.
            let status = unsafe { &*(frame as *const AtomicU32) };
            let st = status.load(Ordering::Acquire);
            if st != TP_STATUS_AVAILABLE && st != TP_STATUS_WRONG_FORMAT {
                break; // still the kernel's: the ring is full
            }
            // SAFETY: the frame is ours while its status is AVAILABLE; the data (at most
            // the frame's room, `len`) and the length field lie inside it.
            unsafe {
                std::ptr::copy_nonoverlapping(f.as_ptr(), frame.add(TX_DATA_OFFSET), len);
                // tp_len: the u32 after tp_status.
                (frame.add(4) as *mut u32).write(len as u32);
            }
            status.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.next = (self.next + 1) % RING_FRAMES;
            queued += 1;
        }
        queued
    }

    /// Frames not yet handed to the driver.
    fn in_flight(&self) -> usize {
        (0..RING_FRAMES)
            .filter(|i| {
                // SAFETY: frame `i < RING_FRAMES` lies inside the mapping; its status is
                // read atomically (the kernel writes it).
                let status = unsafe { &*(self.map.base.add(i * RING_FRAME) as *const AtomicU32) };
                let st = status.load(Ordering::Acquire);
                st != TP_STATUS_AVAILABLE && st != TP_STATUS_WRONG_FORMAT
            })
            .count()
    }
}

/// Whole frames through `socket` with one `sendmmsg(2)` (`iovs` and `msgs`: scratch);
/// returns how many the kernel took.
fn sendmmsg_frames(
    socket: &Socket,
    frames: &[&[u8]],
    iovs: &mut Vec<libc::iovec>,
    msgs: &mut Vec<libc::mmsghdr>,
) -> io::Result<usize> {
    iovs.clear();
    iovs.extend(frames.iter().map(|f| libc::iovec {
        iov_base: f.as_ptr() as *mut libc::c_void,
        iov_len: f.len(),
    }));
    msgs.clear();
    for iov in iovs.iter_mut() {
        // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        msgs.push(m);
    }
    let n = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
    // SAFETY: `msgs` holds `n` initialised mmsghdrs whose iovecs point into `iovs` and the
    // caller's frames, all alive for the call; no address (the socket is bound); the
    // kernel only reads them (it writes msg_len).
    let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// `send(fd, NULL, 0, MSG_DONTWAIT)`: transmit every frame of the socket's ring marked
/// SEND_REQUEST. Not waiting: without MSG_DONTWAIT the kernel waits for the device to
/// complete every frame in flight, with no timeout (`tpacket_snd`), and a device that never
/// does would hang the scan; a full ring is waited out by the caller instead.
fn kick(socket: &Socket) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer is how the TX ring is flushed; the
    // kernel reads the ring, not the buffer.
    let rc = unsafe { libc::send(socket.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) {
            return Err(e);
        }
    }
    Ok(())
}

/// The second socket of a twinned sender, its ring (in a ring mode), and the thread that
/// sends through it.
struct Twin {
    // Field order: the thread is stopped (Drop) before the ring is unmapped, and the ring
    // before the socket closes.
    flusher: Arc<Flusher>,
    thread: Option<std::thread::JoinHandle<()>>,
    ring: Option<TxRing>,
    socket: Arc<Socket>,
}

/// Frames a `sendmmsg` twin holds at most, handed over and not yet sent: like a ring's
/// 4 096 frames, a bound on what waits there.
const TWIN_BACKLOG: usize = 4096;

/// Requests from the sender to the flushing thread.
#[derive(Default)]
struct Flusher {
    state: Mutex<FlushState>,
    wake: Condvar,
    /// The errno of a flush that failed (0: none), taken by the sender's next batch.
    failed: AtomicI32,
}

#[derive(Default)]
struct FlushState {
    /// Frames were marked for sending (or handed over) since the last flush began.
    pending: bool,
    /// The thread is in `send`: the ring must not gain frames (the kernel's loop would
    /// take them too, and one that never finds the ring empty never returns).
    sending: bool,
    stop: bool,
    /// A `sendmmsg` twin's frames, back to back, and their lengths.
    bytes: Vec<u8>,
    lens: Vec<usize>,
}

impl FlushState {
    /// Take as many of `frames` as the backlog has room for (copies); how many.
    fn hand(&mut self, frames: &[&[u8]]) -> usize {
        let n = frames
            .len()
            .min(TWIN_BACKLOG.saturating_sub(self.lens.len()));
        for f in &frames[..n] {
            self.bytes.extend_from_slice(f);
            self.lens.push(f.len());
        }
        n
    }
}

impl Flusher {
    fn request(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending = true;
        self.wake.notify_one();
    }

    /// Put frames in the ring, or hand them over, with `fill` unless the thread is
    /// sending; returns how many went in, and has them sent.
    fn offer(&self, fill: impl FnOnce(&mut FlushState) -> usize) -> usize {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.sending {
            return 0;
        }
        let queued = fill(&mut s);
        if queued > 0 {
            s.pending = true;
            drop(s);
            self.wake.notify_one();
        }
        queued
    }

    /// Frames handed over and not yet sent (a ring's are counted in the ring), the send in
    /// progress counting as one.
    fn backlog(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.lens.len() + usize::from(s.sending)
    }

    fn failure(&self) -> io::Result<()> {
        match self.failed.swap(0, Ordering::Relaxed) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// The thread's loop: one send per request (requests made during a send make one
    /// more) — the ring flushed, or what was handed over sent — until told to stop, after
    /// a last send of anything requested.
    fn run(&self, socket: &Socket, ring: bool) {
        let (mut bytes, mut lens) = (Vec::new(), Vec::new());
        let (mut iovs, mut msgs) = (Vec::new(), Vec::new());
        // Bounded by the sender's life: `Twin`'s drop stops it.
        loop {
            {
                let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                // Bounded: each wake-up is a request or the stop.
                while !s.pending && !s.stop {
                    s = self.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                if !s.pending {
                    return;
                }
                s.pending = false;
                s.sending = true;
                std::mem::swap(&mut bytes, &mut s.bytes);
                std::mem::swap(&mut lens, &mut s.lens);
            }
            // Bounded: nothing is added to the ring while `sending` is set, so the kernel's
            // loop ends with the frames there now (at most the ring's 4 096); what was
            // handed over is at most TWIN_BACKLOG frames.
            let sent = match ring {
                true => kick(socket),
                false => send_handed(socket, &bytes, &lens, &mut iovs, &mut msgs),
            };
            if let Err(e) = sent {
                self.failed
                    .store(e.raw_os_error().unwrap_or(libc::EIO), Ordering::Relaxed);
            }
            bytes.clear();
            lens.clear();
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sending = false;
        }
    }
}

/// Send frames handed over (back to back in `bytes`, lengths `lens`) with `sendmmsg`, 64
/// at a time; a full queue (ENOBUFS) is waited out, about a second at most per batch.
fn send_handed(
    socket: &Socket,
    bytes: &[u8],
    lens: &[usize],
    iovs: &mut Vec<libc::iovec>,
    msgs: &mut Vec<libc::mmsghdr>,
) -> io::Result<()> {
    let mut frames = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &len in lens {
        frames.push(&bytes[at..at + len]);
        at += len;
    }
    let mut rest = &frames[..];
    let mut waits = 0;
    // Bounded: each turn sends a frame or waits, 10 000 waits of 100 µs at most.
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(64)];
        match sendmmsg_frames(socket, batch, iovs, msgs) {
            Ok(n) if n > 0 => rest = &rest[n..],
            Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                return Err(e);
            }
            _ if waits < 10_000 => {
                waits += 1;
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            _ => return Err(io::Error::from_raw_os_error(libc::ENOBUFS)),
        }
    }
    Ok(())
}

impl Twin {
    fn start(socket: Socket, ring: Option<TxRing>) -> Result<Twin> {
        let socket = Arc::new(socket);
        let flusher = Arc::new(Flusher::default());
        let thread = {
            let (socket, flusher) = (Arc::clone(&socket), Arc::clone(&flusher));
            let is_ring = ring.is_some();
            std::thread::Builder::new()
                .name("frame flusher".into())
                .spawn(move || flusher.run(&socket, is_ring))
                .context("starting the frame flusher thread")?
        };
        Ok(Twin {
            flusher,
            thread: Some(thread),
            ring,
            socket,
        })
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        self.flusher
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.flusher.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        // Closing an AF_PACKET socket waits out an RCU grace period, a ring's socket two
        // (module doc): the twin's closes on a thread of its own, beside ours. The process
        // does not exit before the kernel has finished with it.
        if let Some(t) = self.twin.take() {
            let _ = std::thread::Builder::new()
                .name("closing".into())
                .spawn(move || drop(t));
        }
    }
}

impl AsFd for FrameSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// `struct sock_extended_err` (linux/errqueue.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct SockExtendedErr {
    ee_errno: u32,
    ee_origin: u8,
    ee_type: u8,
    ee_code: u8,
    ee_pad: u8,
    ee_info: u32,
    ee_data: u32,
}

/// One error-queue message: a software transmit stamp (`scm_timestamping.ts[0]`) with
/// the extended error that says it is one (`SO_EE_ORIGIN_TIMESTAMPING`, `SCM_TSTAMP_SND`).
///
/// # Safety
/// `msg` must be a message recvmsg filled, its control buffer alive for
/// `msg_controllen` bytes.
unsafe fn decode_stamp(msg: &libc::msghdr) -> Option<Instant> {
    let (mut at, mut sent) = (None, false);
    // SAFETY: per this function's contract, CMSG_FIRSTHDR/NXTHDR walk a buffer the kernel
    // filled and stay within `msg_controllen`; each payload is read unaligned at the size
    // of the type its (level, type) pair announces, which the kernel wrote.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, SO_TIMESTAMPING) => {
                    let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                    at = Some(crate::clock::instant_of(&ts));
                }
                (libc::SOL_PACKET, PACKET_TX_TIMESTAMP) => {
                    let e = std::ptr::read_unaligned(data as *const SockExtendedErr);
                    sent = e.ee_errno == libc::ENOMSG as u32
                        && e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING
                        && e.ee_info == SCM_TSTAMP_SND;
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    at.filter(|a| sent && a.as_nanos() != 0)
}

fn map_tx_ring(socket: &Socket) -> Result<TxRing> {
    let map = map_ring(socket, RingKind::Tx, RING_BLOCK, RING_FRAME, RING_FRAMES)?;
    Ok(TxRing { map, next: 0 })
}

/// `struct ethtool_ts_info` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolTsInfo {
    cmd: u32,
    so_timestamping: u32,
    phc_index: i32,
    tx_types: u32,
    tx_reserved: [u32; 3],
    rx_filters: u32,
    rx_reserved: [u32; 3],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GET_TS_INFO: u32 = 0x41;
/// linux/ethtool.h: set the transmit checksum offload (`ethtool -K IF tx on|off`).
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`: a command and one value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turn off transmit checksum offload on `ifname` in this thread's namespace (`ethtool -K
/// IF tx off`): over a veth the kernel leaves a partial checksum (CHECKSUM_PARTIAL) in
/// what it sends, which a capture (ours, tcpdump's) shows as a bad checksum — a real NIC
/// fills it in on the way out; a veth never does.
pub fn tx_checksum_off(ifname: &str) -> std::io::Result<()> {
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    // SAFETY: ETHTOOL_STXCSUM reads a `struct ethtool_value`, which `value` is.
    unsafe { ethtool(ifname, &mut value) }
}

/// Whether interface `ifname`'s driver stamps the frames it transmits in software
/// (`ethtool -T`: "software-transmit"), which [`FrameSender::enable_tx_stamps`] needs.
pub fn tx_software_stamps(ifname: &str) -> bool {
    let mut info = EthtoolTsInfo {
        cmd: ETHTOOL_GET_TS_INFO,
        ..EthtoolTsInfo::default()
    };
    // SAFETY: ETHTOOL_GET_TS_INFO writes a `struct ethtool_ts_info`, which `info` is.
    let asked = unsafe { ethtool(ifname, &mut info) };
    asked.is_ok() && info.so_timestamping & SOF_TIMESTAMPING_TX_SOFTWARE != 0
}

/// `struct ethtool_drvinfo` (linux/ethtool.h): the driver's name and more.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const ETHTOOL_GDRVINFO: u32 = 0x03;

/// The name of interface `ifname`'s driver (`ethtool -i`: "veth", "tun", "e1000e", …), in
/// this thread's namespace; `None` when it has none to say (loopback) or is not there.
pub fn driver(ifname: &str) -> Option<String> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: ETHTOOL_GDRVINFO writes a `struct ethtool_drvinfo`, which `info` is.
    unsafe { ethtool(ifname, &mut info) }.ok()?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// One `SIOCETHTOOL` request on interface `ifname` (in this thread's namespace): `cmd` is
/// the command's own structure, its first field the command number.
///
/// # Safety
/// `T` must be the `#[repr(C)]` structure the kernel reads (and writes) for the command in
/// its first field, whole: the kernel copies that many bytes from and to it.
unsafe fn ethtool<T>(ifname: &str, cmd: &mut T) -> std::io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (cmd as *mut T).cast();
    // SAFETY: SIOCETHTOOL reads the NUL-terminated name and the command's structure at
    // ifru_data, which the caller vouches for; `cmd` is alive for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod driver_tests {
    use super::driver;
    use crate::netns::testutil::{in_fresh_netns, require_root};

    /// A veth says so (the survey lets its SYN-ACKs carry a checksum left to offload:
    /// survey.rs `tap_for`); loopback has no driver to name.
    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn a_veth_names_its_driver_and_loopback_none() {
        require_root("a_veth_names_its_driver_and_loopback_none");
        in_fresh_netns(|| {
            // A child of this thread is in its namespace, which takes the pair with it.
            let made = std::process::Command::new("ip")
                .args([
                    "link", "add", "drv0", "type", "veth", "peer", "name", "drv1",
                ])
                .status()
                .expect("ip");
            assert!(made.success());
            assert_eq!(driver("drv0").as_deref(), Some("veth"));
            assert_eq!(driver("lo"), None);
            assert_eq!(driver("nosuch0"), None);
        })
        .unwrap();
    }
}

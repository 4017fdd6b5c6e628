//! The link emulator's I/O: two AF_PACKET sockets (whole Ethernet frames) on the two
//! interfaces it bridges, and a loop that hands every frame to the pure
//! [`crate::linkem::Link`] of its direction and sends it out of the other interface when it
//! is due.
//!
//! Delay accuracy: the loop sleeps in `ppoll` (ns resolution, timer slack set to 1 ns) until
//! shortly before the next frame is due, then spins, and measures each frame's lateness
//! from its kernel receive timestamp: the emulator's own report says how well it kept time.

use super::set_sockopt;
use super::tap::{PACKET_OUTGOING, SO_TIMESTAMPNS, TP_STATUS_CSUMNOTREADY, bind_to_interface};
use crate::linkem::{FrameInfo, Link, LinkParams, LinkStats, complete_checksum, tcp_offset};
use crate::time::Instant;
use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::tapqueue::{PACKET_AUXDATA, TpacketAuxdata};

const ETH_P_ALL: u16 = 0x0003;
/// Wake this long before a frame is due and spin the rest: a sleep can overshoot by the
/// scheduler's wake-up latency, a spin cannot.
const SPIN_MARGIN: Duration = Duration::from_micros(1000);
/// Longest single sleep, so a stop request is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// One end of the bridge.
struct Port {
    socket: Socket,
    name: String,
}

/// A frame read off a port.
struct Frame {
    at: Instant,
    len: usize,
    csum_not_ready: bool,
}

impl Port {
    fn open(name: &str) -> Result<Port> {
        let cname = std::ffi::CString::new(name).context("interface name")?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface named {name}");
        }
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW.cloexec(),
            Some(socket2::Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .map_err(|e| super::privilege_error(e, "open an AF_PACKET socket"))?;
        set_sockopt(
            &socket,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &1 as &libc::c_int,
        )
        .context("SO_TIMESTAMPNS")?;
        set_sockopt(
            &socket,
            libc::SOL_PACKET,
            PACKET_AUXDATA,
            &1 as &libc::c_int,
        )
        .context("PACKET_AUXDATA")?;
        let _ = socket.set_recv_buffer_size(8 << 20);
        let _ = socket.set_send_buffer_size(8 << 20);
        bind_to_interface(&socket, ifindex).with_context(|| format!("binding to {name}"))?;
        socket.set_nonblocking(true)?;
        Ok(Port {
            socket,
            name: name.to_string(),
        })
    }

    /// One frame that arrived on this interface (our own transmissions are skipped).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Frame>> {
        // Bounded: skip at most the outgoing copies queued right now.
        for _ in 0..1024 {
            let mut addr = MaybeUninit::<libc::sockaddr_ll>::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut control = [0u64; 16];
            // SAFETY: msghdr is plain data; zeroed is a valid initial value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = addr.as_mut_ptr().cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            // SAFETY: every pointer in `msg` points at a live buffer of the stated length.
            let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(e),
                };
            }
            // SAFETY: recvmsg filled `addr` (at most its size).
            let addr = unsafe { addr.assume_init() };
            if addr.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let mut at = None;
            let mut aux = TpacketAuxdata::default();
            // SAFETY: CMSG_* walk the control buffer recvmsg filled, within msg_controllen;
            // payloads are copied out with read_unaligned after checking their type.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    let h = &*cmsg;
                    if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == SO_TIMESTAMPNS {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        at = Some(Instant::from_nanos(
                            (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64,
                        ));
                    } else if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == PACKET_AUXDATA {
                        aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            return Ok(Some(Frame {
                at: at.unwrap_or_else(super::clock::now),
                len: (n as usize).min(buf.len()),
                csum_not_ready: aux.tp_status & TP_STATUS_CSUMNOTREADY != 0,
            }));
        }
        Ok(None)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live buffer of the stated length; the socket is bound to
        // the interface, so no address is needed.
        let n = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What the emulator did, per direction (`a→b`, `b→a`), and frames it had to checksum.
#[derive(Debug, Default)]
pub struct Report {
    pub ab: LinkStats,
    pub ba: LinkStats,
    pub checksums_completed: u64,
    pub send_errors: u64,
}

/// Asks for `SCHED_FIFO` (priority 1): the bridge then preempts ordinary processes when a
/// frame falls due, which keeps the delay's tail short on a busy machine. It sleeps
/// between frames and spins at most [`SPIN_MARGIN`] per wake-up, so it cannot hog a CPU.
/// Returns false when the kernel refuses (no CAP_SYS_NICE, RT throttling).
pub fn set_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is this thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// Bridges interfaces `a` and `b` until `stop` is set.
pub fn run(
    a: &str,
    b: &str,
    ab: LinkParams,
    ba: LinkParams,
    seed: u64,
    stop: &AtomicBool,
) -> Result<Report> {
    let ports = [Port::open(a)?, Port::open(b)?];
    // Precise sleeps: the default 50 µs timer slack would be half our error budget.
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer argument and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    // Independent dice per direction, both from the one seed.
    let mut links = [
        Link::new(ab, seed),
        Link::new(ba, seed ^ 0x5851_f42d_4c95_7f2d),
    ];
    let mut report = Report::default();
    let mut buf = vec![0u8; 65536 + 64];
    while !stop.load(Ordering::Relaxed) {
        // Arrivals: port i feeds link i (a→b is link 0, b→a is link 1).
        for (i, port) in ports.iter().enumerate() {
            for _ in 0..256 {
                let Some(f) = port
                    .recv(&mut buf)
                    .with_context(|| format!("reading {}", port.name))?
                else {
                    break;
                };
                let frame = &mut buf[..f.len];
                if f.csum_not_ready && complete_checksum(frame) {
                    report.checksums_completed += 1;
                }
                let info = FrameInfo {
                    tcp_offset: tcp_offset(frame),
                };
                links[i].push(f.at, frame.to_vec(), info);
            }
        }
        // Departures.
        let now = super::clock::now();
        for (i, link) in links.iter_mut().enumerate() {
            let out = &ports[1 - i];
            for _ in 0..1024 {
                let Some((due, frame)) = link.pop_due(now) else {
                    break;
                };
                match out.send(&frame) {
                    Ok(()) => link.record_sent(due, super::clock::now()),
                    // A full queue or a vanished interface: the frame is lost, as on a wire.
                    Err(_) => report.send_errors += 1,
                }
            }
        }
        let next = links.iter().filter_map(Link::next_due).min();
        let now = super::clock::now();
        let wait = next.map_or(MAX_SLEEP, |d| d.saturating_since(now).min(MAX_SLEEP));
        if wait > SPIN_MARGIN {
            wait_readable(&ports, wait - SPIN_MARGIN)?;
        } else {
            std::hint::spin_loop();
        }
    }
    report.ab = links[0].stats;
    report.ba = links[1].stats;
    Ok(report)
}

/// Sleeps until either port has a frame or `timeout` passes (signals end it early).
fn wait_readable(ports: &[Port; 2], timeout: Duration) -> io::Result<()> {
    let mut fds = [
        libc::pollfd {
            fd: ports[0].socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ports[1].socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is a valid array of two pollfds and `ts` a valid timespec for the call;
    // a null sigmask keeps the current one.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

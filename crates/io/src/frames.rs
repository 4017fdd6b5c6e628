//! Whole Ethernet frames on one interface (AF_PACKET, SOCK_RAW), each with its kernel
//! receive timestamp and whether its checksum is still partial (veth offloads): the link
//! emulator's ports (`tcpshake_lab::linkem_io`).

use super::cmsg::{self, CONTROL_WORDS, PACKET_AUXDATA, SO_TIMESTAMPNS};
use super::packet::PACKET_OUTGOING;
use super::packet::{ETH_P_ALL, bind_to_interface};
use super::set_sockopt;
use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use tcpshake_proto::time::Instant;

/// One interface, every frame on it.
pub struct FramePort {
    socket: Socket,
    name: String,
}

/// A frame read off a port.
pub struct Frame {
    pub at: Instant,
    pub len: usize,
    pub csum_not_ready: bool,
}

impl FramePort {
    pub fn open(name: &str) -> Result<FramePort> {
        FramePort::open_filtered(name, None)
    }

    /// [`FramePort::open`] passing only what `filter` (classic BPF over the whole frame)
    /// accepts: the filter is in place before the socket is bound, so nothing else is
    /// ever queued.
    pub fn open_filtered(name: &str, filter: Option<&[socket2::SockFilter]>) -> Result<FramePort> {
        let cname = std::ffi::CString::new(name).context("interface name")?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface named {name}");
        }
        // Protocol 0: the socket receives nothing until `bind` names ETH_P_ALL. A socket
        // made with a protocol is already receiving, and binding it again waits for an RCU
        // grace period (`packet_do_bind`: `synchronize_net`), ~10 ms here.
        let socket = Socket::new(Domain::PACKET, Type::RAW.cloexec(), None)
            .map_err(|e| super::privilege_error(e, "open an AF_PACKET socket"))?;
        if let Some(f) = filter {
            socket
                .attach_filter(f)
                .context("attaching the BPF filter to the AF_PACKET socket")?;
        }
        set_sockopt(
            &socket,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &1 as &libc::c_int,
        )
        .context("SO_TIMESTAMPNS")?;
        // Read with recvmsg: stamped at the read until the kernel stamps (stamps.rs).
        super::stamps::await_receive_timestamps();
        set_sockopt(
            &socket,
            libc::SOL_PACKET,
            PACKET_AUXDATA,
            &1 as &libc::c_int,
        )
        .context("PACKET_AUXDATA")?;
        let _ = socket.set_recv_buffer_size(8 << 20);
        let _ = socket.set_send_buffer_size(8 << 20);
        bind_to_interface(&socket, ifindex, ETH_P_ALL)
            .with_context(|| format!("binding to {name}"))?;
        socket.set_nonblocking(true)?;
        Ok(FramePort {
            socket,
            name: name.to_string(),
        })
    }

    /// One frame that arrived on this interface (our own transmissions are skipped).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Frame>> {
        // Bounded: skip at most the outgoing copies queued right now.
        for _ in 0..1024 {
            let mut addr = MaybeUninit::<libc::sockaddr_ll>::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut control = [0u64; CONTROL_WORDS];
            // SAFETY: msghdr is plain data; zeroed is a valid initial value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = addr.as_mut_ptr().cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = CONTROL_WORDS * 8;
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
            // SAFETY: recvmsg filled `control` (alive, `msg_controllen` bytes) with the
            // packet's control messages.
            let info = unsafe { cmsg::decode(&msg) };
            return Ok(Some(Frame {
                at: info.at.unwrap_or_else(super::clock::now),
                len: (n as usize).min(buf.len()),
                csum_not_ready: info.checksum_offloaded,
            }));
        }
        Ok(None)
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
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

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsFd for FramePort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

//! The tap: an AF_PACKET socket on the egress interface, the same place tcpdump listens.
//!
//! Every segment we send and every segment or ICMP error we receive is read here with the
//! kernel's timestamp (`SO_TIMESTAMPNS`). Outgoing copies carry exactly the timestamp
//! tcpdump records for them; incoming ones are within a few µs (ARCHITECTURE.md, measured).
//! A classic BPF filter keeps only TCP to or from our source port and ICMP/ICMPv6, so the
//! socket does not wake us for unrelated traffic.

use crate::time::Instant;
use anyhow::{Context, Result};
use socket2::{Domain, SockFilter, Socket, Type};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

// Linux UAPI values that the libc crate does not export for this target.
pub(super) const SO_TIMESTAMPNS: libc::c_int = 35; // asm-generic/socket.h, SO_TIMESTAMPNS_OLD
pub(super) const PACKET_AUXDATA: libc::c_int = 8; // linux/if_packet.h
pub(super) const PACKET_OUTGOING: u8 = 4;
/// `tp_status` bit: the checksum is left for hardware (CHECKSUM_PARTIAL); the bytes we see
/// hold only the pseudo-header sum. veth does this for kernel-made packets.
pub(super) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;

/// `struct tpacket_auxdata` from linux/if_packet.h.
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
}

pub struct Tap {
    socket: Socket,
    /// On a loopback interface each packet is seen twice (leaving and arriving);
    /// we keep only the arriving copy.
    loopback: bool,
}

impl Tap {
    /// Open a tap on interface `ifindex` that passes TCP to/from `port` and ICMP errors.
    pub fn open(ifindex: u32, ifname: &str, port: u16, loopback: bool) -> Result<Tap> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::DGRAM.cloexec(),
            Some(socket2::Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .map_err(|e| super::privilege_error(e, "open an AF_PACKET socket"))?;
        socket
            .attach_filter(&port_filter(port))
            .context("attaching the BPF filter to the AF_PACKET socket")?;
        set_int(&socket, libc::SOL_SOCKET, SO_TIMESTAMPNS, 1).context("SO_TIMESTAMPNS")?;
        set_int(&socket, libc::SOL_PACKET, PACKET_AUXDATA, 1).context("PACKET_AUXDATA")?;
        // Room for bursts: a response of a few segments must never be dropped here.
        let _ = socket.set_recv_buffer_size(4 << 20);
        bind_to_interface(&socket, ifindex)
            .with_context(|| format!("binding the AF_PACKET socket to interface {ifname}"))?;
        socket.set_nonblocking(true)?;
        let tap = Tap { socket, loopback };
        // Packets that matched before the filter was attached may be queued: drop them.
        let mut scratch = [0u8; 2048];
        for _ in 0..10_000 {
            match tap.recv_raw(&mut scratch) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
        Ok(tap)
    }

    /// Read one packet without blocking. `Ok(None)` when nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<TapMeta>> {
        // Bounded: a loopback tap skips at most the copies queued right now.
        for _ in 0..1024 {
            match self.recv_raw(buf)? {
                Some(meta) if self.loopback && meta.outgoing => continue,
                other => return Ok(other),
            }
        }
        Ok(None)
    }

    /// Wait until a packet is queued or `timeout` passes (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => -1,
            // Round up so we never wake before the deadline and spin.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(n > 0)
    }

    fn recv_raw(&self, buf: &mut [u8]) -> io::Result<Option<TapMeta>> {
        let mut addr = MaybeUninit::<libc::sockaddr_ll>::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // u64 alignment for the cmsg buffer, as cmsghdr needs.
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
        // SAFETY: recvmsg filled `addr` (msg_namelen bytes, at most its size).
        let addr = unsafe { addr.assume_init() };
        let mut at = None;
        let mut aux = TpacketAuxdata::default();
        // SAFETY: CMSG_* walk the control buffer that recvmsg filled, within msg_controllen;
        // each payload is copied out with read_unaligned after checking its type.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let h = &*cmsg;
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == SO_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    at = Some(Instant::from_nanos(
                        (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64,
                    ));
                } else if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == PACKET_AUXDATA {
                    aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let len = (n as usize).min(buf.len());
        Ok(Some(TapMeta {
            // Without a timestamp (never seen) fall back to the user-space clock, labelled
            // by nobody: better than dropping the packet.
            at: at.unwrap_or_else(super::clock::now),
            len,
            outgoing: addr.sll_pkttype == PACKET_OUTGOING,
            checksum_offloaded: aux.tp_status & TP_STATUS_CSUMNOTREADY != 0,
        }))
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

pub(super) fn set_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
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

/// Classic BPF over a cooked (SOCK_DGRAM) packet, which starts at the IP header:
/// accept IPv4/IPv6 TCP with `port` as source or destination, and every ICMP/ICMPv6
/// packet (errors quoting our segments are matched in user space). IPv6 extension headers
/// before TCP are rare on these paths; such packets are not seen.
fn port_filter(port: u16) -> Vec<SockFilter> {
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
    const LDX_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let p = u32::from(port);
    let skf_proto = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;
    let f = SockFilter::new;
    vec![
        /* 0 */ f(LD_W_ABS, 0, 0, skf_proto),
        /* 1 */ f(JEQ, 0, 8, ETH_P_IP),
        // IPv4
        /* 2 */ f(LD_B_ABS, 0, 0, 9),
        /* 3 */ f(JEQ, 15, 0, u32::from(crate::wire::ip::PROTO_ICMP)), // -> accept (19)
        /* 4 */ f(JEQ, 0, 15, u32::from(crate::wire::ip::PROTO_TCP)), // -> drop (20)
        /* 5 */ f(LDX_MSH, 0, 0, 0),
        /* 6 */ f(LD_H_IND, 0, 0, 0),
        /* 7 */ f(JEQ, 11, 0, p), // -> accept
        /* 8 */ f(LD_H_IND, 0, 0, 2),
        /* 9 */ f(JEQ, 9, 10, p), // -> accept / drop
        // IPv6
        /* 10 */ f(JEQ, 0, 9, ETH_P_IPV6), // not IPv6 -> drop
        /* 11 */ f(LD_B_ABS, 0, 0, 6),
        /* 12 */ f(JEQ, 6, 0, u32::from(crate::wire::ip::PROTO_ICMPV6)), // -> accept
        /* 13 */ f(JEQ, 0, 6, u32::from(crate::wire::ip::PROTO_TCP)), // -> drop
        /* 14 */ f(LD_H_ABS, 0, 0, 40),
        /* 15 */ f(JEQ, 3, 0, p), // -> accept
        /* 16 */ f(LD_H_ABS, 0, 0, 42),
        /* 17 */ f(JEQ, 1, 2, p), // -> accept / drop
        /* 18 */ f(RET, 0, 0, 0), // (unreachable filler keeps offsets readable)
        /* 19 */ f(RET, 0, 0, 0x0004_0000),
        /* 20 */ f(RET, 0, 0, 0),
    ]
}

//! Raw sockets that put our hand-made segments on the wire.
//!
//! IPv4: `IPPROTO_RAW` (implies `IP_HDRINCL`): we write the whole IP header. IPv6: a raw
//! `IPPROTO_TCP` socket bound to our source address; the kernel writes the IPv6 header and,
//! with `IPV6_CHECKSUM` set, the TCP checksum (RFC 3542 §3.1 — without it the kernel leaves
//! whatever we wrote). Both carry our socket mark so the guard lets them pass. Neither is
//! read: everything we see comes from the tap.

use super::privilege_error;
use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// At most this many packets go in one [`RawSender::send_batch`].
pub const MAX_BATCH: usize = 64;

pub struct RawSender {
    socket: Socket,
    v6: bool,
}

impl RawSender {
    pub fn new(src: IpAddr, mark: u32) -> Result<RawSender> {
        let (socket, v6) = match src {
            IpAddr::V4(_) => {
                let s = Socket::new(
                    Domain::IPV4,
                    Type::RAW.cloexec(),
                    Some(Protocol::from(libc::IPPROTO_RAW)),
                )
                .map_err(|e| privilege_error(e, "open a raw IPv4 socket"))?;
                (s, false)
            }
            IpAddr::V6(_) => {
                let s = Socket::new(Domain::IPV6, Type::RAW.cloexec(), Some(Protocol::TCP))
                    .map_err(|e| privilege_error(e, "open a raw IPv6 socket"))?;
                // Offset of the checksum field in the TCP header.
                super::set_sockopt(
                    &s,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_CHECKSUM,
                    &16 as &libc::c_int,
                )
                .context("setting IPV6_CHECKSUM")?;
                // Our segments leave whole or not at all, whatever path MTU the kernel has
                // learned: their size is our TCP's decision (RFC 8201 §5.2, the
                // packetization layer's), and a fragment on the wire would be no segment
                // of ours. IPv4 needs nothing: we write the header, with DF.
                super::set_sockopt(
                    &s,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MTU_DISCOVER,
                    &libc::IPV6_PMTUDISC_PROBE,
                )
                .context("setting IPV6_MTU_DISCOVER")?;
                s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
                    .with_context(|| format!("binding the raw IPv6 socket to {src}"))?;
                // This socket would receive a copy of every TCP segment; it is never read,
                // so have the kernel drop them all instead of queueing.
                let drop_all = [SockFilter::new(
                    (libc::BPF_RET | libc::BPF_K) as u16,
                    0,
                    0,
                    0,
                )];
                s.attach_filter(&drop_all)
                    .context("attaching a drop-all filter")?;
                s.set_unicast_hops_v6(64)?;
                (s, true)
            }
        };
        socket
            .set_mark(mark)
            .map_err(|e| privilege_error(e, "set SO_MARK on the raw socket"))?;
        Ok(RawSender { socket, v6 })
    }

    /// Send one packet: for IPv4 the whole IP datagram, for IPv6 the TCP segment alone.
    pub fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<()> {
        debug_assert_eq!(self.v6, dst.is_ipv6());
        let n = self
            .socket
            .send_to(packet, &SockAddr::from(SocketAddr::new(dst, 0)))?;
        if n != packet.len() {
            return Err(io::Error::other(format!(
                "short send: {n} of {} bytes",
                packet.len()
            )));
        }
        Ok(())
    }

    /// Send many packets with one `sendmmsg(2)`: for IPv4 whole IP datagrams, for IPv6 TCP
    /// segments. Returns how many the kernel took (fewer than asked on a full queue, and at
    /// most [`MAX_BATCH`]: the caller sends the rest again). Nothing is allocated: this is
    /// on the way from a SYN-ACK to our ACK.
    pub fn send_batch(&self, packets: &[(&[u8], IpAddr)]) -> io::Result<usize> {
        let packets = &packets[..packets.len().min(MAX_BATCH)];
        if packets.is_empty() {
            return Ok(0);
        }
        let mut addrs: [MaybeUninit<SockAddr>; MAX_BATCH] =
            [const { MaybeUninit::uninit() }; MAX_BATCH];
        let mut iovs = [MaybeUninit::<libc::iovec>::uninit(); MAX_BATCH];
        let mut msgs = [MaybeUninit::<libc::mmsghdr>::uninit(); MAX_BATCH];
        for (i, &(p, dst)) in packets.iter().enumerate() {
            let addr = addrs[i].write(SockAddr::from(SocketAddr::new(dst, 0)));
            let iov = iovs[i].write(libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            });
            // SAFETY: mmsghdr is plain data; zeroed is a valid initial value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = addr.len();
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            msgs[i].write(m);
        }
        let n = packets.len() as u32;
        // SAFETY: the first `n` entries of `msgs` were written above, and their name and
        // iovec pointers point into `addrs`, `iovs` (entries written above) and the caller's
        // packets, all alive for the call; the kernel only reads them (it writes msg_len).
        let rc = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
                n,
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// IPv6: the hop limit of the packets sent from now on (RFC 3542 §6.3's
    /// `IPV6_UNICAST_HOPS`, the kernel writes it into the header it makes). IPv4 packets
    /// carry their TTL in the header we write.
    pub fn set_hop_limit(&self, hops: u8) -> io::Result<()> {
        if self.v6 {
            self.socket.set_unicast_hops_v6(u32::from(hops))?;
        }
        Ok(())
    }

    /// IPv6: the traffic class (DSCP and ECN) of the packets sent from now on (RFC 3542
    /// §6.5). IPv4 packets carry their TOS in the header we write.
    pub fn set_traffic_class(&self, tclass: u8) -> io::Result<()> {
        if self.v6 {
            self.socket.set_tclass_v6(u32::from(tclass))?;
        }
        Ok(())
    }
}

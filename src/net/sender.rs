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
use std::net::{IpAddr, SocketAddr};

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

    /// Another handle on the same socket (for sending from another thread).
    pub fn try_clone(&self) -> io::Result<RawSender> {
        Ok(RawSender {
            socket: self.socket.try_clone()?,
            v6: self.v6,
        })
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }
}

/// A kernel TCP socket bound to our source port and never connected or listening: while
/// it lives, no other program on this host can take the port.
pub struct PortReservation {
    _socket: Socket,
    pub port: u16,
}

impl PortReservation {
    /// Bind to `src` with a port the kernel picks from its ephemeral range.
    pub fn new(src: IpAddr) -> Result<PortReservation> {
        let domain = if src.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("reserving a source port on {src}"))?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .context("reading the reserved port")?;
        Ok(PortReservation {
            _socket: socket,
            port,
        })
    }
}

//! Waiting for the kernel's receive timestamps to be on before the first packet is sent.
//!
//! The kernel stamps arriving packets (and the copies it gives taps of leaving ones) only
//! while some socket has asked for timestamps: a static key, `netstamp_needed_key`, which
//! the first `SO_TIMESTAMPNS` turns on from a workqueue (`net_enable_timestamp`, with
//! CONFIG_JUMP_LABEL), not at once. Until that work has run, packets carry no stamp, and
//! a socket read with `recvmsg` is handed the time of the read instead
//! (`__sock_recv_timestamp` calls `__net_timestamp` when `skb->tstamp` is 0). A tap read
//! that way — scans, traces, surveys then — timed a SYN-ACK by when it was read: a fault
//! walk saw SYN→SYN-ACK 0.8 µs where tcpdump measured 26 µs, and a SYN stamped 54–89 µs
//! after tcpdump's, in 4 of about 12 surveys on a busy 2-CPU host (the worker waits
//! behind our probes; with another program holding timestamps on, 5 of 5 were right). A
//! TPACKET ring is stamped when the packet reaches it, without the key.
//!
//! So a tap that reads its queue asks first, and waits until a packet sent to ourselves
//! over the loopback comes back stamped before our `sendto` returned — which only the key
//! does (loopback delivers within the call); stamped after it, it was stamped at the read.

use super::cmsg::{self, CONTROL_WORDS, SO_TIMESTAMPNS};
use super::{clock, set_sockopt};
use socket2::{Domain, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long to wait for the key at most: the worker runs within a millisecond on an idle
/// host; a host too busy for a second still gets its probes, stamped as well as it can.
const LIMIT: Duration = Duration::from_secs(1);

/// Whether received packets are stamped as they arrive, checked with a datagram to
/// ourselves; waits (sleeping, so the kernel's worker can run) up to a second for it.
/// `false` when it did not happen in time or could not be checked (no loopback up in
/// this namespace).
pub fn await_receive_timestamps() -> bool {
    let Some((socket, to)) = loopback_socket() else {
        // No loopback to check with: give the kernel's worker the time it usually needs.
        std::thread::sleep(Duration::from_millis(20));
        return false;
    };
    let start = std::time::Instant::now();
    // Bounded by LIMIT: one try per millisecond.
    loop {
        match stamped_on_arrival(&socket, &to) {
            Some(true) => return true,
            None => return false,
            Some(false) if start.elapsed() >= LIMIT => return false,
            Some(false) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A UDP socket on the loopback with timestamps asked for, and its own address.
fn loopback_socket() -> Option<(Socket, SocketAddr)> {
    let candidates: [SocketAddr; 2] = [
        (Ipv4Addr::LOCALHOST, 0).into(),
        (Ipv6Addr::LOCALHOST, 0).into(),
    ];
    candidates.into_iter().find_map(|addr| {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.cloexec(), None).ok()?;
        socket.bind(&addr.into()).ok()?;
        set_sockopt(
            &socket,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &1 as &libc::c_int,
        )
        .ok()?;
        socket.set_nonblocking(true).ok()?;
        let to = socket.local_addr().ok()?.as_socket()?;
        // The loopback may be down in a fresh namespace: then this one cannot be used.
        socket.send_to(b"t", &to.into()).ok()?;
        drain(&socket);
        Some((socket, to))
    })
}

/// Sends one datagram to ourselves and reads it: was it stamped before `sendto` returned?
/// `None` when it could not be sent or read.
fn stamped_on_arrival(socket: &Socket, to: &SocketAddr) -> Option<bool> {
    socket.send_to(b"t", &(*to).into()).ok()?;
    let sent = clock::now();
    stamped_by(socket, sent)
}

/// Reads one datagram: was its stamp taken by `sent` (on arrival), not at the read? The
/// loopback usually delivers within `sendto`, but not always (RPS on `lo`, softirqs left
/// to a busy ksoftirqd): a datagram not there yet is waited for, up to 10 ms. With the
/// key on it was stamped in `netif_rx`, inside `sendto`, wherever it was delivered.
fn stamped_by(socket: &Socket, sent: tcpshake_proto::time::Instant) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // Bounded: 10 waits of at most 1 ms.
    for _ in 0..10 {
        match recv_stamp(socket) {
            Ok(at) => return Some(at? <= sent),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: socket.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the call.
                unsafe { libc::poll(&mut pfd, 1, 1) };
            }
            Err(_) => return None,
        }
    }
    None
}

/// Reads one datagram and its `SCM_TIMESTAMPNS` (`None`: it came without one).
fn recv_stamp(socket: &Socket) -> std::io::Result<Option<tcpshake_proto::time::Instant>> {
    let mut data = [0u8; 16];
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    use std::os::fd::AsRawFd;
    // SAFETY: `msg` points at `iov`, `data` and `control`, all alive for the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: recvmsg filled `msg`'s control buffer, which is still alive.
    Ok(unsafe { cmsg::decode(&msg) }.at)
}

/// Reads whatever is queued (the first datagram, sent before timestamps may have been on).
fn drain(socket: &Socket) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    // Bounded: a socket of our own, to which we sent one datagram.
    for _ in 0..8 {
        if socket.recv(&mut buf).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the check tells apart, shown on a Unix socket, which stamps a datagram when it
    /// is sent only if the reader asked for stamps by then, and otherwise at the read
    /// (as the kernel does a packet that came while the key was off).
    #[test]
    fn a_stamp_taken_at_the_read_is_told_from_one_taken_on_arrival() {
        for asked_first in [true, false] {
            let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM, None).unwrap();
            let ask = || set_sockopt(&b, libc::SOL_SOCKET, SO_TIMESTAMPNS, &1 as &libc::c_int);
            if asked_first {
                ask().unwrap();
            }
            a.send(b"t").unwrap();
            let sent = clock::now();
            if !asked_first {
                ask().unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(
                stamped_by(&b, sent),
                Some(asked_first),
                "asked first: {asked_first}"
            );
        }
    }

    /// Timestamps are on once a socket has asked and the worker has run: the check says
    /// so, well within its limit, and a datagram read later keeps its arrival time.
    #[test]
    fn a_datagram_to_ourselves_is_stamped_on_arrival() {
        let Some((socket, to)) = loopback_socket() else {
            panic!("no loopback to check timestamps with");
        };
        assert!(await_receive_timestamps());
        socket.send_to(b"t", &to.into()).unwrap();
        let sent = clock::now();
        std::thread::sleep(Duration::from_millis(5));
        let at = recv_stamp(&socket).unwrap().expect("a stamp");
        assert!(at <= sent, "stamped at the read: {at:?} after {sent:?}");
    }
}

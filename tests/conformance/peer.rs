//! The scripted peer's wire: an AF_PACKET socket on the server's end of the veth pair.
//!
//! The socket is made on a short-lived thread that has joined the server namespace
//! (`setns` changes only the calling thread), and a socket stays in the namespace it was
//! made in, so the test's own threads use it afterwards. The server's kernel is kept out
//! of TCP by an nftables rule (`meta l4proto tcp drop` at input): AF_PACKET sees every
//! frame before that rule does, so the peer reads the client's segments and the server's
//! kernel never answers them (no RST). ARP and neighbour discovery still go through the
//! server's kernel, which answers for the server's addresses.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ALL: u16 = 0x0003;

pub struct PeerSocket {
    fd: OwnedFd,
    ifindex: i32,
    pub server_mac: [u8; 6],
    pub client_mac: [u8; 6],
}

/// `ip -j link show` → the interface's MAC address.
fn mac_of(ns: &str, ifname: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", ifname])
        .output()
        .expect("run ip link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip -j link show {ifname} in {ns}: {e}"));
    let s = v[0]["address"].as_str().expect("a MAC address");
    let mut mac = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl PeerSocket {
    /// Opens the socket on `server_if` inside `server_ns`.
    pub fn open(server_ns: &str, server_if: &str, client_ns: &str, client_if: &str) -> PeerSocket {
        let ns_path = format!("/var/run/netns/{server_ns}");
        let ifname = server_if.to_string();
        let (fd, ifindex) = std::thread::spawn(move || -> io::Result<(OwnedFd, i32)> {
            let ns = File::open(&ns_path)?;
            // SAFETY: setns on a valid namespace fd; it affects only this thread, which
            // ends right after making the socket.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(os_err("setns"));
            }
            let cname = std::ffi::CString::new(ifname).expect("interface name");
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
            if ifindex == 0 {
                return Err(os_err("if_nametoindex"));
            }
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            if raw < 0 {
                return Err(os_err("socket(AF_PACKET)"));
            }
            // SAFETY: `raw` is a fresh fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_ALL.to_be();
            sll.sll_ifindex = ifindex;
            // SAFETY: bind with a sockaddr_ll of the right size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                return Err(os_err("bind(AF_PACKET)"));
            }
            // Our own transmissions are not input.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with an int.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_IGNORE_OUTGOING,
                    &one as *const _ as *const libc::c_void,
                    4,
                );
            }
            // Room for bursts: the client may send 90 segments at once.
            let size: libc::c_int = 4 << 20;
            // SAFETY: setsockopt with an int.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &size as *const _ as *const libc::c_void,
                    4,
                );
            }
            Ok((fd, ifindex))
        })
        .join()
        .expect("peer socket thread")
        .unwrap_or_else(|e| panic!("peer socket in {server_ns}: {e}"));
        PeerSocket {
            fd,
            ifindex,
            server_mac: mac_of(server_ns, server_if),
            client_mac: mac_of(client_ns, client_if),
        }
    }

    /// Sends frames back to back in one `sendmmsg` per 256, so a burst reaches the client
    /// faster than any reader can keep up with one frame at a time.
    pub fn send_burst(&self, frames: &[Vec<u8>]) {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&self.client_mac);
        for chunk in frames.chunks(256) {
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = &mut sll as *mut _ as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    h.msg_hdr.msg_iov = v as *mut libc::iovec;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let mut sent = 0;
            // Bounded: each call sends at least one frame or fails the test.
            while sent < msgs.len() {
                // SAFETY: `msgs[sent..]` are valid headers pointing at live buffers.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        msgs[sent..].as_mut_ptr(),
                        (msgs.len() - sent) as u32,
                        0,
                    )
                };
                assert!(n > 0, "{}", os_err("peer sendmmsg"));
                sent += n as usize;
            }
        }
    }

    /// The next frame, waiting until `deadline` at most; `None` when none came.
    pub fn recv(&self, deadline: Instant, buf: &mut [u8]) -> Option<(usize, Instant)> {
        // Bounded: each pass either returns or sleeps in poll until the deadline.
        for _ in 0..100_000 {
            // SAFETY: recv into a buffer we own.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                return Some((n as usize, Instant::now()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
        }
        None
    }
}

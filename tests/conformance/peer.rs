//! The scripted peer's wire: an AF_PACKET socket on the server's end of the veth pair.
//!
//! The socket (`tcpshake_io::frames::FramePort`: whole frames on one interface, our own
//! transmissions skipped) is opened on a short-lived thread that has joined the server
//! namespace (`setns` changes only the calling thread); a socket stays in the namespace it
//! was made in, so the test's own thread uses it afterwards. Only the socket comes from
//! tcpshake's I/O crate: every byte sent or judged is built and read by `packet.rs`.
//!
//! The server's kernel is kept out of TCP by an nftables rule (`meta l4proto tcp drop`
//! at input): AF_PACKET sees every frame before that rule does, so the peer reads the
//! client's segments and the server's kernel never answers them (no RST). ARP and
//! neighbour discovery still go through the server's kernel, which answers for the
//! server's addresses.

use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use tcpshake_io::frames::FramePort;

pub struct PeerSocket {
    port: FramePort,
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

impl PeerSocket {
    /// Opens the socket on `server_if` inside `server_ns`.
    pub fn open(server_ns: &str, server_if: &str, client_ns: &str, client_if: &str) -> PeerSocket {
        let ns_path = format!("/var/run/netns/{server_ns}");
        let ifname = server_if.to_string();
        let port = std::thread::spawn(move || -> anyhow::Result<FramePort> {
            let ns = File::open(&ns_path)?;
            tcpshake_io::netns::setns_net(ns.as_fd())?;
            FramePort::open(&ifname)
        })
        .join()
        .expect("peer socket thread")
        .unwrap_or_else(|e| panic!("peer socket in {server_ns}: {e:#}"));
        PeerSocket {
            port,
            server_mac: mac_of(server_ns, server_if),
            client_mac: mac_of(client_ns, client_if),
        }
    }

    /// Sends frames back to back.
    pub fn send_burst(&self, frames: &[Vec<u8>]) {
        for f in frames {
            self.port
                .send(f)
                .unwrap_or_else(|e| panic!("peer send on {}: {e}", self.port.name()));
        }
    }

    /// The next frame, waiting until `deadline` at most; `None` when none came.
    pub fn recv(&self, deadline: Instant, buf: &mut [u8]) -> Option<(usize, Instant)> {
        // Bounded: each pass either returns or sleeps in poll until the deadline.
        for _ in 0..100_000 {
            match self.port.recv(buf) {
                Ok(Some(frame)) => return Some((frame.len, Instant::now())),
                Ok(None) => {}
                Err(e) => panic!("peer recv on {}: {e}", self.port.name()),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            let _ = tcpshake_io::poll::wait_readable(&[self.port.as_fd()], Some(wait));
        }
        None
    }
}

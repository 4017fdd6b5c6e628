//! Throwaway lab networks for `tcpshake lab`, made with system calls only (no `ip`
//! binary): two fresh network namespaces, "client" and "server", joined by a veth pair.
//!
//! ```text
//!   client netns                         server netns
//!   tsc0 198.18.0.1/24, fd00::1/64 <──veth──> tss0 198.18.0.2/24, fd00::2/64
//! ```
//!
//! 198.18.0.0/15 is the benchmarking range (RFC 2544 §C.2.2, RFC 6890) and fd00::/8 is
//! unique-local (RFC 4193), so nothing here can reach a real network.
//!
//! Nothing needs cleaning up: a network namespace lives only as long as something refers
//! to it (a thread inside it, an fd of `/proc/.../ns/net`, a socket opened in it). A
//! [`LabNet`] holds the only long-lived references, so dropping it — or the process
//! dying, even by SIGKILL — destroys both namespaces, and the veth pair with them. Threads
//! you put into a namespace (`enter_client`, `spawn_in_server`) keep it alive until they
//! end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::labpeer::HttpPeer;
use tcpshake_io::netlink::NlSocket;
use tcpshake_io::netns::{
    add_addr, create_veth, link_index, new_netns, oper_up, set_link_up, setns_net, spawn_in,
    v6_usable,
};

/// Interface names; they live in private namespaces, so they cannot clash with the host's.
pub const CLIENT_IF: &str = "tsc0";
pub const SERVER_IF: &str = "tss0";

const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Two private network namespaces joined by a veth pair. See the module docs.
#[derive(Debug)]
pub struct LabNet {
    client: Arc<OwnedFd>,
    server: Arc<OwnedFd>,
    client_rt: Mutex<NlSocket>,
    server_rt: Mutex<NlSocket>,
    client_if: u32,
    server_if: u32,
}

/// `ethtool -K IFNAME tx off` inside namespace `ns` (on a thread of its own there).
fn tx_checksum_off_in(ns: &Arc<OwnedFd>, ifname: &'static str) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    let h = spawn_in(Arc::clone(ns), move || {
        let _ = tx.send(tcpshake_io::link::tx_checksum_off(ifname));
    })?;
    let _ = h.join();
    rx.recv()
        .map_err(|_| anyhow!("the thread turning off {ifname}'s checksum offload died"))?
        .with_context(|| format!("turning off {ifname}'s transmit checksum offload"))
}

impl LabNet {
    /// Creates both namespaces, the veth pair, the addresses, and brings every link up.
    /// Call [`LabNet::wait_ready`] before sending over IPv6.
    pub fn create() -> anyhow::Result<LabNet> {
        let (client, mut client_rt) = new_netns().context("creating the lab client namespace")?;
        let (server, mut server_rt) = new_netns().context("creating the lab server namespace")?;
        for rt in [&mut client_rt, &mut server_rt] {
            set_link_up(rt, 1).context("bringing lo up in a lab namespace")?;
        }
        create_veth(&mut client_rt, CLIENT_IF, SERVER_IF, server.as_fd())?;
        let client_if = link_index(&mut client_rt, CLIENT_IF)?;
        let server_if = link_index(&mut server_rt, SERVER_IF)?;
        add_addr(&mut client_rt, client_if, CLIENT_V4.into(), 24)?;
        add_addr(&mut client_rt, client_if, CLIENT_V6.into(), 64)?;
        add_addr(&mut server_rt, server_if, SERVER_V4.into(), 24)?;
        add_addr(&mut server_rt, server_if, SERVER_V6.into(), 64)?;
        set_link_up(&mut client_rt, client_if)
            .with_context(|| format!("bringing {CLIENT_IF} up"))?;
        set_link_up(&mut server_rt, server_if)
            .with_context(|| format!("bringing {SERVER_IF} up"))?;
        let (client, server) = (Arc::new(client), Arc::new(server));
        // The server's kernel sends over the veth with partial checksums, which `--pcap`
        // (and tcpdump) showed as bad on every one of its segments: off, as the lab tests'
        // `ethtool -K IF tx off`.
        for (ns, ifname) in [(&client, CLIENT_IF), (&server, SERVER_IF)] {
            tx_checksum_off_in(ns, ifname)?;
        }
        Ok(LabNet {
            client,
            server,
            client_rt: Mutex::new(client_rt),
            server_rt: Mutex::new(server_rt),
            client_if,
            server_if,
        })
    }

    /// Waits (at most `timeout`) until both veth ends are operationally up and the IPv6
    /// addresses are no longer tentative, so the first packets are not lost.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = {
                let mut c = lock(&self.client_rt);
                let mut s = lock(&self.server_rt);
                oper_up(&mut c, self.client_if)?
                    && oper_up(&mut s, self.server_if)?
                    && v6_usable(&mut c, self.client_if, CLIENT_V6)?
                    && v6_usable(&mut s, self.server_if, SERVER_V6)?
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "lab network not ready after {timeout:?}: {CLIENT_IF}/{SERVER_IF} not up or IPv6 addresses still tentative"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Moves the calling thread into the client namespace (setns(2)). Sockets it opens
    /// afterwards live there.
    pub fn enter_client(&self) -> anyhow::Result<()> {
        setns_net(self.client.as_fd()).context("entering the lab client namespace")
    }

    /// Runs `f` on a new thread inside the server namespace.
    pub fn spawn_in_server<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
    ) -> anyhow::Result<JoinHandle<()>> {
        spawn_in(Arc::clone(&self.server), f)
    }

    /// Starts the built-in HTTP peer on port `port` of both server addresses.
    pub fn start_http_peer(&self, port: u16) -> anyhow::Result<HttpPeer> {
        let (tx, rx) = mpsc::channel();
        let addrs = [
            (IpAddr::from(SERVER_V4), port).into(),
            (IpAddr::from(SERVER_V6), port).into(),
        ];
        let h = self.spawn_in_server(move || {
            let _ = tx.send(HttpPeer::start(&addrs));
        })?;
        let peer = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("lab HTTP peer did not start within 5 s"))?;
        let _ = h.join();
        peer
    }

    /// The namespace fds, e.g. for `nsenter --net=/proc/<pid>/fd/<fd>` while debugging.
    pub fn client_ns(&self) -> BorrowedFd<'_> {
        self.client.as_fd()
    }

    pub fn server_ns(&self) -> BorrowedFd<'_> {
        self.server.as_fd()
    }

    pub fn client_v4(&self) -> Ipv4Addr {
        CLIENT_V4
    }

    pub fn client_v6(&self) -> Ipv6Addr {
        CLIENT_V6
    }

    pub fn server_v4(&self) -> Ipv4Addr {
        SERVER_V4
    }

    pub fn server_v6(&self) -> Ipv6Addr {
        SERVER_V6
    }
}

fn lock(m: &Mutex<NlSocket>) -> std::sync::MutexGuard<'_, NlSocket> {
    // A panic while holding the lock cannot leave the socket inconsistent: every
    // exchange skips replies to other sequence numbers.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use tcpshake_io::netns::testutil::require_root;

    fn head(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"HEAD / HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn lab_http_peer_answers_over_v4_and_v6() {
        require_root("lab_http_peer_answers_over_v4_and_v6");
        let lab = LabNet::create().unwrap();
        lab.wait_ready(Duration::from_secs(3)).unwrap();
        let peer = lab.start_http_peer(80).unwrap();
        let lab = Arc::new(lab);
        let l = Arc::clone(&lab);
        let (v4, v6) = std::thread::spawn(move || {
            l.enter_client().unwrap();
            (
                head((IpAddr::from(l.server_v4()), 80).into()),
                head((IpAddr::from(l.server_v6()), 80).into()),
            )
        })
        .join()
        .unwrap();
        for resp in [&v4, &v6] {
            assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
            assert!(resp.contains("Server: tcpshake-lab\r\n"), "{resp}");
            assert!(
                resp.ends_with("\r\n\r\n"),
                "HEAD must have no body: {resp:?}"
            );
        }
        drop(peer);
        // The host namespace has no 198.18.0.2: the lab is really private.
        assert!(
            tcpshake_io::route::lookup(IpAddr::from(lab.server_v4()))
                .map(|r| r.ifname != SERVER_IF && r.ifname != CLIENT_IF)
                .unwrap_or(true)
        );
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn lab_routes_from_client_namespace() {
        require_root("lab_routes_from_client_namespace");
        use tcpshake_io::route::{lookup, lookup_from};
        let lab = Arc::new(LabNet::create().unwrap());
        lab.wait_ready(Duration::from_secs(3)).unwrap();
        let l = Arc::clone(&lab);
        std::thread::spawn(move || {
            l.enter_client().unwrap();
            let r = lookup(l.server_v4().into()).unwrap();
            assert_eq!(r.src, IpAddr::from(l.client_v4()));
            assert_eq!(r.ifname, CLIENT_IF);
            assert_eq!(r.gateway, None);
            assert_eq!(r.mtu, Some(1500));
            assert!(!r.is_loopback);
            let r6 = lookup(l.server_v6().into()).unwrap();
            assert_eq!(r6.src, IpAddr::from(l.client_v6()));
            assert_eq!(r6.ifname, CLIENT_IF);
            let r6 = lookup_from(l.server_v6().into(), Some(l.client_v6().into())).unwrap();
            assert_eq!(r6.src, IpAddr::from(l.client_v6()));
            // Our own address is local: it routes over lo.
            let own = lookup(l.client_v4().into()).unwrap();
            assert!(own.is_loopback);
            assert_eq!(own.ifname, "lo");
            assert_eq!(own.src, IpAddr::from(l.client_v4()));
            // Inside 198.18.0.0/15 but not on the lab link: no route, nothing sent.
            for dst in ["198.19.255.1", "fd01::1"] {
                let err = lookup(dst.parse().unwrap()).unwrap_err();
                assert_eq!(
                    format!("{err:#}"),
                    format!("no route to {dst}: check `ip route get {dst}`")
                );
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn spawn_in_server_runs_inside_server_namespace() {
        require_root("spawn_in_server_runs_inside_server_namespace");
        let lab = LabNet::create().unwrap();
        let (tx, rx) = mpsc::channel();
        lab.spawn_in_server(move || {
            let _ = tx.send(tcpshake_io::route::lookup(IpAddr::from(SERVER_V4)));
        })
        .unwrap()
        .join()
        .unwrap();
        let r = rx.recv().unwrap().unwrap();
        assert!(r.is_loopback, "198.18.0.2 is local in the server namespace");
    }
}

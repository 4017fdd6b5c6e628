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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::labpeer::HttpPeer;
use super::netlink::{
    MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NlSocket, errno_of, find_attr,
    read_u32_ne,
};
use super::route::ifinfomsg;

// linux/rtnetlink.h, linux/if_link.h, linux/veth.h, linux/if_addr.h
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_TENTATIVE: u32 = 0x40;
const IFF_UP: u32 = 0x1;
const IF_OPER_UP: u8 = 6;

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
        Ok(LabNet {
            client: Arc::new(client),
            server: Arc::new(server),
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

/// Moves the calling thread into the network namespace `ns`.
pub(crate) fn setns_net(ns: BorrowedFd<'_>) -> anyhow::Result<()> {
    // SAFETY: setns(2) on a valid fd we borrow for the call; it only changes this
    // thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(super::EnvironmentError(format!(
                "setns: {e}: run as root (sudo) or grant CAP_SYS_ADMIN"
            ))
            .into());
        }
        return Err(e).context("setns(CLONE_NEWNET)");
    }
    Ok(())
}

/// Runs `f` on a new thread moved into `ns` first. Fails (without running `f`) if the
/// thread cannot enter the namespace.
fn spawn_in<F: FnOnce() + Send + 'static>(
    ns: Arc<OwnedFd>,
    f: F,
) -> anyhow::Result<JoinHandle<()>> {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::Builder::new()
        .name("tcpshake-netns".into())
        .spawn(move || {
            let entered = setns_net(ns.as_fd());
            let ok = entered.is_ok();
            let _ = tx.send(entered);
            drop(ns);
            if ok {
                f();
            }
        })
        .context("spawning a thread for a lab namespace")?;
    match rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => {
            let _ = h.join();
            bail!("lab namespace thread died before entering its namespace")
        }
    }
}

/// Makes a new network namespace on a helper thread (unshare(2) changes only that
/// thread) and returns an fd holding it plus an rtnetlink socket opened inside it.
fn new_netns() -> anyhow::Result<(OwnedFd, NlSocket)> {
    std::thread::spawn(|| -> anyhow::Result<(OwnedFd, NlSocket)> {
        // SAFETY: unshare(2) with a constant flag; affects only this short-lived thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                return Err(super::EnvironmentError(format!(
                    "unshare(CLONE_NEWNET): {e}: creating a network namespace needs root (sudo) or CAP_SYS_ADMIN"
                ))
                .into());
            }
            return Err(e).context("unshare(CLONE_NEWNET)");
        }
        let file = std::fs::File::open("/proc/thread-self/ns/net")
            .context("opening /proc/thread-self/ns/net (is /proc mounted?)")?;
        let rt = NlSocket::open(libc::NETLINK_ROUTE)?;
        Ok((OwnedFd::from(file), rt))
    })
    .join()
    .map_err(|_| anyhow!("namespace helper thread panicked"))?
}

fn ack(rt: &mut NlSocket, m: &MsgBuf, seq: u32) -> anyhow::Result<()> {
    rt.request(m, seq).map(drop)
}

fn set_link_up(rt: &mut NlSocket, index: u32) -> anyhow::Result<()> {
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_NEWLINK, NLM_F_ACK, seq)
        .header(&ifinfomsg(index, IFF_UP, IFF_UP))
        .end();
    ack(rt, &m, seq)
}

/// Brings interface `name` up in the calling thread's namespace (for tests and tools that
/// made a namespace of their own).
pub fn set_link_up_by_name(name: &str) -> anyhow::Result<()> {
    let mut rt = NlSocket::open(libc::NETLINK_ROUTE)?;
    let index = link_index(&mut rt, name)?;
    set_link_up(&mut rt, index).with_context(|| format!("bringing {name} up"))
}

fn create_veth(
    rt: &mut NlSocket,
    name: &str,
    peer: &str,
    peer_ns: BorrowedFd<'_>,
) -> anyhow::Result<()> {
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
        .header(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, name)
        .nest(IFLA_LINKINFO)
        .attr_str(IFLA_INFO_KIND, "veth")
        .nest(IFLA_INFO_DATA)
        .nest(VETH_INFO_PEER)
        // The peer's description is a whole ifinfomsg followed by its attributes.
        .header(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, peer)
        .attr_u32(IFLA_NET_NS_FD, peer_ns.as_raw_fd() as u32)
        .end_nest()
        .end_nest()
        .end_nest()
        .end();
    ack(rt, &m, seq).map_err(|e| match errno_of(&e) {
        Some(libc::EOPNOTSUPP) => anyhow!(
            "creating veth pair {name}/{peer}: this kernel has no veth support (CONFIG_VETH; try `modprobe veth`)"
        ),
        _ => e.context(format!("creating veth pair {name}/{peer}")),
    })
}

fn link_index(rt: &mut NlSocket, name: &str) -> anyhow::Result<u32> {
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETLINK, NLM_F_ACK, seq)
        .header(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, name)
        .end();
    let replies = rt
        .request(&m, seq)
        .with_context(|| format!("looking up interface {name}"))?;
    replies
        .iter()
        .find(|r| r.ty == RTM_NEWLINK)
        .and_then(|r| r.payload.get(4..).and_then(read_u32_ne))
        .ok_or_else(|| anyhow!("interface {name} not found"))
}

fn add_addr(rt: &mut NlSocket, index: u32, ip: IpAddr, prefix: u8) -> anyhow::Result<()> {
    let (family, bytes, flags) = match ip {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
        // No duplicate address detection (RFC 4862 §5.4): the lab link has exactly two
        // hosts with fixed addresses, and DAD would hold the address back for ~1 s.
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
    };
    // struct ifaddrmsg { u8 family, prefixlen, flags, scope; u32 index }
    let mut h = [family, prefix, flags as u8, 0, 0, 0, 0, 0];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
        .header(&h)
        .attr(IFA_LOCAL, &bytes)
        .attr(IFA_ADDRESS, &bytes)
        .attr_u32(IFA_FLAGS, flags)
        .end();
    ack(rt, &m, seq).with_context(|| format!("adding {ip}/{prefix} to interface {index}"))
}

fn oper_up(rt: &mut NlSocket, index: u32) -> anyhow::Result<bool> {
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETLINK, NLM_F_ACK, seq)
        .header(&ifinfomsg(index, 0, 0))
        .end();
    let replies = rt.request(&m, seq)?;
    Ok(replies
        .iter()
        .filter(|r| r.ty == RTM_NEWLINK)
        .filter_map(|r| find_attr(r.payload.get(16..)?, IFLA_OPERSTATE))
        .any(|s| s.first() == Some(&IF_OPER_UP)))
}

/// Whether `addr` is configured on `index` and not tentative (RFC 4862 §5.4).
fn v6_usable(rt: &mut NlSocket, index: u32, addr: Ipv6Addr) -> anyhow::Result<bool> {
    let seq = rt.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETADDR, NLM_F_DUMP, seq)
        .header(&[libc::AF_INET6 as u8, 0, 0, 0, 0, 0, 0, 0])
        .end();
    let replies = rt.request(&m, seq)?;
    Ok(replies.iter().any(|r| {
        let p = &r.payload;
        let ifa_index = p.get(4..).and_then(read_u32_ne);
        let rta = p.get(8..).unwrap_or(&[]);
        let flags = find_attr(rta, IFA_FLAGS)
            .and_then(read_u32_ne)
            .unwrap_or_else(|| u32::from(p.get(2).copied().unwrap_or(0)));
        let a = find_attr(rta, IFA_ADDRESS).and_then(|b| <[u8; 16]>::try_from(b).ok());
        ifa_index == Some(index) && a == Some(addr.octets()) && flags & IFA_F_TENTATIVE == 0
    }))
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Whether a root-only test may run. Without root it fails loudly under CI=true and
    /// otherwise prints why it is skipped.
    pub fn require_root(test: &str) -> bool {
        // SAFETY: geteuid(2) cannot fail and has no side effects.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test} needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and CI=true");
            }
            eprintln!("SKIPPED {test}: needs root; run `sudo -E cargo test`");
        }
        root
    }

    /// Runs `f` on a thread inside a brand-new network namespace, which disappears when
    /// the thread (and anything `f` left open in it) ends.
    pub fn in_fresh_netns<R: Send>(f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare(2) with a constant flag; affects only this thread.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
                    return Err(anyhow::Error::from(std::io::Error::last_os_error())
                        .context("unshare(CLONE_NEWNET)"));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::require_root;
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

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
    fn lab_http_peer_answers_over_v4_and_v6() {
        if !require_root("lab_http_peer_answers_over_v4_and_v6") {
            return;
        }
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
            crate::net::route::lookup(IpAddr::from(lab.server_v4()))
                .map(|r| r.ifname != SERVER_IF && r.ifname != CLIENT_IF)
                .unwrap_or(true)
        );
    }

    #[test]
    fn lab_routes_from_client_namespace() {
        if !require_root("lab_routes_from_client_namespace") {
            return;
        }
        use crate::net::route::{lookup, lookup_from};
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
    fn spawn_in_server_runs_inside_server_namespace() {
        if !require_root("spawn_in_server_runs_inside_server_namespace") {
            return;
        }
        let lab = LabNet::create().unwrap();
        let (tx, rx) = mpsc::channel();
        lab.spawn_in_server(move || {
            let _ = tx.send(crate::net::route::lookup(IpAddr::from(SERVER_V4)));
        })
        .unwrap()
        .join()
        .unwrap();
        let r = rx.recv().unwrap().unwrap();
        assert!(r.is_loopback, "198.18.0.2 is local in the server namespace");
    }

    #[test]
    fn kernel_refusals_carry_errno_and_its_explanation() {
        if !require_root("kernel_refusals_carry_errno_and_its_explanation") {
            return;
        }
        super::testutil::in_fresh_netns(|| {
            let mut rt = NlSocket::open(libc::NETLINK_ROUTE).unwrap();
            let e = add_addr(&mut rt, 1, "198.18.9.9".parse().unwrap(), 33).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::EINVAL));
            // Extended ack (NETLINK_EXT_ACK): the kernel's own words reach the user.
            assert!(format!("{e:#}").contains("prefix length"), "{e:#}");
            let e = link_index(&mut rt, "nope0").unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::ENODEV));
            assert!(format!("{e:#}").contains("nope0"), "{e:#}");
            // The socket stays usable after refusals.
            assert_eq!(link_index(&mut rt, "lo").unwrap(), 1);
        })
        .unwrap();
    }
}

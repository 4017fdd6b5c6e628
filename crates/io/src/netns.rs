//! Network namespaces with system calls only (no `ip` binary): make one, move a thread
//! into one, and the rtnetlink requests that furnish it (veth pairs, addresses, links up,
//! readiness). The lab (`tcpshake_lab::labnet`) builds its two-namespace network from
//! these; the tests here and there run inside fresh namespaces with [`testutil`].
//!
//! A network namespace lives only as long as something refers to it (a thread inside it,
//! an fd of `/proc/.../ns/net`, a socket opened in it): whoever holds the fds returned by
//! [`new_netns`] decides its lifetime, and the process dying, even by SIGKILL, ends it.

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow, bail};

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

/// Moves the calling thread into the network namespace `ns`.
pub fn setns_net(ns: BorrowedFd<'_>) -> anyhow::Result<()> {
    // SAFETY: setns(2) on a valid fd we borrow for the call; it only changes this
    // thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(crate::EnvironmentError(format!(
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
pub fn spawn_in<F: FnOnce() + Send + 'static>(
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
pub fn new_netns() -> anyhow::Result<(OwnedFd, NlSocket)> {
    std::thread::spawn(|| -> anyhow::Result<(OwnedFd, NlSocket)> {
        // SAFETY: unshare(2) with a constant flag; affects only this short-lived thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                return Err(crate::EnvironmentError(format!(
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

pub fn set_link_up(rt: &mut NlSocket, index: u32) -> anyhow::Result<()> {
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

pub fn create_veth(
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

pub fn link_index(rt: &mut NlSocket, name: &str) -> anyhow::Result<u32> {
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

pub fn add_addr(rt: &mut NlSocket, index: u32, ip: IpAddr, prefix: u8) -> anyhow::Result<()> {
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

pub fn oper_up(rt: &mut NlSocket, index: u32) -> anyhow::Result<bool> {
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
pub fn v6_usable(rt: &mut NlSocket, index: u32, addr: Ipv6Addr) -> anyhow::Result<bool> {
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

/// Helpers for tests that need a namespace of their own (this crate's and the lab's).
pub mod testutil {
    /// Panics unless the test runs as root. Root-only tests are `#[ignore = "needs root…"]`
    /// and run with `--run-ignored all` (scripts/test): run, they fail loudly without it.
    pub fn require_root(test: &str) {
        // SAFETY: geteuid(2) cannot fail and has no side effects.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "{test} needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run it as root"
        );
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

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn kernel_refusals_carry_errno_and_its_explanation() {
        require_root("kernel_refusals_carry_errno_and_its_explanation");
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

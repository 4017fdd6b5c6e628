//! Route lookup the way the kernel does it (`ip route get`): one RTM_GETROUTE request over
//! rtnetlink, which consults the routing tables and sends nothing on the network.
//!
//! The answer is for the network namespace of the calling thread (the netlink socket is
//! opened here, per lookup).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use anyhow::{Context, anyhow};
use tcpshake_proto::probe::scan::unroutable::NoPath;
use tcpshake_proto::probe::target::{self, not_a_peer_message};
use tcpshake_proto::wire::ethernet::MacAddr;

use super::netlink::{
    MsgBuf, NLM_F_ACK, NLM_F_DUMP, NlSocket, errno_of, find_attr, read_str, read_u32_ne,
};

// linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
// linux/if_link.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
/// At most this many other interfaces are listened on for replies (each costs the tap's
/// filter one instruction).
pub const MAX_OTHER_INTERFACES: usize = 64;
/// At most this many of this host's addresses are matched by the tap's filter (an IPv6
/// address costs eight instructions; jumps reach 255).
pub const MAX_OWN_ADDRESSES: usize = 24;
// linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
// linux/if_arp.h
const ARPHRD_ETHER: u16 = 1;

/// The kernel's route lookup says nothing can be sent to `dst`: no route, a prohibit or a
/// blackhole route. A type of its own so that a scan can tell it from other failures
/// (`downcast_ref`) and skip that target alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoPathTo {
    pub dst: IpAddr,
    pub why: NoPath,
}

impl std::fmt::Display for NoPathTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why.message(&self.dst.to_string(), self.dst))
    }
}

impl std::error::Error for NoPathTo {}

/// Where the kernel would send a packet to some destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The source address the kernel would pick (RTA_PREFSRC, or what a connected UDP
    /// socket gets).
    pub src: IpAddr,
    /// Outgoing interface index.
    pub oif: u32,
    pub ifname: String,
    /// Next hop, when the destination is not on-link.
    pub gateway: Option<IpAddr>,
    /// Route MTU if the route has one, else the interface MTU.
    pub mtu: Option<u32>,
    /// The route's `advmss`, when set (`ip route … advmss 1200`): the MSS to advertise.
    pub advmss: Option<u32>,
    /// The route leaves through a loopback interface (destination is on this host).
    pub is_loopback: bool,
    /// The interface's MAC address, when it is an Ethernet interface (ARPHRD_ETHER):
    /// what a scan writing whole frames puts as their source.
    pub mac: Option<MacAddr>,
    /// The route's type (`rtm_type`): a broadcast or multicast destination is one no TCP
    /// connection can be made to.
    pub rtm_type: u8,
}

// linux/rtnetlink.h
const RTN_BROADCAST: u8 = 3;
const RTN_MULTICAST: u8 = 5;

impl Route {
    /// The destination is a subnet's broadcast address (the kernel's local table says so).
    pub fn is_broadcast(&self) -> bool {
        self.rtm_type == RTN_BROADCAST
    }

    /// The MSS our SYN advertises (RFC 9293 §3.7.1): the route's `advmss` when it has one
    /// (as Linux's `dst_metric_advmss`), else its MTU less the IP and TCP headers; never
    /// below 536, the default every host takes.
    pub fn mss(&self, v6: bool) -> u16 {
        let headers = if v6 { 60 } else { 40 };
        let mss = match self.advmss {
            Some(a) => a,
            None => self.mtu.unwrap_or(1500).saturating_sub(headers),
        };
        u16::try_from(mss.clamp(536, 65495)).unwrap_or(1460)
    }

    /// `Err` when the route says the destination is one no connection can be made to: a
    /// subnet's broadcast address (the kernel's local table names it) or a multicast group
    /// (RFC 1122 §4.2.3.10: a SYN to one must be ignored; the kernel refuses to send to a
    /// broadcast address without SO_BROADCAST, EACCES). Said before anything is sent, as
    /// what it is; what the address alone shows is [`connectable_address`]'s, asked first.
    pub fn connectable(&self, dst: IpAddr) -> anyhow::Result<()> {
        let what = match self.rtm_type {
            RTN_BROADCAST => "a broadcast address",
            RTN_MULTICAST => "a multicast address",
            _ => return Ok(()),
        };
        anyhow::bail!(not_a_peer_message(
            dst,
            &format!("{what} (on {})", self.ifname)
        ))
    }
}

/// Whether `dst` can be a TCP peer at all, before any route is asked: the unspecified
/// address, a multicast group or IPv4's limited broadcast never can (the policy and its
/// words: `target::not_a_peer`), and saying so beats the "no route" a host without a
/// default route would give for them — or, for 0.0.0.0, a SYN the kernel carries over
/// loopback. Asked for addresses a name resolved to and target-list lines too; a subnet's
/// broadcast address needs its route to be known ([`Route::connectable`]).
pub fn connectable_address(dst: IpAddr) -> anyhow::Result<()> {
    target::connectable_address(dst).map_err(anyhow::Error::msg)
}

/// Looks up the route to `dst` in the calling thread's network namespace.
pub fn lookup(dst: IpAddr) -> anyhow::Result<Route> {
    lookup_from(dst, None)
}

/// Looks up the route to `dst` as if sending from `src` (`ip route get <dst> from <src>`).
pub fn lookup_from(dst: IpAddr, src: Option<IpAddr>) -> anyhow::Result<Route> {
    Router::new()?.lookup_from(dst, src)
}

/// Route lookups for many destinations: one rtnetlink socket for all of them, and each
/// interface's name and MTU asked once (a survey of 256 targets spent 6% of its time
/// opening sockets and asking about the same interface again).
pub struct Router {
    sock: NlSocket,
    links: std::collections::HashMap<u32, LinkInfo>,
}

impl Router {
    pub fn new() -> anyhow::Result<Router> {
        Ok(Router {
            sock: NlSocket::open(libc::NETLINK_ROUTE)
                .context("route lookup needs an rtnetlink socket")?,
            links: std::collections::HashMap::new(),
        })
    }

    pub fn lookup(&mut self, dst: IpAddr) -> anyhow::Result<Route> {
        self.lookup_from(dst, None)
    }

    fn lookup_from(&mut self, dst: IpAddr, src: Option<IpAddr>) -> anyhow::Result<Route> {
        lookup_with(&mut self.sock, &mut self.links, dst, src)
    }
}

fn lookup_with(
    sock: &mut NlSocket,
    links: &mut std::collections::HashMap<u32, LinkInfo>,
    dst: IpAddr,
    src: Option<IpAddr>,
) -> anyhow::Result<Route> {
    if let Some(s) = src
        && s.is_ipv4() != dst.is_ipv4()
    {
        anyhow::bail!("source {s} and destination {dst} are of different IP versions");
    }
    let (family, bits) = match dst {
        IpAddr::V4(_) => (libc::AF_INET as u8, 32u8),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, 128u8),
    };
    // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }
    let src_len = if src.is_some() { bits } else { 0 };
    let rtmsg = [family, bits, src_len, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETROUTE, NLM_F_ACK, seq)
        .header(&rtmsg)
        .attr(RTA_DST, &ip_bytes(dst));
    if let Some(s) = src {
        m.attr(RTA_SRC, &ip_bytes(s));
    }
    m.end();
    let no_path = |why| anyhow::Error::new(NoPathTo { dst, why });
    let replies = sock.request(&m, seq).map_err(|e| match errno_of(&e) {
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ESRCH) => no_path(NoPath::NoRoute),
        Some(libc::EACCES) => no_path(NoPath::Prohibited),
        Some(libc::EINVAL) if src.is_some() => e.context(format!(
            "looking up the route to {dst} from {}: is that address configured here? (`ip addr`)",
            src.unwrap_or(dst)
        )),
        // What the kernel answers for a blackhole route (`ip route add blackhole …`):
        // `ip route get` says "Invalid argument" too.
        Some(libc::EINVAL) => no_path(NoPath::Blackhole),
        _ => e.context(format!("looking up the route to {dst}")),
    })?;
    let reply = replies
        .iter()
        .find(|r| r.ty == RTM_NEWROUTE)
        .ok_or_else(|| anyhow!("no route to {dst}: check `ip route get {dst}` (empty reply)"))?;
    let attrs_at = 12.min(reply.payload.len());
    let rta = &reply.payload[attrs_at..];
    let oif = find_attr(rta, RTA_OIF)
        .and_then(read_u32_ne)
        .ok_or_else(|| anyhow!("route to {dst} has no outgoing interface (blackhole or prohibit route?): check `ip route get {dst}`"))?;
    let gateway = find_attr(rta, RTA_GATEWAY).and_then(|b| parse_ip(b, dst));
    let metric = |which: u16| {
        find_attr(rta, RTA_METRICS)
            .and_then(|metrics| find_attr(metrics, which))
            .and_then(read_u32_ne)
            .filter(|&m| m != 0)
    };
    let route_mtu = metric(RTAX_MTU);
    let advmss = metric(RTAX_ADVMSS);
    let src = match src.or_else(|| find_attr(rta, RTA_PREFSRC).and_then(|b| parse_ip(b, dst))) {
        Some(s) => s,
        None => source_by_connect(dst)?,
    };
    let link = match links.get(&oif) {
        Some(l) => l,
        None => {
            let l = link_info(sock, oif)?;
            links.entry(oif).or_insert(l)
        }
    };
    Ok(Route {
        src,
        oif,
        ifname: link.name.clone(),
        gateway,
        mtu: route_mtu.or(link.mtu),
        advmss,
        is_loopback: link.is_loopback,
        mac: link.mac,
        rtm_type: reply.payload.get(7).copied().unwrap_or(0),
    })
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address attribute of the same family as `like`.
fn parse_ip(b: &[u8], like: IpAddr) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => {
            let o: [u8; 4] = b.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        IpAddr::V6(_) => {
            let o: [u8; 16] = b.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
    }
}

/// The source the kernel would choose, learnt by connecting a UDP socket: connect(2) on
/// UDP only does the route and source selection, it sends nothing.
fn source_by_connect(dst: IpAddr) -> anyhow::Result<IpAddr> {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).context("binding a UDP socket to learn the source address")?;
    sock.connect((dst, 9))
        .with_context(|| format!("no source address for {dst}: check `ip route get {dst}`"))?;
    Ok(sock.local_addr()?.ip())
}

/// Where else a reply to a packet we sent through one interface may arrive, and which
/// addresses it may be for ([`other_receiving_interfaces`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtherLinks {
    /// Interfaces other than the route's, lowest indexes first.
    pub ifaces: Vec<u32>,
    /// This host's addresses: a reply on another link is ours only if it is for one of
    /// them (not traffic the host forwards, as a container host's bridge carries).
    pub addrs: Vec<IpAddr>,
}

impl OtherLinks {
    pub fn is_empty(&self) -> bool {
        self.ifaces.is_empty()
    }
}

/// The interfaces other than `oif` on which a reply to a packet we sent through `oif` could
/// arrive: a host with several links may get its answers back on another one (asymmetric
/// routing; Linux's TCP takes a segment whatever interface it came in on, RFC 1122
/// §3.3.4.2's weak host model). Those that are up, not the loopback, with an address of
/// their own, and none that would hand us a packet the route's interface shows already:
/// not enslaved to another device (a bridge port, a bond or VRF member: the master hands
/// the packet up again), not an ipvlan on `oif` (it shares `oif`'s MAC: `oif` sees its
/// packets as its own). An interface where Linux's IPv4 strict reverse-path filter
/// (`rp_filter` 1) drops what comes back by another way than it left is left out too:
/// Linux would not take that reply, so neither do we. At most [`MAX_OTHER_INTERFACES`]
/// interfaces and [`MAX_OWN_ADDRESSES`] addresses.
pub fn other_receiving_interfaces(oif: u32) -> anyhow::Result<OtherLinks> {
    const IFLA_LINK: u16 = 5;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    let mut sock = NlSocket::open(libc::NETLINK_ROUTE).context("opening rtnetlink")?;
    let strict_all = rp_filter("all") == Some(1);
    let mut ifaces: Vec<u32> = dump_links(&mut sock)?
        .iter()
        .filter(|r| r.ty == RTM_NEWLINK)
        .filter_map(|r| {
            let index = r.payload.get(4..).and_then(read_u32_ne)?;
            let flags = r.payload.get(8..).and_then(read_u32_ne)?;
            let rta = r.payload.get(16..).unwrap_or(&[]);
            let enslaved = find_attr(rta, IFLA_MASTER)
                .and_then(read_u32_ne)
                .is_some_and(|m| m != 0);
            let ipvlan_on_oif = find_attr(rta, IFLA_LINK).and_then(read_u32_ne) == Some(oif)
                && find_attr(rta, IFLA_LINKINFO)
                    .and_then(|info| find_attr(info, IFLA_INFO_KIND))
                    .is_some_and(|k| read_str(k) == "ipvlan");
            let name = find_attr(rta, IFLA_IFNAME)
                .map(read_str)
                .unwrap_or_default();
            // The effective value is the larger of `all` and the interface's own.
            let strict = strict_all || rp_filter(&name) == Some(1);
            (index != oif
                && flags & IFF_UP != 0
                && flags & IFF_LOOPBACK == 0
                && !enslaved
                && !ipvlan_on_oif
                && !strict)
                .then_some(index)
        })
        .collect();
    if ifaces.is_empty() {
        return Ok(OtherLinks::default());
    }
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    // struct ifaddrmsg: family AF_UNSPEC, every address of every family.
    m.begin(RTM_GETADDR, NLM_F_DUMP, seq)
        .header(&[0u8; 8])
        .end();
    let mut addressed = std::collections::BTreeSet::new();
    let mut addrs = Vec::new();
    for r in sock.request(&m, seq).context("listing addresses")? {
        if r.ty != RTM_NEWADDR {
            continue;
        }
        let Some(index) = r.payload.get(4..).and_then(read_u32_ne) else {
            continue;
        };
        addressed.insert(index);
        let rta = r.payload.get(8..).unwrap_or(&[]);
        // IPv4: IFA_LOCAL is the address (IFA_ADDRESS the peer's on a point-to-point link).
        let addr = find_attr(rta, IFA_LOCAL)
            .or_else(|| find_attr(rta, IFA_ADDRESS))
            .and_then(|b| match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
                _ => None,
            });
        if let Some(a) = addr.filter(|a| !a.is_loopback())
            && !addrs.contains(&a)
        {
            addrs.push(a);
        }
    }
    ifaces.retain(|i| addressed.contains(i));
    ifaces.sort_unstable();
    ifaces.truncate(MAX_OTHER_INTERFACES);
    addrs.truncate(MAX_OWN_ADDRESSES);
    Ok(OtherLinks { ifaces, addrs })
}

/// Every interface of this namespace (RTM_GETLINK dump): the replies, RTM_NEWLINK among them.
fn dump_links(sock: &mut NlSocket) -> anyhow::Result<Vec<super::netlink::Message>> {
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETLINK, NLM_F_DUMP, seq)
        .header(&ifinfomsg(0, 0, 0))
        .end();
    sock.request(&m, seq).context("listing interfaces")
}

/// [`other_receiving_interfaces`] for a tap on `oif`: none for the loopback (a packet to
/// this host never comes back by another link), and none when the kernel cannot be asked
/// (that costs only replies that come back by another link).
pub fn other_links(oif: u32, loopback: bool) -> OtherLinks {
    match loopback {
        true => OtherLinks::default(),
        false => other_receiving_interfaces(oif).unwrap_or_default(),
    }
}

/// `net.ipv4.conf.<name>.rp_filter` of this thread's namespace (0 off, 1 strict, 2 loose).
fn rp_filter(name: &str) -> Option<u8> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether some interface here is a bridge's port. With `br_netfilter` loaded (Docker
/// loads it) and `net.bridge.bridge-nf-call-iptables` (or `-ip6tables`) at its default of
/// 1, a frame crossing a bridge runs the IP prerouting hooks already in the bridge, on the
/// port: a prerouting drop there would drop a reply before the bridge device (the
/// route's interface, where the tap listens) ever sees it. The guard then drops in input.
pub fn bridge_netfilter() -> bool {
    let calls = ["iptables", "ip6tables"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{f}"))
            .is_ok_and(|v| v.trim() == "1")
    });
    calls && has_bridge_ports().unwrap_or(true)
}

/// Whether an interface in this namespace is enslaved to a bridge (its link info names
/// `bridge` as the slave kind).
fn has_bridge_ports() -> anyhow::Result<bool> {
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_SLAVE_KIND: u16 = 4;
    let mut sock = NlSocket::open(libc::NETLINK_ROUTE).context("opening rtnetlink")?;
    Ok(dump_links(&mut sock)?
        .iter()
        .filter(|r| r.ty == RTM_NEWLINK)
        .filter_map(|r| find_attr(r.payload.get(16..)?, IFLA_LINKINFO))
        .filter_map(|info| find_attr(info, IFLA_INFO_SLAVE_KIND))
        .any(|kind| read_str(kind) == "bridge"))
}

struct LinkInfo {
    name: String,
    mtu: Option<u32>,
    is_loopback: bool,
    mac: Option<MacAddr>,
}

/// Name, MTU and flags of interface `index` via RTM_GETLINK (in the socket's namespace,
/// unlike /sys/class/net which shows the namespace /sys was mounted in).
fn link_info(sock: &mut NlSocket, index: u32) -> anyhow::Result<LinkInfo> {
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETLINK, NLM_F_ACK, seq)
        .header(&ifinfomsg(index, 0, 0))
        .end();
    let replies = sock
        .request(&m, seq)
        .with_context(|| format!("reading interface {index}"))?;
    let link = replies
        .iter()
        .find(|r| r.ty == RTM_NEWLINK)
        .ok_or_else(|| anyhow!("interface {index} vanished during route lookup"))?;
    let flags = link.payload.get(8..).and_then(read_u32_ne).unwrap_or(0);
    // struct ifinfomsg: the device type (ARPHRD_*) is the u16 at offset 2.
    let arphrd = link
        .payload
        .get(2..4)
        .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
    let rta = link.payload.get(16..).unwrap_or(&[]);
    Ok(LinkInfo {
        name: find_attr(rta, IFLA_IFNAME)
            .map(read_str)
            .unwrap_or_else(|| format!("if{index}")),
        mtu: find_attr(rta, IFLA_MTU).and_then(read_u32_ne),
        is_loopback: flags & IFF_LOOPBACK != 0,
        mac: find_attr(rta, IFLA_ADDRESS)
            .filter(|a| arphrd == ARPHRD_ETHER && a.len() == 6)
            .and_then(MacAddr::from_slice),
    })
}

/// `struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change }`.
pub(crate) fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::testutil::{in_fresh_netns, require_root};

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn loopback_route_in_fresh_netns() {
        require_root("loopback_route_in_fresh_netns");
        in_fresh_netns(|| {
            // lo starts down in a new namespace: no route at all, not even to 127.0.0.1.
            let err = lookup("127.0.0.1".parse().unwrap()).unwrap_err();
            let msg = format!("{err:#}");
            assert_eq!(msg.matches("no route to 127.0.0.1").count(), 1, "{msg}");
            crate::netns::set_link_up_by_name("lo").unwrap();
            let r = lookup("127.0.0.1".parse().unwrap()).unwrap();
            assert_eq!(r.src, "127.0.0.1".parse::<IpAddr>().unwrap());
            assert_eq!(r.ifname, "lo");
            assert!(r.is_loopback);
            assert_eq!(r.gateway, None);
            assert_eq!(r.mtu, Some(65536));
            let r6 = lookup("::1".parse().unwrap()).unwrap();
            assert_eq!(r6.src, "::1".parse::<IpAddr>().unwrap());
            assert!(r6.is_loopback);
            let err = lookup_from("127.0.0.1".parse().unwrap(), Some("::1".parse().unwrap()))
                .unwrap_err();
            assert!(format!("{err}").contains("different IP versions"));
            // The route's metrics as `ip route` sets them: mtu, and advmss for the SYN.
            assert_eq!((r.advmss, r.mss(false)), (None, 65495));
            let ip = |args: &[&str]| {
                let ok = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap();
                assert!(ok.success(), "ip {args:?}");
            };
            ip(&[
                "route",
                "add",
                "198.18.7.0/24",
                "dev",
                "lo",
                "mtu",
                "1400",
                "advmss",
                "1200",
            ]);
            ip(&["route", "add", "198.18.8.0/24", "dev", "lo", "mtu", "1400"]);
            let r = lookup("198.18.7.9".parse().unwrap()).unwrap();
            assert_eq!(
                (r.mtu, r.advmss, r.mss(false)),
                (Some(1400), Some(1200), 1200)
            );
            let r = lookup("198.18.8.9".parse().unwrap()).unwrap();
            assert_eq!((r.advmss, r.mss(false), r.mss(true)), (None, 1360, 1340));
        })
        .unwrap();
    }
}

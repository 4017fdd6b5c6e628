//! Neighbour resolution's I/O: what the kernel knows (its routes and its neighbour table,
//! over rtnetlink), and the driver that runs the pure resolver
//! (`tcpshake_proto::probe::scan::neighbours`): ARP requests and Neighbor Solicitations
//! out as frames, replies in on an AF_PACKET socket filtered to ARP and Neighbor
//! Advertisements.

use super::frames::FramePort;
use super::link::FrameSender;
use super::netlink::{
    Message, MsgBuf, NLM_F_ACK, NLM_F_DUMP, NlSocket, errno_of, find_attr, read_u32_ne,
};
use super::{clock, poll};
use anyhow::{Context, Result};
use socket2::SockFilter;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tcpshake_proto::probe::scan::neighbours::{
    LinkRoutes, Neighbours, Prefix, ResolvePlan, ResolveStep, ResolveTotals, Resolver, Via,
    parse_reply,
};
use tcpshake_proto::probe::scan::rate::SendLog;
use tcpshake_proto::probe::scan::rtt::RttEstimator;
use tcpshake_proto::probe::scan::targets::TargetSet;
use tcpshake_proto::wire::arp::ArpRepr;
use tcpshake_proto::wire::ethernet::MacAddr;
use tcpshake_proto::wire::ndp;

// linux/rtnetlink.h
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWRULE: u16 = 32;
const RTM_GETRULE: u16 = 34;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_LOCAL: u32 = 255;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
// linux/neighbour.h
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NONE: u16 = 0x00;
/// Frames per request batch.
const BATCH: usize = 64;

/// This host's own addresses and local prefixes of family `v6` (the kernel's local
/// table): targets there are answered through the loopback interface.
pub fn local_prefixes(v6: bool) -> Result<Vec<Prefix>> {
    let us = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    Ok(link_routes(0, us, MacAddr::ZERO)?.local)
}

/// The routes of family `v6` as interface `oif` sees them (see `LinkRoutes`): the main
/// table's unicast routes (through `oif` with or without a gateway; anything else is the
/// kernel's) and the local table's addresses and prefixes (this host's own).
pub fn link_routes(oif: u32, us: IpAddr, mac: MacAddr) -> Result<LinkRoutes> {
    let v6 = us.is_ipv6();
    let mut sock = NlSocket::open(libc::NETLINK_ROUTE).context("reading routes needs rtnetlink")?;
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETROUTE, NLM_F_DUMP, seq)
        .header(&[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .end();
    let replies = sock
        .request(&m, seq)
        .context("dumping the routing tables")?;
    let (mut local, mut routes) = (Vec::new(), Vec::new());
    for r in replies.iter().filter(|r| r.ty == RTM_NEWROUTE) {
        // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }
        let Some(h) = r.payload.get(..12) else {
            continue;
        };
        let (dst_len, table8, ty) = (h[1], h[4], h[7]);
        let rta = &r.payload[12..];
        let table = find_attr(rta, RTA_TABLE)
            .and_then(read_u32_ne)
            .unwrap_or(u32::from(table8));
        let dst = match find_attr(rta, RTA_DST).and_then(|b| parse_ip(b, v6)) {
            Some(d) => d,
            None if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let Some(prefix) = Prefix::new(dst, dst_len) else {
            continue;
        };
        match (table, ty) {
            (RT_TABLE_LOCAL, RTN_LOCAL) => local.push(prefix),
            (RT_TABLE_MAIN, _) => {
                let route_oif = find_attr(rta, RTA_OIF).and_then(read_u32_ne);
                let gateway = find_attr(rta, RTA_GATEWAY).and_then(|b| parse_ip(b, v6));
                let via = if ty != RTN_UNICAST
                    || find_attr(rta, RTA_MULTIPATH).is_some()
                    || route_oif != Some(oif)
                {
                    Via::Elsewhere
                } else {
                    match gateway {
                        Some(g) => Via::Gateway(g),
                        None => Via::OnLink,
                    }
                };
                routes.push((prefix, via));
            }
            _ => {}
        }
    }
    Ok(LinkRoutes::new(us, mac, local, routes))
}

/// The bounds of every route prefix of family `v6` in every table (any type: unicast,
/// local, broadcast, unreachable, blackhole…), and of every policy rule's destination
/// (`ip rule add to 198.18.0.3 prohibit`): within the stretches between them every
/// address is routed alike (`probe::scan::unroutable::cells`). A rule's other selectors
/// (source, mark, interface) are the same for every packet of a scan.
pub fn route_prefixes(v6: bool) -> Result<Vec<(u128, u128)>> {
    let mut sock = NlSocket::open(libc::NETLINK_ROUTE).context("reading routes needs rtnetlink")?;
    let mut prefixes = Vec::new();
    // `rtmsg` and `fib_rule_hdr` are both 12 bytes with the destination's prefix length
    // second, and both give the destination as attribute 1 (RTA_DST, FRA_DST).
    for (get, new, what) in [
        (RTM_GETROUTE, RTM_NEWROUTE, "dumping the routing tables"),
        (RTM_GETRULE, RTM_NEWRULE, "dumping the routing policy rules"),
    ] {
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        let seq = sock.next_seq();
        let mut m = MsgBuf::new();
        m.begin(get, NLM_F_DUMP, seq)
            .header(&[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .end();
        let replies = sock.request(&m, seq).context(what)?;
        prefixes.extend(replies.iter().filter(|r| r.ty == new).filter_map(|r| {
            let dst_len = *r.payload.get(1)?;
            let rta = r.payload.get(12..)?;
            let dst = match find_attr(rta, RTA_DST).and_then(|b| parse_ip(b, v6)) {
                Some(d) => d,
                None if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            };
            Some(Prefix::new(dst, dst_len)?.bounds())
        }));
    }
    Ok(prefixes)
}

/// One entry of the kernel's neighbour table.
struct KernelNeighbour {
    dst: IpAddr,
    ifindex: u32,
    state: u16,
    mac: Option<MacAddr>,
}

/// The kernel's neighbour entries on interface `oif` for family `v6`.
fn dump_neighbours(oif: u32, v6: bool) -> Result<Vec<KernelNeighbour>> {
    let mut sock =
        NlSocket::open(libc::NETLINK_ROUTE).context("reading neighbours needs rtnetlink")?;
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(RTM_GETNEIGH, NLM_F_DUMP, seq)
        .header(&ndmsg(v6, 0))
        .end();
    let replies = sock
        .request(&m, seq)
        .context("dumping the neighbour table")?;
    Ok(replies
        .iter()
        .filter_map(|r| parse_neighbour(r, v6))
        .filter(|n| n.ifindex == oif)
        .collect())
}

/// The kernel's neighbour entry for `addr` on interface `oif`, asked for by address (one
/// entry, not the table: a survey of a dead on-link range asks once per probe, while the
/// table fills with the INCOMPLETE entries of that range). Kernels before 5.0 cannot
/// answer such a request; the table is read then.
fn get_neighbour(oif: u32, addr: IpAddr) -> Result<Option<KernelNeighbour>> {
    let v6 = addr.is_ipv6();
    let mut sock =
        NlSocket::open(libc::NETLINK_ROUTE).context("reading neighbours needs rtnetlink")?;
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    let dst = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    m.begin(RTM_GETNEIGH, NLM_F_ACK, seq)
        .header(&ndmsg(v6, oif))
        .attr(NDA_DST, &dst)
        .end();
    match sock.request(&m, seq) {
        Ok(replies) => Ok(replies
            .iter()
            .filter_map(|r| parse_neighbour(r, v6))
            .find(|n| n.dst == addr && n.ifindex == oif)),
        Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(None),
        Err(e) if matches!(errno_of(&e), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
            Ok(dump_neighbours(oif, v6)?
                .into_iter()
                .find(|n| n.dst == addr))
        }
        Err(e) => Err(e).context("asking the kernel for a neighbour entry"),
    }
}

/// `struct ndmsg { u8 family, pad1; u16 pad2; i32 ifindex; u16 state; u8 flags, type }`.
fn ndmsg(v6: bool, ifindex: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    h
}

/// One `RTM_NEWNEIGH` message of family `v6`, if it is one.
fn parse_neighbour(r: &Message, v6: bool) -> Option<KernelNeighbour> {
    if r.ty != RTM_NEWNEIGH {
        return None;
    }
    let h = r.payload.get(..12)?;
    let rta = &r.payload[12..];
    Some(KernelNeighbour {
        dst: find_attr(rta, NDA_DST).and_then(|b| parse_ip(b, v6))?,
        ifindex: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
        state: u16::from_ne_bytes([h[8], h[9]]),
        mac: find_attr(rta, NDA_LLADDR).and_then(MacAddr::from_slice),
    })
}

/// What the kernel's neighbour table holds for interface `oif` and family `v6`: the
/// entries with a usable link address (not INCOMPLETE or FAILED).
pub fn kernel_neighbours(oif: u32, v6: bool) -> Result<HashMap<IpAddr, MacAddr>> {
    let mut out = HashMap::new();
    for n in dump_neighbours(oif, v6)? {
        if n.state & (NUD_INCOMPLETE | NUD_FAILED) != 0 || n.state == NUD_NONE {
            continue;
        }
        if let Some(mac) = n.mac.filter(|m| m.is_unicast()) {
            out.insert(n.dst, mac);
        }
    }
    Ok(out)
}

/// Whether the kernel tried to resolve `addr` on `oif` and got no answer: `Some(true)`
/// when its entry is FAILED (the packets queued behind it were dropped), `Some(false)`
/// while it is still INCOMPLETE (they wait), `None` otherwise.
pub fn kernel_unresolved(oif: u32, addr: IpAddr) -> Result<Option<bool>> {
    Ok(get_neighbour(oif, addr)?
        .filter(|n| n.state & (NUD_INCOMPLETE | NUD_FAILED) != 0)
        .map(|n| n.state & NUD_FAILED != 0))
}

fn parse_ip(b: &[u8], v6: bool) -> Option<IpAddr> {
    if v6 {
        let o: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(o)))
    } else {
        let o: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(o)))
    }
}

/// Classic BPF for the reply socket (a SOCK_RAW AF_PACKET socket: offsets from the
/// Ethernet header): ARP, or IPv6 whose next header is ICMPv6 with type 136 (a Neighbor
/// Advertisement without extension headers, which RFC 4861 §7.1.2 requires: hop limit 255
/// and no forwarding leaves no reason for any). Everything else is never copied to us.
fn reply_filter() -> Vec<SockFilter> {
    const LDH: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LDB: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        SockFilter::new(LDH, 0, 0, 12),     // 0: EtherType
        SockFilter::new(JEQ, 5, 0, 0x0806), // 1: ARP → accept
        SockFilter::new(JEQ, 0, 5, 0x86dd), // 2: IPv6 → 3, else reject
        SockFilter::new(LDB, 0, 0, 20),     // 3: next header
        SockFilter::new(JEQ, 0, 3, 58),     // 4: ICMPv6 → 5, else reject
        SockFilter::new(LDB, 0, 0, 54),     // 5: ICMPv6 type
        SockFilter::new(JEQ, 0, 1, 136),    // 6: NA → accept, else reject
        SockFilter::new(RET, 0, 0, 256),    // 7: accept (the headers are enough)
        SockFilter::new(RET, 0, 0, 0),      // 8: reject
    ]
}

/// What resolution found, and what it cost.
pub struct Resolved {
    pub neighbours: Neighbours,
    pub totals: ResolveTotals,
    pub rtt: RttEstimator,
    pub interrupted: bool,
    pub log: SendLog,
    /// The sockets replies were read on, for the caller to close with its others (closing
    /// an AF_PACKET socket waits for an RCU grace period; closed together, they wait for
    /// about one).
    pub reply_sockets: Vec<FramePort>,
}

/// Run the resolver for `targets` over the families' links (`links[v6]`, each with its
/// interface index and name): requests as frames through the family's sender, replies
/// read until the resolver is done. `known`: gateway MACs the kernel already has.
pub fn resolve(
    targets: &TargetSet,
    links: [Option<(LinkRoutes, u32, String)>; 2],
    senders: &mut [Option<&mut FrameSender>; 2],
    known: HashMap<IpAddr, MacAddr>,
    plan: ResolvePlan,
    stop: &AtomicBool,
) -> Result<Resolved> {
    let mut ports: Vec<FramePort> = Vec::new();
    let mut seen_if: Vec<u32> = Vec::new();
    for l in links.iter() {
        let Some((_, oif, name)) = l else { continue };
        if !seen_if.contains(oif) {
            let filter = reply_filter();
            ports.push(
                FramePort::open_filtered(name, Some(&filter))
                    .context("opening the ARP / ND reply socket")?,
            );
            seen_if.push(*oif);
        }
    }
    let routes = links.map(|l| l.map(|(r, _, _)| r));
    let mut r = Resolver::new(targets, routes, known, plan, clock::now());
    let mut bufs = vec![[0u8; 128]; BATCH];
    let mut batch: Vec<(IpAddr, usize)> = Vec::with_capacity(BATCH);
    let mut frame = vec![0u8; 2048];
    let mut log = SendLog::default();
    let sched0 = clock::thread_sched();
    // Bounded by the resolver: it ends after its rounds and waits.
    loop {
        match r.poll(clock::now(), stop.load(Ordering::Relaxed)) {
            ResolveStep::Ask(a) => {
                let Some(link) = &r.links()[usize::from(a.is_ipv6())] else {
                    continue;
                };
                let slot = batch.len();
                let n = match (a, link.us) {
                    (IpAddr::V4(t), IpAddr::V4(us)) => {
                        ArpRepr::emit_request_frame(link.mac, us, t, &mut bufs[slot])
                    }
                    (IpAddr::V6(t), IpAddr::V6(us)) => {
                        ndp::emit_solicitation_frame(link.mac, us, t, &mut bufs[slot])
                    }
                    _ => continue,
                }
                .context("building a neighbour request")?;
                batch.push((a, n));
                if batch.len() == BATCH {
                    flush(senders, &bufs, &mut batch, &mut r, &mut log)?;
                    read_replies(&ports, &mut frame, &mut r)?;
                }
            }
            ResolveStep::Wait(until) => {
                flush(senders, &bufs, &mut batch, &mut r, &mut log)?;
                if read_replies(&ports, &mut frame, &mut r)? > 0 {
                    continue; // the resolver may be done now: ask before sleeping
                }
                let d = until
                    .saturating_since(clock::now())
                    .min(Duration::from_millis(20));
                if d >= Duration::from_micros(200) {
                    let fds: Vec<_> = ports.iter().map(|p| p.as_fd()).collect();
                    poll::wait_readable(&fds, Some(d)).context("waiting for ARP / ND replies")?;
                } else {
                    std::thread::yield_now();
                }
            }
            ResolveStep::Done => break,
        }
    }
    flush(senders, &bufs, &mut batch, &mut r, &mut log)?;
    log.send_time = r.send_time();
    if let (Some((run0, wait0)), Some((run1, wait1))) = (sched0, clock::thread_sched()) {
        log.busy = run1.saturating_sub(run0).min(log.send_time);
        log.preempted = wait1.saturating_sub(wait0).min(log.send_time);
    }
    let totals = r.totals();
    let rtt = r.rtt();
    let interrupted = r.interrupted();
    Ok(Resolved {
        neighbours: r.finish(),
        totals,
        rtt,
        interrupted,
        log,
        reply_sockets: ports,
    })
}

/// Send the batched requests, each through its family's sender, and tell the resolver
/// when they left.
fn flush(
    senders: &mut [Option<&mut FrameSender>; 2],
    bufs: &[[u8; 128]],
    batch: &mut Vec<(IpAddr, usize)>,
    r: &mut Resolver<'_>,
    log: &mut SendLog,
) -> Result<()> {
    for v6 in [false, true] {
        let Some(s) = senders[usize::from(v6)].as_mut() else {
            continue;
        };
        let idx: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].0.is_ipv6() == v6)
            .collect();
        let mut done = 0;
        // Bounded: a full ring is waited out at most ~1 s per batch.
        for _ in 0..10_000 {
            if done == idx.len() {
                break;
            }
            let frames: Vec<&[u8]> = idx[done..]
                .iter()
                .map(|&i| &bufs[i][..batch[i].1])
                .collect();
            match s.send_batch(&frames) {
                Ok(n) => done += n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                    log.full += 1;
                    let w = clock::now();
                    std::thread::sleep(Duration::from_micros(100));
                    log.blocked += clock::now().saturating_since(w);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("sending ARP / ND requests")),
            }
        }
        let now = clock::now();
        for &i in &idx[..done] {
            r.sent(batch[i].0, now);
        }
        log.sent += done as u64;
    }
    batch.clear();
    Ok(())
}

/// Every reply waiting on the sockets, into the resolver; how many resolved something.
fn read_replies(ports: &[FramePort], frame: &mut [u8], r: &mut Resolver<'_>) -> Result<usize> {
    let mut new = 0;
    for p in ports {
        // Bounded per call; the rest is read on the next.
        for _ in 0..4096 {
            let Some(f) = p.recv(frame).context("reading ARP / ND replies")? else {
                break;
            };
            if let Some((addr, mac)) = parse_reply(&frame[..f.len], r.links())
                && r.answer(addr, mac, f.at)
            {
                new += 1;
            }
        }
    }
    Ok(new)
}

//! A chain of routers between the client and the server, for `tcpshake trace`.
//!
//! ```text
//!  client tsk0 ─ link 0 ─ tsku [r1] tskd ─ link 1 ─ tsku [r2] tskd ─ … ─ link N ─ tsk1 server
//! ```
//!
//! Each link is a veth pair made directly inside its two namespaces and gets a /28 of the
//! lab's /24 (link i: `198.18.K.16i`, left end `.16i+1`, right end `.16i+14`) and a /64
//! (`fd00:K:i::/64`, left `::1`, right `::2`). The client is the left end of link 0, the
//! server the right end of link N. Every router forwards, decrements the TTL, answers
//! time-exceeded from its client-side address (Linux picks the source of the route back:
//! the interface toward the client), has static routes for every link, and no ICMP rate
//! limit (RFC 1812 §4.3.2.8 allows one; a lab wants determinism). Checksum offload is off
//! on every end, so quotes carry the checksums that were on the wire.
//!
//! Header rewrites are nftables rules in a router's namespace ([`Lab::chain_nft`]). Where
//! a rule sits decides the first hop that shows it: a rule in `prerouting` of router k
//! changes the packet before k checks its TTL, so k's own time-exceeded quotes it; a rule
//! in `forward` or `postrouting` runs after the TTL check, so hop k+1 is the first to
//! quote it.

use super::{Lab, in_ns, run_ok};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

/// Router interfaces: toward the client, toward the server.
pub const UP_IF: &str = "tsku";
pub const DOWN_IF: &str = "tskd";
/// At most this many routers: each link takes a /28 of the lab's /24.
pub const MAX_ROUTERS: usize = 14;

impl Lab {
    /// client ⇄ r1 ⇄ … ⇄ r`routers` ⇄ server. See the module doc.
    pub fn with_chain(name: &str, routers: usize) -> Lab {
        assert!(
            (1..=MAX_ROUTERS).contains(&routers),
            "1..={MAX_ROUTERS} routers"
        );
        let mut lab = Lab::alloc(name);
        lab.server_v4 = lab.link_v4(routers, false);
        lab.server_v6 = lab.link_v6(routers, false);
        let mut spaces = vec![lab.client_ns.clone()];
        spaces.extend((1..=routers).map(|i| lab.router_ns(i)));
        spaces.push(lab.server_ns.clone());
        for ns in &spaces {
            run_ok(Command::new("ip").args(["netns", "add", ns]));
            lab.namespaces.push(ns.clone());
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        lab.middle_ns = Some(lab.router_ns(1));
        // Link i joins spaces[i] (its left end) and spaces[i + 1].
        for i in 0..=routers {
            let (left, right) = (&spaces[i], &spaces[i + 1]);
            let lif = if i == 0 { super::CLIENT_IF } else { DOWN_IF };
            let rif = if i == routers {
                super::SERVER_IF
            } else {
                UP_IF
            };
            super::veth_pair(lif, left, rif, right);
            for (ns, ifname, left_end) in [(left, lif, true), (right, rif, false)] {
                let v4 = format!("{}/28", lab.link_v4(i, left_end));
                let v6 = format!("{}/64", lab.link_v6(i, left_end));
                run_ok(Command::new("ip").args(["-n", ns, "addr", "add", &v4, "dev", ifname]));
                run_ok(
                    Command::new("ip")
                        .args(["-n", ns, "addr", "add", &v6, "dev", ifname])
                        .arg("nodad"),
                );
                run_ok(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]));
                let _ = in_ns(ns, "ethtool")
                    .args(["-K", ifname, "tx", "off"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for r in 1..=routers {
            let ns = lab.router_ns(r);
            run_ok(in_ns(&ns, "sysctl").args([
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv6.icmp.ratelimit=0",
            ]));
            // Links beyond its own two: toward the server via the next router, toward
            // the client via the one before.
            for link in 0..=routers {
                let via = if link > r {
                    Some((lab.link_v4(r, false), lab.link_v6(r, false)))
                } else if link + 1 < r {
                    Some((lab.link_v4(r - 1, true), lab.link_v6(r - 1, true)))
                } else {
                    None
                };
                if let Some((v4, v6)) = via {
                    let net4 = format!("{}/28", lab.link_net_v4(link));
                    let net6 = format!("{}/64", lab.link_net_v6(link));
                    run_ok(
                        Command::new("ip")
                            .args(["-n", &ns, "route", "add", &net4, "via"])
                            .arg(v4.to_string()),
                    );
                    run_ok(
                        Command::new("ip")
                            .args(["-n", &ns, "-6", "route", "add", &net6, "via"])
                            .arg(v6.to_string()),
                    );
                }
            }
        }
        for (ns, v4, v6) in [
            (&lab.client_ns, lab.link_v4(0, false), lab.link_v6(0, false)),
            (
                &lab.server_ns,
                lab.link_v4(routers, true),
                lab.link_v6(routers, true),
            ),
        ] {
            run_ok(
                Command::new("ip")
                    .args(["-n", ns, "route", "add", "default", "via"])
                    .arg(v4.to_string()),
            );
            run_ok(
                Command::new("ip")
                    .args(["-n", ns, "-6", "route", "add", "default", "via"])
                    .arg(v6.to_string()),
            );
        }
        lab.wait_reachable();
        lab
    }

    /// The namespace of router `r` (1-based).
    pub fn router_ns(&self, r: usize) -> String {
        format!("{}-r{r}", self.name)
    }

    /// The address router `r` answers from: its end of the link toward the client.
    pub fn hop_addr(&self, r: usize, v6: bool) -> std::net::IpAddr {
        if v6 {
            self.link_v6(r - 1, false).into()
        } else {
            self.link_v4(r - 1, false).into()
        }
    }

    fn link_net_v4(&self, link: usize) -> Ipv4Addr {
        let o = self.client_v4.octets();
        Ipv4Addr::new(o[0], o[1], o[2], (16 * link) as u8)
    }

    fn link_net_v6(&self, link: usize) -> Ipv6Addr {
        let s = self.client_v6.segments();
        Ipv6Addr::new(s[0], s[1], link as u16, 0, 0, 0, 0, 0)
    }

    /// The left (client-side) or right end of link `link`.
    pub fn link_v4(&self, link: usize, left: bool) -> Ipv4Addr {
        let o = self.client_v4.octets();
        let host = 16 * link as u8 + if left { 1 } else { 14 };
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }

    pub fn link_v6(&self, link: usize, left: bool) -> Ipv6Addr {
        let s = self.client_v6.segments();
        Ipv6Addr::new(
            s[0],
            s[1],
            link as u16,
            0,
            0,
            0,
            0,
            if left { 1 } else { 2 },
        )
    }

    /// Give routers 1..=`routers` Linux's ICMP rate limit of `ms` per peer (the lab starts
    /// without any; Linux's default is 1000 ms, with a burst of 6).
    pub fn chain_icmp_ratelimit(&self, routers: usize, ms: u32) {
        for r in 1..=routers {
            run_ok(in_ns(&self.router_ns(r), "sysctl").args([
                "-qw",
                &format!("net.ipv4.icmp_ratelimit={ms}"),
                &format!("net.ipv6.icmp.ratelimit={ms}"),
            ]));
        }
    }

    /// An nft script in router `r`'s namespace (see the module doc for where rules show).
    pub fn chain_nft(&self, r: usize, script: &str) {
        super::middle::nft_script(&self.router_ns(r), script);
    }
}

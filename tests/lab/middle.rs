//! Three-namespace labs: something between the client and the server.
//!
//! ```text
//!  client tsk0 ── veth ── tskm0 [ middle ] tskm1 ── veth ── tsk1 server
//! ```
//!
//! - [`Lab::with_link_emulator`]: the middle runs the lab's link emulator
//!   (`tcpshake_lab::linkem`, the engine of `tcpshake-linkem`) on a thread of the test
//!   process moved into the middle namespace: a bridge of whole Ethernet frames with
//!   per-direction delay, jitter, loss, reordering, duplication, corruption and scripted
//!   faults. Client and server share one subnet,
//!   as in [`Lab::new`]; the middle has no addresses and IPv6 off, so its own kernel
//!   never speaks.
//! - [`Lab::with_router`]: the middle is an IP router (forwarding on, TTL decremented),
//!   so ICMP errors come from a third host, as on real paths. It knows routes that are
//!   `unreachable` (host-unreach), `prohibit` (admin-prohibited), lacks routes
//!   (net-unreach), and [`Lab::router_ttl_one`] makes it send time-exceeded.
//!
//! The middle namespace and the emulator thread are owned like everything else: `Drop`
//! stops the thread (bounded) before it deletes the namespaces.

use super::{Lab, in_ns, run_ok, veth_pair};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use tcpshake_lab::linkem::{LinkParams, LinkStats};
use tcpshake_lab::linkem_io;

/// The middle's interfaces: toward the client, toward the server.
pub const MIDDLE_CLIENT_IF: &str = "tskm0";
pub const MIDDLE_SERVER_IF: &str = "tskm1";

/// The link emulator on its thread: stop it to get its report.
#[derive(Debug)]
pub struct LinkemThread {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<linkem_io::Report, String>>,
    thread: JoinHandle<()>,
    /// What it said on the way (SCHED_FIFO refused…).
    pub notes: String,
}

impl LinkemThread {
    /// Starts the emulator inside namespace `ns`, bridging `a` and `b`.
    fn start(ns: &str, a: &str, b: &str, ab: LinkParams, ba: LinkParams, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let (a, b, flag) = (a.to_string(), b.to_string(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let entered = std::fs::File::open(&path)
                .map_err(anyhow::Error::from)
                .and_then(|f| tcpshake_io::netns::setns_net(f.as_fd()));
            if let Err(e) = entered {
                let _ = ready_tx.send(Err(format!("entering {path}: {e:#}")));
                return;
            }
            // SCHED_FIFO: frames leave on time on a busy machine.
            let realtime = linkem_io::set_realtime();
            let _ = ready_tx.send(Ok(realtime));
            let r = linkem_io::run(&a, &b, ab, ba, seed, &flag).map_err(|e| format!("{e:#}"));
            let _ = tx.send(r);
        });
        let notes = match ready.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(true)) => String::new(),
            Ok(Ok(false)) => "SCHED_FIFO refused; running with normal priority".to_string(),
            Ok(Err(e)) => panic!("link emulator: {e}"),
            Err(_) => panic!("link emulator thread did not start within 5 s"),
        };
        LinkemThread {
            stop,
            done,
            thread,
            notes,
        }
    }

    /// Stops the emulator (bounded: it checks its flag at least every 50 ms).
    pub fn stop(self) -> Result<LinkemReport, String> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self
            .done
            .recv_timeout(Duration::from_secs(3))
            .map_err(|_| "link emulator did not stop within 3 s".to_string())?;
        let _ = self.thread.join();
        let r = r?;
        Ok(LinkemReport {
            ab: LinkemStats::of(&r.ab),
            ba: LinkemStats::of(&r.ba),
            checksums_completed: r.checksums_completed,
            send_errors: r.send_errors,
        })
    }
}

/// What a host-unreachable / admin-prohibited / net-unreachable probe targets in a router lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterFault {
    /// A /32 the router routes as `unreachable`: ICMP host unreachable (type 3 code 1).
    HostUnreach,
    /// A /32 routed as `prohibit`: ICMP type 3 code 13 (RFC 1812 §5.2.7.1).
    AdminProhibited,
    /// An address the router has no route for: ICMP net unreachable (type 3 code 0).
    NetUnreach,
}

/// The emulator's closing report (what `tcpshake-linkem` prints after SIGTERM).
#[derive(Debug)]
pub struct LinkemReport {
    pub ab: LinkemStats,
    pub ba: LinkemStats,
    pub checksums_completed: u64,
    pub send_errors: u64,
}

#[derive(Debug)]
pub struct LinkemStats {
    pub received: u64,
    pub tcp: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub sent: u64,
    pub late_mean_ns: u64,
    pub late_max_ns: u64,
}

impl LinkemStats {
    fn of(s: &LinkStats) -> LinkemStats {
        LinkemStats {
            received: s.received,
            tcp: s.tcp,
            dropped: s.dropped,
            duplicated: s.duplicated,
            reordered: s.reordered,
            corrupted: s.corrupted,
            sent: s.sent,
            late_mean_ns: s.late_sum_ns.checked_div(s.sent).unwrap_or(0),
            late_max_ns: s.late_max_ns,
        }
    }
}

impl Lab {
    /// client ⇄ link emulator ⇄ server. `c2s` / `s2c` are the emulator's per-direction
    /// specs (`delay=10ms,loss=5%,script=2:drop`…, see `tcpshake_lab::linkem`); `seed` its dice.
    pub fn with_link_emulator(name: &str, c2s: &str, s2c: &str, seed: u64) -> Lab {
        let mut lab = Lab::alloc(name);
        let middle = format!("{}-m", lab.name);
        lab.make_middle(&middle);
        // Quiet middle: no IPv6 (no link-local chatter, no DAD), set before the veths exist.
        run_ok(in_ns(&middle, "sysctl").args([
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]));
        lab.link_through_middle(&middle);
        for ifname in [MIDDLE_CLIENT_IF, MIDDLE_SERVER_IF] {
            run_ok(
                Command::new("ip").args(["-n", &middle, "link", "set", ifname, "promisc", "on"]),
            );
            run_ok(Command::new("ip").args(["-n", &middle, "link", "set", ifname, "up"]));
        }
        let (v4c, v6c, v4s, v6s) = (lab.client_v4, lab.client_v6, lab.server_v4, lab.server_v6);
        lab.address_side(true, v4c, 24, v6c);
        lab.address_side(false, v4s, 24, v6s);
        let spec =
            |s: &str| LinkParams::parse(s).unwrap_or_else(|e| panic!("link spec {s:?}: {e}"));
        lab.linkem = Some(LinkemThread::start(
            &middle,
            MIDDLE_CLIENT_IF,
            MIDDLE_SERVER_IF,
            spec(c2s),
            spec(s2c),
            seed,
        ));
        lab.wait_reachable();
        lab
    }

    /// Stops the link emulator and returns its report.
    pub fn stop_link_emulator(&mut self) -> LinkemReport {
        let t = self.linkem.take().expect("this lab has no link emulator");
        t.stop().unwrap_or_else(|e| panic!("link emulator: {e}"))
    }

    /// What the link emulator said while starting (empty when all went well).
    pub fn link_emulator_notes(&self) -> &str {
        self.linkem.as_ref().map_or("", |t| t.notes.as_str())
    }

    /// client ⇄ router ⇄ server, each side its own subnet. See the module doc.
    pub fn with_router(name: &str) -> Lab {
        let mut lab = Lab::alloc(name);
        let middle = format!("{}-m", lab.name);
        lab.make_middle(&middle);
        lab.link_through_middle(&middle);
        // Server side: the upper half of the /24 and fd00:K:1::/64.
        let o = lab.client_v4.octets();
        lab.server_v4 = Ipv4Addr::new(o[0], o[1], o[2], 130);
        let s = lab.client_v6.segments();
        lab.server_v6 = Ipv6Addr::new(s[0], s[1], 1, 0, 0, 0, 0, 2);
        let (v4c, v6c, v4s, v6s) = (lab.client_v4, lab.client_v6, lab.server_v4, lab.server_v6);
        lab.address_side(true, v4c, 25, v6c);
        lab.address_side(false, v4s, 25, v6s);
        let (r4c, r6c) = (lab.router_v4(true), lab.router_v6(true));
        let (r4s, r6s) = (lab.router_v4(false), lab.router_v6(false));
        run_ok(in_ns(&middle, "sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // Every probe gets its ICMP error: no rate limit in a lab (RFC 1812 §4.3.2.8
            // allows limiting; we want determinism).
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ]));
        for (ifname, v4, v6) in [(MIDDLE_CLIENT_IF, r4c, r6c), (MIDDLE_SERVER_IF, r4s, r6s)] {
            run_ok(Command::new("ip").args([
                "-n",
                &middle,
                "addr",
                "add",
                &format!("{v4}/25"),
                "dev",
                ifname,
            ]));
            run_ok(
                Command::new("ip")
                    .args([
                        "-n",
                        &middle,
                        "addr",
                        "add",
                        &format!("{v6}/64"),
                        "dev",
                        ifname,
                    ])
                    .arg("nodad"),
            );
            run_ok(Command::new("ip").args(["-n", &middle, "link", "set", ifname, "up"]));
            quiet_ethtool(&middle, ifname);
        }
        // Routes that fail on purpose, each answered by the router's own ICMP error.
        let host = lab.router_fault_target(RouterFault::HostUnreach);
        let prohibited = lab.router_fault_target(RouterFault::AdminProhibited);
        run_ok(Command::new("ip").args([
            "-n",
            &middle,
            "route",
            "add",
            "unreachable",
            &format!("{host}/32"),
        ]));
        run_ok(Command::new("ip").args([
            "-n",
            &middle,
            "route",
            "add",
            "prohibit",
            &format!("{prohibited}/32"),
        ]));
        for (ns, v4, v6) in [(&lab.client_ns, r4c, r6c), (&lab.server_ns, r4s, r6s)] {
            run_ok(Command::new("ip").args([
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &v4.to_string(),
            ]));
            run_ok(Command::new("ip").args([
                "-n",
                ns,
                "-6",
                "route",
                "add",
                "default",
                "via",
                &v6.to_string(),
            ]));
        }
        lab.wait_reachable();
        lab
    }

    /// The router's address on the client side (`client_side`) or the server side.
    pub fn router_v4(&self, client_side: bool) -> Ipv4Addr {
        let o = self.client_v4.octets();
        Ipv4Addr::new(o[0], o[1], o[2], if client_side { 126 } else { 129 })
    }

    pub fn router_v6(&self, client_side: bool) -> Ipv6Addr {
        let s = self.client_v6.segments();
        Ipv6Addr::new(s[0], s[1], u16::from(!client_side), 0, 0, 0, 0, 0xff)
    }

    /// A second link between client and router, and the router sending everything for the
    /// client back over it: asymmetric routing. The client's route to the server still
    /// leaves by the first link (its default); replies arrive on the second, whose
    /// interface has addresses of its own (`.64/32`, `…:64/128`, on-link routes only). The
    /// router reaches the client's first-link addresses there by static neighbour entries
    /// (the client would not answer Neighbor Discovery for them on another link), and
    /// reverse-path filtering is off on both ends, as such hosts have it.
    pub fn return_by_second_link(&self) {
        let middle = self.middle_ns.as_deref().expect("router lab");
        let (cif, mif) = ("tsk2", "tskm2");
        veth_pair(cif, &self.client_ns, mif, middle);
        let o = self.client_v4.octets();
        let c4 = Ipv4Addr::new(o[0], o[1], o[2], 64);
        let s = self.client_v6.segments();
        let c6 = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0x64);
        for (ns, ifname) in [(self.client_ns.as_str(), cif), (middle, mif)] {
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]));
            quiet_ethtool(ns, ifname);
            run_ok(in_ns(ns, "sysctl").args([
                "-qw",
                "net.ipv4.conf.all.rp_filter=0",
                &format!("net.ipv4.conf.{ifname}.rp_filter=0"),
            ]));
        }
        let ip = |args: &[&str]| {
            run_ok(Command::new("ip").args(args));
        };
        ip(&[
            "-n",
            &self.client_ns,
            "addr",
            "add",
            &format!("{c4}/32"),
            "dev",
            cif,
        ]);
        run_ok(
            Command::new("ip")
                .args([
                    "-n",
                    &self.client_ns,
                    "addr",
                    "add",
                    &format!("{c6}/128"),
                    "dev",
                    cif,
                ])
                .arg("nodad"),
        );
        let mac = String::from_utf8_lossy(
            &run_ok(in_ns(&self.client_ns, "cat").arg(format!("/sys/class/net/{cif}/address")))
                .stdout,
        )
        .trim()
        .to_string();
        for (addr, plen) in [
            (self.client_v4.to_string(), 32),
            (self.client_v6.to_string(), 128),
        ] {
            ip(&[
                "-n",
                middle,
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &mac,
                "dev",
                mif,
                "nud",
                "permanent",
            ]);
            ip(&[
                "-n",
                middle,
                "route",
                "replace",
                &format!("{addr}/{plen}"),
                "dev",
                mif,
            ]);
        }
    }

    /// The client's link becomes a bridge's port, its addresses the bridge's (a
    /// hypervisor's or container host's uplink), with the bridge running the IP hooks for
    /// what it carries (`br_netfilter`'s `bridge-nf-call-iptables`, as Docker sets it) when
    /// this kernel has it. Returns whether it does.
    pub fn bridge_client_link(&self) -> bool {
        let ns = self.client_ns.as_str();
        let ip = |args: &[&str]| {
            run_ok(Command::new("ip").arg("-n").arg(ns).args(args));
        };
        ip(&["link", "add", "tskbr0", "type", "bridge"]);
        ip(&["addr", "flush", "dev", super::CLIENT_IF]);
        ip(&["link", "set", super::CLIENT_IF, "master", "tskbr0"]);
        ip(&["link", "set", "tskbr0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.client_v4),
            "dev",
            "tskbr0",
        ]);
        run_ok(
            Command::new("ip")
                .args(["-n", ns, "addr", "add", &format!("{}/64", self.client_v6)])
                .args(["dev", "tskbr0", "nodad"]),
        );
        // The module is the host's: load it if it can be (it stays loaded; harmless).
        let _ = Command::new("modprobe")
            .arg("br_netfilter")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let netfilter = in_ns(ns, "sysctl")
            .args([
                "-qw",
                "net.bridge.bridge-nf-call-iptables=1",
                "net.bridge.bridge-nf-call-ip6tables=1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        self.wait_reachable();
        netfilter
    }

    /// An IPv4 address whose probes the router answers with `fault`.
    pub fn router_fault_target(&self, fault: RouterFault) -> Ipv4Addr {
        let o = self.client_v4.octets();
        match fault {
            RouterFault::HostUnreach => Ipv4Addr::new(o[0], o[1], o[2], 200),
            RouterFault::AdminProhibited => Ipv4Addr::new(o[0], o[1], o[2], 201),
            // The other half of 198.18.0.0/15: the router has no route there.
            RouterFault::NetUnreach => Ipv4Addr::new(o[0], o[1] ^ 1, o[2], 9),
        }
    }

    /// The router sets TTL / hop limit 1 on TCP to `port` as it arrives, so forwarding
    /// drops it to 0 and the router answers time-exceeded (RFC 792, RFC 4443 §3.3).
    pub fn router_ttl_one(&self, port: u16) {
        self.router_ttl_one_matching(port, "");
    }

    /// [`Lab::router_ttl_one`] for segments that also match the nft expression `extra`
    /// (e.g. `meta length > 100`: only segments carrying data).
    pub fn router_ttl_one_matching(&self, port: u16, extra: &str) {
        let middle = self.middle_ns.as_deref().expect("router lab");
        let script = format!(
            "table inet tsk_router {{\n\
             \x20 chain pre {{ type filter hook prerouting priority -150; policy accept;\n\
             \x20   meta nfproto ipv4 tcp dport {port} {extra} ip ttl set 1\n\
             \x20   meta nfproto ipv6 tcp dport {port} {extra} ip6 hoplimit set 1\n\
             \x20 }}\n\
             }}\n"
        );
        nft_script(middle, &script);
    }

    /// The router's link toward the server gets MTU `mtu`, while both ends keep 1500: the
    /// bottleneck in the middle of a path whose ends each say MSS 1460, so the router
    /// answers a bigger packet with DF by frag-needed / Packet Too Big (RFC 1191, RFC 4443
    /// §3.2). The other way, the server's own link still says 1500: a bigger packet from
    /// the server is dropped without a word where the veth meets the smaller MTU (HEAD
    /// responses are small). Below 1280 Linux turns IPv6 off on a link and drops its
    /// addresses: the lab's IPv6 then stops at the router until a later call with 1280 or
    /// more puts the router's address back. The client's route cache (a PMTU a kernel TCP learned) is
    /// flushed, so every probe starts from the route's MTU.
    pub fn router_server_mtu(&self, mtu: u32) {
        let middle = self.middle_ns.as_deref().expect("router lab");
        run_ok(Command::new("ip").args([
            "-n",
            middle,
            "link",
            "set",
            MIDDLE_SERVER_IF,
            "mtu",
            &mtu.to_string(),
        ]));
        if mtu >= 1280 {
            let v6 = format!("{}/64", self.router_v6(false));
            let has = run_ok(Command::new("ip").args([
                "-n",
                middle,
                "-6",
                "addr",
                "show",
                "dev",
                MIDDLE_SERVER_IF,
            ]));
            if !String::from_utf8_lossy(&has.stdout).contains(&self.router_v6(false).to_string()) {
                run_ok(
                    Command::new("ip")
                        .args(["-n", middle, "addr", "add", &v6, "dev", MIDDLE_SERVER_IF])
                        .arg("nodad"),
                );
            }
            self.wait_reachable();
        }
        self.flush_client_route_cache();
    }

    /// Forget the path MTUs the client's kernel learned (its own TCP does, from the same
    /// ICMP errors that tcpshake reads).
    pub fn flush_client_route_cache(&self) {
        for family in ["-4", "-6"] {
            run_ok(Command::new("ip").args([
                "-n",
                &self.client_ns,
                family,
                "route",
                "flush",
                "cache",
            ]));
        }
    }

    /// The router drops, without a word, every forwarded IPv4 packet longer than `v4`
    /// bytes and IPv6 packet longer than `v6` (IP header included): a PMTU black hole
    /// (RFC 2923 §2.1).
    pub fn router_black_hole(&self, v4: u32, v6: u32) {
        let middle = self.middle_ns.as_deref().expect("router lab");
        let script = format!(
            "table inet tsk_black_hole {{\n\
             \x20 chain black_hole {{ type filter hook forward priority 0; policy accept;\n\
             \x20   meta nfproto ipv4 meta length > {v4} drop\n\
             \x20   meta nfproto ipv6 meta length > {v6} drop\n\
             \x20 }}\n\
             }}\n"
        );
        nft_script(middle, &script);
    }

    fn make_middle(&mut self, middle: &str) {
        for ns in [
            self.client_ns.clone(),
            middle.to_string(),
            self.server_ns.clone(),
        ] {
            run_ok(Command::new("ip").args(["netns", "add", &ns]));
            self.namespaces.push(ns.clone());
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        }
        self.middle_ns = Some(middle.to_string());
    }

    /// Two veth pairs, each created directly inside its two namespaces.
    fn link_through_middle(&self, middle: &str) {
        for (ns, ifname, mid_if) in [
            (&self.client_ns, super::CLIENT_IF, MIDDLE_CLIENT_IF),
            (&self.server_ns, super::SERVER_IF, MIDDLE_SERVER_IF),
        ] {
            veth_pair(ifname, ns, mid_if, middle);
            quiet_ethtool(middle, mid_if);
        }
    }

    /// Addresses and link state of the client (`client`) or server end.
    fn address_side(&self, client: bool, v4: Ipv4Addr, prefix: u8, v6: Ipv6Addr) {
        let (ns, ifname) = if client {
            (&self.client_ns, super::CLIENT_IF)
        } else {
            (&self.server_ns, super::SERVER_IF)
        };
        run_ok(Command::new("ip").args([
            "-n",
            ns,
            "addr",
            "add",
            &format!("{v4}/{prefix}"),
            "dev",
            ifname,
        ]));
        run_ok(
            Command::new("ip")
                .args(["-n", ns, "addr", "add", &format!("{v6}/64"), "dev", ifname])
                .arg("nodad"),
        );
        run_ok(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]));
        quiet_ethtool(ns, ifname);
    }
}

/// Load an nft script in namespace `ns`, panicking with nft's words if it fails.
pub fn nft_script(ns: &str, script: &str) {
    let mut child = in_ns(ns, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nft");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
        .expect("write nft script");
    let out = child.wait_with_output().expect("wait nft");
    assert!(
        out.status.success(),
        "nft in {ns}:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Full checksums on a veth end (see `Lab::build`): kernel-made packets would otherwise
/// cross the middle with checksums left for an offload that never happens.
fn quiet_ethtool(ns: &str, ifname: &str) {
    let _ = in_ns(ns, "ethtool")
        .args(["-K", ifname, "tx", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

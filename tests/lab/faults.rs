//! Faults injected with nftables in the server namespace.
//!
//! All rules live in one table, `inet tsk_fault`, in the server namespace, so they see
//! v4 and v6 alike and vanish with the namespace when the lab drops. `input` filters what
//! reaches the server; `output` filters what the server sends.

use super::{Lab, in_ns};
use std::io::Write;
use std::process::Stdio;

const TABLE: &str = "tsk_fault";

/// What the server's firewall does with a SYN to the faulted port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Silently drop: the client sees no response (nmap: filtered / no-response).
    Drop,
    /// Answer with a TCP RST (nmap: closed / reset).
    TcpReset,
    /// ICMP(v6) port unreachable (nmap: filtered / port-unreach).
    PortUnreachable,
    /// ICMP(v6) administratively prohibited (nmap: filtered / admin-prohibited):
    /// ICMP type 3 code 13 (RFC 1812 §5.2.7.1) or ICMPv6 type 1 code 1 (RFC 4443 §3.1).
    AdminProhibited,
    /// ICMP net unreachable / ICMPv6 no route to destination, type 1 code 0 (nmap:
    /// filtered / net-unreach, and no-route over IPv6).
    NoRoute,
    /// ICMPv6 only: reject route to destination, type 1 code 6 (nmap: filtered /
    /// reject-route); IPv4 segments pass.
    RouteRejected,
    /// ICMPv6 only: source address failed ingress/egress policy, type 1 code 5 (nmap:
    /// filtered / admin-prohibited); IPv4 segments pass.
    PolicyFail,
}

impl Reject {
    fn verdict(self) -> &'static str {
        match self {
            Reject::Drop => "drop",
            Reject::TcpReset => "reject with tcp reset",
            // icmpx picks ICMP for v4 packets and ICMPv6 for v6 packets in an inet table.
            Reject::PortUnreachable => "reject with icmpx type port-unreachable",
            Reject::AdminProhibited => "reject with icmpx type admin-prohibited",
            Reject::NoRoute => "reject with icmpx type no-route",
            // nft matches an ICMPv6 reject to IPv6 packets alone in an inet table.
            Reject::RouteRejected => "reject with icmpv6 type reject-route",
            Reject::PolicyFail => "reject with icmpv6 type policy-fail",
        }
    }
}

/// Which way random loss applies, seen from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Segments the client sends (server input).
    ToServer,
    /// Segments the server sends (server output).
    FromServer,
    Both,
}

impl Lab {
    /// Feeds a script to `nft -f -` in the server namespace.
    fn server_nft(&self, script: &str) {
        let mut child = in_ns(&self.server_ns, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start nft");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .expect("write nft script");
        let out = child.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft failed:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates the fault table with input and output chains (idempotent).
    fn fault_table(&self) {
        self.server_nft(&format!(
            "table inet {TABLE} {{\n\
             \x20 chain input {{ type filter hook input priority 0; policy accept; }}\n\
             \x20 chain output {{ type filter hook output priority 0; policy accept; }}\n\
             }}\n"
        ));
    }

    /// Every SYN (every segment, in fact) to TCP `port` on the server meets `reject`.
    pub fn fault_reject(&self, port: u16, reject: Reject) {
        self.fault_table();
        self.server_nft(&format!(
            "add rule inet {TABLE} input tcp dport {port} {}\n",
            reject.verdict()
        ));
    }

    /// Drops `percent`% of TCP segments at random in `dir`. Only TCP: losing neighbour
    /// discovery or ARP would test the kernel, not tcpshake.
    pub fn fault_loss(&self, percent: u8, dir: Direction) {
        assert!(percent <= 100);
        self.fault_table();
        // numgen's `mod 100 < 100` is out of range for nft; 100 % is a plain drop.
        let random = if percent >= 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        let mut script = String::new();
        if matches!(dir, Direction::ToServer | Direction::Both) {
            script += &format!("add rule inet {TABLE} input meta l4proto tcp {random}drop\n");
        }
        if matches!(dir, Direction::FromServer | Direction::Both) {
            script += &format!("add rule inet {TABLE} output meta l4proto tcp {random}drop\n");
        }
        self.server_nft(&script);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let _ = in_ns(&self.server_ns, "nft")
            .args(["delete", "table", "inet", TABLE])
            .stderr(Stdio::null())
            .status();
    }

    /// The server's fault ruleset as nft prints it, for failure messages.
    pub fn fault_ruleset(&self) -> String {
        let out = in_ns(&self.server_ns, "nft")
            .args(["list", "ruleset"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        out.unwrap_or_default()
    }
}

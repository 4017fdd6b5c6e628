//! The tap's classic BPF filter: which packets the kernel copies to us at all.
//!
//! Surveys and scans rely on it to drop unrelated traffic in the kernel, so it is kept
//! tight; but it must never drop what the parser would deliver to a probe. It runs over a
//! cooked (SOCK_DGRAM) packet, which starts at the IP header, and passes:
//! - IPv4 TCP with a port in `lo..=hi` as source or destination, the ports read after the
//!   header's IHL (options included); every ICMP packet (errors quoting our segments are
//!   matched in user space);
//! - IPv6 TCP with such a port after a walk of the extension-header chain (RFC 8200 §4):
//!   hop-by-hop, routing, destination options, atomic fragments (RFC 6946) and AH are
//!   stepped over, [`MAX_IPV6_EXTENSIONS`] of them; a packet whose chain is longer than
//!   that passes whatever follows it, and the parser (wire/ip.rs) walks it whole and
//!   drops what is not ours — such packets are rare (no more exposure than every ICMPv6
//!   packet's), and a SYN-ACK behind nine headers is still ours to read (Linux reads it).
//!   Every ICMPv6 packet, after the same walk. An unknown next header (UDP, ESP, No Next
//!   Header…) within the walk ends it: dropped.
//! - **Fragments** of TCP datagrams, arriving (not leaving). A later fragment carries no
//!   ports and a tiny first fragment may not carry them whole (RFC 1858), so a fragment
//!   cannot be matched to our port range here; it goes to user space, where `wire::defrag`
//!   reassembles it and the whole datagram is matched like any other. What keeps this
//!   tight: only TCP fragments (IPv4 protocol 6; an IPv6 Fragment header whose Next
//!   Header is TCP, or destination options ahead of it; ICMP fragments pass as ICMP
//!   anyway), and only incoming ones (we never send fragments). Addresses are not checked:
//!   one tap serves every target of a survey or scan, thousands of peers. TCP fragments
//!   are rare on the wire — TCP sets DF and sizes its segments to the path MTU (RFC 8201,
//!   RFC 1191) — so what this lets through that is not ours costs little, and the
//!   reassembler's bounds (16 datagrams, oldest evicted) keep it from costing memory.
//!
//! The program is unrolled (classic BPF has no backward jumps): one block per extension
//! header, each reading the header's length byte to advance X. Labels are resolved here
//! and every jump is checked to fit its 8-bit offset, so a program that would not load
//! cannot be built.

use std::collections::HashMap;
use std::net::IpAddr;
use tcpshake_proto::wire::ip::{
    IPV6_AUTH, IPV6_DEST_OPTS, IPV6_FRAGMENT, IPV6_HEADER_LEN, IPV6_HOP_BY_HOP, IPV6_ROUTING,
    MAX_IPV6_EXTENSIONS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const LSH: u16 = 0x60;
const AND: u16 = 0x50;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;

/// Ancillary loads (SKF_AD_OFF + …): the packet's ethertype and its direction.
const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
pub const SKF_AD_PROTOCOL: u32 = SKF_AD_OFF;
pub const SKF_AD_PKTTYPE: u32 = SKF_AD_OFF + 4;
/// The interface the packet is seen on.
pub const SKF_AD_IFINDEX: u32 = SKF_AD_OFF + 8;
/// 1 when the packet still carries a VLAN tag (taken off by the device, kept in the skb).
pub const SKF_AD_VLAN_TAG_PRESENT: u32 = SKF_AD_OFF + 48;
/// The VLAN tag (TCI) a device took off the packet.
pub const SKF_AD_VLAN_TAG: u32 = SKF_AD_OFF + 44;
/// `sll_pkttype` of a packet addressed to another host (seen by a promiscuous device).
pub const PACKET_OTHERHOST: u32 = 3;
/// `sll_pkttype` of a packet leaving this host.
pub const PACKET_OUTGOING: u32 = 4;
pub const ETH_P_IP: u32 = 0x0800;
pub const ETH_P_IPV6: u32 = 0x86dd;
/// How much of an accepted packet to keep (all of it, up to a 256 KiB GSO packet).
const ACCEPT: u32 = 0x0004_0000;

/// A jump target: the next instruction, or a label.
#[derive(Clone, Debug)]
enum To {
    Next,
    L(String),
}

#[derive(Clone, Debug)]
enum Op {
    Stmt(u16, u32),
    Cond(u16, u32, To, To),
    Always(To),
}

/// A tiny assembler: instructions and labels in, resolved jumps out.
#[derive(Default)]
struct Asm {
    ops: Vec<Op>,
    labels: HashMap<String, usize>,
}

impl Asm {
    fn label(&mut self, name: impl Into<String>) {
        self.labels.insert(name.into(), self.ops.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt(code, k));
    }
    fn cond(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.ops.push(Op::Cond(code, k, jt, jf));
    }
    fn ja(&mut self, to: &str) {
        self.ops.push(Op::Always(To::L(to.into())));
    }

    fn assemble(self) -> Result<Vec<Insn>, String> {
        let offset = |pc: usize, to: &To| -> Result<usize, String> {
            match to {
                To::Next => Ok(0),
                To::L(name) => {
                    let at = *self
                        .labels
                        .get(name)
                        .ok_or_else(|| format!("no label {name}"))?;
                    at.checked_sub(pc + 1)
                        .ok_or_else(|| format!("backward jump to {name}"))
                }
            }
        };
        let short = |n: usize, name: &To| {
            u8::try_from(n).map_err(|_| format!("jump to {name:?} is {n} instructions away"))
        };
        let mut out = Vec::with_capacity(self.ops.len());
        for (pc, op) in self.ops.iter().enumerate() {
            out.push(match op {
                Op::Stmt(code, k) => Insn {
                    code: *code,
                    jt: 0,
                    jf: 0,
                    k: *k,
                },
                Op::Cond(code, k, jt, jf) => Insn {
                    code: *code,
                    jt: short(offset(pc, jt)?, jt)?,
                    jf: short(offset(pc, jf)?, jf)?,
                    k: *k,
                },
                Op::Always(to) => Insn {
                    code: JMP | JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(offset(pc, to)?).map_err(|e| e.to_string())?,
                },
            });
        }
        Ok(out)
    }
}

fn l(name: impl Into<String>) -> To {
    To::L(name.into())
}

/// The filter for TCP ports `lo..=hi` (one port: `lo == hi`). See the module doc.
pub fn range_filter(lo: u16, hi: u16) -> Result<Vec<Insn>, String> {
    let mut a = Asm::default();
    range_body(&mut a, lo, hi);
    a.assemble()
}

/// [`range_filter`] for a tap bound to every interface: what leaves is taken on `oif` alone
/// (where our packets go out: one copy of each); what arrives, only as Linux's IP layer
/// would take it — not another host's frame (`PACKET_OTHERHOST`: a macvlan's on its lower
/// device), not one still tagged for a VLAN (its VLAN device hands it up again) — and on
/// `oif`, or on one of `others` when it is for one of this host's `addrs` (not traffic the
/// host forwards). A reply that comes back on another link than its request left by
/// (asymmetric routing) is then seen, once.
pub fn range_filter_on(
    lo: u16,
    hi: u16,
    oif: u32,
    others: &[u32],
    addrs: &[IpAddr],
) -> Result<Vec<Insn>, String> {
    // Conditional jumps reach 255 instructions: each part ends in its own drop and a
    // trampoline to the body (an unconditional jump reaches anywhere).
    let mut a = Asm::default();
    a.stmt(LD | W | ABS, SKF_AD_PKTTYPE);
    a.cond(JMP | JEQ | K, PACKET_OUTGOING, To::Next, l("arriving"));
    a.stmt(LD | W | ABS, SKF_AD_IFINDEX);
    a.cond(JMP | JEQ | K, oif, l("to_body"), l("drop_here"));
    a.label("arriving");
    a.cond(JMP | JEQ | K, PACKET_OTHERHOST, l("drop_here"), To::Next);
    // A VLAN tag still on: ours only with VLAN id 0 (a priority tag).
    a.stmt(LD | W | ABS, SKF_AD_VLAN_TAG_PRESENT);
    a.cond(JMP | JEQ | K, 0, l("untagged"), To::Next);
    a.stmt(LD | W | ABS, SKF_AD_VLAN_TAG);
    a.stmt(ALU | AND | K, 0x0fff);
    a.cond(JMP | JEQ | K, 0, To::Next, l("drop_here"));
    a.label("untagged");
    a.stmt(LD | W | ABS, SKF_AD_IFINDEX);
    a.cond(JMP | JEQ | K, oif, l("to_body"), To::Next);
    for &x in others {
        a.cond(JMP | JEQ | K, x, l("other"), To::Next);
    }
    a.label("drop_here");
    a.stmt(RET | K, 0);
    a.label("to_body");
    a.ja("body");
    // On another link: for one of our addresses (IPv4 destination at 16, IPv6 at 24).
    a.label("other");
    a.stmt(LD | W | ABS, SKF_AD_PROTOCOL);
    a.cond(JMP | JEQ | K, ETH_P_IP, To::Next, l("other6"));
    a.stmt(LD | W | ABS, 16);
    for addr in addrs {
        if let IpAddr::V4(v4) = addr {
            a.cond(JMP | JEQ | K, u32::from(*v4), l("to_body4"), To::Next);
        }
    }
    a.stmt(RET | K, 0);
    a.label("to_body4");
    a.ja("body");
    a.label("other6");
    for (n, addr) in addrs.iter().enumerate() {
        if let IpAddr::V6(v6) = addr {
            let next = format!("other6_{n}");
            let o = v6.octets();
            for w in 0..4 {
                let word = u32::from_be_bytes([o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]]);
                a.stmt(LD | W | ABS, 24 + 4 * w as u32);
                let hit = if w == 3 { l("to_body6") } else { To::Next };
                a.cond(JMP | JEQ | K, word, hit, l(&next));
            }
            a.label(&next);
        }
    }
    a.stmt(RET | K, 0);
    a.label("to_body6");
    a.ja("body");
    a.label("body");
    range_body(&mut a, lo, hi);
    a.assemble()
}

/// The port filter's instructions, ending in its `accept` and `drop`.
fn range_body(a: &mut Asm, lo: u16, hi: u16) {
    let (lo, hi) = (u32::from(lo), u32::from(hi));
    // Source port in range → accept; else destination port in range → accept; else drop.
    // X holds the offset of the TCP header.
    let ports = |a: &mut Asm, prefix: &str| {
        let dst = format!("{prefix}_dst");
        a.stmt(LD | H | IND, 0);
        a.cond(JMP | JGE | K, lo, To::Next, l(&dst));
        a.cond(JMP | JGT | K, hi, l(&dst), l("accept"));
        a.label(&dst);
        a.stmt(LD | H | IND, 2);
        a.cond(JMP | JGE | K, lo, To::Next, l("drop"));
        a.cond(JMP | JGT | K, hi, l("drop"), l("accept"));
    };

    a.stmt(LD | W | ABS, SKF_AD_PROTOCOL);
    a.cond(JMP | JEQ | K, ETH_P_IP, To::Next, l("v6"));
    // IPv4 (RFC 791 §3.1).
    a.stmt(LD | B | ABS, 9);
    a.cond(JMP | JEQ | K, PROTO_ICMP.into(), l("accept"), To::Next);
    a.cond(JMP | JEQ | K, PROTO_TCP.into(), To::Next, l("drop"));
    a.stmt(LD | H | ABS, 6);
    // MF or a fragment offset: a fragment (RFC 791 §3.2).
    a.cond(JMP | JSET | K, 0x3fff, l("fragment"), To::Next);
    a.stmt(LDX | B | MSH, 0); // X = 4 * IHL
    ports(a, "v4");

    // IPv6 (RFC 8200 §3–4): A = next header, X = where that header starts.
    a.label("v6");
    a.cond(JMP | JEQ | K, ETH_P_IPV6, To::Next, l("drop"));
    a.stmt(LD | B | ABS, 6);
    a.stmt(LDX | IMM, IPV6_HEADER_LEN as u32);
    for i in 0..MAX_IPV6_EXTENSIONS {
        let (ext, frag, len) = (format!("ext{i}"), format!("frag{i}"), format!("len{i}"));
        a.cond(JMP | JEQ | K, PROTO_TCP.into(), l("tcp6"), To::Next);
        a.cond(JMP | JEQ | K, PROTO_ICMPV6.into(), l("accept"), To::Next);
        a.cond(JMP | JEQ | K, IPV6_FRAGMENT.into(), l(&frag), To::Next);
        a.cond(JMP | JEQ | K, IPV6_HOP_BY_HOP.into(), l(&ext), To::Next);
        a.cond(JMP | JEQ | K, IPV6_ROUTING.into(), l(&ext), To::Next);
        a.cond(JMP | JEQ | K, IPV6_DEST_OPTS.into(), l(&ext), To::Next);
        a.cond(JMP | JEQ | K, IPV6_AUTH.into(), To::Next, l("drop"));
        // AH (RFC 4302 §2.2): length in 4-octet units, minus 2.
        a.stmt(LD | B | IND, 1);
        a.stmt(ALU | ADD | K, 2);
        a.stmt(ALU | LSH | K, 2);
        a.ja(&len);
        // Hop-by-hop, routing, destination options: 8-octet units, not counting the first.
        a.label(&ext);
        a.stmt(LD | B | IND, 1);
        a.stmt(ALU | ADD | K, 1);
        a.stmt(ALU | LSH | K, 3);
        a.ja(&len);
        // Fragment header (8 bytes): offset or M set is a real fragment; else atomic
        // (RFC 6946), stepped over like any header.
        a.label(&frag);
        a.stmt(LD | H | IND, 2);
        a.cond(JMP | JSET | K, 0xfff9, l("fragment6"), To::Next);
        a.stmt(LD | IMM, 8);
        // X += A; A = the next header (read at the old X).
        a.label(&len);
        a.stmt(ALU | ADD | X, 0);
        a.stmt(ST, 0);
        a.stmt(LD | B | IND, 0);
        a.stmt(LDX | MEM, 0);
    }
    // After the unrolled walk: the upper layer, or a longer chain, which the parser walks.
    a.cond(JMP | JEQ | K, PROTO_TCP.into(), l("tcp6"), To::Next);
    a.cond(JMP | JEQ | K, PROTO_ICMPV6.into(), l("accept"), To::Next);
    for ext in [
        IPV6_HOP_BY_HOP,
        IPV6_ROUTING,
        IPV6_DEST_OPTS,
        IPV6_FRAGMENT,
        IPV6_AUTH,
    ] {
        a.cond(JMP | JEQ | K, ext.into(), l("accept"), To::Next);
    }
    a.ja("drop");

    a.label("tcp6");
    ports(a, "v6");

    // X at the Fragment header: its Next Header opens the fragmentable part.
    a.label("fragment6");
    a.stmt(LD | B | IND, 0);
    a.cond(JMP | JEQ | K, PROTO_TCP.into(), l("fragment"), To::Next);
    a.cond(
        JMP | JEQ | K,
        IPV6_DEST_OPTS.into(),
        l("fragment"),
        To::Next,
    );
    a.cond(JMP | JEQ | K, PROTO_ICMPV6.into(), l("fragment"), l("drop"));

    // A fragment: arriving ones only.
    a.label("fragment");
    a.stmt(LD | W | ABS, SKF_AD_PKTTYPE);
    a.cond(JMP | JEQ | K, PACKET_OUTGOING, l("drop"), l("accept"));

    a.label("accept");
    a.stmt(RET | K, ACCEPT);
    a.label("drop");
    a.stmt(RET | K, 0);
}

#[cfg(test)]
mod tests;

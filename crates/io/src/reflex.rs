//! The handshake's ACK from the kernel: a program at the interface's ingress (TCX) that
//! answers a survey probe's SYN-ACK with the segment our TCP would send (the ACK, with the
//! request when it rides on it), in the softirq that received it — where Linux's own TCP
//! answers from — instead of after our loop wakes up, reads its ring and sends.
//!
//! Why: a user-space loop on a busy machine loses its CPU now and then (timer ticks, the
//! server, tcpdump); a SYN-ACK that comes meanwhile waits. Our median reaction was near
//! the kernel's, its p99 ~10× the kernel's median, the same as a program that does nothing
//! but answer (issue 15; README "Reaction time"). The kernel's answer waits for none of it.
//!
//! What stays ours: the policy. The pure TCP decides the segment before the SYN goes out
//! ([`tcpshake_proto::tcp::HandshakeAck`]: the sequence number, the window with and
//! without an agreed scale, its TSval, the request) and the survey loop writes that into
//! this module's tables: each local port's slot, each slot's entry. The program only fills
//! in what the SYN-ACK says (its sequence number + 1, its TSval to echo, whether it agreed
//! to window scaling and timestamps) — after checking that the SYN-ACK is exactly the one
//! our TCP would accept and answer so: IPv4 without options or fragments (header checksum
//! right) or IPv6 without extension headers, flags SYN|ACK and nothing else, no data, the
//! entry's 4-tuple, acknowledging our ISN + 1 (RFC 9293 §3.10.7.3: anything else needs a
//! RST or a look by our TCP), a TSecr of 0 or our SYN's TSval (our TCP refuses others,
//! RFC 7323 §5.3 as Linux reads it), its options well formed, its checksum right, the
//! request within its MSS and window. Any doubt, and the packet goes on to user space
//! untouched, which answers as before. reflex_tests.rs holds it to that: its output
//! equals our TCP's, byte for byte, or it passes.
//!
//! Each entry is answered at most once: the program claims it (ARMED → FIRED) with a
//! compare-and-exchange before it sends, and the loop, before it sends its own segment,
//! claims it the other way (ARMED → DISARMED): exactly one of the two sends. A
//! generation count in the state word keeps an entry re-armed for the port's next probe
//! from being mistaken for the one a late SYN-ACK was checked against.
//!
//! The ACK is the SYN-ACK rewritten in place (addresses, ports and MACs swapped, the
//! length changed) and sent out of the interface it came in (`bpf_redirect`), so it
//! leaves as Linux's would: the same link, the next hop's MAC, our socket mark; the tap
//! sees it leave with a kernel timestamp like any segment of ours. IPv6 needs one thing
//! no system call tells: the flow label the kernel put on our raw socket's segments; a
//! second program, at the egress, reads it off our SYN as it leaves. Its checksum is
//! complete, except when the SYN-ACK itself came with the TCP checksum left to offload
//! (a server on this host, over veth or loopback: the kernel marks such packets
//! CHECKSUM_PARTIAL, and the mark stays on the buffer we rewrite), where it carries the
//! pseudo-header sum as every kernel segment on that link does, so a forwarder that
//! completes it gets it right — read so only on interfaces a local sender can be behind
//! ([`IpFields::offload`]).
//!
//! What the ingress runs is a [`dispatcher`] that jumps to its family's program, each
//! verified only when a probe of that family first needs it ([`Setup`]): attaching waits
//! out an RCU grace period, so the attachment sleeps through it while the program is
//! verified, and the other family's program needs no second attachment to the ingress
//! (IPv6's egress program still needs its own, one more grace period).

use super::ebpf::{
    self, Alu, Asm, Insn, Jmp, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, SharedArray, Size,
};
use super::teardown;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use tcpshake_proto::tcp::HandshakeAck;
use tcpshake_proto::wire::checksum;

/// Most bytes of data that ride on the ACK (a request, a ClientHello); more goes from
/// user space.
pub const MAX_PAYLOAD: usize = 1024;
/// Bytes per entry: the fields, then the payload (a multiple of 8, the array's stride).
const ENTRY: usize = 72 + MAX_PAYLOAD;

// An entry's state word: a generation above two bits of phase.
const IDLE: u32 = 0;
const ARMED: u32 = 1;
const FIRED: u32 = 2;
const DISARMED: u32 = 3;
const PHASE: u32 = 3;

// Entry layout (byte offsets; multi-byte fields in network order unless said).
const E_STATE: i16 = 0;
const E_FAMILY: i16 = 4;
const E_FLAGS: i16 = 5;
const E_TTL: i16 = 6;
const E_REMOTE_PORT: i16 = 8;
const E_IDENT: i16 = 10;
const E_EXPECT_ACK: i16 = 12;
const E_WIN_SCALED: i16 = 16;
const E_WIN_UNSCALED: i16 = 18;
const E_TSVAL: i16 = 20;
/// Host order: the socket mark our other segments carry (the guard lets them pass).
const E_MARK: i16 = 24;
const E_LOCAL_PORT: i16 = 28;
/// Host order: the payload's length.
const E_PLEN: i16 = 30;
const E_REMOTE: i16 = 32;
const E_LOCAL: i16 = 48;
/// Host order: the payload's one's-complement sum, folded to 16 bits as it lies in
/// memory (so the program need not read the payload to checksum it).
const E_PSUM: i16 = 64;
/// IPv6: the first word of our segments' header, learned from our SYN (0: not yet).
const E_FLOW: i16 = 68;
const E_PAYLOAD: i32 = 72;

const FLAG_TS: i32 = 1;
const FLAG_WS: i32 = 2;
/// The SYN-ACK may come with its checksum left to offload (a virtual interface).
const FLAG_OFFLOAD: i32 = 4;

// __sk_buff fields (include/uapi/linux/bpf.h).
const SKB_PKT_TYPE: i16 = 4;
const SKB_MARK: i16 = 8;
const SKB_PROTOCOL: i16 = 16;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_IFINDEX: i16 = 40;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_TSTAMP: i16 = 152;

// Helpers.
const MAP_LOOKUP_ELEM: i32 = 1;
const SKB_STORE_BYTES: i32 = 9;
const TAIL_CALL: i32 = 12;
const REDIRECT: i32 = 23;
const SKB_CHANGE_TAIL: i32 = 38;

/// The dispatcher's program array: IPv4's program, IPv6's.
const JUMP_V4: u32 = 0;
const JUMP_V6: u32 = 1;

/// TCX verdicts: let the next program (or the stack) have it; dropped.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

/// Options walked in the SYN-ACK before giving up on it (Linux's SYN-ACK has 5–9; a
/// longer list goes to user space).
const MAX_OPTIONS: usize = 16;
/// Without the option the MSS is our TCP's default for the family (`tcp::default_mss`:
/// 536, IPv6 1220, RFC 9293 §3.7.1 MUST-15): what the program sends is what our TCP
/// would, and ours would cut a longer request. Below TCP_MIN_SND_MSS (48) our TCP notes an
/// anomaly: user space's.
const MIN_MSS: i32 = 48;

/// EtherTypes as a halfword load from the packet reads them (the packet's bytes are in
/// network order, the load is the host's: 0x0008 for IPv4 on x86).
const ETH_IPV4: i32 = u16::from_ne_bytes(0x0800u16.to_be_bytes()) as i32;
const ETH_IPV6: i32 = u16::from_ne_bytes(0x86ddu16.to_be_bytes()) as i32;

/// Where the IP header starts in a frame (after Ethernet's).
const IP: i16 = 14;

// Stack slots (below R10).
const S_KEY: i16 = -4;
const S_TS_AT: i16 = -8;
const S_WS_SEEN: i16 = -12;
const S_TSECR: i16 = -16;
const S_WINDOW: i16 = -20;
const S_PSEUDO: i16 = -24;
const S_SEQ: i16 = -28;
const S_ACK: i16 = -32;
const S_PARTIAL: i16 = -36;
const S_MSS: i16 = -40;
/// The ACK's headers: 54 bytes, 66 with timestamps.
const S_HDR: i16 = -48;
const S_PLEN: i16 = -52;
const S_STATE: i16 = -56;

/// Fold a one's-complement sum of 32-bit words in `r` (64 bits wide, so no carry was
/// lost) to 16 bits, as they lie in memory (`t` is clobbered).
fn fold(a: &mut Asm, r: u8, t: u8) {
    for _ in 0..2 {
        a.mov(t, r);
        a.alu_imm(Alu::Rsh, t, 32);
        a.alu_imm(Alu::Lsh, r, 32);
        a.alu_imm(Alu::Rsh, r, 32);
        a.alu(Alu::Add, r, t);
    }
    for _ in 0..2 {
        a.mov(t, r);
        a.alu_imm(Alu::Rsh, t, 16);
        a.alu_imm(Alu::And, r, 0xffff);
        a.alu(Alu::Add, r, t);
    }
}

/// `acc += *(u32 *)(ptr + off)` for each offset (`t` is clobbered).
fn add_words(a: &mut Asm, acc: u8, ptr: u8, offs: impl IntoIterator<Item = i16>, t: u8) {
    for off in offs {
        a.load(Size::W, t, ptr, off);
        a.alu(Alu::Add, acc, t);
    }
}

/// Reload the frame's start and end into `data`/`end` from the context (R6) and check
/// that it holds `need` bytes, or go to `fail`.
fn frame(a: &mut Asm, data: u8, end: u8, need: i32, fail: &str) {
    a.load(Size::W, data, R6, SKB_DATA);
    a.load(Size::W, end, R6, SKB_DATA_END);
    a.mov(R4, data);
    a.alu_imm(Alu::Add, R4, need);
    a.jump(Jmp::Gt, R4, end, fail);
}

/// `R0` = the value at index `*(u32 *)(R10 + S_KEY)` of map `fd` (or 0).
fn lookup(a: &mut Asm, fd: i32) {
    a.load_map(R1, fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, i32::from(S_KEY));
    a.call(MAP_LOOKUP_ELEM);
}

/// The tables the program reads: `ports` maps each local port from `first_port` on
/// (`entries` of them) to its slot + 1 in `slots` (`slot_count` entries), 0 for none.
#[derive(Clone, Copy)]
pub struct Tables {
    pub ports_fd: i32,
    pub slots_fd: i32,
    pub first_port: u16,
    pub entries: u32,
    pub slot_count: u32,
}

/// R8 = the entry of local port `*(u16 *)(R2 + port_at)` (network order) if it is
/// armed for `family`, R9 its state word; else to "pass". Takes R0–R5.
fn entry_of(a: &mut Asm, t: Tables, port_at: i16, family: i32) {
    a.load(Size::H, R4, R2, port_at);
    a.to_be(R4, 16);
    a.alu_imm(Alu::Sub, R4, i32::from(t.first_port));
    a.jump_imm(Jmp::Ge, R4, t.entries as i32, "pass");
    a.store(Size::W, R10, S_KEY, R4);
    lookup(a, t.ports_fd);
    a.jump_imm(Jmp::Eq, R0, 0, "pass");
    a.load(Size::W, R4, R0, 0);
    a.jump_imm(Jmp::Eq, R4, 0, "pass");
    a.alu_imm(Alu::Sub, R4, 1);
    a.jump_imm(Jmp::Ge, R4, t.slot_count as i32, "pass");
    a.store(Size::W, R10, S_KEY, R4);
    lookup(a, t.slots_fd);
    a.jump_imm(Jmp::Eq, R0, 0, "pass");
    a.mov(R8, R0);
    // The state word read as an acquire: the loop writes the fields, then ARMED with a
    // release store (`Reflex::arm`), and a plain load here would let a CPU that reorders
    // loads (arm64; x86 does not) read fields older than the state it saw — another
    // probe's, which the claim's compare-and-exchange would not catch (same state).
    // BPF's load-acquire needs Linux 6.15; a fetch-or of 0 is ordered on every JIT.
    a.mov_imm(R9, 0);
    a.fetch_or32(R8, E_STATE, R9);
    a.mov(R4, R9);
    a.alu_imm(Alu::And, R4, PHASE as i32);
    a.jump_imm(Jmp::Ne, R4, ARMED as i32, "pass");
    a.load(Size::B, R4, R8, E_FAMILY);
    a.jump_imm(Jmp::Ne, R4, family, "pass");
}

/// Where the IP header's fields are, by family.
#[derive(Clone, Copy)]
struct Family {
    v6: bool,
}

impl Family {
    fn ip_len(self) -> i16 {
        if self.v6 { 40 } else { 20 }
    }
    fn tcp(self) -> i16 {
        IP + self.ip_len()
    }
    fn opts(self) -> i32 {
        i32::from(self.tcp()) + 20
    }
    /// Source and destination address: offset and length in 32-bit words.
    fn addrs(self) -> (i16, i16, i16) {
        if self.v6 {
            (IP + 8, IP + 24, 4)
        } else {
            (IP + 12, IP + 16, 1)
        }
    }
    fn label(self, name: &str) -> String {
        format!("{}_{name}", if self.v6 { "v6" } else { "v4" })
    }
    /// The pseudo header's length and protocol word(s), as they lie in memory, for a
    /// TCP length in R4 (host order, taken): into `S_PSEUDO`.
    fn pseudo_word(self, a: &mut Asm) {
        a.to_be(R4, 16);
        a.alu_imm(Alu::Lsh, R4, 16);
        // IPv4: zero, protocol, length (RFC 9293 §3.1); IPv6: the 32-bit length, then
        // three zero bytes and the next header (RFC 8200 §8.1): summed, the same words.
        a.alu_imm(Alu::Add, R4, if self.v6 { 0x0600_0000 } else { 0x0600 });
        a.store(Size::W, R10, S_PSEUDO, R4);
    }
    /// R0 = the pseudo header's sum, unfolded, for the frame at `pkt` (its addresses and
    /// `S_PSEUDO`), R4 taken: the SYN-ACK's check and our segment's checksum add the same
    /// words (the addresses swapped between them, which the sum does not see).
    fn pseudo_sum(self, a: &mut Asm, pkt: u8) {
        let (src, dst, words) = self.addrs();
        a.mov_imm(R0, 0);
        add_words(
            a,
            R0,
            pkt,
            (0..words).flat_map(|w| [src + 4 * w, dst + 4 * w]),
            R4,
        );
        add_words(a, R0, R10, [S_PSEUDO], R4);
    }
}

/// The program, for `t`'s tables: IPv4 (or, `v6`, IPv6) SYN-ACKs at an interface's
/// ingress. One per family: each is verified (~10 ms) beside the other.
pub fn program(t: Tables, v6: bool) -> Result<Vec<Insn>, String> {
    let mut a = Asm::default();
    a.mov(R6, R1);
    // Only frames for this host, without a VLAN tag the stack took off.
    a.load(Size::W, R4, R6, SKB_PKT_TYPE);
    a.jump_imm(Jmp::Ne, R4, 0, "pass");
    a.load(Size::W, R4, R6, SKB_VLAN_PRESENT);
    a.jump_imm(Jmp::Ne, R4, 0, "pass");
    frame(&mut a, R2, R3, i32::from(IP), "pass");
    a.load(Size::H, R4, R2, 12);
    a.jump_imm(Jmp::Ne, R4, if v6 { ETH_IPV6 } else { ETH_IPV4 }, "pass");
    answer(&mut a, t, Family { v6 });

    // Claim the entry (one compare-and-exchange: the loop claims it the other way before
    // it sends its own segment), only now that the segment is made: a claim is a send.
    a.label("send");
    a.load(Size::W, R9, R10, S_STATE);
    a.mov(R0, R9);
    a.mov(R1, R9);
    a.alu_imm(Alu::Add, R1, (FIRED - ARMED) as i32);
    a.cmpxchg32(R8, E_STATE, R1);
    a.jump(Jmp::Ne, R0, R9, "unsent");
    a.load(Size::W, R4, R8, E_MARK);
    a.store(Size::W, R6, SKB_MARK, R4);
    // An arrival time is no departure time (fq would read it as one).
    a.mov_imm(R4, 0);
    a.store(Size::Dw, R6, SKB_TSTAMP, R4);
    a.load(Size::W, R1, R6, SKB_IFINDEX);
    a.mov_imm(R2, 0);
    a.call(REDIRECT);
    a.exit();

    // The frame could not be made, or the loop claimed the entry meanwhile: the entry is
    // the loop's, which answers from the tap's copy of the SYN-ACK (taken before this
    // hook), and this half-rewritten one goes nowhere (our TCP's segments never reach the
    // kernel's TCP anyway: the guard keeps them from it).
    a.label("unsent");
    a.mov_imm(R0, TCX_DROP);
    a.exit();

    a.label("pass");
    a.mov_imm(R0, TCX_NEXT);
    a.exit();
    a.finish()
}

/// One family's way from its SYN-ACK to "send" (or "pass", "unsent").
fn answer(a: &mut Asm, t: Tables, f: Family) {
    let l = |name: &str| f.label(name);
    let (tcp, opts) = (f.tcp(), f.opts());
    frame(a, R2, R3, opts, "pass");
    if f.v6 {
        // Version 6, TCP right behind the header (no extension header).
        a.load(Size::B, R4, R2, IP);
        a.alu_imm(Alu::And, R4, 0xf0);
        a.jump_imm(Jmp::Ne, R4, 0x60, "pass");
        a.load(Size::B, R4, R2, IP + 6);
        a.jump_imm(Jmp::Ne, R4, 6, "pass");
    } else {
        a.load(Size::B, R4, R2, IP);
        a.jump_imm(Jmp::Ne, R4, 0x45, "pass");
        a.load(Size::B, R4, R2, IP + 9);
        a.jump_imm(Jmp::Ne, R4, 6, "pass");
        // Neither MF nor a fragment offset.
        a.load(Size::H, R4, R2, IP + 6);
        a.alu_imm(Alu::And, R4, 0xff3f);
        a.jump_imm(Jmp::Ne, R4, 0, "pass");
        // Its header checksum (RFC 791): the IP layer, after us, would drop it, and our
        // TCP never sees it (wire/ip.rs).
        a.mov_imm(R0, 0);
        add_words(a, R0, R2, (0..5).map(|w| IP + 4 * w), R4);
        fold(a, R0, R5);
        a.jump_imm(Jmp::Ne, R0, 0xffff, "pass");
    }
    // SYN|ACK, nothing else (no ECE/CWR, URG, PSH, RST, FIN).
    a.load(Size::B, R4, R2, tcp + 13);
    a.jump_imm(Jmp::Ne, R4, 0x12, "pass");
    // R7 = TCP header length; the datagram is the headers, nothing more.
    a.load(Size::B, R7, R2, tcp + 12);
    a.alu_imm(Alu::Rsh, R7, 4);
    a.alu_imm(Alu::Lsh, R7, 2);
    a.jump_imm(Jmp::Lt, R7, 20, "pass");
    a.load(Size::H, R4, R2, IP + if f.v6 { 4 } else { 2 });
    a.to_be(R4, 16);
    a.mov(R5, R7);
    if !f.v6 {
        a.alu_imm(Alu::Add, R5, 20);
    }
    a.jump(Jmp::Ne, R4, R5, "pass");
    entry_of(a, t, tcp + 2, if f.v6 { 6 } else { 4 });
    if f.v6 {
        // The first word of our segments' IPv6 header (their flow label), seen on our SYN
        // as it left (`egress_program`): without it, not ours to answer.
        a.load(Size::W, R4, R8, E_FLOW);
        a.jump_imm(Jmp::Eq, R4, 0, "pass");
    }
    // The calls took R2/R3: the frame again.
    frame(a, R2, R3, opts, "pass");
    let (src, dst, words) = f.addrs();
    for w in 0..words {
        for (pkt, entry) in [(src, E_REMOTE), (dst, E_LOCAL)] {
            a.load(Size::W, R4, R2, pkt + 4 * w);
            a.load(Size::W, R5, R8, entry + 4 * w);
            a.jump(Jmp::Ne, R4, R5, "pass");
        }
    }
    for (pkt, entry, size) in [
        (tcp, E_REMOTE_PORT, Size::H),
        (tcp + 2, E_LOCAL_PORT, Size::H),
        (tcp + 8, E_EXPECT_ACK, Size::W),
    ] {
        a.load(size, R4, R2, pkt);
        a.load(size, R5, R8, entry);
        a.jump(Jmp::Ne, R4, R5, "pass");
    }

    // The options (RFC 9293 §3.2), as Linux's tcp_parse_options reads them: where a
    // Timestamps option is (its offset + 1; 0: none), whether Window Scale came, the MSS.
    // Anything malformed goes to user space. R1 = offset in the options, R0 = their
    // length, R4 = the option, R5 = its length.
    a.store_imm(Size::W, R10, S_TS_AT, 0);
    a.store_imm(Size::W, R10, S_WS_SEEN, 0);
    a.store_imm(
        Size::W,
        R10,
        S_MSS,
        i32::from(tcpshake_proto::tcp::default_mss(f.v6)),
    );
    a.mov_imm(R1, 0);
    for i in 0..MAX_OPTIONS {
        let next = l(&format!("opt{}", i + 1));
        a.mov(R0, R7);
        a.alu_imm(Alu::Sub, R0, 20);
        a.jump(Jmp::Ge, R1, R0, &l("options_done"));
        // The verifier walks every path through this unrolled loop; with the offset a
        // known number on each, no two paths look alike and it walks them all the way
        // down (150 ms to load). OR-ing in a zero it cannot know (the protocol byte,
        // checked to be 6, less 6) leaves it a range, the same at every turn, and it
        // prunes.
        a.load(Size::B, R0, R2, IP + if f.v6 { 6 } else { 9 });
        a.alu_imm(Alu::Xor, R0, 6);
        a.alu(Alu::Or, R1, R0);
        a.alu_imm(Alu::And, R1, 63);
        a.mov(R4, R2);
        a.alu_imm(Alu::Add, R4, opts);
        a.alu(Alu::Add, R4, R1);
        a.mov(R5, R4);
        a.alu_imm(Alu::Add, R5, 1);
        a.jump(Jmp::Gt, R5, R3, "pass");
        a.load(Size::B, R5, R4, 0);
        a.jump_imm(Jmp::Eq, R5, 0, &l("options_done"));
        let not_nop = l(&format!("not_nop{i}"));
        a.jump_imm(Jmp::Ne, R5, 1, &not_nop);
        a.alu_imm(Alu::Add, R1, 1);
        a.goto(&next);
        a.label(&not_nop);
        a.mov(R0, R5);
        a.mov(R5, R4);
        a.alu_imm(Alu::Add, R5, 2);
        a.jump(Jmp::Gt, R5, R3, "pass");
        a.load(Size::B, R5, R4, 1);
        a.jump_imm(Jmp::Lt, R5, 2, "pass");
        let not_ts = l(&format!("not_ts{i}"));
        let not_ws = l(&format!("not_ws{i}"));
        let step = l(&format!("step{i}"));
        a.jump_imm(Jmp::Ne, R0, 8, &not_ts);
        a.jump_imm(Jmp::Ne, R5, 10, "pass");
        a.mov(R0, R1);
        a.alu_imm(Alu::Add, R0, 1);
        a.store(Size::W, R10, S_TS_AT, R0);
        a.goto(&step);
        a.label(&not_ts);
        a.jump_imm(Jmp::Ne, R0, 3, &not_ws);
        a.jump_imm(Jmp::Ne, R5, 3, "pass");
        a.store_imm(Size::W, R10, S_WS_SEEN, 1);
        a.goto(&step);
        a.label(&not_ws);
        a.jump_imm(Jmp::Ne, R0, 2, &step);
        a.jump_imm(Jmp::Ne, R5, 4, "pass");
        a.mov(R0, R4);
        a.alu_imm(Alu::Add, R0, 4);
        a.jump(Jmp::Gt, R0, R3, "pass");
        a.load(Size::H, R0, R4, 2);
        a.to_be(R0, 16);
        a.jump_imm(Jmp::Lt, R0, MIN_MSS, "pass");
        a.store(Size::W, R10, S_MSS, R0);
        a.label(&step);
        a.alu(Alu::Add, R1, R5);
        a.mov(R0, R7);
        a.alu_imm(Alu::Sub, R0, 20);
        a.jump(Jmp::Gt, R1, R0, "pass");
        a.label(&next);
    }
    // Still options after MAX_OPTIONS: not for us.
    a.mov(R0, R7);
    a.alu_imm(Alu::Sub, R0, 20);
    a.jump(Jmp::Lt, R1, R0, "pass");
    a.label(&l("options_done"));
    // What the walk found, made ranges as above: the paths through it (timestamps or
    // not, window scale or not, an MSS or the default) then look alike to the verifier
    // from here on, and it walks the rest once, not once per combination.
    a.load(Size::B, R0, R2, IP + if f.v6 { 6 } else { 9 });
    a.alu_imm(Alu::Xor, R0, 6);
    for slot in [S_TS_AT, S_WS_SEEN, S_MSS] {
        a.load(Size::W, R4, R10, slot);
        a.alu(Alu::Or, R4, R0);
        a.store(Size::W, R10, slot, R4);
    }

    // Timestamps only when both sides offered them (RFC 7323 §3.2): then the peer's
    // TSval is our TSecr; keep it before the frame is cut.
    a.store_imm(Size::W, R10, S_HDR, opts);
    a.load(Size::B, R4, R8, E_FLAGS);
    a.alu_imm(Alu::And, R4, FLAG_TS);
    a.jump_imm(Jmp::Eq, R4, 0, &l("no_ts"));
    a.load(Size::W, R1, R10, S_TS_AT);
    a.jump_imm(Jmp::Eq, R1, 0, &l("no_ts"));
    a.alu_imm(Alu::Sub, R1, 1);
    a.alu_imm(Alu::And, R1, 63);
    a.mov(R4, R2);
    a.alu_imm(Alu::Add, R4, opts);
    a.alu(Alu::Add, R4, R1);
    a.mov(R5, R4);
    a.alu_imm(Alu::Add, R5, 10);
    a.jump(Jmp::Gt, R5, R3, "pass");
    // Its TSecr echoes our SYN's TSval, or is 0: our TCP refuses any other (Linux's
    // PAWSACTIVEREJECTED: not within [our first TSval, now]) with a RST.
    a.load(Size::W, R0, R4, 6);
    a.jump_imm(Jmp::Eq, R0, 0, &l("tsecr_ok"));
    a.load(Size::W, R1, R8, E_TSVAL);
    a.jump(Jmp::Ne, R0, R1, "pass");
    a.label(&l("tsecr_ok"));
    a.load(Size::W, R5, R4, 2);
    a.store(Size::W, R10, S_TSECR, R5);
    a.store_imm(Size::W, R10, S_HDR, opts + 12);
    a.label(&l("no_ts"));
    // The window: scaled when both sides offered Window Scale (RFC 7323 §2.2).
    a.load(Size::H, R5, R8, E_WIN_UNSCALED);
    a.load(Size::B, R4, R8, E_FLAGS);
    a.alu_imm(Alu::And, R4, FLAG_WS);
    a.jump_imm(Jmp::Eq, R4, 0, &l("window_known"));
    a.load(Size::W, R4, R10, S_WS_SEEN);
    a.jump_imm(Jmp::Eq, R4, 0, &l("window_known"));
    a.load(Size::H, R5, R8, E_WIN_SCALED);
    a.label(&l("window_known"));
    a.store(Size::W, R10, S_WINDOW, R5);
    a.load(Size::W, R4, R2, tcp + 4);
    a.store(Size::W, R10, S_SEQ, R4);
    a.load(Size::W, R4, R2, tcp + 8);
    a.store(Size::W, R10, S_ACK, R4);

    // Data riding on the ACK must fit one segment as the SYN-ACK bounds it: its MSS less
    // our options, and its window (a SYN's window is never scaled, RFC 7323 §2.2).
    a.load(Size::H, R4, R8, E_PLEN);
    a.jump_imm(Jmp::Gt, R4, MAX_PAYLOAD as i32, "pass");
    a.store(Size::W, R10, S_PLEN, R4);
    a.jump_imm(Jmp::Eq, R4, 0, &l("fits"));
    a.load(Size::W, R5, R10, S_HDR);
    a.alu(Alu::Add, R5, R4);
    a.alu_imm(Alu::Sub, R5, opts);
    a.load(Size::W, R0, R10, S_MSS);
    a.jump(Jmp::Gt, R5, R0, "pass");
    a.load(Size::H, R5, R2, tcp + 14);
    a.to_be(R5, 16);
    a.jump(Jmp::Gt, R4, R5, "pass");
    a.label(&l("fits"));

    // Its checksum: complete and right, or the pseudo-header sum that a sender leaving
    // the sum to offload writes (CHECKSUM_PARTIAL, a server on this host); else not ours.
    a.mov(R4, R7);
    f.pseudo_word(a);
    a.store_imm(Size::W, R10, S_PARTIAL, 0);
    f.pseudo_sum(a, R2);
    // R1: the pseudo header's sum, for the offload case.
    a.mov(R1, R0);
    add_words(a, R0, R2, (0..5).map(|w| tcp + 4 * w), R4);
    for w in 5..15i16 {
        a.jump_imm(Jmp::Le, R7, i32::from(4 * w), &l("summed"));
        a.mov(R4, R2);
        a.alu_imm(Alu::Add, R4, i32::from(tcp + 4 * w + 4));
        a.jump(Jmp::Gt, R4, R3, "pass");
        add_words(a, R0, R2, [tcp + 4 * w], R4);
    }
    a.label(&l("summed"));
    fold(a, R0, R5);
    a.jump_imm(Jmp::Eq, R0, 0xffff, &l("checksum_known"));
    // Only from an interface a sender on this host can be behind (veth, loopback): off
    // the wire, that value is a bad checksum, which our TCP ignores.
    a.load(Size::B, R4, R8, E_FLAGS);
    a.alu_imm(Alu::And, R4, FLAG_OFFLOAD);
    a.jump_imm(Jmp::Eq, R4, 0, "pass");
    fold(a, R1, R5);
    a.load(Size::H, R4, R2, tcp + 16);
    a.jump(Jmp::Ne, R4, R1, "pass");
    a.store_imm(Size::W, R10, S_PARTIAL, 1);
    a.label(&l("checksum_known"));

    // The state the entry was armed with, for the claim when the segment is made.
    a.store(Size::W, R10, S_STATE, R9);

    // The frame to the segment's length: headers and data.
    a.load(Size::W, R2, R10, S_HDR);
    a.load(Size::W, R4, R10, S_PLEN);
    a.alu(Alu::Add, R2, R4);
    a.mov(R1, R6);
    a.mov_imm(R3, 0);
    a.call(SKB_CHANGE_TAIL);
    a.jump_imm(Jmp::Ne, R0, 0, "unsent");
    a.load(Size::W, R4, R10, S_PLEN);
    a.jump_imm(Jmp::Eq, R4, 0, &l("stored"));
    a.jump_imm(Jmp::Gt, R4, MAX_PAYLOAD as i32, "unsent");
    a.load(Size::W, R2, R10, S_HDR);
    a.mov(R1, R6);
    a.mov(R3, R8);
    a.alu_imm(Alu::Add, R3, E_PAYLOAD);
    a.mov_imm(R5, 0);
    a.call(SKB_STORE_BYTES);
    a.jump_imm(Jmp::Ne, R0, 0, "unsent");
    a.label(&l("stored"));
    frame(a, R7, R9, opts, "unsent");

    // Ethernet: back to where it came from.
    a.load(Size::W, R1, R7, 0);
    a.load(Size::H, R2, R7, 4);
    a.load(Size::W, R3, R7, 6);
    a.load(Size::H, R4, R7, 10);
    a.store(Size::W, R7, 0, R3);
    a.store(Size::H, R7, 4, R4);
    a.store(Size::W, R7, 6, R1);
    a.store(Size::H, R7, 10, R2);
    // R4 = the length after the IP header: TCP's header and data.
    a.load(Size::W, R4, R10, S_HDR);
    a.load(Size::W, R5, R10, S_PLEN);
    a.alu(Alu::Add, R4, R5);
    a.alu_imm(Alu::Sub, R4, i32::from(tcp));
    if f.v6 {
        // IPv6 (RFC 8200): our segments' first word (version, traffic class, flow
        // label), the payload length, TCP, our hop limit.
        a.load(Size::W, R5, R8, E_FLOW);
        a.store(Size::W, R7, IP, R5);
        a.to_be(R4, 16);
        a.store(Size::H, R7, IP + 4, R4);
        a.store_imm(Size::B, R7, IP + 6, 6);
        a.load(Size::B, R5, R8, E_TTL);
        a.store(Size::B, R7, IP + 7, R5);
    } else {
        // IPv4 (RFC 791): version/IHL, TOS 0, length, our identification, DF, our TTL.
        a.store_imm(Size::H, R7, IP, 0x0045);
        a.alu_imm(Alu::Add, R4, 20);
        a.to_be(R4, 16);
        a.store(Size::H, R7, IP + 2, R4);
        a.load(Size::H, R4, R8, E_IDENT);
        a.store(Size::H, R7, IP + 4, R4);
        a.store_imm(Size::H, R7, IP + 6, 0x0040);
        a.load(Size::B, R4, R8, E_TTL);
        a.store(Size::B, R7, IP + 8, R4);
        a.store_imm(Size::B, R7, IP + 9, 6);
        a.store_imm(Size::H, R7, IP + 10, 0);
    }
    for w in 0..words {
        a.load(Size::W, R1, R7, src + 4 * w);
        a.load(Size::W, R2, R7, dst + 4 * w);
        a.store(Size::W, R7, src + 4 * w, R2);
        a.store(Size::W, R7, dst + 4 * w, R1);
    }
    // TCP: ports swapped, SEQ = its ACK, ACK = its SEQ + 1; ACK, and PSH with data.
    a.load(Size::H, R1, R7, tcp);
    a.load(Size::H, R2, R7, tcp + 2);
    a.store(Size::H, R7, tcp, R2);
    a.store(Size::H, R7, tcp + 2, R1);
    a.load(Size::W, R4, R10, S_ACK);
    a.store(Size::W, R7, tcp + 4, R4);
    a.load(Size::W, R4, R10, S_SEQ);
    a.to_be(R4, 32);
    a.alu_imm(Alu::Add, R4, 1);
    a.to_be(R4, 32);
    a.store(Size::W, R7, tcp + 8, R4);
    a.store_imm(Size::B, R7, tcp + 12, 0x50);
    a.store_imm(Size::B, R7, tcp + 13, 0x10);
    a.load(Size::W, R4, R10, S_PLEN);
    a.jump_imm(Jmp::Eq, R4, 0, &l("flags_done"));
    a.store_imm(Size::B, R7, tcp + 13, 0x18);
    a.label(&l("flags_done"));
    a.load(Size::W, R4, R10, S_WINDOW);
    a.store(Size::H, R7, tcp + 14, R4);
    a.store_imm(Size::H, R7, tcp + 16, 0);
    a.store_imm(Size::H, R7, tcp + 18, 0);
    a.load(Size::W, R4, R10, S_HDR);
    a.jump_imm(Jmp::Eq, R4, opts, &l("options_written"));
    // NOP, NOP, Timestamps: our TSval, the peer's as TSecr (RFC 7323 §3, Appendix A).
    frame(a, R7, R9, opts + 12, "unsent");
    a.store_imm(Size::B, R7, tcp + 12, 0x80);
    a.store_imm(Size::W, R7, tcp + 20, 0x0a08_0101);
    a.load(Size::W, R4, R8, E_TSVAL);
    a.store(Size::W, R7, tcp + 24, R4);
    a.load(Size::W, R4, R10, S_TSECR);
    a.store(Size::W, R7, tcp + 28, R4);
    a.label(&l("options_written"));
    // The pseudo header for the TCP length: headers less IP's, and the data.
    a.load(Size::W, R4, R10, S_HDR);
    a.load(Size::W, R5, R10, S_PLEN);
    a.alu(Alu::Add, R4, R5);
    a.alu_imm(Alu::Sub, R4, i32::from(tcp));
    f.pseudo_word(a);

    // Checksums (RFC 1071). IPv4's header.
    if !f.v6 {
        a.mov_imm(R0, 0);
        add_words(a, R0, R7, (0..5).map(|w| IP + 4 * w), R4);
        fold(a, R0, R1);
        a.alu_imm(Alu::Xor, R0, 0xffff);
        a.store(Size::H, R7, IP + 10, R0);
    }
    // TCP's, with its pseudo header (RFC 9293 §3.1, RFC 8200 §8.1).
    f.pseudo_sum(a, R7);
    a.load(Size::W, R4, R10, S_PARTIAL);
    a.jump_imm(Jmp::Eq, R4, 0, &l("complete"));
    // Left to offload, as the SYN-ACK was: the pseudo header's sum, not inverted.
    fold(a, R0, R1);
    a.store(Size::H, R7, tcp + 16, R0);
    a.goto("send");
    a.label(&l("complete"));
    add_words(a, R0, R7, (0..5).map(|w| tcp + 4 * w), R4);
    a.load(Size::W, R4, R10, S_HDR);
    a.jump_imm(Jmp::Eq, R4, opts, &l("header_summed"));
    frame(a, R7, R9, opts + 12, "unsent");
    add_words(a, R0, R7, (5..8).map(|w| tcp + 4 * w), R4);
    a.label(&l("header_summed"));
    a.load(Size::W, R4, R8, E_PSUM);
    a.alu(Alu::Add, R0, R4);
    fold(a, R0, R1);
    a.alu_imm(Alu::Xor, R0, 0xffff);
    a.store(Size::H, R7, tcp + 16, R0);
    a.goto("send");
}

/// The program attached at each interface's ingress: it jumps (`bpf_tail_call`) to its
/// family's program in the program array `jump` (IPv4's at 0, IPv6's at 1), or lets the
/// packet go on while that slot is empty. Why not the two programs themselves: attaching
/// waits out an RCU grace period (TCX, `tcx_entry_sync`: 5–20 ms here), and verifying
/// IPv4's program takes ~10 ms. This one is verified at once and attached while IPv4's is
/// verified, which then only goes in the array; and IPv6's, when an IPv6 probe first needs
/// it, goes in the array too, without a second attachment to the hook — one more grace
/// period, and one that a survey's end had to wait for when it was still under way.
/// (A program array takes only programs like the first that uses it: the same type, both
/// JIT-compiled or not, the same attach type — all three are `load_sched_cls`'s, alike.)
pub fn dispatcher(jump: i32) -> Result<Vec<Insn>, String> {
    let mut a = Asm::default();
    // R1 (the packet's context) is what the jump hands on: nothing here writes it.
    // `protocol` holds the EtherType as the packet does (network order); each program
    // checks the frame itself, this only picks which one looks.
    a.load(Size::W, R4, R1, SKB_PROTOCOL);
    a.mov_imm(R3, JUMP_V6 as i32);
    a.jump_imm(Jmp::Eq, R4, ETH_IPV6, "jump");
    a.mov_imm(R3, JUMP_V4 as i32);
    a.jump_imm(Jmp::Ne, R4, ETH_IPV4, "pass");
    a.label("jump");
    a.load_map(R2, jump);
    a.call(TAIL_CALL);
    // Back here only when the slot is empty.
    a.label("pass");
    a.mov_imm(R0, TCX_NEXT);
    a.exit();
    a.finish()
}

/// The program at the egress: an IPv6 SYN of an armed entry leaving tells it our
/// segments' first header word (the flow label the kernel chose for our raw socket,
/// which no system call tells), for the ACK the ingress program sends. Never changes
/// or holds back a packet.
pub fn egress_program(t: Tables) -> Result<Vec<Insn>, String> {
    let f = Family { v6: true };
    let tcp = f.tcp();
    let mut a = Asm::default();
    a.mov(R6, R1);
    frame(&mut a, R2, R3, f.opts(), "pass");
    a.load(Size::H, R4, R2, 12);
    a.jump_imm(Jmp::Ne, R4, ETH_IPV6, "pass");
    a.load(Size::B, R4, R2, IP + 6);
    a.jump_imm(Jmp::Ne, R4, 6, "pass");
    a.load(Size::B, R4, R2, tcp + 13);
    a.jump_imm(Jmp::Ne, R4, 0x02, "pass");
    entry_of(&mut a, t, tcp, 6);
    frame(&mut a, R2, R3, f.opts(), "pass");
    let (src, dst, words) = f.addrs();
    for w in 0..words {
        for (pkt, entry) in [(src, E_LOCAL), (dst, E_REMOTE)] {
            a.load(Size::W, R4, R2, pkt + 4 * w);
            a.load(Size::W, R5, R8, entry + 4 * w);
            a.jump(Jmp::Ne, R4, R5, "pass");
        }
    }
    for (pkt, entry) in [(tcp, E_LOCAL_PORT), (tcp + 2, E_REMOTE_PORT)] {
        a.load(Size::H, R4, R2, pkt);
        a.load(Size::H, R5, R8, entry);
        a.jump(Jmp::Ne, R4, R5, "pass");
    }
    a.load(Size::W, R4, R2, IP);
    a.store(Size::W, R8, E_FLOW, R4);
    a.label("pass");
    a.mov_imm(R0, TCX_NEXT);
    a.exit();
    a.finish()
}

/// The program on the interfaces of a survey, and its tables: which slot each local port
/// is (`ports`), and each slot's entry (`slots`).
pub struct Reflex {
    ports: SharedArray,
    slots: SharedArray,
    /// The dispatcher's program array: each family's program once verified. Held open for
    /// as long as they answer (the kernel empties the array when its last descriptor goes).
    jump: OwnedFd,
    /// What each interface's ingress runs ([`dispatcher`]).
    dispatch: OwnedFd,
    /// The egress program (IPv6: learns our flow label from our SYN), once IPv6 is asked for.
    egress: Option<OwnedFd>,
    /// Per interface, its attachments (ingress, and egress when IPv6 was asked for).
    links: Vec<(u32, Vec<OwnedFd>)>,
    first_port: u16,
    mark: u32,
    generation: u32,
}

/// What our segments' IP header has that the plan does not say.
#[derive(Clone, Copy, Debug)]
pub struct IpFields {
    /// IPv4's identification for the ACK (ignored for IPv6).
    pub ident: u16,
    /// TTL / hop limit.
    pub ttl: u8,
    /// The interface is one a sender on this host can be behind (veth, loopback), whose
    /// SYN-ACKs may come with their TCP checksum left to offload: the ACK then leaves so
    /// too (`FLAG_OFFLOAD`).
    pub offload: bool,
}

/// Who sends the handshake's ACK.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The kernel program did: it is on the wire (the tap shows it).
    Kernel,
    /// Ours to send (the entry is disarmed; the program will not).
    Ours,
}

impl Reflex {
    /// The tables and the dispatcher, no family's program yet ([`Setup`] verifies those
    /// off the loop's thread). Fails on kernels without eBPF, without CAP_BPF, or when
    /// the verifier refuses.
    fn empty(ports: (u16, u16), slot_count: usize, mark: u32) -> io::Result<Reflex> {
        let entries = usize::from(ports.1.saturating_sub(ports.0)) + 1;
        let port_table = SharedArray::new("tcpshake_rports", 8, entries)?;
        let slots = SharedArray::new("tcpshake_rslots", ENTRY, slot_count.max(1))?;
        let jump = ebpf::prog_array("tcpshake_rjump", 2)?;
        let dispatch = load("tcpshake_rflx", dispatcher(jump.as_raw_fd()))?;
        Ok(Reflex {
            ports: port_table,
            slots,
            jump,
            dispatch,
            egress: None,
            links: Vec::new(),
            first_port: ports.0,
            mark,
            generation: 0,
        })
    }

    /// Load everything for local ports `ports` (inclusive) and `slot_count` probes at
    /// once, both families (the tests; a survey's [`Setup`] loads as it goes). Fails on
    /// kernels without eBPF, without CAP_BPF, or when the verifier refuses (as it does with
    /// CAP_BPF alone, without CAP_PERFMON or CAP_SYS_ADMIN: "pointer arithmetic …
    /// prohibited for !root" in the option walk): the survey then answers from user space,
    /// as before.
    pub fn new(ports: (u16, u16), slot_count: usize, mark: u32) -> io::Result<Reflex> {
        let mut r = Reflex::empty(ports, slot_count, mark)?;
        let t = r.tables();
        ebpf::set_prog(
            &r.jump,
            JUMP_V4,
            &load("tcpshake_rflx4", program(t, false))?,
        )?;
        ebpf::set_prog(&r.jump, JUMP_V6, &load("tcpshake_rflx6", program(t, true))?)?;
        r.egress = Some(load("tcpshake_rflx_eg", egress_program(t))?);
        Ok(r)
    }

    /// What the programs are built for: the tables' descriptors (valid while `self` is).
    fn tables(&self) -> Tables {
        Tables {
            ports_fd: self.ports.fd(),
            slots_fd: self.slots.fd(),
            first_port: self.first_port,
            entries: self.ports.entries() as u32,
            slot_count: self.slots.entries() as u32,
        }
    }

    /// Attachments [`Setup`] made.
    pub fn add_links(&mut self, ifindex: u32, links: Vec<OwnedFd>) {
        match self.links.iter_mut().find(|(i, _)| *i == ifindex) {
            Some((_, have)) => have.extend(links),
            None => self.links.push((ifindex, links)),
        }
    }

    /// What the interface's ingress does with `frame` (the dispatcher, and the program
    /// it jumps to), nothing sent ([`ebpf::test_run`]): how the tests see what it does.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<(i32, Vec<u8>)> {
        ebpf::test_run(&self.dispatch, frame)
    }

    /// The phase of slot `slot`'s entry: 0 idle, 1 armed, 2 sent by the program, 3
    /// disarmed by user space.
    pub fn phase(&self, slot: usize) -> u32 {
        self.slots.words(slot)[0].load(Ordering::Acquire) & PHASE
    }

    /// The egress program's verdict on `frame` (tests).
    pub fn test_run_egress(&self, frame: &[u8]) -> io::Result<(i32, Vec<u8>)> {
        match &self.egress {
            Some(e) => ebpf::test_run(e, frame),
            None => Err(io::Error::other("no egress program loaded")),
        }
    }

    fn port_index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.first_port)?);
        (i < self.ports.entries()).then_some(i)
    }

    /// Arm slot `slot` for a SYN-ACK from `remote` to `local` with the segment `ack` our
    /// TCP planned (false when not armed: mixed families, a port outside the table, a
    /// slot past it, data longer than [`MAX_PAYLOAD`]). `ip`: what our own segments'
    /// IP header has.
    pub fn arm(
        &mut self,
        slot: usize,
        local: SocketAddr,
        remote: SocketAddr,
        ack: &HandshakeAck,
        ip: IpFields,
    ) -> bool {
        let (family, l, r) = match (local.ip(), remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => (4, l.octets().to_vec(), r.octets().to_vec()),
            (IpAddr::V6(l), IpAddr::V6(r)) => (6, l.octets().to_vec(), r.octets().to_vec()),
            _ => return false,
        };
        let Some(p) = self.port_index(local.port()) else {
            return false;
        };
        if slot >= self.slots.entries() || ack.payload.len() > MAX_PAYLOAD {
            return false;
        }
        let mut e = [0u8; ENTRY];
        e[E_FAMILY as usize] = family;
        let mut flags = 0;
        if ack.tsval.is_some() {
            flags |= FLAG_TS;
        }
        if ack.wscale_offered {
            flags |= FLAG_WS;
        }
        if ip.offload {
            flags |= FLAG_OFFLOAD;
        }
        e[E_FLAGS as usize] = flags as u8;
        e[E_TTL as usize] = ip.ttl;
        let put = |e: &mut [u8; ENTRY], at: i16, b: &[u8]| {
            e[at as usize..at as usize + b.len()].copy_from_slice(b)
        };
        put(&mut e, E_REMOTE_PORT, &remote.port().to_be_bytes());
        put(&mut e, E_IDENT, &ip.ident.to_be_bytes());
        put(&mut e, E_EXPECT_ACK, &ack.seq.to_be_bytes());
        put(&mut e, E_WIN_SCALED, &ack.window_scaled.to_be_bytes());
        put(&mut e, E_WIN_UNSCALED, &ack.window_unscaled.to_be_bytes());
        put(&mut e, E_TSVAL, &ack.tsval.unwrap_or(0).to_be_bytes());
        put(&mut e, E_MARK, &self.mark.to_ne_bytes());
        put(&mut e, E_LOCAL_PORT, &local.port().to_be_bytes());
        put(&mut e, E_PLEN, &(ack.payload.len() as u16).to_ne_bytes());
        put(&mut e, E_REMOTE, &r);
        put(&mut e, E_LOCAL, &l);
        put(&mut e, E_PSUM, &payload_sum(&ack.payload).to_ne_bytes());
        let at = E_PAYLOAD as usize;
        e[at..at + ack.payload.len()].copy_from_slice(&ack.payload);
        self.generation = self.generation.wrapping_add(1);
        let words = self.slots.words(slot);
        // Idle while the fields change: a program that read the old state fails its claim.
        // The fence keeps the new fields from being seen before IDLE (on a CPU that
        // reorders stores; x86 does not).
        words[0].store(IDLE, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        let used = (at + ack.payload.len()).div_ceil(4);
        for (w, chunk) in words.iter().zip(e.chunks_exact(4)).take(used).skip(1) {
            w.store(
                u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                Ordering::Relaxed,
            );
        }
        words[0].store((self.generation << 2) | ARMED, Ordering::Release);
        self.ports.words(p)[0].store(slot as u32 + 1, Ordering::Release);
        true
    }

    /// Who sends the handshake's ACK of slot `slot`: after this call the program will not.
    pub fn claim(&self, slot: usize) -> Claim {
        if slot >= self.slots.entries() {
            return Claim::Ours;
        }
        let state = &self.slots.words(slot)[0];
        let s = state.load(Ordering::Acquire);
        match s & PHASE {
            ARMED => match state.compare_exchange(
                s,
                (s & !PHASE) | DISARMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => Claim::Ours,
                Err(now) if now & PHASE == FIRED => Claim::Kernel,
                Err(_) => Claim::Ours,
            },
            FIRED => Claim::Kernel,
            _ => Claim::Ours,
        }
    }

    /// Slot `slot`'s probe (of local port `port`) ended: nothing more is answered for it.
    pub fn disarm(&self, slot: usize, port: u16) {
        if slot < self.slots.entries() {
            self.slots.words(slot)[0].store(IDLE, Ordering::Release);
        }
        if let Some(p) = self.port_index(port) {
            let _ = self.ports.words(p)[0].compare_exchange(
                slot as u32 + 1,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

/// Load a program the assembler made (its error, as text, when it could not).
fn load(name: &str, insns: Result<Vec<Insn>, String>) -> io::Result<OwnedFd> {
    ebpf::load_sched_cls(name, &insns.map_err(io::Error::other)?)
}

/// What the survey loop asks [`Setup`] for, per interface (its index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// IPv4's program answering at the interface's ingress.
    Ipv4(u32),
    /// IPv6's: at the ingress, and the egress program beside it.
    Ipv6(u32),
}

/// The programs set up off the loop's thread: the verifier takes ~10 ms a program and
/// each attachment waits out an RCU grace period (5–20 ms here), which probes in flight
/// must not wait for (the survey's first SYNs do, survey.rs `reflex_ask`; probes through an
/// interface, or of a family, asked for later are answered from user space meanwhile).
/// One thread serves the asks in turn: an ask waits behind the one before it.
pub struct Setup {
    to_worker: mpsc::Sender<Ask>,
    from_worker: mpsc::Receiver<Ready>,
    /// Set by [`Setup::over`]: asks not yet begun are dropped.
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The worker's end was told (`poll`, `wait`): once.
    gone: std::cell::Cell<bool>,
}

/// What [`Setup`] has done.
pub enum Ready {
    /// The tables and the dispatcher: nothing answers yet.
    Loaded(Reflex),
    /// What an [`Ask`] made: its attachments, and whether its family's program answers on
    /// that interface now (false when this ask failed while the program answers elsewhere:
    /// an error while it answers nowhere is `Failed`).
    Attached {
        ask: Ask,
        links: Vec<OwnedFd>,
        answers: bool,
    },
    Failed(io::Error),
}

/// [`Setup`]'s thread, and what it has made so far.
struct Worker {
    /// What the programs are built for, naming `_tables`: descriptors of its own, for the
    /// loop may drop its [`Reflex`] (and its descriptors) first.
    tables: Tables,
    _tables: [OwnedFd; 2],
    jump: OwnedFd,
    dispatch: OwnedFd,
    egress: Option<OwnedFd>,
    /// Whether each family's program is in the array (None: not asked for yet).
    in_jump: [Option<bool>; 2],
    /// Interfaces whose ingress (egress) has our program.
    ingress_on: Vec<u32>,
    egress_on: Vec<u32>,
}

impl Worker {
    /// The tables and the dispatcher (for the loop); no family's program yet.
    fn new(ports: (u16, u16), slot_count: usize, mark: u32) -> io::Result<(Worker, Reflex)> {
        let r = Reflex::empty(ports, slot_count, mark)?;
        let fds = [r.ports.clone_fd()?, r.slots.clone_fd()?];
        let tables = Tables {
            ports_fd: fds[0].as_raw_fd(),
            slots_fd: fds[1].as_raw_fd(),
            ..r.tables()
        };
        let w = Worker {
            tables,
            _tables: fds,
            jump: r.jump.try_clone()?,
            dispatch: r.dispatch.try_clone()?,
            egress: None,
            in_jump: [None, None],
            ingress_on: Vec::new(),
            egress_on: Vec::new(),
        };
        Ok((w, r))
    }

    /// The family's program answering on `oif`: verified on a thread of its own (~10 ms
    /// here) while the attachments this needs sleep through their grace periods (the
    /// dispatcher at the ingress, unless there already; for IPv6 the egress program too:
    /// the two one after the other, each holding the kernel's rtnl lock through its grace
    /// period). An error while nothing of ours answers anywhere yet is the whole
    /// program's (`Failed`, with the reason the survey gives: no CAP_BPF, a kernel without
    /// TCX, the verifier's refusal); after that, only this ask's.
    fn serve(&mut self, ask: Ask) -> Ready {
        let (oif, v6) = match ask {
            Ask::Ipv4(oif) => (oif, false),
            Ask::Ipv6(oif) => (oif, true),
        };
        let answering = !self.ingress_on.is_empty() && self.in_jump.contains(&Some(true));
        let mut links = Vec::new();
        match self.make(oif, v6, &mut links) {
            Ok(()) => Ready::Attached {
                ask,
                links,
                answers: self.in_jump[usize::from(v6)] == Some(true),
            },
            Err(e) if !answering => {
                // Attachments made so far detach with the rest, after our exit
                // (teardown.rs), not in a grace period waited for here.
                if let Some(links) = teardown::keep(Box::new(links)) {
                    drop(links);
                }
                Ready::Failed(e)
            }
            Err(_) => Ready::Attached {
                ask,
                links,
                answers: false,
            },
        }
    }

    fn make(&mut self, oif: u32, v6: bool, links: &mut Vec<OwnedFd>) -> io::Result<()> {
        let family = usize::from(v6);
        if self.in_jump[family] == Some(false) {
            return Err(io::Error::other("this family's program could not be made"));
        }
        if v6 && self.egress.is_none() {
            // 81 instructions: verified in well under a millisecond.
            self.egress = Some(load("tcpshake_rflx_eg", egress_program(self.tables))?);
        }
        let t = self.tables;
        let verify = self.in_jump[family].is_none();
        let mut attach = Vec::new();
        if !self.ingress_on.contains(&oif) {
            attach.push((&self.dispatch, true));
        }
        if let Some(eg) = self
            .egress
            .as_ref()
            .filter(|_| v6 && !self.egress_on.contains(&oif))
        {
            attach.push((eg, false));
        }
        let (program, attached) = std::thread::scope(|s| {
            let name = if v6 {
                "tcpshake_rflx6"
            } else {
                "tcpshake_rflx4"
            };
            let p = verify.then(|| s.spawn(move || load(name, program(t, v6))));
            let attached: Vec<_> = attach
                .iter()
                .map(|&(prog, ingress)| (ingress, ebpf::attach_tcx(prog, oif, ingress)))
                .collect();
            let p = p.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("the verifier's thread panicked")))
            });
            (p, attached)
        });
        let mut first_error = None;
        for (ingress, made) in attached {
            match made {
                Ok(link) => {
                    links.push(link);
                    let on = if ingress {
                        &mut self.ingress_on
                    } else {
                        &mut self.egress_on
                    };
                    on.push(oif);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(p) = program {
            let index = if v6 { JUMP_V6 } else { JUMP_V4 };
            let set = p.and_then(|p| ebpf::set_prog(&self.jump, index, &p));
            self.in_jump[family] = Some(set.is_ok());
            if let Err(e) = set {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Setup {
    /// Start loading the program for local ports `ports` and `slot_count` probes.
    pub fn start(ports: (u16, u16), slot_count: usize, mark: u32) -> Setup {
        let (to_worker, asks) = mpsc::channel::<Ask>();
        let (done, from_worker) = mpsc::channel();
        let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = over.clone();
        let worker = move || {
            let (mut w, reflex) = match Worker::new(ports, slot_count, mark) {
                Ok(made) => made,
                Err(e) => {
                    let _ = done.send(Ready::Failed(e));
                    return;
                }
            };
            if done.send(Ready::Loaded(reflex)).is_err() {
                return;
            }
            // Bounded by the loop's asks (two per interface at most); ends when the loop
            // drops its `Setup`, or says it is over: an attachment begun cannot be called
            // off (nor can the process exit before it ends), so none begins then.
            for ask in asks {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                if let Err(mpsc::SendError(late)) = done.send(w.serve(ask)) {
                    // The loop is over: what was attached for it detaches with the rest,
                    // after our exit (teardown.rs), not in a grace period here that the
                    // process's exit would wait for.
                    if let Some(late) = teardown::keep(Box::new(late)) {
                        drop(late);
                    }
                    return;
                }
            }
        };
        let from_worker = match std::thread::Builder::new()
            .name("reflex-setup".into())
            .spawn(worker)
        {
            Ok(_) => from_worker,
            Err(e) => {
                let (fail, failed) = mpsc::channel();
                let _ = fail.send(Ready::Failed(e));
                failed
            }
        };
        Setup {
            to_worker,
            from_worker,
            over,
            gone: std::cell::Cell::new(false),
        }
    }

    /// The survey is over: asks not yet begun attach nothing.
    pub fn over(&self) {
        self.over.store(true, Ordering::Release);
    }

    /// Ask for a family's program on an interface.
    pub fn ask(&self, ask: Ask) {
        let _ = self.to_worker.send(ask);
    }

    /// What is ready since the last look (no system call).
    pub fn poll(&self) -> Option<Ready> {
        match self.from_worker.try_recv() {
            Ok(ready) => Some(ready),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => self.ended(),
        }
    }

    /// What is ready next, waiting until `timeout` for it.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<Ready> {
        match self.from_worker.recv_timeout(timeout) {
            Ok(ready) => Some(ready),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => self.ended(),
        }
    }

    /// The worker is gone while the loop still asks (it panicked): said once, as a
    /// failure, so the survey names a reason rather than a slow load.
    fn ended(&self) -> Option<Ready> {
        if self.gone.replace(true) || self.over.load(Ordering::Acquire) {
            return None;
        }
        Some(Ready::Failed(io::Error::other(
            "the kernel program's set-up thread ended",
        )))
    }
}

/// The one's-complement sum of `payload` (RFC 1071), folded to 16 bits and not
/// inverted, as its two bytes lie in memory read as a host-order number: what the
/// program, which sums words as they lie, adds for the data it does not read.
pub fn payload_sum(payload: &[u8]) -> u32 {
    let sum = checksum::fold(checksum::sum_words(payload));
    u32::from(u16::from_ne_bytes(sum.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_assembles_forward_only() {
        let t = Tables {
            ports_fd: 3,
            slots_fd: 4,
            first_port: 32768,
            entries: 28232,
            slot_count: 64,
        };
        for v6 in [false, true] {
            let p = program(t, v6).unwrap();
            assert!(p.len() < 4096, "{} instructions", p.len());
        }
        let p = egress_program(t).unwrap();
        assert!(p.len() < 4096, "{} instructions", p.len());
        // The dispatcher is verified at once: a handful of instructions, no loop.
        let p = dispatcher(5).unwrap();
        assert!(p.len() < 32, "{} instructions", p.len());
    }
}

#[cfg(test)]
#[path = "reflex_tests.rs"]
mod run_tests;

#[cfg(test)]
mod load_tests {
    use super::*;

    /// The kernel's verifier accepts the program (root: CAP_BPF), in well under the time a
    /// survey's first probes take (it loads off the loop's thread, `Setup`).
    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn the_verifier_accepts_the_program() {
        crate::netns::testutil::require_root("the_verifier_accepts_the_program");
        match Reflex::new((32768, 60999), 64, 0x7463) {
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

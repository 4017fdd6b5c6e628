//! The lab's link emulator, decided without I/O: what happens to each frame crossing one
//! direction of an emulated link (delay, jitter, loss, reordering, duplication,
//! corruption), from a seeded PRNG so a run is reproducible.
//!
//! This machine has no `sch_netem`; `tcpshake-linkem` (src/bin) bridges two interfaces
//! over AF_PACKET (`linkem_io.rs`) and asks a [`Link`] per direction what to do.
//!
//! Rules, after netem (`tc-netem(8)`), made deterministic:
//! - Every frame is delayed by `delay ± jitter` (uniform). Jitter alone never reorders:
//!   a frame is never due before the one queued ahead of it (a FIFO link, as netem does
//!   with its default rate-less queue when jitter is off).
//! - Random faults (loss, duplication, reordering, corruption) apply only to frames that
//!   carry TCP: losing ARP or neighbour discovery would test the kernel, not tcpshake. So
//!   the PRNG draws depend only on the TCP segments seen in that direction, and the same
//!   seed with the same exchange gives the same faults.
//! - `port=N` narrows all faults to TCP segments from or to port N.
//! - A *script* names TCP segments by their 1-based index in that direction and what to
//!   do with them (`3:drop`, `2:dup`, `4:hold=5ms`, `5:corrupt`): deterministic faults for
//!   tests that must never flake. `fin` names the direction's first segment with FIN, and
//!   `fin+K` the K-th segment after it: a close can be scripted whatever came before it
//!   (a window update or a retransmission under load shifts every index).
//! - Reordering holds a frame back by `gap` beyond its normal due time, so the frames
//!   behind it overtake it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tcpshake_proto::time::Instant;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for fault dice.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (0..=1). Always draws, so decisions stay in step.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A scripted fault for one TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptAction {
    Drop,
    Duplicate,
    Corrupt,
    /// Extra delay on top of the link's, so later segments overtake this one.
    Hold(Duration),
}

/// Which TCP segment a script step names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptTarget {
    /// The N-th (1-based) in this direction.
    Nth(u64),
    /// The K-th after this direction's first segment with FIN (0: that segment).
    AfterFin(u64),
}

/// One direction's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkParams {
    pub delay: Duration,
    pub jitter: Duration,
    /// Probabilities in 0..=1.
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// How long a reordered frame is held back beyond its due time.
    pub gap: Duration,
    /// (which TCP segment in this direction, action).
    pub script: Vec<(ScriptTarget, ScriptAction)>,
    /// When set, faults (random and scripted) apply only to TCP segments from or to this
    /// port, and only they are counted: a lab's own reachability checks stay untouched.
    pub port: Option<u16>,
}

impl LinkParams {
    /// Parses `delay=10ms,jitter=1ms,loss=5%,dup=1%,reorder=2%,gap=5ms,corrupt=1%,
    /// script=3:drop;4:dup;5:hold=5ms;6:corrupt;fin:hold=9ms;fin+1:drop`. Empty string: a
    /// plain wire.
    pub fn parse(spec: &str) -> Result<LinkParams, String> {
        let mut p = LinkParams {
            gap: Duration::from_millis(5),
            ..LinkParams::default()
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected key=value"))?;
            match key {
                "delay" => p.delay = tcpshake_proto::time::parse_duration(value)?,
                "jitter" => p.jitter = tcpshake_proto::time::parse_duration(value)?,
                "gap" => p.gap = tcpshake_proto::time::parse_duration(value)?,
                "loss" => p.loss = percent(value)?,
                "dup" => p.duplicate = percent(value)?,
                "reorder" => p.reorder = percent(value)?,
                "corrupt" => p.corrupt = percent(value)?,
                "script" => p.script = parse_script(value)?,
                "port" => {
                    p.port = Some(
                        value
                            .parse()
                            .map_err(|_| format!("`{value}` is not a port"))?,
                    )
                }
                _ => return Err(format!("unknown link setting `{key}`")),
            }
        }
        Ok(p)
    }
}

fn percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("`{s}` is not within 0–100 %"));
    }
    Ok(n / 100.0)
}

fn parse_script(s: &str) -> Result<Vec<(ScriptTarget, ScriptAction)>, String> {
    let mut out = Vec::new();
    for step in s.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (n, action) = step
            .split_once(':')
            .ok_or_else(|| format!("script step `{step}`: expected N:action"))?;
        // Digits only: `parse` would take a sign too (`fin++1`, `+3`).
        let number = |n: &str| {
            n.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| n.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| format!("script step `{step}`: `{n}` is not a segment number"))
        };
        let target = match n.strip_prefix("fin") {
            Some("") => ScriptTarget::AfterFin(0),
            Some(k) => match k.strip_prefix('+') {
                Some(k) => ScriptTarget::AfterFin(number(k)?),
                None => return Err(format!("script step `{step}`: expected fin or fin+K")),
            },
            None => match number(n)? {
                0 => return Err("script segments are numbered from 1".into()),
                n => ScriptTarget::Nth(n),
            },
        };
        let action = match action {
            "drop" => ScriptAction::Drop,
            "dup" => ScriptAction::Duplicate,
            "corrupt" => ScriptAction::Corrupt,
            a => match a.strip_prefix("hold=") {
                Some(d) => ScriptAction::Hold(tcpshake_proto::time::parse_duration(d)?),
                None => return Err(format!("script step `{step}`: unknown action `{a}`")),
            },
        };
        out.push((target, action));
    }
    Ok(out)
}

/// What a direction did, for the emulator's closing report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub received: u64,
    pub tcp: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub sent: u64,
    /// Sum and maximum of (actual send time − due time), in ns, as measured by the caller.
    pub late_sum_ns: u64,
    pub late_max_ns: u64,
}

/// What the caller knows about a frame: where its TCP segment starts, if it carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Offset of the TCP header in the frame.
    pub tcp_offset: Option<usize>,
}

/// One direction of the link: decisions and the delay queue.
#[derive(Debug)]
pub struct Link {
    params: LinkParams,
    rng: Rng,
    /// (due, arrival order) → frame; the order breaks ties so equal due times stay FIFO.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    frames: std::collections::HashMap<u64, Vec<u8>>,
    order: u64,
    /// Due time of the last in-order frame: jitter never lets a frame pass it.
    last_due: Option<Instant>,
    tcp_index: u64,
    /// `tcp_index` of this direction's first segment with FIN.
    fin_index: Option<u64>,
    pub stats: LinkStats,
}

/// Most frames one direction holds at once; beyond it new frames are dropped (a full
/// queue, as any link has), so a flood cannot grow the emulator without limit.
pub const QUEUE_LIMIT: usize = 10_000;

impl Link {
    pub fn new(params: LinkParams, seed: u64) -> Link {
        Link {
            params,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            frames: std::collections::HashMap::new(),
            order: 0,
            last_due: None,
            tcp_index: 0,
            fin_index: None,
            stats: LinkStats::default(),
        }
    }

    /// A frame arrived at `at` (its kernel receive timestamp).
    pub fn push(&mut self, at: Instant, mut frame: Vec<u8>, info: FrameInfo) {
        self.stats.received += 1;
        let p = &self.params;
        // Jitter: uniform in [-jitter, +jitter], never below zero total delay.
        let mut delay = p.delay;
        if !p.jitter.is_zero() {
            let j = p.jitter.as_nanos() as f64;
            let offset = (self.rng.unit() * 2.0 - 1.0) * j;
            let d = (p.delay.as_nanos() as f64 + offset).max(0.0);
            delay = Duration::from_nanos(d as u64);
        }
        let mut due = at + delay;
        let (mut copies, mut hold) = (1, None);
        let faulted = info.tcp_offset.filter(|&off| match p.port {
            None => true,
            Some(port) => {
                let port_at = |i: usize| {
                    frame
                        .get(off + i..off + i + 2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                };
                port_at(0) == Some(port) || port_at(2) == Some(port)
            }
        });
        if let Some(off) = faulted {
            self.stats.tcp += 1;
            self.tcp_index += 1;
            // Every die is rolled for every TCP frame, so one fault's probability does not
            // shift the others' draws.
            let lost = self.rng.chance(p.loss);
            let dup = self.rng.chance(p.duplicate);
            let reorder = self.rng.chance(p.reorder);
            let corrupt = self.rng.chance(p.corrupt);
            let bit = self.rng.next_u64();
            let mut corrupt = corrupt;
            if lost {
                copies = 0;
            }
            if dup && !lost {
                copies = 2;
            }
            if reorder {
                hold = Some(p.gap);
            }
            // Byte 13 of the TCP header holds the flags; FIN is bit 0.
            let fin = frame.get(off + 13).is_some_and(|f| f & 0x01 != 0);
            if fin && self.fin_index.is_none() {
                self.fin_index = Some(self.tcp_index);
            }
            for &(target, action) in &p.script {
                let named = match target {
                    ScriptTarget::Nth(n) => n == self.tcp_index,
                    ScriptTarget::AfterFin(k) => {
                        self.fin_index.map(|f| f + k) == Some(self.tcp_index)
                    }
                };
                if named {
                    match action {
                        ScriptAction::Drop => copies = 0,
                        ScriptAction::Duplicate => copies = 2,
                        ScriptAction::Corrupt => corrupt = true,
                        ScriptAction::Hold(d) => hold = Some(d),
                    }
                }
            }
            if copies == 0 {
                self.stats.dropped += 1;
                return;
            }
            if corrupt && corrupt_tcp(&mut frame, off, bit) {
                self.stats.corrupted += 1;
            }
        }
        if self.frames.len() + copies > QUEUE_LIMIT {
            self.stats.dropped += 1;
            return;
        }
        match hold {
            Some(extra) => {
                // Held back: off the FIFO line, so what follows overtakes it.
                self.stats.reordered += 1;
                due += extra;
            }
            None => {
                if let Some(last) = self.last_due {
                    due = due.max(last);
                }
                self.last_due = Some(due);
            }
        }
        if copies > 1 {
            self.stats.duplicated += 1;
        }
        for i in 0..copies {
            let bytes = if i + 1 == copies {
                std::mem::take(&mut frame)
            } else {
                frame.clone()
            };
            self.order += 1;
            self.queue.push(Reverse((due, self.order)));
            self.frames.insert(self.order, bytes);
        }
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((due, _))| *due)
    }

    /// The next frame due at or before `now`, with its due time.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Vec<u8>)> {
        let due = self.next_due()?;
        if due > now {
            return None;
        }
        let Reverse((due, order)) = self.queue.pop()?;
        let frame = self.frames.remove(&order)?;
        Some((due, frame))
    }

    /// The caller sent a frame due at `due` at `sent_at`.
    pub fn record_sent(&mut self, due: Instant, sent_at: Instant) {
        let late = sent_at.saturating_since(due).as_nanos() as u64;
        self.stats.sent += 1;
        self.stats.late_sum_ns = self.stats.late_sum_ns.saturating_add(late);
        self.stats.late_max_ns = self.stats.late_max_ns.max(late);
    }

    pub fn queued(&self) -> usize {
        self.frames.len()
    }
}

/// Flips one bit of the TCP segment at `off`: in its payload when it has one, else in
/// its checksum field, so the segment still reaches its connection (ports, flags and
/// offsets intact) and only the checksum can tell (RFC 9293 §3.1). Returns false when the
/// frame is too short to hold a TCP header there.
fn corrupt_tcp(frame: &mut [u8], off: usize, random: u64) -> bool {
    let Some(&data_offset) = frame.get(off + 12) else {
        return false;
    };
    if frame.len() < off + 20 {
        return false;
    }
    // A data offset below 5 words is malformed; the header is at least 20 bytes.
    let payload = off + (usize::from(data_offset >> 4) * 4).max(20);
    let (start, end) = if payload < frame.len() {
        (payload, frame.len())
    } else {
        (off + 16, off + 18)
    };
    let i = start + (random % (end - start) as u64) as usize;
    frame[i] ^= 1 << ((random >> 32) % 8);
    true
}

/// Where the TCP header starts in an Ethernet frame carrying IPv4 or IPv6 (no extension
/// headers), or `None` for anything else.
pub fn tcp_offset(frame: &[u8]) -> Option<usize> {
    const ETH: usize = 14;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    match ethertype {
        0x0800 => {
            let vihl = *frame.get(ETH)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            let proto = *frame.get(ETH + 9)?;
            // Fragments other than the first carry no TCP header.
            let frag = u16::from_be_bytes([*frame.get(ETH + 6)?, *frame.get(ETH + 7)?]) & 0x1fff;
            (vihl >> 4 == 4 && ihl >= 20 && proto == 6 && frag == 0).then_some(ETH + ihl)
        }
        0x86dd => (*frame.get(ETH + 6)? == 6 && frame.len() >= ETH + 40).then_some(ETH + 40),
        _ => None,
    }
}

/// Fills in the TCP or UDP checksum of an Ethernet frame that the kernel left for
/// offload (`TP_STATUS_CSUMNOTREADY`: CHECKSUM_PARTIAL, the field holds only the
/// pseudo-header sum). A bridge must forward finished packets: the far side's stack
/// verifies them. Returns false when the frame is not IPv4/IPv6 TCP/UDP or is too short.
pub fn complete_checksum(frame: &mut [u8]) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use tcpshake_proto::wire::checksum::upper_layer_checksum;
    const ETH: usize = 14;
    let Some(ethertype) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return false;
    };
    let (src, dst, proto, l4, l4_len): (IpAddr, IpAddr, u8, usize, usize) = match ethertype {
        0x0800 => {
            let Some(h) = frame.get(ETH..ETH + 20) else {
                return false;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            if ihl < 20 || total < ihl {
                return false;
            }
            (src.into(), dst.into(), h[9], ETH + ihl, total - ihl)
        }
        0x86dd => {
            let Some(h) = frame.get(ETH..ETH + 40) else {
                return false;
            };
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&h[24..40]);
            let dst = Ipv6Addr::from(a);
            (src.into(), dst.into(), h[6], ETH + 40, plen)
        }
        _ => return false,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    let Some(seg) = frame.get_mut(l4..l4 + l4_len) else {
        return false;
    };
    if seg.len() < field + 2 {
        return false;
    }
    seg[field..field + 2].copy_from_slice(&[0, 0]);
    let mut sum = upper_layer_checksum(src, dst, proto, seg);
    if proto == 17 && sum == 0 {
        sum = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    seg[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(1_000_000_000 + ms * 1_000_000)
    }

    const TCP: FrameInfo = FrameInfo {
        tcp_offset: Some(0),
    };
    const OTHER: FrameInfo = FrameInfo { tcp_offset: None };

    fn drain(link: &mut Link, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        std::iter::from_fn(|| link.pop_due(until))
            .take(1000)
            .collect()
    }

    #[test]
    fn parse_spec() {
        let p = LinkParams::parse(
            "delay=10ms,jitter=1ms,loss=5%,dup=1,script=3:drop;4:hold=2ms,port=80",
        )
        .unwrap();
        assert_eq!(p.port, Some(80));
        assert_eq!(p.delay, Duration::from_millis(10));
        assert_eq!(p.jitter, Duration::from_millis(1));
        assert!((p.loss - 0.05).abs() < 1e-12);
        assert!((p.duplicate - 0.01).abs() < 1e-12);
        assert_eq!(
            p.script,
            vec![
                (ScriptTarget::Nth(3), ScriptAction::Drop),
                (
                    ScriptTarget::Nth(4),
                    ScriptAction::Hold(Duration::from_millis(2))
                )
            ]
        );
        assert_eq!(LinkParams::parse("").unwrap().delay, Duration::ZERO);
        assert!(LinkParams::parse("loss=101%").is_err());
        assert!(LinkParams::parse("script=0:drop").is_err());
        assert!(LinkParams::parse("speed=1").is_err());
    }

    #[test]
    fn fixed_delay_is_exact_and_fifo() {
        let mut link = Link::new(LinkParams::parse("delay=10ms").unwrap(), 1);
        link.push(t(0), vec![1], OTHER);
        link.push(t(1), vec![2], TCP);
        assert_eq!(link.next_due(), Some(t(10)));
        assert!(link.pop_due(t(9)).is_none());
        assert_eq!(link.pop_due(t(10)), Some((t(10), vec![1])));
        assert_eq!(drain(&mut link, t(11)), vec![(t(11), vec![2])]);
    }

    #[test]
    fn jitter_never_reorders() {
        let mut link = Link::new(LinkParams::parse("delay=10ms,jitter=9ms").unwrap(), 7);
        for i in 0..200u8 {
            link.push(t(u64::from(i) / 4), vec![i], TCP);
        }
        let out = drain(&mut link, t(1000));
        let order: Vec<u8> = out.iter().map(|(_, f)| f[0]).collect();
        assert_eq!(order, (0..200).collect::<Vec<u8>>());
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn script_drops_duplicates_holds_and_corrupts_tcp_only() {
        let spec = "script=1:drop;2:dup;3:hold=5ms;4:corrupt";
        let mut link = Link::new(LinkParams::parse(spec).unwrap(), 1);
        link.push(t(0), vec![0xaa; 24], OTHER); // not TCP: not counted
        for i in 1..=5u8 {
            link.push(t(u64::from(i)), vec![i; 24], TCP);
        }
        let out = drain(&mut link, t(100));
        let firsts: Vec<u8> = out.iter().map(|(_, f)| f[0]).collect();
        // 1 dropped, 2 twice, 3 held past 4 and 5.
        assert_eq!(firsts, vec![0xaa, 2, 2, 4, 5, 3]);
        let four = &out[3].1;
        assert_eq!(
            four.iter().filter(|&&b| b != 4).count(),
            1,
            "one byte flipped"
        );
        assert_eq!(&four[..4], &[4; 4], "ports untouched");
        assert_eq!(link.stats.dropped, 1);
        assert_eq!(link.stats.duplicated, 1);
        assert_eq!(link.stats.reordered, 1);
        assert_eq!(link.stats.corrupted, 1);
    }

    #[test]
    fn fin_names_the_first_segment_with_fin_and_what_follows_it() {
        let spec = "script=fin:hold=5ms;fin+2:drop";
        let mut link = Link::new(LinkParams::parse(spec).unwrap(), 1);
        // (first byte, flags): 1 ACK, 2 data, 3 FIN, 4 ACK, 5 ACK, 6 a second FIN.
        for (i, flags) in [
            (1u8, 0x10u8),
            (2, 0x18),
            (3, 0x11),
            (4, 0x10),
            (5, 0x10),
            (6, 0x11),
        ] {
            let mut f = vec![i; 24];
            f[13] = flags;
            link.push(t(u64::from(i)), f, TCP);
        }
        let firsts: Vec<u8> = drain(&mut link, t(100)).iter().map(|(_, f)| f[0]).collect();
        // The first FIN (3) held past the rest, the second after it (5) dropped; the
        // second FIN is no new anchor.
        assert_eq!(firsts, vec![1, 2, 4, 6, 3]);
        for bad in [
            "fin-1:drop",
            "fin+x:drop",
            "finn:drop",
            "0:drop",
            "fin+:drop",
            "fin++1:drop",
            "+3:drop",
        ] {
            assert!(
                LinkParams::parse(&format!("script={bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn port_narrows_faults() {
        let mut link = Link::new(LinkParams::parse("script=1:drop,port=80").unwrap(), 1);
        let seg = |sport: u16, dport: u16| {
            let mut f = vec![0u8; 20];
            f[..2].copy_from_slice(&sport.to_be_bytes());
            f[2..4].copy_from_slice(&dport.to_be_bytes());
            f
        };
        link.push(t(0), seg(40000, 9), TCP); // not port 80: passes, not counted
        link.push(t(1), seg(40000, 80), TCP); // the first port-80 segment: dropped
        link.push(t(2), seg(80, 40000), TCP);
        assert_eq!(drain(&mut link, t(10)).len(), 2);
        assert_eq!((link.stats.tcp, link.stats.dropped), (2, 1));
    }

    #[test]
    fn same_seed_same_faults() {
        let spec = "loss=20%,dup=10%,reorder=10%,corrupt=10%,jitter=2ms,delay=5ms";
        let run = |seed| {
            let mut link = Link::new(LinkParams::parse(spec).unwrap(), seed);
            for i in 0..500u16 {
                link.push(t(u64::from(i)), i.to_be_bytes().repeat(12), TCP);
            }
            drain(&mut link, t(10_000))
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let out = run(42);
        // About 20 % lost, 10 % of the rest duplicated.
        assert!((380..=470).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn complete_checksum_finishes_offloaded_tcp_and_udp() {
        use std::net::{IpAddr, Ipv4Addr};
        use tcpshake_proto::wire::checksum::verify_upper_layer;
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        for (proto, l4_len) in [(6u8, 24usize), (17, 12)] {
            let mut f = vec![0u8; 14 + 20 + l4_len];
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            f[14 + 9] = proto;
            f[26..30].copy_from_slice(&src.octets());
            f[30..34].copy_from_slice(&dst.octets());
            f[34 + l4_len - 1] = 0x42; // some payload
            // What CHECKSUM_PARTIAL leaves: a pseudo-header sum, not a checksum.
            let field = if proto == 6 { 16 } else { 6 };
            f[34 + field] = 0x12;
            assert!(complete_checksum(&mut f));
            assert!(verify_upper_layer(
                IpAddr::V4(src),
                IpAddr::V4(dst),
                proto,
                &f[34..]
            ));
        }
        assert!(!complete_checksum(&mut [0u8; 10]));
    }

    #[test]
    fn tcp_offset_finds_v4_and_v6() {
        let mut v4 = vec![0u8; 14 + 20 + 20];
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        v4[14] = 0x45;
        v4[14 + 9] = 6;
        assert_eq!(tcp_offset(&v4), Some(34));
        v4[14 + 9] = 17;
        assert_eq!(tcp_offset(&v4), None);
        let mut v6 = vec![0u8; 14 + 40 + 20];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14 + 6] = 6;
        assert_eq!(tcp_offset(&v6), Some(54));
        assert_eq!(tcp_offset(&[0x08]), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_conserves_frames(
            frames in proptest::collection::vec((0u64..50, proptest::collection::vec(any::<u8>(), 0..80)), 0..100),
            seed in any::<u64>(),
        ) {
            let spec = "delay=3ms,jitter=2ms,loss=10%,dup=10%,reorder=10%,corrupt=30%";
            let mut link = Link::new(LinkParams::parse(spec).unwrap(), seed);
            let mut at = t(0);
            for (dt, f) in frames {
                at += Duration::from_millis(dt);
                let info = FrameInfo { tcp_offset: tcp_offset(&f).or(Some(0)) };
                link.push(at, f, info);
            }
            let out = drain(&mut link, at + Duration::from_secs(1));
            let s = link.stats;
            prop_assert_eq!(out.len() as u64, s.received - s.dropped + s.duplicated);
            prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
            prop_assert_eq!(link.queued(), 0);
        }
    }
}

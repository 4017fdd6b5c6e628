//! TCP options (RFC 9293 §3.2, RFC 7323, RFC 2018): decoding from and encoding into the
//! option bytes of a header.
//!
//! Parsing walks the bytes with `get(..)`, never by indexing, and bounds each option by
//! its own length byte before looking inside. Encoding copies Linux's layout
//! (`tcp_options_write()` in net/ipv4/tcp_output.c) so our segments look like the kernel's
//! in a capture: every option group is padded with NOPs to a 4-byte boundary, and so the
//! whole block never needs trailing padding.

use super::{Error, Result, SeqNumber};

/// Option kinds (IANA "TCP Option Kind Numbers").
pub const KIND_EOL: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WSCALE: u8 = 3;
pub const KIND_SACK_PERMITTED: u8 = 4;
pub const KIND_SACK: u8 = 5;
pub const KIND_TIMESTAMPS: u8 = 8;

/// Data offset is 4 bits of 32-bit words: at most 60 header bytes, 40 of them options.
pub const MAX_OPTIONS_LEN: usize = 40;

/// Up to this many SACK blocks fit in 40 bytes of options (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;
/// Unknown option kinds remembered per segment (more are counted, not kept).
pub const MAX_UNKNOWN_OPTIONS: usize = 8;
/// Malformed options remembered per segment (more are counted, not kept).
pub const MAX_MALFORMED_OPTIONS: usize = 4;

// Encoded sizes of each group as `emit` writes it (all multiples of 4).
const MSS_LEN: usize = 4; // 02 04 mss
const TS_LEN: usize = 12; // (04 02 | 01 01) 08 0a tsval tsecr
const WSCALE_LEN: usize = 4; // 01 03 03 shift
const SACK_PERM_LEN: usize = 4; // 01 01 04 02
const SACK_HEADER_LEN: usize = 4; // 01 01 05 len
const SACK_BLOCK_LEN: usize = 8;

/// The options of one segment, decoded. Order on the wire is not kept; `emit` writes
/// them in Linux's order (MSS, SACK-permitted, timestamps, NOP, window scale) so our SYN
/// looks like the kernel's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr), RFC 7323 §3.
    pub timestamps: Option<(u32, u32)>,
    pub sack_blocks: [Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS],
    /// Kinds we do not understand, in order of appearance (at most `MAX_UNKNOWN_OPTIONS`).
    /// Never emitted: we would not know what to put in them.
    pub unknown: [Option<u8>; MAX_UNKNOWN_OPTIONS],
    /// How many unknown options there were in all.
    pub unknown_count: u8,
    /// Kinds of options that were ignored because their length was wrong (a known kind with
    /// the wrong length, or a length below 2 or past the end), in order of appearance.
    /// Never emitted.
    pub malformed: [Option<u8>; MAX_MALFORMED_OPTIONS],
    /// How many malformed options there were in all.
    pub malformed_count: u8,
}

impl TcpOptions {
    /// Builder: set the MSS (RFC 9293 §3.7.1).
    #[must_use]
    pub fn with_mss(mut self, mss: u16) -> TcpOptions {
        self.mss = Some(mss);
        self
    }

    /// Builder: set the window-scale shift (RFC 7323 §2.2).
    #[must_use]
    pub fn with_wscale(mut self, shift: u8) -> TcpOptions {
        self.wscale = Some(shift);
        self
    }

    /// Builder: offer SACK (RFC 2018 §2).
    #[must_use]
    pub fn with_sack_permitted(mut self) -> TcpOptions {
        self.sack_permitted = true;
        self
    }

    /// Builder: set TSval and TSecr (RFC 7323 §3.2).
    #[must_use]
    pub fn with_timestamps(mut self, tsval: u32, tsecr: u32) -> TcpOptions {
        self.timestamps = Some((tsval, tsecr));
        self
    }

    /// Builder: add a SACK block `[left, right)` in the first free slot; ignored when all
    /// [`MAX_SACK_BLOCKS`] slots are taken.
    #[must_use]
    pub fn with_sack_block(mut self, left: SeqNumber, right: SeqNumber) -> TcpOptions {
        if let Some(slot) = self.sack_blocks.iter_mut().find(|b| b.is_none()) {
            *slot = Some((left, right));
        }
        self
    }

    /// The SACK blocks present, in slot order.
    pub fn sack(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.sack_blocks.iter().flatten().copied()
    }

    /// The unknown kinds remembered, in order of appearance.
    pub fn unknown_kinds(&self) -> impl Iterator<Item = u8> + '_ {
        self.unknown.iter().flatten().copied()
    }

    /// The malformed kinds remembered, in order of appearance.
    pub fn malformed_kinds(&self) -> impl Iterator<Item = u8> + '_ {
        self.malformed.iter().flatten().copied()
    }

    fn note_malformed(&mut self, kind: u8) {
        if let Some(slot) = self.malformed.get_mut(usize::from(self.malformed_count)) {
            *slot = Some(kind);
        }
        self.malformed_count = self.malformed_count.saturating_add(1);
    }

    /// Decode the option bytes of a header (everything between the fixed 20 bytes and the
    /// data offset). RFC 9293 §3.2: EOL ends the list, NOP is one byte, every other kind
    /// has a length byte counting kind and length. Duplicates: the last one wins.
    ///
    /// Never fails: RFC 9293 §3.1 (MUST-7) asks a receiver to survive an illegal option
    /// length, and Linux's `tcp_parse_options()` (net/ipv4/tcp_input.c) shows how a segment
    /// survives it, which we copy because a stricter client would call an open port
    /// filtered:
    /// - a known kind whose length is not its own (`opsize == TCPOLEN_MSS` and so on) is
    ///   skipped by its length byte, and the options after it are still read;
    /// - a length below 2 ("silly options") or past the end ("don't parse partial
    ///   options") ends the walk: nothing after it can be framed, what came before stands.
    ///
    /// Either way the segment is kept and the option is recorded in `malformed`.
    pub fn parse(mut bytes: &[u8]) -> TcpOptions {
        let mut opts = TcpOptions::default();
        // Each round consumes at least one byte, so this ends after ≤ bytes.len() rounds.
        while let Some((&kind, rest)) = bytes.split_first() {
            match kind {
                KIND_EOL => break,
                KIND_NOP => {
                    bytes = rest;
                    continue;
                }
                _ => {}
            }
            let len = rest.first().map_or(0, |&l| usize::from(l));
            let (Some(option), true) = (bytes.get(..len), len >= 2) else {
                opts.note_malformed(kind);
                break;
            };
            let body = option.get(2..).unwrap_or(&[]);
            bytes = bytes.get(len..).unwrap_or(&[]);
            if !opts.take(kind, body) {
                opts.note_malformed(kind);
            }
        }
        opts
    }

    /// One framed option: `body` is what follows kind and length. False when a known kind
    /// has the wrong length (the option is then ignored).
    fn take(&mut self, kind: u8, body: &[u8]) -> bool {
        match kind {
            KIND_MSS => {
                let Ok(b) = <[u8; 2]>::try_from(body) else {
                    return false;
                };
                self.mss = Some(u16::from_be_bytes(b));
            }
            KIND_WSCALE => {
                let Ok([shift]) = <[u8; 1]>::try_from(body) else {
                    return false;
                };
                // RFC 7323 §2.3 says to treat a shift above 14 as 14; that is a decision
                // for the connection, so the raw value is kept here.
                self.wscale = Some(shift);
            }
            KIND_SACK_PERMITTED => {
                if !body.is_empty() {
                    return false;
                }
                self.sack_permitted = true;
            }
            KIND_SACK => {
                // RFC 2018 §3: 8n + 2 bytes, n ≥ 1; 40 option bytes hold at most 4.
                if body.is_empty() || !body.len().is_multiple_of(SACK_BLOCK_LEN) {
                    return false;
                }
                self.sack_blocks = [None; MAX_SACK_BLOCKS];
                for (slot, block) in self
                    .sack_blocks
                    .iter_mut()
                    .zip(body.chunks_exact(SACK_BLOCK_LEN))
                {
                    let left = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                    let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                    *slot = Some((SeqNumber(left), SeqNumber(right)));
                }
            }
            KIND_TIMESTAMPS => {
                let Ok(b) = <[u8; 8]>::try_from(body) else {
                    return false;
                };
                let tsval = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let tsecr = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                self.timestamps = Some((tsval, tsecr));
            }
            other => {
                if let Some(slot) = self.unknown.get_mut(usize::from(self.unknown_count)) {
                    *slot = Some(other);
                }
                self.unknown_count = self.unknown_count.saturating_add(1);
            }
        }
        true
    }

    /// Bytes of everything but SACK blocks, as `emit` lays it out.
    fn fixed_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += MSS_LEN;
        }
        if self.timestamps.is_some() {
            // SACK-permitted rides in the two bytes that would otherwise be NOP NOP.
            len += TS_LEN;
        } else if self.sack_permitted {
            len += SACK_PERM_LEN;
        }
        if self.wscale.is_some() {
            len += WSCALE_LEN;
        }
        len
    }

    /// How many SACK blocks `emit` writes: those present, in slot order, as far as they
    /// fit in 40 bytes next to the other options (RFC 2018 §3: 3 with timestamps).
    pub fn sack_blocks_emitted(&self) -> usize {
        let room = MAX_OPTIONS_LEN - self.fixed_len() - SACK_HEADER_LEN;
        self.sack().count().min(room / SACK_BLOCK_LEN)
    }

    /// Bytes `emit` writes: a multiple of 4, at most [`MAX_OPTIONS_LEN`].
    pub fn emitted_len(&self) -> usize {
        match self.sack_blocks_emitted() {
            0 => self.fixed_len(),
            n => self.fixed_len() + SACK_HEADER_LEN + n * SACK_BLOCK_LEN,
        }
    }

    /// Encode into the start of `buf` in Linux's order: MSS; SACK-permitted + timestamps
    /// (or NOP NOP + timestamps); NOP + window scale; NOP NOP + SACK-permitted when there
    /// are no timestamps; NOP NOP + SACK blocks. A full SYN is exactly
    /// `02 04 mss 04 02 08 0a tsval tsecr 01 03 03 shift` (20 bytes). Options are written
    /// as set: leaving SYN-only options off later segments is the caller's business.
    /// Returns the bytes written (`emitted_len()`), or `Truncated` if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.emitted_len();
        let mut out = Writer {
            buf: buf.get_mut(..len).ok_or(Error::Truncated)?,
            at: 0,
        };
        if let Some(mss) = self.mss {
            out.put(&[KIND_MSS, 4]);
            out.put(&mss.to_be_bytes());
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            if self.sack_permitted {
                out.put(&[KIND_SACK_PERMITTED, 2]);
            } else {
                out.put(&[KIND_NOP, KIND_NOP]);
            }
            out.put(&[KIND_TIMESTAMPS, 10]);
            out.put(&tsval.to_be_bytes());
            out.put(&tsecr.to_be_bytes());
        }
        if let Some(shift) = self.wscale {
            out.put(&[KIND_NOP, KIND_WSCALE, 3, shift]);
        }
        if self.sack_permitted && self.timestamps.is_none() {
            out.put(&[KIND_NOP, KIND_NOP, KIND_SACK_PERMITTED, 2]);
        }
        let blocks = self.sack_blocks_emitted();
        if blocks > 0 {
            // 2 + 8n ≤ 34 always fits a byte.
            let opt_len = (2 + blocks * SACK_BLOCK_LEN) as u8;
            out.put(&[KIND_NOP, KIND_NOP, KIND_SACK, opt_len]);
            for (left, right) in self.sack().take(blocks) {
                out.put(&left.0.to_be_bytes());
                out.put(&right.0.to_be_bytes());
            }
        }
        debug_assert_eq!(out.at, len, "emitted_len() and emit() disagree");
        Ok(len)
    }
}

/// Sequential writer into a buffer sized by `emitted_len()`, so every `put` fits.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        // The buffer was cut to `emitted_len()`, which counts every byte put here; `get_mut`
        // keeps a disagreement from ever becoming a panic.
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit_vec(o: &TcpOptions) -> Vec<u8> {
        let mut buf = [0u8; MAX_OPTIONS_LEN];
        let n = o.emit(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn full_syn_is_linux_layout() {
        let o = TcpOptions::default()
            .with_mss(1460)
            .with_sack_permitted()
            .with_timestamps(0x0102_0304, 0)
            .with_wscale(7);
        assert_eq!(
            emit_vec(&o),
            [
                0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0,
                0x01, 0x03, 0x03, 0x07
            ]
        );
        assert_eq!(o.emitted_len(), 20);
        assert_eq!(TcpOptions::parse(&emit_vec(&o)), o);
    }

    #[test]
    fn timestamps_alone_are_nop_nop_ts() {
        let o = TcpOptions::default().with_timestamps(7, 9);
        assert_eq!(emit_vec(&o), [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    }

    #[test]
    fn sack_permitted_without_timestamps() {
        let o = TcpOptions::default()
            .with_mss(536)
            .with_sack_permitted()
            .with_wscale(0);
        assert_eq!(emit_vec(&o), [2, 4, 2, 24, 1, 3, 3, 0, 1, 1, 4, 2]);
        assert_eq!(TcpOptions::parse(&emit_vec(&o)), o);
    }

    #[test]
    fn sack_blocks_that_do_not_fit_are_dropped() {
        let mut o = TcpOptions::default();
        for i in 0..4 {
            o = o.with_sack_block(SeqNumber(i * 100), SeqNumber(i * 100 + 50));
        }
        assert_eq!(o.sack_blocks_emitted(), 4);
        assert_eq!(o.emitted_len(), 36);
        let with_ts = o.with_timestamps(1, 2);
        assert_eq!(
            with_ts.sack_blocks_emitted(),
            3,
            "RFC 2018 §3: three with timestamps"
        );
        assert_eq!(with_ts.emitted_len(), 40);
        let bytes = emit_vec(&with_ts);
        assert_eq!(&bytes[12..16], &[1, 1, 5, 26]);
        let back = TcpOptions::parse(&bytes);
        assert_eq!(back.sack().count(), 3);
        assert_eq!(back.sack_blocks[3], None);
        let syn_like = with_ts.with_mss(1).with_wscale(1).with_sack_permitted();
        assert_eq!(syn_like.sack_blocks_emitted(), 2);
        assert_eq!(syn_like.emitted_len(), 40);
        // A fifth block has no slot.
        let five = o.with_sack_block(SeqNumber(1), SeqNumber(2));
        assert_eq!(five, o);
    }

    #[test]
    fn empty_and_padding() {
        assert_eq!(TcpOptions::default().emitted_len(), 0);
        assert_eq!(TcpOptions::parse(&[]), TcpOptions::default());
        // NOPs, then EOL; bytes after EOL are padding and ignored even if they look bad.
        let o = TcpOptions::parse(&[1, 1, 2, 4, 0, 100, 0, 2, 0xff, 0xff]);
        assert_eq!(o.mss, Some(100));
        assert_eq!(o.unknown_count, 0);
    }

    #[test]
    fn unknown_kinds_are_recorded_and_counted() {
        // MPTCP (30, len 4), TFO cookie (34, len 10), then 8 × experimental 253 (len 2).
        let mut bytes = vec![30, 4, 0, 0, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8];
        for _ in 0..8 {
            bytes.extend_from_slice(&[253, 2]);
        }
        let o = TcpOptions::parse(&bytes);
        assert_eq!(o.unknown_count, 10);
        assert_eq!(o.unknown[0], Some(30));
        assert_eq!(o.unknown[1], Some(34));
        assert_eq!(o.unknown_kinds().count(), MAX_UNKNOWN_OPTIONS);
        assert!(o.unknown_kinds().skip(2).all(|k| k == 253));
        // Unknown options are never emitted.
        assert_eq!(o.emitted_len(), 0);
    }

    #[test]
    fn unknown_count_saturates() {
        let bytes = [99u8, 2].repeat(300);
        assert_eq!(TcpOptions::parse(&bytes).unknown_count, 255);
    }

    /// A known kind with the wrong length costs that option only; the walk goes on
    /// (Linux's `tcp_parse_options()`: `opsize == TCPOLEN_*` gates each kind).
    #[test]
    fn wrong_length_costs_only_that_option() {
        let ts = [8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let cases: &[(&[u8], u8)] = &[
            (&[2, 3, 0], 2),                          // MSS must be 4
            (&[2, 5, 0, 0, 0], 2),                    // MSS must be 4
            (&[3, 4, 0, 0], 3),                       // window scale must be 3
            (&[4, 3, 0], 4),                          // SACK-permitted must be 2
            (&[5, 2], 5),                             // SACK with no block
            (&[5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0], 5), // SACK not 8n + 2
            (&[8, 8, 0, 0, 0, 0, 0, 0], 8),           // timestamps must be 10
        ];
        for &(bad, kind) in cases {
            let bytes = [bad, &[1], &ts[..]].concat();
            let o = TcpOptions::parse(&bytes);
            assert_eq!(
                o.timestamps,
                Some((7, 9)),
                "{bytes:?}: the next option stands"
            );
            assert_eq!(o.malformed_kinds().collect::<Vec<_>>(), [kind], "{bytes:?}");
            assert_eq!((o.mss, o.wscale, o.sack_permitted), (None, None, false));
            assert_eq!(o.sack().count(), 0);
        }
    }

    /// A length that cannot frame an option (below 2, past the end, missing) ends the
    /// walk; what came before stands (Linux: "silly options", "don't parse partial
    /// options").
    #[test]
    fn unframeable_length_ends_the_walk() {
        let cases: &[(&[u8], u8)] = &[
            (&[2], 2),               // MSS with no length byte
            (&[2, 0, 0, 0], 2),      // length 0
            (&[2, 1, 0, 0], 2),      // length 1
            (&[200, 9, 5], 200),     // runs past the end
            (&[1, 1, 200, 0], 200),  // unknown kind, length 0
            (&[200, 1], 200),        // unknown kind, length 1
            (&[200, 40, 0, 0], 200), // unknown kind, overruns
            (&[200], 200),           // unknown kind, no length byte
        ];
        for &(bad, kind) in cases {
            // After the bad option, a window scale option that the walk must not reach
            // (for the overrunning cases it is what the length runs into).
            let bytes = [&[2, 4, 5, 0xb4][..], bad, &[1, 3, 3, 7]].concat();
            let o = TcpOptions::parse(&bytes);
            assert_eq!(o.mss, Some(1460), "{bytes:?}: what came before stands");
            assert_eq!(o.wscale, None, "{bytes:?}: nothing after is read");
            assert_eq!(o.malformed_kinds().next(), Some(kind), "{bytes:?}");
            assert_eq!(o.unknown_count, 0);
        }
    }

    #[test]
    fn malformed_count_saturates_and_is_never_emitted() {
        let bytes = [3u8, 2].repeat(300);
        let o = TcpOptions::parse(&bytes);
        assert_eq!(o.malformed_count, 255);
        assert_eq!(o.malformed_kinds().count(), MAX_MALFORMED_OPTIONS);
        assert_eq!(o.emitted_len(), 0);
    }

    #[test]
    fn emit_needs_room() {
        let o = TcpOptions::default().with_mss(1460);
        assert_eq!(o.emit(&mut [0u8; 3]), Err(Error::Truncated));
        assert_eq!(o.emit(&mut [0u8; 4]), Ok(4));
    }
}

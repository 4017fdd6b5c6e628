//! pcapng files (draft-ietf-opsawg-pcapng): every packet with a comment saying what
//! tcpshake made of it, and, for HTTPS, the session keys in a Decryption Secrets Block so
//! Wireshark decrypts the exchange on open, with no key file given.
//!
//! The file is one section, written little-endian (a reader learns the byte order from the
//! Section Header's magic):
//!
//! ```text
//!   SHB   Section Header Block, shb_userappl "tcpshake x.y.z"
//!   IDB   one Interface Description Block: LINKTYPE_RAW (each packet an IP packet, as our
//!         pcap files), if_tsresol 9 (timestamps in ns, the kernel's stamps unrounded)
//!   DSB   Decryption Secrets Block, TLS key log ("TLSK"), before the packets it decrypts
//!   EPB   Enhanced Packet Block per packet, opt_comment = what tcpshake made of it
//!   …
//! ```
//!
//! Every block is `type, total length, body padded to 32 bits, total length` (§3.1);
//! options are `code, length, value padded to 32 bits`, ended by opt_endofopt (§3.5).

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const DSB: u32 = 0x0000_000A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Secrets Type of a DSB holding an NSS key log (the draft's registry: 0x544c534b "TLSK").
pub const SECRETS_TLS_KEY_LOG: u32 = 0x544c_534b;
/// LINKTYPE_RAW: the packet begins with an IPv4 or IPv6 header.
const LINKTYPE_RAW: u16 = 101;
const SNAPLEN: u32 = 262_144;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_TSRESOL: u16 = 9;

/// Bytes to pad `n` to a multiple of 4.
fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Options as they go in a block: each padded, then opt_endofopt. Values longer than an
/// option can hold (64 KiB) are cut at a character boundary.
fn options(opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(code, value) in opts {
        let value = &value[..value.len().min(u16::MAX as usize - 3)];
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out.resize(out.len() + pad(value.len()), 0);
    }
    if !out.is_empty() {
        out.extend_from_slice(&OPT_ENDOFOPT.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    out
}

/// A comment as UTF-8, cut (at a character boundary) to what an option holds.
fn comment_bytes(comment: &str) -> &[u8] {
    let max = u16::MAX as usize - 3;
    if comment.len() <= max {
        return comment.as_bytes();
    }
    let mut end = max;
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    &comment.as_bytes()[..end]
}

pub struct PcapngWriter<W: Write> {
    out: W,
    /// Reused for each block.
    block: Vec<u8>,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header and the one interface.
    pub fn new(out: W) -> io::Result<Self> {
        let mut w = PcapngWriter {
            out,
            block: Vec::new(),
        };
        let app = concat!("tcpshake ", env!("CARGO_PKG_VERSION"));
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes()); // major
        body.extend_from_slice(&0u16.to_le_bytes()); // minor
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
        body.extend(options(&[(SHB_USERAPPL, app.as_bytes())]));
        w.block(SHB, &body)?;
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes()); // reserved
        body.extend_from_slice(&SNAPLEN.to_le_bytes());
        // if_tsresol 9: units of 10^-9 s, the kernel's nanoseconds as they are.
        body.extend(options(&[(IF_TSRESOL, &[9])]));
        w.block(IDB, &body)?;
        Ok(w)
    }

    fn block(&mut self, kind: u32, body: &[u8]) -> io::Result<()> {
        debug_assert_eq!(body.len() % 4, 0);
        let total = u32::try_from(12 + body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block too big"))?;
        self.block.clear();
        self.block.extend_from_slice(&kind.to_le_bytes());
        self.block.extend_from_slice(&total.to_le_bytes());
        self.block.extend_from_slice(body);
        self.block.extend_from_slice(&total.to_le_bytes());
        self.out.write_all(&self.block)
    }

    /// One packet captured at `ts_ns` (ns since the epoch), with an optional comment.
    pub fn packet(&mut self, ts_ns: u64, packet: &[u8], comment: Option<&str>) -> io::Result<()> {
        let caplen = packet.len().min(SNAPLEN as usize);
        let mut body = Vec::with_capacity(20 + caplen + 4 + comment.map_or(0, |c| c.len() + 8));
        body.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        body.extend_from_slice(&(caplen as u32).to_le_bytes());
        body.extend_from_slice(
            &u32::try_from(packet.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        body.extend_from_slice(&packet[..caplen]);
        body.resize(body.len() + pad(caplen), 0);
        if let Some(c) = comment.filter(|c| !c.is_empty()) {
            body.extend(options(&[(OPT_COMMENT, comment_bytes(c))]));
        }
        self.block(EPB, &body)
    }

    /// A Decryption Secrets Block with `key_log` (NSS key log lines): packets written after
    /// it can be decrypted by a reader that knows nothing else.
    pub fn tls_secrets(&mut self, key_log: &[u8]) -> io::Result<()> {
        if key_log.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(key_log.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "key log too big"))?;
        let mut body = Vec::with_capacity(8 + key_log.len() + 3);
        body.extend_from_slice(&SECRETS_TLS_KEY_LOG.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(key_log);
        body.resize(body.len() + pad(key_log.len()), 0);
        self.block(DSB, &body)
    }

    /// Everything written so far, handed to the writer underneath.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }

    /// (type, body) of each block, checking both length fields and the padding.
    fn blocks(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (kind, total) = (u32_at(b, 0), u32_at(b, 4) as usize);
            assert_eq!(total % 4, 0, "block {kind:#x} not padded");
            assert_eq!(u32_at(b, total - 4) as usize, total, "trailing length");
            out.push((kind, b[8..total - 4].to_vec()));
            b = &b[total..];
        }
        out
    }

    /// The options of a block body from `at`: (code, value).
    fn opts(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let code = u16::from_le_bytes([b[0], b[1]]);
            let len = u16::from_le_bytes([b[2], b[3]]) as usize;
            if code == OPT_ENDOFOPT {
                assert_eq!(len, 0);
                assert_eq!(b.len(), 4, "opt_endofopt is last");
                break;
            }
            out.push((code, b[4..4 + len].to_vec()));
            b = &b[4 + len + pad(len)..];
        }
        out
    }

    #[test]
    fn blocks_are_laid_out_as_the_draft_says() {
        let mut w = PcapngWriter::new(Vec::new()).unwrap();
        w.tls_secrets(b"CLIENT_RANDOM 00 11\n").unwrap();
        w.packet(
            1_700_000_000_123_456_789,
            &[0x45, 0, 0, 20, 1],
            Some("sent; CLOSED → SYN-SENT"),
        )
        .unwrap();
        w.packet(1_700_000_000_123_456_790, &[0x45, 0, 0, 20], None)
            .unwrap();
        let b = w.into_inner().unwrap();
        let blocks = blocks(&b);
        let kinds: Vec<u32> = blocks.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [SHB, IDB, DSB, EPB, EPB]);

        let shb = &blocks[0].1;
        assert_eq!(u32_at(shb, 0), BYTE_ORDER_MAGIC);
        assert_eq!(&shb[4..8], &[1, 0, 0, 0], "version 1.0");
        assert_eq!(&shb[8..16], &[0xff; 8], "section length -1");
        let app = &opts(&shb[16..])[0];
        assert_eq!(app.0, SHB_USERAPPL);
        assert!(app.1.starts_with(b"tcpshake "));

        let idb = &blocks[1].1;
        assert_eq!(u16::from_le_bytes([idb[0], idb[1]]), 101);
        assert_eq!(opts(&idb[8..]), [(IF_TSRESOL, vec![9])]);

        let dsb = &blocks[2].1;
        assert_eq!(u32_at(dsb, 0), 0x544c_534b);
        assert_eq!(u32_at(dsb, 4), 20);
        assert_eq!(&dsb[8..28], b"CLIENT_RANDOM 00 11\n");

        let epb = &blocks[3].1;
        let ts = (u64::from(u32_at(epb, 4)) << 32) | u64::from(u32_at(epb, 8));
        assert_eq!(ts, 1_700_000_000_123_456_789);
        assert_eq!((u32_at(epb, 12), u32_at(epb, 16)), (5, 5));
        assert_eq!(&epb[20..25], &[0x45, 0, 0, 20, 1]);
        let comment = opts(&epb[28..]);
        assert_eq!(
            comment,
            [(OPT_COMMENT, "sent; CLOSED → SYN-SENT".as_bytes().to_vec())]
        );
        let bare = &blocks[4].1;
        assert_eq!(bare.len(), 24, "no options, no end marker");
    }

    #[test]
    fn a_huge_comment_is_cut_at_a_character() {
        let long = "é".repeat(40_000);
        let cut = comment_bytes(&long);
        assert!(cut.len() <= 65_532);
        assert!(std::str::from_utf8(cut).is_ok());
        let mut w = PcapngWriter::new(Vec::new()).unwrap();
        w.packet(1, &[0x60; 40], Some(&long)).unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(blocks(&b).len(), 3);
    }
}

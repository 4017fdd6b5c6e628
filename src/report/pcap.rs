//! pcap files (nanosecond resolution, link type RAW: each record is an IP packet), the
//! format tcpdump writes with `--time-stamp-precision nano` and tshark reads.

use std::io::{self, Write};

/// Magic for nanosecond-resolution pcap.
const MAGIC_NANO: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: the packet begins with an IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 262_144;

pub struct PcapWriter<W: Write> {
    out: W,
    /// One record, header and packet, handed over in one write: a buffered writer
    /// underneath then never writes a header without its packet (a survey killed between
    /// two writes left a file "cut short in the middle of a packet").
    record: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NANO.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            record: Vec::new(),
        })
    }

    /// One packet captured at `ts_ns` (ns since the epoch).
    pub fn write(&mut self, ts_ns: u64, packet: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let nanos = (ts_ns % 1_000_000_000) as u32;
        let len = u32::try_from(packet.len()).unwrap_or(u32::MAX).min(SNAPLEN);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&(packet.len() as u32).to_le_bytes());
        self.record.clear();
        self.record.extend_from_slice(&h);
        self.record.extend_from_slice(&packet[..len as usize]);
        self.out.write_all(&self.record)
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

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_700_000_000_123_456_789, &[0x45, 0, 0, 20])
            .unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(&b[0..4], &MAGIC_NANO.to_le_bytes());
        assert_eq!(&b[20..24], &101u32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(b[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(
            u32::from_le_bytes(b[28..32].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 4);
        assert_eq!(b.len(), 24 + 16 + 4);
    }
}

//! Capture files: `--pcap` and `--pcapng` written together from the packets the taps saw,
//! each pcapng packet with a comment saying what tcpshake made of it, and the HTTPS
//! session keys (collected in memory by [`SessionKeys`]) in a Decryption Secrets Block
//! before the packets they decrypt.
//!
//! A survey hands its packets over as they are seen (not per probe, which would put the
//! packets of probes that overlap out of order). Within one tap they come in the kernel's
//! order; packets of different taps and the fragments of a datagram (kept until the
//! datagram is whole) can come a little out of it, so they pass a [`Reorder`] window first:
//! a packet is written once a packet stamped [`WINDOW`] later has been seen, or when the
//! window holds [`MAX_HELD`] packets, or at the end.

use super::pcap::PcapWriter;
use super::pcapng::PcapngWriter;
use super::text::human_ns;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::sync::Mutex;
use tcpshake_io::run::Captured;
use tcpshake_proto::probe::PacketNote;
use tcpshake_proto::probe::record::Dir;

/// How far (kernel time) a packet may come behind a later one and still be put in order.
pub const WINDOW: u64 = 100_000_000;
/// Most packets the window holds; past it the oldest goes out at once.
pub const MAX_HELD: usize = 65_536;

/// A pcapng comment for one packet: what tcpshake made of it, in its words.
/// `tcpshake: received; SYN-SENT → ESTABLISHED; syn_to_synack 41.2 µs`.
pub fn comment(note: &PacketNote) -> String {
    let mut parts: Vec<String> = Vec::new();
    match &note.segment {
        Some(s) => {
            parts.push(
                match s.dir {
                    Dir::Out => "sent",
                    Dir::In => "received",
                }
                .to_string(),
            );
            parts.extend(s.transitions.iter().map(ToString::to_string));
            if s.retransmission {
                parts.push("retransmission".into());
            }
            if s.bad_checksum {
                parts.push("bad checksum: ignored".into());
            }
            if s.foreign {
                parts.push("not sent by tcpshake".into());
            }
            if s.kernel {
                parts.push("by tcpshake's kernel program".into());
            }
            if s.fragments > 1 {
                parts.push(format!("reassembled from {} IP fragments", s.fragments));
            }
        }
        None if note.notes.is_empty() => parts.push("received".into()),
        None => {}
    }
    parts.extend(note.label.iter().cloned());
    parts.extend(
        note.legs
            .iter()
            .map(|(leg, ns)| format!("{} {}", leg.name(), human_ns(*ns))),
    );
    parts.extend(note.notes.iter().cloned());
    format!("tcpshake: {}", parts.join("; "))
}

/// Packets waiting to be written in kernel-timestamp order (see the module doc).
#[derive(Default)]
pub struct Reorder {
    held: BinaryHeap<Reverse<Held>>,
    /// Latest stamp seen.
    newest: u64,
    /// Stamp of the last packet released.
    released: u64,
    /// Packets released behind one released before (came later than the window allows).
    pub late: u64,
    seq: u64,
}

struct Held {
    at: u64,
    seq: u64,
    packet: Captured,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl Reorder {
    pub fn push(&mut self, packet: Captured) {
        let at = packet.at.as_nanos();
        self.newest = self.newest.max(at);
        self.seq += 1;
        self.held.push(Reverse(Held {
            at,
            seq: self.seq,
            packet,
        }));
    }

    /// The oldest packet, if it may go out: the window has moved past it, it is one too
    /// many, or `all` (the end).
    pub fn pop(&mut self, all: bool) -> Option<Captured> {
        let Reverse(oldest) = self.held.peek()?;
        let due =
            all || oldest.at.saturating_add(WINDOW) <= self.newest || self.held.len() > MAX_HELD;
        if !due {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        if h.at < self.released {
            self.late += 1;
        }
        self.released = self.released.max(h.at);
        Some(h.packet)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// TLS session secrets as rustls derives them, in NSS key log lines (what SSLKEYLOGFILE
/// holds), kept in memory until the pcapng writer puts them in a Decryption Secrets Block.
/// Shared with every HTTPS probe of the run (an `Arc<dyn rustls::KeyLog>`): the probe stays
/// pure, rustls calls this from the thread that drives it.
#[derive(Debug, Default)]
pub struct SessionKeys {
    pending: Mutex<Vec<u8>>,
}

impl SessionKeys {
    /// The lines logged since the last call.
    pub fn take(&self) -> Vec<u8> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

impl rustls::KeyLog for SessionKeys {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        use std::fmt::Write;
        let mut line =
            String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
        line.push_str(label);
        line.push(' ');
        for b in client_random {
            let _ = write!(line, "{b:02x}");
        }
        line.push(' ');
        for b in secret {
            let _ = write!(line, "{b:02x}");
        }
        line.push('\n');
        if let Ok(mut p) = self.pending.lock() {
            p.extend_from_slice(line.as_bytes());
        }
    }
}

/// Every key log a run writes to: `SSLKEYLOGFILE` and the pcapng's keys, when both.
#[derive(Debug)]
pub struct KeyLogs(pub Vec<std::sync::Arc<dyn rustls::KeyLog>>);

impl rustls::KeyLog for KeyLogs {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        for k in &self.0 {
            k.log(label, client_random, secret);
        }
    }
}

/// The capture files of a run.
pub struct CaptureFiles {
    pcap: Option<PcapWriter<BufWriter<File>>>,
    pcapng: Option<PcapngWriter<BufWriter<File>>>,
    keys: Option<std::sync::Arc<SessionKeys>>,
    window: Reorder,
    /// Written packets not given back yet: more went out than the last batch's `Vec` had
    /// room for (see [`CaptureFiles::seen`]). At most what the window held.
    written: Vec<Captured>,
}

impl CaptureFiles {
    /// `keys`: the secrets of the run's HTTPS probes, for the pcapng file.
    pub fn new(
        pcap: Option<PcapWriter<BufWriter<File>>>,
        pcapng: Option<PcapngWriter<BufWriter<File>>>,
        keys: Option<std::sync::Arc<SessionKeys>>,
    ) -> CaptureFiles {
        CaptureFiles {
            pcap,
            pcapng,
            keys,
            window: Reorder::default(),
            written: Vec::new(),
        }
    }

    /// Whether the pcapng file wants notes on the packets.
    pub fn annotated(&self) -> bool {
        self.pcapng.is_some()
    }

    /// Packets handed over as they were seen (a survey): written once in order. Gives back
    /// packets written meanwhile (this batch's and earlier ones'), in the batch's own `Vec`
    /// and never more than it has room for — growing it here would reallocate it on this
    /// thread, in its owner's malloc arena, the lock this hand-back exists to spare — for
    /// the thread that allocated them to free (a survey's loop: see `Records::Writer` in
    /// app/survey.rs). The rest goes back with the next batches.
    pub fn seen(&mut self, mut packets: Vec<Captured>) -> io::Result<Vec<Captured>> {
        for p in packets.drain(..) {
            self.window.push(p);
        }
        let mut written = std::mem::take(&mut self.written);
        self.release_into(false, Some(&mut written))?;
        // Handed to the files as each batch is written, as the records are: a survey
        // killed (SIGKILL) loses only what the time-order window still holds, not a
        // buffer's worth (a walk: the captures were ~0.8 s behind the records).
        if !written.is_empty() {
            if let Some(w) = &mut self.pcap {
                w.flush()?;
            }
            if let Some(w) = &mut self.pcapng {
                w.flush()?;
            }
        }
        let room = packets.capacity().min(written.len());
        packets.extend(written.drain(..room));
        self.written = written;
        Ok(packets)
    }

    /// One run's packets at once (a trace: nothing else runs meanwhile). Its tap gives them
    /// in order but for the fragments of a datagram, kept until it is whole: put in time
    /// order here.
    pub fn probe(&mut self, packets: &[Captured]) -> io::Result<()> {
        self.secrets()?;
        let mut order: Vec<&Captured> = packets.iter().collect();
        order.sort_by_key(|p| p.at); // stable: equal stamps keep the tap's order
        for p in order {
            self.write(p)?;
        }
        Ok(())
    }

    /// Everything held written and handed to the files: between two single probes (their
    /// packets go through [`CaptureFiles::seen`] as they come, fragments put in order by the
    /// window), so no write(2) of one probe's packets falls into the next one's handshake.
    pub fn flush(&mut self) -> io::Result<()> {
        self.release(true)?;
        if let Some(w) = &mut self.pcap {
            w.flush()?;
        }
        if let Some(w) = &mut self.pcapng {
            w.flush()?;
        }
        Ok(())
    }

    fn release(&mut self, all: bool) -> io::Result<()> {
        self.release_into(all, None)
    }

    /// What may go out of the window (all of it with `all`) written, and put in `written`
    /// when given (dropped otherwise).
    fn release_into(
        &mut self,
        all: bool,
        mut written: Option<&mut Vec<Captured>>,
    ) -> io::Result<()> {
        if self.window.is_empty() {
            return Ok(());
        }
        // The keys of a handshake were logged when its packets were handled, before they
        // came here: written ahead of them.
        self.secrets()?;
        while let Some(p) = self.window.pop(all) {
            self.write(&p)?;
            if let Some(w) = written.as_mut() {
                w.push(p);
            }
        }
        Ok(())
    }

    fn secrets(&mut self) -> io::Result<()> {
        if let (Some(w), Some(k)) = (&mut self.pcapng, &self.keys) {
            w.tls_secrets(&k.take())?;
        }
        Ok(())
    }

    fn write(&mut self, p: &Captured) -> io::Result<()> {
        let at = p.at.as_nanos();
        if let Some(w) = &mut self.pcap {
            w.write(at, &p.bytes)?;
        }
        if let Some(w) = &mut self.pcapng {
            let c = p.note.as_ref().map(comment);
            w.packet(at, &p.bytes, c.as_deref())?;
        }
        Ok(())
    }

    /// Everything held written, the files flushed; how many packets had to be written out
    /// of time order (0 but for packets later than the window).
    pub fn finish(mut self) -> io::Result<u64> {
        self.release(true)?;
        self.secrets()?;
        if let Some(w) = self.pcap.take() {
            w.into_inner()?;
        }
        if let Some(w) = self.pcapng.take() {
            w.into_inner()?;
        }
        Ok(self.window.late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::record::{Leg, SegmentRecord, Transition};
    use tcpshake_proto::tcp::State;
    use tcpshake_proto::time::Instant;
    use tcpshake_proto::wire::{TcpFlags, TcpOptions};

    fn captured(at: u64) -> Captured {
        Captured {
            at: Instant::from_nanos(at),
            bytes: at.to_le_bytes().to_vec(),
            note: None,
        }
    }

    #[test]
    fn the_window_puts_packets_in_time_order() {
        let mut w = Reorder::default();
        let ms = 1_000_000;
        // Two taps read one after the other, and a fragment held a while.
        for at in [10 * ms, 12 * ms, 11 * ms, 5 * ms, 13 * ms] {
            w.push(captured(at));
        }
        assert!(w.pop(false).is_none(), "nothing is 100 ms old yet");
        w.push(captured(111 * ms));
        let out: Vec<u64> = std::iter::from_fn(|| w.pop(false))
            .map(|c| c.at.as_nanos())
            .collect();
        assert_eq!(out, [5 * ms, 10 * ms, 11 * ms]);
        let rest: Vec<u64> = std::iter::from_fn(|| w.pop(true))
            .map(|c| c.at.as_nanos())
            .collect();
        assert_eq!(rest, [12 * ms, 13 * ms, 111 * ms]);
        assert_eq!(w.late, 0);
        // Later than the window: written anyway, and counted.
        w.push(captured(ms));
        assert!(w.pop(true).is_some());
        assert_eq!(w.late, 1);
    }

    /// A survey's batches give back what was written, in the batch's own `Vec` (for the
    /// loop that allocated them to free: app/survey.rs `Records::Writer`).
    #[test]
    fn seen_gives_back_the_packets_written() {
        let path = std::env::temp_dir().join(format!("tcpshake-back-{}.pcap", std::process::id()));
        let file = BufWriter::new(File::create(&path).unwrap());
        let mut c = CaptureFiles::new(Some(PcapWriter::new(file).unwrap()), None, None);
        let ms = 1_000_000;
        let held = c.seen(vec![captured(10 * ms), captured(12 * ms)]).unwrap();
        assert!(held.is_empty(), "nothing is 100 ms old yet");
        // Room for what comes back: the batch's own allocation is reused.
        let mut batch = vec![captured(112 * ms)];
        batch.reserve_exact(3);
        let at = batch.as_ptr();
        let back = c.seen(batch).unwrap();
        assert_eq!(back.as_ptr(), at);
        let stamps: Vec<u64> = back.iter().map(|p| p.at.as_nanos()).collect();
        assert_eq!(stamps, [10 * ms, 12 * ms]);
        // More written than the batch has room for: the rest comes back with the next
        // one, and the batch's Vec is never grown (reallocated) here.
        c.seen(vec![
            captured(113 * ms),
            captured(114 * ms),
            captured(115 * ms),
        ])
        .unwrap();
        let mut small = vec![captured(300 * ms)];
        small.shrink_to_fit();
        let at = small.as_ptr();
        let back = c.seen(small).unwrap();
        assert_eq!((back.as_ptr(), back.len()), (at, 1));
        let next = c.seen(Vec::with_capacity(8)).unwrap();
        let stamps: Vec<u64> = back.iter().chain(&next).map(|p| p.at.as_nanos()).collect();
        assert_eq!(stamps, [112 * ms, 113 * ms, 114 * ms, 115 * ms]);
        assert_eq!(c.finish().unwrap(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut w = Reorder::default();
        for at in 0..(MAX_HELD as u64 + 10) {
            w.push(captured(1_000 + at));
            while w.pop(false).is_some() {}
        }
        assert_eq!(w.len(), MAX_HELD);
    }

    #[test]
    fn a_probes_fragments_go_in_time_order_with_its_keys_first() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("tcpshake-capture-{}.pcapng", std::process::id()));
        let file = BufWriter::new(File::create(&path).unwrap());
        let keys = std::sync::Arc::new(SessionKeys::default());
        rustls::KeyLog::log(&*keys, "CLIENT_RANDOM", &[1], &[2]);
        let mut c = CaptureFiles::new(None, Some(PcapngWriter::new(file).unwrap()), Some(keys));
        // A segment that came between two fragments is listed before them (the datagram
        // reached the probe when its last fragment came).
        c.probe(&[captured(20), captured(10), captured(30)])
            .unwrap();
        assert_eq!(c.finish().unwrap(), 0);
        let b = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut kinds = Vec::new();
        let mut stamps = Vec::new();
        let mut at = 0;
        while at + 8 <= b.len() {
            let kind = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            if kind == 6 {
                stamps.push(u32::from_le_bytes(b[at + 16..at + 20].try_into().unwrap()));
            }
            kinds.push(kind);
            at += len;
        }
        assert_eq!(kinds, [0x0A0D_0D0A, 1, 10, 6, 6, 6]);
        assert_eq!(stamps, [10, 20, 30]);
    }

    /// A single probe hands its packets over as they come (a fragment's datagram after a
    /// later segment) and the files are flushed before the next probe: all of them are in
    /// the file then, in time order.
    #[test]
    fn a_single_probes_packets_are_in_the_file_in_order_once_flushed() {
        let path = std::env::temp_dir().join(format!("tcpshake-flush-{}.pcap", std::process::id()));
        let file = BufWriter::new(File::create(&path).unwrap());
        let mut c = CaptureFiles::new(Some(PcapWriter::new(file).unwrap()), None, None);
        for at in [20, 10, 30] {
            c.seen(vec![captured(at)]).unwrap();
        }
        c.flush().unwrap();
        let b = std::fs::read(&path).unwrap();
        // 24 bytes of file header, then 16 of record header and 8 of packet each.
        let stamps: Vec<u32> = (0..3)
            .map(|i| u32::from_le_bytes(b[24 + i * 24 + 4..24 + i * 24 + 8].try_into().unwrap()))
            .collect();
        assert_eq!((b.len(), stamps), (24 + 3 * 24, vec![10, 20, 30]));
        assert_eq!(c.finish().unwrap(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn keys_come_as_nss_key_log_lines() {
        let k = SessionKeys::default();
        rustls::KeyLog::log(
            &k,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            &[0xab, 0x01],
            &[0xff],
        );
        assert_eq!(k.take(), b"CLIENT_HANDSHAKE_TRAFFIC_SECRET ab01 ff\n");
        assert!(k.take().is_empty());
    }

    #[test]
    fn comments_say_direction_changes_legs_and_http() {
        let seg = SegmentRecord {
            dir: Dir::In,
            t_ns: 41_000,
            ts_ns: 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            seq: 1,
            ack: 2,
            win: 1,
            len: 0,
            options: TcpOptions::default(),
            ttl: 64,
            retransmission: true,
            transitions: vec![Transition {
                from: State::SynSent,
                to: State::Established,
            }],
            bad_checksum: false,
            foreign: false,
            kernel: false,
            urgent: None,
            fragments: 3,
            omitted_before: 0,
        };
        let note = PacketNote {
            segment: Some(seg),
            legs: vec![(Leg::SynToSynack, 41_234)],
            label: Some("HEAD / HTTP/1.1".into()),
            notes: vec!["a note".into()],
        };
        assert_eq!(
            comment(&note),
            "tcpshake: received; SYN-SENT → ESTABLISHED; retransmission; reassembled from 3 IP \
             fragments; HEAD / HTTP/1.1; syn_to_synack 41.2 µs; a note"
        );
        let icmp = PacketNote {
            notes: vec!["ICMP frag-needed mtu 1000".into()],
            ..Default::default()
        };
        assert_eq!(comment(&icmp), "tcpshake: ICMP frag-needed mtu 1000");
    }

    /// A survey's handshake ACK sent by the kernel program (io/reflex.rs) says so, as the
    /// record's `kernel` does: its timing (and, with tx offload, its checksum left to the
    /// device) is the kernel's.
    #[test]
    fn a_comment_says_the_kernel_program_sent_the_segment() {
        let seg = SegmentRecord {
            dir: Dir::Out,
            t_ns: 45_000,
            ts_ns: 1,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            seq: 1,
            ack: 1,
            win: 1024,
            len: 98,
            options: TcpOptions::default(),
            ttl: 64,
            retransmission: false,
            transitions: Vec::new(),
            bad_checksum: false,
            foreign: false,
            kernel: true,
            urgent: None,
            fragments: 1,
            omitted_before: 0,
        };
        let note = PacketNote {
            segment: Some(seg),
            legs: vec![(Leg::SynackToAck, 1_500)],
            label: Some("HEAD / HTTP/1.1".into()),
            notes: Vec::new(),
        };
        assert_eq!(
            comment(&note),
            "tcpshake: sent; by tcpshake's kernel program; HEAD / HTTP/1.1; synack_to_ack 1.5 µs"
        );
    }
}

//! The IP reassembler fed a stream of fragments whose fields the fuzzer chooses —
//! IPv4 and IPv6, a handful of identifications so they collide, any offset, length, MF/M,
//! unfragmentable IPv6 headers, time jumps — mixed with raw bytes. No panic, the queue
//! never passes its bound, and every datagram it completes is a whole packet that parses
//! as unfragmented and fits 65 535 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_fuzz::*;
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::IpPacket;
use tcpshake_proto::wire::checksum::internet_checksum;
use tcpshake_proto::wire::defrag::{Defrag, Defragged, MAX_DATAGRAMS, MAX_LEN};
use tcpshake_proto::wire::ip::IpRepr;

fn v4_fragment(b: &mut Bytes<'_>) -> Vec<u8> {
    let ident = u16::from(b.u8() % 4);
    let protocol = [6u8, 1, 17][usize::from(b.u8() % 3)];
    let offset_units = b.u16() & 0x1fff;
    let more = b.u8() & 1 == 1;
    let len = usize::from(b.u16()) % 2048;
    let mut ip = IpRepr::new(SERVER4, CLIENT4, protocol, 64, len);
    ip.ident = ident;
    ip.dont_frag = false;
    let mut p = vec![0u8; 20 + len];
    if ip.emit(&mut p).is_err() {
        return Vec::new();
    }
    let fill = b.u8();
    p[20..].iter_mut().for_each(|x| *x = fill);
    let word = offset_units | if more { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&word.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(0, &p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p
}

fn v6_fragment(b: &mut Bytes<'_>) -> Vec<u8> {
    let ident = u32::from(b.u8() % 4);
    let offset_units = b.u16() & 0x1fff;
    let more = b.u8() & 1 == 1;
    let len = usize::from(b.u16()) % 2048;
    let hop = b.u8() & 1 == 1;
    let next = [6u8, 58, 60, 17][usize::from(b.u8() % 4)];
    let mut after = Vec::new();
    if hop {
        after.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    }
    let word = (offset_units << 3) | u16::from(more);
    after.push(next);
    after.push(0);
    after.extend_from_slice(&word.to_be_bytes());
    after.extend_from_slice(&ident.to_be_bytes());
    let data = b.take(len).to_vec();
    after.extend_from_slice(&data);
    let first = if hop { 0 } else { 44 };
    let ip = IpRepr::new(SERVER6, CLIENT6, first, 64, after.len());
    let mut p = vec![0u8; 40];
    if ip.emit(&mut p).is_err() {
        return Vec::new();
    }
    p.extend_from_slice(&after);
    p
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut defrag = Defrag::new(b.u8() & 1 == 1);
    let mut now = 1_000_000_000_000u64;
    // Bounded by the input.
    while !b.is_empty() {
        now += u64::from(b.u16()) * 1_000_000 * u64::from(b.u8() % 8);
        let packet = match b.u8() % 3 {
            0 => v4_fragment(&mut b),
            1 => v6_fragment(&mut b),
            _ => {
                let n = usize::from(b.u8());
                b.take(n).to_vec()
            }
        };
        match defrag.push(Instant::from_nanos(now), &packet, b.u8() & 1 == 1) {
            Defragged::Complete(d) => {
                assert!(d.fragments >= 2);
                assert!(d.bytes.len() <= MAX_LEN + 40);
                if let Ok(p) = IpPacket::parse(&d.bytes) {
                    assert!(p.fragment.is_none());
                } else {
                    // Only an IPv6 datagram whose reassembled chain is broken may not parse.
                    assert_eq!(d.bytes[0] >> 4, 6);
                }
            }
            Defragged::Whole | Defragged::Held | Defragged::Dropped(_) => {}
        }
        assert!(defrag.pending() <= MAX_DATAGRAMS);
    }
});

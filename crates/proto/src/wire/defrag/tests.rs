//! The reassembler's rules, one test each, and properties over random fragmentations.

use super::*;
use crate::wire::ip::{
    IPV6_DEST_OPTS, IPV6_FRAGMENT, IPV6_HOP_BY_HOP, IPV6_ROUTING, IpRepr, PROTO_ICMP, PROTO_TCP,
};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const C4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));

fn t(ms: u64) -> Instant {
    Instant::from_nanos(1_000_000_000_000 + ms * 1_000_000)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An IPv4 datagram from A4 to B4 (no DF, identification `ident`) carrying `data`.
fn datagram4(src: IpAddr, protocol: u8, ident: u16, data: &[u8]) -> Vec<u8> {
    let mut ip = IpRepr::new(src, B4, protocol, 64, data.len());
    ip.ident = ident;
    ip.dont_frag = false;
    let mut buf = vec![0u8; 20 + data.len()];
    ip.emit(&mut buf).unwrap();
    buf[20..].copy_from_slice(data);
    buf
}

/// The piece `[start, end)` of `datagram`'s data as an IPv4 fragment.
fn frag4(datagram: &[u8], start: usize, end: usize, more: bool) -> Vec<u8> {
    let mut f = datagram[..20].to_vec();
    f.extend_from_slice(&datagram[20 + start..20 + end]);
    let total = f.len() as u16;
    f[2..4].copy_from_slice(&total.to_be_bytes());
    let word = (start / 8) as u16 | if more { 0x2000 } else { 0 };
    f[6..8].copy_from_slice(&word.to_be_bytes());
    f[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::internet_checksum(0, &f[..20]);
    f[10..12].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Extension headers, each given as (kind, bytes after its Next Header byte), in a row.
fn chain_bytes(chain: &[(u8, Vec<u8>)], last_next: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (_, body)) in chain.iter().enumerate() {
        out.push(chain.get(i + 1).map_or(last_next, |(k, _)| *k));
        out.extend_from_slice(body);
    }
    out
}

fn v6_header(first: u8, plen: usize) -> Vec<u8> {
    let ip = IpRepr::new(A6, B6, first, 64, plen);
    let mut buf = vec![0u8; 40];
    ip.emit(&mut buf).unwrap();
    buf
}

/// The IPv6 datagram as its source had it before fragmenting: `unfrag` headers, then
/// `data` (the fragmentable part, starting with the upper layer `upper`).
fn datagram6(unfrag: &[(u8, Vec<u8>)], upper: u8, data: &[u8]) -> Vec<u8> {
    let ext = chain_bytes(unfrag, upper);
    let first = unfrag.first().map_or(upper, |(k, _)| *k);
    let mut out = v6_header(first, ext.len() + data.len());
    out.extend_from_slice(&ext);
    out.extend_from_slice(data);
    out
}

/// The piece `[start, end)` of `data` as an IPv6 fragment behind `unfrag`.
fn frag6(
    unfrag: &[(u8, Vec<u8>)],
    upper: u8,
    ident: u32,
    data: &[u8],
    start: usize,
    end: usize,
    more: bool,
) -> Vec<u8> {
    let ext = chain_bytes(unfrag, IPV6_FRAGMENT);
    let first = unfrag.first().map_or(IPV6_FRAGMENT, |(k, _)| *k);
    let piece = &data[start..end];
    let mut out = v6_header(first, ext.len() + 8 + piece.len());
    out.extend_from_slice(&ext);
    let word = ((start / 8) as u16) << 3 | u16::from(more);
    out.extend_from_slice(&[upper, 0]);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(piece);
    out
}

fn complete(d: Defragged) -> Reassembled {
    match d {
        Defragged::Complete(r) => r,
        other => panic!("expected a complete datagram, got {other:?}"),
    }
}

#[test]
fn whole_packets_and_atomic_fragments_pass_untouched() {
    let mut dg = Defrag::new(false);
    let mut whole = datagram4(A4, PROTO_TCP, 9, &payload(40));
    whole[6] = 0x40; // DF
    whole[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::internet_checksum(0, &whole[..20]);
    whole[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(dg.push(t(0), &whole, false), Defragged::Whole);
    assert_eq!(dg.push(t(0), b"not ip", false), Defragged::Whole);
    assert_eq!(
        dg.push(t(0), &datagram6(&[], PROTO_TCP, &payload(20)), false),
        Defragged::Whole
    );
    // RFC 6946: offset 0, M clear — processed at once, even while a real reassembly with
    // the same identification is under way.
    let data = payload(64);
    let first = frag6(&[], PROTO_TCP, 77, &data, 0, 32, true);
    assert_eq!(dg.push(t(0), &first, false), Defragged::Held);
    let atomic = frag6(&[], PROTO_TCP, 77, &data, 0, 64, false);
    assert_eq!(dg.push(t(1), &atomic, false), Defragged::Whole);
    assert_eq!(
        dg.pending(),
        1,
        "the atomic fragment did not touch the queue"
    );
    let last = frag6(&[], PROTO_TCP, 77, &data, 32, 64, false);
    let r = complete(dg.push(t(2), &last, false));
    assert_eq!(r.bytes, datagram6(&[], PROTO_TCP, &data));
}

#[test]
fn v4_in_order_and_out_of_order() {
    let data = payload(3000);
    let original = datagram4(A4, PROTO_TCP, 0x1234, &data);
    let cuts = [(0, 1480, true), (1480, 2960, true), (2960, 3000, false)];
    let frags: Vec<Vec<u8>> = cuts
        .iter()
        .map(|&(a, b, m)| frag4(&original, a, b, m))
        .collect();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        let mut dg = Defrag::new(false);
        assert_eq!(dg.push(t(0), &frags[order[0]], false), Defragged::Held);
        assert_eq!(dg.push(t(1), &frags[order[1]], false), Defragged::Held);
        let r = complete(dg.push(t(5), &frags[order[2]], true));
        assert_eq!(r.bytes, original, "order {order:?}");
        assert_eq!(r.fragments, 3);
        assert_eq!(r.first_at, t(0));
        assert!(r.checksum_offloaded);
        assert_eq!(dg.pending(), 0);
        let p = IpPacket::parse(&r.bytes).unwrap();
        assert_eq!((p.fragment, p.payload), (None, &data[..]));
    }
}

#[test]
fn v4_reassembly_keeps_df_clears_mf_and_takes_the_first_header() {
    let data = payload(48);
    let original = datagram4(A4, PROTO_TCP, 5, &data);
    let mut first = frag4(&original, 0, 24, true);
    let mut last = frag4(&original, 24, 48, false);
    // The last fragment's TTL differs (another path): the first fragment's header wins.
    last[8] = 3;
    for f in [&mut first, &mut last] {
        f[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::internet_checksum(0, &f[..20]);
        f[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let mut dg = Defrag::new(false);
    dg.push(t(0), &last, false);
    let r = complete(dg.push(t(1), &first, false));
    assert_eq!(r.bytes, original);
}

#[test]
fn tiny_first_fragment_splitting_the_tcp_header() {
    // RFC 1858's tiny fragment: the first fragment carries only the ports and sequence
    // number; flags and the rest come in the second.
    let data = payload(40);
    let original = datagram4(A4, PROTO_TCP, 1, &data);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 0, 8, true), false),
        Defragged::Held
    );
    let r = complete(dg.push(t(0), &frag4(&original, 8, 40, false), false));
    assert_eq!(r.bytes, original);
    assert_eq!(r.fragments, 2);
}

#[test]
fn v6_first_fragment_must_hold_the_header_chain() {
    // RFC 8200 §4.5 (RFC 7112): 16 bytes of a TCP header are not enough; Linux drops it.
    let data = payload(40);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag6(&[], PROTO_TCP, 5, &data, 0, 16, true), false),
        Defragged::Dropped(Discard::Malformed)
    );
    assert_eq!(dg.pending(), 0);
    // 24 bytes hold the 20-byte header: fine, and the options may follow later.
    assert_eq!(
        dg.push(t(0), &frag6(&[], PROTO_TCP, 5, &data, 0, 24, true), false),
        Defragged::Held
    );
    complete(dg.push(t(0), &frag6(&[], PROTO_TCP, 5, &data, 24, 40, false), false));
    // A destination-options header that the first fragment cuts: dropped as well.
    let mut dd = chain_bytes(
        &[(
            IPV6_DEST_OPTS,
            vec![1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        )],
        PROTO_TCP,
    );
    dd.extend_from_slice(&payload(40));
    assert_eq!(
        dg.push(t(0), &frag6(&[], IPV6_DEST_OPTS, 6, &dd, 0, 8, true), false),
        Defragged::Dropped(Discard::Malformed)
    );
}

#[test]
fn duplicates_are_ignored_and_not_counted() {
    let data = payload(64);
    let original = datagram4(A4, PROTO_TCP, 2, &data);
    let mut dg = Defrag::new(false);
    let a = frag4(&original, 0, 32, true);
    assert_eq!(dg.push(t(0), &a, false), Defragged::Held);
    assert_eq!(
        dg.push(t(1), &a, false),
        Defragged::Dropped(Discard::Duplicate)
    );
    // Inside what has arrived, even with other bytes: Linux's IPFRAG_DUP does not compare.
    let inner = frag4(&original, 8, 16, true);
    assert_eq!(
        dg.push(t(1), &inner, false),
        Defragged::Dropped(Discard::Duplicate)
    );
    let r = complete(dg.push(t(2), &frag4(&original, 32, 64, false), false));
    assert_eq!(r.fragments, 2);
    assert_eq!(r.bytes, original);
    assert_eq!(dg.stats().duplicates, 2);
}

#[test]
fn v4_overlap_discards_the_datagram() {
    let data = payload(64);
    let original = datagram4(A4, PROTO_TCP, 3, &data);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 0, 32, true), false),
        Defragged::Held
    );
    // 24..48 overlaps 0..32 without lying inside it.
    assert_eq!(
        dg.push(t(1), &frag4(&original, 24, 48, true), false),
        Defragged::Dropped(Discard::Overlap)
    );
    assert_eq!(dg.pending(), 0);
    // What comes after starts afresh and cannot complete without its first part.
    assert_eq!(
        dg.push(t(2), &frag4(&original, 32, 64, false), false),
        Defragged::Held
    );
    assert_eq!(dg.stats().overlaps, 1);
}

#[test]
fn v6_overlap_discards_the_datagram() {
    let data = payload(64);
    let mut dg = Defrag::new(false);
    let f = |a, b, m| frag6(&[], PROTO_TCP, 9, &data, a, b, m);
    assert_eq!(dg.push(t(0), &f(16, 48, true), false), Defragged::Held);
    assert_eq!(
        dg.push(t(0), &f(0, 24, true), false),
        Defragged::Dropped(Discard::Overlap)
    );
    assert_eq!(dg.pending(), 0);
}

#[test]
fn v6_with_unfragmentable_headers_is_rebuilt_per_rfc8200() {
    let hop: (u8, Vec<u8>) = (IPV6_HOP_BY_HOP, vec![0, 1, 4, 0, 0, 0, 0]);
    let routing: (u8, Vec<u8>) = (IPV6_ROUTING, {
        let mut b = vec![2u8, 4, 0]; // SRH, 24 bytes, segments left 0
        b.resize(23, 0);
        b
    });
    let unfrag = vec![hop, routing];
    // The fragmentable part starts with a destination-options header, then TCP.
    let mut data = chain_bytes(&[(IPV6_DEST_OPTS, vec![0, 1, 4, 0, 0, 0, 0])], PROTO_TCP);
    data.extend_from_slice(&payload(1500));
    let mut dg = Defrag::new(true);
    let cut = 1232 & !7;
    let first = frag6(&unfrag, IPV6_DEST_OPTS, 0xabcd, &data, 0, cut, true);
    let second = frag6(
        &unfrag,
        IPV6_DEST_OPTS,
        0xabcd,
        &data,
        cut,
        data.len(),
        false,
    );
    assert_eq!(dg.push(t(0), &second, false), Defragged::Held);
    let r = complete(dg.push(t(3), &first, false));
    assert_eq!(r.bytes, datagram6(&unfrag, IPV6_DEST_OPTS, &data));
    assert_eq!(r.originals, vec![(t(0), second), (t(3), first)]);
    let p = IpPacket::parse(&r.bytes).unwrap();
    assert_eq!(p.ip.protocol, PROTO_TCP);
    assert_eq!(p.payload, &payload(1500)[..]);
    assert_eq!(p.fragment, None);
}

#[test]
fn odd_lengths() {
    // IPv6: a non-last fragment of 28 bytes is dropped alone; the datagram goes on.
    let data = payload(40);
    let mut dg = Defrag::new(false);
    let f = |a, b, m| frag6(&[], PROTO_TCP, 4, &data, a, b, m);
    assert_eq!(
        dg.push(t(0), &f(0, 28, true), false),
        Defragged::Dropped(Discard::Malformed)
    );
    assert_eq!(dg.push(t(0), &f(0, 24, true), false), Defragged::Held);
    let r = complete(dg.push(t(0), &f(24, 40, false), false));
    assert_eq!(r.bytes, datagram6(&[], PROTO_TCP, &data));

    // IPv4: trimmed to 8 bytes (Linux), the rest arrives again in the next fragment.
    let original = datagram4(A4, PROTO_TCP, 4, &data);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 0, 12, true), false),
        Defragged::Held
    );
    let r = complete(dg.push(t(0), &frag4(&original, 8, 40, false), false));
    assert_eq!(r.bytes, original);
}

#[test]
fn empty_and_inconsistent_last_fragments_discard() {
    let data = payload(64);
    let original = datagram4(A4, PROTO_TCP, 6, &data);
    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag4(&original, 0, 32, true), false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 32, 32, false), false),
        Defragged::Dropped(Discard::Malformed),
        "empty fragment"
    );
    assert_eq!(dg.pending(), 0);

    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag4(&original, 32, 64, false), false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 8, 48, false), false),
        Defragged::Dropped(Discard::Malformed),
        "a second last fragment with another end"
    );
    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag4(&original, 40, 64, true), false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 8, 32, false), false),
        Defragged::Dropped(Discard::Malformed),
        "data already past the last fragment's end"
    );
    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag4(&original, 8, 32, false), false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 32, 64, true), false),
        Defragged::Dropped(Discard::Malformed),
        "data past the known end"
    );
}

#[test]
fn past_65535() {
    // IPv4: the last fragment at offset 65 512 with 8+ bytes makes the datagram
    // 20 + 65 520 + … > 65 535: discarded.
    let mut f = datagram4(A4, PROTO_TCP, 7, &payload(24));
    f[6..8].copy_from_slice(&((65_512 / 8) as u16).to_be_bytes());
    f[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::internet_checksum(0, &f[..20]);
    f[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &f, false),
        Defragged::Dropped(Discard::TooBig)
    );
    assert_eq!(dg.pending(), 0);

    // IPv6: a fragment ending past 65 535 is dropped alone.
    let data = payload(48);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag6(&[], PROTO_TCP, 8, &data, 0, 24, true), false),
        Defragged::Held
    );
    let mut far = frag6(&[], PROTO_TCP, 8, &data, 24, 48, false);
    far[42..44].copy_from_slice(&(((65_528 / 8) as u16) << 3).to_be_bytes());
    assert_eq!(
        dg.push(t(0), &far, false),
        Defragged::Dropped(Discard::TooBig)
    );
    assert_eq!(dg.pending(), 1);

    // IPv4 whose pieces fit but whose first header (with options) makes it too long.
    let mut dg = Defrag::new(false);
    let big = payload(65_515);
    let original = datagram4(A4, PROTO_TCP, 9, &big);
    let mut first = frag4(&original, 0, 32_000, true);
    // IHL 6 with 4 option bytes: 24 + 65 515 > 65 535.
    first.splice(20..20, [1, 1, 1, 0]);
    first[0] = 0x46;
    let total = first.len() as u16;
    first[2..4].copy_from_slice(&total.to_be_bytes());
    first[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::internet_checksum(0, &first[..24]);
    first[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(dg.push(t(0), &first, false), Defragged::Held);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 32_000, 65_515, false), false),
        Defragged::Dropped(Discard::TooBig)
    );
}

#[test]
fn timeout_is_measured_on_the_callers_timestamps() {
    let data = payload(64);
    let original = datagram4(A4, PROTO_TCP, 10, &data);
    let mut dg = Defrag::new(false);
    assert_eq!(
        dg.push(t(0), &frag4(&original, 0, 32, true), false),
        Defragged::Held
    );
    // Just before the timeout: still there.
    dg.expire(t(29_999));
    assert_eq!(dg.pending(), 1);
    // The rest 30 s after the first: the first is forgotten, the rest waits alone.
    let late = t(30_000);
    assert_eq!(
        dg.push(late, &frag4(&original, 32, 64, false), false),
        Defragged::Held
    );
    assert_eq!(dg.stats().timed_out, 1);
    assert_eq!(dg.pending(), 1);
}

#[test]
fn oldest_datagram_is_evicted_when_full() {
    let data = payload(64);
    let mut dg = Defrag::new(false);
    let originals: Vec<Vec<u8>> = (0..=MAX_DATAGRAMS as u16)
        .map(|i| datagram4(A4, PROTO_TCP, 100 + i, &data))
        .collect();
    for (i, o) in originals.iter().enumerate() {
        assert_eq!(
            dg.push(t(i as u64), &frag4(o, 0, 32, true), false),
            Defragged::Held
        );
        assert!(dg.pending() <= MAX_DATAGRAMS);
    }
    assert_eq!(dg.stats().evicted, 1);
    // The first one (oldest) is gone; the second still completes.
    assert_eq!(
        dg.push(t(100), &frag4(&originals[0], 32, 64, false), false),
        Defragged::Held
    );
    complete(dg.push(t(100), &frag4(&originals[2], 32, 64, false), false));
}

/// A probe hears only its server: junk fragments from anywhere else cannot evict the
/// server's datagram (20 of them did, and the response waited for a retransmission).
#[test]
fn fragments_from_unwanted_sources_take_no_slot() {
    let data = payload(64);
    let real = datagram4(A4, PROTO_TCP, 7, &data);
    let mut dg = Defrag::new(false);
    let only_a = |src: IpAddr| src == A4;
    assert_eq!(
        dg.push_from(t(0), &frag4(&real, 0, 32, true), false, only_a),
        Defragged::Held
    );
    for i in 0..(MAX_DATAGRAMS as u16 + 4) {
        let junk = datagram4(C4, PROTO_TCP, 1000 + i, &data);
        assert_eq!(
            dg.push_from(t(1), &frag4(&junk, 0, 32, true), false, only_a),
            Defragged::Dropped(Discard::Foreign)
        );
    }
    assert_eq!((dg.pending(), dg.stats().evicted), (1, 0));
    assert_eq!(dg.stats().foreign, u64::from(MAX_DATAGRAMS as u16 + 4));
    let r = complete(dg.push_from(t(2), &frag4(&real, 32, 64, false), false, only_a));
    assert_eq!(r.bytes, real);
}

#[test]
fn keys_keep_datagrams_apart() {
    let data = payload(64);
    let from_a = datagram4(A4, PROTO_TCP, 11, &data);
    let from_c = datagram4(C4, PROTO_TCP, 11, &data);
    let icmp = datagram4(A4, PROTO_ICMP, 11, &data);
    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag4(&from_a, 0, 32, true), false);
    dg.push(t(0), &frag4(&from_c, 0, 32, true), false);
    dg.push(t(0), &frag4(&icmp, 0, 32, true), false);
    assert_eq!(
        dg.pending(),
        3,
        "source and protocol are part of the IPv4 key"
    );
    let r = complete(dg.push(t(0), &frag4(&from_c, 32, 64, false), false));
    assert_eq!(r.bytes, from_c);
    let r = complete(dg.push(t(0), &frag4(&icmp, 32, 64, false), false));
    assert_eq!(r.bytes, icmp);
    // IPv6's key has no protocol (RFC 8200 §4.5): the same identification with another
    // Next Header in a later fragment belongs to the same datagram; the first fragment's
    // Next Header is the one that counts.
    let data6 = payload(48);
    let mut dg = Defrag::new(false);
    dg.push(t(0), &frag6(&[], PROTO_TCP, 12, &data6, 0, 24, true), false);
    let r = complete(dg.push(t(0), &frag6(&[], 17, 12, &data6, 24, 48, false), false));
    assert_eq!(r.bytes, datagram6(&[], PROTO_TCP, &data6));
}

#[test]
fn too_many_fragments_discards() {
    let data = payload(8 * (usize::from(MAX_FRAGMENTS) + 1));
    let original = datagram4(A4, PROTO_TCP, 13, &data);
    let mut dg = Defrag::new(false);
    for i in 0..usize::from(MAX_FRAGMENTS) {
        assert_eq!(
            dg.push(t(0), &frag4(&original, i * 8, i * 8 + 8, true), false),
            Defragged::Held
        );
    }
    let n = data.len();
    assert_eq!(
        dg.push(t(0), &frag4(&original, n - 8, n, false), false),
        Defragged::Dropped(Discard::TooManyFragments)
    );
    assert_eq!(dg.pending(), 0);
}

#[test]
fn insert_range_coalesces() {
    let mut have = Vec::new();
    for (a, b) in [(16, 24), (0, 8), (32, 40), (8, 16), (24, 32)] {
        insert_range(&mut have, a, b);
    }
    assert_eq!(have, vec![(0, 40)]);
    let mut have = vec![(0, 8), (16, 24)];
    insert_range(&mut have, 40, 48);
    assert_eq!(have, vec![(0, 8), (16, 24), (40, 48)]);
}

/// A fragmentation of `len` bytes: cut points on 8-byte boundaries.
fn cuts(len: usize, raw: &[u16]) -> Vec<(usize, usize, bool)> {
    let mut points: Vec<usize> = raw
        .iter()
        .map(|&r| (usize::from(r) % len.max(1)) & !7)
        .filter(|&p| p > 0 && p < len)
        .collect();
    // At least two pieces (one piece at offset 0 without MF is no fragment), the first
    // holding a TCP header's 20 bytes (RFC 8200 §4.5 asks that of IPv6).
    points.retain(|&p| p >= 24);
    points.extend([0, 24, len]);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| (w[0], w[1], w[1] != len))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However a datagram is cut and however its fragments are reordered or repeated, it
    /// completes exactly once, byte for byte, counting each fragment once.
    #[test]
    fn any_fragmentation_in_any_order_reassembles(
        len in 25usize..4000,
        raw_cuts in prop::collection::vec(any::<u16>(), 0..12),
        order in prop::collection::vec(any::<u32>(), 0..64),
        v6 in any::<bool>(),
    ) {
        let data = payload(len);
        let parts = cuts(len, &raw_cuts);
        let original4 = datagram4(A4, PROTO_TCP, 0x4242, &data);
        let make = |&(a, b, m): &(usize, usize, bool)| {
            if v6 {
                frag6(&[], PROTO_TCP, 0x4242, &data, a, b, m)
            } else {
                frag4(&original4, a, b, m)
            }
        };
        let frags: Vec<Vec<u8>> = parts.iter().map(make).collect();
        // Every fragment once, in a shuffled order, plus repeats chosen by `order`.
        let mut sequence: Vec<usize> = (0..frags.len()).collect();
        for (i, &o) in order.iter().enumerate() {
            let j = o as usize % sequence.len();
            if i % 2 == 0 {
                let k = i % sequence.len();
                sequence.swap(j, k);
            } else {
                sequence.push(j % frags.len());
            }
        }
        let mut dg = Defrag::new(false);
        let mut done = Vec::new();
        let mut seen = vec![false; frags.len()];
        for (n, &i) in sequence.iter().enumerate() {
            seen[i] = true;
            if let Defragged::Complete(r) = dg.push(t(n as u64), &frags[i], false) {
                // The first completion comes with the last missing fragment, not before.
                prop_assert!(!done.is_empty() || seen.iter().all(|&s| s));
                done.push(r);
            }
            prop_assert!(dg.pending() <= MAX_DATAGRAMS);
        }
        prop_assert!(frags.len() >= 2);
        // At least once; again only if every fragment came again after (a retransmission).
        prop_assert!(!done.is_empty());
        let want = if v6 { datagram6(&[], PROTO_TCP, &data) } else { original4.clone() };
        for r in &done {
            prop_assert_eq!(&r.bytes, &want);
            prop_assert_eq!(usize::from(r.fragments), frags.len());
        }
    }

    /// Arbitrary packets, fragments or not, never panic and never grow the queue past its
    /// bound.
    #[test]
    fn arbitrary_packets_never_panic(
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..40),
    ) {
        let mut dg = Defrag::new(true);
        for (i, p) in packets.iter().enumerate() {
            let _ = dg.push(t(i as u64 * 1000), p, false);
            prop_assert!(dg.pending() <= MAX_DATAGRAMS);
        }
    }
}

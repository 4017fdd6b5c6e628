//! A whole trace (SYN or in-session mode) fed arbitrary packets as the tap would deliver
//! them: raw bytes, copies of its own probes, ICMP errors quoting them (cut, with fields
//! changed), and segments from the destination, with timeouts in between. No panic, the
//! record always serialises, and nothing is sent anywhere but the target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tcpshake_fuzz::*;
use tcpshake_proto::time::Instant;
use tcpshake_proto::trace::record::TraceMode;
use tcpshake_proto::trace::{Trace, TraceConfig};
use tcpshake_proto::wire::checksum;
use tcpshake_proto::wire::ip::{IpRepr, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use tcpshake_proto::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

const T0: u64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let v6 = b.u8() % 2 == 1;
    let mode = if b.u8() % 2 == 1 {
        TraceMode::InSession
    } else {
        TraceMode::Syn
    };
    let tcp = tcp_config(b.u32(), v6);
    let (client, server) = (tcp.local, tcp.remote);
    let mut trace = Trace::new(TraceConfig {
        target: server.to_string(),
        mode,
        tcp,
        first_ttl: 1 + b.u8() % 4,
        max_ttl: 4 + b.u8() % 12,
        probes: 1 + b.u8() % 3,
        parallel: 1 + b.u8() % 8,
        timeout: Duration::from_millis(1 + u64::from(b.u16())),
        interval: Duration::from_micros(u64::from(b.u16())),
        gap: 1 + b.u8() % 5,
        tos: b.u8(),
        ident: b.u16(),
        hop_limit: 64,
        close_timeout: Duration::from_secs(2),
    });
    let mut now = Instant::from_nanos(T0);
    trace.start(now);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for _ in 0..256 {
        if b.is_empty() || trace.is_done() {
            break;
        }
        while let Some(t) = trace.poll_transmit(now) {
            assert_eq!(t.dst, server.ip(), "sent to someone else");
            if sent.len() < 64 {
                sent.push(datagram(&t.bytes, v6, t.hop_limit, client.ip(), server.ip()));
            }
        }
        now += Duration::from_micros(u64::from(b.u16()) * 16);
        match b.u8() % 6 {
            0 => {
                let n = usize::from(b.u8()) * 2;
                let raw = b.take(n).to_vec();
                let _ = trace.handle_packet(now, b.u8() % 2 == 0, &raw, b.u8() % 2 == 0);
            }
            1 => {
                if let Some(at) = trace.poll_timeout() {
                    now = now.max(at);
                    trace.handle_timeout(now);
                }
            }
            2 if !sent.is_empty() => {
                // Our own copy on the tap.
                let i = usize::from(b.u8()) % sent.len();
                let _ = trace.handle_packet(now, true, &sent[i].clone(), false);
            }
            3 | 4 if !sent.is_empty() => {
                // An ICMP error quoting one of ours, cut and with a byte changed.
                let i = usize::from(b.u8()) % sent.len();
                let mut q = sent[i].clone();
                let cut = usize::from(b.u8()).max(20).min(q.len());
                q.truncate(cut);
                if b.u8() % 2 == 0 && !q.is_empty() {
                    let j = usize::from(b.u8()) % q.len();
                    q[j] ^= b.u8() | 1;
                }
                let (ty, code) = if v6 { (b.u8() % 4, b.u8() % 8) } else { ([3u8, 11][usize::from(b.u8() % 2)], b.u8() % 16) };
                let mut m = vec![ty, code, 0, 0, 0, b.u8() % 2 * 32, 0, 0];
                m.extend_from_slice(&q);
                let router = if v6 { SERVER6 } else { SERVER4 };
                let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
                let sum = if v6 {
                    checksum::upper_layer_checksum(router, client.ip(), proto, &m)
                } else {
                    checksum::internet_checksum(0, &m)
                };
                m[2..4].copy_from_slice(&sum.to_be_bytes());
                let ip = IpRepr::new(router, client.ip(), proto, 60, m.len());
                let mut pkt = vec![0u8; ip.header_len()];
                if ip.emit(&mut pkt).is_ok() {
                    pkt.extend_from_slice(&m);
                    let _ = trace.handle_packet(now, false, &pkt, false);
                }
            }
            _ => {
                // A segment from the destination.
                let seg = TcpRepr {
                    src_port: server.port(),
                    dst_port: client.port(),
                    seq: SeqNumber(b.u32()),
                    ack: SeqNumber(b.u32()),
                    flags: TcpFlags(b.u16() & 0x1ff),
                    window: b.u16(),
                    urgent: 0,
                    options: if b.u8() % 2 == 0 {
                        TcpOptions::default().with_timestamps(b.u32(), b.u32())
                    } else {
                        TcpOptions::default()
                    },
                    payload: &[],
                };
                let ip = IpRepr::new(server.ip(), client.ip(), PROTO_TCP, 60, seg.buffer_len());
                let mut buf = vec![0u8; ip.header_len() + seg.buffer_len()];
                let Ok(n) = ip.emit(&mut buf) else { return };
                if seg.emit(server.ip(), client.ip(), &mut buf[n..]).is_ok() {
                    let _ = trace.handle_packet(now, false, &buf, false);
                }
            }
        }
    }
    let r = trace.record();
    assert!(r.hops.len() <= 255);
    serde_json::to_string(&r).expect("a record always serialises");
});

/// What the kernel puts on the wire for a transmit (IPv6: the header it writes).
fn datagram(bytes: &[u8], v6: bool, hops: u8, src: std::net::IpAddr, dst: std::net::IpAddr) -> Vec<u8> {
    if !v6 {
        return bytes.to_vec();
    }
    let ip = IpRepr::new(src, dst, PROTO_TCP, hops, bytes.len());
    let mut out = vec![0u8; 40];
    let _ = ip.emit(&mut out);
    out.extend_from_slice(bytes);
    out
}

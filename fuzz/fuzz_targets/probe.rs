//! A whole probe fed arbitrary packets as the tap would deliver them: raw bytes, and
//! well-formed segments and ICMP errors on our 4-tuple with fuzzer-chosen fields, in and
//! out, with timeouts in between. No panic; the result always serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tcpshake_proto::probe::{HttpRequest, Probe, ProbeConfig};
use tcpshake_proto::time::Instant;
use tcpshake_proto::wire::ip::{IpRepr, PROTO_TCP};
use tcpshake_proto::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use tcpshake_fuzz::*;

const T0: u64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let v6 = b.u8() % 2 == 1;
    let tcp = tcp_config(b.u32(), v6);
    let (client, server) = (tcp.local, tcp.remote);
    let mut probe = Probe::new(ProbeConfig {
        target: server.to_string(),
        tcp,
        http: Some(HttpRequest::new("/", "h").expect("a valid request")),
        timeout: Duration::from_secs(5),
        linger: Duration::from_millis(200),
        tls: None,
        mss_hint: "`--mss {}`",
    });
    let mut now = Instant::from_nanos(T0);
    probe.start(now);
    let mut ours = Vec::new();
    for _ in 0..128 {
        if b.is_empty() || probe.is_done() {
            break;
        }
        while let Some(s) = probe.poll_transmit(now) {
            ours.push((s.seq, s.ack));
        }
        now += Duration::from_micros(u64::from(b.u16()) * 16);
        match b.u8() % 6 {
            0 => {
                let n = usize::from(b.u8()) * 2;
                let raw = b.take(n).to_vec();
                let _ = probe.handle_packet(now, b.u8() % 2 == 0, &raw, b.u8() % 2 == 0);
            }
            1 => {
                if let Some(at) = probe.poll_timeout() {
                    now = now.max(at);
                    probe.handle_timeout(now);
                }
            }
            _ => {
                // A segment from the server (or a copy of one of ours going out).
                let outgoing = b.u8() % 4 == 0;
                let (src, dst) = if outgoing {
                    (client, server)
                } else {
                    (server, client)
                };
                let last = ours.last().copied().unwrap_or((SeqNumber(0), SeqNumber(0)));
                let seq = if b.u8() % 2 == 0 {
                    last.1
                } else {
                    SeqNumber(b.u32())
                };
                let ack = if b.u8() % 2 == 0 {
                    last.0.add(u32::from(b.u8()))
                } else {
                    SeqNumber(b.u32())
                };
                let len = usize::from(b.u8());
                let text = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n".repeat(8);
                let payload: Vec<u8> = if b.u8() % 2 == 0 {
                    text[..len.min(text.len())].to_vec()
                } else {
                    b.take(len).to_vec()
                };
                let seg = TcpRepr {
                    src_port: src.port(),
                    dst_port: dst.port(),
                    seq,
                    ack,
                    flags: TcpFlags(b.u16() & 0x1ff),
                    window: b.u16(),
                    urgent: 0,
                    options: TcpOptions {
                        mss: (b.u8() % 2 == 0).then(|| b.u16()),
                        ..TcpOptions::default()
                    },
                    payload: &payload,
                };
                let mut buf = vec![0u8; 60 + seg.buffer_len()];
                let ip = IpRepr::new(src.ip(), dst.ip(), PROTO_TCP, 64, seg.buffer_len());
                let Ok(n) = ip.emit(&mut buf) else { return };
                let Ok(m) = seg.emit(src.ip(), dst.ip(), &mut buf[n..]) else {
                    return;
                };
                if b.u8() % 8 == 0 {
                    // Corrupt one byte: bad checksums and odd headers are reported, not fatal.
                    let i = usize::from(b.u16()) % (n + m);
                    buf[i] ^= b.u8() | 1;
                }
                let _ = probe.handle_packet(now, outgoing, &buf[..n + m], false);
            }
        }
    }
    let result = probe.result();
    serde_json::to_string(&result).expect("a result always serialises");
});

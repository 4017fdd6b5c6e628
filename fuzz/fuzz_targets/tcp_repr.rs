//! TcpRepr::parse / parse_unchecked on arbitrary bytes (first byte picks the address
//! family). What parses survives emit → parse with the same header fields and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_proto::wire::TcpRepr;
use tcpshake_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let (src, dst) = if sel & 1 == 0 {
        (CLIENT4, SERVER4)
    } else {
        (CLIENT6, SERVER6)
    };
    let _ = TcpRepr::parse(bytes, src, dst);
    let Ok(seg) = TcpRepr::parse_unchecked(bytes) else {
        return;
    };
    let mut buf = vec![0u8; seg.buffer_len()];
    let n = seg
        .emit(src, dst, &mut buf)
        .expect("emit of a parsed segment");
    let again = TcpRepr::parse(&buf[..n], src, dst).expect("re-parse of an emitted segment");
    assert_eq!(
        (
            again.src_port,
            again.dst_port,
            again.seq,
            again.ack,
            again.flags,
            again.window
        ),
        (
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            seg.flags,
            seg.window
        )
    );
    assert_eq!(again.payload, seg.payload);
    assert_eq!(again.options.mss, seg.options.mss);
    assert_eq!(again.options.timestamps, seg.options.timestamps);
});

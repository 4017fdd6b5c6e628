//! IcmpError::parse (ICMP and ICMPv6; the first byte picks which) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_proto::wire::IcmpError;
use tcpshake_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let v6 = sel & 1 == 1;
    let (src, dst) = if v6 {
        (SERVER6, CLIENT6)
    } else {
        (SERVER4, CLIENT4)
    };
    if let Ok(Some(err)) = IcmpError::parse(bytes, v6, src, dst) {
        // A quoted segment names addresses of the same family as the error.
        assert_eq!(err.quoted_src.is_ipv6(), v6);
        let _ = err.kind.reason();
    }
});

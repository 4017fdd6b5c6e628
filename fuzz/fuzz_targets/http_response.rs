//! parse_response on arbitrary bytes, and on every prefix boundary the fuzzer picks: a
//! prefix of a complete head is never Invalid (running out of bytes is Partial).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshake_proto::wire::http::{HttpParse, parse_response};

fuzz_target!(|data: &[u8]| {
    let whole = parse_response(data);
    if let HttpParse::Complete(_) = whole {
        let cut = data.len() / 2;
        if let HttpParse::Invalid(why) = parse_response(&data[..cut]) {
            panic!("a prefix of a valid head is invalid: {why}");
        }
    }
});

//! The Internet checksum (RFC 1071) and the TCP/ICMPv6 pseudo-headers (RFC 9293 §3.1,
//! RFC 8200 §8.1).
//!
//! The sum is accumulated in a `u64`, so no input length can overflow it before the fold
//! (RFC 1071 §2(B): carries may be deferred and added back at the end).

use std::net::IpAddr;

/// Unfolded one's-complement sum of `data` taken as big-endian 16-bit words; an odd last
/// byte is padded with a zero byte on the right (RFC 1071 §4.1).
pub fn sum_words(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u64 = 0;
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Fold an unfolded sum into 16 bits with end-around carry (RFC 1071 §4.1), not inverted.
pub fn fold(mut sum: u64) -> u16 {
    // Each round at least halves the number of significant bits above 16; four rounds
    // bring any u64 down to 16 bits.
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's-complement sum of `data` folded into 16 bits and inverted, with `initial` (an
/// unfolded partial sum, e.g. of a pseudo-header) added first.
///
/// Computing it over bytes that already hold a correct checksum gives 0, which is how the
/// parsers verify (RFC 1071 §1 step 3).
pub fn internet_checksum(initial: u32, data: &[u8]) -> u16 {
    !fold(u64::from(initial) + sum_words(data))
}

/// Partial sum of the pseudo-header for an upper-layer protocol.
///
/// IPv4 (RFC 9293 §3.1): source, destination, zero, protocol, TCP length (16 bits).
/// IPv6 (RFC 8200 §8.1): source, destination, upper-layer length (32 bits), three zero
/// bytes, next header. Both layouts sum to the same words apart from the addresses and
/// the width of `len`, which the sum of its two halves covers. Callers must pass two
/// addresses of one family; mixed families give a meaningless (but harmless) sum.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: u32) -> u32 {
    let addr_sum = |a: IpAddr| -> u32 {
        match a {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                u32::from(u16::from_be_bytes([o[0], o[1]]))
                    + u32::from(u16::from_be_bytes([o[2], o[3]]))
            }
            IpAddr::V6(v6) => v6.segments().iter().map(|&s| u32::from(s)).sum(),
        }
    };
    // At most 16 words of 0xffff plus three small terms: far below u32::MAX.
    addr_sum(src) + addr_sum(dst) + u32::from(protocol) + (len >> 16) + (len & 0xffff)
}

/// The checksum over `data` (whose checksum field is zero) for the pseudo-header of
/// `src`→`dst`.
pub fn upper_layer_checksum(src: IpAddr, dst: IpAddr, protocol: u8, data: &[u8]) -> u16 {
    // A length over u32::MAX cannot be a packet; saturating keeps this total.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    internet_checksum(pseudo_header_sum(src, dst, protocol, len), data)
}

/// True when `data` (checksum field included) carries a correct checksum for the
/// pseudo-header of `src`→`dst`.
pub fn verify_upper_layer(src: IpAddr, dst: IpAddr, protocol: u8, data: &[u8]) -> bool {
    upper_layer_checksum(src, dst, protocol, data) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ip::IpNextHeaderProtocol;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn rfc1071_example_sums() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, folded ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum_words(&data), 0x2_ddf0);
        assert_eq!(fold(sum_words(&data)), 0xddf2);
        assert_eq!(internet_checksum(0, &data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A well-known IPv4 header (UDP, 192.168.0.1 → 192.168.0.199) with checksum b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(
            internet_checksum(0, &hdr),
            0,
            "a correct header sums to zero"
        );
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(internet_checksum(0, &hdr), 0xb861);
    }

    #[test]
    fn odd_length_pads_on_the_right() {
        assert_eq!(sum_words(&[0xab]), 0xab00);
        assert_eq!(sum_words(&[0x01, 0x02, 0x03]), 0x0102 + 0x0300);
        assert_eq!(sum_words(&[]), 0);
        assert_eq!(internet_checksum(0, &[]), 0xffff);
    }

    #[test]
    fn fold_handles_huge_sums() {
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
    }

    proptest! {
        #[test]
        fn matches_pnet_plain(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            // pnet skips one word (the checksum field); pass one past the end so none is.
            let theirs = pnet_packet::util::checksum(&data, data.len());
            let ours = internet_checksum(0, &data);
            // pnet special-cases empty input as 0; everything else must agree.
            if !data.is_empty() {
                prop_assert_eq!(ours, theirs);
            }
        }

        #[test]
        fn matches_pnet_pseudo_v4(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            s in any::<u32>(), d in any::<u32>(), proto in any::<u8>(),
        ) {
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let theirs = pnet_packet::util::ipv4_checksum(
                &data, data.len(), &[], &s, &d, IpNextHeaderProtocol(proto));
            prop_assert_eq!(upper_layer_checksum(s.into(), d.into(), proto, &data), theirs);
        }

        #[test]
        fn matches_pnet_pseudo_v6(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            s in any::<u128>(), d in any::<u128>(), proto in any::<u8>(),
        ) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let theirs = pnet_packet::util::ipv6_checksum(
                &data, data.len(), &[], &s, &d, IpNextHeaderProtocol(proto));
            prop_assert_eq!(upper_layer_checksum(s.into(), d.into(), proto, &data), theirs);
        }

        #[test]
        fn inserting_the_checksum_verifies(
            mut data in proptest::collection::vec(any::<u8>(), 4..300),
            s in any::<u128>(), d in any::<u128>(),
        ) {
            let (s, d) = (IpAddr::from(Ipv6Addr::from(s)), IpAddr::from(Ipv6Addr::from(d)));
            data[2] = 0;
            data[3] = 0;
            let c = upper_layer_checksum(s, d, 6, &data);
            data[2..4].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify_upper_layer(s, d, 6, &data));
        }
    }
}

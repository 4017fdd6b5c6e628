//! A fast hash for the scan's per-pair tables: the transmit stamps kept until answers come
//! (one insert per SYN) and the pairs already answered (one insert per answer).
//!
//! The standard map's SipHash-1-3 resists collision attacks on keys an attacker picks; it
//! cost ~2% of a full-port scan's CPU here, with its growth another ~3%. These keys need
//! no such defence: every key inserted is a pair we sent a SYN to (an answer's pair is
//! inserted only once its acknowledgment number proved it ours, by the cookie), so a
//! remote host cannot choose keys that collide. What is needed is spread over the low
//! bits (the bucket) and the top seven (hashbrown's control bytes): each word is mixed in
//! by a multiply, and `finish` folds the high half down and multiplies, twice.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` over scan pairs.
pub type PairMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<PairHasher>>;
/// A `HashSet` over scan pairs.
pub type PairSet<K> = std::collections::HashSet<K, BuildHasherDefault<PairHasher>>;

/// Odd 64-bit constants with well-spread bits (the fractional part of the golden ratio,
/// and of √3).
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xbb67_ae85_84ca_a73b;

#[derive(Default, Clone, Copy)]
pub struct PairHasher(u64);

impl PairHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K1);
    }
}

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits (where the multiplies put the spread) into the low ones, twice.
        let mut h = self.0;
        h = (h ^ (h >> 32)).wrapping_mul(K2);
        h = (h ^ (h >> 29)).wrapping_mul(K1);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn hash<T: std::hash::Hash + ?Sized>(t: &T) -> u64 {
        BuildHasherDefault::<PairHasher>::default().hash_one(t)
    }

    /// A full-port scan's keys (one host, every port, and sequence numbers) spread over the
    /// buckets and the control bytes as a table of that size uses them.
    #[test]
    fn a_full_port_scan_spreads_over_buckets_and_control_bytes() {
        let v4 = |k: u16| IpAddr::V4(Ipv4Addr::from(0xc612_0000 | u32::from(k)));
        let v6 = |k: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, k));
        // One host's every port, v4 and v6; a /16's and a /112's every host on one port.
        // (what, the k-th key's address and port)
        type Keys<'a> = (&'a str, &'a dyn Fn(u16) -> (IpAddr, u16));
        let scans: [Keys<'_>; 4] = [
            ("v4 ports", &|k| (v4(2), k)),
            ("v6 ports", &|k| (v6(2), k)),
            ("v4 hosts", &|k| (v4(k), 80)),
            ("v6 hosts", &|k| (v6(k), 443)),
        ];
        // With a sequence number (the stamps) and without (the answered pairs).
        for ((addr, key), with_seq) in scans.iter().flat_map(|s| [(s, true), (s, false)]) {
            let mut buckets = vec![0u32; 1 << 17];
            let mut control = [0u32; 128];
            for k in 1..=u16::MAX {
                let (ip, port) = key(k);
                let seq = u32::from(k).wrapping_mul(2_654_435_761);
                let h = if with_seq {
                    hash(&(ip, port, seq))
                } else {
                    hash(&(ip, port))
                };
                buckets[(h as usize) & ((1 << 17) - 1)] += 1;
                control[(h >> 57) as usize] += 1;
            }
            // 65 535 keys in 131 072 buckets: a uniform hash leaves ~60.6% empty and puts
            // at most ~8 in one.
            let empty = buckets.iter().filter(|&&n| n == 0).count() as f64 / buckets.len() as f64;
            assert!((0.58..0.63).contains(&empty), "{addr}: {empty} empty");
            assert!(buckets.iter().all(|&n| n <= 10), "{addr}: a crowded bucket");
            // ~512 per control value.
            assert!(
                control.iter().all(|&n| (380..650).contains(&n)),
                "{addr}: {control:?}"
            );
        }
    }

    #[test]
    fn keys_that_differ_hash_apart() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
        assert_ne!(hash(&(a, 80u16)), hash(&(b, 80u16)));
        assert_ne!(hash(&(a, 80u16)), hash(&(a, 81u16)));
        assert_ne!(hash(&(a, 80u16, 1u32)), hash(&(a, 80u16, 2u32)));
        assert_ne!(hash(&[1u8, 2][..]), hash(&[1u8, 2, 0][..]));
    }
}

//! Scan targets in nmap's syntax, enumerated by index without ever being materialised.
//!
//! A spec is one of: an address (`198.18.0.7`, `fd00::7`), a CIDR block (`198.18.0.0/24`,
//! `fd00::/120`), nmap's octet ranges (`198.18.0.1-20`, `198.18.0-3.1,5,9-12`, `198.18.*.1`),
//! a full range (`198.18.0.1-198.18.1.9`), or a host name (resolved by the caller, which
//! then hands us an address, optionally with a prefix as in nmap's `name/24`).
//!
//! A [`TargetSet`] is the list of specs with the cumulative count of addresses in front of
//! each, so address number `i` is found by a binary search and some arithmetic: a /8 costs
//! the same memory as one address.

use crate::probe::target::{Host, in_spec};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest IPv6 block we sweep: 2^16 addresses (a /112). Sweeping a /64 is hopeless at any
/// rate (RFC 7707 §2); give the addresses instead.
pub const MAX_V6_PREFIX_BITS: u32 = 16;

/// Blocks no TCP peer is in, as inclusive bounds: IPv4's "this network" 0.0.0.0/8 (RFC
/// 1122 §3.2.1.3) and everything from 224.0.0.0 up (multicast, the reserved 240/4, the
/// limited broadcast); IPv6's unspecified `::` and multicast ff00::/8.
fn no_peer_runs(v6: bool) -> &'static [(u128, u128)] {
    const V4: [(u128, u128); 2] = [(0, 0x00ff_ffff), (0xe000_0000, 0xffff_ffff)];
    const V6: [(u128, u128); 2] = [(0, 0), (0xff00 << 112, u128::MAX)];
    if v6 { &V6 } else { &V4 }
}

/// Addresses of octet ranges [`TargetSet::route_by`] looks at before it settles for the first.
pub const ROUTE_BY_LOOKS: u64 = 4096;

/// One parsed spec that denotes addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `count` consecutive addresses from `first` (IPv4 in the low 32 bits when `!v6`).
    Range { v6: bool, first: u128, count: u64 },
    /// nmap octet ranges: the Cartesian product of four sorted, disjoint lists of
    /// inclusive ranges.
    Octets(Box<[Vec<(u8, u8)>; 4]>),
}

/// What the user wrote, before names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    Addrs(Spec),
    /// A host name; `prefix` from `name/24`.
    Name {
        name: String,
        prefix: Option<u8>,
    },
}

impl Spec {
    /// Every address of `addr`'s block of `prefix` bits (CIDR), or `addr` alone.
    pub fn cidr(addr: IpAddr, prefix: Option<u8>, text: &str) -> Result<Spec, String> {
        let (v6, value, bits) = match addr {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32u32),
            IpAddr::V6(a) => (true, u128::from(a), 128u32),
        };
        let prefix = u32::from(prefix.unwrap_or(bits as u8));
        if prefix > bits {
            return Err(format!(
                "`{text}`: prefix /{prefix} is longer than an address ({bits} bits)"
            ));
        }
        let host_bits = bits - prefix;
        if v6 && host_bits > MAX_V6_PREFIX_BITS {
            return Err(format!(
                "`{text}`: an IPv6 /{prefix} has 2^{host_bits} addresses; sweeping IPv6 blocks \
                 larger than a /{} is not supported, list the addresses instead (-iL FILE)",
                128 - MAX_V6_PREFIX_BITS
            ));
        }
        let first = if host_bits == 0 {
            value
        } else {
            value & !((1u128 << host_bits) - 1)
        };
        Ok(Spec::Range {
            v6,
            first,
            count: 1u64 << host_bits,
        })
    }

    /// The spec as a user would write it: an address, a CIDR block when it is one
    /// (`198.18.3.0/24`), else `FIRST-LAST`; an octet pattern octet by octet
    /// (`198.18.1-2,5.*`).
    pub fn describe(&self) -> String {
        let addr = |v: u128, v6: bool| -> String {
            match (v6, u32::try_from(v)) {
                (false, Ok(a)) => Ipv4Addr::from(a).to_string(),
                _ => Ipv6Addr::from(v).to_string(),
            }
        };
        match self {
            Spec::Range { v6, first, count } => {
                let width = if *v6 { 128 } else { 32 };
                let last = first.saturating_add(u128::from(count.saturating_sub(1)));
                if *count <= 1 {
                    return addr(*first, *v6);
                }
                let c = u128::from(*count);
                if c.is_power_of_two() && first % c == 0 {
                    return format!("{}/{}", addr(*first, *v6), width - c.trailing_zeros());
                }
                format!("{}-{}", addr(*first, *v6), addr(last, *v6))
            }
            Spec::Octets(o) => o
                .iter()
                .map(|r| match r.as_slice() {
                    [(0, 255)] => "*".to_string(),
                    _ => r
                        .iter()
                        .map(|&(a, b)| match a == b {
                            true => a.to_string(),
                            false => format!("{a}-{b}"),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                })
                .collect::<Vec<_>>()
                .join("."),
        }
    }

    /// The lowest and highest address (as numbers) and the family: every address of the
    /// spec lies between them. `None` for an empty spec.
    pub fn bounds(&self) -> Option<(u128, u128, bool)> {
        match self {
            Spec::Range { v6, first, count } => {
                let last = first.checked_add(u128::from(count.checked_sub(1)?))?;
                Some((*first, last, *v6))
            }
            Spec::Octets(o) => {
                let lo = o
                    .iter()
                    .map(|r| r.first().map(|x| x.0))
                    .collect::<Option<Vec<u8>>>()?;
                let hi = o
                    .iter()
                    .map(|r| r.last().map(|x| x.1))
                    .collect::<Option<Vec<u8>>>()?;
                let n = |b: &[u8]| u128::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                Some((n(&lo), n(&hi), false))
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Spec::Range { count, .. } => *count,
            Spec::Octets(o) => o.iter().map(|r| ranges_len(r)).product(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address number `i` (< `len()`) of this spec, in ascending order.
    pub fn get(&self, i: u64) -> Option<IpAddr> {
        if i >= self.len() {
            return None;
        }
        match self {
            Spec::Range {
                v6: false, first, ..
            } => {
                let a = u32::try_from(first + u128::from(i)).ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(a)))
            }
            Spec::Range {
                v6: true, first, ..
            } => Some(IpAddr::V6(Ipv6Addr::from(
                first.checked_add(u128::from(i))?,
            ))),
            Spec::Octets(o) => {
                // Mixed radix, last octet fastest.
                let mut rest = i;
                let mut out = [0u8; 4];
                for k in (0..4).rev() {
                    let n = ranges_len(&o[k]);
                    out[k] = ranges_nth(&o[k], rest % n)?;
                    rest /= n;
                }
                Some(IpAddr::V4(Ipv4Addr::from(out)))
            }
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (
                Spec::Range {
                    v6: false,
                    first,
                    count,
                },
                IpAddr::V4(a),
            ) => {
                let a = u128::from(u32::from(a));
                a >= *first && a - first < u128::from(*count)
            }
            (
                Spec::Range {
                    v6: true,
                    first,
                    count,
                },
                IpAddr::V6(a),
            ) => {
                let a = u128::from(a);
                a >= *first && a - first < u128::from(*count)
            }
            (Spec::Octets(o), IpAddr::V4(a)) => a
                .octets()
                .iter()
                .zip(o.iter())
                .all(|(b, r)| r.iter().any(|&(lo, hi)| (lo..=hi).contains(b))),
            _ => false,
        }
    }
}

impl Spec {
    /// The inverse of [`Spec::get`]: `addr`'s number in this spec, when the spec names it.
    pub fn index_of(&self, addr: IpAddr) -> Option<u64> {
        match (self, addr) {
            (Spec::Range { v6, first, count }, a) if *v6 == a.is_ipv6() => {
                let a = match a {
                    IpAddr::V4(x) => u128::from(u32::from(x)),
                    IpAddr::V6(x) => u128::from(x),
                };
                let i = u64::try_from(a.checked_sub(*first)?).ok()?;
                (i < *count).then_some(i)
            }
            // Mixed radix as `get` counts, last octet fastest.
            (Spec::Octets(o), IpAddr::V4(a)) => a
                .octets()
                .iter()
                .zip(o.iter())
                .try_fold(0u64, |i, (&b, r)| {
                    Some(i * ranges_len(r) + ranges_rank(r, b)?)
                }),
            _ => None,
        }
    }

    /// When `at` (of family `v6`) is one of this spec's addresses: the last address of the
    /// run of consecutive ones it is in (a range's end; for octet ranges, the end of the
    /// last octet's range in that /24).
    fn run_end(&self, at: u128, v6: bool) -> Option<u128> {
        match self {
            Spec::Range { v6: sv6, .. } if *sv6 == v6 => {
                let (first, last, _) = self.bounds()?;
                (first..=last).contains(&at).then_some(last)
            }
            Spec::Octets(o) if !v6 => {
                let b = u32::try_from(at).ok()?.to_be_bytes();
                fn within(r: &[(u8, u8)], x: u8) -> Option<(u8, u8)> {
                    r.iter().copied().find(|&(lo, hi)| lo <= x && x <= hi)
                }
                for (r, x) in o.iter().zip(b).take(3) {
                    within(r, x)?;
                }
                let (_, hi) = within(&o[3], b[3])?;
                Some(u128::from(u32::from_be_bytes([b[0], b[1], b[2], hi])))
            }
            _ => None,
        }
    }
}

fn ranges_len(r: &[(u8, u8)]) -> u64 {
    r.iter().map(|&(lo, hi)| u64::from(hi - lo) + 1).sum()
}

/// Each run of consecutive addresses of octet ranges `o` that meets `lo..=hi`, ascending,
/// clipped to it, to `f` until it returns false: each octet's values whose block (a /8,
/// /16, /24 under the octets before) misses the interval are skipped whole, so the work
/// is the /24 stretches inside it.
fn octet_runs_within(
    o: &[Vec<(u8, u8)>; 4],
    lo: u128,
    hi: u128,
    mut f: impl FnMut(u128, u128) -> bool,
) {
    let value = |b: [u8; 4]| u128::from(u32::from_be_bytes(b));
    // The block of the octets fixed so far spans `value` with the rest 0..255.
    let meets = |b: [u8; 4], fixed: usize| {
        let mut top = b;
        for x in top.iter_mut().skip(fixed) {
            *x = 255;
        }
        value(b) <= hi && lo <= value(top)
    };
    // Bounded by the octet ranges: at most 2^24 stretches, fewer the narrower the interval.
    for &(a0, a1) in &o[0] {
        for a in a0..=a1 {
            if !meets([a, 0, 0, 0], 1) {
                continue;
            }
            for &(b0, b1) in &o[1] {
                for b in b0..=b1 {
                    if !meets([a, b, 0, 0], 2) {
                        continue;
                    }
                    for &(c0, c1) in &o[2] {
                        for c in c0..=c1 {
                            if !meets([a, b, c, 0], 3) {
                                continue;
                            }
                            for &(d0, d1) in &o[3] {
                                let (x, y) = (value([a, b, c, d0]), value([a, b, c, d1]));
                                if x <= hi && lo <= y && !f(x.max(lo), y.min(hi)) {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How many addresses of octet ranges `o` lie within `lo..=hi`.
fn octets_within(o: &[Vec<(u8, u8)>; 4], lo: u128, hi: u128) -> u64 {
    let mut n: u64 = 0;
    octet_runs_within(o, lo, hi, |x, y| {
        n = n.saturating_add((y - x + 1) as u64);
        true
    });
    n
}

/// Runs an octet-pattern exclusion is cut into at most to be merged with the others.
const EXCLUDE_RUNS: usize = 1 << 16;

/// The runs of consecutive addresses of octet ranges `o` within `lo..=hi` (clipped), if
/// there are at most `cap`.
fn octets_runs_within(
    o: &[Vec<(u8, u8)>; 4],
    lo: u128,
    hi: u128,
    cap: usize,
) -> Option<Vec<(u128, u128)>> {
    let mut out = Vec::new();
    let mut over = false;
    octet_runs_within(o, lo, hi, |x, y| {
        over = out.len() >= cap;
        if !over {
            out.push((x, y));
        }
        !over
    });
    (!over).then_some(out)
}

/// The lowest address of octet ranges `o` within `lo..=hi`, if any.
fn octets_first_within(o: &[Vec<(u8, u8)>; 4], lo: u128, hi: u128) -> Option<u128> {
    let mut first = None;
    octet_runs_within(o, lo, hi, |x, _| {
        first = Some(x);
        false
    });
    first
}

/// The octet ranges both `a` and `b` name, octet by octet (an octet pattern is a product
/// of per-octet sets, so their intersection is the product of the per-octet ones).
fn octets_intersect(a: &[Vec<(u8, u8)>; 4], b: &[Vec<(u8, u8)>; 4]) -> [Vec<(u8, u8)>; 4] {
    std::array::from_fn(|k| {
        let mut out = Vec::new();
        for &(a0, a1) in &a[k] {
            for &(b0, b1) in &b[k] {
                let (lo, hi) = (a0.max(b0), a1.min(b1));
                if lo <= hi {
                    out.push((lo, hi));
                }
            }
        }
        out.sort_unstable();
        out
    })
}

/// Where `x` stands among the octets of `r`, counting from 0.
fn ranges_rank(r: &[(u8, u8)], x: u8) -> Option<u64> {
    let mut n = 0;
    for &(lo, hi) in r {
        if (lo..=hi).contains(&x) {
            return Some(n + u64::from(x - lo));
        }
        n += u64::from(hi - lo) + 1;
    }
    None
}

fn ranges_nth(r: &[(u8, u8)], mut n: u64) -> Option<u8> {
    for &(lo, hi) in r {
        let len = u64::from(hi - lo) + 1;
        if n < len {
            return u8::try_from(u64::from(lo) + n).ok();
        }
        n -= len;
    }
    None
}

/// Parse one target spec. Errors quote the bad part and say what would be accepted.
pub fn parse(text: &str) -> Result<TargetSpec, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty target".into());
    }
    let (body, prefix) = match s.split_once('/') {
        Some((b, p)) => {
            let bits: u8 = p.parse().map_err(|_| {
                format!("`{s}`: `/{p}` is not a prefix length; write e.g. 198.18.0.0/24")
            })?;
            (b, Some(bits))
        }
        None => (s, None),
    };
    let looks_v4 = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | ',' | '*'));
    if looks_v4 && body.parse::<Ipv4Addr>().is_err() {
        if prefix.is_some() {
            return Err(format!(
                "`{s}`: a prefix goes with a single address (198.18.0.0/24), not with ranges"
            ));
        }
        if let Some((a, b)) = body.split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>())
        {
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a {
                return Err(format!("`{s}`: the range ends before it starts"));
            }
            return Ok(TargetSpec::Addrs(Spec::Range {
                v6: false,
                first: u128::from(a),
                count: u64::from(b - a) + 1,
            }));
        }
        return parse_octets(body, s).map(TargetSpec::Addrs);
    }
    // An address or a name: the host parser every command shares.
    match Host::parse(body).map_err(|e| in_spec(s, body, e))? {
        Host::Ip(a) => Spec::cidr(a, prefix, s).map(TargetSpec::Addrs),
        Host::Name(name) => Ok(TargetSpec::Name { name, prefix }),
    }
}

fn parse_octets(body: &str, whole: &str) -> Result<Spec, String> {
    let parts: Vec<&str> = body.split('.').collect();
    if parts.len() != 4 {
        return Err(format!(
            "`{whole}`: an IPv4 range has four dot-separated octets (e.g. 198.18.0.1-20), \
             found {}",
            parts.len()
        ));
    }
    let mut out: [Vec<(u8, u8)>; 4] = Default::default();
    for (k, part) in parts.iter().enumerate() {
        let mut ranges = Vec::new();
        for item in part.split(',') {
            let octet = |t: &str, dflt: u8| -> Result<u8, String> {
                if t.is_empty() {
                    return Ok(dflt);
                }
                crate::probe::target::ipv4_octet(t, k + 1, whole)
            };
            let (lo, hi) = if item == "*" {
                (0, 255)
            } else if let Some((a, b)) = item.split_once('-') {
                (octet(a, 0)?, octet(b, 255)?)
            } else if item.is_empty() {
                return Err(format!("`{whole}`: octet {} is empty", k + 1));
            } else {
                let v = octet(item, 0)?;
                (v, v)
            };
            if hi < lo {
                return Err(format!(
                    "`{whole}`: octet {} range `{item}` ends before it starts",
                    k + 1
                ));
            }
            ranges.push((lo, hi));
        }
        // Sort and merge so that every address appears once.
        ranges.sort_unstable();
        let mut merged: Vec<(u8, u8)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u16::from(lo) <= u16::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        out[k] = merged;
    }
    Ok(Spec::Octets(Box::new(out)))
}

/// The addresses to scan, indexable, with exclusions applied at lookup.
///
/// An address that several specs name (`198.18.0.7 198.18.0.7`, overlapping blocks, a name
/// and its address, a list naming a host inside a range it also holds) has one index per
/// spec; a scan sends to its first copy only ([`TargetSet::is_first_index`]), so it is one
/// host scanned once per port (nmap's `--unique`), as the reports list it.
#[derive(Clone, Debug, Default)]
pub struct TargetSet {
    specs: Vec<Spec>,
    /// `ends[i]` = number of addresses in specs `0..=i`.
    ends: Vec<u64>,
    exclude: Vec<Spec>,
    /// Stretches left out after the plan was made ([`TargetSet::leave_out`]: no route
    /// leads there), ascending, disjoint: treated as excluded everywhere, found by a
    /// binary search (empty, they cost one comparison per lookup).
    left_out: Vec<(Key, Key)>,
    /// Which spec names each address first; `None` when no two specs share an address
    /// (the common case, which then pays nothing per pair).
    overlap: Option<Box<Overlap>>,
}

/// Octet-range runs (one /24's stretch of the last octet each) [`Overlap`] cuts specs into
/// at most, before merging adjacent ones: 2^20 (`198.18.*.*` is 2^16). An octet range with
/// more is stood for by its bounds, and its addresses are then tested one by one.
const OVERLAP_RUNS: u64 = 1 << 20;

/// An address as a sortable key: its family (IPv4 first, as `IpAddr` orders them), then its
/// value.
type Key = (bool, u128);

fn key_of(a: IpAddr) -> Key {
    match a {
        IpAddr::V4(x) => (false, u128::from(u32::from(x))),
        IpAddr::V6(x) => (true, u128::from(x)),
    }
}

/// Where specs overlap: the address space cut into stretches, each with the lowest-numbered
/// spec whose runs cover it. Built once per scan by a sweep over the specs' runs
/// (O(r log r) for r runs); asked by a binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Overlap {
    /// Ascending: `owners[j]` covers the addresses from `starts[j]` up to the next start
    /// (`None`: a gap, no spec).
    starts: Vec<Key>,
    owners: Vec<Option<usize>>,
    /// Specs stood for by their bounds (an octet range too large to cut into runs): their
    /// stretches may hold addresses they do not name.
    loose: Vec<bool>,
    /// Distinct addresses, excluded ones counted (an upper bound when a spec is loose).
    distinct: u64,
}

impl Overlap {
    /// `None` when no two specs can share an address.
    fn of(specs: &[Spec], total: u64) -> Option<Box<Overlap>> {
        // The cheap test first: specs whose bounds are disjoint share nothing.
        let mut bounds: Vec<(Key, Key)> = specs
            .iter()
            .filter_map(Spec::bounds)
            .map(|(lo, hi, v6)| ((v6, lo), (v6, hi)))
            .collect();
        bounds.sort_unstable();
        let mut reach: Option<Key> = None;
        let touching = bounds.iter().any(|&(lo, hi)| {
            let hit = reach.is_some_and(|r| lo <= r);
            reach = Some(reach.map_or(hi, |r| r.max(hi)));
            hit
        });
        if !touching {
            return None;
        }
        // Every spec as runs of consecutive addresses (inclusive), each with its spec.
        let mut runs: Vec<(Key, Key, usize)> = Vec::new();
        let mut loose = vec![false; specs.len()];
        let mut budget = OVERLAP_RUNS;
        for (k, spec) in specs.iter().enumerate() {
            let Some((lo, hi, v6)) = spec.bounds() else {
                continue;
            };
            let Spec::Octets(o) = spec else {
                runs.push(((v6, lo), (v6, hi), k));
                continue;
            };
            let n = ranges_len(&o[0])
                .saturating_mul(ranges_len(&o[1]))
                .saturating_mul(ranges_len(&o[2]))
                .saturating_mul(o[3].len() as u64);
            if n > budget {
                loose[k] = true;
                runs.push(((false, lo), (false, hi), k));
                continue;
            }
            budget -= n;
            let values =
                |r: &[(u8, u8)]| -> Vec<u8> { r.iter().flat_map(|&(a, b)| a..=b).collect() };
            let (o0, o1, o2) = (values(&o[0]), values(&o[1]), values(&o[2]));
            // Bounded by the budget: n runs at most.
            for &a in &o0 {
                for &b in &o1 {
                    for &c in &o2 {
                        for &(d0, d1) in &o[3] {
                            let at = |d| u128::from(u32::from_be_bytes([a, b, c, d]));
                            let (lo, hi) = (at(d0), at(d1));
                            // Adjacent runs merge (`198.18.*.*` is one run).
                            match runs.last_mut() {
                                Some(last) if last.2 == k && last.1.1 + 1 == lo => last.1.1 = hi,
                                _ => runs.push(((false, lo), (false, hi), k)),
                            }
                        }
                    }
                }
            }
        }
        // The sweep: at each run's start its spec becomes active, after its end inactive;
        // each stretch between two events belongs to the lowest active spec.
        let mut events: Vec<(Key, bool, usize)> = Vec::with_capacity(2 * runs.len());
        for &(lo, (v6, hi), k) in &runs {
            events.push((lo, true, k));
            // The last IPv6 address ends no run before the end of the space.
            if let Some(after) = hi.checked_add(1) {
                events.push(((v6, after), false, k));
            }
        }
        events.sort_unstable();
        let mut active: BTreeMap<usize, u32> = BTreeMap::new();
        let (mut starts, mut owners) = (Vec::new(), Vec::new());
        let mut shared = false;
        let mut distinct: u128 = 0;
        let mut i = 0;
        // Each turn consumes at least one event.
        while let Some(&(at, ..)) = events.get(i) {
            while let Some(&(_, start, k)) = events.get(i).filter(|e| e.0 == at) {
                if start {
                    *active.entry(k).or_default() += 1;
                } else if let Some(c) = active.get_mut(&k) {
                    *c -= 1;
                    if *c == 0 {
                        active.remove(&k);
                    }
                }
                i += 1;
            }
            shared |= active.len() >= 2;
            let owner = active.keys().next().copied();
            if owner.is_some() {
                let len = match events.get(i) {
                    Some(&((v6, next), ..)) if v6 == at.0 => next - at.1,
                    _ => (u128::MAX - at.1).saturating_add(1),
                };
                distinct = distinct.saturating_add(len);
            }
            if owners.last() != Some(&owner) {
                starts.push(at);
                owners.push(owner);
            }
        }
        if !shared {
            return None;
        }
        let distinct = u64::try_from(distinct).unwrap_or(u64::MAX).min(total);
        Some(Box::new(Overlap {
            starts,
            owners,
            loose,
            distinct,
        }))
    }

    /// Whether spec `k`, which names `addr`, is the first spec that does.
    fn is_first(&self, specs: &[Spec], k: usize, addr: IpAddr) -> bool {
        let at = key_of(addr);
        let j = self.starts.partition_point(|s| *s <= at);
        let Some(Some(o)) = j.checked_sub(1).map(|j| self.owners[j]) else {
            return true;
        };
        if o >= k {
            return true;
        }
        if !self.loose[o] {
            return false; // spec o's runs are its addresses: it names addr
        }
        !specs[o..k].iter().any(|s| s.contains(addr))
    }
}

impl TargetSet {
    pub fn new(specs: Vec<Spec>, exclude: Vec<Spec>) -> Result<TargetSet, String> {
        let mut ends = Vec::with_capacity(specs.len());
        let mut total: u64 = 0;
        for s in &specs {
            total = total
                .checked_add(s.len())
                .filter(|&t| t < 1 << 48)
                .ok_or("too many target addresses (at most 2^48 in one scan)")?;
            ends.push(total);
        }
        let overlap = Overlap::of(&specs, total);
        Ok(TargetSet {
            specs,
            ends,
            exclude,
            left_out: Vec::new(),
            overlap,
        })
    }

    /// Leave out the addresses of these stretches (inclusive bounds, family `v6`): from
    /// now on they are excluded as `--exclude` would exclude them — never sent to, walked
    /// past, in no report — though counted in [`TargetSet::len`] as excluded ones are (the
    /// permutation, and the pairs it stands for, stay the same). A scan leaves out the
    /// targets nothing can be sent to (no route: `tcpshake_io::scan::unroutable`).
    pub fn leave_out(&mut self, runs: impl IntoIterator<Item = (u128, u128, bool)>) {
        let mut all = std::mem::take(&mut self.left_out);
        all.extend(
            runs.into_iter()
                .filter(|r| r.0 <= r.1)
                .map(|(lo, hi, v6)| ((v6, lo), (v6, hi))),
        );
        all.sort_unstable();
        let mut merged: Vec<(Key, Key)> = Vec::with_capacity(all.len());
        for (lo, hi) in all {
            match merged.last_mut() {
                // Overlapping or adjacent (same family): one stretch.
                Some(last) if last.1.0 == lo.0 && last.1.1.saturating_add(1) >= lo.1 => {
                    last.1 = last.1.max(hi);
                }
                _ => merged.push((lo, hi)),
            }
        }
        self.left_out = merged;
    }

    /// [`TargetSet::leave_out`] of single hosts (the ones the kernel refused at the send).
    pub fn leave_out_hosts(&mut self, hosts: impl IntoIterator<Item = IpAddr>) {
        self.leave_out(hosts.into_iter().map(|a| {
            let (v6, v) = key_of(a);
            (v, v, v6)
        }));
    }

    /// The end of the left-out stretch holding `at` (family `v6`), if one does.
    fn left_out_end(&self, at: u128, v6: bool) -> Option<u128> {
        if self.left_out.is_empty() {
            return None;
        }
        let k = (v6, at);
        let j = self.left_out.partition_point(|r| r.0 <= k);
        let (_, hi) = *self.left_out.get(j.checked_sub(1)?)?;
        (k <= hi).then_some(hi.1)
    }

    /// The specs, in the order given.
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    /// How many addresses of spec `i` lie within `lo..=hi` and no `--exclude` removes: a
    /// range's by arithmetic, an octet range's one /24 stretch at a time (those outside
    /// skipped whole). Exclusions that overlap one another are subtracted once each where
    /// they are ranges (merged first), per exclusion where octet patterns are involved.
    /// For messages (how many targets have no route), not for the scan.
    pub fn spec_count_within(&self, i: usize, lo: u128, hi: u128) -> u64 {
        let Some(spec) = self.specs.get(i) else {
            return 0;
        };
        let Some((slo, shi, v6)) = spec.bounds() else {
            return 0;
        };
        let (lo, hi) = (lo.max(slo), hi.min(shi));
        if lo > hi {
            return 0;
        }
        let within = |a: u128, b: u128| -> u64 {
            match spec {
                Spec::Range { .. } => {
                    u64::try_from(b - a).map_or(u64::MAX, |c| c.saturating_add(1))
                }
                Spec::Octets(o) => octets_within(o, a, b),
            }
        };
        let mut n = within(lo, hi);
        // Range exclusions, merged, then clipped to the interval.
        let mut ranges: Vec<(u128, u128)> = self
            .exclude
            .iter()
            .filter(|e| matches!(e, Spec::Range { .. }))
            .filter_map(Spec::bounds)
            .filter(|e| e.2 == v6 && e.0 <= hi && lo <= e.1)
            .map(|e| (e.0.max(lo), e.1.min(hi)))
            .collect();
        // Octet-pattern exclusions (IPv4 only) as their runs within the interval, merged
        // with the ranges (`198.19.8.0/25` and `198.19.8.0-127` were subtracted twice: a
        // review); one with too many runs is subtracted on its own below.
        let mut big: Vec<&[Vec<(u8, u8)>; 4]> = Vec::new();
        for e in &self.exclude {
            let Spec::Octets(eo) = e else { continue };
            if v6 {
                continue;
            }
            match octets_runs_within(eo, lo, hi, EXCLUDE_RUNS) {
                Some(runs) => ranges.extend(runs),
                None => big.push(eo),
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if last.1.saturating_add(1) >= a => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        for (a, b) in merged {
            n = n.saturating_sub(within(a, b));
        }
        // The rest: what each shares with the spec (twice where they overlap: rare).
        for eo in big {
            let shared = match spec {
                Spec::Octets(o) => octets_intersect(o, eo),
                Spec::Range { .. } => eo.clone(),
            };
            n = n.saturating_sub(octets_within(&shared, lo, hi));
        }
        n
    }

    /// The first address of spec `i` that no `--exclude` removes and that lies in one of
    /// `runs` (ascending inclusive bounds, the spec's family): what a message names first.
    /// Ranges by arithmetic; an octet range looked at address by address, at most
    /// [`ROUTE_BY_LOOKS`] of them.
    pub fn spec_first_in_runs(&self, i: usize, runs: &[(u128, u128)]) -> Option<IpAddr> {
        let spec = self.specs.get(i)?;
        let (slo, shi, v6) = spec.bounds()?;
        match spec {
            Spec::Range { .. } => runs
                .iter()
                .filter(|r| r.0 <= shi && slo <= r.1)
                .find_map(|r| self.first_outside(r.0.max(slo), r.1.min(shi), v6, &[])),
            Spec::Octets(o) => (0..spec.len().min(ROUTE_BY_LOOKS))
                .map_while(|k| spec.get(k))
                .find(|&a| {
                    let v = key_of(a).1;
                    runs.iter().any(|r| r.0 <= v && v <= r.1) && !self.is_excluded(a)
                })
                // Past the addresses looked at one by one (`198.18-19.*.*` with 198.19/16
                // unroutable): the pattern's first address in a run, exclusions aside —
                // a message's example, which must not be lost (review).
                .or_else(|| {
                    runs.iter().find_map(|r| {
                        octets_first_within(o, r.0, r.1)
                            .and_then(|v| u32::try_from(v).ok())
                            .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
                    })
                }),
        }
    }

    /// Whether some address is named by two specs or more: only then is
    /// [`TargetSet::is_first_index`] ever false, and worth asking per pair.
    pub fn overlaps(&self) -> bool {
        self.overlap.is_some()
    }

    /// Whether index `i` is the first of its address's indices ([`TargetSet::indices_of`]):
    /// the copy a scan sends to. Always true when no specs overlap; said of excluded
    /// addresses too, as if they were not.
    pub fn is_first_index(&self, i: u64) -> bool {
        let Some(o) = &self.overlap else {
            return true;
        };
        let k = self.ends.partition_point(|&end| end <= i);
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        match self.specs.get(k).and_then(|s| s.get(i - start)) {
            Some(addr) => o.is_first(&self.specs, k, addr),
            None => false,
        }
    }

    /// Whether spec `k`, which names `addr`, is the first spec that does.
    fn is_first_in(&self, k: usize, addr: IpAddr) -> bool {
        self.overlap
            .as_ref()
            .is_none_or(|o| o.is_first(&self.specs, k, addr))
    }

    /// Number of distinct addresses, excluded ones counted (as [`TargetSet::len`] counts
    /// them): `len` less the later copies of addresses several specs name. Exact, but when
    /// overlapping octet ranges are too large to cut into runs (more than 2^20): then at
    /// most `len`, and at least the truth.
    pub fn distinct_len(&self) -> u64 {
        self.overlap.as_ref().map_or(self.len(), |o| o.distinct)
    }

    /// Number of addresses, counting excluded ones (they are skipped at lookup).
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address number `i`, or `None` when it is excluded (or out of range).
    pub fn get(&self, i: u64) -> Option<IpAddr> {
        let k = self.ends.partition_point(|&end| end <= i);
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        let addr = self.specs.get(k)?.get(i - start)?;
        (!self.is_excluded(addr)).then_some(addr)
    }

    /// Every index of `addr` in the set (one per spec that names it, ascending); none when
    /// an exclusion removes it.
    pub fn indices_of(&self, addr: IpAddr) -> Vec<u64> {
        if self.is_excluded(addr) {
            return Vec::new();
        }
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.specs
            .iter()
            .zip(starts)
            .filter_map(|(s, start)| Some(start + s.index_of(addr)?))
            .collect()
    }

    /// Each spec's [`Spec::bounds`].
    pub fn bounds(&self) -> impl Iterator<Item = (u128, u128, bool)> + '_ {
        self.specs.iter().filter_map(Spec::bounds)
    }

    /// Whether some spec names `addr` and no exclusion removes it.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.specs.iter().any(|s| s.contains(addr)) && !self.is_excluded(addr)
    }

    /// Whether an exclusion, or a stretch left out ([`TargetSet::leave_out`]), removes `addr`.
    pub fn is_excluded(&self, addr: IpAddr) -> bool {
        self.exclude.iter().any(|e| e.contains(addr)) || {
            let (v6, v) = key_of(addr);
            self.left_out_end(v, v6).is_some()
        }
    }

    pub fn has_v4(&self) -> bool {
        self.specs
            .iter()
            .any(|s| !matches!(s, Spec::Range { v6: true, .. }))
    }

    pub fn has_v6(&self) -> bool {
        self.specs
            .iter()
            .any(|s| matches!(s, Spec::Range { v6: true, .. }))
    }

    /// Every address of the set in ascending order (IPv4 before IPv6) with its index, the
    /// excluded ones left out. An address that several specs name comes once per spec,
    /// its copies adjacent. A merge of the specs (each is ascending already): memory is
    /// one cursor per spec, never one entry per address.
    pub fn ascending(&self) -> Ascending<'_> {
        let mut heap = BinaryHeap::with_capacity(self.specs.len());
        for (k, s) in self.specs.iter().enumerate() {
            if let Some(a) = s.get(0) {
                heap.push(Reverse((a, k, 0)));
            }
        }
        Ascending { set: self, heap }
    }

    /// The next address of the set (excluded ones left out) whose value lies in
    /// `lo..=hi` of family `v6`, after the one `cursor` stands at; `None` at the end. Range
    /// specs are cut to the interval arithmetically, so walking the on-link part of a
    /// large off-link scan costs nothing; an octet-range spec (small, IPv4) is filtered.
    /// An address named by two specs comes once, from the first.
    pub fn next_within(
        &self,
        lo: u128,
        hi: u128,
        v6: bool,
        cursor: &mut WithinCursor,
    ) -> Option<IpAddr> {
        // Each pass moves the cursor on by at least one address or one spec: bounded by
        // the set's size.
        while let Some(spec) = self.specs.get(cursor.spec) {
            match spec {
                Spec::Range {
                    v6: sv6,
                    first,
                    count,
                } if *sv6 == v6 && *count > 0 => {
                    let last = first.saturating_add(u128::from(*count) - 1);
                    let start = (*first).max(lo);
                    let end = last.min(hi);
                    let at = first.saturating_add(u128::from(cursor.offset)).max(start);
                    if start > end || at > end {
                        cursor.next_spec();
                        continue;
                    }
                    cursor.offset = u64::try_from(at - first)
                        .unwrap_or(u64::MAX)
                        .saturating_add(1);
                    let addr = if v6 {
                        IpAddr::V6(Ipv6Addr::from(at))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(u32::try_from(at).ok()?))
                    };
                    if !self.is_excluded(addr) && self.is_first_in(cursor.spec, addr) {
                        return Some(addr);
                    }
                }
                Spec::Octets(_) if !v6 => {
                    let Some(addr) = spec.get(cursor.offset) else {
                        cursor.next_spec();
                        continue;
                    };
                    cursor.offset += 1;
                    let IpAddr::V4(a) = addr else { continue };
                    let value = u128::from(u32::from(a));
                    if (lo..=hi).contains(&value)
                        && !self.is_excluded(addr)
                        && self.is_first_in(cursor.spec, addr)
                    {
                        return Some(addr);
                    }
                }
                _ => cursor.next_spec(),
            }
        }
        None
    }

    /// The first address the exclusions leave in, in the specs' order; `None` when they
    /// leave none (`scan 198.18.0.0/24 --exclude 198.18.0.0/23`): a scan of nothing, which
    /// the command refuses. Walks runs of consecutive addresses, jumping over each
    /// exclusion's run at once, so a /8 excluded whole costs one step, not 2^24.
    pub fn first_included(&self) -> Option<IpAddr> {
        self.first_included_where(None)
    }

    /// [`TargetSet::first_included`] among the addresses of one family.
    pub fn first_included_of(&self, v6: bool) -> Option<IpAddr> {
        self.first_included_where(Some(v6))
    }

    fn first_included_where(&self, family: Option<bool>) -> Option<IpAddr> {
        let first_in = |lo: u128, hi: u128, v6: bool| self.first_outside(lo, hi, v6, &[]);
        for spec in &self.specs {
            let spec_v6 = matches!(spec, Spec::Range { v6: true, .. });
            if family.is_some_and(|f| f != spec_v6) {
                continue;
            }
            match spec {
                Spec::Range { .. } => {
                    if let Some((lo, hi, v6)) = spec.bounds()
                        && let Some(a) = first_in(lo, hi, v6)
                    {
                        return Some(a);
                    }
                }
                Spec::Octets(o) => {
                    // Runs in the last octet, one /24 at a time (at most 2^24 of them).
                    for &(a0, a1) in &o[0] {
                        for x in a0..=a1 {
                            for &(b0, b1) in &o[1] {
                                for y in b0..=b1 {
                                    for &(c0, c1) in &o[2] {
                                        for z in c0..=c1 {
                                            for &(d0, d1) in &o[3] {
                                                let at = |d| {
                                                    u128::from(u32::from_be_bytes([x, y, z, d]))
                                                };
                                                if let Some(a) = first_in(at(d0), at(d1), false) {
                                                    return Some(a);
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The first address of each family, for route lookups.
    pub fn first_of_family(&self, v6: bool) -> Option<IpAddr> {
        self.specs
            .iter()
            .filter(|s| matches!(s, Spec::Range { v6: true, .. }) == v6)
            .find_map(|s| s.get(0))
    }

    /// The first address of `lo..=hi` (family `v6`) that no exclusion holds and that lies
    /// in none of the runs `skip` (inclusive bounds), or `None`. Each turn jumps past one
    /// exclusion's run or one of `skip`, so a /8 excluded whole costs one step, not 2^24;
    /// `at` only grows: bounded by the interval.
    fn first_outside(&self, lo: u128, hi: u128, v6: bool, skip: &[(u128, u128)]) -> Option<IpAddr> {
        let mut at = lo;
        loop {
            let end = self
                .exclude
                .iter()
                .find_map(|e| e.run_end(at, v6))
                .or_else(|| self.left_out_end(at, v6))
                .or_else(|| skip.iter().find(|r| r.0 <= at && at <= r.1).map(|r| r.1));
            match end {
                None if v6 => return Some(IpAddr::V6(Ipv6Addr::from(at))),
                None => {
                    return u32::try_from(at)
                        .ok()
                        .map(|a| IpAddr::V4(Ipv4Addr::from(a)));
                }
                Some(end) if end >= hi => return None,
                Some(end) => at = end + 1,
            }
        }
    }

    /// The address whose route a family's scan goes by: its first address that is neither
    /// excluded nor one of this host's own (in `own`, the local table's prefixes as
    /// inclusive bounds), else its first included one (one of its own); `None` when
    /// exclusions leave the family nothing (a family whose targets have no route). A scan of `198.18.0.1-10` run on 198.18.0.1 must
    /// take the interface the other nine are behind, not the loopback its own address
    /// routes through (its replies to the others would never be seen); its own address is
    /// still scanned, through the loopback. Ranges jump over own prefixes and exclusions
    /// whole (`127.0.0.0/8 198.18.0.2` goes by 198.18.0.2); an octet range is looked at
    /// address by address, at most [`ROUTE_BY_LOOKS`] of them.
    pub fn route_by(&self, v6: bool, own: &[(u128, u128)]) -> Option<IpAddr> {
        // Nor an address no peer can be at: the kernel routes 0.0.0.0 as this host (over
        // lo) and multicast elsewhere, so `0.0.0.0/30 198.18.0.2` went by the loopback.
        let mut own = own.to_vec();
        own.extend_from_slice(no_peer_runs(v6));
        let own = &own[..];
        let mut looks = 0;
        for spec in self
            .specs
            .iter()
            .filter(|s| matches!(s, Spec::Range { v6: true, .. }) == v6)
        {
            match spec {
                Spec::Range { .. } => {
                    if let Some((lo, hi, _)) = spec.bounds()
                        && let Some(a) = self.first_outside(lo, hi, v6, own)
                    {
                        return Some(a);
                    }
                }
                Spec::Octets(_) => {
                    // Bounded by ROUTE_BY_LOOKS over all octet specs.
                    for i in 0..spec.len() {
                        if looks >= ROUTE_BY_LOOKS {
                            break;
                        }
                        looks += 1;
                        let Some(a) = spec.get(i) else { break };
                        let v = match a {
                            IpAddr::V4(x) => u128::from(u32::from(x)),
                            IpAddr::V6(x) => u128::from(x),
                        };
                        if !self.is_excluded(a) && !own.iter().any(|r| r.0 <= v && v <= r.1) {
                            return Some(a);
                        }
                    }
                }
            }
        }
        self.first_included_of(v6)
    }
}

/// Where [`TargetSet::next_within`] stands: a spec and an offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WithinCursor {
    spec: usize,
    offset: u64,
}

impl WithinCursor {
    fn next_spec(&mut self) {
        self.spec += 1;
        self.offset = 0;
    }
}

/// See [`TargetSet::ascending`]: yields (address, index in the set).
#[derive(Debug)]
pub struct Ascending<'a> {
    set: &'a TargetSet,
    /// (next address, spec, offset in the spec), smallest address on top.
    heap: BinaryHeap<Reverse<(IpAddr, usize, u64)>>,
}

impl Iterator for Ascending<'_> {
    type Item = (IpAddr, u64);

    fn next(&mut self) -> Option<(IpAddr, u64)> {
        // Each turn consumes one address of one spec: bounded by the set's size.
        while let Some(Reverse((addr, k, j))) = self.heap.pop() {
            let spec = &self.set.specs[k];
            if let Some(next) = spec.get(j + 1) {
                self.heap.push(Reverse((next, k, j + 1)));
            }
            if self.set.is_excluded(addr) {
                continue;
            }
            let start = if k == 0 { 0 } else { self.set.ends[k - 1] };
            return Some((addr, start + j));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(specs: &[&str], exclude: &[&str]) -> TargetSet {
        let spec = |t: &&str| match parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!("{t} parsed as a name"),
        };
        TargetSet::new(
            specs.iter().map(spec).collect(),
            exclude.iter().map(spec).collect(),
        )
        .unwrap()
    }

    #[test]
    fn exclusions_that_leave_nothing_are_seen() {
        let first = |specs: &[&str], exclude: &[&str]| {
            set(specs, exclude).first_included().map(|a| a.to_string())
        };
        assert_eq!(first(&["198.18.0.1"], &["198.18.0.1"]), None);
        assert_eq!(first(&["198.18.0.0/24"], &["198.18.0.0/23"]), None);
        assert_eq!(
            first(&["198.18.0.0/24"], &["198.18.0.0/25", "198.18.0.128/26"]),
            Some("198.18.0.192".into())
        );
        assert_eq!(
            first(&["198.18.0.0/24"], &["198.18.0.0-254"]),
            Some("198.18.0.255".into())
        );
        assert_eq!(first(&["198.18.0.0/24"], &["198.18.0.*"]), None);
        assert_eq!(first(&["198.18.0-3.1,5"], &["198.18.0.0/22"]), None);
        assert_eq!(
            first(&["198.18.0-3.1,5"], &["198.18.0.0/23", "198.18.2.1"]),
            Some("198.18.2.5".into())
        );
        // A /8 excluded whole: one jump, not 2^24 steps; other families untouched.
        assert_eq!(first(&["10.0.0.0/8"], &["10.0.0.0/8"]), None);
        assert_eq!(
            first(&["10.0.0.0/8", "fd00::/120"], &["10.0.0.0/8"]),
            Some("fd00::".into())
        );
        assert_eq!(first(&["fd00::7"], &["fd00::/112"]), None);
        assert_eq!(first(&["198.18.0.1"], &[]), Some("198.18.0.1".into()));
    }

    /// `indices_of` undoes `get` for every kind of spec; an address two specs name has
    /// both indices, an excluded one none.
    #[test]
    fn indices_of_is_the_inverse_of_get() {
        let t = set(
            &[
                "198.18.0-2.1,5-7",
                "198.18.1.0/29",
                "fd00::/126",
                "198.18.3.9",
            ],
            &["198.18.1.6"],
        );
        for i in 0..t.len() {
            match t.get(i) {
                Some(a) => assert!(t.indices_of(a).contains(&i), "{a} #{i}"),
                None => assert!(t.indices_of("198.18.1.6".parse().unwrap()).is_empty()),
            }
        }
        assert_eq!(t.indices_of("198.18.1.5".parse().unwrap()), [5, 17]);
        assert_eq!(t.indices_of("fd00::3".parse().unwrap()), [23]);
        assert_eq!(t.indices_of("198.18.3.9".parse().unwrap()), [24]);
        assert!(t.indices_of("198.18.0.2".parse().unwrap()).is_empty());
        assert!(t.indices_of("fd00::4".parse().unwrap()).is_empty());
    }

    /// What `is_first_index`, `distinct_len` and `overlaps` must say, by brute force.
    fn check_first_copies(t: &TargetSet) {
        let mut seen = std::collections::HashSet::new();
        for i in 0..t.len() {
            let a = t.get(i).expect("no exclusions here");
            let first = t.indices_of(a)[0];
            assert_eq!(t.is_first_index(i), i == first, "{a} #{i}");
            seen.insert(a);
        }
        assert_eq!(t.distinct_len(), seen.len() as u64);
        assert_eq!(t.overlaps(), t.distinct_len() < t.len());
        // The resolver's walk asks about each address once.
        let mut asked = Vec::new();
        for v6 in [false, true] {
            let mut c = WithinCursor::default();
            while let Some(a) = t.next_within(0, u128::MAX, v6, &mut c) {
                asked.push(a);
            }
        }
        let n = asked.len();
        asked.sort();
        asked.dedup();
        assert_eq!((n, asked.len()), (seen.len(), seen.len()));
    }

    /// An address several specs name has one first index, the lowest: the copy a scan
    /// sends to. Specs that cannot share an address cost nothing (no overlap kept).
    #[test]
    fn each_address_has_one_first_index() {
        for specs in [
            &["198.18.0.0/24"][..],
            &["198.18.0.1", "198.18.0.2", "fd00::1"],
            // Bounds that interleave, addresses that do not.
            &["198.18.0.1,5", "198.18.0.3", "198.18.0-1.7"],
        ] {
            let t = set(specs, &[]);
            assert!(!t.overlaps(), "{specs:?}");
            check_first_copies(&t);
        }
        for specs in [
            &["198.18.0.7", "198.18.0.7"][..],
            &[
                "198.18.0.0/29",
                "198.18.0.6-9",
                "198.18.0.2",
                "198.18.0.0/30",
            ],
            &["198.18.0-1.1-3", "198.18.1.0/30", "198.18.0-9.2"],
            &["198.18.*.*", "198.18.7.0/24"],
            &["fd00::/126", "fd00::2", "198.18.0.2", "fd00::2/127"],
            &["198.18.0.0-198.18.1.255", "198.18.0.255-198.18.1.0"],
        ] {
            let t = set(specs, &[]);
            assert!(t.overlaps(), "{specs:?}");
            check_first_copies(&t);
        }
        let t = set(&["198.18.0.7", "198.18.0.0/29", "198.18.0.7"], &[]);
        assert_eq!(t.len(), 10);
        assert_eq!(t.distinct_len(), 8);
        assert_eq!(t.indices_of("198.18.0.7".parse().unwrap()), [0, 8, 9]);
        let firsts: Vec<u64> = (0..t.len()).filter(|&i| t.is_first_index(i)).collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4, 5, 6, 7]);
        // Excluded or not, the first copy is the first: exclusion is another matter.
        let t = set(&["198.18.0.0/30", "198.18.0.1"], &["198.18.0.1"]);
        assert!(t.is_first_index(1) && !t.is_first_index(4));
        assert_eq!(t.distinct_len(), 4);
    }

    /// An octet range too large to cut into runs stands for its bounds: an address inside
    /// them that it does not name is still the other spec's first.
    #[test]
    fn a_large_octet_range_is_tested_address_by_address() {
        let t = set(&["*.*.*.1,3", "198.18.0.0/30"], &[]);
        assert!(t.overlaps());
        let base = 1u64 << 25;
        let firsts: Vec<bool> = (base..base + 4).map(|i| t.is_first_index(i)).collect();
        // 198.18.0.1 and .3 are the octet range's; .0 and .2 are not.
        assert_eq!(firsts, [true, false, true, false]);
        let one = t.indices_of("198.18.0.1".parse().unwrap());
        assert_eq!(one.len(), 2);
        assert!(t.is_first_index(one[0]));
        let d = t.distinct_len();
        assert!((base + 2..=t.len()).contains(&d), "{d}");
    }

    proptest::proptest! {
        #[test]
        fn first_copies_match_brute_force(
            specs in proptest::collection::vec((0u8..3, 0u8..40, 1u8..24), 1..6)
        ) {
            // Small ranges and octet ranges in 198.18.0.0/22, blocks in fd00::/120.
            let texts: Vec<String> = specs
                .iter()
                .map(|&(kind, at, n)| match kind {
                    // A full range, across a /24 boundary when it starts high.
                    0 => {
                        let lo = 0xc612_0000 + u32::from(at) * 6;
                        let hi = lo + u32::from(n) * 4;
                        format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi))
                    }
                    1 => format!("198.18.{}-{}.{},{}-{}", at % 2, at % 4, at, at + n, at + 2 * n),
                    _ => format!("fd00::{:x}/{}", at, 128 - n % 5),
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            check_first_copies(&set(&refs, &[]));
        }
    }

    fn addrs(text: &str) -> Vec<String> {
        let TargetSpec::Addrs(s) = parse(text).unwrap() else {
            panic!("{text} parsed as a name")
        };
        (0..s.len())
            .map(|i| s.get(i).unwrap().to_string())
            .collect()
    }

    #[test]
    fn single_addresses_and_cidr() {
        assert_eq!(addrs("198.18.0.7"), ["198.18.0.7"]);
        assert_eq!(addrs("fd00::7"), ["fd00::7"]);
        let v = addrs("198.18.0.9/30");
        assert_eq!(
            v,
            ["198.18.0.8", "198.18.0.9", "198.18.0.10", "198.18.0.11"]
        );
        assert_eq!(addrs("198.18.0.0/24").len(), 256);
        assert_eq!(
            addrs("fd00::/126"),
            ["fd00::", "fd00::1", "fd00::2", "fd00::3"]
        );
        let TargetSpec::Addrs(s) = parse("10.0.0.0/8").unwrap() else {
            panic!()
        };
        assert_eq!(s.len(), 1 << 24);
        assert_eq!(s.get((1 << 24) - 1).unwrap().to_string(), "10.255.255.255");
    }

    #[test]
    fn route_by_skips_own_and_excluded_addresses() {
        let spec = |t: &str| match parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!(),
        };
        let v = |a: &str| match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(x) => u128::from(u32::from(x)),
            IpAddr::V6(x) => u128::from(x),
        };
        // This host's own, as the local table has them: 127.0.0.0/8 and 198.18.0.1; fd00::1.
        let own4 = [
            (v("127.0.0.0"), v("127.255.255.255")),
            (v("198.18.0.1"), v("198.18.0.1")),
        ];
        let own6 = [(v("fd00::"), v("fd00::1"))];
        // The host's own address first (nmap's habit: a subnet from .1): the route is the
        // next one's, its own still in the set.
        let set = TargetSet::new(vec![spec("198.18.0.1-10"), spec("fd00::/126")], vec![]).unwrap();
        assert_eq!(
            set.route_by(false, &own4).unwrap().to_string(),
            "198.18.0.2"
        );
        assert_eq!(set.route_by(true, &own6).unwrap().to_string(), "fd00::2");
        assert_eq!(
            set.first_of_family(false).unwrap().to_string(),
            "198.18.0.1"
        );
        // Excluded addresses are not sent to: their route does not count either.
        let set = TargetSet::new(
            vec![spec("198.18.0.1"), spec("198.18.0.2-5")],
            vec![spec("198.18.0.2")],
        )
        .unwrap();
        assert_eq!(
            set.route_by(false, &own4).unwrap().to_string(),
            "198.18.0.3"
        );
        // A whole own prefix first is jumped over at once, not walked (2^24 addresses).
        let set = TargetSet::new(vec![spec("127.0.0.0/8"), spec("198.18.0.2")], vec![]).unwrap();
        assert_eq!(
            set.route_by(false, &own4).unwrap().to_string(),
            "198.18.0.2"
        );
        // Nor by addresses no peer is at (0.0.0.0 routes over lo like our own).
        let set = TargetSet::new(
            vec![spec("0.0.0.0/30"), spec("224.0.0.1"), spec("198.18.0.2")],
            vec![],
        )
        .unwrap();
        assert_eq!(
            set.route_by(false, &own4).unwrap().to_string(),
            "198.18.0.2"
        );
        let set =
            TargetSet::new(vec![spec("::"), spec("ff02::1"), spec("fd00::9")], vec![]).unwrap();
        assert_eq!(set.route_by(true, &own6).unwrap().to_string(), "fd00::9");
        // Nothing but own addresses: the first.
        let set = TargetSet::new(vec![spec("127.0.0.0/8")], vec![]).unwrap();
        assert_eq!(set.route_by(false, &own4).unwrap().to_string(), "127.0.0.0");
        // A family with no target has no route.
        assert_eq!(set.route_by(true, &own6), None);
        // Octet ranges count as IPv4.
        let set = TargetSet::new(vec![spec("198.18.0.1,2")], vec![]).unwrap();
        assert_eq!(
            set.route_by(false, &own4).unwrap().to_string(),
            "198.18.0.2"
        );
    }

    #[test]
    fn within_cuts_ranges_and_filters_octets() {
        let spec = |t: &str| match parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!(),
        };
        let set = TargetSet::new(
            vec![
                spec("10.0.0.0/8"),
                spec("198.18.0.250-198.18.1.3"),
                spec("198.18.0.1-3"),
                spec("fd00::/120"),
            ],
            vec![spec("198.18.1.1")],
        )
        .unwrap();
        let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().unwrap()));
        let walk = |lo: u128, hi: u128, v6: bool| {
            let mut c = WithinCursor::default();
            let mut out = Vec::new();
            while let Some(a) = set.next_within(lo, hi, v6, &mut c) {
                out.push(a.to_string());
                assert!(out.len() < 1000);
            }
            out
        };
        // 198.18.1.0/24: the tail of the full range, the excluded address left out; the
        // /8 is cut away without being walked.
        assert_eq!(
            walk(v4("198.18.1.0"), v4("198.18.1.255"), false),
            ["198.18.1.0", "198.18.1.2", "198.18.1.3"]
        );
        assert_eq!(
            walk(v4("198.18.0.0"), v4("198.18.0.255"), false),
            [
                "198.18.0.250",
                "198.18.0.251",
                "198.18.0.252",
                "198.18.0.253",
                "198.18.0.254",
                "198.18.0.255",
                "198.18.0.1",
                "198.18.0.2",
                "198.18.0.3"
            ]
        );
        assert_eq!(
            walk(v4("10.1.2.3"), v4("10.1.2.4"), false),
            ["10.1.2.3", "10.1.2.4"]
        );
        let v6 = |a: &str| u128::from(a.parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            walk(v6("fd00::fe"), v6("fd00::1:0"), true),
            ["fd00::fe", "fd00::ff"]
        );
        assert!(walk(v6("fd01::"), v6("fd01::ff"), true).is_empty());
    }

    #[test]
    fn nmap_octet_ranges() {
        assert_eq!(
            addrs("198.18.0.1-3"),
            ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
        );
        assert_eq!(
            addrs("198.18.0-1.5,1"),
            ["198.18.0.1", "198.18.0.5", "198.18.1.1", "198.18.1.5"]
        );
        assert_eq!(addrs("198.18.0.*").len(), 256);
        assert_eq!(addrs("198.18.0.250-").len(), 6);
        // Overlaps are merged: each address once.
        assert_eq!(addrs("198.18.0.1-3,2-4").len(), 4);
        assert_eq!(
            addrs("198.18.0.254-198.18.1.1"),
            ["198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1"]
        );
    }

    #[test]
    fn bad_specs_point_at_the_bad_part() {
        let e = parse("198.18.0.300").unwrap_err();
        assert!(e.contains("`300`") && e.contains("octet 4"), "{e}");
        let e = parse("198.18.0.9-2").unwrap_err();
        assert!(e.contains("ends before"), "{e}");
        let e = parse("198.18.0").unwrap_err();
        assert!(e.contains("four"), "{e}");
        let e = parse("198.18.0.0/33").unwrap_err();
        assert!(e.contains("/33"), "{e}");
        let e = parse("fd00::/64").unwrap_err();
        assert!(e.contains("list the addresses"), "{e}");
        let e = parse("bad$host").unwrap_err();
        assert!(e.contains("`$`"), "{e}");
        // The host part's message is the one `probe` gives for the same host.
        let probe = crate::probe::target::parse("bad$host", Some(80)).unwrap_err();
        assert_eq!(e, probe);
        assert!(
            parse("fd00::zz")
                .unwrap_err()
                .starts_with("`fd00::zz` is not an IPv6 address")
        );
        assert_eq!(addrs("[fd00::7]"), ["fd00::7"]);
        assert!(parse("198.18.0.0/x").unwrap_err().contains("`/x`"));
        // An octet with a leading zero is refused by scan and probe alike, in the same words
        // (inet_aton reads `010` as 8, nmap as 10).
        let e = parse("198.18.200.010").unwrap_err();
        assert!(e.contains("octet 4 `010` has a leading zero"), "{e}");
        let probe = crate::probe::target::parse("198.18.200.010", Some(80)).unwrap_err();
        assert_eq!(e, probe);
        assert!(
            parse("198.18.0-010.1")
                .unwrap_err()
                .contains("leading zero")
        );
        assert!(
            parse("0xc6.18.200.2")
                .unwrap_err()
                .contains("four decimal octets")
        );
    }

    #[test]
    fn names_are_left_to_the_caller() {
        assert_eq!(
            parse("example.test/28").unwrap(),
            TargetSpec::Name {
                name: "example.test".into(),
                prefix: Some(28)
            }
        );
    }

    #[test]
    fn target_set_indexes_across_specs_and_skips_excluded() {
        let spec = |t| match parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!(),
        };
        let set = TargetSet::new(
            vec![spec("198.18.0.0/30"), spec("fd00::9"), spec("198.18.1.1-2")],
            vec![spec("198.18.0.1"), spec("198.18.1.2")],
        )
        .unwrap();
        assert_eq!(set.len(), 7);
        let got: Vec<Option<String>> = (0..8).map(|i| set.get(i).map(|a| a.to_string())).collect();
        let want = [
            Some("198.18.0.0"),
            None,
            Some("198.18.0.2"),
            Some("198.18.0.3"),
            Some("fd00::9"),
            Some("198.18.1.1"),
            None,
            None,
        ];
        assert_eq!(got, want.map(|o| o.map(String::from)));
        assert!(set.has_v4() && set.has_v6());
    }

    #[test]
    fn ascending_merges_specs_skips_excluded_and_keeps_indices() {
        let spec = |t| match parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!(),
        };
        let set = TargetSet::new(
            vec![
                spec("fd00::9"),
                spec("198.18.0.8/30"),
                spec("198.18.0.1-9"),
                spec("198.18.0.2"),
            ],
            vec![spec("198.18.0.5")],
        )
        .unwrap();
        let got: Vec<(String, u64)> = set.ascending().map(|(a, i)| (a.to_string(), i)).collect();
        // Every index points back at its address.
        for (a, i) in &got {
            assert_eq!(set.get(*i).unwrap().to_string(), *a);
        }
        let addrs: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            addrs,
            [
                "198.18.0.1",
                "198.18.0.2",
                "198.18.0.2",
                "198.18.0.3",
                "198.18.0.4",
                "198.18.0.6",
                "198.18.0.7",
                "198.18.0.8",
                "198.18.0.8",
                "198.18.0.9",
                "198.18.0.9",
                "198.18.0.10",
                "198.18.0.11",
                "fd00::9",
            ]
        );
        // Every non-excluded index exactly once.
        let mut idx: Vec<u64> = got.iter().map(|&(_, i)| i).collect();
        idx.sort_unstable();
        let want: Vec<u64> = (0..set.len()).filter(|&i| set.get(i).is_some()).collect();
        assert_eq!(idx, want);
    }
}

//! Targets nothing can be sent to: found before the scan, from the kernel's routes, without
//! a route lookup per address; said once, and left out of the scan and its reports.
//!
//! nmap does the same with a host it cannot route (`setup_target: failed to determine route
//! to X`): the host is skipped, the others scanned, and the skipped one is in no report's
//! hosts (`-oX` lists it as a `<target status="skipped">`). A silent `filtered` would be wrong (no SYN ever left), and stopping
//! the scan would lose the other targets.
//!
//! The address space is cut at the bounds of every route prefix the kernel holds (all
//! tables): within one of the stretches between two cuts (a "cell") every address matches
//! the same routes, so one lookup (`ip route get`) of one address stands for the cell, and
//! a /16 with no route costs one lookup, not 65 536. Only the cells some target spec
//! reaches are looked up, at most [`MAX_CELLS`] per family; the rest, and whatever policy
//! routing does that the routes' prefixes do not show, are caught when the kernel refuses
//! the SYN (ENETUNREACH / EHOSTUNREACH on the raw socket, `Schedule::refused`).

use super::targets::TargetSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Cells looked up at most per family (~10 µs each): a host with a full routing table
/// scanning a wide range would otherwise pay a lookup per route.
pub const MAX_CELLS: usize = 4096;

/// Why nothing can be sent to an address, as the kernel's route lookup says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoPath {
    /// No route (ENETUNREACH, or EHOSTUNREACH for an `unreachable` route).
    NoRoute,
    /// A `prohibit` route (EACCES).
    Prohibited,
    /// A `blackhole` route (EINVAL): the kernel drops what is sent there.
    Blackhole,
}

impl NoPath {
    /// What to say about `what` (an address, or "N target addresses (from X)"), and what
    /// to check: `ip route get` of `dst`.
    pub fn message(self, what: &str, dst: IpAddr) -> String {
        let is = match self {
            NoPath::NoRoute => format!("no route to {what}"),
            NoPath::Prohibited => {
                format!("the route to {what} is prohibited (a `prohibit` route or rule)")
            }
            NoPath::Blackhole => {
                format!("the route to {what} is a blackhole (this host drops what is sent to it)")
            }
        };
        format!("{is}: check `ip route get {dst}`")
    }
}

/// The address of value `v` in family `v6` (`None` for an IPv4 value past 32 bits).
pub fn addr_of(v: u128, v6: bool) -> Option<IpAddr> {
    if v6 {
        Some(IpAddr::V6(Ipv6Addr::from(v)))
    } else {
        u32::try_from(v).ok().map(|a| IpAddr::V4(Ipv4Addr::from(a)))
    }
}

/// The cells the targets of family `v6` reach, ascending, each with the address to look
/// up for it (a target's, the first of the specs' bounds in it): the stretches between
/// the cuts that `prefixes` (every route prefix of the family, inclusive bounds) make.
/// With no prefixes, each target spec is a cell of its own (a one-address scan needs no
/// dump of the routes). `None` when there are more than `cap`: the caller then looks up
/// none (the kernel's refusals still catch them).
pub fn cells(
    targets: &TargetSet,
    v6: bool,
    prefixes: &[(u128, u128)],
    cap: usize,
) -> Option<Vec<(u128, u128, u128)>> {
    let top = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let mut cuts: Vec<u128> = prefixes
        .iter()
        .flat_map(|&(lo, hi)| [Some(lo), hi.checked_add(1)])
        .flatten()
        .filter(|&c| c <= top)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(u128, u128, u128)> = Vec::new();
    for (lo, hi, sv6) in targets.bounds() {
        if sv6 != v6 {
            continue;
        }
        if prefixes.is_empty() {
            out.push((lo, hi, lo));
            if out.len() > cap.saturating_mul(2) && !compact(&mut out, cap) {
                return None;
            }
            continue;
        }
        let mut at = lo;
        // Each turn moves `at` past one cell: bounded by the cuts within the spec, and by
        // `cap`.
        loop {
            let i = cuts.partition_point(|&c| c <= at);
            let cell_lo = i.checked_sub(1).map_or(0, |j| cuts[j]);
            let cell_hi = cuts.get(i).map_or(top, |&c| c - 1);
            out.push((cell_lo, cell_hi, at));
            // Specs that share cells (a list of addresses) are kept to one each.
            if out.len() > cap.saturating_mul(2) && !compact(&mut out, cap) {
                return None;
            }
            if cell_hi >= hi {
                break;
            }
            at = cell_hi + 1;
        }
    }
    compact(&mut out, cap).then_some(out)
}

/// Sort `cells` and keep one of each; false when more than `cap` are left.
fn compact(cells: &mut Vec<(u128, u128, u128)>, cap: usize) -> bool {
    cells.sort_unstable();
    cells.dedup_by_key(|c| (c.0, c.1));
    cells.len() <= cap
}

/// Stretches of the targets found unroutable, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unroutable {
    /// (first, last, v6, why), ascending.
    runs: Vec<(u128, u128, bool, NoPath)>,
}

/// One message: a target spec's addresses with no route of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub why: NoPath,
    /// The spec as the user wrote it (`198.19.0.0/16`), for a spec of more than one address.
    pub spec: Option<String>,
    /// Its addresses in those stretches that no `--exclude` removes.
    pub count: u64,
    /// The first of them.
    pub first: IpAddr,
    /// Every address of the spec that no `--exclude` removes is unroutable (of some kind):
    /// the target as written is skipped whole (what -oX lists as skipped; a range scanned
    /// in part is no skipped target).
    pub whole: bool,
}

impl Note {
    /// `no route to 198.18.231.5: check `ip route get 198.18.231.5``, or for a range
    /// `no route to 256 addresses of 198.19.3.0/24 (198.19.3.0 the first): check …`: one
    /// line per target as written (a /16 with no route is not 65 536 lines, and three
    /// addresses are not folded into one line naming the first). `others`: other targets
    /// are scanned, which the line says, as a skipped `-iL` line says `skipped`.
    pub fn text(&self, others: bool) -> String {
        let what = match (&self.spec, self.count) {
            (Some(spec), n) if n > 1 => {
                format!("{n} addresses of {spec} ({} the first)", self.first)
            }
            _ => self.first.to_string(),
        };
        let mut s = self.why.message(&what, self.first);
        if others {
            s += "; skipped";
        }
        s
    }
}

impl Unroutable {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The cell `lo..=hi` of family `v6` has no route (`why`).
    pub fn add(&mut self, lo: u128, hi: u128, v6: bool, why: NoPath) {
        self.runs.push((lo, hi, v6, why));
    }

    /// The stretches, for [`TargetSet::leave_out`].
    pub fn runs(&self) -> impl Iterator<Item = (u128, u128, bool)> + '_ {
        self.runs.iter().map(|&(lo, hi, v6, _)| (lo, hi, v6))
    }

    /// One note per target spec (in the order given) and kind of failure that holds some of
    /// its addresses (before the stretches are left out of `targets`: a stretch only user
    /// exclusions fill says nothing); a single address named twice, once.
    pub fn notes(&self, targets: &TargetSet) -> Vec<Note> {
        let mut notes = Vec::new();
        let mut named: std::collections::HashSet<IpAddr> = std::collections::HashSet::new();
        for (i, spec) in targets.specs().iter().enumerate() {
            let Some((slo, shi, v6)) = spec.bounds() else {
                continue;
            };
            let from = notes.len();
            let mut whys: Vec<NoPath> = self
                .runs
                .iter()
                .filter(|r| r.2 == v6 && r.0 <= shi && slo <= r.1)
                .map(|r| r.3)
                .collect();
            whys.sort_unstable();
            whys.dedup();
            for why in whys {
                let mut runs: Vec<(u128, u128)> = self
                    .runs
                    .iter()
                    .filter(|r| r.2 == v6 && r.3 == why && r.0 <= shi && slo <= r.1)
                    .map(|r| (r.0, r.1))
                    .collect();
                runs.sort_unstable();
                let count = runs
                    .iter()
                    .map(|r| targets.spec_count_within(i, r.0, r.1))
                    .fold(0u64, u64::saturating_add);
                let Some(first) = targets.spec_first_in_runs(i, &runs) else {
                    continue;
                };
                // A single address named by an earlier spec already: said once.
                if count == 0 || (spec.len() == 1 && !named.insert(first)) {
                    continue;
                }
                notes.push(Note {
                    why,
                    spec: (spec.len() > 1).then(|| spec.describe()),
                    count,
                    first,
                    whole: false,
                });
            }
            let of_spec = &mut notes[from..];
            let unroutable = of_spec
                .iter()
                .map(|n| n.count)
                .fold(0u64, u64::saturating_add);
            let whole = unroutable >= targets.spec_count_within(i, slo, shi);
            for n in of_spec {
                n.whole = whole;
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::scan::targets::{self, Spec, TargetSpec};

    fn set(specs: &[&str], exclude: &[&str]) -> TargetSet {
        let spec = |t: &&str| match targets::parse(t).unwrap() {
            TargetSpec::Addrs(s) => s,
            TargetSpec::Name { .. } => panic!(),
        };
        let specs: Vec<Spec> = specs.iter().map(spec).collect();
        TargetSet::new(specs, exclude.iter().map(spec).collect()).unwrap()
    }

    fn v4(s: &str) -> u128 {
        u128::from(u32::from(s.parse::<Ipv4Addr>().unwrap()))
    }

    fn bounds(p: &str) -> (u128, u128) {
        let (a, l) = p.split_once('/').unwrap();
        let l: u32 = l.parse().unwrap();
        let a = v4(a);
        let mask = if l == 0 {
            u128::from(u32::MAX)
        } else {
            (1u128 << (32 - l)) - 1
        };
        (a & !mask, a | mask)
    }

    /// A lab's routes: its /24 on the link, a /24 through a gateway, nothing else.
    fn routes() -> Vec<(u128, u128)> {
        vec![
            bounds("198.18.5.0/24"),
            bounds("198.19.7.0/24"),
            bounds("198.18.5.1/32"),
        ]
    }

    #[test]
    fn a_wide_range_is_one_lookup_per_cell_not_per_address() {
        // A /16 with no route in it but one /24: three cells, whatever its size.
        let t = set(&["198.19.0.0/16"], &[]);
        let c = cells(&t, false, &routes(), MAX_CELLS).unwrap();
        assert_eq!(
            c,
            vec![
                (
                    bounds("198.18.5.0/24").1 + 1,
                    v4("198.19.6.255"),
                    v4("198.19.0.0")
                ),
                (v4("198.19.7.0"), v4("198.19.7.255"), v4("198.19.7.0")),
                (v4("198.19.8.0"), u128::from(u32::MAX), v4("198.19.8.0")),
            ]
        );
        // Addresses of one cell (a list) share its lookup; another family has none.
        let t = set(&["198.19.9.1", "198.19.9.7", "198.18.5.9", "fd00::1"], &[]);
        let c = cells(&t, false, &routes(), MAX_CELLS).unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(cells(&t, true, &[], MAX_CELLS).unwrap().len(), 1);
        // Over the cap: none looked up.
        assert_eq!(cells(&t, false, &routes(), 1), None);
        // No dump (one address): the spec is its own cell.
        let t = set(&["198.19.9.1"], &[]);
        assert_eq!(
            cells(&t, false, &[], MAX_CELLS).unwrap(),
            vec![(v4("198.19.9.1"), v4("198.19.9.1"), v4("198.19.9.1"))]
        );
    }

    #[test]
    fn notes_count_and_name_the_first_target_in_the_order_given() {
        let mut t = set(&["198.18.5.2", "198.19.0.0/16", "198.20.1-2.1-3"], &[]);
        let mut u = Unroutable::default();
        u.add(v4("198.19.0.0"), v4("198.19.6.255"), false, NoPath::NoRoute);
        u.add(
            v4("198.19.8.0"),
            u128::from(u32::MAX),
            false,
            NoPath::NoRoute,
        );
        let notes = u.notes(&t);
        // One line per target as written: the /16's 7 + 248 /24s, the octet range's 6.
        let texts: Vec<String> = notes.iter().map(|n| n.text(true)).collect();
        assert_eq!(
            texts,
            [
                "no route to 65280 addresses of 198.19.0.0/16 (198.19.0.0 the first): check \
                 `ip route get 198.19.0.0`; skipped",
                "no route to 6 addresses of 198.20.1-2.1-3 (198.20.1.1 the first): check \
                 `ip route get 198.20.1.1`; skipped",
            ]
        );
        // The /16 is scanned in part (its 198.19.7.0/24 routes): no skipped target in
        // -oX; the octet range is skipped whole.
        assert_eq!((notes[0].whole, notes[1].whole), (false, true));
        t.leave_out(u.runs());
        assert!(t.is_excluded("198.19.0.9".parse().unwrap()));
        assert!(t.is_excluded("198.20.2.3".parse().unwrap()));
        assert!(!t.is_excluded("198.19.7.9".parse().unwrap()));
        assert_eq!(t.first_included(), Some("198.18.5.2".parse().unwrap()));
        // One address: the lookup's own words.
        let t = set(&["198.19.9.9", "198.18.5.2"], &[]);
        let mut u = Unroutable::default();
        u.add(
            v4("198.19.8.0"),
            u128::from(u32::MAX),
            false,
            NoPath::NoRoute,
        );
        let n = &u.notes(&t)[0];
        assert_eq!(
            n.text(false),
            "no route to 198.19.9.9: check `ip route get 198.19.9.9`"
        );
        // A stretch only exclusions fill says nothing.
        let t = set(&["198.19.9.9", "198.18.5.2"], &["198.19.9.9"]);
        assert!(u.notes(&t).is_empty());
    }

    /// A walk's cases: three addresses are three lines, in the order given, a duplicate
    /// said once; `--exclude` is taken off a range's count.
    #[test]
    fn each_target_is_its_own_line_and_exclusions_are_not_counted() {
        let mut u = Unroutable::default();
        u.add(v4("198.19.8.0"), v4("198.19.8.255"), false, NoPath::NoRoute);
        let t = set(
            &[
                "198.19.8.9",
                "198.18.5.2",
                "198.19.8.10",
                "198.19.8.9",
                "198.19.8.8-9",
            ],
            &[],
        );
        let texts: Vec<String> = u.notes(&t).iter().map(|n| n.text(false)).collect();
        assert_eq!(
            texts,
            [
                "no route to 198.19.8.9: check `ip route get 198.19.8.9`",
                "no route to 198.19.8.10: check `ip route get 198.19.8.10`",
                "no route to 2 addresses of 198.19.8.8-9 (198.19.8.8 the first): \
                 check `ip route get 198.19.8.8`",
            ]
        );
        let t = set(
            &["198.19.8.0/24"],
            &["198.19.8.0/25", "198.19.8.100", "198.19.8.200"],
        );
        let n = &u.notes(&t)[0];
        assert_eq!((n.count, n.first), (127, "198.19.8.128".parse().unwrap()));
        let t = set(&["198.19.8.0/24"], &["198.19.8.1-10"]);
        assert_eq!(u.notes(&t)[0].count, 246);
        // Overlapping exclusions, a range and an octet pattern, are taken off once.
        let t = set(&["198.19.8.0/24"], &["198.19.8.0/25", "198.19.8.0-127"]);
        assert_eq!(u.notes(&t)[0].count, 128);
        // An octet pattern wider than what is looked at one by one still has its line.
        let mut w = Unroutable::default();
        w.add(
            v4("198.19.0.0"),
            v4("198.19.255.255"),
            false,
            NoPath::NoRoute,
        );
        let t = set(&["198.18-19.*.*"], &[]);
        let n = &w.notes(&t)[0];
        assert_eq!((n.count, n.first), (65536, "198.19.0.0".parse().unwrap()));
        assert!(!n.whole);
    }

    #[test]
    fn a_family_left_out_whole_has_no_route_to_go_by() {
        let mut t = set(&["198.18.5.2", "fd00:9::1", "fd00:9::2"], &[]);
        t.leave_out([(
            u128::from("fd00:9::".parse::<Ipv6Addr>().unwrap()),
            u128::from("fd00:9::ffff".parse::<Ipv6Addr>().unwrap()),
            true,
        )]);
        assert_eq!(t.route_by(true, &[]), None);
        assert_eq!(t.first_included_of(true), None);
        assert_eq!(t.route_by(false, &[]), Some("198.18.5.2".parse().unwrap()));
        assert_eq!(t.ascending().count(), 1);
    }
}

//! Survey statistics, per target and overall, per leg: count, loss, min, median, mean,
//! p90, p99, max, standard deviation (jitter), and how many probes needed a retransmission.
//!
//! Percentiles are exact, by the **nearest-rank** method: the p-th percentile of n sorted
//! samples is the sample of rank ⌈p/100 · n⌉ (1-based; rank 1 for p = 0). Every reported
//! percentile is therefore one of the measured values, in whole ns, and anyone can
//! reproduce it from the JSON lines. The median is p50 by the same rule (the lower middle
//! sample for an even count). The standard deviation is the population one (divide by n):
//! it describes the probes that were made, not an estimate of some larger population.
//!
//! Memory: each probe keeps one row of thirteen `u64` (every leg of [`Leg::ALL`], TLS ones
//! included; `u64::MAX` for a leg that did not happen) and no record: 112 bytes a probe, so
//! a million probes is 112 MB of rows, 100 000 single probes about 11 MB.
//!
//! SLOs (`--slo 'syn_to_synack.p99<5ms'`) are parsed and judged here too.

use super::record::{Leg, Legs, PortState, ProbeResult};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

const MISSING: u64 = u64::MAX;

/// One probe, as statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub legs: [Option<u64>; Leg::COUNT],
    pub state: PortState,
    pub retransmitted: bool,
    /// An HTTPS probe: its record carries the TLS legs (each may still be missing).
    pub tls: bool,
    /// When the probe's first SYN left (kernel timestamp, ns since the epoch), if it did:
    /// what `tcpshake report` orders targets by.
    pub start_ns: Option<u64>,
    /// The capture dropped packets while it ran (`capture_lost`): its legs may be wrong.
    pub capture_lost: bool,
    /// The port was open but the exchange failed (TLS, HTTP, the close): the record's
    /// `error` says why. Counted apart, or an open port would read as a working server.
    pub failed: bool,
}

impl Sample {
    /// A record as statistics see it; `None` for a probe the user interrupted, whose
    /// legs are partial and whose verdict may be missing: statistics leave it out.
    pub fn of(r: &ProbeResult) -> Option<Sample> {
        (!r.interrupted).then(|| Sample {
            start_ns: r.segments.first().map(|s| s.ts_ns),
            capture_lost: r.capture_lost > 0,
            failed: r.state == PortState::Open && !r.succeeded(),
            ..Sample::new(&r.legs_ns, r.state, r.retransmissions)
        })
    }

    pub fn new(legs: &Legs, state: PortState, retransmissions: u32) -> Sample {
        Sample {
            legs: Leg::ALL.map(|l| legs.get(l)),
            state,
            retransmitted: retransmissions > 0,
            tls: legs.has_tls(),
            start_ns: None,
            capture_lost: false,
            failed: false,
        }
    }
}

/// One probe's legs (`MISSING` for a leg that did not happen), whether it retransmitted,
/// whether it was an HTTPS probe.
#[derive(Clone, Copy, Debug)]
struct Row {
    legs: [u64; Leg::COUNT],
    retransmitted: bool,
    tls: bool,
}

/// A group of probes whose statistics can be computed: one target, or all of them.
pub trait Group {
    fn probes(&self) -> u64;
    /// The HTTPS probes among them: the ones a TLS leg's loss is counted over.
    fn tls_probes(&self) -> u64;
    /// Probes that found the port (open, closed, filtered).
    fn states(&self) -> (u64, u64, u64);
    /// Probes whose capture dropped packets (their legs may be wrong; they are counted in
    /// the statistics all the same).
    fn capture_lost(&self) -> u64;
    /// Probes that found the port open but whose exchange failed.
    fn failed(&self) -> u64;
    /// Calls `f(value, retransmitted)` for every probe in which leg `leg` happened.
    fn each(&self, leg: Leg, f: &mut dyn FnMut(u64, bool));

    /// The values of leg `leg`, sorted.
    fn sorted(&self, leg: Leg) -> Vec<u64> {
        let mut v = Vec::new();
        self.each(leg, &mut |x, _| v.push(x));
        v.sort_unstable();
        v
    }

    fn leg_stats(&self, leg: Leg) -> LegStats {
        let mut retransmitted = 0;
        self.each(leg, &mut |_, x| retransmitted += u64::from(x));
        let probes = if leg.is_tls() {
            self.tls_probes()
        } else {
            self.probes()
        };
        LegStats::from_sorted(leg, probes, &self.sorted(leg), retransmitted)
    }

    /// The statistics of every leg the group's records carry, in [`Leg::ALL`]'s order:
    /// the TLS legs only when some probe was an HTTPS one.
    fn summary(&self) -> Vec<LegStats> {
        let tls = self.tls_probes() > 0;
        Leg::ALL
            .iter()
            .filter(|l| tls || !l.is_tls())
            .map(|&leg| self.leg_stats(leg))
            .collect()
    }
}

/// Every probe of one target: 112 bytes each, nothing else (and, once per target, when
/// its first probe started).
#[derive(Clone, Debug, Default)]
pub struct Accumulator {
    rows: Vec<Row>,
    tls: u32,
    open: u32,
    closed: u32,
    filtered: u32,
    first_start_ns: Option<u64>,
    capture_lost: u32,
    failed: u32,
}

impl Accumulator {
    pub fn add(&mut self, s: &Sample) {
        // `Sample::of` keeps interrupted probes out; one made by hand counts nowhere.
        if s.state == PortState::Interrupted {
            return;
        }
        if self.rows.is_empty() {
            // Most targets of a big survey get one probe: room for exactly one row, not
            // the four a Vec starts with.
            self.rows.reserve_exact(1);
        }
        // A leg of u64::MAX ns (584 years) cannot happen; it stands for "missing".
        self.rows.push(Row {
            legs: s.legs.map(|l| l.map_or(MISSING, |v| v.min(MISSING - 1))),
            retransmitted: s.retransmitted,
            tls: s.tls,
        });
        self.tls = self.tls.saturating_add(u32::from(s.tls));
        if let Some(t) = s.start_ns {
            self.first_start_ns = Some(self.first_start_ns.map_or(t, |f| f.min(t)));
        }
        self.capture_lost = self.capture_lost.saturating_add(u32::from(s.capture_lost));
        self.failed = self.failed.saturating_add(u32::from(s.failed));
        let n = match s.state {
            PortState::Open => &mut self.open,
            PortState::Closed => &mut self.closed,
            PortState::Filtered | PortState::Interrupted => &mut self.filtered,
        };
        *n = n.saturating_add(1);
    }
}

impl Group for Accumulator {
    fn probes(&self) -> u64 {
        self.rows.len() as u64
    }

    fn tls_probes(&self) -> u64 {
        self.tls.into()
    }

    fn states(&self) -> (u64, u64, u64) {
        (self.open.into(), self.closed.into(), self.filtered.into())
    }

    fn capture_lost(&self) -> u64 {
        self.capture_lost.into()
    }

    fn failed(&self) -> u64 {
        self.failed.into()
    }

    fn each(&self, leg: Leg, f: &mut dyn FnMut(u64, bool)) {
        for r in &self.rows {
            let v = r.legs[leg.index()];
            if v != MISSING && (r.tls || !leg.is_tls()) {
                f(v, r.retransmitted);
            }
        }
    }
}

/// All targets of a survey as one group, read in place (no copy of the rows).
pub struct Overall<'a>(&'a Survey);

impl Group for Overall<'_> {
    fn probes(&self) -> u64 {
        self.0.probes()
    }

    fn tls_probes(&self) -> u64 {
        self.0.accs.iter().map(Accumulator::tls_probes).sum()
    }

    fn capture_lost(&self) -> u64 {
        self.0.accs.iter().map(Group::capture_lost).sum()
    }

    fn failed(&self) -> u64 {
        self.0.accs.iter().map(Group::failed).sum()
    }

    fn states(&self) -> (u64, u64, u64) {
        self.0.accs.iter().fold((0, 0, 0), |(o, c, f), a| {
            let (ao, ac, af) = a.states();
            (o + ao, c + ac, f + af)
        })
    }

    fn each(&self, leg: Leg, f: &mut dyn FnMut(u64, bool)) {
        for a in &self.0.accs {
            a.each(leg, f);
        }
    }
}

/// The statistics of one leg over one group of probes. Times in ns; `None` without samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LegStats {
    pub leg: Leg,
    /// Probes in the group.
    pub probes: u64,
    /// Probes in which this leg happened.
    pub count: u64,
    /// Share of the group's probes in which this leg did not happen, in percent.
    pub loss_pct: f64,
    pub min_ns: Option<u64>,
    pub median_ns: Option<u64>,
    pub mean_ns: Option<f64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
    /// Population standard deviation: the jitter.
    pub stddev_ns: Option<f64>,
    /// Probes counted here that sent some segment more than once.
    pub retransmitted: u64,
}

impl LegStats {
    pub fn from_sorted(leg: Leg, probes: u64, sorted: &[u64], retransmitted: u64) -> LegStats {
        let n = sorted.len() as u64;
        let (mean, stddev) = mean_stddev(sorted).unzip();
        LegStats {
            leg,
            probes,
            count: n,
            loss_pct: if probes == 0 {
                0.0
            } else {
                probes.saturating_sub(n) as f64 * 100.0 / probes as f64
            },
            min_ns: sorted.first().copied(),
            median_ns: percentile(sorted, 50.0),
            mean_ns: mean,
            p90_ns: percentile(sorted, 90.0),
            p99_ns: percentile(sorted, 99.0),
            max_ns: sorted.last().copied(),
            stddev_ns: stddev,
            retransmitted,
        }
    }
}

/// Nearest-rank percentile of sorted samples (see the module doc); `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Mean and population standard deviation, two-pass (the sum of squares of deviations
/// keeps its precision where Σx² − n·mean² would cancel).
fn mean_stddev(v: &[u64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

/// Statistics of a whole survey: one accumulator per target, in the order the targets were
/// made known — by [`Survey::declare`] as they are taken from the input (a survey's table
/// lists them as the user gave them, not in the order their probes happened to end), else
/// by their first sample. Each target's name is kept once, as the key of the index.
#[derive(Clone, Debug, Default)]
pub struct Survey {
    accs: Vec<Accumulator>,
    index: HashMap<Box<str>, u32>,
}

impl Survey {
    /// Give `target` its place in the order now, before any of its probes ended. Declaring
    /// a known target changes nothing; a target declared but never sampled is not listed.
    pub fn declare(&mut self, target: &str) {
        self.slot(target);
    }

    pub fn add(&mut self, target: &str, s: &Sample) {
        let i = self.slot(target);
        self.accs[i].add(s);
    }

    fn slot(&mut self, target: &str) -> usize {
        match self.index.get(target) {
            Some(&i) => i as usize,
            None => {
                self.accs.push(Accumulator::default());
                let i = self.accs.len() - 1;
                self.index.insert(target.into(), i as u32);
                i
            }
        }
    }

    /// Order the targets by when their first probe started: for the records of one survey,
    /// the order in which its targets were given (each target's first probe starts as it
    /// is taken from the input). Targets whose probes never sent a SYN keep their place
    /// relative to each other, after the rest. For `tcpshake report`, which reads records
    /// in the order probes ended.
    pub fn order_by_first_start(&mut self) {
        let mut order: Vec<u32> = (0..self.accs.len() as u32).collect();
        // Stable: equal starts (and none) keep their first-seen order.
        order.sort_by_key(|&i| self.accs[i as usize].first_start_ns.unwrap_or(u64::MAX));
        let mut old: Vec<Option<Accumulator>> = std::mem::take(&mut self.accs)
            .into_iter()
            .map(Some)
            .collect();
        let mut new_pos = vec![0u32; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            new_pos[i as usize] = pos as u32;
            self.accs.extend(old[i as usize].take());
        }
        for i in self.index.values_mut() {
            *i = new_pos[*i as usize];
        }
    }

    /// Every target with its probes, in order (see [`Survey`]); targets without a sample
    /// (declared, but every probe failed to start or was interrupted) are left out.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &Accumulator)> {
        let mut names: Vec<(&str, u32)> = self
            .index
            .iter()
            .filter(|&(_, &i)| !self.accs[i as usize].rows.is_empty())
            .map(|(k, &i)| (&**k, i))
            .collect();
        names.sort_unstable_by_key(|&(_, i)| i);
        names
            .into_iter()
            .map(|(name, i)| (name, &self.accs[i as usize]))
    }

    /// Targets with at least one sample.
    pub fn target_count(&self) -> usize {
        self.accs.iter().filter(|a| !a.rows.is_empty()).count()
    }

    /// Targets declared but without a sample: every probe of theirs failed to start or
    /// was interrupted.
    pub fn unsampled_count(&self) -> usize {
        self.accs.len() - self.target_count()
    }

    pub fn probes(&self) -> u64 {
        self.accs.iter().map(|a| a.rows.len() as u64).sum()
    }

    /// Everything as one group.
    pub fn overall(&self) -> Overall<'_> {
        Overall(self)
    }
}

/// The statistic an SLO bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    Min,
    Median,
    Mean,
    /// Any percentile, nearest rank.
    Percentile(f64),
    Max,
    Stddev,
    /// Loss in percent.
    Loss,
    Count,
    Retransmitted,
}

impl Stat {
    fn is_time(self) -> bool {
        !matches!(self, Stat::Loss | Stat::Count | Stat::Retransmitted)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// One objective: `LEG.STAT OP VALUE`, over all probes of the survey.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub text: String,
    pub leg: Leg,
    pub stat: Stat,
    pub op: Op,
    /// ns for time statistics, percent for loss, a count otherwise.
    pub bound: f64,
}

/// An SLO's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub slo: Slo,
    /// The measured value (ns, percent or count); `None` without samples.
    pub value: Option<f64>,
    pub met: bool,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match (self.value, self.slo.stat) {
            (None, _) => "no samples".to_string(),
            (Some(v), Stat::Loss) => format!("{v:.2}%"),
            // The statistics table's form, so the two can be compared at a glance.
            (Some(v), s) if s.is_time() => crate::time::human_ns(v.round() as u64),
            (Some(v), _) => format!("{v}"),
        };
        let word = if self.met { "met" } else { "BREACHED" };
        write!(f, "SLO {}: {word} (measured {value})", self.slo.text)
    }
}

const SLO_HELP: &str = "write LEG.STAT<VALUE, e.g. syn_to_synack.p99<5ms, ttfb.median<=20ms, \
connect.loss<1%; several separated by commas";

/// Parse a comma-separated list of SLOs.
pub fn parse_slos(s: &str) -> Result<Vec<Slo>, String> {
    let list: Vec<Slo> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_slo)
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(format!("empty SLO; {SLO_HELP}"));
    }
    Ok(list)
}

/// Parse one `LEG.STAT OP VALUE`.
pub fn parse_slo(s: &str) -> Result<Slo, String> {
    let text: String = s.split_whitespace().collect();
    let op_at = text
        .find(['<', '>'])
        .ok_or_else(|| format!("`{s}`: no comparison (< <= > >=); {SLO_HELP}"))?;
    let (lhs, rest) = text.split_at(op_at);
    if lhs.ends_with(['=', '!']) {
        return Err(format!("`{s}`: bad comparison; use < <= > or >="));
    }
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else {
        return Err(format!("`{s}`: bad comparison; {SLO_HELP}"));
    };
    let (leg_name, stat_name) = lhs
        .split_once('.')
        .ok_or_else(|| format!("`{s}`: `{lhs}` is not LEG.STAT; {SLO_HELP}"))?;
    let leg = Leg::from_name(leg_name).ok_or_else(|| {
        let names: Vec<&str> = Leg::ALL.iter().map(|l| l.name()).collect();
        format!(
            "`{s}`: unknown leg `{leg_name}`; legs are {} (or connect, ttfb)",
            names.join(", ")
        )
    })?;
    let stat = match stat_name {
        "min" => Stat::Min,
        "median" => Stat::Median,
        "mean" | "avg" => Stat::Mean,
        "max" => Stat::Max,
        "stddev" | "jitter" => Stat::Stddev,
        "loss" => Stat::Loss,
        "count" => Stat::Count,
        "retransmitted" | "retx" => Stat::Retransmitted,
        p if p.starts_with('p') => {
            let q: f64 = p[1..].parse().map_err(|_| {
                format!("`{s}`: `{p}` is not a percentile; write p50, p90, p99 or p99.9")
            })?;
            if !(q > 0.0 && q <= 100.0) {
                return Err(format!("`{s}`: percentile {q} is outside (0, 100]"));
            }
            Stat::Percentile(q)
        }
        other => {
            return Err(format!(
                "`{s}`: unknown statistic `{other}`; use min, median, mean, p90, p99, pNN, max, \
                 stddev, loss, count or retransmitted"
            ));
        }
    };
    // A probe's `total` runs from its first segment to its last, a filtered one's
    // included; only a probe whose SYN never left (an unresolved neighbour) has none. Its
    // "loss" is not the loss anyone means: refused, with what to write instead.
    if leg == Leg::Total && stat == Stat::Loss {
        return Err(format!(
            "`{s}`: a probe's total is its whole run, not a reply it may miss (total.loss \
             would count only probes whose SYN never left); write connect.loss (probes that \
             got no SYN-ACK) or ttfb.loss (no response)"
        ));
    }
    let bound = if stat.is_time() {
        parse_duration_ns(value).map_err(|e| format!("`{s}`: {e}"))?
    } else if stat == Stat::Loss {
        let v = value.strip_suffix('%').unwrap_or(value);
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && (0.0..=100.0).contains(x))
            .ok_or_else(|| format!("`{s}`: loss bound `{value}` is not a percentage like 1%"))?
    } else {
        value
            .parse::<u64>()
            .map_err(|_| format!("`{s}`: `{value}` is not a whole number"))? as f64
    };
    Ok(Slo {
        text,
        leg,
        stat,
        op,
        bound,
    })
}

/// A time bound → ns, with the one duration syntax of every option (`5ms`, `250us`).
fn parse_duration_ns(v: &str) -> Result<f64, String> {
    crate::time::parse_duration(v).map(|d| d.as_nanos() as f64)
}

impl Slo {
    /// Judge this SLO over `all` (every probe of the survey). Without samples of its leg a
    /// time SLO is breached: nothing shows it is met.
    pub fn judge(&self, all: &dyn Group) -> Verdict {
        let st = all.leg_stats(self.leg);
        let value = match self.stat {
            Stat::Min => st.min_ns.map(|v| v as f64),
            Stat::Median => st.median_ns.map(|v| v as f64),
            Stat::Mean => st.mean_ns,
            Stat::Percentile(p) => percentile(&all.sorted(self.leg), p).map(|v| v as f64),
            Stat::Max => st.max_ns.map(|v| v as f64),
            Stat::Stddev => st.stddev_ns,
            Stat::Loss => (st.probes > 0).then_some(st.loss_pct),
            Stat::Count => Some(st.count as f64),
            Stat::Retransmitted => Some(st.retransmitted as f64),
        };
        Verdict {
            slo: self.clone(),
            value,
            met: value.is_some_and(|v| self.op.holds(v, self.bound)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verdict's value is written as the statistics table writes it (a user saw
    /// `measured 1537.1 µs` beside a table's `1.537 ms`).
    #[test]
    fn a_verdict_measures_as_the_table_does() {
        let v = Verdict {
            slo: parse_slo("syn_to_synack.p99<1ms").unwrap(),
            value: Some(1_537_100.0),
            met: false,
        };
        assert_eq!(
            v.to_string(),
            "SLO syn_to_synack.p99<1ms: BREACHED (measured 1.537 ms)"
        );
    }

    fn sample(syn: Option<u64>, total: Option<u64>, retx: bool) -> Sample {
        let mut legs = [None; Leg::COUNT];
        legs[Leg::SynToSynack.index()] = syn;
        legs[Leg::Total.index()] = total;
        Sample {
            tls: false,
            legs,
            state: if syn.is_some() {
                PortState::Open
            } else {
                PortState::Filtered
            },
            retransmitted: retx,
            start_ns: None,
            capture_lost: false,
            failed: false,
        }
    }

    #[test]
    fn probes_whose_capture_lost_packets_are_counted_per_target_and_overall() {
        let mut sv = Survey::default();
        sv.add("a", &sample(Some(5), Some(9), false));
        sv.add(
            "a",
            &Sample {
                capture_lost: true,
                ..sample(Some(6), Some(9), false)
            },
        );
        sv.add(
            "b",
            &Sample {
                capture_lost: true,
                ..sample(None, None, false)
            },
        );
        let per: Vec<u64> = sv.targets().map(|(_, a)| a.capture_lost()).collect();
        assert_eq!(per, [1, 1]);
        assert_eq!(sv.overall().capture_lost(), 2);
        // Still in the statistics: their legs were measured.
        assert_eq!(sv.overall().leg_stats(Leg::SynToSynack).count, 2);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 10.0), Some(1));
        assert_eq!(percentile(&v, 11.0), Some(2));
        // Even count: the lower middle.
        assert_eq!(percentile(&v, 50.0), Some(5));
        assert_eq!(percentile(&v, 90.0), Some(9));
        assert_eq!(percentile(&v, 99.0), Some(10));
        assert_eq!(percentile(&v, 100.0), Some(10));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // The textbook example (Wikipedia, "Percentile", nearest-rank): 15 20 35 40 50.
        let w = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&w, 5.0), Some(15));
        assert_eq!(percentile(&w, 30.0), Some(20));
        assert_eq!(percentile(&w, 40.0), Some(20));
        assert_eq!(percentile(&w, 50.0), Some(35));
        assert_eq!(percentile(&w, 100.0), Some(50));
    }

    #[test]
    fn percentiles_of_a_million_are_exact() {
        // 1..=1_000_000 shuffled by a multiplicative permutation: p99 is exactly 990 000.
        let n: u64 = 1_000_000;
        let mut acc = Accumulator::default();
        for i in 0..n {
            let v = (i * 7_919) % n + 1;
            acc.add(&sample(Some(v), None, false));
        }
        let s = acc.leg_stats(Leg::SynToSynack);
        assert_eq!(s.count, n);
        assert_eq!(s.min_ns, Some(1));
        assert_eq!(s.median_ns, Some(500_000));
        assert_eq!(s.p90_ns, Some(900_000));
        assert_eq!(s.p99_ns, Some(990_000));
        assert_eq!(s.max_ns, Some(n));
        assert_eq!(s.mean_ns, Some(500_000.5));
    }

    #[test]
    fn loss_mean_stddev_and_retransmissions_per_leg() {
        let mut acc = Accumulator::default();
        acc.add(&sample(Some(2), Some(10), false));
        acc.add(&sample(Some(4), Some(20), true));
        acc.add(&sample(Some(4), None, false));
        acc.add(&sample(Some(4), None, false));
        acc.add(&sample(None, None, true));
        acc.add(&sample(Some(5), Some(30), false));
        acc.add(&sample(Some(7), None, false));
        acc.add(&sample(Some(9), None, false));
        let s = acc.leg_stats(Leg::SynToSynack);
        assert_eq!((s.probes, s.count), (8, 7));
        assert!((s.loss_pct - 12.5).abs() < 1e-9);
        // 2 4 4 4 5 7 9 → mean 5, population stddev sqrt(32/7).
        assert_eq!(s.mean_ns, Some(5.0));
        assert!((s.stddev_ns.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-9);
        assert_eq!(
            (s.min_ns, s.median_ns, s.max_ns),
            (Some(2), Some(4), Some(9))
        );
        assert_eq!(s.retransmitted, 1);
        let t = acc.leg_stats(Leg::Total);
        assert_eq!((t.count, t.retransmitted), (3, 1));
        assert!((t.loss_pct - 62.5).abs() < 1e-9);
        assert_eq!(acc.states(), (7, 0, 1));
        let none = acc.leg_stats(Leg::SynackToAck);
        assert_eq!((none.count, none.min_ns, none.mean_ns), (0, None, None));
        assert_eq!(none.loss_pct, 100.0);
    }

    #[test]
    fn tls_legs_count_over_https_probes_only() {
        let mut acc = Accumulator::default();
        acc.add(&sample(Some(1), Some(9), false));
        assert_eq!(
            acc.summary().len(),
            Leg::TCP.len(),
            "no HTTPS probe: no TLS legs"
        );
        let mut https = sample(Some(2), Some(9), false);
        https.tls = true;
        https.legs[Leg::TlsSynToAppconnect.index()] = Some(500);
        acc.add(&https);
        https.legs[Leg::TlsSynToAppconnect.index()] = None;
        acc.add(&https);
        assert_eq!(acc.summary().len(), Leg::COUNT);
        let t = acc.leg_stats(Leg::TlsSynToAppconnect);
        assert_eq!((t.probes, t.count, t.loss_pct), (2, 1, 50.0));
        assert_eq!(acc.leg_stats(Leg::SynToSynack).probes, 3);
        let slo = parse_slo("tls_syn_to_appconnect.max<1us").unwrap();
        assert!(slo.judge(&acc).met);
    }

    #[test]
    fn survey_groups_by_target_and_merges() {
        let mut s = Survey::default();
        s.add("a:80", &sample(Some(1), None, false));
        s.add("b:80", &sample(Some(3), None, false));
        s.add("a:80", &sample(Some(2), None, true));
        assert_eq!(s.target_count(), 2);
        let names: Vec<&str> = s.targets().map(|(t, _)| t).collect();
        assert_eq!(names, ["a:80", "b:80"]);
        let all = s.overall();
        assert_eq!(all.sorted(Leg::SynToSynack), [1, 2, 3]);
        assert_eq!(all.leg_stats(Leg::SynToSynack).retransmitted, 1);
    }

    #[test]
    fn declared_targets_keep_the_input_order_whatever_ends_first() {
        let mut s = Survey::default();
        for t in ["c:80", "a:80", "b:80", "never:80"] {
            s.declare(t);
        }
        // Probes end in another order than the targets were given.
        s.add("b:80", &sample(Some(3), None, false));
        s.add("a:80", &sample(Some(1), None, false));
        s.add("c:80", &sample(Some(2), None, false));
        s.declare("a:80");
        let names: Vec<&str> = s.targets().map(|(t, _)| t).collect();
        assert_eq!(names, ["c:80", "a:80", "b:80"], "never:80 had no sample");
        assert_eq!(s.target_count(), 3);
        assert_eq!(s.unsampled_count(), 1);
    }

    #[test]
    fn report_orders_targets_by_their_first_start() {
        let at = |t: u64| Sample {
            start_ns: Some(t),
            ..sample(Some(1), None, false)
        };
        let mut s = Survey::default();
        // Records as a survey writes them: in the order the probes ended.
        s.add("b:80", &at(200));
        s.add("nosyn:80", &sample(None, None, false));
        s.add("a:80", &at(300));
        s.add("c:80", &at(100));
        s.add("a:80", &at(50));
        s.order_by_first_start();
        let names: Vec<&str> = s.targets().map(|(t, _)| t).collect();
        assert_eq!(names, ["a:80", "c:80", "b:80", "nosyn:80"]);
        s.add("c:80", &at(1));
        let (name, acc) = s.targets().nth(1).unwrap();
        assert_eq!((name, acc.probes()), ("c:80", 2));
    }

    #[test]
    fn slos_parse() {
        let s = parse_slo("syn_to_synack.p99<5ms").unwrap();
        assert_eq!(
            (s.leg, s.stat, s.op, s.bound),
            (Leg::SynToSynack, Stat::Percentile(99.0), Op::Lt, 5e6)
        );
        let s = parse_slo(" ttfb.median <= 250us ").unwrap();
        assert_eq!(
            (s.leg, s.stat, s.op, s.bound),
            (Leg::RequestToFirstByte, Stat::Median, Op::Le, 250e3)
        );
        let s = parse_slo("connect.loss<1.5%").unwrap();
        assert_eq!(
            (s.leg, s.stat, s.bound),
            (Leg::SynToSynack, Stat::Loss, 1.5)
        );
        let s = parse_slo("connect.p99.9>=800ns").unwrap();
        assert_eq!(
            (s.stat, s.op, s.bound),
            (Stat::Percentile(99.9), Op::Ge, 800.0)
        );
        assert_eq!(parse_slos("total.max<1s, ttfb.count>3").unwrap().len(), 2);
    }

    #[test]
    fn bad_slos_say_what_to_write() {
        let e = |s: &str| parse_slo(s).unwrap_err();
        assert!(e("syn_to_synack.p99").contains("no comparison"));
        assert!(e("synack.p99<5ms").contains("unknown leg `synack`"));
        assert!(e("ttfb.p999x<5ms").contains("not a percentile"));
        assert!(e("ttfb.p0<5ms").contains("outside"));
        assert!(e("ttfb.avgx<5ms").contains("unknown statistic"));
        assert!(e("ttfb.p99<5").contains("no unit"));
        assert!(e("ttfb.p99<5 parsecs").contains("not a unit"));
        assert!(e("ttfb<5ms").contains("not LEG.STAT"));
        assert!(e("connect.loss<150%").contains("percentage"));
        assert!(e("total.loss<1%").contains("not a reply it may miss"));
        assert!(e("ttfb.p99=<5ms").contains("comparison"));
        assert!(parse_slos(" , ").unwrap_err().contains("empty"));
    }

    #[test]
    fn slos_judge_the_overall_samples() {
        let mut acc = Accumulator::default();
        for v in [1_000u64, 2_000, 3_000, 4_000] {
            acc.add(&sample(Some(v), None, false));
        }
        acc.add(&sample(None, None, false));
        let j = |s: &str| parse_slo(s).unwrap().judge(&acc);
        assert!(j("syn_to_synack.p99<5us").met);
        assert!(!j("syn_to_synack.p99<4us").met);
        assert!(j("syn_to_synack.p99<=4us").met);
        assert!(j("syn_to_synack.p75<=3us").met);
        assert!(!j("syn_to_synack.loss<20%").met);
        assert!(j("syn_to_synack.loss<=20%").met);
        let none = j("ttfb.max<1s");
        assert!(!none.met && none.value.is_none());
        assert!(none.to_string().contains("no samples"));
        assert!(j("ttfb.count<1").met);
    }
}

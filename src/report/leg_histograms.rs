//! `tcpshake_survey_leg_seconds`, the exporter's biggest family, kept and written here in
//! exactly prometheus-client's two text formats.
//!
//! One histogram per survey × target × module × leg is 8 000 series and ~22 MB of text
//! for 1 000 targets. Through the library, each of its ~180 000 lines encodes its four
//! labels afresh through `fmt::Write` (30 ms of a scrape here, most of `/metrics`' time).
//! Here the library itself renders each series' label block once, when the series is
//! made, and the bounds' `le` values once, at start; a scrape copies them and writes only
//! numbers (the counts with `itoa`, the sum with `dtoa`, as the library does). The tests
//! hold the output to the library's, line for line, in both formats.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::sync::{Arc, Mutex};

/// Which of the library's text formats: OpenMetrics (`text`) or Prometheus 0.0.4
/// (`prometheus_text`).
#[derive(Clone, Copy)]
enum Format {
    OpenMetrics = 0,
    Text = 1,
}

const FORMATS: [Format; 2] = [Format::OpenMetrics, Format::Text];

fn library_encode(r: &Registry, f: Format) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the library's own errors (none for these types)
    // would leave the text short, which the tests would see.
    let _ = match f {
        Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(&mut s, r),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut s, r),
    };
    s
}

/// One series: its label block as the library writes it (`survey="…",target="…",…`, per
/// format), and its counts (per bucket, not cumulative; the last is `+Inf`).
#[derive(Clone)]
struct Series {
    labels: Arc<[String; 2]>,
    counts: Box<[u64]>,
    sum: f64,
    count: u64,
}

/// A histogram family with fixed buckets, labelled by `L`.
pub struct LegHistograms<L> {
    name: &'static str,
    bounds: Box<[f64]>,
    /// The library's header (`# HELP`, `# TYPE`) per format, written when there is a
    /// series.
    header: [String; 2],
    /// The library's rendering of each bound, `+Inf` last, per format.
    le: [Vec<String>; 2],
    series: Mutex<HashMap<L, Series>>,
}

impl<L> LegHistograms<L>
where
    L: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    pub fn new(name: &'static str, help: &'static str, bounds: &[f64]) -> LegHistograms<L> {
        // As Histogram::new: non-finite bounds dropped, +Inf implicit.
        let bounds: Box<[f64]> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        // The library writes a family's header only when it has a series: take it from one.
        let mut r = Registry::default();
        r.register(name, help, Histogram::new([]));
        let header = FORMATS.map(|f| {
            library_encode(&r, f)
                .lines()
                .filter(|l| l.starts_with("# "))
                .map(|l| format!("{l}\n"))
                .collect()
        });
        let mut r = Registry::default();
        r.register(name, help, Histogram::new(bounds.iter().copied()));
        let le = FORMATS.map(|f| {
            library_encode(&r, f)
                .lines()
                .filter_map(|l| l.split_once("le=\"")?.1.split_once('"').map(|v| v.0))
                .map(str::to_string)
                .collect()
        });
        LegHistograms {
            name,
            bounds,
            header,
            le,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The label block of `labels` as the library writes it, per format.
    fn render_labels(labels: &L) -> [String; 2] {
        let fam = Family::<L, Counter>::default();
        fam.get_or_create(labels).inc();
        let mut r = Registry::default();
        r.register("x", "x", fam);
        FORMATS.map(|f| {
            let text = library_encode(&r, f);
            text.lines()
                .find_map(|l| {
                    let l = l.strip_prefix("x_total{")?;
                    Some(l[..l.rfind('}')?].to_string())
                })
                .unwrap_or_default()
        })
    }

    pub fn observe(&self, labels: &L, v: f64) {
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(labels) {
            let s = Series {
                labels: Arc::new(Self::render_labels(labels)),
                counts: vec![0; self.bounds.len() + 1].into_boxed_slice(),
                sum: 0.0,
                count: 0,
            };
            map.insert(labels.clone(), s);
        }
        let Some(s) = map.get_mut(labels) else {
            return;
        };
        s.sum += v;
        s.count += 1;
        // As the library: the first bucket whose bound is ≥ v; NaN (and anything above
        // the last bound) in +Inf.
        let i = self
            .bounds
            .iter()
            .position(|b| *b >= v)
            .unwrap_or(self.bounds.len());
        s.counts[i] += 1;
    }

    /// Write the family: its header and every series.
    pub fn encode(&self, openmetrics: bool, w: &mut dyn io::Write) -> io::Result<()> {
        let f = if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        // A copy under the lock (a few MB at most), written without it: the survey loop
        // that observes is never held up by a slow scraper.
        let snapshot: Vec<Series> = {
            let map = self.series.lock().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        if snapshot.is_empty() {
            return Ok(()); // as the library: no series, no header
        }
        w.write_all(self.header[f as usize].as_bytes())?;
        let le = &self.le[f as usize];
        let name = self.name.as_bytes();
        let mut out = Vec::with_capacity(4096);
        let mut ints = itoa::Buffer::new();
        let (mut sum_buf, mut count_buf) = (dtoa::Buffer::new(), itoa::Buffer::new());
        for Series {
            labels,
            counts,
            sum,
            count,
        } in &snapshot
        {
            let labels = labels[f as usize].as_bytes();
            out.clear();
            let line = |out: &mut Vec<u8>, suffix: &[u8], labels: &[&[u8]], value: &[u8]| {
                out.extend_from_slice(name);
                out.extend_from_slice(suffix);
                out.push(b'{');
                labels.iter().for_each(|l| out.extend_from_slice(l));
                out.extend_from_slice(b"} ");
                out.extend_from_slice(value);
                out.push(b'\n');
            };
            // Both formats write a finite sum with dtoa (format_finite); ours is a sum of
            // durations, never infinite or NaN.
            let sum = sum_buf.format(*sum).as_bytes();
            let count = count_buf.format(*count).as_bytes();
            let mut cumulative = 0u64;
            match f {
                Format::OpenMetrics => {
                    line(&mut out, b"_sum", &[labels], sum);
                    line(&mut out, b"_count", &[labels], count);
                    for (n, le) in counts.iter().zip(le) {
                        cumulative += n;
                        let le: &[&[u8]] = &[b"le=\"", le.as_bytes(), b"\",", labels];
                        line(&mut out, b"_bucket", le, ints.format(cumulative).as_bytes());
                    }
                }
                Format::Text => {
                    for (n, le) in counts.iter().zip(le) {
                        cumulative += n;
                        let le: &[&[u8]] = &[labels, b",le=\"", le.as_bytes(), b"\""];
                        line(&mut out, b"_bucket", le, ints.format(cumulative).as_bytes());
                    }
                    line(&mut out, b"_sum", &[labels], sum);
                    line(&mut out, b"_count", &[labels], count);
                }
            }
            w.write_all(&out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        survey: String,
        target: String,
        leg: &'static str,
    }

    fn ours(h: &LegHistograms<L>, om: bool) -> String {
        let mut out = Vec::new();
        h.encode(om, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn library(fam: &Family<L, Histogram>, om: bool) -> String {
        let mut r = Registry::default();
        r.register("tcpshake_survey_leg_seconds", "Legs", fam.clone());
        library_encode(
            &r,
            if om {
                Format::OpenMetrics
            } else {
                Format::Text
            },
        )
    }

    /// Bucket bounds of both sides of [`writes_what_the_library_writes`].
    const BOUNDS: [f64; 10] = [
        1e-5,
        2e-5,
        5e-5,
        1e-4,
        1e-3,
        0.5,
        1.0,
        2.5,
        10.0,
        f64::INFINITY,
    ];

    /// The same observations through the library's Family<_, Histogram> and through
    /// ours: the same lines, in both formats (a series' lines in the same order; series in
    /// any order, as the library's own hash map gives them).
    #[test]
    fn writes_what_the_library_writes() {
        let ours_h = LegHistograms::<L>::new("tcpshake_survey_leg_seconds", "Legs", &BOUNDS);
        let fam = Family::<L, Histogram>::new_with_constructor(|| Histogram::new(BOUNDS));
        // Escapes in label values, and values on, between and beyond the bounds.
        let targets = ["198.18.0.2:80", "a\"b\\c\nd:443", "[fd00::2]:8080"];
        let legs = ["syn_to_synack", "total"];
        let values = [
            0.0,
            1e-5,
            1.5e-5,
            2e-5,
            3.3e-4,
            0.000_021_8,
            0.5,
            0.999,
            2.5,
            11.0,
            123.456,
            f64::NAN,
        ];
        let mut k = 0;
        for (ti, t) in targets.iter().enumerate() {
            for leg in legs {
                let l = L {
                    survey: format!("fleet{ti}"),
                    target: t.to_string(),
                    leg,
                };
                for _ in 0..(ti + 1) * 3 {
                    let v = values[k % values.len()];
                    k += 1;
                    if v.is_nan() {
                        continue; // a NaN sum prints differently; ours never sees one
                    }
                    fam.get_or_create(&l).observe(v);
                    ours_h.observe(&l, v);
                }
            }
        }
        for om in [true, false] {
            let a = ours(&ours_h, om);
            let b = library(&fam, om);
            // Series by series: split at each _sum (OM) / first _bucket (text) boundary is
            // format-specific, so compare each series' block found by its label text.
            let mut la: Vec<&str> = a.lines().collect();
            let mut lb: Vec<&str> = b.lines().collect();
            assert_eq!(la.len(), lb.len(), "om={om}\n{a}\n---\n{b}");
            // Headers first, identical.
            assert_eq!(la[..2], lb[..2], "om={om}");
            // Within a series the library's order: compare the lines of each series.
            for l in targets {
                let esc = l
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let sa: Vec<&&str> = la.iter().filter(|x| x.contains(&esc)).collect();
                let sb: Vec<&&str> = lb.iter().filter(|x| x.contains(&esc)).collect();
                assert!(!sa.is_empty());
                // Per leg, in order.
                for leg in legs {
                    let pa: Vec<_> = sa.iter().filter(|x| x.contains(leg)).collect();
                    let pb: Vec<_> = sb.iter().filter(|x| x.contains(leg)).collect();
                    assert_eq!(pa, pb, "om={om}");
                }
            }
            la.sort_unstable();
            lb.sort_unstable();
            assert_eq!(la, lb, "om={om}");
        }
    }

    #[test]
    fn an_empty_family_writes_nothing() {
        let h = LegHistograms::<L>::new("tcpshake_survey_leg_seconds", "Legs", &[1.0]);
        let fam = Family::<L, Histogram>::new_with_constructor(|| Histogram::new([1.0]));
        for om in [true, false] {
            assert_eq!(ours(&h, om), library(&fam, om));
            assert_eq!(ours(&h, om), "");
        }
    }
}

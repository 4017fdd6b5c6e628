//! `report --svg`: each target's latency distribution, SYN→SYN-ACK above and
//! request→first byte below, drawn with plotters' SVG backend (pure Rust, no font or C
//! library: text is emitted as SVG `<text>` and laid out by the viewer).
//!
//! Box plots mark the nearest-rank statistics of probe::stats: whiskers from min to max, the
//! box from p25 to p75, a line at the median, a dot at p99. The CDF draws every sample.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::element::BackendCoordOnly;
use plotters::prelude::*;
use std::path::Path;
use tcpshake_proto::probe::record::Leg;
use tcpshake_proto::probe::stats::{Group, Survey, percentile};

/// At most this many targets are drawn (the first ones, in the order they came).
pub const MAX_TARGETS: usize = 60;

/// Which legs are drawn, with their panel titles.
const PANELS: [(Leg, &str); 2] = [
    (Leg::SynToSynack, "SYN→SYN-ACK"),
    (Leg::RequestToFirstByte, "request→first byte (TTFB)"),
];

/// Longest target label drawn whole; longer ones keep their start and end (the host's
/// first labels and the port) around an ellipsis.
const MAX_LABEL: usize = 64;
/// Height of one target's row in the box plot, in px.
const ROW: u32 = 20;
/// Width of the CDF's two stacked panels, in px; the legend column comes after.
const CDF_PLOTS: u32 = 1000;
/// Height of one legend line, in px (12 px text).
const LEGEND_LINE: u32 = 18;
/// The legend's colour swatch and the gaps around it, in px.
const LEGEND_SWATCH: u32 = 40;
/// Width of one panel's plotting area in the box plot, in px.
const PANEL: u32 = 440;
/// What a character of the 12 px sans-serif labels takes, in tenths of a px: DejaVu Sans
/// (rsvg's and most Linux browsers' sans-serif) averages ~5.6 px for host names, Verdana,
/// the widest common one, ~6.5.
const CHAR_DECIPX: u32 = 65;

pub fn write_svg(survey: &Survey, path: &Path, cdf: bool) -> Result<()> {
    let shown: Vec<(String, [Vec<u64>; 2])> = survey
        .targets()
        .take(MAX_TARGETS)
        .map(|(name, acc)| (short_label(name), PANELS.map(|(leg, _)| acc.sorted(leg))))
        .collect();
    let title = if survey.target_count() > shown.len() {
        format!(
            "tcpshake latency, first {} of {} targets",
            shown.len(),
            survey.target_count()
        )
    } else {
        format!("tcpshake latency, {} targets", shown.len())
    };
    // Box plots lie on their side: one row per target, its name written level at the left
    // of the row (never rotated, never over a box), both panels sharing the rows.
    let label_room = label_width(shown.iter().map(|(n, _)| n.as_str()));
    let (width, height) = if cdf {
        // The legend is a column of its own at the right, one line per target: it grows
        // with the targets instead of covering the curves (a corner legend of 54 targets
        // ran off the panel).
        (
            CDF_PLOTS + label_room + LEGEND_SWATCH,
            900.max(shown.len() as u32 * LEGEND_LINE + 120),
        )
    } else {
        (
            label_room + 2 * PANEL + 60,
            shown.len().max(1) as u32 * ROW + 150,
        )
    };
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(&title, ("sans-serif", 22)).map_err(plot_err)?;
    if cdf {
        let (plots, legend) = root.split_horizontally(CDF_PLOTS);
        let panels = plots.split_evenly((2, 1));
        for (p, area) in panels.iter().enumerate() {
            let series: Vec<(&str, &[u64])> =
                shown.iter().map(|(n, v)| (n.as_str(), &v[p][..])).collect();
            draw_cdf(area, PANELS[p].1, &series)?;
        }
        draw_legend(&legend, shown.iter().map(|(n, _)| n.as_str()))?;
    } else {
        let (left, right) = root.split_horizontally(label_room + PANEL + 30);
        for (p, (area, labels)) in [(&left, label_room), (&right, 0)].into_iter().enumerate() {
            let series: Vec<(&str, &[u64])> =
                shown.iter().map(|(n, v)| (n.as_str(), &v[p][..])).collect();
            draw_boxes(area, PANELS[p].1, &series, labels)?;
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// `name` as drawn: whole up to [`MAX_LABEL`] characters, else its start and end around
/// `…` (the end keeps the port, which tells apart `host:80` and `host:443`).
fn short_label(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= MAX_LABEL {
        return name.to_string();
    }
    let tail = MAX_LABEL / 3;
    let head = MAX_LABEL - tail - 1;
    let mut s: String = chars[..head].iter().collect();
    s.push('…');
    s.extend(&chars[chars.len() - tail..]);
    s
}

/// Room for the longest label at the left of the rows, in px.
fn label_width<'a>(names: impl Iterator<Item = &'a str>) -> u32 {
    let longest = names.map(|n| n.chars().count()).max().unwrap_or(8) as u32;
    longest * CHAR_DECIPX / 10 + 16
}

/// The plotting library's error in words (its Debug form, `BackendError(…)`, is for
/// programmers, not users).
fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the SVG: {e}")
}

/// Ticks the log axes are offered (a few decades of 1…9): `log_tick` labels 1, 2 and 5.
const LOG_TICKS: usize = 60;

/// A log-scale range in µs that holds every sample.
fn y_range(series: &[(&str, &[u64])]) -> (f64, f64) {
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = all.fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if hi == 0 {
        return (1.0, 1000.0);
    }
    let lo = (lo.max(1) as f64 / 1e3 / 1.5).max(0.01);
    let hi = (hi as f64 / 1e3 * 1.5).max(lo * 10.0);
    // Whole decades: the axis ticks from the first power of ten in its range on, so a
    // range from 2 µs had no tick below 10 (where most SYN→SYN-ACK boxes sit).
    let decade_below = |x: f64| 10f64.powf(x.log10().floor());
    let decade_above = |x: f64| 10f64.powf(x.log10().ceil());
    (decade_below(lo), decade_above(hi))
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// A log axis's tick label: only at 1, 2 and 5 of each decade (the axis offers a tick at
/// every step, and ten to a decade ran together: `6007008009001000.0`), in µs as whole
/// numbers, below 1 µs as decimals.
fn log_tick(v: &f64) -> String {
    if !v.is_finite() || *v <= 0.0 {
        return String::new();
    }
    let decade = 10f64.powf(v.log10().floor());
    let mantissa = v / decade;
    let on = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 0.01 * m);
    match (on, *v >= 1.0) {
        (false, _) => String::new(),
        (true, true) => format!("{v:.0}"),
        (true, false) => format!("{}", (v * 1000.0).round() / 1000.0),
    }
}

/// Decades an axis may label at 1, 2 and 5 before the labels run together (a panel is
/// ~450 px wide): past them, only each decade is labelled, in its unit.
const DECADES_AT_1_2_5: f64 = 3.0;

/// The tick labeller and the axis title for a log axis from `lo` to `hi` µs: up to
/// [`DECADES_AT_1_2_5`] decades, `log_tick`'s 1, 2, 5 in µs; wider (a survey with a 600 ms
/// outlier beside 2 µs handshakes), one label a decade with its unit (`1 µs`, `10 ms`,
/// `1 s`): 1-2-5 over seven decades ran together into `1000020000500001000002000005…`.
fn log_axis(lo: f64, hi: f64) -> (fn(&f64) -> String, &'static str) {
    if (hi / lo).log10() > DECADES_AT_1_2_5 {
        (decade_tick, "log scale")
    } else {
        (log_tick, "µs (log scale)")
    }
}

/// A decade's label with its unit (`100 µs`, `1 ms`, `10 s`); nothing between decades.
fn decade_tick(v: &f64) -> String {
    if !v.is_finite() || *v <= 0.0 {
        return String::new();
    }
    let e = v.log10().round();
    if (v.log10() - e).abs() > 0.004 {
        return String::new();
    }
    let e = e as i32;
    let (value, unit) = match e {
        i32::MIN..=-1 => (10f64.powi(e + 3), "ns"),
        0..=2 => (10f64.powi(e), "µs"),
        3..=5 => (10f64.powi(e - 3), "ms"),
        _ => (10f64.powi(e - 6), "s"),
    };
    format!("{value} {unit}")
}

/// One panel of level box plots: the first target in the top row. `labels`: the width of
/// the name column, 0 for a panel beside another that already names the rows.
fn draw_boxes(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    series: &[(&str, &[u64])],
    labels: u32,
) -> Result<()> {
    let n = series.len().max(1);
    // Row of series i, counted from the bottom as the y axis is.
    let row = |i: usize| n - 1 - i;
    let (lo, hi) = y_range(series);
    let (tick, axis_title) = log_axis(lo, hi);
    let names: Vec<String> = series.iter().map(|(n, _)| n.to_string()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(labels.max(4))
        // A discrete range includes its end: 0..n-1 is n rows.
        .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(r) if labels > 0 && *r < n => {
                names.get(n - 1 - *r).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .y_label_style(("sans-serif", 12))
        .x_labels(LOG_TICKS)
        .x_label_formatter(&tick)
        .x_max_light_lines(0)
        .x_desc(axis_title)
        .draw()
        .map_err(plot_err)?;
    for (i, (_, v)) in series.iter().enumerate() {
        let (Some(min), Some(max)) = (v.first(), v.last()) else {
            continue;
        };
        let r = row(i);
        let q = |p: f64| us(percentile(v, p).unwrap_or(*min));
        let (q1, med, q3, p99) = (q(25.0), q(50.0), q(75.0), q(99.0));
        let whisker = PathElement::new(
            vec![
                (us(*min), SegmentValue::CenterOf(r)),
                (us(*max), SegmentValue::CenterOf(r)),
            ],
            BLACK.stroke_width(1),
        );
        let mut body = Rectangle::new(
            [
                (q1, SegmentValue::Exact(r + 1)),
                (q3, SegmentValue::Exact(r)),
            ],
            BLUE.mix(0.35).filled(),
        );
        body.set_margin(4, 4, 0, 0);
        let median = PathElement::new(
            vec![
                (med, SegmentValue::Exact(r)),
                (med, SegmentValue::Exact(r + 1)),
            ],
            RED.stroke_width(2),
        );
        let dot = Circle::new((p99, SegmentValue::CenterOf(r)), 3, BLACK.filled());
        chart.draw_series([whisker]).map_err(plot_err)?;
        chart
            .draw_series::<BackendCoordOnly, Rectangle<(f64, SegmentValue<usize>)>, _, _>([body])
            .map_err(plot_err)?;
        chart.draw_series([median]).map_err(plot_err)?;
        chart.draw_series([dot]).map_err(plot_err)?;
    }
    Ok(())
}

fn draw_cdf(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    series: &[(&str, &[u64])],
) -> Result<()> {
    let (lo, hi) = y_range(series);
    let (tick, axis_title) = log_axis(lo, hi);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_labels(LOG_TICKS)
        .x_label_formatter(&tick)
        .x_max_light_lines(0)
        .x_desc(axis_title)
        .y_desc("share of probes")
        .draw()
        .map_err(plot_err)?;
    for (i, (_, v)) in series.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let n = v.len() as f64;
        // A step function: the share of samples ≤ x.
        let mut pts = Vec::with_capacity(v.len() * 2);
        for (k, &x) in v.iter().enumerate() {
            pts.push((us(x), k as f64 / n));
            pts.push((us(x), (k + 1) as f64 / n));
        }
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The CDF's legend, shared by both panels (a target has the same colour in each): one
/// line per target from the top of its column, a swatch then the name.
fn draw_legend<'a>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    names: impl Iterator<Item = &'a str>,
) -> Result<()> {
    for (i, name) in names.enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let y = 60 + i as i32 * LEGEND_LINE as i32;
        area.draw(&PathElement::new(
            vec![(8, y), (8 + 20, y)],
            color.stroke_width(2),
        ))
        .map_err(plot_err)?;
        area.draw(&Text::new(
            name.to_string(),
            (34, y - 6),
            ("sans-serif", 12).into_font(),
        ))
        .map_err(plot_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpshake_proto::probe::record::PortState;
    use tcpshake_proto::probe::stats::Sample;

    /// Target `i`'s `k`-th probe: SYN→SYN-ACK 20 µs and up with `i + k`, TTFB 90 µs and up
    /// with `k`.
    fn sample(i: u64, k: u64) -> Sample {
        let mut legs = [None; Leg::COUNT];
        legs[Leg::SynToSynack.index()] = Some(20_000 + 1_000 * (i + k));
        legs[Leg::RequestToFirstByte.index()] = Some(90_000 + 7_000 * k);
        Sample {
            legs,
            state: PortState::Open,
            retransmitted: false,
            tls: false,
            start_ns: None,
            capture_lost: false,
            failed: false,
        }
    }

    /// The number in attribute `name` of an element's opening `tag` (NaN when absent).
    fn attr(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        tag.split(&key)
            .nth(1)
            .and_then(|v| v.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// (x, y, font size, text) of every `<text text-anchor="end">`: the row labels.
    fn row_labels(svg: &str) -> Vec<(f64, f64, f64, String)> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let (tag, rest) = t.split_once('>')?;
                tag.contains("text-anchor=\"end\"").then(|| {
                    let text = rest.split("</text>").next().unwrap_or("").trim();
                    (
                        attr(tag, "x"),
                        attr(tag, "y"),
                        attr(tag, "font-size"),
                        text.to_string(),
                    )
                })
            })
            .filter(|l| !l.3.is_empty() && l.3.parse::<f64>().is_err())
            .collect()
    }

    /// The log axes span whole decades and label 1, 2 and 5 of each, never the run-together
    /// 600…900 the axis offered by itself; a range from 2 µs starts at 1.
    #[test]
    fn log_axes_are_whole_decades_labelled_1_2_5() {
        let v = [2_000u64, 180_000];
        assert_eq!(y_range(&[("a", &v[..])]), (1.0, 1000.0));
        let v = [130_000u64, 7_500_000];
        assert_eq!(y_range(&[("a", &v[..])]), (10.0, 100_000.0));
        let shown: Vec<String> = [
            1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 10.0, 20.0, 500.0, 900.0, 0.05, 0.3,
        ]
        .iter()
        .map(log_tick)
        .collect();
        assert_eq!(
            shown,
            ["1", "2", "", "5", "", "", "10", "20", "500", "", "0.05", ""]
        );
    }

    /// A wide axis (2 µs handshakes beside a 600 ms response: seven decades) labels each
    /// decade once, with its unit, so the labels stay apart; a narrow one keeps 1-2-5 in µs.
    #[test]
    fn a_wide_log_axis_labels_decades_with_their_units() {
        let v = [1_200u64, 601_334_000];
        let (lo, hi) = y_range(&[("a", &v[..])]);
        assert_eq!((lo, hi), (0.1, 1_000_000.0));
        let (tick, title) = log_axis(lo, hi);
        assert_eq!(title, "log scale");
        let shown: Vec<String> = [
            0.1, 1.0, 2.0, 10.0, 100.0, 1000.0, 5000.0, 10_000.0, 1e5, 1e6,
        ]
        .iter()
        .map(tick)
        .collect();
        assert_eq!(
            shown,
            [
                "100 ns", "1 µs", "", "10 µs", "100 µs", "1 ms", "", "10 ms", "100 ms", "1 s"
            ]
        );
        let (tick, title) = log_axis(1.0, 1000.0);
        assert_eq!((tick(&2.0), title), ("2".to_string(), "µs (log scale)"));
        // In the picture: no two x labels closer than a label's own width allows.
        let mut sv = Survey::default();
        for (i, ttfb) in [6_600u64, 200_000, 1_300_000, 601_334_000]
            .iter()
            .enumerate()
        {
            let mut s = sample(i as u64, 0);
            s.legs[Leg::SynToSynack.index()] = Some(1_200 + i as u64 * 500);
            s.legs[Leg::RequestToFirstByte.index()] = Some(*ttfb);
            sv.add("198.18.0.2:80", &s);
        }
        let dir = std::env::temp_dir().join(format!("tcpshake-svg-wide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wide.svg");
        write_svg(&sv, &path, false).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(
            texts.contains(&"1 ms") && texts.contains(&"100 ms"),
            "{svg}"
        );
        assert!(
            !texts.contains(&"100000") && !texts.contains(&"20000"),
            "{svg}"
        );
    }

    #[test]
    fn thirty_long_target_names_are_level_apart_and_whole() {
        let names: Vec<String> = (0..30)
            .map(|i| format!("very-long-service-name-{i:02}.eu-west-{}.internal.example.com:80", i % 3))
            .chain(["https://a-really-extremely-long-hostname-that-goes-on-and-on.example.org:443/health".to_string()])
            .collect();
        let mut survey = Survey::default();
        for n in &names {
            survey.declare(n);
        }
        // Probes end in reverse order; the plot keeps the order the targets were given.
        for (i, n) in names.iter().enumerate().rev() {
            for k in 0..5u64 {
                survey.add(n, &sample(i as u64, k));
            }
        }
        let path = std::env::temp_dir().join(format!("tcpshake-svg-{}.svg", std::process::id()));
        write_svg(&survey, &path, false).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(!svg.contains("rotate"), "labels are level");
        let mut labels = row_labels(&svg);
        labels.sort_by(|a, b| a.1.total_cmp(&b.1));
        let texts: Vec<&str> = labels.iter().map(|l| l.3.as_str()).collect();
        let want: Vec<String> = names.iter().map(|n| short_label(n)).collect();
        assert_eq!(
            texts, want,
            "every target once, top to bottom in input order"
        );
        assert!(
            want[..30].iter().zip(&names).all(|(a, b)| a == b),
            "short names whole"
        );
        assert!(want[30].contains('…') && want[30].ends_with(":443/health"));
        for pair in labels.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(b.1 - a.1 >= a.2 * 1.2, "rows {} and {} overlap", a.3, b.3);
        }
        // Right-aligned at the axis; even at a wide font's 0.65 em a character, each label
        // starts inside the picture.
        for (x, _, size, text) in &labels {
            let width = text.chars().count() as f64 * size * 0.65;
            assert!(
                x - width >= 0.0,
                "{text} is cut at the left ({x} - {width})"
            );
        }
    }

    #[test]
    fn a_cdf_of_54_targets_keeps_its_legend_inside_the_picture() {
        // Its corner legend ran off the 450 px panel at ~25 targets.
        let names: Vec<String> = (0..54)
            .map(|i| format!("svc-{i:02}.eu-west-{}.internal.example.com:443", i % 3))
            .collect();
        let mut survey = Survey::default();
        for (i, n) in names.iter().enumerate() {
            survey.declare(n);
            for k in 0..5u64 {
                survey.add(n, &sample(i as u64, k));
            }
        }
        let path =
            std::env::temp_dir().join(format!("tcpshake-svg-cdf-{}.svg", std::process::id()));
        write_svg(&survey, &path, true).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let size = |name: &str| -> f64 {
            let key = format!(" {name}=\"");
            svg.split(&key)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (width, height) = (size("width"), size("height"));
        // Every name once, as a legend line: inside the picture, lines apart.
        let mut legend: Vec<(f64, f64, f64, String)> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                let (tag, rest) = t.split_once('>')?;
                let text = rest.split("</text>").next()?.trim().to_string();
                names
                    .contains(&text)
                    .then(|| (attr(tag, "x"), attr(tag, "y"), attr(tag, "font-size"), text))
            })
            .collect();
        legend.sort_by(|a, b| a.1.total_cmp(&b.1));
        let texts: Vec<&str> = legend.iter().map(|l| l.3.as_str()).collect();
        assert_eq!(texts, names, "every target once, in input order");
        for (x, y, size, text) in &legend {
            let w = text.chars().count() as f64 * size * 0.65;
            assert!(
                *x >= 0.0 && x + w <= width && *y > 0.0 && *y <= height,
                "{text} at ({x}, {y}) is outside {width}×{height}"
            );
        }
        for pair in legend.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= pair[0].2 * 1.2, "{pair:?} overlap");
        }
    }

    #[test]
    fn long_labels_keep_their_start_and_port() {
        let name = format!("{}.example.com:8443", "x".repeat(100));
        let s = short_label(&name);
        assert_eq!(s.chars().count(), MAX_LABEL);
        assert!(
            s.starts_with("xxxx") && s.ends_with(".example.com:8443"),
            "{s}"
        );
        assert_eq!(short_label("a:80"), "a:80");
    }
}

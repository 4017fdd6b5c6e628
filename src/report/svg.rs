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

pub fn write_svg(survey: &Survey, path: &Path, cdf: bool) -> Result<()> {
    let shown: Vec<(&str, [Vec<u64>; 2])> = survey
        .targets()
        .take(MAX_TARGETS)
        .map(|(name, acc)| (name, PANELS.map(|(leg, _)| acc.sorted(leg))))
        .collect();
    let width = if cdf {
        1000
    } else {
        (220 + 28 * shown.len() as u32).max(700)
    };
    let label_room = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(8) as u32 * 7 + 20;
    let height = if cdf { 900 } else { 2 * (380 + label_room) };
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let title = if survey.target_count() > shown.len() {
        format!(
            "tcpshake latency, first {} of {} targets",
            shown.len(),
            survey.target_count()
        )
    } else {
        format!("tcpshake latency, {} targets", shown.len())
    };
    let root = root.titled(&title, ("sans-serif", 22)).map_err(plot_err)?;
    let panels = root.split_evenly((2, 1));
    for (p, area) in panels.iter().enumerate() {
        let series: Vec<(&str, &[u64])> = shown.iter().map(|(n, v)| (*n, &v[p][..])).collect();
        if cdf {
            draw_cdf(area, PANELS[p].1, &series)?;
        } else {
            draw_boxes(area, PANELS[p].1, &series, label_room)?;
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The plotting library's error in words (its Debug form, `BackendError(…)`, is for
/// programmers, not users).
fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the SVG: {e}")
}

/// A log-scale range in µs that holds every sample.
fn y_range(series: &[(&str, &[u64])]) -> (f64, f64) {
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = all.fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if hi == 0 {
        return (1.0, 1000.0);
    }
    let lo = (lo.max(1) as f64 / 1e3 / 1.5).max(0.01);
    let hi = (hi as f64 / 1e3 * 1.5).max(lo * 10.0);
    (lo, hi)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn draw_boxes(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    series: &[(&str, &[u64])],
    label_room: u32,
) -> Result<()> {
    let n = series.len().max(1);
    let (lo, hi) = y_range(series);
    let names: Vec<String> = series.iter().map(|(n, _)| n.to_string()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(label_room)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n).into_segmented(), (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_desc("µs (log scale)")
        .draw()
        .map_err(plot_err)?;
    for (i, (_, v)) in series.iter().enumerate() {
        let (Some(min), Some(max)) = (v.first(), v.last()) else {
            continue;
        };
        let q = |p: f64| us(percentile(v, p).unwrap_or(*min));
        let (q1, med, q3, p99) = (q(25.0), q(50.0), q(75.0), q(99.0));
        let whisker = PathElement::new(
            vec![
                (SegmentValue::CenterOf(i), us(*min)),
                (SegmentValue::CenterOf(i), us(*max)),
            ],
            BLACK.stroke_width(1),
        );
        let mut body = Rectangle::new(
            [
                (SegmentValue::Exact(i), q1),
                (SegmentValue::Exact(i + 1), q3),
            ],
            BLUE.mix(0.35).filled(),
        );
        body.set_margin(0, 0, 5, 5);
        let median = PathElement::new(
            vec![
                (SegmentValue::Exact(i), med),
                (SegmentValue::Exact(i + 1), med),
            ],
            RED.stroke_width(2),
        );
        let dot = Circle::new((SegmentValue::CenterOf(i), p99), 3, BLACK.filled());
        chart.draw_series([whisker]).map_err(plot_err)?;
        chart
            .draw_series::<BackendCoordOnly, Rectangle<(SegmentValue<usize>, f64)>, _, _>([body])
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
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("µs (log scale)")
        .y_desc("share of probes")
        .draw()
        .map_err(plot_err)?;
    for (i, (name, v)) in series.iter().enumerate() {
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
            .map_err(plot_err)?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

//! SVG charts drawn by `plotters` (svg backend only): line charts over steps or
//! iterations, and bar charts over named categories. Every chart is a standalone
//! `<svg>` string that the HTML report inlines.

use anyhow::{anyhow, ensure, Result};
use plotters::prelude::*;

const SIZE: (u32, u32) = (640, 340);

/// One named line of points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        let points = points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        Series { name: name.into(), points }
    }
}

/// `lo..hi` with a margin, never empty.
fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        (lo - d, hi + d)
    } else {
        let d = (hi - lo) * pad;
        (lo - d, hi + d)
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The frame every chart shares: title, margins, label areas and f64 axes over `x` x `y`.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// A line chart (points marked) of `series` with a legend; `hline` adds a dashed
/// reference line (label, y).
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    hline: Option<(&str, f64)>,
) -> Result<String> {
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    ensure!(!pts.is_empty(), "no finite values to plot for {title}");
    let (x0, x1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if let Some((_, y)) = hline.filter(|(_, y)| y.is_finite()) {
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    // Steps and iterations are integers: label only whole ticks, at most one per point.
    let integral = pts.iter().all(|p| p.0.fract() == 0.0);
    let distinct: std::collections::BTreeSet<i64> = pts.iter().map(|p| p.0 as i64).collect();
    let x_ticks = if integral { distinct.len().clamp(2, 10) } else { 10 };
    let legend_at = legend_position(&pts, (x0, x1), (y0, y1));
    let (x0, x1) = padded(x0, x1, 0.02);
    let (y0, y1) = padded(y0, y1, 0.08);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = frame(&root, title, x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(x_ticks)
            .x_label_formatter(&|x: &f64| if integral { integer_label(*x) } else { format!("{x}") })
            .label_style(("sans-serif", 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        if let Some((label, y)) = hline.filter(|(_, y)| y.is_finite()) {
            let style = BLACK.mix(0.5).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(x0, y), (x1, y)], 6, 4, style))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(legend_at)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// `x` as a whole number, or nothing for a tick between whole numbers.
fn integer_label(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// The right-hand corner with fewer points near it (the legend hides less data).
fn legend_position(pts: &[(f64, f64)], (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let (xm, ym) = (x0 + (x1 - x0) * 0.5, y0 + (y1 - y0) * 0.5);
    let upper = pts.iter().filter(|p| p.0 >= xm && p.1 >= ym).count();
    let lower = pts.iter().filter(|p| p.0 >= xm && p.1 < ym).count();
    if upper > lower {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    }
}

/// A bar chart of `values` over `labels` (one bar each); `hline` as in [`line_chart`].
pub fn bar_chart(
    title: &str,
    y_desc: &str,
    labels: &[String],
    values: &[f64],
    hline: Option<(&str, f64)>,
) -> Result<String> {
    ensure!(!values.is_empty() && labels.len() == values.len(), "no bars to plot for {title}");
    ensure!(values.iter().all(|v| v.is_finite()), "non-finite bar in {title}");
    let mut top = values.iter().fold(0.0f64, |a, &v| a.max(v));
    let mut bottom = values.iter().fold(0.0f64, |a, &v| a.min(v));
    if let Some((_, y)) = hline.filter(|(_, y)| y.is_finite()) {
        (top, bottom) = (top.max(y), bottom.min(y));
    }
    let (_, y1) = padded(bottom, top, 0.1);
    let y0 = if bottom < 0.0 { padded(bottom, top, 0.1).0 } else { 0.0 };
    let n = values.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = frame(&root, title, -0.5f64..(n as f64 - 0.5), y0..y1)?;
        let labels_owned = labels.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_labels(n.min(24))
            .x_label_formatter(&move |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels_owned.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Rectangle::new([(i as f64 - 0.38, 0.0), (i as f64 + 0.38, v)], color.filled())),
            )
            .map_err(err)?;
        if let Some((label, y)) = hline.filter(|(_, y)| y.is_finite()) {
            let style = BLACK.mix(0.6).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(-0.5, y), (n as f64 - 0.5, y)], 6, 4, style))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

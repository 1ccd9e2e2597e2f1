//! Plots as SVG: the latency distribution (latency against percentile, with
//! the percentile axis stretched so the tail (99 %, 99.9 %, ...) gets as
//! much room as the median), and figures over the time of a run (the
//! `sustained` scenario's rate, memory and file sizes).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// How far into the tail the x axis goes: 5 nines is the 99.999th percentile.
const MAX_NINES: f64 = 5.0;

/// The x position of quantile `q`: the number of nines, `-log10(1 - q)`.
fn nines(quantile: f64) -> f64 {
    (-(1.0 - quantile).max(1e-12).log10()).min(MAX_NINES)
}

fn percent_label(x: &f64) -> String {
    let quantile = 1.0 - 10f64.powf(-x);
    let percent = quantile * 100.0;
    if x.fract().abs() < 1e-9 {
        format!("{percent}%")
    } else {
        format!("{percent:.2}%")
    }
}

/// The (nines, milliseconds) points of a histogram's percentile curve.
fn curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = histogram
        .iter_quantiles(4)
        .map(|value| {
            (
                nines(value.quantile_iterated_to()),
                value.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect();
    points.dedup_by(|a, b| a.0 == b.0);
    points
}

/// Draws each named histogram's percentile curve into an SVG at `path`.
///
/// # Errors
/// [`Error::Plot`] when there is nothing to draw or the file cannot be written.
pub fn plot_latency(path: &Path, title: &str, series: &[(&str, &Histogram<u64>)]) -> Result<()> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|(_, histogram)| !histogram.is_empty())
        .map(|(name, histogram)| (*name, curve(histogram)))
        .collect();
    if curves.is_empty() {
        return Err(Error::Plot("no latency samples to plot".into()));
    }
    let max_ms = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|point| point.1))
        .fold(0.0f64, f64::max)
        .max(0.001);
    let plot_error = |error: &dyn std::fmt::Display| Error::Plot(error.to_string());

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..MAX_NINES, 0.0..max_ms * 1.05)
        .map_err(|e| plot_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&percent_label)
        .draw()
        .map_err(|e| plot_error(&e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (index, (name, points)) in curves.into_iter().enumerate() {
        let color = colors[index % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| plot_error(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| plot_error(&e))?;
    root.present().map_err(|e| plot_error(&e))?;
    Ok(())
}

/// One line of a chart over time.
#[derive(Debug, Clone)]
pub struct TimeSeries<'a> {
    /// The legend's name for it.
    pub name: &'a str,
    /// (seconds since the start, value) points.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a plot over time: series sharing a y axis.
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// The y axis's title, with its unit.
    pub y_desc: &'a str,
    /// The lines drawn.
    pub series: Vec<TimeSeries<'a>>,
}

/// Draws `panels` over time into an SVG at `path`, one chart under the
/// other on a common time axis, each from zero to its largest value.
///
/// # Errors
/// [`Error::Plot`] when no panel has a point or the file cannot be written.
pub fn plot_over_time(path: &Path, title: &str, panels: &[Panel<'_>]) -> Result<()> {
    let panels: Vec<&Panel<'_>> = panels
        .iter()
        .filter(|panel| panel.series.iter().any(|series| !series.points.is_empty()))
        .collect();
    if panels.is_empty() {
        return Err(Error::Plot("no points to plot over time".into()));
    }
    let all_points = || {
        panels
            .iter()
            .flat_map(|panel| panel.series.iter().flat_map(|series| series.points.iter()))
    };
    let max_secs = all_points()
        .map(|point| point.0)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let plot_error = |error: &dyn std::fmt::Display| Error::Plot(error.to_string());

    let height = 140 + 320 * u32::try_from(panels.len()).unwrap_or(1);
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| plot_error(&e))?;
    let areas = root.split_evenly((panels.len(), 1));
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (area, panel) in areas.iter().zip(panels) {
        let max_value = panel
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.1))
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..max_secs, 0.0..max_value * 1.1)
            .map_err(|e| plot_error(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(panel.y_desc)
            .draw()
            .map_err(|e| plot_error(&e))?;
        for (index, series) in panel.series.iter().enumerate() {
            let color = colors[index % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    series.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| plot_error(&e))?
                .label(series.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| plot_error(&e))?;
    }
    root.present().map_err(|e| plot_error(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record};

    #[test]
    fn nines_stretch_the_tail() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(percent_label(&2.0), "99%");
    }

    #[test]
    fn draws_an_svg_with_both_series() {
        let mut latency = new_histogram();
        let mut ack = new_histogram();
        for micros in 1..=10_000 {
            record(&mut latency, micros * 3);
            record(&mut ack, micros);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        plot_latency(&path, "test", &[("delivery", &latency), ("ack", &ack)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("delivery"));
        assert!(svg.contains("polyline") || svg.contains("path"));
    }

    #[test]
    fn draws_panels_over_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rate.svg");
        let rate = Panel {
            y_desc: "delivered/s",
            series: vec![TimeSeries {
                name: "delivered",
                points: (1..=10).map(|n| (f64::from(n) * 5.0, 1000.0)).collect(),
            }],
        };
        let sizes = Panel {
            y_desc: "MiB",
            series: vec![
                TimeSeries {
                    name: "WAL (max)",
                    points: (1..=10).map(|n| (f64::from(n) * 5.0, 40.0)).collect(),
                },
                TimeSeries {
                    name: "RSS",
                    points: Vec::new(),
                },
            ],
        };
        plot_over_time(&path, "sustained", &[rate, sizes]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("delivered/s") && svg.contains("WAL (max)"));
        let empty = Panel {
            y_desc: "none",
            series: Vec::new(),
        };
        assert!(plot_over_time(&dir.path().join("x.svg"), "t", &[empty]).is_err());
    }

    #[test]
    fn an_empty_run_is_an_error_not_an_empty_picture() {
        let dir = tempfile::tempdir().unwrap();
        let empty = new_histogram();
        assert!(plot_latency(&dir.path().join("x.svg"), "t", &[("none", &empty)]).is_err());
    }
}

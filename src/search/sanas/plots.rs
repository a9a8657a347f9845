//! Seeing a SANAS search: each point's gate probabilities (static) or mean
//! gate probabilities (adaptive) over the epochs with the cost the draws
//! ran, the cost of each window label (adaptive), and the sweep: test
//! accuracy against cost, and Match on a stream against MACs per window.

use super::search::PointSummary;
use crate::train::metrics::json_lines;
use crate::train::plots::{epoch_label, font_available, write_png, Canvas, DrawResult};
use crate::train::TrainResult;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub const GATES_PLOT: &str = "gates.png";
pub const SWEEP_PLOT: &str = "sweep.png";

const SIZE: (u32, u32) = (900, 560);

/// One epoch of a gate log: the epoch, the gates' probabilities and the
/// mean sampled cost.
type GateRow = (f64, Vec<f64>, f64);

/// The gate names and every epoch's row of a point's gate log.
fn gate_curves(path: &Path) -> TrainResult<(Vec<String>, Vec<GateRow>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::train::error::TrainError::read(path, "gate log", e))?;
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for (_, _, value) in json_lines(path, &text)? {
        let Some(v) = value else { continue };
        let numbers = |key: &str| -> Vec<f64> {
            v.get(key)
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default()
        };
        let p = match numbers("probabilities") {
            p if !p.is_empty() => p,
            _ => numbers("mean_probabilities"),
        };
        if names.is_empty() {
            names = v
                .get("gates")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
        }
        let epoch = v.get("epoch").and_then(|e| e.as_f64()).unwrap_or(0.0);
        let cost = v
            .get("mean_sampled_cost")
            .and_then(|c| c.as_f64())
            .unwrap_or(0.0);
        rows.push((epoch, p, cost));
    }
    Ok((names, rows))
}

/// Draws `gates.png` of one point from its `gates.jsonl` (`full_cost` the
/// super network's with every gate open) into `dir`.
pub fn plot_gates(gate_log: &Path, full_cost: f64, dir: &Path) -> TrainResult<Option<PathBuf>> {
    let (names, rows) = gate_curves(gate_log)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let text = font_available();
    let path = dir.join(GATES_PLOT);
    write_png(&path, SIZE, |canvas| {
        draw_gates(canvas, &names, &rows, full_cost, text)
    })?;
    Ok(Some(path))
}

fn draw_gates(
    root: &Canvas,
    names: &[String],
    rows: &[GateRow],
    full_cost: f64,
    text: bool,
) -> DrawResult {
    let last = rows.iter().map(|r| r.0).fold(1.0, f64::max);
    let mut chart = fraction_chart(
        root,
        "gate probabilities (lines) and sampled cost / full (dashed black)",
        last,
        text,
    )?;
    draw_lines(
        &mut chart,
        names.iter().enumerate().map(|(k, name)| {
            let points = rows
                .iter()
                .filter_map(|r| r.1.get(k).map(|&p| (r.0, p)))
                .collect();
            (name.as_str(), points)
        }),
        text,
    )?;
    let cost = rows
        .iter()
        .map(|r| (r.0, r.2 / full_cost.max(f64::MIN_POSITIVE)));
    chart.draw_series(DashedLineSeries::new(cost, 6, 4, BLACK.stroke_width(2)))?;
    draw_legend(&mut chart, text)
}

type FractionChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart of fractions (0 to 1) against the epochs up to `last`, with its
/// caption and axis labels where a font is there.
fn fraction_chart<'a, 'b>(
    root: &'a Canvas<'b>,
    caption: &str,
    last: f64,
    text: bool,
) -> Result<FractionChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut builder = ChartBuilder::on(root);
    builder.margin(15);
    if text {
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder.build_cartesian_2d(0.0..last, 0.0..1.02)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("epoch").x_label_formatter(&epoch_label);
    }
    mesh.draw()?;
    Ok(chart)
}

/// One line per named series, each in its own colour, named in the legend.
fn draw_lines<'n>(
    chart: &mut FractionChart,
    series: impl Iterator<Item = (&'n str, Vec<(f64, f64)>)>,
    text: bool,
) -> DrawResult {
    for (k, (name, points)) in series.enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        if text {
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
    }
    Ok(())
}

fn draw_legend<'a, 'b: 'a>(chart: &mut FractionChart<'a, 'b>, text: bool) -> DrawResult {
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    Ok(())
}

/// Draws `sweep.png` into `dir`: each point's test accuracy against its
/// cost (kept, or mean per window when adaptive) over the full network's.
pub fn plot_sweep(points: &[PointSummary], dir: &Path) -> TrainResult<Option<PathBuf>> {
    let xy: Vec<(f64, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            p.test_accuracy.map(|a| {
                (
                    p.kept_cost / p.full_cost.max(f64::MIN_POSITIVE),
                    100.0 * a,
                    p.lambda,
                )
            })
        })
        .collect();
    if xy.is_empty() {
        return Ok(None);
    }
    let text = font_available();
    let path = dir.join(SWEEP_PLOT);
    write_png(&path, SIZE, |canvas| draw_sweep(canvas, &xy, text))?;
    Ok(Some(path))
}

fn draw_sweep(root: &Canvas, xy: &[(f64, f64, f64)], text: bool) -> DrawResult {
    let lo = xy.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = xy.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut builder = ChartBuilder::on(root);
    builder.margin(15);
    if text {
        builder
            .caption(
                "test accuracy against cost, one point per lambda",
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder.build_cartesian_2d(0.0..1.05, (lo - 2.0)..(hi + 2.0))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("cost / full super network")
            .y_desc("test accuracy %");
    }
    mesh.draw()?;
    let blue = RGBColor(31, 119, 180);
    chart.draw_series(
        xy.iter()
            .map(|&(x, y, _)| Circle::new((x, y), 5, blue.filled())),
    )?;
    if text {
        chart
            .draw_series(xy.iter().map(|&(x, y, l)| {
                Text::new(format!("  lambda {l}"), (x, y), ("sans-serif", 14))
            }))?;
    }
    Ok(())
}

pub const COST_BY_LABEL_PLOT: &str = "cost_by_label.png";
pub const STREAM_SWEEP_PLOT: &str = "sweep_match.png";

/// Draws `cost_by_label.png` of an adaptive point from its `gates.jsonl`:
/// per epoch, the mean cost of the validation windows of each label
/// (silence and each word) over the full network's. `None` for a static
/// point, whose log has no costs by label.
pub fn plot_cost_by_label(
    gate_log: &Path,
    full_cost: f64,
    dir: &Path,
) -> TrainResult<Option<PathBuf>> {
    let text_in = std::fs::read_to_string(gate_log)
        .map_err(|e| crate::train::error::TrainError::read(gate_log, "gate log", e))?;
    let mut curves: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for (_, _, value) in json_lines(gate_log, &text_in)? {
        let Some(v) = value else { continue };
        let epoch = v.get("epoch").and_then(|e| e.as_f64()).unwrap_or(0.0);
        let Some(by_label) = v.get("val_cost_by_label").and_then(|c| c.as_object()) else {
            continue;
        };
        for (label, cost) in by_label {
            if let Some(c) = cost.as_f64() {
                curves
                    .entry(label.clone())
                    .or_default()
                    .push((epoch, c / full_cost.max(f64::MIN_POSITIVE)));
            }
        }
    }
    if curves.is_empty() {
        return Ok(None);
    }
    let text = font_available();
    let path = dir.join(COST_BY_LABEL_PLOT);
    write_png(&path, SIZE, |root| {
        let last = curves.values().flatten().map(|p| p.0).fold(1.0, f64::max);
        let mut chart = fraction_chart(
            root,
            "validation cost per window label / full network",
            last,
            text,
        )?;
        draw_lines(
            &mut chart,
            curves
                .iter()
                .map(|(label, points)| (label.as_str(), points.clone())),
            text,
        )?;
        draw_legend(&mut chart, text)
    })?;
    Ok(Some(path))
}

/// One point of the streaming sweep: a name, the mean MACs per window and
/// the Match percentage; a reference is a model trained the usual way.
pub struct StreamPoint {
    pub name: String,
    pub macs_per_window: f64,
    pub matched: f64,
    pub reference: bool,
}

/// Draws `sweep_match.png` into `dir`: Match on the validation stream
/// against the mean MACs per window, for every point of the sweep (blue)
/// and every reference model (red squares).
pub fn plot_stream_sweep(points: &[StreamPoint], dir: &Path) -> TrainResult<Option<PathBuf>> {
    if points.is_empty() {
        return Ok(None);
    }
    let text = font_available();
    let path = dir.join(STREAM_SWEEP_PLOT);
    write_png(&path, SIZE, |root| {
        let x_hi = points
            .iter()
            .map(|p| p.macs_per_window / 1e6)
            .fold(0.0, f64::max);
        let mut builder = ChartBuilder::on(root);
        builder.margin(15);
        if text {
            builder
                .caption(
                    "Match on the validation stream against MACs per window",
                    ("sans-serif", 20),
                )
                .x_label_area_size(40)
                .y_label_area_size(50);
        }
        let mut chart = builder.build_cartesian_2d(0.0..x_hi * 1.15 + 1e-3, 0.0..100.0)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("M MACs per window").y_desc("Match %");
        }
        mesh.draw()?;
        let (blue, red) = (RGBColor(31, 119, 180), RGBColor(214, 39, 40));
        for p in points {
            let at = (p.macs_per_window / 1e6, p.matched);
            if p.reference {
                chart.draw_series(std::iter::once(
                    EmptyElement::at(at) + Rectangle::new([(-6, -6), (6, 6)], red.filled()),
                ))?;
            } else {
                chart.draw_series(std::iter::once(Circle::new(at, 5, blue.filled())))?;
            }
            if text {
                chart.draw_series(std::iter::once(Text::new(
                    format!("  {}", p.name),
                    at,
                    ("sans-serif", 14),
                )))?;
            }
        }
        Ok(())
    })?;
    Ok(Some(path))
}

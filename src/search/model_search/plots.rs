//! Seeing a Model Search: the score of each completed trial against its
//! number (with the best so far), against its parameter count (the Pareto
//! front of fewer parameters and a higher score marked), and the tree of
//! parents as text.

use super::archive::{Trial, TrialState};
use crate::train::plots::{font_available, write_png, Canvas, DrawResult};
use crate::train::run_dir::RunDir;
use crate::train::{write_durably, TrainResult};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCORE_FILE: &str = "trials_score.png";
pub const PARETO_FILE: &str = "trials_pareto.png";
/// The tree of parents, one trial per line, children indented under their parent.
pub const TREE_FILE: &str = "tree.txt";

const SIZE: (u32, u32) = (900, 560);
const POINT: RGBColor = RGBColor(31, 119, 180);
const FRONT: RGBColor = RGBColor(214, 39, 40);

/// (trial id, parameters, score) of every completed trial.
fn scored(trials: &[Trial]) -> Vec<(i64, u64, f64)> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .filter_map(|t| {
            t.score
                .filter(|s| s.is_finite())
                .map(|s| (t.id, t.params, s))
        })
        .collect()
}

/// The trials no other beats on both counts (no more parameters and a
/// higher score, or fewer parameters and no lower score), by parameters.
pub fn pareto_front(points: &[(i64, u64, f64)]) -> Vec<(i64, u64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
    let mut front: Vec<(i64, u64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|last| p.2 > last.2) {
            front.push(p);
        }
    }
    front
}

/// Writes the two plots into the run's plots folder and the tree beside
/// the archive; returns the paths written (no plot without a completed trial).
pub fn plot_model_search(root: &Path, trials: &[Trial]) -> TrainResult<Vec<PathBuf>> {
    let tree = root.join(TREE_FILE);
    write_durably(&tree, parent_tree(trials).as_bytes())?;
    let mut written = vec![tree];
    let points = scored(trials);
    if points.is_empty() {
        return Ok(written);
    }
    let dir = RunDir {
        root: root.to_path_buf(),
    }
    .plots_dir();
    let text = font_available();
    let path = dir.join(SCORE_FILE);
    write_png(&path, SIZE, |canvas| {
        score_over_trials(canvas, &points, text)
    })?;
    written.push(path);
    let path = dir.join(PARETO_FILE);
    write_png(&path, SIZE, |canvas| {
        score_over_params(canvas, &points, text)
    })?;
    written.push(path);
    Ok(written)
}

fn y_range(points: &[(i64, u64, f64)]) -> std::ops::Range<f64> {
    let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(0.01);
    lo - pad..hi + pad
}

fn score_over_trials(root: &Canvas, points: &[(i64, u64, f64)], text: bool) -> DrawResult {
    let last = points.iter().map(|p| p.0).max().unwrap_or(1) as f64;
    let mut builder = ChartBuilder::on(root);
    builder.margin(15);
    if text {
        builder
            .caption("validation score of each trial", ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0.0..last + 1.0, y_range(points))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("trial").y_desc("score");
    }
    mesh.draw()?;
    let mut best = f64::NEG_INFINITY;
    let so_far: Vec<(f64, f64)> = points
        .iter()
        .map(|&(id, _, s)| {
            best = best.max(s);
            (id as f64, best)
        })
        .collect();
    chart.draw_series(LineSeries::new(so_far, FRONT.stroke_width(2)))?;
    chart.draw_series(
        points
            .iter()
            .map(|&(id, _, s)| Circle::new((id as f64, s), 4, POINT.filled())),
    )?;
    Ok(())
}

fn score_over_params(root: &Canvas, points: &[(i64, u64, f64)], text: bool) -> DrawResult {
    let lo = points.iter().map(|p| p.1).min().unwrap_or(1).max(1) as f64;
    let hi = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let mut builder = ChartBuilder::on(root);
    builder.margin(15);
    if text {
        builder
            .caption(
                "score against parameters (Pareto front in red)",
                ("sans-serif", 22),
            )
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart =
        builder.build_cartesian_2d((lo / 1.3..hi * 1.3).log_scale(), y_range(points))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("parameters").y_desc("score");
    }
    mesh.draw()?;
    let front: Vec<(f64, f64)> = pareto_front(points)
        .iter()
        .map(|&(_, p, s)| (p.max(1) as f64, s))
        .collect();
    chart.draw_series(LineSeries::new(front.clone(), FRONT.stroke_width(2)))?;
    chart.draw_series(
        points
            .iter()
            .map(|&(_, p, s)| Circle::new((p.max(1) as f64, s), 4, POINT.filled())),
    )?;
    chart.draw_series(
        front
            .iter()
            .map(|&xy| Circle::new(xy, 6, FRONT.stroke_width(2))),
    )?;
    Ok(())
}

/// Every trial under its parent: id, state, score, parameters, tower.
pub fn parent_tree(trials: &[Trial]) -> String {
    let mut children: BTreeMap<Option<i64>, Vec<&Trial>> = BTreeMap::new();
    let ids: std::collections::HashSet<i64> = trials.iter().map(|t| t.id).collect();
    for t in trials {
        // A parent that is not in the archive: shown as a root.
        let parent = t.parent.filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(t);
    }
    let mut out = String::new();
    let mut stack: Vec<(&Trial, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|t| (*t, 0)).collect())
        .unwrap_or_default();
    while let Some((t, depth)) = stack.pop() {
        let score = t
            .score
            .map(|s| format!("{s:.4}"))
            .unwrap_or_else(|| t.state.name().into());
        out += &format!(
            "{}trial {} ({score}, {} params): [{}]\n",
            "  ".repeat(depth),
            t.id,
            t.params,
            t.tower.join(", ")
        );
        if let Some(kids) = children.get(&Some(t.id)) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

//! Pictures of a differentiable search run, drawn when it ends: the last
//! architecture weights as a heat map, each edge's weights over the epochs,
//! and the derived cells as graphs. Text needs a font, as for the training
//! curves (`train::plots`): without one the pictures are drawn without it.

use super::darts::{WeightsRecord, ARCH_WEIGHTS_FILE, RESULTS_FILE};
use super::derive::Genotype;
use super::space::{cell_edges, Edge, OPERATIONS};
use crate::train::error::{TrainError, TrainResult};
use crate::train::metrics::json_lines;
use crate::train::plots::{epoch_label, font_available, write_png, Canvas, DrawResult, MAX_DOTS};
use crate::train::run_dir::RunDir;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file names of the pictures, in the run's plots folder.
pub const HEATMAP_FILE: &str = "arch_weights_heatmap.png";
pub const OVER_EPOCHS_FILE: &str = "arch_weights_over_epochs.png";
pub const CELLS_FILE: &str = "derived_cells.png";

/// One colour per operation of `OPERATIONS` (matplotlib's tab10, then
/// light shades of tab20), so that an operation has one colour in every
/// picture.
const OP_COLORS: [RGBColor; OPERATIONS.len()] = [
    RGBColor(127, 127, 127),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
];
const UNKNOWN_OP_COLOR: RGBColor = RGBColor(188, 189, 34);

/// One cell type's weights, `[edge][op]`, as arch_weights.jsonl keeps them.
type Table = Vec<Vec<f64>>;
/// A derived cell: its kept edges (node, input state, operation).
type CellEdges = [(usize, usize, String)];

/// Draws the heat map and the weights over epochs from
/// `run_folder/arch_weights.jsonl`, and the derived cells from the genotype
/// in `run_folder/results.json` when the run got that far, into the run's
/// plots folder; returns the paths written. A missing or damaged weights
/// file, or a damaged results file, is an error that names it.
pub fn plot_search(run_folder: &Path) -> TrainResult<Vec<PathBuf>> {
    draw_search(run_folder, font_available())
}

fn draw_search(run_folder: &Path, text: bool) -> TrainResult<Vec<PathBuf>> {
    let records = read_arch_weights(&run_folder.join(ARCH_WEIGHTS_FILE))?;
    let genotype = read_genotype(&run_folder.join(RESULTS_FILE))?;
    let dir = RunDir {
        root: run_folder.to_path_buf(),
    }
    .plots_dir();
    let mut written = Vec::new();
    if let Some(last) = records.last().filter(|r| !cell_tables(r).is_empty()) {
        let path = dir.join(HEATMAP_FILE);
        arch_weights_heatmap(last, &path, text)?;
        written.push(path);
        let path = dir.join(OVER_EPOCHS_FILE);
        arch_weights_over_epochs(&records, &path, text)?;
        written.push(path);
    }
    if let Some(genotype) = genotype.filter(|g| !g.normal.is_empty() || !g.reduce.is_empty()) {
        let path = dir.join(CELLS_FILE);
        derived_cell_graph(&genotype, &path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// The records of an arch_weights.jsonl, checked to be whole (a line cut
/// short is an error too) and to agree on the operations and edges.
fn read_arch_weights(path: &Path) -> TrainResult<Vec<WeightsRecord>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::read(path, "architecture weights file", e))?;
    let bad = |line, reason: String| TrainError::BadMetrics {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut records: Vec<WeightsRecord> = Vec::new();
    for (number, _, value) in json_lines(path, &text)? {
        let value = value.ok_or_else(|| {
            bad(
                number,
                "the line is cut short (a write that did not finish)".into(),
            )
        })?;
        let record: WeightsRecord = serde_json::from_value(value)
            .map_err(|e| bad(number, format!("not an architecture weights record ({e})")))?;
        check_record(&record, records.first()).map_err(|reason| bad(number, reason))?;
        records.push(record);
    }
    Ok(records)
}

/// Every edge has one weight per operation, each table is a whole cell, and
/// both agree with the first record.
fn check_record(record: &WeightsRecord, first: Option<&WeightsRecord>) -> Result<(), String> {
    if record.ops.is_empty() {
        return Err("`ops` is empty".into());
    }
    for (kind, table) in [("normal", &record.normal), ("reduction", &record.reduce)] {
        if let Some((edge, row)) = table
            .iter()
            .enumerate()
            .find(|(_, row)| row.len() != record.ops.len())
        {
            return Err(format!(
                "edge {edge} of the {kind} cell has {} weights for {} operations",
                row.len(),
                record.ops.len()
            ));
        }
        if nodes_of(table.len()).is_none() {
            return Err(format!(
                "the {kind} cell has {} edges, which no number of nodes gives",
                table.len()
            ));
        }
    }
    if let Some(first) = first {
        if first.ops != record.ops
            || first.normal.len() != record.normal.len()
            || first.reduce.len() != record.reduce.len()
        {
            return Err("its operations or edges differ from the first line's".into());
        }
    }
    Ok(())
}

/// The number of nodes of a cell of `edges` edges, if there is one.
fn nodes_of(edges: usize) -> Option<usize> {
    (0..)
        .map(|nodes| (nodes, cell_edges(nodes).len()))
        .find(|&(_, count)| count >= edges)
        .filter(|&(_, count)| count == edges)
        .map(|(nodes, _)| nodes)
}

/// The genotype of results.json, or `None` while the run has none.
fn read_genotype(path: &Path) -> TrainResult<Option<Genotype>> {
    #[derive(Deserialize)]
    struct Results {
        genotype: Genotype,
    }
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(|e| TrainError::io(path, e))?,
    };
    let bad = |reason: String| TrainError::BadRunFile {
        path: path.to_path_buf(),
        reason,
    };
    let genotype = serde_json::from_str::<Results>(&text)
        .map_err(|e| bad(format!("no valid genotype ({e})")))?
        .genotype;
    for (node, state, op) in genotype.normal.iter().chain(&genotype.reduce) {
        if *state > node + 1 {
            return Err(bad(format!(
                "the genotype's edge ({node}, {state}, {op:?}) reads a state after its node"
            )));
        }
    }
    Ok(Some(genotype))
}

/// The cell types that have weights, named.
fn cell_tables(record: &WeightsRecord) -> Vec<(&'static str, &Table)> {
    [("normal", &record.normal), ("reduction", &record.reduce)]
        .into_iter()
        .filter(|(_, table)| !table.is_empty())
        .collect()
}

fn op_color(op: &str) -> RGBColor {
    OPERATIONS
        .iter()
        .position(|o| *o == op)
        .map_or(UNKNOWN_OP_COLOR, |i| OP_COLORS[i])
}

/// `n{node}<-{state}`: states 0 and 1 are the cell inputs, 2 + j node j.
fn edge_label(edge: &Edge) -> String {
    format!("n{}<-{}", edge.node, edge.from)
}

fn text_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(h, v))
}

const HEAT_LABEL_W: i32 = 120;
const HEAT_CELL_W: i32 = 50;
const HEAT_CELL_H: i32 = 28;
const HEAT_TITLE_H: i32 = 36;
const HEAT_FOOT_H: i32 = 56;
const HEAT_BAR_W: i32 = 110;

/// The weights of `record` as a heat map: per cell type a panel of one row
/// per operation and one column per edge, on one colour scale.
fn arch_weights_heatmap(record: &WeightsRecord, path: &Path, text: bool) -> TrainResult<()> {
    let cells = cell_tables(record);
    let ops = &record.ops;
    let edges = cells.iter().map(|(_, t)| t.len()).max().unwrap_or(0) as i32;
    let panel_h = HEAT_TITLE_H + HEAT_CELL_H * ops.len() as i32 + HEAT_FOOT_H;
    let width = (HEAT_LABEL_W + HEAT_CELL_W * edges + HEAT_BAR_W + 20).max(640);
    let height = panel_h * cells.len() as i32 + 10;
    let top = cells
        .iter()
        .flat_map(|(_, t)| t.iter().flatten())
        .fold(0.0, |a: f64, &b| a.max(b));
    let top = if top > 0.0 { top } else { 1.0 };
    write_png(path, (width as u32, height as u32), |root| {
        let (panels, bar) = root.split_horizontally(width - HEAT_BAR_W);
        for (i, (kind, table)) in cells.iter().enumerate() {
            let title = format!("{kind} cell, epoch {}", record.epoch);
            let area = panels.margin(panel_h * i as i32, 0, 0, 0);
            heatmap_panel(&area, &title, ops, table, top, text)?;
        }
        color_bar(&bar.margin(HEAT_TITLE_H, HEAT_FOOT_H, 10, 0), top, text)
    })
}

fn heatmap_panel(
    area: &Canvas,
    title: &str,
    ops: &[String],
    table: &Table,
    top: f64,
    text: bool,
) -> DrawResult {
    let edges = nodes_of(table.len()).map(cell_edges).unwrap_or_default();
    let (x0, y0) = (HEAT_LABEL_W, HEAT_TITLE_H);
    let cell = |e: usize, o: usize| {
        let (x, y) = (x0 + HEAT_CELL_W * e as i32, y0 + HEAT_CELL_H * o as i32);
        [(x, y), (x + HEAT_CELL_W, y + HEAT_CELL_H)]
    };
    for (e, row) in table.iter().enumerate() {
        for (o, &w) in row.iter().enumerate() {
            let t = w / top;
            area.draw(&Rectangle::new(
                cell(e, o),
                ViridisRGB::get_color(t).filled(),
            ))?;
            if text {
                // Light text on the dark end of the scale, dark on the light end.
                let ink = if t < 0.6 { WHITE } else { BLACK };
                let [(x, y), _] = cell(e, o);
                let style = text_style(11, HPos::Center, VPos::Center).color(&ink);
                let at = (x + HEAT_CELL_W / 2, y + HEAT_CELL_H / 2);
                area.draw(&Text::new(format!("{w:.2}"), at, style))?;
            }
        }
    }
    if !text {
        return Ok(());
    }
    area.draw(&Text::new(
        title.to_string(),
        (x0, 8),
        text_style(18, HPos::Left, VPos::Top),
    ))?;
    for (o, op) in ops.iter().enumerate() {
        let at = (x0 - 6, y0 + HEAT_CELL_H * o as i32 + HEAT_CELL_H / 2);
        area.draw(&Text::new(
            op.clone(),
            at,
            text_style(13, HPos::Right, VPos::Center),
        ))?;
    }
    let foot = y0 + HEAT_CELL_H * ops.len() as i32;
    for edge in &edges {
        let at = (
            x0 + HEAT_CELL_W * edge.row as i32 + HEAT_CELL_W / 2,
            foot + 4,
        );
        area.draw(&Text::new(
            edge_label(edge),
            at,
            text_style(12, HPos::Center, VPos::Top),
        ))?;
    }
    area.draw(&Text::new(
        "edge n<node><-<state>: states 0, 1 are the cell inputs, 2+j node j",
        (x0, foot + 26),
        text_style(12, HPos::Left, VPos::Top),
    ))?;
    Ok(())
}

/// A vertical colour scale from 0 (bottom) to `top`, with three values.
fn color_bar(area: &Canvas, top: f64, text: bool) -> DrawResult {
    const BAR_W: i32 = 24;
    let (_, height) = area.dim_in_pixel();
    let height = height as i32;
    for y in 0..height {
        let t = 1.0 - y as f64 / (height - 1).max(1) as f64;
        area.draw(&Rectangle::new(
            [(0, y), (BAR_W, y + 1)],
            ViridisRGB::get_color(t).filled(),
        ))?;
    }
    area.draw(&Rectangle::new([(0, 0), (BAR_W, height - 1)], BLACK))?;
    if text {
        for (t, v) in [(1.0, VPos::Top), (0.5, VPos::Center), (0.0, VPos::Bottom)] {
            let y = ((1.0 - t) * (height - 1) as f64) as i32;
            area.draw(&Text::new(
                format!("{:.2}", t * top),
                (BAR_W + 6, y),
                text_style(12, HPos::Left, v),
            ))?;
        }
        area.draw(&Text::new(
            "weight",
            (0, -8),
            text_style(13, HPos::Left, VPos::Bottom),
        ))?;
    }
    Ok(())
}

const CURVE_PANEL_W: i32 = 190;
const CURVE_PANEL_H: i32 = 130;
const CURVE_TITLE_H: i32 = 30;
const LEGEND_ITEM_W: i32 = 150;
const LEGEND_ROW_H: i32 = 22;

/// Each edge's weights over the epochs: per cell type a grid with one row
/// per node and one column per input state, each panel one line per operation.
fn arch_weights_over_epochs(records: &[WeightsRecord], path: &Path, text: bool) -> TrainResult<()> {
    let last = records.last().expect("the caller checks for records");
    let ops = &last.ops;
    let cells = cell_tables(last);
    let nodes = cells
        .iter()
        .filter_map(|(_, t)| nodes_of(t.len()))
        .max()
        .unwrap_or(0) as i32;
    let width = (CURVE_PANEL_W * (nodes + 1)).max(4 * LEGEND_ITEM_W);
    let per_row = (width / LEGEND_ITEM_W).max(1);
    let legend_h = LEGEND_ROW_H * ((ops.len() as i32 + per_row - 1) / per_row) + 10;
    let cell_h = CURVE_TITLE_H + CURVE_PANEL_H * nodes;
    let height = legend_h + cell_h * cells.len() as i32;
    let epochs: Vec<f64> = records.iter().map(|r| r.epoch as f64).collect();
    let (first, latest) = (epochs[0], epochs[epochs.len() - 1]);
    let latest = latest.max(first + 1.0);
    let pad = (latest - first) * 0.03;
    let x_range = first - pad..latest + pad;
    let top = records
        .iter()
        .flat_map(|r| r.normal.iter().chain(&r.reduce).flatten())
        .fold(0.0, |a: f64, &b| a.max(b));
    let y_range = 0.0..if top > 0.0 { top * 1.05 } else { 1.0 };
    write_png(path, (width as u32, height as u32), |root| {
        for (i, op) in ops.iter().enumerate() {
            let i = i as i32;
            let (x, y) = (
                10 + LEGEND_ITEM_W * (i % per_row),
                16 + LEGEND_ROW_H * (i / per_row),
            );
            root.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                op_color(op).stroke_width(3),
            ))?;
            if text {
                root.draw(&Text::new(
                    op.clone(),
                    (x + 30, y),
                    text_style(13, HPos::Left, VPos::Center),
                ))?;
            }
        }
        for (c, (kind, table)) in cells.iter().enumerate() {
            let (from_top, pick_reduce) = (legend_h + cell_h * c as i32, *kind != "normal");
            let area = root.margin(from_top, 0, 0, 0);
            if text {
                area.draw(&Text::new(
                    format!("{kind} cell: weight of each operation over the epochs"),
                    (10, CURVE_TITLE_H / 2),
                    text_style(16, HPos::Left, VPos::Center),
                ))?;
            }
            let grid = area.margin(CURVE_TITLE_H, 0, 0, 0);
            let panel_w = width / (nodes + 1);
            for edge in nodes_of(table.len()).map(cell_edges).unwrap_or_default() {
                let (x, y) = (panel_w * edge.from as i32, CURVE_PANEL_H * edge.node as i32);
                let panel = grid.clone().shrink((x, y), (panel_w, CURVE_PANEL_H));
                let series = |o: usize| -> Vec<(f64, f64)> {
                    records
                        .iter()
                        .map(|r| {
                            let table = if pick_reduce { &r.reduce } else { &r.normal };
                            (r.epoch as f64, table[edge.row][o])
                        })
                        .collect()
                };
                edge_panel(
                    &panel,
                    &edge,
                    ops,
                    series,
                    (x_range.clone(), y_range.clone()),
                    text,
                )?;
            }
        }
        Ok(())
    })
}

fn edge_panel(
    panel: &Canvas,
    edge: &Edge,
    ops: &[String],
    series: impl Fn(usize) -> Vec<(f64, f64)>,
    (x_range, y_range): (std::ops::Range<f64>, std::ops::Range<f64>),
    text: bool,
) -> DrawResult {
    let mut builder = ChartBuilder::on(panel);
    builder.margin(6);
    if text {
        builder
            .caption(edge_label(edge), ("sans-serif", 13))
            .x_label_area_size(18)
            .y_label_area_size(32);
    }
    let mut chart = builder.build_cartesian_2d(x_range, y_range)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE);
    if text {
        mesh.x_labels(5)
            .y_labels(3)
            .x_label_formatter(&epoch_label)
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(("sans-serif", 10));
    }
    mesh.draw()?;
    for (o, op) in ops.iter().enumerate() {
        let points = series(o);
        let color = op_color(op);
        if points.len() <= MAX_DOTS {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
        }
        chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
    }
    Ok(())
}

const GRAPH_LAYER_W: i32 = 170;
const GRAPH_ROW_H: i32 = 110;
const GRAPH_MARGIN: i32 = 60;
const GRAPH_TITLE_H: i32 = 30;
const NODE_RADIUS: i32 = 26;
/// How far an arrow bows out per layer it passes by, in pixels.
const BOW_PER_LAYER: f64 = 0.3 * GRAPH_ROW_H as f64;
const INPUT_FILL: RGBColor = RGBColor(188, 238, 180);
const NODE_FILL: RGBColor = RGBColor(173, 216, 230);
const OUTPUT_FILL: RGBColor = RGBColor(238, 232, 170);

/// A derived cell laid out in layers: the inputs first, each node one layer
/// after the latest state it reads, the output last.
struct CellLayout {
    /// Centre of each state (0, 1 the inputs, 2 + j node j) that is in the
    /// cell, then of the output.
    centres: Vec<Option<(i32, i32)>>,
    arrows: Vec<Arrow>,
    layers: i32,
    height: i32,
}

/// An arrow from one state to a later one (the output is the last).
struct Arrow {
    from: usize,
    to: usize,
    /// The operation of a kept edge; none into the output.
    op: Option<String>,
    /// How far its middle lies beside the straight line, in pixels (down
    /// when positive): arrows that pass by layers bow out, away from the
    /// middle, so that they miss the nodes between.
    bow: f64,
}

impl CellLayout {
    fn new(edges: &CellEdges) -> CellLayout {
        let nodes = edges.iter().map(|e| e.0 + 1).max().unwrap_or(0);
        let output = nodes + 2;
        let mut depth: Vec<Option<usize>> = vec![None; output + 1];
        depth[0] = Some(0);
        depth[1] = Some(0);
        let mut links = Vec::new();
        for (node, from, op) in edges {
            // Edges in node order; a state a dropped node left out is skipped.
            if let Some(d) = depth[*from] {
                let to = node + 2;
                depth[to] = Some(depth[to].unwrap_or(0).max(d + 1));
                links.push((*from, to, Some(op.clone())));
            }
        }
        let last = depth[2..output]
            .iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or(0);
        depth[output] = Some(last + 1);
        for state in (2..output).filter(|&s| depth[s].is_some()) {
            links.push((state, output, None));
        }
        let depth: Vec<usize> = depth.into_iter().map(|d| d.unwrap_or(0)).collect();
        let skipped = |from: usize, to: usize| (depth[to] - depth[from] - 1) as f64;
        let layers: Vec<Vec<usize>> = (0..=last + 1)
            .map(|layer| (0..=output).filter(|&s| depth[s] == layer).collect())
            .collect();
        // Room for the widest layer, and above and below it for the arrows
        // that bow out most.
        let widest = layers.iter().map(Vec::len).max().unwrap_or(1) as i32;
        let longest = links
            .iter()
            .map(|&(from, to, _)| skipped(from, to))
            .fold(0.0, f64::max);
        let room = NODE_RADIUS + 10 + (BOW_PER_LAYER * longest).ceil() as i32;
        let height = GRAPH_ROW_H * (widest - 1) + 2 * room;
        let mut centres = vec![None; output + 1];
        for (layer, members) in layers.iter().enumerate() {
            let first = height / 2 - GRAPH_ROW_H * (members.len() as i32 - 1) / 2;
            for (i, &s) in members.iter().enumerate() {
                let x = GRAPH_MARGIN + GRAPH_LAYER_W * layer as i32;
                centres[s] = Some((x, first + GRAPH_ROW_H * i as i32));
            }
        }
        let arrows = links
            .into_iter()
            .map(|(from, to, op)| {
                let y = |s: usize| centres[s].map_or(0, |c: (i32, i32)| c.1);
                let side = match (y(from) + y(to) - height).signum() {
                    0 if (from + to) % 2 == 0 => 1.0,
                    0 => -1.0,
                    sign => sign as f64,
                };
                let bow = side * BOW_PER_LAYER * skipped(from, to);
                Arrow { from, to, op, bow }
            })
            .collect();
        CellLayout {
            centres,
            arrows,
            layers: layers.len() as i32,
            height,
        }
    }

    fn name(&self, state: usize) -> String {
        match state {
            0 => "c_{k-2}".into(),
            1 => "c_{k-1}".into(),
            s if s + 1 == self.centres.len() => "c_{k}".into(),
            s => (s - 2).to_string(),
        }
    }
}

/// The derived cells of `genotype` as graphs, one panel per cell type that
/// kept edges: the inputs c_{k-2} and c_{k-1}, the nodes, the output c_{k}
/// (the concatenation of the nodes), an arrow per kept edge with its operation.
fn derived_cell_graph(genotype: &Genotype, path: &Path, text: bool) -> TrainResult<()> {
    let cells: Vec<(&str, &CellEdges)> = [
        ("normal", &genotype.normal),
        ("reduction", &genotype.reduce),
    ]
    .into_iter()
    .filter(|(_, edges)| !edges.is_empty())
    .map(|(kind, edges)| (kind, edges.as_slice()))
    .collect();
    let layouts: Vec<CellLayout> = cells
        .iter()
        .map(|(_, edges)| CellLayout::new(edges))
        .collect();
    let layers = layouts.iter().map(|l| l.layers).max().unwrap_or(1);
    let width = (2 * GRAPH_MARGIN + GRAPH_LAYER_W * (layers - 1)).max(500);
    let height: i32 = layouts.iter().map(|l| GRAPH_TITLE_H + l.height).sum();
    write_png(path, (width as u32, height as u32), |root| {
        let mut top = 0;
        for ((kind, _), layout) in cells.iter().zip(&layouts) {
            let area = root.margin(top, 0, 0, 0);
            top += GRAPH_TITLE_H + layout.height;
            if text {
                area.draw(&Text::new(
                    format!("derived {kind} cell"),
                    (10, GRAPH_TITLE_H / 2),
                    text_style(16, HPos::Left, VPos::Center),
                ))?;
            }
            draw_cell(&area.margin(GRAPH_TITLE_H, 0, 0, 0), layout, text)?;
        }
        Ok(())
    })
}

fn draw_cell(area: &Canvas, layout: &CellLayout, text: bool) -> DrawResult {
    let centre = |s: usize| layout.centres[s].expect("arrows join placed states");
    let mut labels = Vec::new();
    for arrow in &layout.arrows {
        let color = arrow
            .op
            .as_deref()
            .map_or(RGBColor(120, 120, 120), op_color);
        let (a, b) = (centre(arrow.from), centre(arrow.to));
        let curve = bezier(a, b, arrow.bow);
        let outside = |p: &(f64, f64), c: (i32, i32)| {
            (p.0 - c.0 as f64).hypot(p.1 - c.1 as f64) > NODE_RADIUS as f64 + 1.0
        };
        let visible: Vec<(i32, i32)> = curve
            .iter()
            .filter(|p| outside(p, a) && outside(p, b))
            .map(|p| (p.0.round() as i32, p.1.round() as i32))
            .collect();
        if visible.len() < 2 {
            continue;
        }
        area.draw(&PathElement::new(visible.clone(), color.stroke_width(2)))?;
        area.draw(&arrow_head(
            visible[visible.len() - 2],
            visible[visible.len() - 1],
            color,
        ))?;
        if let Some(op) = &arrow.op {
            let mid = curve[curve.len() / 2];
            labels.push((op.clone(), (mid.0 as i32, mid.1 as i32), color));
        }
    }
    for (state, c) in layout.centres.iter().enumerate() {
        let Some(c) = *c else { continue };
        let fill = match state {
            0 | 1 => INPUT_FILL,
            s if s + 1 == layout.centres.len() => OUTPUT_FILL,
            _ => NODE_FILL,
        };
        area.draw(&Circle::new(c, NODE_RADIUS, fill.filled()))?;
        area.draw(&Circle::new(c, NODE_RADIUS, BLACK.stroke_width(1)))?;
        if text {
            area.draw(&Text::new(
                layout.name(state),
                c,
                text_style(13, HPos::Center, VPos::Center),
            ))?;
        }
    }
    if text {
        // Labels last, on a white ground, so that no line crosses them.
        for (op, at, color) in labels {
            let style = text_style(12, HPos::Center, VPos::Center).color(&color);
            let (w, h) = area.estimate_text_size(&op, &style)?;
            let (w, h) = (w as i32 / 2 + 3, h as i32 / 2 + 2);
            area.draw(&Rectangle::new(
                [(at.0 - w, at.1 - h), (at.0 + w, at.1 + h)],
                WHITE.mix(0.85).filled(),
            ))?;
            area.draw(&Text::new(op, at, style))?;
        }
    }
    Ok(())
}

/// Points along the quadratic curve from `a` to `b` whose middle is
/// `bow` pixels to the side of the straight line.
fn bezier(a: (i32, i32), b: (i32, i32), bow: f64) -> Vec<(f64, f64)> {
    const STEPS: usize = 48;
    let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
    let length = (bx - ax).hypot(by - ay).max(1.0);
    // The control point sits twice the bow off the middle, so the curve's middle is at the bow.
    let (cx, cy) = (
        (ax + bx) / 2.0 - 2.0 * bow * (by - ay) / length,
        (ay + by) / 2.0 + 2.0 * bow * (bx - ax) / length,
    );
    (0..=STEPS)
        .map(|i| {
            let t = i as f64 / STEPS as f64;
            let (u, v, w) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            (u * ax + v * cx + w * bx, u * ay + v * cy + w * by)
        })
        .collect()
}

/// A filled triangle pointing from `from` to its tip `to`.
fn arrow_head(from: (i32, i32), to: (i32, i32), color: RGBColor) -> Polygon<(i32, i32)> {
    const LENGTH: f64 = 11.0;
    const HALF_WIDTH: f64 = 5.0;
    let (dx, dy) = ((to.0 - from.0) as f64, (to.1 - from.1) as f64);
    let norm = dx.hypot(dy).max(1e-9);
    let (ux, uy) = (dx / norm, dy / norm);
    let (bx, by) = (to.0 as f64 - LENGTH * ux, to.1 as f64 - LENGTH * uy);
    let corner = |side: f64| {
        (
            (bx - side * HALF_WIDTH * uy).round() as i32,
            (by + side * HALF_WIDTH * ux).round() as i32,
        )
    };
    Polygon::new(vec![to, corner(1.0), corner(-1.0)], color.filled())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary registers no font, so any text drawn would fail.
    #[test]
    fn pictures_without_text_draw_without_a_font() {
        let dir = tempfile::tempdir().unwrap();
        let record = WeightsRecord {
            epoch: 1,
            ops: vec!["skip".into(), "sep_conv_3x3".into()],
            normal: vec![vec![0.4, 0.6], vec![0.7, 0.3]],
            reduce: Vec::new(),
            normal_gates: None,
            reduce_gates: None,
        };
        let line = serde_json::to_string(&record).unwrap();
        std::fs::write(dir.path().join(ARCH_WEIGHTS_FILE), line + "\n").unwrap();
        let results = r#"{"genotype": {"normal": [[0, 1, "skip"], [0, 0, "sep_conv_3x3"]], "reduce": [], "skips": 1}}"#;
        std::fs::write(dir.path().join(RESULTS_FILE), results).unwrap();
        let written = draw_search(dir.path(), false).unwrap();
        assert_eq!(written.len(), 3);
    }

    #[test]
    fn only_whole_cells_have_a_node_count() {
        assert_eq!(nodes_of(0), Some(0));
        assert_eq!(nodes_of(2), Some(1));
        assert_eq!(nodes_of(14), Some(4));
        assert_eq!(nodes_of(3), None);
    }
}

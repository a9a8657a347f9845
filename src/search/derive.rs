//! From architecture weights to a plain architecture: each strategy's rule
//! for which edges and operations a derived cell keeps.

use super::space::{Edge, SpaceConfig};
use crate::model::Architecture;
use serde::{Deserialize, Serialize};

/// The operation kept on each edge row of one cell type (`None`: the edge
/// is left out).
pub type Choices = Vec<Option<usize>>;

/// Row `row`'s strongest operation other than `zero` and its weight (the
/// first on ties).
fn strongest_op(space: &SpaceConfig, weights: &[f64], row: usize) -> (usize, f64) {
    let k = space.ops.len();
    let zero = space.ops.iter().position(|o| o == "zero");
    (0..k)
        .filter(|&o| Some(o) != zero)
        .map(|o| (o, weights[row * k + o]))
        .fold(None, |top: Option<(usize, f64)>, (o, w)| match top {
            Some((_, t)) if t >= w => top,
            _ => Some((o, w)),
        })
        .expect("validation keeps an operation besides zero")
}

/// For each node, the 2 incoming edges whose strongest operation other
/// than `zero` is strongest: `(row, operation, its weight)`.
fn strongest_edges(space: &SpaceConfig, weights: &[f64]) -> Vec<(usize, usize, f64)> {
    let best = |row: usize| strongest_op(space, weights, row);
    let edges = space.edges();
    let mut kept = Vec::new();
    for node in 0..space.nodes {
        let mut incoming: Vec<&Edge> = edges.iter().filter(|e| e.node == node).collect();
        // Strongest first; a stable sort keeps earlier edges first on ties.
        incoming.sort_by(|a, b| best(b.row).1.total_cmp(&best(a.row).1));
        kept.extend(incoming.into_iter().take(2).map(|e| {
            let (op, w) = best(e.row);
            (e.row, op, w)
        }));
    }
    kept
}

/// DARTS: each node keeps its 2 strongest edges, each with its strongest
/// operation other than `zero`.
pub fn darts_choices(space: &SpaceConfig, weights: &[f64]) -> Choices {
    choices_where(space, weights, |_| true)
}

/// FairDARTS: the edges DARTS keeps, but only those whose operation's
/// weight (a sigmoid) is at least `threshold`; a node left without edges is
/// dropped from its cell.
pub fn fair_darts_choices(space: &SpaceConfig, weights: &[f64], threshold: f64) -> Choices {
    choices_where(space, weights, |w| w >= threshold)
}

/// ForceDARTS: each node keeps the 2 incoming edges with the most open
/// gates (`gates[row]`), each with its strongest operation other than `zero`.
pub fn force_darts_choices(space: &SpaceConfig, weights: &[f64], gates: &[f64]) -> Choices {
    let edges = space.edges();
    let mut choices = vec![None; edges.len()];
    for node in 0..space.nodes {
        let mut incoming: Vec<&Edge> = edges.iter().filter(|e| e.node == node).collect();
        // Most open first; a stable sort keeps earlier edges first on ties.
        incoming.sort_by(|a, b| gates[b.row].total_cmp(&gates[a.row]));
        for e in incoming.into_iter().take(2) {
            choices[e.row] = Some(strongest_op(space, weights, e.row).0);
        }
    }
    choices
}

fn choices_where(space: &SpaceConfig, weights: &[f64], keep: impl Fn(f64) -> bool) -> Choices {
    let mut choices = vec![None; space.edges().len()];
    for (row, op, w) in strongest_edges(space, weights) {
        if keep(w) {
            choices[row] = Some(op);
        }
    }
    choices
}

/// What a derived network is made of, by cell type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Genotype {
    /// Per cell type, the kept edges: (node, input state, operation).
    pub normal: Vec<(usize, usize, String)>,
    pub reduce: Vec<(usize, usize, String)>,
    /// Skip connections kept in the normal and reduction cells (DARTS's
    /// best-known failure is cells that collapse to skips).
    pub skips: usize,
}

/// The genotype and the derived architecture of `choices` (normal, reduce).
pub fn derive(
    space: &SpaceConfig,
    name: &str,
    normal: &Choices,
    reduce: &Choices,
) -> Result<(Genotype, Architecture), String> {
    let edges = space.edges();
    let list = |choices: &Choices| -> Vec<(usize, usize, String)> {
        edges
            .iter()
            .filter_map(|e| choices[e.row].map(|o| (e.node, e.from, space.ops[o].clone())))
            .collect()
    };
    let (normal_edges, reduce_edges) = (list(normal), list(reduce));
    let skips = normal_edges
        .iter()
        .chain(&reduce_edges)
        .filter(|e| e.2 == "skip")
        .count();
    let arch = space.derived(name, |reduction, edge| {
        if reduction {
            reduce[edge.row]
        } else {
            normal[edge.row]
        }
    })?;
    Ok((
        Genotype {
            normal: normal_edges,
            reduce: reduce_edges,
            skips,
        },
        arch,
    ))
}

//! Mixed edges of a supernet and the architecture regularisers. Shader:
//! `shaders/mixed_edge.wgsl`.
//!
//! A mixed edge is `y = sum_k w_k * x_k` over K candidate outputs of the same
//! shape, stacked as `x: [K, ...]`. The weights `w: [rows, K]` (one row per
//! edge) come from the architecture parameters `alpha: [rows, K]` on the GPU:
//! softmax per row (DARTS), sigmoid (FairDARTS), or a given 0/1 mask (a
//! sampled sub-network). Candidates whose weight is zero are neither read
//! nor computed: their part of `x` may hold anything, and their part of `dx`
//! is left untouched.
//!
//! Backward: `dx_k = w_k * dy`, `dw_k = sum(dy * x_k)` over the whole tensor,
//! then `dalpha` through the softmax or sigmoid Jacobian for all rows at once.
//!
//! The same edge over candidates held in separate tensors, as a supernet of
//! separate layers produces them: `mixed_terms_forward` and
//! `mixed_terms_backward` take a list of terms `(column k of w, x_k)`, and
//! candidates not in the list cost nothing. They run up to four terms per
//! dispatch (as many as keep every entry point within eight storage
//! bindings, the portable limit).
//!
//! Regularisers (loss and gradient, scaled by a coefficient): the FairDARTS
//! zero-one loss `-mean((sigmoid(alpha) - 0.5)^2)` over every entry, and the
//! purity losses of `p = softmax(row)`, Gini `sum p (1 - p)` and normalised
//! entropy `-sum p ln p / ln K`, averaged over the rows.
//!
//! Edge gates (ForceDARTS): `w[r, k] = p[r, k] * g[r]`, the operation
//! weights `p = softmax(alpha)` of an edge times its gate `g = sigmoid(beta)`,
//! and the multi-hot loss on the gates of a cell's edges: per node, the
//! purity of the pair weights `q_kl = b_k b_l / sum_{u != v} b_u b_v` over
//! its incoming edges (so it is lowest when exactly two gates are open),
//! averaged over the nodes.

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};
use crate::kernels::check::same_shape;

static SHADER: Shader = crate::shader!("mixed_edge", trusted);
/// The kernel family named in shape errors.
const KERNEL: &str = "mixed edge";

const WORKGROUP: usize = 256;
/// Elements one workgroup of the backward pass covers per tile.
const BACKWARD_TILE: usize = WORKGROUP * 4;
/// Workgroups of the backward pass over all candidates: enough to fill a
/// GPU, few enough that their reductions stay cheap (each costs a chain of
/// workgroup barriers, slow on llvmpipe).
const BACKWARD_WORKGROUPS: usize = 256;

/// Terms per dispatch of the `mixed_terms_*` kernels: the shader's slots.
const TERMS_PER_DISPATCH: usize = 4;
/// Most workgroups of one `terms_dw` dispatch (partial sums per term).
const TERMS_DW_WORKGROUPS: usize = 256;

/// How an edge's weights follow from its architecture parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeWeighting {
    /// `w = softmax(alpha)` over the row (DARTS).
    Softmax,
    /// `w = sigmoid(alpha)` elementwise (FairDARTS).
    Sigmoid,
    /// `w = alpha`, a 0/1 mask of the sampled candidates; no gradient to it.
    Mask,
}

/// An architecture regulariser on `alpha: [rows, K]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regulariser {
    /// FairDARTS: `-mean((sigmoid(alpha) - 0.5)^2)` over all entries.
    ZeroOne,
    /// Mean over rows of `sum_k p_k (1 - p_k)`, `p = softmax(row)`.
    Gini,
    /// Mean over rows of `-sum_k p_k ln p_k / ln K`, `p = softmax(row)`.
    Entropy,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    row: u32,
    rows: u32,
    groups: u32,
    mode: u32,
    scale: f32,
    accumulate: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TermsParams {
    n: u32,
    k: u32,
    row: u32,
    count: u32,
    cols: [u32; 4],
    accumulate: u32,
    chunks: u32,
    _pad: [u32; 2],
}

fn weighting_mode(weighting: EdgeWeighting) -> u32 {
    match weighting {
        EdgeWeighting::Softmax => 0,
        EdgeWeighting::Sigmoid => 1,
        EdgeWeighting::Mask => 2,
    }
}

/// Rows and candidates of an `[rows, K]` parameter tensor.
fn rows_and_k(what: &str, t: &Tensor) -> GpuResult<(usize, usize)> {
    ensure(t.shape().len() == 2, || {
        format!(
            "mixed edge: {what} must be [rows, K], got shape {:?}",
            t.shape()
        )
    })?;
    let (rows, k) = (t.shape()[0], t.shape()[1]);
    ensure(k >= 1, || format!("mixed edge: {what} has no candidates"))?;
    Ok((rows, k))
}

/// `w = softmax / sigmoid / copy of alpha`, per row; both `[rows, K]`.
pub fn mixed_edge_weights(
    rec: &mut Recorder,
    weighting: EdgeWeighting,
    alpha: &Tensor,
    w: &Tensor,
) -> GpuResult<()> {
    let (rows, k) = rows_and_k("alpha", alpha)?;
    same_shape(KERNEL, "w", w, alpha.shape())?;
    let params = Params {
        k: k as u32,
        rows: rows as u32,
        mode: weighting_mode(weighting),
        ..Params::default()
    };
    let groups = [rows.div_ceil(64) as u32, 1, 1];
    rec.dispatch(&SHADER, "weights", &[], &params, &[alpha, w], groups)
}

/// Checks `x: [K, ...]` against `w` and returns (K, elements per candidate).
fn candidates(w: &Tensor, row: usize, x: &Tensor) -> GpuResult<(usize, usize)> {
    let (rows, k) = rows_and_k("w", w)?;
    ensure(row < rows, || {
        format!("mixed edge: row {row} is past the {rows} rows of w")
    })?;
    ensure(x.shape().first() == Some(&k), || {
        format!(
            "mixed edge: x must stack the {k} candidates as [K, ...], got shape {:?}",
            x.shape()
        )
    })?;
    Ok((k, x.len() / k))
}

/// `y = sum_k w[row, k] * x[k]`, with `y` of the shape of one candidate.
pub fn mixed_edge_forward(
    rec: &mut Recorder,
    w: &Tensor,
    row: usize,
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    let (k, n) = candidates(w, row, x)?;
    same_shape(KERNEL, "y", y, &x.shape()[1..])?;
    let params = Params {
        n: n as u32,
        k: k as u32,
        row: row as u32,
        ..Params::default()
    };
    let groups = grid_1d(n.div_ceil(WORKGROUP) as u32);
    let constants = [("CANDIDATES", k as f64)];
    rec.dispatch(&SHADER, "forward", &constants, &params, &[w, x, y], groups)
}

/// The shape of the scratch tensor `mixed_edge_backward` needs for
/// candidates stacked as `x_shape` (`[K, ...]`): its partial sums.
pub fn backward_scratch_shape(x_shape: &[usize]) -> [usize; 2] {
    let k = x_shape.first().copied().unwrap_or(1).max(1);
    let n = x_shape.iter().product::<usize>() / k;
    let per_candidate = (BACKWARD_WORKGROUPS / k).max(1);
    [n.div_ceil(BACKWARD_TILE).clamp(1, per_candidate), k]
}

/// `dx[k] = w[row, k] * dy` for every active candidate, and
/// `dw[row, k] = sum(dy * x[k])` (zero for inactive candidates). `scratch`
/// has `backward_scratch_shape(x.shape())`; the caller keeps it alive until
/// the recording is submitted.
#[allow(clippy::too_many_arguments)]
pub fn mixed_edge_backward(
    rec: &mut Recorder,
    w: &Tensor,
    row: usize,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    dw: &Tensor,
    scratch: &Tensor,
) -> GpuResult<()> {
    let (k, n) = candidates(w, row, x)?;
    same_shape(KERNEL, "dy", dy, &x.shape()[1..])?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    same_shape(KERNEL, "dw", dw, w.shape())?;
    same_shape(
        KERNEL,
        "scratch",
        scratch,
        &backward_scratch_shape(x.shape()),
    )?;
    let groups = scratch.shape()[0];
    let partials = scratch;
    let params = Params {
        n: n as u32,
        k: k as u32,
        row: row as u32,
        groups: groups as u32,
        ..Params::default()
    };
    rec.dispatch(
        &SHADER,
        "backward",
        &[],
        &params,
        &[w, x, dy, dx, partials],
        [k as u32, groups as u32, 1],
    )?;
    rec.dispatch(
        &SHADER,
        "reduce_dw",
        &[],
        &params,
        &[partials, dw],
        [1, 1, 1],
    )
}

/// Checks the columns of a term list against `w: [rows, K]` and `row`, and
/// every term tensor (candidate outputs and gradients) against `shape`.
/// Returns K.
fn check_terms<'t>(
    w: &Tensor,
    row: usize,
    columns: impl Iterator<Item = usize>,
    tensors: impl Iterator<Item = (&'static str, &'t Tensor)>,
    shape: &[usize],
) -> GpuResult<usize> {
    let (rows, k) = rows_and_k("w", w)?;
    ensure(row < rows, || {
        format!("mixed edge: row {row} is past the {rows} rows of w")
    })?;
    let mut seen = vec![false; k];
    for column in columns {
        ensure(column < k, || {
            format!("mixed edge: term column {column} is past the {k} columns of w")
        })?;
        ensure(!seen[column], || {
            format!("mixed edge: term column {column} is given twice")
        })?;
        seen[column] = true;
    }
    for (what, t) in tensors {
        same_shape(KERNEL, what, t, shape)?;
    }
    Ok(k)
}

/// Params for one dispatch over the terms of `columns` (at most
/// `TERMS_PER_DISPATCH`).
fn terms_params(n: usize, k: usize, row: usize, columns: &[usize]) -> TermsParams {
    let mut cols = [0; 4];
    for (slot, &c) in cols.iter_mut().zip(columns) {
        *slot = c as u32;
    }
    TermsParams {
        n: n as u32,
        k: k as u32,
        row: row as u32,
        count: columns.len() as u32,
        cols,
        ..TermsParams::default()
    }
}

/// The tensors of one group's slots, each unused slot filled with the first.
fn slots<'t>(group: &[&'t Tensor]) -> [&'t Tensor; TERMS_PER_DISPATCH] {
    std::array::from_fn(|s| *group.get(s).unwrap_or(&group[0]))
}

/// `y = (accumulate ? y : 0) + sum over terms (k, x_k) of w[row, k] * x_k`,
/// each `x_k` of the shape of `y`; each column at most once. Candidates
/// not in the list are not read; an empty list leaves `y` (or zeroes it).
pub fn mixed_terms_forward(
    rec: &mut Recorder,
    w: &Tensor,
    row: usize,
    terms: &[(usize, &Tensor)],
    y: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    let k = check_terms(
        w,
        row,
        terms.iter().map(|t| t.0),
        terms.iter().map(|t| ("x", t.1)),
        y.shape(),
    )?;
    if terms.is_empty() && !accumulate {
        rec.clear(y);
    }
    let groups = grid_1d(y.len().div_ceil(WORKGROUP) as u32);
    for (i, group) in terms.chunks(TERMS_PER_DISPATCH).enumerate() {
        let columns: Vec<usize> = group.iter().map(|t| t.0).collect();
        let xs: Vec<&Tensor> = group.iter().map(|t| t.1).collect();
        let params = TermsParams {
            accumulate: (accumulate || i > 0) as u32,
            ..terms_params(y.len(), k, row, &columns)
        };
        let [x0, x1, x2, x3] = slots(&xs);
        rec.dispatch(
            &SHADER,
            "terms_forward",
            &[],
            &params,
            &[w, y, x0, x1, x2, x3],
            groups,
        )?;
    }
    Ok(())
}

/// For each term `(k, x_k, dx_k)`: `dw[row, k] = sum(dy * x_k)` and, where
/// `dx_k` is given, `dx_k = w[row, k] * dy`; `x_k` and `dx_k` have the shape
/// of `dy`, each column comes at most once, and the other entries of `dw`
/// are not touched. The sums are two-stage (partials in a scratch tensor
/// taken from `rec`, then one small pass per four terms) in a fixed order,
/// so the same inputs give the same bits.
pub fn mixed_terms_backward(
    rec: &mut Recorder,
    w: &Tensor,
    row: usize,
    dy: &Tensor,
    terms: &[(usize, &Tensor, Option<&Tensor>)],
    dw: &Tensor,
) -> GpuResult<()> {
    let k = check_terms(
        w,
        row,
        terms.iter().map(|t| t.0),
        terms
            .iter()
            .flat_map(|t| std::iter::once(("x", t.1)).chain(t.2.map(|dx| ("dx", dx)))),
        dy.shape(),
    )?;
    same_shape(KERNEL, "dw", dw, w.shape())?;
    if terms.is_empty() {
        return Ok(());
    }
    let n = dy.len();
    let with_dx: Vec<(usize, &Tensor)> = terms
        .iter()
        .filter_map(|t| t.2.map(|dx| (t.0, dx)))
        .collect();
    for group in with_dx.chunks(TERMS_PER_DISPATCH) {
        let columns: Vec<usize> = group.iter().map(|t| t.0).collect();
        let dxs: Vec<&Tensor> = group.iter().map(|t| t.1).collect();
        let [dx0, dx1, dx2, dx3] = slots(&dxs);
        rec.dispatch(
            &SHADER,
            "terms_dx",
            &[],
            &terms_params(n, k, row, &columns),
            &[dy, w, dx0, dx1, dx2, dx3],
            grid_1d(n.div_ceil(WORKGROUP) as u32),
        )?;
    }
    let chunks = n.div_ceil(WORKGROUP).clamp(1, TERMS_DW_WORKGROUPS);
    let partials = rec.empty(&[TERMS_PER_DISPATCH, chunks])?;
    for group in terms.chunks(TERMS_PER_DISPATCH) {
        let columns: Vec<usize> = group.iter().map(|t| t.0).collect();
        let xs: Vec<&Tensor> = group.iter().map(|t| t.1).collect();
        let params = TermsParams {
            chunks: chunks as u32,
            ..terms_params(n, k, row, &columns)
        };
        let [x0, x1, x2, x3] = slots(&xs);
        rec.dispatch(
            &SHADER,
            "terms_dw",
            &[],
            &params,
            &[dy, &partials, x0, x1, x2, x3],
            [chunks as u32, 1, 1],
        )?;
        rec.dispatch(
            &SHADER,
            "terms_reduce",
            &[],
            &params,
            &[&partials, dw],
            [1, 1, 1],
        )?;
    }
    Ok(())
}

/// `dalpha (+)= dw` through the Jacobian of the weighting, for every row.
/// A mask has no gradient, so `Mask` is refused.
pub fn mixed_edge_alpha_backward(
    rec: &mut Recorder,
    weighting: EdgeWeighting,
    w: &Tensor,
    dw: &Tensor,
    dalpha: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    ensure(weighting != EdgeWeighting::Mask, || {
        "mixed edge: a 0/1 mask has no gradient to alpha".into()
    })?;
    let (rows, k) = rows_and_k("w", w)?;
    same_shape(KERNEL, "dw", dw, w.shape())?;
    same_shape(KERNEL, "dalpha", dalpha, w.shape())?;
    let params = Params {
        k: k as u32,
        rows: rows as u32,
        mode: weighting_mode(weighting),
        accumulate: accumulate as u32,
        ..Params::default()
    };
    let groups = [rows.div_ceil(64) as u32, 1, 1];
    rec.dispatch(
        &SHADER,
        "alpha_backward",
        &[],
        &params,
        &[w, dw, dalpha],
        groups,
    )
}

/// `loss[0] = coefficient * L(alpha)` and `dalpha (+)= coefficient * dL/dalpha`.
pub fn arch_regulariser(
    rec: &mut Recorder,
    kind: Regulariser,
    alpha: &Tensor,
    coefficient: f32,
    loss: &Tensor,
    dalpha: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    let (rows, k) = rows_and_k("alpha", alpha)?;
    same_shape(KERNEL, "dalpha", dalpha, alpha.shape())?;
    ensure(loss.len() == 1, || {
        format!(
            "regulariser: loss must hold one value, got shape {:?}",
            loss.shape()
        )
    })?;
    let params = Params {
        k: k as u32,
        rows: rows as u32,
        mode: match kind {
            Regulariser::ZeroOne => 0,
            Regulariser::Gini => 1,
            Regulariser::Entropy => 2,
        },
        scale: coefficient,
        accumulate: accumulate as u32,
        ..Params::default()
    };
    rec.dispatch(
        &SHADER,
        "regulariser",
        &[],
        &params,
        &[alpha, dalpha, loss],
        [1, 1, 1],
    )
}

/// Rows of node `node` in a DARTS cell's edge list (node-major, node `i`
/// reading the two cell inputs and the `i` earlier nodes).
pub fn node_rows(node: usize) -> std::ops::Range<usize> {
    let start = node * (node + 3) / 2;
    start..start + node + 2
}

/// `loss[0] = coefficient * L(beta)` and `dbeta (+)= coefficient * dL/dbeta`
/// for the multi-hot loss of the gates `sigmoid(beta)` of a cell of `nodes`
/// nodes; `purity` is `Gini` or `Entropy`.
#[allow(clippy::too_many_arguments)]
pub fn multi_hot_regulariser(
    rec: &mut Recorder,
    purity: Regulariser,
    beta: &Tensor,
    nodes: usize,
    coefficient: f32,
    loss: &Tensor,
    dbeta: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    let rows = node_rows(nodes.max(1) - 1).end;
    ensure(nodes >= 1 && beta.shape() == [rows, 1], || {
        format!(
            "multi-hot loss: the gates of a cell of {nodes} nodes are [{rows}, 1], got shape {:?}",
            beta.shape()
        )
    })?;
    same_shape(KERNEL, "dbeta", dbeta, beta.shape())?;
    ensure(loss.len() == 1, || {
        format!(
            "multi-hot loss: loss must hold one value, got shape {:?}",
            loss.shape()
        )
    })?;
    ensure(purity != Regulariser::ZeroOne, || {
        "multi-hot loss: the purity is gini or entropy, not zero_one".into()
    })?;
    let mode = if purity == Regulariser::Gini { 1 } else { 2 };
    let params = Params {
        n: nodes as u32,
        mode,
        scale: coefficient,
        accumulate: accumulate as u32,
        ..Params::default()
    };
    rec.dispatch(
        &SHADER,
        "multi_hot",
        &[],
        &params,
        &[beta, dbeta, loss],
        [1, 1, 1],
    )
}

/// `w[r, k] = p[r, k] * g[r]` for `p, w: [rows, K]`, `g: [rows, 1]`.
pub fn edge_gate_forward(rec: &mut Recorder, p: &Tensor, g: &Tensor, w: &Tensor) -> GpuResult<()> {
    let (rows, k) = rows_and_k("p", p)?;
    same_shape(KERNEL, "gates", g, &[rows, 1])?;
    same_shape(KERNEL, "w", w, p.shape())?;
    let params = Params {
        k: k as u32,
        rows: rows as u32,
        ..Params::default()
    };
    let groups = [(rows * k).div_ceil(64) as u32, 1, 1];
    rec.dispatch(&SHADER, "gate_forward", &[], &params, &[p, g, w], groups)
}

/// `dp[r, k] = dw[r, k] * g[r]` and `dg[r] = sum_k dw[r, k] * p[r, k]`.
pub fn edge_gate_backward(
    rec: &mut Recorder,
    p: &Tensor,
    g: &Tensor,
    dw: &Tensor,
    dp: &Tensor,
    dg: &Tensor,
) -> GpuResult<()> {
    let (rows, k) = rows_and_k("p", p)?;
    same_shape(KERNEL, "gates", g, &[rows, 1])?;
    same_shape(KERNEL, "dw", dw, p.shape())?;
    same_shape(KERNEL, "dp", dp, p.shape())?;
    same_shape(KERNEL, "dgates", dg, g.shape())?;
    let params = Params {
        k: k as u32,
        rows: rows as u32,
        ..Params::default()
    };
    let groups = [rows.div_ceil(64) as u32, 1, 1];
    rec.dispatch(
        &SHADER,
        "gate_backward",
        &[],
        &params,
        &[p, g, dw, dp, dg],
        groups,
    )
}

/// CPU reference of `edge_gate_forward`.
pub fn edge_gate_reference(p: &[f64], g: &[f64]) -> Vec<f64> {
    let k = p.len() / g.len().max(1);
    p.iter().enumerate().map(|(i, v)| v * g[i / k]).collect()
}

/// CPU reference of `edge_gate_backward`: `(dp, dg)`.
pub fn edge_gate_backward_reference(p: &[f64], g: &[f64], dw: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let k = p.len() / g.len().max(1);
    let dp = dw.iter().enumerate().map(|(i, d)| d * g[i / k]).collect();
    let dg = p
        .chunks(k)
        .zip(dw.chunks(k))
        .map(|(p, d)| p.iter().zip(d).map(|(a, b)| a * b).sum())
        .collect();
    (dp, dg)
}

/// CPU reference of the multi-hot loss: `(L(beta), dL/dbeta)` for the gates
/// of a cell of `nodes` nodes, by the definition (pair weights, then their
/// purity) and the chain rule taken term by term.
pub fn multi_hot_reference(purity: Regulariser, beta: &[f64], nodes: usize) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut grad = vec![0.0; beta.len()];
    for node in 0..nodes {
        let rows = node_rows(node);
        let b: Vec<f64> = beta[rows.clone()].iter().map(|&v| sigmoid(v)).collect();
        let m = b.len();
        let log_pairs = ((m * (m - 1)) as f64).ln();
        let s: f64 = (0..m)
            .flat_map(|u| (0..m).map(move |v| (u, v)))
            .filter(|(u, v)| u != v)
            .map(|(u, v)| b[u] * b[v])
            .sum();
        let mut db = vec![0.0; m];
        for k in 0..m {
            for l in (0..m).filter(|&l| l != k) {
                let q = b[k] * b[l] / s;
                let (value, g) = match purity {
                    Regulariser::Entropy => (-q * q.ln() / log_pairs, -(q.ln() + 1.0) / log_pairs),
                    _ => (q * (1.0 - q), 1.0 - 2.0 * q),
                };
                loss += value / nodes as f64;
                // dq_kl/db_j = ([k = j] b_l + [l = j] b_k) / S - q dS/db_j / S.
                for (j, dbj) in db.iter_mut().enumerate() {
                    let direct = if j == k { b[l] } else { 0.0 } + if j == l { b[k] } else { 0.0 };
                    let ds = 2.0 * (b.iter().sum::<f64>() - b[j]);
                    *dbj += g * (direct - q * ds) / s;
                }
            }
        }
        for (j, row) in rows.enumerate() {
            grad[row] = db[j] * b[j] * (1.0 - b[j]) / nodes as f64;
        }
    }
    (loss, grad)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let top = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - top).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|v| v / total).collect()
}

/// CPU reference of `mixed_edge_weights` over `alpha: [rows][k]`.
pub fn weights_reference(weighting: EdgeWeighting, alpha: &[f64], k: usize) -> Vec<f64> {
    alpha
        .chunks(k)
        .flat_map(|row| match weighting {
            EdgeWeighting::Softmax => softmax(row),
            EdgeWeighting::Sigmoid => row.iter().map(|&a| sigmoid(a)).collect(),
            EdgeWeighting::Mask => row.to_vec(),
        })
        .collect()
}

/// CPU reference of the forward pass of one edge: `w` is that edge's row,
/// `x` stacks its candidates. Inactive candidates are not read.
pub fn forward_reference(w: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len() / w.len();
    (0..n)
        .map(|i| {
            w.iter()
                .enumerate()
                .filter(|(_, &wk)| wk != 0.0)
                .map(|(k, &wk)| wk * x[k * n + i])
                .sum()
        })
        .collect()
}

/// CPU reference of the backward pass of one edge: `(dx, dw)`; `dx` of an
/// inactive candidate is zero.
pub fn backward_reference(w: &[f64], x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = dy.len();
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for (k, &wk) in w.iter().enumerate() {
        if wk == 0.0 {
            continue;
        }
        for i in 0..n {
            dx[k * n + i] = wk * dy[i];
            dw[k] += dy[i] * x[k * n + i];
        }
    }
    (dx, dw)
}

/// CPU reference of `mixed_terms_forward` for one edge: `w` is that edge's
/// row, `terms` the `(column, x_k)` pairs, `y` the output before the call.
pub fn terms_forward_reference(
    w: &[f64],
    terms: &[(usize, &[f64])],
    y: &[f64],
    accumulate: bool,
) -> Vec<f64> {
    (0..y.len())
        .map(|i| {
            let start = if accumulate { y[i] } else { 0.0 };
            start + terms.iter().map(|&(k, x)| w[k] * x[i]).sum::<f64>()
        })
        .collect()
}

/// CPU reference of `mixed_terms_backward` for one edge: per term, its
/// `(dx_k, dw[k])`.
pub fn terms_backward_reference(
    w: &[f64],
    dy: &[f64],
    terms: &[(usize, &[f64])],
) -> Vec<(Vec<f64>, f64)> {
    terms
        .iter()
        .map(|&(k, x)| {
            let dx = dy.iter().map(|g| w[k] * g).collect();
            let dw = dy.iter().zip(x).map(|(g, v)| g * v).sum();
            (dx, dw)
        })
        .collect()
}

/// CPU reference of `dalpha` from `dw` for `[rows][k]` weights.
pub fn alpha_backward_reference(
    weighting: EdgeWeighting,
    w: &[f64],
    dw: &[f64],
    k: usize,
) -> Vec<f64> {
    w.chunks(k)
        .zip(dw.chunks(k))
        .flat_map(|(w, dw)| match weighting {
            EdgeWeighting::Softmax => {
                let dot: f64 = w.iter().zip(dw).map(|(a, b)| a * b).sum();
                w.iter().zip(dw).map(|(wk, dk)| wk * (dk - dot)).collect()
            }
            EdgeWeighting::Sigmoid => w.iter().zip(dw).map(|(s, d)| d * s * (1.0 - s)).collect(),
            EdgeWeighting::Mask => vec![0.0; k],
        })
        .collect()
}

/// CPU reference of a regulariser: `(L(alpha), dL/dalpha)` for `[rows][k]`.
pub fn regulariser_reference(kind: Regulariser, alpha: &[f64], k: usize) -> (f64, Vec<f64>) {
    let rows = (alpha.len() / k) as f64;
    match kind {
        Regulariser::ZeroOne => {
            let count = alpha.len() as f64;
            let loss = -alpha
                .iter()
                .map(|&a| (sigmoid(a) - 0.5).powi(2))
                .sum::<f64>()
                / count;
            let grad = alpha
                .iter()
                .map(|&a| {
                    let s = sigmoid(a);
                    -2.0 * (s - 0.5) * s * (1.0 - s) / count
                })
                .collect();
            (loss, grad)
        }
        Regulariser::Gini | Regulariser::Entropy => {
            let log_k = (k as f64).ln();
            let mut loss = 0.0;
            let mut grad = Vec::with_capacity(alpha.len());
            for row in alpha.chunks(k) {
                let p = softmax(row);
                // g = dL_row/dp, then through the softmax Jacobian.
                let g: Vec<f64> = if kind == Regulariser::Gini {
                    loss += p.iter().map(|pk| pk * (1.0 - pk)).sum::<f64>();
                    p.iter().map(|pk| 1.0 - 2.0 * pk).collect()
                } else if k > 1 {
                    loss -= p.iter().map(|pk| pk * pk.ln()).sum::<f64>() / log_k;
                    p.iter().map(|pk| -(pk.ln() + 1.0) / log_k).collect()
                } else {
                    vec![0.0]
                };
                let pg: f64 = p.iter().zip(&g).map(|(a, b)| a * b).sum();
                grad.extend(p.iter().zip(&g).map(|(pk, gk)| pk * (gk - pg) / rows));
            }
            (loss / rows, grad)
        }
    }
}

//! DARTS-style search spaces: a stem, cells of nodes joined by mixed edges
//! over candidate operations, a head; built as a plain architecture
//! description (a supernet) whose layers have stable names, so that the
//! network, masks, costs, checkpoints and inheritance all work on it as on
//! any other network.
//!
//! Cells follow the DARTS reference (`cnn/model_search.py`): two inputs (the
//! two previous cells, or the stem), preprocessed by ReLU-1x1 conv-BN (a
//! factorized reduction after a reduction cell); node `i` sums one mixed
//! edge from every earlier state; the cell's output concatenates its nodes.
//! A reduction cell applies stride 2 on the edges leaving its two inputs and
//! doubles the channels when `double_channels` is set.
//!
//! Operations, as the reference defines them (`cnn/operations.py`), with
//! batch norm without affine parameters in the supernet and with them in a
//! derived network:
//! - `zero`: nothing (the edge's other candidates alone);
//! - `skip`: the input itself; with stride 2 a factorized reduction (ReLU,
//!   two 1x1 convolutions of stride 2, the second on the input shifted by
//!   one position, concatenated, batch norm);
//! - `max_pool_3x3`, `avg_pool_3x3` (padding 1, the average not counting
//!   the padding), each followed by batch norm in the supernet;
//! - `sep_conv_3x3`, `sep_conv_5x5`: (ReLU, depthwise, 1x1, batch norm) twice;
//! - `dil_conv_3x3`, `dil_conv_5x5`: ReLU, depthwise with dilation 2, 1x1,
//!   batch norm.
//!
//! Polynomial operations multiply bounded factors of the input. A branch
//! `k` is ReLU, depthwise `k`x`k` (the edge's stride, padding keeping the
//! size; `k = 1` is a per-channel scale), 1x1 to the edge's channels, batch
//! norm (as one half of `sep_conv`: affine only in a derived network), then
//! tanh, so each factor lies in (-1, 1) and so does a product of two or
//! three of them; `skip` is what the `skip` operation computes (the input,
//! or its factorized reduction at stride 2):
//! - `poly2_7_1`, `poly2_5_3`: `branch_a(x) * branch_b(x) + skip(x)`;
//! - `poly3_7_1_1`, `poly3_5_3_3`: `branch_a(x) * branch_b(x) * branch_c(x)
//!   + skip(x)`.
//!
//! Their layers, under the edge's prefix: branch `i` (0-based, in the
//! order of the name's kernel sizes) `b{i}.relu`, `b{i}.dw`, `b{i}.pw`,
//! `b{i}.bn`, `b{i}.tanh`; the products `prod` (of `poly3`'s three: `prod01`
//! of the first two, then `prod`); `skip.*` at stride 2; `sum`.
//!
//! `field = "complex"` builds the same space in the complex field, for the
//! complex STFT: every convolution complex (`complex_conv2d`,
//! `complex_depthwise_conv2d`), ReLU as CReLU, batch norm as complex batch
//! norm, pools by magnitude (max) or of each part (average), the crop of a
//! factorized reduction on pairs, and a polynomial's factors multiplied as
//! complex numbers. A complex factor is bounded by its normalisation
//! rather than by tanh (which has poles in the complex plane): each is the
//! output of its branch's complex batch norm, whitened to `E|z|^2 = 1` in the
//! supernet, so there is no `b{i}.tanh`. The head takes the magnitude
//! (`head.mag`) before its pooling.

use crate::model::arch::{
    EdgeGates, LayerSpec, Op, Padding, Pair, Regularisation, Weighting, INPUT,
};
use crate::model::{Architecture, Field};
use crate::nn::Init;
use serde::{Deserialize, Serialize};

/// Every operation a cell edge may have.
pub const OPERATIONS: [&str; 12] = [
    "zero",
    "skip",
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "poly2_7_1",
    "poly2_5_3",
    "poly3_7_1_1",
    "poly3_5_3_3",
];

/// The depthwise kernel sizes of the branches of a polynomial operation,
/// or `None` for another operation.
fn poly_kernels(op: &str) -> Option<&'static [usize]> {
    match op {
        "poly2_7_1" => Some(&[7, 1]),
        "poly2_5_3" => Some(&[5, 3]),
        "poly3_7_1_1" => Some(&[7, 1, 1]),
        "poly3_5_3_3" => Some(&[5, 3, 3]),
        _ => None,
    }
}

/// The convolution that turns the input features into the cells' channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemConfig {
    pub channels: usize,
    pub kernel: Pair,
    #[serde(default = "one_pair")]
    pub stride: Pair,
}

/// A search space of cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    pub stem: StemConfig,
    /// Cells in order.
    pub cells: usize,
    /// Indices of the reduction cells (stride 2).
    #[serde(default)]
    pub reductions: Vec<usize>,
    /// Nodes per cell.
    pub nodes: usize,
    /// Channels of every node in the first cell.
    pub channels: usize,
    /// Double the channels at each reduction cell, as DARTS does.
    #[serde(default = "yes")]
    pub double_channels: bool,
    /// Candidate operations of every edge, by name (see `OPERATIONS`).
    pub ops: Vec<String>,
    /// `complex`: complex layers throughout, for the complex STFT.
    #[serde(default)]
    pub field: Field,
}

fn one_pair() -> Pair {
    Pair([1, 1])
}
fn yes() -> bool {
    true
}

/// What a search space names, for derivation: the edges of each cell type.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// The node it enters (0-based among the cell's nodes).
    pub node: usize,
    /// The state it reads: 0 and 1 the cell inputs, 2 + j node j.
    pub from: usize,
    /// Its row in the architecture weights of its cell type.
    pub row: usize,
}

/// The edges of a cell of `nodes` nodes: node `i` reads every earlier state.
pub fn cell_edges(nodes: usize) -> Vec<Edge> {
    let mut edges = Vec::new();
    for node in 0..nodes {
        for from in 0..node + 2 {
            let row = edges.len();
            edges.push(Edge { node, from, row });
        }
    }
    edges
}

impl SpaceConfig {
    /// Refuses what cannot be built, naming the key and the valid choices.
    pub fn validate(&self) -> Result<(), String> {
        if self.ops.is_empty() {
            return Err(format!(
                "[space] ops is empty; choose from {}",
                OPERATIONS.join(", ")
            ));
        }
        if let Some(op) = self.ops.iter().find(|o| !OPERATIONS.contains(&o.as_str())) {
            return Err(format!(
                "[space] ops: unknown operation {op:?}; choose from {}",
                OPERATIONS.join(", ")
            ));
        }
        if self.ops.iter().all(|o| o == "zero") {
            return Err("[space] ops: needs an operation besides \"zero\"".into());
        }
        if self.cells == 0 {
            return Err("[space] cells must be at least 1".into());
        }
        if self.nodes == 0 {
            return Err("[space] nodes must be at least 1".into());
        }
        if self.channels == 0 || self.stem.channels == 0 {
            return Err("[space] channels and stem.channels must be at least 1".into());
        }
        if let Some(r) = self.reductions.iter().find(|&&r| r >= self.cells) {
            return Err(format!(
                "[space] reductions: cell {r} is out of range; cells are 0..{}",
                self.cells - 1
            ));
        }
        Ok(())
    }

    /// The edges of a cell.
    pub fn edges(&self) -> Vec<Edge> {
        cell_edges(self.nodes)
    }

    fn is_reduction(&self, cell: usize) -> bool {
        self.reductions.contains(&cell)
    }

    /// Which cell types the network has, as `[normal, reduction]`: a table
    /// of architecture weights exists only for a type that has cells.
    pub fn cell_types(&self) -> [bool; 2] {
        [
            self.reductions.len() < self.cells,
            !self.reductions.is_empty(),
        ]
    }

    /// The supernet: every edge a mixed edge over all `ops`, weighted by the
    /// table of its cell type (`alphas_normal`, `alphas_reduce`).
    pub fn supernet(&self, name: &str, tables: &Tables) -> Architecture {
        let mut b = Builder::new(false, self.field);
        let rows = self.edges().len();
        let candidates = self.ops.len();
        let present = self.cell_types();
        let count = present.iter().filter(|&&p| p).count() as f32;
        for (table, _) in [NORMAL_WEIGHTS, REDUCE_WEIGHTS]
            .iter()
            .zip(present)
            .filter(|t| t.1)
        {
            // Each table's share, so the loss is a mean over both together.
            let regulariser = tables.regulariser.map(|r| Regularisation {
                weight: r.weight / count,
                ..r
            });
            let gates = tables.gates.map(|r| EdgeGates {
                nodes: self.nodes,
                purity: r.kind,
                weight: r.weight * self.nodes as f32 / rows as f32 / count,
            });
            b.layer(
                table,
                &[INPUT],
                Op::ArchWeights {
                    rows,
                    candidates,
                    weighting: tables.weighting,
                    init_scale: tables.init_scale,
                    regulariser,
                    gates,
                },
            );
        }
        self.network(&mut b, |b, cell, edge, from, channels, stride| {
            let table = if self.is_reduction(cell) {
                REDUCE_WEIGHTS
            } else {
                NORMAL_WEIGHTS
            };
            let prefix = edge_name(cell, edge);
            let mut inputs = vec![table.to_string()];
            let mut columns = Vec::new();
            for (column, op) in self.ops.iter().enumerate() {
                if let Some(out) =
                    b.operation(&format!("{prefix}.{op}"), op, from, channels, stride)
                {
                    inputs.push(out);
                    columns.push(column);
                }
            }
            let name = format!("{prefix}.mixed");
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            b.layer(
                &name,
                &refs,
                Op::Mixed {
                    row: edge.row,
                    columns,
                },
            );
            Some(name)
        })
        .expect("every supernet node has edges");
        b.finish(name)
    }

    /// A network with one operation (or none) on each edge: `choose(cell,
    /// edge)` gives its index in `ops`, or `None` for an edge left out. A
    /// node left without edges is left out, and so are the edges that read it;
    /// so is a cell input (or a whole cell) that nothing kept reads.
    pub fn derived(
        &self,
        name: &str,
        choose: impl Fn(bool, &Edge) -> Option<usize>,
    ) -> Result<Architecture, String> {
        let mut b = Builder::new(true, self.field);
        self.network(&mut b, |b, cell, edge, from, channels, stride| {
            let op = &self.ops[choose(self.is_reduction(cell), edge)?];
            let prefix = edge_name(cell, edge);
            b.operation(&format!("{prefix}.{op}"), op, from, channels, stride)
        })?;
        b.finish(name).without_unread().map_err(|e| e.to_string())
    }

    /// Stem, cells and head, each edge made by `edge(builder, cell, edge,
    /// input state, channels, stride)` (the layer it ends in, or none).
    fn network(
        &self,
        b: &mut Builder,
        mut edge_layer: impl FnMut(&mut Builder, usize, &Edge, &str, usize, usize) -> Option<String>,
    ) -> Result<(), String> {
        let stem = &self.stem;
        let conv = b.in_field(Op::Conv2d {
            channels: stem.channels,
            kernel: stem.kernel,
            stride: stem.stride,
            padding: Padding::Same,
            dilation: Pair([1, 1]),
            groups: 1,
            bias: false,
        });
        b.layer("stem.conv", &[INPUT], conv);
        let stem_out = b.batch_norm("stem.bn", "stem.conv", true);
        // The two previous outputs and whether the older one is at twice the
        // resolution of the newer (after a reduction cell).
        let (mut prev_prev, mut prev) = (stem_out.clone(), stem_out);
        let mut prev_reduced = false;
        let mut channels = self.channels;
        for cell in 0..self.cells {
            let reduction = self.is_reduction(cell);
            if reduction && self.double_channels && cell > 0 {
                channels *= 2;
            }
            let pre0 = if prev_reduced {
                b.factorized_reduce(&format!("cell{cell}.pre0"), &prev_prev, channels)
            } else {
                b.relu_conv_bn(&format!("cell{cell}.pre0"), &prev_prev, channels)
            };
            let pre1 = b.relu_conv_bn(&format!("cell{cell}.pre1"), &prev, channels);
            let mut states: Vec<Option<String>> = vec![Some(pre0), Some(pre1)];
            let edges = self.edges();
            for node in 0..self.nodes {
                let mut terms = Vec::new();
                for edge in edges.iter().filter(|e| e.node == node) {
                    let Some(from) = states[edge.from].clone() else {
                        continue;
                    };
                    let stride = if reduction && edge.from < 2 { 2 } else { 1 };
                    if let Some(out) = edge_layer(b, cell, edge, &from, channels, stride) {
                        terms.push(out);
                    }
                }
                states.push(b.sum(&format!("cell{cell}.node{node}"), terms));
            }
            let nodes: Vec<String> = states[2..].iter().flatten().cloned().collect();
            if nodes.is_empty() {
                return Err(format!("cell {cell} has no node left with an edge"));
            }
            let out = b.concat(&format!("cell{cell}.out"), nodes);
            prev_prev = std::mem::replace(&mut prev, out);
            prev_reduced = reduction;
        }
        if b.complex {
            prev = b.layer("head.mag", &[&prev], Op::Magnitude);
        }
        b.layer("head.pool", &[&prev], Op::GlobalAvgPool);
        b.layer(
            "head.dense",
            &["head.pool"],
            Op::Dense {
                units: None,
                bias: true,
            },
        );
        Ok(())
    }
}

/// How a supernet's architecture weights are made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tables {
    pub weighting: Weighting,
    /// Alpha starts as this times a standard normal draw.
    pub init_scale: f32,
    /// A loss on the weights, its weight split over the tables.
    pub regulariser: Option<Regularisation>,
    /// ForceDARTS: edge gates with the multi-hot loss of this purity; its
    /// weight, times nodes / edges, is split over the tables.
    pub gates: Option<Regularisation>,
}

/// The tables of architecture weights of normal and reduction cells.
pub const NORMAL_WEIGHTS: &str = "alphas_normal";
pub const REDUCE_WEIGHTS: &str = "alphas_reduce";

fn edge_name(cell: usize, edge: &Edge) -> String {
    format!("cell{cell}.node{}.from{}", edge.node, edge.from)
}

/// Collects named layers.
struct Builder {
    layers: Vec<LayerSpec>,
    /// Batch norm with affine parameters (a derived network) or without (a supernet).
    affine: bool,
    /// Complex layers throughout.
    complex: bool,
}

impl Builder {
    fn new(affine: bool, field: Field) -> Builder {
        Builder {
            layers: Vec::new(),
            affine,
            complex: field == Field::Complex,
        }
    }

    /// `op` in the builder's field: a convolution, batch norm or ReLU
    /// becomes its complex form in a complex space.
    fn in_field(&self, op: Op) -> Op {
        match self.complex {
            true => op.complex_twin(),
            false => op,
        }
    }

    fn layer(&mut self, name: &str, inputs: &[&str], op: Op) -> String {
        self.layers.push(LayerSpec {
            name: Some(name.to_string()),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            op,
            gate: false,
        });
        name.to_string()
    }

    fn finish(self, name: &str) -> Architecture {
        // PyTorch's default initialisation, as the DARTS reference's
        // supernet and every hand-designed network here use.
        Architecture {
            name: name.to_string(),
            init: Init::Default,
            layers: self.layers,
        }
    }

    fn batch_norm(&mut self, name: &str, input: &str, affine: bool) -> String {
        let op = self.in_field(Op::BatchNorm {
            affine,
            eps: 1e-5,
            momentum: 0.1,
        });
        self.layer(name, &[input], op)
    }

    fn relu(&mut self, name: &str, input: &str) -> String {
        let op = self.in_field(Op::Relu);
        self.layer(name, &[input], op)
    }

    /// A 1x1 convolution without bias, of stride `stride`, padded after by `pad_after`.
    fn pointwise(
        &mut self,
        name: &str,
        input: &str,
        channels: usize,
        stride: usize,
        pad_after: usize,
    ) -> String {
        let op = self.in_field(Op::Conv2d {
            channels,
            kernel: Pair([1, 1]),
            stride: Pair([stride, stride]),
            padding: Padding::Explicit([[0, pad_after], [0, pad_after]]),
            dilation: Pair([1, 1]),
            groups: 1,
            bias: false,
        });
        self.layer(name, &[input], op)
    }

    /// ReLU, 1x1 convolution to `channels`, batch norm.
    fn relu_conv_bn(&mut self, prefix: &str, input: &str, channels: usize) -> String {
        let r = self.relu(&format!("{prefix}.relu"), input);
        let c = self.pointwise(&format!("{prefix}.conv"), &r, channels, 1, 0);
        let affine = self.affine;
        self.batch_norm(&format!("{prefix}.bn"), &c, affine)
    }

    /// ReLU, then two 1x1 convolutions of stride 2 to half the channels
    /// each, the second one position further on both axes (padded at the
    /// end so both halves have one size), concatenated, batch norm.
    fn factorized_reduce(&mut self, prefix: &str, input: &str, channels: usize) -> String {
        let r = self.relu(&format!("{prefix}.relu"), input);
        let half = channels / 2;
        let a = self.pointwise(&format!("{prefix}.conv1"), &r, half, 2, 0);
        let shifted = self.layer(
            &format!("{prefix}.shift"),
            &[&r],
            Op::Crop {
                start: Pair([1, 1]),
            },
        );
        // One zero after the shifted input gives both halves ceil(size / 2)
        // positions, for odd sizes too.
        let b = self.pointwise(&format!("{prefix}.conv2"), &shifted, channels - half, 2, 1);
        let cat = self.layer(&format!("{prefix}.cat"), &[&a, &b], Op::Concat);
        let affine = self.affine;
        self.batch_norm(&format!("{prefix}.bn"), &cat, affine)
    }

    /// The layers of operation `op` on `input`; the name of its output
    /// (the input itself for a skip), or `None` for `zero`.
    fn operation(
        &mut self,
        prefix: &str,
        op: &str,
        input: &str,
        channels: usize,
        stride: usize,
    ) -> Option<String> {
        let affine = self.affine;
        let pool = |b: &mut Builder, op: Op| {
            let p = b.layer(&format!("{prefix}.pool"), &[input], op);
            if affine {
                p
            } else {
                b.batch_norm(&format!("{prefix}.bn"), &p, false)
            }
        };
        let s = Pair([stride, stride]);
        Some(match op {
            "zero" => return None,
            "skip" if stride == 1 => input.to_string(),
            "skip" => self.factorized_reduce(prefix, input, channels),
            "max_pool_3x3" => pool(
                self,
                Op::MaxPool2d {
                    kernel: Pair([3, 3]),
                    stride: Some(s),
                    padding: Pair([1, 1]),
                },
            ),
            "avg_pool_3x3" => pool(
                self,
                Op::AvgPool2d {
                    kernel: Pair([3, 3]),
                    stride: Some(s),
                    padding: Pair([1, 1]),
                    count_include_pad: false,
                },
            ),
            "sep_conv_3x3" | "sep_conv_5x5" => {
                let k = if op == "sep_conv_3x3" { 3 } else { 5 };
                let once = self.dw_pw(&format!("{prefix}.a"), input, channels, k, stride, 1);
                self.dw_pw(&format!("{prefix}.b"), &once, channels, k, 1, 1)
            }
            "dil_conv_3x3" | "dil_conv_5x5" => {
                let k = if op == "dil_conv_3x3" { 3 } else { 5 };
                self.dw_pw(prefix, input, channels, k, stride, 2)
            }
            other => match poly_kernels(other) {
                Some(kernels) => self.polynomial(prefix, input, channels, stride, kernels),
                None => unreachable!("operation {other:?} passed validation"),
            },
        })
    }

    /// The product of one tanh-bounded `dw_pw` branch per kernel size, plus
    /// the skip of the input (see the module docs).
    fn polynomial(
        &mut self,
        prefix: &str,
        input: &str,
        channels: usize,
        stride: usize,
        kernels: &[usize],
    ) -> String {
        let factors: Vec<String> = kernels
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let branch = format!("{prefix}.b{i}");
                let bn = self.dw_pw(&branch, input, channels, k, stride, 1);
                if self.complex {
                    return bn;
                }
                self.layer(&format!("{branch}.tanh"), &[&bn], Op::Tanh)
            })
            .collect();
        let product = match &factors[..] {
            [a, b] => self.layer(&format!("{prefix}.prod"), &[a, b], Op::Multiply),
            [a, b, c] => {
                let ab = self.layer(&format!("{prefix}.prod01"), &[a, b], Op::Multiply);
                self.layer(&format!("{prefix}.prod"), &[&ab, c], Op::Multiply)
            }
            _ => unreachable!("polynomial operations have two or three factors"),
        };
        let skip = if stride == 1 {
            input.to_string()
        } else {
            self.factorized_reduce(&format!("{prefix}.skip"), input, channels)
        };
        self.layer(&format!("{prefix}.sum"), &[&product, &skip], Op::Add)
    }

    /// ReLU, depthwise `k`x`k` (stride, dilation, padding keeping the size
    /// at stride 1), 1x1 to `channels`, batch norm.
    fn dw_pw(
        &mut self,
        prefix: &str,
        input: &str,
        channels: usize,
        k: usize,
        stride: usize,
        dilation: usize,
    ) -> String {
        let r = self.relu(&format!("{prefix}.relu"), input);
        let p = dilation * (k - 1) / 2;
        let depthwise = self.in_field(Op::DepthwiseConv2d {
            kernel: Pair([k, k]),
            stride: Pair([stride, stride]),
            padding: Padding::Explicit([[p, p], [p, p]]),
            dilation: Pair([dilation, dilation]),
            bias: false,
        });
        let d = self.layer(&format!("{prefix}.dw"), &[&r], depthwise);
        let c = self.pointwise(&format!("{prefix}.pw"), &d, channels, 1, 0);
        let affine = self.affine;
        self.batch_norm(&format!("{prefix}.bn"), &c, affine)
    }

    /// A node: the sum of its terms, the single term itself, or nothing.
    fn sum(&mut self, name: &str, terms: Vec<String>) -> Option<String> {
        match terms.len() {
            0 => None,
            1 => terms.into_iter().next(),
            _ => {
                let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
                Some(self.layer(name, &refs, Op::Add))
            }
        }
    }

    /// A cell's output: its nodes concatenated (the single node itself).
    fn concat(&mut self, name: &str, nodes: Vec<String>) -> String {
        if nodes.len() == 1 {
            return nodes.into_iter().next().expect("one node");
        }
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        self.layer(name, &refs, Op::Concat)
    }
}

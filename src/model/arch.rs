//! The architecture description: a network as a list of named layers, each
//! reading the outputs of earlier layers (the previous one unless it names
//! its `inputs`), so any DAG can be written down in topological order.
//! Shapes are not written: they follow from the input features.
//!
//! In TOML:
//!
//! ```toml
//! name = "tiny"
//! [[layers]]
//! op = "conv2d"
//! name = "conv1"
//! channels = 8
//! kernel = [3, 3]
//! padding = "same"
//! [[layers]]
//! op = "relu"
//! [[layers]]
//! op = "global_avg_pool"
//! [[layers]]
//! op = "dense"          # no `units`: one output per class
//! ```

use super::error::ModelError;
use crate::nn::Init;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;

/// The name that refers to the network's input in `inputs`.
pub const INPUT: &str = "input";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub name: String,
    /// How weights are drawn (`default` is PyTorch's).
    #[serde(default)]
    pub init: Init,
    pub layers: Vec<LayerSpec>,
}

/// One layer: its name, the layers it reads, and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// Unique; `layer<i>` when not given.
    pub name: Option<String>,
    /// Empty: the previous layer (the input for the first).
    pub inputs: Vec<String>,
    pub op: Op,
    /// A stochastic network's node: its output is kept or dropped per
    /// sample by a Bernoulli gate (`gate = true`; SANAS).
    pub gate: bool,
}

/// A size for both spatial axes, or `[time, freq]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub [usize; 2]);

/// Convolution padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// None.
    #[default]
    Valid,
    /// TensorFlow's "same": `ceil(size / stride)` outputs, an odd extra zero after.
    Same,
    /// `[[top, bottom], [left, right]]`.
    Explicit([[usize; 2]; 2]),
}

/// What a layer does, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Conv2d {
        channels: usize,
        kernel: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Padding,
        #[serde(default = "Pair::one")]
        dilation: Pair,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// One filter per input channel.
    DepthwiseConv2d {
        kernel: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Padding,
        #[serde(default = "Pair::one")]
        dilation: Pair,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Depthwise convolution then a 1x1 convolution to `channels`.
    SeparableConv2d {
        channels: usize,
        kernel: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Padding,
        #[serde(default = "Pair::one")]
        dilation: Pair,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Fully connected over the flattened sample; without `units`, one
    /// output per class.
    Dense {
        #[serde(default)]
        units: Option<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
    MaxPool2d {
        kernel: Pair,
        /// Defaults to the kernel.
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "Pair::zero")]
        padding: Pair,
    },
    AvgPool2d {
        kernel: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "Pair::zero")]
        padding: Pair,
        #[serde(default = "yes")]
        count_include_pad: bool,
    },
    /// Mean over time and frequency: `[c, t, f]` to `[c]`.
    GlobalAvgPool,
    BatchNorm {
        #[serde(default = "yes")]
        affine: bool,
        #[serde(default = "default_eps")]
        eps: f32,
        #[serde(default = "default_momentum")]
        momentum: f32,
    },
    Relu,
    Sigmoid,
    Tanh,
    Dropout {
        rate: f32,
    },
    Flatten,
    /// `[channels, time, freq]` to the sequence `[1, time, channels * freq]`,
    /// `[time, features]` to `[1, time, features]`.
    ToSequence,
    /// Over the time axis of `[1, time, freq]` or `[time, features]`.
    Lstm {
        hidden: usize,
        /// `last` (the last hidden state) or `sequence` (every step's).
        #[serde(default)]
        returns: LstmReturns,
    },
    /// Sum of two or more inputs of one shape.
    Add,
    /// Elementwise product of exactly two inputs of one shape.
    Multiply,
    /// `sum_i weights[i] * input_i` of inputs of one shape, one weight per
    /// input (an ensemble's combination of its replicas' logits).
    WeightedSum {
        weights: Vec<f32>,
    },
    /// Concatenation along the channel axis.
    Concat,
    /// Drops the first `start` [time, freq] positions of each channel.
    Crop {
        start: Pair,
    },
    /// Complex convolution on complex values (`[channels, time, freq, 2]`,
    /// from `kind = "stft"` features): complex weights and bias, settings
    /// as `conv2d`'s, channels counted in complex values.
    ComplexConv2d {
        channels: usize,
        kernel: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Padding,
        #[serde(default = "Pair::one")]
        dilation: Pair,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// One complex filter per complex input channel.
    ComplexDepthwiseConv2d {
        kernel: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Padding,
        #[serde(default = "Pair::one")]
        dilation: Pair,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Complex fully connected layer over the flattened complex sample to
    /// `units` complex outputs (one per class without `units`).
    ComplexDense {
        #[serde(default)]
        units: Option<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Complex batch normalisation (Trabelsi et al.): centre, whiten by the
    /// inverse square root of the 2x2 covariance of (re, im), then the
    /// affine `gamma` (2x2 symmetric) and `beta` (complex).
    ComplexBatchNorm {
        #[serde(default = "yes")]
        affine: bool,
        #[serde(default = "default_eps")]
        eps: f32,
        #[serde(default = "default_momentum")]
        momentum: f32,
    },
    /// ReLU on the real and the imaginary part.
    Crelu,
    /// `relu(|z| + b) z / |z|`, a trained real `b` per channel.
    Modrelu,
    /// `z` where `arg z` is in `[0, pi/2]`, else 0.
    Zrelu,
    /// `|z|`: complex values to real ones of the same logical shape.
    Magnitude,
    /// The real and imaginary parts as real channels: `[c, ..., 2]` to
    /// `[2c, ...]`.
    ReIm,
    /// The architecture weights of a supernet: a trained table `alpha` of
    /// `rows` x `candidates` (parameter group `arch`), handed to the `mixed`
    /// layers as `softmax` or `sigmoid` of each row. It reads `input` only
    /// to have a place in the graph; its output is one table for the whole
    /// batch, not one per sample.
    ArchWeights {
        rows: usize,
        candidates: usize,
        #[serde(default)]
        weighting: Weighting,
        /// Initial alpha: this times a standard normal draw (0: all zero).
        #[serde(default = "default_alpha_scale")]
        init_scale: f32,
        /// A loss on alpha added to the training loss (its gradient to
        /// alpha in every backward), e.g. FairDARTS's zero-one loss.
        #[serde(default)]
        regulariser: Option<Regularisation>,
        /// ForceDARTS: a gate `sigmoid(beta)` per row (edge) multiplying
        /// the row's weights, with the multi-hot loss on the gates.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gates: Option<EdgeGates>,
    },
    /// A mixed edge: its first input is an `arch_weights` layer, the others
    /// are candidate outputs of one shape; the result is the sum of each
    /// candidate times its weight `w[row, column]`, `columns` giving the
    /// column of each candidate in input order. A candidate that computes
    /// zero is simply not an input.
    Mixed {
        row: usize,
        columns: Vec<usize>,
    },
}

/// A loss on architecture weights: `weight` times the mean over the table
/// of the FairDARTS zero-one loss `-(sigmoid(alpha) - 0.5)^2`, or the mean
/// over rows of the purity of `softmax(row)` (`gini`: `sum p (1 - p)`;
/// `entropy`: `-sum p ln p / ln K`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regularisation {
    pub kind: RegulariserKind,
    pub weight: f32,
}

/// Edge gates of a DARTS cell's table: rows are the cell's edges, node-major
/// (node `i` has `i + 2` incoming edges, so `nodes` nodes have
/// `nodes (nodes + 3) / 2` rows). Beta starts at zero (every gate half
/// open); `purity` (`gini` or `entropy`) of the pair weights
/// `q_kl = b_k b_l / sum_{u != v} b_u b_v` of each node's incoming gates,
/// averaged over nodes, times `weight`, is added to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeGates {
    pub nodes: usize,
    pub purity: RegulariserKind,
    pub weight: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegulariserKind {
    ZeroOne,
    Gini,
    Entropy,
}

/// How architecture weights follow from alpha.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Over each row (DARTS, ForceDARTS).
    #[default]
    Softmax,
    /// Of each entry (FairDARTS).
    Sigmoid,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LstmReturns {
    #[default]
    Last,
    Sequence,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_eps() -> f32 {
    1e-5
}
fn default_momentum() -> f32 {
    0.1
}
fn default_alpha_scale() -> f32 {
    1e-3
}

impl Pair {
    fn one() -> Pair {
        Pair([1, 1])
    }
    fn zero() -> Pair {
        Pair([0, 0])
    }
}

impl Op {
    /// How many leading inputs are parameters rather than data (a `mixed`
    /// layer's architecture weights): a layer with none of its data inputs
    /// on does not run.
    pub fn parameter_inputs(&self) -> usize {
        match self {
            Op::Mixed { .. } => 1,
            _ => 0,
        }
    }

    /// The complex form of a convolution, batch norm or ReLU (the op
    /// itself for any other): what a complex search space builds.
    pub fn complex_twin(&self) -> Op {
        match *self {
            Op::Conv2d {
                channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => Op::ComplexConv2d {
                channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            },
            Op::DepthwiseConv2d {
                kernel,
                stride,
                padding,
                dilation,
                bias,
            } => Op::ComplexDepthwiseConv2d {
                kernel,
                stride,
                padding,
                dilation,
                bias,
            },
            Op::BatchNorm {
                affine,
                eps,
                momentum,
            } => Op::ComplexBatchNorm {
                affine,
                eps,
                momentum,
            },
            Op::Relu => Op::Crelu,
            ref other => other.clone(),
        }
    }

    /// The real op whose shapes and settings a complex one has (the
    /// inverse of `complex_twin`; ReLU for the complex activations).
    pub fn real_twin(&self) -> Op {
        match *self {
            Op::ComplexConv2d {
                channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => Op::Conv2d {
                channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            },
            Op::ComplexDepthwiseConv2d {
                kernel,
                stride,
                padding,
                dilation,
                bias,
            } => Op::DepthwiseConv2d {
                kernel,
                stride,
                padding,
                dilation,
                bias,
            },
            Op::ComplexDense { units, bias } => Op::Dense { units, bias },
            Op::ComplexBatchNorm {
                affine,
                eps,
                momentum,
            } => Op::BatchNorm {
                affine,
                eps,
                momentum,
            },
            Op::Crelu | Op::Modrelu | Op::Zrelu => Op::Relu,
            ref other => other.clone(),
        }
    }

    /// The `op` name as written in a description.
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map
                .get("op")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string(),
            _ => "?".into(),
        }
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0[0] == self.0[1] {
            self.0[0].serialize(s)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(usize),
            Two([usize; 2]),
        }
        match Form::deserialize(d) {
            Ok(Form::One(v)) => Ok(Pair([v, v])),
            Ok(Form::Two(v)) => Ok(Pair(v)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a size or [time, freq] sizes (non-negative integers)",
            )),
        }
    }
}

impl Serialize for Padding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Padding::Valid => "valid".serialize(s),
            Padding::Same => "same".serialize(s),
            Padding::Explicit(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            One(usize),
            Two([usize; 2]),
            Four([[usize; 2]; 2]),
        }
        let bad = || {
            serde::de::Error::custom(
                "padding must be \"same\", \"valid\", a size, [time, freq] or [[top, bottom], [left, right]]",
            )
        };
        match Form::deserialize(d).map_err(|_| bad())? {
            Form::Word(w) if w == "same" => Ok(Padding::Same),
            Form::Word(w) if w == "valid" => Ok(Padding::Valid),
            Form::Word(_) => Err(bad()),
            Form::One(v) => Ok(Padding::Explicit([[v, v], [v, v]])),
            Form::Two([h, w]) => Ok(Padding::Explicit([[h, h], [w, w]])),
            Form::Four(p) => Ok(Padding::Explicit(p)),
        }
    }
}

impl Serialize for LayerSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = match serde_json::to_value(&self.op) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(serde::ser::Error::custom("an op serialises to a table")),
        };
        // Unset optional settings are left out (TOML has no null).
        map.retain(|_, v| !v.is_null());
        let mut out = serde_json::Map::new();
        out.insert("op".into(), map.remove("op").unwrap_or_default());
        if let Some(name) = &self.name {
            out.insert("name".into(), name.clone().into());
        }
        if self.gate {
            out.insert("gate".into(), true.into());
        }
        if !self.inputs.is_empty() {
            out.insert("inputs".into(), self.inputs.clone().into());
        }
        out.extend(map);
        out.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            None => None,
            Some(serde_json::Value::String(n)) => Some(n),
            Some(_) => return Err(D::Error::custom("`name` must be a string")),
        };
        let inputs = match map.remove("inputs") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v)
                .map_err(|_| D::Error::custom("`inputs` must be a list of layer names"))?,
        };
        let label = name.as_deref().map_or(String::new(), |n| format!(" ({n})"));
        let gate = match map.remove("gate") {
            None => false,
            Some(serde_json::Value::Bool(g)) => g,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "layer{label}: `gate` must be true or false"
                )))
            }
        };
        if !map.contains_key("op") {
            return Err(D::Error::custom(format!(
                "layer{label} has no `op`; ops: {}",
                Architecture::OPS.join(", ")
            )));
        }
        // A JSON value cannot hold NaN or infinity: they arrive as null.
        let holds_null = |v: &serde_json::Value| {
            v.is_null() || v.as_array().is_some_and(|a| a.iter().any(|x| x.is_null()))
        };
        if let Some(key) = map.iter().find(|(_, v)| holds_null(v)).map(|(k, _)| k) {
            return Err(D::Error::custom(format!(
                "layer{label}: `{key}` must be a finite number (NaN and infinity are not)"
            )));
        }
        let op = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("layer{label}: {e}")))?;
        Ok(LayerSpec {
            name,
            inputs,
            op,
            gate,
        })
    }
}

impl Architecture {
    /// Every `op` a layer may have.
    pub const OPS: [&'static str; 22] = [
        "conv2d",
        "depthwise_conv2d",
        "separable_conv2d",
        "dense",
        "max_pool2d",
        "avg_pool2d",
        "global_avg_pool",
        "batch_norm",
        "relu",
        "sigmoid",
        "tanh",
        "dropout",
        "flatten",
        "to_sequence",
        "lstm",
        "add",
        "multiply",
        "weighted_sum",
        "concat",
        "crop",
        "arch_weights",
        "mixed",
    ];

    /// Reads a description from a `.json` or `.toml` file.
    pub fn load(path: &Path) -> Result<Architecture, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses JSON when `path` ends in `.json`, TOML otherwise.
    pub fn parse(text: &str, path: &Path) -> Result<Architecture, ModelError> {
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        };
        parsed.map_err(|reason| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an architecture serialises")
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an architecture serialises")
    }

    /// The name of layer `i` (given, or `layer<i>`).
    pub fn layer_name(&self, i: usize) -> String {
        self.layers[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("layer{i}"))
    }
}

//! The block registry of Model Search: a tower is a list of block names,
//! and each block turns into plain architecture layers, so a tower is
//! trained, costed and inherited like any description.
//!
//! A tower has four phases, in this order: convolutional blocks on the
//! `[channels, time, freq]` map, sequence blocks over time on `[1, time,
//! features]` (the map turned into a sequence first, each step holding
//! every channel's frequencies), exactly one flattening block, then dense
//! blocks on the flat vector; the head (one output per class) follows.
//! `fix_order` puts any list in that order, as the reference's
//! `fix_architecture_order` does.
//!
//! Every layer of block `i` is named `b<i>.<kind>.<signature>.<part>`, the
//! signature hashing the kinds of blocks `0..=i`: a child shares names, and
//! so weights, with exactly its parent's unchanged prefix.
//!
//! "Same channels" blocks keep the channel count of their input but never
//! go below `min_channels` (the features have one channel, and a
//! one-channel convolution learns next to nothing).

use crate::model::arch::{LayerSpec, Op, Padding, Pair, INPUT};
use crate::model::Architecture;
use crate::nn::Init;

/// Where a block may stand in a tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Convolutional,
    Sequence,
    Flatten,
    Dense,
}

/// Every block name, with its phase.
pub const BLOCKS: &[(&str, Phase)] = &[
    ("conv_3x3", Phase::Convolutional),
    ("conv_5x5", Phase::Convolutional),
    ("conv_1x3", Phase::Convolutional),
    ("conv_3x1", Phase::Convolutional),
    ("conv_1x5", Phase::Convolutional),
    ("conv_5x1", Phase::Convolutional),
    ("conv_7x1", Phase::Convolutional),
    ("fixed_conv_16", Phase::Convolutional),
    ("fixed_conv_32", Phase::Convolutional),
    ("fixed_conv_64", Phase::Convolutional),
    ("increase_channels_3x3", Phase::Convolutional),
    ("downsample_3x3", Phase::Convolutional),
    ("downsample_10x4", Phase::Convolutional),
    ("dilated_2", Phase::Convolutional),
    ("dilated_4", Phase::Convolutional),
    ("resnet_3x3", Phase::Convolutional),
    ("separable_3x3", Phase::Convolutional),
    ("avg_pool_2x2", Phase::Convolutional),
    ("max_pool_2x2", Phase::Convolutional),
    ("lstm_64", Phase::Sequence),
    ("lstm_128", Phase::Sequence),
    ("skip_lstm_64", Phase::Sequence),
    ("conv1d_3", Phase::Sequence),
    ("conv1d_5", Phase::Sequence),
    ("svdf_64_4_1", Phase::Sequence),
    ("svdf_128_4_1", Phase::Sequence),
    ("svdf_64_8_1", Phase::Sequence),
    ("flatten", Phase::Flatten),
    ("global_avg_pool", Phase::Flatten),
    ("dense_64", Phase::Dense),
    ("dense_128", Phase::Dense),
    ("dense_256", Phase::Dense),
    ("dense_residual", Phase::Dense),
];

/// The flattening block a tower gets when it names none (the reference's
/// plate reduction).
pub const DEFAULT_FLATTEN: &str = "global_avg_pool";

/// The phase of block `name`, or an error listing the known blocks.
pub fn phase(name: &str) -> Result<Phase, String> {
    BLOCKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            let names: Vec<&str> = BLOCKS.iter().map(|(n, _)| *n).collect();
            format!("unknown block {name:?}; choose from {}", names.join(", "))
        })
}

/// Convolutional blocks first (in their order), then the first flattening
/// block (the default one when there is none), then dense blocks.
pub fn fix_order(tower: &[String]) -> Result<Vec<String>, String> {
    let mut phased = Vec::with_capacity(tower.len() + 1);
    for name in tower {
        phased.push((phase(name)?, name.clone()));
    }
    let flatten = phased
        .iter()
        .find(|(p, _)| *p == Phase::Flatten)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| DEFAULT_FLATTEN.to_string());
    let of = |phase: Phase| phased.iter().filter(move |(p, _)| *p == phase);
    let mut fixed: Vec<String> = of(Phase::Convolutional)
        .chain(of(Phase::Sequence))
        .map(|(_, n)| n.clone())
        .collect();
    fixed.push(flatten);
    fixed.extend(of(Phase::Dense).map(|(_, n)| n.clone()));
    Ok(fixed)
}

/// How towers are built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TowerSettings {
    /// The fewest channels of a "same channels" block.
    pub min_channels: usize,
    /// Batch norm after every convolution (and no convolution bias).
    pub batch_norm: bool,
}

/// 32-bit FNV-1a of the kinds of a tower prefix, as 8 hex digits.
fn signature(prefix: &[String]) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in prefix.join(",").bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// What flows between blocks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flow {
    Map([usize; 3]),
    /// `[1, time, features]`.
    Sequence {
        time: usize,
        features: usize,
    },
    Flat(usize),
}

/// The channels of the per-step layers of sequence blocks.
const SEQUENCE_CHANNELS: usize = 64;

/// Collects the layers of a tower, tracking the shape of the last output.
struct TowerBuilder {
    layers: Vec<LayerSpec>,
    last: String,
    flow: Flow,
    settings: TowerSettings,
}

impl TowerBuilder {
    fn new(input_shape: [usize; 3], settings: TowerSettings) -> TowerBuilder {
        TowerBuilder {
            layers: Vec::new(),
            last: INPUT.to_string(),
            flow: Flow::Map(input_shape),
            settings,
        }
    }

    fn push(&mut self, name: String, inputs: Vec<String>, op: Op) {
        self.layers.push(LayerSpec {
            name: Some(name.clone()),
            inputs,
            op,
            gate: false,
        });
        self.last = name;
    }

    fn then(&mut self, name: String, op: Op) {
        let input = self.last.clone();
        self.push(name, vec![input], op);
    }

    fn map(&self) -> [usize; 3] {
        match self.flow {
            Flow::Map(shape) => shape,
            _ => unreachable!("fix_order puts convolutional blocks first"),
        }
    }

    /// The sequence `[1, time, features]`, turning a map into one first.
    fn sequence(&mut self, prefix: &str) -> (usize, usize) {
        match self.flow {
            Flow::Sequence { time, features } => (time, features),
            Flow::Map([c, t, f]) => {
                self.then(format!("{prefix}.to_sequence"), Op::ToSequence);
                self.flow = Flow::Sequence {
                    time: t,
                    features: c * f,
                };
                (t, c * f)
            }
            Flow::Flat(_) => unreachable!("fix_order puts sequence blocks before flattening"),
        }
    }

    /// A per-step convolution over `kernel` steps (each output step sees
    /// the steps up to `kernel - 1` back when `causal`, else centred) from
    /// the sequence to `channels` features per step, as a `[channels, time,
    /// 1]` map; batch norm and ReLU as the map convolutions.
    fn conv_over_time(
        &mut self,
        prefix: &str,
        channels: usize,
        kernel: usize,
        causal: bool,
        activate: bool,
    ) {
        let (time, features) = self.sequence(prefix);
        let before = if causal { kernel - 1 } else { (kernel - 1) / 2 };
        let bn = self.settings.batch_norm && activate;
        self.then(
            format!("{prefix}.conv"),
            Op::Conv2d {
                channels,
                kernel: Pair([kernel, features]),
                stride: Pair([1, 1]),
                padding: Padding::Explicit([[before, kernel - 1 - before], [0, 0]]),
                dilation: Pair([1, 1]),
                groups: 1,
                bias: !bn,
            },
        );
        self.flow = Flow::Map([channels, time, 1]);
        if bn {
            self.batch_norm(prefix);
        }
        if activate {
            self.then(format!("{prefix}.relu"), Op::Relu);
        }
    }

    /// Back to `[1, time, features]` after per-step layers.
    fn steps(&mut self, prefix: &str) {
        let (time, features) = match self.flow {
            Flow::Map([c, t, 1]) => (t, c),
            Flow::Sequence { time, features } => (time, features),
            other => unreachable!("a per-step result, not {other:?}"),
        };
        self.then(format!("{prefix}.steps"), Op::ToSequence);
        self.flow = Flow::Sequence { time, features };
    }

    fn lstm(&mut self, prefix: &str, hidden: usize) {
        let (time, _) = self.sequence(prefix);
        self.then(
            format!("{prefix}.lstm"),
            Op::Lstm {
                hidden,
                returns: crate::model::arch::LstmReturns::Sequence,
            },
        );
        self.flow = Flow::Sequence {
            time,
            features: hidden,
        };
        // The LSTM returns `[time, hidden]`; the next block reads `[1, time, hidden]`.
        self.steps(prefix);
    }

    /// An LSTM whose output is added to its input (projected per step when
    /// the widths differ).
    fn skip_lstm(&mut self, prefix: &str, hidden: usize) {
        let (_, features) = self.sequence(prefix);
        let (input, input_flow) = (self.last.clone(), self.flow);
        self.lstm(prefix, hidden);
        let body = self.last.clone();
        let shortcut = if features == hidden {
            input
        } else {
            (self.last, self.flow) = (input, input_flow);
            self.conv_over_time(&format!("{prefix}.project"), hidden, 1, false, false);
            self.steps(&format!("{prefix}.project"));
            self.last.clone()
        };
        self.push(format!("{prefix}.add"), vec![body, shortcut], Op::Add);
    }

    /// The keyword-spotting SVDF: a per-step projection to `rank * units`,
    /// a depthwise filter over the last `memory` steps, each unit's `rank`
    /// filters summed (a grouped 1x1 convolution), bias, ReLU.
    fn svdf(&mut self, prefix: &str, units: usize, memory: usize, rank: usize) {
        self.conv_over_time(&format!("{prefix}.project"), units * rank, 1, false, false);
        let [_, t, _] = self.map();
        self.then(
            format!("{prefix}.memory"),
            Op::DepthwiseConv2d {
                kernel: Pair([memory, 1]),
                stride: Pair([1, 1]),
                padding: Padding::Explicit([[memory - 1, 0], [0, 0]]),
                dilation: Pair([1, 1]),
                bias: false,
            },
        );
        self.then(
            format!("{prefix}.rank_sum"),
            Op::Conv2d {
                channels: units,
                kernel: Pair([1, 1]),
                stride: Pair([1, 1]),
                padding: Padding::Valid,
                dilation: Pair([1, 1]),
                groups: units,
                bias: true,
            },
        );
        self.flow = Flow::Map([units, t, 1]);
        self.then(format!("{prefix}.relu"), Op::Relu);
        self.steps(prefix);
    }

    fn same_channels(&self) -> usize {
        self.map()[0].max(self.settings.min_channels)
    }

    /// Convolution ("same" padding), batch norm if set, ReLU.
    fn conv(
        &mut self,
        prefix: &str,
        channels: usize,
        kernel: [usize; 2],
        stride: usize,
        dilation: usize,
    ) {
        self.conv_unactivated(prefix, channels, kernel, stride, dilation);
        self.then(format!("{prefix}.relu"), Op::Relu);
    }

    /// Convolution and batch norm, no activation.
    fn conv_unactivated(
        &mut self,
        prefix: &str,
        channels: usize,
        kernel: [usize; 2],
        stride: usize,
        dilation: usize,
    ) {
        let [_, t, f] = self.map();
        let bn = self.settings.batch_norm;
        self.then(
            format!("{prefix}.conv"),
            Op::Conv2d {
                channels,
                kernel: Pair(kernel),
                stride: Pair([stride, stride]),
                padding: Padding::Same,
                dilation: Pair([dilation, dilation]),
                groups: 1,
                bias: !bn,
            },
        );
        self.flow = Flow::Map([channels, t.div_ceil(stride), f.div_ceil(stride)]);
        if bn {
            self.batch_norm(prefix);
        }
    }

    fn batch_norm(&mut self, prefix: &str) {
        self.then(
            format!("{prefix}.bn"),
            Op::BatchNorm {
                affine: true,
                eps: 1e-5,
                momentum: 0.1,
            },
        );
    }

    fn pool(&mut self, prefix: &str, max: bool) {
        let [c, t, f] = self.map();
        if t < 2 || f < 2 {
            return; // too small to pool: the block is skipped
        }
        let (kernel, stride) = (Pair([2, 2]), Some(Pair([2, 2])));
        let padding = Pair([0, 0]);
        let op = if max {
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
            }
        } else {
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad: true,
            }
        };
        self.then(format!("{prefix}.pool"), op);
        self.flow = Flow::Map([c, t / 2, f / 2]);
    }

    /// Two convolutions and the block's input (projected by a 1x1
    /// convolution when its channels differ) added before the last ReLU.
    fn resnet(&mut self, prefix: &str) {
        let input = self.last.clone();
        let input_channels = self.map()[0];
        let channels = self.same_channels();
        self.conv(&format!("{prefix}.a"), channels, [3, 3], 1, 1);
        self.conv_unactivated(&format!("{prefix}.b"), channels, [3, 3], 1, 1);
        let body = self.last.clone();
        let shortcut = if input_channels == channels {
            input
        } else {
            let name = format!("{prefix}.project");
            self.push(
                name.clone(),
                vec![input],
                Op::Conv2d {
                    channels,
                    kernel: Pair([1, 1]),
                    stride: Pair([1, 1]),
                    padding: Padding::Valid,
                    dilation: Pair([1, 1]),
                    groups: 1,
                    bias: false,
                },
            );
            name
        };
        self.push(format!("{prefix}.add"), vec![body, shortcut], Op::Add);
        self.then(format!("{prefix}.relu"), Op::Relu);
    }

    /// DS-CNN's block: depthwise 3x3, batch norm, ReLU, pointwise, batch norm, ReLU.
    fn separable(&mut self, prefix: &str) {
        let [c, t, f] = self.map();
        let channels = self.same_channels();
        self.then(
            format!("{prefix}.depthwise"),
            Op::DepthwiseConv2d {
                kernel: Pair([3, 3]),
                stride: Pair([1, 1]),
                padding: Padding::Same,
                dilation: Pair([1, 1]),
                bias: false,
            },
        );
        self.flow = Flow::Map([c, t, f]);
        self.batch_norm(&format!("{prefix}.dw"));
        self.then(format!("{prefix}.dw.relu"), Op::Relu);
        self.conv(&format!("{prefix}.pw"), channels, [1, 1], 1, 1);
    }

    fn dense(&mut self, prefix: &str, units: usize) {
        self.then(
            format!("{prefix}.dense"),
            Op::Dense {
                units: Some(units),
                bias: true,
            },
        );
        self.then(format!("{prefix}.relu"), Op::Relu);
        self.flow = Flow::Flat(units);
    }

    /// A dense layer of the input's width (at most 128) whose output is
    /// added to the input (projected when the widths differ).
    fn dense_residual(&mut self, prefix: &str) {
        let input = self.last.clone();
        let width = match self.flow {
            Flow::Flat(n) => n,
            _ => unreachable!("dense blocks follow the flattening block"),
        };
        let units = width.min(128);
        self.dense(prefix, units);
        let body = self.last.clone();
        let shortcut = if units == width {
            input
        } else {
            let name = format!("{prefix}.project");
            let op = Op::Dense {
                units: Some(units),
                bias: false,
            };
            self.push(name.clone(), vec![input], op);
            name
        };
        self.push(format!("{prefix}.add"), vec![body, shortcut], Op::Add);
    }

    fn block(&mut self, prefix: &str, kind: &str) {
        match kind {
            "conv_3x3" => self.conv(prefix, self.same_channels(), [3, 3], 1, 1),
            "conv_5x5" => self.conv(prefix, self.same_channels(), [5, 5], 1, 1),
            "conv_1x3" => self.conv(prefix, self.same_channels(), [1, 3], 1, 1),
            "conv_3x1" => self.conv(prefix, self.same_channels(), [3, 1], 1, 1),
            "conv_1x5" => self.conv(prefix, self.same_channels(), [1, 5], 1, 1),
            "conv_5x1" => self.conv(prefix, self.same_channels(), [5, 1], 1, 1),
            "conv_7x1" => self.conv(prefix, self.same_channels(), [7, 1], 1, 1),
            "fixed_conv_16" => self.conv(prefix, 16, [3, 3], 1, 1),
            "fixed_conv_32" => self.conv(prefix, 32, [3, 3], 1, 1),
            "fixed_conv_64" => self.conv(prefix, 64, [3, 3], 1, 1),
            "increase_channels_3x3" => self.conv(prefix, 2 * self.same_channels(), [3, 3], 1, 1),
            "downsample_3x3" => self.conv(prefix, 2 * self.same_channels(), [3, 3], 2, 1),
            // Hello Edge's DS-CNN stem: 10 frames by 4 coefficients.
            "downsample_10x4" => self.conv(prefix, 2 * self.same_channels(), [10, 4], 2, 1),
            "dilated_2" => self.conv(prefix, self.same_channels(), [3, 3], 1, 2),
            "dilated_4" => self.conv(prefix, self.same_channels(), [3, 3], 1, 4),
            "resnet_3x3" => self.resnet(prefix),
            "separable_3x3" => self.separable(prefix),
            "avg_pool_2x2" => self.pool(prefix, false),
            "max_pool_2x2" => self.pool(prefix, true),
            "lstm_64" => self.lstm(prefix, 64),
            "lstm_128" => self.lstm(prefix, 128),
            "skip_lstm_64" => self.skip_lstm(prefix, 64),
            "conv1d_3" | "conv1d_5" => {
                let kernel = if kind == "conv1d_3" { 3 } else { 5 };
                self.conv_over_time(prefix, SEQUENCE_CHANNELS, kernel, false, true);
                self.steps(prefix);
            }
            "svdf_64_4_1" => self.svdf(prefix, 64, 4, 1),
            "svdf_128_4_1" => self.svdf(prefix, 128, 4, 1),
            "svdf_64_8_1" => self.svdf(prefix, 64, 8, 1),
            "flatten" => {
                let size = match self.flow {
                    Flow::Map([c, t, f]) => c * t * f,
                    Flow::Sequence { time, features } => time * features,
                    Flow::Flat(n) => n,
                };
                self.then(format!("{prefix}.flatten"), Op::Flatten);
                self.flow = Flow::Flat(size);
            }
            "global_avg_pool" => match self.flow {
                Flow::Sequence { time, features } => {
                    // The mean over time of each feature.
                    let op = Op::AvgPool2d {
                        kernel: Pair([time, 1]),
                        stride: None,
                        padding: Pair([0, 0]),
                        count_include_pad: true,
                    };
                    self.then(format!("{prefix}.pool"), op);
                    self.then(format!("{prefix}.flatten"), Op::Flatten);
                    self.flow = Flow::Flat(features);
                }
                _ => {
                    let [c, _, _] = self.map();
                    self.then(format!("{prefix}.pool"), Op::GlobalAvgPool);
                    self.flow = Flow::Flat(c);
                }
            },
            "dense_64" => self.dense(prefix, 64),
            "dense_128" => self.dense(prefix, 128),
            "dense_256" => self.dense(prefix, 256),
            "dense_residual" => self.dense_residual(prefix),
            other => unreachable!("block {other:?} passed fix_order"),
        }
    }
}

/// The architecture of `tower` (put in order first) on inputs of
/// `input_shape` (`[channels, time, freq]`), ending in a dense head with
/// one output per class.
pub fn tower_architecture(
    name: &str,
    tower: &[String],
    input_shape: [usize; 3],
    settings: TowerSettings,
) -> Result<Architecture, String> {
    let tower = fix_order(tower)?;
    let mut builder = TowerBuilder::new(input_shape, settings);
    for (i, kind) in tower.iter().enumerate() {
        let prefix = format!("b{i}.{kind}.{}", signature(&tower[..=i]));
        builder.block(&prefix, kind);
    }
    builder.then(
        format!("head.{}", signature(&tower)),
        Op::Dense {
            units: None,
            bias: true,
        },
    );
    // The initialisation every hand-designed network here trains with, so
    // that a found tower and its baseline are trained the same way.
    Ok(Architecture {
        name: name.to_string(),
        init: Init::Default,
        layers: builder.layers,
    })
}

/// `tower` in order without the blocks that add no layer on these inputs
/// (a pooling block on a map under 2 in either axis): the tower that
/// actually runs, so that two towers that differ only there count as one.
pub fn effective_tower(
    tower: &[String],
    input_shape: [usize; 3],
    settings: TowerSettings,
) -> Result<Vec<String>, String> {
    let tower = fix_order(tower)?;
    let mut builder = TowerBuilder::new(input_shape, settings);
    let mut kept = Vec::with_capacity(tower.len());
    for (i, kind) in tower.iter().enumerate() {
        let before = builder.layers.len();
        builder.block(&format!("b{i}"), kind);
        if builder.layers.len() > before {
            kept.push(kind.clone());
        }
    }
    Ok(kept)
}

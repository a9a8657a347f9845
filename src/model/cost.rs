//! The cost model of an architecture, from its description alone (no GPU):
//! per layer its output shape, trained parameters, multiply-accumulates and
//! other element operations, and their totals per clip and per second of
//! audio; and latency measured on the adapter, for `--measure`. Complex
//! layers count real work: a complex multiply-accumulate is 4 real ones and
//! a complex parameter 2 real numbers (see `field_work`).
//!
//! Multiply-accumulates are counted as the reference scripts count them:
//! a convolution `output elements x (in_channels / groups) x kernel area`,
//! a dense layer `outputs x inputs`, an LSTM `time x 4 hidden x (inputs +
//! hidden)`. Everything else is an other op (see `OtherOps`). Parameters
//! are exactly those `Network::build` creates.

use super::arch::{Architecture, LstmReturns, Op, RegulariserKind};
use super::error::ModelError;
use super::mask::{Activity, Source};
use super::network::Network;
use super::shapes::{
    conv_of, lstm_steps, pair_stride, pool_spec, separable_geometries, single, spatial,
};
use crate::gpu::{Gpu, GpuResult};
use crate::nn::{ConvGeometry, Pass};
use crate::util::saturating_product;
use serde::Serialize;
use std::ops::AddAssign;
use std::time::{Duration, Instant};

/// Element operations of one sample's forward pass besides the
/// multiply-accumulates, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OtherOps {
    /// Max and average pooling: one comparison or addition per window cell
    /// (output elements x window area); global average pooling: one
    /// addition per input element.
    pub pooling: u64,
    /// Batch normalisation: one scale-and-shift per element.
    pub batch_norm: u64,
    /// ReLU, sigmoid, tanh: one per element; an LSTM: its four gates and the
    /// tanh of its cell, `5 x hidden` per step.
    pub activation: u64,
    /// Additions outside the multiply-accumulates: biases (one per output),
    /// an `add` layer (one per element per input after the first), an LSTM's
    /// bias and cell update (`5 x hidden` per step).
    pub addition: u64,
    /// Elementwise products: an LSTM's gating (`3 x hidden` per step), a
    /// `multiply` layer (one per element; a switched-off input reads zeros
    /// and still counts).
    pub product: u64,
}

/// One layer's cost per sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub op: String,
    /// Whether the layer runs; one that does not counts zero.
    pub runs: bool,
    /// Output shape of one sample (a complex one ends in its pair axis).
    pub output: Vec<usize>,
    /// Whether it computes on real or complex values (its data inputs').
    pub field: Field,
    pub params: u64,
    pub macs: u64,
    pub other: OtherOps,
}

/// The cost of an architecture on clips of one input shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    pub layers: Vec<LayerCost>,
    /// Trained parameters.
    pub params: u64,
    /// Multiply-accumulates of one inference (one clip).
    pub macs: u64,
    /// Multiply-accumulates per second of audio when a clip is `clip_ms`
    /// long and classified once.
    pub macs_per_second: f64,
    pub other: OtherOps,
}

/// What one layer computes per sample.
#[derive(Default)]
struct Work {
    params: u64,
    macs: u64,
    other: OtherOps,
}

impl Cost {
    /// Costs `arch` on samples of `input_shape` (`[channels, time, freq]`)
    /// with `classes` outputs, counting only what runs under `activity`
    /// (everything when `None`): a running layer counts in full, except that
    /// an `add` adds only the inputs it reads. Refuses what `Network::build`
    /// refuses, naming the layer.
    pub fn of(
        arch: &Architecture,
        input_shape: &[usize],
        classes: usize,
        clip_ms: f64,
        activity: Option<&Activity>,
    ) -> Result<Cost, ModelError> {
        if arch.layers.is_empty() {
            return Err(arch.build_error("-", "has no layers"));
        }
        if arch.layers[arch.layers.len() - 1].gate {
            return Err(arch.build_error(
                &arch.layer_name(arch.layers.len() - 1),
                "the last layer gives the logits and cannot be gated (`gate = true`)",
            ));
        }
        let sources = arch.sources()?;
        let full = Activity::full(&sources);
        let activity = activity.unwrap_or(&full);
        if activity.runs.len() != sources.len() {
            return Err(arch.build_error(
                "-",
                &format!(
                    "the activity is for {} layers, the architecture has {}",
                    activity.runs.len(),
                    sources.len()
                ),
            ));
        }
        let mut layers: Vec<LayerCost> = Vec::with_capacity(sources.len());
        let mut read = vec![false; sources.len()];
        let fields = layer_fields(arch, Field::of_features(input_shape))?;
        for (i, ((spec, inputs), &field)) in
            arch.layers.iter().zip(&sources).zip(&fields).enumerate()
        {
            let name = arch.layer_name(i);
            let in_shapes: Vec<Vec<usize>> = inputs
                .iter()
                .map(|s| match s {
                    Source::Input => input_shape.to_vec(),
                    Source::Layer(j) => {
                        read[*j] = true;
                        layers[*j].output.clone()
                    }
                })
                .collect();
            let runs = activity.runs[i];
            let inputs_read = activity.reads[i].iter().filter(|&&r| r).count();
            let (output, work) = field_work(&spec.op, &in_shapes, field, inputs_read, classes)
                .map_err(|reason| {
                    arch.build_error(
                        &name,
                        &format!("{} on input {in_shapes:?}: {reason}", spec.op.name()),
                    )
                })?;
            match saturating_product(&output) {
                0 => {
                    return Err(arch.build_error(&name, &format!("its output {output:?} is empty")))
                }
                n if n >= i32::MAX as usize => {
                    return Err(arch.build_error(
                        &name,
                        &format!("its output {output:?} has 2^31 values or more per clip, past what a tensor may hold; make the layer smaller"),
                    ))
                }
                _ => {}
            }
            let work = if runs { work } else { Work::default() };
            layers.push(LayerCost {
                name,
                op: spec.op.name(),
                runs,
                output,
                field,
                params: work.params,
                macs: work.macs,
                other: work.other,
            });
        }
        let last = &layers[layers.len() - 1];
        if let Some(j) = (0..layers.len() - 1).find(|&j| !read[j]) {
            return Err(arch.build_error(
                &layers[j].name,
                "its output is never read; every layer but the last must feed another",
            ));
        }
        if last.output != [classes] {
            return Err(arch.build_error(
                &last.name,
                &format!(
                    "the last layer gives {:?} per sample, but there are {classes} classes (end with a `dense` layer without `units`)",
                    last.output
                ),
            ));
        }
        let macs = layers.iter().fold(0u64, |n, l| n.saturating_add(l.macs));
        let mut other = OtherOps::default();
        for layer in &layers {
            other += layer.other;
        }
        Ok(Cost {
            params: layers.iter().fold(0u64, |n, l| n.saturating_add(l.params)),
            macs,
            macs_per_second: macs as f64 * 1000.0 / clip_ms.max(f64::MIN_POSITIVE),
            other,
            layers,
        })
    }
}

impl AddAssign for OtherOps {
    fn add_assign(&mut self, o: OtherOps) {
        self.pooling = self.pooling.saturating_add(o.pooling);
        self.batch_norm = self.batch_norm.saturating_add(o.batch_norm);
        self.activation = self.activation.saturating_add(o.activation);
        self.addition = self.addition.saturating_add(o.addition);
        self.product = self.product.saturating_add(o.product);
    }
}

impl AddAssign for Work {
    fn add_assign(&mut self, w: Work) {
        self.params = self.params.saturating_add(w.params);
        self.macs = self.macs.saturating_add(w.macs);
        self.other += w.other;
    }
}

/// Whether values are real or complex `(re, im)` pairs. A complex
/// per-sample shape ends in its pair axis: the complex STFT features are
/// `[channels, time, freq, 2]`, every other feature `[channels, time, freq]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    #[default]
    Real,
    Complex,
}

impl Field {
    /// The field of features of per-sample `shape`.
    pub fn of_features(shape: &[usize]) -> Field {
        match shape {
            [_, _, _, 2] => Field::Complex,
            _ => Field::Real,
        }
    }
}

/// Which values an op takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Real,
    /// Complex, giving complex.
    Complex,
    /// Complex, giving real (`magnitude`, `re_im`).
    ComplexToReal,
    /// Either, giving the same (pooling, flatten, merges).
    Either,
    /// Reads its input only to have a place in the graph (`arch_weights`).
    Nothing,
}

fn takes(op: &Op) -> Takes {
    match op {
        Op::ComplexConv2d { .. }
        | Op::ComplexDepthwiseConv2d { .. }
        | Op::ComplexDense { .. }
        | Op::ComplexBatchNorm { .. }
        | Op::Crelu
        | Op::Modrelu
        | Op::Zrelu => Takes::Complex,
        Op::Magnitude | Op::ReIm => Takes::ComplexToReal,
        Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::GlobalAvgPool
        | Op::Flatten
        | Op::Add
        | Op::Multiply
        | Op::WeightedSum { .. }
        | Op::Concat
        | Op::Crop { .. }
        | Op::Mixed { .. } => Takes::Either,
        Op::ArchWeights { .. } => Takes::Nothing,
        _ => Takes::Real,
    }
}

/// The field of the values a layer computes on (its data inputs, past any
/// parameter inputs), refusing inputs of both fields and an op fed the
/// field it does not take.
fn data_field(op: &Op, sources: &[Source], fields: &[Field]) -> Result<Field, String> {
    if takes(op) == Takes::Nothing {
        return Ok(Field::Real);
    }
    let skip = op.parameter_inputs().min(fields.len());
    let data = &fields[skip..];
    let field = data.first().copied().unwrap_or(Field::Real);
    if data.iter().any(|&f| f != field) {
        return Err("its inputs mix real and complex values".into());
    }
    let from_features = matches!(sources.get(skip), Some(Source::Input));
    match (takes(op), field) {
        (Takes::Real, Field::Complex) => Err(format!(
            "is a real op but {}; use its complex form, or turn the values real first with `magnitude` or `re_im`",
            match from_features {
                true => "the features are complex (the STFT of a `kind = \"stft\"` feature config)",
                false => "its input is complex",
            }
        )),
        (Takes::Complex | Takes::ComplexToReal, Field::Real) => Err(format!(
            "is a complex op but {}; complex layers need the complex STFT (a feature config with `kind = \"stft\"`)",
            match from_features {
                true => "the features are real",
                false => "its input is real",
            }
        )),
        _ => Ok(field),
    }
}

/// The field of what an op gives on values of `field`.
fn output_field(op: &Op, field: Field) -> Field {
    match takes(op) {
        Takes::Complex | Takes::Either => field,
        _ => Field::Real,
    }
}

/// The field each layer of `arch` computes on when the features are of
/// `input` (known before any shape is), refusing the first layer fed a
/// field it does not take, by name.
pub fn layer_fields(arch: &Architecture, input: Field) -> Result<Vec<Field>, ModelError> {
    let sources = arch.sources()?;
    let mut computes_on: Vec<Field> = Vec::with_capacity(sources.len());
    let mut outputs: Vec<Field> = Vec::with_capacity(sources.len());
    for (i, (spec, inputs)) in arch.layers.iter().zip(&sources).enumerate() {
        let in_fields: Vec<Field> = inputs
            .iter()
            .map(|s| match s {
                Source::Input => input,
                Source::Layer(j) => outputs[*j],
            })
            .collect();
        let field = data_field(&spec.op, inputs, &in_fields).map_err(|reason| {
            arch.build_error(
                &arch.layer_name(i),
                &format!("{}: {reason}", spec.op.name()),
            )
        })?;
        computes_on.push(field);
        outputs.push(output_field(&spec.op, field));
    }
    Ok(computes_on)
}

/// A per-sample complex shape without its pair axis.
pub(crate) fn logical(shape: &[usize]) -> Vec<usize> {
    shape[..shape.len().saturating_sub(1)].to_vec()
}

fn with_pair(mut shape: Vec<usize>) -> Vec<usize> {
    shape.push(2);
    shape
}

impl OtherOps {
    fn times(self, k: u64) -> OtherOps {
        OtherOps {
            pooling: self.pooling.saturating_mul(k),
            batch_norm: self.batch_norm.saturating_mul(k),
            activation: self.activation.saturating_mul(k),
            addition: self.addition.saturating_mul(k),
            product: self.product.saturating_mul(k),
        }
    }
}

/// `layer_work` in the field the layer computes on. A complex op has the shapes of its real
/// twin on the logical shape; it counts a complex multiply-accumulate as 4
/// real ones, parameters as real numbers, and other ops per real value. An
/// op that takes either field counts its other ops per real value too (a
/// complex product as 4 products and 2 additions).
fn field_work(
    op: &Op,
    in_shapes: &[Vec<usize>],
    field: Field,
    inputs_read: usize,
    classes: usize,
) -> Result<(Vec<usize>, Work), String> {
    if field == Field::Real {
        return layer_work(op, in_shapes, inputs_read, classes);
    }
    let skip = op.parameter_inputs().min(in_shapes.len());
    let logical_in: Vec<Vec<usize>> = in_shapes
        .iter()
        .enumerate()
        .map(|(i, s)| if i < skip { s.clone() } else { logical(s) })
        .collect();
    if logical_in[skip..].iter().any(|s| s.is_empty()) {
        return Err("a complex input needs a pair axis".into());
    }
    let channels = logical_in[skip][0] as u64;
    let elements = saturating_product(&logical_in[skip]) as u64;
    match takes(op) {
        Takes::ComplexToReal => {
            let mut output = logical_in[0].clone();
            let work = match op {
                Op::ReIm => {
                    output[0] *= 2;
                    Work::default()
                }
                _ => Work {
                    other: OtherOps {
                        activation: elements,
                        ..OtherOps::default()
                    },
                    ..Work::default()
                },
            };
            Ok((output, work))
        }
        Takes::Complex => {
            let (output, real) = layer_work(&op.real_twin(), &logical_in, inputs_read, classes)?;
            let params = match *op {
                Op::ComplexBatchNorm { affine: true, .. } => 5 * channels,
                Op::ComplexBatchNorm { affine: false, .. } => 0,
                Op::Modrelu => channels,
                _ => real.params.saturating_mul(2),
            };
            let work = Work {
                params,
                macs: real.macs.saturating_mul(4),
                other: real.other.times(2),
            };
            Ok((with_pair(output), work))
        }
        _ => {
            let (output, real) = layer_work(op, &logical_in, inputs_read, classes)?;
            let mut other = real.other.times(2);
            if let Op::Multiply = op {
                other.product = real.other.product.saturating_mul(4);
                other.addition = real.other.product.saturating_mul(2);
            }
            let work = Work {
                params: real.params,
                macs: real.macs.saturating_mul(2),
                other,
            };
            Ok((with_pair(output), work))
        }
    }
}

/// The output shape of a layer and what it computes per sample when it reads
/// `inputs_read` of its inputs, with the checks `Network::build` makes.
fn layer_work(
    op: &Op,
    in_shapes: &[Vec<usize>],
    inputs_read: usize,
    classes: usize,
) -> Result<(Vec<usize>, Work), String> {
    let positive = |what: &str, v: usize| {
        if v == 0 {
            Err(format!("{what} must be at least 1"))
        } else {
            Ok(())
        }
    };
    let elements = |shape: &[usize]| saturating_product(shape) as u64;
    let same_shape = |other: OtherOps| -> Result<(Vec<usize>, Work), String> {
        let shape = single(in_shapes)?.clone();
        Ok((
            shape,
            Work {
                other,
                ..Work::default()
            },
        ))
    };
    Ok(match *op {
        Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } => {
            let (g, bias) = conv_of(op, spatial(single(in_shapes)?)?).expect("a convolution");
            positive("channels", g.out_channels)?;
            (g.output().to_vec(), conv_work(&g, bias)?)
        }
        Op::SeparableConv2d { .. } => {
            let (g, bias) = conv_of(op, spatial(single(in_shapes)?)?).expect("a convolution");
            positive("channels", g.out_channels)?;
            let [depthwise, pointwise] = separable_geometries(g);
            let mut work = conv_work(&depthwise, false)?;
            work += conv_work(&pointwise, bias)?;
            (pointwise.output().to_vec(), work)
        }
        Op::Dense { units, bias } => {
            let inputs = elements(single(in_shapes)?);
            let units = units.unwrap_or(classes);
            positive("units", units)?;
            let outputs = units as u64;
            let biases = if bias { outputs } else { 0 };
            let work = Work {
                params: (inputs.saturating_mul(outputs)).saturating_add(biases),
                macs: inputs.saturating_mul(outputs),
                other: OtherOps {
                    addition: biases,
                    ..OtherOps::default()
                },
            };
            (vec![units], work)
        }
        Op::MaxPool2d {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool2d {
            kernel,
            stride,
            padding,
            ..
        } => {
            let input = spatial(single(in_shapes)?)?;
            let spec = pool_spec(input, kernel, pair_stride(stride, kernel), padding);
            spec.validate().map_err(|e| e.to_string())?;
            let window = saturating_product(&kernel.0) as u64;
            let work = Work {
                other: OtherOps {
                    pooling: (spec.output_len() as u64).saturating_mul(window),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (spec.output_shape()[1..].to_vec(), work)
        }
        Op::GlobalAvgPool => {
            let input = single(in_shapes)?;
            if input.len() < 2 {
                return Err(format!(
                    "needs [channels, ...] with positions to average, got {input:?}"
                ));
            }
            let work = Work {
                other: OtherOps {
                    pooling: elements(input),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (vec![input[0]], work)
        }
        Op::BatchNorm {
            affine,
            eps,
            momentum,
        } => {
            let input = single(in_shapes)?;
            if eps.is_nan() || eps <= 0.0 || !(0.0..=1.0).contains(&momentum) {
                return Err(format!(
                    "eps ({eps}) must be positive and momentum ({momentum}) in [0, 1]"
                ));
            }
            let work = Work {
                params: if affine { 2 * input[0] as u64 } else { 0 },
                other: OtherOps {
                    batch_norm: elements(input),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (input.clone(), work)
        }
        Op::Relu | Op::Sigmoid | Op::Tanh => same_shape(OtherOps {
            activation: elements(single(in_shapes)?),
            ..OtherOps::default()
        })?,
        Op::Dropout { rate } => {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("rate {rate} must be in [0, 1)"));
            }
            // Inference passes the input through.
            same_shape(OtherOps::default())?
        }
        Op::Flatten => (vec![single(in_shapes)?.iter().product()], Work::default()),
        Op::ToSequence => match single(in_shapes)?.as_slice() {
            &[c, t, f] => (vec![1, t, c * f], Work::default()),
            &[t, d] => (vec![1, t, d], Work::default()),
            other => {
                return Err(format!(
                "needs a [channels, time, freq] map or a [time, features] sequence, got {other:?}"
            ))
            }
        },
        Op::Lstm { hidden, returns } => {
            positive("hidden", hidden)?;
            let (time, features) = lstm_steps(single(in_shapes)?)?;
            // Saturating: `hidden` is any size a description gives, and a
            // too large output is refused after.
            let product = |factors: &[u64]| factors.iter().fold(1u64, |n, &f| n.saturating_mul(f));
            let (t, i, h) = (time as u64, features as u64, hidden as u64);
            let gates = product(&[4, h, i.saturating_add(h)]);
            let work = Work {
                params: gates.saturating_add(product(&[2, 4, h])),
                macs: product(&[t, gates]),
                other: OtherOps {
                    activation: product(&[t, 5, h]),
                    addition: product(&[t, 5, h]),
                    product: product(&[t, 3, h]),
                    ..OtherOps::default()
                },
            };
            let output = match returns {
                LstmReturns::Last => vec![hidden],
                LstmReturns::Sequence => vec![time, hidden],
            };
            (output, work)
        }
        Op::Add => {
            if in_shapes.len() < 2 || in_shapes.iter().any(|s| *s != in_shapes[0]) {
                return Err("needs two or more inputs of one shape".into());
            }
            let work = Work {
                other: OtherOps {
                    addition: inputs_read.saturating_sub(1) as u64 * elements(&in_shapes[0]),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (in_shapes[0].clone(), work)
        }
        Op::WeightedSum { ref weights } => {
            if in_shapes.is_empty() || in_shapes.iter().any(|s| *s != in_shapes[0]) {
                return Err("needs one or more inputs of one shape".into());
            }
            if weights.len() != in_shapes.len() || weights.iter().any(|w| !w.is_finite()) {
                return Err(format!(
                    "needs one finite weight per input: {} weights for {} inputs",
                    weights.len(),
                    in_shapes.len()
                ));
            }
            let work = Work {
                macs: in_shapes.len() as u64 * elements(&in_shapes[0]),
                ..Work::default()
            };
            (in_shapes[0].clone(), work)
        }
        Op::Multiply => {
            let [a, b] = in_shapes else {
                return Err(format!(
                    "needs exactly two inputs of one shape, given {}",
                    in_shapes.len()
                ));
            };
            if a != b {
                return Err(format!(
                    "needs two inputs of one shape, given {a:?} and {b:?}"
                ));
            }
            let work = Work {
                other: OtherOps {
                    product: elements(&in_shapes[0]),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (in_shapes[0].clone(), work)
        }
        Op::Concat => {
            let same_rest = in_shapes
                .iter()
                .all(|s| !s.is_empty() && s[1..] == in_shapes[0][1..]);
            if in_shapes.len() < 2 || !same_rest {
                return Err("needs two or more inputs that differ only in channels".into());
            }
            let mut output = in_shapes[0].clone();
            output[0] = in_shapes.iter().map(|s| s[0]).sum();
            (output, Work::default())
        }
        Op::Crop { start } => {
            let [c, t, f] = spatial(single(in_shapes)?)?;
            let [dt, df] = start.0;
            if dt >= t || df >= f {
                return Err(format!("start {:?} leaves nothing of [{t}, {f}]", start.0));
            }
            (vec![c, t - dt, f - df], Work::default())
        }
        Op::ArchWeights {
            rows,
            candidates,
            init_scale,
            regulariser,
            gates,
            ..
        } => {
            positive("rows", rows)?;
            positive("candidates", candidates)?;
            if !init_scale.is_finite() || init_scale < 0.0 {
                return Err(format!("init_scale {init_scale} must be a number >= 0"));
            }
            if let Some(r) = regulariser.filter(|r| !r.weight.is_finite() || r.weight < 0.0) {
                return Err(format!(
                    "regulariser weight {} must be a number >= 0",
                    r.weight
                ));
            }
            let mut params = rows.saturating_mul(candidates) as u64;
            if let Some(g) = gates {
                positive("gates.nodes", g.nodes)?;
                let want = g.nodes.saturating_mul(g.nodes.saturating_add(3)) / 2;
                if rows != want {
                    return Err(format!(
                        "gates of a cell of {} nodes need {want} rows (one per edge), got {rows}",
                        g.nodes
                    ));
                }
                if g.purity == RegulariserKind::ZeroOne {
                    return Err("gates.purity must be gini or entropy".into());
                }
                if !g.weight.is_finite() || g.weight < 0.0 {
                    return Err(format!("gates.weight {} must be a number >= 0", g.weight));
                }
                params += rows as u64;
            }
            let work = Work {
                params,
                ..Work::default()
            };
            (vec![rows, candidates], work)
        }
        Op::ComplexConv2d { .. }
        | Op::ComplexDepthwiseConv2d { .. }
        | Op::ComplexDense { .. }
        | Op::ComplexBatchNorm { .. }
        | Op::Crelu
        | Op::Modrelu
        | Op::Zrelu
        | Op::Magnitude
        | Op::ReIm => return Err("takes complex values (see `field_work`)".into()),
        Op::Mixed { row, ref columns } => {
            let (weights, terms) = in_shapes
                .split_first()
                .filter(|(_, terms)| !terms.is_empty())
                .ok_or("reads an arch_weights layer, then one or more candidates")?;
            let [rows, k] = weights[..] else {
                return Err(format!(
                    "its first input must be an arch_weights table, got {weights:?}"
                ));
            };
            if row >= rows {
                return Err(format!("row {row} is past the {rows} rows of its weights"));
            }
            if columns.len() != terms.len() || columns.iter().any(|&c| c >= k) {
                return Err(format!(
                    "needs one column below {k} per candidate input ({} inputs), got columns {columns:?}",
                    terms.len()
                ));
            }
            if terms.iter().any(|s| *s != terms[0]) {
                return Err(format!("its candidates must have one shape, got {terms:?}"));
            }
            let read = inputs_read.saturating_sub(1) as u64;
            let work = Work {
                other: OtherOps {
                    product: read * elements(&terms[0]),
                    addition: read.saturating_sub(1) * elements(&terms[0]),
                    ..OtherOps::default()
                },
                ..Work::default()
            };
            (terms[0].clone(), work)
        }
    })
}

/// A convolution's weights (and bias), its multiply-accumulates and bias additions.
fn conv_work(geometry: &ConvGeometry, bias: bool) -> Result<Work, String> {
    let spec = geometry.spec(1);
    spec.validate().map_err(|e| e.to_string())?;
    // Taps by input channels, as the weight holds them per output channel
    // (saturating: a kernel as large as its padding allows is refused later,
    // by what the adapter holds).
    let taps_by_channels = saturating_product(&spec.weight_shape()[1..]);
    let outputs = spec.output_len() as u64;
    let biases = if bias {
        geometry.out_channels as u64
    } else {
        0
    };
    Ok(Work {
        params: spec.weight_len() as u64 + biases,
        macs: outputs.saturating_mul(taps_by_channels as u64),
        other: OtherOps {
            addition: if bias { outputs } else { 0 },
            ..OtherOps::default()
        },
    })
}

/// Median wall time of a batch-`batch` inference (record, submit, wait) over
/// `runs` runs after two untimed ones that compile the pipelines.
pub fn measure_latency(
    gpu: &Gpu,
    network: &mut Network,
    batch: usize,
    runs: usize,
) -> GpuResult<Duration> {
    let shape = crate::nn::batched(batch, network.input_shape());
    let x = gpu.zeros(&shape)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let start = Instant::now();
        let mut rec = gpu.recorder();
        network.forward(&mut rec, &x, Pass::eval())?;
        rec.submit_and_wait()?;
        if i >= 2 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}

/// Median GPU time in milliseconds of each layer of a batch-`batch`
/// inference, from a timestamp around every dispatch, over `runs` runs after
/// two untimed ones that compile the pipelines. A layer that does not run
/// (or reuses another's output) takes 0. `None` when the adapter has no
/// timestamp queries. The times leave out what lies between dispatches
/// (recording, submit), so they sum to less than `measure_latency`.
pub fn measure_layer_latency(
    gpu: &Gpu,
    network: &mut Network,
    batch: usize,
    runs: usize,
) -> GpuResult<Option<Vec<f64>>> {
    if !gpu.has_timestamps() {
        return Ok(None);
    }
    let shape = crate::nn::batched(batch, network.input_shape());
    let x = gpu.zeros(&shape)?;
    let layers = network.architecture().layers.len();
    let mut per_layer = vec![Vec::with_capacity(runs); layers];
    for i in 0..runs + 2 {
        let mut rec = gpu.timed_recorder();
        network.forward(&mut rec, &x, Pass::eval())?;
        let times = rec.submit_timed()?;
        if i < 2 {
            continue;
        }
        for (layer, dispatches) in network.layer_dispatches().iter().enumerate() {
            let nanos: f64 = times
                .get(dispatches.clone())
                .map_or(0.0, |t| t.iter().map(|k| k.nanos).sum());
            per_layer[layer].push(nanos / 1e6);
        }
    }
    Ok(Some(
        per_layer
            .into_iter()
            .map(|mut t| {
                t.sort_by(f64::total_cmp);
                t.get(t.len() / 2).copied().unwrap_or(0.0)
            })
            .collect(),
    ))
}

//! A runnable network built from an architecture description: layers in
//! topological order, forward in that order, backward in reverse, summing the
//! gradients of an output that several layers read.

use super::arch::{Architecture, LstmReturns, Op};
use super::error::ModelError;
use super::mask::Source;
use super::shapes::{conv_geometry, pair_stride, single, spatial};
use crate::gpu::{ensure, Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::elementwise::{add, Activation};
use crate::nn::{
    ActivationLayer, Add, BatchNormLayer, Concat, Conv2dLayer, Dense, Dropout, Flatten,
    GlobalAvgPool, Init, Layer, Lstm, LstmReturn, Param, Pass, Pool, PoolKind, SeparableConv2d,
};
use crate::util::rng::Rng;
use std::collections::HashMap;

struct Node {
    name: String,
    layer: Box<dyn Layer>,
    inputs: Vec<Source>,
}

pub struct Network {
    arch: Architecture,
    input_shape: Vec<usize>,
    classes: usize,
    nodes: Vec<Node>,
    /// Outputs of the last forward, kept for the backward.
    outputs: Vec<Option<Tensor>>,
    input: Option<Tensor>,
}

impl Network {
    /// Builds `arch` for samples of `input_shape` (`[channels, time, freq]`)
    /// and `classes` outputs, drawing weights from `seed`.
    pub fn build(
        gpu: &Gpu,
        arch: &Architecture,
        input_shape: &[usize],
        classes: usize,
        seed: u64,
    ) -> Result<Network, ModelError> {
        let fail = |layer: &str, reason: String| ModelError::Build {
            arch: arch.name.clone(),
            layer: layer.to_string(),
            reason,
        };
        if arch.layers.is_empty() {
            return Err(fail("-", "has no layers".into()));
        }
        let sources = arch.sources()?;
        let mut rng = Rng::new(seed);
        let mut shapes: Vec<Vec<usize>> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut used = vec![false; arch.layers.len()];
        for (i, (spec, inputs)) in arch.layers.iter().zip(sources).enumerate() {
            let name = arch.layer_name(i);
            let in_shapes: Vec<Vec<usize>> = inputs
                .iter()
                .map(|s| match s {
                    Source::Input => input_shape.to_vec(),
                    Source::Layer(j) => {
                        used[*j] = true;
                        shapes[*j].clone()
                    }
                })
                .collect();
            let salt = i as u64;
            let layer = build_layer(
                gpu, &spec.op, &in_shapes, classes, arch.init, &mut rng, salt,
            )
            .map_err(|reason| {
                fail(
                    &name,
                    format!("{} on input {in_shapes:?}: {reason}", spec.op.name()),
                )
            })?;
            let out = layer.output_shape();
            if out.iter().product::<usize>() == 0 {
                return Err(fail(&name, format!("its output {out:?} is empty")));
            }
            shapes.push(out);
            nodes.push(Node {
                name,
                layer,
                inputs,
            });
        }
        let last = nodes.len() - 1;
        if let Some(j) = (0..last).find(|&j| !used[j]) {
            return Err(fail(
                &nodes[j].name,
                "its output is never read; every layer but the last must feed another".into(),
            ));
        }
        if shapes[last] != [classes] {
            return Err(fail(
                &nodes[last].name,
                format!(
                    "the last layer gives {:?} per sample, but there are {classes} classes (end with a `dense` layer without `units`)",
                    shapes[last]
                ),
            ));
        }
        Ok(Network {
            arch: arch.clone(),
            input_shape: input_shape.to_vec(),
            classes,
            outputs: Vec::new(),
            input: None,
            nodes,
        })
    }

    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Layer names with their per-sample output shapes, in order.
    pub fn summary(&self) -> Vec<(String, String, Vec<usize>, usize, u64)> {
        self.nodes
            .iter()
            .zip(&self.arch.layers)
            .map(|(n, spec)| {
                let params = n.layer.params().iter().map(|p| p.len()).sum();
                (
                    n.name.clone(),
                    spec.op.name(),
                    n.layer.output_shape(),
                    params,
                    n.layer.macs(),
                )
            })
            .collect()
    }

    /// Records the forward pass of a `[batch, input_shape...]` batch and
    /// returns the logits `[batch, classes]`.
    pub fn forward(&mut self, rec: &mut Recorder, x: &Tensor, pass: Pass) -> GpuResult<Tensor> {
        ensure(x.shape().get(1..) == Some(&self.input_shape[..]), || {
            format!(
                "network {:?} takes [batch, {:?}] inputs, got {:?}",
                self.arch.name,
                self.input_shape,
                x.shape()
            )
        })?;
        self.outputs = vec![None; self.nodes.len()];
        for i in 0..self.nodes.len() {
            let inputs = self.inputs_of(i, x);
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let y = self.nodes[i].layer.forward(rec, &refs, pass)?;
            self.outputs[i] = Some(y);
        }
        self.input = Some(x.clone());
        Ok(self.outputs[self.nodes.len() - 1]
            .clone()
            .expect("just computed"))
    }

    fn inputs_of(&self, i: usize, x: &Tensor) -> Vec<Tensor> {
        self.nodes[i]
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => x.clone(),
                Source::Layer(j) => self.outputs[*j].clone().expect("earlier layer ran"),
            })
            .collect()
    }

    /// Records the backward pass of the last forward from the gradient of
    /// the loss w.r.t. the logits; every parameter's gradient is overwritten.
    pub fn backward(&mut self, rec: &mut Recorder, dlogits: &Tensor) -> GpuResult<()> {
        let x = self.input.take().expect("backward follows forward");
        let n = self.nodes.len();
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        grads[n - 1] = Some(dlogits.clone());
        for i in (0..n).rev() {
            let Some(dout) = grads[i].take() else {
                continue;
            };
            let inputs = self.inputs_of(i, &x);
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let need: Vec<bool> = self.nodes[i]
                .inputs
                .iter()
                .map(|s| matches!(s, Source::Layer(_)))
                .collect();
            let output = self.outputs[i].take().expect("forward kept it");
            let dinputs = self.nodes[i]
                .layer
                .backward(rec, &refs, &output, &dout, &need)?;
            for (source, d) in self.nodes[i].inputs.clone().into_iter().zip(dinputs) {
                let (Source::Layer(j), Some(d)) = (source, d) else {
                    continue;
                };
                grads[j] = Some(match grads[j].take() {
                    None => d,
                    Some(previous) => {
                        // A new tensor: either addend may be shared with another layer.
                        let sum = rec.empty(d.shape())?;
                        add(rec, &previous, &d, &sum)?;
                        sum
                    }
                });
            }
        }
        self.outputs.clear();
        Ok(())
    }

    /// Every parameter with its full name (`layer.param`), in layer order.
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.layer
                    .params()
                    .into_iter()
                    .map(move |p| (format!("{}.{}", n.name, p.name), p))
            })
            .collect()
    }

    pub fn params(&self) -> Vec<&Param> {
        self.nodes.iter().flat_map(|n| n.layer.params()).collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.nodes
            .iter_mut()
            .flat_map(|n| n.layer.params_mut())
            .collect()
    }

    /// What a model file holds: every parameter and buffer, by full name.
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        let mut state: Vec<(String, &Tensor)> = self
            .named_params()
            .into_iter()
            .map(|(name, p)| (name, &p.value))
            .collect();
        for n in &self.nodes {
            for (b, t) in n.layer.buffers() {
                state.push((format!("{}.{b}", n.name), t));
            }
        }
        state
    }

    /// Writes saved tensors `(name, shape, values)` into the network; every
    /// tensor of `state()` must be given with its shape. `origin` names
    /// where they come from, for the error.
    pub fn load_state<'a>(
        &self,
        gpu: &Gpu,
        saved: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
        origin: &std::path::Path,
    ) -> Result<(), ModelError> {
        let saved: HashMap<&str, (&[usize], &[f32])> =
            saved.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let bad = |reason: String| ModelError::Weights {
            path: origin.to_path_buf(),
            reason: format!(
                "{reason}; it was saved from another architecture than {:?}",
                self.arch.name
            ),
        };
        for (name, t) in self.state() {
            let Some((shape, values)) = saved.get(name.as_str()) else {
                return Err(bad(format!("has no tensor {name:?}")));
            };
            if *shape != t.shape() {
                return Err(bad(format!(
                    "tensor {name:?} has shape {shape:?}, this network's is {:?}",
                    t.shape()
                )));
            }
            gpu.write(t, values)?;
        }
        Ok(())
    }

    /// Trained parameters.
    pub fn parameter_count(&self) -> u64 {
        self.params().iter().map(|p| p.len() as u64).sum()
    }

    /// Multiply-accumulates of one sample's forward pass.
    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.layer.macs()).sum()
    }

    /// Bytes the last forward keeps for the backward: layer outputs plus
    /// what layers save besides them.
    pub fn saved_bytes(&self) -> u64 {
        let outputs: u64 = self.outputs.iter().flatten().map(|t| t.bytes()).sum();
        outputs
            + self
                .nodes
                .iter()
                .map(|n| n.layer.saved_bytes())
                .sum::<u64>()
    }
}

fn build_layer(
    gpu: &Gpu,
    op: &Op,
    in_shapes: &[Vec<usize>],
    classes: usize,
    init: Init,
    rng: &mut Rng,
    salt: u64,
) -> Result<Box<dyn Layer>, String> {
    let gpu_err = |e: crate::gpu::GpuError| e.to_string();
    let positive = |what: &str, v: usize| {
        if v == 0 {
            Err(format!("{what} must be at least 1"))
        } else {
            Ok(())
        }
    };
    Ok(match *op {
        Op::Conv2d {
            channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
        } => {
            positive("channels", channels)?;
            let input = spatial(single(in_shapes)?)?;
            let g = conv_geometry(input, channels, kernel, stride, padding, dilation, groups);
            Box::new(Conv2dLayer::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::DepthwiseConv2d {
            kernel,
            stride,
            padding,
            dilation,
            bias,
        } => {
            let input = spatial(single(in_shapes)?)?;
            let g = conv_geometry(input, input[0], kernel, stride, padding, dilation, input[0]);
            Box::new(Conv2dLayer::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::SeparableConv2d {
            channels,
            kernel,
            stride,
            padding,
            dilation,
            bias,
        } => {
            positive("channels", channels)?;
            let input = spatial(single(in_shapes)?)?;
            let g = conv_geometry(input, channels, kernel, stride, padding, dilation, 1);
            Box::new(SeparableConv2d::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::Dense { units, bias } => {
            let inputs = single(in_shapes)?.iter().product();
            let units = units.unwrap_or(classes);
            positive("units", units)?;
            Box::new(Dense::new(gpu, inputs, units, bias, init, rng).map_err(gpu_err)?)
        }
        Op::MaxPool2d {
            kernel,
            stride,
            padding,
        } => {
            let input = spatial(single(in_shapes)?)?;
            let stride = pair_stride(stride, kernel);
            Box::new(Pool::new(PoolKind::Max, input, kernel.0, stride, padding.0).map_err(gpu_err)?)
        }
        Op::AvgPool2d {
            kernel,
            stride,
            padding,
            count_include_pad,
        } => {
            let input = spatial(single(in_shapes)?)?;
            let stride = pair_stride(stride, kernel);
            let kind = PoolKind::Avg { count_include_pad };
            Box::new(Pool::new(kind, input, kernel.0, stride, padding.0).map_err(gpu_err)?)
        }
        Op::GlobalAvgPool => {
            let input = single(in_shapes)?;
            if input.len() < 2 {
                return Err(format!(
                    "needs [channels, ...] with positions to average, got {input:?}"
                ));
            }
            Box::new(GlobalAvgPool::new(input))
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
            Box::new(BatchNormLayer::new(gpu, input, eps, momentum, affine).map_err(gpu_err)?)
        }
        Op::Relu => Box::new(ActivationLayer::new(Activation::Relu, single(in_shapes)?)),
        Op::Sigmoid => Box::new(ActivationLayer::new(
            Activation::Sigmoid,
            single(in_shapes)?,
        )),
        Op::Tanh => Box::new(ActivationLayer::new(Activation::Tanh, single(in_shapes)?)),
        Op::Dropout { rate } => {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("rate {rate} must be in [0, 1)"));
            }
            Box::new(Dropout::new(rate, salt, single(in_shapes)?))
        }
        Op::Flatten => Box::new(Flatten::new(single(in_shapes)?)),
        Op::Lstm { hidden, returns } => {
            positive("hidden", hidden)?;
            let (time, features) = match single(in_shapes)?.as_slice() {
                &[1, t, f] | &[t, f] => (t, f),
                other => {
                    return Err(format!(
                        "needs a [1, time, freq] or [time, features] input, got {other:?}"
                    ))
                }
            };
            let returns = match returns {
                LstmReturns::Last => LstmReturn::Last,
                LstmReturns::Sequence => LstmReturn::Sequence,
            };
            Box::new(Lstm::new(gpu, time, features, hidden, returns, rng).map_err(gpu_err)?)
        }
        Op::Add => {
            if in_shapes.len() < 2 || in_shapes.iter().any(|s| *s != in_shapes[0]) {
                return Err("needs two or more inputs of one shape".into());
            }
            Box::new(Add::new(&in_shapes[0]))
        }
        Op::Concat => {
            let same_rest = in_shapes
                .iter()
                .all(|s| !s.is_empty() && s[1..] == in_shapes[0][1..]);
            if in_shapes.len() < 2 || !same_rest {
                return Err("needs two or more inputs that differ only in channels".into());
            }
            Box::new(Concat::new(in_shapes))
        }
    })
}

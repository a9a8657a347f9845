//! A runnable network built from an architecture description: layers in
//! topological order, forward in that order, backward in reverse, summing the
//! gradients of an output that several layers read.

use super::arch::{Architecture, LstmReturns, Op, RegulariserKind, Weighting};
use super::cost::{logical, Cost, Field};
use super::error::ModelError;
use super::mask::{Activity, Mask, Source};
use super::shapes::{conv_of, lstm_steps, pair_stride, single, spatial};
use crate::gpu::{ensure, Gpu, GpuError, GpuResult, Recorder, Tensor};
use crate::kernels::elementwise::{add, scale_samples, Activation};
use crate::kernels::mixed_edge::{EdgeWeighting, Regulariser};
use crate::nn::{
    batch_of, batched, ActivationLayer, Add, ArchWeights, BackwardReads, BatchNormLayer,
    ComplexBatchNormLayer, ComplexConv2dLayer, ComplexDenseLayer, ComplexUnary, ComplexUnaryLayer,
    Concat, Conv2dLayer, Crop, Dense, Dropout, Flatten, GlobalAvgPool, Init, Layer, Lstm,
    LstmReturn, Mixed, ModRelu, Multiply, Param, Pass, Pool, PoolKind, SeparableConv2d, ToSequence,
    WeightedSum,
};
use crate::util::rng::Rng;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

struct Node {
    name: String,
    layer: Box<dyn Layer>,
}

pub struct Network {
    arch: Architecture,
    input_shape: Vec<usize>,
    classes: usize,
    nodes: Vec<Node>,
    /// Per layer: where it reads from, and its per-sample output shape.
    sources: Vec<Vec<Source>>,
    shapes: Vec<Vec<usize>>,
    /// Per layer: an earlier layer that applies the same activation to the
    /// same sources, whose output this one takes rather than computing it
    /// again (a supernet's candidates each begin with a ReLU of one input).
    same_as: Vec<Option<usize>>,
    /// What runs under the current mask, and what each layer then reads.
    activity: Activity,
    read_plan: Vec<Vec<Read>>,
    /// Outputs of the last forward and the inputs each layer read, kept for
    /// the backward where it reads them, else placeholders (shapes only).
    outputs: Vec<Option<Tensor>>,
    inputs: Vec<Vec<Tensor>>,
    /// What the backward of each layer reads, as the last forward left it.
    reads: Vec<BackwardReads>,
    input: Option<Tensor>,
    /// Per layer: whether the last backward wrote its parameters' gradients.
    fresh: Vec<bool>,
    /// What the last forward kept for the backward, in bytes.
    saved_bytes: u64,
    /// Per layer: a factor per sample (0 or 1) its output is multiplied by
    /// when different samples run different sub-networks, and a buffer kept
    /// for it; the layer's own output before that, where its backward reads it.
    sample_factors: Vec<Option<Tensor>>,
    factor_buffers: Vec<Option<Tensor>>,
    ungated_outputs: Vec<Option<Tensor>>,
    /// Where each forward copies what the last layer reads, when set.
    features_into: Option<Tensor>,
    /// Per layer: the dispatches of the last forward that computed it
    /// (reading its inputs included), to time layers one by one.
    layer_dispatches: Vec<Range<usize>>,
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
        // The cost model checks every shape and setting, naming the layer,
        // before anything is allocated.
        let cost = Cost::of(arch, input_shape, classes, 1000.0, None)?;
        super::fits::check_fits(arch, &cost, gpu.limits().max_storage_buffer_binding_size)?;
        let fields: Vec<Field> = cost.layers.iter().map(|l| l.field).collect();
        let shapes: Vec<Vec<usize>> = cost.layers.into_iter().map(|l| l.output).collect();
        let sources = arch.sources()?;
        let mut rng = Rng::new(seed);
        let mut nodes: Vec<Node> = Vec::new();
        for (i, (spec, inputs)) in arch.layers.iter().zip(&sources).enumerate() {
            let name = arch.layer_name(i);
            let in_shapes: Vec<Vec<usize>> = inputs
                .iter()
                .map(|s| match s {
                    Source::Input => input_shape.to_vec(),
                    Source::Layer(j) => shapes[*j].clone(),
                })
                .collect();
            let salt = i as u64;
            let complex = fields[i] == Field::Complex;
            let layer = build_layer(
                gpu, &spec.op, &in_shapes, complex, classes, arch.init, &mut rng, salt,
            )
            .map_err(|reason| {
                arch.build_error(
                    &name,
                    &format!("{} on input {in_shapes:?}: {reason}", spec.op.name()),
                )
            })?;
            nodes.push(Node { name, layer });
        }
        let activity = Activity::full(&sources);
        let read_plan = read_plan(arch, &sources, &activity, input_shape, &shapes);
        let same_as = same_activations(arch, &sources);
        Ok(Network {
            arch: arch.clone(),
            input_shape: input_shape.to_vec(),
            classes,
            fresh: vec![false; nodes.len()],
            nodes,
            sources,
            shapes,
            same_as,
            activity,
            read_plan,
            outputs: Vec::new(),
            inputs: Vec::new(),
            reads: Vec::new(),
            input: None,
            saved_bytes: 0,
            sample_factors: vec![None; arch.layers.len()],
            factor_buffers: vec![None; arch.layers.len()],
            ungated_outputs: Vec::new(),
            features_into: None,
            layer_dispatches: Vec::new(),
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

    /// Layer names in order.
    pub fn layer_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// The per-sample output shape of every layer, in order, as the layers
    /// themselves give it.
    pub fn layer_shapes(&self) -> Vec<Vec<usize>> {
        self.nodes.iter().map(|n| n.layer.output_shape()).collect()
    }

    /// The index of the layer called `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Puts the parameters of layer `layer` into parameter group `group`
    /// (trained by that group's optimizer).
    pub fn set_group(&mut self, layer: &str, group: &'static str) -> Result<(), ModelError> {
        let i = self.layer_index(layer).ok_or_else(|| {
            self.arch
                .build_error(layer, "is not a layer of this network, so it has no group")
        })?;
        for p in self.nodes[i].layer.params_mut() {
            p.group = group;
        }
        Ok(())
    }

    /// Switches layers and edges off for the passes that follow (until the
    /// next call); `Mask::none()` switches everything on again. Layers that
    /// do not run record no kernel, allocate nothing, and their parameters
    /// get no gradient, so an optimizer leaves them and their state as they are.
    pub fn set_mask(&mut self, mask: &Mask) -> Result<(), ModelError> {
        self.activity = self.arch.activity(mask)?;
        for (node, reads) in self.nodes.iter_mut().zip(&self.activity.reads) {
            node.layer.read(reads);
        }
        self.read_plan = read_plan(
            &self.arch,
            &self.sources,
            &self.activity,
            &self.input_shape,
            &self.shapes,
        );
        Ok(())
    }

    /// Runs a sub-network of its own for each sample of the next batches (a
    /// stochastic network's sampled gates): `runs[b][i]` says whether layer
    /// `i` runs for sample `b` (from [`Architecture::activity`] of that
    /// sample's mask). The batch computes the layers that run for some sample
    /// (the others record nothing, as under a mask); a layer that runs for
    /// some samples only has its output zeroed for the others, and so its
    /// gradient, so every sample sees exactly its own sub-network. `None`:
    /// one network for the whole batch again, with nothing masked.
    pub fn set_sample_activity(
        &mut self,
        gpu: &Gpu,
        runs: Option<&[Vec<bool>]>,
    ) -> Result<(), ModelError> {
        let n = self.nodes.len();
        self.sample_factors = vec![None; n];
        let Some(runs) = runs else {
            return self.set_mask(&Mask::none());
        };
        if let Some(bad) = runs.iter().find(|r| r.len() != n) {
            return Err(self.arch.build_error(
                "-",
                &format!(
                    "a sample's activity has {} layers, the network {n}",
                    bad.len()
                ),
            ));
        }
        let somewhere = |i: usize| runs.iter().any(|r| r[i]);
        let mask = (0..n.saturating_sub(1))
            .filter(|&i| !somewhere(i))
            .fold(Mask::none(), |m, i| m.layer_off(&self.nodes[i].name));
        self.set_mask(&mask)?;
        for i in 0..n {
            if !self.activity.runs[i] || runs.iter().all(|r| r[i]) {
                continue;
            }
            let factors: Vec<f32> = runs.iter().map(|r| f32::from(u8::from(r[i]))).collect();
            let buffer = match &self.factor_buffers[i] {
                Some(t) if t.len() == factors.len() => t.clone(),
                _ => self.factor_buffers[i]
                    .insert(gpu.empty(&[factors.len()])?)
                    .clone(),
            };
            gpu.write(&buffer, &factors)?;
            self.sample_factors[i] = Some(buffer);
        }
        Ok(())
    }

    /// The per-sample shape of what the last layer reads (its first input):
    /// the features the classifier sees.
    pub fn feature_shape(&self) -> Vec<usize> {
        match self.sources.last().and_then(|s| s.first()) {
            Some(Source::Layer(j)) => self.shapes[*j].clone(),
            _ => self.input_shape.clone(),
        }
    }

    /// From the next forward on, copies what the last layer reads into
    /// `into` (`[batch, feature_shape...]`; zeros where a sample reads
    /// nothing); `None` stops it.
    pub fn capture_features(&mut self, into: Option<Tensor>) {
        self.features_into = into;
    }

    /// What runs under the current mask.
    /// Switches the architecture regularisers of every layer on or off.
    pub fn set_regularising(&mut self, on: bool) {
        for node in &mut self.nodes {
            node.layer.set_regularising(on);
        }
    }

    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Per layer, the indices (in the recording) of the dispatches that the
    /// last forward made for it; empty for a layer that did not run or
    /// reused another layer's output.
    pub fn layer_dispatches(&self) -> &[Range<usize>] {
        &self.layer_dispatches
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
        let n = self.nodes.len();
        if let Some(f) = self.sample_factors.iter().flatten().next() {
            ensure(batch_of(x) == f.len(), || {
                format!(
                    "network {:?} runs one sub-network per sample for batches of {}, got a batch of {}",
                    self.arch.name,
                    f.len(),
                    batch_of(x)
                )
            })?;
        }
        self.outputs = vec![None; n];
        self.ungated_outputs = vec![None; n];
        self.inputs = vec![Vec::new(); n];
        self.reads = vec![BackwardReads::NOTHING; n];
        self.fresh = vec![false; n];
        self.layer_dispatches = vec![0..0; n];
        let last_reader = self.last_readers();
        // Whether a backward reads the output of a layer.
        let mut needed = vec![false; n];
        for i in 0..n {
            if !self.activity.runs[i] {
                continue;
            }
            let first_dispatch = rec.dispatch_count();
            let inputs = self.read_inputs(rec, i, x)?;
            if let (true, Some(into), Some(read)) =
                (i + 1 == n, &self.features_into, inputs.first())
            {
                rec.copy(read, into)?;
            }
            let y = match self.computed_by(i) {
                Some(y) => y,
                None => {
                    let refs: Vec<&Tensor> = inputs.iter().collect();
                    self.nodes[i].layer.forward(rec, &refs, pass)?
                }
            };
            let reads = self.nodes[i].layer.backward_reads();
            let y = match &self.sample_factors[i] {
                Some(factors) => {
                    let gated = rec.empty(y.shape())?;
                    scale_samples(rec, &y, factors, &gated)?;
                    if reads.output {
                        self.ungated_outputs[i] = Some(y);
                    }
                    gated
                }
                None => y,
            };
            self.layer_dispatches[i] = first_dispatch..rec.dispatch_count();
            self.outputs[i] = Some(y);
            self.inputs[i] = if reads.inputs {
                inputs
            } else {
                inputs.iter().map(Tensor::placeholder).collect()
            };
            self.reads[i] = reads;
            needed[i] |= reads.output;
            // Every reader of an output has run (and said whether its
            // backward reads it) before the output is let go of, so that
            // its buffer can serve later work of this step.
            let mut done: Vec<usize> = std::iter::once(i).chain(self.same_as[i]).collect();
            for read in &self.read_plan[i] {
                if let Read::Source(Source::Layer(j)) = read {
                    needed[*j] |= reads.inputs;
                    done.push(*j);
                }
            }
            for j in done {
                if j + 1 < n && last_reader[j] <= i && !needed[j] {
                    self.outputs[j] = self.outputs[j].as_ref().map(Tensor::placeholder);
                }
            }
        }
        self.input = Some(x.clone());
        self.saved_bytes = self.kept_bytes(x);
        self.outputs[n - 1]
            .clone()
            .ok_or_else(|| GpuError::Order("the last layer did not run".into()))
    }

    /// The output of the layer that layer `i` has the same activation and
    /// reads as, when that one ran in this forward.
    fn computed_by(&self, i: usize) -> Option<Tensor> {
        let k = self.same_as[i]?;
        if !self.activity.runs[k]
            || self.read_plan[k] != self.read_plan[i]
            || self.sample_factors[k].is_some()
        {
            return None;
        }
        self.outputs[k].clone().filter(|y| !y.is_placeholder())
    }

    /// Per layer, the last layer that runs and reads its output (itself
    /// when none does); a layer that takes another's output reads it.
    fn last_readers(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.nodes.len()).collect();
        for (i, plan) in self.read_plan.iter().enumerate() {
            if !self.activity.runs[i] {
                continue;
            }
            let sources = plan.iter().filter_map(|read| match read {
                Read::Source(Source::Layer(j)) => Some(*j),
                _ => None,
            });
            for j in sources.chain(self.same_as[i]) {
                last[j] = last[j].max(i);
            }
        }
        last
    }

    /// Bytes of the buffers the last forward kept for the backward (each
    /// buffer once, the network's input not counted) and what layers keep
    /// besides.
    fn kept_bytes(&self, x: &Tensor) -> u64 {
        let mut kept: Vec<_> = self
            .outputs
            .iter()
            .flatten()
            .chain(self.inputs.iter().flatten())
            .chain(self.ungated_outputs.iter().flatten())
            .filter(|t| !t.is_placeholder() && !t.shares_buffer(x))
            .map(|t| (t.buffer(), t.bytes()))
            .collect();
        kept.sort_unstable_by_key(|&(buffer, _)| buffer);
        kept.dedup_by_key(|&mut (buffer, _)| buffer);
        kept.iter().map(|&(_, bytes)| bytes).sum::<u64>()
            + self
                .nodes
                .iter()
                .map(|n| n.layer.saved_bytes())
                .sum::<u64>()
    }

    /// The tensors layer `i` reads under the current mask: its sources, and
    /// zeros for a part it does not read.
    fn read_inputs(&self, rec: &mut Recorder, i: usize, x: &Tensor) -> GpuResult<Vec<Tensor>> {
        let batch = batch_of(x);
        self.read_plan[i]
            .iter()
            .map(|read| match read {
                Read::Source(Source::Input) => Ok(x.clone()),
                Read::Source(Source::Layer(j)) => self.outputs[*j].clone().ok_or_else(|| {
                    GpuError::Order(format!(
                        "layer {:?} reads {:?}, which did not run",
                        self.nodes[i].name, self.nodes[*j].name
                    ))
                }),
                Read::Zeros(shape) => {
                    let zeros = rec.empty(&batched(batch, shape))?;
                    rec.clear(&zeros);
                    Ok(zeros)
                }
            })
            .collect()
    }

    /// Records the backward pass of the last forward from the gradient of
    /// the loss w.r.t. the logits. The gradients of the parameters of every
    /// layer the gradient reaches are overwritten; `trained_params` lists them.
    pub fn backward(&mut self, rec: &mut Recorder, dlogits: &Tensor) -> GpuResult<()> {
        if self.input.take().is_none() {
            return Err(GpuError::Order(format!(
                "network {:?}: backward needs a forward first (one backward per forward)",
                self.arch.name
            )));
        }
        let n = self.nodes.len();
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        grads[n - 1] = Some(dlogits.clone());
        for i in (0..n).rev() {
            let Some(dout) = grads[i].take() else {
                continue;
            };
            let inputs = std::mem::take(&mut self.inputs[i]);
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let need: Vec<bool> = self.read_plan[i]
                .iter()
                .map(|r| matches!(r, Read::Source(Source::Layer(_))))
                .collect();
            let output = self.outputs[i].take().ok_or_else(|| {
                GpuError::Order(format!(
                    "layer {:?} has no saved output for its backward",
                    self.nodes[i].name
                ))
            })?;
            let output = match self.ungated_outputs[i].take() {
                Some(ungated) => ungated,
                None if self.reads[i].output => output,
                None => output.placeholder(),
            };
            // A gated output's gradient is zero where the sample's gate is.
            let dout = match &self.sample_factors[i] {
                Some(factors) => {
                    let gated = rec.empty(dout.shape())?;
                    scale_samples(rec, &dout, factors, &gated)?;
                    gated
                }
                None => dout,
            };
            let dinputs = self.nodes[i]
                .layer
                .backward(rec, &refs, &output, &dout, &need)?;
            self.fresh[i] = true;
            for (read, d) in self.read_plan[i].iter().zip(dinputs) {
                let (Read::Source(Source::Layer(j)), Some(d)) = (read, d) else {
                    continue;
                };
                grads[*j] = Some(match grads[*j].take() {
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
        self.ungated_outputs.clear();
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

    /// The parameters of `group` whose gradients the last backward wrote,
    /// named: what an optimizer step may update. Layers that did not run, or
    /// that the gradient did not reach, are left out.
    pub fn trained_params(&self, group: &str) -> Vec<(String, &Param)> {
        self.nodes
            .iter()
            .zip(&self.fresh)
            .filter(|(_, &fresh)| fresh)
            .flat_map(|(n, _)| {
                n.layer
                    .params()
                    .into_iter()
                    .filter(move |p| p.group == group)
                    .map(move |p| (format!("{}.{}", n.name, p.name), p))
            })
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

    /// Pairs this network's tensors with saved ones by name and shape.
    fn match_state<'s, S>(&'s self, saved: &HashMap<&str, (&[usize], S)>) -> Matched<'s, S>
    where
        S: Copy,
    {
        let mut matched = Matched {
            pairs: Vec::new(),
            report: Inheritance::default(),
        };
        for (name, t) in self.state() {
            match saved.get(name.as_str()) {
                Some((shape, value)) if *shape == t.shape() => {
                    matched.pairs.push((t, *value));
                    matched.report.copied.push(name);
                }
                Some((shape, _)) => matched.report.reshaped.push(Reshaped {
                    name,
                    saved: shape.to_vec(),
                    here: t.shape().to_vec(),
                }),
                None => matched.report.missing.push(name),
            }
        }
        let here: HashSet<String> = self.state().into_iter().map(|(n, _)| n).collect();
        matched.report.unused = saved
            .keys()
            .filter(|n| !here.contains(**n))
            .map(|n| n.to_string())
            .collect();
        matched.report.unused.sort();
        matched
    }

    /// Copies every saved tensor `(name, shape, values)` whose name and shape
    /// match one of this network's, and says what was copied and what not.
    pub fn inherit<'a>(
        &self,
        gpu: &Gpu,
        saved: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    ) -> GpuResult<Inheritance> {
        let saved: HashMap<&str, (&[usize], &[f32])> =
            saved.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let matched = self.match_state(&saved);
        for (t, values) in &matched.pairs {
            gpu.write(t, values)?;
        }
        Ok(matched.report)
    }

    /// Copies, on the GPU, every tensor of `parent` whose name and shape
    /// match one of this network's (a child network starting from its
    /// parent's weights), and says what was copied and what not.
    pub fn inherit_from(&self, gpu: &Gpu, parent: &Network) -> GpuResult<Inheritance> {
        let state = parent.state();
        let saved: HashMap<&str, (&[usize], &Tensor)> = state
            .iter()
            .map(|(n, t)| (n.as_str(), (t.shape(), *t)))
            .collect();
        let matched = self.match_state(&saved);
        let mut rec = gpu.recorder();
        for (t, source) in &matched.pairs {
            rec.copy(source, t)?;
        }
        rec.submit()?;
        Ok(matched.report)
    }

    /// Writes saved tensors `(name, shape, values)` into the network: every
    /// tensor of `state()` must be given with its shape, and nothing else.
    /// `origin` names where they come from, for the error.
    pub fn load_state<'a>(
        &self,
        gpu: &Gpu,
        saved: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
        origin: &std::path::Path,
    ) -> Result<(), ModelError> {
        let saved: HashMap<&str, (&[usize], &[f32])> =
            saved.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let matched = self.match_state(&saved);
        if let Some(reason) = matched.report.mismatch() {
            return Err(ModelError::Weights {
                path: origin.to_path_buf(),
                reason: format!(
                    "{reason}; it was saved from another architecture than {:?}",
                    self.arch.name
                ),
            });
        }
        for (t, values) in &matched.pairs {
            gpu.write(t, values)?;
        }
        Ok(())
    }

    /// Trained parameters.
    pub fn parameter_count(&self) -> u64 {
        self.params().iter().map(|p| p.len() as u64).sum()
    }

    /// Multiply-accumulates of one sample's forward pass under the current
    /// mask, from the description (the cost model's count).
    pub fn macs(&self) -> Result<u64, ModelError> {
        let cost = Cost::of(
            &self.arch,
            &self.input_shape,
            self.classes,
            1000.0,
            Some(&self.activity),
        )?;
        Ok(cost.macs)
    }

    /// Bytes the last forward kept for the backward: the layer outputs and
    /// inputs that backwards read, plus what layers save besides them.
    pub fn saved_bytes(&self) -> u64 {
        self.saved_bytes
    }
}

/// What a layer reads for one of its inputs under a mask.
#[derive(Clone, Debug, PartialEq)]
enum Read {
    Source(Source),
    /// Zeros of this per-sample shape, for a part that is switched off.
    Zeros(Vec<usize>),
}

/// Per layer, what it reads: an `add` reads the inputs that are on (zeros
/// when none is), any other layer (`concat`, `multiply`) reads every input,
/// zeros where it is off.
fn read_plan(
    arch: &Architecture,
    sources: &[Vec<Source>],
    activity: &Activity,
    input_shape: &[usize],
    shapes: &[Vec<usize>],
) -> Vec<Vec<Read>> {
    let shape_of = |s: &Source| match s {
        Source::Input => input_shape.to_vec(),
        Source::Layer(j) => shapes[*j].clone(),
    };
    sources
        .iter()
        .zip(&activity.reads)
        .zip(&arch.layers)
        .map(|((sources, reads), spec)| {
            let read = |(s, &on): (&Source, &bool)| {
                if on {
                    Read::Source(*s)
                } else {
                    Read::Zeros(shape_of(s))
                }
            };
            let sums_what_is_on = matches!(spec.op, Op::Add | Op::Mixed { .. });
            if !sums_what_is_on {
                return sources.iter().zip(reads).map(read).collect();
            }
            // A mixed layer's weights are always read.
            let parameters = spec.op.parameter_inputs();
            let on: Vec<Read> = sources
                .iter()
                .zip(reads)
                .enumerate()
                .filter(|(k, (_, &r))| r || *k < parameters)
                .map(|(_, (s, _))| Read::Source(*s))
                .collect();
            if on.is_empty() {
                vec![Read::Zeros(shape_of(&sources[0]))]
            } else {
                on
            }
        })
        .collect()
}

/// Per layer, the first earlier layer that applies the same activation
/// (ReLU, sigmoid or tanh: no parameters, no state, the same output for the
/// same input) to the same sources.
fn same_activations(arch: &Architecture, sources: &[Vec<Source>]) -> Vec<Option<usize>> {
    let mut first: HashMap<(String, &[Source]), usize> = HashMap::new();
    arch.layers
        .iter()
        .zip(sources)
        .enumerate()
        .map(|(i, (spec, sources))| {
            if !matches!(spec.op, Op::Relu | Op::Sigmoid | Op::Tanh) {
                return None;
            }
            let k = *first.entry((spec.op.name(), sources)).or_insert(i);
            (k != i).then_some(k)
        })
        .collect()
}

/// Tensors paired by name and shape, and the report of the pairing.
struct Matched<'s, S> {
    pairs: Vec<(&'s Tensor, S)>,
    report: Inheritance,
}

/// A tensor whose name matched but whose shape did not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reshaped {
    pub name: String,
    pub saved: Vec<usize>,
    pub here: Vec<usize>,
}

/// What copying tensors by name and shape did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inheritance {
    /// Copied (name and shape matched).
    pub copied: Vec<String>,
    /// Not copied: the name matched, the shape did not.
    pub reshaped: Vec<Reshaped>,
    /// This network's tensors that the source did not have (left as they were).
    pub missing: Vec<String>,
    /// The source's tensors that this network does not have.
    pub unused: Vec<String>,
}

impl Inheritance {
    /// The first difference that stops the source from being this network's
    /// exact state, named.
    pub fn mismatch(&self) -> Option<String> {
        if let Some(r) = self.reshaped.first() {
            return Some(format!(
                "tensor {:?} has shape {:?}, this network's is {:?}",
                r.name, r.saved, r.here
            ));
        }
        if let Some(name) = self.missing.first() {
            return Some(format!("has no tensor {name:?}"));
        }
        self.unused
            .first()
            .map(|name| format!("has tensor {name:?}, which this network does not have"))
    }
}

/// The layer of `op` on inputs of `in_shapes`, complex pairs when `complex`.
#[allow(clippy::too_many_arguments)]
fn build_layer(
    gpu: &Gpu,
    op: &Op,
    in_shapes: &[Vec<usize>],
    complex: bool,
    classes: usize,
    init: Init,
    rng: &mut Rng,
    salt: u64,
) -> Result<Box<dyn Layer>, String> {
    let gpu_err = |e: crate::gpu::GpuError| e.to_string();
    if complex {
        return build_complex_layer(gpu, op, in_shapes, classes, init, rng);
    }
    Ok(match *op {
        Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } => {
            let (g, bias) = conv_of(op, spatial(single(in_shapes)?)?).expect("a convolution");
            Box::new(Conv2dLayer::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::SeparableConv2d { .. } => {
            let (g, bias) = conv_of(op, spatial(single(in_shapes)?)?).expect("a convolution");
            Box::new(SeparableConv2d::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::Dense { units, bias } => {
            let inputs = single(in_shapes)?.iter().product();
            let units = units.unwrap_or(classes);
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
        Op::GlobalAvgPool => Box::new(GlobalAvgPool::new(single(in_shapes)?)),
        Op::BatchNorm {
            affine,
            eps,
            momentum,
        } => {
            let input = single(in_shapes)?;
            Box::new(BatchNormLayer::new(gpu, input, eps, momentum, affine).map_err(gpu_err)?)
        }
        Op::Relu => Box::new(ActivationLayer::new(Activation::Relu, single(in_shapes)?)),
        Op::Sigmoid => Box::new(ActivationLayer::new(
            Activation::Sigmoid,
            single(in_shapes)?,
        )),
        Op::Tanh => Box::new(ActivationLayer::new(Activation::Tanh, single(in_shapes)?)),
        Op::Dropout { rate } => Box::new(Dropout::new(rate, salt, single(in_shapes)?)),
        Op::Flatten => Box::new(Flatten::new(single(in_shapes)?)),
        Op::ToSequence => Box::new(ToSequence::new(single(in_shapes)?)),
        Op::Lstm { hidden, returns } => {
            let (time, features) = lstm_steps(single(in_shapes)?)?;
            let returns = match returns {
                LstmReturns::Last => LstmReturn::Last,
                LstmReturns::Sequence => LstmReturn::Sequence,
            };
            Box::new(Lstm::new(gpu, time, features, hidden, returns, rng).map_err(gpu_err)?)
        }
        Op::Add => Box::new(Add::new(&in_shapes[0])),
        Op::Multiply => Box::new(Multiply::new(&in_shapes[0])),
        Op::WeightedSum { ref weights } => Box::new(WeightedSum::new(&in_shapes[0], weights)),
        Op::Concat => Box::new(Concat::new(in_shapes)),
        Op::Crop { start } => Box::new(Crop::new(spatial(single(in_shapes)?)?, start.0)),
        Op::ArchWeights {
            rows,
            candidates,
            weighting,
            init_scale,
            regulariser,
            gates,
        } => {
            let weighting = match weighting {
                Weighting::Softmax => EdgeWeighting::Softmax,
                Weighting::Sigmoid => EdgeWeighting::Sigmoid,
            };
            let kind = |kind: RegulariserKind| match kind {
                RegulariserKind::ZeroOne => Regulariser::ZeroOne,
                RegulariserKind::Gini => Regulariser::Gini,
                RegulariserKind::Entropy => Regulariser::Entropy,
            };
            let regulariser = regulariser.map(|r| (kind(r.kind), r.weight));
            let mut layer = ArchWeights::new(gpu, rows, candidates, weighting, init_scale, rng)
                .and_then(|a| a.regularised(gpu, regulariser))
                .map_err(gpu_err)?;
            if let Some(g) = gates {
                layer = layer
                    .gated(gpu, g.nodes, kind(g.purity), g.weight)
                    .map_err(gpu_err)?;
            }
            Box::new(layer)
        }
        Op::Mixed { row, ref columns } => Box::new(Mixed::new(row, columns.clone(), &in_shapes[1])),
        Op::ComplexConv2d { .. }
        | Op::ComplexDepthwiseConv2d { .. }
        | Op::ComplexDense { .. }
        | Op::ComplexBatchNorm { .. }
        | Op::Crelu
        | Op::Modrelu
        | Op::Zrelu
        | Op::Magnitude
        | Op::ReIm => return Err("takes complex values".into()),
    })
}

/// The layer of an op on complex inputs (shapes ending in the pair axis).
fn build_complex_layer(
    gpu: &Gpu,
    op: &Op,
    in_shapes: &[Vec<usize>],
    classes: usize,
    init: Init,
    rng: &mut Rng,
) -> Result<Box<dyn Layer>, String> {
    let gpu_err = |e: crate::gpu::GpuError| e.to_string();
    let input = || single(in_shapes);
    let planes = || -> Result<[usize; 3], String> { spatial(&logical(input()?)) };
    let unary = |kind| -> Result<Box<dyn Layer>, String> {
        Ok(Box::new(ComplexUnaryLayer::new(kind, input()?)))
    };
    Ok(match *op {
        Op::ComplexConv2d { .. } | Op::ComplexDepthwiseConv2d { .. } => {
            let (g, bias) = conv_of(op, planes()?).expect("a convolution");
            Box::new(ComplexConv2dLayer::new(gpu, g, bias, init, rng).map_err(gpu_err)?)
        }
        Op::ComplexDense { units, bias } => {
            let inputs = logical(input()?).iter().product();
            let units = units.unwrap_or(classes);
            let layer = ComplexDenseLayer::new(gpu, inputs, units, bias, init, rng);
            Box::new(layer.map_err(gpu_err)?)
        }
        Op::ComplexBatchNorm {
            affine,
            eps,
            momentum,
        } => {
            let layer = ComplexBatchNormLayer::new(gpu, input()?, eps, momentum, affine);
            Box::new(layer.map_err(gpu_err)?)
        }
        Op::Crelu => unary(ComplexUnary::Crelu)?,
        Op::Zrelu => unary(ComplexUnary::Zrelu)?,
        Op::Magnitude => unary(ComplexUnary::Magnitude)?,
        Op::ReIm => unary(ComplexUnary::ReIm)?,
        Op::Modrelu => Box::new(ModRelu::new(gpu, input()?).map_err(gpu_err)?),
        Op::MaxPool2d {
            kernel,
            stride,
            padding,
        } => {
            let stride = pair_stride(stride, kernel);
            let pool = Pool::new(PoolKind::Max, planes()?, kernel.0, stride, padding.0);
            Box::new(pool.map_err(gpu_err)?.complex(true))
        }
        Op::AvgPool2d {
            kernel,
            stride,
            padding,
            count_include_pad,
        } => {
            let stride = pair_stride(stride, kernel);
            let kind = PoolKind::Avg { count_include_pad };
            let pool = Pool::new(kind, planes()?, kernel.0, stride, padding.0);
            Box::new(pool.map_err(gpu_err)?.complex(true))
        }
        Op::GlobalAvgPool => Box::new(GlobalAvgPool::complex(input()?)),
        Op::Flatten => Box::new(Flatten::complex(input()?)),
        Op::Multiply => Box::new(Multiply::complex(&in_shapes[0])),
        Op::Crop { start } => Box::new(Crop::complex(planes()?, start.0)),
        // Elementwise on the floats, so the same in either field.
        Op::Add | Op::WeightedSum { .. } | Op::Concat | Op::Mixed { .. } => {
            return build_layer(gpu, op, in_shapes, false, classes, init, rng, 0)
        }
        _ => return Err("takes real values".into()),
    })
}

//! Training sessions: data opened and prepared once and kept in memory, and
//! a network trained on it with one optimizer per parameter group. The one
//! training step of the code base lives here: `train`, `bench` and every
//! search call `Session::step`.
//!
//! A step is made of parts, each a batch (from any split) that trains some
//! groups: a plain step is one part training `weights`; a bi-level search
//! step is an architecture part on one split (batch norm's running
//! statistics frozen) then a weights part on another. All parts are
//! recorded into one submit, each batch in GPU buffers of its own.
//!
//! An architecture part may be *unrolled* (second-order DARTS): its groups
//! then take the gradient of their loss after one virtual step of the
//! weights, and the weights come back exactly as they were.

use super::config::{Experiment, TrainConfig};
use super::model_file::{load_checkpoint_file, save_checkpoint_file, ModelInfo, Standing};
use super::schedule::LrSchedule;
use crate::data::augment::AugmentConfig;
use crate::data::batch::{Batch, BatchConfig, BatchLoader, GpuBatch};
use crate::data::dataset::{DataSet, Split};
use crate::data::prepare::{prepare, PrepareOptions, Prepared};
use crate::gpu::{Gpu, KernelTime, Recorder, Tensor};
use crate::kernels::elementwise::{axpy, axpy_by, scale, ByScalar};
use crate::kernels::reductions::SquaresPlan;
use crate::kernels::softmax_xent::{softmax_cross_entropy, SoftmaxXent, XentOutputs};
use crate::model::Network;
use crate::nn::optim::{Optimizer, OptimizerKind};
use crate::nn::{Pass, WEIGHTS};
use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file in a run folder that says which data the run used.
pub const DATA_RECORD_FILE: &str = "data.json";

/// Which data a run used: where it was, its classes and how many clips
/// each split had; `id` is a digest of the folder, the classes and every
/// clip's source, label and split, so that two runs compare only when
/// they used the same clips in the same splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub root: PathBuf,
    pub id: String,
    pub classes: Vec<String>,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    /// How the clips were split, in words.
    pub split: String,
}

/// A data set opened and its features prepared, checked for training; open
/// it once and train any number of networks on it.
pub struct Data {
    pub set: DataSet,
    pub prepared: Arc<Prepared>,
}

impl Data {
    pub fn open(
        dir: &Path,
        experiment: &Experiment,
        options: &PrepareOptions,
    ) -> anyhow::Result<Data> {
        let set = DataSet::open(dir, &experiment.data)?;
        let prepared = prepare(&set, &experiment.features, options)?;
        let mut counts = vec![[0usize; 3]; prepared.classes.len()];
        for clip in &prepared.clips {
            counts[clip.label][clip.split as usize] += 1;
        }
        if let Some((class, _)) = prepared
            .classes
            .iter()
            .zip(&counts)
            .find(|(_, c)| c[Split::Train as usize] == 0)
        {
            bail!(
                "{}: class {class:?} has no usable training clips; add WAV files to its folder (or remove it), or change the split",
                dir.display()
            );
        }
        Ok(Data {
            set,
            prepared: Arc::new(prepared),
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.prepared.classes
    }

    /// What identifies this data, for a run's `data.json`.
    pub fn record(&self) -> DataRecord {
        let count = |split: Split| self.set.clips.iter().filter(|c| c.split == split).count();
        let root = self
            .set
            .root
            .canonicalize()
            .unwrap_or(self.set.root.clone());
        let listing = serde_json::to_string(&(&root, &self.set.classes, &self.set.clips))
            .expect("clips serialise");
        DataRecord {
            root,
            id: crate::data::dataset::sha1_hex(&listing)[..16].to_string(),
            classes: self.set.classes.clone(),
            train: count(Split::Train),
            validation: count(Split::Validation),
            test: count(Split::Test),
            split: self.set.split_note.clone(),
        }
    }

    /// Writes `data.json` into the run folder `dir` (atomically).
    pub fn write_record(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.record())?;
        super::atomic::write_durably(&dir.join(DATA_RECORD_FILE), text.as_bytes())?;
        Ok(())
    }

    /// A loader of `split`: the training split shuffled, augmented and
    /// without its last partial batch; the others in order, as they are.
    pub fn loader(
        &self,
        experiment: &Experiment,
        split: Split,
        batch_size: usize,
    ) -> anyhow::Result<BatchLoader> {
        let training = split == Split::Train;
        let config = BatchConfig {
            batch_size,
            seed: experiment.train.seed,
            drop_last: training,
            shuffle: training,
            augment: if training {
                experiment.augment.clone()
            } else {
                AugmentConfig::none()
            },
        };
        Ok(BatchLoader::new(
            &self.set,
            self.prepared.clone(),
            &experiment.features,
            split,
            config,
        )?)
    }
}

/// Loss, accuracy and confusion of a network on some batches.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub samples: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

impl Evaluation {
    /// Scores logits `[samples, classes]` against their labels; the loss is
    /// the plain cross-entropy (no label smoothing).
    pub fn of(predictions: &Predictions) -> Evaluation {
        let classes = predictions.classes;
        let mut confusion = vec![vec![0u64; classes]; classes];
        let mut loss = 0.0f64;
        for (row, &label) in predictions
            .logits
            .chunks_exact(classes)
            .zip(&predictions.labels)
        {
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = top
                + row
                    .iter()
                    .map(|&z| (z as f64 - top).exp())
                    .sum::<f64>()
                    .ln();
            loss += lse - row[label as usize] as f64;
            let predicted =
                (0..classes).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            confusion[label as usize][predicted] += 1;
        }
        let samples = predictions.labels.len();
        let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
        let per = |v: f64| {
            if samples == 0 {
                0.0
            } else {
                v / samples as f64
            }
        };
        Evaluation {
            samples,
            loss: per(loss),
            accuracy: per(correct as f64),
            confusion,
        }
    }

    /// Precision and recall of each class (0 where undefined).
    pub fn precision_recall(&self) -> Vec<(f64, f64)> {
        let n = self.confusion.len();
        (0..n)
            .map(|c| {
                let tp = self.confusion[c][c] as f64;
                let predicted: u64 = (0..n).map(|t| self.confusion[t][c]).sum();
                let actual: u64 = self.confusion[c].iter().sum();
                let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
                (ratio(tp, predicted), ratio(tp, actual))
            })
            .collect()
    }
}

/// The logits of every sample of some batches, with their labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    pub classes: usize,
    /// `[samples, classes]`, row-major.
    pub logits: Vec<f32>,
    pub labels: Vec<u32>,
}

impl Predictions {
    /// Each sample's cross-entropy against its label.
    pub fn cross_entropies(&self) -> Vec<f32> {
        self.logits
            .chunks_exact(self.classes.max(1))
            .zip(&self.labels)
            .map(|(row, &label)| {
                let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = row.iter().map(|&z| (z - top).exp()).sum();
                top + sum.ln() - row[label as usize]
            })
            .collect()
    }
}

/// Runs `network` in inference mode over `batches` (only what its mask
/// leaves on) and reads the logits back.
pub fn predict(
    gpu: &Gpu,
    network: &mut Network,
    batches: impl Iterator<Item = Batch>,
) -> anyhow::Result<Predictions> {
    let mut out = Predictions {
        classes: network.classes(),
        ..Predictions::default()
    };
    let mut input: Option<GpuBatch> = None;
    for batch in batches {
        let x = &load_batch(gpu, &mut input, &batch)?.features;
        let mut rec = gpu.recorder();
        let logits = network.forward(&mut rec, x, Pass::eval())?;
        rec.submit()?;
        out.logits.extend(gpu.download(&logits)?);
        out.labels.extend(&batch.labels);
    }
    Ok(out)
}

/// Loss, accuracy and confusion of `network` on `batches`.
pub fn evaluate(
    gpu: &Gpu,
    network: &mut Network,
    batches: impl Iterator<Item = Batch>,
) -> anyhow::Result<Evaluation> {
    Ok(Evaluation::of(&predict(gpu, network, batches)?))
}

/// Writes `batch` into `slot`'s GPU buffers (made on first use).
fn load_batch<'s>(
    gpu: &Gpu,
    slot: &'s mut Option<GpuBatch>,
    batch: &Batch,
) -> anyhow::Result<&'s GpuBatch> {
    match slot {
        Some(b) => b.load(gpu, batch)?,
        None => *slot = Some(GpuBatch::upload(gpu, batch)?),
    }
    Ok(slot.as_ref().expect("loaded just now"))
}

/// A parameter group's optimizer and learning-rate rule.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    pub name: &'static str,
    pub optimizer: OptimizerKind,
    /// The base learning rate (the schedule scales it).
    pub lr: f64,
    pub schedule: LrSchedule,
    pub weight_decay: f64,
    pub clip_norm: Option<f64>,
}

impl GroupConfig {
    /// The `weights` group as an experiment's `[train]` sets it.
    pub fn weights(experiment: &Experiment) -> GroupConfig {
        let t = &experiment.train;
        GroupConfig {
            name: WEIGHTS,
            optimizer: t.optimizer,
            lr: t.lr,
            schedule: t.schedule.clone(),
            weight_decay: t.weight_decay,
            clip_norm: t.clip_norm,
        }
    }
}

struct Group {
    config: GroupConfig,
    optimizer: Optimizer,
}

/// How a session trains, besides its groups.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub batch_size: usize,
    pub label_smoothing: f64,
    /// Seeds each step's dropout masks (with the step number).
    pub seed: u64,
    /// For the learning-rate schedules.
    pub steps_per_epoch: u64,
    pub epochs: u64,
    /// Steps whose loss and correct count are kept on the GPU before they
    /// are read back.
    pub log_every: usize,
}

impl SessionConfig {
    /// As an experiment's `[train]` sets it, with `steps_per_epoch` from its data.
    pub fn of(train: &TrainConfig, steps_per_epoch: u64) -> SessionConfig {
        SessionConfig {
            batch_size: train.batch_size,
            label_smoothing: train.label_smoothing,
            seed: train.seed,
            steps_per_epoch,
            epochs: train.epochs as u64,
            log_every: train.log_every,
        }
    }
}

/// One part of a step: a batch and the groups it trains.
#[derive(Clone, Copy, Debug)]
pub struct StepPart<'a> {
    pub batch: &'a Batch,
    pub groups: &'a [&'static str],
    /// Keep batch norm's running statistics as they are.
    pub freeze_stats: bool,
    /// Train `groups` on their loss after a virtual step of other weights.
    pub unrolled: Option<Unrolled<'a>>,
}

impl<'a> StepPart<'a> {
    /// A part that trains `groups` on `batch`.
    pub fn new(batch: &'a Batch, groups: &'a [&'static str]) -> Self {
        StepPart {
            batch,
            groups,
            freeze_stats: false,
            unrolled: None,
        }
    }

    pub fn frozen_stats(self) -> Self {
        StepPart {
            freeze_stats: true,
            ..self
        }
    }

    /// Second-order DARTS: `groups` take the gradient of the loss on
    /// `batch` at the weights one virtual SGD step of group `weights` on
    /// `train` would reach (see [`Unrolled`]).
    pub fn unrolled(self, train: &'a Batch, weights: &'static str) -> Self {
        StepPart {
            unrolled: Some(Unrolled { train, weights }),
            ..self
        }
    }
}

/// The virtual step of an unrolled part, as the DARTS reference's
/// `architect.py` takes it. With `L_t` the loss on `train`, `L_v` the loss
/// on the part's batch, `a` the part's parameters and `w` those of group
/// `weights` (SGD with momentum `mu`, weight decay `wd`, learning rate `eta`
/// of this step, momentum buffer `b`):
///
/// - `w' = w - eta * (mu * b + grad_w L_t(w, a) + wd * w)`: the update the
///   weights' next step would make, without clipping;
/// - `g = grad_a L_v(w', a)` and `v = grad_w' L_v(w', a)`;
/// - `e = 0.01 / |v|`, `g+ = grad_a L_t(w + e v, a)`, `g- = grad_a L_t(w - e v, a)`;
/// - the part's groups step with `g - eta * (g+ - g-) / (2 e)`, the gradient
///   of `L_v(w'(a), a)` with its Hessian-vector product taken by finite
///   differences.
///
/// With Nesterov momentum the next update is `w - eta * ((1 + mu) *
/// (grad + wd * w) + mu^2 * b)`, so `eta` of the last line is `(1 + mu) * eta`.
///
/// The weights are then copied back as they were. Every pass runs in
/// training mode on batch statistics without moving batch norm's running
/// ones, and the part logs `L_v(w', a)` and its accuracy.
#[derive(Clone, Copy, Debug)]
pub struct Unrolled<'a> {
    pub train: &'a Batch,
    pub weights: &'static str,
}

/// The norm of `e * v` in an unrolled part, as in the reference.
const UNROLLED_RADIUS: f32 = 0.01;

/// The parts of a step a session can record (a bi-level step has two).
pub const MAX_PARTS: usize = 2;

/// What the logged steps of one part added up to.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PartTotals {
    /// Sum over steps of the batch-mean loss.
    pub loss_sum: f64,
    pub correct: u64,
    pub steps: usize,
    /// The first loss that was not finite.
    pub bad_loss: Option<f32>,
}

impl PartTotals {
    fn add(&mut self, loss: f32, correct: u64) {
        if !loss.is_finite() {
            self.bad_loss.get_or_insert(loss);
        }
        self.loss_sum += loss as f64;
        self.correct += correct;
        self.steps += 1;
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }
}

/// What unrolled parts keep between steps (made on their first step):
/// copies of the weights `w`, of the direction `v` and of the architecture
/// gradients, by parameter name, and the norm of `v`.
#[derive(Default)]
struct UnrolledBuffers {
    copies: HashMap<String, Tensor>,
    norm: Option<Tensor>,
    /// The plan of `|v|` and the tensor lengths it was made for.
    plan: Option<(Vec<usize>, SquaresPlan)>,
}

impl UnrolledBuffers {
    /// The copy `what` of a parameter, of `like`'s shape.
    fn copy(&mut self, gpu: &Gpu, name: &str, what: &str, like: &Tensor) -> anyhow::Result<Tensor> {
        let key = format!("{name}.{what}");
        if let Some(t) = self.copies.get(&key) {
            return Ok(t.clone());
        }
        let t = gpu.zeros(like.shape())?;
        self.copies.insert(key, t.clone());
        Ok(t)
    }
}

/// A network in training: its optimizer groups, the buffers of a step, the
/// per-step log and where training stands.
pub struct Session<'g> {
    gpu: &'g Gpu,
    pub network: Network,
    groups: Vec<Group>,
    config: SessionConfig,
    xent: SoftmaxXent,
    sample_loss: Tensor,
    dlogits: Tensor,
    correct: Tensor,
    mean_loss: Tensor,
    /// Each part's batch in its own buffers, then each unrolled part's
    /// training batch.
    inputs: Vec<Option<GpuBatch>>,
    unrolled: UnrolledBuffers,
    /// `[log_every, MAX_PARTS, 2]`: each logged step's loss and correct count per part.
    log: Tensor,
    logged: usize,
    logged_parts: usize,
    totals: [PartTotals; MAX_PARTS],
    pub standing: Standing,
}

impl<'g> Session<'g> {
    /// A session training every parameter of `network` as the `weights`
    /// group, all as `experiment`'s `[train]` sets it.
    pub fn of_weights(
        gpu: &'g Gpu,
        network: Network,
        experiment: &Experiment,
        steps_per_epoch: u64,
    ) -> anyhow::Result<Session<'g>> {
        Session::new(
            gpu,
            network,
            &[GroupConfig::weights(experiment)],
            SessionConfig::of(&experiment.train, steps_per_epoch),
        )
    }

    /// A session training `network` with one optimizer per group; every
    /// parameter must belong to one of the groups.
    pub fn new(
        gpu: &'g Gpu,
        network: Network,
        groups: &[GroupConfig],
        config: SessionConfig,
    ) -> anyhow::Result<Session<'g>> {
        if config.batch_size == 0 || config.log_every == 0 {
            bail!("a session needs a batch size and log_every of at least 1");
        }
        if let Some((name, p)) = network
            .named_params()
            .into_iter()
            .find(|(_, p)| !groups.iter().any(|g| g.name == p.group))
        {
            bail!(
                "parameter {name:?} is in group {:?}, which has no optimizer (groups: {})",
                p.group,
                groups.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
            );
        }
        let groups = groups
            .iter()
            .map(|g| {
                let params: Vec<(String, &crate::nn::Param)> = network
                    .named_params()
                    .into_iter()
                    .filter(|(_, p)| p.group == g.name)
                    .collect();
                let optimizer = Optimizer::new(
                    gpu,
                    g.optimizer,
                    g.weight_decay as f32,
                    g.clip_norm.map(|c| c as f32),
                    &params,
                )?;
                Ok(Group {
                    config: g.clone(),
                    optimizer,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (batch, classes) = (config.batch_size, network.classes());
        Ok(Session {
            gpu,
            xent: SoftmaxXent::new(batch, classes).label_smoothing(config.label_smoothing as f32),
            sample_loss: gpu.empty(&[batch])?,
            dlogits: gpu.empty(&[batch, classes])?,
            correct: gpu.empty(&[1])?,
            mean_loss: gpu.empty(&[1])?,
            inputs: (0..2 * MAX_PARTS).map(|_| None).collect(),
            unrolled: UnrolledBuffers::default(),
            log: gpu.zeros(&[config.log_every, MAX_PARTS, 2])?,
            logged: 0,
            logged_parts: 0,
            totals: [PartTotals::default(); MAX_PARTS],
            standing: Standing::start(),
            network,
            groups,
            config,
        })
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The learning rate of `group` at the current step.
    pub fn lr(&self, group: &str) -> Option<f64> {
        self.groups
            .iter()
            .find(|g| g.config.name == group)
            .map(|g| self.lr_of(&g.config))
    }

    /// The optimizer of `group` (to read its state).
    pub fn optimizer(&self, group: &str) -> Option<&Optimizer> {
        self.groups
            .iter()
            .find(|g| g.config.name == group)
            .map(|g| &g.optimizer)
    }

    fn group_index(&self, name: &str) -> anyhow::Result<usize> {
        self.groups
            .iter()
            .position(|g| g.config.name == name)
            .ok_or_else(|| {
                anyhow!("a step part trains group {name:?}, which this session does not have")
            })
    }

    fn lr_of(&self, g: &GroupConfig) -> f64 {
        g.schedule.lr_at(
            g.lr,
            self.standing.step,
            self.config.steps_per_epoch,
            self.config.epochs,
        )
    }

    /// Records one step (its parts in order, in one submit) and submits it
    /// without waiting.
    pub fn step(&mut self, parts: &[StepPart]) -> anyhow::Result<()> {
        self.record(parts)?.submit()?;
        Ok(())
    }

    /// Records one step without submitting it (to time the recording); the
    /// caller submits the recorder it gets.
    pub fn record(&mut self, parts: &[StepPart]) -> anyhow::Result<Recorder<'g>> {
        let rec = self.gpu.recorder();
        self.record_step(rec, parts)
    }

    /// A step whose every dispatch is timed (it waits for the GPU).
    pub fn step_timed(&mut self, parts: &[StepPart]) -> anyhow::Result<Vec<KernelTime>> {
        let rec = self.gpu.timed_recorder();
        Ok(self.record_step(rec, parts)?.submit_timed()?)
    }

    fn record_step<'r>(
        &mut self,
        mut rec: Recorder<'r>,
        parts: &[StepPart],
    ) -> anyhow::Result<Recorder<'r>>
    where
        'g: 'r,
    {
        if parts.is_empty() || parts.len() > MAX_PARTS {
            bail!("a step has 1 to {MAX_PARTS} parts, given {}", parts.len());
        }
        if self.logged == self.config.log_every
            || (self.logged > 0 && self.logged_parts != parts.len())
        {
            self.read_log()?;
        }
        let gpu = self.gpu;
        let lrs: Vec<f32> = self
            .groups
            .iter()
            .map(|g| self.lr_of(&g.config) as f32)
            .collect();
        for (k, part) in parts.iter().enumerate() {
            let batches = std::iter::once(part.batch).chain(part.unrolled.map(|u| u.train));
            if let Some(b) = batches
                .clone()
                .find(|b| b.labels.len() != self.config.batch_size)
            {
                bail!(
                    "a training batch has {} samples; this session trains on batches of {}",
                    b.labels.len(),
                    self.config.batch_size
                );
            }
            for (slot, batch) in [k, MAX_PARTS + k].into_iter().zip(batches) {
                load_batch(gpu, &mut self.inputs[slot], batch)?;
            }
            let groups = part
                .groups
                .iter()
                .map(|name| self.group_index(name))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut pass = Pass::train(step_seed(self.config.seed, self.standing.step, k));
            pass.freeze_stats = part.freeze_stats;
            match part.unrolled {
                None => self.forward_backward(&mut rec, k, pass)?,
                Some(unrolled) => {
                    self.record_unrolled(&mut rec, k, pass, &groups, unrolled.weights, &lrs)?
                }
            }
            for (&g, name) in groups.iter().zip(part.groups) {
                let params = self.network.trained_params(name);
                self.groups[g].optimizer.step(&mut rec, &params, lrs[g])?;
            }
        }
        self.logged += 1;
        self.logged_parts = parts.len();
        self.standing.step += 1;
        Ok(rec)
    }

    /// Records the forward pass, loss and backward pass of the batch in
    /// input slot `slot`; a slot below `MAX_PARTS` is that part's batch,
    /// whose loss and correct count go to the log.
    fn forward_backward(
        &mut self,
        rec: &mut Recorder,
        slot: usize,
        pass: Pass,
    ) -> anyhow::Result<()> {
        let input = self.inputs[slot]
            .as_ref()
            .expect("a part's batches are loaded first");
        let logits = self.network.forward(rec, &input.features, pass)?;
        let outputs = XentOutputs {
            loss: &self.sample_loss,
            grad: &self.dlogits,
            correct: &self.correct,
            mean_loss: Some(&self.mean_loss),
        };
        softmax_cross_entropy(rec, &self.xent, &logits, &input.labels, &outputs)?;
        self.network.backward(rec, &self.dlogits)?;
        if slot < MAX_PARTS {
            let at = 2 * (self.logged * MAX_PARTS + slot);
            rec.copy_range(&self.mean_loss, 0, &self.log, at, 1)?;
            rec.copy_range(&self.correct, 0, &self.log, at + 1, 1)?;
        }
        Ok(())
    }

    /// Records the passes of unrolled part `k` (see [`Unrolled`]) up to the
    /// point where the gradients of `groups` are those to step with. The
    /// whole of it stays on the GPU: `e` and `1 / e` are applied from the
    /// norm of `v` where it was computed, so the step needs no wait.
    fn record_unrolled(
        &mut self,
        rec: &mut Recorder,
        k: usize,
        pass: Pass,
        groups: &[usize],
        weights: &'static str,
        lrs: &[f32],
    ) -> anyhow::Result<()> {
        let w = self.group_index(weights)?;
        if groups.contains(&w) {
            bail!("an unrolled step part cannot train group {weights:?}, the one it unrolls");
        }
        let (momentum, nesterov) = match self.groups[w].config.optimizer {
            OptimizerKind::Sgd { momentum, nesterov } => (momentum, nesterov),
            _ => bail!(
                "an unrolled step takes a virtual SGD step of group {weights:?}, which trains with {:?}; use SGD",
                self.groups[w].config.optimizer
            ),
        };
        let (grad_factor, buffer_factor) = if nesterov {
            (1.0 + momentum, momentum * momentum)
        } else {
            (1.0, momentum)
        };
        let eta = lrs[w];
        let decay = self.groups[w].config.weight_decay as f32;
        let gpu = self.gpu;
        // One seed for the passes on the training batch, so that dropout
        // drops the same units at w, w + e v and w - e v.
        let train_pass = Pass::train(step_seed(
            self.config.seed,
            self.standing.step,
            MAX_PARTS + k,
        ))
        .frozen_stats();

        // w' = w - eta * (mu * b + grad + wd * w), w kept aside.
        self.forward_backward(rec, MAX_PARTS + k, train_pass)?;
        let trained: Vec<(String, Tensor, Tensor, bool)> = self
            .network
            .trained_params(weights)
            .into_iter()
            .map(|(name, p)| (name, p.value.clone(), p.grad.clone(), p.decay))
            .collect();
        let mut saved = Vec::with_capacity(trained.len());
        for (name, value, grad, decays) in &trained {
            let copy = self.unrolled.copy(gpu, name, "w", value)?;
            rec.copy(value, &copy)?;
            saved.push(copy);
            if *decays && decay != 0.0 {
                scale(rec, value, 1.0 - eta * grad_factor * decay)?;
            }
            axpy(rec, -eta * grad_factor, grad, value)?;
            if buffer_factor != 0.0 {
                let buffer = self.groups[w]
                    .optimizer
                    .momentum_buffer(name)
                    .ok_or_else(|| {
                        anyhow!("group {weights:?} has no momentum buffer of {name:?}")
                    })?;
                axpy(rec, -eta * buffer_factor, buffer, value)?;
            }
        }

        // L_v(w', a): its gradients g and v, both kept, and |v|.
        self.forward_backward(rec, k, pass.frozen_stats())?;
        let arch: Vec<(String, Tensor)> = groups
            .iter()
            .flat_map(|&g| self.network.trained_params(self.groups[g].config.name))
            .map(|(name, p)| (name, p.grad.clone()))
            .collect();
        let mut unrolled_grads = Vec::with_capacity(arch.len());
        for (name, grad) in &arch {
            let copy = self.unrolled.copy(gpu, name, "grad", grad)?;
            rec.copy(grad, &copy)?;
            unrolled_grads.push(copy);
        }
        let mut direction = Vec::with_capacity(trained.len());
        for (name, _, grad, _) in &trained {
            let copy = self.unrolled.copy(gpu, name, "v", grad)?;
            rec.copy(grad, &copy)?;
            direction.push(copy);
        }
        let lens: Vec<usize> = direction.iter().map(Tensor::len).collect();
        if self.unrolled.plan.as_ref().is_none_or(|(l, _)| *l != lens) {
            self.unrolled.plan = Some((lens.clone(), SquaresPlan::new(gpu, &lens)?));
        }
        let norm = match &self.unrolled.norm {
            Some(n) => n.clone(),
            None => self.unrolled.norm.insert(gpu.zeros(&[1])?).clone(),
        };
        let (_, plan) = self.unrolled.plan.as_ref().expect("made above");
        plan.global_norm(rec, &direction.iter().collect::<Vec<_>>(), &norm)?;

        // g - eta * (g+ - g-) / (2 e) = g - eta * |v| / (2 * 0.01) * (g+ - g-),
        // g+ taken at w + e v and g- at w - e v, eta being the factor of
        // grad_w L_t in w'; then w is restored.
        let hessian_factor = eta * grad_factor / (2.0 * UNROLLED_RADIUS);
        for sign in [1.0, -1.0] {
            for ((_, value, _, _), (from, v)) in trained.iter().zip(saved.iter().zip(&direction)) {
                rec.copy(from, value)?;
                axpy_by(rec, sign * UNROLLED_RADIUS, &norm, ByScalar::Over, v, value)?;
            }
            self.forward_backward(rec, MAX_PARTS + k, train_pass)?;
            for ((_, grad), g) in arch.iter().zip(&unrolled_grads) {
                axpy_by(rec, -sign * hessian_factor, &norm, ByScalar::Times, grad, g)?;
            }
        }
        for ((_, value, _, _), from) in trained.iter().zip(&saved) {
            rec.copy(from, value)?;
        }
        for ((_, grad), g) in arch.iter().zip(&unrolled_grads) {
            rec.copy(g, grad)?;
        }
        Ok(())
    }

    /// Moves the steps kept on the GPU into the totals.
    fn read_log(&mut self) -> anyhow::Result<()> {
        if self.logged == 0 {
            return Ok(());
        }
        let values = self.gpu.download(&self.log)?;
        for step in values.chunks_exact(2 * MAX_PARTS).take(self.logged) {
            for (k, totals) in self.totals.iter_mut().enumerate().take(self.logged_parts) {
                totals.add(step[2 * k], step[2 * k + 1].to_bits() as u64);
            }
        }
        self.logged = 0;
        Ok(())
    }

    /// Each part's totals since the last call (this reads the log back).
    pub fn take_totals(&mut self) -> anyhow::Result<[PartTotals; MAX_PARTS]> {
        self.read_log()?;
        Ok(std::mem::take(&mut self.totals))
    }

    /// The loss of each sample of the last batch the last step trained on
    /// (its last part). Reading it back waits for the step to finish.
    pub fn sample_losses(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.gpu.download(&self.sample_loss)?)
    }

    /// The logits of `batches` in inference mode.
    pub fn predict(&mut self, batches: impl Iterator<Item = Batch>) -> anyhow::Result<Predictions> {
        predict(self.gpu, &mut self.network, batches)
    }

    /// Loss, accuracy and confusion on `batches`.
    pub fn evaluate(&mut self, batches: impl Iterator<Item = Batch>) -> anyhow::Result<Evaluation> {
        evaluate(self.gpu, &mut self.network, batches)
    }

    fn optimizers(&self) -> Vec<(&'static str, &Optimizer)> {
        self.groups
            .iter()
            .map(|g| (g.config.name, &g.optimizer))
            .collect()
    }

    /// Saves the network, every group's optimizer state and the standing
    /// (atomically).
    pub fn save_checkpoint(&self, path: &Path, info: &ModelInfo) -> anyhow::Result<()> {
        save_checkpoint_file(
            self.gpu,
            path,
            &self.network,
            &self.optimizers(),
            info,
            self.standing,
        )
    }

    /// Restores network, optimizer state and standing from a checkpoint of
    /// this network with these groups; anything else is refused by name.
    pub fn resume(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut optimizers: Vec<(&'static str, &mut Optimizer)> = self
            .groups
            .iter_mut()
            .map(|g| (g.config.name, &mut g.optimizer))
            .collect();
        self.standing = load_checkpoint_file(self.gpu, path, &self.network, &mut optimizers)?;
        Ok(())
    }
}

/// A seed for the random choices on the GPU (dropout) of part `part` of
/// step `step`.
fn step_seed(seed: u64, step: u64, part: usize) -> u64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step)
        .wrapping_add((part as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

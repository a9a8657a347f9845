//! The training loop: one submit per step (forward, loss, backward,
//! optimizer), the loss and accuracy read back every `log_every` steps,
//! validation each epoch, the best model and a resumable checkpoint kept
//! after each epoch, metrics and plots in the run folder.

use super::config::Experiment;
use super::metrics::{read_epoch_records, truncate_after_epoch, EpochRecord, MetricsLog};
use super::model_file::{
    load_checkpoint_file, save_checkpoint_file, save_model, ModelInfo, Standing,
};
use super::plots::plot_curves;
use super::progress::Progress;
use super::run_dir::RunDir;
use crate::data::augment::AugmentConfig;
use crate::data::batch::{Batch, BatchConfig, BatchLoader, GpuBatch};
use crate::data::dataset::{DataSet, Split};
use crate::data::prepare::{prepare, PrepareOptions, Prepared};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::softmax_xent::{softmax_cross_entropy, SoftmaxXent, XentOutputs};
use crate::model::Network;
use crate::nn::optim::Optimizer;
use crate::nn::Pass;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A data set opened and its features prepared, checked for training.
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

/// Runs `network` in inference mode over `batches`; the loss is the plain
/// cross-entropy (no label smoothing), computed from the logits read back.
pub fn evaluate(
    gpu: &Gpu,
    network: &mut Network,
    batches: impl Iterator<Item = Batch>,
) -> anyhow::Result<Evaluation> {
    let classes = network.classes();
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut loss, mut samples) = (0.0f64, 0usize);
    let mut input: Option<GpuBatch> = None;
    for batch in batches {
        match &mut input {
            Some(b) => b.load(gpu, &batch)?,
            None => input = Some(GpuBatch::upload(gpu, &batch)?),
        }
        let x = &input.as_ref().expect("loaded").features;
        let mut rec = gpu.recorder();
        let logits = network.forward(&mut rec, x, Pass::eval())?;
        rec.submit()?;
        let logits = gpu.download(&logits)?;
        for (row, &label) in logits.chunks_exact(classes).zip(&batch.labels) {
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
            samples += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    let per = |v: f64| {
        if samples == 0 {
            0.0
        } else {
            v / samples as f64
        }
    };
    Ok(Evaluation {
        samples,
        loss: per(loss),
        accuracy: per(correct as f64),
        confusion,
    })
}

/// How `train` runs, besides the experiment.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub prepare: PrepareOptions,
    /// Continue the run from its last checkpoint.
    pub resume: bool,
    /// Return after this many epochs of this call (the run stays resumable).
    pub stop_after_epochs: Option<usize>,
    /// Print one line per epoch.
    pub verbose: bool,
}

/// What a finished (or stopped) call of `train` reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    /// On the test split, with the best model; only when all epochs are done.
    pub test: Option<Evaluation>,
    pub seconds: f64,
    pub train_samples_per_s: f64,
    pub params: u64,
    pub macs: u64,
}

/// Per-step loss and correct count, copied on the GPU into one tensor that is
/// read back at once.
struct StepLog {
    values: Tensor,
    capacity: usize,
    used: usize,
}

impl StepLog {
    fn new(gpu: &Gpu, capacity: usize) -> anyhow::Result<StepLog> {
        Ok(StepLog {
            values: gpu.zeros(&[capacity, 2])?,
            capacity,
            used: 0,
        })
    }

    /// Reads the logged steps: (sum of mean losses, correct samples, steps, first bad loss).
    fn drain(&mut self, gpu: &Gpu) -> anyhow::Result<(f64, u64, usize, Option<f32>)> {
        if self.used == 0 {
            return Ok((0.0, 0, 0, None));
        }
        let v = gpu.download(&self.values)?;
        let mut sum = 0.0;
        let mut correct = 0;
        let mut bad = None;
        for step in v.chunks_exact(2).take(self.used) {
            if !step[0].is_finite() {
                bad.get_or_insert(step[0]);
            }
            sum += step[0] as f64;
            correct += step[1].to_bits() as u64;
        }
        let steps = self.used;
        self.used = 0;
        Ok((sum, correct, steps, bad))
    }
}

/// A seed for step `step`'s random choices on the GPU (dropout).
fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step
}

/// What to do once the loss is not finite, `epochs_done` epochs into the run:
/// go back to the last checkpoint with other settings, or, when no epoch
/// finished (so there is no checkpoint), start again.
fn divergence_advice(run: &RunDir, epochs_done: usize) -> String {
    if epochs_done == 0 {
        "no epoch finished, so there is no checkpoint to go back to; lower lr or set clip_norm in [train], or check the data, and start again".into()
    } else {
        format!(
            "the last good checkpoint is kept in {} (after epoch {epochs_done}); lower lr or set clip_norm in [train] of {}, or check the data, then resume with --resume",
            run.last_checkpoint().display(),
            run.config().display()
        )
    }
}

/// Trains `experiment` in `run`, from scratch or from its last checkpoint.
pub fn train(
    gpu: &Gpu,
    experiment: &Experiment,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    let cfg = &experiment.train;
    let data = Data::open(&options.data_dir, experiment, &options.prepare)?;
    let classes = data.prepared.classes.clone();
    let train_loader = data.loader(experiment, Split::Train, cfg.batch_size)?;
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    if steps_per_epoch == 0 {
        bail!(
            "{}: {} training clips are fewer than one batch of {}; lower [train] batch_size",
            options.data_dir.display(),
            train_loader.len(),
            cfg.batch_size
        );
    }
    let val_loader = data.loader(experiment, Split::Validation, cfg.batch_size)?;
    let shape = data.prepared.clip_shape;
    let mut network = Network::build(gpu, &experiment.model, &shape, classes.len(), cfg.seed)?;
    let mut optimizer = Optimizer::new(
        gpu,
        cfg.optimizer,
        cfg.weight_decay as f32,
        cfg.clip_norm.map(|c| c as f32),
        &network.params(),
    )?;
    let info = ModelInfo {
        architecture: experiment.model.clone(),
        features: experiment.features.clone(),
        classes: classes.clone(),
    };

    let mut standing = Standing {
        epoch: 0,
        step: 0,
        best_val_accuracy: f64::NEG_INFINITY,
        best_epoch: 0,
    };
    if options.resume && run.last_checkpoint().exists() {
        standing = load_checkpoint_file(gpu, &run.last_checkpoint(), &network, &mut optimizer)
            .context("resuming the run")?;
    }
    if run.metrics().exists() {
        truncate_after_epoch(&run.metrics(), standing.epoch)?;
    }
    let mut metrics = MetricsLog::open(&run.metrics())?;
    if options.verbose {
        println!(
            "{}: {} parameters, {} MACs per clip; {} classes; {} training clips, {} steps per epoch; {}",
            experiment.model.name,
            network.parameter_count(),
            network.macs(),
            classes.len(),
            train_loader.len(),
            steps_per_epoch,
            gpu.describe()
        );
        if standing.epoch > 0 {
            println!("resuming after epoch {}", standing.epoch);
        }
    }

    let batch = cfg.batch_size;
    let xent = SoftmaxXent::new(batch, classes.len()).label_smoothing(cfg.label_smoothing as f32);
    let sample_loss = gpu.empty(&[batch])?;
    let dlogits = gpu.empty(&[batch, classes.len()])?;
    let correct = gpu.empty(&[1])?;
    let mean_loss = gpu.empty(&[1])?;
    let mut log = StepLog::new(gpu, cfg.log_every)?;
    let mut input: Option<GpuBatch> = None;
    let mut train_seconds = 0.0;
    let mut train_samples = 0u64;
    let last_epoch = match options.stop_after_epochs {
        Some(n) => (standing.epoch + n).min(cfg.epochs),
        None => cfg.epochs,
    };

    for epoch in standing.epoch..last_epoch {
        let epoch_start = Instant::now();
        let progress = Progress::new(epoch + 1, cfg.epochs, steps_per_epoch);
        let (mut loss_sum, mut correct_sum, mut steps_seen) = (0.0, 0u64, 0usize);
        let mut lr = 0.0;
        for (i, host_batch) in train_loader.epoch(epoch as u64).enumerate() {
            match &mut input {
                Some(b) => b.load(gpu, &host_batch)?,
                None => input = Some(GpuBatch::upload(gpu, &host_batch)?),
            }
            let b = input.as_ref().expect("loaded");
            lr = cfg
                .schedule
                .lr_at(cfg.lr, standing.step, steps_per_epoch, cfg.epochs as u64);
            let mut rec = gpu.recorder();
            let pass = Pass::train(step_seed(cfg.seed, standing.step));
            let logits = network.forward(&mut rec, &b.features, pass)?;
            let outputs = XentOutputs {
                loss: &sample_loss,
                grad: &dlogits,
                correct: &correct,
                mean_loss: Some(&mean_loss),
            };
            softmax_cross_entropy(&mut rec, &xent, &logits, &b.labels, &outputs)?;
            network.backward(&mut rec, &dlogits)?;
            optimizer.step(&mut rec, &network.params(), lr as f32)?;
            rec.copy_range(&mean_loss, 0, &log.values, 2 * log.used, 1)?;
            rec.copy_range(&correct, 0, &log.values, 2 * log.used + 1, 1)?;
            rec.submit()?;
            log.used += 1;
            standing.step += 1;
            let last = i as u64 + 1 == steps_per_epoch;
            if log.used == log.capacity || last {
                let (sum, right, steps, bad) = log.drain(gpu)?;
                if let Some(value) = bad {
                    progress.finish("stopped");
                    bail!(
                        "training stopped: the loss became {value} in epoch {} (by step {}); {}",
                        epoch + 1,
                        standing.step,
                        divergence_advice(run, standing.epoch)
                    );
                }
                loss_sum += sum;
                correct_sum += right;
                steps_seen += steps;
                let seen = (steps_seen * batch) as f64;
                let rate = seen / epoch_start.elapsed().as_secs_f64();
                progress.update(
                    i as u64 + 1,
                    loss_sum / steps_seen as f64,
                    correct_sum as f64 / seen,
                    rate,
                );
            }
        }
        gpu.wait()?;
        let epoch_train_seconds = epoch_start.elapsed().as_secs_f64();
        let samples = steps_seen as u64 * batch as u64;
        train_seconds += epoch_train_seconds;
        train_samples += samples;
        let validation = if val_loader.is_empty() {
            None
        } else {
            Some(evaluate(gpu, &mut network, val_loader.epoch(0))?)
        };
        if let Some(v) = validation.as_ref().filter(|v| !v.loss.is_finite()) {
            bail!(
                "training stopped: the validation loss became {} after epoch {}; {}",
                v.loss,
                epoch + 1,
                divergence_advice(run, standing.epoch)
            );
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            step: standing.step,
            lr,
            train_loss: loss_sum / steps_seen.max(1) as f64,
            train_accuracy: correct_sum as f64 / samples.max(1) as f64,
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
            samples_per_s: samples as f64 / epoch_train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        progress.finish(&format!(
            "loss {:.4} acc {:.1}% val {} {:.0} samples/s",
            record.train_loss,
            100.0 * record.train_accuracy,
            record
                .val_accuracy
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            record.samples_per_s
        ));
        // Without validation data, the latest model is the best one.
        let score = record.val_accuracy.unwrap_or(record.epoch as f64);
        standing.epoch = epoch + 1;
        if score > standing.best_val_accuracy {
            standing.best_val_accuracy = score;
            standing.best_epoch = epoch + 1;
            save_model(
                gpu,
                &run.best_model(),
                &network,
                &info,
                &[
                    ("epoch", (epoch + 1).to_string()),
                    ("val_accuracy", format!("{score}")),
                    ("data", serde_json::to_string(&experiment.data)?),
                ],
            )?;
        }
        save_checkpoint_file(
            gpu,
            &run.last_checkpoint(),
            &network,
            &optimizer,
            &info,
            standing,
        )?;
        metrics.append(&record)?;
        if options.verbose {
            println!("{}", serde_json::to_string(&record)?);
        }
        plot_curves(&read_epoch_records(&run.metrics())?, &run.plots_dir())?;
    }

    let test = if standing.epoch == cfg.epochs {
        let test_loader = data.loader(experiment, Split::Test, cfg.batch_size)?;
        if test_loader.is_empty() {
            None
        } else {
            let (mut best, _, _) = super::model_file::load_model(gpu, &run.best_model(), None)?;
            Some(evaluate(gpu, &mut best, test_loader.epoch(0))?)
        }
    } else {
        None
    };
    let summary = TrainSummary {
        epochs_done: standing.epoch,
        best_epoch: standing.best_epoch,
        best_val_accuracy: standing.best_val_accuracy,
        test,
        seconds: started.elapsed().as_secs_f64(),
        train_samples_per_s: train_samples as f64 / train_seconds.max(1e-9),
        params: network.parameter_count(),
        macs: network.macs(),
    };
    if summary.test.is_some() {
        let path = run.root.join("results.json");
        super::atomic::write_durably(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    Ok(summary)
}

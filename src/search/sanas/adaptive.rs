//! Adaptive SANAS: the gates of every window of a stream come from a GRU
//! controller that reads what the classifier saw in the previous window, so
//! quiet windows can run little and words the whole network. Training
//! streams are built on the fly from the training split's words over
//! background noise; a window's label is the word covering more than half
//! of it, else silence. The windows of a batch of streams are first run in
//! order, each stream with the gates the controller draws for it, giving
//! each window's loss and cost; the super network then trains on the same
//! windows and gates shuffled across streams and times (one session step
//! per batch of windows), and the controller takes one REINFORCE step over
//! the whole sequence (no discount across windows, as the reference). Each
//! epoch scores the deterministic gates (p > 0.5) on validation streams and
//! checkpoints the super network and the controller; a killed search
//! resumes from them.

use super::controller::Controller;
use super::search::{
    named_where, point_seconds, DrawCosts, PointSummary, SanasOptions, GATES_FILE,
};
use super::SanasConfig;
use crate::data::batch::Batch;
use crate::data::dataset::{ClipSource, Split, SILENCE};
use crate::data::features::FeatureExtractor;
use crate::data::stream::{compose_stream, window_labels};
use crate::data::wav::read_wav;
use crate::gpu::{Gpu, Tensor};
use crate::model::Network;
use crate::nn::WEIGHTS;
use crate::train::checkpoint::{load_checkpoint, save_checkpoint, NamedTensor};
use crate::train::cli::{softmax, stream_eval_with, window_count, window_stride, StreamArgs};
use crate::train::metrics::{truncate_after_epoch, EpochRecord, MetricsLog};
use crate::train::model_file::{load_model, save_model, ModelInfo};
use crate::train::progress::Progress;
use crate::train::run_dir::RunDir;
use crate::train::session::{Data, Session, StepPart};
use crate::train::write_durably;
use crate::util::rng::Rng;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Words (class, audio) of one split and the background noise, at the
/// features' sample rate, with how windows cut a stream.
struct StreamSource {
    words: Vec<(usize, Vec<f32>)>,
    noise: Vec<Vec<f32>>,
    silence: usize,
    windows: usize,
    window: usize,
    stride: usize,
    max_words: usize,
    noise_probability: f64,
    max_noise_volume: f32,
}

/// A batch of streams cut into windows: `windows[t]` is the batch of every
/// stream's window `t`.
struct StreamBatch {
    windows: Vec<Batch>,
}

impl StreamSource {
    fn open(data: &Data, config: &SanasConfig, split: Split) -> anyhow::Result<StreamSource> {
        let s = &config.search;
        let features = &config.experiment.features;
        let rate = features.sample_rate;
        let set = &data.set;
        let silence = set
            .classes
            .iter()
            .position(|c| c == SILENCE)
            .with_context(|| {
                format!(
                    "adaptive SANAS labels windows without a word as {SILENCE}, which {} has no class for; use a keyword task with silence",
                    set.root.display()
                )
            })?;
        let mut words = Vec::new();
        for (_, clip) in set.clips_in(split) {
            if let (ClipSource::File(file), false) = (&clip.source, clip.label == silence) {
                words.push((clip.label, read_wav(&set.path_of(file), rate)?.samples));
            }
        }
        if words.is_empty() {
            bail!(
                "{}: the {} split has no words to build streams from",
                set.root.display(),
                split.name()
            );
        }
        let noise = set
            .background_noise
            .iter()
            .map(|f| read_wav(&set.path_of(f), rate).map(|a| a.samples))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StreamSource {
            words,
            noise,
            silence,
            windows: s.stream_windows,
            window: features.clip_samples(),
            stride: (s.window_stride_ms * rate as f64 / 1000.0).round() as usize,
            max_words: s.max_words,
            noise_probability: s.noise_probability,
            max_noise_volume: s.max_noise_volume,
        })
    }

    /// `batch` streams drawn from `seed`, as windows of features.
    fn batch(&self, extractor: &FeatureExtractor, batch: usize, seed: u64) -> StreamBatch {
        let mut rng = Rng::new(seed);
        let length = self.window + self.stride * (self.windows - 1);
        let config = extractor.config();
        let (hop, width) = (config.hop_samples(), config.width());
        let clip_frames = config.clip_shape()[1];
        let stride_frames = self.stride / hop;
        let mut windows: Vec<Batch> = (0..self.windows)
            .map(|_| Batch {
                features: Vec::with_capacity(batch * clip_frames * width),
                labels: Vec::with_capacity(batch),
                shape: vec![batch, 1, clip_frames, width],
            })
            .collect();
        for _ in 0..batch {
            let count = 1 + rng.below(self.max_words);
            let words: Vec<(usize, &[f32])> = (0..count)
                .map(|_| {
                    let (label, audio) = &self.words[rng.below(self.words.len())];
                    (*label, audio.as_slice())
                })
                .collect();
            let noise = if !self.noise.is_empty() && rng.bernoulli(self.noise_probability) {
                Some(self.noise[rng.below(self.noise.len())].as_slice())
            } else {
                None
            };
            let volume = rng.uniform(0.0, self.max_noise_volume);
            let (samples, placed) = compose_stream(&words, noise, volume, length, &mut rng);
            let labels = window_labels(
                &placed,
                self.windows,
                self.window,
                self.stride,
                self.silence,
            );
            let frames = extractor.compute(&samples);
            for (t, w) in windows.iter_mut().enumerate() {
                let from = t * stride_frames * width;
                w.features
                    .extend_from_slice(&frames[from..from + clip_frames * width]);
                w.labels.push(labels[t] as u32);
            }
        }
        StreamBatch { windows }
    }
}

/// The controller of a finished point, beside its model file.
pub const CONTROLLER_FILE: &str = "controller.safetensors";

/// The controller's tensors and Adam state after `epoch`, with the reward
/// baseline: one file per epoch, written before the super network's
/// checkpoint, so that the checkpoint's epoch always has its controller
/// (the one before is removed once the checkpoint is written).
fn controller_checkpoint(run: &RunDir, epoch: usize) -> std::path::PathBuf {
    run.checkpoints_dir()
        .join(format!("controller_{epoch}.safetensors"))
}
/// The controller file's entry holding the window stride it was trained at.
const STRIDE_KEY: &str = "window_stride_ms";

/// What one epoch's draws did, in `gates.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveRecord {
    pub epoch: usize,
    pub gates: Vec<String>,
    /// Mean gate probability over the training windows.
    pub mean_probabilities: Vec<f64>,
    pub mean_sampled_cost: f64,
    pub mean_reward: f64,
    pub arch_loss: f64,
    /// On the validation streams, the deterministic gates.
    pub val_window_accuracy: f64,
    pub val_mean_cost: f64,
    /// Mean validation cost per window label (silence, each word).
    pub val_cost_by_label: BTreeMap<String, f64>,
    pub baseline: Option<f64>,
}

/// The windows `picks` (`(window, stream)`) of `streams` as one batch, with
/// the layers each one ran.
fn gather_windows(
    streams: &StreamBatch,
    runs: &[Vec<Vec<bool>>],
    picks: &[(usize, usize)],
) -> (Batch, Vec<Vec<bool>>) {
    let shape = streams.windows[0].shape.clone();
    let len: usize = shape[1..].iter().product();
    let mut batch = Batch {
        features: Vec::with_capacity(picks.len() * len),
        labels: Vec::with_capacity(picks.len()),
        shape: crate::nn::batched(picks.len(), &shape[1..]),
    };
    let mut picked_runs = Vec::with_capacity(picks.len());
    for &(t, b) in picks {
        let window = &streams.windows[t];
        batch
            .features
            .extend_from_slice(&window.features[b * len..(b + 1) * len]);
        batch.labels.push(window.labels[b]);
        picked_runs.push(runs[t][b].clone());
    }
    (batch, picked_runs)
}

/// Per-window accuracy and cost of the deterministic gates on `streams`.
struct StreamScore {
    accuracy: f64,
    mean_cost: f64,
    cost_by_label: BTreeMap<String, f64>,
    gate_use: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn search_point(
    gpu: &Gpu,
    config: &SanasConfig,
    data: &Data,
    lambda: f64,
    run: &RunDir,
    options: &SanasOptions,
    mut costs: DrawCosts,
    gate_names: Vec<String>,
) -> anyhow::Result<Option<PointSummary>> {
    let experiment = &config.experiment;
    let s = &config.search;
    let cfg = &experiment.train;
    let arch = &experiment.model;
    let batch = cfg.batch_size;
    let train_source = StreamSource::open(data, config, Split::Train)?;
    let val_source = StreamSource::open(data, config, Split::Validation).ok();
    let test_source = StreamSource::open(data, config, Split::Test).ok();
    let extractor = FeatureExtractor::new(&experiment.features);
    let classes = data.classes().to_vec();
    let shape = data.prepared.clip_shape.clone();
    let batches_per_epoch = (s.streams_per_epoch / batch) as u64;
    let windows = s.stream_windows;
    let network = super::search::super_network(gpu, config, &shape, classes.len(), run, options)?;
    let features: usize = network.feature_shape().iter().product();
    let mut session =
        Session::of_weights(gpu, network, experiment, batches_per_epoch * windows as u64)?;
    let mut controller = Controller::new(
        gpu,
        features,
        s.controller_hidden,
        gate_names.len(),
        batch,
        s.gate_lr,
        cfg.seed,
    )?;
    let info = ModelInfo {
        architecture: arch.clone(),
        features: experiment.features.clone(),
        classes: classes.clone(),
    };
    let mut baseline: Option<f64> = None;
    if options.resume && run.last_checkpoint().exists() {
        session
            .resume(&run.last_checkpoint())
            .context("resuming the search")?;
        let epoch = session.standing.epoch;
        baseline = load_controller(
            gpu,
            &mut controller,
            &controller_checkpoint(run, epoch),
            epoch,
        )?;
    }
    let gates_log = run.root.join(GATES_FILE);
    for path in [run.metrics(), gates_log.clone()] {
        truncate_after_epoch(&path, session.standing.epoch)?;
    }
    let mut metrics = MetricsLog::open(&run.metrics())?;
    let mut gate_records = MetricsLog::open(&gates_log)?;
    let full_cost = costs.of(&vec![true; gate_names.len()])?.1;
    if options.verbose {
        println!(
            "adaptive sanas search, lambda {lambda}: {} gated nodes, full cost {full_cost:.0} {:?}; {batches_per_epoch} batches of {batch} streams of {windows} windows per epoch; {}",
            gate_names.len(),
            s.cost,
            gpu.describe()
        );
    }
    let step_features = gpu.zeros(&[batch, features])?;
    let sequence = gpu.zeros(&[windows, batch, features])?;
    // Every window, trained or scored, hands the controller what the
    // classifier saw.
    session
        .network
        .capture_features(Some(step_features.clone()));
    let last_epoch = options
        .stop_after_epochs
        .map_or(cfg.epochs, |n| (session.standing.epoch + n).min(cfg.epochs));
    for epoch in session.standing.epoch..last_epoch {
        let epoch_start = Instant::now();
        let progress = Progress::new(epoch + 1, cfg.epochs, batches_per_epoch);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0u64, 0usize);
        let (mut cost_sum, mut reward_sum, mut arch_loss_sum) = (0.0, 0.0, 0.0);
        let mut probability_sum = vec![0.0; gate_names.len()];
        let mut lr = 0.0;
        for i in 0..batches_per_epoch {
            let seed = cfg.seed
                ^ (epoch as u64 * batches_per_epoch + i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let streams = train_source.batch(&extractor, batch, seed);
            let mut rng = Rng::new(seed.rotate_left(17));
            controller.start(gpu)?;
            let mut rec = gpu.recorder();
            rec.clear(&step_features);
            rec.submit()?;
            let mut draws = Vec::with_capacity(windows);
            let mut rewards = Vec::with_capacity(windows);
            let mut all_runs = Vec::with_capacity(windows);
            // The gates of window t depend on window t - 1, so the windows
            // are first run in order (inference: decisions and rewards).
            for (t, window) in streams.windows.iter().enumerate() {
                let mut rec = gpu.recorder();
                rec.copy_range(
                    &step_features,
                    0,
                    &sequence,
                    t * batch * features,
                    batch * features,
                )?;
                rec.submit()?;
                let p = controller.step(gpu, &step_features)?;
                let drawn: Vec<Vec<bool>> = p
                    .iter()
                    .map(|row| row.iter().map(|&pk| rng.bernoulli(pk)).collect())
                    .collect();
                let mut runs = Vec::with_capacity(batch);
                let mut window_costs = Vec::with_capacity(batch);
                for open in &drawn {
                    let (r, c) = costs.of(open)?;
                    runs.push(r.clone());
                    window_costs.push(*c);
                }
                session.network.set_sample_activity(gpu, Some(&runs))?;
                let predictions = session.predict(std::iter::once(window.clone()))?;
                let losses = predictions.cross_entropies();
                let r = super::gates::rewards(&losses, &window_costs, lambda, s.budget, full_cost);
                for row in &p {
                    for (sum, pk) in probability_sum.iter_mut().zip(row) {
                        *sum += pk;
                    }
                }
                cost_sum += window_costs.iter().sum::<f64>();
                draws.push(drawn);
                rewards.push(r);
                all_runs.push(runs);
            }
            // Then the super network trains on the same windows with the
            // same gates, shuffled across streams and times, so that no
            // step is made of 80%-overlapping windows of the same words.
            let mut order: Vec<(usize, usize)> = (0..windows)
                .flat_map(|t| (0..batch).map(move |b| (t, b)))
                .collect();
            rng.shuffle(&mut order);
            for chunk in order.chunks_exact(batch) {
                let (mixed, runs) = gather_windows(&streams, &all_runs, chunk);
                session.network.set_sample_activity(gpu, Some(&runs))?;
                lr = session.lr(WEIGHTS).unwrap_or_default();
                session.step(&[StepPart::new(&mixed, &[WEIGHTS])])?;
            }
            let all: Vec<f64> = rewards.iter().flatten().copied().collect();
            let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
            let b = match baseline {
                None => mean,
                Some(b) => s.baseline_decay * mean + (1.0 - s.baseline_decay) * b,
            };
            baseline = Some(b);
            let advantages: Vec<Vec<f64>> = rewards
                .iter()
                .map(|row| row.iter().map(|r| r - b).collect())
                .collect();
            arch_loss_sum += controller.train(gpu, &sequence, &draws, &advantages)?;
            reward_sum += mean;
            let [totals, _] = session.take_totals()?;
            if let Some(value) = totals.bad_loss {
                progress.finish("stopped");
                bail!(
                    "search stopped: the loss became {value} in epoch {}; lower [train] lr and start again",
                    epoch + 1
                );
            }
            loss_sum += totals.loss_sum;
            correct += totals.correct;
            seen += totals.steps;
            progress.update(
                i + 1,
                loss_sum / seen.max(1) as f64,
                correct as f64 / (seen * batch).max(1) as f64,
                (seen * batch) as f64 / epoch_start.elapsed().as_secs_f64(),
            );
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let val = match &val_source {
            Some(source) => Some(score_streams(
                gpu,
                &mut session,
                &mut controller,
                &mut costs,
                source,
                &extractor,
                &step_features,
                &classes,
                s.eval_streams,
                cfg.seed ^ 0x5EED_F7A1,
            )?),
            None => None,
        };
        let windows_seen = (batches_per_epoch as usize * windows * batch).max(1) as f64;
        let record = EpochRecord {
            epoch: epoch + 1,
            step: session.standing.step,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / (seen * batch).max(1) as f64,
            val_loss: None,
            val_accuracy: val.as_ref().map(|v| v.accuracy),
            samples_per_s: windows_seen / train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let gate_record = AdaptiveRecord {
            epoch: epoch + 1,
            gates: gate_names.clone(),
            mean_probabilities: probability_sum.iter().map(|p| p / windows_seen).collect(),
            mean_sampled_cost: cost_sum / windows_seen,
            mean_reward: reward_sum / batches_per_epoch as f64,
            arch_loss: arch_loss_sum / batches_per_epoch as f64,
            val_window_accuracy: val.as_ref().map_or(0.0, |v| v.accuracy),
            val_mean_cost: val.as_ref().map_or(0.0, |v| v.mean_cost),
            val_cost_by_label: val
                .as_ref()
                .map_or_else(BTreeMap::new, |v| v.cost_by_label.clone()),
            baseline,
        };
        progress.finish(&format!(
            "loss {:.4} val windows {} sampled cost {:.0}% val cost {:.0}% {:.0} windows/s",
            record.train_loss,
            record
                .val_accuracy
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            100.0 * gate_record.mean_sampled_cost / full_cost.max(f64::MIN_POSITIVE),
            100.0 * gate_record.val_mean_cost / full_cost.max(f64::MIN_POSITIVE),
            record.samples_per_s
        ));
        session.standing.epoch = epoch + 1;
        save_controller(
            gpu,
            &controller,
            &controller_checkpoint(run, epoch + 1),
            epoch + 1,
            baseline,
            s.window_stride_ms,
        )?;
        gate_records.append(&gate_record)?;
        metrics.append(&record)?;
        session.save_checkpoint(&run.last_checkpoint(), &info)?;
        let _ = std::fs::remove_file(controller_checkpoint(run, epoch));
    }
    if session.standing.epoch < cfg.epochs {
        return Ok(None);
    }
    // The point as a model `eval --stream` takes: the super network (gates
    // and all) and, beside it, the controller.
    save_model(
        gpu,
        &run.best_model(),
        &session.network,
        &info,
        &[("data", serde_json::to_string(&experiment.data)?)],
    )?;
    let last = controller_checkpoint(run, session.standing.epoch);
    write_durably(
        &run.root.join(CONTROLLER_FILE),
        &std::fs::read(&last).with_context(|| format!("reading {}", last.display()))?,
    )?;
    let scoring = Instant::now();
    let score = |source: &Option<StreamSource>,
                 session: &mut Session,
                 controller: &mut Controller,
                 costs: &mut DrawCosts,
                 salt: u64|
     -> anyhow::Result<Option<StreamScore>> {
        match source {
            Some(source) => Ok(Some(score_streams(
                gpu,
                session,
                controller,
                costs,
                source,
                &extractor,
                &step_features,
                &classes,
                s.eval_streams,
                cfg.seed ^ salt,
            )?)),
            None => Ok(None),
        }
    };
    let val = score(
        &val_source,
        &mut session,
        &mut controller,
        &mut costs,
        0x5EED_F7A1,
    )?;
    let test = score(
        &test_source,
        &mut session,
        &mut controller,
        &mut costs,
        0x7E57,
    )?;
    let usage = test
        .as_ref()
        .or(val.as_ref())
        .map(|v| v.gate_use.clone())
        .unwrap_or_default();
    let mean_cost = test
        .as_ref()
        .or(val.as_ref())
        .map_or(full_cost, |v| v.mean_cost);
    let point = PointSummary {
        lambda,
        budget: s.budget,
        cost: s.cost,
        epochs: session.standing.epoch,
        seconds: point_seconds(run, scoring)?,
        full_cost,
        kept: named_where(&gate_names, usage.iter().map(|&u| u > 0.0)),
        kept_cost: mean_cost,
        probabilities: usage,
        params: 0,
        macs: mean_cost.round() as u64,
        val_accuracy: val.as_ref().map(|v| v.accuracy),
        test_accuracy: test.as_ref().map(|v| v.accuracy),
        architecture: None,
        adaptive: true,
        stream: None,
    };
    write_durably(
        &run.root.join(crate::search::darts::RESULTS_FILE),
        serde_json::to_string_pretty(&point)?.as_bytes(),
    )?;
    super::plots::plot_gates(&gates_log, full_cost, &run.plots_dir())?;
    super::plots::plot_cost_by_label(&gates_log, full_cost, &run.plots_dir())?;
    Ok(Some(point))
}

/// Runs `count` streams of `source` window by window with the gates the
/// controller keeps (p > 0.5): per-window accuracy, mean cost, mean cost per
/// window label, and how often each gate was open.
#[allow(clippy::too_many_arguments)]
fn score_streams(
    gpu: &Gpu,
    session: &mut Session,
    controller: &mut Controller,
    costs: &mut DrawCosts,
    source: &StreamSource,
    extractor: &FeatureExtractor,
    step_features: &Tensor,
    classes: &[String],
    count: usize,
    seed: u64,
) -> anyhow::Result<StreamScore> {
    let batch = step_features.shape()[0];
    let (mut right, mut total, mut cost) = (0usize, 0usize, 0.0);
    let mut by_label: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut gate_use = Vec::new();
    for k in 0..count.div_ceil(batch) {
        let streams = source.batch(extractor, batch, seed.wrapping_add(k as u64));
        controller.start(gpu)?;
        let mut rec = gpu.recorder();
        rec.clear(step_features);
        rec.submit()?;
        for window in &streams.windows {
            let p = controller.step(gpu, step_features)?;
            let kept: Vec<Vec<bool>> = p
                .iter()
                .map(|row| row.iter().map(|&pk| pk > 0.5).collect())
                .collect();
            let mut runs = Vec::with_capacity(batch);
            for (b, open) in kept.iter().enumerate() {
                let (r, c) = costs.of(open)?;
                runs.push(r.clone());
                cost += c;
                let label = &classes[window.labels[b] as usize];
                let entry = by_label.entry(label.clone()).or_default();
                entry.0 += c;
                entry.1 += 1;
                gate_use.resize(open.len(), 0.0);
                for (u, &o) in gate_use.iter_mut().zip(open) {
                    *u += f64::from(u8::from(o));
                }
            }
            session.network.set_sample_activity(gpu, Some(&runs))?;
            let predictions = session.predict(std::iter::once(window.clone()))?;
            for (b, row) in predictions.logits.chunks_exact(classes.len()).enumerate() {
                let top =
                    (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best });
                right += usize::from(top as u32 == window.labels[b]);
                total += 1;
            }
        }
    }
    session.network.set_sample_activity(gpu, None)?;
    let n = total.max(1) as f64;
    Ok(StreamScore {
        accuracy: right as f64 / n,
        mean_cost: cost / n,
        cost_by_label: by_label
            .into_iter()
            .map(|(l, (c, k))| (l, c / k.max(1) as f64))
            .collect(),
        gate_use: gate_use.iter().map(|u| u / n).collect(),
    })
}

fn save_controller(
    gpu: &Gpu,
    controller: &Controller,
    path: &std::path::Path,
    epoch: usize,
    baseline: Option<f64>,
    stride_ms: f64,
) -> anyhow::Result<()> {
    let mut tensors = Vec::new();
    for (name, p) in controller.named_params() {
        tensors.push(NamedTensor {
            name: name.clone(),
            shape: p.value.shape().to_vec(),
            data: gpu.download(&p.value)?,
        });
    }
    for (name, t) in controller.optimizer().state() {
        tensors.push(NamedTensor {
            name: format!("adam/{name}"),
            shape: t.shape().to_vec(),
            data: gpu.download(t)?,
        });
    }
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("baseline".to_string(), serde_json::to_string(&baseline)?);
    meta.insert(STRIDE_KEY.to_string(), stride_ms.to_string());
    meta.insert(
        "optimizer_steps".to_string(),
        serde_json::to_string(&controller.optimizer().steps())?,
    );
    save_checkpoint(path, &tensors, &meta)?;
    Ok(())
}

/// Restores the controller saved after `epoch`; returns the baseline.
fn load_controller(
    gpu: &Gpu,
    controller: &mut Controller,
    path: &std::path::Path,
    epoch: usize,
) -> anyhow::Result<Option<f64>> {
    let (tensors, meta) = load_checkpoint(path)?;
    if meta.get("epoch").map(String::as_str) != Some(epoch.to_string().as_str()) {
        bail!(
            "{}: the controller was saved after epoch {}, the super network after epoch {epoch}; the run cannot resume",
            path.display(),
            meta.get("epoch").map_or("?", String::as_str)
        );
    }
    restore_controller_weights(gpu, controller, &tensors, path)?;
    for (name, t) in controller.optimizer().state() {
        let saved = tensors
            .iter()
            .find(|s| s.name == format!("adam/{name}") && s.shape == t.shape())
            .with_context(|| format!("{}: no Adam state of {name:?}", path.display()))?;
        gpu.write(t, &saved.data)?;
    }
    let steps = meta
        .get("optimizer_steps")
        .with_context(|| format!("{}: no optimizer_steps", path.display()))?;
    controller
        .optimizer_mut()
        .set_steps(&serde_json::from_str(steps)?)
        .map_err(anyhow::Error::msg)?;
    let baseline = meta
        .get("baseline")
        .map_or(Ok(None), |b| serde_json::from_str(b))?;
    Ok(baseline)
}

/// `eval --stream` of an adaptive point (`model` its folder): the
/// recording is cut into windows every `--stride-ms` (the stride the
/// controller was trained at), the controller chooses each window's gates
/// from the window before, and only the kept part runs; the table gives the
/// mean MACs of the windows as they ran.
pub fn stream_eval(gpu: &Gpu, model: &std::path::Path, args: &StreamArgs) -> anyhow::Result<()> {
    let (mut network, info, _) = load_model(gpu, model, None)?;
    stream_eval_with(args, &info, |samples| {
        adaptive_window_scores(gpu, &mut network, &info, model, samples, args.stride_ms)
    })
}

/// The softmax scores of every window of `samples` (a window every
/// `stride_ms`) under the adaptive point at `model` (`network` and `info`
/// loaded from it), each window running the gates the controller chose
/// from the window before; and the mean MACs per window.
pub fn adaptive_window_scores(
    gpu: &Gpu,
    network: &mut Network,
    info: &ModelInfo,
    model: &std::path::Path,
    samples: &[f32],
    stride_ms: i64,
) -> anyhow::Result<(Vec<Vec<f32>>, f64)> {
    let controller_path = model.join(CONTROLLER_FILE);
    let (tensors, meta) = load_checkpoint(&controller_path)?;
    let trained_ms: f64 = meta
        .get(STRIDE_KEY)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: no {STRIDE_KEY}", controller_path.display()))?;
    if (trained_ms - stride_ms as f64).abs() > 1e-9 {
        bail!(
            "{}: the controller chose gates for windows every {trained_ms} ms; give --stride-ms {trained_ms}",
            controller_path.display()
        );
    }
    let shape_of = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.shape.clone())
            .with_context(|| format!("{}: no tensor {name:?}", controller_path.display()))
    };
    let (w_ih, head) = (shape_of("gru.w_ih")?, shape_of("head.weight")?);
    let (features, hidden, gates) = (w_ih[1], w_ih[0] / 3, head[0]);
    let arch = network.architecture().clone();
    let gated = arch.gated_layers();
    if gates != gated.len() || features != network.feature_shape().iter().product::<usize>() {
        bail!(
            "{}: the controller is for {gates} gates and {features} features; the model has {} and {:?}",
            controller_path.display(),
            gated.len(),
            network.feature_shape()
        );
    }
    let mut controller = Controller::new(gpu, features, hidden, gates, 1, 1e-3, 0)?;
    restore_controller_weights(gpu, &controller, &tensors, &controller_path)?;
    let extractor = FeatureExtractor::new(&info.features);
    let clip = info.features.clip_samples();
    let stride = window_stride(&info.features, stride_ms);
    let windows = window_count(samples.len(), clip, stride)?;
    let mut costs = DrawCosts::new(
        &arch,
        info.features.clip_shape(),
        info.classes.len(),
        info.features.clip_ms,
        super::CostKind::Macs,
        None,
    );
    let step_features = gpu.zeros(&[1, features])?;
    network.capture_features(Some(step_features.clone()));
    controller.start(gpu)?;
    let mut scores = Vec::with_capacity(windows);
    let mut macs = 0.0;
    for w in 0..windows {
        let start = w * stride;
        let x = extractor.clip_features(&samples[start..start + clip]);
        let p = controller.step(gpu, &step_features)?;
        let kept: Vec<bool> = p[0].iter().map(|&pk| pk > 0.5).collect();
        let (_, cost) = costs.of(&kept)?;
        macs += cost;
        network.set_mask(&arch.gate_mask(&kept))?;
        let input = gpu.upload(&crate::nn::batched(1, network.input_shape()), &x)?;
        let mut rec = gpu.recorder();
        let logits = network.forward(&mut rec, &input, crate::nn::Pass::eval())?;
        rec.submit()?;
        scores.push(softmax(&gpu.download(&logits)?));
    }
    Ok((scores, macs / windows.max(1) as f64))
}

/// Writes saved controller parameters into `controller` (by name and shape).
fn restore_controller_weights(
    gpu: &Gpu,
    controller: &Controller,
    tensors: &[NamedTensor],
    path: &std::path::Path,
) -> anyhow::Result<()> {
    for (name, p) in controller.named_params() {
        let saved = tensors
            .iter()
            .find(|t| t.name == name && t.shape == p.value.shape())
            .with_context(|| {
                format!(
                    "{}: no tensor {name:?} of shape {:?}",
                    path.display(),
                    p.value.shape()
                )
            })?;
        gpu.write(&p.value, &saved.data)?;
    }
    Ok(())
}

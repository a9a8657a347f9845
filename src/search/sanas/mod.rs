//! SANAS / Budgeted Super Networks (Veniat & Denoyer): a super network whose
//! nodes (`gate = true` layers) are kept or dropped per sample by Bernoulli
//! gates, the gates learned by REINFORCE on the loss plus a cost penalty, so
//! that the search finds sub-networks under a budget of MACs or parameters.
//! A search config is an experiment (features, data, `[train]`, `[model]`
//! with gated layers) and a `[search]` table; a list of lambdas runs one
//! search per lambda, each in `points/` of the run folder.

pub mod adaptive;
pub mod controller;
pub mod gates;
pub mod plots;
pub mod search;
pub mod streaming;

use crate::model::Cost;
use crate::train::config::{read_config_text, ConfigError, Experiment};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[search] strategy` of a SANAS config.
pub const STRATEGY: &str = "sanas";

/// What a sampled architecture costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    /// Multiply-accumulates per clip.
    #[default]
    Macs,
    Params,
    /// Milliseconds of GPU time per clip at batch 1 on the adapter: the sum
    /// of the measured times of the layers that run, from a table measured
    /// once per run (`latency.json`).
    Latency,
}

/// The `[search]` table of a SANAS config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SanasSettings {
    pub strategy: String,
    pub cost: CostKind,
    /// One search per value: the weight of the cost term in the reward.
    pub lambdas: Vec<f64>,
    /// Only the cost above this counts (in the cost's unit: MACs per clip,
    /// parameters or milliseconds); 0 gives the plain `lambda * C(H)`.
    pub budget: f64,
    /// Every gate's initial logit (3: p = 0.95).
    pub gate_init: f32,
    /// Adam's learning rate for the gate logits.
    pub gate_lr: f64,
    /// The baseline's weight on each new batch-mean reward.
    pub baseline_decay: f64,
    /// Adaptive SANAS: a GRU controller chooses the gates of every window
    /// of a stream from what the previous window computed.
    pub adaptive: bool,
    /// Adaptive: a window (one clip long) every this many milliseconds.
    pub window_stride_ms: f64,
    /// Adaptive: windows per training stream (the stream is one clip plus
    /// `stream_windows - 1` strides long).
    pub stream_windows: usize,
    /// Adaptive: each training stream holds 1 to this many words.
    pub max_words: usize,
    /// Adaptive: the chance that a training stream has background noise,
    /// and the noise's largest volume (drawn uniformly up to it).
    pub noise_probability: f64,
    pub max_noise_volume: f32,
    /// Adaptive: the controller's GRU width.
    pub controller_hidden: usize,
    /// Adaptive: training streams per epoch (whole batches of them).
    pub streams_per_epoch: usize,
    /// Adaptive: streams the validation and test scores run on.
    pub eval_streams: usize,
    /// Seconds of a stream of the validation split's words that every
    /// point, and every reference model, is scored on by the streaming test
    /// (a window every `window_stride_ms`); 0 leaves it out.
    pub stream_seconds: f64,
    /// Models trained the usual way (run folders or model files, relative
    /// to the working folder) scored on the same stream: the reference
    /// points of the sweep.
    pub reference_models: Vec<PathBuf>,
    /// A network trained the usual way (a run folder or model file,
    /// relative to the working folder) whose tensors of the same name and
    /// shape every point's super network starts from, instead of a random
    /// draw; the gates still start at `gate_init`.
    pub init_from: Option<PathBuf>,
}

impl Default for SanasSettings {
    fn default() -> Self {
        SanasSettings {
            strategy: STRATEGY.into(),
            cost: CostKind::Macs,
            lambdas: vec![1.0],
            budget: 0.0,
            gate_init: 3.0,
            gate_lr: 1e-3,
            baseline_decay: 0.9,
            adaptive: false,
            window_stride_ms: 200.0,
            stream_windows: 11,
            max_words: 3,
            noise_probability: 0.8,
            max_noise_volume: 0.3,
            controller_hidden: 100,
            streams_per_epoch: 1024,
            eval_streams: 256,
            stream_seconds: 0.0,
            reference_models: Vec::new(),
            init_from: None,
        }
    }
}

/// A SANAS search config, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct SanasConfig {
    pub experiment: Experiment,
    pub search: SanasSettings,
}

impl SanasConfig {
    pub fn load(path: &Path) -> Result<SanasConfig, ConfigError> {
        Self::parse(&read_config_text(path)?, path)
    }

    /// Parses the text of `path`: the experiment as `train` reads it, and
    /// the `[search]` table.
    pub fn parse(text: &str, path: &Path) -> Result<SanasConfig, ConfigError> {
        let fail = |reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        let search = match table.remove("search") {
            None => SanasSettings::default(),
            Some(value) => value
                .try_into::<SanasSettings>()
                .map_err(|e| fail(format!("[search]: {e}")))?,
        };
        let rest = toml::to_string(&table).map_err(|e| fail(e.to_string()))?;
        let experiment = Experiment::parse(&rest, path)?;
        let config = SanasConfig { experiment, search };
        config.validate().map_err(fail)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.search;
        if s.strategy != STRATEGY {
            return Err(format!(
                "[search] strategy = {:?}: this config has SANAS keys; set strategy = \"{STRATEGY}\"",
                s.strategy
            ));
        }
        if s.lambdas.is_empty() {
            return Err("[search] lambdas is empty; give at least one value".into());
        }
        if let Some(l) = s.lambdas.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
            return Err(format!("[search] lambdas: {l} is not a number >= 0"));
        }
        if !(s.budget.is_finite() && s.budget >= 0.0) {
            return Err(format!(
                "[search] budget = {} must be a number >= 0",
                s.budget
            ));
        }
        if !s.gate_init.is_finite() {
            return Err(format!(
                "[search] gate_init = {} must be finite",
                s.gate_init
            ));
        }
        if !(s.gate_lr.is_finite() && s.gate_lr > 0.0) {
            return Err(format!("[search] gate_lr = {} must be positive", s.gate_lr));
        }
        if !(s.baseline_decay > 0.0 && s.baseline_decay <= 1.0) {
            return Err(format!(
                "[search] baseline_decay = {} must be in (0, 1]",
                s.baseline_decay
            ));
        }
        if s.adaptive {
            self.validate_adaptive()?;
        }
        self.validate_stream()?;
        let model = &self.experiment.model;
        if model.gated_layers().is_empty() {
            return Err(
                "[model]: no layer has `gate = true`, so there is nothing to search; mark the nodes to keep or drop"
                    .into(),
            );
        }
        Cost::of(
            model,
            &self.experiment.features.clip_shape(),
            2,
            self.experiment.features.clip_ms,
            None,
        )
        .map_err(|e| format!("[model]: {e}"))?;
        Ok(())
    }

    fn validate_adaptive(&self) -> Result<(), String> {
        let s = &self.search;
        let f = &self.experiment.features;
        let stride = s.window_stride_ms * f.sample_rate as f64 / 1000.0;
        if !(stride >= 1.0
            && stride.fract() == 0.0
            && (stride as usize).is_multiple_of(f.hop_samples()))
        {
            return Err(format!(
                "[search] window_stride_ms = {} must be a whole number of feature hops ({} ms)",
                s.window_stride_ms,
                f.hop_samples() as f64 * 1000.0 / f.sample_rate as f64
            ));
        }
        for (key, value) in [
            ("stream_windows", s.stream_windows),
            ("max_words", s.max_words),
            ("controller_hidden", s.controller_hidden),
            ("eval_streams", s.eval_streams),
        ] {
            if value == 0 {
                return Err(format!("[search] {key} must be at least 1"));
            }
        }
        if s.streams_per_epoch < self.experiment.train.batch_size {
            return Err(format!(
                "[search] streams_per_epoch = {} is less than one batch of {}",
                s.streams_per_epoch, self.experiment.train.batch_size
            ));
        }
        if !(0.0..=1.0).contains(&s.noise_probability) {
            return Err(format!(
                "[search] noise_probability = {} must be in [0, 1]",
                s.noise_probability
            ));
        }
        if !(s.max_noise_volume.is_finite() && s.max_noise_volume >= 0.0) {
            return Err(format!(
                "[search] max_noise_volume = {} must be >= 0",
                s.max_noise_volume
            ));
        }
        // Each word gets an equal slot of the stream, at least a clip long.
        let stream_ms = f.clip_ms + s.window_stride_ms * (s.stream_windows - 1) as f64;
        if stream_ms < f.clip_ms * s.max_words as f64 {
            return Err(format!(
                "[search] max_words = {}: a stream of {} windows is {stream_ms} ms, too short for {} words of {} ms; raise stream_windows",
                s.max_words, s.stream_windows, s.max_words, f.clip_ms
            ));
        }
        Ok(())
    }

    fn validate_stream(&self) -> Result<(), String> {
        let s = &self.search;
        let clip_s = self.experiment.features.clip_ms / 1000.0;
        if !(s.stream_seconds.is_finite() && s.stream_seconds >= 0.0) {
            return Err(format!(
                "[search] stream_seconds = {} must be a number >= 0",
                s.stream_seconds
            ));
        }
        if s.stream_seconds > 0.0 && s.stream_seconds < clip_s {
            return Err(format!(
                "[search] stream_seconds = {}: the stream is shorter than one window of {clip_s} s",
                s.stream_seconds
            ));
        }
        if !(s.window_stride_ms >= 1.0 && s.window_stride_ms.fract() == 0.0) {
            return Err(format!(
                "[search] window_stride_ms = {} must be a whole number of milliseconds >= 1",
                s.window_stride_ms
            ));
        }
        if !s.reference_models.is_empty() && s.stream_seconds == 0.0 {
            return Err(
                "[search] reference_models are scored on the validation stream; set stream_seconds > 0"
                    .into(),
            );
        }
        Ok(())
    }

    /// The resolved config as TOML, as a run folder keeps it.
    pub fn to_toml(&self) -> String {
        let search = toml::to_string(&self.search).expect("settings serialise");
        format!("{}\n[search]\n{search}", self.experiment.to_toml())
    }
}

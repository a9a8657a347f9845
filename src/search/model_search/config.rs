//! Model Search configs (TOML): the features, data, augmentation and the
//! training of every trial, and in `[search]` the blocks, the proposal
//! rules, budgets and how trials are scored. Unknown keys are refused.
//!
//! ```toml
//! features = "../features/mfcc10_49.toml"
//! [train]                      # each trial's training
//! epochs = 4
//! [search]
//! strategy = "model-search"
//! algorithm = "coordinate-descent"   # or "random"
//! blocks = ["conv_3x3", "separable_3x3", "downsample_3x3", "dense_64"]
//! minimum_depth = 2
//! maximum_depth = 6
//! max_trials = 20
//! ```

use super::blocks::{effective_tower, phase, tower_architecture, TowerSettings};
use super::proposal::ProposalRules;
use crate::data::augment::AugmentConfig;
use crate::data::dataset::DataSetConfig;
use crate::data::features::FeatureConfig;
use crate::model::{Cost, Field};
use crate::nn::optim::OptimizerKind;
use crate::train::config::{
    read_config_text, resolve_features, ConfigError, Experiment, TrainConfig,
};
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The strategy name that selects Model Search.
pub const STRATEGY: &str = "model-search";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    CoordinateDescent,
    Random,
}

impl Algorithm {
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::CoordinateDescent => "coordinate-descent",
            Algorithm::Random => "random",
        }
    }
}

/// What a trial is scored by (on the validation split, at its best epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    ValAccuracy,
    ValLoss,
}

/// A learning rate: fixed, or drawn log-uniformly from `[low, high]` per trial.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LrChoice {
    Fixed(f64),
    Range([f64; 2]),
}

/// The `[search]` table of a Model Search config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSearchSettings {
    pub strategy: String,
    pub algorithm: Algorithm,
    /// The blocks proposals draw from.
    pub blocks: Vec<String>,
    pub minimum_depth: usize,
    pub maximum_depth: usize,
    /// Completed trials per extra block of allowed depth (the reference's 5).
    pub depth_step_trials: usize,
    /// Proposals start from one of this many best trials.
    pub beam_size: usize,
    /// The chance of inserting a block rather than replacing one.
    pub increase_probability: f64,
    /// Trials in all (any state), over every worker.
    pub max_trials: usize,
    /// No trial starts after this many minutes from the search's start.
    pub time_limit_minutes: Option<f64>,
    /// A child starts from its parent's trained weights.
    pub transfer: bool,
    pub objective: Objective,
    /// Towers with more parameters (or MACs per clip) are not trained.
    pub max_params: Option<u64>,
    pub max_macs: Option<u64>,
    /// Towers trained first, in order.
    pub suggested: Vec<Vec<String>>,
    /// Each trial's learning rate, in place of `[train] lr`.
    pub lr: Option<LrChoice>,
    /// Each trial draws one, in place of `[train] optimizer`.
    pub optimizers: Vec<OptimizerKind>,
    /// The fewest channels of a "same channels" block.
    pub min_channels: usize,
    /// Batch norm after every convolution of a block.
    pub batch_norm: bool,
    /// How often a worker says its trial is alive.
    pub heartbeat_seconds: f64,
    /// A running trial silent for this long is marked failed.
    pub stale_after_seconds: f64,
}

impl Default for ModelSearchSettings {
    fn default() -> Self {
        ModelSearchSettings {
            strategy: STRATEGY.into(),
            algorithm: Algorithm::CoordinateDescent,
            blocks: Vec::new(),
            minimum_depth: 2,
            maximum_depth: 8,
            depth_step_trials: 5,
            beam_size: 5,
            increase_probability: 0.9,
            max_trials: 20,
            time_limit_minutes: None,
            transfer: true,
            objective: Objective::ValAccuracy,
            max_params: None,
            max_macs: None,
            suggested: Vec::new(),
            lr: None,
            optimizers: Vec::new(),
            min_channels: 16,
            batch_norm: true,
            heartbeat_seconds: 5.0,
            stale_after_seconds: 60.0,
        }
    }
}

/// A whole Model Search config, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSearchConfig {
    pub features: FeatureConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    pub augment: AugmentConfig,
    pub search: ModelSearchSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSearchFile {
    features: toml::Value,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    augment: AugmentConfig,
    search: ModelSearchSettings,
}

/// The `[search] strategy` a config file names, if any (a file that does
/// not parse says nothing here; its own parser names the problem).
pub fn strategy_of(text: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(text).ok()?;
    Some(value.get("search")?.get("strategy")?.as_str()?.to_string())
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl ModelSearchConfig {
    pub fn load(path: &Path) -> Result<ModelSearchConfig, ConfigError> {
        Self::parse(&read_config_text(path)?, path)
    }

    /// Parses the text of `path` and checks it before any trial.
    pub fn parse(text: &str, path: &Path) -> Result<ModelSearchConfig, ConfigError> {
        let fail = |reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let file: ModelSearchFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        let config = ModelSearchConfig {
            features: resolve_features(file.features, path)?,
            train: file.train,
            data: file.data,
            augment: file.augment,
            search: file.search,
        };
        config.validate().map_err(fail)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.search;
        if s.strategy != STRATEGY {
            return Err(format!(
                "[search] strategy = {:?}: this config has Model Search keys; set strategy = \"{STRATEGY}\"",
                s.strategy
            ));
        }
        if Field::of_features(&self.features.clip_shape()) == Field::Complex {
            return Err("[features]: Model Search grows towers of real blocks; the complex STFT (kind = \"stft\") needs complex layers, which its blocks do not have: use log-mel or MFCC features".into());
        }
        if s.blocks.is_empty() {
            return Err("[search] blocks is empty; name at least one block".into());
        }
        for block in &s.blocks {
            phase(block).map_err(|e| format!("[search] blocks: {e}"))?;
        }
        for (i, tower) in s.suggested.iter().enumerate() {
            if tower.is_empty() {
                return Err(format!("[search] suggested[{i}] is an empty tower"));
            }
            for block in tower {
                phase(block).map_err(|e| format!("[search] suggested[{i}]: {e}"))?;
            }
        }
        if s.minimum_depth == 0 {
            return Err("[search] minimum_depth must be at least 1".into());
        }
        if s.minimum_depth > s.maximum_depth {
            return Err(format!(
                "[search] minimum_depth = {} is above maximum_depth = {}",
                s.minimum_depth, s.maximum_depth
            ));
        }
        if s.depth_step_trials == 0 {
            return Err("[search] depth_step_trials must be at least 1".into());
        }
        if s.beam_size == 0 {
            return Err("[search] beam_size must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&s.increase_probability) {
            return Err(format!(
                "[search] increase_probability = {} must be in [0, 1]",
                s.increase_probability
            ));
        }
        if s.max_trials == 0 {
            return Err("[search] max_trials must be at least 1".into());
        }
        if let Some(t) = s.time_limit_minutes {
            if !positive(t) {
                return Err(format!(
                    "[search] time_limit_minutes = {t} must be a positive number"
                ));
            }
        }
        match s.lr {
            Some(LrChoice::Fixed(lr)) if !positive(lr) => {
                return Err(format!("[search] lr = {lr} must be a positive number"));
            }
            Some(LrChoice::Range([lo, hi])) if !(positive(lo) && positive(hi) && lo <= hi) => {
                return Err(format!(
                    "[search] lr = [{lo}, {hi}] must be two positive numbers, low first"
                ));
            }
            _ => {}
        }
        if s.min_channels == 0 {
            return Err("[search] min_channels must be at least 1".into());
        }
        if !(positive(s.heartbeat_seconds) && positive(s.stale_after_seconds)) {
            return Err(
                "[search] heartbeat_seconds and stale_after_seconds must be positive numbers"
                    .into(),
            );
        }
        if s.stale_after_seconds < 3.0 * s.heartbeat_seconds {
            return Err(format!(
                "[search] stale_after_seconds = {} must be at least 3 heartbeats ({} s each), or live trials would be failed",
                s.stale_after_seconds, s.heartbeat_seconds
            ));
        }
        self.trial_experiment(&s.blocks[..1], &Hparams::of(&self.train))
            .validate()?;
        // Every block builds on these features (two classes stand in for the data's).
        for block in &s.blocks {
            self.tower_cost(std::slice::from_ref(block), 2)
                .map_err(|e| format!("[search] blocks: {block}: {e}"))?;
        }
        Ok(())
    }

    pub fn settings(&self) -> TowerSettings {
        TowerSettings {
            min_channels: self.search.min_channels,
            batch_norm: self.search.batch_norm,
        }
    }

    pub fn rules(&self) -> ProposalRules {
        let s = &self.search;
        ProposalRules {
            blocks: s.blocks.clone(),
            minimum_depth: s.minimum_depth,
            maximum_depth: s.maximum_depth,
            depth_step: s.depth_step_trials,
            beam_size: s.beam_size,
            increase_probability: s.increase_probability,
            random: s.algorithm == Algorithm::Random,
            suggested: s.suggested.clone(),
        }
    }

    /// A trial's learning rate and optimizer.
    pub fn draw_hparams(&self, rng: &mut Rng) -> Hparams {
        let lr = match self.search.lr {
            None => self.train.lr,
            Some(LrChoice::Fixed(lr)) => lr,
            Some(LrChoice::Range([lo, hi])) => {
                (lo.ln() + rng.next_f64() * (hi.ln() - lo.ln())).exp()
            }
        };
        let optimizer = match self.search.optimizers.len() {
            0 => self.train.optimizer,
            n => self.search.optimizers[rng.below(n)],
        };
        Hparams { lr, optimizer }
    }

    /// The experiment that trains `tower` with `hparams`.
    pub fn trial_experiment(&self, tower: &[String], hparams: &Hparams) -> Experiment {
        let input = self.features.clip_shape();
        let model = tower_architecture(
            "tower",
            tower,
            [input[0], input[1], input[2]],
            self.settings(),
        )
        .expect("blocks are checked before towers are built");
        let mut train = self.train.clone();
        train.lr = hparams.lr;
        train.optimizer = hparams.optimizer;
        Experiment {
            features: self.features.clone(),
            train,
            data: self.data.clone(),
            augment: self.augment.clone(),
            model,
        }
    }

    /// `tower` without the blocks that add nothing on these features.
    pub fn effective_tower(&self, tower: &[String]) -> Vec<String> {
        let input = self.features.clip_shape();
        effective_tower(tower, [input[0], input[1], input[2]], self.settings())
            .expect("blocks are checked before towers are built")
    }

    /// Parameters and MACs per clip of `tower` for `classes` classes.
    pub fn tower_cost(&self, tower: &[String], classes: usize) -> anyhow::Result<Cost> {
        let experiment = self.trial_experiment(tower, &Hparams::of(&self.train));
        Ok(Cost::of(
            &experiment.model,
            &self.features.clip_shape(),
            classes,
            self.features.clip_ms,
            None,
        )?)
    }

    /// Whether a tower of this cost may be trained.
    pub fn within_budget(&self, cost: &Cost) -> bool {
        self.search.max_params.is_none_or(|m| cost.params <= m)
            && self.search.max_macs.is_none_or(|m| cost.macs <= m)
    }

    /// Refuses a budget that not even the smallest tower of one block fits.
    pub fn check_budget(&self, classes: usize) -> Result<(), String> {
        if self.search.max_params.is_none() && self.search.max_macs.is_none() {
            return Ok(());
        }
        let mut smallest: Option<(u64, u64, &str)> = None;
        for block in &self.search.blocks {
            let cost = self
                .tower_cost(std::slice::from_ref(block), classes)
                .map_err(|e| format!("[search] blocks: {block}: {e}"))?;
            if self.within_budget(&cost) {
                return Ok(());
            }
            if smallest.is_none_or(|(p, _, _)| cost.params < p) {
                smallest = Some((cost.params, cost.macs, block));
            }
        }
        let (params, macs, block) = smallest.expect("blocks is not empty");
        let key = if self.search.max_params.is_some() {
            "max_params"
        } else {
            "max_macs"
        };
        Err(format!(
            "[search] {key}: no block fits the budget (max_params {:?}, max_macs {:?}); the smallest tower, [{block}], has {params} parameters and {macs} MACs",
            self.search.max_params, self.search.max_macs
        ))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Model Search config serialises")
    }
}

/// A trial's training settings that the search chooses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hparams {
    pub lr: f64,
    pub optimizer: OptimizerKind,
}

impl Hparams {
    pub fn of(train: &TrainConfig) -> Hparams {
        Hparams {
            lr: train.lr,
            optimizer: train.optimizer,
        }
    }
}

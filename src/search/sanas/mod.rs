//! SANAS / Budgeted Super Networks (Veniat & Denoyer): a super network whose
//! nodes (`gate = true` layers) are kept or dropped per sample by Bernoulli
//! gates, the gates learned by REINFORCE on the loss plus a cost penalty, so
//! that the search finds sub-networks under a budget of MACs or parameters.
//! A search config is an experiment (features, data, `[train]`, `[model]`
//! with gated layers) and a `[search]` table; a list of lambdas runs one
//! search per lambda, each in `points/` of the run folder.

pub mod gates;
pub mod search;

use crate::model::Cost;
use crate::train::config::{ConfigError, Experiment};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
}

impl CostKind {
    /// The cost of what runs, as the cost model counts it.
    pub fn of(self, cost: &Cost) -> f64 {
        match self {
            CostKind::Macs => cost.macs as f64,
            CostKind::Params => cost.params as f64,
        }
    }
}

/// The `[search]` table of a SANAS config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SanasSettings {
    pub strategy: String,
    pub cost: CostKind,
    /// One search per value: the weight of the cost term in the reward.
    pub lambdas: Vec<f64>,
    /// Only the cost above this counts (in the cost's unit: MACs per clip or
    /// parameters); 0 gives the plain `lambda * C(H)`.
    pub budget: f64,
    /// Every gate's initial logit (3: p = 0.95).
    pub gate_init: f32,
    /// Adam's learning rate for the gate logits.
    pub gate_lr: f64,
    /// The baseline's weight on each new batch-mean reward.
    pub baseline_decay: f64,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
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

    /// The resolved config as TOML, as a run folder keeps it.
    pub fn to_toml(&self) -> String {
        let search = toml::to_string(&self.search).expect("settings serialise");
        format!("{}\n[search]\n{search}", self.experiment.to_toml())
    }
}

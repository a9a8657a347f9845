//! Search configs (TOML): the features, data, augmentation and weight
//! training of an experiment, the search space, and the strategy with its
//! architecture optimizer. Unknown keys are refused.

use super::space::SpaceConfig;
use crate::data::augment::AugmentConfig;
use crate::data::dataset::DataSetConfig;
use crate::data::features::FeatureConfig;
use crate::model::arch::Weighting;
use crate::nn::optim::OptimizerKind;
use crate::nn::ARCH;
use crate::train::config::{resolve_features, ConfigError, Experiment, TrainConfig};
use crate::train::schedule::LrSchedule;
use crate::train::session::GroupConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The differentiable strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Darts,
}

impl Strategy {
    pub const NAMES: [&'static str; 1] = ["darts"];

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Darts => "darts",
        }
    }

    pub fn parse(name: &str) -> Result<Strategy, String> {
        match name {
            "darts" => Ok(Strategy::Darts),
            other => Err(format!(
                "unknown strategy {other:?}; choose from {}",
                Strategy::NAMES.join(", ")
            )),
        }
    }

    /// How architecture weights follow from alpha, and alpha's initial scale.
    pub fn weighting(&self) -> (Weighting, f32) {
        match self {
            Strategy::Darts => (Weighting::Softmax, 1e-3),
        }
    }
}

/// The strategy and its architecture optimizer (defaults as the DARTS reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    pub strategy: Strategy,
    pub arch_lr: f64,
    pub arch_betas: [f32; 2],
    pub arch_weight_decay: f64,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            strategy: Strategy::Darts,
            arch_lr: 3e-4,
            arch_betas: [0.5, 0.999],
            arch_weight_decay: 1e-3,
        }
    }
}

/// A whole search config, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub features: FeatureConfig,
    #[serde(default = "darts_training")]
    pub train: TrainConfig,
    #[serde(default)]
    pub data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub search: StrategyConfig,
    pub space: SpaceConfig,
}

/// The weight training of the DARTS reference: SGD with momentum 0.9, lr
/// 0.025 on a cosine down to 0.001, weight decay 3e-4, clipping at 5.
fn darts_training() -> TrainConfig {
    TrainConfig {
        lr: 0.025,
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        schedule: LrSchedule {
            schedule: crate::train::schedule::Schedule::Cosine { min_lr: 0.001 },
            warmup_epochs: 0.0,
        },
        weight_decay: 3e-4,
        clip_norm: Some(5.0),
        ..TrainConfig::default()
    }
}

/// The file as written: `features` may be a path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFile {
    features: toml::Value,
    #[serde(default = "darts_training")]
    train: TrainConfig,
    #[serde(default)]
    data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    augment: AugmentConfig,
    #[serde(default)]
    search: StrategyConfig,
    space: SpaceConfig,
}

impl SearchConfig {
    pub fn load(path: &Path) -> Result<SearchConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of `path` and checks it before any training.
    pub fn parse(text: &str, path: &Path) -> Result<SearchConfig, ConfigError> {
        let fail = |reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let file: SearchFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        let config = SearchConfig {
            features: resolve_features(file.features, path)?,
            train: file.train,
            data: file.data,
            augment: file.augment,
            search: file.search,
            space: file.space,
        };
        config.space.validate().map_err(&fail)?;
        let s = &config.search;
        if !(s.arch_lr.is_finite() && s.arch_lr > 0.0) {
            return Err(fail(format!(
                "[search] arch_lr = {} must be a positive number",
                s.arch_lr
            )));
        }
        if !(s.arch_weight_decay.is_finite() && s.arch_weight_decay >= 0.0) {
            return Err(fail(format!(
                "[search] arch_weight_decay = {} must be >= 0",
                s.arch_weight_decay
            )));
        }
        if s.arch_betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(fail(format!(
                "[search] arch_betas = {:?} must be in [0, 1)",
                s.arch_betas
            )));
        }
        // Builds the supernet's description and checks its shapes on the
        // features (a stride that makes a shape vanish is refused here).
        let experiment = config.experiment();
        experiment.validate().map_err(&fail)?;
        crate::model::Cost::of(
            &experiment.model,
            &config.features.clip_shape(),
            2,
            config.features.clip_ms,
            None,
        )
        .map_err(|e| fail(format!("[space]: {e}")))?;
        Ok(config)
    }

    /// The supernet as an experiment: what `Data`, `Session` and the run
    /// folder take.
    pub fn experiment(&self) -> Experiment {
        let (weighting, init_scale) = self.search.strategy.weighting();
        Experiment {
            features: self.features.clone(),
            train: self.train.clone(),
            data: self.data.clone(),
            augment: self.augment.clone(),
            model: self.space.supernet("supernet", weighting, init_scale),
        }
    }

    /// The architecture group's optimizer: Adam as the reference.
    pub fn arch_group(&self) -> GroupConfig {
        let s = &self.search;
        GroupConfig {
            name: ARCH,
            optimizer: OptimizerKind::Adam {
                beta1: s.arch_betas[0],
                beta2: s.arch_betas[1],
                eps: 1e-8,
            },
            lr: s.arch_lr,
            schedule: LrSchedule::default(),
            weight_decay: s.arch_weight_decay,
            clip_norm: None,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a search config serialises")
    }
}

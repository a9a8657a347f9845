//! An experiment config: features, model, training settings, data set
//! options and augmentation in one TOML file. `features` and `model` are
//! tables, or paths (relative to the config file) to files that hold them.
//! The resolved config, with both inlined, is what a run folder keeps.

use super::schedule::{LrSchedule, Schedule};
use crate::data::augment::AugmentConfig;
use crate::data::dataset::DataSetConfig;
use crate::data::features::FeatureConfig;
use crate::model::Architecture;
use crate::model::{layer_fields, Field};
use crate::nn::optim::OptimizerKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The base learning rate (the schedule scales it).
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub schedule: LrSchedule,
    /// L2 (Adam, SGD) or decoupled (AdamW) weight decay; biases and
    /// normalisation parameters are not decayed.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (none when absent).
    pub clip_norm: Option<f64>,
    pub label_smoothing: f64,
    /// Seeds weights, data order, augmentation and dropout.
    pub seed: u64,
    /// Read the loss and accuracy back every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 64,
            lr: 0.001,
            optimizer: OptimizerKind::default(),
            schedule: LrSchedule::default(),
            weight_decay: 0.0,
            clip_norm: None,
            label_smoothing: 0.0,
            seed: 0,
            log_every: 10,
        }
    }
}

/// A whole experiment, with features and model resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub features: FeatureConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    pub augment: AugmentConfig,
    pub model: Architecture,
}

/// The file as written: `features` and `model` may be paths.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    features: toml::Value,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    data: DataSetConfig,
    #[serde(default = "AugmentConfig::none")]
    augment: AugmentConfig,
    model: toml::Value,
}

/// A config problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub reason: String,
}

/// The text of a config file, or an error naming it.
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })
}

/// The `features` of a config file: a path (relative to the file's folder)
/// or an inline table.
pub fn resolve_features(value: toml::Value, path: &Path) -> Result<FeatureConfig, ConfigError> {
    let fail = |path: &Path, reason: String| ConfigError {
        path: path.to_path_buf(),
        reason,
    };
    match value {
        toml::Value::String(p) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(p);
            FeatureConfig::load(&p).map_err(|e| fail(&p, e.reason()))
        }
        table => {
            let text = toml::to_string(&table).map_err(|e| fail(path, e.to_string()))?;
            FeatureConfig::parse(&text, path)
                .map_err(|e| fail(path, format!("[features]: {}", e.reason())))
        }
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
        Self::parse(&read_config_text(path)?, path)
    }

    /// Parses the text of `path` (paths inside are relative to its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Experiment, ConfigError> {
        let fail = |path: &Path, reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let file: ExperimentFile = toml::from_str(text).map_err(|e| fail(path, e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let features_source = match &file.features {
            toml::Value::String(p) => base.join(p).display().to_string(),
            _ => format!("the [features] of {}", path.display()),
        };
        let features = resolve_features(file.features, path)?;
        let model = match file.model {
            toml::Value::String(p) => {
                let p = base.join(p);
                Architecture::load(&p).map_err(|e| fail(&p, e.to_string()))?
            }
            table => table
                .try_into::<Architecture>()
                .map_err(|e| fail(path, format!("[model]: {e}")))?,
        };
        // Real and complex layers against the features, naming both.
        let field = Field::of_features(&features.clip_shape());
        layer_fields(&model, field)
            .map_err(|e| fail(path, format!("{e} (features: {features_source})")))?;
        let experiment = Experiment {
            features,
            train: file.train,
            data: file.data,
            augment: file.augment,
            model,
        };
        experiment.validate().map_err(|reason| fail(path, reason))?;
        Ok(experiment)
    }

    /// Values that parse but make no sense, in every section: a run is
    /// checked whole before it starts, as reading its model file checks it.
    pub fn validate(&self) -> Result<(), String> {
        self.features
            .validate()
            .map_err(|e| format!("[features]: {e}"))?;
        self.data.validate().map_err(|e| format!("[data]: {e}"))?;
        self.augment
            .validate()
            .map_err(|e| format!("[augment]: {e}"))?;
        self.train.validate()
    }

    /// The resolved config as TOML, as a run folder keeps it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an experiment serialises")
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), String> {
        let t = self;
        if t.epochs == 0 || t.batch_size == 0 || t.log_every == 0 {
            return Err("[train]: epochs, batch_size and log_every must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(format!("[train]: lr = {} must be a positive number", t.lr));
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return Err(format!(
                "[train]: label_smoothing = {} must be in [0, 1)",
                t.label_smoothing
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(format!(
                "[train]: weight_decay = {} must be >= 0",
                t.weight_decay
            ));
        }
        if let Some(c) = t.clip_norm.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(format!("[train]: clip_norm = {c} must be positive"));
        }
        validate_optimizer(&t.optimizer)?;
        if let Schedule::Cosine { min_lr } = t.schedule.schedule {
            if min_lr > t.lr {
                return Err(format!(
                    "[train.schedule]: min_lr = {min_lr} is above lr = {}; the cosine schedule decays from lr down to min_lr",
                    t.lr
                ));
            }
        }
        t.schedule
            .validate()
            .map_err(|e| format!("[train.schedule]: {e}"))
    }
}

/// Momentum and the Adam betas are fractions below 1; `eps` is positive.
fn validate_optimizer(optimizer: &OptimizerKind) -> Result<(), String> {
    let fraction = |key: &str, value: f32| {
        if (0.0..1.0).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "[train.optimizer]: {key} = {value} must be in [0, 1)"
            ))
        }
    };
    match *optimizer {
        OptimizerKind::Sgd { momentum, .. } => fraction("momentum", momentum),
        OptimizerKind::Adam { beta1, beta2, eps } | OptimizerKind::Adamw { beta1, beta2, eps } => {
            fraction("beta1", beta1)?;
            fraction("beta2", beta2)?;
            if eps.is_finite() && eps > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "[train.optimizer]: eps = {eps} must be a positive number"
                ))
            }
        }
    }
}

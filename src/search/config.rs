//! Search configs (TOML): the features, data, augmentation and weight
//! training of an experiment, the search space, and the strategy with its
//! architecture optimizer. Unknown keys are refused.

use super::space::{SpaceConfig, Tables};
use crate::data::augment::AugmentConfig;
use crate::data::dataset::DataSetConfig;
use crate::data::features::FeatureConfig;
use crate::model::arch::{Regularisation, RegulariserKind, Weighting};
use crate::nn::optim::OptimizerKind;
use crate::nn::ARCH;
use crate::train::config::{
    read_config_text, resolve_features, ConfigError, Experiment, TrainConfig,
};
use crate::train::schedule::LrSchedule;
use crate::train::session::GroupConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The differentiable strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Softmax over each edge's operations (Liu et al.).
    Darts,
    /// Independent sigmoids with a zero-one loss, no `zero` operation (Chu et al.).
    FairDarts,
    /// Softmax over operations with a purity loss, a sigmoid gate per edge
    /// with a multi-hot loss, both switched on halfway, no `zero` operation.
    ForceDarts,
}

impl Strategy {
    pub const NAMES: [&'static str; 3] = ["darts", "fair-darts", "force-darts"];

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Darts => "darts",
            Strategy::FairDarts => "fair-darts",
            Strategy::ForceDarts => "force-darts",
        }
    }

    pub fn parse(name: &str) -> Result<Strategy, String> {
        match name {
            "darts" => Ok(Strategy::Darts),
            "fair-darts" => Ok(Strategy::FairDarts),
            "force-darts" => Ok(Strategy::ForceDarts),
            other => Err(format!(
                "unknown strategy {other:?}; choose from {}",
                Strategy::NAMES.join(", ")
            )),
        }
    }

    /// The architecture optimizer's learning rate and Adam betas of the reference.
    fn arch_defaults(&self) -> (f64, [f32; 2]) {
        match self {
            Strategy::Darts | Strategy::ForceDarts => (3e-4, [0.5, 0.999]),
            Strategy::FairDarts => (3e-3, [0.9, 0.999]),
        }
    }
}

/// The strategy and its architecture optimizer; the learning rate and betas
/// default to the strategy's reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    pub strategy: Strategy,
    pub arch_lr: Option<f64>,
    pub arch_betas: Option<[f32; 2]>,
    pub arch_weight_decay: f64,
    /// FairDARTS: the weight an operation needs to stay in a derived cell.
    pub threshold: f64,
    /// ForceDARTS: the purity measure (`gini` or `entropy`) of both losses.
    pub purity: RegulariserKind,
    /// ForceDARTS: the weight w_p of the purity loss on the operation
    /// weights; the multi-hot loss on the edge gates weighs w_p * nodes / edges.
    pub purity_weight: f64,
    /// Second order: the architecture gradient is taken after one virtual
    /// SGD step of the weights (`StepPart::unrolled`).
    pub unrolled: bool,
    /// Stop before an epoch that would end past this many minutes of
    /// search (epochs of earlier, resumed calls count), then derive.
    pub time_limit_minutes: Option<f64>,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            strategy: Strategy::Darts,
            arch_lr: None,
            arch_betas: None,
            arch_weight_decay: 1e-3,
            threshold: 0.85,
            purity: RegulariserKind::Gini,
            purity_weight: 20.0,
            unrolled: false,
            time_limit_minutes: None,
        }
    }
}

impl StrategyConfig {
    pub fn arch_lr(&self) -> f64 {
        self.arch_lr.unwrap_or(self.strategy.arch_defaults().0)
    }

    pub fn arch_betas(&self) -> [f32; 2] {
        self.arch_betas.unwrap_or(self.strategy.arch_defaults().1)
    }

    /// How the strategy's architecture weights are made, as the references
    /// make them.
    pub fn tables(&self) -> Tables {
        match self.strategy {
            Strategy::Darts => Tables {
                weighting: Weighting::Softmax,
                init_scale: 1e-3,
                regulariser: None,
                gates: None,
            },
            Strategy::FairDarts => Tables {
                weighting: Weighting::Sigmoid,
                init_scale: 0.0,
                regulariser: Some(Regularisation {
                    kind: RegulariserKind::ZeroOne,
                    weight: 10.0,
                }),
                gates: None,
            },
            Strategy::ForceDarts => {
                let purity = Regularisation {
                    kind: self.purity,
                    weight: self.purity_weight as f32,
                };
                Tables {
                    weighting: Weighting::Softmax,
                    init_scale: 1e-3,
                    regulariser: Some(purity),
                    gates: Some(purity),
                }
            }
        }
    }

    /// The first epoch (0-based) whose steps count the regularisers:
    /// ForceDARTS switches its losses on after half the epochs.
    pub fn regularise_from(&self, epochs: usize) -> usize {
        match self.strategy {
            Strategy::ForceDarts => epochs / 2,
            _ => 0,
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
        Self::parse(&read_config_text(path)?, path)
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
        config.space().validate().map_err(&fail)?;
        let s = &config.search;
        if !(s.arch_lr().is_finite() && s.arch_lr() > 0.0) {
            return Err(fail(format!(
                "[search] arch_lr = {} must be a positive number",
                s.arch_lr()
            )));
        }
        if !(s.arch_weight_decay.is_finite() && s.arch_weight_decay >= 0.0) {
            return Err(fail(format!(
                "[search] arch_weight_decay = {} must be >= 0",
                s.arch_weight_decay
            )));
        }
        if !(0.0..1.0).contains(&s.threshold) {
            return Err(fail(format!(
                "[search] threshold = {} must be in [0, 1)",
                s.threshold
            )));
        }
        if s.purity == RegulariserKind::ZeroOne {
            return Err(fail(
                "[search] purity = \"zero_one\" is not a purity; choose from gini, entropy".into(),
            ));
        }
        if !(s.purity_weight.is_finite() && s.purity_weight >= 0.0) {
            return Err(fail(format!(
                "[search] purity_weight = {} must be >= 0",
                s.purity_weight
            )));
        }
        if s.arch_betas().iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(fail(format!(
                "[search] arch_betas = {:?} must be in [0, 1)",
                s.arch_betas()
            )));
        }
        if let Some(t) = s.time_limit_minutes {
            if !(t.is_finite() && t > 0.0) {
                return Err(fail(format!(
                    "[search] time_limit_minutes = {t} must be a positive number"
                )));
            }
        }
        if s.unrolled && !matches!(config.train.optimizer, OptimizerKind::Sgd { .. }) {
            return Err(fail(
                "[search] unrolled = true takes a virtual SGD step of the weights; set [train] optimizer = { kind = \"sgd\", momentum = 0.9 }".into(),
            ));
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
        let tables = self.search.tables();
        Experiment {
            features: self.features.clone(),
            train: self.train.clone(),
            data: self.data.clone(),
            augment: self.augment.clone(),
            model: self.space().supernet("supernet", &tables),
        }
    }

    /// The space the strategy searches: FairDARTS and ForceDARTS have no
    /// `zero` operation (sigmoids let every operation, or every edge, fade
    /// on its own).
    pub fn space(&self) -> SpaceConfig {
        let mut space = self.space.clone();
        if self.search.strategy != Strategy::Darts {
            space.ops.retain(|o| o != "zero");
        }
        space
    }

    /// The architecture group's optimizer: Adam as the reference.
    pub fn arch_group(&self) -> GroupConfig {
        let s = &self.search;
        GroupConfig {
            name: ARCH,
            optimizer: OptimizerKind::Adam {
                beta1: s.arch_betas()[0],
                beta2: s.arch_betas()[1],
                eps: 1e-8,
            },
            lr: s.arch_lr(),
            schedule: LrSchedule::default(),
            weight_decay: s.arch_weight_decay,
            clip_norm: None,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a search config serialises")
    }
}

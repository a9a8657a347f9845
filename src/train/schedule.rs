//! Learning-rate schedules: a decay rule (constant, step, cosine) and an
//! optional linear warm-up.
//!
//! In a config the schedule is written flat, one table with the rule's `kind`,
//! its parameters and `warmup_epochs`:
//!
//! ```toml
//! [lr_schedule]
//! kind = "cosine"        # "constant" (the default), "step" or "cosine"
//! min_lr = 1e-5          # cosine: the rate reached at the last step
//! warmup_epochs = 1.0    # linear warm-up from 0, counted in steps; default 0
//! # kind = "step": every_epochs = 10, gamma = 0.5
//! ```
//!
//! Unknown keys, and keys of another kind (`gamma` with `kind = "cosine"`), are errors.

use super::error::{TrainError, TrainResult};
use serde::{Deserialize, Serialize};

/// How the rate decays after warm-up. On its own it (de)serializes as an
/// internally tagged table: `{ kind = "step", every_epochs = 10, gamma = 0.5 }`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// The base rate times `gamma` for every `every_epochs` finished epochs.
    Step { every_epochs: usize, gamma: f64 },
    /// Half a cosine from the base rate down to `min_lr`, over the steps after warm-up.
    Cosine { min_lr: f64 },
}

/// A decay rule plus linear warm-up. Serialized flat: the fields of
/// `schedule` sit beside `warmup_epochs` (see the module docs).
/// The default is a constant rate without warm-up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(try_from = "FlatLrSchedule", into = "FlatLrSchedule")]
pub struct LrSchedule {
    pub schedule: Schedule,
    /// Epochs (fractions allowed) over which the rate rises linearly from 0.
    pub warmup_epochs: f64,
}

impl LrSchedule {
    /// Checks every value, naming the key that is out of range.
    pub fn validate(&self) -> TrainResult<()> {
        let bad = |key, value: String, reason: &str| TrainError::BadSchedule {
            key,
            value,
            reason: reason.to_string(),
        };
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(bad(
                "warmup_epochs",
                self.warmup_epochs.to_string(),
                "must be a number >= 0 (0 means no warm-up)",
            ));
        }
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                if every_epochs == 0 {
                    return Err(bad(
                        "every_epochs",
                        "0".into(),
                        "must be at least 1 (the rate is multiplied by gamma every that many epochs)",
                    ));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(bad(
                        "gamma",
                        gamma.to_string(),
                        "must be a number > 0 (typically 0.1 to 0.5)",
                    ));
                }
            }
            Schedule::Cosine { min_lr } => {
                if !(min_lr.is_finite() && min_lr >= 0.0) {
                    return Err(bad(
                        "min_lr",
                        min_lr.to_string(),
                        "must be a number >= 0 (the rate at the last step)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rate at global `step` (counted from 0) of a run of `epochs` epochs of
    /// `steps_per_epoch` steps each.
    ///
    /// rate = decay(step) * warm-up factor, where the warm-up factor is
    /// `step / warmup_steps` during the first `warmup_steps = round(warmup_epochs *
    /// steps_per_epoch)` steps (so step 0 has rate 0) and 1 after them. Step decay
    /// uses the epoch of the step, `step / steps_per_epoch`, warm-up epochs
    /// included. Cosine uses the progress `(step - warmup_steps) / (total -
    /// warmup_steps)` after warm-up, clamped to [0, 1], where `total = epochs *
    /// steps_per_epoch`: it equals the base rate when warm-up ends and would reach
    /// `min_lr` at step `total`. A `steps_per_epoch` of 0 counts as 1.
    pub fn lr_at(&self, base_lr: f64, step: u64, steps_per_epoch: u64, epochs: u64) -> f64 {
        let steps_per_epoch = steps_per_epoch.max(1);
        let warmup_steps = (self.warmup_epochs.max(0.0) * steps_per_epoch as f64).round() as u64;
        let decayed = match self.schedule {
            Schedule::Constant => base_lr,
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                let epoch = step / steps_per_epoch;
                let drops = epoch / every_epochs.max(1) as u64;
                base_lr * gamma.powf(drops as f64)
            }
            Schedule::Cosine { min_lr } => {
                let total = epochs.saturating_mul(steps_per_epoch);
                let decay_steps = total.saturating_sub(warmup_steps);
                let progress = if decay_steps == 0 {
                    if step >= warmup_steps {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    (step.saturating_sub(warmup_steps) as f64 / decay_steps as f64).min(1.0)
                };
                min_lr + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        };
        if step < warmup_steps {
            decayed * step as f64 / warmup_steps as f64
        } else {
            decayed
        }
    }
}

/// The flat form of `LrSchedule` in config files: every key of every kind,
/// checked against the kind when converted.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatLrSchedule {
    #[serde(default)]
    kind: ScheduleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every_epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_lr: Option<f64>,
    #[serde(default)]
    warmup_epochs: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
}

impl TryFrom<FlatLrSchedule> for LrSchedule {
    type Error = String;

    fn try_from(flat: FlatLrSchedule) -> Result<Self, String> {
        let present = |key: &'static str, set: bool| set.then_some(key);
        let (kind, required, foreign): (&str, Vec<&str>, Vec<&str>) = match flat.kind {
            ScheduleKind::Constant => (
                "constant",
                vec![],
                [
                    present("every_epochs", flat.every_epochs.is_some()),
                    present("gamma", flat.gamma.is_some()),
                    present("min_lr", flat.min_lr.is_some()),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            ScheduleKind::Step => (
                "step",
                [
                    present("every_epochs", flat.every_epochs.is_none()),
                    present("gamma", flat.gamma.is_none()),
                ]
                .into_iter()
                .flatten()
                .collect(),
                present("min_lr", flat.min_lr.is_some())
                    .into_iter()
                    .collect(),
            ),
            ScheduleKind::Cosine => (
                "cosine",
                present("min_lr", flat.min_lr.is_none())
                    .into_iter()
                    .collect(),
                [
                    present("every_epochs", flat.every_epochs.is_some()),
                    present("gamma", flat.gamma.is_some()),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
        };
        if let Some(key) = foreign.first() {
            return Err(format!(
                "`{key}` does not apply to kind = \"{kind}\"; remove it or change the kind"
            ));
        }
        if let Some(key) = required.first() {
            return Err(format!(
                "kind = \"{kind}\" needs `{key}`; add it to the learning-rate schedule"
            ));
        }
        let schedule = match flat.kind {
            ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Step => Schedule::Step {
                every_epochs: flat.every_epochs.unwrap_or_default(),
                gamma: flat.gamma.unwrap_or_default(),
            },
            ScheduleKind::Cosine => Schedule::Cosine {
                min_lr: flat.min_lr.unwrap_or_default(),
            },
        };
        let schedule = LrSchedule {
            schedule,
            warmup_epochs: flat.warmup_epochs,
        };
        schedule.validate().map_err(|e| e.to_string())?;
        Ok(schedule)
    }
}

impl From<LrSchedule> for FlatLrSchedule {
    fn from(lr: LrSchedule) -> Self {
        let mut flat = FlatLrSchedule {
            kind: ScheduleKind::Constant,
            every_epochs: None,
            gamma: None,
            min_lr: None,
            warmup_epochs: lr.warmup_epochs,
        };
        match lr.schedule {
            Schedule::Constant => {}
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                flat.kind = ScheduleKind::Step;
                flat.every_epochs = Some(every_epochs);
                flat.gamma = Some(gamma);
            }
            Schedule::Cosine { min_lr } => {
                flat.kind = ScheduleKind::Cosine;
                flat.min_lr = Some(min_lr);
            }
        }
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn constant_is_base_everywhere() {
        let s = LrSchedule::default();
        for step in [0, 1, 99, 1000] {
            assert_eq!(s.lr_at(0.1, step, 10, 10), 0.1);
        }
    }

    #[test]
    fn warmup_rises_linearly_from_zero() {
        let s = LrSchedule {
            schedule: Schedule::Constant,
            warmup_epochs: 2.0,
        };
        // 2 epochs of 10 steps: 20 warm-up steps.
        assert_eq!(s.lr_at(0.1, 0, 10, 5), 0.0);
        assert!(close(s.lr_at(0.1, 5, 10, 5), 0.025));
        assert!(close(s.lr_at(0.1, 10, 10, 5), 0.05));
        assert!(close(s.lr_at(0.1, 19, 10, 5), 0.095));
        assert_eq!(s.lr_at(0.1, 20, 10, 5), 0.1);
        let half = LrSchedule {
            schedule: Schedule::Constant,
            warmup_epochs: 0.5,
        };
        assert!(close(half.lr_at(1.0, 2, 8, 3), 0.5));
        assert_eq!(half.lr_at(1.0, 4, 8, 3), 1.0);
    }

    #[test]
    fn step_multiplies_by_gamma_every_n_epochs() {
        let s = LrSchedule {
            schedule: Schedule::Step {
                every_epochs: 2,
                gamma: 0.5,
            },
            warmup_epochs: 0.0,
        };
        // 10 steps per epoch: epochs 0-1 -> 1, 2-3 -> 0.5, 4-5 -> 0.25.
        assert_eq!(s.lr_at(1.0, 0, 10, 6), 1.0);
        assert_eq!(s.lr_at(1.0, 19, 10, 6), 1.0);
        assert_eq!(s.lr_at(1.0, 20, 10, 6), 0.5);
        assert_eq!(s.lr_at(1.0, 39, 10, 6), 0.5);
        assert_eq!(s.lr_at(1.0, 40, 10, 6), 0.25);
        assert_eq!(s.lr_at(1.0, 59, 10, 6), 0.25);
    }

    #[test]
    fn cosine_goes_from_base_to_min_after_warmup() {
        let s = LrSchedule {
            schedule: Schedule::Cosine { min_lr: 0.1 },
            warmup_epochs: 1.0,
        };
        // 5 epochs of 10 steps: 10 warm-up steps, then 40 decay steps.
        assert_eq!(s.lr_at(1.0, 0, 10, 5), 0.0);
        assert!(close(s.lr_at(1.0, 5, 10, 5), 0.5));
        assert_eq!(s.lr_at(1.0, 10, 10, 5), 1.0);
        let quarter = 0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!(close(s.lr_at(1.0, 20, 10, 5), quarter));
        assert!(close(s.lr_at(1.0, 30, 10, 5), 0.55));
        assert!(s.lr_at(1.0, 49, 10, 5) > 0.1);
        assert!(close(s.lr_at(1.0, 50, 10, 5), 0.1));
        assert!(close(s.lr_at(1.0, 1000, 10, 5), 0.1));
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let s = LrSchedule {
            schedule: Schedule::Cosine { min_lr: 0.0 },
            warmup_epochs: 3.0,
        };
        assert!(s.lr_at(1.0, 0, 0, 0).is_finite());
        assert_eq!(s.lr_at(1.0, 5, 0, 0), 0.0);
        assert!(s.lr_at(1.0, 2, 0, 1).is_finite());
    }

    #[test]
    fn flat_toml_round_trip() {
        let s: LrSchedule =
            toml::from_str("kind = \"step\"\nevery_epochs = 3\ngamma = 0.1\nwarmup_epochs = 0.5\n")
                .unwrap();
        assert_eq!(
            s,
            LrSchedule {
                schedule: Schedule::Step {
                    every_epochs: 3,
                    gamma: 0.1
                },
                warmup_epochs: 0.5
            }
        );
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<LrSchedule>(&text).unwrap(), s);
        assert_eq!(
            toml::from_str::<LrSchedule>("").unwrap(),
            LrSchedule::default()
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), s);
    }

    #[test]
    fn bad_keys_are_named() {
        let err = |text: &str| toml::from_str::<LrSchedule>(text).unwrap_err().to_string();
        assert!(err("kind = \"cosine\"\nmin_lr = 0.0\ngamma = 0.5\n").contains("`gamma`"));
        assert!(err("kind = \"step\"\ngamma = 0.5\n").contains("`every_epochs`"));
        assert!(err("kind = \"cosine\"\nmin_lr = 0.0\nwarmup = 1\n").contains("warmup"));
        assert!(err("kind = \"linear\"\n").contains("linear"));
        assert!(err("kind = \"step\"\nevery_epochs = 0\ngamma = 0.5\n").contains("every_epochs"));
        assert!(err("warmup_epochs = -1.0\n").contains("warmup_epochs"));
        assert!(err("kind = \"cosine\"\nmin_lr = -1.0\n").contains("min_lr"));
    }

    #[test]
    fn tagged_schedule_alone() {
        let s: Schedule = toml::from_str("kind = \"cosine\"\nmin_lr = 0.001\n").unwrap();
        assert_eq!(s, Schedule::Cosine { min_lr: 0.001 });
        assert!(toml::from_str::<Schedule>("kind = \"cosine\"\nmin_lr = 0.0\nx = 1\n").is_err());
    }
}

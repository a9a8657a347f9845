//! Optimizers over a network's parameters: SGD (momentum, Nesterov) and
//! Adam / AdamW, with weight decay on the parameters that take it and
//! optional clipping of the global gradient norm, all recorded into the
//! step's submit.

use super::Param;
use crate::gpu::{Gpu, GpuError, GpuResult, Recorder, Tensor};
use crate::kernels::optimizers::{adam_step, sgd_step, Adam, Clip, Sgd};
use crate::kernels::reductions::SquaresPlan;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Which update rule, with its settings (the learning rate comes per step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerKind {
    Sgd {
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
    },
    Adam {
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_eps")]
        eps: f32,
    },
    /// Adam with decoupled weight decay.
    Adamw {
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_eps")]
        eps: f32,
    },
}

fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-8
}

impl Default for OptimizerKind {
    fn default() -> Self {
        OptimizerKind::Adam {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
        }
    }
}

impl OptimizerKind {
    /// Names of the per-parameter state tensors.
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            OptimizerKind::Sgd { .. } => &["momentum"],
            OptimizerKind::Adam { .. } | OptimizerKind::Adamw { .. } => &["m", "v"],
        }
    }
}

/// One parameter's optimizer state tensors (`state_names` order) and the
/// updates it has had (Adam's bias correction counts a parameter's own
/// updates, so one that a mask left out catches up correctly).
struct ParamState {
    tensors: Vec<Tensor>,
    steps: u64,
}

/// Plans of the global norm cached by the lengths of the tensors stepped
/// together; a search that masks layers steps a few different sets.
const MAX_PLANS: usize = 64;

/// An optimizer over one group of parameters, its state kept by parameter
/// name, so that a step may update any subset (the layers a mask left on)
/// and a checkpoint stores and restores it by name.
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f32,
    clip_norm: Option<f32>,
    state: BTreeMap<String, ParamState>,
    norm: Tensor,
    plans: HashMap<Vec<usize>, SquaresPlan>,
}

impl Optimizer {
    /// An optimizer for the named parameters, with zero state.
    pub fn new(
        gpu: &Gpu,
        kind: OptimizerKind,
        weight_decay: f32,
        clip_norm: Option<f32>,
        params: &[(String, &Param)],
    ) -> GpuResult<Self> {
        let state = params
            .iter()
            .map(|(name, p)| {
                let tensors = kind
                    .state_names()
                    .iter()
                    .map(|_| gpu.zeros(p.value.shape()))
                    .collect::<GpuResult<Vec<_>>>()?;
                Ok((name.clone(), ParamState { tensors, steps: 0 }))
            })
            .collect::<GpuResult<_>>()?;
        Ok(Optimizer {
            kind,
            weight_decay,
            clip_norm,
            state,
            norm: gpu.zeros(&[1])?,
            plans: HashMap::new(),
        })
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Every state tensor as `(parameter.state, tensor)`, in name order.
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        self.state
            .iter()
            .flat_map(|(name, s)| {
                self.kind
                    .state_names()
                    .iter()
                    .zip(&s.tensors)
                    .map(move |(state, t)| (format!("{name}.{state}"), t))
            })
            .collect()
    }

    /// Updates taken by each parameter, by name.
    pub fn steps(&self) -> BTreeMap<String, u64> {
        self.state
            .iter()
            .map(|(name, s)| (name.clone(), s.steps))
            .collect()
    }

    /// Restores the update counts of `steps()`; names not in this optimizer
    /// are refused.
    pub fn set_steps(&mut self, steps: &BTreeMap<String, u64>) -> Result<(), String> {
        for (name, &n) in steps {
            match self.state.get_mut(name) {
                Some(s) => s.steps = n,
                None => {
                    return Err(format!(
                        "has update counts for {name:?}, which this optimizer does not train"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The SGD momentum buffer of parameter `name`, torch's
    /// `b = momentum * b + gradient` (zero before its first update); none
    /// for Adam or a name this optimizer does not train.
    pub fn momentum_buffer(&self, name: &str) -> Option<&Tensor> {
        match self.kind {
            OptimizerKind::Sgd { .. } => self.state.get(name).map(|s| &s.tensors[0]),
            OptimizerKind::Adam { .. } | OptimizerKind::Adamw { .. } => None,
        }
    }

    /// The global gradient norm of the last step (when clipping).
    pub fn norm(&self) -> &Tensor {
        &self.norm
    }

    /// Records one update with learning rate `lr` of the given parameters
    /// (a subset of those the optimizer was made for); the others, and their
    /// state, stay as they are. Clipping takes the norm over the given ones.
    pub fn step(
        &mut self,
        rec: &mut Recorder,
        params: &[(String, &Param)],
        lr: f32,
    ) -> GpuResult<()> {
        if params.is_empty() {
            return Ok(());
        }
        let clip = match self.clip_norm {
            Some(max_norm) => {
                let lens: Vec<usize> = params.iter().map(|(_, p)| p.len()).collect();
                if !self.plans.contains_key(&lens) {
                    if self.plans.len() >= MAX_PLANS {
                        self.plans.clear();
                    }
                    let plan = SquaresPlan::new(rec.gpu(), &lens)?;
                    self.plans.insert(lens.clone(), plan);
                }
                let grads: Vec<&Tensor> = params.iter().map(|(_, p)| &p.grad).collect();
                self.plans[&lens].global_norm(rec, &grads, &self.norm)?;
                Some(Clip {
                    norm: &self.norm,
                    max_norm,
                })
            }
            None => None,
        };
        for (name, p) in params {
            let state = self.state.get_mut(name).ok_or_else(|| {
                GpuError::Order(format!(
                    "parameter {name:?} is not one this optimizer was made for"
                ))
            })?;
            state.steps += 1;
            let decay = if p.decay { self.weight_decay } else { 0.0 };
            match self.kind {
                OptimizerKind::Sgd { momentum, nesterov } => {
                    let cfg = Sgd {
                        momentum,
                        nesterov,
                        weight_decay: decay,
                        ..Sgd::new(lr)
                    };
                    sgd_step(
                        rec,
                        &cfg,
                        state.steps,
                        &p.value,
                        &p.grad,
                        &state.tensors[0],
                        clip.as_ref(),
                    )?;
                }
                OptimizerKind::Adam { beta1, beta2, eps }
                | OptimizerKind::Adamw { beta1, beta2, eps } => {
                    let cfg = Adam {
                        beta1,
                        beta2,
                        eps,
                        weight_decay: decay,
                        decoupled: matches!(self.kind, OptimizerKind::Adamw { .. }),
                        ..Adam::new(lr)
                    };
                    adam_step(
                        rec,
                        &cfg,
                        state.steps,
                        &p.value,
                        &p.grad,
                        &state.tensors[0],
                        &state.tensors[1],
                        clip.as_ref(),
                    )?;
                }
            }
        }
        Ok(())
    }
}

//! Optimizers over a network's parameters: SGD (momentum, Nesterov) and
//! Adam / AdamW, with weight decay on the parameters that take it and
//! optional clipping of the global gradient norm, all recorded into the
//! step's submit.

use super::Param;
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::optimizers::{adam_step, sgd_step, Adam, Clip, Sgd};
use crate::kernels::reductions::SquaresPlan;
use serde::{Deserialize, Serialize};

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

pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f32,
    clip_norm: Option<f32>,
    /// Per parameter, its state tensors (`state_names` order).
    state: Vec<Vec<Tensor>>,
    norm: Tensor,
    plan: SquaresPlan,
    /// Steps taken so far.
    pub steps: u64,
}

impl Optimizer {
    pub fn new(
        gpu: &Gpu,
        kind: OptimizerKind,
        weight_decay: f32,
        clip_norm: Option<f32>,
        params: &[&Param],
    ) -> GpuResult<Self> {
        let state = params
            .iter()
            .map(|p| {
                kind.state_names()
                    .iter()
                    .map(|_| gpu.zeros(p.value.shape()))
                    .collect::<GpuResult<Vec<_>>>()
            })
            .collect::<GpuResult<Vec<_>>>()?;
        let lens: Vec<usize> = params.iter().map(|p| p.len()).collect();
        Ok(Optimizer {
            kind,
            weight_decay,
            clip_norm,
            state,
            norm: gpu.zeros(&[1])?,
            plan: SquaresPlan::new(gpu, &lens)?,
            steps: 0,
        })
    }

    /// The state tensors of parameter `i`, named.
    pub fn state_of(&self, i: usize) -> impl Iterator<Item = (&'static str, &Tensor)> {
        self.kind.state_names().iter().copied().zip(&self.state[i])
    }

    /// The global gradient norm of the last step (when clipping).
    pub fn norm(&self) -> &Tensor {
        &self.norm
    }

    /// Records one update of every parameter with learning rate `lr`.
    pub fn step(&mut self, rec: &mut Recorder, params: &[&Param], lr: f32) -> GpuResult<()> {
        self.steps += 1;
        let clip = match self.clip_norm {
            Some(max_norm) => {
                let grads: Vec<&Tensor> = params.iter().map(|p| &p.grad).collect();
                self.plan.global_norm(rec, &grads, &self.norm)?;
                Some(Clip {
                    norm: &self.norm,
                    max_norm,
                })
            }
            None => None,
        };
        for (p, state) in params.iter().zip(&self.state) {
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
                        self.steps,
                        &p.value,
                        &p.grad,
                        &state[0],
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
                        self.steps,
                        &p.value,
                        &p.grad,
                        &state[0],
                        &state[1],
                        clip.as_ref(),
                    )?;
                }
            }
        }
        Ok(())
    }
}

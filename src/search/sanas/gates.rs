//! The gates of a static stochastic super network (BSN): a logit per gated
//! node, Bernoulli draws per sample, and the REINFORCE step on the reward
//! `-(loss + lambda * cost term)` against a moving baseline. A handful of
//! numbers, so they live on the CPU and step with the same Adam rule the
//! GPU kernel is checked against.

use crate::kernels::optimizers::{adam_reference, Adam};
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};

/// The gate logits, their Adam moments and the reward baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateState {
    pub logits: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Adam steps taken.
    pub steps: u64,
    /// The moving average of the batch-mean reward (none before the first step).
    pub baseline: Option<f64>,
}

/// What one REINFORCE step saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReinforceStep {
    pub mean_reward: f64,
    /// `-mean over samples and gates of log p(h) * (r - b)`.
    pub arch_loss: f64,
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl GateState {
    /// `gates` logits at `init` (3: every gate open with p = 0.95).
    pub fn new(gates: usize, init: f32) -> GateState {
        GateState {
            logits: vec![init; gates],
            m: vec![0.0; gates],
            v: vec![0.0; gates],
            steps: 0,
            baseline: None,
        }
    }

    pub fn probabilities(&self) -> Vec<f64> {
        self.logits.iter().map(|&l| sigmoid(l as f64)).collect()
    }

    /// One draw of every gate per sample: `draws[b][k]`.
    pub fn sample(&self, batch: usize, rng: &mut Rng) -> Vec<Vec<bool>> {
        let p = self.probabilities();
        (0..batch)
            .map(|_| p.iter().map(|&p| rng.bernoulli(p)).collect())
            .collect()
    }

    /// The deterministic architecture: the gates with p > 0.5.
    pub fn kept(&self) -> Vec<bool> {
        self.logits.iter().map(|&l| l > 0.0).collect()
    }

    /// One REINFORCE step from the draws of a batch and each sample's
    /// reward. As the reference: the baseline moves first
    /// (`b = decay * mean(r) + (1 - decay) * b`, the first batch's mean to
    /// start), then the logits take the gradient of
    /// `-mean_{b,k} log p(h_bk) * (r_b - b)`, which for a Bernoulli of
    /// `p = sigmoid(logit)` is `-mean_b (h_bk - p_k) (r_b - b) / gates`.
    pub fn reinforce(
        &mut self,
        draws: &[Vec<bool>],
        rewards: &[f64],
        decay: f64,
        adam: &Adam,
    ) -> ReinforceStep {
        let batch = rewards.len().max(1) as f64;
        let mean_reward = rewards.iter().sum::<f64>() / batch;
        let baseline = match self.baseline {
            None => mean_reward,
            Some(b) => decay * mean_reward + (1.0 - decay) * b,
        };
        self.baseline = Some(baseline);
        let p = self.probabilities();
        let advantages: Vec<f64> = rewards.iter().map(|r| r - baseline).collect();
        let grad: Vec<f32> = reinforce_gradient(&p, draws, &advantages)
            .into_iter()
            .map(|g| g as f32)
            .collect();
        let arch_loss = arch_loss(&p, draws, &advantages);
        self.steps += 1;
        adam_reference(
            adam,
            self.steps,
            &mut self.logits,
            &grad,
            &mut self.m,
            &mut self.v,
            1.0,
        );
        ReinforceStep {
            mean_reward,
            arch_loss,
        }
    }
}

/// The architecture loss `-mean_{b,k} log p(h_bk) * a_b` of draws `h` with
/// advantages `a`, the gate probabilities being `p`.
pub fn arch_loss(p: &[f64], draws: &[Vec<bool>], advantages: &[f64]) -> f64 {
    let n = (draws.len() * p.len()).max(1) as f64;
    let mut loss = 0.0;
    for (h, a) in draws.iter().zip(advantages) {
        for (k, &pk) in p.iter().enumerate() {
            let log_p = if h[k] { pk.ln() } else { (1.0 - pk).ln() };
            loss -= log_p * a / n;
        }
    }
    loss
}

/// The gradient of [`arch_loss`] w.r.t. the logits (`p = sigmoid(logit)`):
/// `d log p(h) / d logit = h - p`.
pub fn reinforce_gradient(p: &[f64], draws: &[Vec<bool>], advantages: &[f64]) -> Vec<f64> {
    let n = (draws.len() * p.len()).max(1) as f64;
    let mut grad = vec![0.0; p.len()];
    for (h, a) in draws.iter().zip(advantages) {
        for (k, &pk) in p.iter().enumerate() {
            grad[k] -= (f64::from(u8::from(h[k])) - pk) * a / n;
        }
    }
    grad
}

/// Each sample's reward `-(loss + lambda * max(0, cost - budget) / full)`:
/// the cost term is over the whole super network's cost `full`, so lambda
/// weighs "all of the network" against the loss whatever the cost's unit.
pub fn rewards(losses: &[f32], costs: &[f64], lambda: f64, budget: f64, full: f64) -> Vec<f64> {
    losses
        .iter()
        .zip(costs)
        .map(|(&l, &c)| -(l as f64 + lambda * (c - budget).max(0.0) / full.max(f64::MIN_POSITIVE)))
        .collect()
}

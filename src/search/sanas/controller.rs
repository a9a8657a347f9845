//! The adaptive SANAS controller: a GRU over a stream's windows whose input
//! is what the super network's classifier saw in the previous window (zeros
//! before the first) and whose state starts from a learned `h0`; a dense
//! layer and a sigmoid give the gate probabilities of the next window (bias
//! 3 at start, so p = 0.95). Its parameters are their own group, stepped by
//! Adam on the REINFORCE gradient of the whole sequence of windows.

use super::gates::sigmoid;
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::elementwise::{bias_add, bias_backward, BiasLayout};
use crate::kernels::gru::{gru_backward, gru_forward, GruGrads, GruShape, GruState, GruWeights};
use crate::nn::optim::{Optimizer, OptimizerKind};
use crate::nn::{Dense, Init, Layer, Param, Pass};
use crate::util::rng::Rng;

/// The group of the controller's parameters.
pub const CONTROLLER: &str = "controller";

pub struct Controller {
    features: usize,
    hidden: usize,
    gates: usize,
    batch: usize,
    w_ih: Param,
    w_hh: Param,
    b_ih: Param,
    b_hh: Param,
    h0: Param,
    head: Dense,
    optimizer: Optimizer,
    lr: f32,
    /// One window at a time while the super network runs.
    step_state: GruState,
    /// The running hidden state `[B, H]` of the streams in flight.
    h: Tensor,
    /// Training over whole sequences of `windows`.
    train_state: Option<GruState>,
}

impl Controller {
    /// A controller of `gates` gates reading `features` values per window,
    /// for batches of `batch` streams.
    pub fn new(
        gpu: &Gpu,
        features: usize,
        hidden: usize,
        gates: usize,
        batch: usize,
        lr: f64,
        seed: u64,
    ) -> GpuResult<Controller> {
        let mut rng = Rng::new(seed ^ 0xC0_47_20_11);
        // PyTorch's GRU: every weight and bias uniform in +-1/sqrt(hidden).
        let bound = 1.0 / (hidden as f32).sqrt();
        let mut uniform = |shape: &[usize], name: &'static str| {
            let n = shape.iter().product();
            Param::new(gpu, name, shape, &rng.vec_uniform(n, -bound, bound))
                .map(|p| p.in_group(CONTROLLER))
        };
        let w_ih = uniform(&[3 * hidden, features], "gru.w_ih")?;
        let w_hh = uniform(&[3 * hidden, hidden], "gru.w_hh")?;
        let b_ih = uniform(&[3 * hidden], "gru.b_ih")?.no_decay();
        let b_hh = uniform(&[3 * hidden], "gru.b_hh")?.no_decay();
        let h0 = Param::new(gpu, "gru.h0", &[hidden], &vec![0.0; hidden])?
            .in_group(CONTROLLER)
            .no_decay();
        let mut head = Dense::new(gpu, hidden, gates, true, Init::Default, &mut rng)?;
        for p in head.params_mut() {
            p.group = CONTROLLER;
            if p.name == "bias" {
                gpu.write(&p.value, &vec![3.0; gates])?;
            }
        }
        let optimizer = Optimizer::new(
            gpu,
            OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            0.0,
            None,
            &named([&w_ih, &w_hh, &b_ih, &b_hh, &h0], &head),
        )?;
        Ok(Controller {
            features,
            hidden,
            gates,
            batch,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            h0,
            head,
            optimizer,
            lr: lr as f32,
            step_state: GruState::new(gpu, GruShape::new(1, batch, features, hidden))?,
            h: gpu.zeros(&[batch, hidden])?,
            train_state: None,
        })
    }

    /// Every parameter with its name (`gru.*`, `head.*`).
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        named(
            [&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh, &self.h0],
            &self.head,
        )
    }

    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    fn weights(&self) -> GruWeights<'_> {
        GruWeights {
            w_ih: &self.w_ih.value,
            w_hh: &self.w_hh.value,
            b_ih: &self.b_ih.value,
            b_hh: &self.b_hh.value,
        }
    }

    /// `h0` repeated for every stream of the batch, into `into` (`[B, H]`).
    fn broadcast_h0(&self, rec: &mut Recorder, into: &Tensor) -> GpuResult<()> {
        rec.clear(into);
        bias_add(
            rec,
            &BiasLayout::rows(self.batch, self.hidden),
            into,
            &self.h0.value,
        )
    }

    /// Starts a batch of streams from `h0`.
    pub fn start(&self, gpu: &Gpu) -> GpuResult<()> {
        let mut rec = gpu.recorder();
        self.broadcast_h0(&mut rec, &self.h)?;
        rec.submit()?;
        Ok(())
    }

    /// One window: the GRU reads `x` (`[B, F]`, what the classifier saw in
    /// the previous window) and the gate probabilities `[B][gates]` of the
    /// next window come back (this waits for the GPU).
    pub fn step(&mut self, gpu: &Gpu, x: &Tensor) -> GpuResult<Vec<Vec<f64>>> {
        let mut rec = gpu.recorder();
        let x = x.reshaped(&[1, self.batch, self.features])?;
        let out = rec.empty(&[1, self.batch, self.hidden])?;
        gru_forward(
            &mut rec,
            &self.step_state,
            &self.weights(),
            &x,
            Some(&self.h),
            &out,
        )?;
        rec.copy(&out, &self.h)?;
        let h = out.reshaped(&[self.batch, self.hidden])?;
        let logits = self.head.forward(&mut rec, &[&h], Pass::eval())?;
        rec.submit()?;
        Ok(probabilities(&gpu.download(&logits)?, self.gates))
    }

    /// One REINFORCE step over the windows of a batch: `xs` (`[T, B, F]`)
    /// are the GRU's inputs as the windows gave them, `draws[t][b]` the
    /// gates drawn and `advantages[t][b]` the rewards less the baseline.
    /// The probabilities are recomputed over the whole sequence and the
    /// parameters take the gradient of `-mean_{t,b,k} log p(h) * a`.
    /// Returns that loss.
    pub fn train(
        &mut self,
        gpu: &Gpu,
        xs: &Tensor,
        draws: &[Vec<Vec<bool>>],
        advantages: &[Vec<f64>],
    ) -> GpuResult<f64> {
        let windows = draws.len();
        let shape = GruShape::new(windows, self.batch, self.features, self.hidden);
        if self.train_state.as_ref().is_none_or(|s| s.shape() != shape) {
            self.train_state = Some(GruState::new(gpu, shape)?);
        }
        let state = self.train_state.as_ref().expect("made above");
        let rows = windows * self.batch;
        let mut rec = gpu.recorder();
        let h0 = rec.empty(&[self.batch, self.hidden])?;
        self.broadcast_h0(&mut rec, &h0)?;
        let out = rec.empty(&[windows, self.batch, self.hidden])?;
        gru_forward(&mut rec, state, &self.weights(), xs, Some(&h0), &out)?;
        let flat = out.reshaped(&[rows, self.hidden])?;
        let logits = self.head.forward(&mut rec, &[&flat], Pass::train(0))?;
        rec.submit()?;
        let p = probabilities(&gpu.download(&logits)?, self.gates);

        // d loss / d logit = -(h - p) a / (T B K), as for the static gates.
        let n = (rows * self.gates) as f64;
        let mut dlogits = vec![0f32; rows * self.gates];
        let mut loss = 0.0;
        for t in 0..windows {
            for b in 0..self.batch {
                let row = t * self.batch + b;
                let a = advantages[t][b];
                for k in 0..self.gates {
                    let (h, pk) = (draws[t][b][k], p[row][k]);
                    dlogits[row * self.gates + k] = (-(f64::from(u8::from(h)) - pk) * a / n) as f32;
                    let log_p = if h { pk.ln() } else { (1.0 - pk).ln() };
                    loss -= log_p * a / n;
                }
            }
        }
        let dlogits = gpu.upload(&[rows, self.gates], &dlogits)?;
        let mut rec = gpu.recorder();
        let dflat = self
            .head
            .backward(&mut rec, &[&flat], &logits, &dlogits, &[true])?;
        let dout =
            dflat[0]
                .as_ref()
                .expect("asked for")
                .reshaped(&[windows, self.batch, self.hidden])?;
        let dh0 = rec.empty(&[self.batch, self.hidden])?;
        let grads = GruGrads {
            dx: None,
            dw_ih: &self.w_ih.grad,
            dw_hh: &self.w_hh.grad,
            db_ih: &self.b_ih.grad,
            db_hh: &self.b_hh.grad,
            dh0: Some(&dh0),
        };
        gru_backward(&mut rec, state, &self.weights(), xs, &dout, &grads)?;
        bias_backward(
            &mut rec,
            &BiasLayout::rows(self.batch, self.hidden),
            &dh0,
            &self.h0.grad,
        )?;
        let params = named(
            [&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh, &self.h0],
            &self.head,
        );
        self.optimizer.step(&mut rec, &params, self.lr)?;
        rec.submit()?;
        Ok(loss)
    }
}

/// Sigmoid of `[rows * gates]` logits, as rows.
fn probabilities(logits: &[f32], gates: usize) -> Vec<Vec<f64>> {
    logits
        .chunks_exact(gates.max(1))
        .map(|row| row.iter().map(|&l| sigmoid(l as f64)).collect())
        .collect()
}

fn named<'a>(gru: [&'a Param; 5], head: &'a Dense) -> Vec<(String, &'a Param)> {
    let head = head
        .params()
        .into_iter()
        .map(|p| (format!("head.{}", p.name), p));
    gru.into_iter()
        .map(|p| (p.name.to_string(), p))
        .chain(head)
        .collect()
}

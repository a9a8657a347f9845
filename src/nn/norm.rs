//! Batch normalisation over the channel axis of `[batch, channels, ...]`:
//! batch statistics in training (updating the running ones), running
//! statistics in evaluation; the affine scale and shift are optional (the
//! DARTS search space uses it without).

use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::batchnorm::{
    batch_norm_infer_backward, batch_norm_infer_forward, batch_norm_train_backward,
    batch_norm_train_backward_from_output, batch_norm_train_forward, Affine, AffineGrads,
    BatchNorm, Running,
};
use crate::nn::Mode;

pub struct BatchNormLayer {
    shape: Vec<usize>,
    eps: f32,
    momentum: f32,
    affine: Option<(Param, Param)>,
    running_mean: Tensor,
    running_var: Tensor,
    /// Mean and inverse deviation of the last training batch.
    saved: Option<Tensor>,
    last_mode: Mode,
}

impl BatchNormLayer {
    /// `shape` is the per-sample shape `[channels, ...]`.
    pub fn new(
        gpu: &Gpu,
        shape: &[usize],
        eps: f32,
        momentum: f32,
        affine: bool,
    ) -> GpuResult<Self> {
        let channels = shape[0];
        let affine = if affine {
            Some((
                Param::new(gpu, "weight", &[channels], &vec![1.0; channels])?.no_decay(),
                Param::new(gpu, "bias", &[channels], &vec![0.0; channels])?.no_decay(),
            ))
        } else {
            None
        };
        Ok(BatchNormLayer {
            shape: shape.to_vec(),
            eps,
            momentum,
            affine,
            running_mean: gpu.zeros(&[channels])?,
            running_var: gpu.full(&[channels], 1.0)?,
            saved: None,
            last_mode: Mode::Eval,
        })
    }

    fn spec(&self, batch: usize) -> BatchNorm {
        BatchNorm::new(batch, self.shape[0], self.shape[1..].iter().product())
            .eps(self.eps)
            .momentum(self.momentum)
    }

    fn running(&self) -> Running<'_> {
        Running {
            mean: &self.running_mean,
            var: &self.running_var,
        }
    }
}

impl Layer for BatchNormLayer {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn params(&self) -> Vec<&Param> {
        self.affine.iter().flat_map(|(g, b)| [g, b]).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.affine.iter_mut().flat_map(|(g, b)| [g, b]).collect()
    }

    fn buffers(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ]
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], pass: Pass) -> GpuResult<Tensor> {
        let x = inputs[0];
        let spec = self.spec(batch_of(x));
        let y = rec.empty(x.shape())?;
        let affine = self.affine.as_ref().map(|(g, b)| Affine {
            gamma: &g.value,
            beta: &b.value,
        });
        self.last_mode = pass.mode;
        match pass.mode {
            Mode::Train => {
                // Momentum 0 leaves the running statistics exactly as they are.
                let spec = if pass.freeze_stats {
                    spec.momentum(0.0)
                } else {
                    spec
                };
                let saved = rec.empty(&[2 * self.shape[0]])?;
                batch_norm_train_forward(rec, &spec, x, affine, self.running(), &y, &saved)?;
                self.saved = Some(saved);
            }
            Mode::Eval => batch_norm_infer_forward(rec, &spec, x, affine, self.running(), &y)?,
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let spec = self.spec(batch_of(x));
        let dx = rec.empty(x.shape())?;
        let grads = self.affine.as_ref().map(|(g, b)| AffineGrads {
            gamma: &g.value,
            dgamma: &g.grad,
            dbeta: &b.grad,
        });
        match (self.last_mode, self.saved.take(), grads) {
            (Mode::Train, Some(saved), None) => {
                batch_norm_train_backward_from_output(rec, &spec, output, dout, &saved, &dx)?
            }
            (Mode::Train, Some(saved), grads) => {
                batch_norm_train_backward(rec, &spec, x, dout, &saved, grads, &dx)?
            }
            (_, _, grads) => {
                batch_norm_infer_backward(rec, &spec, x, dout, self.running(), grads, &dx)?
            }
        }
        Ok(vec![need_input[0].then_some(dx)])
    }

    /// Without gamma and beta, a training forward's output is xhat, and
    /// the backward works from it rather than from the input.
    fn backward_reads(&self) -> BackwardReads {
        match (self.last_mode, &self.affine) {
            (Mode::Train, None) => BackwardReads::OUTPUT,
            _ => BackwardReads::INPUTS,
        }
    }

    fn saved_bytes(&self) -> u64 {
        self.saved.as_ref().map_or(0, |t| t.bytes())
    }
}

//! Complex batch normalisation over the channel axis of complex
//! `[batch, channels, ..., 2]` (Trabelsi et al.): batch statistics in
//! training (updating the running mean and covariance), running ones in
//! evaluation. The affine `gamma` starts at `(1/sqrt 2) I`, so that the
//! whitened values come out with `E|z|^2 = 1` as in the paper, and `beta`
//! at zero.

use super::{batch_of, BackwardReads, Layer, Mode, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::complex_norm::{
    complex_batch_norm_infer_backward, complex_batch_norm_infer_forward,
    complex_batch_norm_train_backward, complex_batch_norm_train_forward, saved_shape,
    ComplexAffine, ComplexAffineGrads, ComplexBatchNorm, ComplexRunning,
};

pub struct ComplexBatchNormLayer {
    /// The per-sample complex shape, with its pair axis.
    shape: Vec<usize>,
    eps: f32,
    momentum: f32,
    /// `gamma` `[channels, 3]` = (rr, ri, ii) and `beta` `[channels, 2]`.
    affine: Option<(Param, Param)>,
    running_mean: Tensor,
    running_cov: Tensor,
    /// What the last training forward saved for its backward.
    saved: Option<Tensor>,
    last_mode: Mode,
}

impl ComplexBatchNormLayer {
    pub fn new(
        gpu: &Gpu,
        shape: &[usize],
        eps: f32,
        momentum: f32,
        affine: bool,
    ) -> GpuResult<Self> {
        let channels = shape[0];
        let affine = if affine {
            let half = std::f32::consts::FRAC_1_SQRT_2;
            let gamma: Vec<f32> = (0..channels).flat_map(|_| [half, 0.0, half]).collect();
            Some((
                Param::new(gpu, "weight", &[channels, 3], &gamma)?.no_decay(),
                Param::new(gpu, "bias", &[channels, 2], &vec![0.0; 2 * channels])?.no_decay(),
            ))
        } else {
            None
        };
        // The running covariance starts at the identity, as the real norm's
        // running variance starts at one.
        let identity: Vec<f32> = (0..channels).flat_map(|_| [1.0, 0.0, 1.0]).collect();
        Ok(ComplexBatchNormLayer {
            shape: shape.to_vec(),
            eps,
            momentum,
            affine,
            running_mean: gpu.zeros(&[channels, 2])?,
            running_cov: gpu.upload(&[channels, 3], &identity)?,
            saved: None,
            last_mode: Mode::Eval,
        })
    }

    fn spec(&self, batch: usize) -> ComplexBatchNorm {
        let spatial = self.shape[1..self.shape.len() - 1].iter().product();
        ComplexBatchNorm::new(batch, self.shape[0], spatial)
            .eps(self.eps)
            .momentum(self.momentum)
    }

    fn running(&self) -> ComplexRunning<'_> {
        ComplexRunning {
            mean: &self.running_mean,
            cov: &self.running_cov,
        }
    }
}

impl Layer for ComplexBatchNormLayer {
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
            ("running_cov", &self.running_cov),
        ]
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], pass: Pass) -> GpuResult<Tensor> {
        let x = inputs[0];
        let spec = self.spec(batch_of(x));
        let y = rec.empty(x.shape())?;
        let affine = self.affine.as_ref().map(|(g, b)| ComplexAffine {
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
                let saved = rec.empty(&saved_shape(self.shape[0]))?;
                complex_batch_norm_train_forward(
                    rec,
                    &spec,
                    x,
                    affine,
                    self.running(),
                    &y,
                    &saved,
                )?;
                self.saved = Some(saved);
            }
            Mode::Eval => {
                complex_batch_norm_infer_forward(rec, &spec, x, affine, self.running(), &y)?
            }
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let spec = self.spec(batch_of(x));
        let dx = rec.empty(x.shape())?;
        let grads = self.affine.as_ref().map(|(g, b)| ComplexAffineGrads {
            gamma: &g.value,
            dgamma: &g.grad,
            dbeta: &b.grad,
        });
        match (self.last_mode, self.saved.take()) {
            (Mode::Train, Some(saved)) => {
                complex_batch_norm_train_backward(rec, &spec, x, dout, &saved, grads, &dx)?
            }
            _ => {
                complex_batch_norm_infer_backward(rec, &spec, x, dout, self.running(), grads, &dx)?
            }
        }
        Ok(vec![need_input[0].then_some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }

    fn saved_bytes(&self) -> u64 {
        self.saved.as_ref().map_or(0, |t| t.bytes())
    }
}

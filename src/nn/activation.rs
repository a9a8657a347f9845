//! Layers without parameters that act elementwise or only reshape:
//! activations, dropout and flatten.

use super::{batch_of, BackwardReads, Layer, Mode, Pass};
use crate::gpu::{GpuResult, Recorder, Tensor};
use crate::kernels::dropout::{dropout_backward, dropout_forward};
use crate::kernels::elementwise::{activation, activation_backward, Activation};

pub struct ActivationLayer {
    function: Activation,
    shape: Vec<usize>,
}

impl ActivationLayer {
    pub fn new(function: Activation, shape: &[usize]) -> Self {
        ActivationLayer {
            function,
            shape: shape.to_vec(),
        }
    }
}

impl Layer for ActivationLayer {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let y = rec.empty(inputs[0].shape())?;
        activation(rec, self.function, inputs[0], &y)?;
        Ok(y)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let dx = rec.empty(output.shape())?;
        activation_backward(rec, self.function, output, dout, &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::OUTPUT
    }
}

/// Inverted dropout: in training each element is zeroed with probability
/// `rate` and the others scaled by `1 / (1 - rate)`; the mask is a function
/// of the pass seed, this layer's salt and the element, so nothing is stored.
pub struct Dropout {
    rate: f32,
    salt: u64,
    shape: Vec<usize>,
    /// The mask seed of the last training pass, `None` after an evaluation pass.
    seed: Option<u32>,
}

impl Dropout {
    pub fn new(rate: f32, salt: u64, shape: &[usize]) -> Self {
        Dropout {
            rate,
            salt,
            shape: shape.to_vec(),
            seed: None,
        }
    }
}

impl Layer for Dropout {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], pass: Pass) -> GpuResult<Tensor> {
        if pass.mode == Mode::Eval || self.rate == 0.0 {
            self.seed = None;
            return Ok(inputs[0].clone());
        }
        let mixed =
            crate::util::rng::Rng::new(pass.seed ^ self.salt.wrapping_mul(0x9E37_79B9)).next_u64();
        let seed = (mixed >> 32) as u32;
        let y = rec.empty(inputs[0].shape())?;
        dropout_forward(rec, self.rate, seed, inputs[0], &y)?;
        self.seed = Some(seed);
        Ok(y)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let Some(seed) = self.seed else {
            return Ok(vec![Some(dout.clone())]);
        };
        let dx = rec.empty(dout.shape())?;
        dropout_backward(rec, self.rate, seed, dout, &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

/// `[batch, ...]` viewed as `[batch, features]`; no copy.
pub struct Flatten {
    output: Vec<usize>,
}

impl Flatten {
    pub fn new(input: &[usize]) -> Self {
        Flatten {
            output: vec![input.iter().product()],
        }
    }

    /// Complex `[..., 2]` to `[values, 2]`, the pairs kept.
    pub fn complex(input: &[usize]) -> Self {
        Flatten {
            output: vec![input[..input.len() - 1].iter().product(), 2],
        }
    }
}

impl Layer for Flatten {
    fn output_shape(&self) -> Vec<usize> {
        self.output.clone()
    }

    fn forward(&mut self, _: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        inputs[0].reshaped(&super::batched(batch_of(inputs[0]), &self.output))
    }

    fn backward(
        &mut self,
        _: &mut Recorder,
        inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        if !need_input[0] {
            return Ok(vec![None]);
        }
        Ok(vec![Some(dout.reshaped(inputs[0].shape())?)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

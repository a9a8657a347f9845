//! Fully connected layer: `y = x W^T + b` on `[batch, inputs]` (any
//! per-sample shape is flattened), W `[outputs, inputs]` as in PyTorch.

use super::init::{default_bias, Init};
use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::elementwise::{bias_add, bias_backward, BiasLayout};
use crate::kernels::gemm::{gemm, Gemm};
use crate::util::rng::Rng;

pub struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Param,
    bias: Option<Param>,
}

impl Dense {
    pub fn new(
        gpu: &Gpu,
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let w = init.weights(rng, outputs * inputs, inputs, outputs);
        let weight = Param::new(gpu, "weight", &[outputs, inputs], &w)?;
        let bias = if bias {
            let b = default_bias(rng, outputs, inputs);
            Some(Param::new(gpu, "bias", &[outputs], &b)?.no_decay())
        } else {
            None
        };
        Ok(Dense {
            inputs,
            outputs,
            weight,
            bias,
        })
    }
}

impl Layer for Dense {
    fn output_shape(&self) -> Vec<usize> {
        vec![self.outputs]
    }

    fn params(&self) -> Vec<&Param> {
        std::iter::once(&self.weight).chain(&self.bias).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        std::iter::once(&mut self.weight)
            .chain(&mut self.bias)
            .collect()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let batch = batch_of(inputs[0]);
        let x = inputs[0].reshaped(&[batch, self.inputs])?;
        let y = rec.empty(&[batch, self.outputs])?;
        let spec = Gemm::new(batch, self.outputs, self.inputs).trans_b(true);
        gemm(rec, &spec, &x, &self.weight.value, &y)?;
        if let Some(b) = &self.bias {
            bias_add(rec, &BiasLayout::rows(batch, self.outputs), &y, &b.value)?;
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
        let batch = batch_of(inputs[0]);
        let x = inputs[0].reshaped(&[batch, self.inputs])?;
        let weight_grad = Gemm::new(self.outputs, self.inputs, batch).trans_a(true);
        gemm(rec, &weight_grad, dout, &x, &self.weight.grad)?;
        if let Some(b) = &self.bias {
            bias_backward(rec, &BiasLayout::rows(batch, self.outputs), dout, &b.grad)?;
        }
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let dx = rec.empty(inputs[0].shape())?;
        let input_grad = Gemm::new(batch, self.inputs, self.outputs);
        gemm(rec, &input_grad, dout, &self.weight.value, &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

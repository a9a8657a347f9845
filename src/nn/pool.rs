//! Max and average pooling over `[batch, channels, time, freq]`, and global
//! average pooling to `[batch, channels]`; each also on complex pairs
//! (`[..., 2]`), max pooling then by magnitude.

use super::complex::with_pair;
use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{GpuResult, Recorder, Tensor};
use crate::kernels::pool::{
    avg_pool2d_backward, avg_pool2d_forward, complex_global_avg_pool_backward,
    complex_global_avg_pool_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool2d_backward, max_pool2d_forward, Pool2d,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// `count_include_pad`: whether padded cells count in the mean.
    Avg {
        count_include_pad: bool,
    },
}

pub struct Pool {
    kind: PoolKind,
    input: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    complex: bool,
    argmax: Option<Tensor>,
}

impl Pool {
    pub fn new(
        kind: PoolKind,
        input: [usize; 3],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> GpuResult<Self> {
        let pool = Pool {
            kind,
            input,
            kernel,
            stride,
            padding,
            complex: false,
            argmax: None,
        };
        pool.spec(1).validate()?;
        Ok(pool)
    }

    /// On complex pairs: `input` is then the logical `[channels, time, freq]`.
    pub fn complex(self, yes: bool) -> Self {
        Pool {
            complex: yes,
            ..self
        }
    }

    /// The batch output shape (with the pair axis when complex).
    fn output_of(&self, spec: &Pool2d) -> Vec<usize> {
        match self.complex {
            true => with_pair(&spec.output_shape()),
            false => spec.output_shape().to_vec(),
        }
    }

    fn spec(&self, batch: usize) -> Pool2d {
        let [c, h, w] = self.input;
        let spec = Pool2d::new(batch, c, [h, w], self.kernel)
            .stride(self.stride[0], self.stride[1])
            .padding(self.padding[0], self.padding[1])
            .complex(self.complex);
        match self.kind {
            PoolKind::Max => spec,
            PoolKind::Avg { count_include_pad } => spec.count_include_pad(count_include_pad),
        }
    }
}

impl Layer for Pool {
    fn output_shape(&self) -> Vec<usize> {
        self.output_of(&self.spec(1))[1..].to_vec()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let spec = self.spec(batch_of(inputs[0]));
        let y = rec.empty(&self.output_of(&spec))?;
        match self.kind {
            PoolKind::Max => {
                let argmax = rec.empty(&spec.output_shape())?;
                max_pool2d_forward(rec, &spec, inputs[0], &y, &argmax)?;
                self.argmax = Some(argmax);
            }
            PoolKind::Avg { .. } => avg_pool2d_forward(rec, &spec, inputs[0], &y)?,
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
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let spec = self.spec(batch_of(inputs[0]));
        let dx = rec.empty(inputs[0].shape())?;
        match self.kind {
            PoolKind::Max => {
                let argmax = self.argmax.take().expect("backward follows forward");
                max_pool2d_backward(rec, &spec, dout, &argmax, &dx)?;
            }
            PoolKind::Avg { .. } => avg_pool2d_backward(rec, &spec, dout, &dx)?,
        }
        Ok(vec![Some(dx)])
    }

    /// Max pooling keeps where each maximum was instead.
    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }

    fn saved_bytes(&self) -> u64 {
        self.argmax.as_ref().map_or(0, |t| t.bytes())
    }
}

/// The mean over every position of each channel: `[batch, channels, ...]`
/// to `[batch, channels]` (complex: `[batch, channels, ..., 2]` to
/// `[batch, channels, 2]`).
pub struct GlobalAvgPool {
    channels: usize,
    complex: bool,
}

impl GlobalAvgPool {
    pub fn new(input: &[usize]) -> Self {
        GlobalAvgPool {
            channels: input[0],
            complex: false,
        }
    }

    /// `input` is the per-sample complex shape, with its pair axis.
    pub fn complex(input: &[usize]) -> Self {
        GlobalAvgPool {
            channels: input[0],
            complex: true,
        }
    }
}

impl Layer for GlobalAvgPool {
    fn output_shape(&self) -> Vec<usize> {
        match self.complex {
            true => vec![self.channels, 2],
            false => vec![self.channels],
        }
    }

    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let y = rec.empty(&super::batched(batch_of(inputs[0]), &self.output_shape()))?;
        match self.complex {
            true => complex_global_avg_pool_forward(rec, inputs[0], &y)?,
            false => global_avg_pool_forward(rec, inputs[0], &y)?,
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
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let dx = rec.empty(inputs[0].shape())?;
        match self.complex {
            true => complex_global_avg_pool_backward(rec, dout, &dx)?,
            false => global_avg_pool_backward(rec, dout, &dx)?,
        }
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

//! Layers with explicit forward and backward over the kernels.
//!
//! A layer is built for a per-sample input shape and runs on any batch size:
//! `forward` records its kernels and returns the output, keeping what its
//! backward needs; `backward` records the gradients of its parameters
//! (overwriting them) and returns the gradient of each input it is asked for.
//! Tensors are `[batch, ...per-sample shape]`, row-major, f32.

mod activation;
mod complex;
mod complex_norm;
mod conv;
mod crop;
mod dense;
mod init;
mod lstm;
mod merge;
mod norm;
pub mod optim;
mod pool;
mod sequence;
mod supernet;

pub use activation::{ActivationLayer, Dropout, Flatten};
pub use complex::{
    with_pair, ComplexConv2dLayer, ComplexDenseLayer, ComplexUnary, ComplexUnaryLayer, ModRelu,
};
pub use complex_norm::ComplexBatchNormLayer;
pub use conv::{same_padding, Conv2dLayer, ConvGeometry, SeparableConv2d};
pub use crop::Crop;
pub use dense::Dense;
pub use init::{default_bias, kaiming_uniform, xavier_uniform, Init};
pub use lstm::{Lstm, LstmReturn};
pub use merge::{Add, Concat, Multiply, WeightedSum};
pub use norm::BatchNormLayer;
pub use pool::{GlobalAvgPool, Pool, PoolKind};
pub use sequence::ToSequence;
pub use supernet::{ArchWeights, Mixed, ARCH};

use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};

/// The parameter group of ordinary weights; other groups (architecture
/// weights, gate logits) have optimizers of their own.
pub const WEIGHTS: &str = "weights";

/// A trained tensor and its gradient (same shape).
pub struct Param {
    /// The name inside its layer (`weight`, `bias`, ...).
    pub name: &'static str,
    pub value: Tensor,
    pub grad: Tensor,
    /// Whether weight decay applies (not to biases and normalisation scales).
    pub decay: bool,
    /// The group whose optimizer trains it (`WEIGHTS` unless set).
    pub group: &'static str,
}

impl Param {
    pub fn new(gpu: &Gpu, name: &'static str, shape: &[usize], values: &[f32]) -> GpuResult<Self> {
        Ok(Param {
            name,
            value: gpu.upload(shape, values)?,
            grad: gpu.zeros(shape)?,
            decay: true,
            group: WEIGHTS,
        })
    }

    pub fn in_group(self, group: &'static str) -> Self {
        Param { group, ..self }
    }

    pub fn no_decay(self) -> Self {
        Param {
            decay: false,
            ..self
        }
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// Training or inference: batch norm uses batch statistics and updates its
/// running ones only in training; dropout drops only in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// What one forward pass needs besides its inputs.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub mode: Mode,
    /// Seeds this pass's random choices (dropout masks); a step's seed comes
    /// from the run seed and the step number, so a resumed run repeats them.
    pub seed: u64,
    /// In training, keep batch norm's running statistics as they are (the
    /// architecture half of a bi-level step normalises with batch statistics
    /// but must not move the running ones).
    pub freeze_stats: bool,
}

impl Pass {
    pub fn train(seed: u64) -> Self {
        Pass {
            mode: Mode::Train,
            seed,
            freeze_stats: false,
        }
    }

    pub fn eval() -> Self {
        Pass {
            mode: Mode::Eval,
            seed: 0,
            freeze_stats: false,
        }
    }

    pub fn frozen_stats(self) -> Self {
        Pass {
            freeze_stats: true,
            ..self
        }
    }
}

/// What a layer's backward reads of the tensors its last forward saw. A
/// network lets go of a tensor that no backward reads once its forward is
/// past the last layer that reads it, and gives the backward a placeholder
/// (the shape only) for what the layer leaves out; binding a placeholder to
/// a kernel fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardReads {
    /// The inputs (all of them).
    pub inputs: bool,
    pub output: bool,
}

impl BackwardReads {
    pub const ALL: Self = BackwardReads {
        inputs: true,
        output: true,
    };
    pub const INPUTS: Self = BackwardReads {
        inputs: true,
        output: false,
    };
    pub const OUTPUT: Self = BackwardReads {
        inputs: false,
        output: true,
    };
    /// Shapes only.
    pub const NOTHING: Self = BackwardReads {
        inputs: false,
        output: false,
    };
}

/// One layer of a network.
pub trait Layer: Send {
    /// The output shape of one sample.
    fn output_shape(&self) -> Vec<usize>;

    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    /// Which of its inputs the current mask leaves on (called when the mask
    /// changes); a layer that sums its inputs is then given only those.
    fn read(&mut self, _reads: &[bool]) {}

    /// Switches the losses a layer adds to the training loss (architecture
    /// regularisers) on or off; they are on from the start.
    fn set_regularising(&mut self, _on: bool) {}

    /// State that is not trained by gradients but belongs in a checkpoint
    /// (batch norm's running statistics).
    fn buffers(&self) -> Vec<(&'static str, &Tensor)> {
        Vec::new()
    }

    /// Records the forward pass of a batch.
    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], pass: Pass) -> GpuResult<Tensor>;

    /// Records the backward pass of the last forward: writes the parameter
    /// gradients and returns the gradient of each input whose `need_input`
    /// is true (`None` for the others).
    fn backward(
        &mut self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>>;

    /// What the backward of the last forward reads; asked after each
    /// forward. Everything unless a layer says otherwise.
    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::ALL
    }

    /// Bytes this layer keeps from forward to backward besides its output.
    fn saved_bytes(&self) -> u64 {
        0
    }
}

/// `[batch, per-sample shape...]`.
pub fn batched(batch: usize, sample: &[usize]) -> Vec<usize> {
    let mut shape = Vec::with_capacity(sample.len() + 1);
    shape.push(batch);
    shape.extend_from_slice(sample);
    shape
}

/// The batch size of a `[batch, ...]` tensor.
pub fn batch_of(t: &Tensor) -> usize {
    t.shape().first().copied().unwrap_or(0)
}

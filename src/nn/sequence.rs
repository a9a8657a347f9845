//! A feature map turned into a sequence for recurrent and per-step layers:
//! `[channels, time, freq]` becomes `[1, time, channels * freq]` (each step
//! holds every channel's frequencies), `[time, features]` becomes
//! `[1, time, features]`.

use super::{batch_of, BackwardReads, Layer, Pass};
use crate::gpu::{GpuResult, Recorder, Tensor};
use crate::kernels::layout::swap_axes;

pub struct ToSequence {
    channels: usize,
    time: usize,
    freq: usize,
}

impl ToSequence {
    /// `input` is `[channels, time, freq]` or `[time, features]`.
    pub fn new(input: &[usize]) -> Self {
        let (channels, time, freq) = match *input {
            [c, t, f] => (c, t, f),
            [t, d] => (1, t, d),
            _ => unreachable!("the shapes are checked when the network is built"),
        };
        ToSequence {
            channels,
            time,
            freq,
        }
    }
}

impl Layer for ToSequence {
    fn output_shape(&self) -> Vec<usize> {
        vec![1, self.time, self.channels * self.freq]
    }

    /// Two swaps of leading axes: `[B*C, T, F]` to `[T, B*C, F]`, then
    /// `[T, B, C*F]` to `[B, T, C*F]`.
    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let x = inputs[0];
        let b = batch_of(x);
        let (c, t, f) = (self.channels, self.time, self.freq);
        let out = [b, 1, t, c * f];
        if c == 1 {
            return x.reshaped(&out);
        }
        let steps = rec.empty(&[t, b, c, f])?;
        swap_axes(rec, x, [b * c, t, f], &steps)?;
        let y = rec.empty(&out)?;
        swap_axes(rec, &steps, [t, b, c * f], &y)?;
        Ok(y)
    }

    /// The forward's swaps undone in reverse order.
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
        let x = inputs[0];
        let b = batch_of(x);
        let (c, t, f) = (self.channels, self.time, self.freq);
        if c == 1 {
            return Ok(vec![Some(dout.reshaped(x.shape())?)]);
        }
        let steps = rec.empty(&[t, b, c, f])?;
        swap_axes(rec, dout, [b, t, c * f], &steps)?;
        let dx = rec.empty(x.shape())?;
        swap_axes(rec, &steps, [t, b * c, f], &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

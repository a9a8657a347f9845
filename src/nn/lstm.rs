//! LSTM over the time axis of `[batch, time, features]` (a `[batch, 1, time,
//! features]` feature map is read the same way), in PyTorch's parameters:
//! `weight_ih [4H, I]`, `weight_hh [4H, H]`, `bias_ih [4H]`, `bias_hh [4H]`,
//! gates in the order i, f, g, o.

use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::elementwise::add;
use crate::kernels::layout::swap_axes;
use crate::kernels::lstm::{
    lstm_backward, lstm_forward, LstmGrads, LstmOutput, LstmShape, LstmState, LstmWeights,
};
use crate::util::rng::Rng;

/// What the layer returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LstmReturn {
    /// The last hidden state, `[batch, hidden]`.
    Last,
    /// Every step's hidden state, `[batch, time, hidden]`.
    Sequence,
}

pub struct Lstm {
    time: usize,
    input: usize,
    hidden: usize,
    returns: LstmReturn,
    weight_ih: Param,
    weight_hh: Param,
    bias_ih: Param,
    bias_hh: Param,
    /// State of the last forward, rebuilt when the batch size changes.
    state: Option<LstmState>,
    /// The forward's input and combined bias, time-major.
    saved: Option<(Tensor, Tensor)>,
}

impl Lstm {
    /// PyTorch's initialisation (uniform in `±1/sqrt(hidden)`), except that the
    /// forget gate's bias starts at 1 so the cell remembers from the start.
    pub fn new(
        gpu: &Gpu,
        time: usize,
        input: usize,
        hidden: usize,
        returns: LstmReturn,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let bound = 1.0 / (hidden.max(1) as f32).sqrt();
        let four = 4 * hidden;
        let w_ih = rng.vec_uniform(four * input, -bound, bound);
        let w_hh = rng.vec_uniform(four * hidden, -bound, bound);
        let mut b_ih = rng.vec_uniform(four, -bound, bound);
        let mut b_hh = rng.vec_uniform(four, -bound, bound);
        b_ih[hidden..2 * hidden].fill(1.0);
        b_hh[hidden..2 * hidden].fill(0.0);
        Ok(Lstm {
            time,
            input,
            hidden,
            returns,
            weight_ih: Param::new(gpu, "weight_ih", &[four, input], &w_ih)?,
            weight_hh: Param::new(gpu, "weight_hh", &[four, hidden], &w_hh)?,
            bias_ih: Param::new(gpu, "bias_ih", &[four], &b_ih)?.no_decay(),
            bias_hh: Param::new(gpu, "bias_hh", &[four], &b_hh)?.no_decay(),
            state: None,
            saved: None,
        })
    }

    /// Makes the state fit `batch`.
    fn prepare_state(&mut self, gpu: &Gpu, batch: usize) -> GpuResult<()> {
        let shape = LstmShape::new(self.time, batch, self.input, self.hidden);
        if self.state.as_ref().map(|s| s.shape()) != Some(shape) {
            self.state = Some(LstmState::new(gpu, shape)?);
        }
        Ok(())
    }

    fn output(&self) -> LstmOutput {
        match self.returns {
            LstmReturn::Last => LstmOutput::LastState,
            LstmReturn::Sequence => LstmOutput::AllStates,
        }
    }
}

impl Layer for Lstm {
    fn output_shape(&self) -> Vec<usize> {
        match self.returns {
            LstmReturn::Last => vec![self.hidden],
            LstmReturn::Sequence => vec![self.time, self.hidden],
        }
    }

    fn params(&self) -> Vec<&Param> {
        vec![
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
        ]
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![
            &mut self.weight_ih,
            &mut self.weight_hh,
            &mut self.bias_ih,
            &mut self.bias_hh,
        ]
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let gpu = rec.gpu();
        let batch = batch_of(inputs[0]);
        let (t, h) = (self.time, self.hidden);
        let x = rec.empty(&[t, batch, self.input])?;
        swap_axes(rec, inputs[0], [batch, t, self.input], &x)?;
        let bias = rec.empty(&[4 * h])?;
        add(rec, &self.bias_ih.value, &self.bias_hh.value, &bias)?;
        let output = self.output();
        let out_shape: Vec<usize> = match output {
            LstmOutput::LastState => vec![batch, h],
            LstmOutput::AllStates => vec![t, batch, h],
        };
        let out = rec.empty(&out_shape)?;
        self.prepare_state(gpu, batch)?;
        let weights = LstmWeights {
            w_ih: &self.weight_ih.value,
            w_hh: &self.weight_hh.value,
            bias: &bias,
        };
        let state = self.state.as_ref().expect("prepared");
        lstm_forward(rec, state, &weights, &x, None, output, &out)?;
        self.saved = Some((x, bias));
        if output == LstmOutput::LastState {
            return Ok(out);
        }
        let y = rec.empty(&[batch, t, h])?;
        swap_axes(rec, &out, [t, batch, h], &y)?;
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
        let (t, h) = (self.time, self.hidden);
        let (x, bias) = self.saved.take().expect("backward follows forward");
        let output = self.output();
        let dout_time_major = match output {
            LstmOutput::LastState => dout.clone(),
            LstmOutput::AllStates => {
                let d = rec.empty(&[t, batch, h])?;
                swap_axes(rec, dout, [batch, t, h], &d)?;
                d
            }
        };
        let dx = if need_input[0] {
            Some(rec.empty(&[t, batch, self.input])?)
        } else {
            None
        };
        let grads = LstmGrads {
            dx: dx.as_ref(),
            dw_ih: &self.weight_ih.grad,
            dw_hh: &self.weight_hh.grad,
            dbias: &self.bias_ih.grad,
            dinitial: None,
        };
        let weights = LstmWeights {
            w_ih: &self.weight_ih.value,
            w_hh: &self.weight_hh.value,
            bias: &bias,
        };
        let state = self.state.as_ref().expect("backward follows forward");
        lstm_backward(rec, state, &weights, &x, output, &dout_time_major, &grads)?;
        // Both biases are added before use, so both get the same gradient.
        rec.copy(&self.bias_ih.grad, &self.bias_hh.grad)?;
        let Some(dx) = dx else {
            return Ok(vec![None]);
        };
        let dinput = rec.empty(inputs[0].shape())?;
        swap_axes(rec, &dx, [t, batch, self.input], &dinput)?;
        Ok(vec![Some(dinput)])
    }

    /// It keeps its input time-major itself.
    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }

    fn saved_bytes(&self) -> u64 {
        let Some(state) = &self.state else { return 0 };
        let s = state.shape();
        // gates (4H), cell states and previous hidden states (H each) per step,
        // plus the time-major input.
        (4 * s.time * s.batch * (6 * s.hidden + s.input)) as u64
    }
}

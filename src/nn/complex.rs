//! Complex-valued layers on interleaved `(re, im)` pairs: a complex sample
//! of logical shape `S` is `S + [2]` (`[channels, time, freq, 2]`,
//! `[features, 2]`). Convolution (grouped, depthwise, dilated) and dense with
//! complex weights and bias, the activations CReLU, zReLU and modReLU, and
//! the two ways back to real values: the magnitude, or the real and
//! imaginary parts as separate channels. Gradients follow the convention of
//! `kernels::complex`: the gradient of `z` is `dL/d re z + i dL/d im z`.

use super::conv::ConvGeometry;
use super::init::{default_bias, Init};
use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::complex::{
    crelu, crelu_backward, join_planes, magnitude, magnitude_backward, modrelu, modrelu_backward,
    split_planes, zrelu, zrelu_backward, ComplexConv2d, ComplexDense,
};
use crate::kernels::complex_depthwise::{
    complex_depthwise_backward_input, complex_depthwise_backward_weight, complex_depthwise_forward,
};
use crate::util::rng::Rng;

/// `shape + [2]`.
pub fn with_pair(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

/// Complex weights drawn as the real `init` draws a real weight of the same
/// fans, each part scaled by `1/sqrt(2)` so that `E|w|^2` is the real
/// variance: `len` complex values, interleaved.
fn complex_weights(
    init: Init,
    rng: &mut Rng,
    len: usize,
    fan_in: usize,
    fan_out: usize,
) -> Vec<f32> {
    let scale = std::f32::consts::FRAC_1_SQRT_2;
    let mut w = init.weights(rng, 2 * len, fan_in, fan_out);
    w.iter_mut().for_each(|v| *v *= scale);
    w
}

/// A complex bias `[outputs, 2]` when `bias`, drawn as `complex_weights`
/// draws weights from the real default bias.
fn complex_bias(
    gpu: &Gpu,
    bias: bool,
    rng: &mut Rng,
    outputs: usize,
    fan_in: usize,
) -> GpuResult<Option<Param>> {
    if !bias {
        return Ok(None);
    }
    let scale = std::f32::consts::FRAC_1_SQRT_2;
    let mut b = default_bias(rng, 2 * outputs, fan_in);
    b.iter_mut().for_each(|v| *v *= scale);
    Ok(Some(Param::new(gpu, "bias", &[outputs, 2], &b)?.no_decay()))
}

/// Complex conv2d over `[batch, channels, time, freq, 2]` with weights
/// `[out, in / groups, kh, kw, 2]` and an optional bias `[out, 2]`.
pub struct ComplexConv2dLayer {
    geometry: ConvGeometry,
    kernel: ComplexConvKernel,
    weight: Param,
    bias: Option<Param>,
}

/// How the layer convolves: depthwise layers (one input and one output
/// channel per group) have a direct kernel on the interleaved values; the
/// others run as a real conv2d on planes. Both take the same weights.
enum ComplexConvKernel {
    Depthwise,
    General(ComplexConv2d),
}

impl ComplexConv2dLayer {
    /// `geometry` counts complex channels.
    pub fn new(
        gpu: &Gpu,
        geometry: ConvGeometry,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let spec = geometry.spec(1);
        let kernel = if spec.is_depthwise() {
            spec.validate()?;
            ComplexConvKernel::Depthwise
        } else {
            ComplexConvKernel::General(ComplexConv2d::new(gpu, spec)?)
        };
        let shape = spec.weight_shape();
        let fan_in = shape[1] * shape[2] * shape[3];
        let fan_out = shape[0] / geometry.groups.max(1) * shape[2] * shape[3];
        let w = complex_weights(init, rng, spec.weight_len(), fan_in, fan_out);
        let weight = Param::new(gpu, "weight", &with_pair(&shape), &w)?;
        let bias = complex_bias(gpu, bias, rng, geometry.out_channels, fan_in)?;
        Ok(ComplexConv2dLayer {
            geometry,
            kernel,
            weight,
            bias,
        })
    }
}

impl Layer for ComplexConv2dLayer {
    fn output_shape(&self) -> Vec<usize> {
        with_pair(&self.geometry.output())
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
        let spec = self.geometry.spec(batch_of(inputs[0]));
        let y = rec.empty(&with_pair(&spec.output_shape()))?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        let (x, w) = (inputs[0], &self.weight.value);
        match &self.kernel {
            ComplexConvKernel::Depthwise => complex_depthwise_forward(rec, &spec, x, w, bias, &y)?,
            ComplexConvKernel::General(kernel) => kernel.forward(rec, x, w, bias, &y)?,
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
        let dx = match need_input[0] {
            true => Some(rec.empty(inputs[0].shape())?),
            false => None,
        };
        let db = self.bias.as_ref().map(|b| &b.grad);
        let (x, w) = (inputs[0], &self.weight);
        match &self.kernel {
            ComplexConvKernel::Depthwise => {
                let spec = self.geometry.spec(batch_of(x));
                if let Some(dx) = &dx {
                    complex_depthwise_backward_input(rec, &spec, dout, &w.value, dx)?;
                }
                complex_depthwise_backward_weight(rec, &spec, dout, x, &w.grad, db)?;
            }
            ComplexConvKernel::General(kernel) => {
                kernel.backward(rec, x, dout, dx.as_ref(), &w.grad, db)?
            }
        }
        Ok(vec![dx])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

/// Complex dense over the flattened complex sample: `[batch, inputs, 2]` by
/// weights `[inputs, outputs, 2]`, bias `[outputs, 2]`.
pub struct ComplexDenseLayer {
    kernel: ComplexDense,
    weight: Param,
    bias: Option<Param>,
}

impl ComplexDenseLayer {
    pub fn new(
        gpu: &Gpu,
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let w = complex_weights(init, rng, inputs * outputs, inputs, outputs);
        let weight = Param::new(gpu, "weight", &[inputs, outputs, 2], &w)?;
        let bias = complex_bias(gpu, bias, rng, outputs, inputs)?;
        Ok(ComplexDenseLayer {
            kernel: ComplexDense::new(gpu, inputs, outputs)?,
            weight,
            bias,
        })
    }

    fn rows(&self, x: &Tensor) -> GpuResult<Tensor> {
        x.reshaped(&[batch_of(x), self.kernel.inputs, 2])
    }
}

impl Layer for ComplexDenseLayer {
    fn output_shape(&self) -> Vec<usize> {
        vec![self.kernel.outputs, 2]
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
        let x = self.rows(inputs[0])?;
        let y = rec.empty(&[batch_of(&x), self.kernel.outputs, 2])?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        self.kernel.forward(rec, &x, &self.weight.value, bias, &y)?;
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
        let x = self.rows(inputs[0])?;
        let dx = match need_input[0] {
            true => Some(rec.empty(x.shape())?),
            false => None,
        };
        let db = self.bias.as_ref().map(|b| &b.grad);
        self.kernel
            .backward(rec, &x, dout, dx.as_ref(), &self.weight.grad, db)?;
        Ok(vec![dx
            .map(|d| d.reshaped(inputs[0].shape()))
            .transpose()?])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

/// The parameter-free maps of complex values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComplexUnary {
    /// ReLU on each part.
    Crelu,
    /// `z` where `arg z` is in `[0, pi/2]`, else 0.
    Zrelu,
    /// `|z|`: complex `S + [2]` to real `S`.
    Magnitude,
    /// The real and imaginary parts as real channels: complex `[c, ..., 2]`
    /// to real `[2c, ...]`, channel 2k the real parts of channel k and
    /// 2k + 1 its imaginary parts (`[n, 2]` to `[2n]`, re and im alternating).
    ReIm,
}

pub struct ComplexUnaryLayer {
    kind: ComplexUnary,
    output: Vec<usize>,
}

impl ComplexUnaryLayer {
    /// `shape` is the per-sample complex shape (with its pair axis).
    pub fn new(kind: ComplexUnary, shape: &[usize]) -> Self {
        let logical = &shape[..shape.len() - 1];
        let output = match kind {
            ComplexUnary::Crelu | ComplexUnary::Zrelu => shape.to_vec(),
            ComplexUnary::Magnitude => logical.to_vec(),
            ComplexUnary::ReIm => {
                let mut out = logical.to_vec();
                out[0] *= 2;
                out
            }
        };
        ComplexUnaryLayer { kind, output }
    }
}

impl Layer for ComplexUnaryLayer {
    fn output_shape(&self) -> Vec<usize> {
        self.output.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let x = inputs[0];
        let y = rec.empty(&super::batched(batch_of(x), &self.output))?;
        match self.kind {
            ComplexUnary::Crelu => crelu(rec, x, &y)?,
            ComplexUnary::Zrelu => zrelu(rec, x, &y)?,
            ComplexUnary::Magnitude => magnitude(rec, x, &y)?,
            ComplexUnary::ReIm => split_planes(rec, x, &y)?,
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
        let x = inputs[0];
        let dx = rec.empty(x.shape())?;
        match self.kind {
            ComplexUnary::Crelu => crelu_backward(rec, x, dout, &dx)?,
            ComplexUnary::Zrelu => zrelu_backward(rec, x, dout, &dx)?,
            ComplexUnary::Magnitude => magnitude_backward(rec, x, dout, &dx)?,
            ComplexUnary::ReIm => join_planes(rec, dout, &dx)?,
        }
        Ok(vec![Some(dx)])
    }

    /// Splitting into parts is a permutation: shapes only.
    fn backward_reads(&self) -> BackwardReads {
        match self.kind {
            ComplexUnary::ReIm => BackwardReads::NOTHING,
            _ => BackwardReads::INPUTS,
        }
    }
}

/// modReLU `relu(|z| + b) z / |z|` with a trained real bias per channel
/// (axis 0 of the sample), starting at 0: the identity until it learns to
/// cut small magnitudes off.
pub struct ModRelu {
    shape: Vec<usize>,
    bias: Param,
}

impl ModRelu {
    pub fn new(gpu: &Gpu, shape: &[usize]) -> GpuResult<Self> {
        let channels = shape[0];
        Ok(ModRelu {
            shape: shape.to_vec(),
            bias: Param::new(gpu, "bias", &[channels], &vec![0.0; channels])?.no_decay(),
        })
    }
}

impl Layer for ModRelu {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn params(&self) -> Vec<&Param> {
        vec![&self.bias]
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.bias]
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let y = rec.empty(inputs[0].shape())?;
        modrelu(rec, inputs[0], &self.bias.value, &y)?;
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
        let dx = rec.empty(inputs[0].shape())?;
        let (x, b) = (inputs[0], &self.bias);
        modrelu_backward(rec, x, &b.value, dout, &dx, &b.grad)?;
        Ok(vec![need_input[0].then_some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

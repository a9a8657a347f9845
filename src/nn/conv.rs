//! 2-D convolution over `[batch, channels, time, freq]` (depthwise, grouped,
//! dilated and strided), and the depthwise-separable convolution built from
//! a depthwise and a pointwise one.

use super::init::{default_bias, Init};
use super::{batch_of, BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuResult, Recorder, Tensor};
use crate::kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2d,
};
use crate::util::rng::Rng;

/// The geometry of a convolution layer; the batch comes with each pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Per-sample input `[channels, height, width]`.
    pub input: [usize; 3],
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[[top, bottom], [left, right]]`.
    pub padding: [[usize; 2]; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    pub fn spec(&self, batch: usize) -> Conv2d {
        let [c, h, w] = self.input;
        Conv2d::new(batch, c, self.out_channels, [h, w], self.kernel)
            .stride(self.stride[0], self.stride[1])
            .padding_split(self.padding[0], self.padding[1])
            .dilation(self.dilation[0], self.dilation[1])
            .groups(self.groups)
    }

    pub fn output(&self) -> [usize; 3] {
        let spec = self.spec(1);
        [self.out_channels, spec.out_h(), spec.out_w()]
    }
}

/// TensorFlow's "same" padding `[before, after]` of one dimension: the output
/// has `ceil(size / stride)` positions, and an odd total puts the extra zero after.
pub fn same_padding(size: usize, kernel: usize, stride: usize, dilation: usize) -> [usize; 2] {
    let out = size.div_ceil(stride.max(1));
    // Saturating: sizes from a description can be anything; a padding that
    // large leaves no valid geometry, which the convolution then refuses.
    let span = dilation.saturating_mul(kernel.max(1) - 1).saturating_add(1);
    let total = ((out.max(1) - 1).saturating_mul(stride))
        .saturating_add(span)
        .saturating_sub(size);
    [total / 2, total - total / 2]
}

pub struct Conv2dLayer {
    geometry: ConvGeometry,
    weight: Param,
    bias: Option<Param>,
}

impl Conv2dLayer {
    pub fn new(
        gpu: &Gpu,
        geometry: ConvGeometry,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let spec = geometry.spec(1);
        spec.validate()?;
        let shape = spec.weight_shape();
        let fan_in = shape[1] * shape[2] * shape[3];
        let fan_out = shape[0] / geometry.groups.max(1) * shape[2] * shape[3];
        let w = init.weights(rng, spec.weight_len(), fan_in, fan_out);
        let weight = Param::new(gpu, "weight", &shape, &w)?;
        let bias = if bias {
            let b = default_bias(rng, geometry.out_channels, fan_in);
            Some(Param::new(gpu, "bias", &[geometry.out_channels], &b)?.no_decay())
        } else {
            None
        };
        Ok(Conv2dLayer {
            geometry,
            weight,
            bias,
        })
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }
}

impl Layer for Conv2dLayer {
    fn output_shape(&self) -> Vec<usize> {
        self.geometry.output().to_vec()
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
        let y = rec.empty(&spec.output_shape())?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        conv2d_forward(rec, &spec, inputs[0], &self.weight.value, bias, &y)?;
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
        let spec = self.geometry.spec(batch_of(inputs[0]));
        let db = self.bias.as_ref().map(|b| &b.grad);
        conv2d_backward_weight(rec, &spec, dout, inputs[0], &self.weight.grad, db)?;
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let dx = rec.empty(inputs[0].shape())?;
        conv2d_backward_input(rec, &spec, dout, &self.weight.value, &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

/// A depthwise convolution (one filter per channel) followed by a pointwise
/// 1x1 convolution to `out_channels`, without anything between them.
pub struct SeparableConv2d {
    depthwise: Conv2dLayer,
    pointwise: Conv2dLayer,
    middle: Option<Tensor>,
}

impl SeparableConv2d {
    /// `geometry.out_channels` is the pointwise layer's; the depthwise layer
    /// keeps the input's channels.
    pub fn new(
        gpu: &Gpu,
        geometry: ConvGeometry,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let channels = geometry.input[0];
        let depthwise_geometry = ConvGeometry {
            out_channels: channels,
            groups: channels,
            ..geometry
        };
        let depthwise = Conv2dLayer::new(gpu, depthwise_geometry, false, init, rng)?;
        let pointwise_geometry = ConvGeometry {
            input: depthwise_geometry.output(),
            out_channels: geometry.out_channels,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [[0, 0], [0, 0]],
            dilation: [1, 1],
            groups: 1,
        };
        let mut pointwise = Conv2dLayer::new(gpu, pointwise_geometry, bias, init, rng)?;
        // One layer's parameters need distinct names.
        let mut depthwise = depthwise;
        depthwise.weight.name = "depthwise_weight";
        pointwise.weight.name = "pointwise_weight";
        Ok(SeparableConv2d {
            depthwise,
            pointwise,
            middle: None,
        })
    }
}

impl Layer for SeparableConv2d {
    fn output_shape(&self) -> Vec<usize> {
        self.pointwise.output_shape()
    }

    fn params(&self) -> Vec<&Param> {
        let mut params = self.depthwise.params();
        params.extend(self.pointwise.params());
        params
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut params = self.depthwise.params_mut();
        params.extend(self.pointwise.params_mut());
        params
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], pass: Pass) -> GpuResult<Tensor> {
        let middle = self.depthwise.forward(rec, inputs, pass)?;
        let y = self.pointwise.forward(rec, &[&middle], pass)?;
        self.middle = Some(middle);
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
        let middle = self.middle.take().expect("backward follows forward");
        let dmiddle = self
            .pointwise
            .backward(rec, &[&middle], dout, dout, &[true])?
            .remove(0)
            .expect("asked for");
        self.depthwise
            .backward(rec, inputs, &middle, &dmiddle, need_input)
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }

    fn saved_bytes(&self) -> u64 {
        self.middle.as_ref().map_or(0, |t| t.bytes())
    }
}

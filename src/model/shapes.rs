//! Pure shape arithmetic of the layers: the geometry a description gives
//! for an input shape, and the checks on input shapes, shared by building a
//! network and costing a description.

use super::arch::{Op, Padding, Pair};
use crate::kernels::pool::Pool2d;
use crate::nn::{same_padding, ConvGeometry};

pub(crate) fn pair_stride(stride: Option<Pair>, kernel: Pair) -> [usize; 2] {
    stride.unwrap_or(kernel).0
}

pub(crate) fn spatial(shape: &[usize]) -> Result<[usize; 3], String> {
    match shape {
        &[c, h, w] => Ok([c, h, w]),
        _ => Err(format!(
            "needs a [channels, time, freq] input, got {shape:?} (a dense or pooling layer may have flattened it)"
        )),
    }
}

pub(crate) fn single(in_shapes: &[Vec<usize>]) -> Result<&Vec<usize>, String> {
    match in_shapes {
        [one] => Ok(one),
        _ => Err(format!("takes one input, given {}", in_shapes.len())),
    }
}

fn conv_geometry(
    input: [usize; 3],
    out_channels: usize,
    kernel: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
    groups: usize,
) -> ConvGeometry {
    let padding = match padding {
        Padding::Valid => [[0, 0], [0, 0]],
        Padding::Explicit(p) => p,
        Padding::Same => [
            same_padding(input[1], kernel.0[0], stride.0[0], dilation.0[0]),
            same_padding(input[2], kernel.0[1], stride.0[1], dilation.0[1]),
        ],
    };
    ConvGeometry {
        input,
        out_channels,
        kernel: kernel.0,
        stride: stride.0,
        padding,
        dilation: dilation.0,
        groups,
    }
}

/// The geometry of a convolution op on `input` (`[channels, time, freq]`;
/// a complex op's on its planes, in complex channels) and whether it has a
/// bias: `conv2d`, `depthwise_conv2d`, `separable_conv2d` (as a whole: the
/// pointwise channels, the depthwise settings) and their complex twins;
/// `None` for any other op.
pub(crate) fn conv_of(op: &Op, input: [usize; 3]) -> Option<(ConvGeometry, bool)> {
    Some(match op.real_twin() {
        Op::Conv2d {
            channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
        } => (
            conv_geometry(input, channels, kernel, stride, padding, dilation, groups),
            bias,
        ),
        Op::DepthwiseConv2d {
            kernel,
            stride,
            padding,
            dilation,
            bias,
        } => (
            conv_geometry(input, input[0], kernel, stride, padding, dilation, input[0]),
            bias,
        ),
        Op::SeparableConv2d {
            channels,
            kernel,
            stride,
            padding,
            dilation,
            bias,
        } => (
            conv_geometry(input, channels, kernel, stride, padding, dilation, 1),
            bias,
        ),
        _ => return None,
    })
}

/// The depthwise and the pointwise convolution of a separable one whose
/// `geometry` gives the input, the pointwise output channels and the
/// depthwise kernel, stride, padding and dilation.
pub(crate) fn separable_geometries(geometry: ConvGeometry) -> [ConvGeometry; 2] {
    let channels = geometry.input[0];
    let depthwise = ConvGeometry {
        out_channels: channels,
        groups: channels,
        ..geometry
    };
    let pointwise = ConvGeometry {
        input: depthwise.output(),
        out_channels: geometry.out_channels,
        kernel: [1, 1],
        stride: [1, 1],
        padding: [[0, 0], [0, 0]],
        dilation: [1, 1],
        groups: 1,
    };
    [depthwise, pointwise]
}

/// One sample's max or average pooling over a `[channels, time, freq]` input.
pub(crate) fn pool_spec(
    input: [usize; 3],
    kernel: Pair,
    stride: [usize; 2],
    padding: Pair,
) -> Pool2d {
    let [c, h, w] = input;
    Pool2d::new(1, c, [h, w], kernel.0)
        .stride(stride[0], stride[1])
        .padding(padding.0[0], padding.0[1])
}

/// `(time, features)` of an LSTM's input.
pub(crate) fn lstm_steps(shape: &[usize]) -> Result<(usize, usize), String> {
    match shape {
        &[1, t, f] | &[t, f] => Ok((t, f)),
        other => Err(format!(
            "needs a [1, time, freq] or [time, features] input, got {other:?}"
        )),
    }
}

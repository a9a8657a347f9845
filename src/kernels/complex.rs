//! Complex-valued kernels on interleaved `(re, im)` pairs: a complex tensor of
//! logical shape `S` is a `Tensor` of shape `S + [2]`. Shader:
//! `shaders/complex.wgsl`, plus `gemm` and `conv2d` for the linear layers.
//!
//! Gradient convention: for a real loss L the gradient of a complex `z` is
//! `dL/d re(z) + i dL/d im(z)` (twice the Wirtinger derivative dL/d conj(z)),
//! stored interleaved like `z`. Through a holomorphic map `w = f(z)` it is
//! `g_z = g_w conj(f'(z))`; so for `w = a b`, `g_a = g_w conj(b)`, and for a
//! complex linear map the backward uses the conjugate transpose.
//!
//! Complex dense `[rows, in] x [in, out]` and complex conv2d run as one real
//! gemm / real conv2d each: the complex weight `w = a + ib` becomes the real
//! 2x2 block `[[a, -b], [b, a]]` (or its transpose), so the interleaved input
//! is used as it is (dense) or after one split into real and imaginary planes
//! (conv2d). A real product of the expanded weights costs exactly the four
//! real products of a complex one, with no extra passes over the input.

use crate::gpu::{ensure, grid_1d, Gpu, GpuResult, Recorder, Shader, Tensor};
use crate::kernels::check::same_shape;
use crate::kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, for_each_term, Conv2d,
};
use crate::kernels::elementwise::{bias_add, bias_backward, BiasLayout};
use crate::kernels::gemm::{gemm, Gemm};

static SHADER: Shader = crate::shader!("complex", trusted);
/// The kernel family named in shape errors.
const KERNEL: &str = "complex";

const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    inner: u32,
    channels: u32,
    rows: u32,
    cols: u32,
    transposed: u32,
    _pad: [u32; 2],
}

fn groups(len: usize) -> [u32; 3] {
    grid_1d(len.div_ceil(WORKGROUP) as u32)
}

/// The complex values of a `[..., 2]` tensor.
fn complex_len(what: &str, t: &Tensor) -> GpuResult<usize> {
    ensure(t.shape().last() == Some(&2), || {
        format!(
            "complex: {what} must be interleaved (re, im) with a last axis of 2, got shape {:?}",
            t.shape()
        )
    })?;
    Ok(t.len() / 2)
}

fn real_shape(complex: &Tensor) -> &[usize] {
    &complex.shape()[..complex.shape().len() - 1]
}

fn elementwise(rec: &mut Recorder, entry: &str, len: usize, tensors: &[&Tensor]) -> GpuResult<()> {
    let params = Params {
        len: len as u32,
        ..Params::default()
    };
    rec.dispatch(&SHADER, entry, &[], &params, tensors, groups(len))
}

/// `out = a * b`, elementwise complex product.
pub fn complex_mul(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> GpuResult<()> {
    let n = complex_len("a", a)?;
    same_shape(KERNEL, "b", b, a.shape())?;
    same_shape(KERNEL, "out", out, a.shape())?;
    elementwise(rec, "mul", n, &[a, b, out])
}

/// `da = dout conj(b)`, `db = dout conj(a)`.
pub fn complex_mul_backward(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    dout: &Tensor,
    da: &Tensor,
    db: &Tensor,
) -> GpuResult<()> {
    let n = complex_len("a", a)?;
    for (what, t) in [("b", b), ("dout", dout), ("da", da), ("db", db)] {
        same_shape(KERNEL, what, t, a.shape())?;
    }
    elementwise(rec, "mul_backward", n, &[a, b, dout, da, db])
}

/// CReLU: relu on the real and imaginary parts separately.
pub fn crelu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "out", out, x.shape())?;
    elementwise(rec, "crelu", n, &[x, out])
}

pub fn crelu_backward(rec: &mut Recorder, x: &Tensor, dout: &Tensor, dx: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "dout", dout, x.shape())?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    elementwise(rec, "crelu_backward", n, &[x, dout, dx])
}

/// zReLU: `z` where `arg z` is in `[0, pi/2]` (both parts non-negative), else 0.
pub fn zrelu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "out", out, x.shape())?;
    elementwise(rec, "zrelu", n, &[x, out])
}

pub fn zrelu_backward(rec: &mut Recorder, x: &Tensor, dout: &Tensor, dx: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "dout", dout, x.shape())?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    elementwise(rec, "zrelu_backward", n, &[x, dout, dx])
}

/// modReLU's layout: one real bias per channel, the channel being axis 1 of
/// the complex tensor (`[rows, features]` or `[batch, channels, ...]`).
fn modrelu_params(x: &Tensor, bias: &Tensor) -> GpuResult<Params> {
    let n = complex_len("x", x)?;
    let shape = real_shape(x);
    ensure(shape.len() >= 2, || {
        format!(
            "modrelu: x must be [batch, channels, ..., 2], got shape {:?}",
            x.shape()
        )
    })?;
    let channels = shape[1];
    same_shape(KERNEL, "bias", bias, &[channels])?;
    Ok(Params {
        len: n as u32,
        inner: shape[2..].iter().product::<usize>() as u32,
        channels: channels as u32,
        ..Params::default()
    })
}

/// modReLU: `relu(|z| + b) z / |z|` with a real bias per channel (zero at z = 0).
pub fn modrelu(rec: &mut Recorder, x: &Tensor, bias: &Tensor, out: &Tensor) -> GpuResult<()> {
    let params = modrelu_params(x, bias)?;
    same_shape(KERNEL, "out", out, x.shape())?;
    let g = groups(params.len as usize);
    rec.dispatch(&SHADER, "modrelu", &[], &params, &[x, bias, out], g)
}

/// Gradients of modReLU to its input and (written, not accumulated) its bias.
pub fn modrelu_backward(
    rec: &mut Recorder,
    x: &Tensor,
    bias: &Tensor,
    dout: &Tensor,
    dx: &Tensor,
    dbias: &Tensor,
) -> GpuResult<()> {
    let params = modrelu_params(x, bias)?;
    same_shape(KERNEL, "dout", dout, x.shape())?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    same_shape(KERNEL, "dbias", dbias, bias.shape())?;
    let g = groups(params.len as usize);
    rec.dispatch(
        &SHADER,
        "modrelu_backward",
        &[],
        &params,
        &[x, bias, dout, dx],
        g,
    )?;
    let g = [(params.channels as usize).div_ceil(64) as u32, 1, 1];
    rec.dispatch(
        &SHADER,
        "modrelu_bias_grad",
        &[],
        &params,
        &[x, bias, dout, dbias],
        g,
    )
}

/// `out = |z|` (real, the logical shape of `x`).
pub fn magnitude(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "out", out, real_shape(x))?;
    elementwise(rec, "magnitude", n, &[x, out])
}

/// `out = atan2(im z, re z)` in `(-pi, pi]`; the phase of zero is 0.
pub fn phase(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "out", out, real_shape(x))?;
    elementwise(rec, "phase", n, &[x, out])
}

pub fn magnitude_backward(
    rec: &mut Recorder,
    x: &Tensor,
    dout: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "dout", dout, real_shape(x))?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    elementwise(rec, "magnitude_backward", n, &[x, dout, dx])
}

pub fn phase_backward(rec: &mut Recorder, x: &Tensor, dout: &Tensor, dx: &Tensor) -> GpuResult<()> {
    let n = complex_len("x", x)?;
    same_shape(KERNEL, "dout", dout, real_shape(x))?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    elementwise(rec, "phase_backward", n, &[x, dout, dx])
}

/// Expands complex weights `[rows][cols][inner]` into real `[2 rows][2 cols][inner]`.
fn expand(
    rec: &mut Recorder,
    w: &Tensor,
    out: &Tensor,
    dims: [usize; 3],
    transposed: bool,
) -> GpuResult<()> {
    block_weights(rec, "expand", w, out, dims, transposed)
}

/// The gradient of `expand`: real `[2 rows][2 cols][inner]` into complex.
fn fold(
    rec: &mut Recorder,
    dw_real: &Tensor,
    dw: &Tensor,
    dims: [usize; 3],
    transposed: bool,
) -> GpuResult<()> {
    block_weights(rec, "fold", dw_real, dw, dims, transposed)
}

/// One pass between complex weights and their real 2x2-block form.
fn block_weights(
    rec: &mut Recorder,
    entry: &str,
    from: &Tensor,
    to: &Tensor,
    dims: [usize; 3],
    transposed: bool,
) -> GpuResult<()> {
    let params = Params {
        len: (dims[0] * dims[1] * dims[2]) as u32,
        inner: dims[2] as u32,
        rows: dims[0] as u32,
        cols: dims[1] as u32,
        transposed: transposed as u32,
        ..Params::default()
    };
    let g = groups(params.len as usize);
    rec.dispatch(&SHADER, entry, &[], &params, &[from, to], g)
}

/// Complex `[outer][inner]` into real planes `[outer][2][inner]`, or back.
fn relayout(
    rec: &mut Recorder,
    entry: &str,
    from: &Tensor,
    to: &Tensor,
    inner: usize,
) -> GpuResult<()> {
    let len = from.len().min(to.len()) / 2;
    let params = Params {
        len: len as u32,
        inner: inner as u32,
        ..Params::default()
    };
    rec.dispatch(&SHADER, entry, &[], &params, &[from, to], groups(len))
}

/// The real shape `[batch, 2 channels, positions...]` of the planes of a
/// complex `[batch, channels, positions..., 2]`.
pub fn planes_shape(complex_shape: &[usize]) -> GpuResult<Vec<usize>> {
    let n = complex_shape.len();
    ensure(n >= 3 && complex_shape[n - 1] == 2, || {
        format!("complex planes: need [batch, channels, ..., 2], got {complex_shape:?}")
    })?;
    let mut shape = complex_shape[..n - 1].to_vec();
    shape[1] *= 2;
    Ok(shape)
}

/// Complex `[batch, channels, positions..., 2]` into real planes `[batch,
/// 2 channels, positions...]`: channel 2c holds the real parts of channel
/// c, 2c + 1 its imaginary parts. A permutation; `join_planes` undoes it.
pub fn split_planes(rec: &mut Recorder, x: &Tensor, planes: &Tensor) -> GpuResult<()> {
    same_shape(KERNEL, "planes", planes, &planes_shape(x.shape())?)?;
    let inner = real_shape(x)[2..].iter().product();
    relayout(rec, "planar", x, planes, inner)
}

/// The inverse of `split_planes` (and its backward).
pub fn join_planes(rec: &mut Recorder, planes: &Tensor, x: &Tensor) -> GpuResult<()> {
    same_shape(KERNEL, "planes", planes, &planes_shape(x.shape())?)?;
    let inner = real_shape(x)[2..].iter().product();
    relayout(rec, "interleave", planes, x, inner)
}

/// A complex bias `[outputs, 2]` (when given) as the real `[2 outputs]` it
/// is in memory: the real bias of interleaved columns, or of the planes.
fn real_bias(what: &str, bias: Option<&Tensor>, outputs: usize) -> GpuResult<Option<Tensor>> {
    bias.map(|b| {
        same_shape(KERNEL, what, b, &[outputs, 2])?;
        b.reshaped(&[2 * outputs])
    })
    .transpose()
}

/// Complex dense `y [rows, out] = x [rows, in] w [in, out]` for any number
/// of rows, and what its backward needs (the expanded real weights). Make
/// one per layer and keep it.
pub struct ComplexDense {
    pub inputs: usize,
    pub outputs: usize,
    w_real: Tensor,
    dw_real: Tensor,
}

impl ComplexDense {
    pub fn new(gpu: &Gpu, inputs: usize, outputs: usize) -> GpuResult<Self> {
        Ok(ComplexDense {
            inputs,
            outputs,
            w_real: gpu.empty(&[2 * inputs, 2 * outputs])?,
            dw_real: gpu.empty(&[2 * inputs, 2 * outputs])?,
        })
    }

    /// Real FLOPs of the forward product over `rows` rows.
    pub fn flops(&self, rows: usize) -> f64 {
        8.0 * (rows * self.inputs * self.outputs) as f64
    }

    /// The rows of `x`, which must be `[rows, inputs, 2]`.
    fn rows(&self, x: &Tensor) -> GpuResult<usize> {
        let rows = x.shape().first().copied().unwrap_or(0);
        same_shape(KERNEL, "x", x, &[rows, self.inputs, 2])?;
        Ok(rows)
    }

    /// `y = x w + bias`, the bias complex `[outputs, 2]`.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> GpuResult<()> {
        let (r, i, o) = (self.rows(x)?, self.inputs, self.outputs);
        same_shape(KERNEL, "w", w, &[i, o, 2])?;
        same_shape(KERNEL, "y", y, &[r, o, 2])?;
        expand(rec, w, &self.w_real, [i, o, 1], false)?;
        gemm(rec, &Gemm::new(r, 2 * o, 2 * i), x, &self.w_real, y)?;
        if let Some(b) = real_bias("bias", bias, o)? {
            // Interleaved pairs are 2 o real columns with a real bias each.
            let layout = BiasLayout::rows(r, 2 * o);
            bias_add(rec, &layout, &y.reshaped(&[r, 2 * o])?, &b)?;
        }
        Ok(())
    }

    /// `dx = dy w^H` (when asked), `dw = x^H dy` and the bias gradient
    /// (when given), after `forward` on the same weights.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        dw: &Tensor,
        db: Option<&Tensor>,
    ) -> GpuResult<()> {
        let (r, i, o) = (self.rows(x)?, self.inputs, self.outputs);
        same_shape(KERNEL, "dy", dy, &[r, o, 2])?;
        same_shape(KERNEL, "dw", dw, &[i, o, 2])?;
        if let Some(b) = real_bias("db", db, o)? {
            let layout = BiasLayout::rows(r, 2 * o);
            bias_backward(rec, &layout, &dy.reshaped(&[r, 2 * o])?, &b)?;
        }
        if let Some(dx) = dx {
            same_shape(KERNEL, "dx", dx, x.shape())?;
            gemm(
                rec,
                &Gemm::new(r, 2 * i, 2 * o).trans_b(true),
                dy,
                &self.w_real,
                dx,
            )?;
        }
        let spec = Gemm::new(2 * i, 2 * o, r).trans_a(true);
        gemm(rec, &spec, x, dy, &self.dw_real)?;
        fold(rec, &self.dw_real, dw, [i, o, 1], false)
    }
}

/// Complex conv2d on `[batch, channels, h, w, 2]` with complex weights
/// `[out, in / groups, kh, kw, 2]`, run as a real conv2d on real and
/// imaginary planes, for any batch. Keeps the expanded weights for the
/// backward; the batch-sized planes are scratch of each call. Make one per
/// layer.
pub struct ComplexConv2d {
    /// The geometry in complex channels; each call takes its input's batch.
    geometry: Conv2d,
    w_real: Tensor,
    dw_real: Tensor,
}

impl ComplexConv2d {
    /// `spec` counts complex channels; its batch does not matter.
    pub fn new(gpu: &Gpu, spec: Conv2d) -> GpuResult<Self> {
        spec.validate()?;
        let weight_shape = Self::real(spec).weight_shape();
        Ok(ComplexConv2d {
            geometry: spec,
            w_real: gpu.empty(&weight_shape)?,
            dw_real: gpu.empty(&weight_shape)?,
        })
    }

    /// The real convolution on the planes of `complex`.
    fn real(complex: Conv2d) -> Conv2d {
        Conv2d {
            in_channels: 2 * complex.in_channels,
            out_channels: 2 * complex.out_channels,
            ..complex
        }
    }

    fn with_pair(shape: [usize; 4]) -> Vec<usize> {
        let mut s = shape.to_vec();
        s.push(2);
        s
    }

    /// The geometry at the batch of `x`, once `x` has its shape.
    fn spec_of(&self, x: &Tensor) -> GpuResult<Conv2d> {
        let spec = Conv2d {
            batch: x.shape().first().copied().unwrap_or(0),
            ..self.geometry
        };
        same_shape(KERNEL, "x", x, &Self::with_pair(spec.input_shape()))?;
        Ok(spec)
    }

    /// `[out, in / groups, taps]` of the complex weights, for expand and fold.
    fn weight_dims(&self) -> [usize; 3] {
        let [out, inputs, kh, kw] = self.geometry.weight_shape();
        [out, inputs, kh * kw]
    }

    /// `x` split into real and imaginary planes, in scratch of this recording.
    fn planes_of(&self, rec: &mut Recorder, spec: &Conv2d, x: &Tensor) -> GpuResult<Tensor> {
        let planes = rec.empty(&Self::real(*spec).input_shape())?;
        relayout(rec, "planar", x, &planes, spec.in_h * spec.in_w)?;
        Ok(planes)
    }

    /// `y = conv(x, w) + bias`; the bias is complex `[out, 2]`, whose
    /// memory is the real bias of the planes (re of channel c at 2c, im at
    /// 2c + 1).
    pub fn forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> GpuResult<()> {
        let s = self.spec_of(x)?;
        same_shape(KERNEL, "w", w, &Self::with_pair(s.weight_shape()))?;
        same_shape(KERNEL, "y", y, &Self::with_pair(s.output_shape()))?;
        let real = Self::real(s);
        let bias = real_bias("bias", bias, s.out_channels)?;
        let x_planes = self.planes_of(rec, &s, x)?;
        expand(rec, w, &self.w_real, self.weight_dims(), true)?;
        let y_planes = rec.empty(&real.output_shape())?;
        conv2d_forward(
            rec,
            &real,
            &x_planes,
            &self.w_real,
            bias.as_ref(),
            &y_planes,
        )?;
        relayout(rec, "interleave", &y_planes, y, s.out_h() * s.out_w())
    }

    /// `dx` (when asked), `dw` and `db` (when given) after `forward` on the
    /// same weights; `x` is the forward's input, split into planes again
    /// rather than kept between the calls.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        dw: &Tensor,
        db: Option<&Tensor>,
    ) -> GpuResult<()> {
        let s = self.spec_of(x)?;
        same_shape(KERNEL, "dy", dy, &Self::with_pair(s.output_shape()))?;
        same_shape(KERNEL, "dw", dw, &Self::with_pair(s.weight_shape()))?;
        let real = Self::real(s);
        let db = real_bias("db", db, s.out_channels)?;
        let dy_planes = rec.empty(&real.output_shape())?;
        relayout(rec, "planar", dy, &dy_planes, s.out_h() * s.out_w())?;
        if let Some(dx) = dx {
            same_shape(KERNEL, "dx", dx, x.shape())?;
            let dx_planes = rec.empty(&real.input_shape())?;
            conv2d_backward_input(rec, &real, &dy_planes, &self.w_real, &dx_planes)?;
            relayout(rec, "interleave", &dx_planes, dx, s.in_h * s.in_w)?;
        }
        let x_planes = self.planes_of(rec, &s, x)?;
        conv2d_backward_weight(
            rec,
            &real,
            &dy_planes,
            &x_planes,
            &self.dw_real,
            db.as_ref(),
        )?;
        fold(rec, &self.dw_real, dw, self.weight_dims(), true)
    }
}

fn cmul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn conj(a: (f64, f64)) -> (f64, f64) {
    (a.0, -a.1)
}

fn at(v: &[f64], i: usize) -> (f64, f64) {
    (v[2 * i], v[2 * i + 1])
}

fn put(v: &mut [f64], i: usize, z: (f64, f64)) {
    v[2 * i] = z.0;
    v[2 * i + 1] = z.1;
}

fn add(v: &mut [f64], i: usize, z: (f64, f64)) {
    v[2 * i] += z.0;
    v[2 * i + 1] += z.1;
}

/// CPU references, on interleaved f64 slices.
pub fn mul_reference(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len()];
    for i in 0..a.len() / 2 {
        put(&mut out, i, cmul(at(a, i), at(b, i)));
    }
    out
}

/// `(da, db)` of the complex product.
pub fn mul_backward_reference(a: &[f64], b: &[f64], dout: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut da, mut db) = (vec![0.0; a.len()], vec![0.0; a.len()]);
    for i in 0..a.len() / 2 {
        put(&mut da, i, cmul(at(dout, i), conj(at(b, i))));
        put(&mut db, i, cmul(at(dout, i), conj(at(a, i))));
    }
    (da, db)
}

pub fn crelu_reference(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.max(0.0)).collect()
}

pub fn crelu_backward_reference(x: &[f64], dout: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dout)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect()
}

fn first_quadrant(x: &[f64], i: usize) -> bool {
    x[2 * i] >= 0.0 && x[2 * i + 1] >= 0.0
}

pub fn zrelu_reference(x: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in (0..x.len() / 2).filter(|&i| first_quadrant(x, i)) {
        put(&mut out, i, at(x, i));
    }
    out
}

pub fn zrelu_backward_reference(x: &[f64], dout: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for i in (0..x.len() / 2).filter(|&i| first_quadrant(x, i)) {
        put(&mut dx, i, at(dout, i));
    }
    dx
}

/// modReLU over `[outer][channels][inner]` complex values.
pub fn modrelu_reference(x: &[f64], bias: &[f64], inner: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..x.len() / 2 {
        let z = at(x, i);
        let r = z.0.hypot(z.1);
        let s = r + bias[(i / inner) % bias.len()];
        if s > 0.0 && r > 0.0 {
            put(&mut out, i, (z.0 * s / r, z.1 * s / r));
        }
    }
    out
}

/// `(dx, dbias)` of modReLU, from the chain rule on the real and imaginary
/// parts written out: out = s u with s = |z| + b, u = z / |z|.
pub fn modrelu_backward_reference(
    x: &[f64],
    bias: &[f64],
    inner: usize,
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dbias = vec![0.0; bias.len()];
    for i in 0..x.len() / 2 {
        let (re, im) = at(x, i);
        let c = (i / inner) % bias.len();
        let r = re.hypot(im);
        let s = r + bias[c];
        if !(s > 0.0 && r > 0.0) {
            continue;
        }
        let (gr, gi) = at(dout, i);
        // out_re = re s / r, out_im = im s / r; ds/dre = re / r, d(1/r)/dre = -re / r^3.
        let d_re_re = s / r + re * re / (r * r) - re * re * s / (r * r * r);
        let d_re_im = re * im / (r * r) - re * im * s / (r * r * r);
        let d_im_im = s / r + im * im / (r * r) - im * im * s / (r * r * r);
        put(
            &mut dx,
            i,
            (gr * d_re_re + gi * d_re_im, gr * d_re_im + gi * d_im_im),
        );
        dbias[c] += (gr * re + gi * im) / r;
    }
    (dx, dbias)
}

pub fn magnitude_reference(x: &[f64]) -> Vec<f64> {
    (0..x.len() / 2)
        .map(|i| x[2 * i].hypot(x[2 * i + 1]))
        .collect()
}

pub fn phase_reference(x: &[f64]) -> Vec<f64> {
    (0..x.len() / 2)
        .map(|i| x[2 * i + 1].atan2(x[2 * i]))
        .collect()
}

pub fn magnitude_backward_reference(x: &[f64], dout: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for (i, &g) in dout.iter().enumerate() {
        let (re, im) = at(x, i);
        let r = re.hypot(im);
        if r > 0.0 {
            put(&mut dx, i, (g * re / r, g * im / r));
        }
    }
    dx
}

pub fn phase_backward_reference(x: &[f64], dout: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for (i, &g) in dout.iter().enumerate() {
        let (re, im) = at(x, i);
        let r2 = re * re + im * im;
        if r2 > 0.0 {
            put(&mut dx, i, (-g * im / r2, g * re / r2));
        }
    }
    dx
}

/// Complex dense: `y [rows][out] = x [rows][in] w [in][out]`.
pub fn dense_reference(
    x: &[f64],
    w: &[f64],
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; 2 * rows * outputs];
    for r in 0..rows {
        for o in 0..outputs {
            for i in 0..inputs {
                add(
                    &mut y,
                    r * outputs + o,
                    cmul(at(x, r * inputs + i), at(w, i * outputs + o)),
                );
            }
        }
    }
    y
}

/// `(dx, dw)` of complex dense: `dx = dy w^H`, `dw = x^H dy`.
pub fn dense_backward_reference(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    for r in 0..rows {
        for o in 0..outputs {
            let g = at(dy, r * outputs + o);
            for i in 0..inputs {
                add(
                    &mut dx,
                    r * inputs + i,
                    cmul(g, conj(at(w, i * outputs + o))),
                );
                add(
                    &mut dw,
                    i * outputs + o,
                    cmul(g, conj(at(x, r * inputs + i))),
                );
            }
        }
    }
    (dx, dw)
}

/// Complex conv2d forward (no bias), interleaved.
pub fn conv2d_reference(s: &Conv2d, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; 2 * s.output_len()];
    for_each_term(s, |yi, xi, wi| add(&mut y, yi, cmul(at(x, xi), at(w, wi))));
    y
}

/// `(dx, dw)` of complex conv2d: `dx += dy conj(w)`, `dw += dy conj(x)`.
pub fn conv2d_backward_reference(
    s: &Conv2d,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    for_each_term(s, |yi, xi, wi| {
        add(&mut dx, xi, cmul(at(dy, yi), conj(at(w, wi))));
        add(&mut dw, wi, cmul(at(dy, yi), conj(at(x, xi))));
    });
    (dx, dw)
}

//! Elementwise kernels: scale, fill, add, axpy (by a host scalar, or by one
//! on the GPU), a factor per sample, ReLU / sigmoid / tanh forward
//! and backward, bias add over a channel axis and its backward.
//! Shader: `shaders/elementwise.wgsl`.

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("elementwise", trusted);

const WORKGROUP: usize = 256;
/// Elements each invocation of the flat kernels handles.
const PER_INVOCATION: usize = 4;
/// Rows at least this long take bias_add_rows (one workgroup per row).
const ROW_KERNEL_MIN_INNER: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    scalar: f32,
    channels: u32,
    inner: u32,
}

impl Params {
    fn flat(len: usize, scalar: f32) -> Self {
        Params {
            len: len as u32,
            scalar,
            channels: 1,
            inner: 1,
        }
    }
}

fn flat_groups(len: usize) -> [u32; 3] {
    grid_1d(len.div_ceil(WORKGROUP * PER_INVOCATION) as u32)
}

fn same_len(op: &str, names: [&str; 2], a: &Tensor, b: &Tensor) -> GpuResult<()> {
    ensure(a.len() == b.len(), || {
        format!(
            "{op}: {} has shape {:?} but {} has shape {:?}; they need the same number of elements",
            names[0],
            a.shape(),
            names[1],
            b.shape()
        )
    })
}

/// `x *= factor`
pub fn scale(rec: &mut Recorder, x: &Tensor, factor: f32) -> GpuResult<()> {
    let params = Params::flat(x.len(), factor);
    rec.dispatch(&SHADER, "scale", &[], &params, &[x], flat_groups(x.len()))
}

pub fn scale_reference(x: &mut [f32], factor: f32) {
    x.iter_mut().for_each(|v| *v *= factor);
}

/// `x = value` everywhere.
pub fn fill(rec: &mut Recorder, x: &Tensor, value: f32) -> GpuResult<()> {
    let params = Params::flat(x.len(), value);
    rec.dispatch(&SHADER, "fill", &[], &params, &[x], flat_groups(x.len()))
}

/// `out = a + b`; `out` must not alias `a` or `b` (use [`add_assign`]).
pub fn add(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> GpuResult<()> {
    same_len("add", ["a", "b"], a, b)?;
    same_len("add", ["a", "out"], a, out)?;
    let params = Params::flat(a.len(), 0.0);
    rec.dispatch(
        &SHADER,
        "add",
        &[],
        &params,
        &[a, b, out],
        flat_groups(a.len()),
    )
}

pub fn add_reference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// `acc += x`, e.g. summing the gradients that meet at a node.
pub fn add_assign(rec: &mut Recorder, acc: &Tensor, x: &Tensor) -> GpuResult<()> {
    axpy(rec, 1.0, x, acc)
}

/// `y += alpha * x`
pub fn axpy(rec: &mut Recorder, alpha: f32, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    same_len("axpy", ["x", "y"], x, y)?;
    let params = Params::flat(x.len(), alpha);
    rec.dispatch(&SHADER, "axpy", &[], &params, &[x, y], flat_groups(x.len()))
}

pub fn axpy_reference(alpha: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

/// `y[b, ...] = x[b, ...] * factors[b]`: each sample of a `[batch, ...]`
/// tensor times its own factor (a stochastic network's gates, forward and
/// backward alike). `y` must not alias `x`.
pub fn scale_samples(
    rec: &mut Recorder,
    x: &Tensor,
    factors: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    same_len("scale_samples", ["x", "y"], x, y)?;
    let batch = x.shape().first().copied().unwrap_or(0);
    ensure(batch > 0 && factors.len() == batch, || {
        format!(
            "scale_samples: x has shape {:?}, so factors needs {batch} values, one per sample; it has {}",
            x.shape(),
            factors.len()
        )
    })?;
    let params = Params {
        len: x.len() as u32,
        scalar: 0.0,
        channels: 1,
        inner: (x.len() / batch) as u32,
    };
    rec.dispatch(
        &SHADER,
        "scale_samples",
        &[],
        &params,
        &[x, factors, y],
        flat_groups(x.len()),
    )
}

pub fn scale_samples_reference(x: &[f32], factors: &[f32]) -> Vec<f32> {
    let inner = x.len() / factors.len().max(1);
    x.iter()
        .enumerate()
        .map(|(i, v)| v * factors[i / inner.max(1)])
        .collect()
}

/// How [`axpy_by`] applies its GPU scalar `s` to alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByScalar {
    /// `alpha * s`
    Times,
    /// `alpha / s`, and no update at all where `s` is 0.
    Over,
}

/// `y += alpha * s[0] * x` or `y += alpha / s[0] * x`, `s` a one-element
/// tensor written earlier in the same submit (a norm the host never reads).
pub fn axpy_by(
    rec: &mut Recorder,
    alpha: f32,
    s: &Tensor,
    by: ByScalar,
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    same_len("axpy_by", ["x", "y"], x, y)?;
    ensure(s.len() == 1, || {
        format!(
            "axpy_by: the scalar s has shape {:?}, expected 1 element",
            s.shape()
        )
    })?;
    let params = Params::flat(x.len(), alpha);
    let over = (by == ByScalar::Over) as u8 as f64;
    rec.dispatch(
        &SHADER,
        "axpy_by",
        &[("OVER", over)],
        &params,
        &[x, y, s],
        flat_groups(x.len()),
    )
}

pub fn axpy_by_reference(alpha: f32, s: f32, by: ByScalar, x: &[f32], y: &mut [f32]) {
    let factor = match by {
        ByScalar::Times => alpha * s,
        ByScalar::Over if s == 0.0 => return,
        ByScalar::Over => alpha / s,
    };
    axpy_reference(factor, x, y);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    fn code(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::Sigmoid => 1.0,
            Activation::Tanh => 2.0,
        }
    }

    /// The reference forward, in f64 so that finite differences of it are exact
    /// enough to check the backward.
    pub fn forward(self, x: f64) -> f64 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }

    /// The derivative at x, written in terms of the output y = f(x).
    pub fn derivative_from_output(self, y: f64) -> f64 {
        match self {
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
        }
    }
}

/// `y = f(x)`; `y` must not alias `x`.
pub fn activation(rec: &mut Recorder, f: Activation, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    same_len("activation", ["x", "y"], x, y)?;
    let params = Params::flat(x.len(), 0.0);
    rec.dispatch(
        &SHADER,
        "activation",
        &[("ACT", f.code())],
        &params,
        &[x, y],
        flat_groups(x.len()),
    )
}

pub fn activation_reference(f: Activation, x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| f.forward(v as f64) as f32).collect()
}

/// `dx = dy * f'(x)`, with f' taken from the saved output `y = f(x)`.
pub fn activation_backward(
    rec: &mut Recorder,
    f: Activation,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    same_len("activation_backward", ["y", "dy"], y, dy)?;
    same_len("activation_backward", ["y", "dx"], y, dx)?;
    let params = Params::flat(y.len(), 0.0);
    rec.dispatch(
        &SHADER,
        "activation_backward",
        &[("ACT", f.code())],
        &params,
        &[y, dy, dx],
        flat_groups(y.len()),
    )
}

pub fn activation_backward_reference(f: Activation, y: &[f32], dy: &[f32]) -> Vec<f32> {
    y.iter()
        .zip(dy)
        .map(|(&y, &g)| (g as f64 * f.derivative_from_output(y as f64)) as f32)
        .collect()
}

/// How a bias lines up with a tensor viewed as `[outer, channels, inner]`:
/// `[rows, cols]` with a bias per column is `rows(rows, cols)`, and
/// `[batch, channels, spatial]` with a bias per channel is
/// `channels(batch, channels, spatial)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasLayout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl BiasLayout {
    pub fn rows(rows: usize, cols: usize) -> Self {
        BiasLayout {
            outer: rows,
            channels: cols,
            inner: 1,
        }
    }

    pub fn channels(batch: usize, channels: usize, spatial: usize) -> Self {
        BiasLayout {
            outer: batch,
            channels,
            inner: spatial,
        }
    }

    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, op: &str, names: [&str; 2], x: &Tensor, bias: &Tensor) -> GpuResult<()> {
        ensure(x.len() == self.len(), || {
            format!(
                "{op} {self:?}: {} has shape {:?} ({} elements), expected {}",
                names[0],
                x.shape(),
                x.len(),
                self.len()
            )
        })?;
        ensure(bias.len() == self.channels, || {
            format!(
                "{op} {self:?}: {} has shape {:?}, expected {} elements (one per channel)",
                names[1],
                bias.shape(),
                self.channels
            )
        })
    }
}

/// `x[o, c, s] += bias[c]`
pub fn bias_add(
    rec: &mut Recorder,
    layout: &BiasLayout,
    x: &Tensor,
    bias: &Tensor,
) -> GpuResult<()> {
    layout.check("bias_add", ["x", "bias"], x, bias)?;
    let params = Params {
        len: layout.len() as u32,
        scalar: 0.0,
        channels: layout.channels as u32,
        inner: layout.inner as u32,
    };
    if layout.inner >= ROW_KERNEL_MIN_INNER {
        let lanes = rec.gpu().row_lanes(layout.inner);
        return rec.dispatch(
            &SHADER,
            "bias_add_rows",
            &[("ROW_LANES", lanes as f64)],
            &params,
            &[x, bias],
            grid_1d((layout.outer * layout.channels) as u32),
        );
    }
    rec.dispatch(
        &SHADER,
        "bias_add",
        &[],
        &params,
        &[x, bias],
        flat_groups(layout.len()),
    )
}

/// CPU reference; generic so that finite differences can run it in f64.
pub fn bias_add_reference<T: Copy + std::ops::AddAssign>(
    layout: &BiasLayout,
    x: &mut [T],
    bias: &[T],
) {
    for o in 0..layout.outer {
        for (c, b) in bias.iter().enumerate() {
            let start = (o * layout.channels + c) * layout.inner;
            x[start..start + layout.inner]
                .iter_mut()
                .for_each(|v| *v += *b);
        }
    }
}

/// `db[c] = sum over o, s of dy[o, c, s]`: the gradient of a bias (overwrites `db`).
pub fn bias_backward(
    rec: &mut Recorder,
    layout: &BiasLayout,
    dy: &Tensor,
    db: &Tensor,
) -> GpuResult<()> {
    layout.check("bias_backward", ["dy", "db"], dy, db)?;
    if layout.channels == 0 {
        return Ok(());
    }
    if layout.outer == 0 || layout.inner == 0 {
        rec.clear(db);
        return Ok(());
    }
    let params = Params {
        len: layout.outer as u32,
        scalar: 0.0,
        channels: layout.channels as u32,
        inner: layout.inner as u32,
    };
    if layout.inner == 1 {
        let groups = [layout.channels.div_ceil(WORKGROUP) as u32, 1, 1];
        rec.dispatch(
            &SHADER,
            "bias_backward_columns",
            &[],
            &params,
            &[dy, db],
            groups,
        )
    } else {
        rec.dispatch(
            &SHADER,
            "bias_backward_channels",
            &[],
            &params,
            &[dy, db],
            grid_1d(layout.channels as u32),
        )
    }
}

/// CPU reference, accumulated in f64.
pub fn bias_backward_reference(layout: &BiasLayout, dy: &[f32]) -> Vec<f32> {
    (0..layout.channels)
        .map(|c| {
            let mut sum = 0.0f64;
            for o in 0..layout.outer {
                let start = (o * layout.channels + c) * layout.inner;
                sum += dy[start..start + layout.inner]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
            }
            sum as f32
        })
        .collect()
}

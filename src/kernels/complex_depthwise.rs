//! Complex depthwise conv2d on `[batch, channels, h, w, 2]` (interleaved
//! `(re, im)` pairs) with complex weights `[channels, 1, kh, kw, 2]` (the
//! weights of a complex conv2d with groups = channels) and an optional
//! complex bias `[channels, 2]`: any kernel, stride, zero padding and
//! dilation, forward, backward to the input, backward to the weights and
//! bias. Shader: `shaders/complex_depthwise.wgsl`.
//!
//! Each complex product is computed in place on the interleaved values, so
//! it costs the four real products it needs and nothing more; the general
//! `ComplexConv2d` instead splits into planes and runs a grouped real
//! convolution of 2x2-block weights, which is right for dense channel
//! mixing but costly for one channel per group. Gradients follow the
//! convention of `kernels::complex`: `dx = dy conj(w)`, `dw = sum dy conj(x)`.
//! The CPU references are those of the complex conv2d with groups = channels.

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};
use crate::kernels::check::same_shape;
use crate::kernels::complex::{conv2d_backward_reference, conv2d_reference};
use crate::kernels::conv2d::{depthwise_run, Conv2d};

static SHADER: Shader = crate::shader!("complex_depthwise", trusted);
/// The kernel family named in shape errors.
const KERNEL: &str = "complex depthwise conv2d";

/// Lanes per workgroup (the shader's `LANES`).
const LANES: usize = 64;
/// Taps per workgroup of the weight gradient (the shader's `TAP_CHUNK`).
const TAP_CHUNK: usize = 9;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    len: u32,
    _pad: [u32; 3],
}

fn pair(shape: [usize; 4]) -> [usize; 5] {
    [shape[0], shape[1], shape[2], shape[3], 2]
}

/// Checks that `spec` (counting complex channels) is a valid depthwise
/// geometry, and gives its params.
fn params(spec: &Conv2d) -> GpuResult<Params> {
    spec.validate()?;
    ensure(spec.is_depthwise(), || {
        format!(
            "{KERNEL}: {spec:?} is not depthwise (groups must equal in_channels and out_channels)"
        )
    })?;
    let u = |v: usize| v as u32;
    Ok(Params {
        batch: u(spec.batch),
        channels: u(spec.in_channels),
        in_h: u(spec.in_h),
        in_w: u(spec.in_w),
        out_h: u(spec.out_h()),
        out_w: u(spec.out_w()),
        pad_h: u(spec.pad_h),
        pad_w: u(spec.pad_w),
        ..Params::default()
    })
}

/// The pipeline overrides: geometry, bias and the run length.
fn constants(spec: &Conv2d, has_bias: bool, run: usize) -> Vec<(&'static str, f64)> {
    let mut c = spec.geometry_constants().to_vec();
    c.push(("HAS_BIAS", has_bias as u8 as f64));
    c.push(("RUN", run as f64));
    c
}

/// The bias (and its gradient) is complex `[channels, 2]`.
fn check_bias(spec: &Conv2d, what: &str, bias: Option<&Tensor>) -> GpuResult<()> {
    match bias {
        Some(b) => same_shape(KERNEL, what, b, &[spec.out_channels, 2]),
        None => Ok(()),
    }
}

/// `y = conv(x, w) + bias`: x `[batch, c, in_h, in_w, 2]`, w `[c, 1, kh,
/// kw, 2]`, bias `[c, 2]`, y `[batch, c, out_h, out_w, 2]`.
pub fn complex_depthwise_forward(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> GpuResult<()> {
    let mut params = params(spec)?;
    same_shape(KERNEL, "x", x, &pair(spec.input_shape()))?;
    same_shape(KERNEL, "w", w, &pair(spec.weight_shape()))?;
    same_shape(KERNEL, "y", y, &pair(spec.output_shape()))?;
    check_bias(spec, "bias", bias)?;
    let run = depthwise_run(spec.out_w());
    let runs = spec.output_len() / spec.out_w() * spec.out_w().div_ceil(run);
    params.len = runs as u32;
    // Without a bias the weights stand in for its binding, unread.
    let bias_binding = bias.unwrap_or(w);
    rec.dispatch(
        &SHADER,
        "forward",
        &constants(spec, bias.is_some(), run),
        &params,
        &[x, w, y, bias_binding],
        grid_1d(runs.div_ceil(LANES) as u32),
    )
}

/// `dx = d loss / d x` from `dy` (overwrites dx): `dx = dy conj(w)` summed
/// over the outputs each input meets.
pub fn complex_depthwise_backward_input(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    let mut params = params(spec)?;
    same_shape(KERNEL, "dy", dy, &pair(spec.output_shape()))?;
    same_shape(KERNEL, "w", w, &pair(spec.weight_shape()))?;
    same_shape(KERNEL, "dx", dx, &pair(spec.input_shape()))?;
    let run = depthwise_run(spec.in_w);
    let runs = spec.input_len() / spec.in_w * spec.in_w.div_ceil(run);
    params.len = runs as u32;
    rec.dispatch(
        &SHADER,
        "backward_input",
        &constants(spec, false, run),
        &params,
        &[dy, w, dx],
        grid_1d(runs.div_ceil(LANES) as u32),
    )
}

/// `dw = d loss / d w` and, when given, `db = d loss / d bias` from dy and
/// the forward input x (both overwritten; zeros for an empty batch).
pub fn complex_depthwise_backward_weight(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> GpuResult<()> {
    let params = params(spec)?;
    same_shape(KERNEL, "dy", dy, &pair(spec.output_shape()))?;
    same_shape(KERNEL, "x", x, &pair(spec.input_shape()))?;
    same_shape(KERNEL, "dw", dw, &pair(spec.weight_shape()))?;
    check_bias(spec, "db", db)?;
    if spec.batch == 0 {
        rec.clear(dw);
        if let Some(db) = db {
            rec.clear(db);
        }
        return Ok(());
    }
    let chunks = (spec.kernel_h * spec.kernel_w).div_ceil(TAP_CHUNK);
    let groups = [chunks as u32, spec.in_channels as u32, 1];
    match db {
        Some(db) => rec.dispatch(
            &SHADER,
            "backward_weight_bias",
            &constants(spec, true, 1),
            &params,
            &[dy, x, dw, db],
            groups,
        ),
        None => rec.dispatch(
            &SHADER,
            "backward_weight",
            &constants(spec, false, 1),
            &params,
            &[dy, x, dw],
            groups,
        ),
    }
}

/// Real FLOPs of the forward pass: 8 per complex multiply-accumulate (each
/// backward has as many).
pub fn complex_depthwise_flops(spec: &Conv2d) -> f64 {
    8.0 * (spec.output_len() * spec.kernel_h * spec.kernel_w) as f64
}

/// CPU reference of the forward pass with an optional complex bias
/// `[channels][2]`, interleaved f64.
pub fn complex_depthwise_forward_reference(
    spec: &Conv2d,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let mut y = conv2d_reference(spec, x, w);
    if let Some(b) = bias {
        let plane = spec.out_h() * spec.out_w();
        for (i, v) in y.chunks_exact_mut(2).enumerate() {
            let c = (i / plane) % spec.out_channels;
            v[0] += b[2 * c];
            v[1] += b[2 * c + 1];
        }
    }
    y
}

/// CPU reference of the backward pass: `(dx, dw, db)`, interleaved f64.
pub fn complex_depthwise_backward_reference(
    spec: &Conv2d,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (dx, dw) = conv2d_backward_reference(spec, x, w, dy);
    let plane = spec.out_h() * spec.out_w();
    let mut db = vec![0.0; 2 * spec.out_channels];
    for (i, g) in dy.chunks_exact(2).enumerate() {
        let c = (i / plane) % spec.out_channels;
        db[2 * c] += g[0];
        db[2 * c + 1] += g[1];
    }
    (dx, dw, db)
}

//! Pooling on `[batch, channels, height, width]`: max and average pooling
//! with any window, stride and zero padding, and global average pooling;
//! forward and backward. Max pooling saves the arg-max of every output (its
//! index `iy * in_w + ix` within the input plane) as a u32 tensor for its
//! backward. A complex pooling (`Pool2d::complex`) runs on interleaved
//! `(re, im)` pairs, `[batch, channels, height, width, 2]`: max pooling by
//! magnitude (both parts of the largest `|z|`), average pooling of each part.
//! Shader: `shaders/pool.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("pool", trusted);

/// Lanes per workgroup (the shader's `LANES`).
const LANES: usize = 64;

/// The geometry of a max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    /// Average pooling divides by the whole window (true, PyTorch's default)
    /// or by its cells inside the input (false, as DARTS uses).
    pub count_include_pad: bool,
    /// Elements are complex `(re, im)` pairs.
    pub complex: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    len: u32,
    planes: u32,
}

impl Pool2d {
    /// Stride equal to the window (non-overlapping), no padding.
    pub fn new(batch: usize, channels: usize, input: [usize; 2], kernel: [usize; 2]) -> Self {
        Pool2d {
            batch,
            channels,
            in_h: input[0],
            in_w: input[1],
            kernel_h: kernel[0],
            kernel_w: kernel[1],
            stride_h: kernel[0],
            stride_w: kernel[1],
            pad_h: 0,
            pad_w: 0,
            count_include_pad: true,
            complex: false,
        }
    }

    pub fn complex(self, yes: bool) -> Self {
        Pool2d {
            complex: yes,
            ..self
        }
    }

    /// Floats per element: 2 for complex pairs.
    pub fn components(&self) -> usize {
        1 + self.complex as usize
    }

    pub fn stride(self, h: usize, w: usize) -> Self {
        Pool2d {
            stride_h: h,
            stride_w: w,
            ..self
        }
    }

    /// Zero padding on both sides of each dimension (at most half the window).
    pub fn padding(self, h: usize, w: usize) -> Self {
        Pool2d {
            pad_h: h,
            pad_w: w,
            ..self
        }
    }

    pub fn count_include_pad(self, yes: bool) -> Self {
        Pool2d {
            count_include_pad: yes,
            ..self
        }
    }

    /// Output positions along one axis: 0 when the window does not fit the
    /// padded input, and when sizes from a description overflow.
    fn extent(size: usize, pad: usize, kernel: usize, stride: usize) -> usize {
        match pad.checked_mul(2).and_then(|p| p.checked_add(size)) {
            Some(padded) if kernel > 0 && stride > 0 && padded >= kernel => {
                (padded - kernel) / stride + 1
            }
            _ => 0,
        }
    }

    pub fn out_h(&self) -> usize {
        Self::extent(self.in_h, self.pad_h, self.kernel_h, self.stride_h)
    }

    pub fn out_w(&self) -> usize {
        Self::extent(self.in_w, self.pad_w, self.kernel_w, self.stride_w)
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.in_h, self.in_w]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_h(), self.out_w()]
    }

    pub fn input_len(&self) -> usize {
        self.input_shape().iter().product()
    }

    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// Checks that the geometry makes sense, with a message naming what does not.
    pub fn validate(&self) -> GpuResult<()> {
        ensure(self.stride_h > 0 && self.stride_w > 0, || {
            format!("pool2d {self:?}: stride must be at least 1")
        })?;
        ensure(
            self.pad_h <= self.kernel_h / 2 && self.pad_w <= self.kernel_w / 2,
            || format!("pool2d {self:?}: padding must be at most half the window"),
        )?;
        ensure(self.out_h() > 0 && self.out_w() > 0, || {
            format!("pool2d {self:?}: the window is larger than the padded input")
        })
    }

    fn params(&self, len: usize) -> Params {
        let u = |v: usize| v as u32;
        Params {
            in_h: u(self.in_h),
            in_w: u(self.in_w),
            out_h: u(self.out_h()),
            out_w: u(self.out_w()),
            pad_h: u(self.pad_h),
            pad_w: u(self.pad_w),
            len: u(len),
            planes: u(self.batch * self.channels),
        }
    }

    fn constants(&self) -> [(&'static str, f64); 6] {
        let f = |v: usize| v as f64;
        [
            ("KH", f(self.kernel_h)),
            ("KW", f(self.kernel_w)),
            ("SH", f(self.stride_h)),
            ("SW", f(self.stride_w)),
            ("EXCLUDE_PAD", (!self.count_include_pad) as u8 as f64),
            ("COMPONENTS", f(self.components())),
        ]
    }

    /// Divisor of average pooling at output (oy, ox).
    fn divisor(&self, oy: usize, ox: usize) -> f64 {
        if self.count_include_pad {
            return (self.kernel_h * self.kernel_w) as f64;
        }
        let inside = |o: usize, stride: usize, pad: usize, kernel: usize, size: usize| {
            let start = (o * stride) as isize - pad as isize;
            let end = (start + kernel as isize).min(size as isize);
            (end - start.max(0)).max(0) as f64
        };
        inside(oy, self.stride_h, self.pad_h, self.kernel_h, self.in_h)
            * inside(ox, self.stride_w, self.pad_w, self.kernel_w, self.in_w)
    }
}

fn check_len(what: &str, spec: &dyn std::fmt::Debug, t: &Tensor, want: usize) -> GpuResult<()> {
    ensure_len(format_args!("{spec:?}"), what, t, want)
}

fn dispatch_1d(
    rec: &mut Recorder,
    spec: &Pool2d,
    entry: &str,
    len: usize,
    tensors: &[&Tensor],
) -> GpuResult<()> {
    rec.dispatch(
        &SHADER,
        entry,
        &spec.constants(),
        &spec.params(len),
        tensors,
        grid_1d(len.div_ceil(LANES) as u32),
    )
}

/// Max pooling: y and the arg-max (u32, the shape of y) that its backward needs.
pub fn max_pool2d_forward(
    rec: &mut Recorder,
    spec: &Pool2d,
    x: &Tensor,
    y: &Tensor,
    argmax: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    let k = spec.components();
    check_len("x", spec, x, spec.input_len() * k)?;
    check_len("y", spec, y, spec.output_len() * k)?;
    check_len("argmax", spec, argmax, spec.output_len())?;
    dispatch_1d(
        rec,
        spec,
        "max_forward",
        spec.output_len() * k,
        &[x, y, argmax],
    )
}

/// Routes dy to the arg-max of every window (overwrites dx).
pub fn max_pool2d_backward(
    rec: &mut Recorder,
    spec: &Pool2d,
    dy: &Tensor,
    argmax: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    let k = spec.components();
    check_len("dy", spec, dy, spec.output_len() * k)?;
    check_len("argmax", spec, argmax, spec.output_len())?;
    check_len("dx", spec, dx, spec.input_len() * k)?;
    dispatch_1d(
        rec,
        spec,
        "max_backward",
        spec.input_len() * k,
        &[dy, argmax, dx],
    )
}

pub fn avg_pool2d_forward(
    rec: &mut Recorder,
    spec: &Pool2d,
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    let k = spec.components();
    check_len("x", spec, x, spec.input_len() * k)?;
    check_len("y", spec, y, spec.output_len() * k)?;
    dispatch_1d(rec, spec, "avg_forward", spec.output_len() * k, &[x, y])
}

/// Spreads dy evenly over every window (overwrites dx).
pub fn avg_pool2d_backward(
    rec: &mut Recorder,
    spec: &Pool2d,
    dy: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    let k = spec.components();
    check_len("dy", spec, dy, spec.output_len() * k)?;
    check_len("dx", spec, dx, spec.input_len() * k)?;
    dispatch_1d(rec, spec, "avg_backward", spec.input_len() * k, &[dy, dx])
}

/// The pooling over a whole plane that global average pooling is; a
/// complex `x` has a last axis of 2 that is not a position.
fn global_spec(x_shape: &[usize], complex: bool) -> GpuResult<Pool2d> {
    let positions = if complex {
        ensure(x_shape.last() == Some(&2), || {
            format!(
                "complex global average pooling needs [batch, channels, ..., 2], got {x_shape:?}"
            )
        })?;
        &x_shape[..x_shape.len() - 1]
    } else {
        x_shape
    };
    ensure(positions.len() >= 2, || {
        format!("global average pooling needs [batch, channels, ...], got {x_shape:?}")
    })?;
    let size: usize = positions[2..].iter().product();
    Ok(Pool2d::new(positions[0], positions[1], [1, size], [1, size]).complex(complex))
}

/// `y[n, c] = mean of x[n, c, ...]`; x `[batch, channels, spatial...]`, y `[batch, channels]`.
pub fn global_avg_pool_forward(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    global_forward(rec, x, y, false)
}

/// `dx[n, c, ...] = dy[n, c] / plane size` (overwrites dx).
pub fn global_avg_pool_backward(rec: &mut Recorder, dy: &Tensor, dx: &Tensor) -> GpuResult<()> {
    global_backward(rec, dy, dx, false)
}

/// The complex mean: x `[batch, channels, spatial..., 2]`, y `[batch, channels, 2]`.
pub fn complex_global_avg_pool_forward(
    rec: &mut Recorder,
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    global_forward(rec, x, y, true)
}

pub fn complex_global_avg_pool_backward(
    rec: &mut Recorder,
    dy: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    global_backward(rec, dy, dx, true)
}

fn global_forward(rec: &mut Recorder, x: &Tensor, y: &Tensor, complex: bool) -> GpuResult<()> {
    let spec = global_spec(x.shape(), complex)?;
    let len = spec.batch * spec.channels * spec.components();
    check_len("y", &"global average pooling", y, len)?;
    if spec.in_w == 0 {
        rec.clear(y);
        return Ok(());
    }
    dispatch_1d(rec, &spec, "global_avg_forward", len, &[x, y])
}

fn global_backward(rec: &mut Recorder, dy: &Tensor, dx: &Tensor, complex: bool) -> GpuResult<()> {
    let spec = global_spec(dx.shape(), complex)?;
    let len = spec.batch * spec.channels * spec.components();
    check_len("dy", &"global average pooling", dy, len)?;
    dispatch_1d(rec, &spec, "global_avg_backward", dx.len(), &[dy, dx])
}

/// Calls `visit(output_index, input_plane, iy, ix)` for every window cell
/// inside the input, in row-major window order.
fn for_each_cell(spec: &Pool2d, mut visit: impl FnMut(usize, usize, usize, usize)) {
    let (oh, ow) = (spec.out_h(), spec.out_w());
    for plane in 0..spec.batch * spec.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (plane * oh + oy) * ow + ox;
                for ky in 0..spec.kernel_h {
                    let iy = (oy * spec.stride_h + ky) as isize - spec.pad_h as isize;
                    if iy < 0 || iy >= spec.in_h as isize {
                        continue;
                    }
                    for kx in 0..spec.kernel_w {
                        let ix = (ox * spec.stride_w + kx) as isize - spec.pad_w as isize;
                        if ix >= 0 && ix < spec.in_w as isize {
                            visit(o, plane, iy as usize, ix as usize);
                        }
                    }
                }
            }
        }
    }
}

/// CPU reference of max pooling: y and the arg-max within the input plane
/// (the first maximum in window order).
pub fn max_pool2d_reference(spec: &Pool2d, x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let mut y = vec![f64::NEG_INFINITY; spec.output_len()];
    let mut argmax = vec![0u32; spec.output_len()];
    let plane_len = spec.in_h * spec.in_w;
    for_each_cell(spec, |o, plane, iy, ix| {
        let at = iy * spec.in_w + ix;
        let v = x[plane * plane_len + at];
        if v > y[o] {
            y[o] = v;
            argmax[o] = at as u32;
        }
    });
    (y, argmax)
}

/// CPU reference of complex max pooling on interleaved pairs: the pair of
/// largest magnitude in each window (the first in window order), and its
/// arg-max within the input plane. Its backward is the real one applied to
/// each part with the same arg-max.
pub fn max_pool2d_magnitude_reference(spec: &Pool2d, x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let mut best = vec![f64::NEG_INFINITY; spec.output_len()];
    let mut argmax = vec![0u32; spec.output_len()];
    let plane_len = spec.in_h * spec.in_w;
    for_each_cell(spec, |o, plane, iy, ix| {
        let at = iy * spec.in_w + ix;
        let e = plane * plane_len + at;
        let key = x[2 * e] * x[2 * e] + x[2 * e + 1] * x[2 * e + 1];
        if key > best[o] {
            best[o] = key;
            argmax[o] = at as u32;
        }
    });
    let out_plane = spec.out_h() * spec.out_w();
    let mut y = vec![0.0; 2 * spec.output_len()];
    for (o, &at) in argmax.iter().enumerate() {
        let e = (o / out_plane) * plane_len + at as usize;
        y[2 * o] = x[2 * e];
        y[2 * o + 1] = x[2 * e + 1];
    }
    (y, argmax)
}

pub fn max_pool2d_backward_reference(spec: &Pool2d, dy: &[f64], argmax: &[u32]) -> Vec<f64> {
    let mut dx = vec![0.0; spec.input_len()];
    let out_plane = spec.out_h() * spec.out_w();
    let plane_len = spec.in_h * spec.in_w;
    for (o, (&g, &at)) in dy.iter().zip(argmax).enumerate() {
        dx[(o / out_plane) * plane_len + at as usize] += g;
    }
    dx
}

pub fn avg_pool2d_reference(spec: &Pool2d, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; spec.output_len()];
    let plane_len = spec.in_h * spec.in_w;
    for_each_cell(spec, |o, plane, iy, ix| {
        y[o] += x[plane * plane_len + iy * spec.in_w + ix]
    });
    let ow = spec.out_w();
    let oh = spec.out_h();
    for (o, v) in y.iter_mut().enumerate() {
        *v /= spec.divisor((o / ow) % oh, o % ow);
    }
    y
}

pub fn avg_pool2d_backward_reference(spec: &Pool2d, dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; spec.input_len()];
    let (oh, ow) = (spec.out_h(), spec.out_w());
    let plane_len = spec.in_h * spec.in_w;
    for_each_cell(spec, |o, plane, iy, ix| {
        dx[plane * plane_len + iy * spec.in_w + ix] += dy[o] / spec.divisor((o / ow) % oh, o % ow)
    });
    dx
}

/// Means of consecutive planes of `plane_len` elements.
pub fn global_avg_pool_reference(x: &[f64], plane_len: usize) -> Vec<f64> {
    x.chunks(plane_len)
        .map(|plane| plane.iter().sum::<f64>() / plane_len as f64)
        .collect()
}

pub fn global_avg_pool_backward_reference(dy: &[f64], plane_len: usize) -> Vec<f64> {
    dy.iter()
        .flat_map(|&g| std::iter::repeat_n(g / plane_len as f64, plane_len))
        .collect()
}

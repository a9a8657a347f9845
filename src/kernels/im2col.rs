//! im2col and col2im: a convolution's input unfolded into a `[K][P]` matrix
//! per image (K = channels x taps, P = output positions), so that the conv
//! becomes a gemm, and the adjoint that folds such a gradient back.
//! Shader: `shaders/im2col.wgsl`.

use super::conv2d::Conv2d;
use crate::gpu::{ensure, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("im2col");

/// Lanes of a workgroup, along one row of the destination.
const WORKGROUP: usize = 64;
/// Positions of an output row that one im2col invocation writes (the
/// shader's `RUN`): the row's index arithmetic is done once per run.
const RUN: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    x_offset: u32,
}

/// Rows of one image's column matrix: input channels x taps.
pub fn col_rows(spec: &Conv2d) -> usize {
    spec.in_channels * spec.kernel_h * spec.kernel_w
}

/// Elements of one image's column matrix.
pub fn col_len(spec: &Conv2d) -> usize {
    col_rows(spec) * spec.out_h() * spec.out_w()
}

fn params(spec: &Conv2d, first_image: usize) -> Params {
    let u = |x: usize| x as u32;
    Params {
        channels: u(spec.in_channels),
        in_h: u(spec.in_h),
        in_w: u(spec.in_w),
        out_h: u(spec.out_h()),
        out_w: u(spec.out_w()),
        pad_h: u(spec.pad_h),
        pad_w: u(spec.pad_w),
        x_offset: u(first_image * spec.in_channels * spec.in_h * spec.in_w),
    }
}

fn check_chunk(
    spec: &Conv2d,
    x: &Tensor,
    col: &Tensor,
    first_image: usize,
    images: usize,
) -> GpuResult<()> {
    ensure(
        first_image + images <= spec.batch && x.len() == spec.input_len(),
        || {
            format!(
                "im2col {spec:?}: images {first_image}..{} of x {:?}",
                first_image + images,
                x.shape()
            )
        },
    )?;
    ensure(col.len() >= images * col_len(spec), || {
        format!(
            "im2col {spec:?}: the column tensor {:?} holds fewer than {images} x {} elements",
            col.shape(),
            col_len(spec)
        )
    })
}

/// Unfolds images `first_image..first_image + images` of x into col
/// `[images][K][P]` (groups are not split: the spec must have one group).
pub fn im2col(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &Tensor,
    col: &Tensor,
    first_image: usize,
    images: usize,
) -> GpuResult<()> {
    check_chunk(spec, x, col, first_image, images)?;
    let runs = spec.out_h() * spec.out_w().div_ceil(RUN);
    let groups = [
        runs.div_ceil(WORKGROUP) as u32,
        col_rows(spec) as u32,
        images as u32,
    ];
    rec.dispatch(
        &SHADER,
        "im2col",
        &spec.geometry_constants(),
        &params(spec, first_image),
        &[x, col],
        groups,
    )
}

/// Folds a column gradient `[images][K][P]` back onto images
/// `first_image..first_image + images` of dx (overwritten there).
pub fn col2im(
    rec: &mut Recorder,
    spec: &Conv2d,
    dcol: &Tensor,
    dx: &Tensor,
    first_image: usize,
    images: usize,
) -> GpuResult<()> {
    check_chunk(spec, dx, dcol, first_image, images)?;
    let groups = [
        (spec.in_h * spec.in_w).div_ceil(WORKGROUP) as u32,
        spec.in_channels as u32,
        images as u32,
    ];
    rec.dispatch(
        &SHADER,
        "col2im",
        &spec.geometry_constants(),
        &params(spec, first_image),
        &[dcol, dx],
        groups,
    )
}

/// The input element (image-relative) tap `k` of position `p` reads, if any.
fn source(spec: &Conv2d, k: usize, p: usize) -> Option<usize> {
    let taps = spec.kernel_h * spec.kernel_w;
    let (c, tap) = (k / taps, k % taps);
    let h = (p / spec.out_w() * spec.stride_h + tap / spec.kernel_w * spec.dilation_h)
        .checked_sub(spec.pad_h)?;
    let w = (p % spec.out_w() * spec.stride_w + tap % spec.kernel_w * spec.dilation_w)
        .checked_sub(spec.pad_w)?;
    (h < spec.in_h && w < spec.in_w).then_some((c * spec.in_h + h) * spec.in_w + w)
}

/// CPU reference of `im2col`.
pub fn im2col_reference(spec: &Conv2d, x: &[f32], first_image: usize, images: usize) -> Vec<f32> {
    let image_len = spec.in_channels * spec.in_h * spec.in_w;
    let positions = spec.out_h() * spec.out_w();
    let mut col = vec![0.0; images * col_len(spec)];
    for n in 0..images {
        let image = &x[(first_image + n) * image_len..][..image_len];
        for k in 0..col_rows(spec) {
            for p in 0..positions {
                if let Some(i) = source(spec, k, p) {
                    col[(n * col_rows(spec) + k) * positions + p] = image[i];
                }
            }
        }
    }
    col
}

/// CPU reference of `col2im`: the images' part of dx, `[images][C][H][W]`.
pub fn col2im_reference(spec: &Conv2d, dcol: &[f32], images: usize) -> Vec<f32> {
    let image_len = spec.in_channels * spec.in_h * spec.in_w;
    let positions = spec.out_h() * spec.out_w();
    let mut dx = vec![0.0; images * image_len];
    for n in 0..images {
        for k in 0..col_rows(spec) {
            for p in 0..positions {
                if let Some(i) = source(spec, k, p) {
                    dx[n * image_len + i] += dcol[(n * col_rows(spec) + k) * positions + p];
                }
            }
        }
    }
    dx
}

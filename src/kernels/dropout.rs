//! Inverted dropout, `y = x * keep / (1 - p)`, with a mask that is a pure
//! function of (seed, element index): the backward recomputes it from the same
//! seed, so nothing is stored between the passes. A new seed per step gives a
//! new mask. Shader: `shaders/dropout.wgsl`.

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("dropout", trusted);

const WORKGROUP: usize = 256;
/// Elements each invocation handles.
const PER_INVOCATION: usize = 4;

/// 2^24: the element's draw is the top 24 bits of its hash.
const DRAW_RANGE: f32 = 16_777_216.0;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    key: u32,
    threshold: u32,
    scale: f32,
}

/// The PCG-RXS-M-XS 32-bit hash (Jarzynski and Olano 2020), as in the shader.
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// What the shader needs to recompute the mask: the seed's key, the 24-bit
/// draw below which an element is dropped, and the scale of the kept ones.
struct Mask {
    key: u32,
    threshold: u32,
    scale: f32,
}

impl Mask {
    fn new(op: &str, p: f32, seed: u32) -> GpuResult<Mask> {
        ensure((0.0..1.0).contains(&p), || {
            format!("{op}: dropout probability p = {p} is outside [0, 1); use 0 for no dropout")
        })?;
        Ok(Mask::unchecked(p, seed))
    }

    /// `p` in [0, 1). A draw `d / 2^24 >= p` is `d >= ceil(p * 2^24)`, exact
    /// because `p * 2^24` only changes the exponent.
    fn unchecked(p: f32, seed: u32) -> Mask {
        Mask {
            key: pcg(seed),
            threshold: (p * DRAW_RANGE).ceil() as u32,
            scale: 1.0 / (1.0 - p),
        }
    }

    fn keep(&self, i: usize) -> bool {
        (pcg(i as u32 ^ self.key) >> 8) >= self.threshold
    }
}

fn dropout(
    rec: &mut Recorder,
    op: &str,
    p: f32,
    seed: u32,
    names: [&str; 2],
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    let mask = Mask::new(op, p, seed)?;
    ensure(x.len() == y.len(), || {
        format!(
            "{op}: {} has shape {:?} but {} has shape {:?}; they need the same number of elements",
            names[0],
            x.shape(),
            names[1],
            y.shape()
        )
    })?;
    ensure(!x.shares_buffer(y), || {
        format!(
            "{op}: {} and {} are the same buffer; write to a separate tensor",
            names[0], names[1]
        )
    })?;
    if p == 0.0 {
        return rec.copy(x, y);
    }
    let params = Params {
        len: x.len() as u32,
        key: mask.key,
        threshold: mask.threshold,
        scale: mask.scale,
    };
    let groups = grid_1d(x.len().div_ceil(WORKGROUP * PER_INVOCATION) as u32);
    rec.dispatch(&SHADER, "dropout", &[], &params, &[x, y], groups)
}

/// `y = x * keep / (1 - p)` with the mask of (`seed`, element index); `p` in
/// [0, 1) (0 copies). `y` must not alias `x`.
pub fn dropout_forward(
    rec: &mut Recorder,
    p: f32,
    seed: u32,
    x: &Tensor,
    y: &Tensor,
) -> GpuResult<()> {
    dropout(rec, "dropout_forward", p, seed, ["x", "y"], x, y)
}

/// `dx = dy * keep / (1 - p)`, the mask recomputed from the forward's `p` and
/// `seed`. `dx` must not alias `dy`.
pub fn dropout_backward(
    rec: &mut Recorder,
    p: f32,
    seed: u32,
    dy: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    dropout(rec, "dropout_backward", p, seed, ["dy", "dx"], dy, dx)
}

fn check_reference_p(p: f32) {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout reference: p = {p} is outside [0, 1)"
    );
}

/// Which of the first `len` elements the mask of (`p`, `seed`) keeps,
/// bit-exact with the shader. Panics when `p` is outside [0, 1).
pub fn dropout_keep_reference(len: usize, p: f32, seed: u32) -> Vec<bool> {
    check_reference_p(p);
    let mask = Mask::unchecked(p, seed);
    (0..len).map(|i| mask.keep(i)).collect()
}

/// `x * keep * scale`, the scale `1 / (1 - p)` rounded to f32 as the shader
/// has it; generic so that finite differences can run it in f64.
fn apply_mask<T: Copy + From<f32> + std::ops::Mul<Output = T>>(
    p: f32,
    seed: u32,
    x: &[T],
) -> Vec<T> {
    check_reference_p(p);
    let mask = Mask::unchecked(p, seed);
    let scale = T::from(mask.scale);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if mask.keep(i) {
                v * scale
            } else {
                T::from(0.0)
            }
        })
        .collect()
}

/// CPU reference of [`dropout_forward`] (exact in f32).
pub fn dropout_forward_reference<T: Copy + From<f32> + std::ops::Mul<Output = T>>(
    p: f32,
    seed: u32,
    x: &[T],
) -> Vec<T> {
    apply_mask(p, seed, x)
}

/// CPU reference of [`dropout_backward`] (exact in f32).
pub fn dropout_backward_reference<T: Copy + From<f32> + std::ops::Mul<Output = T>>(
    p: f32,
    seed: u32,
    dy: &[T],
) -> Vec<T> {
    apply_mask(p, seed, dy)
}

//! Reductions: the sum over one axis (batch sums, per-channel sums, means),
//! and the sum of squares or global L2 norm over a list of tensors (gradient
//! clipping), with results left on the GPU. Shader: `shaders/reductions.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, Gpu, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("reductions", trusted);

const WORKGROUP: usize = 256;
/// Tensors one `sum_squares_partial` dispatch reads (with the partials, eight
/// storage buffers: the smallest per-stage limit wgpu guarantees).
const SLOTS: usize = 7;
/// Most workgroups per tensor in a sum of squares.
const MAX_CHUNKS: usize = 64;
/// Elements per lane below which a tensor gets no more workgroups.
const ELEMENTS_PER_LANE: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AxisParams {
    outer: u32,
    axis: u32,
    inner: u32,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SquaresParams {
    lens: [u32; 8],
    offset: u32,
    chunks: u32,
    count: u32,
    _pad: u32,
}

/// A tensor viewed as `[outer, axis, inner]`, summed over `axis` into
/// `[outer, inner]`: `[batch, features]` summed over the batch is
/// `{ outer: 1, axis: batch, inner: features }`; `[batch, channels, spatial]`
/// summed over space is `{ outer: batch * channels, axis: spatial, inner: 1 }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisSum {
    pub outer: usize,
    pub axis: usize,
    pub inner: usize,
    /// Multiplies the sum (`1 / axis` gives the mean).
    pub scale: f32,
}

impl AxisSum {
    pub fn new(outer: usize, axis: usize, inner: usize) -> Self {
        AxisSum {
            outer,
            axis,
            inner,
            scale: 1.0,
        }
    }

    pub fn scale(self, scale: f32) -> Self {
        AxisSum { scale, ..self }
    }

    pub fn in_len(&self) -> usize {
        self.outer * self.axis * self.inner
    }

    pub fn out_len(&self) -> usize {
        self.outer * self.inner
    }

    /// A workgroup per output pays off only when the outputs are too few to
    /// keep the lanes busy: its tree sum in workgroup memory, with a barrier
    /// per level, is slow on CPU-like adapters (measured 25x slower than a
    /// lane per output at 4096 rows of 256 on llvmpipe).
    fn workgroup_per_output(&self) -> bool {
        self.axis >= 64 && self.out_len() < 256
    }
}

/// `out[o, s] = scale * sum over a of x[o, a, s]` (overwrites `out`).
pub fn sum_axis(rec: &mut Recorder, spec: &AxisSum, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    for (name, t, want) in [("x", x, spec.in_len()), ("out", out, spec.out_len())] {
        ensure_len(format_args!("sum_axis {spec:?}"), name, t, want)?;
    }
    if spec.out_len() == 0 {
        return Ok(());
    }
    if spec.axis == 0 {
        rec.clear(out);
        return Ok(());
    }
    let params = AxisParams {
        outer: spec.outer as u32,
        axis: spec.axis as u32,
        inner: spec.inner as u32,
        scale: spec.scale,
    };
    let (entry, groups) = if spec.workgroup_per_output() {
        ("sum_axis_workgroup", grid_1d(spec.out_len() as u32))
    } else {
        (
            "sum_axis_lanes",
            grid_1d(spec.out_len().div_ceil(WORKGROUP) as u32),
        )
    };
    rec.dispatch(&SHADER, entry, &[], &params, &[x, out], groups)
}

/// CPU reference, accumulated in f64.
pub fn sum_axis_reference(spec: &AxisSum, x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(spec.out_len());
    for o in 0..spec.outer {
        for s in 0..spec.inner {
            let sum: f64 = (0..spec.axis)
                .map(|a| x[(o * spec.axis + a) * spec.inner + s] as f64)
                .sum();
            out.push((spec.scale as f64 * sum) as f32);
        }
    }
    out
}

/// The sum of squares of a fixed list of tensors, or its square root (the
/// global L2 norm, as gradient clipping needs), into a 1-element tensor. It
/// holds the small buffer of partial sums, so build it once and record it
/// every step: `ceil(tensors / 7) + 1` dispatches.
pub struct SquaresPlan {
    lens: Vec<usize>,
    /// Workgroups per tensor, for each group of up to seven tensors.
    chunks: Vec<usize>,
    partials: Tensor,
}

impl SquaresPlan {
    /// A plan for tensors of these lengths, in this order.
    pub fn new(gpu: &Gpu, lens: &[usize]) -> GpuResult<Self> {
        let chunks: Vec<usize> = lens
            .chunks(SLOTS)
            .map(|group| {
                let longest = group.iter().copied().max().unwrap_or(0);
                longest
                    .div_ceil(WORKGROUP * ELEMENTS_PER_LANE)
                    .clamp(1, MAX_CHUNKS)
            })
            .collect();
        let count = lens
            .chunks(SLOTS)
            .zip(&chunks)
            .map(|(group, c)| c * group.len())
            .sum::<usize>();
        Ok(SquaresPlan {
            lens: lens.to_vec(),
            chunks,
            partials: gpu.empty(&[count.max(1)])?,
        })
    }

    /// `out[0] = sum of x^2` over every element of every tensor.
    pub fn sum_squares(
        &self,
        rec: &mut Recorder,
        tensors: &[&Tensor],
        out: &Tensor,
    ) -> GpuResult<()> {
        self.record(rec, tensors, out, false)
    }

    /// `out[0] = sqrt(sum of x^2)` over every element of every tensor.
    pub fn global_norm(
        &self,
        rec: &mut Recorder,
        tensors: &[&Tensor],
        out: &Tensor,
    ) -> GpuResult<()> {
        self.record(rec, tensors, out, true)
    }

    fn record(
        &self,
        rec: &mut Recorder,
        tensors: &[&Tensor],
        out: &Tensor,
        sqrt: bool,
    ) -> GpuResult<()> {
        ensure(tensors.len() == self.lens.len(), || {
            format!(
                "sum of squares planned for {} tensors but given {}",
                self.lens.len(),
                tensors.len()
            )
        })?;
        for (i, (t, &want)) in tensors.iter().zip(&self.lens).enumerate() {
            ensure(t.len() == want, || {
                format!(
                    "sum of squares: tensor {i} has shape {:?} ({} elements), planned for {want}",
                    t.shape(),
                    t.len()
                )
            })?;
        }
        ensure(out.len() == 1, || {
            format!(
                "sum of squares: out has shape {:?}, expected 1 element",
                out.shape()
            )
        })?;
        if tensors.is_empty() {
            rec.clear(out);
            return Ok(());
        }
        let mut offset = 0;
        for (group, &chunks) in tensors.chunks(SLOTS).zip(&self.chunks) {
            let mut params = SquaresParams {
                lens: [0; 8],
                offset: offset as u32,
                chunks: chunks as u32,
                count: 0,
                _pad: 0,
            };
            let mut bound: Vec<&Tensor> = Vec::with_capacity(SLOTS + 1);
            for slot in 0..SLOTS {
                match group.get(slot) {
                    Some(t) => {
                        params.lens[slot] = t.len() as u32;
                        bound.push(t);
                    }
                    // An empty slot reads nothing; any tensor fills its binding.
                    None => bound.push(group[0]),
                }
            }
            bound.push(&self.partials);
            rec.dispatch(
                &SHADER,
                "sum_squares_partial",
                &[],
                &params,
                &bound,
                [chunks as u32, group.len() as u32, 1],
            )?;
            offset += chunks * group.len();
        }
        let params = SquaresParams {
            lens: [0; 8],
            offset: 0,
            chunks: 0,
            count: offset as u32,
            _pad: 0,
        };
        rec.dispatch(
            &SHADER,
            "sum_squares_final",
            &[("SQRT", sqrt as u8 as f64)],
            &params,
            &[&self.partials, out],
            [1, 1, 1],
        )
    }
}

/// CPU reference: the sum of squares over every tensor, in f64.
pub fn sum_squares_reference(tensors: &[&[f32]]) -> f64 {
    tensors
        .iter()
        .flat_map(|t| t.iter())
        .map(|&v| v as f64 * v as f64)
        .sum()
}

/// CPU reference: the global L2 norm.
pub fn global_norm_reference(tensors: &[&[f32]]) -> f64 {
    sum_squares_reference(tensors).sqrt()
}

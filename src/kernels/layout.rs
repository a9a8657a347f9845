//! Layout kernels: swapping the first two axes of a 3-D tensor (`[batch, time,
//! features]` to `[time, batch, features]` for a recurrent layer and back), and
//! copying a block of columns between row-major matrices (concatenation along
//! an axis and, source and destination swapped, its backward).
//! Shader: `shaders/layout.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("layout", trusted);

const WORKGROUP: usize = 256;
/// Elements each invocation handles.
const PER_INVOCATION: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SwapParams {
    len: u32,
    a: u32,
    b: u32,
    c: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    len: u32,
    width: u32,
    src_cols: u32,
    src_offset: u32,
    dst_cols: u32,
    dst_offset: u32,
    accumulate: u32,
    _pad: u32,
}

/// A kernel cannot read and write one buffer in the same dispatch.
fn distinct(op: &str, names: [&str; 2], a: &Tensor, b: &Tensor) -> GpuResult<()> {
    ensure(!a.shares_buffer(b), || {
        format!(
            "{op}: {} and {} are the same buffer; write to a separate tensor",
            names[0], names[1]
        )
    })
}

fn flat_groups(len: usize) -> [u32; 3] {
    grid_1d(len.div_ceil(WORKGROUP * PER_INVOCATION) as u32)
}

/// The product of `factors`, or a `Shape` error naming `op` when it overflows
/// (no tensor could hold that many elements anyway).
fn product(op: &str, factors: &[usize]) -> GpuResult<usize> {
    let total = factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f));
    ensure(total.is_some(), || {
        format!("{op}: the element count of {factors:?} overflows")
    })?;
    Ok(total.unwrap_or_default())
}

/// `y[j, i, k] = x[i, j, k]`: `x` viewed as `[a, b, c]` row-major is written to
/// `y` as `[b, a, c]`. The backward is `swap_axes` with dims `[b, a, c]`.
/// `y` must not alias `x`.
pub fn swap_axes(rec: &mut Recorder, x: &Tensor, dims: [usize; 3], y: &Tensor) -> GpuResult<()> {
    let len = product("swap_axes", &dims)?;
    for (name, t) in [("x", x), ("y", y)] {
        ensure_len(format_args!("swap_axes dims {dims:?}"), name, t, len)?;
    }
    distinct("swap_axes", ["x", "y"], x, y)?;
    let [a, b, c] = dims;
    if a == 1 || b == 1 {
        // Swapping an axis of size 1 leaves the memory order as it is.
        return rec.copy(x, y);
    }
    let params = SwapParams {
        len: len as u32,
        a: a as u32,
        b: b as u32,
        c: c as u32,
    };
    rec.dispatch(
        &SHADER,
        "swap_axes",
        &[],
        &params,
        &[x, y],
        flat_groups(len),
    )
}

/// CPU reference; generic so that finite differences can run it in f64.
pub fn swap_axes_reference<T: Copy>(x: &[T], dims: [usize; 3]) -> Vec<T> {
    let [a, b, c] = dims;
    assert_eq!(
        x.len(),
        a * b * c,
        "swap_axes_reference: x for dims {dims:?}"
    );
    let mut y = Vec::with_capacity(x.len());
    for j in 0..b {
        for i in 0..a {
            let start = (i * b + j) * c;
            y.extend_from_slice(&x[start..start + c]);
        }
    }
    y
}

/// A block of `width` columns copied from `src` viewed as `[rows, src_cols]`
/// (starting at column `src_offset`) to `dst` viewed as `[rows, dst_cols]`
/// (starting at column `dst_offset`), added to what `dst` holds when
/// `accumulate`. Concatenating `[B, C_i, H, W]` tensors along channels copies
/// each with `rows = B`, `src_cols = C_i * H * W`, `src_offset = 0`,
/// `dst_cols = (sum of C) * H * W`, `dst_offset` the channels before it times
/// `H * W`, and `width = src_cols`; its backward swaps the two sides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnCopy {
    pub rows: usize,
    pub src_cols: usize,
    pub src_offset: usize,
    pub dst_cols: usize,
    pub dst_offset: usize,
    pub width: usize,
    pub accumulate: bool,
}

impl ColumnCopy {
    /// The copy of all of `src` (`[rows, src_cols]`) into columns
    /// `dst_offset..dst_offset + src_cols` of `dst` (`[rows, dst_cols]`).
    pub fn concat(rows: usize, src_cols: usize, dst_cols: usize, dst_offset: usize) -> Self {
        ColumnCopy {
            rows,
            src_cols,
            src_offset: 0,
            dst_cols,
            dst_offset,
            width: src_cols,
            accumulate: false,
        }
    }

    /// The backward of `self`: the gradient of the destination block written
    /// (or added, when `accumulate`) to the source block.
    pub fn adjoint(&self, accumulate: bool) -> Self {
        ColumnCopy {
            rows: self.rows,
            src_cols: self.dst_cols,
            src_offset: self.dst_offset,
            dst_cols: self.src_cols,
            dst_offset: self.src_offset,
            width: self.width,
            accumulate,
        }
    }

    /// Elements copied: `rows * width`.
    pub fn len(&self) -> usize {
        self.rows * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, src: &Tensor, dst: &Tensor) -> GpuResult<()> {
        for (side, cols, offset) in [
            ("src", self.src_cols, self.src_offset),
            ("dst", self.dst_cols, self.dst_offset),
        ] {
            ensure(self.width <= cols && offset <= cols - self.width, || {
                format!(
                    "copy_columns {self:?}: columns {offset}..{} do not fit in the {cols} columns of {side}",
                    offset.saturating_add(self.width)
                )
            })?;
        }
        for (name, t, cols) in [("src", src, self.src_cols), ("dst", dst, self.dst_cols)] {
            let want = product("copy_columns", &[self.rows, cols])?;
            ensure_len(format_args!("copy_columns {self:?}"), name, t, want)?;
        }
        Ok(())
    }
}

/// `dst[r, dst_offset + j] = src[r, src_offset + j]` for `r < rows`,
/// `j < width` (`+=` when `spec.accumulate`); the other columns of `dst` are
/// left as they are. `dst` must not alias `src`.
pub fn copy_columns(
    rec: &mut Recorder,
    spec: &ColumnCopy,
    src: &Tensor,
    dst: &Tensor,
) -> GpuResult<()> {
    spec.check(src, dst)?;
    distinct("copy_columns", ["src", "dst"], src, dst)?;
    let u = |v: usize| v as u32;
    let params = CopyParams {
        len: u(spec.len()),
        width: u(spec.width),
        src_cols: u(spec.src_cols),
        src_offset: u(spec.src_offset),
        dst_cols: u(spec.dst_cols),
        dst_offset: u(spec.dst_offset),
        accumulate: u32::from(spec.accumulate),
        _pad: 0,
    };
    rec.dispatch(
        &SHADER,
        "copy_columns",
        &[],
        &params,
        &[src, dst],
        flat_groups(spec.len()),
    )
}

/// CPU reference; generic so that finite differences can run it in f64.
pub fn copy_columns_reference<T: Copy + std::ops::AddAssign>(
    spec: &ColumnCopy,
    src: &[T],
    dst: &mut [T],
) {
    for r in 0..spec.rows {
        let from = r * spec.src_cols + spec.src_offset;
        let to = r * spec.dst_cols + spec.dst_offset;
        let block = &src[from..from + spec.width];
        let out = &mut dst[to..to + spec.width];
        if spec.accumulate {
            out.iter_mut().zip(block).for_each(|(d, &s)| *d += s);
        } else {
            out.copy_from_slice(block);
        }
    }
}

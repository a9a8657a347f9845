//! conv2d on `[batch, channels, height, width]` (audio features: height is
//! time, width is frequency; conv1d over time is the width-1 case): any
//! rectangular kernel, stride, zero padding, dilation and groups, optional
//! bias; forward, backward to the input, backward to the weights and bias.
//! Weights are `[out_channels, in_channels / groups, kernel_h, kernel_w]`.
//! Shader: `shaders/conv2d.wgsl`.

use super::elementwise::{add_assign, bias_add, BiasLayout};
use super::gemm::{gemm, Gemm};
use super::im2col::{col2im, col_len, im2col};
use super::reductions::{sum_axis, AxisSum};
use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};
use crate::util::saturating_product;

static SHADER: Shader = crate::shader!("conv2d", trusted);

/// Rows of the implicit gemm per invocation (the shader's `TM`).
const ROWS_PER_INVOCATION: usize = 8;
/// Columns of the implicit gemm per invocation (one vec4).
const COLS_PER_INVOCATION: usize = 4;
/// Lanes of the 1-D and reduction entry points (the shader's `LANES`).
const LANES: usize = 64;
/// Taps per workgroup of depthwise_backward_weight (the shader's `TAP_CHUNK`).
const DEPTHWISE_TAP_CHUNK: usize = 9;
/// backward_weight splits the batch until it has about this many workgroups,
/// so that wide GPUs have enough of them in flight.
const WEIGHT_GRADIENT_WORKGROUPS: usize = 256;

/// Bound on the im2col scratch tensor; batches whose columns need more are
/// unfolded a chunk of images at a time.
const COL_BUDGET_BYTES: u64 = 32 << 20;

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    /// Zero padding before the first row / column.
    pub pad_h: usize,
    pub pad_w: usize,
    /// Zero padding after the last row / column (TensorFlow's "same"
    /// padding puts the odd one here).
    pub pad_h_end: usize,
    pub pad_w_end: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub groups: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    in_c: u32,
    out_c: u32,
    groups: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    icpg: u32,
    ocpg: u32,
    batch_per_split: u32,
    splits: u32,
    len: u32,
    _pad: u32,
}

impl Conv2d {
    /// Stride 1, no padding, no dilation, one group.
    pub fn new(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        input: [usize; 2],
        kernel: [usize; 2],
    ) -> Self {
        Conv2d {
            batch,
            in_channels,
            out_channels,
            in_h: input[0],
            in_w: input[1],
            kernel_h: kernel[0],
            kernel_w: kernel[1],
            stride_h: 1,
            stride_w: 1,
            pad_h: 0,
            pad_w: 0,
            pad_h_end: 0,
            pad_w_end: 0,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    pub fn stride(self, h: usize, w: usize) -> Self {
        Conv2d {
            stride_h: h,
            stride_w: w,
            ..self
        }
    }

    /// Zero padding on both sides of each dimension.
    pub fn padding(self, h: usize, w: usize) -> Self {
        self.padding_split([h, h], [w, w])
    }

    /// Zero padding `[before, after]` for rows and for columns.
    pub fn padding_split(self, h: [usize; 2], w: [usize; 2]) -> Self {
        Conv2d {
            pad_h: h[0],
            pad_h_end: h[1],
            pad_w: w[0],
            pad_w_end: w[1],
            ..self
        }
    }

    pub fn dilation(self, h: usize, w: usize) -> Self {
        Conv2d {
            dilation_h: h,
            dilation_w: w,
            ..self
        }
    }

    /// Groups of channels convolved separately (depthwise when equal to both
    /// channel counts).
    pub fn groups(self, groups: usize) -> Self {
        Conv2d { groups, ..self }
    }

    /// Output positions along one axis: 0 when the dilated kernel does not
    /// fit the padded input, and when sizes from a description are so large
    /// that they overflow.
    fn extent(size: usize, pad: usize, kernel: usize, dilation: usize, stride: usize) -> usize {
        let span = kernel
            .checked_sub(1)
            .and_then(|k| dilation.checked_mul(k))
            .and_then(|s| s.checked_add(1));
        match (span, size.checked_add(pad)) {
            (Some(span), Some(padded)) if stride > 0 && padded >= span => {
                (padded - span) / stride + 1
            }
            _ => 0,
        }
    }

    pub fn out_h(&self) -> usize {
        Self::extent(
            self.in_h,
            self.pad_h + self.pad_h_end,
            self.kernel_h,
            self.dilation_h,
            self.stride_h,
        )
    }

    pub fn out_w(&self) -> usize {
        Self::extent(
            self.in_w,
            self.pad_w + self.pad_w_end,
            self.kernel_w,
            self.dilation_w,
            self.stride_w,
        )
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_h, self.in_w]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h(), self.out_w()]
    }

    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel_h,
            self.kernel_w,
        ]
    }

    pub fn input_len(&self) -> usize {
        saturating_product(&self.input_shape())
    }

    pub fn output_len(&self) -> usize {
        saturating_product(&self.output_shape())
    }

    pub fn weight_len(&self) -> usize {
        saturating_product(&self.weight_shape())
    }

    /// One input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Floating-point operations of the forward pass (a multiply-add counts
    /// two); each backward has as many.
    pub fn flops(&self) -> f64 {
        let (_, _, taps_by_channels) = self.gemm_shape();
        2.0 * (self.output_len() * taps_by_channels) as f64
    }

    /// The equivalent gemm of the forward pass per group and image:
    /// (M, N, K) = (out channels per group, output positions, taps x input
    /// channels per group).
    pub fn gemm_shape(&self) -> (usize, usize, usize) {
        let groups = self.groups.max(1);
        (
            self.out_channels / groups,
            self.out_h() * self.out_w(),
            self.in_channels / groups * self.kernel_h * self.kernel_w,
        )
    }

    /// Checks that the geometry makes sense, with a message naming what does not.
    pub fn validate(&self) -> GpuResult<()> {
        ensure(
            self.groups > 0
                && self.in_channels.is_multiple_of(self.groups)
                && self.out_channels.is_multiple_of(self.groups),
            || {
                format!(
                    "conv2d {self:?}: groups ({}) must divide in_channels ({}) and out_channels ({})",
                    self.groups, self.in_channels, self.out_channels
                )
            },
        )?;
        ensure(
            self.stride_h > 0 && self.stride_w > 0 && self.dilation_h > 0 && self.dilation_w > 0,
            || format!("conv2d {self:?}: stride and dilation must be at least 1"),
        )?;
        ensure(self.out_h() > 0 && self.out_w() > 0, || {
            format!(
                "conv2d {self:?}: the kernel (with dilation) is larger than the padded input, so the output is empty"
            )
        })?;
        ensure(
            self.input_len().max(self.output_len()) < i32::MAX as usize,
            || format!("conv2d {self:?}: tensors past 2^31 elements are not supported"),
        )
    }

    fn params(&self) -> Params {
        let u = |v: usize| v as u32;
        Params {
            batch: u(self.batch),
            in_c: u(self.in_channels),
            out_c: u(self.out_channels),
            groups: u(self.groups),
            in_h: u(self.in_h),
            in_w: u(self.in_w),
            out_h: u(self.out_h()),
            out_w: u(self.out_w()),
            pad_h: u(self.pad_h),
            pad_w: u(self.pad_w),
            icpg: u(self.in_channels / self.groups),
            ocpg: u(self.out_channels / self.groups),
            batch_per_split: u(self.batch),
            splits: 1,
            len: 0,
            _pad: 0,
        }
    }

    /// The pipeline overrides; `run` is the depthwise kernels' RUN.
    fn constants(
        &self,
        has_bias: bool,
        lanes: usize,
        rows: usize,
        run: usize,
    ) -> [(&'static str, f64); 10] {
        let [kh, kw, sh, sw, dh, dw] = self.geometry_constants();
        [
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            ("HAS_BIAS", has_bias as u8 as f64),
            ("WG", lanes as f64),
            ("ROWS", rows_per_invocation(rows) as f64),
            ("RUN", run as f64),
        ]
    }

    /// Kernel size, stride and dilation as the shaders' overrides (KH, KW,
    /// SH, SW, DH, DW): divisions by them compile to constants.
    pub(crate) fn geometry_constants(&self) -> [(&'static str, f64); 6] {
        let f = |v: usize| v as f64;
        [
            ("KH", f(self.kernel_h)),
            ("KW", f(self.kernel_w)),
            ("SH", f(self.stride_h)),
            ("SW", f(self.stride_w)),
            ("DH", f(self.dilation_h)),
            ("DW", f(self.dilation_w)),
        ]
    }
}

fn check_len(spec: &Conv2d, name: &str, t: &Tensor, want: usize) -> GpuResult<()> {
    ensure_len(format_args!("conv2d {spec:?}"), name, t, want)
}

/// Elements per invocation along a row of width `width` in the depthwise
/// forward and backward_input (the shader's RUN, at most its MAX_RUN of 8):
/// the fewest runs per row, then the shortest run giving that many.
pub(crate) fn depthwise_run(width: usize) -> usize {
    let runs = width.div_ceil(8);
    width.div_ceil(runs)
}

/// Lanes per workgroup of the implicit gemms: enough to cover the columns
/// with few idle lanes.
fn workgroup_lanes(columns: usize) -> usize {
    let needed = columns.div_ceil(COLS_PER_INVOCATION);
    if needed >= 64 {
        64
    } else if needed > 8 {
        16
    } else {
        8
    }
}

/// Rows per invocation of the implicit gemms (the shader's `ROWS`): all of
/// its `TM` accumulators, or the power of two that covers fewer rows.
fn rows_per_invocation(rows: usize) -> usize {
    rows.next_power_of_two().min(ROWS_PER_INVOCATION)
}

fn implicit_gemm_groups(columns: usize, rows: usize, lanes: usize, z: usize) -> [u32; 3] {
    [
        columns.div_ceil(COLS_PER_INVOCATION * lanes) as u32,
        rows.div_ceil(rows_per_invocation(rows)) as u32,
        z as u32,
    ]
}

/// `y = conv(x, w) + bias`; x `[batch, in_c, in_h, in_w]`, w
/// `[out_c, in_c/groups, kh, kw]`, bias `[out_c]`, y `[batch, out_c, out_h, out_w]`.
pub fn conv2d_forward(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    check_len(spec, "x", x, spec.input_len())?;
    check_len(spec, "w", w, spec.weight_len())?;
    check_len(spec, "y", y, spec.output_len())?;
    if let Some(b) = bias {
        check_len(spec, "bias", b, spec.out_channels)?;
    }
    if spec.output_len() == 0 {
        return Ok(());
    }
    let mut params = spec.params();
    // Without a bias the weights stand in for its binding, unread.
    let bias_binding = bias.unwrap_or(w);
    if spec.is_depthwise() {
        let run = depthwise_run(spec.out_w());
        let runs = spec.output_len() / spec.out_w() * spec.out_w().div_ceil(run);
        params.len = runs as u32;
        let groups = grid_1d(runs.div_ceil(LANES) as u32);
        let constants = spec.constants(bias.is_some(), LANES, 1, run);
        return rec.dispatch(
            &SHADER,
            "depthwise_forward",
            &constants,
            &params,
            &[x, w, y, bias_binding],
            groups,
        );
    }
    if lowers_to_gemm(spec) {
        let budget = col_budget(rec);
        return forward_lowered(rec, spec, x, w, bias, y, budget);
    }
    let (rows, columns, _) = spec.gemm_shape();
    let lanes = workgroup_lanes(columns);
    let groups = implicit_gemm_groups(columns, rows, lanes, spec.batch * spec.groups);
    rec.dispatch(
        &SHADER,
        "forward",
        &spec.constants(bias.is_some(), lanes, rows, 1),
        &params,
        &[x, w, y, bias_binding],
        groups,
    )
}

/// `dx = d loss / d x` from `dy = d loss / d y` (overwrites dx).
pub fn conv2d_backward_input(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    spec.validate()?;
    check_len(spec, "dy", dy, spec.output_len())?;
    check_len(spec, "w", w, spec.weight_len())?;
    check_len(spec, "dx", dx, spec.input_len())?;
    if spec.input_len() == 0 {
        return Ok(());
    }
    let mut params = spec.params();
    if spec.is_depthwise() {
        let run = depthwise_run(spec.in_w);
        let runs = spec.input_len() / spec.in_w * spec.in_w.div_ceil(run);
        params.len = runs as u32;
        let groups = grid_1d(runs.div_ceil(LANES) as u32);
        return rec.dispatch(
            &SHADER,
            "depthwise_backward_input",
            &spec.constants(false, LANES, 1, run),
            &params,
            &[dy, w, dx],
            groups,
        );
    }
    if lowers_to_gemm(spec) {
        let budget = col_budget(rec);
        return backward_input_lowered(rec, spec, dy, w, dx, budget);
    }
    let columns = spec.in_h * spec.in_w;
    let lanes = workgroup_lanes(columns);
    let rows = spec.in_channels / spec.groups;
    let groups = implicit_gemm_groups(columns, rows, lanes, spec.batch * spec.groups);
    rec.dispatch(
        &SHADER,
        "backward_input",
        &spec.constants(false, lanes, rows, 1),
        &params,
        &[dy, w, dx],
        groups,
    )
}

/// `dw = d loss / d w` and, when given, `db = d loss / d bias` from dy and
/// the forward input x (both overwritten).
pub fn conv2d_backward_weight(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> GpuResult<()> {
    spec.validate()?;
    check_len(spec, "dy", dy, spec.output_len())?;
    check_len(spec, "x", x, spec.input_len())?;
    check_len(spec, "dw", dw, spec.weight_len())?;
    if let Some(db) = db {
        check_len(spec, "db", db, spec.out_channels)?;
    }
    if spec.weight_len() == 0 {
        return Ok(());
    }
    if spec.batch == 0 {
        rec.clear(dw);
        if let Some(db) = db {
            rec.clear(db);
        }
        return Ok(());
    }
    let mut params = spec.params();
    if let Some(db) = db {
        rec.dispatch(
            &SHADER,
            "backward_bias",
            &[],
            &params,
            &[dy, db],
            [spec.out_channels as u32, 1, 1],
        )?;
    }
    if lowers_to_gemm(spec) {
        let budget = col_budget(rec);
        return backward_weight_lowered(rec, spec, dy, x, dw, budget);
    }
    if spec.is_depthwise() {
        let chunks = (spec.kernel_h * spec.kernel_w).div_ceil(DEPTHWISE_TAP_CHUNK);
        return rec.dispatch(
            &SHADER,
            "depthwise_backward_weight",
            &spec.constants(false, LANES, 1, 1),
            &params,
            &[dy, x, dw],
            [chunks as u32, spec.in_channels as u32, 1],
        );
    }
    let (rows, _, columns) = spec.gemm_shape();
    let lanes = workgroup_lanes(columns);
    let tiles = implicit_gemm_groups(columns, rows, lanes, spec.groups);
    let tile_count = tiles.iter().map(|&t| t as usize).product::<usize>();
    let wanted_splits = WEIGHT_GRADIENT_WORKGROUPS
        .div_ceil(tile_count)
        .clamp(1, spec.batch);
    let batch_per_split = spec.batch.div_ceil(wanted_splits);
    let splits = spec.batch.div_ceil(batch_per_split);
    params.batch_per_split = batch_per_split as u32;
    params.splits = splits as u32;
    let constants = spec.constants(false, lanes, rows, 1);
    let groups = implicit_gemm_groups(columns, rows, lanes, splits * spec.groups);
    if splits == 1 {
        return rec.dispatch(
            &SHADER,
            "backward_weight",
            &constants,
            &params,
            &[dy, x, dw],
            groups,
        );
    }
    let partials = rec.empty(&[splits, spec.weight_len()])?;
    rec.dispatch(
        &SHADER,
        "backward_weight",
        &constants,
        &params,
        &[dy, x, &partials],
        groups,
    )?;
    params.len = spec.weight_len() as u32;
    rec.dispatch(
        &SHADER,
        "reduce_splits",
        &[],
        &params,
        &[&partials, dw],
        grid_1d(spec.weight_len().div_ceil(LANES) as u32),
    )
}

/// One-group convolutions are lowered to im2col and the gemm kernel, whose
/// register tiling the direct kernels do not match; grouped and depthwise
/// ones use the direct kernels.
fn lowers_to_gemm(spec: &Conv2d) -> bool {
    spec.groups == 1 && !spec.is_depthwise()
}

/// A 1x1 convolution with stride 1 and no padding reads its input as the
/// column matrix itself.
fn input_is_col(spec: &Conv2d) -> bool {
    (
        spec.kernel_h,
        spec.kernel_w,
        spec.stride_h,
        spec.stride_w,
        spec.pad_h + spec.pad_h_end,
        spec.pad_w + spec.pad_w_end,
    ) == (1, 1, 1, 1, 0, 0)
}

/// The im2col scratch budget on this adapter, in bytes.
fn col_budget(rec: &Recorder) -> usize {
    let limit = rec.gpu().limits().max_storage_buffer_binding_size;
    limit.min(COL_BUDGET_BYTES) as usize
}

/// `(first image, images)` of each chunk whose columns fit `budget` bytes
/// (at least one image per chunk).
fn chunks(spec: &Conv2d, budget: usize) -> Vec<(usize, usize)> {
    let per_chunk = (budget / (4 * col_len(spec)).max(1)).clamp(1, spec.batch.max(1));
    (0..spec.batch)
        .step_by(per_chunk)
        .map(|first| (first, per_chunk.min(spec.batch - first)))
        .collect()
}

/// Scratch for one chunk's columns, or `None` when the input serves.
fn col_scratch(
    rec: &mut Recorder,
    spec: &Conv2d,
    chunks: &[(usize, usize)],
) -> GpuResult<Option<Tensor>> {
    if input_is_col(spec) {
        return Ok(None);
    }
    let images = chunks.iter().map(|c| c.1).max().unwrap_or(1);
    rec.empty(&[images * col_len(spec)]).map(Some)
}

/// The column matrix of a chunk (unfolding it into `col` when needed) and
/// where in that tensor the chunk's first image starts.
fn columns<'t>(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &'t Tensor,
    col: &'t Option<Tensor>,
    (first, images): (usize, usize),
) -> GpuResult<(&'t Tensor, usize)> {
    match col {
        Some(col) => {
            im2col(rec, spec, x, col, first, images)?;
            Ok((col, 0))
        }
        None => Ok((x, first * col_len(spec))),
    }
}

/// y[n] = W [O x K] * col[n] [K x P] per chunk, then the bias.
fn forward_lowered(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    budget: usize,
) -> GpuResult<()> {
    let (o, p, k) = spec.gemm_shape();
    let chunks = chunks(spec, budget);
    let col = col_scratch(rec, spec, &chunks)?;
    for &(first, images) in &chunks {
        let (b, b_offset) = columns(rec, spec, x, &col, (first, images))?;
        let product =
            Gemm::new(o, p, k)
                .batch(images)
                .shared_a()
                .offsets(0, b_offset, first * o * p);
        gemm(rec, &product, w, b, y)?;
    }
    match bias {
        Some(bias) => bias_add(rec, &BiasLayout::channels(spec.batch, o, p), y, bias),
        None => Ok(()),
    }
}

/// dcol[n] = W^T [K x O] * dy[n] [O x P] per chunk, folded back by col2im
/// (or written straight into dx when the input is its own column matrix).
fn backward_input_lowered(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    budget: usize,
) -> GpuResult<()> {
    let (o, p, k) = spec.gemm_shape();
    let chunks = chunks(spec, budget);
    let dcol = col_scratch(rec, spec, &chunks)?;
    for &(first, images) in &chunks {
        let product = Gemm::new(k, p, o).trans_a(true).batch(images).shared_a();
        match &dcol {
            Some(dcol) => {
                gemm(rec, &product.offsets(0, first * o * p, 0), w, dy, dcol)?;
                col2im(rec, spec, dcol, dx, first, images)?;
            }
            None => {
                let product = product.offsets(0, first * o * p, first * k * p);
                gemm(rec, &product, w, dy, dx)?;
            }
        }
    }
    Ok(())
}

/// dW [O x K] = sum over images of dy[n] [O x P] * col[n]^T [P x K]: one
/// batched gemm per chunk into per-image partial products, summed over the
/// images (a gemm per image would cost a dispatch per image).
fn backward_weight_lowered(
    rec: &mut Recorder,
    spec: &Conv2d,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    budget: usize,
) -> GpuResult<()> {
    let (o, p, k) = spec.gemm_shape();
    let chunks = chunks(spec, budget);
    let col = col_scratch(rec, spec, &chunks)?;
    let most = chunks.iter().map(|c| c.1).max().unwrap_or(1);
    let partials = rec.empty(&[most, o * k])?;
    let chunk_sum = if chunks.len() > 1 {
        Some(rec.empty(&[o * k])?)
    } else {
        None
    };
    for (i, &(first, images)) in chunks.iter().enumerate() {
        let (b, b_offset) = columns(rec, spec, x, &col, (first, images))?;
        let product =
            Gemm::new(o, k, p)
                .trans_b(true)
                .batch(images)
                .offsets(first * o * p, b_offset, 0);
        gemm(rec, &product, dy, b, &partials)?;
        let sum = AxisSum::new(1, images, o * k);
        let partials = partials.reshaped(&[most * o * k])?;
        let used = if images == most {
            partials
        } else {
            // The last chunk may be shorter: sum only its images.
            let t = rec.empty(&[images * o * k])?;
            rec.copy_range(&partials, 0, &t, 0, images * o * k)?;
            t
        };
        match (&chunk_sum, i) {
            (_, 0) | (None, _) => sum_axis(rec, &sum, &used, dw)?,
            (Some(total), _) => {
                sum_axis(rec, &sum, &used, total)?;
                add_assign(rec, dw, total)?;
            }
        }
    }
    Ok(())
}

/// Calls `visit(y_index, x_index, w_index)` for every product term of the
/// convolution whose input element lies inside the (unpadded) input (the
/// references of the real and the complex convolution share it).
pub(crate) fn for_each_term(spec: &Conv2d, mut visit: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (spec.out_h(), spec.out_w());
    let icpg = spec.in_channels / spec.groups;
    let ocpg = spec.out_channels / spec.groups;
    for n in 0..spec.batch {
        for oc in 0..spec.out_channels {
            let g = oc / ocpg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * spec.out_channels + oc) * oh + oy) * ow + ox;
                    for ic in 0..icpg {
                        let c = g * icpg + ic;
                        for ky in 0..spec.kernel_h {
                            let iy = (oy * spec.stride_h + ky * spec.dilation_h) as isize
                                - spec.pad_h as isize;
                            if iy < 0 || iy >= spec.in_h as isize {
                                continue;
                            }
                            for kx in 0..spec.kernel_w {
                                let ix = (ox * spec.stride_w + kx * spec.dilation_w) as isize
                                    - spec.pad_w as isize;
                                if ix < 0 || ix >= spec.in_w as isize {
                                    continue;
                                }
                                let xi = ((n * spec.in_channels + c) * spec.in_h + iy as usize)
                                    * spec.in_w
                                    + ix as usize;
                                let wi =
                                    ((oc * icpg + ic) * spec.kernel_h + ky) * spec.kernel_w + kx;
                                visit(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// CPU reference of the forward pass, in f64.
pub fn conv2d_forward_reference(
    spec: &Conv2d,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let mut y = vec![0.0; spec.output_len()];
    for_each_term(spec, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    if let Some(b) = bias {
        let plane = spec.out_h() * spec.out_w();
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % spec.out_channels];
        }
    }
    y
}

/// CPU reference of the gradient to the input, in f64.
pub fn conv2d_backward_input_reference(spec: &Conv2d, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; spec.input_len()];
    for_each_term(spec, |yi, xi, wi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// CPU reference of the gradient to the weights, in f64.
pub fn conv2d_backward_weight_reference(spec: &Conv2d, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; spec.weight_len()];
    for_each_term(spec, |yi, xi, wi| dw[wi] += dy[yi] * x[xi]);
    dw
}

/// CPU reference of the gradient to the bias, in f64.
pub fn conv2d_backward_bias_reference(spec: &Conv2d, dy: &[f64]) -> Vec<f64> {
    let plane = spec.out_h() * spec.out_w();
    let mut db = vec![0.0; spec.out_channels];
    for (i, v) in dy.iter().enumerate() {
        db[(i / plane) % spec.out_channels] += v;
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Gpu;
    use crate::kernels::check::{assert_close, to_f32, to_f64};
    use crate::util::rng::Rng;

    /// A budget of two images' columns splits a batch of five into chunks
    /// of 2, 2 and 1; each pass must match the reference across them.
    #[test]
    fn lowered_passes_match_reference_across_chunks() {
        let gpu = Gpu::shared();
        let mut rng = Rng::new(21);
        for spec in [
            Conv2d::new(5, 3, 4, [7, 6], [3, 2])
                .stride(2, 1)
                .padding(1, 1),
            Conv2d::new(5, 3, 4, [4, 5], [1, 1]),
        ] {
            let budget = 2 * 4 * col_len(&spec);
            assert_eq!(chunks(&spec, budget), vec![(0, 2), (2, 2), (4, 1)]);
            let x = rng.vec_uniform(spec.input_len(), -1.0, 1.0);
            let w = rng.vec_uniform(spec.weight_len(), -1.0, 1.0);
            let dy = rng.vec_uniform(spec.output_len(), -1.0, 1.0);
            let [tx, tw, tdy] = [&x, &w, &dy].map(|v| gpu.upload(&[v.len()], v).unwrap());
            let ty = gpu.zeros(&[spec.output_len()]).unwrap();
            let tdx = gpu.zeros(&[spec.input_len()]).unwrap();
            let tdw = gpu.zeros(&[spec.weight_len()]).unwrap();
            let mut rec = gpu.recorder();
            forward_lowered(&mut rec, &spec, &tx, &tw, None, &ty, budget).unwrap();
            backward_input_lowered(&mut rec, &spec, &tdy, &tw, &tdx, budget).unwrap();
            backward_weight_lowered(&mut rec, &spec, &tdy, &tx, &tdw, budget).unwrap();
            rec.submit().unwrap();
            let [x64, w64, dy64] = [&x, &w, &dy].map(|v| to_f64(v));
            let what = format!("{spec:?}");
            let want_y = to_f32(&conv2d_forward_reference(&spec, &x64, &w64, None));
            assert_close(&what, &gpu.download(&ty).unwrap(), &want_y, 1e-4, 1e-4);
            let want_dx = to_f32(&conv2d_backward_input_reference(&spec, &dy64, &w64));
            assert_close(&what, &gpu.download(&tdx).unwrap(), &want_dx, 1e-4, 1e-4);
            let want_dw = to_f32(&conv2d_backward_weight_reference(&spec, &dy64, &x64));
            assert_close(&what, &gpu.download(&tdw).unwrap(), &want_dw, 1e-4, 1e-4);
        }
    }
}

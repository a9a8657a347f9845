//! gemm: `C = alpha * op(A) * op(B) + beta * C` over a batch of equal-sized
//! products, either operand transposed. Shaders: `shaders/gemm.wgsl` on any
//! adapter, `shaders/gemm_subgroup.wgsl` on CPU adapters with 8-lane
//! subgroups (see `GemmKernel`).

use crate::gpu::{ensure, Gpu, GpuResult, Recorder, Shader, Tensor};
use crate::kernels::elementwise::add_assign;
use crate::kernels::reductions::{sum_axis, AxisSum};

static SHADER: Shader = crate::shader!("gemm", trusted);
static SUBGROUP_SHADER: Shader = crate::shader!("gemm_subgroup", trusted);

/// Columns of C per invocation (one vec4), in both kernels.
const COLS_PER_INVOCATION: usize = 4;

/// The shader that runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// `gemm.wgsl`: any adapter; 16 rows of C per invocation.
    Portable,
    /// `gemm_subgroup.wgsl`: the loads of A shared across a subgroup of 8
    /// lanes, 32 rows of C per invocation. For CPU adapters (llvmpipe),
    /// where every load costs a loop over the lanes.
    Subgroup8,
}

impl GemmKernel {
    /// The kernel `gemm` uses on this adapter: `Subgroup8` on a CPU adapter
    /// with subgroups of exactly 8 lanes, else `Portable`.
    pub fn best(gpu: &Gpu) -> GemmKernel {
        if gpu.is_cpu() && gpu.has_subgroups_of(8) {
            GemmKernel::Subgroup8
        } else {
            GemmKernel::Portable
        }
    }

    /// Every kernel this adapter can run.
    pub fn available(gpu: &Gpu) -> Vec<GemmKernel> {
        let mut kernels = vec![GemmKernel::Portable];
        if gpu.has_subgroups_of(8) {
            kernels.push(GemmKernel::Subgroup8);
        }
        kernels
    }

    fn rows_per_invocation(self) -> usize {
        match self {
            GemmKernel::Portable => 16,
            GemmKernel::Subgroup8 => 32,
        }
    }

    /// Lanes of a workgroup for `n` columns of C. Portable: a lane per
    /// vec4 of columns, one SIMD vector of 8 on a CPU adapter.
    fn lanes(self, gpu: &Gpu, n: usize) -> usize {
        match self {
            GemmKernel::Portable => gpu.row_lanes(n.div_ceil(COLS_PER_INVOCATION)) as usize,
            GemmKernel::Subgroup8 => 8,
        }
    }

    /// Workgroups along the columns and the rows of an `m x n` C.
    fn tiles(self, lanes: usize, m: usize, n: usize) -> [usize; 2] {
        [
            n.div_ceil(COLS_PER_INVOCATION * lanes),
            m.div_ceil(self.rows_per_invocation()),
        ]
    }
}

/// The shape of a (batched) product. A is stored `[batch][M][K]`, or
/// `[batch][K][M]` when `trans_a`; B is `[batch][K][N]`, or `[batch][N][K]`
/// when `trans_b`; C is `[batch][M][N]`. A shared operand has one matrix used
/// by every product of the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub shared_a: bool,
    pub shared_b: bool,
    pub alpha: f32,
    pub beta: f32,
    /// Where A, B and C start in their tensors (elements), when they are
    /// parts of larger tensors; `None` when each is a whole tensor.
    pub offsets: Option<[usize; 3]>,
    /// Slices of K computed by workgroups of their own and summed after
    /// (`Some(1)`: never split); `None` lets the launcher choose.
    pub split_k: Option<usize>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    offset_a: u32,
    offset_b: u32,
    offset_c: u32,
    _pad: [u32; 2],
}

impl Gemm {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            shared_a: false,
            shared_b: false,
            alpha: 1.0,
            beta: 0.0,
            offsets: None,
            split_k: None,
        }
    }

    /// Splits K into `slices` products summed after (1: never split). Only
    /// a single product with C a whole tensor and `beta` 0 or 1 is split.
    pub fn split_k(self, slices: usize) -> Self {
        Gemm {
            split_k: Some(slices),
            ..self
        }
    }

    pub fn trans_a(self, yes: bool) -> Self {
        Gemm {
            trans_a: yes,
            ..self
        }
    }

    pub fn trans_b(self, yes: bool) -> Self {
        Gemm {
            trans_b: yes,
            ..self
        }
    }

    pub fn batch(self, batch: usize) -> Self {
        Gemm { batch, ..self }
    }

    /// One A for every product of the batch.
    pub fn shared_a(self) -> Self {
        Gemm {
            shared_a: true,
            ..self
        }
    }

    /// One B for every product of the batch.
    pub fn shared_b(self) -> Self {
        Gemm {
            shared_b: true,
            ..self
        }
    }

    pub fn alpha(self, alpha: f32) -> Self {
        Gemm { alpha, ..self }
    }

    /// `beta = 1` accumulates into C (as gradient sums need).
    pub fn beta(self, beta: f32) -> Self {
        Gemm { beta, ..self }
    }

    /// Operates on A, B and C starting at these elements of their tensors.
    pub fn offsets(self, a: usize, b: usize, c: usize) -> Self {
        Gemm {
            offsets: Some([a, b, c]),
            ..self
        }
    }

    pub fn a_len(&self) -> usize {
        self.m * self.k * if self.shared_a { 1 } else { self.batch }
    }

    pub fn b_len(&self) -> usize {
        self.k * self.n * if self.shared_b { 1 } else { self.batch }
    }

    pub fn c_len(&self) -> usize {
        self.m * self.n * self.batch
    }

    /// Floating-point operations (a multiply-add counts two).
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }

    fn offset(&self, operand: usize) -> usize {
        self.offsets.map_or(0, |o| o[operand])
    }

    fn a_at(&self, a: &[f32], batch: usize, row: usize, kk: usize) -> f32 {
        let base = self.offset(0)
            + if self.shared_a {
                0
            } else {
                batch * self.m * self.k
            };
        if self.trans_a {
            a[base + kk * self.m + row]
        } else {
            a[base + row * self.k + kk]
        }
    }

    fn b_at(&self, b: &[f32], batch: usize, kk: usize, col: usize) -> f32 {
        let base = self.offset(1)
            + if self.shared_b {
                0
            } else {
                batch * self.k * self.n
            };
        if self.trans_b {
            b[base + col * self.k + kk]
        } else {
            b[base + kk * self.n + col]
        }
    }
}

/// Records the product into `rec` with the adapter's best kernel. C must not
/// alias A or B.
pub fn gemm(rec: &mut Recorder, spec: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor) -> GpuResult<()> {
    let kernel = GemmKernel::best(rec.gpu());
    gemm_with(rec, kernel, spec, a, b, c)
}

/// `gemm` with the kernel chosen by the caller (tests and benches compare
/// them); it must be one of `GemmKernel::available`.
pub fn gemm_with(
    rec: &mut Recorder,
    kernel: GemmKernel,
    spec: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> GpuResult<()> {
    for ((name, t, want), offset) in [
        ("A", a, spec.a_len()),
        ("B", b, spec.b_len()),
        ("C", c, spec.c_len()),
    ]
    .into_iter()
    .zip(spec.offsets.unwrap_or_default())
    {
        let fits = if spec.offsets.is_some() {
            t.len() >= offset + want
        } else {
            t.len() == want
        };
        ensure(fits, || {
            format!(
                "gemm {spec:?}: {name} has shape {:?} ({} elements), expected {want} elements from element {offset}",
                t.shape(),
                t.len()
            )
        })?;
    }
    if spec.c_len() == 0 {
        return Ok(());
    }
    let slices = spec
        .split_k
        .unwrap_or_else(|| automatic_split(rec.gpu(), kernel, spec));
    let cut = KSlices::new(spec.k, slices);
    if cut.parts() > 1 && splittable(spec) && c.len() == spec.c_len() {
        return split_k_gemm(rec, kernel, spec, &cut, a, b, c);
    }
    let u = |x: usize| x as u32;
    let params = Params {
        m: u(spec.m),
        n: u(spec.n),
        k: u(spec.k),
        lda: u(if spec.trans_a { spec.m } else { spec.k }),
        ldb: u(if spec.trans_b { spec.k } else { spec.n }),
        ldc: u(spec.n),
        stride_a: if spec.shared_a { 0 } else { u(spec.m * spec.k) },
        stride_b: if spec.shared_b { 0 } else { u(spec.k * spec.n) },
        stride_c: u(spec.m * spec.n),
        alpha: spec.alpha,
        beta: spec.beta,
        offset_a: u(spec.offset(0)),
        offset_b: u(spec.offset(1)),
        offset_c: u(spec.offset(2)),
        _pad: [0; 2],
    };
    record(
        rec,
        kernel,
        (spec.trans_a, spec.trans_b),
        &params,
        spec.batch,
        [a, b, c],
    )
}

/// Dispatches `batch` products described by `params` (and the transposes).
fn record(
    rec: &mut Recorder,
    kernel: GemmKernel,
    (trans_a, trans_b): (bool, bool),
    params: &Params,
    batch: usize,
    [a, b, c]: [&Tensor; 3],
) -> GpuResult<()> {
    let u = |x: usize| x as u32;
    let lanes = kernel.lanes(rec.gpu(), params.n as usize);
    let [columns, rows] = kernel.tiles(lanes, params.m as usize, params.n as usize);
    let groups = [u(columns), u(rows), u(batch)];
    // vec4 loads need every row of the operand to start on a vec4 boundary.
    let aligned = |ld: u32, stride: u32, offset: u32| {
        ld.is_multiple_of(4) && stride.is_multiple_of(4) && offset.is_multiple_of(4)
    };
    let constants = [
        ("TRANS_A", trans_a as u8 as f64),
        ("TRANS_B", trans_b as u8 as f64),
        (
            "ALIGNED_A",
            aligned(params.lda, params.stride_a, params.offset_a) as u8 as f64,
        ),
        (
            "ALIGNED_B",
            aligned(params.ldb, params.stride_b, params.offset_b) as u8 as f64,
        ),
        ("WG", lanes as f64),
    ];
    let (shader, constants) = match kernel {
        GemmKernel::Portable => (&SHADER, &constants[..]),
        // Its workgroup is fixed at 8 lanes: no WG override.
        GemmKernel::Subgroup8 => (&SUBGROUP_SHADER, &constants[..4]),
    };
    rec.dispatch(shader, "gemm", constants, params, &[a, b, c, a, b], groups)
}

/// Whether `spec` may run split along K: one product, C a whole tensor,
/// and `beta` 0 or 1 (the sum of the slices is scaled into C, or added).
fn splittable(spec: &Gemm) -> bool {
    spec.batch == 1 && spec.offset(2) == 0 && (spec.beta == 0.0 || spec.beta == 1.0)
}

/// Workgroups a product should fill a GPU with before K is split.
const SPLIT_TARGET_GROUPS: usize = 256;
/// The shortest slice of K worth its own workgroups.
const MIN_SLICE: usize = 256;

/// Slices of K for a product whose output tiles are too few to fill a GPU
/// (a long K and a small C, as a dense layer on a large flattened map or a
/// weight gradient); 1 on CPU adapters, whose few cores a handful of
/// tiles already fill.
fn automatic_split(gpu: &Gpu, kernel: GemmKernel, spec: &Gemm) -> usize {
    if gpu.is_cpu() || !splittable(spec) {
        return 1;
    }
    let [columns, rows] = kernel.tiles(kernel.lanes(gpu, spec.n), spec.m, spec.n);
    SPLIT_TARGET_GROUPS
        .div_ceil(columns * rows)
        .min(spec.k / MIN_SLICE)
        .max(1)
}

/// K cut into slices of `len` (a multiple of 4, so that vec4 loads stay
/// aligned): `whole` of them, then a shorter `tail` (maybe 0).
struct KSlices {
    len: usize,
    whole: usize,
    tail: usize,
}

impl KSlices {
    /// K cut into about `slices` slices.
    fn new(k: usize, slices: usize) -> Self {
        let len = k
            .div_ceil(slices.max(1))
            .next_multiple_of(COLS_PER_INVOCATION)
            .max(COLS_PER_INVOCATION);
        KSlices {
            len,
            whole: k / len,
            tail: k % len,
        }
    }

    fn parts(&self) -> usize {
        self.whole + usize::from(self.tail > 0)
    }
}

/// `C = alpha * op(A) op(B) + beta * C` as one product per slice of K in
/// `cut`, each into its own `[M, N]` of a scratch tensor, then summed into C.
fn split_k_gemm(
    rec: &mut Recorder,
    kernel: GemmKernel,
    spec: &Gemm,
    cut: &KSlices,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> GpuResult<()> {
    let (m, n, slice) = (spec.m, spec.n, cut.len);
    let partial = rec.empty(&[cut.parts(), m * n])?;
    let u = |x: usize| x as u32;
    // Consecutive slices of K start this many elements apart in A and B.
    let step_a = if spec.trans_a { slice * m } else { slice };
    let step_b = if spec.trans_b { slice } else { slice * n };
    let params = |k: usize, first: usize| Params {
        m: u(m),
        n: u(n),
        k: u(k),
        lda: u(if spec.trans_a { m } else { spec.k }),
        ldb: u(if spec.trans_b { spec.k } else { n }),
        ldc: u(n),
        stride_a: u(step_a),
        stride_b: u(step_b),
        stride_c: u(m * n),
        alpha: 1.0,
        beta: 0.0,
        offset_a: u(spec.offset(0) + first * step_a),
        offset_b: u(spec.offset(1) + first * step_b),
        offset_c: u(first * m * n),
        _pad: [0; 2],
    };
    let trans = (spec.trans_a, spec.trans_b);
    if cut.whole > 0 {
        let whole = params(slice, 0);
        record(rec, kernel, trans, &whole, cut.whole, [a, b, &partial])?;
    }
    if cut.tail > 0 {
        let tail = params(cut.tail, cut.whole);
        record(rec, kernel, trans, &tail, 1, [a, b, &partial])?;
    }
    let sum = AxisSum::new(1, cut.parts(), m * n).scale(spec.alpha);
    if spec.beta == 0.0 {
        return sum_axis(rec, &sum, &partial, c);
    }
    let total = rec.empty(&[m * n])?;
    sum_axis(rec, &sum, &partial, &total)?;
    add_assign(rec, c, &total)
}

/// CPU reference: plain loops, accumulated in f64.
pub fn gemm_reference(spec: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    for batch in 0..spec.batch {
        for row in 0..spec.m {
            for col in 0..spec.n {
                let mut sum = 0.0f64;
                for kk in 0..spec.k {
                    sum +=
                        spec.a_at(a, batch, row, kk) as f64 * spec.b_at(b, batch, kk, col) as f64;
                }
                let out = &mut c[spec.offset(2) + (batch * spec.m + row) * spec.n + col];
                let old = if spec.beta == 0.0 {
                    0.0
                } else {
                    spec.beta * *out
                };
                *out = spec.alpha * sum as f32 + old;
            }
        }
    }
}

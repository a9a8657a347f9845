// gemm: C = alpha * op(A) * op(B) + beta * C, f32, for a batch of equal-sized
// products. op(X) is X or its transpose (TRANS_A / TRANS_B overrides).
//
// Register-tiled without workgroup memory, shaped for SIMD backends such as
// llvmpipe as much as for GPUs: each invocation computes 16 rows x 4 columns
// of C in sixteen vec4 accumulators (named variables, so they stay in
// registers). The lanes of a workgroup share the same 16 rows, so their reads
// of A are the same address in every lane (a broadcast); each lane reads its
// own 4x4 block of B. Interior tiles of operands whose rows start on a vec4
// boundary (ALIGNED_A / ALIGNED_B, set by the launcher) are read with vec4
// loads, other operands (such as the 25x5 maps of a KWS network) four scalars
// at a time; either way interior tiles step k four at a time, and only edge
// tiles and the k tail take the guarded scalar path. Every index is guarded
// here, so the module is compiled without runtime bounds checks.
//
// Bindings: 0 params, 1 a, 2 b (read as vec4 arrays), 3 c (read-write),
// 4 a and 5 b again (read as scalars: the same buffers).
// Dispatch: (ceil(N / (4 * WG)), ceil(M / 16), batch).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,         // row stride of A as stored
    ldb: u32,         // row stride of B as stored
    ldc: u32,
    stride_a: u32,    // elements between batch entries (0 shares one matrix)
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    offset_a: u32,    // where the first matrix starts in its tensor
    offset_b: u32,
    offset_c: u32,
    _pad0: u32,
    _pad1: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ALIGNED_A: bool = false;
override ALIGNED_B: bool = false;
override WG: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> a1: array<f32>;
@group(0) @binding(5) var<storage, read> b1: array<f32>;

var<private> a_base: u32;
var<private> b_base: u32;

// op(A)[row, kk], zero for rows past M.
fn a_scalar(row: u32, kk: u32) -> f32 {
    if (row >= p.m) {
        return 0.0;
    }
    var e = a_base + row * p.lda + kk;
    if (TRANS_A) {
        e = a_base + kk * p.lda + row;
    }
    return a1[e];
}

// op(B)[kk, col..col+4], zero for columns past N.
fn b_scalar4(kk: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            var e = b_base + kk * p.ldb + col + j;
            if (TRANS_B) {
                e = b_base + (col + j) * p.ldb + kk;
            }
            v[j] = b1[e];
        }
    }
    return v;
}

// Four consecutive elements of A or B from element e, as scalar loads.
fn a4(e: u32) -> vec4<f32> {
    return vec4<f32>(a1[e], a1[e + 1u], a1[e + 2u], a1[e + 3u]);
}

fn b4(e: u32) -> vec4<f32> {
    return vec4<f32>(b1[e], b1[e + 1u], b1[e + 2u], b1[e + 3u]);
}

// Column i is op(A)[row + i, kk..kk+4] (interior tiles only).
fn a_block(row: u32, kk: u32) -> mat4x4<f32> {
    if (!ALIGNED_A) {
        let s = p.lda;
        if (TRANS_A) {
            let e = a_base + kk * s + row;
            return transpose(mat4x4<f32>(a4(e), a4(e + s), a4(e + 2u * s), a4(e + 3u * s)));
        }
        let e = a_base + row * s + kk;
        return mat4x4<f32>(a4(e), a4(e + s), a4(e + 2u * s), a4(e + 3u * s));
    }
    if (TRANS_A) {
        let i = (a_base + kk * p.lda + row) >> 2u;
        let s = p.lda >> 2u;
        return transpose(mat4x4<f32>(a[i], a[i + s], a[i + 2u * s], a[i + 3u * s]));
    }
    let i = (a_base + row * p.lda + kk) >> 2u;
    let s = p.lda >> 2u;
    return mat4x4<f32>(a[i], a[i + s], a[i + 2u * s], a[i + 3u * s]);
}

// Column t is op(B)[kk + t, col..col+4] (interior tiles only).
fn b_block(kk: u32, col: u32) -> mat4x4<f32> {
    if (!ALIGNED_B) {
        let s = p.ldb;
        if (TRANS_B) {
            let e = b_base + col * s + kk;
            return transpose(mat4x4<f32>(b4(e), b4(e + s), b4(e + 2u * s), b4(e + 3u * s)));
        }
        let e = b_base + kk * s + col;
        return mat4x4<f32>(b4(e), b4(e + s), b4(e + 2u * s), b4(e + 3u * s));
    }
    if (TRANS_B) {
        let i = (b_base + col * p.ldb + kk) >> 2u;
        let s = p.ldb >> 2u;
        return transpose(mat4x4<f32>(b[i], b[i + s], b[i + 2u * s], b[i + 3u * s]));
    }
    let i = (b_base + kk * p.ldb + col) >> 2u;
    let s = p.ldb >> 2u;
    return mat4x4<f32>(b[i], b[i + s], b[i + 2u * s], b[i + 3u * s]);
}

fn store_row(c_base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let base = c_base + row * p.ldc + col;
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            if (p.beta == 0.0) {
                c[base + j] = p.alpha * v[j];
            } else {
                c[base + j] = p.alpha * v[j] + p.beta * c[base + j];
            }
        }
    }
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = (wid.x * WG + lid.x) * 4u;
    let row = wid.y * 16u;
    if (col >= p.n) {
        return;
    }
    a_base = p.offset_a + wid.z * p.stride_a;
    b_base = p.offset_b + wid.z * p.stride_b;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0);
    var acc9 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0);
    var acc13 = vec4<f32>(0.0);
    var acc14 = vec4<f32>(0.0);
    var acc15 = vec4<f32>(0.0);

    var k_done = 0u;
    if (row + 16u <= p.m && col + 4u <= p.n) {
        k_done = p.k & ~3u;
        for (var kk = 0u; kk < k_done; kk += 4u) {
            let bm = b_block(kk, col);
            var am = a_block(row, kk);
            acc0 += bm * am[0];
            acc1 += bm * am[1];
            acc2 += bm * am[2];
            acc3 += bm * am[3];
            am = a_block(row + 4u, kk);
            acc4 += bm * am[0];
            acc5 += bm * am[1];
            acc6 += bm * am[2];
            acc7 += bm * am[3];
            am = a_block(row + 8u, kk);
            acc8 += bm * am[0];
            acc9 += bm * am[1];
            acc10 += bm * am[2];
            acc11 += bm * am[3];
            am = a_block(row + 12u, kk);
            acc12 += bm * am[0];
            acc13 += bm * am[1];
            acc14 += bm * am[2];
            acc15 += bm * am[3];
        }
    }
    // The k tail and edge tiles, one k at a time.
    for (var kk = k_done; kk < p.k; kk++) {
        let bv = b_scalar4(kk, col);
        acc0 += a_scalar(row, kk) * bv;
        acc1 += a_scalar(row + 1u, kk) * bv;
        acc2 += a_scalar(row + 2u, kk) * bv;
        acc3 += a_scalar(row + 3u, kk) * bv;
        acc4 += a_scalar(row + 4u, kk) * bv;
        acc5 += a_scalar(row + 5u, kk) * bv;
        acc6 += a_scalar(row + 6u, kk) * bv;
        acc7 += a_scalar(row + 7u, kk) * bv;
        acc8 += a_scalar(row + 8u, kk) * bv;
        acc9 += a_scalar(row + 9u, kk) * bv;
        acc10 += a_scalar(row + 10u, kk) * bv;
        acc11 += a_scalar(row + 11u, kk) * bv;
        acc12 += a_scalar(row + 12u, kk) * bv;
        acc13 += a_scalar(row + 13u, kk) * bv;
        acc14 += a_scalar(row + 14u, kk) * bv;
        acc15 += a_scalar(row + 15u, kk) * bv;
    }

    let c_base = p.offset_c + wid.z * p.stride_c;
    store_row(c_base, row, col, acc0);
    store_row(c_base, row + 1u, col, acc1);
    store_row(c_base, row + 2u, col, acc2);
    store_row(c_base, row + 3u, col, acc3);
    store_row(c_base, row + 4u, col, acc4);
    store_row(c_base, row + 5u, col, acc5);
    store_row(c_base, row + 6u, col, acc6);
    store_row(c_base, row + 7u, col, acc7);
    store_row(c_base, row + 8u, col, acc8);
    store_row(c_base, row + 9u, col, acc9);
    store_row(c_base, row + 10u, col, acc10);
    store_row(c_base, row + 11u, col, acc11);
    store_row(c_base, row + 12u, col, acc12);
    store_row(c_base, row + 13u, col, acc13);
    store_row(c_base, row + 14u, col, acc14);
    store_row(c_base, row + 15u, col, acc15);
}

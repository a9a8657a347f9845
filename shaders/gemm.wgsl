// gemm: C = alpha * op(A) * op(B) + beta * C, f32, for a batch of equal-sized
// products. op(X) is X or its transpose (TRANS_A / TRANS_B overrides).
//
// Register-tiled without workgroup memory: each invocation computes a block of
// TM rows x 4 columns of C, looping over k. The lanes of a workgroup share
// the same TM rows, so their reads of A are the same address in every lane
// (a broadcast on SIMD backends such as llvmpipe), and each lane reads its own
// four consecutive columns of B. Every index is guarded in-kernel, so the
// module is compiled without runtime bounds checks.
//
// Bindings: 0 params, 1 a, 2 b, 3 c (read-write).
// Dispatch: (ceil(N / (4 * WG)), ceil(M / TM), batch).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,         // row stride of A as stored
    ldb: u32,         // row stride of B as stored
    ldc: u32,
    stride_a: u32,    // elements between batch entries (0 broadcasts)
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override WG: u32 = 16u;
const TM: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn a_index(base: u32, row: u32, kk: u32) -> u32 {
    if (TRANS_A) {
        return base + kk * p.lda + row;
    }
    return base + row * p.lda + kk;
}

fn b_index(base: u32, kk: u32, col: u32) -> u32 {
    if (TRANS_B) {
        return base + col * p.ldb + kk;
    }
    return base + kk * p.ldb + col;
}

fn store(base: u32, row: u32, col: u32, v: f32) {
    let i = base + row * p.ldc + col;
    if (p.beta == 0.0) {
        c[i] = p.alpha * v;
    } else {
        c[i] = p.alpha * v + p.beta * c[i];
    }
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col0 = (wid.x * WG + lid.x) * 4u;
    let row0 = wid.y * TM;
    if (col0 >= p.n || row0 >= p.m) {
        return;
    }
    let a_base = wid.z * p.stride_a;
    let b_base = wid.z * p.stride_b;
    let c_base = wid.z * p.stride_c;
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    let full = row0 + TM <= p.m && col0 + 4u <= p.n;
    if (full) {
        for (var kk = 0u; kk < p.k; kk++) {
            let bv = vec4<f32>(
                b[b_index(b_base, kk, col0)],
                b[b_index(b_base, kk, col0 + 1u)],
                b[b_index(b_base, kk, col0 + 2u)],
                b[b_index(b_base, kk, col0 + 3u)],
            );
            for (var r = 0u; r < TM; r++) {
                acc[r] += a[a_index(a_base, row0 + r, kk)] * bv;
            }
        }
        for (var r = 0u; r < TM; r++) {
            for (var j = 0u; j < 4u; j++) {
                store(c_base, row0 + r, col0 + j, acc[r][j]);
            }
        }
        return;
    }
    // Edge tile: rows past M and columns past N read as zero and are not stored.
    let rows = min(TM, p.m - row0);
    let cols = min(4u, p.n - col0);
    for (var kk = 0u; kk < p.k; kk++) {
        var bv = vec4<f32>(0.0);
        for (var j = 0u; j < cols; j++) {
            bv[j] = b[b_index(b_base, kk, col0 + j)];
        }
        for (var r = 0u; r < rows; r++) {
            acc[r] += a[a_index(a_base, row0 + r, kk)] * bv;
        }
    }
    for (var r = 0u; r < rows; r++) {
        for (var j = 0u; j < cols; j++) {
            store(c_base, row0 + r, col0 + j, acc[r][j]);
        }
    }
}

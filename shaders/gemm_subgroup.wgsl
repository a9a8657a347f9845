// gemm for SIMD backends that run a subgroup as one vector (llvmpipe):
// C = alpha * op(A) * op(B) + beta * C, f32, for a batch of equal-sized
// products, with the same parameters and bindings as gemm.wgsl.
//
// On such a backend every load from a storage buffer costs a loop over the
// lanes, whether or not the lanes read the same address, so the cost of a
// product is mostly its loads. Here each lane computes 32 rows x 4 columns
// of C, and the 32 rows of A it needs are loaded once for the whole
// subgroup: lane l loads rows l, 8 + l, 16 + l and
// 24 + l, and subgroupBroadcast hands every row to every lane. Per 4 k that
// is 16 loads of A where a lane loading its own rows would need 128, beside
// the lane's own 4x4 block of B.
//
// Loads never branch: a row past M or a column past N is clamped onto the
// last one. That only feeds parts of the tile that are never stored (output
// row r depends on row r of A alone, column j on column j of B alone), so one
// loop serves interior and edge tiles alike.
// Requires the SUBGROUP feature and a workgroup of exactly 8 lanes in one
// subgroup (the launcher checks the adapter's subgroup size). Naga does not
// take `enable subgroups;` yet; it checks the feature itself.
//
// Bindings: 0 params, 1 a, 2 b (read as vec4 arrays), 3 c (read-write),
// 4 a and 5 b again (read as scalars: the same buffers).
// Dispatch: (ceil(N / 32), ceil(M / 32), batch).

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
    _pad0: u32,
    _pad1: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ALIGNED_A: bool = false;
override ALIGNED_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> a1: array<f32>;
@group(0) @binding(5) var<storage, read> b1: array<f32>;

var<private> a_base: u32;
var<private> b_base: u32;

// op(A)[row, kk..kk+4] for kk + 4 <= K (row clamped).
fn a_row4(row: u32, kk: u32) -> vec4<f32> {
    let r = min(row, p.m - 1u);
    if (TRANS_A) {
        let e = a_base + kk * p.lda + r;
        return vec4<f32>(a1[e], a1[e + p.lda], a1[e + 2u * p.lda], a1[e + 3u * p.lda]);
    }
    if (ALIGNED_A) {
        return a[(a_base + r * p.lda + kk) >> 2u];
    }
    let e = a_base + r * p.lda + kk;
    return vec4<f32>(a1[e], a1[e + 1u], a1[e + 2u], a1[e + 3u]);
}

// op(A)[row, kk] in the first component (row clamped).
fn a_one(row: u32, kk: u32) -> vec4<f32> {
    let r = min(row, p.m - 1u);
    if (TRANS_A) {
        return vec4<f32>(a1[a_base + kk * p.lda + r], 0.0, 0.0, 0.0);
    }
    return vec4<f32>(a1[a_base + r * p.lda + kk], 0.0, 0.0, 0.0);
}

// op(B)[kk, col..col+4] (columns clamped).
fn b_one4(kk: u32, col: u32) -> vec4<f32> {
    var v: vec4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let cj = min(col + j, p.n - 1u);
        if (TRANS_B) {
            v[j] = b1[b_base + cj * p.ldb + kk];
        } else {
            v[j] = b1[b_base + kk * p.ldb + cj];
        }
    }
    return v;
}

// Column t is op(B)[kk + t, col..col+4] for kk + 4 <= K (columns clamped).
fn b_block(kk: u32, col: u32) -> mat4x4<f32> {
    if (TRANS_B && ALIGNED_B) {
        var m: mat4x4<f32>;
        for (var j = 0u; j < 4u; j++) {
            m[j] = b[(b_base + min(col + j, p.n - 1u) * p.ldb + kk) >> 2u];
        }
        return transpose(m);
    }
    if (!TRANS_B && ALIGNED_B) {
        // N is a multiple of 4 here (ldb = N): a lane's columns are all
        // inside or all outside.
        let i = (b_base + kk * p.ldb + min(col, p.n - 4u)) >> 2u;
        let s = p.ldb >> 2u;
        return mat4x4<f32>(b[i], b[i + s], b[i + 2u * s], b[i + 3u * s]);
    }
    return mat4x4<f32>(b_one4(kk, col), b_one4(kk + 1u, col), b_one4(kk + 2u, col), b_one4(kk + 3u, col));
}

// Column j is the row of A that lane j (first_lane + j) loaded: four rows
// of the tile, for `B block * rows` to give four rows of C.
fn lanes_0_to_3(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}

fn lanes_4_to_7(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
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

fn store_rows(c_base: u32, row: u32, col: u32, rows: mat4x4<f32>) {
    store_row(c_base, row, col, rows[0]);
    store_row(c_base, row + 1u, col, rows[1]);
    store_row(c_base, row + 2u, col, rows[2]);
    store_row(c_base, row + 3u, col, rows[3]);
}

@compute @workgroup_size(8)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = lid.x;
    let col = (wid.x * 8u + lane) * 4u;
    let row = wid.y * 32u;
    a_base = p.offset_a + wid.z * p.stride_a;
    b_base = p.offset_b + wid.z * p.stride_b;
    // Column j of acc{i} is row 4i + j of the tile.
    var acc0 = mat4x4<f32>();
    var acc1 = mat4x4<f32>();
    var acc2 = mat4x4<f32>();
    var acc3 = mat4x4<f32>();
    var acc4 = mat4x4<f32>();
    var acc5 = mat4x4<f32>();
    var acc6 = mat4x4<f32>();
    var acc7 = mat4x4<f32>();

    let k_done = p.k & ~3u;
    for (var kk = 0u; kk < k_done; kk += 4u) {
        let bm = b_block(kk, col);
        let rows0 = a_row4(row + lane, kk);
        let rows1 = a_row4(row + 8u + lane, kk);
        let rows2 = a_row4(row + 16u + lane, kk);
        let rows3 = a_row4(row + 24u + lane, kk);
        acc0 += bm * lanes_0_to_3(rows0);
        acc1 += bm * lanes_4_to_7(rows0);
        acc2 += bm * lanes_0_to_3(rows1);
        acc3 += bm * lanes_4_to_7(rows1);
        acc4 += bm * lanes_0_to_3(rows2);
        acc5 += bm * lanes_4_to_7(rows2);
        acc6 += bm * lanes_0_to_3(rows3);
        acc7 += bm * lanes_4_to_7(rows3);
    }
    // The k tail, one k at a time: the same products with B and A padded
    // by zeros to 4 k. (The 8 updates are spelled out in both loops: an
    // accumulator array passed by pointer to a shared function measured 10%
    // slower at 512^3 and compiled many times slower on llvmpipe.)
    for (var kk = k_done; kk < p.k; kk++) {
        let bm = mat4x4<f32>(b_one4(kk, col), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        let rows0 = a_one(row + lane, kk);
        let rows1 = a_one(row + 8u + lane, kk);
        let rows2 = a_one(row + 16u + lane, kk);
        let rows3 = a_one(row + 24u + lane, kk);
        acc0 += bm * lanes_0_to_3(rows0);
        acc1 += bm * lanes_4_to_7(rows0);
        acc2 += bm * lanes_0_to_3(rows1);
        acc3 += bm * lanes_4_to_7(rows1);
        acc4 += bm * lanes_0_to_3(rows2);
        acc5 += bm * lanes_4_to_7(rows2);
        acc6 += bm * lanes_0_to_3(rows3);
        acc7 += bm * lanes_4_to_7(rows3);
    }

    let c_base = p.offset_c + wid.z * p.stride_c;
    store_rows(c_base, row, col, acc0);
    store_rows(c_base, row + 4u, col, acc1);
    store_rows(c_base, row + 8u, col, acc2);
    store_rows(c_base, row + 12u, col, acc3);
    store_rows(c_base, row + 16u, col, acc4);
    store_rows(c_base, row + 20u, col, acc5);
    store_rows(c_base, row + 24u, col, acc6);
    store_rows(c_base, row + 28u, col, acc7);
}

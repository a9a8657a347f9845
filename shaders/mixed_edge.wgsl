// Mixed edges of a supernet, y = sum_k w_k * x_k over K candidate outputs
// stacked as x[K][n], and the architecture weights w from parameters alpha:
// softmax (DARTS), sigmoid (FairDARTS) or a 0/1 mask (a sampled sub-network).
// A candidate whose weight is exactly zero is never read, so an inactive
// candidate's buffer may hold anything (NaN included) without effect.
// Also the architecture regularisers: FairDARTS zero-one loss, Gini and
// normalised-entropy purity of softmax(alpha), with their gradients.
//
// Weights and alpha are [rows][K]: one row per mixed edge, `p.row` picks it.
//
// Entry points, their bindings (0 is always the params; each entry point
// binds 1.. in order, so one binding number names different buffers in
// different entry points), and dispatch:
//   weights:        1 alpha, 2 w                        (ceil(rows / 64), 1, 1)
//   forward:        1 w, 2 x, 3 y                       grid_1d(ceil(n / 256))
//   backward:       1 w, 2 x, 3 dy, 4 dx, 5 partials    (K, groups, 1)
//   reduce_dw:      1 partials, 2 dw                    (1, 1, 1)
//   alpha_backward: 1 w, 2 dw, 3 dalpha                 (ceil(rows / 64), 1, 1)
//   regulariser:    1 alpha, 2 dalpha, 3 loss           (1, 1, 1)
//   multi_hot:      1 alpha, 2 dalpha, 3 loss           (1, 1, 1)
//   gate_forward:   1 p, 2 g, 3 w                       (ceil(rows * K / 64), 1, 1)
//   gate_backward:  1 p, 2 g, 3 dw, 4 dp, 5 dg          (ceil(rows / 64), 1, 1)
//
// The same edge over candidates held in separate tensors ("terms"), up to
// four per dispatch (params `q`: their columns of w and how many are used;
// an unused slot is bound to a tensor of the same access that it never reads):
//   terms_forward:  1 w, 2 y, 3..6 x_0..x_3             grid_1d(ceil(n / 256))
//   terms_dx:       1 dy, 2 w, 3..6 dx_0..dx_3          grid_1d(ceil(n / 256))
//   terms_dw:       1 dy, 2 partials, 3..6 x_0..x_3     (chunks, 1, 1)
//   terms_reduce:   1 partials, 2 dw                    (1, 1, 1)
//
// Edge gates (ForceDARTS): w[r, k] = p[r, k] * g[r] with p = softmax(alpha)
// and g = sigmoid(beta) one per row, and the multi-hot purity loss on beta
// (rows grouped by node: node i of a DARTS cell has i + 2 incoming edges).
// Every index is guarded in-kernel (the module is compiled trusted).

struct Params {
    n: u32,            // elements of one candidate
    k: u32,            // candidates per edge
    row: u32,          // which row of w / dw this edge uses
    rows: u32,         // rows of alpha / w / dw / dalpha
    groups: u32,       // workgroups of the backward pass (partials per candidate)
    mode: u32,         // 0 softmax, 1 sigmoid, 2 mask; regulariser: 0 zero-one, 1 gini, 2 entropy
    scale: f32,        // regulariser coefficient
    accumulate: u32,   // 1: dalpha += gradient, 0: dalpha = gradient
}

const WG: u32 = 256u;
// Candidates per edge (= p.k) as a pipeline constant for the forward, whose
// loop over candidates then unrolls.
override CANDIDATES: u32 = 1u;
// Elements per invocation per tile of the backward pass.
const PER_LANE: u32 = 4u;

// Params of the terms_* entry points.
struct TermsParams {
    n: u32,            // elements of one candidate
    k: u32,            // columns of w
    row: u32,          // which row of w / dw this edge uses
    count: u32,        // slots used, 1..4
    cols: vec4<u32>,   // the column of w of each slot
    accumulate: u32,   // terms_forward: 1 y += sum, 0 y = sum
    chunks: u32,       // workgroups of terms_dw (partials per slot)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> q: TermsParams;
// weights, regulariser
@group(0) @binding(1) var<storage, read> alpha: array<f32>;
@group(0) @binding(2) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> dalpha_reg: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
// forward, backward, alpha_backward
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
// reduce_dw, alpha_backward
@group(0) @binding(1) var<storage, read> partials_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read> dw_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> dalpha: array<f32>;

// gate_forward, gate_backward
@group(0) @binding(1) var<storage, read> gate_p: array<f32>;
@group(0) @binding(2) var<storage, read> gate_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> gated_w: array<f32>;
@group(0) @binding(3) var<storage, read> gated_dw: array<f32>;
@group(0) @binding(4) var<storage, read_write> gate_dp: array<f32>;
@group(0) @binding(5) var<storage, read_write> gate_dg: array<f32>;

// terms_*
@group(0) @binding(1) var<storage, read> terms_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> terms_y: array<f32>;
@group(0) @binding(2) var<storage, read> terms_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> terms_partials: array<f32>;
@group(0) @binding(3) var<storage, read> x0: array<f32>;
@group(0) @binding(4) var<storage, read> x1: array<f32>;
@group(0) @binding(5) var<storage, read> x2: array<f32>;
@group(0) @binding(6) var<storage, read> x3: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx0: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx1: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx2: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx3: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// w[r] = softmax / sigmoid / copy of alpha[r], one invocation per row.
@compute @workgroup_size(64)
fn weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.k;
    if (p.mode == 0u) {
        var top = alpha[base];
        for (var k = 1u; k < p.k; k++) {
            top = max(top, alpha[base + k]);
        }
        var total = 0.0;
        for (var k = 0u; k < p.k; k++) {
            total += exp(alpha[base + k] - top);
        }
        for (var k = 0u; k < p.k; k++) {
            w_out[base + k] = exp(alpha[base + k] - top) / total;
        }
    } else if (p.mode == 1u) {
        for (var k = 0u; k < p.k; k++) {
            w_out[base + k] = sigmoid(alpha[base + k]);
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            w_out[base + k] = alpha[base + k];
        }
    }
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n) {
        return;
    }
    let wbase = p.row * p.k;
    var acc = 0.0;
    for (var k = 0u; k < CANDIDATES; k++) {
        let wk = w[wbase + k];
        if (wk != 0.0) {
            acc += wk * x[k * p.n + i];
        }
    }
    y[i] = acc;
}

var<workgroup> sums: array<f32, WG>;

// dx_k = w_k * dy and, per workgroup, the partial dot product sum(dy * x_k)
// into partials[group][k]. Workgroup (k, group) walks tiles of WG * PER_LANE
// elements of candidate k; an inactive candidate is skipped whole. One
// candidate per workgroup keeps a single running sum per invocation and one
// reduction per workgroup (measured 1.8x faster on llvmpipe than every
// candidate per workgroup with one sum each).
@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = wid.x;
    let wk = w[p.row * p.k + k];
    var part = 0.0;
    if (wk != 0.0) {
        let tile = WG * PER_LANE;
        for (var start = wid.y * tile; start < p.n; start += nwg.y * tile) {
            for (var e = 0u; e < PER_LANE; e++) {
                let i = start + e * WG + lid.x;
                if (i < p.n) {
                    let g = dy[i];
                    dx[k * p.n + i] = wk * g;
                    part += g * x[k * p.n + i];
                }
            }
        }
    }
    sums[lid.x] = part;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            sums[lid.x] += sums[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partials[wid.y * p.k + k] = sums[0];
    }
}

// dw[row][k] = sum over groups of partials[group][k]; zero for inactive k.
@compute @workgroup_size(64)
fn reduce_dw(@builtin(local_invocation_id) lid: vec3<u32>) {
    for (var k = lid.x; k < p.k; k += 64u) {
        var total = 0.0;
        for (var g = 0u; g < p.groups; g++) {
            total += partials_in[g * p.k + k];
        }
        dw[p.row * p.k + k] = total;
    }
}

fn store_dalpha(i: u32, v: f32) {
    if (p.accumulate == 1u) {
        dalpha[i] += v;
    } else {
        dalpha[i] = v;
    }
}

fn store_dalpha_reg(i: u32, v: f32) {
    if (p.accumulate == 1u) {
        dalpha_reg[i] += v;
    } else {
        dalpha_reg[i] = v;
    }
}

// dalpha from dw through the softmax or sigmoid Jacobian, one row per invocation.
@compute @workgroup_size(64)
fn alpha_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.k;
    if (p.mode == 0u) {
        var dot = 0.0;
        for (var k = 0u; k < p.k; k++) {
            dot += w[base + k] * dw_in[base + k];
        }
        for (var k = 0u; k < p.k; k++) {
            store_dalpha(base + k, w[base + k] * (dw_in[base + k] - dot));
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            let s = w[base + k];
            store_dalpha(base + k, dw_in[base + k] * s * (1.0 - s));
        }
    }
}

var<workgroup> row_losses: array<f32, 64>;

// loss[0] = scale * L(alpha) and dalpha (+)= scale * dL/dalpha, where L is
// the zero-one loss -mean((sigmoid(alpha) - 0.5)^2) over all entries, or
// the mean over rows of Gini sum p(1 - p) / entropy -sum p ln p / ln K of
// p = softmax(row). One workgroup; invocation r handles rows r, r + 64, ...
@compute @workgroup_size(64)
fn regulariser(@builtin(local_invocation_id) lid: vec3<u32>) {
    var total = 0.0;
    let count = f32(p.rows * p.k);
    let log_k = log(f32(p.k));
    for (var r = lid.x; r < p.rows; r += 64u) {
        let base = r * p.k;
        if (p.mode == 0u) {
            for (var k = 0u; k < p.k; k++) {
                let s = sigmoid(alpha[base + k]);
                total -= (s - 0.5) * (s - 0.5) / count;
                store_dalpha_reg(base + k, p.scale * -2.0 * (s - 0.5) * s * (1.0 - s) / count);
            }
            continue;
        }
        var top = alpha[base];
        for (var k = 1u; k < p.k; k++) {
            top = max(top, alpha[base + k]);
        }
        var z = 0.0;
        for (var k = 0u; k < p.k; k++) {
            z += exp(alpha[base + k] - top);
        }
        // g_k = dL_row/dp_k; the softmax Jacobian gives p_k (g_k - sum_j p_j g_j).
        var row_loss = 0.0;
        var pg = 0.0;
        for (var k = 0u; k < p.k; k++) {
            let pk = exp(alpha[base + k] - top) / z;
            var g = 0.0;
            if (p.mode == 1u) {
                row_loss += pk * (1.0 - pk);
                g = 1.0 - 2.0 * pk;
            } else if (p.k > 1u) {
                let lp = select(0.0, log(pk), pk > 0.0);
                row_loss -= pk * lp / log_k;
                g = -(lp + 1.0) / log_k;
            }
            pg += pk * g;
        }
        total += row_loss / f32(p.rows);
        for (var k = 0u; k < p.k; k++) {
            let pk = exp(alpha[base + k] - top) / z;
            var g = 0.0;
            if (p.mode == 1u) {
                g = 1.0 - 2.0 * pk;
            } else if (p.k > 1u) {
                g = -(select(0.0, log(pk), pk > 0.0) + 1.0) / log_k;
            }
            store_dalpha_reg(base + k, p.scale * pk * (g - pg) / f32(p.rows));
        }
    }
    row_losses[lid.x] = total;
    workgroupBarrier();
    if (lid.x == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < 64u; i++) {
            sum += row_losses[i];
        }
        loss[0] = p.scale * sum;
    }
}

// The multi-hot loss of edge gates b = sigmoid(beta) ([rows, 1], p.n nodes,
// node i owning rows i(i+3)/2 .. + i + 2): per node, the purity (p.mode 1
// Gini sum q(1 - q), 2 entropy -sum q ln q / ln M) of the pair weights
// q_kl = b_k b_l / S over its M = m(m - 1) ordered pairs k != l, where
// S = sum_{u != v} b_u b_v; averaged over nodes, times p.scale. With
// G_kl = dL/dq_kl (symmetric), dL/db_j = (2 sum_{l != j} G_jl b_l
// - dS/db_j sum_{k != l} G_kl q_kl) / S and dS/db_j = 2 (sum b - b_j).
// One invocation per node.
@compute @workgroup_size(64)
fn multi_hot(@builtin(local_invocation_id) lid: vec3<u32>) {
    var total = 0.0;
    let nodes = f32(p.n);
    for (var node = lid.x; node < p.n; node += 64u) {
        let start = node * (node + 3u) / 2u;
        let m = node + 2u;
        let log_pairs = log(f32(m * (m - 1u)));
        var sum_b = 0.0;
        var sum_b2 = 0.0;
        for (var j = 0u; j < m; j++) {
            let b = sigmoid(alpha[start + j]);
            sum_b += b;
            sum_b2 += b * b;
        }
        let s = sum_b * sum_b - sum_b2;
        // The loss and sum_{k != l} G_kl q_kl.
        var node_loss = 0.0;
        var gq = 0.0;
        for (var k = 0u; k < m; k++) {
            for (var l = 0u; l < m; l++) {
                if (k == l) {
                    continue;
                }
                let q = sigmoid(alpha[start + k]) * sigmoid(alpha[start + l]) / s;
                var g = 0.0;
                if (p.mode == 1u) {
                    node_loss += q * (1.0 - q);
                    g = 1.0 - 2.0 * q;
                } else {
                    let lq = select(0.0, log(q), q > 0.0);
                    node_loss -= q * lq / log_pairs;
                    g = -(lq + 1.0) / log_pairs;
                }
                gq += g * q;
            }
        }
        total += node_loss / nodes;
        for (var j = 0u; j < m; j++) {
            let bj = sigmoid(alpha[start + j]);
            var cross = 0.0;
            for (var l = 0u; l < m; l++) {
                if (l == j) {
                    continue;
                }
                let bl = sigmoid(alpha[start + l]);
                let q = bj * bl / s;
                var g = 0.0;
                if (p.mode == 1u) {
                    g = 1.0 - 2.0 * q;
                } else {
                    g = -(select(0.0, log(q), q > 0.0) + 1.0) / log_pairs;
                }
                cross += g * bl;
            }
            let db = (2.0 * cross - 2.0 * (sum_b - bj) * gq) / s;
            store_dalpha_reg(start + j, p.scale * db * bj * (1.0 - bj) / nodes);
        }
    }
    row_losses[lid.x] = total;
    workgroupBarrier();
    if (lid.x == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < 64u; i++) {
            sum += row_losses[i];
        }
        loss[0] = p.scale * sum;
    }
}

// w[r, k] = p[r, k] * g[r], one invocation per entry.
@compute @workgroup_size(64)
fn gate_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.rows * p.k) {
        return;
    }
    gated_w[i] = gate_p[i] * gate_g[i / p.k];
}

// dp[r, k] = dw[r, k] * g[r] and dg[r] = sum_k dw[r, k] * p[r, k], one
// invocation per row.
@compute @workgroup_size(64)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.k;
    var dg = 0.0;
    for (var k = 0u; k < p.k; k++) {
        gate_dp[base + k] = gated_dw[base + k] * gate_g[r];
        dg += gated_dw[base + k] * gate_p[base + k];
    }
    gate_dg[r] = dg;
}

// y = (accumulate ? y : 0) + sum over the used slots s of w[row, cols[s]] * x_s.
@compute @workgroup_size(256)
fn terms_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= q.n) {
        return;
    }
    let wbase = q.row * q.k;
    var acc = 0.0;
    if (q.accumulate == 1u) {
        acc = terms_y[i];
    }
    acc += w[wbase + q.cols.x] * x0[i];
    if (q.count > 1u) {
        acc += w[wbase + q.cols.y] * x1[i];
    }
    if (q.count > 2u) {
        acc += w[wbase + q.cols.z] * x2[i];
    }
    if (q.count > 3u) {
        acc += w[wbase + q.cols.w] * x3[i];
    }
    terms_y[i] = acc;
}

// dx_s = w[row, cols[s]] * dy for the used slots.
@compute @workgroup_size(256)
fn terms_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= q.n) {
        return;
    }
    let wbase = q.row * q.k;
    let g = terms_dy[i];
    dx0[i] = terms_w[wbase + q.cols.x] * g;
    if (q.count > 1u) {
        dx1[i] = terms_w[wbase + q.cols.y] * g;
    }
    if (q.count > 2u) {
        dx2[i] = terms_w[wbase + q.cols.z] * g;
    }
    if (q.count > 3u) {
        dx3[i] = terms_w[wbase + q.cols.w] * g;
    }
}

var<workgroup> term_sums: array<vec4<f32>, WG>;

// Workgroup c writes sum(dy * x_s) over elements c * 256 + lane, strided by
// chunks * 256, to partials[s * chunks + c]. All slots share one read of dy
// and one tree sum (of vec4s), so a group of terms costs one reduction.
@compute @workgroup_size(256)
fn terms_dw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var part = vec4<f32>(0.0);
    for (var i = wid.x * WG + lid.x; i < q.n; i += q.chunks * WG) {
        let g = terms_dy[i];
        part.x += g * x0[i];
        if (q.count > 1u) {
            part.y += g * x1[i];
        }
        if (q.count > 2u) {
            part.z += g * x2[i];
        }
        if (q.count > 3u) {
            part.w += g * x3[i];
        }
    }
    term_sums[lid.x] = part;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            term_sums[lid.x] += term_sums[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x < q.count) {
        terms_partials[lid.x * q.chunks + wid.x] = term_sums[0][lid.x];
    }
}

// dw[row, cols[s]] = sum over c of partials[s * chunks + c], in order, so
// the same inputs give the same bits.
@compute @workgroup_size(64)
fn terms_reduce(@builtin(local_invocation_id) lid: vec3<u32>) {
    let s = lid.x;
    if (s >= q.count) {
        return;
    }
    var total = 0.0;
    for (var c = 0u; c < q.chunks; c++) {
        total += partials_in[s * q.chunks + c];
    }
    dw[q.row * q.k + q.cols[s]] = total;
}

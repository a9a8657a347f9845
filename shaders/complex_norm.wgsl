// Complex batch normalisation (Deep Complex Networks, Trabelsi et al. 2018)
// over the channels of x [batch, channels, spatial] complex values, stored
// as interleaved (re, im) pairs (vec2<f32>).
//
// Per channel the N = batch * spatial values z are centred, xc = z - mean,
// and whitened, xhat = W xc, with W = V^{-1/2} of their 2x2 covariance
// V = [[a, b], [b, c]] (a and c plus eps), in closed form: s = sqrt(det V),
// t = sqrt(a + c + 2 s), W = [[c + s, -b], [-b, a + s]] / (s t). The affine
// norm then writes y = G xhat + beta, G = [[grr, gri], [gri, gii]].
//
// Like batchnorm.wgsl, every reduction ends its kernel: on CPU adapters
// (llvmpipe) a loop after a workgroup barrier runs several times slower.
//
// train_statistics: one workgroup per channel sums d = z - K, d d^T (K, the
//   channel's first value, keeps the covariance accurate without a second
//   pass), saves [mean (2), W (rr, ri, ii), V (a, b, c; with eps)] per
//   channel, and moves the running mean and running (unbiased, eps-free)
//   covariance towards the batch's by `momentum` (momentum 0 leaves them
//   untouched, bit for bit).
// normalize: one workgroup per (image, channel) row writes
//   y = G W (z - mean) + beta with the saved statistics, or with the running
//   ones when RUNNING (W from the running covariance + eps I).
// gradient_sums: one workgroup per channel reduces sum(dy) (= dbeta) and
//   M = sum dy xc^T; lane 0 writes dgamma (from M W) and dbeta, and the
//   coefficients of dx = A dy + B xc + d for input_gradient: A = W G,
//   B = [[2 ga, gb], [gb, 2 gc]] / N from the gradient (ga, gb, gc) of the
//   loss with respect to V, d = -A sum(dy) / N.
// input_gradient: one workgroup per row writes dx from those coefficients.
// infer_backward: the backward of the inference forward (statistics held
//   fixed): one workgroup per channel writes dx = W G dy and reduces
//   dgamma and dbeta in the same pass.
// AFFINE = false is the non-affine norm (G = I, beta = 0; the launcher binds
// stand-ins for gamma and beta that are not read; dgamma and dbeta are still
// written, into scratch).
//
// Bindings (0 is params):
//   train_statistics: 1 x, 2 saved (rw, [channels, 8]), 3 running_mean (rw,
//                     [channels, 2]), 4 running_cov (rw, [channels, 3])
//   normalize:        1 x, 2 gamma ([channels, 3]), 3 beta ([channels, 2]),
//                     4 y (rw), 5 mean, 6 spread: saved (bound at both) or,
//                     when RUNNING, running_mean and running_cov
//   gradient_sums:    1 x, 2 dy, 3 saved, 4 gamma, 5 dgamma (rw), 6 dbeta (rw),
//                     7 coefficients (rw, [channels, 3] vec4)
//   input_gradient:   1 x, 2 dy, 3 coefficients, 4 dx (rw)
//   infer_backward:   1 x, 2 dy, 3 running_mean, 4 gamma, 5 dgamma (rw),
//                     6 dbeta (rw), 7 dx (rw), 8 running_cov
// Dispatch: the per-channel kernels grid_1d(channels) with LANES lanes; the
// per-row kernels grid_1d(batch * channels) with ROW_LANES lanes.

struct Params {
    batch: u32,
    channels: u32,
    spatial: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override AFFINE: bool = true;
// normalize: read the running statistics (mean, covariance) rather than the
// saved batch statistics.
override RUNNING: bool = false;
// Lanes per row in the per-row kernels, chosen by the launcher.
override ROW_LANES: u32 = 64u;
const LANES: u32 = 64u;
// Floats saved per channel: mean (2), W (3), V (3).
const SAVED: u32 = 8u;
// vec4s of dx coefficients per channel: A, B (rr, ri, ii, unused), (mean, d).
const COEFFICIENTS: u32 = 3u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;

// train_statistics
@group(0) @binding(2) var<storage, read_write> saved_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_cov: array<f32>;

// normalize
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> stat_mean: array<f32>;
@group(0) @binding(6) var<storage, read> stat_spread: array<f32>;

// gradient_sums, input_gradient and infer_backward
@group(0) @binding(2) var<storage, read> dy: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> stats_in: array<f32>;
@group(0) @binding(3) var<storage, read> coefficients_in: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> gamma_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> coefficients_out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dx_frozen: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read> frozen_cov: array<f32>;

// Six sums per lane: `a` and `b` hold whatever the kernel reduces.
struct Sums {
    a: vec4<f32>,
    b: vec2<f32>,
}

var<workgroup> lane_a: array<vec4<f32>, LANES>;
var<workgroup> lane_b: array<vec2<f32>, LANES>;

// A lane's walk over the values m = lane, lane + LANES, ... of a channel,
// kept as (image, position) and advanced without dividing (see batchnorm.wgsl).
struct Cursor {
    image: u32,
    pos: u32,
}

fn first(lane: u32) -> Cursor {
    return Cursor(lane / p.spatial, lane % p.spatial);
}

// `step` is first(LANES), worked out once per loop.
fn next(cur: Cursor, step: Cursor) -> Cursor {
    var n = Cursor(cur.image + step.image, cur.pos + step.pos);
    if (n.pos >= p.spatial) {
        n.pos -= p.spatial;
        n.image += 1u;
    }
    return n;
}

// The index in x (in complex values) of the cursor's value of channel c.
fn element(c: u32, cur: Cursor) -> u32 {
    return (cur.image * p.channels + c) * p.spatial + cur.pos;
}

// Sums `value` over the workgroup; every lane gets the total. Call it last.
fn workgroup_sum(lane: u32, value: Sums) -> Sums {
    lane_a[lane] = value.a;
    lane_b[lane] = value.b;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            lane_a[lane] += lane_a[lane + stride];
            lane_b[lane] += lane_b[lane + stride];
        }
        workgroupBarrier();
    }
    return Sums(lane_a[0], lane_b[0]);
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// 2x2 matrices: a general one as vec4 (rr, ri, ir, ii), row by row; a
// symmetric one as vec3 (rr, ri, ii).
fn full(m: vec3<f32>) -> vec4<f32> {
    return vec4<f32>(m.x, m.y, m.y, m.z);
}

fn matmul(l: vec4<f32>, r: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        l.x * r.x + l.y * r.z,
        l.x * r.y + l.y * r.w,
        l.z * r.x + l.w * r.z,
        l.z * r.y + l.w * r.w,
    );
}

fn apply(m: vec4<f32>, v: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(m.x * v.x + m.y * v.y, m.z * v.x + m.w * v.y);
}

// sqrt(det V) and t = sqrt(a + c + 2 s). det V >= eps^2 in exact arithmetic
// (the eps-free part is a Gram determinant); the floor keeps rounding from
// taking it to zero on perfectly correlated input.
fn root_det(v: vec3<f32>) -> vec2<f32> {
    let s = sqrt(max(v.x * v.z - v.y * v.y, p.eps * p.eps));
    return vec2<f32>(s, sqrt(v.x + v.z + 2.0 * s));
}

// W = V^{-1/2} of V = (a, b, c), as (rr, ri, ii).
fn whitening(v: vec3<f32>) -> vec3<f32> {
    let st = root_det(v);
    let u = 1.0 / (st.x * st.y);
    return vec3<f32>((v.z + st.x) * u, -v.y * u, (v.x + st.x) * u);
}

// The gradient with respect to V's (a, b, c) from the one with respect to
// W's (rr, ri, ii), ri counting both off-diagonal entries once.
fn whitening_backward(v: vec3<f32>, gw: vec3<f32>) -> vec3<f32> {
    let a = v.x;
    let b = v.y;
    let c = v.z;
    let st = root_det(v);
    let s = st.x;
    let t = st.y;
    let u = 1.0 / (s * t);
    let gu = gw.x * (c + s) + gw.z * (a + s) - gw.y * b;
    var ga = gw.z * u;
    var gb = -gw.y * u;
    var gc = gw.x * u;
    let gt = -gu * u / t;
    var gs = (gw.x + gw.z) * u - gu * u / s + gt / t;
    ga += gt / (2.0 * t) + gs * c / (2.0 * s);
    gc += gt / (2.0 * t) + gs * a / (2.0 * s);
    gb -= gs * b / s;
    return vec3<f32>(ga, gb, gc);
}

// G of channel c as a general matrix; the identity for a non-affine norm.
fn gamma_matrix(c: u32) -> vec4<f32> {
    if (AFFINE) {
        return full(vec3<f32>(gamma_in[3u * c], gamma_in[3u * c + 1u], gamma_in[3u * c + 2u]));
    }
    return vec4<f32>(1.0, 0.0, 0.0, 1.0);
}

// dgamma from P = M W (M = sum dy xc^T), dbeta = sum(dy).
fn write_affine_grads(c: u32, m: vec4<f32>, w: vec3<f32>, sum_dy: vec2<f32>) {
    let pm = matmul(m, full(w));
    dgamma[3u * c] = pm.x;
    dgamma[3u * c + 1u] = pm.y + pm.z;
    dgamma[3u * c + 2u] = pm.w;
    dbeta[2u * c] = sum_dy.x;
    dbeta[2u * c + 1u] = sum_dy.y;
}

@compute @workgroup_size(LANES)
fn train_statistics(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let shift = x[c * p.spatial];
    let step = first(LANES);
    var sums = Sums(vec4<f32>(0.0), vec2<f32>(0.0));
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let d = x[element(c, cur)] - shift;
        sums.a += vec4<f32>(d, d * d);
        sums.b.x += d.x * d.y;
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        let count = p.batch * p.spatial;
        let n = f32(count);
        let mean_shifted = total.a.xy / n;
        let var_r = max(total.a.z / n - mean_shifted.x * mean_shifted.x, 0.0);
        let var_i = max(total.a.w / n - mean_shifted.y * mean_shifted.y, 0.0);
        let cov_ri = total.b.x / n - mean_shifted.x * mean_shifted.y;
        let mean = shift + mean_shifted;
        let v = vec3<f32>(var_r + p.eps, cov_ri, var_i + p.eps);
        let w = whitening(v);
        let o = SAVED * c;
        saved_out[o] = mean.x;
        saved_out[o + 1u] = mean.y;
        saved_out[o + 2u] = w.x;
        saved_out[o + 3u] = w.y;
        saved_out[o + 4u] = w.z;
        saved_out[o + 5u] = v.x;
        saved_out[o + 6u] = v.y;
        saved_out[o + 7u] = v.z;
        if (p.momentum != 0.0) {
            let keep = 1.0 - p.momentum;
            let unbias = n / f32(max(count, 2u) - 1u);
            running_mean[2u * c] = keep * running_mean[2u * c] + p.momentum * mean.x;
            running_mean[2u * c + 1u] = keep * running_mean[2u * c + 1u] + p.momentum * mean.y;
            running_cov[3u * c] = keep * running_cov[3u * c] + p.momentum * var_r * unbias;
            running_cov[3u * c + 1u] = keep * running_cov[3u * c + 1u] + p.momentum * cov_ri * unbias;
            running_cov[3u * c + 2u] = keep * running_cov[3u * c + 2u] + p.momentum * var_i * unbias;
        }
    }
}

@compute @workgroup_size(ROW_LANES)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= p.batch * p.channels) {
        return;
    }
    let c = row % p.channels;
    var mean: vec2<f32>;
    var w: vec3<f32>;
    if (RUNNING) {
        mean = vec2<f32>(stat_mean[2u * c], stat_mean[2u * c + 1u]);
        w = whitening(vec3<f32>(
            stat_spread[3u * c] + p.eps,
            stat_spread[3u * c + 1u],
            stat_spread[3u * c + 2u] + p.eps,
        ));
    } else {
        let o = SAVED * c;
        mean = vec2<f32>(stat_mean[o], stat_mean[o + 1u]);
        w = vec3<f32>(stat_spread[o + 2u], stat_spread[o + 3u], stat_spread[o + 4u]);
    }
    var m = full(w);
    var shift = vec2<f32>(0.0);
    if (AFFINE) {
        m = matmul(full(vec3<f32>(gamma[3u * c], gamma[3u * c + 1u], gamma[3u * c + 2u])), m);
        shift = vec2<f32>(beta[2u * c], beta[2u * c + 1u]);
    }
    // z - mean first, as in batchnorm.wgsl: folding the mean into the shift
    // cancels when the mean is large.
    let base = row * p.spatial;
    for (var s = lid.x; s < p.spatial; s += ROW_LANES) {
        y[base + s] = apply(m, x[base + s] - mean) + shift;
    }
}

@compute @workgroup_size(LANES)
fn gradient_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let o = SAVED * c;
    let mean = vec2<f32>(stats_in[o], stats_in[o + 1u]);
    let step = first(LANES);
    var sums = Sums(vec4<f32>(0.0), vec2<f32>(0.0));
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let g = dy[i];
        let xc = x[i] - mean;
        sums.a += vec4<f32>(g.x * xc, g.y * xc);
        sums.b += g;
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        let w = vec3<f32>(stats_in[o + 2u], stats_in[o + 3u], stats_in[o + 4u]);
        let v = vec3<f32>(stats_in[o + 5u], stats_in[o + 6u], stats_in[o + 7u]);
        let g = gamma_matrix(c);
        write_affine_grads(c, total.a, w, total.b);
        let n = f32(p.batch * p.spatial);
        let a_mat = matmul(full(w), g);
        // The loss's gradient with respect to W: G M, its two off-diagonal
        // entries summed for the symmetric parameter.
        let gm = matmul(g, total.a);
        let gv = whitening_backward(v, vec3<f32>(gm.x, gm.y + gm.z, gm.w));
        let q = COEFFICIENTS * c;
        coefficients_out[q] = a_mat;
        coefficients_out[q + 1u] = vec4<f32>(2.0 * gv.x, gv.y, 2.0 * gv.z, 0.0) / n;
        coefficients_out[q + 2u] = vec4<f32>(mean, -apply(a_mat, total.b) / n);
    }
}

@compute @workgroup_size(ROW_LANES)
fn input_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= p.batch * p.channels) {
        return;
    }
    let q = COEFFICIENTS * (row % p.channels);
    let a_mat = coefficients_in[q];
    let b_mat = full(coefficients_in[q + 1u].xyz);
    let mean = coefficients_in[q + 2u].xy;
    let d = coefficients_in[q + 2u].zw;
    let base = row * p.spatial;
    for (var s = lid.x; s < p.spatial; s += ROW_LANES) {
        let i = base + s;
        dx[i] = apply(a_mat, dy[i]) + apply(b_mat, x[i] - mean) + d;
    }
}

@compute @workgroup_size(LANES)
fn infer_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let mean = vec2<f32>(stats_in[2u * c], stats_in[2u * c + 1u]);
    let w = whitening(vec3<f32>(
        frozen_cov[3u * c] + p.eps,
        frozen_cov[3u * c + 1u],
        frozen_cov[3u * c + 2u] + p.eps,
    ));
    let a_mat = matmul(full(w), gamma_matrix(c));
    let step = first(LANES);
    var sums = Sums(vec4<f32>(0.0), vec2<f32>(0.0));
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let g = dy[i];
        let xc = x[i] - mean;
        sums.a += vec4<f32>(g.x * xc, g.y * xc);
        sums.b += g;
        dx_frozen[i] = apply(a_mat, g);
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        write_affine_grads(c, total.a, w, total.b);
    }
}

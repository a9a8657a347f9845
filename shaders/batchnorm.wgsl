// Batch normalisation over the channels of x [batch, channels, spatial]
// (spatial = the product of the trailing dimensions).
//
// train_forward: one workgroup per channel computes the batch mean and the
//   biased variance (two passes for accuracy), normalises its channel, saves
//   (mean, 1/sqrt(var + eps)) for backward, and moves the running mean and
//   the running (unbiased) variance towards the batch's by `momentum`.
// infer_forward: one invocation per element, with the running statistics.
// train_backward: one workgroup per channel reduces sum(dy) (= dbeta) and
//   sum(dy * xhat) (= dgamma), then writes
//   dx = gamma * invstd / N * (N dy - sum(dy) - xhat sum(dy * xhat)).
// infer_backward: the backward of infer_forward (statistics held fixed): one
//   workgroup per channel writes dx = gamma * invstd * dy and reduces
//   sum(dy) (= dbeta) and sum(dy * xhat) (= dgamma).
// AFFINE = false is the non-affine norm (gamma = 1, beta = 0; the launcher
// binds stand-ins that are not read).
//
// Bindings (0 is params):
//   train_forward:  1 x, 2 gamma, 3 beta, 4 y (rw), 5 saved (rw, [2, channels]),
//                   6 running_mean (rw), 7 running_var (rw)
//   infer_forward:  1 x, 2 gamma, 3 beta, 4 y (rw), 5 running_mean, 6 running_var
//   train_backward: 1 x, 2 dy, 3 saved, 4 gamma, 5 dx (rw), 6 dgamma (rw), 7 dbeta (rw)
//   infer_backward: 1 x, 2 dy, 3 running_mean, 4 gamma, 5 dx (rw), 6 dgamma (rw),
//                   7 dbeta (rw), 8 running_var
// Dispatch: train_forward, train_backward and infer_backward grid_1d(channels), 64 lanes;
// infer_forward grid_1d(ceil(len / 64)).

struct Params {
    batch: u32,
    channels: u32,
    spatial: u32,
    len: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

override AFFINE: bool = true;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> running_var: array<f32>;

@group(0) @binding(5) var<storage, read> running_mean_in: array<f32>;
@group(0) @binding(6) var<storage, read> running_var_in: array<f32>;

@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> saved_in: array<f32>;
@group(0) @binding(4) var<storage, read> gamma_for_dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<f32>;

@group(0) @binding(3) var<storage, read> frozen_mean: array<f32>;
@group(0) @binding(8) var<storage, read> frozen_var: array<f32>;

var<workgroup> lane_sums: array<vec2<f32>, LANES>;

// A lane's walk over the elements m = lane, lane + LANES, ... of a channel,
// kept as (image, position) and advanced without dividing: an integer
// division per element cost more than the arithmetic itself on CPU adapters.
struct Cursor {
    image: u32,
    pos: u32,
}

fn first(lane: u32) -> Cursor {
    return Cursor(lane / p.spatial, lane % p.spatial);
}

// `step` is first(LANES): how far a cursor moves per iteration, worked out
// once per loop rather than per element.
fn next(cur: Cursor, step: Cursor) -> Cursor {
    var n = Cursor(cur.image + step.image, cur.pos + step.pos);
    if (n.pos >= p.spatial) {
        n.pos -= p.spatial;
        n.image += 1u;
    }
    return n;
}

// The index in x of the cursor's element of channel c.
fn element(c: u32, cur: Cursor) -> u32 {
    return (cur.image * p.channels + c) * p.spatial + cur.pos;
}

// Sums `value` over the workgroup; every lane gets the total.
fn workgroup_sum(lane: u32, value: vec2<f32>) -> vec2<f32> {
    lane_sums[lane] = value;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            lane_sums[lane] += lane_sums[lane + stride];
        }
        workgroupBarrier();
    }
    let total = lane_sums[0];
    workgroupBarrier();
    return total;
}

fn channel_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(LANES)
fn train_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = channel_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let count = p.batch * p.spatial;
    let step = first(LANES);
    var s = 0.0;
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        s += x[element(c, cur)];
    }
    let mean = workgroup_sum(lid.x, vec2<f32>(s, 0.0)).x / f32(count);
    var sq = 0.0;
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let d = x[element(c, cur)] - mean;
        sq += d * d;
    }
    let variance = workgroup_sum(lid.x, vec2<f32>(sq, 0.0)).x / f32(count);
    let invstd = inverseSqrt(variance + p.eps);
    var scale = invstd;
    var shift = -mean * invstd;
    if (AFFINE) {
        scale = gamma[c] * invstd;
        shift = beta[c] - mean * scale;
    }
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        y[i] = x[i] * scale + shift;
    }
    if (lid.x == 0u) {
        saved_out[c] = mean;
        saved_out[p.channels + c] = invstd;
        let unbiased = variance * f32(count) / f32(max(count, 2u) - 1u);
        running_mean[c] = mix(running_mean[c], mean, p.momentum);
        running_var[c] = mix(running_var[c], unbiased, p.momentum);
    }
}

@compute @workgroup_size(LANES)
fn infer_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * LANES + lid.x;
    if (i >= p.len) {
        return;
    }
    let c = (i / p.spatial) % p.channels;
    var scale = inverseSqrt(running_var_in[c] + p.eps);
    var shift = -running_mean_in[c] * scale;
    if (AFFINE) {
        scale *= gamma[c];
        shift = beta[c] + shift * gamma[c];
    }
    y[i] = x[i] * scale + shift;
}

@compute @workgroup_size(LANES)
fn train_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = channel_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let count = p.batch * p.spatial;
    let step = first(LANES);
    let mean = saved_in[c];
    let invstd = saved_in[p.channels + c];
    var sums = vec2<f32>(0.0);
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let g = dy[i];
        sums += vec2<f32>(g, g * (x[i] - mean) * invstd);
    }
    let total = workgroup_sum(lid.x, sums);
    var g_scale = invstd;
    if (AFFINE) {
        g_scale *= gamma_for_dx[c];
    }
    let n = f32(count);
    let mean_dy = total.x / n;
    let mean_dy_xhat = total.y / n;
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let xhat = (x[i] - mean) * invstd;
        dx[i] = g_scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
    }
    if (lid.x == 0u) {
        dgamma[c] = total.y;
        dbeta[c] = total.x;
    }
}

@compute @workgroup_size(LANES)
fn infer_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = channel_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let step = first(LANES);
    let mean = frozen_mean[c];
    let invstd = inverseSqrt(frozen_var[c] + p.eps);
    var g_scale = invstd;
    if (AFFINE) {
        g_scale *= gamma_for_dx[c];
    }
    var sums = vec2<f32>(0.0);
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let g = dy[i];
        sums += vec2<f32>(g, g * (x[i] - mean) * invstd);
        dx[i] = g_scale * g;
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        dgamma[c] = total.y;
        dbeta[c] = total.x;
    }
}

// Batch normalisation over the channels of x [batch, channels, spatial]
// (spatial = the product of the trailing dimensions).
//
// Every reduction ends its kernel, and the elementwise passes that need its
// result are kernels of their own: on CPU adapters (llvmpipe) a workgroup
// barrier turns the kernel into coroutines, and a loop after a barrier ran
// 3-4x slower than the same loop before one.
//
// train_statistics: one workgroup per channel sums x - K and (x - K)^2 in
//   one pass (K, the channel's first element, keeps the variance accurate
//   without a second pass over the mean), saves (mean, 1/sqrt(var + eps)),
//   and moves the running mean and the running (unbiased) variance towards
//   the batch's by `momentum`.
// normalize: one workgroup per (image, channel) row writes
//   y = gamma * (x - mean) * invstd + beta, with the batch statistics saved by
//   train_statistics, or with the running statistics when RUNNING.
// gradient_sums: one workgroup per channel reduces sum(dy) (= dbeta) and
//   sum(dy * xhat) (= dgamma) from the saved statistics.
// input_gradient: one workgroup per row writes
//   dx = gamma * invstd / N * (N dy - sum(dy) - xhat sum(dy * xhat)).
// infer_backward: the backward of the inference forward (statistics held
//   fixed): one workgroup per channel writes dx = gamma * invstd * dy and
//   reduces sum(dy) (= dbeta) and sum(dy * xhat) (= dgamma) in one pass.
// AFFINE = false is the non-affine norm (gamma = 1, beta = 0; the launcher
// binds stand-ins that are not read). FROM_OUTPUT (gradient_sums and
// input_gradient of a non-affine norm): binding 1 is the forward's output,
// xhat itself, rather than x, so the forward's input need not be kept.
//
// Bindings (0 is params):
//   train_statistics: 1 x, 5 saved (rw, [2, channels]), 6 running_mean (rw),
//                     7 running_var (rw)
//   normalize:        1 x, 2 gamma, 3 beta, 4 y (rw), 8 mean, 9 spread: the
//                     saved statistics ([2, channels], bound at both) or, when
//                     RUNNING, running_mean and running_var
//   gradient_sums:    1 x (xhat when FROM_OUTPUT), 2 dy, 3 saved, 6 dgamma (rw), 7 dbeta (rw)
//   input_gradient:   1 x (xhat when FROM_OUTPUT), 2 dy, 3 saved, 4 gamma, 5 dx (rw), 10 dgamma, 11 dbeta
//   infer_backward:   1 x, 2 dy, 3 running_mean, 4 gamma, 5 dx (rw), 6 dgamma (rw),
//                     7 dbeta (rw), 8 running_var
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
// gradient_sums, input_gradient: binding 1 holds xhat (the non-affine
// output) rather than x.
override FROM_OUTPUT: bool = false;
// normalize: read the running statistics (mean, var) rather than the saved
// batch statistics (mean, invstd).
override RUNNING: bool = false;
// Lanes per row in the per-row kernels, chosen by the launcher.
override ROW_LANES: u32 = 64u;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;

// train_statistics
@group(0) @binding(2) var<storage, read_write> saved_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;

// normalize
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> stat_mean: array<f32>;
@group(0) @binding(6) var<storage, read> stat_spread: array<f32>;

// gradient_sums, input_gradient and infer_backward
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> saved_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum_dy_xhat_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> sum_dy_out: array<f32>;
@group(0) @binding(4) var<storage, read> gamma_for_dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read> sum_dy_xhat_in: array<f32>;
@group(0) @binding(7) var<storage, read> sum_dy_in: array<f32>;
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

// Sums `value` over the workgroup; every lane gets the total. Call it last:
// see the top of the file.
fn workgroup_sum(lane: u32, value: vec2<f32>) -> vec2<f32> {
    lane_sums[lane] = value;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            lane_sums[lane] += lane_sums[lane + stride];
        }
        workgroupBarrier();
    }
    return lane_sums[0];
}

// The workgroup's index in a 1-D grid folded into two dimensions.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(LANES)
fn train_statistics(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let shift = x[c * p.spatial];
    let step = first(LANES);
    var sums = vec2<f32>(0.0);
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let d = x[element(c, cur)] - shift;
        sums += vec2<f32>(d, d * d);
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        let count = p.batch * p.spatial;
        let n = f32(count);
        let mean_shifted = total.x / n;
        let variance = max(total.y / n - mean_shifted * mean_shifted, 0.0);
        let mean = shift + mean_shifted;
        saved_out[c] = mean;
        saved_out[p.channels + c] = inverseSqrt(variance + p.eps);
        let unbiased = variance * n / f32(max(count, 2u) - 1u);
        running_mean[c] = mix(running_mean[c], mean, p.momentum);
        running_var[c] = mix(running_var[c], unbiased, p.momentum);
    }
}

@compute @workgroup_size(ROW_LANES)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= p.batch * p.channels) {
        return;
    }
    let c = row % p.channels;
    let mean = stat_mean[c];
    var invstd: f32;
    if (RUNNING) {
        invstd = inverseSqrt(stat_spread[c] + p.eps);
    } else {
        invstd = stat_spread[p.channels + c];
    }
    var scale = invstd;
    var shift = 0.0;
    if (AFFINE) {
        scale *= gamma[c];
        shift = beta[c];
    }
    // x - mean first: x * scale + (shift - mean * scale) cancels when the
    // mean is large.
    let base = row * p.spatial;
    for (var s = lid.x; s < p.spatial; s += ROW_LANES) {
        y[base + s] = (x[base + s] - mean) * scale + shift;
    }
}

@compute @workgroup_size(LANES)
fn gradient_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
    if (c >= p.channels) {
        return;
    }
    let step = first(LANES);
    let mean = saved_in[c];
    let invstd = saved_in[p.channels + c];
    var sums = vec2<f32>(0.0);
    for (var cur = first(lid.x); cur.image < p.batch; cur = next(cur, step)) {
        let i = element(c, cur);
        let g = dy[i];
        if (FROM_OUTPUT) {
            sums += vec2<f32>(g, g * x[i]);
        } else {
            sums += vec2<f32>(g, g * (x[i] - mean) * invstd);
        }
    }
    let total = workgroup_sum(lid.x, sums);
    if (lid.x == 0u) {
        sum_dy_xhat_out[c] = total.y;
        sum_dy_out[c] = total.x;
    }
}

@compute @workgroup_size(ROW_LANES)
fn input_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= p.batch * p.channels) {
        return;
    }
    let c = row % p.channels;
    let mean = saved_in[c];
    let invstd = saved_in[p.channels + c];
    var g_scale = invstd;
    if (AFFINE) {
        g_scale *= gamma_for_dx[c];
    }
    let n = f32(p.batch * p.spatial);
    let mean_dy = sum_dy_in[c] / n;
    let mean_dy_xhat = sum_dy_xhat_in[c] / n;
    let base = row * p.spatial;
    for (var s = lid.x; s < p.spatial; s += ROW_LANES) {
        let i = base + s;
        var xhat = x[i];
        if (!FROM_OUTPUT) {
            xhat = (x[i] - mean) * invstd;
        }
        dx[i] = g_scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
    }
}

@compute @workgroup_size(LANES)
fn infer_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = group_index(wid, nwg);
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

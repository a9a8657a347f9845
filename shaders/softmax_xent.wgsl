// Softmax cross-entropy over the classes of logits [batch, classes] with u32
// labels [batch] and optional label smoothing eps (the target is
// (1 - eps) * one_hot(label) + eps / classes). Per sample it writes the loss
// lse(z) - sum_j target_j * z_j, the gradient of the mean loss
// (softmax(z) - target) / batch, and counts the samples whose first largest
// logit is the label. Numerically stable: exponentials are of z - max(z).
// A label >= classes gives a NaN loss and is never counted correct.
//
// Entry points and bindings (0 is always params):
//   xent_lanes      1 logits, 2 labels, 3 loss (rw), 4 grad (rw),
//   xent_workgroup  5 correct (atomic u32, cleared before)
//       xent_lanes: one invocation per sample, for few classes;
//       grid_1d(ceil(batch / 64)) workgroups of 64.
//       xent_workgroup: one workgroup of 64 per sample, lanes stride over the
//       classes; grid_1d(batch) workgroups.
//   xent_mean       1 loss, 2 mean (rw); one workgroup of 256:
//       mean[0] = sum(loss) / batch.
//
// The module is compiled without runtime bounds checks: every index is
// guarded, including the label.

struct Params {
    batch: u32,
    classes: u32,
    smoothing: f32,
    _pad: u32,
}

const LANES: u32 = 64u;
const MEAN_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<atomic<u32>>;

@group(0) @binding(1) var<storage, read> sample_loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;

var<workgroup> wg_value: array<f32, MEAN_WG>;
var<workgroup> wg_index: array<u32, LANES>;

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// The per-sample results once max, its first index, the sum of exp(z - max)
// and the sum of z - max are known; returns the loss. Every term is relative
// to the max, so large logits lose no precision to cancellation.
fn finish_loss(row: u32, top: f32, argmax: u32, sum_exp: f32, sum_shifted: f32) -> f32 {
    let label = labels[row];
    if (label >= p.classes) {
        return nan();
    }
    let c = f32(p.classes);
    let z_label = logits[row * p.classes + label];
    if (argmax == label) {
        atomicAdd(&correct[0], 1u);
    }
    return log(sum_exp) - (1.0 - p.smoothing) * (z_label - top) - p.smoothing / c * sum_shifted;
}

// grad[row, j] = (softmax_j - target_j) / batch.
fn gradient(row: u32, j: u32, top: f32, inv_sum_exp: f32) -> f32 {
    let label = labels[row];
    let z = logits[row * p.classes + j];
    var wanted = p.smoothing / f32(p.classes);
    if (j == label) {
        wanted += 1.0 - p.smoothing;
    }
    return (exp(z - top) * inv_sum_exp - wanted) / f32(p.batch);
}

@compute @workgroup_size(LANES)
fn xent_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = (wid.x + wid.y * nwg.x) * LANES + lid.x;
    if (row >= p.batch) {
        return;
    }
    let base = row * p.classes;
    var top = logits[base];
    var argmax = 0u;
    for (var j = 0u; j < p.classes; j++) {
        let z = logits[base + j];
        if (z > top) {
            top = z;
            argmax = j;
        }
    }
    var sum_exp = 0.0;
    var sum_shifted = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        let shifted = logits[base + j] - top;
        sum_exp += exp(shifted);
        sum_shifted += shifted;
    }
    let inv_sum_exp = 1.0 / sum_exp;
    for (var j = 0u; j < p.classes; j++) {
        grad[base + j] = gradient(row, j, top, inv_sum_exp);
    }
    loss[row] = finish_loss(row, top, argmax, sum_exp, sum_shifted);
}

@compute @workgroup_size(LANES)
fn xent_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.batch) {
        return;
    }
    let lane = lid.x;
    let base = row * p.classes;

    // Max and its first index: each lane scans its classes in order, then the
    // tree keeps the larger value, or the smaller index on a tie.
    var top = -3.4028235e38;
    var argmax = p.classes;
    for (var j = lane; j < p.classes; j += LANES) {
        let z = logits[base + j];
        if (z > top || argmax == p.classes) {
            top = z;
            argmax = j;
        }
    }
    wg_value[lane] = top;
    wg_index[lane] = argmax;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            let other = wg_value[lane + half];
            let other_index = wg_index[lane + half];
            let mine = wg_value[lane];
            let mine_index = wg_index[lane];
            let take = other_index < p.classes && (mine_index == p.classes || other > mine || (other == mine && other_index < mine_index));
            if (take) {
                wg_value[lane] = other;
                wg_index[lane] = other_index;
            }
        }
        workgroupBarrier();
    }
    top = wg_value[0];
    argmax = wg_index[0];
    workgroupBarrier();

    var sum_exp = 0.0;
    var sum_shifted = 0.0;
    for (var j = lane; j < p.classes; j += LANES) {
        let shifted = logits[base + j] - top;
        sum_exp += exp(shifted);
        sum_shifted += shifted;
    }
    wg_value[lane] = sum_exp;
    wg_value[lane + LANES] = sum_shifted;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            wg_value[lane] += wg_value[lane + half];
            wg_value[lane + LANES] += wg_value[lane + LANES + half];
        }
        workgroupBarrier();
    }
    sum_exp = wg_value[0];
    sum_shifted = wg_value[LANES];

    let inv_sum_exp = 1.0 / sum_exp;
    for (var j = lane; j < p.classes; j += LANES) {
        grad[base + j] = gradient(row, j, top, inv_sum_exp);
    }
    if (lane == 0u) {
        loss[row] = finish_loss(row, top, argmax, sum_exp, sum_shifted);
    }
}

@compute @workgroup_size(MEAN_WG)
fn xent_mean(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var i = lid.x; i < p.batch; i += MEAN_WG) {
        sum += sample_loss[i];
    }
    wg_value[lid.x] = sum;
    workgroupBarrier();
    for (var half = MEAN_WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            wg_value[lid.x] += wg_value[lid.x + half];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        mean[0] = wg_value[0] / f32(p.batch);
    }
}

// Elementwise kernels over flat f32 arrays: scale, fill, add, axpy, the
// activations ReLU / sigmoid / tanh (forward, and backward from the saved
// output), bias add over a channel axis and its backward (a sum over the
// other axes).
//
// Bindings: 0 params, then the tensors each entry point names, in order:
//   scale, fill          1 x (read-write)
//   add                  1 a, 2 b, 3 out          out = a + b
//   axpy                 1 x, 2 y (read-write)    y += alpha * x
//   axpy_by              1 x, 2 y (rw), 3 s       y += alpha * s[0] * x, or
//                                                 alpha / s[0] * x when OVER
//                                                 (then nothing where s[0] is 0)
//   activation           1 x, 2 y (read-write)    y = f(x)
//   scale_samples        1 x, 2 s, 3 y (rw)       y[i] = x[i] * s[i / inner]
//                                                 (a factor per sample)
//   activation_backward  1 y, 2 dy, 3 dx (rw)     dx = dy * f'(x), f' from y
//   bias_add, bias_add_rows  1 x (read-write), 2 bias  x[o, c, s] += bias[c]
//   bias_backward_*      1 dy, 2 db (read-write)  db[c] = sum over o, s of dy[o, c, s]
// Dispatch: the flat kernels take grid_1d(ceil(len / 1024)) workgroups of 256,
// each invocation handling 4 elements 256 apart (the linear workgroup index is
// wid.x + wid.y * nwg.x); bias_add_rows grid_1d(outer * channels) workgroups
// of ROW_LANES; bias_backward_columns takes ceil(channels / 256)
// workgroups of 256 (one invocation per channel), bias_backward_channels one
// workgroup of 256 per channel.
//
// The module is compiled without runtime bounds checks: every index is guarded
// against p.len (the launchers check every tensor's length).

struct Params {
    len: u32,       // elements (bias_backward: the outer count)
    scalar: f32,    // factor, fill value or alpha
    channels: u32,  // bias kernels: size of the channel axis
    inner: u32,     // bias kernels: elements per channel per outer index;
                    // scale_samples: elements per sample
}

// ACT selects the activation: 0 ReLU, 1 sigmoid, 2 tanh.
override ACT: u32 = 0u;
// axpy_by divides by its scalar instead of multiplying when OVER is 1.
override OVER: u32 = 0u;

const WG: u32 = 256u;
const PER_INVOCATION: u32 = 4u;
// Lanes per row of bias_add_rows, chosen by the launcher.
override ROW_LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst_2: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst_3: array<f32>;
@group(0) @binding(3) var<storage, read> src_c: array<f32>;

var<workgroup> partial: array<f32, WG>;

// The first element of this invocation; it handles base + k * WG for k < 4.
fn first_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * (WG * PER_INVOCATION) + lid.x;
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            x[i] = x[i] * p.scalar;
        }
    }
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            x[i] = p.scalar;
        }
    }
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_3[i] = src_a[i] + src_b[i];
        }
    }
}

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_2[i] = dst_2[i] + p.scalar * src_a[i];
        }
    }
}

@compute @workgroup_size(WG)
fn axpy_by(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = src_c[0];
    var factor = p.scalar * s;
    if (OVER != 0u) {
        if (s == 0.0) {
            return;
        }
        factor = p.scalar / s;
    }
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_2[i] = dst_2[i] + factor * src_a[i];
        }
    }
}

@compute @workgroup_size(WG)
fn scale_samples(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_3[i] = src_a[i] * src_b[i / p.inner];
        }
    }
}

fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: {
            return 1.0 / (1.0 + exp(-v));
        }
        case 2u: {
            // tanh saturates to +-1 in f32 well before 15; clamping keeps
            // backends that build tanh from exp away from inf / inf.
            return tanh(clamp(v, -15.0, 15.0));
        }
        default: {
            return max(v, 0.0);
        }
    }
}

// f'(x) written in terms of y = f(x).
fn derivative_from_output(y: f32) -> f32 {
    switch ACT {
        case 1u: {
            return y * (1.0 - y);
        }
        case 2u: {
            return 1.0 - y * y;
        }
        default: {
            return select(0.0, 1.0, y > 0.0);
        }
    }
}

@compute @workgroup_size(WG)
fn activation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_2[i] = activate(src_a[i]);
        }
    }
}

@compute @workgroup_size(WG)
fn activation_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            dst_3[i] = src_b[i] * derivative_from_output(src_a[i]);
        }
    }
}

@compute @workgroup_size(WG)
fn bias_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            x[i] = x[i] + src_b[(i / p.inner) % p.channels];
        }
    }
}

// Long rows ([outer, channels, inner], inner >= 32): one workgroup per
// (outer, channel) row, so that each lane loads the row's bias once and no
// element divides out its channel (a division by a runtime value is done lane
// by lane on CPU adapters).
@compute @workgroup_size(ROW_LANES)
fn bias_add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.len / p.inner) {
        return;
    }
    let b = src_b[row % p.channels];
    let base = row * p.inner;
    for (var s = lid.x; s < p.inner; s += ROW_LANES) {
        x[base + s] += b;
    }
}

// inner == 1 ([rows, channels]): one invocation per channel walks down its
// column; neighbouring invocations read neighbouring addresses.
@compute @workgroup_size(WG)
fn bias_backward_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    var sum = 0.0;
    for (var o = 0u; o < p.len; o++) {
        sum += src_a[o * p.channels + c];
    }
    dst_2[c] = sum;
}

// inner > 1 ([outer, channels, inner]): one workgroup per channel; lanes
// stride over the channel's outer * inner elements, then a tree sum.
@compute @workgroup_size(WG)
fn bias_backward_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;
    if (c >= p.channels) {
        return;
    }
    let count = p.len * p.inner;
    var sum = 0.0;
    for (var j = lid.x; j < count; j += WG) {
        let o = j / p.inner;
        sum += src_a[(o * p.channels + c) * p.inner + (j - o * p.inner)];
    }
    partial[lid.x] = sum;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            partial[lid.x] += partial[lid.x + half];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        dst_2[c] = partial[0];
    }
}

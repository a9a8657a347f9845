// Reductions: the sum over one axis of a tensor viewed as [outer, axis, inner],
// and the sum of squares (or its square root, the global L2 norm) over a list
// of tensors, with the result left on the GPU.
//
// Entry points and bindings (0 is always params):
//   sum_axis_lanes      1 x, 2 out (rw)  one invocation per output (o, s),
//                       looping over the axis; grid_1d(ceil(outer * inner / 256))
//   sum_axis_workgroup  1 x, 2 out (rw)  one workgroup per output, lanes stride
//                       over the axis then a tree sum; grid_1d(outer * inner)
//   sum_squares_partial 1..7 up to seven tensors (unused slots repeat one with
//                       length 0), 8 partials (rw); workgroups (chunks, slots):
//                       workgroup (c, t) writes the sum of squares of its
//                       share of tensor t to partials[offset + t * chunks + c]
//   sum_squares_final   1 partials, 2 out (rw); one workgroup: out[0] = the sum
//                       of partials[0..count], or its square root when SQRT
//
// The module is compiled without runtime bounds checks: every index is guarded.

struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    scale: f32,
}

struct SquaresParams {
    lens_low: vec4<u32>,   // lengths of tensors 0..3
    lens_high: vec4<u32>,  // lengths of tensors 4..6 (w unused)
    offset: u32,           // first partial this dispatch writes
    chunks: u32,           // workgroups per tensor
    count: u32,            // sum_squares_final: partials to add up
    _pad: u32,
}

override SQRT: bool = false;

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> q: SquaresParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@group(0) @binding(1) var<storage, read> t0: array<f32>;
@group(0) @binding(2) var<storage, read> t1: array<f32>;
@group(0) @binding(3) var<storage, read> t2: array<f32>;
@group(0) @binding(4) var<storage, read> t3: array<f32>;
@group(0) @binding(5) var<storage, read> t4: array<f32>;
@group(0) @binding(6) var<storage, read> t5: array<f32>;
@group(0) @binding(7) var<storage, read> t6: array<f32>;
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;

var<workgroup> lanes: array<f32, WG>;

// Sums `lanes` into lanes[0]; every invocation of the workgroup must call it.
fn tree_sum(lid: u32, value: f32) -> f32 {
    lanes[lid] = value;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            lanes[lid] += lanes[lid + half];
        }
        workgroupBarrier();
    }
    return lanes[0];
}

@compute @workgroup_size(WG)
fn sum_axis_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.outer * p.inner) {
        return;
    }
    let o = i / p.inner;
    let s = i - o * p.inner;
    let base = o * p.axis * p.inner + s;
    var sum = 0.0;
    for (var a = 0u; a < p.axis; a++) {
        sum += x[base + a * p.inner];
    }
    out[i] = p.scale * sum;
}

@compute @workgroup_size(WG)
fn sum_axis_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.x + wid.y * nwg.x;
    if (i >= p.outer * p.inner) {
        return;
    }
    let o = i / p.inner;
    let s = i - o * p.inner;
    let base = o * p.axis * p.inner + s;
    var sum = 0.0;
    for (var a = lid.x; a < p.axis; a += WG) {
        sum += x[base + a * p.inner];
    }
    let total = tree_sum(lid.x, sum);
    if (lid.x == 0u) {
        out[i] = p.scale * total;
    }
}

// One function per slot: WGSL cannot index a list of bindings.
fn squares0(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t0[i] * t0[i];
    }
    return sum;
}

fn squares1(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t1[i] * t1[i];
    }
    return sum;
}

fn squares2(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t2[i] * t2[i];
    }
    return sum;
}

fn squares3(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t3[i] * t3[i];
    }
    return sum;
}

fn squares4(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t4[i] * t4[i];
    }
    return sum;
}

fn squares5(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t5[i] * t5[i];
    }
    return sum;
}

fn squares6(first: u32, stride: u32, len: u32) -> f32 {
    var sum = 0.0;
    for (var i = first; i < len; i += stride) {
        sum += t6[i] * t6[i];
    }
    return sum;
}

@compute @workgroup_size(WG)
fn sum_squares_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let chunk = wid.x;
    let slot = wid.y;
    let first = chunk * WG + lid.x;
    let stride = q.chunks * WG;
    var sum = 0.0;
    switch slot {
        case 0u: { sum = squares0(first, stride, q.lens_low.x); }
        case 1u: { sum = squares1(first, stride, q.lens_low.y); }
        case 2u: { sum = squares2(first, stride, q.lens_low.z); }
        case 3u: { sum = squares3(first, stride, q.lens_low.w); }
        case 4u: { sum = squares4(first, stride, q.lens_high.x); }
        case 5u: { sum = squares5(first, stride, q.lens_high.y); }
        default: { sum = squares6(first, stride, q.lens_high.z); }
    }
    let total = tree_sum(lid.x, sum);
    if (lid.x == 0u) {
        partials[q.offset + slot * q.chunks + chunk] = total;
    }
}

@compute @workgroup_size(WG)
fn sum_squares_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var i = lid.x; i < q.count; i += WG) {
        sum += x[i];
    }
    let total = tree_sum(lid.x, sum);
    if (lid.x == 0u) {
        out[0] = select(total, sqrt(total), SQRT);
    }
}

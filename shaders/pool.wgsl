// Pooling on [batch, channels, height, width]: max and average over any
// window and stride with optional zero padding, and global average pooling;
// forward and backward.
//
// Max pooling saves, per output, the index of its arg-max within the input
// plane (iy * in_w + ix; padding never wins); its backward gathers, for every
// input element, dy of the outputs whose window covers it and whose arg-max
// it is, so overlapping windows need no atomics. Average pooling divides by
// the window size, or with EXCLUDE_PAD by the number of window cells inside
// the input (PyTorch's count_include_pad = false); its backward gathers the
// same way.
//
// With COMPONENTS = 2 every element is a complex (re, im) pair, interleaved:
// len counts real values, each invocation writes one component; max pooling
// picks the element of largest magnitude (|z|^2 compared) and routes both
// components of dy to it; average pooling averages each component.
//
// Bindings (0 is params):
//   max_forward:      1 x, 2 y (rw), 3 argmax (u32, rw)
//   max_backward:     1 dy, 2 argmax (u32), 3 dx (rw)
//   avg_forward:      1 x, 2 y (rw)
//   avg_backward:     1 dy, 2 dx (rw)
//   global_avg_forward:  1 x, 2 y (rw)    y is [batch, channels]
//   global_avg_backward: 1 dy, 2 dx (rw)
// Dispatch: grid_1d(ceil(len / 64)) with len the values written (y for the
// forward entries, dx for the backward ones; batch * channels * COMPONENTS
// for global_avg_forward).

struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    len: u32,    // elements written by this dispatch
    planes: u32, // batch * channels
}

override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override EXCLUDE_PAD: bool = false;
override COMPONENTS: u32 = 1u;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx_avg: array<f32>;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * LANES + lid.x;
}

// What max pooling compares: the value, or the squared magnitude of a pair.
fn max_key(element: u32) -> f32 {
    if (COMPONENTS == 1u) {
        return x[element];
    }
    let re = x[2u * element];
    let im = x[2u * element + 1u];
    return re * re + im * im;
}

// First and one-past-last output index along one dimension whose window
// covers input index i (padded coordinate t = i + pad).
fn covering(t: u32, k: u32, s: u32, out_size: u32) -> vec2<u32> {
    var first = 0u;
    if (t >= k) {
        first = (t - k) / s + 1u;
    }
    let last = min(t / s + 1u, out_size);
    return vec2<u32>(first, max(first, last));
}

// Cells of the window at output (oy, ox) that lie inside the input.
fn inside_count(oy: u32, ox: u32) -> f32 {
    let y0 = i32(oy * SH) - i32(p.pad_h);
    let x0 = i32(ox * SW) - i32(p.pad_w);
    let rows = min(y0 + i32(KH), i32(p.in_h)) - max(y0, 0);
    let cols = min(x0 + i32(KW), i32(p.in_w)) - max(x0, 0);
    return f32(max(rows, 0) * max(cols, 0));
}

fn divisor(oy: u32, ox: u32) -> f32 {
    if (EXCLUDE_PAD) {
        return inside_count(oy, ox);
    }
    return f32(KH * KW);
}

@compute @workgroup_size(LANES)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let e = i / COMPONENTS;
    let out_plane = p.out_h * p.out_w;
    let plane = e / out_plane;
    let pos = e % out_plane;
    let y0 = i32((pos / p.out_w) * SH) - i32(p.pad_h);
    let x0 = i32((pos % p.out_w) * SW) - i32(p.pad_w);
    let base = plane * p.in_h * p.in_w;
    var best = -3.402823e38;
    var best_at = 0u;
    var found = false;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = y0 + i32(ky);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < KW; kx++) {
            let ix = x0 + i32(kx);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let at = u32(iy) * p.in_w + u32(ix);
            let v = max_key(base + at);
            if (!found || v > best) {
                best = v;
                best_at = at;
                found = true;
            }
        }
    }
    y[i] = x[(base + best_at) * COMPONENTS + i % COMPONENTS];
    if (i % COMPONENTS == 0u) {
        argmax_out[e] = best_at;
    }
}

@compute @workgroup_size(LANES)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let e = i / COMPONENTS;
    let component = i % COMPONENTS;
    let in_plane = p.in_h * p.in_w;
    let plane = e / in_plane;
    let at = e % in_plane;
    let rows = covering(at / p.in_w + p.pad_h, KH, SH, p.out_h);
    let cols = covering(at % p.in_w + p.pad_w, KW, SW, p.out_w);
    let out_base = plane * p.out_h * p.out_w;
    var s = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            let o = out_base + oy * p.out_w + ox;
            if (argmax_in[o] == at) {
                s += dy[o * COMPONENTS + component];
            }
        }
    }
    dx[i] = s;
}

@compute @workgroup_size(LANES)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let e = i / COMPONENTS;
    let component = i % COMPONENTS;
    let out_plane = p.out_h * p.out_w;
    let plane = e / out_plane;
    let pos = e % out_plane;
    let oy = pos / p.out_w;
    let ox = pos % p.out_w;
    let y0 = i32(oy * SH) - i32(p.pad_h);
    let x0 = i32(ox * SW) - i32(p.pad_w);
    let base = plane * p.in_h * p.in_w;
    var s = 0.0;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = y0 + i32(ky);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < KW; kx++) {
            let ix = x0 + i32(kx);
            if (ix >= 0 && ix < i32(p.in_w)) {
                s += x[(base + u32(iy) * p.in_w + u32(ix)) * COMPONENTS + component];
            }
        }
    }
    y[i] = s / divisor(oy, ox);
}

@compute @workgroup_size(LANES)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let e = i / COMPONENTS;
    let component = i % COMPONENTS;
    let in_plane = p.in_h * p.in_w;
    let plane = e / in_plane;
    let at = e % in_plane;
    let rows = covering(at / p.in_w + p.pad_h, KH, SH, p.out_h);
    let cols = covering(at % p.in_w + p.pad_w, KW, SW, p.out_w);
    let out_base = plane * p.out_h * p.out_w;
    var s = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            s += dy[(out_base + oy * p.out_w + ox) * COMPONENTS + component] / divisor(oy, ox);
        }
    }
    dx_avg[i] = s;
}

// y[plane] = mean of x over the plane; one invocation per plane (a
// workgroup-memory tree costs more than it saves on planes this small).
@compute @workgroup_size(LANES)
fn global_avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let plane = i / COMPONENTS;
    let size = p.in_h * p.in_w;
    let base = plane * size;
    var s = 0.0;
    for (var k = 0u; k < size; k++) {
        s += x[(base + k) * COMPONENTS + i % COMPONENTS];
    }
    y[i] = s / f32(size);
}

@compute @workgroup_size(LANES)
fn global_avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let size = p.in_h * p.in_w;
    let e = i / COMPONENTS;
    dx_avg[i] = dy[(e / size) * COMPONENTS + i % COMPONENTS] / f32(size);
}

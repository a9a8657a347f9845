// Complex depthwise conv2d on interleaved (re, im) pairs, vec2<f32>: input
// [batch, channels, height, width] complex, weights [channels, 1, KH, KW]
// complex (the layout of a complex conv2d with groups = channels), an
// optional complex bias [channels]; stride, zero padding and dilation.
//   y[n, c, oy, ox] = sum over (ky, kx) of x[n, c, iy, ix] w[c, ky, kx] + bias[c]
//   with iy = oy SH + ky DH - pad_h, ix = ox SW + kx DW - pad_w.
// Gradients follow the convention of complex.wgsl (the gradient of z is
// (dL/dre z, dL/dim z)): dx = dy conj(w), dw = sum of dy conj(x), db = sum of dy.
//
// Each complex product is computed directly, so a complex tap costs the
// four real products it needs, with no planes or expanded weights:
//   forward, backward_input: one invocation per run of RUN consecutive
//     outputs (inputs) of a row, so each weight is loaded once per RUN
//     elements (on CPU adapters every load costs a loop over the lanes).
//   backward_weight(_bias): one workgroup per (chunk of TAP_CHUNK taps,
//     channel); its lanes stride over every (image, output position) of the
//     channel, each dy is loaded once for all taps of the chunk, and the
//     lanes' partial sums are added by a tree reduction in workgroup memory.
//     With the bias, the chunk-0 workgroup of each channel also sums dy.
//
// Every index is guarded in-kernel (reads past an edge are clamped onto the
// plane and masked), so the module is compiled without bounds checks.
// Kernel size, stride and dilation are pipeline overrides.
//
// Bindings (0 is params):
//   forward:               1 x, 2 w, 3 y (rw), 4 bias
//       (without bias the weights are bound as bias and HAS_BIAS is false)
//   backward_input:        1 dy, 2 w, 3 dx (rw)
//   backward_weight:       1 dy, 2 x, 3 dw (rw)
//   backward_weight_bias:  1 dy, 2 x, 3 dw (rw), 4 db (rw)
// Dispatch (64 lanes):
//   forward / backward_input: grid_1d(ceil(len / 64)), len = the runs:
//       batch * channels * rows * ceil(width / RUN) (output rows and width
//       for forward, input ones for backward_input)
//   backward_weight(_bias): (ceil(KH*KW / TAP_CHUNK), channels, 1)

struct Params {
    batch: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
override HAS_BIAS: bool = false;
// Elements per invocation along a row in forward and backward_input (at
// most MAX_RUN).
override RUN: u32 = 1u;
const MAX_RUN: u32 = 8u;
const LANES: u32 = 64u;
const TAP_CHUNK: u32 = 9u;

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec2<f32>>;

// backward_input
@group(0) @binding(1) var<storage, read> dy: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec2<f32>>;

// backward_weight(_bias)
@group(0) @binding(2) var<storage, read> x_for_dw: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dw: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> db: array<vec2<f32>>;

// Each lane's sums: one row of LANES per tap of the chunk, then one for the bias.
var<workgroup> partials: array<vec2<f32>, (TAP_CHUNK + 1u) * LANES>;

fn cmul(u: vec2<f32>, v: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(u.x * v.x - u.y * v.y, u.x * v.y + u.y * v.x);
}

// u conj(v)
fn cmul_conj(u: vec2<f32>, v: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(u.x * v.x + u.y * v.y, u.y * v.x - u.x * v.y);
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * LANES + lid.x;
}

fn clamped(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

@compute @workgroup_size(LANES)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let runs = (p.out_w + RUN - 1u) / RUN;
    let row = i / runs; // image_channel * out_h + oy
    let ox0 = (i % runs) * RUN;
    let image_channel = row / p.out_h;
    let oy = row % p.out_h;
    let c = image_channel % p.channels;
    let x_base = image_channel * p.in_h * p.in_w;
    var acc: array<vec2<f32>, MAX_RUN>;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky * DH) - i32(p.pad_h);
        let row_inside = iy >= 0 && iy < i32(p.in_h);
        let x_row = x_base + clamped(iy, p.in_h) * p.in_w;
        for (var kx = 0u; kx < KW; kx++) {
            let wv = w[(c * KH + ky) * KW + kx];
            for (var t = 0u; t < RUN; t++) {
                let ix = i32((ox0 + t) * SW + kx * DW) - i32(p.pad_w);
                let inside = row_inside && ix >= 0 && ix < i32(p.in_w);
                let xv = select(vec2<f32>(0.0), x[x_row + clamped(ix, p.in_w)], inside);
                acc[t] += cmul(xv, wv);
            }
        }
    }
    var b = vec2<f32>(0.0);
    if (HAS_BIAS) {
        b = bias[c];
    }
    for (var t = 0u; t < RUN; t++) {
        if (ox0 + t < p.out_w) {
            y[row * p.out_w + ox0 + t] = acc[t] + b;
        }
    }
}

@compute @workgroup_size(LANES)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let runs = (p.in_w + RUN - 1u) / RUN;
    let row = i / runs; // image_channel * in_h + iy
    let ix0 = (i % runs) * RUN;
    let image_channel = row / p.in_h;
    let iy = row % p.in_h;
    let c = image_channel % p.channels;
    let dy_base = image_channel * p.out_h * p.out_w;
    var acc: array<vec2<f32>, MAX_RUN>;
    for (var ky = 0u; ky < KH; ky++) {
        // Output row oy reads input row iy through tap ky when
        // oy * SH + ky * DH - pad_h = iy.
        let ty = i32(iy + p.pad_h) - i32(ky * DH);
        let oy = ty / i32(SH);
        let row_inside = ty >= 0 && oy * i32(SH) == ty && oy < i32(p.out_h);
        let dy_row = dy_base + clamped(oy, p.out_h) * p.out_w;
        for (var kx = 0u; kx < KW; kx++) {
            let wv = w[(c * KH + ky) * KW + kx];
            for (var t = 0u; t < RUN; t++) {
                let tx = i32(ix0 + t + p.pad_w) - i32(kx * DW);
                let ox = tx / i32(SW);
                let inside = row_inside && tx >= 0 && ox * i32(SW) == tx && ox < i32(p.out_w);
                let g = select(vec2<f32>(0.0), dy[dy_row + clamped(ox, p.out_w)], inside);
                acc[t] += cmul_conj(g, wv);
            }
        }
    }
    for (var t = 0u; t < RUN; t++) {
        if (ix0 + t < p.in_w) {
            dx[row * p.in_w + ix0 + t] = acc[t];
        }
    }
}

// Leaves in partials[j * LANES] the workgroup's sum for tap first_tap + j
// of channel c (taps past the end repeat the last one), and with HAS_BIAS
// in partials[TAP_CHUNK * LANES] the sum of dy. Every lane must call it.
fn reduce_weight_gradient(first_tap: u32, c: u32, lane: u32) {
    let taps = KH * KW;
    let plane = p.in_h * p.in_w;
    let out_plane = p.out_h * p.out_w;
    // Each tap's input offset from the output position's origin.
    var tap_dy: array<i32, TAP_CHUNK>;
    var tap_dx: array<i32, TAP_CHUNK>;
    for (var j = 0u; j < TAP_CHUNK; j++) {
        let tap = min(first_tap + j, taps - 1u);
        tap_dy[j] = i32((tap / KW) * DH) - i32(p.pad_h);
        tap_dx[j] = i32((tap % KW) * DW) - i32(p.pad_w);
    }
    // (image, oy, ox) of this lane's element, stepped by LANES elements at
    // a time with carries rather than divided out per element: an integer
    // division costs more than the product on CPU adapters.
    var n = lane / out_plane;
    var oy = (lane % out_plane) / p.out_w;
    var ox = lane % p.out_w;
    let step_n = LANES / out_plane;
    let step_oy = (LANES % out_plane) / p.out_w;
    let step_ox = LANES % p.out_w;
    var acc: array<vec2<f32>, TAP_CHUNK>;
    var bias_acc = vec2<f32>(0.0);
    let total = p.batch * out_plane;
    for (var k = lane; k < total; k += LANES) {
        let image_channel = n * p.channels + c;
        let g = dy[image_channel * out_plane + oy * p.out_w + ox];
        let x_base = image_channel * plane;
        let y0 = i32(oy * SH);
        let x0 = i32(ox * SW);
        for (var j = 0u; j < TAP_CHUNK; j++) {
            let iy = y0 + tap_dy[j];
            let ix = x0 + tap_dx[j];
            let inside = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
            let xv = select(vec2<f32>(0.0), x_for_dw[x_base + clamped(iy, p.in_h) * p.in_w + clamped(ix, p.in_w)], inside);
            acc[j] += cmul_conj(g, xv);
        }
        if (HAS_BIAS) {
            bias_acc += g;
        }
        ox += step_ox;
        var carry = 0u;
        if (ox >= p.out_w) {
            ox -= p.out_w;
            carry = 1u;
        }
        oy += step_oy + carry;
        carry = 0u;
        if (oy >= p.out_h) {
            oy -= p.out_h;
            carry = 1u;
        }
        n += step_n + carry;
    }
    for (var j = 0u; j < TAP_CHUNK; j++) {
        partials[j * LANES + lane] = acc[j];
    }
    partials[TAP_CHUNK * LANES + lane] = bias_acc;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            for (var j = 0u; j <= TAP_CHUNK; j++) {
                partials[j * LANES + lane] += partials[j * LANES + lane + stride];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(LANES)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first_tap = wid.x * TAP_CHUNK;
    let c = wid.y;
    reduce_weight_gradient(first_tap, c, lid.x);
    let tap = first_tap + lid.x;
    if (lid.x < TAP_CHUNK && tap < KH * KW) {
        dw[c * KH * KW + tap] = partials[lid.x * LANES];
    }
}

@compute @workgroup_size(LANES)
fn backward_weight_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first_tap = wid.x * TAP_CHUNK;
    let c = wid.y;
    reduce_weight_gradient(first_tap, c, lid.x);
    let tap = first_tap + lid.x;
    if (lid.x < TAP_CHUNK && tap < KH * KW) {
        dw[c * KH * KW + tap] = partials[lid.x * LANES];
    }
    if (wid.x == 0u && lid.x == 0u) {
        db[c] = partials[TAP_CHUNK * LANES];
    }
}

// conv2d on [batch, channels, height, width] (NCHW) with rectangular kernels,
// stride, zero padding, dilation and groups; weights [out_c, in_c/groups, KH, KW].
//
// The dense entry points are implicit gemms in the register-tiled shape of
// gemm.wgsl: each invocation owns ROWS (at most TM) rows x 4 columns of the
// product and the lanes of a workgroup share their rows, so the reads of the
// row operand are one address across lanes (a broadcast). The column operand is gathered
// through the convolution geometry instead of an im2col copy:
//   forward          rows = output channels, columns = output positions,
//                    k = (input channel, ky, kx); y = w * im2col(x) (+ bias)
//   backward_input   rows = input channels, columns = input positions,
//                    k = (output channel, ky, kx); dx = w^T * col2im-gather(dy)
//   backward_weight  rows = output channels, columns = (input channel, ky, kx),
//                    k = (image, oy, ox) over one split of the batch; the splits'
//                    partial sums are added by reduce_splits
// Depthwise convolutions (one input and one output channel per group) are
// memory-bound and have direct kernels: one invocation per run of RUN
// outputs (forward) or inputs (backward_input) along a row, and one
// workgroup per (chunk of TAP_CHUNK taps, channel) reducing over the batch
// (depthwise_backward_weight): each dy is loaded once for all taps of a
// chunk. backward_bias reduces dy per output channel in one workgroup each.
//
// Every index is guarded in-kernel (out-of-range reads are redirected to
// element 0 and masked), so the module is compiled without bounds checks.
// Kernel size, stride and dilation are pipeline overrides so the tap loops
// have constant bounds.
//
// Bindings (0 is params):
//   forward, depthwise_forward:                1 x, 2 w, 3 y (rw), 4 bias
//       (without bias the weights are bound as bias and HAS_BIAS is false)
//   backward_input, depthwise_backward_input:  1 dy, 2 w, 3 dx (rw)
//   backward_weight, depthwise_backward_weight: 1 dy, 2 x, 3 dw or partials (rw)
//   reduce_splits:                             1 partials, 2 dw (rw)
//   backward_bias:                             1 dy, 2 db (rw)
// Dispatch:
//   forward          (ceil(out_h*out_w / (4 WG)), ceil((out_c/groups) / ROWS), batch*groups)
//   backward_input   (ceil(in_h*in_w / (4 WG)), ceil((in_c/groups) / ROWS), batch*groups)
//   backward_weight  (ceil(in_c/groups*KH*KW / (4 WG)), ceil((out_c/groups) / ROWS), splits*groups)
//   depthwise_forward / depthwise_backward_input: grid_1d(ceil(len / 64)), len = the
//       runs: batch * channels * rows * ceil(width / RUN)
//   reduce_splits: grid_1d(ceil(len / 64))
//   depthwise_backward_weight (ceil(KH*KW / TAP_CHUNK), channels, 1); backward_bias (out_c, 1, 1); 64 lanes

struct Params {
    batch: u32,
    in_c: u32,
    out_c: u32,
    groups: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    icpg: u32,            // input channels per group
    ocpg: u32,            // output channels per group
    batch_per_split: u32, // images per split of backward_weight
    splits: u32,
    len: u32,             // elements of the 1-D launches
    _pad: u32,
}

override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
override HAS_BIAS: bool = false;
override WG: u32 = 64u;
// Rows per invocation in use (at most TM): fewer when the product has fewer
// rows, so that narrow layers (one input channel) do not compute idle rows.
override ROWS: u32 = 8u;
const TM: u32 = 8u;
// Elements per invocation along a row in depthwise_forward and
// depthwise_backward_input (at most MAX_RUN).
override RUN: u32 = 1u;
const MAX_RUN: u32 = 8u;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// backward_input
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// backward_weight
@group(0) @binding(2) var<storage, read> x_for_dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// reduce_splits, backward_bias
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> reduced: array<f32>;

var<workgroup> lane_sums: array<f32, LANES>;
// depthwise_backward_weight: taps per workgroup, and each lane's sum for each.
const TAP_CHUNK: u32 = 9u;
var<workgroup> tap_partials: array<f32, TAP_CHUNK * LANES>;

fn in_range(v: vec4<i32>, size: u32) -> vec4<bool> {
    return (v >= vec4<i32>(0)) & (v < vec4<i32>(i32(size)));
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let positions = p.out_h * p.out_w;
    let col0 = (wid.x * WG + lid.x) * 4u;
    let row0 = wid.y * ROWS;
    if (col0 >= positions || row0 >= p.ocpg) {
        return;
    }
    let n = wid.z / p.groups;
    let g = wid.z % p.groups;
    let kdim = p.icpg * KH * KW;
    // Columns past the end repeat the last one; they are not stored.
    var iy0: vec4<i32>;
    var ix0: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let pos = min(col0 + j, positions - 1u);
        iy0[j] = i32((pos / p.out_w) * SH) - i32(p.pad_h);
        ix0[j] = i32((pos % p.out_w) * SW) - i32(p.pad_w);
    }
    // Rows past the end repeat the last one; they are not stored.
    var w_row: array<u32, TM>;
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < ROWS; r++) {
        w_row[r] = (g * p.ocpg + min(row0 + r, p.ocpg - 1u)) * kdim;
        acc[r] = vec4<f32>(0.0);
    }
    let plane = p.in_h * p.in_w;
    var x_plane = i32((n * p.in_c + g * p.icpg) * plane);
    var k = 0u;
    for (var ic = 0u; ic < p.icpg; ic++) {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = iy0 + vec4<i32>(i32(ky * DH));
            let y_ok = in_range(iy, p.in_h);
            let row = vec4<i32>(x_plane) + iy * i32(p.in_w);
            for (var kx = 0u; kx < KW; kx++) {
                let ix = ix0 + vec4<i32>(i32(kx * DW));
                let ok = y_ok & in_range(ix, p.in_w);
                let idx = select(vec4<i32>(0), row + ix, ok);
                let xv = select(vec4<f32>(0.0), vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]), ok);
                for (var r = 0u; r < ROWS; r++) {
                    acc[r] += w[w_row[r] + k] * xv;
                }
                k++;
            }
        }
        x_plane += i32(plane);
    }
    let rows = min(ROWS, p.ocpg - row0);
    let cols = min(4u, positions - col0);
    for (var r = 0u; r < rows; r++) {
        let oc = g * p.ocpg + row0 + r;
        var b = 0.0;
        if (HAS_BIAS) {
            b = bias[oc];
        }
        let base = (n * p.out_c + oc) * positions + col0;
        for (var j = 0u; j < cols; j++) {
            y[base + j] = acc[r][j] + b;
        }
    }
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let positions = p.in_h * p.in_w;
    let col0 = (wid.x * WG + lid.x) * 4u;
    let row0 = wid.y * ROWS;
    if (col0 >= positions || row0 >= p.icpg) {
        return;
    }
    let n = wid.z / p.groups;
    let g = wid.z % p.groups;
    let taps = KH * KW;
    let kdim = p.icpg * taps;
    // Input position plus padding: the output position it meets at tap
    // (ky, kx) is ((ty - ky*DH) / SH, (tx - kx*DW) / SW) where that divides.
    var ty0: vec4<i32>;
    var tx0: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let pos = min(col0 + j, positions - 1u);
        ty0[j] = i32(pos / p.in_w + p.pad_h);
        tx0[j] = i32(pos % p.in_w + p.pad_w);
    }
    var w_row: array<u32, TM>;
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < ROWS; r++) {
        w_row[r] = min(row0 + r, p.icpg - 1u) * taps;
        acc[r] = vec4<f32>(0.0);
    }
    let out_plane = p.out_h * p.out_w;
    var dy_plane = i32((n * p.out_c + g * p.ocpg) * out_plane);
    var w_oc = g * p.ocpg * kdim;
    for (var oc = 0u; oc < p.ocpg; oc++) {
        for (var ky = 0u; ky < KH; ky++) {
            let ty = ty0 - vec4<i32>(i32(ky * DH));
            let oy = ty / vec4<i32>(i32(SH));
            let y_ok = (ty >= vec4<i32>(0)) & (oy * i32(SH) == ty) & (oy < vec4<i32>(i32(p.out_h)));
            let row = vec4<i32>(dy_plane) + oy * i32(p.out_w);
            for (var kx = 0u; kx < KW; kx++) {
                let tx = tx0 - vec4<i32>(i32(kx * DW));
                let ox = tx / vec4<i32>(i32(SW));
                let ok = y_ok & (tx >= vec4<i32>(0)) & (ox * i32(SW) == tx) & (ox < vec4<i32>(i32(p.out_w)));
                let idx = select(vec4<i32>(0), row + ox, ok);
                let dv = select(vec4<f32>(0.0), vec4<f32>(dy[idx.x], dy[idx.y], dy[idx.z], dy[idx.w]), ok);
                let t = w_oc + ky * KW + kx;
                for (var r = 0u; r < ROWS; r++) {
                    acc[r] += w[w_row[r] + t] * dv;
                }
            }
        }
        dy_plane += i32(out_plane);
        w_oc += kdim;
    }
    let rows = min(ROWS, p.icpg - row0);
    let cols = min(4u, positions - col0);
    for (var r = 0u; r < rows; r++) {
        let base = (n * p.in_c + g * p.icpg + row0 + r) * positions + col0;
        for (var j = 0u; j < cols; j++) {
            dx[base + j] = acc[r][j];
        }
    }
}

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let taps = KH * KW;
    let kdim = p.icpg * taps;
    let col0 = (wid.x * WG + lid.x) * 4u;
    let row0 = wid.y * ROWS;
    if (col0 >= kdim || row0 >= p.ocpg) {
        return;
    }
    let split = wid.z / p.groups;
    let g = wid.z % p.groups;
    let plane = p.in_h * p.in_w;
    let out_plane = p.out_h * p.out_w;
    // Each column is one weight (c, ky, kx): its input offset within an image.
    var x_off: vec4<i32>;
    var y_off: vec4<i32>;
    var x_shift: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let kc = min(col0 + j, kdim - 1u);
        let t = kc % taps;
        x_off[j] = i32((g * p.icpg + kc / taps) * plane);
        y_off[j] = i32((t / KW) * DH) - i32(p.pad_h);
        x_shift[j] = i32((t % KW) * DW) - i32(p.pad_w);
    }
    var dy_row: array<u32, TM>;
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < ROWS; r++) {
        dy_row[r] = (g * p.ocpg + min(row0 + r, p.ocpg - 1u)) * out_plane;
        acc[r] = vec4<f32>(0.0);
    }
    let n0 = split * p.batch_per_split;
    let n1 = min(n0 + p.batch_per_split, p.batch);
    for (var n = n0; n < n1; n++) {
        let x_image = vec4<i32>(i32(n * p.in_c * plane)) + x_off;
        let dy_image = n * p.out_c * out_plane;
        for (var oy = 0u; oy < p.out_h; oy++) {
            let iy = vec4<i32>(i32(oy * SH)) + y_off;
            let y_ok = in_range(iy, p.in_h);
            let row = x_image + iy * i32(p.in_w);
            let dy_at = dy_image + oy * p.out_w;
            for (var ox = 0u; ox < p.out_w; ox++) {
                let ix = vec4<i32>(i32(ox * SW)) + x_shift;
                let ok = y_ok & in_range(ix, p.in_w);
                let idx = select(vec4<i32>(0), row + ix, ok);
                let xv = select(vec4<f32>(0.0), vec4<f32>(x_for_dw[idx.x], x_for_dw[idx.y], x_for_dw[idx.z], x_for_dw[idx.w]), ok);
                for (var r = 0u; r < ROWS; r++) {
                    acc[r] += dy[dy_row[r] + dy_at + ox] * xv;
                }
            }
        }
    }
    let rows = min(ROWS, p.ocpg - row0);
    let cols = min(4u, kdim - col0);
    let out_base = split * p.out_c * kdim;
    for (var r = 0u; r < rows; r++) {
        let base = out_base + (g * p.ocpg + row0 + r) * kdim + col0;
        for (var j = 0u; j < cols; j++) {
            dw[base + j] = acc[r][j];
        }
    }
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * LANES + lid.x;
}

// reduced[i] = sum over splits s of partials[s * len + i]
@compute @workgroup_size(LANES)
fn reduce_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var s = 0.0;
    for (var split = 0u; split < p.splits; split++) {
        s += partials[split * p.len + i];
    }
    reduced[i] = s;
}

// Sums lane_sums into lane_sums[0]; every lane must call it.
fn reduce_lanes(lane: u32, value: f32) {
    lane_sums[lane] = value;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if (lane < stride) {
            lane_sums[lane] += lane_sums[lane + stride];
        }
        workgroupBarrier();
    }
}

// reduced[oc] = sum of partials (dy) over images and positions of channel oc
@compute @workgroup_size(LANES)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let oc = wid.x;
    let out_plane = p.out_h * p.out_w;
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let base = (n * p.out_c + oc) * out_plane;
        for (var i = lid.x; i < out_plane; i += LANES) {
            s += partials[base + i];
        }
    }
    reduce_lanes(lid.x, s);
    if (lid.x == 0u) {
        reduced[oc] = lane_sums[0];
    }
}

// Depthwise forward and backward_input: each invocation computes RUN
// consecutive elements of one row, so each weight is loaded once per RUN
// elements instead of once per element (on CPU adapters every load costs a
// loop over the lanes, and the loads are the cost). Reads past an edge are
// clamped onto the plane and masked, without branches.
fn clamped(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

@compute @workgroup_size(LANES)
fn depthwise_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let runs = (p.out_w + RUN - 1u) / RUN;
    let row = i / runs; // image_channel * out_h + oy
    let ox0 = (i % runs) * RUN;
    let image_channel = row / p.out_h;
    let oy = row % p.out_h;
    let c = image_channel % p.out_c;
    let x_base = image_channel * p.in_h * p.in_w;
    var acc: array<f32, MAX_RUN>;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky * DH) - i32(p.pad_h);
        let row_inside = iy >= 0 && iy < i32(p.in_h);
        let x_row = x_base + clamped(iy, p.in_h) * p.in_w;
        for (var kx = 0u; kx < KW; kx++) {
            let wv = w[(c * KH + ky) * KW + kx];
            for (var t = 0u; t < RUN; t++) {
                let ix = i32((ox0 + t) * SW + kx * DW) - i32(p.pad_w);
                let inside = row_inside && ix >= 0 && ix < i32(p.in_w);
                acc[t] += select(0.0, x[x_row + clamped(ix, p.in_w)] * wv, inside);
            }
        }
    }
    var b = 0.0;
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
fn depthwise_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let runs = (p.in_w + RUN - 1u) / RUN;
    let row = i / runs; // image_channel * in_h + iy
    let ix0 = (i % runs) * RUN;
    let image_channel = row / p.in_h;
    let iy = row % p.in_h;
    let c = image_channel % p.in_c;
    let dy_base = image_channel * p.out_h * p.out_w;
    var acc: array<f32, MAX_RUN>;
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
                acc[t] += select(0.0, dy[dy_row + clamped(ox, p.out_w)] * wv, inside);
            }
        }
    }
    for (var t = 0u; t < RUN; t++) {
        if (ix0 + t < p.in_w) {
            dx[row * p.in_w + ix0 + t] = acc[t];
        }
    }
}

@compute @workgroup_size(LANES)
fn depthwise_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first_tap = wid.x * TAP_CHUNK;
    let c = wid.y;
    let taps = KH * KW;
    let plane = p.in_h * p.in_w;
    let out_plane = p.out_h * p.out_w;
    // Output rows and columns are stepped, not divided out per element: an
    // integer division costs more than the product on CPU adapters.
    let first_oy = lid.x / p.out_w;
    let first_ox = lid.x % p.out_w;
    let step_oy = LANES / p.out_w;
    let step_ox = LANES % p.out_w;
    var acc: array<f32, TAP_CHUNK>;
    for (var n = 0u; n < p.batch; n++) {
        let image_channel = n * p.in_c + c;
        let dy_base = image_channel * out_plane;
        let x_base = image_channel * plane;
        var oy = first_oy;
        var ox = first_ox;
        for (var pos = lid.x; pos < out_plane; pos += LANES) {
            let g = dy[dy_base + pos];
            for (var j = 0u; j < TAP_CHUNK; j++) {
                let tap = min(first_tap + j, taps - 1u);
                let iy = i32(oy * SH + (tap / KW) * DH) - i32(p.pad_h);
                let ix = i32(ox * SW + (tap % KW) * DW) - i32(p.pad_w);
                let inside = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
                let xv = x_for_dw[x_base + clamped(iy, p.in_h) * p.in_w + clamped(ix, p.in_w)];
                acc[j] += select(0.0, g * xv, inside);
            }
            oy += step_oy;
            ox += step_ox;
            if (ox >= p.out_w) {
                ox -= p.out_w;
                oy += 1u;
            }
        }
    }
    for (var j = 0u; j < TAP_CHUNK; j++) {
        tap_partials[j * LANES + lid.x] = acc[j];
    }
    workgroupBarrier();
    let tap = first_tap + lid.x;
    if (lid.x < TAP_CHUNK && tap < taps) {
        var s = 0.0;
        for (var l = 0u; l < LANES; l++) {
            s += tap_partials[lid.x * LANES + l];
        }
        dw[c * taps + tap] = s;
    }
}

// im2col and its adjoint col2im, for convolutions lowered to gemm.
//
// For a chunk of `images` images starting at element `x_offset` of x
// `[batch, C, H, W]`, im2col writes col `[images][K][P]` with K = C*kh*kw
// (channel, tap row, tap column) and P = out_h*out_w; taps that fall in the
// zero padding read 0. col2im sums such a `[images][K][P]` gradient back onto
// the input positions each entry came from (a gather over taps, so no atomics).
//
// Kernel size, stride and dilation are pipeline overrides, so that the
// divisions by them are by constants: on CPU adapters a division by a
// runtime value is done lane by lane (x86 has no vector integer division)
// and cost more than the copy.
//
// Bindings: 0 params, 1 source (read), 2 destination (written).
// Dispatch:
//   im2col (ceil(out_h * ceil(out_w / RUN) / 64), K, images): each invocation
//     writes RUN consecutive positions of one output row of one row of col,
//     so the row's image, channel and tap are the same in every lane;
//   col2im (ceil(H*W / 64), C, images).

struct Params {
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_h: u32,
    pad_w: u32,
    x_offset: u32,
}

override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
const RUN: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn clamped(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

@compute @workgroup_size(64)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let runs = (p.out_w + RUN - 1u) / RUN;
    let q = wid.x * 64u + lid.x;
    if (q >= p.out_h * runs) {
        return;
    }
    let oy = q / runs;
    let ox0 = (q % runs) * RUN;
    let k = wid.y;
    let image = wid.z;
    let c = k / (KH * KW);
    let tap = k % (KH * KW);
    // Signed, so that taps in the top/left padding compare below zero.
    let h = i32(oy * SH + (tap / KW) * DH) - i32(p.pad_h);
    let row_inside = h >= 0 && h < i32(p.in_h);
    let src_row = p.x_offset + ((image * p.channels + c) * p.in_h + clamped(h, p.in_h)) * p.in_w;
    let dst_row = (image * p.channels * KH * KW + k) * p.out_h * p.out_w + oy * p.out_w;
    for (var t = 0u; t < RUN; t++) {
        let ox = ox0 + t;
        let w = i32(ox * SW + (tap % KW) * DW) - i32(p.pad_w);
        let inside = row_inside && w >= 0 && w < i32(p.in_w);
        let v = select(0.0, src[src_row + clamped(w, p.in_w)], inside);
        if (ox < p.out_w) {
            dst[dst_row + ox] = v;
        }
    }
}

@compute @workgroup_size(64)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let plane = p.in_h * p.in_w;
    let i = wid.x * 64u + lid.x;
    if (i >= plane) {
        return;
    }
    let w = i % p.in_w;
    let h = i / p.in_w;
    let c = wid.y;
    let image = wid.z;
    let positions = p.out_h * p.out_w;
    let k_rows = p.channels * KH * KW;
    var sum = 0.0;
    for (var ki = 0u; ki < KH; ki++) {
        // The output row whose tap ki lands on h, if there is one.
        let hh = i32(h + p.pad_h) - i32(ki * DH);
        if (hh < 0 || u32(hh) % SH != 0u) {
            continue;
        }
        let oh = u32(hh) / SH;
        if (oh >= p.out_h) {
            continue;
        }
        for (var kj = 0u; kj < KW; kj++) {
            let ww = i32(w + p.pad_w) - i32(kj * DW);
            if (ww < 0 || u32(ww) % SW != 0u) {
                continue;
            }
            let ow = u32(ww) / SW;
            if (ow >= p.out_w) {
                continue;
            }
            let k = (c * KH + ki) * KW + kj;
            sum += src[(image * k_rows + k) * positions + oh * p.out_w + ow];
        }
    }
    dst[p.x_offset + (image * p.channels + c) * plane + i] = sum;
}

// im2col and its adjoint col2im, for convolutions lowered to gemm.
//
// For a chunk of `images` images starting at element `x_offset` of x
// `[batch, C, H, W]`, im2col writes col `[images][K][P]` with K = C*kh*kw
// (channel, tap row, tap column) and P = out_h*out_w; taps that fall in the
// zero padding read 0. col2im sums such a `[images][K][P]` gradient back onto
// the input positions each entry came from (a gather over taps, so no atomics).
//
// Bindings: 0 params, 1 source (read), 2 destination (written).
// Dispatch: workgroups of 64 lanes along one row of the destination, so the
// row's image, channel and tap are the same in every lane:
// im2col (ceil(P / 64), K, images); col2im (ceil(H*W / 64), C, images).

struct Params {
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    x_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let positions = p.out_h * p.out_w;
    let pos = wid.x * 64u + lid.x;
    if (pos >= positions) {
        return;
    }
    let k = wid.y;
    let image = wid.z;
    let taps = p.kernel_h * p.kernel_w;
    let c = k / taps;
    let tap = k % taps;
    // Signed, so that taps in the top/left padding compare below zero.
    let h = i32((pos / p.out_w) * p.stride_h + (tap / p.kernel_w) * p.dilation_h) - i32(p.pad_h);
    let w = i32((pos % p.out_w) * p.stride_w + (tap % p.kernel_w) * p.dilation_w) - i32(p.pad_w);
    var v = 0.0;
    if (h >= 0 && h < i32(p.in_h) && w >= 0 && w < i32(p.in_w)) {
        v = src[p.x_offset + ((image * p.channels + c) * p.in_h + u32(h)) * p.in_w + u32(w)];
    }
    dst[(image * p.channels * taps + k) * positions + pos] = v;
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
    let k_rows = p.channels * p.kernel_h * p.kernel_w;
    var sum = 0.0;
    for (var ki = 0u; ki < p.kernel_h; ki++) {
        // The output row whose tap ki lands on h, if there is one.
        let hh = i32(h + p.pad_h) - i32(ki * p.dilation_h);
        if (hh < 0 || u32(hh) % p.stride_h != 0u) {
            continue;
        }
        let oh = u32(hh) / p.stride_h;
        if (oh >= p.out_h) {
            continue;
        }
        for (var kj = 0u; kj < p.kernel_w; kj++) {
            let ww = i32(w + p.pad_w) - i32(kj * p.dilation_w);
            if (ww < 0 || u32(ww) % p.stride_w != 0u) {
                continue;
            }
            let ow = u32(ww) / p.stride_w;
            if (ow >= p.out_w) {
                continue;
            }
            let k = (c * p.kernel_h + ki) * p.kernel_w + kj;
            sum += src[(image * k_rows + k) * positions + oh * p.out_w + ow];
        }
    }
    dst[p.x_offset + (image * p.channels + c) * plane + i] = sum;
}

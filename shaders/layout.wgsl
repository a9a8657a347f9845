// Layout kernels that move f32 elements without arithmetic (beyond the
// optional accumulate): swapping the first two axes of a 3-D tensor, e.g.
// [batch, time, features] <-> [time, batch, features] around a recurrent
// layer, and copying a block of columns between two row-major matrices, which
// is concatenation along an axis (and, with source and destination swapped,
// its backward: slicing).
//
// Bindings: 0 params, then:
//   swap_axes     1 x, 2 y (read-write)      y[j, i, k] = x[i, j, k], x is [a, b, c]
//   copy_columns  1 src, 2 dst (read-write)  dst[r, dst_offset + j] (+)= src[r, src_offset + j]
// Dispatch: both take grid_1d(ceil(n / 1024)) workgroups of 256, each
// invocation handling 4 elements 256 apart (the linear workgroup index is
// wid.x + wid.y * nwg.x), n being a * b * c for swap_axes and rows * width
// for copy_columns. Each invocation works on destination elements, so that
// the writes of a workgroup are contiguous.
//
// The module is compiled without runtime bounds checks: every element index
// is guarded against p.len, and the others follow from it for the shapes the
// launchers check.

struct SwapParams {
    len: u32,  // a * b * c
    a: u32,
    b: u32,
    c: u32,
}

struct CopyParams {
    len: u32,         // rows * width
    width: u32,       // columns copied per row
    src_cols: u32,
    src_offset: u32,
    dst_cols: u32,
    dst_offset: u32,
    accumulate: u32,  // 1: dst += src, 0: dst = src
    _pad: u32,
}

const WG: u32 = 256u;
const PER_INVOCATION: u32 = 4u;

@group(0) @binding(0) var<uniform> swap_p: SwapParams;
@group(0) @binding(0) var<uniform> copy_p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The first element of this invocation; it handles base + k * WG for k < 4.
fn first_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * (WG * PER_INVOCATION) + lid.x;
}

@compute @workgroup_size(WG)
fn swap_axes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    let ac = swap_p.a * swap_p.c;
    for (var n = 0u; n < PER_INVOCATION; n++) {
        let o = base + n * WG;
        if (o < swap_p.len) {
            // o indexes y as [b, a, c]: o = (j * a + i) * c + k.
            let j = o / ac;
            let rest = o - j * ac;
            let i = rest / swap_p.c;
            let k = rest - i * swap_p.c;
            dst[o] = src[(i * swap_p.b + j) * swap_p.c + k];
        }
    }
}

@compute @workgroup_size(WG)
fn copy_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = first_index(wid, nwg, lid);
    for (var n = 0u; n < PER_INVOCATION; n++) {
        let t = base + n * WG;
        if (t < copy_p.len) {
            let r = t / copy_p.width;
            let j = t - r * copy_p.width;
            let v = src[r * copy_p.src_cols + copy_p.src_offset + j];
            let d = r * copy_p.dst_cols + copy_p.dst_offset + j;
            if (copy_p.accumulate != 0u) {
                dst[d] = dst[d] + v;
            } else {
                dst[d] = v;
            }
        }
    }
}

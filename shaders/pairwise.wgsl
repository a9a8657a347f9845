// Pairwise products for polynomial operations: the elementwise product of
// two tensors, out = a * b, and the square, out = x * x, with their
// backward. Gradients are written, or added to what the gradient tensors
// hold (`accumulate`), since one input often feeds several products.
//
// Entry points, their bindings (0 is always the params; each entry point
// binds 1.. in order):
//   product:          1 a, 2 b, 3 out
//   product_backward: 1 a, 2 b, 3 dout, 4 da, 5 db
//   square:           1 x, 2 out
//   square_backward:  1 x, 2 dout, 3 dx
// Dispatch: grid_1d(ceil(len / 256)); the linear index is
// (wid.x + wid.y * nwg.x) * 256 + lid.x, guarded against len (the module is
// compiled trusted).

struct Params {
    len: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;
@group(0) @binding(3) var<storage, read_write> out3: array<f32>;
@group(0) @binding(3) var<storage, read> dout3: array<f32>;
@group(0) @binding(4) var<storage, read_write> da: array<f32>;
@group(0) @binding(5) var<storage, read_write> db: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn product(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out3[i] = a[i] * b[i];
    }
}

@compute @workgroup_size(256)
fn product_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let g = dout3[i];
        if (p.accumulate == 1u) {
            da[i] += g * b[i];
            db[i] += g * a[i];
        } else {
            da[i] = g * b[i];
            db[i] = g * a[i];
        }
    }
}

@compute @workgroup_size(256)
fn square(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out2[i] = a[i] * a[i];
    }
}

@compute @workgroup_size(256)
fn square_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        // Bound as in the header: a is x, b is dout, out3 is dx.
        let d = 2.0 * a[i] * b[i];
        if (p.accumulate == 1u) {
            out3[i] += d;
        } else {
            out3[i] = d;
        }
    }
}

// Elementwise kernels over flat f32 arrays.
//
// Bindings: 0 params, then the tensors each entry point names.
// Dispatch: grid_1d(ceil(len / 256)) workgroups of 256; the linear index is
// (wid.x + wid.y * nwg.x) * 256 + lid.x.

struct Params {
    len: u32,
    scalar: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// x *= scalar
@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.len) {
        x[i] = x[i] * p.scalar;
    }
}

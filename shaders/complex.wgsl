// Complex-valued kernels on interleaved (re, im) pairs, vec2<f32>: the
// elementwise complex product, the activations CReLU and modReLU, magnitude
// and phase, each with its backward, and the layout passes that let complex
// dense and complex conv2d run as one real gemm / real conv2d each.
//
// Gradients follow one convention: for a real loss L, the gradient of a
// complex z is the pair (dL/dre z, dL/dim z), i.e. 2 dL/d conj(z) in
// Wirtinger terms. Through a holomorphic f it is g_z = g_f * conj(f'(z)).
//
// Entry points, their bindings (0 is always the params; each entry point
// binds 1.. in order) and dispatch (all grid_1d(ceil(len / 256)), len = the
// number of complex values, or of real weights for expand / fold):
//   mul:                 1 a, 2 b, 3 out
//   mul_backward:        1 a, 2 b, 3 dout, 4 da, 5 db
//   crelu:               1 x, 2 out
//   crelu_backward:      1 x, 2 dout, 3 dx
//   zrelu:               1 x, 2 out
//   zrelu_backward:      1 x, 2 dout, 3 dx
//   modrelu:             1 x, 2 bias (real, per channel), 3 out
//   modrelu_backward:    1 x, 2 bias, 3 dout, 4 dx
//   modrelu_bias_grad:   1 x, 2 bias, 3 dout, 4 dbias   (ceil(channels / 64) workgroups of 64)
//   magnitude:           1 x, 2 out (real)
//   phase:               1 x, 2 out (real)
//   magnitude_backward:  1 x, 2 dout (real), 3 dx
//   phase_backward:      1 x, 2 dout (real), 3 dx
//   planar:              1 x, 2 out (real)      [outer][inner] complex -> [outer][2][inner] real
//   interleave:          1 planes (real), 2 out  the inverse of planar
//   expand:              1 w, 2 out (real)      complex [rows][cols][inner] -> real [2 rows][2 cols][inner]
//   fold:                1 dw_real, 2 dw        the gradient of expand
// Channel of element i (modReLU): (i / inner) % channels.

struct Params {
    len: u32,
    inner: u32,
    channels: u32,
    rows: u32,
    cols: u32,
    transposed: u32,   // expand / fold: the 2x2 block is [[re, -im], [im, re]] (1) or its transpose (0)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> planes: array<f32>;
@group(0) @binding(1) var<storage, read> dw_real: array<f32>;

@group(0) @binding(2) var<storage, read> b: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read> dout_real: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out2_real: array<f32>;

@group(0) @binding(3) var<storage, read_write> out3: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> dout3: array<vec2<f32>>;

@group(0) @binding(4) var<storage, read_write> grad4: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> dbias: array<f32>;

@group(0) @binding(5) var<storage, read_write> grad5: array<vec2<f32>>;

// crelu_backward and the *_backward of magnitude / phase read dout at 2.
@group(0) @binding(2) var<storage, read> dout2: array<vec2<f32>>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

fn cmul(u: vec2<f32>, v: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(u.x * v.x - u.y * v.y, u.x * v.y + u.y * v.x);
}

fn conj(u: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(u.x, -u.y);
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out3[i] = cmul(x[i], b[i]);
    }
}

@compute @workgroup_size(256)
fn mul_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let g = dout3[i];
        grad4[i] = cmul(g, conj(b[i]));
        grad5[i] = cmul(g, conj(x[i]));
    }
}

@compute @workgroup_size(256)
fn crelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out2[i] = max(x[i], vec2<f32>(0.0));
    }
}

@compute @workgroup_size(256)
fn crelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out3[i] = select(vec2<f32>(0.0), dout2[i], x[i] > vec2<f32>(0.0));
    }
}

// zReLU keeps z where arg z is in [0, pi/2] (both parts non-negative).
fn first_quadrant(z: vec2<f32>) -> bool {
    return z.x >= 0.0 && z.y >= 0.0;
}

@compute @workgroup_size(256)
fn zrelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out2[i] = select(vec2<f32>(0.0), x[i], first_quadrant(x[i]));
    }
}

@compute @workgroup_size(256)
fn zrelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out3[i] = select(vec2<f32>(0.0), dout2[i], first_quadrant(x[i]));
    }
}

fn channel_bias(i: u32) -> f32 {
    return bias[(i / p.inner) % p.channels];
}

// relu(|z| + b) z / |z|; zero where z is zero (its direction is undefined).
@compute @workgroup_size(256)
fn modrelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let z = x[i];
        let r = length(z);
        let s = r + channel_bias(i);
        out3[i] = select(vec2<f32>(0.0), z * (s / r), s > 0.0 && r > 0.0);
    }
}

// Where active, out = z + b z / r has the symmetric real Jacobian
// I + (b / r)(I - u u^T), u = z / r, so dz = g + (b / r)(g - u (u . g)).
@compute @workgroup_size(256)
fn modrelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let z = x[i];
        let r = length(z);
        let bi = channel_bias(i);
        let g = dout3[i];
        var dz = vec2<f32>(0.0);
        if (r + bi > 0.0 && r > 0.0) {
            let u = z / r;
            dz = g + (bi / r) * (g - u * dot(u, g));
        }
        grad4[i] = dz;
    }
}

// dbias[c] = sum over the channel's active elements of u . g.
@compute @workgroup_size(64)
fn modrelu_bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    let bc = bias[c];
    let outer = p.len / (p.inner * p.channels);
    var total = 0.0;
    for (var o = 0u; o < outer; o++) {
        let base = (o * p.channels + c) * p.inner;
        for (var s = 0u; s < p.inner; s++) {
            let z = x[base + s];
            let r = length(z);
            if (r + bc > 0.0 && r > 0.0) {
                total += dot(z / r, dout3[base + s]);
            }
        }
    }
    dbias[c] = total;
}

@compute @workgroup_size(256)
fn magnitude(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        out2_real[i] = length(x[i]);
    }
}

@compute @workgroup_size(256)
fn phase(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        // atan2(0, 0) differs between backends; the phase of zero is 0.
        let z = x[i];
        out2_real[i] = select(atan2(z.y, z.x), 0.0, z.x == 0.0 && z.y == 0.0);
    }
}

// d|z| = z / |z|; zero at z = 0.
@compute @workgroup_size(256)
fn magnitude_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let z = x[i];
        let r = length(z);
        out3[i] = select(vec2<f32>(0.0), z * (dout_real[i] / r), r > 0.0);
    }
}

// d atan2(im, re) = (-im, re) / |z|^2; zero at z = 0.
@compute @workgroup_size(256)
fn phase_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let z = x[i];
        let r2 = dot(z, z);
        out3[i] = select(vec2<f32>(0.0), vec2<f32>(-z.y, z.x) * (dout_real[i] / r2), r2 > 0.0);
    }
}

// [outer][inner] complex -> [outer][2][inner] real; len = outer * inner.
@compute @workgroup_size(256)
fn planar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let o = i / p.inner;
        let s = i % p.inner;
        let z = x[i];
        out2_real[(2u * o) * p.inner + s] = z.x;
        out2_real[(2u * o + 1u) * p.inner + s] = z.y;
    }
}

@compute @workgroup_size(256)
fn interleave(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let o = i / p.inner;
        let s = i % p.inner;
        out2[i] = vec2<f32>(planes[(2u * o) * p.inner + s], planes[(2u * o + 1u) * p.inner + s]);
    }
}

// Real weights of a complex linear map: w[r][c][s] becomes the 2x2 block
// out[2r + q][2c + e][s]. With `transposed` the block is [[re, -im], [im, re]]
// (rows are outputs, as conv2d weights); otherwise [[re, im], [-im, re]]
// (rows are inputs, as a dense [in][out] matrix). len = rows * cols * inner.
fn block_entry(z: vec2<f32>, q: u32, e: u32) -> f32 {
    if (q == e) {
        return z.x;
    }
    // Off-diagonal: +im where the imaginary part of the output meets the
    // real part of the input.
    let output_im = select(e == 1u, q == 1u, p.transposed == 1u);
    return select(-z.y, z.y, output_im);
}

@compute @workgroup_size(256)
fn expand(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let s = i % p.inner;
        let rc = i / p.inner;
        let c = rc % p.cols;
        let r = rc / p.cols;
        let z = x[i];
        for (var q = 0u; q < 2u; q++) {
            for (var e = 0u; e < 2u; e++) {
                out2_real[((2u * r + q) * 2u * p.cols + 2u * c + e) * p.inner + s] = block_entry(z, q, e);
            }
        }
    }
}

// The gradient of expand: each complex weight collects its four entries
// (d re from the diagonal, d im from the signed off-diagonal).
@compute @workgroup_size(256)
fn fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        let s = i % p.inner;
        let rc = i / p.inner;
        let c = rc % p.cols;
        let r = rc / p.cols;
        var g = vec2<f32>(0.0);
        for (var q = 0u; q < 2u; q++) {
            for (var e = 0u; e < 2u; e++) {
                let d = dw_real[((2u * r + q) * 2u * p.cols + 2u * c + e) * p.inner + s];
                // block_entry is linear in (re, im): its coefficients are the
                // entry at z = 1 and at z = i.
                g += d * vec2<f32>(block_entry(vec2<f32>(1.0, 0.0), q, e), block_entry(vec2<f32>(0.0, 1.0), q, e));
            }
        }
        out2[i] = g;
    }
}

// Inverted dropout whose mask is a pure function of (seed, element index), so
// that the backward recomputes it and nothing is stored between the passes:
//   keep(i) = pcg(i ^ key) >> 8 >= threshold, key = pcg(seed)
//   y[i]    = keep(i) ? x[i] * scale : 0
// with pcg the PCG-RXS-M-XS 32-bit hash (Jarzynski and Olano, "Hash Functions
// for GPU Rendering", 2020), its top 24 bits a uniform integer in [0, 2^24).
// The launcher passes key = pcg(seed), threshold = ceil(p * 2^24) (so that
// keep(i) is "uniform in [0, 1) >= p" in exact integers) and
// scale = 1 / (1 - p); the CPU reference computes all three the same way,
// and the mask is bit-exact with it. The forward and the backward
// (dx = dy * keep / (1 - p)) are this same kernel.
//
// Bindings: 0 params, 1 x (read), 2 y (read-write).
// Dispatch: grid_1d(ceil(len / 1024)) workgroups of 256, each invocation
// handling 4 elements 256 apart (the linear workgroup index is
// wid.x + wid.y * nwg.x).
//
// The module is compiled without runtime bounds checks: every index is guarded
// against p.len (the launchers check both tensors' lengths).

struct Params {
    len: u32,
    key: u32,        // pcg(seed)
    threshold: u32,  // ceil(p * 2^24): the element is kept when its 24-bit draw >= threshold
    scale: f32,      // 1 / (1 - p)
}

const WG: u32 = 256u;
const PER_INVOCATION: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = (wid.x + wid.y * nwg.x) * (WG * PER_INVOCATION) + lid.x;
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG;
        if (i < p.len) {
            let keep = (pcg(i ^ p.key) >> 8u) >= p.threshold;
            y[i] = select(0.0, x[i] * p.scale, keep);
        }
    }
}

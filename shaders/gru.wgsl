// GRU cell kernels, one time step per dispatch, in PyTorch's gate order
// (r, z, n): r = sigmoid(a_r), z = sigmoid(a_z), n = tanh(x_n + r * hn) with
// hn = W_hn h_prev + b_hn, and h = (1 - z) * n + z * h_prev. The products with
// the weights are gemms recorded around these kernels: `gates` holds
// x_t W_ih^T for every step, `rec` holds h_prev W_hh^T for this step. The two
// biases stay apart because b_hn sits inside r * (...).
//
// Layouts: gates / dgates_x / dgates_h [T][B][3H] (gate g of unit j at
// g * H + j), hn / h_prev / hs [T][B][H], per-step states [B][H] and [B][3H].
//
// Entry points, their bindings (0 is always the params; each entry point
// binds 1.. in order), and dispatch:
//   cell_forward:  1 gates (x projections in, activations r, z, n out),
//                  2 rec, 3 b_ih, 4 b_hh, 5 hn, 6 h_state, 7 h_prev, 8 hs
//       grid_1d(ceil(B * H / 64)); h_state holds h_{t-1} on entry and h_t
//       on exit; h_prev[t] gets h_{t-1}, hn[t] the recurrent n part.
//   cell_backward: 1 gates (activations), 2 hn, 3 h_prev, 4 dout, 5 dh_rec,
//                  6 dgates_x, 7 dgates_h, 8 dgates_step
//       grid_1d(ceil(B * H / 64)); dh_rec holds the gradient of h_t from
//       step t + 1 on entry (its z part plus the recurrent gemm's) and the
//       z part z * dh of h_{t-1}'s gradient on exit, which the gemm
//       dgates_step W_hh then accumulates into; dh = dh_rec + dout[t].
//       dgates_x gets the gradient of the input side's pre-activations
//       (da_r, da_z, da_n), dgates_h and dgates_step that of the recurrent
//       side's (da_r, da_z, r * da_n).
//   bias_grad:     1 dgates, 2 dbias     (ceil(3H / 64), 1, 1)
// Every index is guarded in-kernel (the module is compiled trusted).

struct Params {
    batch: u32,
    hidden: u32,
    steps: u32,
    t: u32,   // the step this dispatch computes
}

@group(0) @binding(0) var<uniform> p: Params;

// cell_forward
@group(0) @binding(1) var<storage, read_write> gates: array<f32>;
@group(0) @binding(2) var<storage, read> rec: array<f32>;
@group(0) @binding(3) var<storage, read> b_ih: array<f32>;
@group(0) @binding(4) var<storage, read> b_hh: array<f32>;
@group(0) @binding(5) var<storage, read_write> hn: array<f32>;
@group(0) @binding(6) var<storage, read_write> h_state: array<f32>;
@group(0) @binding(7) var<storage, read_write> h_prev: array<f32>;
@group(0) @binding(8) var<storage, read_write> hs: array<f32>;

// cell_backward
@group(0) @binding(1) var<storage, read> acts: array<f32>;
@group(0) @binding(2) var<storage, read> hn_in: array<f32>;
@group(0) @binding(3) var<storage, read> h_prev_in: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dh_rec: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgates_x: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgates_h: array<f32>;
@group(0) @binding(8) var<storage, read_write> dgates_step: array<f32>;

// bias_grad
@group(0) @binding(1) var<storage, read> dgates_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// tanh through exp of a non-positive argument, exact at both tails.
fn tanh_stable(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

fn unit_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 64u + lid.x;
}

@compute @workgroup_size(64)
fn cell_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let unit = unit_index(wid, nwg, lid);
    let h = p.hidden;
    if (unit >= p.batch * h || p.t >= p.steps) {
        return;
    }
    let b = unit / h;
    let j = unit % h;
    let g0 = (p.t * p.batch + b) * 3u * h + j;
    let r0 = b * 3u * h + j;
    let r_gate = sigmoid(gates[g0] + b_ih[j] + rec[r0] + b_hh[j]);
    let z_gate = sigmoid(gates[g0 + h] + b_ih[j + h] + rec[r0 + h] + b_hh[j + h]);
    let hn_t = rec[r0 + 2u * h] + b_hh[j + 2u * h];
    let n_gate = tanh_stable(gates[g0 + 2u * h] + b_ih[j + 2u * h] + r_gate * hn_t);
    gates[g0] = r_gate;
    gates[g0 + h] = z_gate;
    gates[g0 + 2u * h] = n_gate;
    let h_before = h_state[unit];
    let h_t = (1.0 - z_gate) * n_gate + z_gate * h_before;
    let s = p.t * p.batch * h + unit;
    hn[s] = hn_t;
    h_prev[s] = h_before;
    h_state[unit] = h_t;
    hs[s] = h_t;
}

@compute @workgroup_size(64)
fn cell_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let unit = unit_index(wid, nwg, lid);
    let h = p.hidden;
    if (unit >= p.batch * h || p.t >= p.steps) {
        return;
    }
    let b = unit / h;
    let j = unit % h;
    let s = p.t * p.batch * h + unit;
    let dh = dh_rec[unit] + dout[s];
    let g0 = (p.t * p.batch + b) * 3u * h + j;
    let r_gate = acts[g0];
    let z_gate = acts[g0 + h];
    let n_gate = acts[g0 + 2u * h];
    let da_n = dh * (1.0 - z_gate) * (1.0 - n_gate * n_gate);
    let da_z = dh * (h_prev_in[s] - n_gate) * z_gate * (1.0 - z_gate);
    let da_r = da_n * hn_in[s] * r_gate * (1.0 - r_gate);
    let dhn = da_n * r_gate;
    dh_rec[unit] = dh * z_gate;
    dgates_x[g0] = da_r;
    dgates_x[g0 + h] = da_z;
    dgates_x[g0 + 2u * h] = da_n;
    dgates_h[g0] = da_r;
    dgates_h[g0 + h] = da_z;
    dgates_h[g0 + 2u * h] = dhn;
    let r0 = b * 3u * h + j;
    dgates_step[r0] = da_r;
    dgates_step[r0 + h] = da_z;
    dgates_step[r0 + 2u * h] = dhn;
}

// dbias[col] = sum over all steps and batch rows of dgates[.][col].
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let width = 3u * p.hidden;
    let col = gid.x;
    if (col >= width) {
        return;
    }
    var total = 0.0;
    for (var r = 0u; r < p.steps * p.batch; r++) {
        total += dgates_in[r * width + col];
    }
    dbias[col] = total;
}

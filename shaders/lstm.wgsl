// LSTM cell kernels, one time step per dispatch, in PyTorch's gate order
// (i, f, g, o): i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g),
// o = sigmoid(a_o), c = f * c_prev + i * g, h = o * tanh(c). The products with
// the weights are gemms recorded around these kernels: `gates` holds
// x_t W_ih^T for every step, `rec` holds h_prev W_hh^T for this step.
//
// Layouts: gates / dgates [T][B][4H] (gate g of unit j at g * H + j),
// cs / h_prev / hs [T][B][H], per-step states [B][H].
//
// Entry points, their bindings (0 is always the params; each entry point
// binds 1.. in order), and dispatch:
//   cell_forward_all:  1 gates (pre-activations in, activations out), 2 rec,
//                      3 bias, 4 c_state, 5 cs, 6 h_state, 7 h_prev, 8 hs
//   cell_forward_last: the same without hs
//       both grid_1d(ceil(B * H / 64)); h_state / c_state hold h_{t-1} /
//       c_{t-1} on entry and h_t / c_t on exit; h_prev[t] gets h_{t-1}.
//   cell_backward:     1 gates (activations), 2 cs, 3 c_init, 4 dh_rec,
//                      5 dout, 6 dc_state, 7 dgates, 8 dgates_step
//       grid_1d(ceil(B * H / 64)); dc_state holds dc_t on entry and
//       dc_{t-1} on exit; dh = dh_rec (from step t + 1) + dout for step t.
//   bias_grad:         1 dgates, 2 dbias     (ceil(4H / 64), 1, 1)
// Every index is guarded in-kernel (the module is compiled trusted).

struct Params {
    batch: u32,
    hidden: u32,
    steps: u32,
    t: u32,            // the step this dispatch computes
    all_states: u32,   // backward: dout is [T][B][H] (1) or the last step's [B][H] (0)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// cell_forward_*
@group(0) @binding(1) var<storage, read_write> gates: array<f32>;
@group(0) @binding(2) var<storage, read> rec: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c_state: array<f32>;
@group(0) @binding(5) var<storage, read_write> cs: array<f32>;
@group(0) @binding(6) var<storage, read_write> h_state: array<f32>;
@group(0) @binding(7) var<storage, read_write> h_prev: array<f32>;
@group(0) @binding(8) var<storage, read_write> hs: array<f32>;

// cell_backward
@group(0) @binding(1) var<storage, read> acts: array<f32>;
@group(0) @binding(2) var<storage, read> cs_in: array<f32>;
@group(0) @binding(3) var<storage, read> c_init: array<f32>;
@group(0) @binding(4) var<storage, read> dh_rec: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> dc_state: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgates: array<f32>;
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

// One unit of one batch element; returns h_t.
fn cell_step(unit: u32) -> f32 {
    let h = p.hidden;
    let b = unit / h;
    let j = unit % h;
    let g0 = (p.t * p.batch + b) * 4u * h + j;
    let r0 = b * 4u * h + j;
    let i_gate = sigmoid(gates[g0] + rec[r0] + bias[j]);
    let f_gate = sigmoid(gates[g0 + h] + rec[r0 + h] + bias[j + h]);
    let g_gate = tanh_stable(gates[g0 + 2u * h] + rec[r0 + 2u * h] + bias[j + 2u * h]);
    let o_gate = sigmoid(gates[g0 + 3u * h] + rec[r0 + 3u * h] + bias[j + 3u * h]);
    gates[g0] = i_gate;
    gates[g0 + h] = f_gate;
    gates[g0 + 2u * h] = g_gate;
    gates[g0 + 3u * h] = o_gate;
    let c = f_gate * c_state[unit] + i_gate * g_gate;
    let h_t = o_gate * tanh_stable(c);
    let s = p.t * p.batch * h + unit;
    c_state[unit] = c;
    cs[s] = c;
    h_prev[s] = h_state[unit];
    h_state[unit] = h_t;
    return h_t;
}

@compute @workgroup_size(64)
fn cell_forward_all(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let unit = unit_index(wid, nwg, lid);
    if (unit >= p.batch * p.hidden) {
        return;
    }
    hs[p.t * p.batch * p.hidden + unit] = cell_step(unit);
}

@compute @workgroup_size(64)
fn cell_forward_last(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let unit = unit_index(wid, nwg, lid);
    if (unit >= p.batch * p.hidden) {
        return;
    }
    cell_step(unit);
}

@compute @workgroup_size(64)
fn cell_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let unit = unit_index(wid, nwg, lid);
    let h = p.hidden;
    if (unit >= p.batch * h) {
        return;
    }
    let b = unit / h;
    let j = unit % h;
    let s = p.t * p.batch * h + unit;
    var dh = dh_rec[unit];
    if (p.all_states == 1u) {
        dh += dout[s];
    } else if (p.t + 1u == p.steps) {
        dh += dout[unit];
    }
    let g0 = (p.t * p.batch + b) * 4u * h + j;
    let i_gate = acts[g0];
    let f_gate = acts[g0 + h];
    let g_gate = acts[g0 + 2u * h];
    let o_gate = acts[g0 + 3u * h];
    let c = cs_in[s];
    var c_prev = 0.0;
    if (p.t == 0u) {
        c_prev = c_init[unit];
    } else {
        c_prev = cs_in[s - p.batch * h];
    }
    let tc = tanh_stable(c);
    let dc = dc_state[unit] + dh * o_gate * (1.0 - tc * tc);
    let da_i = dc * g_gate * i_gate * (1.0 - i_gate);
    let da_f = dc * c_prev * f_gate * (1.0 - f_gate);
    let da_g = dc * i_gate * (1.0 - g_gate * g_gate);
    let da_o = dh * tc * o_gate * (1.0 - o_gate);
    dc_state[unit] = dc * f_gate;
    dgates[g0] = da_i;
    dgates[g0 + h] = da_f;
    dgates[g0 + 2u * h] = da_g;
    dgates[g0 + 3u * h] = da_o;
    let r0 = b * 4u * h + j;
    dgates_step[r0] = da_i;
    dgates_step[r0 + h] = da_f;
    dgates_step[r0 + 2u * h] = da_g;
    dgates_step[r0 + 3u * h] = da_o;
}

// dbias[col] = sum over all steps and batch rows of dgates[.][col].
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let width = 4u * p.hidden;
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

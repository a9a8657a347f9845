// Optimizer updates, one parameter tensor per dispatch, following the update
// rules torch.optim documents: SGD with momentum, dampening, Nesterov and
// coupled (L2) weight decay; Adam, and AdamW's decoupled weight decay, with
// bias correction. The *_clipped entry points first scale the gradient by
// min(1, max_norm / (norm + eps)), reading the global norm from a 1-element
// tensor on the GPU; clip_gradient applies that scale to a gradient in place.
//
// Bindings (0 is params):
//   sgd            1 param (rw), 2 grad, 3 momentum buffer (rw)
//   sgd_clipped    the same, 4 norm
//   adam           1 param (rw), 2 grad, 3 m (rw), 4 v (rw)
//   adam_clipped   the same, 5 norm
//   clip_gradient  1 grad (rw), 2 norm
// Dispatch: grid_1d(ceil(len / 256)) workgroups of 256, one element per
// invocation (linear workgroup index wid.x + wid.y * nwg.x).
//
// The module is compiled without runtime bounds checks: every index is
// guarded against len (the launchers check every tensor's length).

struct SgdParams {
    len: u32,
    first_step: u32,   // 1 on the first step: the momentum buffer starts as the gradient
    nesterov: u32,
    _pad0: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    max_norm: f32,
    clip_eps: f32,
    _pad1: u32,
    _pad2: u32,
}

struct AdamParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,       // coupled: added to the gradient (Adam)
    decay_factor: f32,       // decoupled: param *= 1 - lr * weight_decay (AdamW)
    step_size: f32,          // lr / (1 - beta1^t)
    sqrt_correction2: f32,   // sqrt(1 - beta2^t)
    _pad3: u32,
    max_norm: f32,
    clip_eps: f32,
    _pad4: u32,
    _pad5: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> sp: SgdParams;
@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> momentum_buf: array<f32>;
@group(0) @binding(4) var<storage, read> sgd_norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> adam_norm: array<f32>;
@group(0) @binding(1) var<storage, read_write> clip_grad: array<f32>;
@group(0) @binding(2) var<storage, read> clip_norm: array<f32>;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

// torch.nn.utils.clip_grad_norm_'s factor.
fn clip_factor(norm: f32, max_norm: f32, eps: f32) -> f32 {
    return min(1.0, max_norm / (norm + eps));
}

fn sgd_update(i: u32, scale: f32) {
    var g = scale * grad[i];
    let w = param[i];
    if (sp.weight_decay != 0.0) {
        g += sp.weight_decay * w;
    }
    if (sp.momentum != 0.0) {
        var b = g;
        if (sp.first_step == 0u) {
            b = sp.momentum * momentum_buf[i] + (1.0 - sp.dampening) * g;
        }
        momentum_buf[i] = b;
        if (sp.nesterov != 0u) {
            g += sp.momentum * b;
        } else {
            g = b;
        }
    }
    param[i] = w - sp.lr * g;
}

fn adam_update(i: u32, scale: f32) {
    var g = scale * grad[i];
    var w = param[i];
    if (ap.weight_decay != 0.0) {
        g += ap.weight_decay * w;
    }
    w *= ap.decay_factor;
    let m_new = ap.beta1 * m[i] + (1.0 - ap.beta1) * g;
    let v_new = ap.beta2 * v[i] + (1.0 - ap.beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    param[i] = w - ap.step_size * m_new / (sqrt(v_new) / ap.sqrt_correction2 + ap.eps);
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < sp.len) {
        sgd_update(i, 1.0);
    }
}

@compute @workgroup_size(WG)
fn sgd_clipped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < sp.len) {
        sgd_update(i, clip_factor(sgd_norm[0], sp.max_norm, sp.clip_eps));
    }
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < ap.len) {
        adam_update(i, 1.0);
    }
}

@compute @workgroup_size(WG)
fn adam_clipped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < ap.len) {
        adam_update(i, clip_factor(adam_norm[0], ap.max_norm, ap.clip_eps));
    }
}

@compute @workgroup_size(WG)
fn clip_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if (i < sp.len) {
        clip_grad[i] = clip_grad[i] * clip_factor(clip_norm[0], sp.max_norm, sp.clip_eps);
    }
}

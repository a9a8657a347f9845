//! Optimizer updates on the GPU, as torch.optim documents them: SGD with
//! momentum, dampening, Nesterov and (coupled L2) weight decay; Adam and AdamW
//! with bias correction; and gradient clipping by a global norm that stays on
//! the GPU (fused into the updates, or applied on its own).
//! Shader: `shaders/optimizers.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("optimizers", trusted);

const WORKGROUP: usize = 256;
/// torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing.
pub const CLIP_EPS: f32 = 1e-6;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SgdParams {
    len: u32,
    first_step: u32,
    nesterov: u32,
    _pad0: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    max_norm: f32,
    clip_eps: f32,
    _pad1: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    len: u32,
    _pad0: [u32; 3],
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decay_factor: f32,
    step_size: f32,
    sqrt_correction2: f32,
    _pad1: u32,
    max_norm: f32,
    clip_eps: f32,
    _pad2: [u32; 2],
}

/// torch.optim.SGD's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Sgd {
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// torch.optim.Adam's settings (coupled L2 weight decay), or AdamW's when
/// `decoupled` (the parameter decays by `lr * weight_decay` each step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no decay.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(lr: f32) -> Self {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(lr)
        }
    }
}

/// Clipping by global norm: the gradient is scaled by
/// `min(1, max_norm / (norm + 1e-6))`, `norm` being the 1-element result of
/// `reductions::SquaresPlan::global_norm` over all the gradients.
#[derive(Clone, Copy, Debug)]
pub struct Clip<'a> {
    pub norm: &'a Tensor,
    pub max_norm: f32,
}

fn check_len(op: &str, name: &str, t: &Tensor, want: usize) -> GpuResult<()> {
    ensure_len(format_args!("{op}"), name, t, want)
}

fn check_clip(op: &str, clip: Option<&Clip>) -> GpuResult<()> {
    if let Some(clip) = clip {
        ensure(clip.norm.len() == 1, || {
            format!(
                "{op}: the clipping norm has shape {:?}, expected 1 element",
                clip.norm.shape()
            )
        })?;
    }
    Ok(())
}

fn check_step(op: &str, step: u64) -> GpuResult<()> {
    ensure(step >= 1, || {
        format!("{op}: steps count from 1, got {step}")
    })
}

/// One SGD step on `param` (step counts from 1). The momentum buffer holds
/// the parameter's velocity between steps; it is left alone when momentum is 0.
pub fn sgd_step(
    rec: &mut Recorder,
    cfg: &Sgd,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    momentum_buf: &Tensor,
    clip: Option<&Clip>,
) -> GpuResult<()> {
    let len = param.len();
    check_step("sgd", step)?;
    check_len("sgd", "grad", grad, len)?;
    check_len("sgd", "momentum buffer", momentum_buf, len)?;
    check_clip("sgd", clip)?;
    ensure(
        !cfg.nesterov || (cfg.momentum > 0.0 && cfg.dampening == 0.0),
        || format!("sgd {cfg:?}: Nesterov momentum needs momentum > 0 and no dampening"),
    )?;
    let params = SgdParams {
        len: len as u32,
        first_step: (step == 1) as u32,
        nesterov: cfg.nesterov as u32,
        _pad0: 0,
        lr: cfg.lr,
        momentum: cfg.momentum,
        dampening: cfg.dampening,
        weight_decay: cfg.weight_decay,
        max_norm: clip.map_or(0.0, |c| c.max_norm),
        clip_eps: CLIP_EPS,
        _pad1: [0; 2],
    };
    let groups = grid_1d(len.div_ceil(WORKGROUP) as u32);
    match clip {
        None => rec.dispatch(
            &SHADER,
            "sgd",
            &[],
            &params,
            &[param, grad, momentum_buf],
            groups,
        ),
        Some(c) => rec.dispatch(
            &SHADER,
            "sgd_clipped",
            &[],
            &params,
            &[param, grad, momentum_buf, c.norm],
            groups,
        ),
    }
}

/// One Adam / AdamW step on `param` (step counts from 1, and gives the bias
/// correction); `m` and `v` are the moment estimates, zero before step 1.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    rec: &mut Recorder,
    cfg: &Adam,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    clip: Option<&Clip>,
) -> GpuResult<()> {
    let len = param.len();
    check_step("adam", step)?;
    check_len("adam", "grad", grad, len)?;
    check_len("adam", "m", m, len)?;
    check_len("adam", "v", v, len)?;
    check_clip("adam", clip)?;
    let t = step.min(i32::MAX as u64) as i32;
    let correction1 = 1.0 - (cfg.beta1 as f64).powi(t);
    let correction2 = 1.0 - (cfg.beta2 as f64).powi(t);
    let (coupled, decay_factor) = if cfg.decoupled {
        (0.0, 1.0 - cfg.lr * cfg.weight_decay)
    } else {
        (cfg.weight_decay, 1.0)
    };
    let params = AdamParams {
        len: len as u32,
        _pad0: [0; 3],
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        weight_decay: coupled,
        decay_factor,
        step_size: (cfg.lr as f64 / correction1) as f32,
        sqrt_correction2: correction2.sqrt() as f32,
        _pad1: 0,
        max_norm: clip.map_or(0.0, |c| c.max_norm),
        clip_eps: CLIP_EPS,
        _pad2: [0; 2],
    };
    let groups = grid_1d(len.div_ceil(WORKGROUP) as u32);
    match clip {
        None => rec.dispatch(&SHADER, "adam", &[], &params, &[param, grad, m, v], groups),
        Some(c) => rec.dispatch(
            &SHADER,
            "adam_clipped",
            &[],
            &params,
            &[param, grad, m, v, c.norm],
            groups,
        ),
    }
}

/// Scales every gradient in place by `min(1, max_norm / (norm + 1e-6))`, the
/// norm read on the GPU from its 1-element tensor (one dispatch per tensor;
/// the optimizer steps can instead take the clip and save these).
pub fn clip_by_global_norm(
    rec: &mut Recorder,
    grads: &[&Tensor],
    norm: &Tensor,
    max_norm: f32,
) -> GpuResult<()> {
    check_clip("clip_by_global_norm", Some(&Clip { norm, max_norm }))?;
    for grad in grads {
        let params = SgdParams {
            len: grad.len() as u32,
            max_norm,
            clip_eps: CLIP_EPS,
            ..bytemuck::Zeroable::zeroed()
        };
        rec.dispatch(
            &SHADER,
            "clip_gradient",
            &[],
            &params,
            &[grad, norm],
            grid_1d(grad.len().div_ceil(WORKGROUP) as u32),
        )?;
    }
    Ok(())
}

/// CPU reference of the clipping factor.
pub fn clip_factor_reference(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + CLIP_EPS as f64)).min(1.0)
}

/// CPU reference of one SGD step, in f64 per element, written as torch.optim.SGD
/// documents it; `grad_scale` is the clipping factor (1 without clipping).
pub fn sgd_reference(
    cfg: &Sgd,
    step: u64,
    param: &mut [f32],
    grad: &[f32],
    momentum_buf: &mut [f32],
    grad_scale: f64,
) {
    let (lr, mu, tau, wd) = (
        cfg.lr as f64,
        cfg.momentum as f64,
        cfg.dampening as f64,
        cfg.weight_decay as f64,
    );
    for i in 0..param.len() {
        let theta = param[i] as f64;
        let mut g = grad_scale * grad[i] as f64;
        if wd != 0.0 {
            g += wd * theta;
        }
        if mu != 0.0 {
            let b = if step > 1 {
                mu * momentum_buf[i] as f64 + (1.0 - tau) * g
            } else {
                g
            };
            momentum_buf[i] = b as f32;
            g = if cfg.nesterov { g + mu * b } else { b };
        }
        param[i] = (theta - lr * g) as f32;
    }
}

/// CPU reference of one Adam / AdamW step, in f64 per element, written as
/// torch.optim.Adam and AdamW document it.
pub fn adam_reference(
    cfg: &Adam,
    step: u64,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    grad_scale: f64,
) {
    let (lr, b1, b2, eps, wd) = (
        cfg.lr as f64,
        cfg.beta1 as f64,
        cfg.beta2 as f64,
        cfg.eps as f64,
        cfg.weight_decay as f64,
    );
    let t = step as i32;
    for i in 0..param.len() {
        let mut theta = param[i] as f64;
        let mut g = grad_scale * grad[i] as f64;
        if cfg.decoupled {
            theta -= lr * wd * theta;
        } else if wd != 0.0 {
            g += wd * theta;
        }
        let mi = b1 * m[i] as f64 + (1.0 - b1) * g;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * g * g;
        m[i] = mi as f32;
        v[i] = vi as f32;
        let m_hat = mi / (1.0 - b1.powi(t));
        let v_hat = vi / (1.0 - b2.powi(t));
        param[i] = (theta - lr * m_hat / (v_hat.sqrt() + eps)) as f32;
    }
}

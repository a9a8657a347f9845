//! Batch normalisation over the channels of `[batch, channels, spatial...]`:
//! training mode (batch statistics; running statistics updated with momentum,
//! the running variance unbiased as PyTorch keeps it), inference mode
//! (running statistics), affine (gamma, beta) or not; forward, and the
//! training-mode backward to the input, gamma and beta (for a non-affine
//! norm also from its output, so that its input need not be kept). Training
//! forward saves `[2, channels]`: the batch mean and `1 / sqrt(var + eps)`.
//! Shader: `shaders/batchnorm.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("batchnorm", trusted);

fn row_constants(
    rec: &Recorder,
    spec: &BatchNorm,
    affine: bool,
    running: bool,
) -> [(&'static str, f64); 3] {
    [
        ("AFFINE", affine as u8 as f64),
        ("RUNNING", running as u8 as f64),
        // Lanes per row of the per-row kernels (normalize, input_gradient).
        ("ROW_LANES", rec.gpu().row_lanes(spec.spatial) as f64),
    ]
}

fn rows(spec: &BatchNorm) -> [u32; 3] {
    grid_1d((spec.batch * spec.channels) as u32)
}

/// The shape and constants of one batch norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub batch: usize,
    pub channels: usize,
    /// Elements per channel per image (the product of the trailing dimensions).
    pub spatial: usize,
    pub eps: f32,
    /// Weight of the batch statistic in the running average (PyTorch's momentum).
    pub momentum: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    spatial: u32,
    eps: f32,
    momentum: f32,
    _pad: [u32; 3],
}

/// Gamma and beta of an affine batch norm.
#[derive(Clone, Copy)]
pub struct Affine<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
}

/// The running mean and variance that inference uses.
#[derive(Clone, Copy)]
pub struct Running<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
}

/// Where the training backward writes the gradients of an affine norm.
#[derive(Clone, Copy)]
pub struct AffineGrads<'a> {
    pub gamma: &'a Tensor,
    pub dgamma: &'a Tensor,
    pub dbeta: &'a Tensor,
}

impl BatchNorm {
    /// eps 1e-5 and momentum 0.1, PyTorch's defaults.
    pub fn new(batch: usize, channels: usize, spatial: usize) -> Self {
        BatchNorm {
            batch,
            channels,
            spatial,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// The norm of a tensor of shape `[batch, channels, spatial...]`.
    pub fn for_shape(shape: &[usize]) -> GpuResult<Self> {
        ensure(shape.len() >= 2, || {
            format!("batch norm needs [batch, channels, ...], got {shape:?}")
        })?;
        Ok(Self::new(shape[0], shape[1], shape[2..].iter().product()))
    }

    pub fn eps(self, eps: f32) -> Self {
        BatchNorm { eps, ..self }
    }

    pub fn momentum(self, momentum: f32) -> Self {
        BatchNorm { momentum, ..self }
    }

    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn params(&self) -> Params {
        Params {
            batch: self.batch as u32,
            channels: self.channels as u32,
            spatial: self.spatial as u32,
            eps: self.eps,
            momentum: self.momentum,
            _pad: [0; 3],
        }
    }
}

fn check_len(spec: &BatchNorm, what: &str, t: &Tensor, want: usize) -> GpuResult<()> {
    ensure_len(format_args!("batch norm {spec:?}"), what, t, want)
}

fn affine_constant(affine: bool) -> [(&'static str, f64); 1] {
    [("AFFINE", affine as u8 as f64)]
}

/// Training forward: normalises x with its batch statistics into y, saves
/// `[mean; invstd]` into `saved` (`[2, channels]`) and updates the running
/// statistics.
pub fn batch_norm_train_forward(
    rec: &mut Recorder,
    spec: &BatchNorm,
    x: &Tensor,
    affine: Option<Affine>,
    running: Running,
    y: &Tensor,
    saved: &Tensor,
) -> GpuResult<()> {
    let (running_mean, running_var) = (running.mean, running.var);
    check_len(spec, "x", x, spec.len())?;
    check_len(spec, "y", y, spec.len())?;
    check_len(spec, "saved", saved, 2 * spec.channels)?;
    check_len(spec, "running_mean", running_mean, spec.channels)?;
    check_len(spec, "running_var", running_var, spec.channels)?;
    ensure(spec.batch * spec.spatial > 0, || {
        format!("batch norm {spec:?}: training needs at least one element per channel")
    })?;
    if let Some(a) = affine {
        check_len(spec, "gamma", a.gamma, spec.channels)?;
        check_len(spec, "beta", a.beta, spec.channels)?;
    }
    rec.dispatch(
        &SHADER,
        "train_statistics",
        &[],
        &spec.params(),
        &[x, saved, running_mean, running_var],
        grid_1d(spec.channels as u32),
    )?;
    // A non-affine norm binds x in place of gamma and beta, unread.
    let (gamma, beta) = affine.map_or((x, x), |a| (a.gamma, a.beta));
    rec.dispatch(
        &SHADER,
        "normalize",
        &row_constants(rec, spec, affine.is_some(), false),
        &spec.params(),
        &[x, gamma, beta, y, saved, saved],
        rows(spec),
    )
}

/// Inference forward with the running statistics.
pub fn batch_norm_infer_forward(
    rec: &mut Recorder,
    spec: &BatchNorm,
    x: &Tensor,
    affine: Option<Affine>,
    running: Running,
    y: &Tensor,
) -> GpuResult<()> {
    let (running_mean, running_var) = (running.mean, running.var);
    check_len(spec, "x", x, spec.len())?;
    check_len(spec, "y", y, spec.len())?;
    check_len(spec, "running_mean", running_mean, spec.channels)?;
    check_len(spec, "running_var", running_var, spec.channels)?;
    if let Some(a) = affine {
        check_len(spec, "gamma", a.gamma, spec.channels)?;
        check_len(spec, "beta", a.beta, spec.channels)?;
    }
    let (gamma, beta) = affine.map_or((x, x), |a| (a.gamma, a.beta));
    rec.dispatch(
        &SHADER,
        "normalize",
        &row_constants(rec, spec, affine.is_some(), true),
        &spec.params(),
        &[x, gamma, beta, y, running_mean, running_var],
        rows(spec),
    )
}

/// Training backward: dx (overwritten) from dy, the forward input x and what
/// the forward saved; for an affine norm also dgamma and dbeta (overwritten).
pub fn batch_norm_train_backward(
    rec: &mut Recorder,
    spec: &BatchNorm,
    x: &Tensor,
    dy: &Tensor,
    saved: &Tensor,
    affine: Option<AffineGrads>,
    dx: &Tensor,
) -> GpuResult<()> {
    check_len(spec, "x", x, spec.len())?;
    train_backward(rec, spec, Read::Input(x), dy, saved, affine, dx)
}

/// Training backward of a non-affine norm from its output y (which is
/// xhat): dx (overwritten) from dy, y and what the forward saved; the same
/// gradient as `batch_norm_train_backward` without the forward's input.
pub fn batch_norm_train_backward_from_output(
    rec: &mut Recorder,
    spec: &BatchNorm,
    y: &Tensor,
    dy: &Tensor,
    saved: &Tensor,
    dx: &Tensor,
) -> GpuResult<()> {
    check_len(spec, "y", y, spec.len())?;
    train_backward(rec, spec, Read::Output(y), dy, saved, None, dx)
}

/// What the training backward reads of the forward: its input x, or the
/// output of a non-affine norm (xhat).
#[derive(Clone, Copy)]
enum Read<'a> {
    Input(&'a Tensor),
    Output(&'a Tensor),
}

fn train_backward(
    rec: &mut Recorder,
    spec: &BatchNorm,
    read: Read,
    dy: &Tensor,
    saved: &Tensor,
    affine: Option<AffineGrads>,
    dx: &Tensor,
) -> GpuResult<()> {
    check_len(spec, "dy", dy, spec.len())?;
    check_len(spec, "dx", dx, spec.len())?;
    check_len(spec, "saved", saved, 2 * spec.channels)?;
    if let Some(a) = affine {
        check_len(spec, "gamma", a.gamma, spec.channels)?;
        check_len(spec, "dgamma", a.dgamma, spec.channels)?;
        check_len(spec, "dbeta", a.dbeta, spec.channels)?;
    }
    if spec.batch * spec.spatial == 0 {
        return Ok(());
    }
    let (gamma, dgamma, dbeta) = affine_grads_or_scratch(rec, spec, affine, saved)?;
    let (source, from_output) = match read {
        Read::Input(x) => (x, false),
        Read::Output(y) => (y, true),
    };
    let from_output = ("FROM_OUTPUT", from_output as u8 as f64);
    rec.dispatch(
        &SHADER,
        "gradient_sums",
        &[from_output],
        &spec.params(),
        &[source, dy, saved, &dgamma, &dbeta],
        grid_1d(spec.channels as u32),
    )?;
    let [affine_constant, running, lanes] = row_constants(rec, spec, affine.is_some(), false);
    rec.dispatch(
        &SHADER,
        "input_gradient",
        &[affine_constant, running, lanes, from_output],
        &spec.params(),
        &[source, dy, saved, &gamma, dx, &dgamma, &dbeta],
        rows(spec),
    )
}

/// Inference backward (the running statistics held fixed, as when a
/// trained network is fine-tuned): dx (overwritten) from dy, and for an
/// affine norm dgamma and dbeta (overwritten).
pub fn batch_norm_infer_backward(
    rec: &mut Recorder,
    spec: &BatchNorm,
    x: &Tensor,
    dy: &Tensor,
    running: Running,
    affine: Option<AffineGrads>,
    dx: &Tensor,
) -> GpuResult<()> {
    check_len(spec, "x", x, spec.len())?;
    check_len(spec, "dy", dy, spec.len())?;
    check_len(spec, "dx", dx, spec.len())?;
    check_len(spec, "running_mean", running.mean, spec.channels)?;
    check_len(spec, "running_var", running.var, spec.channels)?;
    if let Some(a) = affine {
        check_len(spec, "gamma", a.gamma, spec.channels)?;
        check_len(spec, "dgamma", a.dgamma, spec.channels)?;
        check_len(spec, "dbeta", a.dbeta, spec.channels)?;
    }
    if spec.batch * spec.spatial == 0 {
        return Ok(());
    }
    let (gamma, dgamma, dbeta) = affine_grads_or_scratch(rec, spec, affine, running.mean)?;
    rec.dispatch(
        &SHADER,
        "infer_backward",
        &affine_constant(affine.is_some()),
        &spec.params(),
        &[
            x,
            dy,
            running.mean,
            &gamma,
            dx,
            &dgamma,
            &dbeta,
            running.var,
        ],
        grid_1d(spec.channels as u32),
    )
}

/// gamma, dgamma and dbeta of an affine norm; a non-affine norm still
/// reduces both sums, into scratch, with `stand_in` bound for gamma, unread.
fn affine_grads_or_scratch(
    rec: &mut Recorder,
    spec: &BatchNorm,
    affine: Option<AffineGrads>,
    stand_in: &Tensor,
) -> GpuResult<(Tensor, Tensor, Tensor)> {
    Ok(match affine {
        Some(a) => (a.gamma.clone(), a.dgamma.clone(), a.dbeta.clone()),
        None => (
            stand_in.clone(),
            rec.empty(&[spec.channels])?,
            rec.empty(&[spec.channels])?,
        ),
    })
}

/// Element `(n, c, s)` of a `[batch, channels, spatial]` array.
fn at(spec: &BatchNorm, n: usize, c: usize, s: usize) -> usize {
    (n * spec.channels + c) * spec.spatial + s
}

/// Per-channel batch mean and biased variance, in f64.
fn batch_statistics(spec: &BatchNorm, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let count = (spec.batch * spec.spatial) as f64;
    let mut mean = vec![0.0; spec.channels];
    let mut var = vec![0.0; spec.channels];
    for c in 0..spec.channels {
        let values = || (0..spec.batch).flat_map(move |n| (0..spec.spatial).map(move |s| (n, s)));
        mean[c] = values().map(|(n, s)| x[at(spec, n, c, s)]).sum::<f64>() / count;
        var[c] = values()
            .map(|(n, s)| (x[at(spec, n, c, s)] - mean[c]).powi(2))
            .sum::<f64>()
            / count;
    }
    (mean, var)
}

fn normalize(
    spec: &BatchNorm,
    x: &[f64],
    mean: &[f64],
    invstd: &[f64],
    affine: Option<(&[f64], &[f64])>,
) -> Vec<f64> {
    let mut y = vec![0.0; spec.len()];
    for n in 0..spec.batch {
        for c in 0..spec.channels {
            let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[c], b[c]));
            for s in 0..spec.spatial {
                let i = at(spec, n, c, s);
                y[i] = (x[i] - mean[c]) * invstd[c] * g + b;
            }
        }
    }
    y
}

/// What the training forward reference returns.
pub struct TrainForward {
    pub y: Vec<f64>,
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
}

/// CPU reference of the training forward, in f64; updates the running
/// statistics in place.
pub fn batch_norm_train_forward_reference(
    spec: &BatchNorm,
    x: &[f64],
    affine: Option<(&[f64], &[f64])>,
    running_mean: &mut [f64],
    running_var: &mut [f64],
) -> TrainForward {
    let (mean, var) = batch_statistics(spec, x);
    let eps = spec.eps as f64;
    let momentum = spec.momentum as f64;
    let count = (spec.batch * spec.spatial) as f64;
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    for c in 0..spec.channels {
        let unbiased = var[c] * count / (count - 1.0).max(1.0);
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c];
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased;
    }
    TrainForward {
        y: normalize(spec, x, &mean, &invstd, affine),
        mean,
        invstd,
    }
}

/// CPU reference of the inference forward, in f64.
pub fn batch_norm_infer_forward_reference(
    spec: &BatchNorm,
    x: &[f64],
    affine: Option<(&[f64], &[f64])>,
    running_mean: &[f64],
    running_var: &[f64],
) -> Vec<f64> {
    let eps = spec.eps as f64;
    let invstd: Vec<f64> = running_var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    normalize(spec, x, running_mean, &invstd, affine)
}

/// Gradients of a batch norm forward (training or inference).
pub struct Gradients {
    pub dx: Vec<f64>,
    pub dgamma: Vec<f64>,
    pub dbeta: Vec<f64>,
}

/// CPU reference of the training backward, in f64, from the saved mean and
/// invstd; `gamma` is None for the non-affine norm (dgamma and dbeta are then
/// the gradients a gamma of ones and a beta of zeros would get).
pub fn batch_norm_train_backward_reference(
    spec: &BatchNorm,
    x: &[f64],
    dy: &[f64],
    mean: &[f64],
    invstd: &[f64],
    gamma: Option<&[f64]>,
) -> Gradients {
    let count = (spec.batch * spec.spatial) as f64;
    let mut dx = vec![0.0; spec.len()];
    let mut dgamma = vec![0.0; spec.channels];
    let mut dbeta = vec![0.0; spec.channels];
    let cells =
        |c| (0..spec.batch).flat_map(move |n| (0..spec.spatial).map(move |s| at(spec, n, c, s)));
    for c in 0..spec.channels {
        let xhat = |i: usize| (x[i] - mean[c]) * invstd[c];
        for i in cells(c) {
            dbeta[c] += dy[i];
            dgamma[c] += dy[i] * xhat(i);
        }
        let g = gamma.map_or(1.0, |g| g[c]);
        for i in cells(c) {
            dx[i] = g * invstd[c] / count * (count * dy[i] - dbeta[c] - xhat(i) * dgamma[c]);
        }
    }
    Gradients { dx, dgamma, dbeta }
}

/// CPU reference of the non-affine training backward from the output
/// xhat, in f64: dx = invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
/// the means per channel.
pub fn batch_norm_train_backward_from_output_reference(
    spec: &BatchNorm,
    xhat: &[f64],
    dy: &[f64],
    invstd: &[f64],
) -> Vec<f64> {
    let count = (spec.batch * spec.spatial) as f64;
    let mut dx = vec![0.0; spec.len()];
    let cells =
        |c| (0..spec.batch).flat_map(move |n| (0..spec.spatial).map(move |s| at(spec, n, c, s)));
    for (c, &invstd) in invstd.iter().enumerate() {
        let mean_dy = cells(c).map(|i| dy[i]).sum::<f64>() / count;
        let mean_dy_xhat = cells(c).map(|i| dy[i] * xhat[i]).sum::<f64>() / count;
        for i in cells(c) {
            dx[i] = invstd * (dy[i] - mean_dy - xhat[i] * mean_dy_xhat);
        }
    }
    dx
}

/// CPU reference of the inference backward, in f64 (dgamma and dbeta are
/// what a gamma of ones and a beta of zeros would get when `gamma` is None).
pub fn batch_norm_infer_backward_reference(
    spec: &BatchNorm,
    x: &[f64],
    dy: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    gamma: Option<&[f64]>,
) -> Gradients {
    let eps = spec.eps as f64;
    let mut dx = vec![0.0; spec.len()];
    let mut dgamma = vec![0.0; spec.channels];
    let mut dbeta = vec![0.0; spec.channels];
    for n in 0..spec.batch {
        for c in 0..spec.channels {
            let invstd = 1.0 / (running_var[c] + eps).sqrt();
            let g = gamma.map_or(1.0, |g| g[c]);
            for s in 0..spec.spatial {
                let i = at(spec, n, c, s);
                dx[i] = g * invstd * dy[i];
                dbeta[c] += dy[i];
                dgamma[c] += dy[i] * (x[i] - running_mean[c]) * invstd;
            }
        }
    }
    Gradients { dx, dgamma, dbeta }
}

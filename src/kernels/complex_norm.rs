//! Complex batch normalisation (Deep Complex Networks, Trabelsi et al. 2018)
//! over the channels of a complex `[batch, channels, spatial..., 2]` tensor
//! (interleaved `(re, im)` pairs, see `complex`). Each channel's values are
//! centred and whitened with the inverse square root of their 2x2 covariance
//! (plus `eps I`), so that real and imaginary parts come out decorrelated
//! with unit variance, which a per-part real batch norm does not achieve.
//! The affine norm then applies a symmetric 2x2 `gamma` and a complex `beta`.
//!
//! Tensors: `gamma` `[channels, 3]` = `(grr, gri, gii)`, `beta` `[channels, 2]`,
//! the running mean `[channels, 2]` and running covariance `[channels, 3]` =
//! `(Vrr, Vri, Vii)` (unbiased, without eps, as real batch norm keeps its
//! variance). The training forward saves `[channels, 8]` (`saved_shape`):
//! per channel the batch mean (re, im), `W = V^{-1/2}` as `(Wrr, Wri, Wii)`
//! and the covariance `V` it came from, eps included, as `(a, b, c)`.
//! Gradients of complex values follow `complex`'s convention (the real and
//! imaginary partial derivatives, interleaved); gradients of `gamma` and
//! `beta` are written, not accumulated. Shader: `shaders/complex_norm.wgsl`.

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("complex_norm", trusted);

/// Floats the training forward saves per channel: mean (2), W (3), V (3).
pub const SAVED_PER_CHANNEL: usize = 8;
/// Floats (three vec4s) of dx coefficients per channel that `gradient_sums`
/// hands to `input_gradient`.
const COEFFICIENTS_PER_CHANNEL: usize = 12;

/// The shape of the tensor the training forward saves for the backward.
pub fn saved_shape(channels: usize) -> [usize; 2] {
    [channels, SAVED_PER_CHANNEL]
}

/// The shape and constants of one complex batch norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComplexBatchNorm {
    pub batch: usize,
    pub channels: usize,
    /// Complex values per channel per image (the product of the spatial axes).
    pub spatial: usize,
    /// Added to the diagonal of the covariance before whitening; must be > 0.
    pub eps: f32,
    /// Weight of the batch statistic in the running average; 0 freezes them.
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

/// Gamma (`[channels, 3]`) and beta (`[channels, 2]`) of an affine norm.
#[derive(Clone, Copy)]
pub struct ComplexAffine<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
}

/// The running mean (`[channels, 2]`) and covariance (`[channels, 3]`).
#[derive(Clone, Copy)]
pub struct ComplexRunning<'a> {
    pub mean: &'a Tensor,
    pub cov: &'a Tensor,
}

/// Gamma of an affine norm and where the backward writes dgamma and dbeta.
#[derive(Clone, Copy)]
pub struct ComplexAffineGrads<'a> {
    pub gamma: &'a Tensor,
    pub dgamma: &'a Tensor,
    pub dbeta: &'a Tensor,
}

impl ComplexBatchNorm {
    /// eps 1e-5 and momentum 0.1, as the real `BatchNorm`.
    pub fn new(batch: usize, channels: usize, spatial: usize) -> Self {
        ComplexBatchNorm {
            batch,
            channels,
            spatial,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// The norm of a complex tensor of shape `[batch, channels, spatial..., 2]`.
    pub fn for_shape(shape: &[usize]) -> GpuResult<Self> {
        ensure(shape.len() >= 3 && shape.last() == Some(&2), || {
            format!("complex batch norm needs [batch, channels, ..., 2], got {shape:?}")
        })?;
        let spatial = shape[2..shape.len() - 1].iter().product();
        Ok(Self::new(shape[0], shape[1], spatial))
    }

    pub fn eps(self, eps: f32) -> Self {
        ComplexBatchNorm { eps, ..self }
    }

    pub fn momentum(self, momentum: f32) -> Self {
        ComplexBatchNorm { momentum, ..self }
    }

    /// Complex values in the input (half its floats).
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

    fn check_eps(&self) -> GpuResult<()> {
        ensure(self.eps > 0.0 && self.eps.is_finite(), || {
            format!("complex batch norm {self:?}: eps must be a finite number > 0")
        })
    }

    /// `t` has exactly the shape `want`.
    fn check(&self, what: &str, t: &Tensor, want: &[usize]) -> GpuResult<()> {
        ensure(t.shape() == want, || {
            format!(
                "complex batch norm {self:?}: {what} has shape {:?}, expected {want:?}",
                t.shape()
            )
        })
    }

    /// `t` is `[batch, channels, spatial..., 2]` for this norm.
    fn check_complex(&self, what: &str, t: &Tensor) -> GpuResult<()> {
        let shape = t.shape();
        let fits = shape.len() >= 3
            && shape.last() == Some(&2)
            && shape[0] == self.batch
            && shape[1] == self.channels
            && shape[2..shape.len() - 1].iter().product::<usize>() == self.spatial;
        ensure(fits, || {
            format!(
                "complex batch norm {self:?}: {what} has shape {shape:?}, expected \
                 [{}, {}, spatial..., 2] with {} complex values per image and channel",
                self.batch, self.channels, self.spatial
            )
        })
    }

    fn check_affine(&self, affine: Option<ComplexAffine>) -> GpuResult<()> {
        if let Some(a) = affine {
            self.check("gamma", a.gamma, &[self.channels, 3])?;
            self.check("beta", a.beta, &[self.channels, 2])?;
        }
        Ok(())
    }

    fn check_affine_grads(&self, affine: Option<ComplexAffineGrads>) -> GpuResult<()> {
        if let Some(a) = affine {
            self.check("gamma", a.gamma, &[self.channels, 3])?;
            self.check("dgamma", a.dgamma, &[self.channels, 3])?;
            self.check("dbeta", a.dbeta, &[self.channels, 2])?;
        }
        Ok(())
    }

    fn check_running(&self, running: ComplexRunning) -> GpuResult<()> {
        self.check("running mean", running.mean, &[self.channels, 2])?;
        self.check("running covariance", running.cov, &[self.channels, 3])
    }
}

fn per_channel(spec: &ComplexBatchNorm) -> [u32; 3] {
    grid_1d(spec.channels as u32)
}

fn rows(spec: &ComplexBatchNorm) -> [u32; 3] {
    grid_1d((spec.batch * spec.channels) as u32)
}

fn row_constants(
    rec: &Recorder,
    spec: &ComplexBatchNorm,
    affine: bool,
    running: bool,
) -> [(&'static str, f64); 3] {
    [
        ("AFFINE", affine as u8 as f64),
        ("RUNNING", running as u8 as f64),
        ("ROW_LANES", rec.gpu().row_lanes(spec.spatial) as f64),
    ]
}

fn affine_constant(affine: bool) -> [(&'static str, f64); 1] {
    [("AFFINE", affine as u8 as f64)]
}

/// Training forward: whitens x with its batch statistics into y, saves them
/// into `saved` (`saved_shape(channels)`) and moves the running statistics
/// towards them by `momentum`.
pub fn complex_batch_norm_train_forward(
    rec: &mut Recorder,
    spec: &ComplexBatchNorm,
    x: &Tensor,
    affine: Option<ComplexAffine>,
    running: ComplexRunning,
    y: &Tensor,
    saved: &Tensor,
) -> GpuResult<()> {
    spec.check_eps()?;
    spec.check_complex("x", x)?;
    spec.check("y", y, x.shape())?;
    spec.check("saved", saved, &saved_shape(spec.channels))?;
    spec.check_running(running)?;
    spec.check_affine(affine)?;
    ensure(spec.batch * spec.spatial > 0, || {
        format!("complex batch norm {spec:?}: training needs at least one value per channel")
    })?;
    rec.dispatch(
        &SHADER,
        "train_statistics",
        &[],
        &spec.params(),
        &[x, saved, running.mean, running.cov],
        per_channel(spec),
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

/// Inference forward with the running statistics (covariance + eps I).
pub fn complex_batch_norm_infer_forward(
    rec: &mut Recorder,
    spec: &ComplexBatchNorm,
    x: &Tensor,
    affine: Option<ComplexAffine>,
    running: ComplexRunning,
    y: &Tensor,
) -> GpuResult<()> {
    spec.check_eps()?;
    spec.check_complex("x", x)?;
    spec.check("y", y, x.shape())?;
    spec.check_running(running)?;
    spec.check_affine(affine)?;
    let (gamma, beta) = affine.map_or((x, x), |a| (a.gamma, a.beta));
    rec.dispatch(
        &SHADER,
        "normalize",
        &row_constants(rec, spec, affine.is_some(), true),
        &spec.params(),
        &[x, gamma, beta, y, running.mean, running.cov],
        rows(spec),
    )
}

/// dgamma and dbeta of an affine norm; a non-affine norm still writes both,
/// into scratch.
fn grads_or_scratch(
    rec: &mut Recorder,
    spec: &ComplexBatchNorm,
    affine: Option<ComplexAffineGrads>,
) -> GpuResult<(Tensor, Tensor)> {
    Ok(match affine {
        Some(a) => (a.dgamma.clone(), a.dbeta.clone()),
        None => (
            rec.empty(&[spec.channels, 3])?,
            rec.empty(&[spec.channels, 2])?,
        ),
    })
}

/// Training backward (after a training forward of the same x): dx
/// (overwritten) from dy, x and what the forward saved; for an affine norm
/// also dgamma and dbeta (overwritten).
pub fn complex_batch_norm_train_backward(
    rec: &mut Recorder,
    spec: &ComplexBatchNorm,
    x: &Tensor,
    dy: &Tensor,
    saved: &Tensor,
    affine: Option<ComplexAffineGrads>,
    dx: &Tensor,
) -> GpuResult<()> {
    spec.check_eps()?;
    spec.check_complex("x", x)?;
    spec.check("dy", dy, x.shape())?;
    spec.check("dx", dx, x.shape())?;
    spec.check("saved", saved, &saved_shape(spec.channels))?;
    spec.check_affine_grads(affine)?;
    if spec.batch * spec.spatial == 0 {
        return Ok(());
    }
    let (dgamma, dbeta) = grads_or_scratch(rec, spec, affine)?;
    let coefficients = rec.empty(&[spec.channels, COEFFICIENTS_PER_CHANNEL])?;
    // A non-affine norm binds saved in place of gamma, unread.
    let gamma = affine.map_or(saved, |a| a.gamma);
    rec.dispatch(
        &SHADER,
        "gradient_sums",
        &affine_constant(affine.is_some()),
        &spec.params(),
        &[x, dy, saved, gamma, &dgamma, &dbeta, &coefficients],
        per_channel(spec),
    )?;
    rec.dispatch(
        &SHADER,
        "input_gradient",
        &[("ROW_LANES", rec.gpu().row_lanes(spec.spatial) as f64)],
        &spec.params(),
        &[x, dy, &coefficients, dx],
        rows(spec),
    )
}

/// Inference backward (after an inference forward: the running statistics
/// held fixed, y linear in x): dx = W G dy (overwritten), and for an affine
/// norm dgamma and dbeta (overwritten).
pub fn complex_batch_norm_infer_backward(
    rec: &mut Recorder,
    spec: &ComplexBatchNorm,
    x: &Tensor,
    dy: &Tensor,
    running: ComplexRunning,
    affine: Option<ComplexAffineGrads>,
    dx: &Tensor,
) -> GpuResult<()> {
    spec.check_eps()?;
    spec.check_complex("x", x)?;
    spec.check("dy", dy, x.shape())?;
    spec.check("dx", dx, x.shape())?;
    spec.check_running(running)?;
    spec.check_affine_grads(affine)?;
    if spec.batch * spec.spatial == 0 {
        return Ok(());
    }
    let (dgamma, dbeta) = grads_or_scratch(rec, spec, affine)?;
    let gamma = affine.map_or(running.mean, |a| a.gamma);
    rec.dispatch(
        &SHADER,
        "infer_backward",
        &affine_constant(affine.is_some()),
        &spec.params(),
        &[x, dy, running.mean, gamma, &dgamma, &dbeta, dx, running.cov],
        per_channel(spec),
    )
}

/// Index of the real part of value `(n, c, s)`; the imaginary part follows.
fn at(spec: &ComplexBatchNorm, n: usize, c: usize, s: usize) -> usize {
    2 * ((n * spec.channels + c) * spec.spatial + s)
}

/// The real-part indices of channel c's values.
fn cells(spec: &ComplexBatchNorm, c: usize) -> impl Iterator<Item = usize> + '_ {
    (0..spec.batch).flat_map(move |n| (0..spec.spatial).map(move |s| at(spec, n, c, s)))
}

/// `W = V^{-1/2}` of `V = [[a, b], [b, c]]` in closed form, as `(Wrr, Wri, Wii)`.
pub fn whitening_reference(v: [f64; 3]) -> [f64; 3] {
    let [a, b, c] = v;
    let s = (a * c - b * b).sqrt();
    let t = (a + c + 2.0 * s).sqrt();
    [(c + s) / (s * t), -b / (s * t), (a + s) / (s * t)]
}

/// The gradient with respect to `(a, b, c)` of V from the gradient with
/// respect to `(Wrr, Wri, Wii)` of `W = V^{-1/2}` (`Wri` standing for both
/// off-diagonal entries).
fn whitening_backward_reference(v: [f64; 3], gw: [f64; 3]) -> [f64; 3] {
    let [a, b, c] = v;
    let [g_rr, g_ri, g_ii] = gw;
    let s = (a * c - b * b).sqrt();
    let t = (a + c + 2.0 * s).sqrt();
    let u = 1.0 / (s * t);
    // W = u (c + s, -b, a + s), u = 1 / (s t), t = sqrt(a + c + 2 s),
    // s = sqrt(a c - b^2): back through u, then t, then s.
    let gu = g_rr * (c + s) + g_ii * (a + s) - g_ri * b;
    let (mut ga, mut gb, mut gc) = (g_ii * u, -g_ri * u, g_rr * u);
    let mut gs = (g_rr + g_ii) * u - gu * u / s;
    let gt = -gu * u / t;
    ga += gt / (2.0 * t);
    gc += gt / (2.0 * t);
    gs += gt / t;
    ga += gs * c / (2.0 * s);
    gc += gs * a / (2.0 * s);
    gb += -gs * b / s;
    [ga, gb, gc]
}

/// `m v` for the symmetric `m = (rr, ri, ii)`.
fn sym_apply(m: [f64; 3], v: [f64; 2]) -> [f64; 2] {
    [m[0] * v[0] + m[1] * v[1], m[1] * v[0] + m[2] * v[1]]
}

/// Per-channel batch mean and biased covariance `(Vrr, Vri, Vii)` without
/// eps, in two passes.
fn batch_statistics(spec: &ComplexBatchNorm, x: &[f64]) -> (Vec<[f64; 2]>, Vec<[f64; 3]>) {
    let count = (spec.batch * spec.spatial) as f64;
    let mut means = Vec::with_capacity(spec.channels);
    let mut covs = Vec::with_capacity(spec.channels);
    for c in 0..spec.channels {
        let mut mean = [0.0; 2];
        for i in cells(spec, c) {
            mean[0] += x[i] / count;
            mean[1] += x[i + 1] / count;
        }
        let mut cov = [0.0; 3];
        for i in cells(spec, c) {
            let (r, m) = (x[i] - mean[0], x[i + 1] - mean[1]);
            cov[0] += r * r / count;
            cov[1] += r * m / count;
            cov[2] += m * m / count;
        }
        means.push(mean);
        covs.push(cov);
    }
    (means, covs)
}

/// `y = G W (z - mean) + beta` per channel (`G = I`, `beta = 0` without affine).
fn normalize(
    spec: &ComplexBatchNorm,
    x: &[f64],
    mean: &[[f64; 2]],
    w: &[[f64; 3]],
    affine: Option<(&[f64], &[f64])>,
) -> Vec<f64> {
    let mut y = vec![0.0; 2 * spec.len()];
    for c in 0..spec.channels {
        for i in cells(spec, c) {
            let xhat = sym_apply(w[c], [x[i] - mean[c][0], x[i + 1] - mean[c][1]]);
            let out = match affine {
                Some((gamma, beta)) => {
                    let g = [gamma[3 * c], gamma[3 * c + 1], gamma[3 * c + 2]];
                    let gx = sym_apply(g, xhat);
                    [gx[0] + beta[2 * c], gx[1] + beta[2 * c + 1]]
                }
                None => xhat,
            };
            y[i] = out[0];
            y[i + 1] = out[1];
        }
    }
    y
}

/// What the training forward reference returns.
pub struct ComplexTrainForward {
    pub y: Vec<f64>,
    /// In the layout of the GPU's saved tensor, `[channels, 8]`.
    pub saved: Vec<f64>,
    pub running_mean: Vec<f64>,
    pub running_cov: Vec<f64>,
}

/// CPU reference of the training forward, in f64: y, what is saved, and
/// the running statistics after the update. `affine` is `(gamma, beta)`.
pub fn complex_batch_norm_train_forward_reference(
    spec: &ComplexBatchNorm,
    x: &[f64],
    affine: Option<(&[f64], &[f64])>,
    running_mean: &[f64],
    running_cov: &[f64],
) -> ComplexTrainForward {
    let (mean, cov) = batch_statistics(spec, x);
    let eps = spec.eps as f64;
    let v: Vec<[f64; 3]> = cov.iter().map(|v| [v[0] + eps, v[1], v[2] + eps]).collect();
    let w: Vec<[f64; 3]> = v.iter().map(|&v| whitening_reference(v)).collect();
    let mut saved = Vec::with_capacity(spec.channels * SAVED_PER_CHANNEL);
    for c in 0..spec.channels {
        saved.extend_from_slice(&mean[c]);
        saved.extend_from_slice(&w[c]);
        saved.extend_from_slice(&v[c]);
    }
    let (mut new_mean, mut new_cov) = (running_mean.to_vec(), running_cov.to_vec());
    let momentum = spec.momentum as f64;
    if momentum != 0.0 {
        let count = (spec.batch * spec.spatial) as f64;
        let unbias = count / (count - 1.0).max(1.0);
        for c in 0..spec.channels {
            for k in 0..2 {
                new_mean[2 * c + k] =
                    (1.0 - momentum) * running_mean[2 * c + k] + momentum * mean[c][k];
            }
            for k in 0..3 {
                new_cov[3 * c + k] =
                    (1.0 - momentum) * running_cov[3 * c + k] + momentum * cov[c][k] * unbias;
            }
        }
    }
    ComplexTrainForward {
        y: normalize(spec, x, &mean, &w, affine),
        saved,
        running_mean: new_mean,
        running_cov: new_cov,
    }
}

/// The running statistics' mean and W (covariance + eps I) per channel.
fn running_whitening(
    spec: &ComplexBatchNorm,
    running_mean: &[f64],
    running_cov: &[f64],
) -> (Vec<[f64; 2]>, Vec<[f64; 3]>) {
    let eps = spec.eps as f64;
    (0..spec.channels)
        .map(|c| {
            let v = [
                running_cov[3 * c] + eps,
                running_cov[3 * c + 1],
                running_cov[3 * c + 2] + eps,
            ];
            (
                [running_mean[2 * c], running_mean[2 * c + 1]],
                whitening_reference(v),
            )
        })
        .unzip()
}

/// CPU reference of the inference forward, in f64.
pub fn complex_batch_norm_infer_forward_reference(
    spec: &ComplexBatchNorm,
    x: &[f64],
    affine: Option<(&[f64], &[f64])>,
    running_mean: &[f64],
    running_cov: &[f64],
) -> Vec<f64> {
    let (mean, w) = running_whitening(spec, running_mean, running_cov);
    normalize(spec, x, &mean, &w, affine)
}

/// Gradients of a complex batch norm forward (training or inference).
pub struct ComplexGradients {
    pub dx: Vec<f64>,
    /// `[channels, 3]`: (grr, gri, gii).
    pub dgamma: Vec<f64>,
    /// `[channels, 2]`.
    pub dbeta: Vec<f64>,
}

/// dgamma and dbeta of one channel: `y = G xhat + beta` with the symmetric
/// G, so the off-diagonal entry collects both of its uses.
fn affine_grads(
    spec: &ComplexBatchNorm,
    c: usize,
    dy: &[f64],
    xhat: impl Fn(usize) -> [f64; 2],
    dgamma: &mut [f64],
    dbeta: &mut [f64],
) {
    for i in cells(spec, c) {
        let h = xhat(i);
        let (gr, gi) = (dy[i], dy[i + 1]);
        dbeta[2 * c] += gr;
        dbeta[2 * c + 1] += gi;
        dgamma[3 * c] += gr * h[0];
        dgamma[3 * c + 1] += gr * h[1] + gi * h[0];
        dgamma[3 * c + 2] += gi * h[1];
    }
}

fn gamma_of(gamma: Option<&[f64]>, c: usize) -> [f64; 3] {
    gamma.map_or([1.0, 0.0, 1.0], |g| [g[3 * c], g[3 * c + 1], g[3 * c + 2]])
}

/// CPU reference of the training backward, in f64, from the reference's
/// `saved`; `gamma` is None for the non-affine norm (dgamma and dbeta are
/// then what a gamma of identities and a beta of zeros would get).
pub fn complex_batch_norm_train_backward_reference(
    spec: &ComplexBatchNorm,
    x: &[f64],
    dy: &[f64],
    saved: &[f64],
    gamma: Option<&[f64]>,
) -> ComplexGradients {
    let count = (spec.batch * spec.spatial) as f64;
    let mut dx = vec![0.0; 2 * spec.len()];
    let mut dgamma = vec![0.0; 3 * spec.channels];
    let mut dbeta = vec![0.0; 2 * spec.channels];
    for c in 0..spec.channels {
        let o = SAVED_PER_CHANNEL * c;
        let mean = [saved[o], saved[o + 1]];
        let w = [saved[o + 2], saved[o + 3], saved[o + 4]];
        let v = [saved[o + 5], saved[o + 6], saved[o + 7]];
        let g = gamma_of(gamma, c);
        let xc = |i: usize| [x[i] - mean[0], x[i + 1] - mean[1]];
        affine_grads(
            spec,
            c,
            dy,
            |i| sym_apply(w, xc(i)),
            &mut dgamma,
            &mut dbeta,
        );
        // dxhat = G dy; the loss's gradient with respect to W is
        // sum dxhat xc^T, its off-diagonal entries summed.
        let dxhat = |i: usize| sym_apply(g, [dy[i], dy[i + 1]]);
        let mut gw = [0.0; 3];
        let mut mean_w_dxhat = [0.0; 2];
        for i in cells(spec, c) {
            let (d, z) = (dxhat(i), xc(i));
            gw[0] += d[0] * z[0];
            gw[1] += d[0] * z[1] + d[1] * z[0];
            gw[2] += d[1] * z[1];
            let wd = sym_apply(w, d);
            mean_w_dxhat[0] += wd[0] / count;
            mean_w_dxhat[1] += wd[1] / count;
        }
        let [ga, gb, gc] = whitening_backward_reference(v, gw);
        for i in cells(spec, c) {
            let (wd, z) = (sym_apply(w, dxhat(i)), xc(i));
            dx[i] = wd[0] - mean_w_dxhat[0] + (2.0 * ga * z[0] + gb * z[1]) / count;
            dx[i + 1] = wd[1] - mean_w_dxhat[1] + (2.0 * gc * z[1] + gb * z[0]) / count;
        }
    }
    ComplexGradients { dx, dgamma, dbeta }
}

/// CPU reference of the inference backward, in f64 (`gamma` None: as in the
/// training backward reference).
pub fn complex_batch_norm_infer_backward_reference(
    spec: &ComplexBatchNorm,
    x: &[f64],
    dy: &[f64],
    running_mean: &[f64],
    running_cov: &[f64],
    gamma: Option<&[f64]>,
) -> ComplexGradients {
    let (mean, w) = running_whitening(spec, running_mean, running_cov);
    let mut dx = vec![0.0; 2 * spec.len()];
    let mut dgamma = vec![0.0; 3 * spec.channels];
    let mut dbeta = vec![0.0; 2 * spec.channels];
    for c in 0..spec.channels {
        let (m, w) = (mean[c], w[c]);
        affine_grads(
            spec,
            c,
            dy,
            |i| sym_apply(w, [x[i] - m[0], x[i + 1] - m[1]]),
            &mut dgamma,
            &mut dbeta,
        );
        let g = gamma_of(gamma, c);
        for i in cells(spec, c) {
            let d = sym_apply(w, sym_apply(g, [dy[i], dy[i + 1]]));
            dx[i] = d[0];
            dx[i + 1] = d[1];
        }
    }
    ComplexGradients { dx, dgamma, dbeta }
}

//! Softmax cross-entropy over classes with its gradient and the count of
//! correct top-1 predictions, so a training step reads back nothing it does
//! not log. Shader: `shaders/softmax_xent.wgsl`.

use crate::gpu::{ensure, ensure_len, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("softmax_xent", trusted);

/// Lanes of the per-sample workgroups (the shader's `LANES`).
const LANES: usize = 64;
/// Up to this many classes one invocation handles a whole sample.
const CLASSES_PER_LANE: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    classes: u32,
    smoothing: f32,
    _pad: u32,
}

/// Logits `[batch, classes]` against labels `[batch]`, the target of a sample
/// being `(1 - label_smoothing) * one_hot(label) + label_smoothing / classes`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxXent {
    pub batch: usize,
    pub classes: usize,
    pub label_smoothing: f32,
}

impl SoftmaxXent {
    pub fn new(batch: usize, classes: usize) -> Self {
        SoftmaxXent {
            batch,
            classes,
            label_smoothing: 0.0,
        }
    }

    pub fn label_smoothing(self, eps: f32) -> Self {
        SoftmaxXent {
            label_smoothing: eps,
            ..self
        }
    }

    pub fn logits_len(&self) -> usize {
        self.batch * self.classes
    }
}

/// Where the results go.
pub struct XentOutputs<'a> {
    /// `[batch]` f32: the loss of each sample.
    pub loss: &'a Tensor,
    /// `[batch, classes]` f32: the gradient of the mean loss w.r.t. the logits.
    pub grad: &'a Tensor,
    /// `[1]` u32: samples whose first largest logit is their label.
    pub correct: &'a Tensor,
    /// `[1]` f32: the mean loss over the batch, when wanted.
    pub mean_loss: Option<&'a Tensor>,
}

/// Records the loss, its gradient and the correct count (one dispatch, two
/// with the mean). A label outside `0..classes` gives that sample a NaN loss.
pub fn softmax_cross_entropy(
    rec: &mut Recorder,
    spec: &SoftmaxXent,
    logits: &Tensor,
    labels: &Tensor,
    out: &XentOutputs,
) -> GpuResult<()> {
    ensure(spec.classes >= 1, || {
        format!("softmax cross-entropy {spec:?}: needs at least one class")
    })?;
    ensure((0.0..=1.0).contains(&spec.label_smoothing), || {
        format!(
            "softmax cross-entropy: label smoothing {} is outside [0, 1]",
            spec.label_smoothing
        )
    })?;
    let mut checks = vec![
        ("logits", logits, spec.logits_len()),
        ("labels", labels, spec.batch),
        ("loss", out.loss, spec.batch),
        ("grad", out.grad, spec.logits_len()),
        ("correct", out.correct, 1),
    ];
    if let Some(mean) = out.mean_loss {
        checks.push(("mean_loss", mean, 1));
    }
    for (name, t, want) in checks {
        ensure_len(
            format_args!("softmax cross-entropy {spec:?}"),
            name,
            t,
            want,
        )?;
    }
    rec.clear(out.correct);
    let params = Params {
        batch: spec.batch as u32,
        classes: spec.classes as u32,
        smoothing: spec.label_smoothing,
        _pad: 0,
    };
    let (entry, groups) = if spec.classes <= CLASSES_PER_LANE {
        ("xent_lanes", grid_1d(spec.batch.div_ceil(LANES) as u32))
    } else {
        ("xent_workgroup", grid_1d(spec.batch as u32))
    };
    rec.dispatch(
        &SHADER,
        entry,
        &[],
        &params,
        &[logits, labels, out.loss, out.grad, out.correct],
        groups,
    )?;
    if let Some(mean) = out.mean_loss {
        if spec.batch == 0 {
            rec.clear(mean);
        } else {
            rec.dispatch(
                &SHADER,
                "xent_mean",
                &[],
                &params,
                &[out.loss, mean],
                [1, 1, 1],
            )?;
        }
    }
    Ok(())
}

/// What the CPU reference computes, in f64.
#[derive(Clone, Debug)]
pub struct XentReference {
    pub loss: Vec<f64>,
    pub grad: Vec<f64>,
    pub correct: u32,
    pub mean_loss: f64,
}

/// CPU reference: plain loops in f64, the largest logit subtracted before
/// exponentiating; ties go to the first class, as in the shader.
pub fn softmax_cross_entropy_reference(
    spec: &SoftmaxXent,
    logits: &[f64],
    labels: &[u32],
) -> XentReference {
    let c = spec.classes;
    let eps = spec.label_smoothing as f64;
    let mut loss = Vec::with_capacity(spec.batch);
    let mut grad = vec![0.0; spec.batch * c];
    let mut correct = 0;
    for (row, &label) in labels.iter().enumerate().take(spec.batch) {
        let z = &logits[row * c..(row + 1) * c];
        let mut argmax = 0;
        for j in 1..c {
            if z[j] > z[argmax] {
                argmax = j;
            }
        }
        let top = z[argmax];
        let sum_exp: f64 = z.iter().map(|&v| (v - top).exp()).sum();
        let lse = top + sum_exp.ln();
        let target = |j: usize| eps / c as f64 + if j == label as usize { 1.0 - eps } else { 0.0 };
        let valid = (label as usize) < c;
        loss.push(if valid {
            z.iter()
                .enumerate()
                .map(|(j, &v)| target(j) * (lse - v))
                .sum()
        } else {
            f64::NAN
        });
        for j in 0..c {
            grad[row * c + j] = ((z[j] - top).exp() / sum_exp - target(j)) / spec.batch as f64;
        }
        if valid && argmax == label as usize {
            correct += 1;
        }
    }
    let mean_loss = if spec.batch == 0 {
        0.0
    } else {
        loss.iter().sum::<f64>() / spec.batch as f64
    };
    XentReference {
        loss,
        grad,
        correct,
        mean_loss,
    }
}

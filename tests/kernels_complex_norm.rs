//! Complex batch norm on the GPU against its CPU reference (training forward
//! with running statistics, inference forward, training and inference
//! backward; affine and not), the reference backwards against finite
//! differences of every real and imaginary entry, and what the norm is
//! for: its output is white.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::complex_norm::{
    complex_batch_norm_infer_backward, complex_batch_norm_infer_backward_reference,
    complex_batch_norm_infer_forward, complex_batch_norm_infer_forward_reference,
    complex_batch_norm_train_backward, complex_batch_norm_train_backward_reference,
    complex_batch_norm_train_forward, complex_batch_norm_train_forward_reference, saved_shape,
    ComplexAffine, ComplexAffineGrads, ComplexBatchNorm, ComplexRunning,
};
use audionas::util::rng::Rng;

fn up(shape: &[usize], v: &[f32]) -> Tensor {
    Gpu::shared().upload(shape, v).unwrap()
}

fn nan(shape: &[usize]) -> Tensor {
    Gpu::shared().full(shape, f32::NAN).unwrap()
}

fn down(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

/// `[batch, channels, spatial..., 2]`.
fn complex_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

/// A random symmetric gamma near the layer's initial 1/sqrt(2) I, beta,
/// and running statistics with a positive definite covariance.
struct Parameters {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_cov: Vec<f32>,
}

fn parameters(rng: &mut Rng, channels: usize) -> Parameters {
    let mut gamma = Vec::new();
    let mut running_cov = Vec::new();
    for _ in 0..channels {
        gamma.extend([
            rng.uniform(0.5, 1.0),
            rng.uniform(-0.3, 0.3),
            rng.uniform(0.5, 1.0),
        ]);
        running_cov.extend([
            rng.uniform(0.5, 1.5),
            rng.uniform(-0.3, 0.3),
            rng.uniform(0.5, 1.5),
        ]);
    }
    Parameters {
        gamma,
        beta: rng.vec_uniform(2 * channels, -0.5, 0.5),
        running_mean: rng.vec_uniform(2 * channels, -0.1, 0.1),
        running_cov,
    }
}

/// x with real and imaginary parts correlated (so that whitening differs
/// from scaling each part), around `offset`.
fn correlated_input(rng: &mut Rng, values: usize, offset: [f32; 2]) -> Vec<f32> {
    let mut x = Vec::with_capacity(2 * values);
    for _ in 0..values {
        let r = rng.uniform(-2.0, 2.0);
        let i = 0.5 * r + rng.uniform(-1.0, 1.0);
        x.extend([r + offset[0], i + offset[1]]);
    }
    x
}

/// The largest condition number of the channels' covariances V in `saved`.
fn condition(saved: &[f64]) -> f64 {
    saved
        .chunks(8)
        .map(|s| {
            let (a, b, c) = (s[5], s[6], s[7]);
            let spread = (((a - c) / 2.0).powi(2) + b * b).sqrt();
            ((a + c) / 2.0 + spread) / ((a + c) / 2.0 - spread)
        })
        .fold(1.0, f64::max)
}

/// Train forward, inference forward with the updated running statistics
/// and train backward on the GPU, each against the reference.
fn check_against_reference(shape: &[usize], affine: bool, offset: [f32; 2], seed: u64) {
    let gpu = Gpu::shared();
    let xs = complex_shape(shape);
    let spec = ComplexBatchNorm::for_shape(&xs).unwrap();
    let c = spec.channels;
    let mut rng = Rng::new(seed);
    let x = correlated_input(&mut rng, spec.len(), offset);
    let dy = rng.vec_uniform(2 * spec.len(), -1.0, 1.0);
    let p = parameters(&mut rng, c);

    let tx = up(&xs, &x);
    let tdy = up(&xs, &dy);
    let tg = up(&[c, 3], &p.gamma);
    let tb = up(&[c, 2], &p.beta);
    let trm = up(&[c, 2], &p.running_mean);
    let trc = up(&[c, 3], &p.running_cov);
    let (ty, ty_infer, tdx) = (nan(&xs), nan(&xs), nan(&xs));
    let tsaved = nan(&saved_shape(c));
    let (tdg, tdb) = (nan(&[c, 3]), nan(&[c, 2]));
    let running = ComplexRunning {
        mean: &trm,
        cov: &trc,
    };
    let gpu_affine = affine.then_some(ComplexAffine {
        gamma: &tg,
        beta: &tb,
    });
    let grads = affine.then_some(ComplexAffineGrads {
        gamma: &tg,
        dgamma: &tdg,
        dbeta: &tdb,
    });
    let mut rec = gpu.recorder();
    complex_batch_norm_train_forward(&mut rec, &spec, &tx, gpu_affine, running, &ty, &tsaved)
        .unwrap();
    complex_batch_norm_infer_forward(&mut rec, &spec, &tx, gpu_affine, running, &ty_infer).unwrap();
    complex_batch_norm_train_backward(&mut rec, &spec, &tx, &tdy, &tsaved, grads, &tdx).unwrap();
    rec.submit().unwrap();

    let what = |part: &str| format!("{part} {shape:?} affine {affine} offset {offset:?}");
    let (x64, dy64, g64, b64) = (to_f64(&x), to_f64(&dy), to_f64(&p.gamma), to_f64(&p.beta));
    let ref_affine = affine.then_some((&g64[..], &b64[..]));
    let fwd = complex_batch_norm_train_forward_reference(
        &spec,
        &x64,
        ref_affine,
        &to_f64(&p.running_mean),
        &to_f64(&p.running_cov),
    );
    assert_close(&what("train y"), &down(&ty), &to_f32(&fwd.y), 2e-4, 2e-4);
    // W of a nearly singular V (two values per channel make it rank one
    // but for eps) is only as accurate as f32 sums allow: scale by V's
    // condition number. y and dx do not suffer: the data lie along V's
    // well-conditioned direction.
    assert_close(
        &what("saved"),
        &down(&tsaved),
        &to_f32(&fwd.saved),
        1e-5,
        1e-4 + 1e-7 * condition(&fwd.saved) as f32,
    );
    assert_close(
        &what("running mean"),
        &down(&trm),
        &to_f32(&fwd.running_mean),
        1e-5,
        1e-5,
    );
    assert_close(
        &what("running covariance"),
        &down(&trc),
        &to_f32(&fwd.running_cov),
        1e-5,
        1e-4,
    );
    let y_infer = complex_batch_norm_infer_forward_reference(
        &spec,
        &x64,
        ref_affine,
        &fwd.running_mean,
        &fwd.running_cov,
    );
    assert_close(
        &what("infer y"),
        &down(&ty_infer),
        &to_f32(&y_infer),
        2e-4,
        2e-4,
    );
    let bwd = complex_batch_norm_train_backward_reference(
        &spec,
        &x64,
        &dy64,
        &fwd.saved,
        affine.then_some(&g64[..]),
    );
    assert_close(&what("dx"), &down(&tdx), &to_f32(&bwd.dx), 2e-4, 1e-3);
    if affine {
        let tol = 1e-5 * ((spec.batch * spec.spatial) as f32).sqrt();
        assert_close(
            &what("dgamma"),
            &down(&tdg),
            &to_f32(&bwd.dgamma),
            tol,
            1e-4,
        );
        assert_close(&what("dbeta"), &down(&tdb), &to_f32(&bwd.dbeta), tol, 1e-4);
    }
}

/// `[batch, channels, spatial...]`: one value, primes, two spatial axes,
/// one value per image, two values per channel (a covariance of rank one
/// but for eps), a whole workgroup's stride in one plane, and more images
/// than lanes.
const SHAPES: [&[usize]; 7] = [
    &[1, 1, 1],
    &[2, 3, 5],
    &[3, 2, 7, 13],
    &[5, 4, 1],
    &[2, 2],
    &[3, 2, 64],
    &[130, 2, 1],
];

#[test]
fn complex_batch_norm_matches_reference() {
    for (i, shape) in SHAPES.iter().enumerate() {
        for affine in [true, false] {
            check_against_reference(shape, affine, [0.5, -0.25], 100 + i as u64);
        }
    }
}

/// The covariance from one shifted pass stays accurate when the mean is
/// far from zero.
#[test]
fn complex_batch_norm_is_accurate_far_from_zero() {
    for (i, shape) in [&[16, 3, 25][..], &[3, 5, 7]].iter().enumerate() {
        check_against_reference(shape, true, [300.0, -200.0], 200 + i as u64);
    }
}

#[test]
fn complex_inference_backward_matches_reference() {
    let gpu = Gpu::shared();
    for (i, shape) in [&[1, 1, 1][..], &[2, 3, 5], &[3, 2, 7, 13], &[5, 4, 1]]
        .iter()
        .enumerate()
    {
        let xs = complex_shape(shape);
        let spec = ComplexBatchNorm::for_shape(&xs).unwrap().eps(1e-3);
        let c = spec.channels;
        let mut rng = Rng::new(300 + i as u64);
        let x = correlated_input(&mut rng, spec.len(), [0.25, 0.0]);
        let dy = rng.vec_uniform(2 * spec.len(), -1.0, 1.0);
        let p = parameters(&mut rng, c);
        let (tx, tdy) = (up(&xs, &x), up(&xs, &dy));
        let tg = up(&[c, 3], &p.gamma);
        let trm = up(&[c, 2], &p.running_mean);
        let trc = up(&[c, 3], &p.running_cov);
        let running = ComplexRunning {
            mean: &trm,
            cov: &trc,
        };
        for affine in [true, false] {
            let tdx = nan(&xs);
            let (tdg, tdb) = (nan(&[c, 3]), nan(&[c, 2]));
            let grads = affine.then_some(ComplexAffineGrads {
                gamma: &tg,
                dgamma: &tdg,
                dbeta: &tdb,
            });
            let mut rec = gpu.recorder();
            complex_batch_norm_infer_backward(&mut rec, &spec, &tx, &tdy, running, grads, &tdx)
                .unwrap();
            rec.submit().unwrap();
            let g64 = to_f64(&p.gamma);
            let want = complex_batch_norm_infer_backward_reference(
                &spec,
                &to_f64(&x),
                &to_f64(&dy),
                &to_f64(&p.running_mean),
                &to_f64(&p.running_cov),
                affine.then_some(&g64[..]),
            );
            let what = |part: &str| format!("{part} {shape:?} affine {affine}");
            assert_close(&what("dx"), &down(&tdx), &to_f32(&want.dx), 1e-5, 1e-4);
            if affine {
                assert_close(
                    &what("dgamma"),
                    &down(&tdg),
                    &to_f32(&want.dgamma),
                    1e-4,
                    1e-4,
                );
                assert_close(
                    &what("dbeta"),
                    &down(&tdb),
                    &to_f32(&want.dbeta),
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn complex_train_backward_reference_matches_finite_differences() {
    for (i, shape) in [&[3, 2, 5][..], &[4, 3, 1], &[2, 1, 1], &[2, 2, 2, 3]]
        .iter()
        .enumerate()
    {
        let spec = ComplexBatchNorm::for_shape(&complex_shape(shape)).unwrap();
        let c = spec.channels;
        let mut rng = Rng::new(400 + i as u64);
        let x = to_f64(&correlated_input(&mut rng, spec.len(), [0.3, -0.2]));
        let p = parameters(&mut rng, c);
        let (gamma, beta) = (to_f64(&p.gamma), to_f64(&p.beta));
        let (rm, rc) = (to_f64(&p.running_mean), to_f64(&p.running_cov));
        // The loss is a random linear functional of y, so dy is its weights.
        let r = to_f64(&rng.vec_uniform(2 * spec.len(), -1.0, 1.0));
        let loss = |x: &[f64], affine: Option<(&[f64], &[f64])>| {
            dot(
                &complex_batch_norm_train_forward_reference(&spec, x, affine, &rm, &rc).y,
                &r,
            )
        };
        let what = |part: &str| format!("{part} {shape:?}");
        let saved = complex_batch_norm_train_forward_reference(&spec, &x, None, &rm, &rc).saved;
        let bwd = complex_batch_norm_train_backward_reference(&spec, &x, &r, &saved, Some(&gamma));
        assert_gradient(
            &what("d/dx"),
            &x,
            &bwd.dx,
            |x| loss(x, Some((&gamma, &beta))),
            1e-6,
            1e-5,
        );
        assert_gradient(
            &what("d/dgamma"),
            &gamma,
            &bwd.dgamma,
            |g| loss(&x, Some((g, &beta))),
            1e-6,
            1e-5,
        );
        assert_gradient(
            &what("d/dbeta"),
            &beta,
            &bwd.dbeta,
            |b| loss(&x, Some((&gamma, b))),
            1e-6,
            1e-5,
        );
        let plain = complex_batch_norm_train_backward_reference(&spec, &x, &r, &saved, None);
        assert_gradient(
            &what("non-affine d/dx"),
            &x,
            &plain.dx,
            |x| loss(x, None),
            1e-6,
            1e-5,
        );
        // Without affine, dgamma and dbeta are what G = I, beta = 0 would get.
        let identity: Vec<f64> = (0..c).flat_map(|_| [1.0, 0.0, 1.0]).collect();
        assert_gradient(
            &what("non-affine d/dgamma at the identity"),
            &identity,
            &plain.dgamma,
            |g| loss(&x, Some((g, &vec![0.0; 2 * c]))),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn complex_infer_backward_reference_matches_finite_differences() {
    let spec = ComplexBatchNorm::new(3, 2, 5);
    let c = spec.channels;
    let mut rng = Rng::new(500);
    let x = to_f64(&correlated_input(&mut rng, spec.len(), [0.3, -0.2]));
    let p = parameters(&mut rng, c);
    let (gamma, beta) = (to_f64(&p.gamma), to_f64(&p.beta));
    let (rm, rc) = (to_f64(&p.running_mean), to_f64(&p.running_cov));
    let r = to_f64(&rng.vec_uniform(2 * spec.len(), -1.0, 1.0));
    let loss = |x: &[f64], affine: Option<(&[f64], &[f64])>| {
        dot(
            &complex_batch_norm_infer_forward_reference(&spec, x, affine, &rm, &rc),
            &r,
        )
    };
    let bwd = complex_batch_norm_infer_backward_reference(&spec, &x, &r, &rm, &rc, Some(&gamma));
    assert_gradient(
        "d/dx",
        &x,
        &bwd.dx,
        |x| loss(x, Some((&gamma, &beta))),
        1e-6,
        1e-5,
    );
    assert_gradient(
        "d/dgamma",
        &gamma,
        &bwd.dgamma,
        |g| loss(&x, Some((g, &beta))),
        1e-6,
        1e-5,
    );
    assert_gradient(
        "d/dbeta",
        &beta,
        &bwd.dbeta,
        |b| loss(&x, Some((&gamma, b))),
        1e-6,
        1e-5,
    );
    let plain = complex_batch_norm_infer_backward_reference(&spec, &x, &r, &rm, &rc, None);
    assert_gradient(
        "non-affine d/dx",
        &x,
        &plain.dx,
        |x| loss(x, None),
        1e-6,
        1e-5,
    );
}

/// Per-channel mean and biased covariance (rr, ri, ii) of a complex tensor.
fn moments(spec: &ComplexBatchNorm, y: &[f64]) -> Vec<([f64; 2], [f64; 3])> {
    let count = (spec.batch * spec.spatial) as f64;
    (0..spec.channels)
        .map(|c| {
            let values: Vec<[f64; 2]> = (0..spec.batch)
                .flat_map(|n| (0..spec.spatial).map(move |s| (n, s)))
                .map(|(n, s)| {
                    let i = 2 * ((n * spec.channels + c) * spec.spatial + s);
                    [y[i], y[i + 1]]
                })
                .collect();
            let mean = [0, 1].map(|k| values.iter().map(|v| v[k]).sum::<f64>() / count);
            let cov = [(0, 0), (0, 1), (1, 1)].map(|(k, l)| {
                values
                    .iter()
                    .map(|v| (v[k] - mean[k]) * (v[l] - mean[l]))
                    .sum::<f64>()
                    / count
            });
            (mean, cov)
        })
        .collect()
}

/// On strongly correlated input with unequal variances, the non-affine
/// output of every channel has mean 0 and identity covariance (up to the
/// eps added to V); scaling each part alone would leave them correlated.
#[test]
fn complex_batch_norm_whitens_correlated_input() {
    let gpu = Gpu::shared();
    let shape = [8, 3, 50];
    let xs = complex_shape(&shape);
    let spec = ComplexBatchNorm::for_shape(&xs).unwrap();
    let c = spec.channels;
    let mut rng = Rng::new(600);
    let mut x = Vec::with_capacity(2 * spec.len());
    for _ in 0..spec.len() {
        let r = 3.0 * rng.normal();
        x.extend([r + 2.0, -0.9 * r + 0.4 * rng.normal() - 1.0]);
    }
    let (tx, ty) = (up(&xs, &x), nan(&xs));
    let (trm, trc) = (gpu.zeros(&[c, 2]).unwrap(), gpu.zeros(&[c, 3]).unwrap());
    let tsaved = nan(&saved_shape(c));
    let running = ComplexRunning {
        mean: &trm,
        cov: &trc,
    };
    let mut rec = gpu.recorder();
    complex_batch_norm_train_forward(&mut rec, &spec, &tx, None, running, &ty, &tsaved).unwrap();
    rec.submit().unwrap();
    let input = moments(&spec, &to_f64(&x));
    assert!(
        input
            .iter()
            .all(|(_, v)| v[1] / (v[0] * v[2]).sqrt() < -0.95),
        "the input must be strongly correlated: {input:?}"
    );
    let reference =
        complex_batch_norm_train_forward_reference(&spec, &to_f64(&x), None, &[0.0; 6], &[0.0; 9])
            .y;
    for (source, y) in [("gpu", to_f64(&down(&ty))), ("reference", reference)] {
        for (ch, (mean, cov)) in moments(&spec, &y).iter().enumerate() {
            let what = format!("{source} channel {ch}: mean {mean:?}, covariance {cov:?}");
            assert!(mean.iter().all(|m| m.abs() < 1e-4), "{what}");
            assert!((cov[0] - 1.0).abs() < 1e-3, "{what}");
            assert!(cov[1].abs() < 1e-3, "{what}");
            assert!((cov[2] - 1.0).abs() < 1e-3, "{what}");
        }
    }
}

/// All-zero input has zero covariance: only eps keeps W finite, and every
/// output and gradient must stay finite.
#[test]
fn complex_batch_norm_of_zeros_is_finite() {
    let gpu = Gpu::shared();
    for shape in [&[4, 3, 5][..], &[1, 2, 1]] {
        let xs = complex_shape(shape);
        let spec = ComplexBatchNorm::for_shape(&xs).unwrap();
        let c = spec.channels;
        let mut rng = Rng::new(700);
        let p = parameters(&mut rng, c);
        let dy = rng.vec_uniform(2 * spec.len(), -1.0, 1.0);
        let tx = gpu.zeros(&xs).unwrap();
        let tdy = up(&xs, &dy);
        let (tg, tb) = (up(&[c, 3], &p.gamma), up(&[c, 2], &p.beta));
        let (trm, trc) = (up(&[c, 2], &p.running_mean), up(&[c, 3], &p.running_cov));
        let (ty, tdx) = (nan(&xs), nan(&xs));
        let tsaved = nan(&saved_shape(c));
        let (tdg, tdb) = (nan(&[c, 3]), nan(&[c, 2]));
        let running = ComplexRunning {
            mean: &trm,
            cov: &trc,
        };
        let affine = ComplexAffine {
            gamma: &tg,
            beta: &tb,
        };
        let grads = ComplexAffineGrads {
            gamma: &tg,
            dgamma: &tdg,
            dbeta: &tdb,
        };
        let mut rec = gpu.recorder();
        complex_batch_norm_train_forward(&mut rec, &spec, &tx, Some(affine), running, &ty, &tsaved)
            .unwrap();
        complex_batch_norm_train_backward(&mut rec, &spec, &tx, &tdy, &tsaved, Some(grads), &tdx)
            .unwrap();
        rec.submit().unwrap();
        for (what, t) in [
            ("y", &ty),
            ("saved", &tsaved),
            ("running mean", &trm),
            ("running covariance", &trc),
            ("dx", &tdx),
            ("dgamma", &tdg),
            ("dbeta", &tdb),
        ] {
            let v = down(t);
            assert!(
                v.iter().all(|v| v.is_finite()),
                "{what} {shape:?} of all-zero input: {v:?}"
            );
        }
        // y is beta exactly (xhat = 0), and dx the centred W G dy.
        let fwd = complex_batch_norm_train_forward_reference(
            &spec,
            &vec![0.0; 2 * spec.len()],
            Some((&to_f64(&p.gamma), &to_f64(&p.beta))),
            &to_f64(&p.running_mean),
            &to_f64(&p.running_cov),
        );
        assert_close("y of zeros", &down(&ty), &to_f32(&fwd.y), 1e-6, 1e-6);
        let bwd = complex_batch_norm_train_backward_reference(
            &spec,
            &vec![0.0; 2 * spec.len()],
            &to_f64(&dy),
            &fwd.saved,
            Some(&to_f64(&p.gamma)),
        );
        assert_close("dx of zeros", &down(&tdx), &to_f32(&bwd.dx), 1e-2, 1e-3);
    }
}

#[test]
fn zero_momentum_leaves_the_running_statistics_unchanged() {
    let gpu = Gpu::shared();
    let shape = [3, 2, 7];
    let xs = complex_shape(&shape);
    let spec = ComplexBatchNorm::for_shape(&xs).unwrap().momentum(0.0);
    let c = spec.channels;
    let mut rng = Rng::new(800);
    let x = correlated_input(&mut rng, spec.len(), [1.0, 2.0]);
    let p = parameters(&mut rng, c);
    let tx = up(&xs, &x);
    let (trm, trc) = (up(&[c, 2], &p.running_mean), up(&[c, 3], &p.running_cov));
    let (ty, tsaved) = (nan(&xs), nan(&saved_shape(c)));
    let running = ComplexRunning {
        mean: &trm,
        cov: &trc,
    };
    let mut rec = gpu.recorder();
    complex_batch_norm_train_forward(&mut rec, &spec, &tx, None, running, &ty, &tsaved).unwrap();
    rec.submit().unwrap();
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&down(&trm)), bits(&p.running_mean), "running mean");
    assert_eq!(
        bits(&down(&trc)),
        bits(&p.running_cov),
        "running covariance"
    );
    let fwd = complex_batch_norm_train_forward_reference(
        &spec,
        &to_f64(&x),
        None,
        &to_f64(&p.running_mean),
        &to_f64(&p.running_cov),
    );
    assert_eq!(fwd.running_mean, to_f64(&p.running_mean));
    assert_eq!(fwd.running_cov, to_f64(&p.running_cov));
    // The batch's statistics still normalise the output.
    assert!(down(&ty).iter().all(|v| v.is_finite()));
}

#[test]
fn complex_batch_norm_rejects_bad_shapes() {
    let gpu = Gpu::shared();
    let spec = ComplexBatchNorm::new(2, 3, 4);
    let zeros = |shape: &[usize]| gpu.zeros(shape).unwrap();
    let (x, y) = (zeros(&[2, 3, 4, 2]), zeros(&[2, 3, 4, 2]));
    let (mean, cov, saved) = (zeros(&[3, 2]), zeros(&[3, 3]), zeros(&saved_shape(3)));
    let (gamma, beta) = (zeros(&[3, 3]), zeros(&[3, 2]));
    let running = ComplexRunning {
        mean: &mean,
        cov: &cov,
    };
    let forward = |spec: &ComplexBatchNorm,
                   x: &Tensor,
                   affine: Option<ComplexAffine>,
                   running: ComplexRunning,
                   saved: &Tensor| {
        let mut rec = gpu.recorder();
        complex_batch_norm_train_forward(&mut rec, spec, x, affine, running, &y, saved)
            .unwrap_err()
            .to_string()
    };
    // Real input (no trailing axis of 2) of as many floats.
    let real = zeros(&[2, 3, 8]);
    let err = forward(&spec, &real, None, running, &saved);
    assert!(err.contains("x has shape [2, 3, 8]"), "{err}");
    let err = forward(&spec, &x, None, running, &zeros(&[2, 3]));
    assert!(err.contains("saved has shape [2, 3]"), "{err}");
    // A real batch norm's running variance.
    let short = ComplexRunning {
        mean: &mean,
        cov: &zeros(&[3]),
    };
    let err = forward(&spec, &x, None, short, &saved);
    assert!(err.contains("running covariance has shape [3]"), "{err}");
    let swapped = ComplexAffine {
        gamma: &beta,
        beta: &gamma,
    };
    let err = forward(&spec, &x, Some(swapped), running, &saved);
    assert!(
        err.contains("gamma has shape [3, 2], expected [3, 3]"),
        "{err}"
    );
    let err = forward(&spec.eps(0.0), &x, None, running, &saved);
    assert!(err.contains("eps"), "{err}");

    let grads = ComplexAffineGrads {
        gamma: &gamma,
        dgamma: &gamma,
        dbeta: &zeros(&[3]),
    };
    let mut rec = gpu.recorder();
    let err = complex_batch_norm_train_backward(&mut rec, &spec, &x, &y, &saved, Some(grads), &y)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dbeta has shape [3], expected [3, 2]"),
        "{err}"
    );
    let err = complex_batch_norm_infer_backward(&mut rec, &spec, &x, &real, running, None, &y)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dy has shape [2, 3, 8]"), "{err}");
    let err = ComplexBatchNorm::for_shape(&[2, 3, 4])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[batch, channels, ..., 2]"), "{err}");
}

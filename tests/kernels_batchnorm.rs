//! Batch norm on the GPU against its CPU reference (training forward with
//! running statistics, inference forward, training and inference backward;
//! affine and not), and the reference backwards against finite differences.

use audionas::gpu::Gpu;
use audionas::kernels::batchnorm::{
    batch_norm_infer_backward, batch_norm_infer_backward_reference, batch_norm_infer_forward,
    batch_norm_infer_forward_reference, batch_norm_train_backward,
    batch_norm_train_backward_from_output, batch_norm_train_backward_from_output_reference,
    batch_norm_train_backward_reference, batch_norm_train_forward,
    batch_norm_train_forward_reference, Affine, AffineGrads, BatchNorm, Running,
};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::util::rng::Rng;

/// `offset`: the mean of x. One far from zero, as activations can have,
/// tests the variance's accuracy (a plain sum of squares loses it).
fn check_against_reference(spec: &BatchNorm, affine: bool, offset: f32, seed: u64) {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    let c = spec.channels;
    let x: Vec<f32> = rng
        .vec_uniform(spec.len(), -2.0, 2.0)
        .iter()
        .map(|v| v + offset)
        .collect();
    let dy = rng.vec_uniform(spec.len(), -1.0, 1.0);
    let gamma = rng.vec_uniform(c, 0.5, 1.5);
    let beta = rng.vec_uniform(c, -0.5, 0.5);
    let rm0 = rng.vec_uniform(c, -0.1, 0.1);
    let rv0 = rng.vec_uniform(c, 0.5, 1.5);
    let (x64, dy64, g64, b64) = (to_f64(&x), to_f64(&dy), to_f64(&gamma), to_f64(&beta));

    let shape = [spec.batch, c, spec.spatial];
    let tx = gpu.upload(&shape, &x).unwrap();
    let tdy = gpu.upload(&shape, &dy).unwrap();
    let tg = gpu.upload(&[c], &gamma).unwrap();
    let tb = gpu.upload(&[c], &beta).unwrap();
    let trm = gpu.upload(&[c], &rm0).unwrap();
    let trv = gpu.upload(&[c], &rv0).unwrap();
    let ty = gpu.full(&shape, f32::NAN).unwrap();
    let ty_infer = gpu.full(&shape, f32::NAN).unwrap();
    let tsaved = gpu.full(&[2, c], f32::NAN).unwrap();
    let tdx = gpu.full(&shape, f32::NAN).unwrap();
    let tdx_from_y = gpu.full(&shape, f32::NAN).unwrap();
    let tdg = gpu.full(&[c], f32::NAN).unwrap();
    let tdb = gpu.full(&[c], f32::NAN).unwrap();
    let running = Running {
        mean: &trm,
        var: &trv,
    };
    let gpu_affine = affine.then_some(Affine {
        gamma: &tg,
        beta: &tb,
    });
    let mut rec = gpu.recorder();
    batch_norm_train_forward(&mut rec, spec, &tx, gpu_affine, running, &ty, &tsaved).unwrap();
    // Inference with the statistics the training step just updated.
    batch_norm_infer_forward(&mut rec, spec, &tx, gpu_affine, running, &ty_infer).unwrap();
    let grads = affine.then_some(AffineGrads {
        gamma: &tg,
        dgamma: &tdg,
        dbeta: &tdb,
    });
    batch_norm_train_backward(&mut rec, spec, &tx, &tdy, &tsaved, grads, &tdx).unwrap();
    if !affine {
        batch_norm_train_backward_from_output(&mut rec, spec, &ty, &tdy, &tsaved, &tdx_from_y)
            .unwrap();
    }
    rec.submit().unwrap();

    let what = |part: &str| format!("{part} {spec:?} affine {affine}");
    let ref_affine = affine.then_some((&g64[..], &b64[..]));
    let (mut rm, mut rv) = (to_f64(&rm0), to_f64(&rv0));
    let fwd = batch_norm_train_forward_reference(spec, &x64, ref_affine, &mut rm, &mut rv);
    assert_close(
        &what("train y"),
        &gpu.download(&ty).unwrap(),
        &to_f32(&fwd.y),
        1e-4,
        1e-4,
    );
    let saved: Vec<f64> = fwd.mean.iter().chain(&fwd.invstd).copied().collect();
    assert_close(
        &what("saved mean, invstd"),
        &gpu.download(&tsaved).unwrap(),
        &to_f32(&saved),
        1e-5,
        1e-4,
    );
    assert_close(
        &what("running mean"),
        &gpu.download(&trm).unwrap(),
        &to_f32(&rm),
        1e-5,
        1e-5,
    );
    assert_close(
        &what("running var"),
        &gpu.download(&trv).unwrap(),
        &to_f32(&rv),
        1e-5,
        1e-4,
    );
    assert_close(
        &what("infer y"),
        &gpu.download(&ty_infer).unwrap(),
        &to_f32(&batch_norm_infer_forward_reference(
            spec, &x64, ref_affine, &rm, &rv,
        )),
        1e-4,
        1e-4,
    );
    let bwd = batch_norm_train_backward_reference(
        spec,
        &x64,
        &dy64,
        &fwd.mean,
        &fwd.invstd,
        affine.then_some(&g64[..]),
    );
    let count = (spec.batch * spec.spatial) as f32;
    assert_close(
        &what("dx"),
        &gpu.download(&tdx).unwrap(),
        &to_f32(&bwd.dx),
        1e-4,
        1e-3,
    );
    if !affine {
        // From the output (xhat) the reference gives the same gradient.
        let from_y =
            batch_norm_train_backward_from_output_reference(spec, &fwd.y, &dy64, &fwd.invstd);
        assert_close(
            &what("from y: reference"),
            &to_f32(&from_y),
            &to_f32(&bwd.dx),
            1e-6,
            1e-6,
        );
        assert_close(
            &what("dx from y"),
            &gpu.download(&tdx_from_y).unwrap(),
            &to_f32(&from_y),
            1e-4,
            1e-3,
        );
    }
    if affine {
        let tol = 1e-5 * count.sqrt();
        assert_close(
            &what("dgamma"),
            &gpu.download(&tdg).unwrap(),
            &to_f32(&bwd.dgamma),
            tol,
            1e-4,
        );
        assert_close(
            &what("dbeta"),
            &gpu.download(&tdb).unwrap(),
            &to_f32(&bwd.dbeta),
            tol,
            1e-4,
        );
    }
}

#[test]
fn batch_norm_matches_reference() {
    let specs = [
        BatchNorm::new(1, 1, 1),
        BatchNorm::new(2, 3, 1),
        BatchNorm::new(3, 5, 7),
        BatchNorm::new(4, 2, 65).momentum(0.3),
        BatchNorm::new(2, 7, 129).eps(1e-3),
        BatchNorm::for_shape(&[5, 3, 13, 11]).unwrap(),
        // A whole workgroup's stride of lanes in one plane, and many images of one element.
        BatchNorm::new(3, 2, 64),
        BatchNorm::new(130, 2, 1),
    ];
    for (i, spec) in specs.iter().enumerate() {
        for affine in [true, false] {
            check_against_reference(spec, affine, 3.0, 500 + i as u64);
        }
    }
}

#[test]
fn batch_norm_variance_is_accurate_far_from_zero() {
    for (i, spec) in [BatchNorm::new(64, 4, 125), BatchNorm::new(3, 5, 7)]
        .iter()
        .enumerate()
    {
        check_against_reference(spec, true, 1000.0, 600 + i as u64);
    }
}

#[test]
fn inference_backward_matches_reference() {
    let gpu = Gpu::shared();
    for (i, spec) in [
        BatchNorm::new(1, 1, 1),
        BatchNorm::new(3, 5, 7),
        BatchNorm::new(2, 3, 130),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(700 + i as u64);
        let c = spec.channels;
        let x = rng.vec_uniform(spec.len(), -2.0, 2.0);
        let dy = rng.vec_uniform(spec.len(), -1.0, 1.0);
        let gamma = rng.vec_uniform(c, 0.5, 1.5);
        let mean = rng.vec_uniform(c, -0.5, 0.5);
        let var = rng.vec_uniform(c, 0.5, 1.5);
        let [tx, tdy] = [&x, &dy].map(|v| gpu.upload(&[v.len()], v).unwrap());
        let [tg, tm, tv] = [&gamma, &mean, &var].map(|v| gpu.upload(&[c], v).unwrap());
        for affine in [true, false] {
            let tdx = gpu.full(&[spec.len()], f32::NAN).unwrap();
            let [tdg, tdb] = [(); 2].map(|_| gpu.full(&[c], f32::NAN).unwrap());
            let grads = affine.then_some(AffineGrads {
                gamma: &tg,
                dgamma: &tdg,
                dbeta: &tdb,
            });
            let running = Running {
                mean: &tm,
                var: &tv,
            };
            let mut rec = gpu.recorder();
            batch_norm_infer_backward(&mut rec, spec, &tx, &tdy, running, grads, &tdx).unwrap();
            rec.submit().unwrap();
            let g64 = to_f64(&gamma);
            let want = batch_norm_infer_backward_reference(
                spec,
                &to_f64(&x),
                &to_f64(&dy),
                &to_f64(&mean),
                &to_f64(&var),
                affine.then_some(&g64[..]),
            );
            let what = format!("{spec:?} affine {affine}");
            assert_close(
                &what,
                &gpu.download(&tdx).unwrap(),
                &to_f32(&want.dx),
                1e-5,
                1e-4,
            );
            if affine {
                assert_close(
                    &what,
                    &gpu.download(&tdg).unwrap(),
                    &to_f32(&want.dgamma),
                    1e-4,
                    1e-4,
                );
                assert_close(
                    &what,
                    &gpu.download(&tdb).unwrap(),
                    &to_f32(&want.dbeta),
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn inference_backward_reference_matches_finite_differences() {
    let spec = BatchNorm::new(3, 2, 5);
    let mut rng = Rng::new(800);
    let c = spec.channels;
    let x = to_f64(&rng.vec_uniform(spec.len(), -1.0, 1.0));
    let gamma = to_f64(&rng.vec_uniform(c, 0.5, 1.5));
    let beta = to_f64(&rng.vec_uniform(c, -0.5, 0.5));
    let mean = to_f64(&rng.vec_uniform(c, -0.5, 0.5));
    let var = to_f64(&rng.vec_uniform(c, 0.5, 1.5));
    let r = to_f64(&rng.vec_uniform(spec.len(), -1.0, 1.0));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        batch_norm_infer_forward_reference(&spec, x, Some((g, b)), &mean, &var)
            .iter()
            .zip(&r)
            .map(|(a, b)| a * b)
            .sum::<f64>()
    };
    let bwd = batch_norm_infer_backward_reference(&spec, &x, &r, &mean, &var, Some(&gamma));
    assert_gradient("d/dx", &x, &bwd.dx, |x| loss(x, &gamma, &beta), 1e-6, 1e-5);
    assert_gradient(
        "d/dgamma",
        &gamma,
        &bwd.dgamma,
        |g| loss(&x, g, &beta),
        1e-6,
        1e-5,
    );
    assert_gradient(
        "d/dbeta",
        &beta,
        &bwd.dbeta,
        |b| loss(&x, &gamma, b),
        1e-6,
        1e-5,
    );
}

#[test]
fn batch_norm_backward_reference_matches_finite_differences() {
    for (i, spec) in [BatchNorm::new(3, 2, 5), BatchNorm::new(4, 3, 1)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(600 + i as u64);
        let c = spec.channels;
        let x = to_f64(&rng.vec_uniform(spec.len(), -1.0, 1.0));
        let gamma = to_f64(&rng.vec_uniform(c, 0.5, 1.5));
        let beta = to_f64(&rng.vec_uniform(c, -0.5, 0.5));
        let r = to_f64(&rng.vec_uniform(spec.len(), -1.0, 1.0));
        let loss = |x: &[f64], affine: Option<(&[f64], &[f64])>| {
            let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
            batch_norm_train_forward_reference(spec, x, affine, &mut rm, &mut rv)
                .y
                .iter()
                .zip(&r)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        };
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        let fwd =
            batch_norm_train_forward_reference(spec, &x, Some((&gamma, &beta)), &mut rm, &mut rv);
        let bwd =
            batch_norm_train_backward_reference(spec, &x, &r, &fwd.mean, &fwd.invstd, Some(&gamma));
        let what = |part: &str| format!("{part} {spec:?}");
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
        let plain = batch_norm_train_backward_reference(spec, &x, &r, &fwd.mean, &fwd.invstd, None);
        assert_gradient(
            &what("non-affine d/dx"),
            &x,
            &plain.dx,
            |x| loss(x, None),
            1e-6,
            1e-5,
        );
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        let xhat = batch_norm_train_forward_reference(spec, &x, None, &mut rm, &mut rv).y;
        let from_output =
            batch_norm_train_backward_from_output_reference(spec, &xhat, &r, &fwd.invstd);
        assert_gradient(
            &what("non-affine d/dx from the output"),
            &x,
            &from_output,
            |x| loss(x, None),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn batch_norm_rejects_bad_shapes() {
    let gpu = Gpu::shared();
    let spec = BatchNorm::new(2, 3, 4);
    let x = gpu.zeros(&[2, 3, 4]).unwrap();
    let y = gpu.zeros(&[2, 3, 4]).unwrap();
    let stats = gpu.zeros(&[3]).unwrap();
    let saved = gpu.zeros(&[3]).unwrap();
    let running = Running {
        mean: &stats,
        var: &stats,
    };
    let err = batch_norm_train_forward(&mut gpu.recorder(), &spec, &x, None, running, &y, &saved)
        .unwrap_err();
    assert!(err.to_string().contains("saved has shape [3]"), "{err}");
}

//! Elementwise kernels on the GPU against their CPU references on lengths
//! around the workgroup and per-invocation edges, and each backward reference
//! against finite differences of its forward.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f64};
use audionas::kernels::elementwise::*;
use audionas::util::rng::Rng;

/// 1, primes, and lengths just around 256 and 1024 (a workgroup and what it covers).
const LENGTHS: [usize; 9] = [1, 2, 7, 255, 256, 257, 1023, 1025, 4099];

fn upload(v: &[f32]) -> Tensor {
    Gpu::shared().upload(&[v.len()], v).unwrap()
}

fn download(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

#[test]
fn scale_fill_add_axpy_match_reference() {
    let gpu = Gpu::shared();
    for (seed, &n) in LENGTHS.iter().enumerate() {
        let mut rng = Rng::new(seed as u64);
        let a = rng.vec_uniform(n, -2.0, 2.0);
        let b = rng.vec_uniform(n, -2.0, 2.0);
        let (ta, tb) = (upload(&a), upload(&b));
        let sum = gpu.full(&[n], f32::NAN).unwrap();
        let filled = gpu.zeros(&[n]).unwrap();
        let scaled = upload(&a);
        let acc = upload(&b);
        let y = upload(&b);
        let mut rec = gpu.recorder();
        add(&mut rec, &ta, &tb, &sum).unwrap();
        fill(&mut rec, &filled, -3.5).unwrap();
        scale(&mut rec, &scaled, 0.75).unwrap();
        add_assign(&mut rec, &acc, &ta).unwrap();
        axpy(&mut rec, -1.5, &ta, &y).unwrap();
        rec.submit_and_wait().unwrap();

        assert_close(
            &format!("add n={n}"),
            &download(&sum),
            &add_reference(&a, &b),
            0.0,
            0.0,
        );
        assert_close(
            &format!("fill n={n}"),
            &download(&filled),
            &vec![-3.5; n],
            0.0,
            0.0,
        );
        let mut want = a.clone();
        scale_reference(&mut want, 0.75);
        assert_close(&format!("scale n={n}"), &download(&scaled), &want, 0.0, 0.0);
        let mut want = b.clone();
        axpy_reference(1.0, &a, &mut want);
        assert_close(
            &format!("add_assign n={n}"),
            &download(&acc),
            &want,
            1e-6,
            1e-6,
        );
        let mut want = b.clone();
        axpy_reference(-1.5, &a, &mut want);
        assert_close(&format!("axpy n={n}"), &download(&y), &want, 1e-6, 1e-6);
    }
}

#[test]
fn axpy_by_a_gpu_scalar_matches_reference() {
    let gpu = Gpu::shared();
    for (seed, &n) in LENGTHS.iter().enumerate() {
        let mut rng = Rng::new(100 + seed as u64);
        let x = rng.vec_uniform(n, -2.0, 2.0);
        let y = rng.vec_uniform(n, -2.0, 2.0);
        for (s, by) in [
            (0.37, ByScalar::Times),
            (0.37, ByScalar::Over),
            (0.0, ByScalar::Times),
            (0.0, ByScalar::Over),
        ] {
            let (tx, ty, ts) = (upload(&x), upload(&y), upload(&[s]));
            let mut rec = gpu.recorder();
            axpy_by(&mut rec, -1.5, &ts, by, &tx, &ty).unwrap();
            rec.submit_and_wait().unwrap();
            let mut want = y.clone();
            axpy_by_reference(-1.5, s, by, &x, &mut want);
            assert_close(
                &format!("axpy_by {by:?} s={s} n={n}"),
                &download(&ty),
                &want,
                1e-6,
                1e-6,
            );
        }
    }
    // Dividing by zero leaves y as it was.
    let mut y = vec![1.0, 2.0];
    axpy_by_reference(1.0, 0.0, ByScalar::Over, &[5.0, 5.0], &mut y);
    assert_eq!(y, [1.0, 2.0]);
}

#[test]
fn scale_samples_matches_reference_and_its_own_gradient() {
    let gpu = Gpu::shared();
    // [batch, inner] shapes: one sample, primes, samples across workgroups.
    for (seed, &(batch, inner)) in [(1, 1), (1, 7), (3, 5), (7, 257), (13, 101), (64, 33)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(200 + seed as u64);
        let x = rng.vec_uniform(batch * inner, -2.0, 2.0);
        // Gates are 0 or 1 in use; any factor must work.
        let factors: Vec<f32> = (0..batch)
            .map(|b| match b % 3 {
                0 => 1.0,
                1 => 0.0,
                _ => rng.uniform(-2.0, 2.0),
            })
            .collect();
        let tx = gpu.upload(&[batch, inner], &x).unwrap();
        let tf = upload(&factors);
        let ty = gpu.full(&[batch, inner], f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        scale_samples(&mut rec, &tx, &tf, &ty).unwrap();
        rec.submit_and_wait().unwrap();
        let want = scale_samples_reference(&x, &factors);
        assert_close(
            &format!("scale_samples {batch}x{inner}"),
            &download(&ty),
            &want,
            0.0,
            0.0,
        );
        // The map is linear in x, so its backward is itself: the gradient of
        // sum(w * y) is scale_samples(w).
        let w = rng.vec_uniform(batch * inner, -1.0, 1.0);
        let analytic = to_f64(&scale_samples_reference(&w, &factors));
        let f64_factors = to_f64(&factors);
        assert_gradient(
            &format!("scale_samples backward {batch}x{inner}"),
            &to_f64(&x),
            &analytic,
            |x| {
                x.iter()
                    .enumerate()
                    .map(|(i, v)| w[i] as f64 * v * f64_factors[i / inner])
                    .sum()
            },
            1e-6,
            1e-4,
        );
    }
    // One factor per sample, or a clear error.
    let mut rec = gpu.recorder();
    let x = gpu.zeros(&[4, 3]).unwrap();
    let err = scale_samples(
        &mut rec,
        &x,
        &upload(&[1.0; 3]),
        &gpu.zeros(&[4, 3]).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("one per sample"), "{err}");
}

#[test]
fn activations_forward_and_backward_match_reference() {
    let gpu = Gpu::shared();
    for f in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        for (seed, &n) in LENGTHS.iter().enumerate() {
            let mut rng = Rng::new(100 + seed as u64);
            // Wide enough to reach saturation, where naive formulas overflow.
            let mut x = rng.vec_uniform(n, -6.0, 6.0);
            x[0] = if seed % 2 == 0 { 90.0 } else { -90.0 };
            let dy = rng.vec_uniform(n, -1.0, 1.0);
            let (tx, tdy) = (upload(&x), upload(&dy));
            let ty = gpu.full(&[n], f32::NAN).unwrap();
            let tdx = gpu.full(&[n], f32::NAN).unwrap();
            let mut rec = gpu.recorder();
            activation(&mut rec, f, &tx, &ty).unwrap();
            activation_backward(&mut rec, f, &ty, &tdy, &tdx).unwrap();
            rec.submit_and_wait().unwrap();
            let y = download(&ty);
            let what = format!("{f:?} n={n}");
            assert_close(&what, &y, &activation_reference(f, &x), 1e-6, 1e-5);
            assert_close(
                &format!("{what} backward"),
                &download(&tdx),
                &activation_backward_reference(f, &y, &dy),
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn activation_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(7);
    // Away from ReLU's kink at 0, where the derivative is undefined.
    let x: Vec<f64> = (0..40)
        .map(|i| {
            let v = rng.uniform(0.05, 3.0) as f64;
            if i % 2 == 0 {
                v
            } else {
                -v
            }
        })
        .collect();
    let weights = to_f64(&rng.vec_uniform(x.len(), -1.0, 1.0));
    for f in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        let y: Vec<f32> = x.iter().map(|&v| f.forward(v) as f32).collect();
        let analytic = to_f64(&activation_backward_reference(
            f,
            &y,
            &audionas::kernels::check::to_f32(&weights),
        ));
        let loss = |x: &[f64]| x.iter().zip(&weights).map(|(&v, w)| w * f.forward(v)).sum();
        assert_gradient(&format!("{f:?}"), &x, &analytic, loss, 1e-6, 1e-5);
    }
}

const BIAS_LAYOUTS: [BiasLayout; 10] = [
    BiasLayout {
        outer: 1,
        channels: 1,
        inner: 1,
    },
    BiasLayout {
        outer: 3,
        channels: 7,
        inner: 1,
    },
    BiasLayout {
        outer: 64,
        channels: 12,
        inner: 1,
    },
    BiasLayout {
        outer: 5,
        channels: 300,
        inner: 1,
    },
    BiasLayout {
        outer: 2,
        channels: 3,
        inner: 5,
    },
    BiasLayout {
        outer: 1,
        channels: 1,
        inner: 1031,
    },
    BiasLayout {
        outer: 7,
        channels: 2,
        inner: 257,
    },
    BiasLayout {
        outer: 3,
        channels: 64,
        inner: 49,
    },
    // The shortest rows that take the one-workgroup-per-row kernel, and the
    // longest that do not.
    BiasLayout {
        outer: 2,
        channels: 3,
        inner: 32,
    },
    BiasLayout {
        outer: 3,
        channels: 2,
        inner: 31,
    },
];

#[test]
fn bias_add_and_backward_match_reference() {
    let gpu = Gpu::shared();
    for (seed, layout) in BIAS_LAYOUTS.iter().enumerate() {
        let mut rng = Rng::new(200 + seed as u64);
        let x = rng.vec_uniform(layout.len(), -1.0, 1.0);
        let bias = rng.vec_uniform(layout.channels, -1.0, 1.0);
        let (tx, tbias) = (upload(&x), upload(&bias));
        let tdb = gpu.full(&[layout.channels], f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        bias_add(&mut rec, layout, &tx, &tbias).unwrap();
        // The bias gradient of the upstream gradient `x` (before the add).
        let tdy = upload(&x);
        bias_backward(&mut rec, layout, &tdy, &tdb).unwrap();
        rec.submit_and_wait().unwrap();
        let mut want = x.clone();
        bias_add_reference(layout, &mut want, &bias);
        assert_close(
            &format!("bias_add {layout:?}"),
            &download(&tx),
            &want,
            1e-6,
            1e-6,
        );
        let tol = 1e-6 * (layout.outer * layout.inner) as f32;
        assert_close(
            &format!("bias_backward {layout:?}"),
            &download(&tdb),
            &bias_backward_reference(layout, &x),
            tol,
            1e-5,
        );
    }
}

#[test]
fn bias_backward_reference_matches_finite_differences() {
    for layout in [BiasLayout::rows(4, 3), BiasLayout::channels(3, 2, 5)] {
        let mut rng = Rng::new(9);
        let x = to_f64(&rng.vec_uniform(layout.len(), -1.0, 1.0));
        let dy = rng.vec_uniform(layout.len(), -1.0, 1.0);
        let bias = to_f64(&rng.vec_uniform(layout.channels, -1.0, 1.0));
        let analytic = to_f64(&bias_backward_reference(&layout, &dy));
        let loss = |b: &[f64]| {
            let mut out = x.clone();
            bias_add_reference(&layout, &mut out, b);
            out.iter().zip(&dy).map(|(o, &g)| o * g as f64).sum()
        };
        assert_gradient(&format!("{layout:?}"), &bias, &analytic, loss, 1e-6, 1e-5);
    }
}

#[test]
fn launchers_name_the_mismatched_argument() {
    let gpu = Gpu::shared();
    let a = gpu.zeros(&[4]).unwrap();
    let b = gpu.zeros(&[5]).unwrap();
    let mut rec = gpu.recorder();
    let err = add(&mut rec, &a, &b, &a).unwrap_err().to_string();
    assert!(err.contains("b has shape [5]"), "{err}");
    let err = bias_add(&mut rec, &BiasLayout::rows(2, 2), &a, &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias has shape [5]"), "{err}");
    let err = axpy_by(&mut rec, 1.0, &b, ByScalar::Times, &a, &a)
        .unwrap_err()
        .to_string();
    assert!(err.contains("s has shape [5]"), "{err}");
}

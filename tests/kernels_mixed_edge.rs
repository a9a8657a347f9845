//! Mixed edges and architecture regularisers on the GPU against their CPU
//! references, and the references' gradients against finite differences.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::mixed_edge::*;
use audionas::util::rng::Rng;

const WEIGHTINGS: [EdgeWeighting; 2] = [EdgeWeighting::Softmax, EdgeWeighting::Sigmoid];

fn upload(shape: &[usize], data: &[f32]) -> Tensor {
    Gpu::shared().upload(shape, data).unwrap()
}

fn download(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

/// Runs weights, forward and backward of edge `row` of `alpha: [rows, k]` on
/// candidates `[k, shape...]` and compares everything with the references.
fn check_edge(weighting: EdgeWeighting, alpha: &[f32], rows: usize, row: usize, shape: &[usize]) {
    let gpu = Gpu::shared();
    let k = alpha.len() / rows;
    let n: usize = shape.iter().product();
    let mut rng = Rng::new((rows * 31 + row * 7 + n) as u64);
    let mut x = rng.vec_uniform(k * n, -1.0, 1.0);
    let dy = rng.vec_uniform(n, -1.0, 1.0);
    let w_ref = weights_reference(weighting, &to_f64(alpha), k);
    let w_row = &w_ref[row * k..(row + 1) * k];
    // Inactive candidates hold NaN: nothing of them may reach y, dx or dw.
    for (kk, &wk) in w_row.iter().enumerate() {
        if wk == 0.0 {
            x[kk * n..(kk + 1) * n].fill(f32::NAN);
        }
    }
    let mut x_shape = vec![k];
    x_shape.extend_from_slice(shape);
    let t_alpha = upload(&[rows, k], alpha);
    let t_w = gpu.zeros(&[rows, k]).unwrap();
    let t_x = upload(&x_shape, &x);
    let t_y = gpu.full(shape, f32::NAN).unwrap();
    let t_dy = upload(shape, &dy);
    let t_dx = gpu.zeros(&x_shape).unwrap();
    let t_dw = gpu.zeros(&[rows, k]).unwrap();
    let scratch = gpu.empty(&backward_scratch_shape(&x_shape)).unwrap();
    let mut rec = gpu.recorder();
    mixed_edge_weights(&mut rec, weighting, &t_alpha, &t_w).unwrap();
    mixed_edge_forward(&mut rec, &t_w, row, &t_x, &t_y).unwrap();
    mixed_edge_backward(&mut rec, &t_w, row, &t_x, &t_dy, &t_dx, &t_dw, &scratch).unwrap();
    rec.submit_and_wait().unwrap();

    let what = format!("{weighting:?} rows {rows} row {row} shape {shape:?}");
    assert_close(
        &format!("{what} w"),
        &download(&t_w),
        &to_f32(&w_ref),
        1e-6,
        1e-5,
    );
    let y_ref = forward_reference(w_row, &to_f64(&x));
    assert_close(
        &format!("{what} y"),
        &download(&t_y),
        &to_f32(&y_ref),
        1e-5,
        1e-5,
    );
    let (dx_ref, dw_ref) = backward_reference(w_row, &to_f64(&x), &to_f64(&dy));
    assert_close(
        &format!("{what} dx"),
        &download(&t_dx),
        &to_f32(&dx_ref),
        1e-6,
        1e-5,
    );
    let dw = download(&t_dw);
    let tol = 1e-5 * (n as f32).sqrt();
    assert_close(
        &format!("{what} dw"),
        &dw[row * k..(row + 1) * k],
        &to_f32(&dw_ref),
        tol,
        1e-4,
    );
}

#[test]
fn mixed_edge_matches_reference_on_awkward_shapes() {
    let mut rng = Rng::new(1);
    for weighting in WEIGHTINGS {
        for &(k, shape) in &[
            (1, &[1usize][..]),
            (2, &[7][..]),
            (3, &[2, 3, 5, 7][..]),
            (8, &[1, 1, 257][..]),
            (5, &[3, 1031][..]),
        ] {
            let alpha = rng.vec_uniform(k, -2.0, 2.0);
            check_edge(weighting, &alpha, 1, 0, shape);
        }
    }
}

#[test]
fn mixed_edge_uses_its_own_row_and_many_workgroups() {
    let mut rng = Rng::new(2);
    let (rows, k) = (5, 4);
    let alpha = rng.vec_uniform(rows * k, -3.0, 3.0);
    for weighting in WEIGHTINGS {
        // 2 * 1024 * 513 + 3 elements: more tiles than the backward's workgroups.
        check_edge(weighting, &alpha, rows, 3, &[2, 1024 * 513 + 3]);
        check_edge(weighting, &alpha, rows, 0, &[11, 13]);
    }
}

#[test]
fn masked_candidates_are_never_read() {
    let mask = [0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    check_edge(EdgeWeighting::Mask, &mask, 1, 0, &[3, 37]);
    check_edge(EdgeWeighting::Mask, &[0.0, 0.0, 1.0, 0.0], 2, 1, &[4099]);
}

#[test]
fn alpha_backward_matches_reference_and_accumulates() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(3);
    for weighting in WEIGHTINGS {
        for &(rows, k) in &[(1, 1), (3, 7), (70, 8)] {
            let alpha = rng.vec_uniform(rows * k, -2.0, 2.0);
            let dw = rng.vec_uniform(rows * k, -1.0, 1.0);
            let old = rng.vec_uniform(rows * k, -1.0, 1.0);
            let t_alpha = upload(&[rows, k], &alpha);
            let t_w = gpu.zeros(&[rows, k]).unwrap();
            let t_dw = upload(&[rows, k], &dw);
            let t_written = gpu.full(&[rows, k], f32::NAN).unwrap();
            let t_summed = upload(&[rows, k], &old);
            let mut rec = gpu.recorder();
            mixed_edge_weights(&mut rec, weighting, &t_alpha, &t_w).unwrap();
            mixed_edge_alpha_backward(&mut rec, weighting, &t_w, &t_dw, &t_written, false).unwrap();
            mixed_edge_alpha_backward(&mut rec, weighting, &t_w, &t_dw, &t_summed, true).unwrap();
            rec.submit_and_wait().unwrap();
            let w_ref = weights_reference(weighting, &to_f64(&alpha), k);
            let want = alpha_backward_reference(weighting, &w_ref, &to_f64(&dw), k);
            let what = format!("{weighting:?} dalpha [{rows}, {k}]");
            assert_close(&what, &download(&t_written), &to_f32(&want), 1e-6, 1e-5);
            let summed: Vec<f64> = want.iter().zip(&old).map(|(a, &b)| a + b as f64).collect();
            assert_close(&what, &download(&t_summed), &to_f32(&summed), 1e-6, 1e-5);
        }
    }
    let t = gpu.zeros(&[1, 2]).unwrap();
    let err =
        mixed_edge_alpha_backward(&mut gpu.recorder(), EdgeWeighting::Mask, &t, &t, &t, false)
            .unwrap_err();
    assert!(err.to_string().contains("mask"), "{err}");
}

#[test]
fn edge_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let (rows, k, n) = (2, 3, 4);
    let alpha = to_f64(&rng.vec_uniform(rows * k, -1.5, 1.5));
    let x = to_f64(&rng.vec_uniform(k * n, -1.0, 1.0));
    let probe = to_f64(&rng.vec_uniform(n, -1.0, 1.0));
    let row = 1;
    for weighting in WEIGHTINGS {
        // loss = sum(probe * y(alpha, x)), so dy = probe.
        let loss = |alpha: &[f64], x: &[f64]| {
            let w = weights_reference(weighting, alpha, k);
            let y = forward_reference(&w[row * k..(row + 1) * k], x);
            y.iter().zip(&probe).map(|(a, b)| a * b).sum::<f64>()
        };
        let w = weights_reference(weighting, &alpha, k);
        let (dx, dw_row) = backward_reference(&w[row * k..(row + 1) * k], &x, &probe);
        let mut dw = vec![0.0; rows * k];
        dw[row * k..(row + 1) * k].copy_from_slice(&dw_row);
        let dalpha = alpha_backward_reference(weighting, &w, &dw, k);
        let what = format!("{weighting:?}");
        assert_gradient(
            &format!("{what} dx"),
            &x,
            &dx,
            |x| loss(&alpha, x),
            1e-7,
            1e-6,
        );
        assert_gradient(
            &format!("{what} dalpha"),
            &alpha,
            &dalpha,
            |a| loss(a, &x),
            1e-7,
            1e-6,
        );
    }
}

const REGULARISERS: [Regulariser; 3] = [
    Regulariser::ZeroOne,
    Regulariser::Gini,
    Regulariser::Entropy,
];

#[test]
fn regulariser_reference_gradients_match_finite_differences() {
    let mut rng = Rng::new(5);
    for kind in REGULARISERS {
        for &(rows, k) in &[(1, 1), (1, 2), (3, 5)] {
            let alpha = to_f64(&rng.vec_uniform(rows * k, -2.0, 2.0));
            let (_, grad) = regulariser_reference(kind, &alpha, k);
            let what = format!("{kind:?} [{rows}, {k}]");
            assert_gradient(
                &what,
                &alpha,
                &grad,
                |a| regulariser_reference(kind, a, k).0,
                1e-8,
                1e-6,
            );
        }
    }
    // Known values: uniform softmax is the least pure distribution.
    let (entropy, _) = regulariser_reference(Regulariser::Entropy, &[0.3; 4], 4);
    assert!((entropy - 1.0).abs() < 1e-12);
    let (gini, _) = regulariser_reference(Regulariser::Gini, &[0.0; 4], 4);
    assert!((gini - 0.75).abs() < 1e-12);
    let (zero_one, _) = regulariser_reference(Regulariser::ZeroOne, &[0.0; 3], 3);
    assert_eq!(zero_one, 0.0);
}

#[test]
fn regulariser_matches_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(6);
    for kind in REGULARISERS {
        for &(rows, k) in &[(1, 1), (2, 3), (14, 8), (131, 5)] {
            let alpha = rng.vec_uniform(rows * k, -3.0, 3.0);
            let old = rng.vec_uniform(rows * k, -1.0, 1.0);
            let coefficient = 10.0;
            let t_alpha = upload(&[rows, k], &alpha);
            let t_loss = gpu.full(&[1], f32::NAN).unwrap();
            let t_dalpha = upload(&[rows, k], &old);
            let t_written = gpu.full(&[rows, k], f32::NAN).unwrap();
            let mut rec = gpu.recorder();
            arch_regulariser(
                &mut rec,
                kind,
                &t_alpha,
                coefficient,
                &t_loss,
                &t_dalpha,
                true,
            )
            .unwrap();
            arch_regulariser(
                &mut rec,
                kind,
                &t_alpha,
                coefficient,
                &t_loss,
                &t_written,
                false,
            )
            .unwrap();
            rec.submit_and_wait().unwrap();
            let (loss, grad) = regulariser_reference(kind, &to_f64(&alpha), k);
            let what = format!("{kind:?} [{rows}, {k}]");
            let scaled: Vec<f64> = grad.iter().map(|g| g * coefficient as f64).collect();
            let summed: Vec<f64> = scaled
                .iter()
                .zip(&old)
                .map(|(g, &o)| g + o as f64)
                .collect();
            assert_close(
                &what,
                &download(&t_loss),
                &[(loss * coefficient as f64) as f32],
                1e-5,
                1e-5,
            );
            assert_close(&what, &download(&t_written), &to_f32(&scaled), 1e-6, 1e-4);
            assert_close(&what, &download(&t_dalpha), &to_f32(&summed), 1e-6, 1e-4);
        }
    }
}

#[test]
fn mismatched_tensors_are_named() {
    let gpu = Gpu::shared();
    let w = gpu.zeros(&[2, 3]).unwrap();
    let x = gpu.zeros(&[4, 5]).unwrap();
    let y = gpu.zeros(&[5]).unwrap();
    let err = mixed_edge_forward(&mut gpu.recorder(), &w, 0, &x, &y).unwrap_err();
    assert!(err.to_string().contains("3 candidates"), "{err}");
    let x = gpu.zeros(&[3, 5]).unwrap();
    let err = mixed_edge_forward(&mut gpu.recorder(), &w, 2, &x, &y).unwrap_err();
    assert!(err.to_string().contains("row 2"), "{err}");
    let y = gpu.zeros(&[6]).unwrap();
    let err = mixed_edge_forward(&mut gpu.recorder(), &w, 0, &x, &y).unwrap_err();
    assert!(err.to_string().contains("y has shape [6]"), "{err}");
}

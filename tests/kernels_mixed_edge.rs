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

// Mixed edges over candidates in separate tensors ("terms"), four per
// dispatch: 1, 3, 5 and 8 terms give one partial group, one full group and
// remainders.

/// Candidate outputs of one terms edge: column, values, GPU tensor.
struct Terms {
    columns: Vec<usize>,
    xs: Vec<Vec<f32>>,
    tensors: Vec<Tensor>,
}

impl Terms {
    fn new(rng: &mut Rng, columns: &[usize], shape: &[usize]) -> Terms {
        let n: usize = shape.iter().product();
        let xs: Vec<Vec<f32>> = columns
            .iter()
            .map(|_| rng.vec_uniform(n, -1.0, 1.0))
            .collect();
        let tensors = xs.iter().map(|x| upload(shape, x)).collect();
        Terms {
            columns: columns.to_vec(),
            xs,
            tensors,
        }
    }

    fn gpu(&self) -> Vec<(usize, &Tensor)> {
        self.columns.iter().copied().zip(&self.tensors).collect()
    }

    fn cpu(&self) -> Vec<Vec<f64>> {
        self.xs.iter().map(|x| to_f64(x)).collect()
    }
}

fn term_refs<'a>(columns: &[usize], xs: &'a [Vec<f64>]) -> Vec<(usize, &'a [f64])> {
    columns
        .iter()
        .copied()
        .zip(xs.iter().map(|x| x.as_slice()))
        .collect()
}

/// Runs forward (accumulating or not) and backward of the terms at `columns`
/// of row `row` of a random `w: [rows, k]` on `shape`, with `dx` requested
/// for every other term, and compares with the references. Entries of `dw`
/// outside the terms and gradients not requested must stay as they were.
fn check_terms(rows: usize, k: usize, row: usize, columns: &[usize], shape: &[usize]) {
    let gpu = Gpu::shared();
    let n: usize = shape.iter().product();
    let mut rng = Rng::new((n * 13 + columns.len() * 5 + row) as u64);
    let w = rng.vec_uniform(rows * k, -1.0, 1.0);
    let y0 = rng.vec_uniform(n, -1.0, 1.0);
    let dy = rng.vec_uniform(n, -1.0, 1.0);
    let terms = Terms::new(&mut rng, columns, shape);
    let t_w = upload(&[rows, k], &w);
    let t_summed = upload(shape, &y0);
    let t_written = gpu.full(shape, f32::NAN).unwrap();
    let t_dy = upload(shape, &dy);
    let sentinel = 7.0;
    let t_dw = gpu.full(&[rows, k], sentinel).unwrap();
    let t_dxs: Vec<Tensor> = columns
        .iter()
        .map(|_| gpu.full(shape, sentinel).unwrap())
        .collect();
    let wants_dx = |i: usize| i.is_multiple_of(2);
    let backward_terms: Vec<(usize, &Tensor, Option<&Tensor>)> = terms
        .gpu()
        .into_iter()
        .zip(&t_dxs)
        .enumerate()
        .map(|(i, ((c, x), dx))| (c, x, wants_dx(i).then_some(dx)))
        .collect();
    let mut rec = gpu.recorder();
    mixed_terms_forward(&mut rec, &t_w, row, &terms.gpu(), &t_summed, true).unwrap();
    mixed_terms_forward(&mut rec, &t_w, row, &terms.gpu(), &t_written, false).unwrap();
    mixed_terms_backward(&mut rec, &t_w, row, &t_dy, &backward_terms, &t_dw).unwrap();
    rec.submit_and_wait().unwrap();

    let what = format!("terms {columns:?} of [{rows}, {k}] row {row} shape {shape:?}");
    let w_row = &to_f64(&w)[row * k..(row + 1) * k];
    let xs = terms.cpu();
    let refs = term_refs(columns, &xs);
    for (accumulate, t_y) in [(true, &t_summed), (false, &t_written)] {
        let want = terms_forward_reference(w_row, &refs, &to_f64(&y0), accumulate);
        let label = format!("{what} y (accumulate {accumulate})");
        assert_close(&label, &download(t_y), &to_f32(&want), 1e-5, 1e-5);
    }
    let grads = terms_backward_reference(w_row, &to_f64(&dy), &refs);
    let mut dw_want = vec![sentinel; rows * k];
    for (i, (&c, (dx_ref, dw_ref))) in columns.iter().zip(&grads).enumerate() {
        dw_want[row * k + c] = *dw_ref as f32;
        let dx_want = if wants_dx(i) {
            to_f32(dx_ref)
        } else {
            vec![sentinel; n]
        };
        let label = format!("{what} dx of column {c}");
        assert_close(&label, &download(&t_dxs[i]), &dx_want, 1e-6, 1e-5);
    }
    let tol = 1e-5 * (n as f32).sqrt();
    assert_close(&format!("{what} dw"), &download(&t_dw), &dw_want, tol, 1e-4);
}

#[test]
fn mixed_terms_match_reference_on_awkward_shapes() {
    for shape in [&[1usize][..], &[7], &[2, 3, 5, 7], &[3, 1031]] {
        check_terms(1, 1, 0, &[0], shape);
        check_terms(2, 9, 1, &[8, 0, 4], shape);
        check_terms(1, 6, 0, &[1, 2, 3, 4, 5], shape);
        check_terms(3, 8, 2, &[3, 1, 4, 0, 7, 5, 2, 6], shape);
    }
}

#[test]
fn mixed_terms_cover_many_workgroups() {
    // More elements than one pass of the dw kernel's workgroups covers.
    check_terms(2, 9, 0, &[2, 5, 6, 8, 0], &[2, 256 * 513 + 3]);
}

#[test]
fn mixed_terms_without_terms() {
    let gpu = Gpu::shared();
    let w = gpu.full(&[1, 3], 1.0).unwrap();
    let y = gpu.full(&[5], 2.0).unwrap();
    let dy = gpu.full(&[5], 1.0).unwrap();
    let dw = gpu.full(&[1, 3], 3.0).unwrap();
    let mut rec = gpu.recorder();
    mixed_terms_forward(&mut rec, &w, 0, &[], &y, true).unwrap();
    mixed_terms_backward(&mut rec, &w, 0, &dy, &[], &dw).unwrap();
    rec.submit_and_wait().unwrap();
    assert_eq!(download(&y), vec![2.0; 5]);
    assert_eq!(download(&dw), vec![3.0; 3]);
    let mut rec = gpu.recorder();
    mixed_terms_forward(&mut rec, &w, 0, &[], &y, false).unwrap();
    rec.submit_and_wait().unwrap();
    assert_eq!(download(&y), vec![0.0; 5]);
}

#[test]
fn mixed_terms_equal_the_stacked_edge_and_repeat_bit_for_bit() {
    let gpu = Gpu::shared();
    let (k, shape) = (8, [3, 5, 67]);
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(7);
    let columns: Vec<usize> = (0..k).collect();
    let terms = Terms::new(&mut rng, &columns, &shape);
    let dy = rng.vec_uniform(n, -1.0, 1.0);
    let alpha = rng.vec_uniform(k, -2.0, 2.0);
    let t_alpha = upload(&[1, k], &alpha);
    let t_w = gpu.zeros(&[1, k]).unwrap();
    let x_shape = [k, 3, 5, 67];
    let t_x = upload(&x_shape, &terms.xs.concat());
    let t_dy = upload(&shape, &dy);
    let (stacked_y, stacked_dx, stacked_dw) = (
        gpu.zeros(&shape).unwrap(),
        gpu.zeros(&x_shape).unwrap(),
        gpu.zeros(&[1, k]).unwrap(),
    );
    let scratch = gpu.empty(&backward_scratch_shape(&x_shape)).unwrap();
    let terms_y = gpu.zeros(&shape).unwrap();
    let terms_dx: Vec<Tensor> = (0..k).map(|_| gpu.zeros(&shape).unwrap()).collect();
    let dws = [gpu.zeros(&[1, k]).unwrap(), gpu.zeros(&[1, k]).unwrap()];
    let backward_terms: Vec<(usize, &Tensor, Option<&Tensor>)> = terms
        .gpu()
        .into_iter()
        .zip(&terms_dx)
        .map(|((c, x), dx)| (c, x, Some(dx)))
        .collect();
    let mut rec = gpu.recorder();
    mixed_edge_weights(&mut rec, EdgeWeighting::Softmax, &t_alpha, &t_w).unwrap();
    mixed_edge_forward(&mut rec, &t_w, 0, &t_x, &stacked_y).unwrap();
    mixed_edge_backward(
        &mut rec,
        &t_w,
        0,
        &t_x,
        &t_dy,
        &stacked_dx,
        &stacked_dw,
        &scratch,
    )
    .unwrap();
    mixed_terms_forward(&mut rec, &t_w, 0, &terms.gpu(), &terms_y, false).unwrap();
    for dw in &dws {
        mixed_terms_backward(&mut rec, &t_w, 0, &t_dy, &backward_terms, dw).unwrap();
    }
    rec.submit_and_wait().unwrap();
    assert_close("y", &download(&terms_y), &download(&stacked_y), 1e-6, 1e-6);
    let dx: Vec<f32> = terms_dx.iter().flat_map(download).collect();
    assert_close("dx", &dx, &download(&stacked_dx), 0.0, 0.0);
    let dw = download(&dws[0]);
    assert_close("dw", &dw, &download(&stacked_dw), 1e-5, 1e-5);
    assert_eq!(dw, download(&dws[1]), "dw must repeat bit for bit");
}

#[test]
fn terms_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(8);
    let (k, n) = (7, 5);
    let columns = [6, 0, 3, 2, 5];
    let w = to_f64(&rng.vec_uniform(k, -1.5, 1.5));
    let xs: Vec<Vec<f64>> = columns
        .iter()
        .map(|_| to_f64(&rng.vec_uniform(n, -1.0, 1.0)))
        .collect();
    let probe = to_f64(&rng.vec_uniform(n, -1.0, 1.0));
    let y0 = to_f64(&rng.vec_uniform(n, -1.0, 1.0));
    // loss = sum(probe * y(w, x)), so dy = probe.
    let loss = |w: &[f64], xs: &[Vec<f64>]| {
        let y = terms_forward_reference(w, &term_refs(&columns, xs), &y0, true);
        y.iter().zip(&probe).map(|(a, b)| a * b).sum::<f64>()
    };
    let grads = terms_backward_reference(&w, &probe, &term_refs(&columns, &xs));
    // Columns without a term get no gradient.
    let mut dw = vec![0.0; k];
    for (&c, (_, g)) in columns.iter().zip(&grads) {
        dw[c] = *g;
    }
    assert_gradient("terms dw", &w, &dw, |w| loss(w, &xs), 1e-7, 1e-6);
    for (i, (dx, _)) in grads.iter().enumerate() {
        let probed = |x: &[f64]| {
            let mut moved = xs.clone();
            moved[i] = x.to_vec();
            loss(&w, &moved)
        };
        assert_gradient(&format!("terms dx {i}"), &xs[i], dx, probed, 1e-7, 1e-6);
    }
}

#[test]
fn mismatched_terms_are_named() {
    let gpu = Gpu::shared();
    let w = gpu.zeros(&[2, 3]).unwrap();
    let x = gpu.zeros(&[5]).unwrap();
    let y = gpu.zeros(&[5]).unwrap();
    let wrong = gpu.zeros(&[6]).unwrap();
    let forward = |row, terms: &[(usize, &Tensor)]| {
        mixed_terms_forward(&mut gpu.recorder(), &w, row, terms, &y, false)
            .unwrap_err()
            .to_string()
    };
    assert!(forward(0, &[(3, &x)]).contains("column 3"));
    assert!(forward(0, &[(1, &x), (1, &x)]).contains("given twice"));
    assert!(forward(2, &[(0, &x)]).contains("row 2"));
    assert!(forward(0, &[(0, &wrong)]).contains("x has shape [6]"));
    let err = mixed_terms_backward(&mut gpu.recorder(), &w, 0, &y, &[(0, &x, Some(&wrong))], &w)
        .unwrap_err();
    assert!(err.to_string().contains("dx has shape [6]"), "{err}");
}

#[test]
fn multi_hot_reference_matches_finite_differences_and_known_values() {
    let mut rng = Rng::new(21);
    for purity in [Regulariser::Gini, Regulariser::Entropy] {
        for nodes in [1, 2, 4] {
            let rows = node_rows(nodes - 1).end;
            let beta = to_f64(&rng.vec_uniform(rows, -2.0, 2.0));
            let (_, grad) = multi_hot_reference(purity, &beta, nodes);
            let what = format!("{purity:?} multi-hot, {nodes} nodes");
            let f = |b: &[f64]| multi_hot_reference(purity, b, nodes).0;
            assert_gradient(&what, &beta, &grad, f, 1e-7, 1e-6);
        }
    }
    // Node 0 has one pair of edges: its pair weights are 1/2 whatever the
    // gates, so it adds a constant and no gradient.
    let (gini, grad) = multi_hot_reference(Regulariser::Gini, &[0.3, -1.0], 1);
    assert!((gini - 0.5).abs() < 1e-12 && grad.iter().all(|g| g.abs() < 1e-12));
    // Two gates open and one shut is purer than three equal gates.
    let open_two = multi_hot_reference(Regulariser::Gini, &[0.0, 0.0, 8.0, 8.0, -8.0], 2).0;
    let all_equal = multi_hot_reference(Regulariser::Gini, &[0.0; 5], 2).0;
    assert!(open_two < all_equal, "{open_two} vs {all_equal}");
}

#[test]
fn multi_hot_matches_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(22);
    for purity in [Regulariser::Gini, Regulariser::Entropy] {
        for nodes in [1, 3, 5, 70] {
            let rows = node_rows(nodes - 1).end;
            let beta = rng.vec_uniform(rows, -3.0, 3.0);
            let old = rng.vec_uniform(rows, -1.0, 1.0);
            let coefficient = 5.7;
            let t_beta = upload(&[rows, 1], &beta);
            let t_loss = gpu.full(&[1], f32::NAN).unwrap();
            let t_summed = upload(&[rows, 1], &old);
            let t_written = gpu.full(&[rows, 1], f32::NAN).unwrap();
            let mut rec = gpu.recorder();
            for (dbeta, accumulate) in [(&t_summed, true), (&t_written, false)] {
                multi_hot_regulariser(
                    &mut rec,
                    purity,
                    &t_beta,
                    nodes,
                    coefficient,
                    &t_loss,
                    dbeta,
                    accumulate,
                )
                .unwrap();
            }
            rec.submit_and_wait().unwrap();
            let (loss, grad) = multi_hot_reference(purity, &to_f64(&beta), nodes);
            let what = format!("{purity:?} multi-hot, {nodes} nodes");
            let c = coefficient as f64;
            let scaled: Vec<f64> = grad.iter().map(|g| g * c).collect();
            let summed: Vec<f64> = scaled
                .iter()
                .zip(&old)
                .map(|(g, &o)| g + o as f64)
                .collect();
            assert_close(&what, &download(&t_loss), &[(loss * c) as f32], 1e-5, 1e-5);
            assert_close(&what, &download(&t_written), &to_f32(&scaled), 1e-5, 1e-4);
            assert_close(&what, &download(&t_summed), &to_f32(&summed), 1e-5, 1e-4);
        }
    }
    // The gates of 3 nodes are 9 rows; others are refused, naming the shape.
    let mut rec = gpu.recorder();
    let (beta, loss) = (gpu.zeros(&[11, 1]).unwrap(), gpu.zeros(&[1]).unwrap());
    let e = multi_hot_regulariser(
        &mut rec,
        Regulariser::Gini,
        &beta,
        3,
        1.0,
        &loss,
        &beta,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("[9, 1]"), "{e}");
}

#[test]
fn edge_gates_match_reference_and_finite_differences() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(23);
    for &(rows, k) in &[(1, 1), (5, 7), (14, 8), (131, 3)] {
        let p = rng.vec_uniform(rows * k, 0.0, 1.0);
        let g = rng.vec_uniform(rows, 0.0, 1.0);
        let dw = rng.vec_uniform(rows * k, -1.0, 1.0);
        let (t_p, t_g, t_dw) = (
            upload(&[rows, k], &p),
            upload(&[rows, 1], &g),
            upload(&[rows, k], &dw),
        );
        let t_w = gpu.full(&[rows, k], f32::NAN).unwrap();
        let t_dp = gpu.full(&[rows, k], f32::NAN).unwrap();
        let t_dg = gpu.full(&[rows, 1], f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        edge_gate_forward(&mut rec, &t_p, &t_g, &t_w).unwrap();
        edge_gate_backward(&mut rec, &t_p, &t_g, &t_dw, &t_dp, &t_dg).unwrap();
        rec.submit_and_wait().unwrap();
        let (p64, g64, dw64) = (to_f64(&p), to_f64(&g), to_f64(&dw));
        let what = format!("edge gates [{rows}, {k}]");
        let w = edge_gate_reference(&p64, &g64);
        let (dp, dg) = edge_gate_backward_reference(&p64, &g64, &dw64);
        assert_close(&what, &download(&t_w), &to_f32(&w), 1e-6, 1e-6);
        assert_close(&what, &download(&t_dp), &to_f32(&dp), 1e-6, 1e-6);
        assert_close(&what, &download(&t_dg), &to_f32(&dg), 1e-5, 1e-5);
        // The references' gradients of sum(w * dw).
        let dot = |w: Vec<f64>| w.iter().zip(&dw64).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient(
            &what,
            &p64,
            &dp,
            |p| dot(edge_gate_reference(p, &g64)),
            1e-6,
            1e-6,
        );
        assert_gradient(
            &what,
            &g64,
            &dg,
            |g| dot(edge_gate_reference(&p64, g)),
            1e-6,
            1e-6,
        );
    }
    let mut rec = gpu.recorder();
    let (p, g) = (gpu.zeros(&[3, 2]).unwrap(), gpu.zeros(&[2, 1]).unwrap());
    let e = edge_gate_forward(&mut rec, &p, &g, &p).unwrap_err();
    assert!(e.to_string().contains("gates"), "{e}");
}

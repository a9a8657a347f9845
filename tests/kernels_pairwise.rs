//! Pairwise product and square on the GPU against their CPU references
//! (written and accumulated gradients), and the references' backward against
//! finite differences.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::pairwise::*;
use audionas::util::rng::Rng;

fn up(shape: &[usize], v: &[f64]) -> Tensor {
    Gpu::shared().upload(shape, &to_f32(v)).unwrap()
}

fn down(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

fn sum(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

#[test]
fn pairwise_matches_reference_on_awkward_shapes() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(1);
    let shapes: [&[usize]; 5] = [&[1], &[7], &[3, 5, 17], &[256], &[2, 65537]];
    for shape in shapes {
        let n: usize = shape.iter().product();
        let mut v = || to_f64(&rng.vec_uniform(n, -2.0, 2.0));
        let (a, b, g, old_a, old_b) = (v(), v(), v(), v(), v());
        let (ta, tb, tg) = (up(shape, &a), up(shape, &b), up(shape, &g));
        let nan = || gpu.full(shape, f32::NAN).unwrap();
        let (prod, da, db, sq, dx) = (nan(), nan(), nan(), nan(), nan());
        let (acc_a, acc_b, acc_x) = (up(shape, &old_a), up(shape, &old_b), up(shape, &old_a));
        let mut rec = gpu.recorder();
        product(&mut rec, &ta, &tb, &prod).unwrap();
        product_backward(&mut rec, &ta, &tb, &tg, &da, &db, false).unwrap();
        product_backward(&mut rec, &ta, &tb, &tg, &acc_a, &acc_b, true).unwrap();
        square(&mut rec, &ta, &sq).unwrap();
        square_backward(&mut rec, &ta, &tg, &dx, false).unwrap();
        square_backward(&mut rec, &ta, &tg, &acc_x, true).unwrap();
        rec.submit_and_wait().unwrap();

        let what = |name: &str| format!("{name} {shape:?}");
        let close = |name: &str, t: &Tensor, want: &[f64]| {
            assert_close(&what(name), &down(t), &to_f32(want), 1e-6, 1e-6)
        };
        let (da_ref, db_ref) = product_backward_reference(&a, &b, &g);
        let dx_ref = square_backward_reference(&a, &g);
        close("product", &prod, &product_reference(&a, &b));
        close("product da", &da, &da_ref);
        close("product db", &db, &db_ref);
        close("product da accumulated", &acc_a, &sum(&da_ref, &old_a));
        close("product db accumulated", &acc_b, &sum(&db_ref, &old_b));
        close("square", &sq, &square_reference(&a));
        close("square dx", &dx, &dx_ref);
        close("square dx accumulated", &acc_x, &sum(&dx_ref, &old_a));
    }
}

#[test]
fn pairwise_backward_references_match_finite_differences() {
    let mut rng = Rng::new(2);
    let mut v = || to_f64(&rng.vec_uniform(6, -2.0, 2.0));
    let (a, b, g) = (v(), v(), v());
    let dot = |u: &[f64]| u.iter().zip(&g).map(|(x, y)| x * y).sum::<f64>();
    let (da, db) = product_backward_reference(&a, &b, &g);
    assert_gradient(
        "da",
        &a,
        &da,
        |x| dot(&product_reference(x, &b)),
        1e-8,
        1e-6,
    );
    assert_gradient(
        "db",
        &b,
        &db,
        |x| dot(&product_reference(&a, x)),
        1e-8,
        1e-6,
    );
    let dx = square_backward_reference(&a, &g);
    assert_gradient("square", &a, &dx, |x| dot(&square_reference(x)), 1e-8, 1e-6);
}

#[test]
fn pairwise_rejects_mismatched_shapes() {
    let gpu = Gpu::shared();
    let a = gpu.zeros(&[3, 4]).unwrap();
    let b = gpu.zeros(&[4, 3]).unwrap();
    let err = product(&mut gpu.recorder(), &a, &b, &a).unwrap_err();
    assert!(err.to_string().contains("b has shape [4, 3]"), "{err}");
}

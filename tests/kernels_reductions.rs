//! Reductions on the GPU against their CPU references: sums over an axis for
//! every arrangement of outer / axis / inner sizes (including 1, primes, and
//! both launch strategies), and sums of squares / global norms over lists of
//! tensors spanning several dispatches.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::assert_close;
use audionas::kernels::reductions::*;
use audionas::util::rng::Rng;

fn upload(v: &[f32]) -> Tensor {
    Gpu::shared().upload(&[v.len()], v).unwrap()
}

#[test]
fn sum_axis_matches_reference() {
    let gpu = Gpu::shared();
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 1, 5),
        (1, 64, 12),   // batch sum of [64, 12]
        (1, 13, 1000), // batch sum, wide features
        (24, 97, 1),   // per-row sums: one workgroup per output
        (5, 300, 3),   // long axis, small inner
        (2, 257, 40),  // long axis, wide inner
        (1, 4099, 1),  // one long sum
        (600, 5, 1),   // many short sums
        (7, 2, 257),
    ];
    for (seed, &(outer, axis, inner)) in shapes.iter().enumerate() {
        let spec = AxisSum::new(outer, axis, inner).scale(if seed % 2 == 0 { 1.0 } else { 0.5 });
        let mut rng = Rng::new(seed as u64);
        let x = rng.vec_uniform(spec.in_len(), -1.0, 1.0);
        let tx = upload(&x);
        let out = gpu.full(&[spec.out_len()], f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        sum_axis(&mut rec, &spec, &tx, &out).unwrap();
        rec.submit_and_wait().unwrap();
        let tol = 1e-6 * (axis as f32).sqrt() * 4.0;
        assert_close(
            &format!("{spec:?}"),
            &gpu.download(&out).unwrap(),
            &sum_axis_reference(&spec, &x),
            tol,
            1e-5,
        );
    }
}

#[test]
fn sum_axis_of_an_empty_axis_is_zero() {
    let gpu = Gpu::shared();
    let spec = AxisSum::new(2, 0, 3);
    let x = gpu.zeros(&[0]).unwrap();
    let out = gpu.full(&[6], 1.0).unwrap();
    let mut rec = gpu.recorder();
    sum_axis(&mut rec, &spec, &x, &out).unwrap();
    rec.submit_and_wait().unwrap();
    assert_eq!(gpu.download(&out).unwrap(), vec![0.0; 6]);
}

fn squares_case(lens: &[usize], seed: u64) {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    let data: Vec<Vec<f32>> = lens
        .iter()
        .map(|&n| rng.vec_uniform(n, -1.0, 1.0))
        .collect();
    let tensors: Vec<Tensor> = data.iter().map(|d| upload(d)).collect();
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let plan = SquaresPlan::new(gpu, lens).unwrap();
    let squares = gpu.full(&[1], f32::NAN).unwrap();
    let norm = gpu.full(&[1], f32::NAN).unwrap();
    let mut rec = gpu.recorder();
    plan.sum_squares(&mut rec, &refs, &squares).unwrap();
    plan.global_norm(&mut rec, &refs, &norm).unwrap();
    rec.submit_and_wait().unwrap();
    let slices: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
    let what = format!("lens {lens:?}");
    assert_close(
        &format!("sum of squares, {what}"),
        &gpu.download(&squares).unwrap(),
        &[sum_squares_reference(&slices) as f32],
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("global norm, {what}"),
        &gpu.download(&norm).unwrap(),
        &[global_norm_reference(&slices) as f32],
        1e-6,
        1e-5,
    );
}

#[test]
fn sum_of_squares_and_global_norm_match_reference() {
    squares_case(&[1], 1);
    squares_case(&[5], 2);
    squares_case(&[100_003], 3);
    // Seven tensors fill one dispatch exactly; eight and more need two or three.
    squares_case(&[1, 2, 3, 4, 5, 6, 7], 4);
    squares_case(&[257, 1, 4096, 12, 64 * 12, 3, 1000, 33], 5);
    squares_case(&[3; 15], 6);
    squares_case(&[0, 4, 0], 7);
}

#[test]
fn sum_of_squares_of_no_tensors_is_zero() {
    let gpu = Gpu::shared();
    let plan = SquaresPlan::new(gpu, &[]).unwrap();
    let out = gpu.full(&[1], 1.0).unwrap();
    let mut rec = gpu.recorder();
    plan.global_norm(&mut rec, &[], &out).unwrap();
    rec.submit_and_wait().unwrap();
    assert_eq!(gpu.download(&out).unwrap(), vec![0.0]);
}

#[test]
fn launchers_name_the_mismatched_argument() {
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    let x = gpu.zeros(&[6]).unwrap();
    let out = gpu.zeros(&[4]).unwrap();
    let err = sum_axis(&mut rec, &AxisSum::new(2, 3, 1), &x, &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out has shape [4]"), "{err}");
    let plan = SquaresPlan::new(gpu, &[6, 4]).unwrap();
    let err = plan
        .global_norm(&mut rec, &[&x, &x], &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tensor 1 has shape [6]"), "{err}");
}

//! Dropout on the GPU against its CPU reference (the same mask, bit for bit),
//! the statistics of the mask (kept fraction, independence across seeds and
//! neighbours), the backward reference against finite differences, and
//! invalid probabilities.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f64};
use audionas::kernels::dropout::*;
use audionas::util::rng::Rng;

/// 1, primes, lengths just around 256 and 1024 (a workgroup and what it
/// covers), and a large one.
const LENGTHS: [usize; 10] = [1, 2, 7, 255, 256, 257, 1023, 1025, 4099, (1 << 20) + 3];

const MILLION: usize = 1 << 20;

fn upload(v: &[f32]) -> Tensor {
    Gpu::shared().upload(&[v.len()], v).unwrap()
}

fn download(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

/// `|count - n q| <= 5 sqrt(n q (1 - q))`: a binomial count near its mean.
#[track_caller]
fn assert_binomial(what: &str, count: usize, n: usize, q: f64) {
    let mean = n as f64 * q;
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    assert!(
        (count as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {count} of {n}, expected {mean:.0} +- {:.0} (5 sd)",
        5.0 * sd
    );
}

#[test]
fn forward_and_backward_equal_reference_exactly() {
    let gpu = Gpu::shared();
    for p in [0.0, 0.1, 0.5, 0.9] {
        for (i, &n) in LENGTHS.iter().enumerate() {
            let seed = 1000 + i as u32;
            let mut rng = Rng::new(i as u64);
            let x = rng.vec_uniform(n, -2.0, 2.0);
            let dy = rng.vec_uniform(n, -2.0, 2.0);
            let (tx, tdy) = (upload(&x), upload(&dy));
            let ty = gpu.full(&[n], f32::NAN).unwrap();
            let tdx = gpu.full(&[n], f32::NAN).unwrap();
            let mut rec = gpu.recorder();
            dropout_forward(&mut rec, p, seed, &tx, &ty).unwrap();
            dropout_backward(&mut rec, p, seed, &tdy, &tdx).unwrap();
            rec.submit_and_wait().unwrap();
            let what = format!("p={p} n={n}");
            let y = download(&ty);
            assert_close(
                &format!("forward {what}"),
                &y,
                &dropout_forward_reference(p, seed, &x),
                0.0,
                0.0,
            );
            let dx = download(&tdx);
            assert_close(
                &format!("backward {what}"),
                &dx,
                &dropout_backward_reference(p, seed, &dy),
                0.0,
                0.0,
            );
            // Forward and backward drop the same elements.
            let keep = dropout_keep_reference(n, p, seed);
            for (j, &k) in keep.iter().enumerate() {
                assert_eq!(y[j] != 0.0, k, "{what}: y[{j}] = {}", y[j]);
                assert_eq!(dx[j] != 0.0, k, "{what}: dx[{j}] = {}", dx[j]);
            }
        }
    }
}

#[test]
fn kept_fraction_is_one_minus_p_and_kept_values_are_scaled() {
    let gpu = Gpu::shared();
    let ones = gpu.full(&[MILLION], 1.0).unwrap();
    for (seed, p) in [(0, 0.01f32), (1, 0.1), (2, 0.3), (3, 0.5), (4, 0.9)] {
        let ty = gpu.zeros(&[MILLION]).unwrap();
        let mut rec = gpu.recorder();
        dropout_forward(&mut rec, p, seed, &ones, &ty).unwrap();
        rec.submit_and_wait().unwrap();
        let y = download(&ty);
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        assert_binomial(&format!("kept at p={p}"), kept, MILLION, 1.0 - p as f64);
        let scale = 1.0 / (1.0 - p);
        assert!(y.iter().all(|&v| v == 0.0 || v == scale), "p={p}");
        // The sum is kept in expectation: E[y] = 1.
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / MILLION as f64;
        let sd = (p as f64 / (1.0 - p as f64) / MILLION as f64).sqrt();
        assert!((mean - 1.0).abs() <= 5.0 * sd, "p={p}: mean {mean}");
    }
}

#[test]
fn masks_are_independent_across_seeds_and_neighbours() {
    let n = MILLION;
    let p = 0.5;
    let seeds = [0u32, 1, 2, 3, 0x8000_0000, u32::MAX];
    let masks: Vec<Vec<bool>> = seeds
        .iter()
        .map(|&s| dropout_keep_reference(n, p, s))
        .collect();
    // Two independent masks disagree on a fraction 2 p (1 - p) of elements.
    for a in 0..seeds.len() {
        for b in a + 1..seeds.len() {
            let differ = masks[a]
                .iter()
                .zip(&masks[b])
                .filter(|(x, y)| x != y)
                .count();
            let what = format!("seeds {} and {}", seeds[a], seeds[b]);
            assert_binomial(&what, differ, n, 2.0 * p as f64 * (1.0 - p as f64));
        }
    }
    // Neighbours, and elements a workgroup or a row of 1024 apart, agree as
    // often as independent draws do: p^2 + (1 - p)^2.
    for p in [0.1f32, 0.5] {
        let keep = dropout_keep_reference(n, p, 7);
        let q = (p * p + (1.0 - p) * (1.0 - p)) as f64;
        for gap in [1, 2, 256, 1024] {
            let agree = (0..n - gap).filter(|&i| keep[i] == keep[i + gap]).count();
            assert_binomial(&format!("p={p} gap {gap}"), agree, n - gap, q);
        }
    }
}

#[test]
fn the_mask_is_a_function_of_seed_and_index_only() {
    // The first 300 elements of a long tensor are dropped as in a short one.
    let long = dropout_keep_reference(5000, 0.3, 42);
    assert_eq!(long[..300], dropout_keep_reference(300, 0.3, 42));
    assert_ne!(long, dropout_keep_reference(5000, 0.3, 43));
    assert!(dropout_keep_reference(5000, 0.0, 42).iter().all(|&k| k));
}

#[test]
fn backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(17);
    let x = to_f64(&rng.vec_uniform(64, -1.0, 1.0));
    let dy = rng.vec_uniform(64, -1.0, 1.0);
    for (p, seed) in [(0.0, 3), (0.25, 5), (0.7, 9)] {
        let analytic = to_f64(&dropout_backward_reference(p, seed, &dy));
        let loss = |x: &[f64]| {
            dropout_forward_reference(p, seed, x)
                .iter()
                .zip(&dy)
                .map(|(y, &g)| y * g as f64)
                .sum()
        };
        assert_gradient(&format!("p={p}"), &x, &analytic, loss, 1e-7, 1e-5);
    }
}

#[test]
fn invalid_probabilities_and_lengths_are_errors() {
    let gpu = Gpu::shared();
    let x = gpu.zeros(&[8]).unwrap();
    let y = gpu.zeros(&[8]).unwrap();
    let mut rec = gpu.recorder();
    for p in [-0.1, 1.0, 1.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let err = dropout_forward(&mut rec, p, 0, &x, &y)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside [0, 1)"), "{err}");
        assert!(err.contains("dropout_forward"), "{err}");
        let err = dropout_backward(&mut rec, p, 0, &x, &y)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dropout_backward"), "{err}");
    }
    let short = gpu.zeros(&[7]).unwrap();
    let err = dropout_backward(&mut rec, 0.5, 0, &x, &short)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dx has shape [7]"), "{err}");
    let err = dropout_forward(&mut rec, 0.5, 0, &x, &x)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x and y are the same buffer"), "{err}");
    assert_eq!(rec.dispatch_count(), 0);
}

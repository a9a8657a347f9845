//! Softmax cross-entropy on the GPU against its CPU reference (loss, gradient,
//! correct count, mean) over class counts from 1 through primes to 1000, both
//! launch strategies, label smoothing and huge logits; and the reference
//! gradient against finite differences of the reference's mean loss.

use audionas::gpu::Gpu;
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::softmax_xent::*;
use audionas::util::rng::Rng;

fn case(spec: SoftmaxXent, offset: f32, seed: u64) {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    let mut logits = rng.vec_uniform(spec.logits_len(), -4.0 + offset, 4.0 + offset);
    let labels: Vec<u32> = (0..spec.batch)
        .map(|_| rng.below(spec.classes) as u32)
        .collect();
    // Make about half the samples right, so the count is neither 0 nor all.
    for (row, &label) in labels.iter().enumerate().filter(|(r, _)| r % 2 == 0) {
        logits[row * spec.classes + label as usize] = 9.0 + offset;
    }
    let want = softmax_cross_entropy_reference(&spec, &to_f64(&logits), &labels);

    let t_logits = gpu.upload(&[spec.batch, spec.classes], &logits).unwrap();
    let t_labels = gpu.upload_u32(&[spec.batch], &labels).unwrap();
    let loss = gpu.full(&[spec.batch], f32::NAN).unwrap();
    let grad = gpu.full(&[spec.batch, spec.classes], f32::NAN).unwrap();
    let correct = gpu.upload_u32(&[1], &[12345]).unwrap();
    let mean = gpu.full(&[1], f32::NAN).unwrap();
    let mut rec = gpu.recorder();
    let out = XentOutputs {
        loss: &loss,
        grad: &grad,
        correct: &correct,
        mean_loss: Some(&mean),
    };
    softmax_cross_entropy(&mut rec, &spec, &t_logits, &t_labels, &out).unwrap();
    rec.submit_and_wait().unwrap();

    let what = format!("{spec:?} offset {offset}");
    assert_close(
        &format!("{what} loss"),
        &gpu.download(&loss).unwrap(),
        &to_f32(&want.loss),
        2e-5,
        1e-5,
    );
    assert_close(
        &format!("{what} grad"),
        &gpu.download(&grad).unwrap(),
        &to_f32(&want.grad),
        1e-7,
        1e-5,
    );
    assert_close(
        &format!("{what} mean"),
        &gpu.download(&mean).unwrap(),
        &[want.mean_loss as f32],
        2e-5,
        1e-5,
    );
    assert_eq!(
        gpu.download_u32(&correct).unwrap(),
        vec![want.correct],
        "{what} correct"
    );
    if spec.classes > 1 && spec.batch > 1 {
        assert!(
            want.correct > 0 && (want.correct as usize) < spec.batch,
            "{what}: count not exercised"
        );
    }
}

#[test]
fn matches_reference_on_awkward_class_counts() {
    let shapes = [
        (1, 1),
        (3, 1),
        (1, 2),
        (5, 7),
        (64, 12),
        (4, 31),
        (3, 32),
        (3, 33),
        (2, 97),
        (65, 3),
        (5, 1000),
    ];
    for (seed, &(batch, classes)) in shapes.iter().enumerate() {
        case(SoftmaxXent::new(batch, classes), 0.0, seed as u64);
        case(
            SoftmaxXent::new(batch, classes).label_smoothing(0.1),
            0.0,
            100 + seed as u64,
        );
    }
}

#[test]
fn huge_logits_stay_finite() {
    case(SoftmaxXent::new(6, 12), 1.0e4, 1);
    case(SoftmaxXent::new(3, 300), -1.0e4, 2);
}

#[test]
fn reference_gradient_matches_finite_differences() {
    for (spec, seed) in [
        (SoftmaxXent::new(3, 5), 1),
        (SoftmaxXent::new(2, 4).label_smoothing(0.2), 2),
        (SoftmaxXent::new(2, 1), 3),
    ] {
        let mut rng = Rng::new(seed);
        let logits = to_f64(&rng.vec_uniform(spec.logits_len(), -2.0, 2.0));
        let labels: Vec<u32> = (0..spec.batch)
            .map(|_| rng.below(spec.classes) as u32)
            .collect();
        let analytic = softmax_cross_entropy_reference(&spec, &logits, &labels).grad;
        let loss = |z: &[f64]| softmax_cross_entropy_reference(&spec, z, &labels).mean_loss;
        assert_gradient(&format!("{spec:?}"), &logits, &analytic, loss, 1e-8, 1e-6);
    }
}

#[test]
fn a_label_out_of_range_gives_a_nan_loss() {
    let gpu = Gpu::shared();
    for classes in [3, 40] {
        let spec = SoftmaxXent::new(2, classes);
        let logits = gpu.zeros(&[2, classes]).unwrap();
        let labels = gpu.upload_u32(&[2], &[0, classes as u32]).unwrap();
        let loss = gpu.zeros(&[2]).unwrap();
        let grad = gpu.zeros(&[2, classes]).unwrap();
        let correct = gpu.zeros(&[1]).unwrap();
        let mean = gpu.zeros(&[1]).unwrap();
        let mut rec = gpu.recorder();
        let out = XentOutputs {
            loss: &loss,
            grad: &grad,
            correct: &correct,
            mean_loss: Some(&mean),
        };
        softmax_cross_entropy(&mut rec, &spec, &logits, &labels, &out).unwrap();
        rec.submit_and_wait().unwrap();
        let l = gpu.download(&loss).unwrap();
        assert!(
            l[0].is_finite() && l[1].is_nan(),
            "classes {classes}: {l:?}"
        );
        assert!(gpu.download(&mean).unwrap()[0].is_nan());
        assert_eq!(gpu.download_u32(&correct).unwrap(), vec![1]);
    }
}

#[test]
fn rejects_mismatched_shapes() {
    let gpu = Gpu::shared();
    let spec = SoftmaxXent::new(2, 3);
    let logits = gpu.zeros(&[2, 3]).unwrap();
    let labels = gpu.zeros(&[2]).unwrap();
    let grad = gpu.zeros(&[2, 4]).unwrap();
    let one = gpu.zeros(&[1]).unwrap();
    let out = XentOutputs {
        loss: &labels,
        grad: &grad,
        correct: &one,
        mean_loss: None,
    };
    let err = softmax_cross_entropy(&mut gpu.recorder(), &spec, &logits, &labels, &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("grad has shape [2, 4]"), "{err}");
}

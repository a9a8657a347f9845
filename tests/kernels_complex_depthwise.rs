//! The complex depthwise conv2d kernels on the GPU against their CPU
//! references (the complex conv2d's with groups = channels) on awkward
//! shapes, and the references' backward against finite differences in f64.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::complex_depthwise::*;
use audionas::kernels::conv2d::Conv2d;
use audionas::nn::same_padding;
use audionas::util::rng::Rng;

fn up(shape: &[usize], v: &[f64]) -> Tensor {
    Gpu::shared().upload(shape, &to_f32(v)).unwrap()
}

fn nan(shape: &[usize]) -> Tensor {
    Gpu::shared().full(shape, f32::NAN).unwrap()
}

fn down(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

fn random(rng: &mut Rng, n: usize) -> Vec<f64> {
    to_f64(&rng.vec_uniform(n, -1.0, 1.0))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn pair(s: [usize; 4]) -> Vec<usize> {
    vec![s[0], s[1], s[2], s[3], 2]
}

/// A depthwise geometry: `batch` images of `channels` complex channels.
fn depthwise(batch: usize, channels: usize, input: [usize; 2], kernel: [usize; 2]) -> Conv2d {
    Conv2d::new(batch, channels, channels, input, kernel).groups(channels)
}

/// TensorFlow's "same" padding on both axes.
fn same(spec: Conv2d) -> Conv2d {
    spec.padding_split(
        same_padding(spec.in_h, spec.kernel_h, spec.stride_h, spec.dilation_h),
        same_padding(spec.in_w, spec.kernel_w, spec.stride_w, spec.dilation_w),
    )
}

/// Runs forward and both backward kernels on random values, with or
/// without the bias, and compares each with the reference.
fn check_against_reference(spec: Conv2d, with_bias: bool, rng: &mut Rng) {
    let gpu = Gpu::shared();
    let channels = spec.in_channels;
    let x = random(rng, 2 * spec.input_len());
    let w = random(rng, 2 * spec.weight_len());
    let bias = random(rng, 2 * channels);
    let dy = random(rng, 2 * spec.output_len());
    let tx = up(&pair(spec.input_shape()), &x);
    let tw = up(&pair(spec.weight_shape()), &w);
    let tb = up(&[channels, 2], &bias);
    let tdy = up(&pair(spec.output_shape()), &dy);
    let (y, dx, dw, db) = (
        nan(&pair(spec.output_shape())),
        nan(&pair(spec.input_shape())),
        nan(&pair(spec.weight_shape())),
        nan(&[channels, 2]),
    );
    let b = with_bias.then_some(&tb);
    let mut rec = gpu.recorder();
    complex_depthwise_forward(&mut rec, &spec, &tx, &tw, b, &y).unwrap();
    complex_depthwise_backward_input(&mut rec, &spec, &tdy, &tw, &dx).unwrap();
    let db_out = with_bias.then_some(&db);
    complex_depthwise_backward_weight(&mut rec, &spec, &tdy, &tx, &dw, db_out).unwrap();
    rec.submit_and_wait().unwrap();

    let bias_ref = with_bias.then_some(&bias[..]);
    let want_y = complex_depthwise_forward_reference(&spec, &x, &w, bias_ref);
    let (want_dx, want_dw, want_db) = complex_depthwise_backward_reference(&spec, &x, &w, &dy);
    let what = |name: &str| format!("{name} bias={with_bias} {spec:?}");
    assert_close(&what("y"), &down(&y), &to_f32(&want_y), 1e-5, 1e-4);
    assert_close(&what("dx"), &down(&dx), &to_f32(&want_dx), 1e-5, 1e-4);
    // The weight and bias gradients sum batch x output positions terms.
    let terms = (spec.batch * spec.out_h() * spec.out_w()) as f32;
    let atol = 1e-5 * terms.sqrt().max(1.0);
    assert_close(&what("dw"), &down(&dw), &to_f32(&want_dw), atol, 1e-4);
    if with_bias {
        assert_close(&what("db"), &down(&db), &to_f32(&want_db), atol, 1e-4);
    }
}

#[test]
fn complex_depthwise_matches_reference() {
    let mut rng = Rng::new(11);
    let cases = [
        // The smallest: one image, one channel, one tap.
        (depthwise(1, 1, [1, 1], [1, 1]), true),
        // 3x3 same on prime sizes, output planes over the 64 lanes.
        (same(depthwise(3, 5, [13, 7], [3, 3])), true),
        (same(depthwise(1, 7, [11, 17], [3, 3])), false),
        // 5x5 (25 taps: three chunks of taps), stride 2, same.
        (same(depthwise(3, 5, [11, 17], [5, 5]).stride(2, 2)), true),
        (same(depthwise(1, 1, [7, 5], [5, 5])), false),
        // 7x1 and 1x7 with dilation 2, valid and same.
        (depthwise(3, 5, [17, 11], [7, 1]).dilation(2, 1), true),
        (
            same(depthwise(3, 7, [7, 23], [1, 7]).stride(1, 2).dilation(1, 2)),
            false,
        ),
        (same(depthwise(1, 7, [23, 3], [7, 1]).stride(2, 1)), true),
        (depthwise(3, 1, [5, 19], [1, 7]), true),
        // Stride 2 with dilation 2, valid.
        (
            depthwise(1, 5, [9, 13], [3, 3]).stride(2, 2).dilation(2, 2),
            true,
        ),
        // Output planes smaller than the lanes: each lane steps across images.
        (same(depthwise(5, 3, [5, 3], [3, 3])), true),
        (depthwise(3, 7, [3, 3], [3, 3]), false),
        // Explicit, uneven padding.
        (
            depthwise(3, 5, [6, 5], [3, 2]).padding_split([2, 0], [0, 3]),
            true,
        ),
    ];
    for (spec, with_bias) in cases {
        check_against_reference(spec, with_bias, &mut rng);
    }
}

/// The references of both backward passes (input, and weights with the
/// bias) against central differences of `sum(y * g)` in f64, each real and
/// imaginary part perturbed alone.
#[test]
fn complex_depthwise_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(12);
    for spec in [
        depthwise(2, 3, [5, 6], [3, 2])
            .stride(2, 1)
            .dilation(1, 2)
            .padding_split([1, 1], [1, 2]),
        same(depthwise(1, 2, [4, 5], [3, 3])),
    ] {
        let x = random(&mut rng, 2 * spec.input_len());
        let w = random(&mut rng, 2 * spec.weight_len());
        let b = random(&mut rng, 2 * spec.out_channels);
        let g = random(&mut rng, 2 * spec.output_len());
        let (dx, dw, db) = complex_depthwise_backward_reference(&spec, &x, &w, &g);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            dot(
                &complex_depthwise_forward_reference(&spec, x, w, Some(b)),
                &g,
            )
        };
        let what = |name: &str| format!("{name} {spec:?}");
        assert_gradient(&what("dx"), &x, &dx, |v| loss(v, &w, &b), 1e-8, 1e-6);
        assert_gradient(&what("dw"), &w, &dw, |v| loss(&x, v, &b), 1e-8, 1e-6);
        assert_gradient(&what("db"), &b, &db, |v| loss(&x, &w, v), 1e-8, 1e-6);
    }
}

/// One geometry at several batches: the launches take the batch from the
/// spec, and the weight gradient sums over all of its images (none: zeros).
#[test]
fn complex_depthwise_takes_any_batch_size() {
    let mut rng = Rng::new(13);
    let geometry = same(depthwise(1, 3, [7, 5], [3, 3]));
    for batch in [4, 1, 0, 2] {
        check_against_reference(Conv2d { batch, ..geometry }, true, &mut rng);
    }
}

#[test]
fn complex_depthwise_rejects_other_geometries() {
    let gpu = Gpu::shared();
    let spec = Conv2d::new(1, 2, 4, [3, 3], [3, 3]).groups(2);
    let x = gpu.zeros(&pair(spec.input_shape())).unwrap();
    let w = gpu.zeros(&pair(spec.weight_shape())).unwrap();
    let y = gpu.zeros(&pair(spec.output_shape())).unwrap();
    let err = complex_depthwise_forward(&mut gpu.recorder(), &spec, &x, &w, None, &y).unwrap_err();
    assert!(err.to_string().contains("not depthwise"), "{err}");
    let spec = depthwise(1, 2, [3, 3], [3, 3]);
    let real_x = gpu.zeros(&spec.input_shape()).unwrap();
    let w = gpu.zeros(&pair(spec.weight_shape())).unwrap();
    let y = gpu.zeros(&pair(spec.output_shape())).unwrap();
    let err =
        complex_depthwise_forward(&mut gpu.recorder(), &spec, &real_x, &w, None, &y).unwrap_err();
    assert!(err.to_string().contains("x has shape"), "{err}");
}

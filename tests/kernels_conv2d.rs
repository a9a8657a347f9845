//! conv2d on the GPU against its CPU reference (forward, backward to input,
//! weights and bias) over awkward geometries, and the references' backward
//! against finite differences of their forward.

use audionas::gpu::Gpu;
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::conv2d::{
    conv2d_backward_bias_reference, conv2d_backward_input, conv2d_backward_input_reference,
    conv2d_backward_weight, conv2d_backward_weight_reference, conv2d_forward,
    conv2d_forward_reference, Conv2d,
};
use audionas::util::rng::Rng;

/// Geometries at and past every tile edge: size 1, primes, stride larger
/// than the kernel, asymmetric padding, dilation, groups, depthwise, conv1d.
fn awkward() -> Vec<Conv2d> {
    vec![
        Conv2d::new(1, 1, 1, [1, 1], [1, 1]),
        Conv2d::new(2, 3, 5, [7, 6], [3, 3]).padding(1, 1),
        Conv2d::new(3, 2, 9, [11, 13], [5, 3])
            .stride(2, 2)
            .padding(2, 1),
        Conv2d::new(2, 3, 4, [9, 10], [3, 2])
            .dilation(2, 3)
            .padding(2, 3),
        Conv2d::new(2, 4, 6, [8, 9], [3, 3]).groups(2).stride(1, 2),
        Conv2d::new(3, 5, 5, [7, 5], [3, 3])
            .groups(5)
            .padding(1, 1)
            .stride(2, 2),
        Conv2d::new(2, 4, 4, [9, 8], [3, 3])
            .groups(4)
            .dilation(2, 2)
            .padding(2, 2),
        // Depthwise with a channel multiplier goes through the dense kernels.
        Conv2d::new(2, 3, 6, [6, 7], [3, 3]).groups(3).padding(1, 0),
        // conv1d over time: one frequency bin.
        Conv2d::new(2, 4, 7, [23, 1], [5, 1])
            .stride(2, 1)
            .padding(2, 0),
        Conv2d::new(2, 1, 10, [30, 12], [20, 8]),
        Conv2d::new(2, 13, 17, [5, 5], [1, 1]),
        Conv2d::new(2, 3, 17, [19, 17], [3, 3]).padding(1, 1),
        Conv2d::new(2, 2, 3, [10, 11], [2, 2]).stride(3, 3),
        // Uneven batch splits of backward_weight (7 images in splits of 2).
        Conv2d::new(7, 43, 86, [5, 4], [3, 3]).groups(43),
        // TensorFlow "same" padding with an odd total: one more after than before.
        Conv2d::new(2, 1, 6, [13, 10], [10, 4])
            .stride(2, 2)
            .padding_split([4, 5], [1, 1]),
        Conv2d::new(2, 5, 5, [7, 6], [3, 2])
            .groups(5)
            .stride(2, 1)
            .padding_split([0, 2], [1, 0]),
        // Depthwise over planes of more positions than a workgroup has lanes,
        // rows not dividing the lane count.
        Conv2d::new(2, 3, 3, [25, 13], [3, 3])
            .groups(3)
            .padding(1, 1),
        Conv2d::new(2, 2, 2, [31, 9], [3, 3])
            .groups(2)
            .stride(2, 1)
            .padding(0, 1),
        // Depthwise rows of several runs (the kernels take up to 8 elements
        // of a row per invocation), with a width stride and dilation.
        Conv2d::new(2, 3, 3, [6, 23], [2, 3])
            .groups(3)
            .stride(1, 2)
            .dilation(1, 2)
            .padding_split([1, 0], [0, 3]),
        Conv2d::new(1, 2, 2, [4, 17], [3, 5])
            .groups(2)
            .padding(1, 2),
        // Depthwise backward_weight takes 9 taps per workgroup: 25 taps are
        // three chunks, the last with 7 idle slots.
        Conv2d::new(2, 3, 3, [12, 11], [5, 5])
            .groups(3)
            .dilation(2, 1)
            .padding(4, 2),
    ]
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.vec_uniform(n, -1.0, 1.0)
}

fn check_against_reference(spec: &Conv2d, seed: u64) {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    let x = random(&mut rng, spec.input_len());
    let w = random(&mut rng, spec.weight_len());
    let b = random(&mut rng, spec.out_channels);
    let dy = random(&mut rng, spec.output_len());
    let (x64, w64, b64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&dy));

    let tx = gpu.upload(&spec.input_shape(), &x).unwrap();
    let tw = gpu.upload(&spec.weight_shape(), &w).unwrap();
    let tb = gpu.upload(&[spec.out_channels], &b).unwrap();
    let tdy = gpu.upload(&spec.output_shape(), &dy).unwrap();
    let ty = gpu.full(&spec.output_shape(), f32::NAN).unwrap();
    let ty_plain = gpu.full(&spec.output_shape(), f32::NAN).unwrap();
    let tdx = gpu.full(&spec.input_shape(), f32::NAN).unwrap();
    let tdw = gpu.full(&spec.weight_shape(), f32::NAN).unwrap();
    let tdb = gpu.full(&[spec.out_channels], f32::NAN).unwrap();
    let mut rec = gpu.recorder();
    conv2d_forward(&mut rec, spec, &tx, &tw, Some(&tb), &ty).unwrap();
    conv2d_forward(&mut rec, spec, &tx, &tw, None, &ty_plain).unwrap();
    conv2d_backward_input(&mut rec, spec, &tdy, &tw, &tdx).unwrap();
    conv2d_backward_weight(&mut rec, spec, &tdy, &tx, &tdw, Some(&tdb)).unwrap();
    rec.submit().unwrap();

    let (_, _, k) = spec.gemm_shape();
    let atol = 1e-5 * (k as f32).sqrt().max(1.0);
    let what = |part: &str| format!("{part} {spec:?}");
    assert_close(
        &what("forward"),
        &gpu.download(&ty).unwrap(),
        &to_f32(&conv2d_forward_reference(spec, &x64, &w64, Some(&b64))),
        atol,
        1e-4,
    );
    assert_close(
        &what("forward without bias"),
        &gpu.download(&ty_plain).unwrap(),
        &to_f32(&conv2d_forward_reference(spec, &x64, &w64, None)),
        atol,
        1e-4,
    );
    let in_terms = spec.out_channels * spec.kernel_h * spec.kernel_w;
    assert_close(
        &what("backward_input"),
        &gpu.download(&tdx).unwrap(),
        &to_f32(&conv2d_backward_input_reference(spec, &dy64, &w64)),
        1e-5 * (in_terms as f32).sqrt(),
        1e-4,
    );
    let w_terms = spec.batch * spec.out_h() * spec.out_w();
    assert_close(
        &what("backward_weight"),
        &gpu.download(&tdw).unwrap(),
        &to_f32(&conv2d_backward_weight_reference(spec, &dy64, &x64)),
        1e-5 * (w_terms as f32).sqrt().max(1.0),
        1e-4,
    );
    assert_close(
        &what("backward_bias"),
        &gpu.download(&tdb).unwrap(),
        &to_f32(&conv2d_backward_bias_reference(spec, &dy64)),
        1e-5 * (w_terms as f32).sqrt().max(1.0),
        1e-4,
    );
}

#[test]
fn conv2d_matches_reference_on_awkward_geometries() {
    for (i, spec) in awkward().iter().enumerate() {
        check_against_reference(spec, 100 + i as u64);
    }
}

#[test]
fn conv2d_matches_reference_past_the_wide_workgroup() {
    // More than 256 output positions and channel counts past a multiple of 8.
    check_against_reference(
        &Conv2d::new(2, 9, 11, [23, 19], [3, 4])
            .padding(1, 2)
            .dilation(1, 2),
        7,
    );
}

/// Central differences of `sum(r * conv(x, w, b))` against the backward
/// references, for x, w and b.
fn check_gradients(spec: &Conv2d, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = to_f64(&random(&mut rng, spec.input_len()));
    let w = to_f64(&random(&mut rng, spec.weight_len()));
    let b = to_f64(&random(&mut rng, spec.out_channels));
    let r = to_f64(&random(&mut rng, spec.output_len()));
    let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
    let what = |part: &str| format!("{part} {spec:?}");
    assert_gradient(
        &what("d/dx"),
        &x,
        &conv2d_backward_input_reference(spec, &r, &w),
        |x| loss(conv2d_forward_reference(spec, x, &w, Some(&b))),
        1e-6,
        1e-6,
    );
    assert_gradient(
        &what("d/dw"),
        &w,
        &conv2d_backward_weight_reference(spec, &r, &x),
        |w| loss(conv2d_forward_reference(spec, &x, w, Some(&b))),
        1e-6,
        1e-6,
    );
    assert_gradient(
        &what("d/dbias"),
        &b,
        &conv2d_backward_bias_reference(spec, &r),
        |b| loss(conv2d_forward_reference(spec, &x, &w, Some(b))),
        1e-6,
        1e-6,
    );
}

#[test]
fn conv2d_backward_references_match_finite_differences() {
    let specs = [
        Conv2d::new(2, 2, 3, [5, 6], [3, 2])
            .stride(2, 1)
            .padding(1, 1),
        Conv2d::new(1, 2, 2, [6, 5], [2, 3])
            .dilation(2, 2)
            .padding(1, 2),
        Conv2d::new(2, 4, 2, [4, 5], [3, 3]).groups(2).padding(1, 0),
        Conv2d::new(2, 3, 3, [5, 4], [3, 3])
            .groups(3)
            .stride(2, 2)
            .padding(1, 1),
        Conv2d::new(2, 2, 3, [7, 1], [3, 1]).padding(1, 0),
        Conv2d::new(2, 1, 3, [7, 5], [4, 2])
            .stride(2, 2)
            .padding_split([1, 2], [0, 1]),
    ];
    for (i, spec) in specs.iter().enumerate() {
        check_gradients(spec, 200 + i as u64);
    }
}

#[test]
fn conv2d_reference_known_values() {
    // A 2x2 kernel of ones over a 3x3 ramp: each output is a 2x2 window sum.
    let spec = Conv2d::new(1, 1, 1, [3, 3], [2, 2]);
    let x: Vec<f64> = (0..9).map(f64::from).collect();
    let y = conv2d_forward_reference(&spec, &x, &[1.0; 4], Some(&[0.5]));
    assert_eq!(y, vec![8.5, 12.5, 20.5, 24.5]);
    assert_eq!(spec.flops(), 2.0 * 4.0 * 4.0);
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let gpu = Gpu::shared();
    let spec = Conv2d::new(1, 4, 6, [5, 5], [3, 3]).groups(2);
    let x = gpu.zeros(&spec.input_shape()).unwrap();
    let w = gpu.zeros(&[6, 4, 3, 3]).unwrap();
    let y = gpu.zeros(&spec.output_shape()).unwrap();
    let err = conv2d_forward(&mut gpu.recorder(), &spec, &x, &w, None, &y).unwrap_err();
    assert!(
        err.to_string().contains("w has shape [6, 4, 3, 3]"),
        "{err}"
    );

    let bad_groups = Conv2d::new(1, 4, 6, [5, 5], [3, 3]).groups(3);
    let err = conv2d_forward(&mut gpu.recorder(), &bad_groups, &x, &w, None, &y).unwrap_err();
    assert!(err.to_string().contains("groups (3) must divide"), "{err}");

    let too_big = Conv2d::new(1, 4, 6, [2, 5], [3, 3]);
    assert!(too_big.validate().is_err());
    assert!(too_big.padding(1, 0).validate().is_ok());
}

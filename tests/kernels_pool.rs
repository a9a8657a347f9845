//! Pooling on the GPU against its CPU reference (max with arg-max, average
//! with and without padding in the divisor, global average; forward and
//! backward), the same on complex pairs (max by magnitude), and the
//! references' backward against finite differences.

use audionas::gpu::Gpu;
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::pool::{
    avg_pool2d_backward, avg_pool2d_backward_reference, avg_pool2d_forward, avg_pool2d_reference,
    complex_global_avg_pool_backward, complex_global_avg_pool_forward, global_avg_pool_backward,
    global_avg_pool_backward_reference, global_avg_pool_forward, global_avg_pool_reference,
    max_pool2d_backward, max_pool2d_backward_reference, max_pool2d_forward,
    max_pool2d_magnitude_reference, max_pool2d_reference, Pool2d,
};
use audionas::util::rng::Rng;

fn awkward() -> Vec<Pool2d> {
    vec![
        Pool2d::new(1, 1, [1, 1], [1, 1]),
        // cnn-trad-fpool3: 1x3 over frequency.
        Pool2d::new(2, 3, [7, 33], [1, 3]),
        // The DARTS 3x3 pools: stride 1 and 2, padding 1, overlapping windows.
        Pool2d::new(2, 3, [7, 5], [3, 3]).stride(1, 1).padding(1, 1),
        Pool2d::new(3, 2, [9, 8], [3, 3])
            .stride(2, 2)
            .padding(1, 1)
            .count_include_pad(false),
        Pool2d::new(2, 5, [11, 13], [2, 3]).stride(3, 2),
        Pool2d::new(1, 7, [13, 1], [4, 1])
            .stride(2, 1)
            .padding(2, 0),
        Pool2d::new(2, 3, [10, 9], [5, 4])
            .stride(2, 3)
            .padding(2, 1)
            .count_include_pad(false),
    ]
}

fn check_against_reference(spec: &Pool2d, seed: u64) {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    let x = rng.vec_uniform(spec.input_len(), -1.0, 1.0);
    let dy = rng.vec_uniform(spec.output_len(), -1.0, 1.0);
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));

    let tx = gpu.upload(&spec.input_shape(), &x).unwrap();
    let tdy = gpu.upload(&spec.output_shape(), &dy).unwrap();
    let tmax = gpu.full(&spec.output_shape(), f32::NAN).unwrap();
    let targ = gpu.upload_u32(&spec.output_shape(), &vec![u32::MAX; spec.output_len()]);
    let targ = targ.unwrap();
    let tavg = gpu.full(&spec.output_shape(), f32::NAN).unwrap();
    let tdx_max = gpu.full(&spec.input_shape(), f32::NAN).unwrap();
    let tdx_avg = gpu.full(&spec.input_shape(), f32::NAN).unwrap();
    let mut rec = gpu.recorder();
    max_pool2d_forward(&mut rec, spec, &tx, &tmax, &targ).unwrap();
    max_pool2d_backward(&mut rec, spec, &tdy, &targ, &tdx_max).unwrap();
    avg_pool2d_forward(&mut rec, spec, &tx, &tavg).unwrap();
    avg_pool2d_backward(&mut rec, spec, &tdy, &tdx_avg).unwrap();
    rec.submit().unwrap();

    let what = |part: &str| format!("{part} {spec:?}");
    let (want_max, want_arg) = max_pool2d_reference(spec, &x64);
    assert_close(
        &what("max"),
        &gpu.download(&tmax).unwrap(),
        &to_f32(&want_max),
        0.0,
        0.0,
    );
    assert_eq!(
        gpu.download_u32(&targ).unwrap(),
        want_arg,
        "{}",
        what("argmax")
    );
    assert_close(
        &what("max backward"),
        &gpu.download(&tdx_max).unwrap(),
        &to_f32(&max_pool2d_backward_reference(spec, &dy64, &want_arg)),
        1e-6,
        1e-6,
    );
    assert_close(
        &what("avg"),
        &gpu.download(&tavg).unwrap(),
        &to_f32(&avg_pool2d_reference(spec, &x64)),
        1e-6,
        1e-5,
    );
    assert_close(
        &what("avg backward"),
        &gpu.download(&tdx_avg).unwrap(),
        &to_f32(&avg_pool2d_backward_reference(spec, &dy64)),
        1e-6,
        1e-5,
    );
}

#[test]
fn pool_matches_reference_on_awkward_geometries() {
    for (i, spec) in awkward().iter().enumerate() {
        check_against_reference(spec, 300 + i as u64);
    }
}

#[test]
fn global_avg_pool_matches_reference() {
    let gpu = Gpu::shared();
    for (i, shape) in [[1, 1, 1, 1], [2, 3, 7, 5], [3, 2, 17, 13], [2, 65, 1, 3]]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(i as u64);
        let len: usize = shape.iter().product();
        let plane = shape[2] * shape[3];
        let planes = shape[0] * shape[1];
        let x = rng.vec_uniform(len, -1.0, 1.0);
        let dy = rng.vec_uniform(planes, -1.0, 1.0);
        let tx = gpu.upload(shape, &x).unwrap();
        let tdy = gpu.upload(&[shape[0], shape[1]], &dy).unwrap();
        let ty = gpu.full(&[shape[0], shape[1]], f32::NAN).unwrap();
        let tdx = gpu.full(shape, f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        global_avg_pool_forward(&mut rec, &tx, &ty).unwrap();
        global_avg_pool_backward(&mut rec, &tdy, &tdx).unwrap();
        rec.submit().unwrap();
        let what = format!("global average pooling {shape:?}");
        assert_close(
            &what,
            &gpu.download(&ty).unwrap(),
            &to_f32(&global_avg_pool_reference(&to_f64(&x), plane)),
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("{what} backward"),
            &gpu.download(&tdx).unwrap(),
            &to_f32(&global_avg_pool_backward_reference(&to_f64(&dy), plane)),
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn max_pool_ties_route_to_the_first_maximum() {
    let gpu = Gpu::shared();
    // Overlapping 2x2 windows with stride 1 on a plane of equal values: every
    // window picks its top-left cell, so interior cells collect several dy.
    let spec = Pool2d::new(1, 1, [3, 3], [2, 2]).stride(1, 1);
    let x = gpu.full(&spec.input_shape(), 1.0).unwrap();
    let y = gpu.zeros(&spec.output_shape()).unwrap();
    let arg = gpu.upload_u32(&spec.output_shape(), &[9; 4]).unwrap();
    let dy = gpu
        .upload(&spec.output_shape(), &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    let dx = gpu.zeros(&spec.input_shape()).unwrap();
    let mut rec = gpu.recorder();
    max_pool2d_forward(&mut rec, &spec, &x, &y, &arg).unwrap();
    max_pool2d_backward(&mut rec, &spec, &dy, &arg, &dx).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.download_u32(&arg).unwrap(), vec![0, 1, 3, 4]);
    assert_eq!(
        gpu.download(&dx).unwrap(),
        vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn pool_backward_references_match_finite_differences() {
    let specs = [
        Pool2d::new(2, 2, [5, 6], [3, 3]).stride(1, 1).padding(1, 1),
        Pool2d::new(1, 2, [7, 6], [3, 2]).stride(2, 2).padding(1, 1),
        Pool2d::new(1, 2, [6, 7], [3, 3])
            .stride(2, 1)
            .padding(1, 1)
            .count_include_pad(false),
        Pool2d::new(2, 1, [4, 9], [1, 3]),
    ];
    for (i, spec) in specs.iter().enumerate() {
        let mut rng = Rng::new(400 + i as u64);
        let x = to_f64(&rng.vec_uniform(spec.input_len(), -1.0, 1.0));
        let r = to_f64(&rng.vec_uniform(spec.output_len(), -1.0, 1.0));
        let dot = |y: &[f64]| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        let (_, argmax) = max_pool2d_reference(spec, &x);
        assert_gradient(
            &format!("max pool d/dx {spec:?}"),
            &x,
            &max_pool2d_backward_reference(spec, &r, &argmax),
            |x| dot(&max_pool2d_reference(spec, x).0),
            1e-6,
            1e-6,
        );
        assert_gradient(
            &format!("avg pool d/dx {spec:?}"),
            &x,
            &avg_pool2d_backward_reference(spec, &r),
            |x| dot(&avg_pool2d_reference(spec, x)),
            1e-6,
            1e-6,
        );
    }
    let x = to_f64(&Rng::new(9).vec_uniform(2 * 3 * 5, -1.0, 1.0));
    let r = to_f64(&Rng::new(10).vec_uniform(2 * 3, -1.0, 1.0));
    assert_gradient(
        "global average pooling d/dx",
        &x,
        &global_avg_pool_backward_reference(&r, 5),
        |x| {
            global_avg_pool_reference(x, 5)
                .iter()
                .zip(&r)
                .map(|(a, b)| a * b)
                .sum()
        },
        1e-6,
        1e-6,
    );
}

#[test]
fn pool_rejects_bad_geometry() {
    let gpu = Gpu::shared();
    let spec = Pool2d::new(1, 2, [5, 5], [3, 3]).padding(2, 0);
    assert!(spec.validate().unwrap_err().to_string().contains("padding"));
    let ok = Pool2d::new(1, 2, [5, 5], [3, 3]);
    let x = gpu.zeros(&[1, 2, 5, 4]).unwrap();
    let y = gpu.zeros(&ok.output_shape()).unwrap();
    let err = avg_pool2d_forward(&mut gpu.recorder(), &ok, &x, &y).unwrap_err();
    assert!(
        err.to_string().contains("x has shape [1, 2, 5, 4]"),
        "{err}"
    );
}

/// One part (0: re, 1: im) of interleaved pairs, and back.
fn part(v: &[f64], k: usize) -> Vec<f64> {
    v.iter().skip(k).step_by(2).copied().collect()
}

fn interleave(re: &[f64], im: &[f64]) -> Vec<f64> {
    re.iter().zip(im).flat_map(|(&a, &b)| [a, b]).collect()
}

fn with_pair(shape: [usize; 4]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

/// Complex pooling: max by magnitude routes both parts to the pair of
/// largest |z|; average and global average pool each part as the real
/// pooling does.
#[test]
fn complex_pool_matches_reference_on_awkward_geometries() {
    let gpu = Gpu::shared();
    for (i, real) in awkward().iter().enumerate() {
        let spec = real.complex(true);
        let mut rng = Rng::new(700 + i as u64);
        let x = rng.vec_uniform(2 * spec.input_len(), -1.0, 1.0);
        let dy = rng.vec_uniform(2 * spec.output_len(), -1.0, 1.0);
        let (x64, dy64) = (to_f64(&x), to_f64(&dy));
        let (in_shape, out_shape) = (
            with_pair(spec.input_shape()),
            with_pair(spec.output_shape()),
        );
        let tx = gpu.upload(&in_shape, &x).unwrap();
        let tdy = gpu.upload(&out_shape, &dy).unwrap();
        let nan = |shape: &[usize]| gpu.full(shape, f32::NAN).unwrap();
        let (tmax, tavg) = (nan(&out_shape), nan(&out_shape));
        let (tdx_max, tdx_avg) = (nan(&in_shape), nan(&in_shape));
        let targ = gpu
            .upload_u32(&spec.output_shape(), &vec![u32::MAX; spec.output_len()])
            .unwrap();
        let mut rec = gpu.recorder();
        max_pool2d_forward(&mut rec, &spec, &tx, &tmax, &targ).unwrap();
        max_pool2d_backward(&mut rec, &spec, &tdy, &targ, &tdx_max).unwrap();
        avg_pool2d_forward(&mut rec, &spec, &tx, &tavg).unwrap();
        avg_pool2d_backward(&mut rec, &spec, &tdy, &tdx_avg).unwrap();
        rec.submit().unwrap();

        let what = |p: &str| format!("complex {p} {spec:?}");
        let (want_max, want_arg) = max_pool2d_magnitude_reference(&spec, &x64);
        assert_eq!(
            gpu.download_u32(&targ).unwrap(),
            want_arg,
            "{}",
            what("argmax")
        );
        assert_close(
            &what("max"),
            &gpu.download(&tmax).unwrap(),
            &to_f32(&want_max),
            0.0,
            0.0,
        );
        let per_part = |f: &dyn Fn(&[f64]) -> Vec<f64>, v: &[f64]| {
            interleave(&f(&part(v, 0)), &f(&part(v, 1)))
        };
        let max_dx = per_part(
            &|g| max_pool2d_backward_reference(real, g, &want_arg),
            &dy64,
        );
        let avg = per_part(&|v| avg_pool2d_reference(real, v), &x64);
        let avg_dx = per_part(&|g| avg_pool2d_backward_reference(real, g), &dy64);
        assert_close(
            &what("max backward"),
            &gpu.download(&tdx_max).unwrap(),
            &to_f32(&max_dx),
            1e-6,
            1e-6,
        );
        assert_close(
            &what("avg"),
            &gpu.download(&tavg).unwrap(),
            &to_f32(&avg),
            1e-6,
            1e-5,
        );
        assert_close(
            &what("avg backward"),
            &gpu.download(&tdx_avg).unwrap(),
            &to_f32(&avg_dx),
            1e-6,
            1e-5,
        );
    }

    let (batch, channels, plane) = (3, 2, 7);
    let x = Rng::new(710).vec_uniform(batch * channels * plane * 2, -1.0, 1.0);
    let dy = Rng::new(711).vec_uniform(batch * channels * 2, -1.0, 1.0);
    let tx = gpu.upload(&[batch, channels, plane, 2], &x).unwrap();
    let ty = gpu.full(&[batch, channels, 2], f32::NAN).unwrap();
    let tdy = gpu.upload(&[batch, channels, 2], &dy).unwrap();
    let tdx = gpu.full(&[batch, channels, plane, 2], f32::NAN).unwrap();
    let mut rec = gpu.recorder();
    complex_global_avg_pool_forward(&mut rec, &tx, &ty).unwrap();
    complex_global_avg_pool_backward(&mut rec, &tdy, &tdx).unwrap();
    rec.submit().unwrap();
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));
    let mean = interleave(
        &global_avg_pool_reference(&part(&x64, 0), plane),
        &global_avg_pool_reference(&part(&x64, 1), plane),
    );
    let dx = interleave(
        &global_avg_pool_backward_reference(&part(&dy64, 0), plane),
        &global_avg_pool_backward_reference(&part(&dy64, 1), plane),
    );
    assert_close(
        "complex global avg",
        &gpu.download(&ty).unwrap(),
        &to_f32(&mean),
        1e-6,
        1e-5,
    );
    assert_close(
        "complex global avg backward",
        &gpu.download(&tdx).unwrap(),
        &to_f32(&dx),
        1e-6,
        1e-5,
    );
    let unpaired = gpu.zeros(&[batch, channels, plane]).unwrap();
    let err = complex_global_avg_pool_forward(&mut gpu.recorder(), &unpaired, &ty).unwrap_err();
    assert!(err.to_string().contains("..., 2]"), "{err}");
}

/// Max pooling by magnitude: the routed gradient is the derivative of a
/// linear functional of the pooled pairs (away from ties).
#[test]
fn complex_max_pool_backward_matches_finite_differences() {
    let real = Pool2d::new(2, 2, [5, 6], [3, 3]).stride(2, 1).padding(1, 1);
    let spec = real.complex(true);
    let mut rng = Rng::new(720);
    let x = to_f64(&rng.vec_uniform(2 * spec.input_len(), -1.0, 1.0));
    let r = to_f64(&rng.vec_uniform(2 * spec.output_len(), -1.0, 1.0));
    let dot = |y: &[f64]| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
    let (_, argmax) = max_pool2d_magnitude_reference(&spec, &x);
    let dx = interleave(
        &max_pool2d_backward_reference(&real, &part(&r, 0), &argmax),
        &max_pool2d_backward_reference(&real, &part(&r, 1), &argmax),
    );
    assert_gradient(
        "complex max pool d/dx",
        &x,
        &dx,
        |x| dot(&max_pool2d_magnitude_reference(&spec, x).0),
        1e-6,
        1e-6,
    );
}

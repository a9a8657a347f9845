//! Pooling on the GPU against its CPU reference (max with arg-max, average
//! with and without padding in the divisor, global average; forward and
//! backward), and the references' backward against finite differences.

use audionas::gpu::Gpu;
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::pool::{
    avg_pool2d_backward, avg_pool2d_backward_reference, avg_pool2d_forward, avg_pool2d_reference,
    global_avg_pool_backward, global_avg_pool_backward_reference, global_avg_pool_forward,
    global_avg_pool_reference, max_pool2d_backward, max_pool2d_backward_reference,
    max_pool2d_forward, max_pool2d_reference, Pool2d,
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

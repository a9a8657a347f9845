//! im2col and col2im on the GPU against their CPU references, and col2im
//! checked as the adjoint of im2col (the exact check for a linear map's
//! backward): <im2col(x), c> = <x, col2im(c)> (within f32 summation error).

use audionas::gpu::Gpu;
use audionas::kernels::check::assert_close;
use audionas::kernels::conv2d::Conv2d;
use audionas::kernels::im2col::{col2im, col2im_reference, col_len, im2col, im2col_reference};
use audionas::util::rng::Rng;

fn geometries() -> Vec<Conv2d> {
    vec![
        Conv2d::new(1, 1, 1, [1, 1], [1, 1]),
        Conv2d::new(3, 2, 1, [7, 5], [3, 3]).padding(1, 1),
        Conv2d::new(2, 3, 1, [11, 7], [4, 3])
            .stride(2, 3)
            .padding(2, 1),
        Conv2d::new(2, 2, 1, [13, 9], [3, 2])
            .dilation(2, 3)
            .padding(1, 2),
        Conv2d::new(3, 1, 1, [20, 8], [20, 8]),
        Conv2d::new(2, 5, 1, [9, 1], [3, 1])
            .stride(2, 1)
            .padding(1, 0),
        // Output rows of several runs (im2col writes 8 positions of a row
        // per invocation): a partial last run, and two whole runs.
        Conv2d::new(2, 2, 1, [5, 21], [2, 3])
            .stride(1, 2)
            .padding(0, 1),
        Conv2d::new(1, 3, 1, [4, 16], [1, 1]),
    ]
}

#[test]
fn im2col_and_col2im_match_reference_on_chunks_of_the_batch() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(5);
    for spec in geometries() {
        let x = rng.vec_uniform(spec.input_len(), -1.0, 1.0);
        let tx = gpu.upload(&[x.len()], &x).unwrap();
        let (first, images) = (spec.batch - 1, 1);
        for (first, images) in [(0, spec.batch), (first, images)] {
            let col = gpu.full(&[images * col_len(&spec)], f32::NAN).unwrap();
            let mut rec = gpu.recorder();
            im2col(&mut rec, &spec, &tx, &col, first, images).unwrap();
            rec.submit().unwrap();
            let want = im2col_reference(&spec, &x, first, images);
            assert_close(
                &format!("im2col {spec:?}"),
                &gpu.download(&col).unwrap(),
                &want,
                0.0,
                0.0,
            );

            let dcol = rng.vec_uniform(images * col_len(&spec), -1.0, 1.0);
            let tdcol = gpu.upload(&[dcol.len()], &dcol).unwrap();
            let dx = gpu.full(&[spec.input_len()], 7.0).unwrap();
            let mut rec = gpu.recorder();
            col2im(&mut rec, &spec, &tdcol, &dx, first, images).unwrap();
            rec.submit().unwrap();
            let got = gpu.download(&dx).unwrap();
            let image_len = spec.input_len() / spec.batch;
            let part = &got[first * image_len..(first + images) * image_len];
            let want = col2im_reference(&spec, &dcol, images);
            assert_close(&format!("col2im {spec:?}"), part, &want, 1e-5, 1e-5);
            let untouched = got[..first * image_len]
                .iter()
                .chain(&got[(first + images) * image_len..]);
            assert!(
                untouched.into_iter().all(|&v| v == 7.0),
                "col2im wrote outside its images"
            );
        }
    }
}

#[test]
fn col2im_reference_is_the_adjoint_of_im2col() {
    let mut rng = Rng::new(6);
    for spec in geometries() {
        let x = rng.vec_uniform(spec.input_len(), -1.0, 1.0);
        let c = rng.vec_uniform(spec.batch * col_len(&spec), -1.0, 1.0);
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| *p as f64 * *q as f64)
                .sum::<f64>()
        };
        let lhs = dot(&im2col_reference(&spec, &x, 0, spec.batch), &c);
        let rhs = dot(&x, &col2im_reference(&spec, &c, spec.batch));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()),
            "{spec:?}: {lhs} != {rhs}"
        );
    }
}

#[test]
fn im2col_rejects_a_chunk_past_the_batch() {
    let gpu = Gpu::shared();
    let spec = Conv2d::new(2, 1, 1, [4, 4], [2, 2]);
    let x = gpu.zeros(&[spec.input_len()]).unwrap();
    let col = gpu.zeros(&[2 * col_len(&spec)]).unwrap();
    let err = im2col(&mut gpu.recorder(), &spec, &x, &col, 1, 2).unwrap_err();
    assert!(err.to_string().contains("images 1..3"), "{err}");
}

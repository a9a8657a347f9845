//! Complex kernels on the GPU against their CPU references, and every
//! reference backward against finite differences taken on the real and the
//! imaginary parts separately (each interleaved entry is perturbed alone).

use audionas::gpu::{Gpu, Recorder, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::complex::*;
use audionas::kernels::conv2d::Conv2d;
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

fn with_pair(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

const SHAPES: [&[usize]; 4] = [&[1, 1], &[4, 7], &[2, 3, 5], &[3, 2, 7, 13]];

#[test]
fn complex_mul_matches_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(1);
    for shape in SHAPES {
        let n: usize = shape.iter().product::<usize>() * 2;
        let cs = with_pair(shape);
        let (a, b, g) = (
            random(&mut rng, n),
            random(&mut rng, n),
            random(&mut rng, n),
        );
        let (ta, tb, tg) = (up(&cs, &a), up(&cs, &b), up(&cs, &g));
        let (out, da, db) = (nan(&cs), nan(&cs), nan(&cs));
        let mut rec = gpu.recorder();
        complex_mul(&mut rec, &ta, &tb, &out).unwrap();
        complex_mul_backward(&mut rec, &ta, &tb, &tg, &da, &db).unwrap();
        rec.submit_and_wait().unwrap();
        let (da_ref, db_ref) = mul_backward_reference(&a, &b, &g);
        assert_close(
            "mul",
            &down(&out),
            &to_f32(&mul_reference(&a, &b)),
            1e-6,
            1e-5,
        );
        assert_close("mul da", &down(&da), &to_f32(&da_ref), 1e-6, 1e-5);
        assert_close("mul db", &down(&db), &to_f32(&db_ref), 1e-6, 1e-5);
    }
}

/// The activations, magnitude and phase on one input, with zeros and
/// values on the modReLU threshold mixed in.
#[test]
fn complex_activations_match_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(2);
    for shape in SHAPES {
        let count: usize = shape.iter().product();
        let n = count * 2;
        let cs = with_pair(shape);
        let mut x = random(&mut rng, n);
        x[0] = 0.0;
        x[1] = 0.0;
        let channels = shape[1];
        let inner: usize = shape[2..].iter().product();
        let bias = to_f64(&rng.vec_uniform(channels, -0.8, 0.3));
        let g = random(&mut rng, n);
        let g_real = random(&mut rng, count);
        let tx = up(&cs, &x);
        let tbias = up(&[channels], &bias);
        let (tg, tg_real) = (up(&cs, &g), up(shape, &g_real));
        let (crelu_out, crelu_dx) = (nan(&cs), nan(&cs));
        let (zrelu_out, zrelu_dx) = (nan(&cs), nan(&cs));
        let (mod_out, mod_dx, mod_db) = (nan(&cs), nan(&cs), nan(&[channels]));
        let (mag, mag_dx, ph, ph_dx) = (nan(shape), nan(&cs), nan(shape), nan(&cs));
        let mut rec = gpu.recorder();
        crelu(&mut rec, &tx, &crelu_out).unwrap();
        crelu_backward(&mut rec, &tx, &tg, &crelu_dx).unwrap();
        zrelu(&mut rec, &tx, &zrelu_out).unwrap();
        zrelu_backward(&mut rec, &tx, &tg, &zrelu_dx).unwrap();
        modrelu(&mut rec, &tx, &tbias, &mod_out).unwrap();
        modrelu_backward(&mut rec, &tx, &tbias, &tg, &mod_dx, &mod_db).unwrap();
        magnitude(&mut rec, &tx, &mag).unwrap();
        magnitude_backward(&mut rec, &tx, &tg_real, &mag_dx).unwrap();
        phase(&mut rec, &tx, &ph).unwrap();
        phase_backward(&mut rec, &tx, &tg_real, &ph_dx).unwrap();
        rec.submit_and_wait().unwrap();

        let what = |name: &str| format!("{name} {shape:?}");
        let close = |name: &str, t: &Tensor, want: &[f64], atol: f32| {
            assert_close(&what(name), &down(t), &to_f32(want), atol, 1e-4)
        };
        close("crelu", &crelu_out, &crelu_reference(&x), 1e-7);
        close(
            "crelu dx",
            &crelu_dx,
            &crelu_backward_reference(&x, &g),
            1e-7,
        );
        close("zrelu", &zrelu_out, &zrelu_reference(&x), 0.0);
        close(
            "zrelu dx",
            &zrelu_dx,
            &zrelu_backward_reference(&x, &g),
            0.0,
        );
        close(
            "modrelu",
            &mod_out,
            &modrelu_reference(&x, &bias, inner),
            1e-5,
        );
        let (dx_ref, db_ref) = modrelu_backward_reference(&x, &bias, inner, &g);
        close("modrelu dx", &mod_dx, &dx_ref, 1e-4);
        close(
            "modrelu dbias",
            &mod_db,
            &db_ref,
            1e-4 * (count as f32).sqrt(),
        );
        close("magnitude", &mag, &magnitude_reference(&x), 1e-6);
        close(
            "magnitude dx",
            &mag_dx,
            &magnitude_backward_reference(&x, &g_real),
            1e-5,
        );
        close("phase", &ph, &phase_reference(&x), 1e-5);
        close(
            "phase dx",
            &ph_dx,
            &phase_backward_reference(&x, &g_real),
            1e-4,
        );
    }
}

#[test]
fn elementwise_backward_references_match_finite_differences() {
    let mut rng = Rng::new(3);
    // Kept away from the kinks (zero parts, |z| + b = 0) and from z = 0.
    let x: Vec<f64> = random(&mut rng, 12)
        .iter()
        .map(|v| v.signum() * (0.2 + v.abs()))
        .collect();
    let b = random(&mut rng, 12);
    let g = random(&mut rng, 12);
    let g_real = random(&mut rng, 6);
    let (atol, rtol) = (1e-8, 1e-6);
    let (da, db) = mul_backward_reference(&x, &b, &g);
    assert_gradient(
        "mul da",
        &x,
        &da,
        |a| dot(&mul_reference(a, &b), &g),
        atol,
        rtol,
    );
    assert_gradient(
        "mul db",
        &b,
        &db,
        |v| dot(&mul_reference(&x, v), &g),
        atol,
        rtol,
    );
    let dx = crelu_backward_reference(&x, &g);
    assert_gradient(
        "crelu",
        &x,
        &dx,
        |v| dot(&crelu_reference(v), &g),
        atol,
        rtol,
    );
    let dx = zrelu_backward_reference(&x, &g);
    assert!(dx.contains(&0.0) && dx.iter().any(|&v| v != 0.0));
    assert_gradient(
        "zrelu",
        &x,
        &dx,
        |v| dot(&zrelu_reference(v), &g),
        atol,
        rtol,
    );
    // Shape [2, 3] complex: 3 channels, inner 1; biases leave some values cut off.
    let bias = vec![-0.5, 0.2, -1.5];
    let (dx, dbias) = modrelu_backward_reference(&x, &bias, 1, &g);
    assert!(dx.contains(&0.0) && dx.iter().any(|&v| v != 0.0));
    let loss = |x: &[f64], bias: &[f64]| dot(&modrelu_reference(x, bias, 1), &g);
    assert_gradient("modrelu dx", &x, &dx, |v| loss(v, &bias), atol, rtol);
    assert_gradient("modrelu dbias", &bias, &dbias, |v| loss(&x, v), atol, rtol);
    let dx = magnitude_backward_reference(&x, &g_real);
    assert_gradient(
        "magnitude",
        &x,
        &dx,
        |v| dot(&magnitude_reference(v), &g_real),
        atol,
        rtol,
    );
    let dx = phase_backward_reference(&x, &g_real);
    assert_gradient(
        "phase",
        &x,
        &dx,
        |v| dot(&phase_reference(v), &g_real),
        atol,
        rtol,
    );
}

/// A forward and backward of a complex layer recorded on random inputs,
/// and what the CPU references say they give.
struct LayerCase {
    what: String,
    /// `y`, `dx`, `dw` and `db` as the GPU writes them.
    got: [Tensor; 4],
    want: [Vec<f64>; 4],
    dw_atol: f32,
}

impl LayerCase {
    /// After the recording is submitted.
    fn assert_matches_reference(&self) {
        let names = ["y", "dx", "dw", "db"];
        for ((name, got), want) in names.iter().zip(&self.got).zip(&self.want) {
            let atol = if *name == "y" || *name == "dx" {
                1e-5
            } else {
                self.dw_atol
            };
            let what = format!("{} {name}", self.what);
            assert_close(&what, &down(got), &to_f32(want), atol, 1e-4);
        }
    }
}

/// `y + bias` over `[outer][channels][inner]` complex values.
fn with_bias(mut y: Vec<f64>, bias: &[f64], inner: usize) -> Vec<f64> {
    let channels = bias.len() / 2;
    for i in 0..y.len() / 2 {
        let c = (i / inner) % channels;
        y[2 * i] += bias[2 * c];
        y[2 * i + 1] += bias[2 * c + 1];
    }
    y
}

/// The bias gradient: `dy` summed per channel.
fn bias_grad(dy: &[f64], channels: usize, inner: usize) -> Vec<f64> {
    let mut db = vec![0.0; 2 * channels];
    for i in 0..dy.len() / 2 {
        let c = (i / inner) % channels;
        db[2 * c] += dy[2 * i];
        db[2 * c + 1] += dy[2 * i + 1];
    }
    db
}

fn dense_case(rec: &mut Recorder, layer: &ComplexDense, rows: usize, rng: &mut Rng) -> LayerCase {
    let (inputs, outputs) = (layer.inputs, layer.outputs);
    let x = random(rng, 2 * rows * inputs);
    let w = random(rng, 2 * inputs * outputs);
    let dy = random(rng, 2 * rows * outputs);
    let tx = up(&[rows, inputs, 2], &x);
    let tw = up(&[inputs, outputs, 2], &w);
    let tdy = up(&[rows, outputs, 2], &dy);
    let bias = random(rng, 2 * outputs);
    let tb = up(&[outputs, 2], &bias);
    let got = [
        nan(&[rows, outputs, 2]),
        nan(&[rows, inputs, 2]),
        nan(&[inputs, outputs, 2]),
        nan(&[outputs, 2]),
    ];
    layer.forward(rec, &tx, &tw, Some(&tb), &got[0]).unwrap();
    layer
        .backward(rec, &tx, &tdy, Some(&got[1]), &got[2], Some(&got[3]))
        .unwrap();
    let (dx, dw) = dense_backward_reference(&x, &w, &dy, rows, inputs, outputs);
    let y = with_bias(dense_reference(&x, &w, rows, inputs, outputs), &bias, 1);
    LayerCase {
        what: format!("dense {rows}x{inputs}->{outputs}"),
        got,
        want: [y, dx, dw, bias_grad(&dy, outputs, 1)],
        dw_atol: 1e-5,
    }
}

/// `spec` gives the layer's geometry and the batch of this case.
fn conv_case(rec: &mut Recorder, layer: &ComplexConv2d, spec: Conv2d, rng: &mut Rng) -> LayerCase {
    let pair = |s: [usize; 4]| with_pair(&s);
    let x = random(rng, 2 * spec.input_len());
    let w = random(rng, 2 * spec.weight_len());
    let dy = random(rng, 2 * spec.output_len());
    let tx = up(&pair(spec.input_shape()), &x);
    let tw = up(&pair(spec.weight_shape()), &w);
    let tdy = up(&pair(spec.output_shape()), &dy);
    let channels = spec.out_channels;
    let bias = random(rng, 2 * channels);
    let tb = up(&[channels, 2], &bias);
    let got = [
        nan(&pair(spec.output_shape())),
        nan(&pair(spec.input_shape())),
        nan(&pair(spec.weight_shape())),
        nan(&[channels, 2]),
    ];
    layer.forward(rec, &tx, &tw, Some(&tb), &got[0]).unwrap();
    layer
        .backward(rec, &tx, &tdy, Some(&got[1]), &got[2], Some(&got[3]))
        .unwrap();
    let (dx, dw) = conv2d_backward_reference(&spec, &x, &w, &dy);
    let inner = spec.out_h() * spec.out_w();
    let y = with_bias(conv2d_reference(&spec, &x, &w), &bias, inner);
    LayerCase {
        what: format!("{spec:?}"),
        got,
        want: [y, dx, dw, bias_grad(&dy, channels, inner)],
        dw_atol: 1e-4,
    }
}

#[test]
fn complex_dense_matches_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(4);
    for &(rows, inputs, outputs) in &[(1, 1, 1), (5, 3, 7), (13, 17, 9), (33, 2, 31)] {
        let layer = ComplexDense::new(gpu, inputs, outputs).unwrap();
        let mut rec = gpu.recorder();
        let case = dense_case(&mut rec, &layer, rows, &mut rng);
        rec.submit_and_wait().unwrap();
        case.assert_matches_reference();
    }
}

#[test]
fn linear_backward_references_match_finite_differences() {
    let mut rng = Rng::new(5);
    let (rows, inputs, outputs) = (2, 3, 2);
    let x = random(&mut rng, 2 * rows * inputs);
    let w = random(&mut rng, 2 * inputs * outputs);
    let g = random(&mut rng, 2 * rows * outputs);
    let (dx, dw) = dense_backward_reference(&x, &w, &g, rows, inputs, outputs);
    let loss = |x: &[f64], w: &[f64]| dot(&dense_reference(x, w, rows, inputs, outputs), &g);
    assert_gradient("dense dx", &x, &dx, |v| loss(v, &w), 1e-8, 1e-6);
    assert_gradient("dense dw", &w, &dw, |v| loss(&x, v), 1e-8, 1e-6);

    let spec = Conv2d::new(1, 2, 2, [4, 3], [2, 2])
        .padding(1, 0)
        .stride(2, 1);
    let x = random(&mut rng, 2 * spec.input_len());
    let w = random(&mut rng, 2 * spec.weight_len());
    let g = random(&mut rng, 2 * spec.output_len());
    let (dx, dw) = conv2d_backward_reference(&spec, &x, &w, &g);
    let loss = |x: &[f64], w: &[f64]| dot(&conv2d_reference(&spec, x, w), &g);
    assert_gradient("conv dx", &x, &dx, |v| loss(v, &w), 1e-8, 1e-6);
    assert_gradient("conv dw", &w, &dw, |v| loss(&x, v), 1e-8, 1e-6);
}

#[test]
fn complex_conv2d_matches_reference() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(6);
    let specs = [
        Conv2d::new(1, 1, 1, [1, 1], [1, 1]),
        Conv2d::new(2, 3, 5, [7, 6], [3, 2]).padding(1, 1),
        Conv2d::new(2, 2, 3, [9, 5], [3, 3])
            .stride(2, 1)
            .dilation(1, 2)
            .padding(2, 2),
        Conv2d::new(3, 4, 4, [5, 5], [3, 3]).padding(1, 1).groups(4),
        Conv2d::new(1, 4, 6, [6, 4], [2, 1]).groups(2),
    ];
    for spec in specs {
        let layer = ComplexConv2d::new(gpu, spec).unwrap();
        let mut rec = gpu.recorder();
        let case = conv_case(&mut rec, &layer, spec, &mut rng);
        rec.submit_and_wait().unwrap();
        case.assert_matches_reference();
    }
}

/// One layer of each kind run on a larger and then a smaller batch in one
/// recording (so per-call scratch is reused between them), and on a larger
/// one again in the next: every pass matches the reference.
#[test]
fn complex_layers_take_any_batch_size() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(7);
    let dense = ComplexDense::new(gpu, 5, 3).unwrap();
    let geometry = Conv2d::new(2, 3, 2, [6, 5], [3, 2])
        .padding(1, 1)
        .stride(2, 1);
    let conv = ComplexConv2d::new(gpu, geometry).unwrap();
    let at_batch = |batch| Conv2d { batch, ..geometry };
    let mut rec = gpu.recorder();
    let mut cases = vec![
        dense_case(&mut rec, &dense, 7, &mut rng),
        dense_case(&mut rec, &dense, 2, &mut rng),
        conv_case(&mut rec, &conv, at_batch(3), &mut rng),
        conv_case(&mut rec, &conv, at_batch(1), &mut rng),
    ];
    rec.submit_and_wait().unwrap();
    let mut rec = gpu.recorder();
    cases.push(dense_case(&mut rec, &dense, 11, &mut rng));
    cases.push(conv_case(&mut rec, &conv, at_batch(4), &mut rng));
    rec.submit_and_wait().unwrap();
    for case in &cases {
        case.assert_matches_reference();
    }
}

#[test]
fn complex_rejects_tensors_without_pairs() {
    let gpu = Gpu::shared();
    let a = gpu.zeros(&[3, 4]).unwrap();
    let err = complex_mul(&mut gpu.recorder(), &a, &a, &a).unwrap_err();
    assert!(err.to_string().contains("last axis of 2"), "{err}");
    let x = gpu.zeros(&[3, 4, 2]).unwrap();
    let bias = gpu.zeros(&[3]).unwrap();
    let err = modrelu(&mut gpu.recorder(), &x, &bias, &x).unwrap_err();
    assert!(err.to_string().contains("bias has shape [3]"), "{err}");
}

/// Splitting into real planes puts channel c's real parts in plane 2c and
/// its imaginary parts in 2c + 1; joining undoes it exactly.
#[test]
fn complex_planes_split_and_join() {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(8);
    for shape in [&[1usize, 1][..], &[3, 2], &[2, 3, 5], &[2, 3, 4, 7]] {
        let cs = with_pair(shape);
        let count: usize = shape.iter().product();
        let x = random(&mut rng, 2 * count);
        let planes_shape = planes_shape(&cs).unwrap();
        let (planes, back) = (nan(&planes_shape), nan(&cs));
        let tx = up(&cs, &x);
        let mut rec = gpu.recorder();
        split_planes(&mut rec, &tx, &planes).unwrap();
        join_planes(&mut rec, &planes, &back).unwrap();
        rec.submit_and_wait().unwrap();
        let inner: usize = shape[2..].iter().product();
        let mut want = vec![0.0; 2 * count];
        for i in 0..count {
            let (outer, pos) = (i / inner, i % inner);
            want[(2 * outer) * inner + pos] = x[2 * i];
            want[(2 * outer + 1) * inner + pos] = x[2 * i + 1];
        }
        assert_eq!(planes_shape[1], 2 * shape[1]);
        assert_close("planes", &down(&planes), &to_f32(&want), 0.0, 0.0);
        assert_close("joined", &down(&back), &to_f32(&x), 0.0, 0.0);
    }
    let err = planes_shape(&[3, 4]).unwrap_err();
    assert!(err.to_string().contains("..., 2]"), "{err}");
}

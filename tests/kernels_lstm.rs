//! The LSTM layer on the GPU against its CPU reference (both output modes,
//! zero and given initial state, awkward sizes), and the reference's backward
//! against finite differences.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::lstm::*;
use audionas::util::rng::Rng;

struct Case {
    w: LstmReferenceWeights,
    x: Vec<f64>,
    h0: Vec<f64>,
    c0: Vec<f64>,
}

fn case(shape: LstmShape, given_initial: bool, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let LstmShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let scale = 1.0 / (h as f32).sqrt();
    let mut v = |n: usize, r: f32| to_f64(&rng.vec_uniform(n, -r, r));
    let w = LstmReferenceWeights {
        w_ih: v(4 * h * i, scale),
        w_hh: v(4 * h * h, scale),
        bias: v(4 * h, scale),
    };
    let x = v(t * b * i, 1.0);
    let (h0, c0) = if given_initial {
        (v(b * h, 1.0), v(b * h, 1.0))
    } else {
        (vec![0.0; b * h], vec![0.0; b * h])
    };
    Case { w, x, h0, c0 }
}

fn up(shape: &[usize], v: &[f64]) -> Tensor {
    Gpu::shared().upload(shape, &to_f32(v)).unwrap()
}

fn down(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

fn run(shape: LstmShape, output: LstmOutput, given_initial: bool, seed: u64) {
    let gpu = Gpu::shared();
    let c = case(shape, given_initial, seed);
    let LstmShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let mut rng = Rng::new(seed + 100);
    let out_shape = match output {
        LstmOutput::AllStates => vec![t, b, h],
        LstmOutput::LastState => vec![b, h],
    };
    let dout = to_f64(&rng.vec_uniform(out_shape.iter().product(), -1.0, 1.0));

    let (w_ih, w_hh, bias) = (
        up(&[4 * h, i], &c.w.w_ih),
        up(&[4 * h, h], &c.w.w_hh),
        up(&[4 * h], &c.w.bias),
    );
    let weights = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        bias: &bias,
    };
    let x = up(&[t, b, i], &c.x);
    let (h0, c0) = (up(&[b, h], &c.h0), up(&[b, h], &c.c0));
    let state = LstmState::new(gpu, shape).unwrap();
    let out = gpu.full(&out_shape, f32::NAN).unwrap();
    let t_dout = up(&out_shape, &dout);
    let nan = |shape: &[usize]| gpu.full(shape, f32::NAN).unwrap();
    let (dx, dw_ih, dw_hh, dbias) = (
        nan(&[t, b, i]),
        nan(&[4 * h, i]),
        nan(&[4 * h, h]),
        nan(&[4 * h]),
    );
    let (dh0, dc0) = (nan(&[b, h]), nan(&[b, h]));
    let grads = LstmGrads {
        dx: Some(&dx),
        dw_ih: &dw_ih,
        dw_hh: &dw_hh,
        dbias: &dbias,
        dinitial: given_initial.then_some((&dh0, &dc0)),
    };
    let initial = given_initial.then_some((&h0, &c0));
    let mut rec = gpu.recorder();
    lstm_forward(&mut rec, &state, &weights, &x, initial, output, &out).unwrap();
    lstm_backward(&mut rec, &state, &weights, &x, output, &t_dout, &grads).unwrap();
    rec.submit_and_wait().unwrap();

    let trace = lstm_forward_reference(&shape, &c.w, &c.x, &c.h0, &c.c0);
    let mut dhs = vec![0.0; t * b * h];
    let last = (t - 1) * b * h;
    let out_ref = match output {
        LstmOutput::AllStates => {
            dhs.copy_from_slice(&dout);
            trace.hs.clone()
        }
        LstmOutput::LastState => {
            dhs[last..].copy_from_slice(&dout);
            trace.hs[last..].to_vec()
        }
    };
    let g = lstm_backward_reference(&shape, &c.w, &c.x, &c.h0, &c.c0, &trace, &dhs);
    let what = format!("{shape:?} {output:?} initial {given_initial}");
    // Gradients sum over steps and batch rows in f32.
    let (atol, rtol) = (1e-4, 1e-3);
    assert_close(
        &format!("{what} out"),
        &down(&out),
        &to_f32(&out_ref),
        2e-5,
        1e-4,
    );
    assert_close(
        &format!("{what} dx"),
        &down(&dx),
        &to_f32(&g.dx),
        atol,
        rtol,
    );
    assert_close(
        &format!("{what} dw_ih"),
        &down(&dw_ih),
        &to_f32(&g.dw_ih),
        atol,
        rtol,
    );
    assert_close(
        &format!("{what} dw_hh"),
        &down(&dw_hh),
        &to_f32(&g.dw_hh),
        atol,
        rtol,
    );
    assert_close(
        &format!("{what} dbias"),
        &down(&dbias),
        &to_f32(&g.dbias),
        atol,
        rtol,
    );
    if given_initial {
        assert_close(
            &format!("{what} dh0"),
            &down(&dh0),
            &to_f32(&g.dh0),
            atol,
            rtol,
        );
        assert_close(
            &format!("{what} dc0"),
            &down(&dc0),
            &to_f32(&g.dc0),
            atol,
            rtol,
        );
    }
}

const SHAPES: [(usize, usize, usize, usize); 5] = [
    (1, 1, 1, 1),
    (3, 2, 5, 7),
    (6, 5, 3, 17),
    (2, 1, 40, 64),
    (9, 3, 11, 33),
];

#[test]
fn lstm_all_states_matches_reference() {
    for (n, &(t, b, i, h)) in SHAPES.iter().enumerate() {
        run(
            LstmShape::new(t, b, i, h),
            LstmOutput::AllStates,
            n % 2 == 1,
            n as u64,
        );
    }
}

#[test]
fn lstm_last_state_matches_reference() {
    for (n, &(t, b, i, h)) in SHAPES.iter().enumerate() {
        run(
            LstmShape::new(t, b, i, h),
            LstmOutput::LastState,
            n % 2 == 0,
            10 + n as u64,
        );
    }
}

#[test]
fn lstm_given_initial_state_in_both_modes() {
    run(LstmShape::new(4, 3, 2, 5), LstmOutput::AllStates, true, 20);
    run(LstmShape::new(4, 3, 2, 5), LstmOutput::LastState, true, 21);
}

/// The reference backward against finite differences of the reference
/// forward, for `loss = sum(probe * hs)`, in every input and parameter.
#[test]
fn lstm_backward_reference_matches_finite_differences() {
    let shape = LstmShape::new(3, 2, 3, 2);
    let c = case(shape, true, 30);
    let probe = to_f64(&Rng::new(31).vec_uniform(3 * 2 * 2, -1.0, 1.0));
    let loss = |w: &LstmReferenceWeights, x: &[f64], h0: &[f64], c0: &[f64]| {
        let trace = lstm_forward_reference(&shape, w, x, h0, c0);
        trace.hs.iter().zip(&probe).map(|(a, b)| a * b).sum::<f64>()
    };
    let trace = lstm_forward_reference(&shape, &c.w, &c.x, &c.h0, &c.c0);
    let g = lstm_backward_reference(&shape, &c.w, &c.x, &c.h0, &c.c0, &trace, &probe);
    let (atol, rtol) = (1e-8, 1e-6);
    assert_gradient(
        "dx",
        &c.x,
        &g.dx,
        |x| loss(&c.w, x, &c.h0, &c.c0),
        atol,
        rtol,
    );
    assert_gradient(
        "dh0",
        &c.h0,
        &g.dh0,
        |h0| loss(&c.w, &c.x, h0, &c.c0),
        atol,
        rtol,
    );
    assert_gradient(
        "dc0",
        &c.c0,
        &g.dc0,
        |c0| loss(&c.w, &c.x, &c.h0, c0),
        atol,
        rtol,
    );
    let with = |f: &dyn Fn(&mut LstmReferenceWeights)| {
        let mut w = c.w.clone();
        f(&mut w);
        loss(&w, &c.x, &c.h0, &c.c0)
    };
    assert_gradient(
        "dw_ih",
        &c.w.w_ih,
        &g.dw_ih,
        |v| with(&|w| w.w_ih = v.to_vec()),
        atol,
        rtol,
    );
    assert_gradient(
        "dw_hh",
        &c.w.w_hh,
        &g.dw_hh,
        |v| with(&|w| w.w_hh = v.to_vec()),
        atol,
        rtol,
    );
    assert_gradient(
        "dbias",
        &c.w.bias,
        &g.dbias,
        |v| with(&|w| w.bias = v.to_vec()),
        atol,
        rtol,
    );
}

#[test]
fn lstm_rejects_mismatched_tensors() {
    let gpu = Gpu::shared();
    let shape = LstmShape::new(2, 3, 4, 5);
    let state = LstmState::new(gpu, shape).unwrap();
    let w_ih = gpu.zeros(&[20, 4]).unwrap();
    let w_hh = gpu.zeros(&[20, 4]).unwrap();
    let bias = gpu.zeros(&[20]).unwrap();
    let weights = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        bias: &bias,
    };
    let x = gpu.zeros(&[2, 3, 4]).unwrap();
    let out = gpu.zeros(&[3, 5]).unwrap();
    let err = lstm_forward(
        &mut gpu.recorder(),
        &state,
        &weights,
        &x,
        None,
        LstmOutput::LastState,
        &out,
    )
    .unwrap_err();
    assert!(err.to_string().contains("w_hh has shape [20, 4]"), "{err}");
}

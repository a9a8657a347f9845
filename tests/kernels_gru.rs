//! The GRU layer on the GPU against its CPU reference (zero and given
//! initial state, with and without the input and initial-state gradients,
//! awkward sizes and the SANAS controller's), empty sizes, the reference's
//! backward against finite differences, and shape errors.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f32, to_f64};
use audionas::kernels::gru::*;
use audionas::util::rng::Rng;

struct Case {
    w: GruReferenceWeights,
    x: Vec<f64>,
    h0: Vec<f64>,
}

fn case(shape: GruShape, given_h0: bool, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let GruShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let scale = 1.0 / (h as f32).sqrt();
    let mut v = |n: usize, r: f32| to_f64(&rng.vec_uniform(n, -r, r));
    let w = GruReferenceWeights {
        w_ih: v(3 * h * i, scale),
        w_hh: v(3 * h * h, scale),
        b_ih: v(3 * h, scale),
        b_hh: v(3 * h, scale),
    };
    let x = v(t * b * i, 1.0);
    let h0 = if given_h0 {
        v(b * h, 1.0)
    } else {
        vec![0.0; b * h]
    };
    Case { w, x, h0 }
}

fn up(shape: &[usize], v: &[f64]) -> Tensor {
    Gpu::shared().upload(shape, &to_f32(v)).unwrap()
}

fn down(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

/// Which optional inputs and gradients a run uses.
#[derive(Clone, Copy, Debug)]
struct Options {
    given_h0: bool,
    want_dh0: bool,
    want_dx: bool,
}

fn run(shape: GruShape, o: Options, seed: u64) {
    let gpu = Gpu::shared();
    let c = case(shape, o.given_h0, seed);
    let GruShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let dout = to_f64(&Rng::new(seed + 100).vec_uniform(t * b * h, -1.0, 1.0));

    let (w_ih, w_hh, b_ih, b_hh) = (
        up(&[3 * h, i], &c.w.w_ih),
        up(&[3 * h, h], &c.w.w_hh),
        up(&[3 * h], &c.w.b_ih),
        up(&[3 * h], &c.w.b_hh),
    );
    let weights = GruWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let x = up(&[t, b, i], &c.x);
    let h0 = up(&[b, h], &c.h0);
    let state = GruState::new(gpu, shape).unwrap();
    let nan = |shape: &[usize]| gpu.full(shape, f32::NAN).unwrap();
    let out = nan(&[t, b, h]);
    let t_dout = up(&[t, b, h], &dout);
    let (dx, dw_ih, dw_hh, db_ih, db_hh, dh0) = (
        nan(&[t, b, i]),
        nan(&[3 * h, i]),
        nan(&[3 * h, h]),
        nan(&[3 * h]),
        nan(&[3 * h]),
        nan(&[b, h]),
    );
    let grads = GruGrads {
        dx: o.want_dx.then_some(&dx),
        dw_ih: &dw_ih,
        dw_hh: &dw_hh,
        db_ih: &db_ih,
        db_hh: &db_hh,
        dh0: o.want_dh0.then_some(&dh0),
    };
    let mut rec = gpu.recorder();
    gru_forward(
        &mut rec,
        &state,
        &weights,
        &x,
        o.given_h0.then_some(&h0),
        &out,
    )
    .unwrap();
    gru_backward(&mut rec, &state, &weights, &x, &t_dout, &grads).unwrap();
    rec.submit_and_wait().unwrap();

    let trace = gru_forward_reference(&shape, &c.w, &c.x, &c.h0);
    let g = gru_backward_reference(&shape, &c.w, &c.x, &c.h0, &trace, &dout);
    let what = format!("{shape:?} {o:?}");
    let check = |name: &str, got: &Tensor, want: &[f64], atol: f32, rtol: f32| {
        assert_close(
            &format!("{what} {name}"),
            &down(got),
            &to_f32(want),
            atol,
            rtol,
        );
    };
    check("out", &out, &trace.hs, 2e-5, 1e-4);
    // Gradients sum over steps and batch rows in f32.
    let (atol, rtol) = (1e-4, 1e-3);
    check("dw_ih", &dw_ih, &g.dw_ih, atol, rtol);
    check("dw_hh", &dw_hh, &g.dw_hh, atol, rtol);
    check("db_ih", &db_ih, &g.db_ih, atol, rtol);
    check("db_hh", &db_hh, &g.db_hh, atol, rtol);
    if o.want_dx {
        check("dx", &dx, &g.dx, atol, rtol);
    }
    if o.want_dh0 {
        check("dh0", &dh0, &g.dh0, atol, rtol);
    }
}

/// Sizes of 1, primes, `B * H` below, at and past the 64-unit workgroup.
const SHAPES: [(usize, usize, usize, usize); 6] = [
    (1, 1, 1, 1),
    (3, 2, 5, 7),
    (6, 5, 3, 17),
    (2, 1, 40, 64),
    (4, 3, 11, 67),
    (12, 2, 3, 5),
];

#[test]
fn gru_matches_reference() {
    for (n, &(t, b, i, h)) in SHAPES.iter().enumerate() {
        let o = Options {
            given_h0: n % 2 == 1,
            want_dh0: n % 3 != 2,
            want_dx: n % 3 != 1,
        };
        run(GruShape::new(t, b, i, h), o, n as u64);
    }
}

#[test]
fn gru_initial_state_with_and_without_its_gradient() {
    let shape = GruShape::new(4, 3, 2, 5);
    for (n, (given_h0, want_dh0)) in [(true, true), (true, false), (false, true), (false, false)]
        .into_iter()
        .enumerate()
    {
        let o = Options {
            given_h0,
            want_dh0,
            want_dx: n % 2 == 0,
        };
        run(shape, o, 20 + n as u64);
    }
}

/// The SANAS controller's layer: input 128, hidden 100, batch 64.
#[test]
fn gru_at_the_controller_shape() {
    let o = Options {
        given_h0: true,
        want_dh0: true,
        want_dx: true,
    };
    run(GruShape::new(3, 64, 128, 100), o, 40);
}

/// No steps, no batch or no hidden units: nothing to run, and the
/// gradients asked for come back zero.
#[test]
fn gru_empty_sizes_give_zero_gradients() {
    let gpu = Gpu::shared();
    for (t, b, i, h) in [(0, 2, 3, 4), (2, 0, 3, 4), (2, 3, 4, 0)] {
        let shape = GruShape::new(t, b, i, h);
        let state = GruState::new(gpu, shape).unwrap();
        let z = |shape: &[usize]| gpu.zeros(shape).unwrap();
        let nan = |shape: &[usize]| gpu.full(shape, f32::NAN).unwrap();
        let (w_ih, w_hh, b_ih, b_hh) = (z(&[3 * h, i]), z(&[3 * h, h]), z(&[3 * h]), z(&[3 * h]));
        let weights = GruWeights {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        let (x, h0, out, dout) = (z(&[t, b, i]), z(&[b, h]), z(&[t, b, h]), z(&[t, b, h]));
        let (dx, dw_ih, dw_hh, db_ih, db_hh, dh0) = (
            nan(&[t, b, i]),
            nan(&[3 * h, i]),
            nan(&[3 * h, h]),
            nan(&[3 * h]),
            nan(&[3 * h]),
            nan(&[b, h]),
        );
        let grads = GruGrads {
            dx: Some(&dx),
            dw_ih: &dw_ih,
            dw_hh: &dw_hh,
            db_ih: &db_ih,
            db_hh: &db_hh,
            dh0: Some(&dh0),
        };
        let mut rec = gpu.recorder();
        gru_forward(&mut rec, &state, &weights, &x, Some(&h0), &out).unwrap();
        gru_backward(&mut rec, &state, &weights, &x, &dout, &grads).unwrap();
        rec.submit_and_wait().unwrap();
        for (name, g) in [
            ("dx", &dx),
            ("dw_ih", &dw_ih),
            ("dw_hh", &dw_hh),
            ("db_ih", &db_ih),
            ("db_hh", &db_hh),
            ("dh0", &dh0),
        ] {
            // Downloading an empty tensor panics (a misaligned empty
            // byte vector cast to f32), so only the others are read.
            if g.is_empty() {
                continue;
            }
            let got = down(g);
            assert!(
                got.iter().all(|&v| v == 0.0),
                "{shape:?} {name}: {got:?}, expected zeros"
            );
        }
    }
}

/// The reference backward against finite differences of the reference
/// forward, for `loss = sum(probe * hs)`, in every input and parameter.
#[test]
fn gru_backward_reference_matches_finite_differences() {
    let shape = GruShape::new(3, 2, 3, 2);
    let c = case(shape, true, 30);
    let probe = to_f64(&Rng::new(31).vec_uniform(3 * 2 * 2, -1.0, 1.0));
    let loss = |w: &GruReferenceWeights, x: &[f64], h0: &[f64]| {
        let trace = gru_forward_reference(&shape, w, x, h0);
        trace.hs.iter().zip(&probe).map(|(a, b)| a * b).sum::<f64>()
    };
    let trace = gru_forward_reference(&shape, &c.w, &c.x, &c.h0);
    let g = gru_backward_reference(&shape, &c.w, &c.x, &c.h0, &trace, &probe);
    let (atol, rtol) = (1e-8, 1e-6);
    assert_gradient("dx", &c.x, &g.dx, |x| loss(&c.w, x, &c.h0), atol, rtol);
    assert_gradient("dh0", &c.h0, &g.dh0, |h0| loss(&c.w, &c.x, h0), atol, rtol);
    let with = |f: &dyn Fn(&mut GruReferenceWeights)| {
        let mut w = c.w.clone();
        f(&mut w);
        loss(&w, &c.x, &c.h0)
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
        "db_ih",
        &c.w.b_ih,
        &g.db_ih,
        |v| with(&|w| w.b_ih = v.to_vec()),
        atol,
        rtol,
    );
    assert_gradient(
        "db_hh",
        &c.w.b_hh,
        &g.db_hh,
        |v| with(&|w| w.b_hh = v.to_vec()),
        atol,
        rtol,
    );
}

#[test]
fn gru_rejects_mismatched_tensors() {
    let gpu = Gpu::shared();
    let shape = GruShape::new(2, 3, 4, 5);
    let state = GruState::new(gpu, shape).unwrap();
    let z = |shape: &[usize]| gpu.zeros(shape).unwrap();
    let (w_ih, w_hh, b_ih, b_hh) = (z(&[15, 4]), z(&[15, 5]), z(&[15]), z(&[15]));
    let weights = GruWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let (x, out, dout) = (z(&[2, 3, 4]), z(&[2, 3, 5]), z(&[2, 3, 5]));
    let forward_error = |weights: &GruWeights, x: &Tensor, h0: Option<&Tensor>, out: &Tensor| {
        gru_forward(&mut gpu.recorder(), &state, weights, x, h0, out)
            .unwrap_err()
            .to_string()
    };
    let expect = |err: String, want: &str| assert!(err.contains(want), "{err}");

    let bad_w_hh = z(&[15, 4]);
    let bad = GruWeights {
        w_hh: &bad_w_hh,
        ..weights
    };
    expect(
        forward_error(&bad, &x, None, &out),
        "gru: w_hh has shape [15, 4], expected [15, 5]",
    );
    let bad_b_hh = z(&[20]);
    let bad = GruWeights {
        b_hh: &bad_b_hh,
        ..weights
    };
    expect(
        forward_error(&bad, &x, None, &out),
        "b_hh has shape [20], expected [15]",
    );
    expect(
        forward_error(&weights, &z(&[2, 3, 5]), None, &out),
        "x has shape [2, 3, 5]",
    );
    expect(
        forward_error(&weights, &x, Some(&z(&[5, 3])), &out),
        "h0 has shape [5, 3]",
    );
    expect(
        forward_error(&weights, &x, None, &z(&[3, 5])),
        "out has shape [3, 5]",
    );

    let (dw_ih, dw_hh, db_ih, db_hh) = (z(&[15, 4]), z(&[15, 5]), z(&[15]), z(&[15]));
    let grads = GruGrads {
        dx: None,
        dw_ih: &dw_ih,
        dw_hh: &dw_hh,
        db_ih: &db_ih,
        db_hh: &db_hh,
        dh0: None,
    };
    let backward_error = |dout: &Tensor, grads: &GruGrads| {
        gru_backward(&mut gpu.recorder(), &state, &weights, &x, dout, grads)
            .unwrap_err()
            .to_string()
    };
    expect(backward_error(&z(&[3, 5]), &grads), "dout has shape [3, 5]");
    let bad_db = z(&[5]);
    expect(
        backward_error(
            &dout,
            &GruGrads {
                db_ih: &bad_db,
                ..grads
            },
        ),
        "db_ih has shape [5]",
    );
    let bad_dx = z(&[2, 3, 5]);
    expect(
        backward_error(
            &dout,
            &GruGrads {
                dx: Some(&bad_dx),
                ..grads
            },
        ),
        "dx has shape [2, 3, 5]",
    );
    let bad_dh0 = z(&[3, 4]);
    expect(
        backward_error(
            &dout,
            &GruGrads {
                dh0: Some(&bad_dh0),
                ..grads
            },
        ),
        "dh0 has shape [3, 4]",
    );
}

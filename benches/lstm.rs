//! LSTM layer (`shaders/lstm.wgsl` plus gemms) at input 40, hidden 128,
//! 98 steps, batch 64, forward and forward+backward, in GFLOP/s of its
//! products (criterion's elements/s, one element = one FLOP). Beside it the
//! gemm kernel at the same FLOPs in one product (M = T * B, N = 4H,
//! K = I + H: the forward's products side by side), for the ratio the target
//! speaks of, the recurrent products alone (98 gemms of 64 x 512 x 128), and
//! the CPU reference. Then the GRU layer (`shaders/gru.wgsl` plus gemms) at
//! the same shape, forward and forward+backward, and its CPU reference.
//!
//! `cargo bench --bench lstm -- --noplot`; `AUDIONAS_BENCH_GPU_ONLY=1` skips
//! the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows};

use audionas::gpu::Gpu;
use audionas::kernels::check::to_f64;
use audionas::kernels::gemm::{gemm, Gemm};
use audionas::kernels::gru::*;
use audionas::kernels::lstm::*;
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench_lstm(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let shape = LstmShape::new(98, 64, 40, 128);
    let LstmShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let mut rng = Rng::new(1);
    let scale = 1.0 / (h as f32).sqrt();
    let w_ih_data = rng.vec_uniform(4 * h * i, -scale, scale);
    let w_hh_data = rng.vec_uniform(4 * h * h, -scale, scale);
    let bias_data = rng.vec_uniform(4 * h, -scale, scale);
    let x_data = rng.vec_uniform(t * b * i, -1.0, 1.0);
    let w_ih = gpu.upload(&[4 * h, i], &w_ih_data).unwrap();
    let w_hh = gpu.upload(&[4 * h, h], &w_hh_data).unwrap();
    let bias = gpu.upload(&[4 * h], &bias_data).unwrap();
    let x = gpu.upload(&[t, b, i], &x_data).unwrap();
    let weights = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        bias: &bias,
    };
    let state = LstmState::new(gpu, shape).unwrap();
    let out = gpu.zeros(&[t, b, h]).unwrap();
    let dout = gpu.full(&[t, b, h], 0.01).unwrap();
    let dx = gpu.zeros(&[t, b, i]).unwrap();
    let dw_ih = gpu.zeros(&[4 * h, i]).unwrap();
    let dw_hh = gpu.zeros(&[4 * h, h]).unwrap();
    let dbias = gpu.zeros(&[4 * h]).unwrap();
    let grads = LstmGrads {
        dx: Some(&dx),
        dw_ih: &dw_ih,
        dw_hh: &dw_hh,
        dbias: &dbias,
        dinitial: None,
    };
    let all = LstmOutput::AllStates;

    let mut group = c.benchmark_group("lstm/T98_B64_I40_H128");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(shape.forward_flops() as u64));
    bench_gpu(&mut group, "forward", 1, |rec| {
        lstm_forward(rec, &state, &weights, &x, None, all, &out).unwrap();
    });
    // The gemm kernel on the forward's FLOPs in one product.
    let spec = Gemm::new(t * b, 4 * h, i + h).trans_b(true);
    let a = gpu.full(&[spec.a_len()], 0.5).unwrap();
    let bm = gpu.full(&[spec.b_len()], 0.5).unwrap();
    let cm = gpu.zeros(&[spec.c_len()]).unwrap();
    bench_gpu(&mut group, "gemm_same_flops_as_forward", 1, |rec| {
        gemm(rec, &spec, &a, &bm, &cm).unwrap();
    });
    // The forward's recurrent products alone: one small gemm per step.
    let step = Gemm::new(b, 4 * h, h).trans_b(true);
    let (sa, sb, sc) = (
        gpu.full(&[step.a_len()], 0.5).unwrap(),
        gpu.full(&[step.b_len()], 0.5).unwrap(),
        gpu.zeros(&[step.c_len()]).unwrap(),
    );
    group.throughput(Throughput::Elements((step.flops() * t as f64) as u64));
    bench_gpu(&mut group, "gemm_recurrent_steps", 1, |rec| {
        for _ in 0..t {
            gemm(rec, &step, &sa, &sb, &sc).unwrap();
        }
    });
    group.throughput(Throughput::Elements(
        (shape.forward_flops() + shape.backward_flops()) as u64,
    ));
    bench_gpu(&mut group, "forward_backward", 1, |rec| {
        lstm_forward(rec, &state, &weights, &x, None, all, &out).unwrap();
        lstm_backward(rec, &state, &weights, &x, all, &dout, &grads).unwrap();
    });
    if cpu_rows() {
        group.throughput(Throughput::Elements(shape.forward_flops() as u64));
        let w = LstmReferenceWeights {
            w_ih: to_f64(&w_ih_data),
            w_hh: to_f64(&w_hh_data),
            bias: to_f64(&bias_data),
        };
        let x64 = to_f64(&x_data);
        let zeros = vec![0.0; b * h];
        group.bench_function("cpu_reference_forward", |bench| {
            bench.iter(|| lstm_forward_reference(&shape, &w, &x64, &zeros, &zeros))
        });
    }
    group.finish();
}

fn bench_gru(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let shape = GruShape::new(98, 64, 40, 128);
    let GruShape {
        time: t,
        batch: b,
        input: i,
        hidden: h,
    } = shape;
    let mut rng = Rng::new(1);
    let scale = 1.0 / (h as f32).sqrt();
    let w_ih_data = rng.vec_uniform(3 * h * i, -scale, scale);
    let w_hh_data = rng.vec_uniform(3 * h * h, -scale, scale);
    let b_ih_data = rng.vec_uniform(3 * h, -scale, scale);
    let b_hh_data = rng.vec_uniform(3 * h, -scale, scale);
    let x_data = rng.vec_uniform(t * b * i, -1.0, 1.0);
    let w_ih = gpu.upload(&[3 * h, i], &w_ih_data).unwrap();
    let w_hh = gpu.upload(&[3 * h, h], &w_hh_data).unwrap();
    let b_ih = gpu.upload(&[3 * h], &b_ih_data).unwrap();
    let b_hh = gpu.upload(&[3 * h], &b_hh_data).unwrap();
    let x = gpu.upload(&[t, b, i], &x_data).unwrap();
    let weights = GruWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let state = GruState::new(gpu, shape).unwrap();
    let out = gpu.zeros(&[t, b, h]).unwrap();
    let dout = gpu.full(&[t, b, h], 0.01).unwrap();
    let dx = gpu.zeros(&[t, b, i]).unwrap();
    let dw_ih = gpu.zeros(&[3 * h, i]).unwrap();
    let dw_hh = gpu.zeros(&[3 * h, h]).unwrap();
    let db_ih = gpu.zeros(&[3 * h]).unwrap();
    let db_hh = gpu.zeros(&[3 * h]).unwrap();
    let grads = GruGrads {
        dx: Some(&dx),
        dw_ih: &dw_ih,
        dw_hh: &dw_hh,
        db_ih: &db_ih,
        db_hh: &db_hh,
        dh0: None,
    };

    let mut group = c.benchmark_group("gru/T98_B64_I40_H128");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(shape.forward_flops() as u64));
    bench_gpu(&mut group, "forward", 1, |rec| {
        gru_forward(rec, &state, &weights, &x, None, &out).unwrap();
    });
    group.throughput(Throughput::Elements(
        (shape.forward_flops() + shape.backward_flops()) as u64,
    ));
    bench_gpu(&mut group, "forward_backward", 1, |rec| {
        gru_forward(rec, &state, &weights, &x, None, &out).unwrap();
        gru_backward(rec, &state, &weights, &x, &dout, &grads).unwrap();
    });
    if cpu_rows() {
        group.throughput(Throughput::Elements(shape.forward_flops() as u64));
        let w = GruReferenceWeights {
            w_ih: to_f64(&w_ih_data),
            w_hh: to_f64(&w_hh_data),
            b_ih: to_f64(&b_ih_data),
            b_hh: to_f64(&b_hh_data),
        };
        let x64 = to_f64(&x_data);
        let zeros = vec![0.0; b * h];
        group.bench_function("cpu_reference_forward", |bench| {
            bench.iter(|| gru_forward_reference(&shape, &w, &x64, &zeros))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lstm, bench_gru);
criterion_main!(benches);

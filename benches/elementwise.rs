//! Elementwise kernels (`shaders/elementwise.wgsl`) in GB/s of memory traffic
//! (bytes read + written per launch) over 1M elements, beside the CPU references.
//!
//! `cargo bench --bench elementwise`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::elementwise::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

const LEN: usize = 1 << 20;

fn group<'c>(c: &'c mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'c, WallTime> {
    common::group(
        c,
        &format!("elementwise/{name}"),
        Throughput::Bytes(bytes as u64),
        2,
    )
}

fn bench_elementwise(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = cpu_rows();
    let mut rng = Rng::new(3);
    let a = rng.vec_uniform(LEN, -2.0, 2.0);
    let b = rng.vec_uniform(LEN, -2.0, 2.0);
    let ta = gpu.upload(&[LEN], &a).unwrap();
    let tb = gpu.upload(&[LEN], &b).unwrap();
    let tout = gpu.zeros(&[LEN]).unwrap();
    let elt = 4 * LEN;

    let mut g = group(c, "add_1M", 3 * elt);
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        add(rec, &ta, &tb, &tout).unwrap()
    });
    if cpu {
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| add_reference(&a, &b))
        });
    }
    g.finish();

    // 64 samples of 16384 values each, every third one gated off.
    let factors: Vec<f32> = (0..64)
        .map(|b| if b % 3 == 1 { 0.0 } else { 1.0 })
        .collect();
    let tx = gpu.upload(&[64, LEN / 64], &a).unwrap();
    let tf = gpu.upload(&[64], &factors).unwrap();
    let ty = gpu.zeros(&[64, LEN / 64]).unwrap();
    let mut g = group(c, "scale_samples_1M", 2 * elt);
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        scale_samples(rec, &tx, &tf, &ty).unwrap()
    });
    if cpu {
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| scale_samples_reference(&a, &factors))
        });
    }
    g.finish();

    let mut g = group(c, "axpy_1M", 3 * elt);
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        axpy(rec, 1e-3, &ta, &tout).unwrap()
    });
    if cpu {
        let mut y = b.clone();
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| axpy_reference(1e-3, &a, &mut y))
        });
    }
    g.finish();

    // The same update scaled by a GPU scalar (second-order DARTS's 1 / norm).
    let ts = gpu.full(&[1], 4.0).unwrap();
    let mut g = group(c, "axpy_by_1M", 3 * elt);
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        axpy_by(rec, 1e-3, &ts, ByScalar::Over, &ta, &tout).unwrap()
    });
    if cpu {
        let mut y = b.clone();
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| axpy_by_reference(1e-3, 4.0, ByScalar::Over, &a, &mut y))
        });
    }
    g.finish();

    for f in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        let mut g = group(c, &format!("{f:?}_forward_1M"), 2 * elt);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            activation(rec, f, &ta, &tout).unwrap()
        });
        if cpu {
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| activation_reference(f, &a))
            });
        }
        g.finish();
        let mut g = group(c, &format!("{f:?}_backward_1M"), 3 * elt);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            activation_backward(rec, f, &ta, &tb, &tout).unwrap()
        });
        if cpu {
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| activation_backward_reference(f, &a, &b))
            });
        }
        g.finish();
    }

    // A dense layer's bias at batch 64 x 1024 features (64K elements), and a
    // conv layer's at batch 64, 64 channels, 256 positions (1M elements).
    for (name, layout) in [
        ("rows_64x1024", BiasLayout::rows(64, 1024)),
        ("channels_64x64x256", BiasLayout::channels(64, 64, 256)),
    ] {
        let x = gpu.zeros(&[layout.len()]).unwrap();
        let bias = gpu.zeros(&[layout.channels]).unwrap();
        let dy = rng.vec_uniform(layout.len(), -1.0, 1.0);
        let tdy = gpu.upload(&[layout.len()], &dy).unwrap();
        let mut g = group(c, &format!("bias_add_{name}"), 2 * 4 * layout.len());
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            bias_add(rec, &layout, &x, &bias).unwrap()
        });
        if cpu {
            let mut xc = dy.clone();
            let bc = vec![0.5f32; layout.channels];
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| bias_add_reference(&layout, &mut xc, &bc))
            });
        }
        g.finish();
        let mut g = group(c, &format!("bias_backward_{name}"), 4 * layout.len());
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            bias_backward(rec, &layout, &tdy, &bias).unwrap()
        });
        if cpu {
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| bias_backward_reference(&layout, &dy))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_elementwise);
criterion_main!(benches);

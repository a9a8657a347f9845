//! Reductions (`shaders/reductions.wgsl`) in GB/s of input read per launch:
//! sums over an axis (a batch sum and per-row sums) and the global L2 norm of
//! a list of gradient-like tensors, beside the CPU references.
//!
//! `cargo bench --bench reductions`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

use audionas::gpu::{Gpu, Recorder};
use audionas::kernels::reductions::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::time::{Duration, Instant};

/// Launches recorded into one submit, as a training step records many.
const DISPATCHES_PER_SUBMIT: u64 = 16;

/// Times `record` on the GPU: one warm-up (pipeline compilation), then
/// `iters` launches in submits of `DISPATCHES_PER_SUBMIT`.
fn bench_gpu(group: &mut BenchmarkGroup<WallTime>, record: impl Fn(&mut Recorder)) {
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit_and_wait().unwrap();
    group.bench_function("wgpu", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(DISPATCHES_PER_SUBMIT);
                let mut rec = gpu.recorder();
                for _ in 0..n {
                    record(&mut rec);
                }
                rec.submit_and_wait().unwrap();
                left -= n;
            }
            start.elapsed()
        })
    });
}

fn group<'c>(c: &'c mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(format!("reductions/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group
}

fn bench_reductions(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_none();
    let mut rng = Rng::new(5);

    for (name, spec) in [
        ("batch_sum_256x4096", AxisSum::new(1, 256, 4096)),
        ("row_sums_4096x256", AxisSum::new(4096, 256, 1)),
        ("spatial_sums_64x64x256", AxisSum::new(64 * 64, 256, 1)),
    ] {
        let x = rng.vec_uniform(spec.in_len(), -1.0, 1.0);
        let tx = gpu.upload(&[spec.in_len()], &x).unwrap();
        let out = gpu.zeros(&[spec.out_len()]).unwrap();
        let mut g = group(c, &format!("sum_axis_{name}"), 4 * spec.in_len());
        bench_gpu(&mut g, |rec| sum_axis(rec, &spec, &tx, &out).unwrap());
        if cpu {
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| sum_axis_reference(&spec, &x))
            });
        }
        g.finish();
    }

    // The parameter gradients of a small KWS network: conv kernels, biases,
    // a dense layer; about 1.1M values in 12 tensors (two partial dispatches).
    let lens = [
        10 * 4 * 64,
        64,
        3 * 3 * 64,
        64,
        64 * 64,
        64,
        3 * 3 * 64,
        64,
        64 * 64,
        64,
        1 << 20,
        12,
    ];
    let data: Vec<Vec<f32>> = lens
        .iter()
        .map(|&n| rng.vec_uniform(n, -1.0, 1.0))
        .collect();
    let tensors: Vec<_> = data
        .iter()
        .map(|d| gpu.upload(&[d.len()], d).unwrap())
        .collect();
    let refs: Vec<_> = tensors.iter().collect();
    let plan = SquaresPlan::new(gpu, &lens).unwrap();
    let norm = gpu.zeros(&[1]).unwrap();
    let total: usize = lens.iter().sum();
    let mut g = group(c, "global_norm_12_tensors_1.1M", 4 * total);
    bench_gpu(&mut g, |rec| plan.global_norm(rec, &refs, &norm).unwrap());
    if cpu {
        let slices: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| global_norm_reference(&slices))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_reductions);
criterion_main!(benches);

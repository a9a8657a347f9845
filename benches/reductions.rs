//! Reductions (`shaders/reductions.wgsl`) in GB/s of input read per launch:
//! sums over an axis (a batch sum and per-row sums) and the global L2 norm of
//! a list of gradient-like tensors, beside the CPU references.
//!
//! `cargo bench --bench reductions`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::reductions::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

fn group<'c>(c: &'c mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'c, WallTime> {
    common::group(
        c,
        &format!("reductions/{name}"),
        Throughput::Bytes(bytes as u64),
        2,
    )
}

fn bench_reductions(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = cpu_rows();
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
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            sum_axis(rec, &spec, &tx, &out).unwrap()
        });
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
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        plan.global_norm(rec, &refs, &norm).unwrap()
    });
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

//! What the criterion benches share: their group settings, the switch that
//! leaves out the CPU rows, and timing recorded GPU work.
#![allow(dead_code)] // each bench uses its own part of this

use audionas::gpu::{Gpu, Recorder};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use std::time::{Duration, Instant};

/// Launches recorded into one submit, as a training step records many.
pub const KERNELS_PER_SUBMIT: u64 = 16;

/// False when `AUDIONAS_BENCH_GPU_ONLY` is set: the benches then skip the
/// (slow) CPU reference rows.
pub fn cpu_rows() -> bool {
    std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_none()
}

/// A group of ten samples over `seconds`, reporting `throughput`.
pub fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    throughput: Throughput,
    seconds: u64,
) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(throughput);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(seconds));
    group
}

/// Times `record` on the GPU: one untimed run that compiles the pipelines,
/// then `iters` runs, `per_submit` of them recorded into each submit.
pub fn bench_gpu(
    group: &mut BenchmarkGroup<WallTime>,
    name: &str,
    per_submit: u64,
    mut record: impl FnMut(&mut Recorder),
) {
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit_and_wait().unwrap();
    group.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(per_submit);
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

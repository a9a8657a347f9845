//! Mixed edge (`shaders/mixed_edge.wgsl`) in GB/s at K = 8 candidates over
//! 64x16x49x20, beside an elementwise pass (`elementwise::scale`) moving the
//! same bytes and the CPU reference.
//!
//! `cargo bench --bench mixed_complex -- --noplot`; `AUDIONAS_BENCH_GPU_ONLY=1`
//! skips the CPU rows.

use audionas::gpu::{Gpu, Recorder};
use audionas::kernels::check::to_f64;
use audionas::kernels::elementwise::scale;
use audionas::kernels::mixed_edge::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::time::{Duration, Instant};

fn gpu_only() -> bool {
    std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_some()
}

fn configure(group: &mut BenchmarkGroup<WallTime>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
}

/// Times `record` on the GPU: one recording and one submit per iteration,
/// after a warm-up run that compiles the pipelines.
fn bench_gpu(
    group: &mut BenchmarkGroup<WallTime>,
    name: &str,
    mut record: impl FnMut(&mut Recorder),
) {
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit_and_wait().unwrap();
    group.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut rec = gpu.recorder();
                record(&mut rec);
                rec.submit_and_wait().unwrap();
            }
            start.elapsed()
        })
    });
}

fn bench_mixed_edge(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let k = 8;
    let shape = [64, 16, 49, 20];
    let n: usize = shape.iter().product();
    let x_shape = [k, 64, 16, 49, 20];
    let mut rng = Rng::new(1);
    let alpha = rng.vec_uniform(k, -1.0, 1.0);
    let x = rng.vec_uniform(k * n, -1.0, 1.0);
    let dy = rng.vec_uniform(n, -1.0, 1.0);
    let t_alpha = gpu.upload(&[1, k], &alpha).unwrap();
    let t_w = gpu.zeros(&[1, k]).unwrap();
    let t_x = gpu.upload(&x_shape, &x).unwrap();
    let t_y = gpu.zeros(&shape).unwrap();
    let t_dy = gpu.upload(&shape, &dy).unwrap();
    let t_dx = gpu.zeros(&x_shape).unwrap();
    let t_dw = gpu.zeros(&[1, k]).unwrap();
    let t_dalpha = gpu.zeros(&[1, k]).unwrap();
    let scratch = gpu.empty(&backward_scratch_shape(&x_shape)).unwrap();

    // Forward reads K candidates and writes y; backward reads dy and the
    // candidates and writes K gradients.
    let forward_bytes = ((k + 1) * n * 4) as u64;
    let both_bytes = ((3 * k + 2) * n * 4) as u64;

    let mut group = c.benchmark_group("mixed_edge/K8_64x16x49x20");
    configure(&mut group);
    group.throughput(Throughput::Bytes(forward_bytes));
    bench_gpu(&mut group, "forward", |rec| {
        mixed_edge_weights(rec, EdgeWeighting::Softmax, &t_alpha, &t_w).unwrap();
        mixed_edge_forward(rec, &t_w, 0, &t_x, &t_y).unwrap();
    });
    group.throughput(Throughput::Bytes(both_bytes));
    bench_gpu(&mut group, "forward_backward", |rec| {
        mixed_edge_weights(rec, EdgeWeighting::Softmax, &t_alpha, &t_w).unwrap();
        mixed_edge_forward(rec, &t_w, 0, &t_x, &t_y).unwrap();
        mixed_edge_backward(rec, &t_w, 0, &t_x, &t_dy, &t_dx, &t_dw, &scratch).unwrap();
        mixed_edge_alpha_backward(rec, EdgeWeighting::Softmax, &t_w, &t_dw, &t_dalpha, false)
            .unwrap();
    });
    // The elementwise anchor: `scale` reads and writes each element once, so
    // it moves the same bytes over half as many elements.
    let t_same_bytes = gpu.zeros(&[both_bytes as usize / 8]).unwrap();
    bench_gpu(&mut group, "elementwise_scale_same_bytes", |rec| {
        scale(rec, &t_same_bytes, 1.0).unwrap();
    });
    if !gpu_only() {
        let w = weights_reference(EdgeWeighting::Softmax, &to_f64(&alpha), k);
        let (x64, dy64) = (to_f64(&x), to_f64(&dy));
        group.bench_function("cpu_reference", |bench| {
            bench.iter(|| {
                let y = forward_reference(&w, &x64);
                let (dx, dw) = backward_reference(&w, &x64, &dy64);
                (y, dx, dw)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mixed_edge);
criterion_main!(benches);

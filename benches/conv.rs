//! conv2d (`shaders/conv2d.wgsl`, one-group layers through `shaders/im2col.wgsl`
//! and the gemm kernel) in GFLOP/s (criterion reports elements/s,
//! one element = one FLOP of the forward pass; each backward does as many
//! useful FLOPs) at the layers of cnn-trad-fpool3 and DS-CNN, forward,
//! backward to the input and backward to the weights (with the bias), beside
//! the gemm kernel at the same FLOPs: the product the forward lowers to, as
//! (M, N, K) per image. The CPU reference runs one image of the
//! same layer (whole batches take seconds per iteration in plain loops).
//!
//! `cargo bench --bench conv`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

use audionas::gpu::{Gpu, Recorder};
use audionas::kernels::check::to_f64;
use audionas::kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, conv2d_forward_reference, Conv2d,
};
use audionas::kernels::gemm::{gemm, Gemm};
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::time::{Duration, Instant};

struct Layer {
    name: &'static str,
    spec: Conv2d,
}

fn layers() -> Vec<Layer> {
    vec![
        Layer {
            name: "trad_conv1_1x98x40_64f_20x8",
            spec: Conv2d::new(64, 1, 64, [98, 40], [20, 8]),
        },
        Layer {
            name: "trad_conv2_64x79x11_64f_10x4",
            spec: Conv2d::new(64, 64, 64, [79, 11], [10, 4]),
        },
        Layer {
            name: "dscnn_depthwise_64x25x5_3x3",
            spec: Conv2d::new(64, 64, 64, [25, 5], [3, 3])
                .padding(1, 1)
                .groups(64),
        },
        Layer {
            name: "dscnn_pointwise_64x25x5_1x1",
            spec: Conv2d::new(64, 64, 64, [25, 5], [1, 1]),
        },
    ]
}

/// Times `iters` runs of `record`, several per submit as a training step
/// records many, after one untimed run that compiles the pipelines.
fn time_gpu(gpu: &Gpu, iters: u64, record: &dyn Fn(&mut Recorder)) -> Duration {
    const PER_SUBMIT: u64 = 4;
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(PER_SUBMIT);
        let mut rec = gpu.recorder();
        for _ in 0..n {
            record(&mut rec);
        }
        rec.submit_and_wait().unwrap();
        left -= n;
    }
    start.elapsed()
}

fn bench_gpu(
    group: &mut BenchmarkGroup<criterion::measurement::WallTime>,
    gpu: &Gpu,
    name: &str,
    record: &dyn Fn(&mut Recorder),
) {
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit_and_wait().unwrap();
    group.bench_function(name, |bench| {
        bench.iter_custom(|iters| time_gpu(gpu, iters, record))
    });
}

fn bench_conv2d(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let gpu_only = std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_some();
    for Layer { name, spec } in layers() {
        let mut rng = Rng::new(3);
        let x = rng.vec_uniform(spec.input_len(), -1.0, 1.0);
        let w = rng.vec_uniform(spec.weight_len(), -1.0, 1.0);
        let tx = gpu.upload(&spec.input_shape(), &x).unwrap();
        let tw = gpu.upload(&spec.weight_shape(), &w).unwrap();
        let tb = gpu.zeros(&[spec.out_channels]).unwrap();
        let ty = gpu.zeros(&spec.output_shape()).unwrap();
        let tdy = gpu.full(&spec.output_shape(), 0.5).unwrap();
        let tdx = gpu.zeros(&spec.input_shape()).unwrap();
        let tdw = gpu.zeros(&spec.weight_shape()).unwrap();
        let tdb = gpu.zeros(&[spec.out_channels]).unwrap();

        let mut group = c.benchmark_group(format!("conv2d/{name}"));
        group.throughput(Throughput::Elements(spec.flops() as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_secs(2));

        bench_gpu(&mut group, gpu, "forward", &|rec| {
            conv2d_forward(rec, &spec, &tx, &tw, Some(&tb), &ty).unwrap()
        });
        bench_gpu(&mut group, gpu, "backward_input", &|rec| {
            conv2d_backward_input(rec, &spec, &tdy, &tw, &tdx).unwrap()
        });
        bench_gpu(&mut group, gpu, "backward_weight_and_bias", &|rec| {
            conv2d_backward_weight(rec, &spec, &tdy, &tx, &tdw, Some(&tdb)).unwrap()
        });

        // The yardstick: gemm at the same FLOPs, as the per-image product
        // the forward lowers to (M, N, K); every pass does as many FLOPs.
        // One B serves every image so that the im2col-sized operand fits.
        let (m, n, k) = spec.gemm_shape();
        let equivalent = Gemm::new(m, n, k)
            .batch(spec.batch * spec.groups)
            .shared_a()
            .shared_b();
        let a = gpu.full(&[equivalent.a_len()], 0.25).unwrap();
        let b = gpu.full(&[equivalent.b_len()], 0.5).unwrap();
        let c = gpu.zeros(&[equivalent.c_len()]).unwrap();
        bench_gpu(&mut group, gpu, "gemm_same_flops", &|rec| {
            gemm(rec, &equivalent, &a, &b, &c).unwrap()
        });

        if !gpu_only {
            let one = Conv2d { batch: 1, ..spec };
            let x1 = to_f64(&x[..one.input_len()]);
            let w64 = to_f64(&w);
            group.throughput(Throughput::Elements(one.flops() as u64));
            group.bench_function("cpu_reference_forward_one_image", |bench| {
                bench.iter(|| conv2d_forward_reference(&one, &x1, &w64, None))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_conv2d);
criterion_main!(benches);

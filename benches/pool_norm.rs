//! Pooling (`shaders/pool.wgsl`) and batch norm (`shaders/batchnorm.wgsl`)
//! in GB/s of compulsory traffic (every tensor read or written once), beside
//! the CPU references, at the shapes the models use: cnn-trad-fpool3's 1x3
//! max pool, the DARTS 3x3 pools, global average pooling before the
//! classifier, and batch norm on DS-CNN and DARTS cell activations.
//!
//! `cargo bench --bench pool_norm`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

use audionas::gpu::{Gpu, Recorder};
use audionas::kernels::batchnorm::{
    batch_norm_infer_backward, batch_norm_infer_forward, batch_norm_train_backward,
    batch_norm_train_backward_reference, batch_norm_train_forward,
    batch_norm_train_forward_reference, Affine, AffineGrads, BatchNorm, Running,
};
use audionas::kernels::check::to_f64;
use audionas::kernels::complex_norm::{
    complex_batch_norm_train_backward, complex_batch_norm_train_backward_reference,
    complex_batch_norm_train_forward, complex_batch_norm_train_forward_reference, saved_shape,
    ComplexAffine, ComplexAffineGrads, ComplexBatchNorm, ComplexRunning,
};
use audionas::kernels::pool::{
    avg_pool2d_backward, avg_pool2d_forward, avg_pool2d_reference, global_avg_pool_backward,
    global_avg_pool_forward, max_pool2d_backward, max_pool2d_forward, max_pool2d_reference, Pool2d,
};
use audionas::util::rng::Rng;
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion, Throughput,
};
use std::time::{Duration, Instant};

/// Dispatches recorded into one submit, as a training step records many.
const PER_SUBMIT: u64 = 16;

fn bench_gpu(
    group: &mut BenchmarkGroup<WallTime>,
    gpu: &Gpu,
    name: &str,
    bytes: usize,
    record: &dyn Fn(&mut Recorder),
) {
    let mut rec = gpu.recorder();
    record(&mut rec);
    rec.submit_and_wait().unwrap();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
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
        })
    });
}

fn configure(group: &mut BenchmarkGroup<WallTime>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
}

fn bench_pool(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let gpu_only = std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_some();
    let shapes = [
        (
            "trad_max_1x3_64x64x79x33",
            Pool2d::new(64, 64, [79, 33], [1, 3]),
        ),
        (
            "darts_3x3_s1_64x16x49x20",
            Pool2d::new(64, 16, [49, 20], [3, 3])
                .stride(1, 1)
                .padding(1, 1)
                .count_include_pad(false),
        ),
    ];
    for (name, spec) in shapes {
        let x = Rng::new(1).vec_uniform(spec.input_len(), -1.0, 1.0);
        let tx = gpu.upload(&spec.input_shape(), &x).unwrap();
        let ty = gpu.zeros(&spec.output_shape()).unwrap();
        let targ = gpu.upload_u32(&spec.output_shape(), &vec![0; spec.output_len()]);
        let targ = targ.unwrap();
        let tdy = gpu.full(&spec.output_shape(), 1.0).unwrap();
        let tdx = gpu.zeros(&spec.input_shape()).unwrap();
        let (inp, out) = (4 * spec.input_len(), 4 * spec.output_len());

        let mut group = c.benchmark_group(format!("pool/{name}"));
        configure(&mut group);
        bench_gpu(&mut group, gpu, "max_forward", inp + 2 * out, &|rec| {
            max_pool2d_forward(rec, &spec, &tx, &ty, &targ).unwrap()
        });
        bench_gpu(&mut group, gpu, "max_backward", 2 * out + inp, &|rec| {
            max_pool2d_backward(rec, &spec, &tdy, &targ, &tdx).unwrap()
        });
        bench_gpu(&mut group, gpu, "avg_forward", inp + out, &|rec| {
            avg_pool2d_forward(rec, &spec, &tx, &ty).unwrap()
        });
        bench_gpu(&mut group, gpu, "avg_backward", out + inp, &|rec| {
            avg_pool2d_backward(rec, &spec, &tdy, &tdx).unwrap()
        });
        if !gpu_only {
            let x64 = to_f64(&x);
            group.throughput(Throughput::Bytes((inp + out) as u64));
            group.bench_function("cpu_reference_max_forward", |bench| {
                bench.iter(|| max_pool2d_reference(&spec, &x64))
            });
            group.bench_function("cpu_reference_avg_forward", |bench| {
                bench.iter(|| avg_pool2d_reference(&spec, &x64))
            });
        }
        group.finish();
    }

    let shape = [64, 64, 25, 5];
    let len: usize = shape.iter().product();
    let tx = gpu.full(&shape, 1.0).unwrap();
    let ty = gpu.zeros(&shape[..2]).unwrap();
    let tdx = gpu.zeros(&shape).unwrap();
    let mut group = c.benchmark_group("pool/global_avg_64x64x25x5");
    configure(&mut group);
    bench_gpu(&mut group, gpu, "forward", 4 * len, &|rec| {
        global_avg_pool_forward(rec, &tx, &ty).unwrap()
    });
    bench_gpu(&mut group, gpu, "backward", 4 * len, &|rec| {
        global_avg_pool_backward(rec, &ty, &tdx).unwrap()
    });
    group.finish();
}

fn bench_batchnorm(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let gpu_only = std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_some();
    for (name, shape) in [
        ("dscnn_64x64x25x5", [64, 64, 25, 5]),
        ("darts_64x16x49x20", [64, 16, 49, 20]),
    ] {
        let spec = BatchNorm::for_shape(&shape).unwrap();
        let ch = spec.channels;
        let x = Rng::new(2).vec_uniform(spec.len(), -1.0, 1.0);
        let tx = gpu.upload(&shape, &x).unwrap();
        let ty = gpu.zeros(&shape).unwrap();
        let tdx = gpu.zeros(&shape).unwrap();
        let tg = gpu.full(&[ch], 1.0).unwrap();
        let tb = gpu.zeros(&[ch]).unwrap();
        let trm = gpu.zeros(&[ch]).unwrap();
        let trv = gpu.full(&[ch], 1.0).unwrap();
        let tsaved = gpu.zeros(&[2, ch]).unwrap();
        let tdg = gpu.zeros(&[ch]).unwrap();
        let tdb = gpu.zeros(&[ch]).unwrap();
        let running = Running {
            mean: &trm,
            var: &trv,
        };
        let affine = Some(Affine {
            gamma: &tg,
            beta: &tb,
        });
        let bytes = 4 * spec.len();

        let mut group = c.benchmark_group(format!("batchnorm/{name}"));
        configure(&mut group);
        bench_gpu(&mut group, gpu, "train_forward", 2 * bytes, &|rec| {
            batch_norm_train_forward(rec, &spec, &tx, affine, running, &ty, &tsaved).unwrap()
        });
        bench_gpu(
            &mut group,
            gpu,
            "train_forward_non_affine",
            2 * bytes,
            &|rec| batch_norm_train_forward(rec, &spec, &tx, None, running, &ty, &tsaved).unwrap(),
        );
        bench_gpu(&mut group, gpu, "infer_forward", 2 * bytes, &|rec| {
            batch_norm_infer_forward(rec, &spec, &tx, affine, running, &ty).unwrap()
        });
        let grads = Some(AffineGrads {
            gamma: &tg,
            dgamma: &tdg,
            dbeta: &tdb,
        });
        bench_gpu(&mut group, gpu, "train_backward", 3 * bytes, &|rec| {
            batch_norm_train_backward(rec, &spec, &tx, &ty, &tsaved, grads, &tdx).unwrap()
        });
        bench_gpu(&mut group, gpu, "infer_backward", 3 * bytes, &|rec| {
            batch_norm_infer_backward(rec, &spec, &tx, &ty, running, grads, &tdx).unwrap()
        });
        if !gpu_only {
            let x64 = to_f64(&x);
            let (mut rm, mut rv) = (vec![0.0; ch], vec![1.0; ch]);
            group.throughput(Throughput::Bytes(2 * bytes as u64));
            group.bench_function("cpu_reference_train_forward", |bench| {
                bench.iter(|| {
                    batch_norm_train_forward_reference(&spec, &x64, None, &mut rm, &mut rv)
                })
            });
        }
        group.finish();
    }
}

/// Complex batch norm beside the real one on the same `[batch, channels,
/// spatial]` shape (the complex input has twice the floats and a 2x2
/// whitening per channel): one training forward and backward each, in
/// values (real or complex) per second, so the rows compare per value.
fn bench_complex_batchnorm(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let gpu_only = std::env::var_os("AUDIONAS_BENCH_GPU_ONLY").is_some();
    let shape = [64, 16, 49, 20];
    let spec = BatchNorm::for_shape(&shape).unwrap();
    let cspec = ComplexBatchNorm::new(spec.batch, spec.channels, spec.spatial);
    let ch = spec.channels;
    let cshape = [64, 16, 49, 20, 2];
    let mut rng = Rng::new(3);
    let x = rng.vec_uniform(spec.len(), -1.0, 1.0);
    let cx = rng.vec_uniform(2 * cspec.len(), -1.0, 1.0);

    let tx = gpu.upload(&shape, &x).unwrap();
    let [ty, tdx] = [(); 2].map(|_| gpu.zeros(&shape).unwrap());
    let tg = gpu.full(&[ch], 1.0).unwrap();
    let [tb, trm, tdg, tdb] = [(); 4].map(|_| gpu.zeros(&[ch]).unwrap());
    let trv = gpu.full(&[ch], 1.0).unwrap();
    let tsaved = gpu.zeros(&[2, ch]).unwrap();
    let running = Running {
        mean: &trm,
        var: &trv,
    };
    let affine = Some(Affine {
        gamma: &tg,
        beta: &tb,
    });
    let grads = Some(AffineGrads {
        gamma: &tg,
        dgamma: &tdg,
        dbeta: &tdb,
    });

    let ctx = gpu.upload(&cshape, &cx).unwrap();
    let [cty, ctdx] = [(); 2].map(|_| gpu.zeros(&cshape).unwrap());
    let inv_sqrt2 = std::f32::consts::FRAC_1_SQRT_2;
    let cgamma: Vec<f32> = (0..ch).flat_map(|_| [inv_sqrt2, 0.0, inv_sqrt2]).collect();
    let ctg = gpu.upload(&[ch, 3], &cgamma).unwrap();
    let [ctb, ctrm] = [(); 2].map(|_| gpu.zeros(&[ch, 2]).unwrap());
    let ctrc = gpu
        .upload(
            &[ch, 3],
            &(0..ch).flat_map(|_| [1.0, 0.0, 1.0]).collect::<Vec<_>>(),
        )
        .unwrap();
    let ctsaved = gpu.zeros(&saved_shape(ch)).unwrap();
    let [ctdg, ctdb] = [3, 2].map(|k| gpu.zeros(&[ch, k]).unwrap());
    let crunning = ComplexRunning {
        mean: &ctrm,
        cov: &ctrc,
    };
    let caffine = Some(ComplexAffine {
        gamma: &ctg,
        beta: &ctb,
    });
    let cgrads = Some(ComplexAffineGrads {
        gamma: &ctg,
        dgamma: &ctdg,
        dbeta: &ctdb,
    });

    let mut group = c.benchmark_group("complex_batchnorm/darts_64x16x49x20");
    configure(&mut group);
    group.throughput(Throughput::Elements(spec.len() as u64));
    let mut time_gpu = |name: &str, record: &dyn Fn(&mut Recorder)| {
        let mut rec = gpu.recorder();
        record(&mut rec);
        rec.submit_and_wait().unwrap();
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
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
            })
        });
    };
    // dy is y itself: any tensor of the shape serves.
    time_gpu("real_train_forward_backward", &|rec| {
        batch_norm_train_forward(rec, &spec, &tx, affine, running, &ty, &tsaved).unwrap();
        batch_norm_train_backward(rec, &spec, &tx, &ty, &tsaved, grads, &tdx).unwrap();
    });
    time_gpu("complex_train_forward_backward", &|rec| {
        complex_batch_norm_train_forward(rec, &cspec, &ctx, caffine, crunning, &cty, &ctsaved)
            .unwrap();
        complex_batch_norm_train_backward(rec, &cspec, &ctx, &cty, &ctsaved, cgrads, &ctdx)
            .unwrap();
    });
    if !gpu_only {
        let (x64, cx64, cg64) = (to_f64(&x), to_f64(&cx), to_f64(&cgamma));
        group.bench_function("cpu_reference_real_train_forward_backward", |bench| {
            let (mut rm, mut rv) = (vec![0.0; ch], vec![1.0; ch]);
            bench.iter(|| {
                let fwd = batch_norm_train_forward_reference(&spec, &x64, None, &mut rm, &mut rv);
                batch_norm_train_backward_reference(
                    &spec,
                    &x64,
                    &fwd.y,
                    &fwd.mean,
                    &fwd.invstd,
                    None,
                )
            })
        });
        group.bench_function("cpu_reference_complex_train_forward_backward", |bench| {
            let (rm, rc) = (vec![0.0; 2 * ch], vec![1.0; 3 * ch]);
            bench.iter(|| {
                let fwd = complex_batch_norm_train_forward_reference(&cspec, &cx64, None, &rm, &rc);
                complex_batch_norm_train_backward_reference(
                    &cspec,
                    &cx64,
                    &fwd.y,
                    &fwd.saved,
                    Some(&cg64),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_pool,
    bench_batchnorm,
    bench_complex_batchnorm
);
criterion_main!(benches);

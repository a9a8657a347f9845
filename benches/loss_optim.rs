//! Softmax cross-entropy (`shaders/softmax_xent.wgsl`) at batch 64 x 12 and
//! 64 x 1000 classes, and the optimizers (`shaders/optimizers.wgsl`) over 1M
//! parameters, in GB/s of memory traffic per launch, beside the CPU references.
//!
//! `cargo bench --bench loss_optim`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::check::to_f64;
use audionas::kernels::optimizers::*;
use audionas::kernels::softmax_xent::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

const PARAMS: usize = 1 << 20;

fn group<'c>(c: &'c mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'c, WallTime> {
    common::group(c, name, Throughput::Bytes(bytes as u64), 2)
}

fn bench_softmax_xent(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = cpu_rows();
    for (batch, classes) in [(64, 12), (64, 1000)] {
        let spec = SoftmaxXent::new(batch, classes).label_smoothing(0.1);
        let mut rng = Rng::new(11);
        let logits = rng.vec_uniform(spec.logits_len(), -3.0, 3.0);
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
        let t_logits = gpu.upload(&[batch, classes], &logits).unwrap();
        let t_labels = gpu.upload_u32(&[batch], &labels).unwrap();
        let loss = gpu.zeros(&[batch]).unwrap();
        let grad = gpu.zeros(&[batch, classes]).unwrap();
        let correct = gpu.zeros(&[1]).unwrap();
        let mean = gpu.zeros(&[1]).unwrap();
        let out = XentOutputs {
            loss: &loss,
            grad: &grad,
            correct: &correct,
            mean_loss: Some(&mean),
        };
        // Logits read, gradient written, labels and losses.
        let bytes = 4 * (2 * spec.logits_len() + 2 * batch);
        let mut g = group(c, &format!("softmax_xent/{batch}x{classes}"), bytes);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            softmax_cross_entropy(rec, &spec, &t_logits, &t_labels, &out).unwrap()
        });
        if cpu {
            let logits = to_f64(&logits);
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| softmax_cross_entropy_reference(&spec, &logits, &labels))
            });
        }
        g.finish();
    }
}

fn bench_optimizers(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = cpu_rows();
    let mut rng = Rng::new(13);
    let param = rng.vec_uniform(PARAMS, -1.0, 1.0);
    let grad = rng.vec_uniform(PARAMS, -1.0, 1.0);
    let t_param = gpu.upload(&[PARAMS], &param).unwrap();
    let t_grad = gpu.upload(&[PARAMS], &grad).unwrap();
    let s1 = gpu.zeros(&[PARAMS]).unwrap();
    let s2 = gpu.zeros(&[PARAMS]).unwrap();
    let norm = gpu.full(&[1], 10.0).unwrap();
    let clip = Clip {
        norm: &norm,
        max_norm: 1.0,
    };
    let elt = 4 * PARAMS;

    let sgd_cfg = Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
        ..Sgd::new(0.01)
    };
    // param, grad, momentum read; param and momentum written.
    let mut g = group(c, "optimizers/sgd_nesterov_1M", 5 * elt);
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        sgd_step(rec, &sgd_cfg, 2, &t_param, &t_grad, &s1, None).unwrap()
    });
    if cpu {
        let (mut p, mut b) = (param.clone(), vec![0.0; PARAMS]);
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| sgd_reference(&sgd_cfg, 2, &mut p, &grad, &mut b, 1.0))
        });
    }
    g.finish();

    let adam_cfg = Adam::adamw(1e-3);
    for (name, clipped) in [("adamw_1M", false), ("adamw_clipped_1M", true)] {
        // param, grad, m, v read; param, m, v written.
        let mut g = group(c, &format!("optimizers/{name}"), 7 * elt);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            adam_step(
                rec,
                &adam_cfg,
                3,
                &t_param,
                &t_grad,
                &s1,
                &s2,
                clipped.then_some(&clip),
            )
            .unwrap()
        });
        if cpu && !clipped {
            let (mut p, mut m, mut v) = (param.clone(), vec![0.0; PARAMS], vec![0.0; PARAMS]);
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| adam_reference(&adam_cfg, 3, &mut p, &grad, &mut m, &mut v, 1.0))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_softmax_xent, bench_optimizers);
criterion_main!(benches);

//! Mixed edge (`shaders/mixed_edge.wgsl`) in GB/s at K = 8 candidates over
//! 64x16x49x20, beside elementwise passes (`elementwise::scale` in place,
//! `elementwise::add` out of place) moving the same bytes and the CPU
//! reference; complex dense (`shaders/complex.wgsl`
//! plus gemm) 257 -> 128 complex over 64 x 98 frames in GFLOP/s (criterion's
//! elements/s, one element = one FLOP), beside the four real gemms a planar
//! formulation would run and the CPU reference; pairwise product and square
//! (`shaders/pairwise.wgsl`) forward+backward in GB/s at 64x16x49x20.
//!
//! The mixed edge over 8 candidates held in separate tensors
//! (`mixed_terms_forward` / `mixed_terms_backward`) beside the stacked edge
//! on the same data, forward and backward, at the DARTS supernet's
//! 64x16x98x40 and at 64x16x25x5, in GB/s of the bytes the edge must move
//! (both rows count the same bytes, so the faster is the higher).
//!
//! ForceDARTS's edge gates and multi-hot loss on a cell's tables, beside
//! their CPU references.
//!
//! Complex conv2d (`ComplexConv2d`: planes, 2x2-block weights, one real
//! conv2d) 16 -> 16 complex channels, 3x3 "same", over 16 x 49 x 20, and a
//! complex depthwise 3x3 (the direct kernels of
//! `shaders/complex_depthwise.wgsl`, as the layers run it, and beside it the
//! same convolution through `ComplexConv2d` as a grouped real conv2d),
//! forward and forward+backward in GFLOP/s (real FLOPs: 8 per complex
//! multiply-accumulate), beside the real conv2d of the same shape (16 -> 16
//! real channels, or the real depthwise).
//!
//! `cargo bench --bench mixed_complex -- --noplot`; `AUDIONAS_BENCH_GPU_ONLY=1`
//! skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows};

use audionas::gpu::Gpu;
use audionas::kernels::check::to_f64;
use audionas::kernels::complex::{
    dense_backward_reference, dense_reference, ComplexConv2d, ComplexDense,
};
use audionas::kernels::complex_depthwise::{
    complex_depthwise_backward_input, complex_depthwise_backward_weight, complex_depthwise_forward,
};
use audionas::kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2d,
};
use audionas::kernels::elementwise::{add, scale};
use audionas::kernels::gemm::{gemm, Gemm};
use audionas::kernels::mixed_edge::*;
use audionas::kernels::pairwise::{product, product_backward, square, square_backward};
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::time::Duration;

fn gpu_only() -> bool {
    !cpu_rows()
}

fn configure(group: &mut BenchmarkGroup<WallTime>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
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
    bench_gpu(&mut group, "forward", 1, |rec| {
        mixed_edge_weights(rec, EdgeWeighting::Softmax, &t_alpha, &t_w).unwrap();
        mixed_edge_forward(rec, &t_w, 0, &t_x, &t_y).unwrap();
    });
    group.throughput(Throughput::Bytes(both_bytes));
    bench_gpu(&mut group, "forward_backward", 1, |rec| {
        mixed_edge_weights(rec, EdgeWeighting::Softmax, &t_alpha, &t_w).unwrap();
        mixed_edge_forward(rec, &t_w, 0, &t_x, &t_y).unwrap();
        mixed_edge_backward(rec, &t_w, 0, &t_x, &t_dy, &t_dx, &t_dw, &scratch).unwrap();
        mixed_edge_alpha_backward(rec, EdgeWeighting::Softmax, &t_w, &t_dw, &t_dalpha, false)
            .unwrap();
    });
    // A sampled sub-network: two of the eight candidates active, the rest
    // neither read nor computed (throughput counts the full edge's bytes).
    let mask = gpu
        .upload(&[1, k], &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
        .unwrap();
    bench_gpu(&mut group, "forward_backward_mask_2_of_8", 1, |rec| {
        mixed_edge_forward(rec, &mask, 0, &t_x, &t_y).unwrap();
        mixed_edge_backward(rec, &mask, 0, &t_x, &t_dy, &t_dx, &t_dw, &scratch).unwrap();
    });
    // The elementwise anchor: `scale` reads and writes each element once, so
    // it moves the same bytes over half as many elements.
    let t_same_bytes = gpu.zeros(&[both_bytes as usize / 8]).unwrap();
    bench_gpu(&mut group, "elementwise_scale_same_bytes", 1, |rec| {
        scale(rec, &t_same_bytes, 1.0).unwrap();
    });
    // `add` writes a fresh output as the mixed edge does (on a CPU adapter a
    // store to a line not in cache reads it first); 12 bytes per element.
    let add_len = both_bytes as usize / 12;
    let (add_a, add_b, add_out) = (
        gpu.zeros(&[add_len]).unwrap(),
        gpu.zeros(&[add_len]).unwrap(),
        gpu.zeros(&[add_len]).unwrap(),
    );
    bench_gpu(&mut group, "elementwise_add_same_bytes", 1, |rec| {
        add(rec, &add_a, &add_b, &add_out).unwrap();
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

fn bench_terms_against_stacked(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let k = 8;
    for shape in [[64, 16, 98, 40], [64, 16, 25, 5]] {
        let n: usize = shape.iter().product();
        let x_shape = [k, shape[0], shape[1], shape[2], shape[3]];
        let mut rng = Rng::new(3);
        let w = gpu.upload(&[1, k], &rng.vec_uniform(k, 0.0, 1.0)).unwrap();
        let dy = gpu.upload(&shape, &rng.vec_uniform(n, -1.0, 1.0)).unwrap();
        let xs: Vec<_> = (0..k)
            .map(|_| gpu.upload(&shape, &rng.vec_uniform(n, -1.0, 1.0)).unwrap())
            .collect();
        let dxs: Vec<_> = (0..k).map(|_| gpu.zeros(&shape).unwrap()).collect();
        let terms: Vec<_> = xs.iter().enumerate().collect();
        let backward_terms: Vec<_> = terms
            .iter()
            .zip(&dxs)
            .map(|(&(c, x), dx)| (c, x, Some(dx)))
            .collect();
        let x = gpu.zeros(&x_shape).unwrap();
        let mut rec = gpu.recorder();
        for (i, t) in xs.iter().enumerate() {
            rec.copy_range(t, 0, &x, i * n, n).unwrap();
        }
        rec.submit_and_wait().unwrap();
        let dx = gpu.zeros(&x_shape).unwrap();
        let (y, dw) = (gpu.zeros(&shape).unwrap(), gpu.zeros(&[1, k]).unwrap());
        let scratch = gpu.empty(&backward_scratch_shape(&x_shape)).unwrap();

        let name = format!("mixed_terms/K8_{}", shape.map(|d| d.to_string()).join("x"));
        let mut group = c.benchmark_group(name);
        configure(&mut group);
        // Forward reads K candidates and writes y; backward reads dy and the
        // candidates and writes K gradients.
        group.throughput(Throughput::Bytes(((k + 1) * n * 4) as u64));
        bench_gpu(&mut group, "forward_stacked", 1, |rec| {
            mixed_edge_forward(rec, &w, 0, &x, &y).unwrap();
        });
        bench_gpu(&mut group, "forward_separate", 1, |rec| {
            mixed_terms_forward(rec, &w, 0, &terms, &y, false).unwrap();
        });
        group.throughput(Throughput::Bytes(((2 * k + 1) * n * 4) as u64));
        bench_gpu(&mut group, "backward_stacked", 1, |rec| {
            mixed_edge_backward(rec, &w, 0, &x, &dy, &dx, &dw, &scratch).unwrap();
        });
        bench_gpu(&mut group, "backward_separate", 1, |rec| {
            mixed_terms_backward(rec, &w, 0, &dy, &backward_terms, &dw).unwrap();
        });
        group.finish();
    }
}

fn bench_complex_dense(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let (rows, inputs, outputs) = (64 * 98, 257, 128);
    let layer = ComplexDense::new(gpu, inputs, outputs).unwrap();
    let mut rng = Rng::new(2);
    let x = rng.vec_uniform(2 * rows * inputs, -1.0, 1.0);
    let w = rng.vec_uniform(2 * inputs * outputs, -0.1, 0.1);
    let dy = rng.vec_uniform(2 * rows * outputs, -1.0, 1.0);
    let tx = gpu.upload(&[rows, inputs, 2], &x).unwrap();
    let tw = gpu.upload(&[inputs, outputs, 2], &w).unwrap();
    let tdy = gpu.upload(&[rows, outputs, 2], &dy).unwrap();
    let ty = gpu.zeros(&[rows, outputs, 2]).unwrap();
    let tdx = gpu.zeros(&[rows, inputs, 2]).unwrap();
    let tdw = gpu.zeros(&[inputs, outputs, 2]).unwrap();

    let mut group = c.benchmark_group("complex/dense_257x128_rows6272");
    configure(&mut group);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(layer.flops(rows) as u64));
    bench_gpu(&mut group, "forward", 1, |rec| {
        layer.forward(rec, &tx, &tw, None, &ty).unwrap();
    });
    // A planar layout would run four real products of this shape.
    let real = Gemm::new(rows, outputs, inputs);
    let (a, b, out) = (
        gpu.zeros(&[real.a_len()]).unwrap(),
        gpu.zeros(&[real.b_len()]).unwrap(),
        gpu.zeros(&[real.c_len()]).unwrap(),
    );
    bench_gpu(&mut group, "four_real_gemms", 1, |rec| {
        for _ in 0..4 {
            gemm(rec, &real, &a, &b, &out).unwrap();
        }
    });
    group.throughput(Throughput::Elements(3 * layer.flops(rows) as u64));
    bench_gpu(&mut group, "forward_backward", 1, |rec| {
        layer.forward(rec, &tx, &tw, None, &ty).unwrap();
        layer
            .backward(rec, &tx, &tdy, Some(&tdx), &tdw, None)
            .unwrap();
    });
    if !gpu_only() {
        group.throughput(Throughput::Elements(layer.flops(rows) as u64));
        let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
        group.bench_function("cpu_reference_forward", |bench| {
            bench.iter(|| dense_reference(&x64, &w64, rows, inputs, outputs))
        });
        group.throughput(Throughput::Elements(2 * layer.flops(rows) as u64));
        group.bench_function("cpu_reference_backward", |bench| {
            bench.iter(|| dense_backward_reference(&x64, &w64, &dy64, rows, inputs, outputs))
        });
    }
    group.finish();
}

fn bench_complex_conv2d(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let full = Conv2d::new(16, 16, 16, [49, 20], [3, 3]).padding(1, 1);
    for (name, spec) in [("conv3x3", full), ("depthwise3x3", full.groups(16))] {
        let pair = |s: [usize; 4]| [s[0], s[1], s[2], s[3], 2];
        let mut rng = Rng::new(3);
        let upload = |rng: &mut Rng, shape: &[usize]| {
            let n = shape.iter().product();
            gpu.upload(shape, &rng.vec_uniform(n, -1.0, 1.0)).unwrap()
        };
        let (x, w, dy) = (
            upload(&mut rng, &pair(spec.input_shape())),
            upload(&mut rng, &pair(spec.weight_shape())),
            upload(&mut rng, &pair(spec.output_shape())),
        );
        let (y, dx, dw) = (
            gpu.zeros(&pair(spec.output_shape())).unwrap(),
            gpu.zeros(&pair(spec.input_shape())).unwrap(),
            gpu.zeros(&pair(spec.weight_shape())).unwrap(),
        );
        let layer = ComplexConv2d::new(gpu, spec).unwrap();
        // One multiply-accumulate per output per input tap.
        let macs = (spec.output_len() * spec.weight_len() / spec.out_channels) as u64;
        let mut group = c.benchmark_group(format!("complex/{name}_16ch_b16_49x20"));
        configure(&mut group);
        // The depthwise rows named complex_* run the direct kernels, as the
        // layers do; complex_grouped_* run the general path on the same data.
        let general = if spec.is_depthwise() {
            "complex_grouped"
        } else {
            "complex"
        };
        group.throughput(Throughput::Elements(8 * macs));
        bench_gpu(&mut group, &format!("{general}_forward"), 1, |rec| {
            layer.forward(rec, &x, &w, None, &y).unwrap();
        });
        group.throughput(Throughput::Elements(3 * 8 * macs));
        bench_gpu(
            &mut group,
            &format!("{general}_forward_backward"),
            1,
            |rec| {
                layer.forward(rec, &x, &w, None, &y).unwrap();
                layer.backward(rec, &x, &dy, Some(&dx), &dw, None).unwrap();
            },
        );
        if spec.is_depthwise() {
            group.throughput(Throughput::Elements(8 * macs));
            bench_gpu(&mut group, "complex_forward", 1, |rec| {
                complex_depthwise_forward(rec, &spec, &x, &w, None, &y).unwrap();
            });
            group.throughput(Throughput::Elements(3 * 8 * macs));
            bench_gpu(&mut group, "complex_forward_backward", 1, |rec| {
                complex_depthwise_forward(rec, &spec, &x, &w, None, &y).unwrap();
                complex_depthwise_backward_weight(rec, &spec, &dy, &x, &dw, None).unwrap();
                complex_depthwise_backward_input(rec, &spec, &dy, &w, &dx).unwrap();
            });
            group.throughput(Throughput::Elements(8 * macs));
            bench_gpu(&mut group, "complex_backward_input", 1, |rec| {
                complex_depthwise_backward_input(rec, &spec, &dy, &w, &dx).unwrap();
            });
            bench_gpu(&mut group, "complex_backward_weight", 1, |rec| {
                complex_depthwise_backward_weight(rec, &spec, &dy, &x, &dw, None).unwrap();
            });
        }
        let (rx, rw, rdy) = (
            upload(&mut rng, &spec.input_shape()),
            upload(&mut rng, &spec.weight_shape()),
            upload(&mut rng, &spec.output_shape()),
        );
        let (ry, rdx, rdw) = (
            gpu.zeros(&spec.output_shape()).unwrap(),
            gpu.zeros(&spec.input_shape()).unwrap(),
            gpu.zeros(&spec.weight_shape()).unwrap(),
        );
        group.throughput(Throughput::Elements(2 * macs));
        bench_gpu(&mut group, "real_forward", 1, |rec| {
            conv2d_forward(rec, &spec, &rx, &rw, None, &ry).unwrap();
        });
        group.throughput(Throughput::Elements(3 * 2 * macs));
        bench_gpu(&mut group, "real_forward_backward", 1, |rec| {
            conv2d_forward(rec, &spec, &rx, &rw, None, &ry).unwrap();
            conv2d_backward_weight(rec, &spec, &rdy, &rx, &rdw, None).unwrap();
            conv2d_backward_input(rec, &spec, &rdy, &rw, &rdx).unwrap();
        });
        if spec.is_depthwise() {
            group.throughput(Throughput::Elements(2 * macs));
            bench_gpu(&mut group, "real_backward_input", 1, |rec| {
                conv2d_backward_input(rec, &spec, &rdy, &rw, &rdx).unwrap();
            });
            bench_gpu(&mut group, "real_backward_weight", 1, |rec| {
                conv2d_backward_weight(rec, &spec, &rdy, &rx, &rdw, None).unwrap();
            });
        }
        group.finish();
    }
}

fn bench_pairwise(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let shape = [64, 16, 49, 20];
    let n: usize = shape.iter().product();
    let t = || gpu.full(&shape, 0.5).unwrap();
    let (a, b, g, out, da, db) = (t(), t(), t(), t(), t(), t());
    let mut group = c.benchmark_group("pairwise/64x16x49x20");
    configure(&mut group);
    // Product: forward reads 2 and writes 1, backward reads 3 and writes 2.
    group.throughput(Throughput::Bytes((8 * n * 4) as u64));
    bench_gpu(&mut group, "product_forward_backward", 1, |rec| {
        product(rec, &a, &b, &out).unwrap();
        product_backward(rec, &a, &b, &g, &da, &db, false).unwrap();
    });
    // Square: forward reads 1 and writes 1, backward reads 2 and writes 1.
    group.throughput(Throughput::Bytes((5 * n * 4) as u64));
    bench_gpu(&mut group, "square_forward_backward", 1, |rec| {
        square(rec, &a, &out).unwrap();
        square_backward(rec, &a, &g, &da, false).unwrap();
    });
    group.finish();
}

/// ForceDARTS's edge gates and multi-hot loss on the tables of a cell of 4
/// nodes (14 edges x 7 ops), as every supernet step runs them: tiny, so
/// they measure dispatch latency; in table entries per second.
fn bench_edge_gates(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let (nodes, k) = (4, 7);
    let rows = node_rows(nodes - 1).end;
    let mut rng = Rng::new(5);
    let p = rng.vec_uniform(rows * k, 0.0, 1.0);
    let g = rng.vec_uniform(rows, 0.0, 1.0);
    let beta = rng.vec_uniform(rows, -2.0, 2.0);
    let (t_p, t_g) = (
        gpu.upload(&[rows, k], &p).unwrap(),
        gpu.upload(&[rows, 1], &g).unwrap(),
    );
    let t_beta = gpu.upload(&[rows, 1], &beta).unwrap();
    let (t_w, t_dp) = (
        gpu.zeros(&[rows, k]).unwrap(),
        gpu.zeros(&[rows, k]).unwrap(),
    );
    let (t_dg, t_loss) = (gpu.zeros(&[rows, 1]).unwrap(), gpu.zeros(&[1]).unwrap());
    let mut group = c.benchmark_group("edge_gates/14x7");
    configure(&mut group);
    group.throughput(Throughput::Elements((rows * k) as u64));
    bench_gpu(&mut group, "gates_forward_backward_multi_hot", 1, |rec| {
        edge_gate_forward(rec, &t_p, &t_g, &t_w).unwrap();
        edge_gate_backward(rec, &t_p, &t_g, &t_w, &t_dp, &t_dg).unwrap();
        let gini = Regulariser::Gini;
        multi_hot_regulariser(rec, gini, &t_beta, nodes, 5.7, &t_loss, &t_dg, true).unwrap();
    });
    if !gpu_only() {
        let (p, g, beta) = (to_f64(&p), to_f64(&g), to_f64(&beta));
        group.bench_function("cpu_reference", |bench| {
            bench.iter(|| {
                let w = edge_gate_reference(&p, &g);
                let grads = edge_gate_backward_reference(&p, &g, &w);
                (grads, multi_hot_reference(Regulariser::Gini, &beta, nodes))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_mixed_edge,
    bench_terms_against_stacked,
    bench_complex_dense,
    bench_complex_conv2d,
    bench_pairwise,
    bench_edge_gates
);
criterion_main!(benches);

//! gemm (`shaders/gemm.wgsl`) in GFLOP/s (criterion reports elements/s, one
//! element = one FLOP) at square and keyword-spotting shapes, beside the CPU
//! reference and `matrixmultiply::sgemm`, the native-CPU anchor.
//!
//! `wgpu` is the kernel `gemm` picks for the adapter; where that is the
//! subgroup kernel, `wgpu_portable` is the kernel GPUs run, for comparison.
//!
//! `cargo bench --bench gemm`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::gemm::{gemm, gemm_reference, gemm_with, Gemm, GemmKernel};
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Shape {
    name: &'static str,
    spec: Gemm,
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "64x64x64",
            spec: Gemm::new(64, 64, 64),
        },
        Shape {
            name: "512x512x512",
            spec: Gemm::new(512, 512, 512),
        },
        Shape {
            name: "1024x1024x1024",
            spec: Gemm::new(1024, 1024, 1024),
        },
        Shape {
            name: "M4096_K160_N64",
            spec: Gemm::new(4096, 64, 160),
        },
        Shape {
            name: "M64_K1024_N12",
            spec: Gemm::new(64, 12, 1024),
        },
        // The transposed products of a dense layer's backward at the KWS shape.
        Shape {
            name: "M4096_K160_N64_tb",
            spec: Gemm::new(4096, 64, 160).trans_b(true),
        },
        Shape {
            name: "M160_K4096_N64_ta",
            spec: Gemm::new(160, 64, 4096).trans_a(true),
        },
        // cnn-trad-fpool3's first dense layer at batch 64: a long K and few
        // output tiles, which a GPU runs split along K.
        Shape {
            name: "M64_K55616_N32",
            spec: Gemm::new(64, 32, 55616),
        },
    ]
}

fn bench_gemm(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let gpu_only = !cpu_rows();
    for Shape { name, spec } in shapes() {
        let mut rng = Rng::new(7);
        let a = rng.vec_uniform(spec.a_len(), -1.0, 1.0);
        let b = rng.vec_uniform(spec.b_len(), -1.0, 1.0);
        let ta = gpu.upload(&[spec.a_len()], &a).unwrap();
        let tb = gpu.upload(&[spec.b_len()], &b).unwrap();
        let tc = gpu.zeros(&[spec.c_len()]).unwrap();

        let mut group = common::group(
            c,
            &format!("gemm/{name}"),
            Throughput::Elements(spec.flops() as u64),
            3,
        );

        bench_gpu(&mut group, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            gemm(rec, &spec, &ta, &tb, &tc).unwrap()
        });
        if !gpu.is_cpu() {
            bench_gpu(&mut group, "wgpu_unsplit", KERNELS_PER_SUBMIT, |rec| {
                gemm(rec, &spec.split_k(1), &ta, &tb, &tc).unwrap()
            });
        }
        if GemmKernel::best(gpu) != GemmKernel::Portable {
            bench_gpu(&mut group, "wgpu_portable", KERNELS_PER_SUBMIT, |rec| {
                gemm_with(rec, GemmKernel::Portable, &spec, &ta, &tb, &tc).unwrap()
            });
        }
        if !gpu_only {
            let mut c_cpu = vec![0.0f32; spec.c_len()];
            group.bench_function("matrixmultiply", |bench| {
                bench.iter(|| matrixmultiply_gemm(&spec, &a, &b, &mut c_cpu))
            });
            if spec.flops() <= 2.0 * 512.0 * 512.0 * 512.0 {
                group.bench_function("cpu_reference", |bench| {
                    bench.iter(|| gemm_reference(&spec, &a, &b, &mut c_cpu))
                });
            }
        }
        group.finish();
    }
}

/// The same product with matrixmultiply, transposes expressed as strides.
fn matrixmultiply_gemm(spec: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let (rsa, csa) = if spec.trans_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (rsb, csb) = if spec.trans_b {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the slices hold m*k, k*n and m*n elements and the strides stay inside them.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            spec.alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            spec.beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);

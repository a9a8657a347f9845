//! Layout kernels (`shaders/layout.wgsl`) in GB/s of memory traffic (bytes
//! read + written per launch), beside the CPU references.
//!
//! `cargo bench --bench layout`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::layout::*;
use audionas::util::rng::Rng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

fn group<'c>(c: &'c mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'c, WallTime> {
    common::group(
        c,
        &format!("layout/{name}"),
        Throughput::Bytes(bytes as u64),
        2,
    )
}

fn bench_layout(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let cpu = cpu_rows();
    let mut rng = Rng::new(3);

    // [batch 64, time 128, features 128] to [time, batch, features] before an
    // LSTM, and a narrow one ([64, 128, 4]) where the rows are short.
    for dims in [[64, 128, 128], [64, 128, 4]] {
        let len: usize = dims.iter().product();
        let x = rng.vec_uniform(len, -1.0, 1.0);
        let tx = gpu.upload(&[len], &x).unwrap();
        let ty = gpu.zeros(&[len]).unwrap();
        let [a, b, c3] = dims;
        let mut g = group(c, &format!("swap_axes_{a}x{b}x{c3}"), 2 * 4 * len);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            swap_axes(rec, &tx, dims, &ty).unwrap()
        });
        if cpu {
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| swap_axes_reference(&x, dims))
            });
        }
        g.finish();
    }

    // One [64, 32, 16, 16] feature map into the first half of the channels of
    // a [64, 64, 16, 16] concatenation (512K elements), and its backward added
    // to a gradient that already holds a contribution.
    let (rows, part, total) = (64, 32 * 256, 64 * 256);
    let spec = ColumnCopy::concat(rows, part, total, 0);
    let src = rng.vec_uniform(rows * part, -1.0, 1.0);
    let tsrc = gpu.upload(&[rows * part], &src).unwrap();
    let tdst = gpu.zeros(&[rows * total]).unwrap();
    let n = spec.len();
    for (name, spec, from, to, bytes) in [
        ("concat_64x32of64x256", spec, &tsrc, &tdst, 2 * 4 * n),
        (
            "slice_accumulate_64x32of64x256",
            spec.adjoint(true),
            &tdst,
            &tsrc,
            3 * 4 * n,
        ),
    ] {
        let mut g = group(c, name, bytes);
        bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
            copy_columns(rec, &spec, from, to).unwrap()
        });
        if cpu {
            let src = vec![0.5f32; spec.rows * spec.src_cols];
            let mut dst = vec![0.0f32; spec.rows * spec.dst_cols];
            g.bench_function("cpu_reference", |bench| {
                bench.iter(|| copy_columns_reference(&spec, &src, &mut dst))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_layout);
criterion_main!(benches);

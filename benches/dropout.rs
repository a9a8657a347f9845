//! Dropout (`shaders/dropout.wgsl`) in GB/s of memory traffic (bytes read +
//! written per launch) over 1M elements, beside the CPU reference. The
//! backward is the same kernel.
//!
//! `cargo bench --bench dropout`; `AUDIONAS_BENCH_GPU_ONLY=1` skips the CPU rows.

mod common;

use common::{bench_gpu, cpu_rows, KERNELS_PER_SUBMIT};

use audionas::gpu::Gpu;
use audionas::kernels::dropout::*;
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LEN: usize = 1 << 20;

fn bench_dropout(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let x = Rng::new(3).vec_uniform(LEN, -1.0, 1.0);
    let tx = gpu.upload(&[LEN], &x).unwrap();
    let ty = gpu.zeros(&[LEN]).unwrap();
    let mut g = common::group(
        c,
        "dropout/forward_p0.3_1M",
        Throughput::Bytes(2 * 4 * LEN as u64),
        2,
    );
    bench_gpu(&mut g, "wgpu", KERNELS_PER_SUBMIT, |rec| {
        dropout_forward(rec, 0.3, 7, &tx, &ty).unwrap()
    });
    if cpu_rows() {
        g.bench_function("cpu_reference", |bench| {
            bench.iter(|| dropout_forward_reference(0.3, 7, &x))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_dropout);
criterion_main!(benches);

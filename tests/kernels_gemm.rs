//! gemm on the GPU against its CPU reference, on every transpose combination,
//! batched and shared operands, and shapes at and past every tile edge, with
//! every kernel the adapter can run (the portable one and, where the adapter
//! has 8-lane subgroups, the subgroup one).

use audionas::gpu::Gpu;
use audionas::kernels::check::assert_close;
use audionas::kernels::gemm::{gemm, gemm_reference, gemm_with, Gemm, GemmKernel};
use audionas::util::rng::Rng;

fn run(spec: Gemm, seed: u64) -> usize {
    run_padded(spec, seed, 7)
}

/// `run` with `pad_c` elements after C when it is at an offset (0 keeps C a
/// whole tensor when its offset is 0: a product split along K needs that).
fn run_padded(spec: Gemm, seed: u64, pad_c: usize) -> usize {
    let gpu = Gpu::shared();
    let mut rng = Rng::new(seed);
    // Operands at offsets live in larger tensors, with elements after them too.
    let [len_a, len_b, len_c] = match spec.offsets {
        None => [spec.a_len(), spec.b_len(), spec.c_len()],
        Some(o) => [
            o[0] + spec.a_len() + 3,
            o[1] + spec.b_len() + 5,
            o[2] + spec.c_len() + pad_c,
        ],
    };
    let a = rng.vec_uniform(len_a, -1.0, 1.0);
    let b = rng.vec_uniform(len_b, -1.0, 1.0);
    let c0 = rng.vec_uniform(len_c, -1.0, 1.0);
    let mut want = c0.clone();
    gemm_reference(&spec, &a, &b, &mut want);
    let ta = gpu.upload(&[len_a], &a).unwrap();
    let tb = gpu.upload(&[len_b], &b).unwrap();
    let tol = 1e-5 * (spec.k as f32).sqrt().max(1.0);
    let mut dispatches = 0;
    for kernel in GemmKernel::available(gpu) {
        let tc = gpu.upload(&[len_c], &c0).unwrap();
        let mut rec = gpu.recorder();
        gemm_with(&mut rec, kernel, &spec, &ta, &tb, &tc).unwrap();
        dispatches = rec.dispatch_count();
        rec.submit().unwrap();
        let got = gpu.download(&tc).unwrap();
        assert_close(&format!("{kernel:?} {spec:?}"), &got, &want, tol, 1e-4);
    }
    dispatches
}

/// Sizes of 1, primes, and multiples of 4, 16 and 32 (the vec4 fast path and
/// the tiles of both kernels) with edges past them.
const AWKWARD: [(usize, usize, usize); 17] = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 2),
    (3, 5, 7),
    (8, 4, 1),
    (9, 5, 13),
    (16, 64, 16),
    (17, 33, 31),
    (31, 129, 2),
    (64, 12, 65),
    (127, 67, 41),
    (200, 3, 257),
    (36, 20, 24),
    (20, 36, 44),
    (48, 8, 12),
    (64, 32, 8),
    (65, 41, 6),
];

#[test]
fn gemm_matches_reference_for_every_transpose_on_awkward_shapes() {
    for (i, &(m, n, k)) in AWKWARD.iter().enumerate() {
        for ta in [false, true] {
            for tb in [false, true] {
                run(Gemm::new(m, n, k).trans_a(ta).trans_b(tb), i as u64);
            }
        }
    }
}

#[test]
fn gemm_alpha_beta_accumulate() {
    run(Gemm::new(13, 17, 19).alpha(0.5).beta(1.0), 1);
    run(
        Gemm::new(13, 17, 19).trans_a(true).alpha(-2.0).beta(0.25),
        2,
    );
    // k = 0 is an empty sum: C = beta * C.
    run(Gemm::new(3, 4, 0).beta(0.5), 3);
}

#[test]
fn gemm_batched_and_shared_operands() {
    run(Gemm::new(7, 9, 5).batch(3), 4);
    run(Gemm::new(32, 8, 8).batch(3), 7);
    // A pointwise convolution over 25x5 maps: rows of B start off vec4 boundaries.
    run(Gemm::new(32, 125, 20).batch(3).shared_a(), 13);
    run(Gemm::new(20, 125, 32).batch(2).shared_a().trans_a(true), 14);
    run(Gemm::new(32, 20, 125).batch(2).trans_b(true), 15);
    run(Gemm::new(16, 12, 20).batch(2).shared_a().trans_a(true), 8);
    run(Gemm::new(7, 9, 5).batch(4).shared_a().trans_b(true), 5);
    run(
        Gemm::new(11, 6, 10)
            .batch(2)
            .shared_b()
            .trans_a(true)
            .beta(1.0),
        6,
    );
}

#[test]
fn gemm_on_parts_of_larger_tensors() {
    // Aligned offsets keep the vec4 path; odd ones take the scalar path.
    run(Gemm::new(32, 16, 8).offsets(64, 32, 16), 9);
    run(Gemm::new(8, 8, 4).offsets(0, 0, 0), 12);
    run(
        Gemm::new(32, 16, 8)
            .batch(2)
            .shared_a()
            .offsets(0, 4 * 16 * 8, 3),
        10,
    );
    run(
        Gemm::new(17, 9, 12)
            .trans_a(true)
            .offsets(5, 7, 11)
            .beta(1.0),
        11,
    );
    let gpu = Gpu::shared();
    let spec = Gemm::new(4, 4, 4).offsets(0, 0, 1);
    let t = gpu.zeros(&[16]).unwrap();
    let err = gemm(&mut gpu.recorder(), &spec, &t, &t, &t).unwrap_err();
    assert!(err.to_string().contains("C has shape [16]"), "{err}");
}

#[test]
fn gemm_split_along_k_matches_reference() {
    // K cut into whole slices and a shorter tail (or none), every
    // transpose, alpha with beta 0 or 1, A and B at offsets.
    let shapes = [
        (3, 5, 67, 4),
        (17, 33, 1000, 7),
        (64, 32, 4100, 16),
        (16, 12, 256, 2),
        (5, 3, 9, 64),
        (1, 1, 1, 2),
    ];
    for (i, &(m, n, k, slices)) in shapes.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        for ta in [false, true] {
            for tb in [false, true] {
                let spec = Gemm::new(m, n, k).trans_a(ta).trans_b(tb).split_k(slices);
                let dispatches = run_padded(spec, seed, 0);
                // One product per kernel dispatch, or the slices, a tail and their sum.
                assert_eq!(dispatches > 1, k > 4, "{spec:?}: {dispatches} dispatches");
            }
        }
        let split = Gemm::new(m, n, k).split_k(slices);
        run_padded(split.alpha(-0.5).beta(1.0), seed + 1, 0);
        run_padded(split.alpha(2.0), seed + 2, 0);
        run_padded(split.trans_a(true).offsets(8, 3, 0), seed + 3, 0);
    }
    // What cannot be split runs whole: another beta, a batch, C at an
    // offset or inside a larger tensor.
    for spec in [
        Gemm::new(9, 7, 300).beta(0.25),
        Gemm::new(9, 7, 300).batch(2),
        Gemm::new(9, 7, 300).offsets(0, 0, 5),
        Gemm::new(9, 7, 300).offsets(0, 0, 0),
    ] {
        assert_eq!(run(spec.split_k(5), 7), 1, "{spec:?}");
    }
}

#[test]
fn gemm_rejects_mismatched_operands() {
    let gpu = Gpu::shared();
    let spec = Gemm::new(4, 4, 4);
    let a = gpu.zeros(&[4, 4]).unwrap();
    let b = gpu.zeros(&[4, 5]).unwrap();
    let c = gpu.zeros(&[4, 4]).unwrap();
    let err = gemm(&mut gpu.recorder(), &spec, &a, &b, &c).unwrap_err();
    assert!(err.to_string().contains("B has shape [4, 5]"), "{err}");
}

#[test]
fn gemm_takes_the_subgroup_kernel_on_llvmpipe() {
    let gpu = Gpu::shared();
    let info = gpu.info();
    let llvmpipe = info.device_type == wgpu::DeviceType::Cpu
        && info.subgroup_min_size == 8
        && info.subgroup_max_size == 8
        && gpu.device().features().contains(wgpu::Features::SUBGROUP);
    let want = if llvmpipe {
        GemmKernel::Subgroup8
    } else {
        GemmKernel::Portable
    };
    assert_eq!(GemmKernel::best(gpu), want, "adapter {}", gpu.describe());
}

//! Layout kernels on the GPU against their CPU references on shapes with sizes
//! of 1, primes, and counts around the workgroup edges, and each backward
//! reference against finite differences of its forward.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::{assert_close, assert_gradient, to_f64};
use audionas::kernels::layout::*;
use audionas::util::rng::Rng;

fn upload(v: &[f32]) -> Tensor {
    Gpu::shared().upload(&[v.len()], v).unwrap()
}

fn download(t: &Tensor) -> Vec<f32> {
    Gpu::shared().download(t).unwrap()
}

/// Sizes of 1, primes, element counts just around 256 and 1024 (a workgroup
/// and what it covers), and a large one (over a million elements).
const SWAP_DIMS: [[usize; 3]; 11] = [
    [1, 1, 1],
    [1, 7, 3],
    [5, 1, 2],
    [2, 3, 1],
    [3, 5, 7],
    [16, 16, 1],
    [17, 15, 1],
    [2, 2, 257],
    [31, 33, 1],
    [11, 13, 61],
    [64, 131, 127],
];

#[test]
fn swap_axes_matches_reference_and_its_backward_undoes_it() {
    let gpu = Gpu::shared();
    for (seed, &dims) in SWAP_DIMS.iter().enumerate() {
        let [a, b, c] = dims;
        let n = a * b * c;
        let x = Rng::new(seed as u64).vec_uniform(n, -2.0, 2.0);
        let tx = upload(&x);
        let ty = gpu.full(&[n], f32::NAN).unwrap();
        let tback = gpu.full(&[n], f32::NAN).unwrap();
        let mut rec = gpu.recorder();
        swap_axes(&mut rec, &tx, dims, &ty).unwrap();
        swap_axes(&mut rec, &ty, [b, a, c], &tback).unwrap();
        rec.submit_and_wait().unwrap();
        let want = swap_axes_reference(&x, dims);
        assert_close(
            &format!("swap_axes {dims:?}"),
            &download(&ty),
            &want,
            0.0,
            0.0,
        );
        assert_close(
            &format!("swap_axes back {dims:?}"),
            &download(&tback),
            &x,
            0.0,
            0.0,
        );
    }
}

#[test]
fn swap_axes_reference_moves_the_named_element() {
    // x[i][j][k] = 100 i + 10 j + k lands at y[j][i][k].
    let dims = [2, 3, 4];
    let x: Vec<f32> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| (100 * i + 10 * j + k) as f32)))
        .collect();
    let y = swap_axes_reference(&x, dims);
    for j in 0..3 {
        for i in 0..2 {
            for k in 0..4 {
                assert_eq!(y[(j * 2 + i) * 4 + k], (100 * i + 10 * j + k) as f32);
            }
        }
    }
}

#[test]
fn swap_axes_backward_reference_matches_finite_differences() {
    let dims = [3, 4, 2];
    let [a, b, c] = dims;
    let mut rng = Rng::new(11);
    let x = to_f64(&rng.vec_uniform(a * b * c, -1.0, 1.0));
    let dy = rng.vec_uniform(a * b * c, -1.0, 1.0);
    let analytic = to_f64(&swap_axes_reference(&dy, [b, a, c]));
    let loss = |x: &[f64]| {
        swap_axes_reference(x, dims)
            .iter()
            .zip(&dy)
            .map(|(y, &g)| y * g as f64)
            .sum()
    };
    assert_gradient("swap_axes", &x, &analytic, loss, 1e-8, 1e-6);
}

/// Concatenations of blocks along columns: (rows, widths of the parts).
const CONCATS: [(usize, &[usize]); 8] = [
    (1, &[1]),
    (1, &[1, 1]),
    (3, &[2, 5]),
    (7, &[13, 1, 4]),
    (2, &[255, 1, 256]),
    (5, &[1023, 2]),
    (257, &[3, 3]),
    // Four [64, 32, 16, 16] feature maps along channels: 2M elements.
    (64, &[32 * 256, 16 * 256, 48 * 256, 32 * 256]),
];

/// The copies that concatenate `widths` columns side by side.
fn concat_specs(rows: usize, widths: &[usize]) -> Vec<ColumnCopy> {
    let total: usize = widths.iter().sum();
    let mut offset = 0;
    widths
        .iter()
        .map(|&w| {
            let spec = ColumnCopy::concat(rows, w, total, offset);
            offset += w;
            spec
        })
        .collect()
}

#[test]
fn concat_and_slice_match_reference() {
    let gpu = Gpu::shared();
    for (seed, &(rows, widths)) in CONCATS.iter().enumerate() {
        let mut rng = Rng::new(100 + seed as u64);
        let specs = concat_specs(rows, widths);
        let total: usize = widths.iter().sum();
        let parts: Vec<Vec<f32>> = widths
            .iter()
            .map(|&w| rng.vec_uniform(rows * w, -2.0, 2.0))
            .collect();
        let tparts: Vec<Tensor> = parts.iter().map(|p| upload(p)).collect();
        let tcat = gpu.full(&[rows * total], f32::NAN).unwrap();
        // Slicing back (the backward): written, then accumulated onto a base.
        let sliced: Vec<Tensor> = widths
            .iter()
            .map(|&w| gpu.full(&[rows * w], f32::NAN).unwrap())
            .collect();
        let bases: Vec<Vec<f32>> = widths
            .iter()
            .map(|&w| rng.vec_uniform(rows * w, -1.0, 1.0))
            .collect();
        let accumulated: Vec<Tensor> = bases.iter().map(|b| upload(b)).collect();
        let mut rec = gpu.recorder();
        for (spec, part) in specs.iter().zip(&tparts) {
            copy_columns(&mut rec, spec, part, &tcat).unwrap();
        }
        for ((spec, s), acc) in specs.iter().zip(&sliced).zip(&accumulated) {
            copy_columns(&mut rec, &spec.adjoint(false), &tcat, s).unwrap();
            copy_columns(&mut rec, &spec.adjoint(true), &tcat, acc).unwrap();
        }
        rec.submit_and_wait().unwrap();

        let mut want = vec![f32::NAN; rows * total];
        for (spec, part) in specs.iter().zip(&parts) {
            copy_columns_reference(spec, part, &mut want);
        }
        let what = format!("concat rows={rows} widths={widths:?}");
        assert_close(&what, &download(&tcat), &want, 0.0, 0.0);
        for (i, spec) in specs.iter().enumerate() {
            assert_close(
                &format!("{what}: slice {i}"),
                &download(&sliced[i]),
                &parts[i],
                0.0,
                0.0,
            );
            let mut want = bases[i].clone();
            copy_columns_reference(&spec.adjoint(true), &download(&tcat), &mut want);
            assert_close(
                &format!("{what}: accumulated slice {i}"),
                &download(&accumulated[i]),
                &want,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn copy_columns_moves_an_inner_block_and_leaves_the_rest() {
    let gpu = Gpu::shared();
    // Columns 2..9 of an [37, 11] matrix into columns 250..257 of a [37, 300] one.
    for accumulate in [false, true] {
        let spec = ColumnCopy {
            rows: 37,
            src_cols: 11,
            src_offset: 2,
            dst_cols: 300,
            dst_offset: 250,
            width: 7,
            accumulate,
        };
        let mut rng = Rng::new(5);
        let src = rng.vec_uniform(spec.rows * spec.src_cols, -1.0, 1.0);
        let dst = rng.vec_uniform(spec.rows * spec.dst_cols, -1.0, 1.0);
        let tdst = upload(&dst);
        let mut rec = gpu.recorder();
        copy_columns(&mut rec, &spec, &upload(&src), &tdst).unwrap();
        rec.submit_and_wait().unwrap();
        let mut want = dst.clone();
        copy_columns_reference(&spec, &src, &mut want);
        assert_close(&format!("{spec:?}"), &download(&tdst), &want, 0.0, 0.0);
        let first = if accumulate {
            dst[250] + src[2]
        } else {
            src[2]
        };
        assert_eq!(want[250], first);
        assert_eq!(want[249], dst[249]);
        assert_eq!(want[257], dst[257]);
    }
}

#[test]
fn copy_columns_backward_reference_matches_finite_differences() {
    let spec = ColumnCopy {
        rows: 3,
        src_cols: 5,
        src_offset: 1,
        dst_cols: 6,
        dst_offset: 2,
        width: 3,
        accumulate: false,
    };
    let mut rng = Rng::new(13);
    let src = to_f64(&rng.vec_uniform(spec.rows * spec.src_cols, -1.0, 1.0));
    let dy = rng.vec_uniform(spec.rows * spec.dst_cols, -1.0, 1.0);
    let mut analytic = vec![0.0f32; src.len()];
    copy_columns_reference(&spec.adjoint(true), &dy, &mut analytic);
    let loss = |s: &[f64]| {
        let mut out = vec![0.5f64; spec.rows * spec.dst_cols];
        copy_columns_reference(&spec, s, &mut out);
        out.iter().zip(&dy).map(|(o, &g)| o * g as f64).sum()
    };
    assert_gradient("copy_columns", &src, &to_f64(&analytic), loss, 1e-8, 1e-6);
}

#[test]
fn launchers_name_the_mismatched_argument() {
    let gpu = Gpu::shared();
    let a = gpu.zeros(&[24]).unwrap();
    let b = gpu.zeros(&[25]).unwrap();
    let mut rec = gpu.recorder();
    let err = swap_axes(&mut rec, &a, [2, 3, 4], &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("y has shape [25]"), "{err}");
    let err = swap_axes(&mut rec, &a, [usize::MAX, 3, 4], &a)
        .unwrap_err()
        .to_string();
    assert!(err.contains("overflows"), "{err}");

    let fits = ColumnCopy {
        rows: 4,
        src_cols: 6,
        src_offset: 2,
        dst_cols: 6,
        dst_offset: 0,
        width: 4,
        accumulate: false,
    };
    let err = copy_columns(&mut rec, &fits, &a, &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dst has shape [25]"), "{err}");
    let past_end = ColumnCopy {
        src_offset: 3,
        ..fits
    };
    let err = copy_columns(&mut rec, &past_end, &a, &a)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("columns 3..7 do not fit in the 6 columns of src"),
        "{err}"
    );
    let too_wide = ColumnCopy {
        width: usize::MAX,
        ..fits
    };
    assert!(copy_columns(&mut rec, &too_wide, &a, &a).is_err());
    let err = copy_columns(&mut rec, &ColumnCopy { rows: 5, ..fits }, &a, &a)
        .unwrap_err()
        .to_string();
    assert!(err.contains("src has shape [24]"), "{err}");
    let in_place = ColumnCopy {
        dst_offset: 2,
        ..fits
    };
    let err = copy_columns(&mut rec, &in_place, &a, &a.reshaped(&[4, 6]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("src and dst are the same buffer"), "{err}");
    let err = swap_axes(&mut rec, &a, [2, 3, 4], &a)
        .unwrap_err()
        .to_string();
    assert!(err.contains("x and y are the same buffer"), "{err}");
    assert_eq!(rec.dispatch_count(), 0);
}

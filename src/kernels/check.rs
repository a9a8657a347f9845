//! Checks the kernels share: the shape check their launchers make, and
//! what kernel tests use (comparing a GPU result with its CPU reference
//! within `atol + rtol * |ref|`, central finite differences for checking
//! backward references).

use crate::gpu::{ensure, GpuResult, Tensor};

/// A shape error naming the kernel `op` and its argument `what` unless `t`
/// has exactly the shape `want`.
pub fn same_shape(op: &str, what: &str, t: &Tensor, want: &[usize]) -> GpuResult<()> {
    ensure(t.shape() == want, || {
        format!("{op}: {what} has shape {:?}, expected {want:?}", t.shape())
    })
}

/// `|got - want| <= atol + rtol * |want|`, false for NaN.
fn within(got: f32, want: f32, atol: f32, rtol: f32) -> bool {
    (got - want).abs() <= atol + rtol * want.abs()
}

/// The first element where `got` and `want` differ by more than
/// `atol + rtol * |want|`, as a message naming it, or `Ok` when none does.
pub fn compare(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} elements, expected {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = atol + rtol * w.abs();
        if !within(g, w, atol, rtol) {
            let excess = if err.is_nan() {
                f32::INFINITY
            } else {
                err - tol
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol}); {} of {} elements out of tolerance",
            got[i],
            want[i],
            got.iter()
                .zip(want)
                .filter(|(&g, &w)| !within(g, w, atol, rtol))
                .count(),
            got.len()
        )),
    }
}

/// Panics with `compare`'s message when the two differ.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    if let Err(message) = compare(what, got, want, atol, rtol) {
        panic!("{message}");
    }
}

/// The gradient of the scalar `loss` at `x` by central differences in f64:
/// `(loss(x + h e_i) - loss(x - h e_i)) / 2h` for every i.
pub fn finite_difference(x: &[f64], h: f64, mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let plus = loss(&probe);
            probe[i] = x[i] - h;
            let minus = loss(&probe);
            probe[i] = x[i];
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

/// Checks an analytic gradient against finite differences of `loss`, within
/// `atol + rtol * |numeric|`.
#[track_caller]
pub fn assert_gradient(
    what: &str,
    x: &[f64],
    analytic: &[f64],
    loss: impl FnMut(&[f64]) -> f64,
    atol: f64,
    rtol: f64,
) {
    let numeric = finite_difference(x, 1e-5, loss);
    assert_eq!(analytic.len(), numeric.len(), "{what}: gradient length");
    for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
        assert!(
            (a - n).abs() <= atol + rtol * n.abs(),
            "{what}: d/dx[{i}] is {a} analytically but {n} by finite differences"
        );
    }
}

/// Converts for references written over f64.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_finds_the_element_out_of_tolerance() {
        assert!(compare("x", &[1.0, 2.0], &[1.0, 2.0 + 1e-7], 1e-6, 0.0).is_ok());
        let err = compare("x", &[1.0, 2.5], &[1.0, 2.0], 1e-3, 1e-3).unwrap_err();
        assert!(err.contains("element 1"), "{err}");
        assert!(compare("x", &[f32::NAN], &[0.0], 1.0, 1.0).is_err());
        assert!(compare("x", &[1.0], &[1.0, 2.0], 1.0, 1.0).is_err());
    }

    #[test]
    fn finite_difference_of_a_cubic() {
        let g = finite_difference(&[2.0, -1.0], 1e-5, |x| x[0].powi(3) + 3.0 * x[1]);
        assert!((g[0] - 12.0).abs() < 1e-6 && (g[1] - 3.0).abs() < 1e-6);
    }
}

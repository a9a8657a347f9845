//! Small helpers shared by every layer.

pub mod rng;

/// The product of `sizes`, `usize::MAX` where it would overflow: sizes read
/// from a file can be anything, and a check against a limit then refuses
/// the overflow as it refuses any size past the limit.
pub fn saturating_product(sizes: &[usize]) -> usize {
    sizes.iter().fold(1, |n, &d| n.saturating_mul(d))
}

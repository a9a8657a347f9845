//! Whether a network fits the adapter, checked on its cost before anything
//! is allocated: a layer whose parameters or output per clip would not fit
//! one storage buffer is refused by name, rather than the process aborting
//! when the host allocates its initial values.

use super::arch::Architecture;
use super::cost::Cost;
use super::error::ModelError;

/// Refuses the first layer of `cost` whose parameters, or output values of
/// one clip, need more than `max_buffer_bytes` as f32.
pub fn check_fits(
    arch: &Architecture,
    cost: &Cost,
    max_buffer_bytes: u64,
) -> Result<(), ModelError> {
    for layer in &cost.layers {
        let outputs = layer
            .output
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        for (what, values) in [
            ("parameters", Some(layer.params)),
            ("output values per clip", outputs),
        ] {
            let bytes = values.and_then(|v| v.checked_mul(4));
            if bytes.is_none_or(|b| b > max_buffer_bytes) {
                let count = values.map_or("too many".to_string(), |v| v.to_string());
                return Err(arch.build_error(
                    &layer.name,
                    &format!(
                        "its {count} {what} need more than the {max_buffer_bytes} bytes this adapter allows in one buffer (max_storage_buffer_binding_size); make the layer smaller"
                    ),
                ));
            }
        }
    }
    Ok(())
}

//! Seeded initialisation, as PyTorch's defaults and the usual variants.

use crate::util::rng::Rng;

/// Uniform in `±gain * sqrt(3 / fan_in)`: Kaiming (He) uniform; with gain
/// `1/sqrt(3)` it is PyTorch's default for conv and linear weights
/// (`kaiming_uniform_(a=sqrt(5))`, i.e. bound `1/sqrt(fan_in)`).
pub fn kaiming_uniform(rng: &mut Rng, len: usize, fan_in: usize, gain: f32) -> Vec<f32> {
    let bound = gain * (3.0 / fan_in.max(1) as f32).sqrt();
    rng.vec_uniform(len, -bound, bound)
}

/// Uniform in `±sqrt(6 / (fan_in + fan_out))`: Xavier (Glorot) uniform.
pub fn xavier_uniform(rng: &mut Rng, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let bound = (6.0 / (fan_in + fan_out).max(1) as f32).sqrt();
    rng.vec_uniform(len, -bound, bound)
}

/// How a layer's weights are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's default: uniform with bound `1/sqrt(fan_in)`.
    #[default]
    Default,
    /// Kaiming uniform for ReLU: bound `sqrt(6 / fan_in)`.
    Kaiming,
    Xavier,
}

impl Init {
    pub fn weights(self, rng: &mut Rng, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        match self {
            Init::Default => kaiming_uniform(rng, len, fan_in, 1.0 / 3f32.sqrt()),
            Init::Kaiming => kaiming_uniform(rng, len, fan_in, 2f32.sqrt()),
            Init::Xavier => xavier_uniform(rng, len, fan_in, fan_out),
        }
    }
}

/// PyTorch's default bias: uniform with bound `1/sqrt(fan_in)`.
pub fn default_bias(rng: &mut Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    rng.vec_uniform(len, -bound, bound)
}

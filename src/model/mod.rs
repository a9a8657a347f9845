//! Networks as data: the architecture description (JSON or TOML), building a
//! runnable network from it, and its cost model.

pub mod arch;
pub mod cost;
pub mod error;
mod fits;
pub mod mask;
pub mod network;
pub(crate) mod shapes;

pub use arch::{Architecture, LayerSpec, Op};
pub use cost::{
    layer_fields, measure_latency, measure_layer_latency, Cost, Field, LayerCost, OtherOps,
};
pub use error::ModelError;
pub use mask::{Activity, Mask, Source};
pub use network::{Inheritance, Network, Reshaped};

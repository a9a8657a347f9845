//! audionas: neural architecture search for small audio-recognition networks,
//! trained with hand-written WGSL kernels through wgpu.

pub mod bench;
pub mod compare;
pub mod data;
pub mod export;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod search;
pub mod train;
pub mod util;

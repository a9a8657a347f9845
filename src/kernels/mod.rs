//! One module per shader family: its parameter struct, its launch functions,
//! and its CPU reference (plain loops, obviously correct).

pub mod batchnorm;
pub mod check;
pub mod complex;
pub mod complex_depthwise;
pub mod complex_norm;
pub mod conv2d;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod gru;
pub mod im2col;
pub mod layout;
pub mod lstm;
pub mod mixed_edge;
pub mod optimizers;
pub mod pairwise;
pub mod pool;
pub mod reductions;
pub mod softmax_xent;

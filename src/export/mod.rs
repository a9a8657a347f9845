//! Found and trained models for other runtimes: ONNX export.

pub mod cli;
pub mod graph;
pub mod onnx;
pub mod proto;

pub use onnx::{export_onnx, ExportError, Exported, INPUT_NAME, OUTPUT_NAME};

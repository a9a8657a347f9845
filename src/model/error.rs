//! Errors of the model layer; each names the file or layer it is about.

use crate::gpu::GpuError;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A description or config file with a wrong key or value.
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// A description that cannot be built (a bad reference, shapes that do not fit).
    #[error("architecture {arch:?}, layer {layer:?}: {reason}")]
    Build {
        arch: String,
        layer: String,
        reason: String,
    },
    /// A model file that does not fit this network.
    #[error("{}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

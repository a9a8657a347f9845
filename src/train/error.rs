//! The one error type of the training-run layer: every message names the
//! file, key or value it is about and says what to do about it.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    /// Reading or writing a file failed for a reason outside the file's content.
    #[error("{}: {source}; check that the path exists and that you may read and write it", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that should be there is not.
    #[error("{}: no such {what}; check the path (a run keeps it in its folder runs/<name>/)", path.display())]
    MissingFile { path: PathBuf, what: &'static str },
    /// A file that is not a safetensors file, or a damaged one.
    #[error("{}: not a safetensors checkpoint ({reason}); give a .safetensors file that audionas wrote, or delete the damaged file and train again", path.display())]
    NotSafetensors { path: PathBuf, reason: String },
    /// A file whose content does not match the checksum it was saved with.
    #[error("{}: the file is damaged: its content does not match the checksum it was saved with; use another copy, or train again", path.display())]
    Damaged { path: PathBuf },
    /// A stored tensor with a NaN or infinite value.
    #[error("{}: tensor `{tensor}` holds {value} at index {index}; a model with NaN or infinite values gives no usable output, so use an earlier model or checkpoint, or train again", path.display())]
    NonFinite {
        path: PathBuf,
        tensor: String,
        index: usize,
        value: f32,
    },
    /// A checkpoint tensor stored with another element type than f32.
    #[error("{}: tensor `{tensor}` is stored as {dtype}, but audionas checkpoints hold only F32 tensors; convert the file to f32 or use a checkpoint that audionas wrote", path.display())]
    NotF32 {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A tensor handed to `save_checkpoint` that cannot be stored as given.
    #[error("{}: cannot save tensor `{tensor}`: {reason}", path.display())]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A line of metrics.jsonl that is not valid.
    #[error("{}:{line}: {reason}; fix or delete that line", path.display())]
    BadMetrics {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A learning-rate schedule with a value out of range.
    #[error("learning-rate schedule: `{key}` = {value} {reason}")]
    BadSchedule {
        key: &'static str,
        value: String,
        reason: String,
    },
    /// A run name that cannot be a folder name under runs/.
    #[error("run name {name:?} {reason}; use a plain folder name such as `kws_ds_cnn`")]
    BadRunName { name: String, reason: &'static str },
    /// A run folder that already holds a run.
    #[error("{}: this folder already holds a run (it kept a checkpoint or a model); choose another run name, resume the run, or delete the folder", path.display())]
    RunExists { path: PathBuf },
    /// A folder that is not a run folder.
    #[error("{}: not a run folder (it has no config.toml); give the folder a run wrote, such as runs/<name>", path.display())]
    NotARun { path: PathBuf },
    /// A file a run wrote whose content is not what audionas writes there.
    #[error("{}: {reason}; the run wrote this file, so it was damaged or edited since: restore it, or run again", path.display())]
    BadRunFile { path: PathBuf, reason: String },
    /// Drawing a plot failed.
    #[error("{}: cannot draw the plot: {reason}; the run itself is fine, only this picture is missing", path.display())]
    Plot { path: PathBuf, reason: String },
}

pub type TrainResult<T> = Result<T, TrainError>;

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A read failure: a missing file gets its own message.
    pub(crate) fn read(path: &Path, what: &'static str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            TrainError::MissingFile {
                path: path.to_path_buf(),
                what,
            }
        } else {
            TrainError::io(path, source)
        }
    }
}

impl From<crate::data::DataError> for TrainError {
    fn from(error: crate::data::DataError) -> Self {
        match error {
            crate::data::DataError::Io { path, source } => TrainError::Io { path, source },
            other => TrainError::Io {
                path: other.path().to_path_buf(),
                source: std::io::Error::other(other.reason()),
            },
        }
    }
}

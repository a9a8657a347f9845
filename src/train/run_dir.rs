//! The folder of one run, `runs/<name>/`, and the names of the files in it.

use super::atomic::write_durably;
use super::error::{TrainError, TrainResult};
use crate::data::error::remove_stale_temp_files;
use std::path::{Path, PathBuf};

/// The best model's file name in a run folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// A run folder: `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/last.safetensors` (for resuming), `model.safetensors` (the best
/// model) and the plots, which sit in the folder itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    pub root: PathBuf,
}

/// Checks that `name` can be a single folder name under `runs/`: not empty,
/// not `.` or `..`, no path separators, no control characters, and no
/// leading or trailing spaces.
pub fn validate_run_name(name: &str) -> TrainResult<()> {
    let bad = |reason| {
        Err(TrainError::BadRunName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("points at a folder instead of naming a new one");
    }
    if name.contains(['/', '\\']) {
        return bad("contains a path separator");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.trim() != name {
        return bad("starts or ends with white space");
    }
    Ok(())
}

impl RunDir {
    /// Makes `base/name/` (and `base`) and writes `config_text` to its
    /// config.toml. Fails if the folder already holds a run that kept work
    /// (a checkpoint or a model): to continue a run, use `open_existing`. A
    /// folder of a run stopped before its first epoch ended holds nothing
    /// to keep, so a new run takes it.
    pub fn create(base: &Path, name: &str, config_text: &str) -> TrainResult<RunDir> {
        validate_run_name(name)?;
        let run = RunDir {
            root: base.join(name),
        };
        if run.last_checkpoint().exists() || run.best_model().exists() {
            return Err(TrainError::RunExists { path: run.root });
        }
        std::fs::create_dir_all(&run.root).map_err(|e| TrainError::io(&run.root, e))?;
        run.remove_stale_temp_files();
        run.write_config(config_text)?;
        Ok(run)
    }

    /// A run folder that already holds a run (has a config.toml), to resume,
    /// evaluate or plot it.
    pub fn open_existing(path: &Path) -> TrainResult<RunDir> {
        if !path.is_dir() {
            return Err(TrainError::MissingFile {
                path: path.to_path_buf(),
                what: "run folder",
            });
        }
        let run = RunDir {
            root: path.to_path_buf(),
        };
        if !run.config().is_file() {
            return Err(TrainError::NotARun { path: run.root });
        }
        run.remove_stale_temp_files();
        Ok(run)
    }

    /// Temporary files of writes that a killed process never finished.
    fn remove_stale_temp_files(&self) {
        remove_stale_temp_files(&self.root);
        remove_stale_temp_files(&self.checkpoints_dir());
    }

    /// The folder name, which is the run name.
    pub fn name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    pub fn last_checkpoint(&self) -> PathBuf {
        self.checkpoints_dir().join("last.safetensors")
    }

    pub fn best_model(&self) -> PathBuf {
        self.root.join(MODEL_FILE)
    }

    pub fn plots_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// Replaces config.toml atomically.
    pub fn write_config(&self, text: &str) -> TrainResult<()> {
        write_durably(&self.config(), text.as_bytes())
    }

    /// The stored config text.
    pub fn read_config(&self) -> TrainResult<String> {
        let path = self.config();
        std::fs::read_to_string(&path).map_err(|e| TrainError::read(&path, "run config", e))
    }
}

//! The one error type of the data layer: every message names the file (or
//! folder) it is about and what is wrong with it.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a WAV file, or one hound cannot decode (truncated, unsupported format).
    #[error("{}: not a readable WAV file: {reason}", path.display())]
    BadWav { path: PathBuf, reason: String },
    /// A readable WAV whose content cannot be used (no samples, NaN or infinite values).
    #[error("{}: {reason}", path.display())]
    BadAudio { path: PathBuf, reason: String },
    /// A configuration file with a wrong key or value.
    #[error("{}: {reason}", path.display())]
    BadConfig { path: PathBuf, reason: String },
    /// A data set folder that does not have the expected layout.
    #[error("{}: {reason}", path.display())]
    BadDataSet { path: PathBuf, reason: String },
    /// A cache file that is unreadable or was written for other data.
    #[error("{}: feature cache unusable: {reason}", path.display())]
    BadCache { path: PathBuf, reason: String },
    /// A text-to-speech engine that is missing or failed.
    #[error("{}: {reason}", path.display())]
    Synthesis { path: PathBuf, reason: String },
}

pub type DataResult<T> = Result<T, DataError>;

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The message without the path, for lists that show the path apart.
    pub fn reason(&self) -> String {
        match self {
            DataError::Io { source, .. } => source.to_string(),
            DataError::BadWav { reason, .. } => format!("not a readable WAV file: {reason}"),
            DataError::BadCache { reason, .. } => format!("feature cache unusable: {reason}"),
            DataError::BadAudio { reason, .. }
            | DataError::BadConfig { reason, .. }
            | DataError::BadDataSet { reason, .. }
            | DataError::Synthesis { reason, .. } => reason.clone(),
        }
    }

    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            DataError::Io { path, .. }
            | DataError::BadWav { path, .. }
            | DataError::BadAudio { path, .. }
            | DataError::BadConfig { path, .. }
            | DataError::BadDataSet { path, .. }
            | DataError::BadCache { path, .. }
            | DataError::Synthesis { path, .. } => path,
        }
    }
}

/// Temporary files are named `.NAME.tmpPID`, PID the writing process.
const TEMP_MARK: &str = ".tmp";

/// Removes the temporary files in `dir` that processes no longer alive left
/// behind (killed between writing and renaming). Whether a process is alive
/// is known on Linux only; elsewhere nothing is removed.
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.starts_with('.'))
            .and_then(|n| n.rsplit_once(TEMP_MARK))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let dead = cfg!(target_os = "linux") && !Path::new("/proc").join(pid.to_string()).exists();
        if dead && pid != std::process::id() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes a file so that readers see either the old content or the whole new
/// one, never a half-written file: write a temporary sibling, then rename.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> DataResult<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}{TEMP_MARK}{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&temp)?;
        let mut writer = std::io::BufWriter::new(file);
        write(&mut writer)?;
        writer.flush()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        DataError::io(path, e)
    })
}

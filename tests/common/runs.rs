//! What the crash tests look at in a run folder after a stop.

use audionas::train::load_checkpoint;
use std::path::{Path, PathBuf};
use std::process::Output;

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The epoch a run's checkpoint stands at; 0 without one.
pub fn checkpoint_epoch(run: &Path) -> usize {
    let path = run.join("checkpoints/last.safetensors");
    if !path.exists() {
        return 0;
    }
    let (_, meta) = load_checkpoint(&path).unwrap();
    meta["epoch"].parse().unwrap()
}

/// Temporary files (`.NAME.tmpPID`) left anywhere under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temp_files(&path));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".tmp"))
        {
            found.push(path);
        }
    }
    found
}

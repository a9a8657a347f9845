//! Durable atomic writes: a reader (or a run resumed after a crash) sees
//! either the old file or the whole new one, never a half-written file.

use super::error::TrainResult;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary sibling that is flushed and
/// fsynced before it is renamed over `path`; then fsyncs the folder (on Unix)
/// so that the rename itself survives a power cut. Creates missing parent folders.
pub fn write_durably(path: &Path, bytes: &[u8]) -> TrainResult<()> {
    crate::data::error::write_atomically(path, |writer| {
        writer.write_all(bytes)?;
        writer.flush()?;
        writer.get_ref().sync_all()
    })?;
    sync_parent(path);
    Ok(())
}

/// Best effort: the rename is already done, and a folder that cannot be
/// opened for syncing (some file systems, Windows) is no reason to fail.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

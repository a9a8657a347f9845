//! Durable atomic writes: a reader (or a run resumed after a crash) sees
//! either the old file or the whole new one, never a half-written file.

use super::error::TrainResult;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Writes `bytes` to `path` through a temporary sibling that is flushed and
/// fsynced before it is renamed over `path`; then fsyncs the folder (on Unix)
/// so that the rename itself survives a power cut. Creates missing parent folders.
pub fn write_durably(path: &Path, bytes: &[u8]) -> TrainResult<()> {
    crate::data::error::write_atomically(path, |writer| {
        writer.write_all(bytes)?;
        writer.flush()?;
        writer.get_ref().sync_all()?;
        crash_point();
        Ok(())
    })?;
    sync_parent(path);
    crash_point();
    Ok(())
}

/// The environment variable of the crash-consistency test hook: set to N,
/// the process exits with `CRASH_EXIT_CODE` at its N-th crash point, as a
/// kill there would stop it. The crash points are the moments before and
/// after each durable write's rename and after each metrics line.
pub const CRASH_AT_ENV: &str = "AUDIONAS_CRASH_AT";
pub const CRASH_EXIT_CODE: i32 = 86;

pub(crate) fn crash_point() {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static REACHED: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok()?.parse().ok());
    if let Some(limit) = *limit {
        if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == limit {
            std::process::exit(CRASH_EXIT_CODE);
        }
    }
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

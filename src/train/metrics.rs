//! metrics.jsonl: one JSON object per line, appended as training goes.
//!
//! Every line is an object with a `"kind"` field saying what it records.
//! Epoch summaries are `EpochRecord`s with `"kind": "epoch"`; other writers
//! add their own kinds (for example per-step or architecture-weight lines)
//! and should give them an `"epoch"` field too, so that a resumed run can
//! drop the lines of epochs it is about to redo (`truncate_after_epoch`).

use super::atomic::{crash_point, write_durably};
use super::error::{TrainError, TrainResult};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The value of `"kind"` on epoch summary lines.
pub const EPOCH_KIND: &str = "epoch";

/// The summary of one finished epoch. Serialized with `"kind": "epoch"` in
/// front of these fields; accuracies are fractions in [0, 1].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename = "epoch")]
pub struct EpochRecord {
    pub epoch: usize,
    /// The global step count at the end of the epoch.
    pub step: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub samples_per_s: f64,
    pub seconds: f64,
}

/// An open metrics.jsonl, appended to one whole line at a time.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, creating it (and its folder) if needed. A
    /// last line without its newline, left by a run killed while writing it,
    /// is cut off so that the next record starts on a line of its own.
    pub fn open(path: &Path) -> TrainResult<MetricsLog> {
        let io = |e| TrainError::io(path, e);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let text = std::fs::read(path).map_err(io)?;
        if !text.is_empty() && !text.ends_with(b"\n") {
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one JSON line and syncs it to the disk, so that
    /// it is durable before anything written after it. Records should
    /// serialize to JSON objects with a `"kind"` field.
    pub fn append(&mut self, record: &impl Serialize) -> TrainResult<()> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| TrainError::io(&self.path, std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| TrainError::io(&self.path, e))?;
        crash_point();
        Ok(())
    }
}

/// Reads the epoch records of a metrics file in file order, skipping lines of
/// other kinds. A last line without its newline that is not valid JSON (a
/// write cut short by a crash) is ignored; any other line that is not a JSON
/// object, or an epoch line without the `EpochRecord` fields, is an error that
/// names the line.
pub fn read_epoch_records(path: &Path) -> TrainResult<Vec<EpochRecord>> {
    let text = read_text(path)?;
    let mut records = Vec::new();
    for (number, line, value) in json_lines(path, &text)? {
        let Some(value) = value else { continue };
        if value.get("kind").and_then(|k| k.as_str()) != Some(EPOCH_KIND) {
            continue;
        }
        let record = serde_json::from_value(value).map_err(|e| TrainError::BadMetrics {
            path: path.to_path_buf(),
            line: number,
            reason: format!("not a valid epoch record ({e}): {}", shorten(line)),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Rewrites the metrics file atomically, keeping only the lines whose
/// `"epoch"` is at most `epoch` and the lines without an `"epoch"` number (a
/// run header, say); a torn last line goes too. Used when a killed run resumes
/// from the checkpoint of `epoch`. A missing file is left missing.
pub fn truncate_after_epoch(path: &Path, epoch: usize) -> TrainResult<()> {
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(|e| TrainError::io(path, e))?,
    };
    let mut kept = String::with_capacity(text.len());
    for (_, line, value) in json_lines(path, &text)? {
        let Some(value) = value else { continue };
        let line_epoch = value.get("epoch").and_then(|e| e.as_u64());
        if line_epoch.is_none_or(|e| e <= epoch as u64) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    write_durably(path, kept.as_bytes())
}

fn read_text(path: &Path) -> TrainResult<String> {
    std::fs::read_to_string(path).map_err(|e| TrainError::read(path, "metrics file", e))
}

/// The non-blank lines of `text` with their 1-based numbers and parsed JSON
/// objects; the value is `None` only for a torn last line.
pub(crate) fn json_lines<'t>(
    path: &Path,
    text: &'t str,
) -> TrainResult<Vec<(usize, &'t str, Option<serde_json::Value>)>> {
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    let mut out = Vec::with_capacity(count);
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.is_object() => out.push((number, line, Some(value))),
            Ok(_) => {
                return Err(TrainError::BadMetrics {
                    path: path.to_path_buf(),
                    line: number,
                    reason: format!("not a JSON object: {}", shorten(line)),
                })
            }
            Err(_) if torn_tail && number == count => out.push((number, line, None)),
            Err(e) => {
                return Err(TrainError::BadMetrics {
                    path: path.to_path_buf(),
                    line: number,
                    reason: format!("not valid JSON ({e}): {}", shorten(line)),
                })
            }
        }
    }
    Ok(out)
}

/// The start of a long line, for error messages.
fn shorten(line: &str) -> String {
    const MAX: usize = 80;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

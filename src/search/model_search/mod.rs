//! Model Search (Google's): towers of blocks proposed by adaptive
//! coordinate descent from the best trials so far, each child started from
//! its parent's trained weights, trials recorded in an archive that any
//! number of worker processes share.

pub mod archive;
pub mod blocks;
pub mod cli;
pub mod config;
pub mod plots;
pub mod postgres_archive;
pub mod proposal;
pub mod worker;

use crate::train::atomic::write_durably;
use crate::train::model_file::parse_model;
use archive::{Trial, TrialState};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The default archive of a run: a SQLite file in its folder.
pub const ARCHIVE_FILE: &str = "archive.sqlite";
/// Where a run keeps the archive URL it was started with (absent: the default file).
pub const ARCHIVE_URL_FILE: &str = "archive.url";

/// What a finished search reports, in `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSearchSummary {
    pub strategy: String,
    pub algorithm: String,
    pub trials: usize,
    pub completed: usize,
    pub failed: usize,
    /// From the first trial's start to the last one's end.
    pub seconds: f64,
    pub best: Option<Trial>,
    /// The best tower's parameters and MACs per clip.
    pub params: u64,
    pub macs: u64,
    /// The best tower as a plain description.
    pub architecture: Option<PathBuf>,
}

/// The completed trial of the highest score (the earlier on a tie).
pub fn best_trial(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Completed && t.score.is_some())
        .min_by(|a, b| {
            let (sa, sb) = (
                a.score.unwrap_or(f64::NEG_INFINITY),
                b.score.unwrap_or(f64::NEG_INFINITY),
            );
            sb.total_cmp(&sa).then(a.id.cmp(&b.id))
        })
}

/// Writes `architecture.json` (the best tower, read from its model file)
/// and `results.json` into `root`, and returns the summary.
pub fn summarise(
    root: &Path,
    algorithm: &str,
    trials: &[Trial],
) -> anyhow::Result<ModelSearchSummary> {
    let count = |state| trials.iter().filter(|t| t.state == state).count();
    let first = trials
        .iter()
        .map(|t| t.started_at)
        .fold(f64::INFINITY, f64::min);
    let last = trials
        .iter()
        .map(|t| t.ended_at.unwrap_or(t.heartbeat_at))
        .fold(f64::NEG_INFINITY, f64::max);
    let best = best_trial(trials).cloned();
    let mut architecture = None;
    if let Some(model) = best.as_ref().and_then(|b| b.model_path.as_ref()) {
        let path = root.join(model);
        let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut arch = parse_model(&bytes, &path)?.1.architecture;
        arch.name = "model_search_best".into();
        let path = root.join(crate::search::darts::ARCHITECTURE_FILE);
        write_durably(&path, arch.to_json().as_bytes())?;
        architecture = Some(path);
    }
    let summary = ModelSearchSummary {
        strategy: config::STRATEGY.into(),
        algorithm: algorithm.into(),
        trials: trials.len(),
        completed: count(TrialState::Completed),
        failed: count(TrialState::Failed),
        seconds: if trials.is_empty() {
            0.0
        } else {
            (last - first).max(0.0)
        },
        params: best.as_ref().map_or(0, |b| b.params),
        macs: best.as_ref().map_or(0, |b| b.macs),
        best,
        architecture,
    };
    write_durably(
        &root.join(crate::search::darts::RESULTS_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

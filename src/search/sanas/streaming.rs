//! The streaming test inside a SANAS sweep: a stream of the validation
//! split's words, every point and every reference model scored on it
//! (Match, Correct, Wrong, False alarms and the mean MACs per window), as
//! `eval --stream` scores a recording.

use super::adaptive::{adaptive_window_scores, CONTROLLER_FILE};
use super::SanasConfig;
use crate::data::dataset::Split;
use crate::data::stream::{evaluate_stream, split_stream, RecognizeConfig, Stream, StreamConfig};
use crate::gpu::Gpu;
use crate::train::cli::window_scores;
use crate::train::model_file::load_model;
use crate::train::session::Data;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A model's streaming test, percentages of the stream's words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamScore {
    pub words: usize,
    pub matched: f64,
    pub correct: f64,
    pub wrong: f64,
    pub false_alarms: f64,
    /// Mean multiply-accumulates of the windows as they ran.
    pub macs_per_window: f64,
}

/// A reference model's score on the sweep's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceScore {
    pub model: PathBuf,
    pub score: StreamScore,
}

/// The sweep's stream: `stream_seconds` of the validation split's words
/// over the background noise, drawn from the experiment's seed.
pub fn validation_stream(data: &Data, config: &SanasConfig) -> anyhow::Result<Stream> {
    let features = &config.experiment.features;
    let stream = split_stream(
        &data.set,
        Split::Validation,
        &StreamConfig {
            sample_rate: features.sample_rate,
            duration_s: config.search.stream_seconds,
            seed: config.experiment.train.seed,
            ..StreamConfig::default()
        },
    )
    .with_context(|| {
        format!(
            "{}: building the validation stream",
            data.set.root.display()
        )
    })?;
    if stream.truth.is_empty() {
        bail!(
            "[search] stream_seconds = {}: the validation stream of {} holds no word; make it longer",
            config.search.stream_seconds,
            data.set.root.display()
        );
    }
    Ok(stream)
}

/// Runs the streaming test of the model at `model` (a plain model, or an
/// adaptive point with its controller) on `stream`, a window every
/// `stride_ms`.
pub fn score_model(
    gpu: &Gpu,
    model: &Path,
    stream: &Stream,
    stride_ms: i64,
) -> anyhow::Result<StreamScore> {
    let (mut network, info, _) = load_model(gpu, model, None)?;
    if info.features.sample_rate != stream.sample_rate {
        bail!(
            "{}: the model hears {} Hz and the stream is {} Hz",
            model.display(),
            info.features.sample_rate,
            stream.sample_rate
        );
    }
    let (scores, macs_per_window) = if model.join(CONTROLLER_FILE).is_file() {
        adaptive_window_scores(gpu, &mut network, &info, model, &stream.samples, stride_ms)?
    } else {
        window_scores(gpu, &mut network, &info, &stream.samples, stride_ms)?
    };
    let config = RecognizeConfig {
        clip_stride_ms: stride_ms,
        ..RecognizeConfig::default()
    };
    let (stats, _) = evaluate_stream(&info.classes, &scores, &stream.truth, &config)
        .map_err(anyhow::Error::msg)
        .with_context(|| model.display().to_string())?;
    Ok(StreamScore {
        words: stats.ground_truth,
        matched: stats.matched_percent(),
        correct: stats.correct_percent(),
        wrong: stats.wrong_percent(),
        false_alarms: stats.false_alarm_percent(),
        macs_per_window,
    })
}

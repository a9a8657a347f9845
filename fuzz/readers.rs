//! What each fuzz target feeds its input to: the readers of untrusted files,
//! called as the program calls them, up to where a GPU would be needed.
//! Shared by the fuzz targets and by `tests/fuzz_regressions.rs`, which
//! replays the inputs kept in `tests/fuzz_regressions/<target>/`.
//!
//! Every reader must return, with a value or an error; a panic, hang or
//! abort is a bug in the reader.

use audionas::data::wav::read_wav_from;
use audionas::model::{Architecture, Cost};
use audionas::search::config::SearchConfig;
use audionas::train::config::Experiment;
use audionas::train::model_file::parse_model;
use std::path::Path;

/// A folder that does not exist, so that relative paths in a config lead nowhere.
const BASE: &str = "/nonexistent-audionas-fuzz";

/// Runs `data` through the reader of `target`, a fuzz target's name.
pub fn read(target: &str, data: &[u8]) {
    match target {
        "wav" => wav(data),
        "experiment_config" => experiment_config(data),
        "search_config" => search_config(data),
        "architecture_json" => architecture(data, "architecture.json"),
        "architecture_toml" => architecture(data, "architecture.toml"),
        "model_file" => model_file(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// A WAV file read as training and inference read one, resampled to 16 kHz.
pub fn wav(data: &[u8]) {
    let _ = read_wav_from(data, &Path::new(BASE).join("clip.wav"), 16_000);
}

/// An experiment config, then the cost of its model as building it checks it.
pub fn experiment_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Experiment::parse(text, &Path::new(BASE).join("experiment.toml")) {
        let _ = Cost::of(
            &e.model,
            &e.features.clip_shape(),
            12,
            e.features.clip_ms,
            None,
        );
    }
}

/// A search config (its parsing builds and costs the supernet).
pub fn search_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SearchConfig::parse(text, &Path::new(BASE).join("search.toml"));
    }
}

/// An architecture description (`file` says JSON or TOML), then its cost on
/// 49x10 MFCC clips with 12 classes, as `audionas cost --arch` does.
pub fn architecture(data: &[u8], file: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(arch) = Architecture::parse(text, &Path::new(BASE).join(file)) {
        let _ = Cost::of(&arch, &[1, 49, 10], 12, 1000.0, None);
    }
}

/// A model file as `load_model` reads it, then the cost model's checks that
/// building its network starts with.
pub fn model_file(data: &[u8]) {
    if let Ok((_, info, _)) = parse_model(data, &Path::new(BASE).join("model.safetensors")) {
        let shape = info.features.clip_shape();
        let _ = Cost::of(&info.architecture, &shape, info.classes.len(), 1000.0, None);
    }
}

//! Clips longer than a second through every search family, as language
//! identification needs: the tiny DARTS, SANAS and Model Search searches of
//! the other search tests on 2.5 s clips (the tone data padded to them),
//! each finishing with an architecture that trains on those clips. Time
//! lengths come from the features, never from a fixed frame count.

#[path = "common/binary.rs"]
#[allow(dead_code)]
mod binary;
mod common;
#[path = "common/model_search.rs"]
mod model_search_config;
// Only its static config is used here.
#[allow(dead_code)]
#[path = "common/sanas.rs"]
mod sanas_config;
#[path = "common/search.rs"]
mod search_config;

use binary::{ok, run};

/// `config` on 2.5 s clips.
fn long(config: &str) -> String {
    assert!(config.contains("clip_ms = 1000.0"));
    config.replace("clip_ms = 1000.0", "clip_ms = 2500.0")
}

/// Runs the search of `config` on the tone data, then trains its
/// architecture one epoch on the same long clips.
fn search_and_retrain(config: &str, name: &str) {
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    common::write_tone_data(&dir.join("data"), 3);
    std::fs::write(dir.join("search.toml"), long(config)).unwrap();
    std::fs::write(dir.join("train.toml"), long(common::TINY_CONFIG)).unwrap();
    let base = ["--data", "data", "--runs", "runs", "--name"];
    let mut args = vec!["search", "--config", "search.toml"];
    args.extend(base);
    args.push(name);
    ok(run(dir, &args));
    let arch = format!("runs/{name}/architecture.json");
    assert!(dir.join(&arch).is_file(), "{name}: no architecture");
    let retrained = format!("{name}_retrained");
    let mut args = vec!["train", "--config", "train.toml", "--arch", &arch];
    args.extend(base);
    args.extend([retrained.as_str(), "--epochs", "1"]);
    ok(run(dir, &args));
    // The cost of 2.5 s of features: the model file names them.
    let (_, info) =
        audionas::train::model_file::read_model_tensors(&dir.join("runs").join(&retrained))
            .unwrap();
    assert_eq!(info.features.clip_ms, 2500.0);
    assert_eq!(info.features.clip_shape()[1], 124, "{:?}", info.features);
}

#[test]
fn a_darts_search_runs_on_long_clips() {
    search_and_retrain(&search_config::tiny_search(1, ""), "darts");
}

#[test]
fn a_sanas_search_runs_on_long_clips() {
    search_and_retrain(&sanas_config::tiny_config("[0.5]", 1), "sanas");
}

#[test]
fn a_model_search_runs_on_long_clips() {
    search_and_retrain(&model_search_config::tiny_search(2, ""), "model_search");
}

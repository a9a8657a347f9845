//! Crash consistency of a search: a tiny DARTS search stopped dead at each
//! crash point (before and after each durable write's rename, after each
//! line of its logs: architecture weights, metrics, checkpoint, derived
//! architecture, results, plots) and then resumed keeps its logs and its
//! checkpoint in agreement, leaves no temporary file, and ends with the
//! architecture weights and the architecture of an uninterrupted search.

#[path = "common/binary.rs"]
#[allow(dead_code)]
mod binary;
mod common;
#[path = "common/runs.rs"]
mod runs;
#[path = "common/sanas.rs"]
mod sanas_config;
#[path = "common/search.rs"]
mod search_config;

use audionas::train::atomic::{CRASH_AT_ENV, CRASH_EXIT_CODE};
use std::path::{Path, PathBuf};
use std::process::Output;

fn search(dir: &Path, name: &str, resume: bool, crash_at: Option<usize>) -> Output {
    search_with(dir, "search.toml", name, resume, crash_at)
}

fn search_with(
    dir: &Path,
    config: &str,
    name: &str,
    resume: bool,
    crash_at: Option<usize>,
) -> Output {
    let mut command = binary::command(dir);
    command.args(["search", "--data", "data", "--runs", "runs", "--name", name]);
    if resume {
        command.arg("--resume");
    } else {
        command.args(["--config", config]);
    }
    if let Some(n) = crash_at {
        command.env(CRASH_AT_ENV, n.to_string());
    }
    command.output().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_search_stopped_at_any_write_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    common::write_tone_data(&dir.join("data"), 4);
    std::fs::write(dir.join("search.toml"), search_config::tiny_search(1, "")).unwrap();
    let reference = search(dir, "reference", false, None);
    assert!(reference.status.success(), "{}", runs::describe(&reference));
    let runs = dir.join("runs");
    let weights = read(&runs.join("reference/arch_weights.jsonl"));
    let architecture = read(&runs.join("reference/architecture.json"));
    assert_eq!(weights.lines().count(), 1);

    let mut crash_at = 1;
    loop {
        let name = format!("crash{crash_at}");
        let run = runs.join(&name);
        let stopped = search(dir, &name, false, Some(crash_at));
        if stopped.status.success() {
            break;
        }
        assert_eq!(
            stopped.status.code(),
            Some(CRASH_EXIT_CODE),
            "crash point {crash_at}: {}",
            runs::describe(&stopped)
        );
        // The logs may be one epoch ahead of the checkpoint, never behind.
        let logged = read(&run.join("arch_weights.jsonl")).lines().count();
        let kept = runs::checkpoint_epoch(&run);
        assert!(
            kept == logged || kept + 1 == logged,
            "crash point {crash_at}: checkpoint at epoch {kept}, {logged} weight lines"
        );
        let resume = run.join("config.toml").exists();
        let resumed = search(dir, &name, resume, None);
        assert!(
            resumed.status.success(),
            "crash point {crash_at}: {}",
            runs::describe(&resumed)
        );
        assert_eq!(
            runs::temp_files(&run),
            Vec::<PathBuf>::new(),
            "crash point {crash_at}"
        );
        assert_eq!(
            read(&run.join("arch_weights.jsonl")),
            weights,
            "crash point {crash_at}"
        );
        let derived = read(&run.join("architecture.json"))
            .replace(&format!("crash{crash_at}_darts"), "reference_darts");
        assert_eq!(derived, architecture, "crash point {crash_at}");
        assert!(run.join("results.json").exists(), "crash point {crash_at}");
        crash_at += 1;
    }
    // The weights line, the metrics line and the checkpoint's two points at least.
    assert!(crash_at > 4, "only {} crash points", crash_at - 1);
}

/// What a SANAS point ends with, less its times: the gate log and the
/// scores and costs of its results.
fn sanas_outcome(point: &Path) -> (String, Vec<serde_json::Value>) {
    let results: serde_json::Value =
        serde_json::from_str(&read(&point.join("results.json"))).unwrap_or_default();
    let keys = [
        "probabilities",
        "kept",
        "kept_cost",
        "val_accuracy",
        "test_accuracy",
        "macs",
    ];
    (
        read(&point.join("gates.jsonl")),
        keys.iter().map(|k| results[k].clone()).collect(),
    )
}

/// A static and an adaptive SANAS search, each stopped dead at every crash
/// point and resumed, end with the gate log and the results of an
/// uninterrupted search (the adaptive controller's file per epoch keeps it
/// in step with the super network's checkpoint).
#[test]
fn sanas_searches_stopped_at_any_write_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    common::write_tone_data(&dir.join("data"), 4);
    sanas_config::write_silence(&dir.join("data/_silence_"));
    std::fs::write(
        dir.join("static.toml"),
        sanas_config::tiny_config("[5.0]", 2),
    )
    .unwrap();
    std::fs::write(
        dir.join("adaptive.toml"),
        sanas_config::tiny_adaptive_config("[5.0]", 2),
    )
    .unwrap();
    let runs = dir.join("runs");
    for kind in ["static", "adaptive"] {
        let config = format!("{kind}.toml");
        let reference = search_with(dir, &config, kind, false, None);
        assert!(reference.status.success(), "{}", runs::describe(&reference));
        let point = |name: &str| runs.join(name).join("points/lambda_5");
        let want = sanas_outcome(&point(kind));
        assert_eq!(want.0.lines().count(), 2, "{kind}");
        let mut crash_at = 1;
        loop {
            let name = format!("{kind}_crash{crash_at}");
            let stopped = search_with(dir, &config, &name, false, Some(crash_at));
            if stopped.status.success() {
                break;
            }
            assert_eq!(
                stopped.status.code(),
                Some(CRASH_EXIT_CODE),
                "{kind} crash point {crash_at}: {}",
                runs::describe(&stopped)
            );
            let resume = runs.join(&name).join("config.toml").exists();
            let resumed = search_with(dir, &config, &name, resume, None);
            assert!(
                resumed.status.success(),
                "{kind} crash point {crash_at}: {}",
                runs::describe(&resumed)
            );
            assert_eq!(
                runs::temp_files(&point(&name)),
                Vec::<PathBuf>::new(),
                "{kind} crash point {crash_at}"
            );
            assert_eq!(
                sanas_outcome(&point(&name)),
                want,
                "{kind} crash point {crash_at}"
            );
            crash_at += 1;
        }
        assert!(crash_at > 6, "{kind}: only {} crash points", crash_at - 1);
    }
}

//! Crash consistency of a search: a tiny DARTS search stopped dead at each
//! crash point (before and after each durable write's rename, after each
//! line of its logs: architecture weights, metrics, checkpoint, derived
//! architecture, results, plots) and then resumed keeps its logs and its
//! checkpoint in agreement, leaves no temporary file, and ends with the
//! architecture weights and the architecture of an uninterrupted search.

mod common;
#[path = "common/runs.rs"]
mod runs;
#[path = "common/search.rs"]
mod search_config;

use audionas::train::atomic::{CRASH_AT_ENV, CRASH_EXIT_CODE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn search(dir: &Path, name: &str, resume: bool, crash_at: Option<usize>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_audionas"));
    command.args(["search", "--data", "data", "--runs", "runs", "--name", name]);
    if resume {
        command.arg("--resume");
    } else {
        command.args(["--config", "search.toml"]);
    }
    if let Some(n) = crash_at {
        command.env(CRASH_AT_ENV, n.to_string());
    }
    command
        .current_dir(dir)
        .env("WGPU_BACKEND", "vulkan")
        .env("NODEVICE_SELECT", "1")
        .env("AUDIONAS_CACHE", dir.join("cache"))
        .output()
        .unwrap()
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

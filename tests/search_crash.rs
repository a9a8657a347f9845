//! Crash consistency of a search: a tiny DARTS search stopped dead at each
//! crash point (before and after each durable write's rename, after each
//! line of its logs: architecture weights, metrics, checkpoint, derived
//! architecture, results, plots) and then resumed keeps its logs and its
//! checkpoint in agreement, leaves no temporary file, and ends with the
//! architecture weights and the architecture of an uninterrupted search.

mod common;

use audionas::train::atomic::{CRASH_AT_ENV, CRASH_EXIT_CODE};
use audionas::train::load_checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tiny experiment's features; one epoch of a two-cell space.
fn search_config() -> String {
    let features = common::TINY_CONFIG
        .split("[train]")
        .next()
        .expect("features first");
    format!(
        r#"{features}
[train]
epochs = 1
batch_size = 8
lr = 0.025
optimizer = {{ kind = "sgd", momentum = 0.9 }}
seed = 3
log_every = 2

[data]
split = "speaker"

[space]
stem = {{ channels = 4, kernel = [3, 3], stride = [2, 2] }}
cells = 2
reductions = [1]
nodes = 2
channels = 4
ops = ["zero", "skip", "max_pool_3x3", "sep_conv_3x3"]
"#
    )
}

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

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn checkpoint_epoch(run: &Path) -> usize {
    let path = run.join("checkpoints/last.safetensors");
    if !path.exists() {
        return 0;
    }
    let (_, meta) = load_checkpoint(&path).unwrap();
    meta["epoch"].parse().unwrap()
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
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

#[test]
fn a_search_stopped_at_any_write_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    common::write_tone_data(&dir.join("data"), 4);
    std::fs::write(dir.join("search.toml"), search_config()).unwrap();
    let reference = search(dir, "reference", false, None);
    assert!(reference.status.success(), "{}", describe(&reference));
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
            describe(&stopped)
        );
        // The logs may be one epoch ahead of the checkpoint, never behind.
        let logged = read(&run.join("arch_weights.jsonl")).lines().count();
        let kept = checkpoint_epoch(&run);
        assert!(
            kept == logged || kept + 1 == logged,
            "crash point {crash_at}: checkpoint at epoch {kept}, {logged} weight lines"
        );
        let resume = run.join("config.toml").exists();
        let resumed = search(dir, &name, resume, None);
        assert!(
            resumed.status.success(),
            "crash point {crash_at}: {}",
            describe(&resumed)
        );
        assert_eq!(
            temp_files(&run),
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

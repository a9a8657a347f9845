//! Crash consistency: a training run stopped dead at each crash point of its
//! epochs' ends (before and after each durable write's rename, after each
//! metrics line: best model, checkpoint, metrics, plots, results) and then
//! resumed loses at most the epoch it was in, keeps metrics and checkpoint
//! in agreement, leaves no temporary file, and ends with the weights of an
//! uninterrupted run, bit for bit.

mod common;
#[path = "common/runs.rs"]
mod runs;

use audionas::train::atomic::{CRASH_AT_ENV, CRASH_EXIT_CODE};
use audionas::train::{load_checkpoint, read_epoch_records, EpochRecord, NamedTensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCHS: usize = 2;

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        common::write_tone_data(&dir.path().join("data"), 4);
        let config = common::TINY_CONFIG.replace("epochs = 4", &format!("epochs = {EPOCHS}"));
        std::fs::write(dir.path().join("tiny.toml"), config).unwrap();
        Workspace { dir }
    }

    fn run_folder(&self, name: &str) -> PathBuf {
        self.dir.path().join("runs").join(name)
    }

    /// `audionas train ...` in the workspace, stopped at crash point
    /// `crash_at` when given.
    fn train(&self, name: &str, resume: bool, crash_at: Option<usize>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_audionas"));
        command.args(["train", "--data", "data", "--runs", "runs", "--name", name]);
        if resume {
            command.arg("--resume");
        } else {
            command.args(["--config", "tiny.toml"]);
        }
        if let Some(n) = crash_at {
            command.env(CRASH_AT_ENV, n.to_string());
        }
        command
            .current_dir(self.dir.path())
            .env("WGPU_BACKEND", "vulkan")
            .env("NODEVICE_SELECT", "1")
            .env("AUDIONAS_CACHE", self.dir.path().join("cache"))
            .output()
            .unwrap()
    }
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", runs::describe(output));
}

fn metrics(run: &Path) -> Vec<EpochRecord> {
    let path = run.join("metrics.jsonl");
    if path.exists() {
        read_epoch_records(&path).unwrap()
    } else {
        Vec::new()
    }
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let (tensors, _) = load_checkpoint(path).unwrap();
    tensors
        .into_iter()
        .map(|NamedTensor { name, shape, data }| {
            (name, shape, data.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

/// What must not depend on how often a run was stopped: everything but times.
fn comparable(records: &[EpochRecord]) -> Vec<EpochRecord> {
    records
        .iter()
        .map(|r| EpochRecord {
            samples_per_s: 0.0,
            seconds: 0.0,
            ..r.clone()
        })
        .collect()
}

#[test]
fn a_run_stopped_at_any_write_resumes_to_the_uninterrupted_result() {
    let ws = Workspace::new();
    assert_ok(&ws.train("reference", false, None));
    let reference = ws.run_folder("reference");
    let reference_model = tensors(&reference.join("model.safetensors"));
    let reference_checkpoint = tensors(&reference.join("checkpoints/last.safetensors"));
    let reference_metrics = comparable(&metrics(&reference));
    assert_eq!(reference_metrics.len(), EPOCHS);

    let mut crash_at = 1;
    loop {
        let name = format!("crash{crash_at}");
        let run = ws.run_folder(&name);
        let stopped = ws.train(&name, false, Some(crash_at));
        if stopped.status.success() {
            break;
        }
        assert_eq!(
            stopped.status.code(),
            Some(CRASH_EXIT_CODE),
            "crash point {crash_at}: {}",
            runs::describe(&stopped)
        );
        // At most the epoch in progress is lost: its metrics line may be
        // written, its checkpoint not yet.
        let finished: Vec<usize> = metrics(&run).iter().map(|r| r.epoch).collect();
        let kept = runs::checkpoint_epoch(&run);
        assert_eq!(finished, (1..=finished.len()).collect::<Vec<_>>());
        assert!(
            kept == finished.len() || kept + 1 == finished.len(),
            "crash point {crash_at}: checkpoint at epoch {kept}, metrics of epochs {finished:?}"
        );
        // A run stopped before writing its config is started again; any
        // other is resumed.
        let resume = run.join("config.toml").exists();
        assert_ok(&ws.train(&name, resume, None));
        assert_eq!(
            runs::temp_files(&run),
            Vec::<PathBuf>::new(),
            "crash point {crash_at}"
        );
        assert_eq!(
            runs::checkpoint_epoch(&run),
            EPOCHS,
            "crash point {crash_at}"
        );
        assert_eq!(
            comparable(&metrics(&run)),
            reference_metrics,
            "crash point {crash_at}"
        );
        assert!(
            tensors(&run.join("model.safetensors")) == reference_model,
            "crash point {crash_at}: the best model differs"
        );
        assert!(
            tensors(&run.join("checkpoints/last.safetensors")) == reference_checkpoint,
            "crash point {crash_at}: the last checkpoint differs"
        );
        assert!(run.join("results.json").exists(), "crash point {crash_at}");
        crash_at += 1;
    }
    // Every epoch's end has at least its metrics line and the checkpoint's
    // two points.
    assert!(crash_at > 3 * EPOCHS, "only {} crash points", crash_at - 1);
}

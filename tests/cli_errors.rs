//! User mistakes given to the real binary: each ends with exit code 2 and one
//! `error:` message on stderr that names the file, key or value and says
//! what to do, never a panic, and leaves no file behind that blocks the
//! corrected command.

mod common;

use audionas::train::{load_checkpoint, save_checkpoint, NamedTensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A temp folder holding the tone data set, a config, a feature cache and
/// the run folders; the binary runs inside it.
struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        common::write_tone_data(&dir.path().join("data"), 2);
        std::fs::write(dir.path().join("tiny.toml"), common::TINY_CONFIG).unwrap();
        Workspace { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `text` to `name` in the workspace and gives its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `audionas ARGS` in the workspace, on lavapipe, with the feature
    /// cache inside the workspace.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_audionas"))
            .args(args)
            .current_dir(self.dir.path())
            .env("WGPU_BACKEND", "vulkan")
            .env("NODEVICE_SELECT", "1")
            .env("AUDIONAS_CACHE", self.path("cache"))
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap()
    }

    /// `train --config CONFIG --data DATA --runs runs --name NAME EXTRA`.
    fn train(&self, config: &str, data: &str, name: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "train", "--config", config, "--data", data, "--runs", "runs", "--name", name,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks the output of a command given a user mistake: exit code 2, stderr
/// is one `error:` message holding every `needle`, and nothing panicked.
/// Gives the message.
fn assert_user_error(output: &Output, needles: &[&str]) -> String {
    let stderr = text(&output.stderr);
    let context = format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        output.status,
        text(&output.stdout)
    );
    assert_eq!(output.status.code(), Some(2), "{context}");
    assert!(!stderr.contains("panicked"), "{context}");
    assert!(!stderr.contains("backtrace"), "{context}");
    let message = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!message.is_empty(), "no `error:` line; {context}");
    // Only the adapter line may come before the message.
    assert!(
        stderr
            .lines()
            .take_while(|l| !l.starts_with("error:"))
            .all(|l| l.starts_with("audionas: using adapter")),
        "{context}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "no {needle:?} in the message; {context}"
        );
    }
    message
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Every file under `dir` with its bytes, by relative path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_missing_data_folder_is_named_and_blocks_no_later_run() {
    let ws = Workspace::new();
    let output = ws.train("tiny.toml", "/nonexistent", "tiny", &[]);
    assert_user_error(
        &output,
        &[
            "/nonexistent",
            "no such folder",
            "give the data set's root folder",
        ],
    );
    assert!(
        !ws.path("runs/tiny").exists(),
        "a failed start leaves no run"
    );
    // The corrected command, with the same run name, works.
    assert_ok(&ws.train("tiny.toml", "data", "tiny", &["--epochs", "1"]));
}

#[test]
fn an_empty_class_folder_is_named() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("data/silent")).unwrap();
    let output = ws.train("tiny.toml", "data", "tiny", &[]);
    assert_user_error(
        &output,
        &[
            "data",
            "class \"silent\" has no usable training clips",
            "add WAV files to its folder (or remove it)",
        ],
    );
}

#[test]
fn a_run_diverging_in_its_first_epoch_leaves_no_run_behind() {
    let ws = Workspace::new();
    let config = common::TINY_CONFIG.replace("lr = 0.01", "lr = 1e30");
    ws.file("explode.toml", &config);
    let output = ws.train("explode.toml", "data", "explode", &[]);
    assert_user_error(
        &output,
        &[
            "training stopped: the ",
            "loss became",
            "lower lr",
            "start again",
        ],
    );
    assert!(!ws.path("runs/explode").exists());
}

#[test]
fn an_unknown_train_key_is_named_with_the_valid_keys() {
    let ws = Workspace::new();
    let config = common::TINY_CONFIG.replace("epochs = 4", "epoch = 3");
    ws.file("typo.toml", &config);
    let output = ws.train("typo.toml", "data", "typo", &[]);
    assert_user_error(
        &output,
        &[
            "typo.toml",
            "unknown field `epoch`",
            "`epochs`",
            "`batch_size`",
        ],
    );
    assert!(
        !ws.path("runs/typo").exists(),
        "no run folder for a bad config"
    );
}

#[test]
fn a_misspelled_layer_key_is_named_with_the_valid_keys() {
    let ws = Workspace::new();
    let config = common::TINY_CONFIG.replace("channels = 8", "chanels = 8");
    ws.file("typo.toml", &config);
    let output = ws.train("typo.toml", "data", "typo", &[]);
    assert_user_error(
        &output,
        &[
            "typo.toml",
            "[model]",
            "conv1",
            "unknown field `chanels`",
            "`channels`",
            "`kernel`",
        ],
    );
}

/// Another architecture for the tiny data's features: an LSTM over the
/// 49 frames of 10 MFCC.
const LSTM_CONFIG_MODEL: &str = r#"
[model]
name = "small_lstm"

[[model.layers]]
name = "lstm"
op = "lstm"
hidden = 8
[[model.layers]]
name = "fc"
op = "dense"
"#;

#[test]
fn model_file_and_wav_mistakes_are_named() {
    let ws = Workspace::new();
    // A model trained through the command line, stopped and resumed.
    assert_ok(&ws.train(
        "tiny.toml",
        "data",
        "base",
        &["--epochs", "2", "--stop-after", "1"],
    ));
    let resumed = ws.run(&[
        "train", "--resume", "--name", "base", "--data", "data", "--runs", "runs",
    ]);
    assert_ok(&resumed);
    assert!(text(&resumed.stdout).contains("resuming after epoch 1"));
    let model = "runs/base/model.safetensors";
    assert_ok(&ws.run(&["eval", "--model", model, "--data", "data"]));
    // Streaming settings out of range are refused before any window is scored.
    for (flag, value, needle) in [
        (
            "--detection-threshold",
            "1.5",
            "--detection-threshold 1.5 must be a score in [0, 1]",
        ),
        (
            "--average-window-ms",
            "0",
            "--average-window-ms 0 must be at least 1",
        ),
        ("--stride-ms", "0", "--stride-ms 0 must be at least 1"),
    ] {
        let output = ws.run(&[
            "eval",
            "--model",
            model,
            "--stream",
            "data/hum/x.wav",
            flag,
            value,
        ]);
        assert_user_error(&output, &[needle]);
    }
    // A run folder stands for its best model; a folder without one is named.
    assert_ok(&ws.run(&["eval", "--model", "runs/base", "--data", "data"]));
    std::fs::create_dir(ws.path("no_model")).unwrap();
    let output = ws.run(&["eval", "--model", "no_model", "--data", "data"]);
    assert_user_error(&output, &["no_model/model.safetensors"]);
    // Export writes the best model; a folder without one is named, and
    // nothing is written.
    assert_ok(&ws.run(&["export", "--model", "runs/base", "--out", "out/base.onnx"]));
    assert!(ws.path("out/base.onnx").is_file());
    let output = ws.run(&["export", "--model", "no_model", "--out", "x.onnx"]);
    assert_user_error(&output, &["no_model/model.safetensors"]);
    assert!(!ws.path("x.onnx").exists());

    // Training into the same run name again is refused, and nothing changes.
    let before = snapshot(&ws.path("runs"));
    let output = ws.train("tiny.toml", "data", "base", &[]);
    assert_user_error(
        &output,
        &[
            "runs/base",
            "already holds a run",
            "choose another run name, resume the run, or delete the folder",
        ],
    );
    assert_eq!(snapshot(&ws.path("runs")), before, "the run was changed");

    // The model evaluated as another architecture.
    let (head, _) = common::TINY_CONFIG.split_once("[model]").unwrap();
    ws.file("lstm.toml", &format!("{head}{LSTM_CONFIG_MODEL}"));
    let output = ws.run(&[
        "eval",
        "--model",
        model,
        "--data",
        "data",
        "--config",
        "lstm.toml",
    ]);
    assert_user_error(
        &output,
        &[
            model,
            "has no tensor",
            "another architecture than \"small_lstm\"",
        ],
    );

    // A model file whose tensors have other names than the network's.
    let (tensors, meta) = load_checkpoint(&ws.path(model)).unwrap();
    let renamed: Vec<NamedTensor> = tensors
        .into_iter()
        .map(|t| NamedTensor {
            name: format!("other.{}", t.name),
            ..t
        })
        .collect();
    save_checkpoint(&ws.path("renamed.safetensors"), &renamed, &meta).unwrap();
    let output = ws.run(&["eval", "--model", "renamed.safetensors", "--data", "data"]);
    assert_user_error(
        &output,
        &[
            "renamed.safetensors",
            "has no tensor \"conv1.",
            "another architecture",
        ],
    );

    // A file that is not a model at all.
    ws.file("notes.safetensors", "these are notes, not tensors");
    let output = ws.run(&["infer", "--model", "notes.safetensors", "data/hum/x.wav"]);
    assert_user_error(
        &output,
        &["notes.safetensors", "not a safetensors checkpoint"],
    );

    // Random bytes given as a WAV file.
    let mut rng = audionas::util::rng::Rng::new(3);
    let garbage: Vec<u8> = (0..4000).map(|_| rng.next_u64() as u8).collect();
    std::fs::write(ws.path("garbage.wav"), garbage).unwrap();
    let output = ws.run(&["infer", "--model", model, "garbage.wav"]);
    assert_user_error(&output, &["garbage.wav", "not a readable WAV file"]);
    // A good clip is labelled by the same model.
    let clip = std::fs::read_dir(ws.path("data/hum"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = ws.run(&["infer", "--model", model, clip.to_str().unwrap()]);
    assert_ok(&good);
    assert!(
        text(&good.stdout).contains(": hum "),
        "{}",
        text(&good.stdout)
    );

    // Among several clips, the good ones are labelled and the bad ones named;
    // a named pipe is refused at once instead of waited on.
    let made = Command::new("mkfifo")
        .arg(ws.path("pipe.wav"))
        .status()
        .unwrap();
    assert!(made.success());
    let clip = clip.to_str().unwrap();
    let mixed = ws.run(&["infer", "--model", model, "garbage.wav", clip, "pipe.wav"]);
    let message = assert_user_error(
        &mixed,
        &[
            "2 of 3 clips",
            "garbage.wav",
            "pipe.wav",
            "not a regular file",
        ],
    );
    assert!(!message.contains(clip), "{message}");
    assert!(
        text(&mixed.stdout).contains(&format!("{clip}: hum ")),
        "{}",
        text(&mixed.stdout)
    );

    // Model files that cannot be trusted are refused by name: a NaN weight,
    // a flipped byte, a stored feature config that makes no sense.
    let (tensors, meta) = load_checkpoint(&ws.path(model)).unwrap();
    let mut poisoned = tensors.clone();
    poisoned[0].data[1] = f32::NAN;
    save_checkpoint(&ws.path("nan.safetensors"), &poisoned, &meta).unwrap();
    let output = ws.run(&["eval", "--model", "nan.safetensors", "--data", "data"]);
    assert_user_error(
        &output,
        &["nan.safetensors", &format!("`{}`", tensors[0].name), "NaN"],
    );
    let mut bytes = std::fs::read(ws.path(model)).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(ws.path("flipped.safetensors"), bytes).unwrap();
    let output = ws.run(&["infer", "--model", "flipped.safetensors", clip]);
    assert_user_error(&output, &["flipped.safetensors", "damaged", "checksum"]);
    let mut bad_features = meta.clone();
    let features = bad_features["features"].replace("\"sample_rate\":16000", "\"sample_rate\":0");
    assert_ne!(features, bad_features["features"]);
    bad_features.insert("features".into(), features);
    save_checkpoint(&ws.path("rate0.safetensors"), &tensors, &bad_features).unwrap();
    for command in [
        vec!["eval", "--model", "rate0.safetensors", "--data", "data"],
        vec!["infer", "--model", "rate0.safetensors", clip],
    ] {
        let output = ws.run(&command);
        assert_user_error(
            &output,
            &["rate0.safetensors", "features", "sample_rate = 0"],
        );
    }
}

#[test]
fn an_experiment_that_could_not_be_read_back_is_refused_before_training() {
    let ws = Workspace::new();
    let config = common::TINY_CONFIG.replace("hop_ms = 20.0", "hop_ms = inf");
    ws.file("inf.toml", &config);
    let output = ws.train("inf.toml", "data", "inf", &[]);
    assert_user_error(&output, &["inf.toml", "hop_ms = inf"]);
    assert!(!ws.path("runs/inf").exists());
}

#[test]
fn seed_overrides_the_configs_seed_but_not_a_resumed_runs() {
    let ws = Workspace::new();
    assert_ok(&ws.train("tiny.toml", "data", "plain", &["--epochs", "1"]));
    assert_ok(&ws.train(
        "tiny.toml",
        "data",
        "seeded",
        &["--epochs", "1", "--seed", "11"],
    ));
    let config = |name: &str| std::fs::read_to_string(ws.path(&format!("runs/{name}/config.toml")));
    assert!(config("plain").unwrap().contains("seed = 7"));
    assert!(config("seeded").unwrap().contains("seed = 11"));
    let weights = |name: &str| {
        let (tensors, _) =
            load_checkpoint(&ws.path(&format!("runs/{name}/model.safetensors"))).unwrap();
        tensors.into_iter().map(|t| t.data).collect::<Vec<_>>()
    };
    assert_ne!(weights("plain"), weights("seeded"));
    let resumed = ws.run(&[
        "train", "--resume", "--name", "seeded", "--data", "data", "--runs", "runs", "--seed", "3",
    ]);
    assert_eq!(resumed.status.code(), Some(2));
    assert!(
        text(&resumed.stderr).contains("--seed"),
        "{}",
        text(&resumed.stderr)
    );
}

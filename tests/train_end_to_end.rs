//! Training end to end on a tiny tone data set: the loss falls and the run
//! folder fills, a stopped and resumed run equals an uninterrupted one bit
//! for bit, and a diverging run stops with a message naming the last good
//! checkpoint, which stays loadable; `infer --json` prints the trained
//! model's scores of each clip in full.

mod common;

use audionas::data::features::FeatureExtractor;
use audionas::data::prepare::PrepareOptions;
use audionas::data::wav::read_wav;
use audionas::gpu::Gpu;
use audionas::nn::{batched, Pass};
use audionas::train::config::Experiment;
use audionas::train::model_file::load_model;
use audionas::train::trainer::{train, TrainOptions};
use audionas::train::{load_checkpoint, read_epoch_records, EpochRecord, NamedTensor, RunDir};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A temp folder with the tone data set in `data/` and room for a feature
/// cache and run folders.
struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        common::write_tone_data(&dir.path().join("data"), 1);
        Workspace { dir }
    }

    fn options(&self, resume: bool, stop_after_epochs: Option<usize>) -> TrainOptions {
        TrainOptions {
            data_dir: self.dir.path().join("data"),
            prepare: PrepareOptions {
                cache_dir: Some(self.dir.path().join("cache")),
                threads: 1,
                ..PrepareOptions::default()
            },
            resume,
            stop_after_epochs,
            verbose: false,
            init_from: None,
        }
    }

    fn new_run(&self, name: &str, experiment: &Experiment) -> RunDir {
        RunDir::create(&self.dir.path().join("runs"), name, &experiment.to_toml()).unwrap()
    }
}

fn tiny_experiment(epochs: usize) -> Experiment {
    let mut e = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    e.train.epochs = epochs;
    e
}

fn tensors(path: &Path) -> Vec<NamedTensor> {
    load_checkpoint(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

/// Compares tensors by their bits, so -0.0 != 0.0 and NaN == NaN.
fn assert_bit_identical(a: &[NamedTensor], b: &[NamedTensor], what: &str) {
    let names = |t: &[NamedTensor]| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{what}: tensor names");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape, "{what}: shape of {}", x.name);
        let differing = x
            .data
            .iter()
            .zip(&y.data)
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{what}: {differing} of {} values of {} differ",
            x.data.len(),
            x.name
        );
    }
}

/// An epoch record without its timing fields.
fn untimed(mut r: EpochRecord) -> EpochRecord {
    r.seconds = 0.0;
    r.samples_per_s = 0.0;
    r
}

#[test]
fn training_lowers_the_loss_and_fills_the_run_folder() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let experiment = tiny_experiment(4);
    let run = ws.new_run("tiny", &experiment);
    let summary = train(gpu, &experiment, &run, &ws.options(false, None)).unwrap();
    assert_eq!(summary.epochs_done, 4);

    let records = read_epoch_records(&run.metrics()).unwrap();
    assert_eq!(
        records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(records.iter().all(|r| r.step % 8 == 0 && r.step > 0));
    let (first, last) = (&records[0], &records[records.len() - 1]);
    assert!(
        last.train_loss < first.train_loss,
        "training loss did not fall: {records:?}"
    );
    let chance = 1.0 / common::CLASSES.len() as f64;
    let val = last.val_accuracy.expect("one speaker is held out");
    assert!(
        val > chance + 0.25,
        "validation accuracy {val} is not clearly above chance {chance}: {records:?}"
    );
    assert!(summary.best_val_accuracy >= val);
    let test = summary.test.expect("all epochs done and a test speaker");
    assert_eq!(
        test.samples,
        common::CLASSES.len() * common::CLIPS_PER_SPEAKER
    );

    for file in [
        "config.toml",
        "metrics.jsonl",
        "model.safetensors",
        "checkpoints/last.safetensors",
        "loss.png",
        "accuracy.png",
        "results.json",
    ] {
        let path = run.root.join(file);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size > 0, "{} is empty", path.display());
    }
    // The run keeps the resolved config: it parses back to the experiment.
    let kept = Experiment::parse(&run.read_config().unwrap(), &run.config()).unwrap();
    assert_eq!(kept, experiment);
    // The checkpoint says where training stood.
    let (_, meta) = load_checkpoint(&run.last_checkpoint()).unwrap();
    assert_eq!(meta["epoch"], "4");
    assert_eq!(meta["step"], last.step.to_string());
}

#[test]
fn a_stopped_and_resumed_run_equals_an_uninterrupted_one() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let experiment = tiny_experiment(3);

    let whole = ws.new_run("whole", &experiment);
    let uninterrupted = train(gpu, &experiment, &whole, &ws.options(false, None)).unwrap();

    let parts = ws.new_run("parts", &experiment);
    let stopped = train(gpu, &experiment, &parts, &ws.options(false, Some(1))).unwrap();
    assert_eq!(stopped.epochs_done, 1);
    assert!(
        stopped.test.is_none(),
        "no test score before the last epoch"
    );
    assert_eq!(read_epoch_records(&parts.metrics()).unwrap().len(), 1);
    // A second call resumes from the run's own config, as `train --resume` does.
    let kept = Experiment::parse(&parts.read_config().unwrap(), &parts.config()).unwrap();
    let resumed = train(gpu, &kept, &parts, &ws.options(true, None)).unwrap();
    assert_eq!(resumed.epochs_done, 3);

    for file in ["model.safetensors", "checkpoints/last.safetensors"] {
        assert_bit_identical(
            &tensors(&whole.root.join(file)),
            &tensors(&parts.root.join(file)),
            file,
        );
    }
    let (_, whole_meta) = load_checkpoint(&whole.last_checkpoint()).unwrap();
    let (_, parts_meta) = load_checkpoint(&parts.last_checkpoint()).unwrap();
    assert_eq!(whole_meta, parts_meta);

    let records = |run: &RunDir| -> Vec<EpochRecord> {
        read_epoch_records(&run.metrics())
            .unwrap()
            .into_iter()
            .map(untimed)
            .collect()
    };
    let (a, b) = (records(&whole), records(&parts));
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    assert_eq!(resumed.best_epoch, uninterrupted.best_epoch);
    assert_eq!(
        resumed.best_val_accuracy.to_bits(),
        uninterrupted.best_val_accuracy.to_bits()
    );
    let test_accuracy =
        |s: &audionas::train::trainer::TrainSummary| s.test.as_ref().map(|t| t.accuracy);
    assert_eq!(test_accuracy(&resumed), test_accuracy(&uninterrupted));
}

#[test]
fn a_run_diverging_in_its_first_epoch_says_there_is_no_checkpoint() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let mut experiment = tiny_experiment(2);
    experiment.train.lr = 1e30;
    experiment.train.log_every = 1;
    let run = ws.new_run("diverge", &experiment);
    let err = train(gpu, &experiment, &run, &ws.options(false, None))
        .expect_err("a learning rate of 1e30 must make the loss non-finite")
        .to_string();
    assert!(err.starts_with("training stopped: the "), "{err}");
    assert!(err.contains("in epoch 1"), "{err}");
    assert!(
        err.contains("no checkpoint to go back to") && err.contains("start again"),
        "{err}"
    );
    assert!(!err.contains("--resume"), "{err}");
    assert!(!run.last_checkpoint().exists());
    assert!(!run.best_model().exists());
}

#[test]
fn a_diverging_run_stops_and_names_the_last_good_checkpoint() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let experiment = tiny_experiment(3);
    let run = ws.new_run("diverge", &experiment);
    train(gpu, &experiment, &run, &ws.options(false, Some(1))).unwrap();
    let checkpoint: PathBuf = run.last_checkpoint();
    let good = std::fs::read(&checkpoint).unwrap();
    let best = std::fs::read(run.best_model()).unwrap();

    // A rate of 1e30 makes the weights overflow within a few steps.
    let mut exploding = experiment.clone();
    exploding.train.lr = 1e30;
    exploding.train.log_every = 1;
    let err = train(gpu, &exploding, &run, &ws.options(true, None))
        .expect_err("a learning rate of 1e30 must make the loss non-finite")
        .to_string();
    assert!(err.starts_with("training stopped: the "), "{err}");
    assert!(
        err.contains("loss became NaN") || err.contains("loss became inf"),
        "{err}"
    );
    assert!(err.contains(&checkpoint.display().to_string()), "{err}");
    assert!(
        err.contains("--resume") && err.contains("lower lr"),
        "{err}"
    );

    // The last good checkpoint and the best model are untouched and load.
    assert_eq!(std::fs::read(&checkpoint).unwrap(), good);
    assert_eq!(std::fs::read(run.best_model()).unwrap(), best);
    let (saved, meta) = load_checkpoint(&checkpoint).unwrap();
    assert_eq!(meta["epoch"], "1");
    assert!(saved.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    audionas::train::model_file::load_model(gpu, &run.best_model(), None).unwrap();
    // Nothing of the failed epoch reached the metrics.
    assert_eq!(read_epoch_records(&run.metrics()).unwrap().len(), 1);
}

/// The quickstart config as shipped, on a small keyword set really
/// synthesized with the text-to-speech engines (CI installs them): a few
/// epochs lower the loss, and a run stopped after one epoch and resumed
/// ends bit for bit where the uninterrupted run does, augmentation included.
#[test]
fn the_quickstart_model_learns_on_synthesized_keywords_and_resumes_exactly() {
    use audionas::data::synth::{installed_engines, synthesize, SynthConfig};
    assert!(
        !installed_engines().is_empty(),
        "no text-to-speech engine found; install one (Debian: apt-get install espeak-ng flite)"
    );
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let data = ws.dir.path().join("kws");
    synthesize(&SynthConfig {
        per_class: 8,
        speakers: 8,
        noise_seconds: 4.0,
        threads: 2,
        ..SynthConfig::new(&data)
    })
    .unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/quickstart.toml");
    let mut experiment = Experiment::load(&config).unwrap();
    experiment.train.epochs = 4;
    let options = |resume, stop| TrainOptions {
        data_dir: data.clone(),
        ..ws.options(resume, stop)
    };

    let whole = ws.new_run("whole", &experiment);
    train(gpu, &experiment, &whole, &options(false, None)).unwrap();
    let records = read_epoch_records(&whole.metrics()).unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records[3].train_loss < records[0].train_loss,
        "training loss did not fall: {records:?}"
    );

    let parts = ws.new_run("parts", &experiment);
    train(gpu, &experiment, &parts, &options(false, Some(1))).unwrap();
    train(gpu, &experiment, &parts, &options(true, None)).unwrap();
    for file in ["model.safetensors", "checkpoints/last.safetensors"] {
        assert_bit_identical(
            &tensors(&whole.root.join(file)),
            &tensors(&parts.root.join(file)),
            file,
        );
    }
    let untimed_records = |run: &RunDir| -> Vec<EpochRecord> {
        read_epoch_records(&run.metrics())
            .unwrap()
            .into_iter()
            .map(untimed)
            .collect()
    };
    assert_eq!(untimed_records(&whole), untimed_records(&parts));
}

/// The logits of one clip, computed here as `infer` does.
fn logits_in_process(gpu: &Gpu, model: &Path, clip: &Path) -> (Vec<String>, Vec<f32>) {
    let (mut network, info, _) = load_model(gpu, model, None).unwrap();
    let audio = read_wav(clip, info.features.sample_rate).unwrap();
    let features = FeatureExtractor::new(&info.features).clip_features(&audio.samples);
    let x = gpu
        .upload(&batched(1, network.input_shape()), &features)
        .unwrap();
    let mut rec = gpu.recorder();
    let logits = network.forward(&mut rec, &x, Pass::eval()).unwrap();
    rec.submit().unwrap();
    (info.classes, gpu.download(&logits).unwrap())
}

/// `infer --json CLIPS` prints one JSON object per clip, in order: the file,
/// the class names, the logits (reading back to the very bits the model
/// gives) and every class's probability, a softmax of the logits.
#[test]
fn infer_json_prints_each_clips_scores_in_full() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let experiment = tiny_experiment(1);
    let run = ws.new_run("tiny", &experiment);
    train(gpu, &experiment, &run, &ws.options(false, None)).unwrap();
    let clips: Vec<PathBuf> = common::CLASSES
        .iter()
        .map(|(class, _)| {
            let folder = ws.dir.path().join("data").join(class);
            let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.swap_remove(0)
        })
        .collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_audionas"))
        .args(["infer", "--json", "--model"])
        .arg(&run.root)
        .args(&clips)
        .env("WGPU_BACKEND", "vulkan")
        .env("NODEVICE_SELECT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), clips.len(), "one line per clip:\n{stdout}");
    for (line, clip) in lines.iter().zip(&clips) {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        let field = |name: &str| object[name].clone();
        assert_eq!(field("file"), clip.display().to_string(), "{line}");
        let classes: Vec<String> = serde_json::from_value(field("classes")).unwrap();
        let logits: Vec<f32> = serde_json::from_value(field("logits")).unwrap();
        let probabilities: Vec<f32> = serde_json::from_value(field("probabilities")).unwrap();

        let (want_classes, want_logits) = logits_in_process(gpu, &run.root, clip);
        assert_eq!(classes, want_classes, "{line}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&logits), bits(&want_logits), "logits of {line}");

        assert_eq!(probabilities.len(), classes.len(), "{line}");
        let top = logits
            .iter()
            .fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
        let exps: Vec<f64> = logits.iter().map(|&z| (z as f64 - top).exp()).collect();
        let total: f64 = exps.iter().sum();
        for (p, e) in probabilities.iter().zip(&exps) {
            assert!(
                (*p as f64 - e / total).abs() <= 1e-6,
                "probability {p} is not the softmax {} in {line}",
                e / total
            );
        }
        let sum: f64 = probabilities.iter().map(|&p| p as f64).sum();
        assert!(
            (sum - 1.0).abs() <= 1e-5,
            "probabilities sum to {sum}: {line}"
        );
    }
}

#[test]
fn settings_outside_their_meaning_are_refused_naming_the_key() {
    let cases = [
        (
            "lr = 0.01",
            "lr = 0.01\nschedule = { kind = \"cosine\", min_lr = 0.1 }",
            "min_lr = 0.1 is above lr = 0.01",
        ),
        ("hop_ms = 20.0", "hop_ms = inf", "hop_ms = inf"),
        ("n_mels = 40", "n_mels = 400", "n_mels = 400"),
        (
            "split = \"speaker\"",
            "split = \"speaker\"\nsilence_percent = nan",
            "silence_percent = NaN",
        ),
        (
            "optimizer = { kind = \"adam\" }",
            "optimizer = { kind = \"adam\", beta1 = 1.5 }",
            "beta1 = 1.5",
        ),
        (
            "op = \"relu\"",
            "op = \"dropout\"\nrate = nan",
            "`rate` must be a finite number",
        ),
    ];
    let augment = [
        ("noise_probability = 2.0", "noise_probability = 2"),
        ("time_shift_ms = -5.0", "time_shift_ms = -5"),
        ("time_shift_ms = inf", "time_shift_ms = inf"),
        ("noise_volume = nan", "noise_volume = NaN"),
    ];
    let texts = cases
        .iter()
        .map(|(from, to, needle)| (common::TINY_CONFIG.replacen(from, to, 1), *needle))
        .chain(augment.iter().map(|(line, needle)| {
            (
                format!("{}\n[augment]\n{line}\n", common::TINY_CONFIG),
                *needle,
            )
        }));
    for (text, needle) in texts {
        let message = match Experiment::parse(&text, Path::new("bad.toml")) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {needle}"),
        };
        assert!(message.contains("bad.toml"), "{message}");
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

/// A complex description trains like any other: on the complex STFT of the
/// tone data, complex convolutions, complex batch norm, CReLU and the
/// magnitude into a real
/// head (pooled over time, dense over frequency) learn to tell the tones
/// apart, and the saved model runs again.
#[test]
fn a_complex_network_learns_on_the_complex_stft() {
    let gpu = Gpu::shared();
    let ws = Workspace::new();
    let features = "[features]\nkind = \"stft\"\nsample_rate = 16000\nclip_ms = 1000.0\nwindow_ms = 16.0\nhop_ms = 32.0\nn_fft = 256\nwindow = \"hann\"\n";
    let model = r#"
[model]
name = "complex_tiny"

[[model.layers]]
op = "complex_conv2d"
channels = 4
kernel = [3, 5]
stride = [2, 4]
padding = "same"
[[model.layers]]
op = "complex_batch_norm"
[[model.layers]]
op = "crelu"
[[model.layers]]
op = "complex_conv2d"
channels = 4
kernel = 3
padding = "same"
[[model.layers]]
op = "magnitude"
[[model.layers]]
op = "avg_pool2d"
kernel = [16, 1]
[[model.layers]]
op = "flatten"
[[model.layers]]
op = "dense"
"#;
    let tiny = common::TINY_CONFIG;
    let settings = &tiny[tiny.find("[train]").unwrap()..tiny.find("[model]").unwrap()];
    let toml = format!("{features}\n{settings}\n{model}");
    // The same model on the real MFCC of the tiny config is refused, naming
    // the layer and where the features come from.
    let real_features = &tiny[..tiny.find("[train]").unwrap()];
    let err = Experiment::parse(
        &format!("{real_features}\n{settings}\n{model}"),
        Path::new("real.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("layer0")
            && err.contains("features are real")
            && err.contains("[features] of real.toml"),
        "{err}"
    );
    let mut experiment = Experiment::parse(&toml, Path::new("complex.toml")).unwrap();
    experiment.train.epochs = 6;
    assert_eq!(experiment.features.clip_shape()[3], 2);
    let run = ws.new_run("complex", &experiment);
    let summary = train(gpu, &experiment, &run, &ws.options(false, None)).unwrap();
    let records = read_epoch_records(&run.metrics()).unwrap();
    let (first, last) = (&records[0], &records[records.len() - 1]);
    assert!(
        last.train_loss < first.train_loss,
        "training loss did not fall: {records:?}"
    );
    let chance = 1.0 / common::CLASSES.len() as f64;
    let test = summary.test.expect("a test speaker").accuracy;
    assert!(
        test > chance + 0.25,
        "test accuracy {test} is not clearly above chance {chance}: {records:?}"
    );
    let clip = ws
        .dir
        .path()
        .join("data/high")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (classes, logits) = logits_in_process(gpu, &run.root.join("model.safetensors"), &clip);
    assert_eq!((classes.len(), logits.len()), (4, 4));
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
}

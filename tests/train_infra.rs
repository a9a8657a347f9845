//! The host side of training runs: checkpoints, metrics, schedules, run
//! folders and plots. No GPU needed.

use audionas::train::{
    load_checkpoint, plot_curves, read_epoch_records, save_checkpoint, truncate_after_epoch,
    validate_run_name, EpochRecord, LrSchedule, MetricsLog, NamedTensor, Progress, RunDir,
    Schedule, TrainError,
};
use std::collections::BTreeMap;
use std::path::Path;

fn tensors() -> Vec<NamedTensor> {
    vec![
        NamedTensor {
            name: "conv1.weight".into(),
            shape: vec![2, 1, 3, 3],
            data: (0..18).map(|i| i as f32 * 0.1 - 0.7).collect(),
        },
        NamedTensor {
            name: "bias".into(),
            shape: vec![3],
            // Awkward values: negative zero, a NaN with a payload, infinities, subnormals.
            data: vec![-0.0, f32::from_bits(0x7fc0_1234), f32::INFINITY],
        },
        NamedTensor {
            name: "scalar".into(),
            shape: vec![],
            data: vec![f32::MIN_POSITIVE / 4.0],
        },
        NamedTensor {
            name: "empty".into(),
            shape: vec![0, 4],
            data: vec![],
        },
    ]
}

fn metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("epoch".to_string(), "7".to_string()),
        (
            "architecture".to_string(),
            "{\"cells\": [1, 2]}".to_string(),
        ),
    ])
}

fn bits(t: &NamedTensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn checkpoint_round_trip_is_bit_exact_and_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    save_checkpoint(&path, &tensors(), &metadata()).unwrap();
    let (loaded, meta) = load_checkpoint(&path).unwrap();
    assert_eq!(meta, metadata());
    let mut expected = tensors();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(loaded.len(), expected.len());
    for (got, want) in loaded.iter().zip(&expected) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.shape, want.shape);
        assert_eq!(bits(got), bits(want), "{}", want.name);
    }
}

#[test]
fn checkpoint_without_metadata_or_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.safetensors");
    save_checkpoint(&path, &[], &BTreeMap::new()).unwrap();
    let (loaded, meta) = load_checkpoint(&path).unwrap();
    assert!(loaded.is_empty());
    assert!(meta.is_empty());
}

#[test]
fn atomic_save_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints").join("last.safetensors");
    save_checkpoint(&path, &tensors(), &metadata()).unwrap();
    let mut second = tensors();
    second[0].data[0] = 42.0;
    save_checkpoint(&path, &second, &BTreeMap::new()).unwrap();
    assert_eq!(file_names(path.parent().unwrap()), ["last.safetensors"]);
    let (loaded, meta) = load_checkpoint(&path).unwrap();
    assert!(meta.is_empty());
    let conv = loaded.iter().find(|t| t.name == "conv1.weight").unwrap();
    assert_eq!(conv.data[0], 42.0);

    // A save that fails leaves the old file whole and no temporary behind.
    let mut bad = tensors();
    bad[1].shape = vec![4];
    let err = save_checkpoint(&path, &bad, &metadata()).unwrap_err();
    assert!(matches!(err, TrainError::BadTensor { .. }), "{err}");
    assert!(err.to_string().contains("bias"), "{err}");
    assert_eq!(file_names(path.parent().unwrap()), ["last.safetensors"]);
    assert_eq!(load_checkpoint(&path).unwrap().0[1].data[0], 42.0);

    let mut twice = tensors();
    twice[1].name = "scalar".into();
    let err = save_checkpoint(&path, &twice, &metadata()).unwrap_err();
    assert!(err.to_string().contains("two tensors"), "{err}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.safetensors");
    let err = load_checkpoint(&missing).unwrap_err();
    assert!(matches!(err, TrainError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    let err = load_checkpoint(&garbage).unwrap_err();
    assert!(matches!(err, TrainError::NotSafetensors { .. }), "{err}");
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");

    let short = dir.path().join("short.safetensors");
    std::fs::write(&short, b"ab").unwrap();
    let err = load_checkpoint(&short).unwrap_err();
    assert!(matches!(err, TrainError::NotSafetensors { .. }), "{err}");

    // A truncated checkpoint (data cut short) is not a checkpoint either.
    let cut = dir.path().join("cut.safetensors");
    save_checkpoint(&cut, &tensors(), &metadata()).unwrap();
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let err = load_checkpoint(&cut).unwrap_err();
    assert!(matches!(err, TrainError::NotSafetensors { .. }), "{err}");

    // A valid safetensors file with an f16 tensor.
    let half = dir.path().join("half.safetensors");
    let header = br#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut header = header.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(&header);
    file.extend([0, 60, 0, 64]);
    std::fs::write(&half, file).unwrap();
    let err = load_checkpoint(&half).unwrap_err();
    assert!(matches!(err, TrainError::NotF32 { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("half.safetensors") && message.contains("`w`"),
        "{message}"
    );
}

fn record(epoch: usize) -> EpochRecord {
    EpochRecord {
        epoch,
        step: epoch as u64 * 100,
        lr: 0.01 / (epoch as f64 + 1.0),
        train_loss: 2.0 / (epoch as f64 + 1.0),
        train_accuracy: 0.3 + 0.2 * epoch as f64,
        val_loss: (epoch != 2).then_some(2.2 / (epoch as f64 + 1.0)),
        val_accuracy: (epoch != 2).then_some(0.25 + 0.2 * epoch as f64),
        samples_per_s: 1234.5,
        seconds: 3.25,
    }
}

#[derive(serde::Serialize)]
struct StepLine {
    kind: &'static str,
    epoch: usize,
    step: u64,
    loss: f64,
}

#[test]
fn metrics_append_read_and_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("metrics.jsonl");
    {
        let mut log = MetricsLog::open(&path).unwrap();
        for epoch in 0..4 {
            log.append(&StepLine {
                kind: "step",
                epoch,
                step: epoch as u64 * 100 + 50,
                loss: 1.0,
            })
            .unwrap();
            log.append(&record(epoch)).unwrap();
        }
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 8);
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with(r#"{"kind":"epoch","epoch":0,"#));

    let records = read_epoch_records(&path).unwrap();
    assert_eq!(records, (0..4).map(record).collect::<Vec<_>>());

    // Reopening appends after what is there.
    MetricsLog::open(&path).unwrap().append(&record(4)).unwrap();
    assert_eq!(read_epoch_records(&path).unwrap().len(), 5);

    truncate_after_epoch(&path, 1).unwrap();
    assert_eq!(
        read_epoch_records(&path).unwrap(),
        vec![record(0), record(1)]
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(file_names(path.parent().unwrap()), ["metrics.jsonl"]);

    // A missing file stays missing.
    truncate_after_epoch(&dir.path().join("none.jsonl"), 3).unwrap();
    assert!(!dir.path().join("none.jsonl").exists());
}

#[test]
fn metrics_survive_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut log = MetricsLog::open(&path).unwrap();
    log.append(&record(0)).unwrap();
    drop(log);
    // A run killed half way through writing a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"kind":"epoch","epoch":1,"st"#);
    std::fs::write(&path, &text).unwrap();
    assert_eq!(read_epoch_records(&path).unwrap(), vec![record(0)]);

    let mut log = MetricsLog::open(&path).unwrap();
    log.append(&record(1)).unwrap();
    assert_eq!(
        read_epoch_records(&path).unwrap(),
        vec![record(0), record(1)]
    );

    // The same torn line in the middle of the file is an error that names the line.
    std::fs::write(
        &path,
        format!("{text}\n{}\n", serde_json::to_string(&record(1)).unwrap()),
    )
    .unwrap();
    let err = read_epoch_records(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("metrics.jsonl:2"), "{message}");
    assert!(truncate_after_epoch(&path, 5).is_err());

    let err = read_epoch_records(&dir.path().join("absent.jsonl")).unwrap_err();
    assert!(err.to_string().contains("absent.jsonl"), "{err}");
}

#[test]
fn schedules_from_toml() {
    #[derive(serde::Deserialize)]
    struct Config {
        lr_schedule: LrSchedule,
    }
    let config: Config =
        toml::from_str("[lr_schedule]\nkind = \"cosine\"\nmin_lr = 0.0\nwarmup_epochs = 1.0\n")
            .unwrap();
    let s = config.lr_schedule;
    assert_eq!(s.schedule, Schedule::Cosine { min_lr: 0.0 });
    // 3 epochs of 4 steps: warm-up over steps 0..4, cosine over steps 4..12.
    let lrs: Vec<f64> = (0..12).map(|step| s.lr_at(0.2, step, 4, 3)).collect();
    assert_eq!(lrs[0], 0.0);
    assert!((lrs[2] - 0.1).abs() < 1e-12);
    assert_eq!(lrs[4], 0.2);
    assert!((lrs[8] - 0.1).abs() < 1e-12);
    assert!(lrs[4..].windows(2).all(|w| w[1] < w[0]));

    let step: LrSchedule =
        toml::from_str("kind = \"step\"\nevery_epochs = 1\ngamma = 0.1\n").unwrap();
    assert!((step.lr_at(1.0, 25, 10, 5) - 0.01).abs() < 1e-15);
    assert_eq!(LrSchedule::default().lr_at(0.5, 1_000_000, 10, 1), 0.5);

    let err = toml::from_str::<LrSchedule>("kind = \"cosine\"\nmin_lr = 0.0\nlr = 0.1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr"), "{err}");
    let err = toml::from_str::<LrSchedule>("kind = \"step\"\nevery_epochs = 2\ngamma = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gamma") && err.contains("-1"), "{err}");
}

#[test]
fn run_names_are_checked() {
    for good in ["kws_ds_cnn", "run-2024.01", "a", ".hidden", "résumé"] {
        validate_run_name(good).unwrap();
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a\\b",
        "/abs",
        "tab\there",
        " x",
        "x ",
    ] {
        let err = validate_run_name(bad).unwrap_err();
        assert!(matches!(err, TrainError::BadRunName { .. }), "{bad:?}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn run_folders() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("runs");
    let run = RunDir::create(&base, "first", "seed = 1\n").unwrap();
    assert_eq!(run.root, base.join("first"));
    assert_eq!(run.name(), "first");
    assert_eq!(run.config(), base.join("first/config.toml"));
    assert_eq!(run.metrics(), base.join("first/metrics.jsonl"));
    assert_eq!(
        run.last_checkpoint(),
        base.join("first/checkpoints/last.safetensors")
    );
    assert_eq!(run.best_model(), base.join("first/model.safetensors"));
    assert_eq!(run.plots_dir(), base.join("first"));
    assert_eq!(run.read_config().unwrap(), "seed = 1\n");

    // A run that kept nothing (stopped before its first epoch ended) gives
    // its name to a new run.
    let run = RunDir::create(&base, "first", "seed = 2\n").unwrap();
    assert_eq!(run.read_config().unwrap(), "seed = 2\n");
    // One that kept a checkpoint or a model does not.
    for kept in [run.last_checkpoint(), run.best_model()] {
        std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
        std::fs::write(&kept, "weights").unwrap();
        let err = RunDir::create(&base, "first", "seed = 4\n").unwrap_err();
        assert!(matches!(err, TrainError::RunExists { .. }), "{err}");
        assert!(err.to_string().contains("first"), "{err}");
        assert_eq!(run.read_config().unwrap(), "seed = 2\n");
        std::fs::remove_file(&kept).unwrap();
    }
    std::fs::remove_dir(run.checkpoints_dir()).unwrap();

    let reopened = RunDir::open_existing(&base.join("first")).unwrap();
    assert_eq!(reopened, run);
    reopened.write_config("seed = 3\n").unwrap();
    assert_eq!(run.read_config().unwrap(), "seed = 3\n");
    assert_eq!(file_names(&run.root), ["config.toml"]);

    assert!(matches!(
        RunDir::create(&base, "..", ""),
        Err(TrainError::BadRunName { .. })
    ));
    assert!(matches!(
        RunDir::open_existing(&base.join("nope")),
        Err(TrainError::MissingFile { .. })
    ));
    std::fs::create_dir_all(base.join("empty")).unwrap();
    assert!(matches!(
        RunDir::open_existing(&base.join("empty")),
        Err(TrainError::NotARun { .. })
    ));
    // A folder without a config (a run that died before writing it) can be used.
    RunDir::create(&base, "empty", "x = 1\n").unwrap();
}

#[test]
fn plots_write_two_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<EpochRecord> = (0..3).map(record).collect();
    let paths = plot_curves(&records, dir.path()).unwrap();
    assert_eq!(
        paths,
        [dir.path().join("loss.png"), dir.path().join("accuracy.png")]
    );
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 1000, "{}", path.display());
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}",
            path.display()
        );
    }
    assert_eq!(file_names(dir.path()), ["accuracy.png", "loss.png"]);

    let empty = dir.path().join("empty");
    assert!(plot_curves(&[], &empty).unwrap().is_empty());
    assert!(!empty.exists());
}

/// Set in the child process of `progress_bar_runs_without_a_terminal`.
const PROGRESS_CHILD: &str = "AUDIONAS_TEST_PROGRESS_CHILD";

/// Without a terminal (stderr piped, as in logs and CI) a whole epoch's bar
/// runs to its end and writes nothing: this test runs itself again as a
/// child process with stderr piped and reads what the bar left there.
#[test]
fn progress_bar_runs_without_a_terminal() {
    if std::env::var_os(PROGRESS_CHILD).is_some() {
        let progress = Progress::new(1, 3, 10);
        for step in 1..=10 {
            progress.update(step, 0.5, 0.75, 1000.0);
        }
        progress.finish("done");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "progress_bar_runs_without_a_terminal",
            "--nocapture",
        ])
        .env(PROGRESS_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the bar did not run to its end: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stderr.is_empty(),
        "the bar wrote to stderr without a terminal:\n{stderr}"
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_checkpoint_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_checkpoint(&path, &tensors(), &metadata()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let in_metadata = bytes
        .windows(5)
        .position(|w| w == b"cells")
        .expect("the metadata is in the header");
    // A byte of tensor data, and a byte of a metadata value.
    for at in [header_end + 10, in_metadata] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x04;
        std::fs::write(&path, &damaged).unwrap();
        let err = load_checkpoint(&path).unwrap_err();
        assert!(
            matches!(err, TrainError::Damaged { .. }),
            "byte {at}: {err}"
        );
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}

#[test]
fn opening_a_run_folder_removes_temp_files_of_dead_processes_only() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("runs"), "r", "x = 1\n").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let alive = std::process::id();
    std::fs::create_dir_all(run.checkpoints_dir()).unwrap();
    let stale = [
        run.root.join(format!(".model.safetensors.tmp{dead}")),
        run.checkpoints_dir()
            .join(format!(".last.safetensors.tmp{dead}")),
    ];
    let live = run.root.join(format!(".metrics.jsonl.tmp{alive}"));
    for file in stale.iter().chain([&live]) {
        std::fs::write(file, "half").unwrap();
    }
    RunDir::open_existing(&run.root).unwrap();
    for file in &stale {
        assert!(!file.exists(), "{} was left", file.display());
    }
    assert!(live.exists(), "a live process's temp file was removed");
}

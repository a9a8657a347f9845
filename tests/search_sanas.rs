//! SANAS (static): gated descriptions, per-sample sub-networks against each
//! sample run alone, the REINFORCE gradient against finite differences, a
//! tiny search end to end (resume, pruning under a large lambda, the kept
//! part retrained), and configs refused by key.

mod common;
#[path = "common/sanas.rs"]
mod sanas_config;

use audionas::data::prepare::PrepareOptions;
use audionas::gpu::Gpu;
use audionas::kernels::check::assert_gradient;
use audionas::kernels::optimizers::Adam;
use audionas::model::{Architecture, Cost, Network};
use audionas::nn::Pass;
use audionas::search::darts::{ARCHITECTURE_FILE, RESULTS_FILE};
use audionas::search::sanas::gates::{arch_loss, reinforce_gradient, rewards, sigmoid, GateState};
use audionas::search::sanas::plots::{
    COST_BY_LABEL_PLOT, GATES_PLOT, STREAM_SWEEP_PLOT, SWEEP_PLOT,
};
use audionas::search::sanas::search::{
    point_name, search, LatencyTable, PointSummary, SanasOptions, GATES_FILE, LATENCY_FILE,
    POINTS_DIR,
};
use audionas::search::sanas::SanasConfig;
use audionas::train::config::Experiment;
use audionas::train::load_checkpoint;
use audionas::train::run_dir::{RunDir, MODEL_FILE};
use audionas::train::trainer::{train, TrainOptions, TrainSummary};
use audionas::util::rng::Rng;
use std::path::Path;

fn arch(toml: &str) -> Architecture {
    Architecture::parse(toml, Path::new("gated.toml")).unwrap()
}

/// A conv node and two shortcut nodes into an add, every node gated:
/// input -> conv1.conv -> conv1 (gated) -> short1 (gated) -> sum;
/// input -> short0 (gated) -> sum; sum -> fc.
const GATED: &str = r#"
name = "gated"
[[layers]]
name = "conv1.conv"
op = "conv2d"
channels = 4
kernel = 3
[[layers]]
name = "conv1"
op = "relu"
gate = true
[[layers]]
name = "short0.dense"
op = "dense"
units = 6
inputs = ["input"]
[[layers]]
name = "short0"
op = "relu"
gate = true
[[layers]]
name = "short1.dense"
op = "dense"
units = 6
inputs = ["conv1"]
[[layers]]
name = "short1"
op = "relu"
gate = true
[[layers]]
name = "sum"
op = "add"
inputs = ["short0", "short1"]
[[layers]]
name = "fc"
op = "dense"
"#;

#[test]
fn gated_layers_masks_and_the_pruned_description() {
    let a = arch(GATED);
    assert_eq!(a.gated_layers(), vec![1, 3, 5]);
    // The gate flag survives a round trip through JSON.
    let again = Architecture::parse(&a.to_json(), Path::new("a.json")).unwrap();
    assert_eq!(again, a);

    // Only the conv path: the add keeps one input and is left out.
    let activity = a.activity(&a.gate_mask(&[true, false, true])).unwrap();
    assert_eq!(
        activity.runs,
        [true, true, false, false, true, true, true, true]
    );
    let pruned = a.pruned(&activity).unwrap();
    let names: Vec<String> = (0..pruned.layers.len())
        .map(|i| pruned.layer_name(i))
        .collect();
    assert_eq!(
        names,
        ["conv1.conv", "conv1", "short1.dense", "short1", "fc"]
    );
    assert!(pruned.layers.iter().all(|l| !l.gate));
    let shape = [1, 12, 6];
    let full = Cost::of(&a, &shape, 3, 1000.0, Some(&activity)).unwrap();
    let plain = Cost::of(&pruned, &shape, 3, 1000.0, None).unwrap();
    assert_eq!((full.params, full.macs), (plain.params, plain.macs));

    // Closing conv1 drops short1 too (it reads only conv1): the shortcut is left.
    let activity = a.activity(&a.gate_mask(&[false, true, true])).unwrap();
    assert_eq!(
        activity.runs,
        [false, false, true, true, false, false, true, true]
    );
    let pruned = a.pruned(&activity).unwrap();
    assert_eq!(pruned.layers.len(), 3);
    assert!(
        pruned.layers[0].inputs.is_empty(),
        "the first layer reads the input"
    );

    // Every gate closed is a valid draw (the head runs on zeros), but it has
    // no plain form.
    let activity = a.activity(&a.gate_mask(&[false, false, false])).unwrap();
    assert_eq!(activity.runs.iter().filter(|&&r| r).count(), 1);
    let err = a.pruned(&activity).unwrap_err().to_string();
    assert!(err.contains("\"fc\"") && err.contains("no path"), "{err}");
}

#[test]
fn a_gate_on_the_last_layer_or_not_a_bool_is_refused() {
    let last = GATED.replace("op = \"dense\"\n\"#", "op = \"dense\"\ngate = true\n");
    let last = format!("{last}gate = true\n");
    let a = arch(&last);
    let err = Cost::of(&a, &[1, 12, 6], 3, 1000.0, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"fc\"") && err.contains("cannot be gated"),
        "{err}"
    );
    let err = Architecture::parse(
        &GATED.replacen("gate = true", "gate = 1", 1),
        Path::new("gated.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("(conv1)") && err.contains("`gate` must be true or false"),
        "{err}"
    );
}

/// Per-sample sub-networks: the batch's logits and parameter gradients are
/// those of each sample run alone under its own gates.
#[test]
fn each_sample_runs_its_own_sub_network_forward_and_backward() {
    let gpu = Gpu::shared();
    let a = arch(GATED);
    let shape = [1usize, 12, 6];
    let classes = 3;
    let draws = [
        vec![true, true, true],
        vec![false, true, true],
        vec![true, false, true],
        vec![true, true, false],
        vec![false, false, false],
    ];
    let batch = draws.len();
    let mut rng = Rng::new(11);
    let x: Vec<f32> = rng.vec_uniform(batch * 72, -1.0, 1.0);
    let dlogits: Vec<f32> = rng.vec_uniform(batch * classes, -1.0, 1.0);
    let mut net = Network::build(gpu, &a, &shape, classes, 3).unwrap();
    // Biases away from zero, so a sample that wrongly kept a closed node shows.
    let state: Vec<(String, Vec<usize>, Vec<f32>)> = net
        .state()
        .into_iter()
        .map(|(n, t)| {
            let values = rng.vec_uniform(t.len(), -0.5, 0.5);
            (n, t.shape().to_vec(), values)
        })
        .collect();
    net.inherit(
        gpu,
        state
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())),
    )
    .unwrap();
    let grads = |net: &Network| -> Vec<(String, Vec<f32>)> {
        net.named_params()
            .into_iter()
            .map(|(n, p)| (n, gpu.download(&p.grad).unwrap()))
            .collect()
    };
    let zero_grads = |net: &Network| {
        for (_, p) in net.named_params() {
            gpu.write(&p.grad, &vec![0.0; p.len()]).unwrap();
        }
    };
    let run = |net: &mut Network, x: &[f32], d: &[f32], n: usize| -> Vec<f32> {
        let tx = gpu.upload(&[n, 1, 12, 6], x).unwrap();
        let td = gpu.upload(&[n, classes], d).unwrap();
        let mut rec = gpu.recorder();
        let logits = net.forward(&mut rec, &tx, Pass::train(1)).unwrap();
        net.backward(&mut rec, &td).unwrap();
        rec.submit_and_wait().unwrap();
        gpu.download(&logits).unwrap()
    };

    let runs: Vec<Vec<bool>> = draws
        .iter()
        .map(|d| a.activity(&a.gate_mask(d)).unwrap().runs)
        .collect();
    zero_grads(&net);
    net.set_sample_activity(gpu, Some(&runs)).unwrap();
    let together = run(&mut net, &x, &dlogits, batch);
    let batch_grads = grads(&net);

    let mut alone_logits = Vec::new();
    let mut summed: Vec<(String, Vec<f32>)> = batch_grads
        .iter()
        .map(|(n, g)| (n.clone(), vec![0.0; g.len()]))
        .collect();
    for (b, d) in draws.iter().enumerate() {
        zero_grads(&net);
        net.set_sample_activity(gpu, None).unwrap();
        net.set_mask(&a.gate_mask(d)).unwrap();
        let xb = &x[b * 72..(b + 1) * 72];
        let db = &dlogits[b * classes..(b + 1) * classes];
        alone_logits.extend(run(&mut net, xb, db, 1));
        for ((_, sum), (_, g)) in summed.iter_mut().zip(grads(&net)) {
            sum.iter_mut().zip(&g).for_each(|(s, v)| *s += v);
        }
    }
    audionas::kernels::check::assert_close(
        "per-sample logits",
        &together,
        &alone_logits,
        1e-5,
        1e-4,
    );
    // The last sample ran nothing but the head on zeros: its bias.
    let bias = &state.iter().find(|(n, _, _)| n == "fc.bias").unwrap().2;
    audionas::kernels::check::assert_close(
        "all gates closed",
        &together[4 * classes..],
        bias,
        1e-6,
        0.0,
    );
    for ((name, got), (_, want)) in batch_grads.iter().zip(&summed) {
        audionas::kernels::check::assert_close(name, got, want, 1e-5, 1e-4);
    }
}

#[test]
fn the_reinforce_gradient_matches_finite_differences_and_lowers_costly_gates() {
    let mut rng = Rng::new(5);
    let logits: Vec<f64> = (0..4).map(|_| rng.uniform(-2.0, 2.0) as f64).collect();
    let draws: Vec<Vec<bool>> = (0..6)
        .map(|_| (0..4).map(|_| rng.bernoulli(0.5)).collect())
        .collect();
    let advantages: Vec<f64> = (0..6).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
    let p = |l: &[f64]| l.iter().map(|&x| sigmoid(x)).collect::<Vec<_>>();
    assert_gradient(
        "reinforce",
        &logits,
        &reinforce_gradient(&p(&logits), &draws, &advantages),
        |l| arch_loss(&p(l), &draws, &advantages),
        1e-7,
        1e-5,
    );

    // Gate 0 costs 1, gate 1 nothing, the loss does not care: after some
    // steps gate 0's probability falls below gate 1's and below its start.
    let mut gates = GateState::new(2, 3.0);
    let mut rng = Rng::new(9);
    for _ in 0..200 {
        let draws = gates.sample(32, &mut rng);
        let costs: Vec<f64> = draws.iter().map(|d| f64::from(u8::from(d[0]))).collect();
        let r = rewards(&[0.5; 32], &costs, 1.0, 0.0, 1.0);
        gates.reinforce(&draws, &r, 0.9, &Adam::new(0.05));
    }
    let p = gates.probabilities();
    assert!(p[0] < 0.5 && p[0] < p[1], "{p:?}");
    assert_eq!(gates.kept(), vec![false, p[1] > 0.5]);
    // A budget above every cost makes the cost term vanish.
    assert_eq!(rewards(&[0.25], &[3.0], 10.0, 5.0, 4.0), vec![-0.25]);
    assert_eq!(
        rewards(&[0.25], &[6.0], 10.0, 4.0, 4.0),
        vec![-(0.25 + 5.0)]
    );
}

fn parse(text: &str) -> Result<SanasConfig, String> {
    SanasConfig::parse(text, Path::new("sanas.toml")).map_err(|e| e.to_string())
}

fn options(dir: &Path, resume: bool, stop_after: Option<usize>) -> SanasOptions {
    SanasOptions {
        data_dir: dir.join("data"),
        prepare: PrepareOptions {
            cache_dir: Some(dir.join("cache")),
            threads: 1,
            ..PrepareOptions::default()
        },
        resume,
        stop_after_epochs: stop_after,
        verbose: false,
    }
}

/// Trains `experiment` the usual way into `run`, on the data in `dir`.
fn train_tiny(gpu: &Gpu, experiment: &Experiment, run: &RunDir, dir: &Path) -> TrainSummary {
    let options = TrainOptions {
        data_dir: dir.join("data"),
        prepare: options(dir, false, None).prepare,
        resume: false,
        stop_after_epochs: None,
        verbose: false,
        init_from: None,
    };
    train(gpu, experiment, run, &options).unwrap()
}

#[test]
fn a_tiny_static_search_resumes_prunes_under_a_large_lambda_and_retrains() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let config = parse(&sanas_config::tiny_config("[0.0, 5.0]", 3)).unwrap();
    let runs = dir.path().join("runs");

    let straight = RunDir::create(&runs, "straight", &config.to_toml()).unwrap();
    let summary = search(gpu, &config, &straight, &options(dir.path(), false, None)).unwrap();
    assert_eq!(summary.points.len(), 2);
    let [free, costly] = [&summary.points[0], &summary.points[1]];
    assert_eq!((free.lambda, costly.lambda), (0.0, 5.0));
    // No cost: every gate stays open; a large lambda closes the costly conv.
    assert_eq!(free.kept.len(), 3, "{free:?}");
    assert!(!costly.kept.contains(&"conv1".to_string()), "{costly:?}");
    assert!(costly.kept_cost < 0.5 * costly.full_cost, "{costly:?}");
    assert!(costly.macs < free.macs);
    for point in [free, costly] {
        let folder = straight
            .root
            .join(POINTS_DIR)
            .join(point_name(point.lambda));
        let gates = std::fs::read_to_string(folder.join(GATES_FILE)).unwrap();
        assert_eq!(gates.lines().count(), 3);
        assert!(folder.join(RESULTS_FILE).is_file());
        assert!(folder.join(GATES_PLOT).is_file());
        // Static points have no costs by window label.
        assert!(!folder.join(COST_BY_LABEL_PLOT).exists());
        assert!(point.test_accuracy.is_some());
    }
    assert!(straight.root.join(RESULTS_FILE).is_file());
    assert!(straight.plots_dir().join(SWEEP_PLOT).is_file());
    let arch_path = summary.architecture.clone().expect("a point kept a path");
    assert_eq!(arch_path, straight.root.join(ARCHITECTURE_FILE));

    // Stopped after one epoch and resumed: the same gates and results.
    let resumed = RunDir::create(&runs, "resumed", &config.to_toml()).unwrap();
    let first = search(gpu, &config, &resumed, &options(dir.path(), false, Some(1))).unwrap();
    assert!(first.points.is_empty());
    assert!(!resumed.root.join(RESULTS_FILE).exists());
    let mut last = first;
    for _ in 0..6 {
        last = search(gpu, &config, &resumed, &options(dir.path(), true, Some(1))).unwrap();
        if last.points.len() == 2 {
            break;
        }
    }
    assert_eq!(last.points.len(), 2);
    for (a, b) in summary.points.iter().zip(&last.points) {
        assert_eq!(a.probabilities, b.probabilities, "lambda {}", a.lambda);
        assert_eq!(a.kept, b.kept);
        assert_eq!(a.val_accuracy, b.val_accuracy);
    }

    // Each point's kept part is a model file that `eval --stream` takes; the
    // streaming test's table ends with the MACs of every window.
    let data = dir.path().join("data");
    let stream = dir.path().join("stream.wav");
    let point = straight.root.join(POINTS_DIR).join(point_name(5.0));
    let cli = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_audionas"))
            .args(args)
            .env("WGPU_BACKEND", "vulkan")
            .env("NODEVICE_SELECT", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{args:?}: {text}");
        text
    };
    cli(&[
        "data".as_ref(),
        "stream".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        stream.as_os_str(),
        "--seconds".as_ref(),
        "12".as_ref(),
    ]);
    let text = cli(&[
        "eval".as_ref(),
        "--model".as_ref(),
        point.as_os_str(),
        "--stream".as_ref(),
        stream.as_os_str(),
        "--stride-ms".as_ref(),
        "200".as_ref(),
    ]);
    assert!(
        text.contains(&format!(
            "{} MACs per window, a window every 200 ms",
            costly.macs
        )),
        "{text}"
    );
    assert!(
        text.contains("matched") && text.contains("false alarms"),
        "{text}"
    );
    // A recording shorter than one window is refused, naming it.
    let short = dir.path().join("short.wav");
    audionas::data::wav::write_wav(
        &short,
        &audionas::data::wav::Audio {
            samples: vec![0.0; 8000],
            sample_rate: 16000,
        },
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_audionas"))
        .args(["eval", "--model"])
        .arg(&point)
        .arg("--stream")
        .arg(&short)
        .env("WGPU_BACKEND", "vulkan")
        .env("NODEVICE_SELECT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("short.wav") && err.contains("shorter than one"),
        "{err}"
    );

    // The derived architecture is a plain description that `train` takes.
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.model = Architecture::load(&arch_path).unwrap();
    experiment.train.epochs = 1;
    let run = RunDir::create(&runs, "retrained", &experiment.to_toml()).unwrap();
    let trained = train_tiny(gpu, &experiment, &run, dir.path());
    assert_eq!(trained.params, summary.params);
}

#[test]
fn a_latency_search_measures_its_layer_times_once_and_prices_draws_by_them() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let text = sanas_config::tiny_config("[0.0]", 1).replace(
        "strategy = \"sanas\"",
        "strategy = \"sanas\"\ncost = \"latency\"",
    );
    let config = parse(&text).unwrap();
    let names: Vec<String> = (0..config.experiment.model.layers.len())
        .map(|i| config.experiment.model.layer_name(i))
        .collect();
    let runs = dir.path().join("runs");

    let measured = RunDir::create(&runs, "measured", &config.to_toml()).unwrap();
    let result = search(gpu, &config, &measured, &options(dir.path(), false, None));
    if !gpu.has_timestamps() {
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("cost = \"latency\""), "{err}");
        return;
    }
    let summary = result.unwrap();
    let table: LatencyTable =
        serde_json::from_str(&std::fs::read_to_string(measured.root.join(LATENCY_FILE)).unwrap())
            .unwrap();
    assert_eq!(table.layers, names);
    assert!(table.ms.iter().all(|t| t.is_finite() && *t >= 0.0));
    assert!(table.ms[0] > 0.0, "the conv took no time: {table:?}");
    let full: f64 = table.ms.iter().sum();
    assert!((summary.points[0].full_cost - full).abs() < 1e-9 * full.max(1.0));

    // A table already in the run is read, not measured again: the costs are
    // its made-up times, and a closed gate takes its layers' times away.
    let reused = RunDir::create(&runs, "reused", &config.to_toml()).unwrap();
    let made_up = LatencyTable {
        ms: (0..names.len()).map(|i| (i + 1) as f64).collect(),
        ..table.clone()
    };
    std::fs::write(
        reused.root.join(LATENCY_FILE),
        serde_json::to_string(&made_up).unwrap(),
    )
    .unwrap();
    let summary = search(gpu, &config, &reused, &options(dir.path(), false, None)).unwrap();
    let point = &summary.points[0];
    assert_eq!(point.full_cost, (1..=names.len()).sum::<usize>() as f64);
    assert!(point.kept_cost <= point.full_cost);

    // A table of other layers is refused, naming the file.
    let other = RunDir::create(&runs, "other", &config.to_toml()).unwrap();
    let wrong = LatencyTable {
        layers: vec!["elsewhere".into()],
        ms: vec![1.0],
        ..table
    };
    std::fs::write(
        other.root.join(LATENCY_FILE),
        serde_json::to_string(&wrong).unwrap(),
    )
    .unwrap();
    let err = search(gpu, &config, &other, &options(dir.path(), false, None)).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(LATENCY_FILE) && err.contains("elsewhere"),
        "{err}"
    );
}

#[test]
fn a_sweep_scores_its_points_and_reference_models_on_a_validation_stream() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let runs = dir.path().join("runs");
    // A reference model trained the usual way.
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.train.epochs = 1;
    let reference = RunDir::create(&runs, "reference", &experiment.to_toml()).unwrap();
    let trained = train_tiny(gpu, &experiment, &reference, dir.path());

    // First a sweep without the stream; then the same run asked for it:
    // the finished points are scored without searching again.
    let plain = parse(&sanas_config::tiny_config("[0.0, 5.0]", 2)).unwrap();
    let run = RunDir::create(&runs, "sweep", &plain.to_toml()).unwrap();
    let before = search(gpu, &plain, &run, &options(dir.path(), false, None)).unwrap();
    assert!(before.points.iter().all(|p| p.stream.is_none()));
    assert!(!run.plots_dir().join(STREAM_SWEEP_PLOT).exists());
    let streamed = parse(&sanas_config::tiny_config("[0.0, 5.0]", 2).replace(
        "gate_lr = 0.5",
        &format!(
            "gate_lr = 0.5\nstream_seconds = 24.0\nreference_models = [{:?}]",
            reference.root.display().to_string()
        ),
    ))
    .unwrap();
    let after = search(gpu, &streamed, &run, &options(dir.path(), true, None)).unwrap();
    for (a, b) in before.points.iter().zip(&after.points) {
        assert_eq!(a.probabilities, b.probabilities, "searched again");
        let score = b.stream.as_ref().expect("every point kept a path");
        assert!(score.words >= 5, "{score:?}");
        assert!((0.0..=100.0).contains(&score.matched));
        // A static point runs its kept part in every window.
        assert_eq!(score.macs_per_window, b.macs as f64);
        let saved: PointSummary = serde_json::from_str(
            &std::fs::read_to_string(
                run.root
                    .join(POINTS_DIR)
                    .join(point_name(b.lambda))
                    .join(RESULTS_FILE),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(saved.stream.as_ref(), Some(score));
    }
    assert_eq!(after.references.len(), 1);
    let score = &after.references[0].score;
    assert_eq!(score.macs_per_window, trained.macs as f64);
    assert_eq!(score.words, after.points[0].stream.as_ref().unwrap().words);
    assert!(run.plots_dir().join(STREAM_SWEEP_PLOT).is_file());

    // A reference model that is not there is refused by key and path.
    let missing = parse(&sanas_config::tiny_config("[0.0, 5.0]", 2).replace(
        "gate_lr = 0.5",
        "gate_lr = 0.5\nstream_seconds = 24.0\nreference_models = [\"no/such/model\"]",
    ))
    .unwrap();
    let err = search(gpu, &missing, &run, &options(dir.path(), true, None)).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("reference_models") && err.contains("no/such/model"),
        "{err}"
    );
}

/// The weights of a search point's model file, by name.
fn point_weights(run: &RunDir, lambda: f64) -> Vec<(String, Vec<f32>)> {
    let model = run
        .root
        .join(POINTS_DIR)
        .join(point_name(lambda))
        .join(MODEL_FILE);
    let (tensors, _) = load_checkpoint(&model).unwrap();
    tensors.into_iter().map(|t| (t.name, t.data)).collect()
}

#[test]
fn init_from_starts_each_point_from_a_trained_network() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let runs = dir.path().join("runs");
    let text = sanas_config::tiny_config("[0.0]", 1);
    let trained = RunDir::create(&runs, "trained", &text).unwrap();
    search(
        gpu,
        &parse(&text).unwrap(),
        &trained,
        &options(dir.path(), false, None),
    )
    .unwrap();
    let parent = trained.root.join(POINTS_DIR).join(point_name(0.0));

    // At a learning rate too small to move a weight, a point ends where it
    // started: on the parent's weights when it starts from them.
    let frozen = |name: &str, init_from: &str| {
        let text = text
            .replace("lr = 0.01", "lr = 1e-12")
            .replace("gate_lr = 0.5", &format!("gate_lr = 0.5\n{init_from}"));
        let config = parse(&text).unwrap();
        let run = RunDir::create(&runs, name, &config.to_toml()).unwrap();
        search(gpu, &config, &run, &options(dir.path(), false, None)).map(|_| run)
    };
    let warm = frozen(
        "warm",
        &format!("init_from = {:?}", parent.display().to_string()),
    )
    .unwrap();
    let cold = frozen("cold", "").unwrap();
    let parent_weights = point_weights(&trained, 0.0);
    assert!(parent_weights.iter().any(|(n, _)| n.ends_with("weight")));
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6);
    for (name, values) in &parent_weights {
        let find = |run: &RunDir| point_weights(run, 0.0).into_iter().find(|(n, _)| n == name);
        let (_, w) = find(&warm).unwrap_or_else(|| panic!("{name} not in the warm point"));
        assert!(close(&w, values), "{name}: not the parent's");
        if name.ends_with("weight") {
            let (_, c) = find(&cold).unwrap();
            assert!(
                !close(&c, values),
                "{name}: a fresh draw equals the parent's"
            );
        }
    }

    // A parent that is not there is refused by key and path.
    let err = frozen("orphan", "init_from = \"no/such/run\"").unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("init_from") && err.contains("no/such/run"),
        "{err}"
    );
}

#[test]
fn bad_sanas_configs_are_refused_by_key() {
    let cases = [
        (sanas_config::tiny_config("[-1.0]", 1), "lambdas: -1 "),
        (sanas_config::tiny_config("[nan]", 1), "lambdas: NaN"),
        (sanas_config::tiny_config("[]", 1), "lambdas is empty"),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "budget = -3.0"),
            "budget = -3",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "gate_lr = 0.0"),
            "gate_lr = 0",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "baseline_decay = 1.5"),
            "baseline_decay = 1.5",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "lambda = 2.0"),
            "unknown field `lambda`",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate = true", ""),
            "no layer has `gate = true`",
        ),
        (
            format!("{}gate = true\n", sanas_config::tiny_config("[1.0]", 1)),
            "cannot be gated",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "stream_seconds = -1.0"),
            "stream_seconds = -1 must be",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace("gate_lr = 0.5", "stream_seconds = 0.5"),
            "shorter than one window",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1)
                .replace("gate_lr = 0.5", "reference_models = [\"runs/x\"]"),
            "set stream_seconds > 0",
        ),
        (
            sanas_config::tiny_config("[1.0]", 1).replace(
                "gate_lr = 0.5",
                "stream_seconds = 10.0\nwindow_stride_ms = 0.5",
            ),
            "window_stride_ms = 0.5",
        ),
    ];
    for (text, want) in cases {
        let err = parse(&text).unwrap_err();
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    assert!(parse(&sanas_config::tiny_config("[0.0, 2.5]", 1)).is_ok());
    let adaptive = sanas_config::tiny_adaptive_config("[1.0]", 1);
    assert!(parse(&adaptive).is_ok());
    for (from, to, want) in [
        (
            "adaptive = true",
            "adaptive = true\nwindow_stride_ms = 210.0",
            "whole number of feature hops (20 ms)",
        ),
        ("max_words = 2", "max_words = 3", "too short for 3 words"),
        (
            "stream_windows = 6",
            "stream_windows = 0",
            "stream_windows must be at least 1",
        ),
        (
            "streams_per_epoch = 32",
            "streams_per_epoch = 4",
            "less than one batch of 8",
        ),
        (
            "adaptive = true",
            "adaptive = true\nmax_noise_volume = -0.5",
            "max_noise_volume = -0.5",
        ),
    ] {
        let err = parse(&adaptive.replace(from, to)).unwrap_err();
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn the_shipped_sanas_configs_load_with_the_papers_super_network() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/search");
    let full = SanasConfig::load(&dir.join("sanas_kws.toml")).unwrap_or_else(|e| panic!("{e}"));
    let small =
        SanasConfig::load(&dir.join("sanas_kws_small.toml")).unwrap_or_else(|e| panic!("{e}"));
    let model = &full.experiment.model;
    let gated: Vec<String> = model
        .gated_layers()
        .into_iter()
        .map(|i| model.layer_name(i))
        .collect();
    assert_eq!(
        gated,
        ["conv1", "conv2", "lin", "dnn", "short0", "short1", "short2", "short3"]
    );
    // With every shortcut closed it is cnn-trad-fpool3.
    let shape = full.experiment.features.clip_shape();
    let main_path = model
        .activity(&model.gate_mask(&[true, true, true, true, false, false, false, false]))
        .unwrap();
    let cost = Cost::of(model, &shape, 12, 1000.0, Some(&main_path)).unwrap();
    let plain = Experiment::load(&dir.join("../cnn_trad_fpool3.toml")).unwrap();
    let want = Cost::of(&plain.model, &shape, 12, 1000.0, None).unwrap();
    assert_eq!((cost.macs, cost.params), (want.macs, want.params));
    assert_eq!(small.experiment.model.layers.len(), model.layers.len());
    let adaptive =
        SanasConfig::load(&dir.join("sanas_kws_adaptive.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(adaptive.search.adaptive);
    assert_eq!(
        adaptive.experiment.model.layers,
        small.experiment.model.layers
    );
    // For languages: the small one on 4 s clips, its first pooling over 4
    // frames as well.
    let lid = SanasConfig::load(&dir.join("sanas_lid.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lid.experiment.features.clip_ms, 4000.0);
    let pools = |c: &SanasConfig| c.experiment.model.layers[1].op.clone();
    assert_eq!(
        serde_json::to_value(pools(&lid)).unwrap()["kernel"],
        serde_json::json!([4, 3])
    );
    assert_eq!(
        lid.experiment.model.layers.len(),
        small.experiment.model.layers.len()
    );
    // For spoken digits: the small one on 8 kHz log-mel.
    let digits = SanasConfig::load(&dir.join("sanas_fsdd.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(digits.experiment.features.clip_shape(), [1, 63, 40]);
    assert_eq!(
        digits.experiment.model.layers,
        small.experiment.model.layers
    );
}

#[test]
fn a_tiny_adaptive_search_runs_resumes_and_spends_less_under_a_large_lambda() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    sanas_config::write_silence(&dir.path().join("data/_silence_"));
    let gpu = Gpu::shared();
    let config = parse(&sanas_config::tiny_adaptive_config("[0.0, 20.0]", 3)).unwrap();
    let runs = dir.path().join("runs");
    let straight = RunDir::create(&runs, "adaptive", &config.to_toml()).unwrap();
    let summary = search(gpu, &config, &straight, &options(dir.path(), false, None)).unwrap();
    assert_eq!(summary.points.len(), 2);
    for p in &summary.points {
        eprintln!("{p:?}");
        assert!(p.adaptive && p.architecture.is_none());
        assert!(p.test_accuracy.is_some());
        let folder = straight.root.join(POINTS_DIR).join(point_name(p.lambda));
        let gates = std::fs::read_to_string(folder.join(GATES_FILE)).unwrap();
        assert_eq!(gates.lines().count(), 3);
        assert!(folder.join(GATES_PLOT).is_file());
        assert!(folder.join(COST_BY_LABEL_PLOT).is_file());
    }
    let [free, costly] = [&summary.points[0], &summary.points[1]];
    assert!(costly.kept_cost < free.kept_cost, "{free:?}\n{costly:?}");

    // The point streams with its controller: `eval --stream` at its stride.
    let data = dir.path().join("data");
    let stream = dir.path().join("stream.wav");
    let point = straight.root.join(POINTS_DIR).join(point_name(20.0));
    let cli = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_audionas"))
            .args(args)
            .env("WGPU_BACKEND", "vulkan")
            .env("NODEVICE_SELECT", "1")
            .output()
            .unwrap()
    };
    let made = cli(&[
        "data".as_ref(),
        "stream".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        stream.as_os_str(),
        "--seconds".as_ref(),
        "8".as_ref(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let eval = |stride: &str| {
        cli(&[
            "eval".as_ref(),
            "--model".as_ref(),
            point.as_os_str(),
            "--stream".as_ref(),
            stream.as_os_str(),
            "--stride-ms".as_ref(),
            stride.as_ref(),
        ])
    };
    let out = eval("200");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("MACs per window, a window every 200 ms") && text.contains("matched"),
        "{text}"
    );
    let out = eval("30");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("give --stride-ms 200"),
        "{text}"
    );

    let resumed = RunDir::create(&runs, "resumed", &config.to_toml()).unwrap();
    let mut last = search(gpu, &config, &resumed, &options(dir.path(), false, Some(1))).unwrap();
    for _ in 0..6 {
        if last.points.len() == 2 {
            break;
        }
        last = search(gpu, &config, &resumed, &options(dir.path(), true, Some(1))).unwrap();
    }
    for (a, b) in summary.points.iter().zip(&last.points) {
        assert_eq!(a.probabilities, b.probabilities, "lambda {}", a.lambda);
        assert_eq!(a.test_accuracy, b.test_accuracy);
        assert_eq!(a.kept_cost, b.kept_cost);
    }
}

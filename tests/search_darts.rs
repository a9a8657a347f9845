//! The DARTS search end to end on tiny tone data (a few steps, resume,
//! derivation, retraining the derived architecture; first and second
//! order), the supernet's
//! gradients (architecture weights included) against finite differences,
//! derivation rules, and search configs refused before any training.

mod common;
#[path = "common/search.rs"]
mod search_config;

use audionas::data::prepare::PrepareOptions;
use audionas::gpu::Gpu;
use audionas::model::arch::Weighting;
use audionas::model::{Architecture, Mask, Network};
use audionas::nn::Pass;
use audionas::search::config::{SearchConfig, Strategy};
use audionas::search::darts::{search, SearchOptions, ARCHITECTURE_FILE, ARCH_WEIGHTS_FILE};
use audionas::search::derive::{darts_choices, derive, fair_darts_choices};
use audionas::search::plots::{CELLS_FILE, HEATMAP_FILE, OVER_EPOCHS_FILE};
use audionas::search::space::{SpaceConfig, Tables};
use audionas::train::config::Experiment;
use audionas::train::run_dir::RunDir;
use audionas::train::trainer::{train, TrainOptions};
use audionas::util::rng::Rng;
use std::path::Path;

fn parse(text: &str) -> Result<SearchConfig, String> {
    SearchConfig::parse(text, Path::new("search.toml")).map_err(|e| e.to_string())
}

fn options(dir: &Path, resume: bool, stop_after: Option<usize>) -> SearchOptions {
    SearchOptions {
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

#[test]
fn a_tiny_darts_search_resumes_derives_and_retrains() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let config = parse(&search_config::tiny_search(2, "")).unwrap();

    let straight = RunDir::create(&dir.path().join("runs"), "straight", &config.to_toml()).unwrap();
    let summary = search(gpu, &config, &straight, &options(dir.path(), false, None)).unwrap();
    assert_eq!(summary.epochs_done, 2);
    let path = summary.architecture.clone().expect("all epochs done");
    assert_eq!(path, straight.root.join(ARCHITECTURE_FILE));
    let weights = std::fs::read_to_string(straight.root.join(ARCH_WEIGHTS_FILE)).unwrap();
    assert_eq!(weights.lines().count(), 2);
    for picture in [HEATMAP_FILE, OVER_EPOCHS_FILE, CELLS_FILE] {
        assert!(straight.plots_dir().join(picture).is_file(), "{picture}");
    }

    // Stopped after one epoch and resumed: the same weights, so the same architecture.
    let halves = RunDir::create(&dir.path().join("runs"), "halves", &config.to_toml()).unwrap();
    let first = search(gpu, &config, &halves, &options(dir.path(), false, Some(1))).unwrap();
    assert!(first.architecture.is_none());
    search(gpu, &config, &halves, &options(dir.path(), true, None)).unwrap();
    let resumed = std::fs::read_to_string(halves.root.join(ARCH_WEIGHTS_FILE)).unwrap();
    assert_eq!(
        resumed, weights,
        "architecture weights differ after resuming"
    );
    let derived = Architecture::load(&path).unwrap();
    let again = Architecture::load(&halves.root.join(ARCHITECTURE_FILE)).unwrap();
    assert_eq!(again.layers, derived.layers);

    // Every node keeps at most 2 edges, none of them `zero`.
    let mixed = derived
        .layers
        .iter()
        .filter(|l| l.op.name() == "mixed")
        .count();
    assert_eq!(mixed, 0);
    assert!(summary.params > 0 && summary.macs > 0);

    // The derived architecture retrains from scratch as any description.
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.model = derived;
    experiment.train.epochs = 1;
    let run = RunDir::create(&dir.path().join("runs"), "retrain", &experiment.to_toml()).unwrap();
    let trained = train(
        gpu,
        &experiment,
        &run,
        &TrainOptions {
            data_dir: dir.path().join("data"),
            prepare: options(dir.path(), false, None).prepare,
            resume: false,
            stop_after_epochs: None,
            verbose: false,
            init_from: None,
        },
    )
    .unwrap();
    assert_eq!(trained.params, summary.params);
}

#[test]
fn an_unrolled_darts_search_resumes_and_derives() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let gpu = Gpu::shared();
    let runs = dir.path().join("runs");
    let config = parse(&search_config::tiny_search(2, "[search]\nunrolled = true")).unwrap();
    assert!(config.search.unrolled);
    let straight = RunDir::create(&runs, "unrolled", &config.to_toml()).unwrap();
    let summary = search(gpu, &config, &straight, &options(dir.path(), false, None)).unwrap();
    assert_eq!(summary.epochs_done, 2);
    let derived = Architecture::load(&summary.architecture.unwrap()).unwrap();
    assert!(derived.layers.iter().all(|l| l.op.name() != "mixed"));
    let weights = std::fs::read_to_string(straight.root.join(ARCH_WEIGHTS_FILE)).unwrap();

    // Stopped after one epoch and resumed: the same architecture weights.
    let halves = RunDir::create(&runs, "unrolled_halves", &config.to_toml()).unwrap();
    search(gpu, &config, &halves, &options(dir.path(), false, Some(1))).unwrap();
    search(gpu, &config, &halves, &options(dir.path(), true, None)).unwrap();
    let resumed = std::fs::read_to_string(halves.root.join(ARCH_WEIGHTS_FILE)).unwrap();
    assert_eq!(
        resumed, weights,
        "architecture weights differ after resuming"
    );

    // The first order moves them elsewhere.
    let mut first_order = config.clone();
    first_order.search.unrolled = false;
    let run = RunDir::create(&runs, "first_order", &first_order.to_toml()).unwrap();
    search(
        gpu,
        &first_order,
        &run,
        &options(dir.path(), false, Some(1)),
    )
    .unwrap();
    let first = std::fs::read_to_string(run.root.join(ARCH_WEIGHTS_FILE)).unwrap();
    assert_ne!(first.lines().next(), weights.lines().next());
}

/// `loss = sum(logits * r)`: its gradient w.r.t. the logits is r.
fn loss(gpu: &Gpu, net: &mut Network, x: &audionas::gpu::Tensor, r: &[f32]) -> f64 {
    let mut rec = gpu.recorder();
    let logits = net
        .forward(&mut rec, x, Pass::train(1).frozen_stats())
        .unwrap();
    rec.submit_and_wait().unwrap();
    let y = gpu.download(&logits).unwrap();
    y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn supernet_gradients_match_finite_differences() {
    let gpu = Gpu::shared();
    let config = parse(&search_config::tiny_search(2, "")).unwrap();
    let tables = Tables {
        weighting: Weighting::Softmax,
        init_scale: 0.5,
        regulariser: None,
    };
    let arch = config.space.supernet("supernet", &tables);
    let input = [1, 9, 7];
    let classes = 3;
    let batch = 2;
    let mut net = Network::build(gpu, &arch, &input, classes, 4).unwrap();
    // One candidate masked: its column gets no gradient, the rest still do.
    net.set_mask(&Mask::none().layer_off("cell0.node1.from2.sep_conv_3x3.b.bn"))
        .unwrap();
    let mut rng = Rng::new(11);
    let x = gpu
        .upload(&[batch, 1, 9, 7], &rng.vec_uniform(batch * 63, -1.0, 1.0))
        .unwrap();
    let r = rng.vec_uniform(batch * classes, -1.0, 1.0);
    let dlogits = gpu.upload(&[batch, classes], &r).unwrap();
    let mut rec = gpu.recorder();
    net.forward(&mut rec, &x, Pass::train(1).frozen_stats())
        .unwrap();
    net.backward(&mut rec, &dlogits).unwrap();
    rec.submit_and_wait().unwrap();
    let checked: Vec<(String, audionas::gpu::Tensor, Vec<f32>, Vec<f32>)> = net
        .named_params()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("alphas_") || name == "cell1.node0.from0.sep_conv_3x3.a.dw.weight"
        })
        .map(|(name, p)| {
            let value = gpu.download(&p.value).unwrap();
            let grad = gpu.download(&p.grad).unwrap();
            (name, p.value.clone(), value, grad)
        })
        .collect();
    assert_eq!(checked.len(), 3);
    for (name, tensor, value, grad) in checked {
        let v = rng.vec_uniform(value.len(), -1.0, 1.0);
        let analytic: f64 = grad
            .iter()
            .zip(&v)
            .map(|(g, v)| *g as f64 * *v as f64)
            .sum();
        // Small enough that no ReLU or max-pool choice flips.
        let h = 1e-3f32;
        let mut at = |sign: f32| {
            let moved: Vec<f32> = value
                .iter()
                .zip(&v)
                .map(|(a, b)| a + sign * h * b)
                .collect();
            gpu.write(&tensor, &moved).unwrap();
            loss(gpu, &mut net, &x, &r)
        };
        let numeric = (at(1.0) - at(-1.0)) / (2.0 * h as f64);
        gpu.write(&tensor, &value).unwrap();
        let scale = analytic.abs().max(numeric.abs()).max(1e-3);
        assert!(
            (analytic - numeric).abs() <= 0.03 * scale,
            "{name}: analytic {analytic} vs finite difference {numeric}"
        );
    }
}

#[test]
fn darts_keeps_the_two_strongest_edges_of_each_node_without_zero() {
    let config = parse(&search_config::tiny_search(2, "")).unwrap();
    let space: &SpaceConfig = &config.space;
    let k = space.ops.len();
    // Node 0 reads states 0 and 1 (rows 0, 1); node 1 reads 0, 1, 2 (rows 2-4).
    let mut w = vec![0.0; 5 * k];
    let set = |w: &mut Vec<f64>, row: usize, op: usize, v: f64| w[row * k + op] = v;
    set(&mut w, 0, 0, 0.9); // zero is strongest on row 0: not chosen
    set(&mut w, 0, 3, 0.05);
    set(&mut w, 1, 1, 0.3);
    set(&mut w, 2, 4, 0.2);
    set(&mut w, 3, 2, 0.1);
    set(&mut w, 4, 3, 0.6);
    let choices = darts_choices(space, &w);
    assert_eq!(choices, vec![Some(3), Some(1), Some(4), None, Some(3)]);
    let (genotype, arch) = derive(space, "d", &choices, &choices).unwrap();
    assert_eq!(genotype.skips, 2);
    assert!(arch.layers.iter().all(|l| l.op.name() != "mixed"));
}

#[test]
fn bad_search_configs_are_refused_naming_the_key() {
    let cases = [
        (
            "ops = [\"zero\", \"skip\", \"max_pool_3x3\", \"sep_conv_3x3\", \"dil_conv_3x3\"]",
            "ops = [\"conv_9x9\"]",
            "conv_9x9",
        ),
        (
            "ops = [\"zero\", \"skip\", \"max_pool_3x3\", \"sep_conv_3x3\", \"dil_conv_3x3\"]",
            "ops = []",
            "ops is empty",
        ),
        ("cells = 2", "cells = 0", "cells"),
        ("reductions = [1]", "reductions = [2]", "reductions"),
        ("nodes = 2", "nodes = 0", "nodes"),
        ("stride = [2, 2]", "stride = [40, 40]", "[space]"),
        ("[space]", "[space]\nsurprise = 1", "surprise"),
    ];
    for (from, to, want) in cases {
        let text = search_config::tiny_search(2, "").replacen(from, to, 1);
        let e = parse(&text).unwrap_err();
        assert!(e.contains(want), "{to}: {e}");
    }
    let e = parse(&search_config::tiny_search(
        2,
        "[search]\nstrategy = \"nope\"",
    ))
    .unwrap_err();
    assert!(e.contains("nope") || e.contains("strategy"), "{e}");
    let e = parse(
        &search_config::tiny_search(2, "[search]\nunrolled = true").replacen(
            "kind = \"sgd\", momentum = 0.9",
            "kind = \"adam\"",
            1,
        ),
    )
    .unwrap_err();
    assert!(e.contains("unrolled") && e.contains("sgd"), "{e}");
}

#[test]
fn fair_darts_keeps_strong_edges_only_and_drops_empty_nodes() {
    let mut config = parse(&search_config::tiny_search(2, "")).unwrap();
    config.search.strategy = Strategy::FairDarts;
    let space = config.space();
    assert!(!space.ops.iter().any(|o| o == "zero"));
    let k = space.ops.len();
    let mut w = vec![0.1; 5 * k];
    let at = |row: usize, op: usize| row * k + op;
    w[at(0, 2)] = 0.9; // node 0: one edge above 0.85
    w[at(1, 1)] = 0.8; // below the threshold
    w[at(4, 3)] = 0.95; // node 1 from node 0
    let choices = fair_darts_choices(&space, &w, 0.85);
    assert_eq!(choices, vec![Some(2), None, None, None, Some(3)]);
    // No edge strong enough anywhere: the cell is empty, which is refused.
    let none = fair_darts_choices(&space, &vec![0.5; 5 * k], 0.85);
    assert!(none.iter().all(Option::is_none));
    assert!(derive(&space, "d", &none, &none).is_err());
}

#[test]
fn a_tiny_fair_darts_search_derives_and_retrains() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 6);
    let gpu = Gpu::shared();
    let mut config = parse(&search_config::tiny_search(2, "")).unwrap();
    config.search.strategy = Strategy::FairDarts;
    let run = RunDir::create(&dir.path().join("runs"), "fair", &config.to_toml()).unwrap();
    // From alpha = 0 every sigmoid starts at 0.5, so a few steps cannot
    // reach the reference's 0.85: the search says so instead of writing an
    // empty network, and stays resumable.
    let e = search(gpu, &config, &run, &options(dir.path(), false, None)).unwrap_err();
    assert!(format!("{e:#}").contains("no node left"), "{e:#}");
    assert!(run.last_checkpoint().exists());
    let weights = std::fs::read_to_string(run.root.join(ARCH_WEIGHTS_FILE)).unwrap();
    let line: serde_json::Value = serde_json::from_str(weights.lines().last().unwrap()).unwrap();
    assert!(!line["ops"].as_array().unwrap().iter().any(|o| o == "zero"));
    // The zero-one loss pushes the sigmoids away from 0.5.
    let moved = line["normal"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .any(|w| (w.as_f64().unwrap() - 0.5).abs() > 1e-3);
    assert!(moved, "{line}");

    // With a threshold these weights pass, a network is derived and retrains.
    config.search.threshold = 0.5;
    let run = RunDir::create(&dir.path().join("runs"), "fair_low", &config.to_toml()).unwrap();
    let summary = search(gpu, &config, &run, &options(dir.path(), false, None)).unwrap();
    let derived = Architecture::load(&summary.architecture.unwrap()).unwrap();
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.model = derived;
    experiment.train.epochs = 1;
    let retrain = RunDir::create(
        &dir.path().join("runs"),
        "fair_retrain",
        &experiment.to_toml(),
    )
    .unwrap();
    let trained = train(
        gpu,
        &experiment,
        &retrain,
        &TrainOptions {
            data_dir: dir.path().join("data"),
            prepare: options(dir.path(), false, None).prepare,
            resume: false,
            stop_after_epochs: None,
            verbose: false,
            init_from: None,
        },
    )
    .unwrap();
    assert_eq!(trained.params, summary.params);
}

//! Searches in the complex field on the complex STFT of tiny tone data: the
//! complex supernet's gradients (complex polynomial products included)
//! against finite differences, and a tiny search of each DARTS-family
//! strategy whose derived architecture is complex and retrains with
//! `train`.

mod common;
#[path = "common/search.rs"]
mod search_config;

use audionas::data::prepare::PrepareOptions;
use audionas::gpu::Gpu;
use audionas::model::arch::{Op, Weighting};
use audionas::model::{Architecture, Network};
use audionas::nn::{Init, Pass};
use audionas::search::config::{SearchConfig, Strategy};
use audionas::search::darts::{search, SearchOptions};
use audionas::search::space::Tables;
use audionas::train::config::Experiment;
use audionas::train::run_dir::RunDir;
use audionas::train::trainer::{train, TrainOptions};
use audionas::util::rng::Rng;
use std::path::Path;

/// A small complex STFT: 16 ms windows every 32 ms, 129 bins; a 1 s clip
/// is `[1, 32, 129, 2]`.
const STFT: &str = "[features]\nkind = \"stft\"\nsample_rate = 16000\nclip_ms = 1000.0\nwindow_ms = 16.0\nhop_ms = 32.0\nn_fft = 256\nwindow = \"hann\"\n";

/// The tiny search on the complex STFT in a complex space, then `extra`.
fn complex_search(epochs: usize, ops: &str, extra: &str) -> SearchConfig {
    let tiny = search_config::tiny_search(epochs, "");
    let rest = &tiny[tiny.find("[train]").unwrap()..];
    let rest = rest.replace(
        "ops = [\"zero\", \"skip\", \"max_pool_3x3\", \"sep_conv_3x3\", \"dil_conv_3x3\"]",
        &format!("ops = {ops}\nfield = \"complex\""),
    );
    let text = format!("{STFT}\n{rest}\n{extra}");
    SearchConfig::parse(&text, Path::new("complex.toml")).unwrap()
}

const OPS: &str = "[\"zero\", \"skip\", \"max_pool_3x3\", \"avg_pool_3x3\", \"sep_conv_3x3\", \"dil_conv_3x3\", \"poly2_5_3\"]";

fn options(dir: &Path) -> SearchOptions {
    SearchOptions {
        data_dir: dir.join("data"),
        prepare: PrepareOptions {
            cache_dir: Some(dir.join("cache")),
            threads: 1,
            ..PrepareOptions::default()
        },
        resume: false,
        stop_after_epochs: None,
        verbose: false,
    }
}

/// Every weighted layer of `arch` is complex and the head takes the magnitude.
fn assert_complex(arch: &Architecture) {
    for layer in &arch.layers {
        let real = matches!(
            layer.op,
            Op::Conv2d { .. }
                | Op::DepthwiseConv2d { .. }
                | Op::BatchNorm { .. }
                | Op::Relu
                | Op::Tanh
        );
        assert!(!real, "{:?} is real in {}", layer.name, arch.name);
    }
    assert!(arch.layers.iter().any(|l| l.op == Op::Magnitude));
}

/// The complex supernet's architecture weights and a complex weight of a
/// polynomial branch, along a random direction each, against central
/// differences of its forward (a step small enough that few CReLU kinks
/// are crossed). Without max pooling: by magnitude it jumps from one value
/// to another where two magnitudes tie, which defeats finite differences
/// through a whole supernet (its backward is checked in the kernel tests).
#[test]
fn complex_supernet_gradients_match_finite_differences() {
    let gpu = Gpu::shared();
    let ops =
        "[\"zero\", \"skip\", \"avg_pool_3x3\", \"sep_conv_3x3\", \"dil_conv_3x3\", \"poly2_5_3\"]";
    let config = complex_search(1, ops, "");
    let tables = Tables {
        weighting: Weighting::Softmax,
        init_scale: 0.5,
        regulariser: None,
        gates: None,
    };
    let mut arch = config.space.supernet("supernet", &tables);
    // Kaiming's wider draw keeps pre-activations further from CReLU's
    // kinks than the default one, so fewer are crossed by the step below.
    arch.init = Init::Kaiming;
    assert_complex(&arch);
    let (input, classes, batch) = ([1, 9, 7, 2], 3, 2);
    let mut net = Network::build(gpu, &arch, &input, classes, 4).unwrap();
    let mut rng = Rng::new(21);
    let n: usize = input.iter().product();
    let x = gpu
        .upload(&[batch, 1, 9, 7, 2], &rng.vec_uniform(batch * n, -1.0, 1.0))
        .unwrap();
    let r = rng.vec_uniform(batch * classes, -1.0, 1.0);
    let dlogits = gpu.upload(&[batch, classes], &r).unwrap();
    let pass = Pass::train(1).frozen_stats();
    let mut rec = gpu.recorder();
    net.forward(&mut rec, &x, pass).unwrap();
    net.backward(&mut rec, &dlogits).unwrap();
    rec.submit_and_wait().unwrap();
    let branch = "cell0.node0.from1.poly2_5_3.b0.dw.weight";
    let checked: Vec<_> = net
        .named_params()
        .into_iter()
        .filter(|(name, _)| name.starts_with("alphas_") || name == branch)
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
        // The discrepancy shrinks with the step (8% at 3e-3, 3.4% at 1e-3): kinks
        // of CReLU crossed, not a wrong gradient.
        let h = 3e-4f32;
        let mut at = |sign: f32| {
            let moved: Vec<f32> = value
                .iter()
                .zip(&v)
                .map(|(a, b)| a + sign * h * b)
                .collect();
            gpu.write(&tensor, &moved).unwrap();
            let mut rec = gpu.recorder();
            let logits = net.forward(&mut rec, &x, pass).unwrap();
            rec.submit_and_wait().unwrap();
            let y = gpu.download(&logits).unwrap();
            y.iter()
                .zip(&r)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
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

/// DARTS, FairDARTS (with a threshold two epochs can pass) and ForceDARTS
/// in the complex field: each derives a complex architecture, which `train`
/// retrains from scratch on the complex STFT with the parameters the search
/// reported.
#[test]
fn tiny_complex_searches_derive_complex_architectures_that_retrain() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 8);
    let gpu = Gpu::shared();
    for strategy in [Strategy::Darts, Strategy::FairDarts, Strategy::ForceDarts] {
        let mut config = complex_search(2, OPS, "");
        config.search.strategy = strategy;
        config.search.threshold = 0.5;
        let name = format!("{strategy:?}").to_lowercase();
        let run = RunDir::create(&dir.path().join("runs"), &name, &config.to_toml()).unwrap();
        let summary = search(gpu, &config, &run, &options(dir.path())).unwrap();
        let derived = Architecture::load(&summary.architecture.unwrap()).unwrap();
        assert_complex(&derived);

        let mut experiment = Experiment::parse(
            &format!("{STFT}\n[train]\nepochs = 1\nbatch_size = 8\n[data]\nsplit = \"speaker\"\n[model]\nname = \"x\"\n[[model.layers]]\nop = \"magnitude\"\n[[model.layers]]\nop = \"dense\"\n"),
            Path::new("retrain.toml"),
        )
        .unwrap();
        experiment.model = derived;
        let run = RunDir::create(
            &dir.path().join("runs"),
            &format!("{name}_retrain"),
            &experiment.to_toml(),
        )
        .unwrap();
        let options = TrainOptions {
            data_dir: dir.path().join("data"),
            prepare: options(dir.path()).prepare,
            resume: false,
            stop_after_epochs: None,
            verbose: false,
            init_from: None,
        };
        let trained = train(gpu, &experiment, &run, &options).unwrap();
        assert_eq!(trained.params, summary.params, "{name}");
    }
}

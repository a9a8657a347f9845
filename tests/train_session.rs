//! The core the searches stand on: sessions with two parameter groups and
//! two-part steps, checkpoints that restore them exactly, masked layers that
//! record nothing and keep their weights and optimizer state, frozen batch
//! norm statistics, and inheritance by name and shape.

use audionas::data::batch::Batch;
use audionas::data::features::FeatureConfig;
use audionas::gpu::Gpu;
use audionas::model::{Architecture, Mask, Network};
use audionas::nn::optim::OptimizerKind;
use audionas::nn::{Pass, WEIGHTS};
use audionas::train::load_checkpoint;
use audionas::train::model_file::{inherit_from_file, save_model, ModelInfo};
use audionas::train::session::{GroupConfig, Session, SessionConfig, StepPart};
use audionas::train::LrSchedule;
use audionas::util::rng::Rng;
use std::collections::BTreeMap;
use std::path::Path;

const INPUT: [usize; 3] = [1, 8, 6];
const CLASSES: usize = 3;
const BATCH: usize = 4;
const ARCH: &str = "arch";

/// A stem, two branches summed (one through batch norm), a head.
const NET: &str = r#"
name = "two_branches"
[[layers]]
name = "stem"
op = "conv2d"
channels = 4
kernel = 3
padding = "same"
[[layers]]
name = "left"
op = "conv2d"
channels = 4
kernel = 3
padding = "same"
[[layers]]
name = "left_bn"
op = "batch_norm"
[[layers]]
name = "right"
op = "conv2d"
channels = 4
kernel = [1, 3]
padding = "same"
inputs = ["stem"]
[[layers]]
name = "sum"
op = "add"
inputs = ["left_bn", "right"]
[[layers]]
op = "relu"
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "head"
op = "dense"
"#;

fn arch(text: &str) -> Architecture {
    Architecture::parse(text, Path::new("test.toml")).unwrap()
}

fn network(text: &str, seed: u64) -> Network {
    Network::build(Gpu::shared(), &arch(text), &INPUT, CLASSES, seed).unwrap()
}

fn batch(rng: &mut Rng) -> Batch {
    Batch {
        features: rng.vec_uniform(BATCH * INPUT.iter().product::<usize>(), -1.0, 1.0),
        labels: (0..BATCH).map(|_| rng.below(CLASSES) as u32).collect(),
        shape: vec![BATCH, INPUT[0], INPUT[1], INPUT[2]],
    }
}

/// Weights by SGD with momentum, the head (as architecture parameters) by Adam.
fn session(net: Network) -> Session<'static> {
    let weights = GroupConfig {
        name: WEIGHTS,
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        lr: 0.05,
        schedule: LrSchedule::default(),
        weight_decay: 3e-4,
        clip_norm: Some(5.0),
    };
    let arch = GroupConfig {
        name: ARCH,
        optimizer: OptimizerKind::Adam {
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
        },
        lr: 3e-3,
        weight_decay: 1e-3,
        clip_norm: None,
        ..weights.clone()
    };
    let config = SessionConfig {
        batch_size: BATCH,
        label_smoothing: 0.0,
        seed: 5,
        steps_per_epoch: 10,
        epochs: 1,
        log_every: 3,
    };
    Session::new(Gpu::shared(), net, &[weights, arch], config).unwrap()
}

fn two_group_network(seed: u64) -> Network {
    let mut net = network(NET, seed);
    net.set_group("head", ARCH).unwrap();
    net
}

/// Every tensor of a checkpoint (network and optimizers), by name.
fn checkpoint_tensors(s: &Session, dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let path = dir.join("state.safetensors");
    s.save_checkpoint(&path, &info()).unwrap();
    let (tensors, _) = load_checkpoint(&path).unwrap();
    tensors.into_iter().map(|t| (t.name, t.data)).collect()
}

fn info() -> ModelInfo {
    ModelInfo {
        architecture: arch(NET),
        features: FeatureConfig::default(),
        classes: (0..CLASSES).map(|c| c.to_string()).collect(),
    }
}

/// Bi-level steps: the architecture group on one batch with frozen
/// statistics, then the weights on another.
fn bilevel_steps(s: &mut Session, rng: &mut Rng, steps: usize) {
    for _ in 0..steps {
        let (val, train) = (batch(rng), batch(rng));
        s.step(&[
            StepPart::new(&val, &[ARCH]).frozen_stats(),
            StepPart::new(&train, &[WEIGHTS]),
        ])
        .unwrap();
    }
    Gpu::shared().wait().unwrap();
}

#[test]
fn two_groups_resume_bit_identically_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut straight = session(two_group_network(1));
    let mut rng = Rng::new(9);
    bilevel_steps(&mut straight, &mut rng, 6);
    let totals = straight.take_totals().unwrap();
    assert_eq!((totals[0].steps, totals[1].steps), (6, 6));
    assert!(totals[0].mean_loss().is_finite() && totals[1].mean_loss() > 0.0);
    let want = checkpoint_tensors(&straight, dir.path());
    assert!(want.keys().any(|k| k == "optimizer.arch.head.weight.m"));
    assert!(want
        .keys()
        .any(|k| k == "optimizer.weights.stem.weight.momentum"));

    let mut first = session(two_group_network(1));
    let mut rng = Rng::new(9);
    bilevel_steps(&mut first, &mut rng, 3);
    let path = dir.path().join("half.safetensors");
    first.save_checkpoint(&path, &info()).unwrap();
    // Another seed: every value must come from the checkpoint.
    let mut resumed = session(two_group_network(2));
    resumed.resume(&path).unwrap();
    assert_eq!(resumed.standing.step, 3);
    bilevel_steps(&mut resumed, &mut rng, 3);
    let got = checkpoint_tensors(&resumed, dir.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, values) in &want {
        let same = values
            .iter()
            .zip(&got[name])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} differs after resuming");
    }
}

#[test]
fn a_checkpoint_of_another_network_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(two_group_network(1));
    let path = dir.path().join("c.safetensors");
    s.save_checkpoint(&path, &info()).unwrap();

    let wider = NET.replacen(
        "channels = 4\nkernel = [1, 3]",
        "channels = 4\nkernel = [3, 3]",
        1,
    );
    let mut other = session({
        let mut n = network(&wider, 1);
        n.set_group("head", ARCH).unwrap();
        n
    });
    let e = format!("{:#}", other.resume(&path).unwrap_err());
    assert!(e.contains("right.weight") && e.contains("shape"), "{e}");

    // Same network, but the head trained with the weights: no `arch` state.
    let mut one_group = session(network(NET, 1));
    let e = format!("{:#}", one_group.resume(&path).unwrap_err());
    assert!(e.contains("optimizer.weights.head."), "{e}");
}

#[test]
fn a_masked_layer_records_nothing_and_keeps_its_weights_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = Gpu::shared();
    let mut s = session(two_group_network(1));
    let mut rng = Rng::new(3);
    bilevel_steps(&mut s, &mut rng, 2);
    let before = checkpoint_tensors(&s, dir.path());

    s.network.set_mask(&Mask::none().layer_off("left")).unwrap();
    bilevel_steps(&mut s, &mut rng, 2);
    let after = checkpoint_tensors(&s, dir.path());
    for (name, values) in &before {
        let unchanged = after[name] == *values;
        let masked = name.contains("left.") || name.contains("left_bn.");
        assert_eq!(unchanged, masked, "{name}: changed {}", !unchanged);
    }

    // The masked network records exactly the kernels of the network
    // written without the branch.
    let without = r#"
name = "one_branch"
[[layers]]
name = "stem"
op = "conv2d"
channels = 4
kernel = 3
padding = "same"
[[layers]]
name = "right"
op = "conv2d"
channels = 4
kernel = [1, 3]
padding = "same"
[[layers]]
op = "relu"
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "head"
op = "dense"
"#;
    let mut pruned = network(without, 1);
    let x = gpu
        .upload(&[BATCH, 1, 8, 6], &batch(&mut rng).features)
        .unwrap();
    let count = |net: &mut Network, pass: Pass| {
        let mut rec = gpu.recorder();
        net.forward(&mut rec, &x, pass).unwrap();
        let n = rec.dispatch_count();
        rec.submit_and_wait().unwrap();
        n
    };
    let masked = count(&mut s.network, Pass::eval());
    assert_eq!(masked, count(&mut pruned, Pass::eval()));
    s.network.set_mask(&Mask::none()).unwrap();
    assert!(count(&mut s.network, Pass::eval()) > masked);
}

#[test]
fn frozen_statistics_stay_and_others_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(two_group_network(1));
    let mut rng = Rng::new(4);
    let running = |s: &Session| {
        let t = checkpoint_tensors(s, dir.path());
        (
            t["left_bn.running_mean"].clone(),
            t["left_bn.running_var"].clone(),
        )
    };
    let start = running(&s);
    let b = batch(&mut rng);
    s.step(&[StepPart::new(&b, &[ARCH]).frozen_stats()])
        .unwrap();
    assert_eq!(running(&s), start);
    s.step(&[StepPart::new(&b, &[ARCH])]).unwrap();
    assert_ne!(running(&s), start);
}

#[test]
fn a_child_inherits_exactly_the_tensors_it_shares_with_its_parent() {
    let gpu = Gpu::shared();
    let parent = network(NET, 1);
    // `right` gets another kernel; the rest keeps names and shapes.
    let child_text = NET.replacen("kernel = [1, 3]", "kernel = [3, 1]", 1);
    let child = network(&child_text, 2);
    let report = child.inherit_from(gpu, &parent).unwrap();
    let mut copied = report.copied.clone();
    copied.sort();
    let mut want: Vec<String> = [
        "stem.weight",
        "stem.bias",
        "left.weight",
        "left.bias",
        "left_bn.weight",
        "left_bn.bias",
        "left_bn.running_mean",
        "left_bn.running_var",
        "right.bias",
        "head.weight",
        "head.bias",
    ]
    .map(String::from)
    .to_vec();
    want.sort();
    assert_eq!(copied, want);
    assert_eq!(report.reshaped.len(), 1);
    assert_eq!(report.reshaped[0].name, "right.weight");
    assert!(report.missing.is_empty() && report.unused.is_empty());

    let values = |n: &Network| -> BTreeMap<String, Vec<f32>> {
        n.state()
            .into_iter()
            .map(|(name, t)| (name, gpu.download(t).unwrap()))
            .collect()
    };
    let (p, c) = (values(&parent), values(&child));
    for name in c.keys() {
        assert_eq!(c[name] == p[name], want.contains(name), "{name}");
    }

    // A grown child: the new layer is missing from the parent.
    let grown = network(
        &NET.replace(
            "[[layers]]\nop = \"relu\"",
            "[[layers]]\nname = \"extra\"\nop = \"conv2d\"\nchannels = 4\nkernel = 1\n[[layers]]\nop = \"relu\"",
        ),
        3,
    );
    let report = grown.inherit_from(gpu, &parent).unwrap();
    assert_eq!(report.missing, vec!["extra.weight", "extra.bias"]);
    assert_eq!(report.copied.len(), 12);
}

#[test]
fn backward_without_forward_is_an_error() {
    let gpu = Gpu::shared();
    let mut net = network(NET, 1);
    let d = gpu.zeros(&[BATCH, CLASSES]).unwrap();
    let mut rec = gpu.recorder();
    let e = net.backward(&mut rec, &d).unwrap_err();
    assert!(e.to_string().contains("forward first"), "{e}");
}

#[test]
fn a_model_file_passes_on_what_matches() {
    let gpu = Gpu::shared();
    let dir = tempfile::tempdir().unwrap();
    let parent = network(NET, 1);
    let path = dir.path().join("model.safetensors");
    save_model(gpu, &path, &parent, &info(), &[]).unwrap();
    let child = network(&NET.replacen("kernel = [1, 3]", "kernel = [3, 1]", 1), 2);
    let report = inherit_from_file(gpu, &child, &path).unwrap();
    assert_eq!(report.copied.len(), 11);
    assert_eq!(report.reshaped[0].name, "right.weight");
    let stem = |n: &Network| gpu.download(n.state()[0].1).unwrap();
    assert_eq!(stem(&child), stem(&parent));
    let e = inherit_from_file(gpu, &child, &dir.path().join("none.safetensors")).unwrap_err();
    assert!(format!("{e:#}").contains("none.safetensors"), "{e:#}");
}

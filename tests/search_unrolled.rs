//! Second-order DARTS: the architecture gradient of an unrolled step part
//! against central finite differences of the objective it approximates,
//! `F(a) = L_val(w - eta * (mu * b + grad_w L_train(w, a) + wd * w), a)`,
//! on a tiny supernet, with the weights and batch norm's statistics left
//! exactly as they were.

use audionas::data::batch::Batch;
use audionas::gpu::Gpu;
use audionas::model::{Architecture, Network};
use audionas::nn::optim::OptimizerKind;
use audionas::nn::{Pass, ARCH, WEIGHTS};
use audionas::train::session::{GroupConfig, Session, SessionConfig, StepPart};
use audionas::train::LrSchedule;
use audionas::util::rng::Rng;
use std::path::Path;

const INPUT: [usize; 3] = [1, 9, 7];
const CLASSES: usize = 3;
const BATCH: usize = 4;
/// The weights' learning rate: large, so that the second-order term shows.
const ETA: f32 = 0.3;
const MOMENTUM: f32 = 0.9;
const DECAY: f32 = 0.01;

fn batch(rng: &mut Rng) -> Batch {
    Batch {
        features: rng.vec_uniform(BATCH * INPUT.iter().product::<usize>(), -1.0, 1.0),
        labels: (0..BATCH).map(|_| rng.below(CLASSES) as u32).collect(),
        shape: vec![BATCH, INPUT[0], INPUT[1], INPUT[2]],
    }
}

/// Two mixed edges in a row, each over three candidates, one of them the
/// edge's input itself. Every operation is smooth: with ReLU or max pooling
/// (the DARTS operations), `grad_w L_train` jumps where a unit changes
/// sides as `a` moves, and so does `F`, whose derivative finite
/// differences then cannot measure.
const SUPERNET: &str = r#"
name = "smooth_supernet"
[[layers]]
name = "stem"
op = "conv2d"
channels = 4
kernel = 3
padding = "same"
[[layers]]
name = "stem_bn"
op = "batch_norm"
[[layers]]
name = "alphas"
op = "arch_weights"
rows = 2
candidates = 3
init_scale = 0.5
[[layers]]
name = "e0_conv"
op = "conv2d"
channels = 4
kernel = 3
padding = "same"
inputs = ["stem_bn"]
[[layers]]
name = "e0_bn"
op = "batch_norm"
[[layers]]
name = "e0_tanh"
op = "tanh"
[[layers]]
name = "e0_pool"
op = "avg_pool2d"
kernel = 3
stride = 1
padding = 1
inputs = ["stem_bn"]
[[layers]]
name = "edge0"
op = "mixed"
row = 0
columns = [0, 1, 2]
inputs = ["alphas", "e0_tanh", "e0_pool", "stem_bn"]
[[layers]]
name = "e1_wide"
op = "conv2d"
channels = 4
kernel = [1, 3]
padding = "same"
inputs = ["edge0"]
[[layers]]
name = "e1_sigmoid"
op = "sigmoid"
[[layers]]
name = "e1_tall"
op = "conv2d"
channels = 4
kernel = [3, 1]
padding = "same"
inputs = ["edge0"]
[[layers]]
name = "e1_bn"
op = "batch_norm"
[[layers]]
name = "e1_tanh"
op = "tanh"
[[layers]]
name = "edge1"
op = "mixed"
row = 1
columns = [0, 1, 2]
inputs = ["alphas", "e1_sigmoid", "e1_tanh", "edge0"]
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "head"
op = "dense"
"#;

fn session(nesterov: bool) -> Session<'static> {
    let gpu = Gpu::shared();
    let arch = Architecture::parse(SUPERNET, Path::new("supernet.toml")).unwrap();
    let net = Network::build(gpu, &arch, &INPUT, CLASSES, 4).unwrap();
    let weights = GroupConfig {
        name: WEIGHTS,
        optimizer: OptimizerKind::Sgd {
            momentum: MOMENTUM,
            nesterov,
        },
        lr: ETA as f64,
        schedule: LrSchedule::default(),
        weight_decay: DECAY as f64,
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
        weight_decay: 0.0,
        clip_norm: None,
        ..weights.clone()
    };
    let config = SessionConfig {
        batch_size: BATCH,
        label_smoothing: 0.0,
        seed: 5,
        steps_per_epoch: 10,
        epochs: 1,
        log_every: 1,
    };
    Session::new(gpu, net, &[weights, arch], config).unwrap()
}

/// Every tensor of a group (or every buffer) by name, downloaded.
fn values(net: &Network, group: &str) -> Vec<(String, Vec<f32>)> {
    let gpu = Gpu::shared();
    net.named_params()
        .into_iter()
        .filter(|(_, p)| p.group == group)
        .map(|(name, p)| (name, gpu.download(&p.value).unwrap()))
        .collect()
}

fn grads(net: &Network, group: &str) -> Vec<f32> {
    let gpu = Gpu::shared();
    net.named_params()
        .into_iter()
        .filter(|(_, p)| p.group == group)
        .flat_map(|(_, p)| gpu.download(&p.grad).unwrap())
        .collect()
}

fn write(net: &Network, group: &str, values: &[(String, Vec<f32>)]) {
    let gpu = Gpu::shared();
    let params = net.named_params();
    for (name, v) in values {
        let (_, p) = params.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(p.group, group);
        gpu.write(&p.value, v).unwrap();
    }
}

/// Batch norm's running statistics and every other non-parameter tensor.
fn buffers(net: &Network) -> Vec<(String, Vec<f32>)> {
    let gpu = Gpu::shared();
    let params: Vec<String> = net.named_params().into_iter().map(|(n, _)| n).collect();
    net.state()
        .into_iter()
        .filter(|(name, _)| !params.contains(name))
        .map(|(name, t)| (name, gpu.download(t).unwrap()))
        .collect()
}

/// The mean cross-entropy of the batch and, when `backward`, its backward
/// pass (every gradient written), all on batch statistics.
fn loss(net: &mut Network, b: &Batch, backward: bool) -> f64 {
    let gpu = Gpu::shared();
    let x = gpu.upload(&b.shape, &b.features).unwrap();
    let mut rec = gpu.recorder();
    let logits = net
        .forward(&mut rec, &x, Pass::train(1).frozen_stats())
        .unwrap();
    rec.submit_and_wait().unwrap();
    let z = gpu.download(&logits).unwrap();
    let mut total = 0.0;
    let mut dz = vec![0.0f32; z.len()];
    for (i, row) in z.chunks_exact(CLASSES).enumerate() {
        let top = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - top).exp()).sum();
        let label = b.labels[i] as usize;
        total += top + sum.ln() - row[label] as f64;
        for (j, &v) in row.iter().enumerate() {
            let p = (v as f64 - top).exp() / sum;
            let target = if j == label { 1.0 } else { 0.0 };
            dz[i * CLASSES + j] = ((p - target) / BATCH as f64) as f32;
        }
    }
    if backward {
        let dlogits = gpu.upload(&[BATCH, CLASSES], &dz).unwrap();
        let mut rec = gpu.recorder();
        net.backward(&mut rec, &dlogits).unwrap();
        rec.submit_and_wait().unwrap();
    }
    total / BATCH as f64
}

/// Where the weights and the architecture stood before the unrolled step.
struct Point {
    nesterov: bool,
    weights: Vec<(String, Vec<f32>)>,
    decays: Vec<bool>,
    momentum: Vec<Vec<f32>>,
    arch: Vec<(String, Vec<f32>)>,
}

/// `F(arch)`: one virtual SGD step of the weights from the point on `train`
/// (computed here on the CPU: the update the weights' next step would make,
/// unclipped), then the loss on `val`.
fn unrolled_loss(
    net: &mut Network,
    at: &Point,
    arch: &[(String, Vec<f32>)],
    train: &Batch,
    val: &Batch,
) -> f64 {
    let gpu = Gpu::shared();
    write(net, ARCH, arch);
    write(net, WEIGHTS, &at.weights);
    loss(net, train, true);
    let params = net.named_params();
    let mut moved = Vec::new();
    for (((name, w), &decays), b) in at.weights.iter().zip(&at.decays).zip(&at.momentum) {
        let (_, p) = params.iter().find(|(n, _)| n == name).unwrap();
        let g = gpu.download(&p.grad).unwrap();
        let wd = if decays { DECAY } else { 0.0 };
        let w2: Vec<f32> = w
            .iter()
            .zip(&g)
            .zip(b)
            .map(|((&w, &g), &b)| {
                let g = g + wd * w;
                let next = MOMENTUM * b + g;
                w - ETA
                    * if at.nesterov {
                        g + MOMENTUM * next
                    } else {
                        next
                    }
            })
            .collect();
        moved.push((name.clone(), w2));
    }
    write(net, WEIGHTS, &moved);
    loss(net, val, false)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let diff: Vec<f64> = got.iter().zip(want).map(|(&g, &w)| g as f64 - w).collect();
    norm(&diff) / norm(want)
}

#[test]
fn unrolled_architecture_gradient_matches_finite_differences_of_the_unrolled_loss() {
    check_unrolled_gradient(false);
}

#[test]
fn unrolled_gradient_with_nesterov_momentum_matches_finite_differences() {
    check_unrolled_gradient(true);
}

fn check_unrolled_gradient(nesterov: bool) {
    let gpu = Gpu::shared();
    let mut s = session(nesterov);
    let mut rng = Rng::new(21);
    // A real bi-level step first, so the momentum buffer is not zero.
    let (val0, train0) = (batch(&mut rng), batch(&mut rng));
    s.step(&[
        StepPart::new(&val0, &[ARCH]).frozen_stats(),
        StepPart::new(&train0, &[WEIGHTS]),
    ])
    .unwrap();
    gpu.wait().unwrap();
    s.take_totals().unwrap();

    let (val, train) = (batch(&mut rng), batch(&mut rng));
    let optimizer = s.optimizer(WEIGHTS).unwrap();
    let at = Point {
        nesterov,
        weights: values(&s.network, WEIGHTS),
        decays: s
            .network
            .named_params()
            .into_iter()
            .filter(|(_, p)| p.group == WEIGHTS)
            .map(|(_, p)| p.decay)
            .collect(),
        momentum: values(&s.network, WEIGHTS)
            .iter()
            .map(|(name, _)| {
                gpu.download(optimizer.momentum_buffer(name).unwrap())
                    .unwrap()
            })
            .collect(),
        arch: values(&s.network, ARCH),
    };
    assert!(at.momentum.iter().flatten().any(|&b| b != 0.0));
    assert!(at.decays.iter().any(|&d| d) && at.decays.iter().any(|&d| !d));
    let stats = buffers(&s.network);

    s.step(&[StepPart::new(&val, &[ARCH])
        .frozen_stats()
        .unrolled(&train, WEIGHTS)])
        .unwrap();
    gpu.wait().unwrap();
    let unrolled = grads(&s.network, ARCH);
    let [logged, _] = s.take_totals().unwrap();
    // The weights are copied back bit for bit, the statistics never move,
    // and the architecture took its Adam step.
    let after = values(&s.network, WEIGHTS);
    for ((name, want), (_, got)) in at.weights.iter().zip(&after) {
        let same = want
            .iter()
            .zip(got)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} is not restored");
    }
    assert_eq!(buffers(&s.network), stats);
    assert_ne!(values(&s.network, ARCH), at.arch);

    let net = &mut s.network;
    // The part logs the loss at the virtual weights.
    let at_virtual = unrolled_loss(net, &at, &at.arch, &train, &val);
    assert!(
        (logged.mean_loss() - at_virtual).abs() <= 1e-4 * at_virtual,
        "logged {} vs L_val(w') {at_virtual}",
        logged.mean_loss()
    );
    // Without the second-order term: the gradient at w' alone, and the
    // first-order gradient (at w itself).
    loss(net, &val, true);
    let without_hessian = grads(net, ARCH);
    write(net, WEIGHTS, &at.weights);
    loss(net, &val, true);
    let first_order = grads(net, ARCH);

    let h = 1e-2f32;
    let mut exact = Vec::new();
    for t in 0..at.arch.len() {
        for i in 0..at.arch[t].1.len() {
            let mut at_h = |sign: f32| {
                let mut arch = at.arch.clone();
                arch[t].1[i] += sign * h;
                unrolled_loss(net, &at, &arch, &train, &val)
            };
            exact.push((at_h(1.0) - at_h(-1.0)) / (2.0 * h as f64));
        }
    }
    let unrolled_error = relative_error(&unrolled, &exact);
    let without_hessian_error = relative_error(&without_hessian, &exact);
    let first_order_error = relative_error(&first_order, &exact);
    eprintln!(
        "relative error against finite differences of F (nesterov {nesterov}): unrolled {unrolled_error:.1e}, without the Hessian term {without_hessian_error:.1e}, first order {first_order_error:.1e}"
    );
    assert!(unrolled_error < 2e-3, "unrolled {unrolled_error}");
    for (what, error) in [
        ("without the Hessian term", without_hessian_error),
        ("first order", first_order_error),
    ] {
        assert!(
            error > 0.02 && error > 10.0 * unrolled_error,
            "{what} {error} vs unrolled {unrolled_error}: the test cannot tell them apart"
        );
    }
}

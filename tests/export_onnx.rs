//! ONNX export: every model kind written by `audionas export` runs in
//! onnxruntime and gives the logits audionas gives on the same features.
//! The reference models, found architectures (DARTS cells, a Model Search
//! tower), an ensemble, and descriptions that use every exportable real and
//! complex op, each with every weight and running statistic perturbed so
//! that no tensor keeps its initial value.
//!
//! The onnx package checks each file against the standard, and
//! onnxruntime runs it, in Python (`scripts/onnx_run.py`): the interpreter is
//! `$AUDIONAS_ONNX_PYTHON` (`scripts/test.sh` makes a venv with it) or
//! `python3`. Without it the runtime checks are skipped, except in CI,
//! where they fail.

use audionas::data::features::FeatureConfig;
use audionas::export::{export_onnx, ExportError};
use audionas::gpu::Gpu;
use audionas::model::{Architecture, Network};
use audionas::nn::Pass;
use audionas::search::ensemble::ensemble_architecture;
use audionas::train::checkpoint::NamedTensor;
use audionas::train::config::Experiment;
use audionas::train::model_file::{save_model, ModelInfo};
use audionas::util::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

const BATCH: usize = 3;

/// The Python that has onnxruntime, or None (outside CI) to skip.
fn onnx_python() -> Option<String> {
    let python = std::env::var("AUDIONAS_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import onnxruntime, onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (found, std::env::var_os("CI").is_some()) {
        (true, _) => Some(python),
        (false, true) => panic!(
            "{python} cannot import onnxruntime, onnx and numpy; scripts/test.sh makes a venv with them (set AUDIONAS_ONNX_PYTHON)"
        ),
        (false, false) => {
            eprintln!("skipped: {python} cannot import onnxruntime (set AUDIONAS_ONNX_PYTHON)");
            None
        }
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn experiment(path: &str) -> Experiment {
    Experiment::load(&repo(path)).unwrap()
}

fn features(path: &str) -> FeatureConfig {
    FeatureConfig::load(&repo(path)).unwrap()
}

fn class_names(classes: usize) -> Vec<String> {
    (0..classes).map(|i| format!("class_{i}")).collect()
}

/// A network of `arch` whose every tensor is moved off its initial value
/// (running variances and covariances kept positive definite).
fn perturbed_network(gpu: &Gpu, arch: &Architecture, shape: &[usize], classes: usize) -> Network {
    let network = Network::build(gpu, arch, shape, classes, 5).unwrap();
    let mut rng = Rng::new(11);
    for (name, tensor) in network.state() {
        let mut values = gpu.download(tensor).unwrap();
        if name.ends_with(".running_var") {
            values = rng.vec_uniform(values.len(), 0.5, 1.5);
        } else if name.ends_with(".running_cov") {
            for v in values.chunks_exact_mut(3) {
                v[0] = rng.uniform(0.5, 1.5);
                v[1] = rng.uniform(-0.2, 0.2);
                v[2] = rng.uniform(0.5, 1.5);
            }
        } else {
            for v in &mut values {
                *v = *v * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05);
            }
        }
        gpu.write(tensor, &values).unwrap();
    }
    network
}

/// Logits of `network` on `x` at inference.
fn logits(gpu: &Gpu, network: &mut Network, shape: &[usize], x: &[f32]) -> Vec<f32> {
    let input = gpu.upload(&[&[BATCH][..], shape].concat(), x).unwrap();
    let mut rec = gpu.recorder();
    let y = network.forward(&mut rec, &input, Pass::eval()).unwrap();
    rec.submit_and_wait().unwrap();
    gpu.download(&y).unwrap()
}

fn state(gpu: &Gpu, network: &Network) -> Vec<NamedTensor> {
    network
        .state()
        .into_iter()
        .map(|(name, t)| NamedTensor {
            name,
            shape: t.shape().to_vec(),
            data: gpu.download(t).unwrap(),
        })
        .collect()
}

/// Runs `model` in onnxruntime on `x`; its logits and metadata.
fn run_onnx(python: &str, model: &Path, x: &[f32]) -> (Vec<f32>, serde_json::Value) {
    let dir = model.parent().unwrap();
    let (input, output) = (dir.join("features.f32"), dir.join("logits.f32"));
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let run = Command::new(python)
        .arg(repo("scripts/onnx_run.py"))
        .arg("--check")
        .args([model, &input, &output])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "onnxruntime failed on {}:\n{}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let logits = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (logits, serde_json::from_slice(&run.stdout).unwrap())
}

/// Exports a perturbed network of `arch` and checks onnxruntime's logits
/// against audionas's on random features.
fn check(arch: &Architecture, features: &FeatureConfig, classes: usize) {
    let Some(python) = onnx_python() else { return };
    let gpu = Gpu::shared();
    let shape = features.clip_shape();
    let mut network = perturbed_network(gpu, arch, &shape, classes);
    let mut rng = Rng::new(3);
    let x = rng.vec_uniform(BATCH * shape.iter().product::<usize>(), -1.0, 1.0);
    let ours = logits(gpu, &mut network, &shape, &x);
    let info = ModelInfo {
        architecture: arch.clone(),
        features: features.clone(),
        classes: class_names(classes),
    };
    let exported = export_onnx(&state(gpu, &network), &info).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, &exported.bytes).unwrap();
    let (theirs, meta) = run_onnx(&python, &model, &x);
    assert_eq!(theirs.len(), ours.len(), "{}: logits", arch.name);
    let largest = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        largest > 1e-2,
        "{}: logits too small to compare: {ours:?}",
        arch.name
    );
    // Within 1e-4 of the logits' scale (absolute below a scale of 1).
    let scale = largest.max(1.0);
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{}: {} nodes, largest |logit| {largest:.3}, largest difference {worst:.2e}",
        arch.name, exported.nodes
    );
    assert!(
        worst <= 1e-4 * scale,
        "{}: onnxruntime's logits differ from audionas's by {worst} (largest logit {scale})\nours   {ours:?}\ntheirs {theirs:?}",
        arch.name
    );
    let names: Vec<String> = serde_json::from_str(meta["classes"].as_str().unwrap()).unwrap();
    assert_eq!(names, class_names(classes));
    let feature_shape: Vec<usize> =
        serde_json::from_str(meta["feature_shape"].as_str().unwrap()).unwrap();
    assert_eq!(feature_shape, shape);
}

fn check_experiment(path: &str) {
    let e = experiment(path);
    check(&e.model, &e.features, 12);
}

#[test]
fn ds_cnn_s_exports() {
    check_experiment("configs/ds_cnn_s.toml");
}

#[test]
fn cnn_trad_fpool3_exports() {
    check_experiment("configs/cnn_trad_fpool3.toml");
}

#[test]
fn lstm_kws_exports() {
    check_experiment("configs/lstm_kws.toml");
}

#[test]
fn quickstart_exports() {
    check_experiment("configs/quickstart.toml");
}

fn check_found(file: &str) {
    let arch = Architecture::load(&repo(&format!("configs/found/{file}"))).unwrap();
    check(&arch, &features("configs/features/mfcc10_49.toml"), 12);
}

#[test]
fn a_derived_darts_cell_network_exports() {
    check_found("darts_kws_sc.json");
}

#[test]
fn a_derived_force_darts_network_exports() {
    check_found("force_darts_kws_sc.json");
}

#[test]
fn a_model_search_tower_exports() {
    check_found("model_search_kws_sc.json");
}

#[test]
fn an_ensemble_exports_as_one_graph() {
    let e = experiment("configs/quickstart.toml");
    let ensemble = ensemble_architecture(&e.model, &[0.3, 0.7]);
    check(&ensemble, &e.features, 12);
}

fn parse(toml: &str) -> Architecture {
    Architecture::parse(toml, Path::new("test.toml")).unwrap()
}

/// Every real op but the supernet's, with awkward settings: grouped,
/// dilated and strided convolutions, "same" and uneven explicit padding,
/// padded pooling without counting the padding, a crop, products, sums,
/// concatenation, sequences for two LSTMs, and a weighted sum of heads.
const EVERY_REAL_OP: &str = r#"
name = "every_real_op"
[[layers]]
name = "c1"
op = "conv2d"
channels = 6
kernel = [3, 3]
stride = [2, 1]
padding = "same"
[[layers]]
name = "bn1"
op = "batch_norm"
[[layers]]
op = "relu"
[[layers]]
name = "c2"
op = "conv2d"
channels = 6
kernel = [3, 3]
dilation = [2, 2]
padding = "same"
groups = 3
bias = false
[[layers]]
op = "batch_norm"
affine = false
[[layers]]
op = "tanh"
[[layers]]
name = "dw"
op = "depthwise_conv2d"
kernel = [5, 3]
stride = [2, 2]
[[layers]]
op = "sigmoid"
[[layers]]
name = "sep"
op = "separable_conv2d"
channels = 8
kernel = [3, 3]
padding = [[1, 0], [2, 1]]
[[layers]]
name = "mp"
op = "max_pool2d"
kernel = [2, 2]
stride = [1, 1]
padding = [1, 1]
[[layers]]
name = "crop"
op = "crop"
start = [1, 1]
[[layers]]
name = "ap"
op = "avg_pool2d"
inputs = ["sep"]
kernel = [3, 3]
stride = [1, 1]
padding = [1, 1]
count_include_pad = false
[[layers]]
name = "product"
op = "multiply"
inputs = ["crop", "ap"]
[[layers]]
name = "sum"
op = "add"
inputs = ["product", "ap", "sep"]
[[layers]]
name = "cat"
op = "concat"
inputs = ["sum", "sep"]
[[layers]]
op = "dropout"
rate = 0.3
[[layers]]
name = "seq"
op = "to_sequence"
[[layers]]
name = "lstm1"
op = "lstm"
hidden = 5
returns = "sequence"
[[layers]]
name = "lstm2"
op = "lstm"
hidden = 4
[[layers]]
name = "d1"
op = "dense"
units = 7
bias = false
[[layers]]
name = "flat"
op = "flatten"
inputs = ["cat"]
[[layers]]
name = "d2"
op = "dense"
units = 7
[[layers]]
name = "gap"
op = "global_avg_pool"
inputs = ["cat"]
[[layers]]
name = "d3"
op = "dense"
units = 7
[[layers]]
name = "steps"
op = "global_avg_pool"
inputs = ["lstm1"]
[[layers]]
name = "d4"
op = "dense"
units = 7
[[layers]]
name = "heads"
op = "weighted_sum"
inputs = ["d1", "d2", "d3", "d4"]
weights = [0.25, 1.5, -0.5, 1.0]
[[layers]]
op = "dense"
"#;

#[test]
fn every_real_op_exports() {
    check(
        &parse(EVERY_REAL_OP),
        &features("configs/features/mfcc10_49.toml"),
        5,
    );
}

/// Every complex op, on a small complex STFT.
const EVERY_COMPLEX_OP: &str = r#"
name = "every_complex_op"
[[layers]]
name = "cc1"
op = "complex_conv2d"
channels = 4
kernel = [3, 3]
stride = [2, 1]
padding = "same"
[[layers]]
op = "complex_batch_norm"
[[layers]]
op = "crelu"
[[layers]]
name = "cc2"
op = "complex_conv2d"
channels = 4
kernel = [3, 3]
dilation = [2, 1]
padding = "same"
groups = 2
bias = false
[[layers]]
op = "modrelu"
[[layers]]
name = "cdw"
op = "complex_depthwise_conv2d"
kernel = [3, 3]
padding = "same"
[[layers]]
name = "z"
op = "zrelu"
[[layers]]
name = "mp"
op = "max_pool2d"
kernel = [3, 3]
stride = [2, 2]
padding = [1, 1]
[[layers]]
name = "ap"
op = "avg_pool2d"
inputs = ["z"]
kernel = [3, 3]
stride = [2, 2]
padding = [1, 1]
count_include_pad = false
[[layers]]
name = "product"
op = "multiply"
inputs = ["mp", "ap"]
[[layers]]
name = "mix"
op = "weighted_sum"
inputs = ["product", "mp"]
weights = [0.5, 2.0]
[[layers]]
name = "sum"
op = "add"
inputs = ["mix", "ap"]
[[layers]]
name = "crop"
op = "crop"
start = [1, 0]
[[layers]]
name = "bn2"
op = "complex_batch_norm"
affine = false
[[layers]]
name = "cat"
op = "concat"
inputs = ["bn2", "crop"]
[[layers]]
name = "mag"
op = "magnitude"
[[layers]]
name = "real_conv"
op = "conv2d"
channels = 3
kernel = [1, 1]
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "a"
op = "dense"
units = 6
[[layers]]
name = "planes"
op = "re_im"
inputs = ["cat"]
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "b"
op = "dense"
units = 6
[[layers]]
name = "flat"
op = "flatten"
inputs = ["cat"]
[[layers]]
name = "cd1"
op = "complex_dense"
units = 3
[[layers]]
name = "c"
op = "re_im"
[[layers]]
name = "cgap"
op = "global_avg_pool"
inputs = ["cat"]
[[layers]]
name = "cd2"
op = "complex_dense"
units = 2
bias = false
[[layers]]
name = "d"
op = "magnitude"
[[layers]]
name = "ab"
op = "add"
inputs = ["a", "b", "c"]
[[layers]]
name = "head"
op = "concat"
inputs = ["ab", "d"]
[[layers]]
op = "dense"
"#;

const SMALL_STFT: &str = r#"
kind = "stft"
sample_rate = 16000
clip_ms = 200.0
window_ms = 4.0
hop_ms = 10.0
n_fft = 64
n_mels = 8
window = "hann"
"#;

#[test]
fn every_complex_op_exports_through_its_real_form() {
    let features = FeatureConfig::parse(SMALL_STFT, Path::new("stft.toml")).unwrap();
    check(&parse(EVERY_COMPLEX_OP), &features, 4);
}

/// The command writes the model file's network, and says what it wrote.
#[test]
fn the_export_command_writes_a_model_file_as_onnx() {
    let Some(python) = onnx_python() else { return };
    let gpu = Gpu::shared();
    let e = experiment("configs/quickstart.toml");
    let shape = e.features.clip_shape();
    let mut network = perturbed_network(gpu, &e.model, &shape, 3);
    let info = ModelInfo {
        architecture: e.model.clone(),
        features: e.features.clone(),
        classes: vec!["yes".into(), "no".into(), "_unknown_".into()],
    };
    let dir = tempfile::tempdir().unwrap();
    save_model(
        gpu,
        &dir.path().join("model.safetensors"),
        &network,
        &info,
        &[],
    )
    .unwrap();
    let out = dir.path().join("out/model.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_audionas"))
        .args(["export", "--model"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("yes, no, _unknown_"), "{stdout}");
    let x = Rng::new(4).vec_uniform(BATCH * shape.iter().product::<usize>(), -1.0, 1.0);
    let ours = logits(gpu, &mut network, &shape, &x);
    let (theirs, meta) = run_onnx(&python, &out, &x);
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
            "{ours:?} {theirs:?}"
        );
    }
    let features: FeatureConfig = serde_json::from_str(meta["features"].as_str().unwrap()).unwrap();
    assert_eq!(features.clip_shape(), shape);
}

fn export_error(toml: &str) -> String {
    let arch = parse(toml);
    let features = features("configs/features/mfcc10_49.toml");
    let gpu = Gpu::shared();
    let network = Network::build(gpu, &arch, &features.clip_shape(), 3, 0).unwrap();
    let info = ModelInfo {
        architecture: arch,
        features,
        classes: class_names(3),
    };
    match export_onnx(&state(gpu, &network), &info) {
        Err(e @ ExportError::Unsupported { .. }) => e.to_string(),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("exported"),
    }
}

#[test]
fn a_supernet_is_refused_by_layer_and_op() {
    let message = export_error(
        r#"
name = "supernet"
[[layers]]
name = "stem"
op = "conv2d"
channels = 2
kernel = [3, 3]
padding = "same"
[[layers]]
name = "alpha"
op = "arch_weights"
rows = 1
candidates = 2
[[layers]]
name = "pool"
op = "max_pool2d"
inputs = ["stem"]
kernel = [3, 3]
stride = [1, 1]
padding = [1, 1]
[[layers]]
name = "edge"
op = "mixed"
inputs = ["alpha", "stem", "pool"]
row = 0
columns = [0, 1]
[[layers]]
op = "global_avg_pool"
[[layers]]
op = "dense"
"#,
    );
    assert!(message.contains("layer \"alpha\""), "{message}");
    assert!(message.contains("arch_weights"), "{message}");
    assert!(message.contains("derive"), "{message}");
}

#[test]
fn a_gated_node_is_refused_by_layer() {
    let message = export_error(
        r#"
name = "stochastic"
[[layers]]
name = "conv"
op = "conv2d"
channels = 2
kernel = [3, 3]
gate = true
[[layers]]
op = "flatten"
[[layers]]
op = "dense"
"#,
    );
    assert!(message.contains("layer \"conv\""), "{message}");
    assert!(message.contains("gated"), "{message}");
}

#[test]
fn a_missing_tensor_is_named() {
    let e = experiment("configs/quickstart.toml");
    let info = ModelInfo {
        architecture: e.model.clone(),
        features: e.features.clone(),
        classes: class_names(12),
    };
    let gpu = Gpu::shared();
    let network = Network::build(gpu, &e.model, &e.features.clip_shape(), 12, 0).unwrap();
    let mut tensors = state(gpu, &network);
    let dropped = tensors.remove(0).name;
    let message = export_onnx(&tensors, &info).err().unwrap().to_string();
    assert!(message.contains(&dropped), "{message}");
}

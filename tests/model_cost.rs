//! The cost model from descriptions alone: the reference models against the
//! counts of the PyTorch reference script, small hand-computed cases of
//! every op kind, masked networks, the parameters `Network::build` creates,
//! and the `audionas cost` command.

use audionas::gpu::Gpu;
use audionas::model::{
    measure_layer_latency, Architecture, Cost, LayerCost, Mask, ModelError, Network, OtherOps,
};
use audionas::train::cli::load_architecture;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn arch(toml: &str) -> Architecture {
    Architecture::parse(toml, Path::new("test.toml")).unwrap()
}

fn cost(toml: &str, input: &[usize], classes: usize) -> Cost {
    Cost::of(&arch(toml), input, classes, 1000.0, None).unwrap()
}

fn layer<'a>(cost: &'a Cost, name: &str) -> &'a LayerCost {
    cost.layers.iter().find(|l| l.name == name).unwrap()
}

fn project(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn config_cost(name: &str) -> Cost {
    let (arch, input, clip_ms) = load_architecture(&project(&format!("configs/{name}.toml")))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    Cost::of(&arch, &input, 12, clip_ms, None).unwrap()
}

#[test]
fn reference_models_count_as_the_reference_script() {
    let ds_cnn = config_cost("ds_cnn_s");
    assert_eq!(ds_cnn.params, 23_180);
    // ds_cnn_s_macs_by_hand, o = 25 * 5: o*64*(1*10*4) + 4*(o*64*9 + o*64*64) + 64*12
    assert_eq!(ds_cnn.macs, 2_656_768);
    // 1 s clips: as many MACs per second as per clip.
    assert_eq!(ds_cnn.macs_per_second, 2_656_768.0);

    let cnn_trad = config_cost("cnn_trad_fpool3");
    assert_eq!(cnn_trad.params, 1_326_892);
    // cnn_trad_fpool3_macs_by_hand: (79*33)*64*(1*20*8) + (70*8)*64*(64*10*4)
    //   + 64*70*8*32 + 32*128 + 128*12
    assert_eq!(cnn_trad.macs, 119_598_592);

    let lstm = config_cost("lstm_kws");
    assert_eq!(lstm.params, 88_588);
    // T*4H*(I+H) + H*classes with T = 98, I = 40, H = 128, 12 classes
    assert_eq!(lstm.macs, 8_431_104);
}

#[test]
fn a_strided_dilated_grouped_same_padded_conv() {
    let c = cost(
        r#"
        name = "conv"
        [[layers]]
        name = "conv"
        op = "conv2d"
        channels = 6
        kernel = [3, 2]
        stride = [2, 3]
        dilation = [2, 1]
        groups = 2
        padding = "same"
        [[layers]]
        name = "gap"
        op = "global_avg_pool"
        [[layers]]
        name = "head"
        op = "dense"
        "#,
        &[4, 9, 7],
        3,
    );
    let conv = layer(&c, "conv");
    // "same": ceil(9 / 2) x ceil(7 / 3) positions.
    assert_eq!(conv.output, [6, 5, 3]);
    // weight 6 x (4 / 2) x 3 x 2, bias 6
    assert_eq!(conv.params, 78);
    // 6*5*3 outputs x (4 / 2) x 3*2 taps
    assert_eq!(conv.macs, 1080);
    let bias_only = OtherOps {
        addition: 90,
        ..OtherOps::default()
    };
    assert_eq!(conv.other, bias_only);
    assert_eq!(layer(&c, "gap").other.pooling, 90);
    let head = layer(&c, "head");
    assert_eq!((head.params, head.macs, head.other.addition), (21, 18, 3));
    assert_eq!(c.params, 78 + 21);
    assert_eq!(c.macs, 1080 + 18);
    assert_eq!(
        c.other,
        OtherOps {
            pooling: 90,
            addition: 93,
            ..OtherOps::default()
        }
    );
}

#[test]
fn a_separable_conv_is_a_depthwise_and_a_pointwise_one() {
    let c = cost(
        r#"
        name = "separable"
        [[layers]]
        name = "sep"
        op = "separable_conv2d"
        channels = 5
        kernel = 3
        padding = "same"
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "dense"
        "#,
        &[3, 6, 6],
        2,
    );
    let sep = layer(&c, "sep");
    assert_eq!(sep.output, [5, 6, 6]);
    // depthwise 3 x 1 x 3 x 3 without bias; pointwise 5 x 3 and a bias of 5
    assert_eq!(sep.params, 27 + 15 + 5);
    // depthwise 3*6*6 outputs x 9 taps; pointwise 5*6*6 outputs x 3 channels
    assert_eq!(sep.macs, 972 + 540);
    assert_eq!(sep.other.addition, 180);
}

#[test]
fn pooling_flatten_dense_and_activations() {
    let c = cost(
        r#"
        name = "pools"
        [[layers]]
        name = "max"
        op = "max_pool2d"
        kernel = [2, 3]
        [[layers]]
        name = "avg"
        op = "avg_pool2d"
        kernel = 3
        stride = 1
        padding = 1
        [[layers]]
        name = "flat"
        op = "flatten"
        [[layers]]
        name = "hidden"
        op = "dense"
        units = 5
        bias = false
        [[layers]]
        name = "act"
        op = "tanh"
        [[layers]]
        name = "drop"
        op = "dropout"
        rate = 0.5
        [[layers]]
        name = "head"
        op = "dense"
        "#,
        &[2, 8, 6],
        3,
    );
    let max = layer(&c, "max");
    assert_eq!(max.output, [2, 4, 2]);
    assert_eq!(max.other.pooling, 16 * 6);
    let avg = layer(&c, "avg");
    assert_eq!(avg.output, [2, 4, 2]);
    assert_eq!(avg.other.pooling, 16 * 9);
    assert_eq!(layer(&c, "flat").output, [16]);
    let hidden = layer(&c, "hidden");
    assert_eq!((hidden.params, hidden.macs), (80, 80));
    assert_eq!(hidden.other, OtherOps::default());
    assert_eq!(layer(&c, "act").other.activation, 5);
    // Inference passes dropout's input through.
    assert_eq!(layer(&c, "drop").other, OtherOps::default());
    assert_eq!(c.params, 80 + 18);
    assert_eq!(c.macs, 80 + 15);
    assert_eq!(
        c.other,
        OtherOps {
            pooling: 96 + 144,
            activation: 5,
            addition: 3,
            ..OtherOps::default()
        }
    );
}

#[test]
fn batch_norm_with_and_without_affine() {
    let c = cost(
        r#"
        name = "norms"
        [[layers]]
        name = "affine"
        op = "batch_norm"
        [[layers]]
        name = "plain"
        op = "batch_norm"
        affine = false
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "dense"
        "#,
        &[3, 4, 5],
        2,
    );
    let affine = layer(&c, "affine");
    assert_eq!((affine.params, affine.other.batch_norm), (6, 60));
    let plain = layer(&c, "plain");
    assert_eq!((plain.params, plain.other.batch_norm), (0, 60));
}

#[test]
fn add_and_concat() {
    let c = cost(
        r#"
        name = "merge"
        [[layers]]
        name = "a"
        op = "conv2d"
        channels = 2
        kernel = 1
        [[layers]]
        name = "b"
        op = "relu"
        inputs = ["input"]
        [[layers]]
        name = "sum"
        op = "add"
        inputs = ["a", "b", "input"]
        [[layers]]
        name = "cat"
        op = "concat"
        inputs = ["sum", "a"]
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "dense"
        "#,
        &[2, 3, 3],
        2,
    );
    let a = layer(&c, "a");
    assert_eq!((a.params, a.macs, a.other.addition), (6, 36, 18));
    // Two additions per element for three inputs.
    assert_eq!(layer(&c, "sum").other.addition, 36);
    let cat = layer(&c, "cat");
    assert_eq!(cat.output, [4, 3, 3]);
    assert_eq!(cat.other, OtherOps::default());
}

#[test]
fn an_lstm_counts_both_biases_and_its_gating() {
    let c = cost(
        r#"
        name = "lstm"
        [[layers]]
        name = "lstm"
        op = "lstm"
        hidden = 4
        returns = "sequence"
        [[layers]]
        name = "head"
        op = "dense"
        "#,
        &[1, 5, 3],
        2,
    );
    let lstm = layer(&c, "lstm");
    assert_eq!(lstm.output, [5, 4]);
    // 4H x (I + H) weights and two biases of 4H
    assert_eq!(lstm.params, 16 * 7 + 2 * 16);
    // T x 4H x (I + H)
    assert_eq!(lstm.macs, 5 * 16 * 7);
    assert_eq!(
        lstm.other,
        OtherOps {
            activation: 5 * 5 * 4,
            addition: 5 * 5 * 4,
            product: 5 * 3 * 4,
            ..OtherOps::default()
        }
    );
    assert_eq!(layer(&c, "head").macs, 20 * 2);
}

#[test]
fn per_second_scales_with_the_clip_length() {
    let c = Cost::of(
        &arch("name = \"d\"\n[[layers]]\nop = \"dense\""),
        &[1, 2, 3],
        4,
        250.0,
        None,
    )
    .unwrap();
    assert_eq!(c.macs, 24);
    assert_eq!(c.macs_per_second, 96.0);
}

fn refused_layer(toml: &str, input: &[usize]) -> (String, String) {
    match Cost::of(&arch(toml), input, 2, 1000.0, None) {
        Err(ModelError::Build { layer, reason, .. }) => (layer, reason),
        other => panic!("expected a build error, got {other:?}"),
    }
}

#[test]
fn invalid_descriptions_are_refused_naming_the_layer() {
    let head = "[[layers]]\nop = \"global_avg_pool\"\n[[layers]]\nop = \"dense\"\n";
    let big_kernel = format!(
        "name = \"x\"\n[[layers]]\nname = \"big\"\nop = \"conv2d\"\nchannels = 2\nkernel = 5\n{head}"
    );
    let (layer, reason) = refused_layer(&big_kernel, &[1, 3, 3]);
    assert_eq!(layer, "big");
    assert!(reason.contains("empty"), "{reason}");

    let wide_pool = format!(
        "name = \"x\"\n[[layers]]\nname = \"p\"\nop = \"max_pool2d\"\nkernel = [1, 3]\n{head}"
    );
    assert_eq!(refused_layer(&wide_pool, &[1, 4, 2]).0, "p");

    let zero_stride = format!(
        "name = \"x\"\n[[layers]]\nname = \"s\"\nop = \"conv2d\"\nchannels = 2\nkernel = 1\nstride = 0\n{head}"
    );
    assert_eq!(refused_layer(&zero_stride, &[1, 4, 4]).0, "s");

    let missing = format!(
        "name = \"x\"\n[[layers]]\nname = \"r\"\nop = \"relu\"\ninputs = [\"nope\"]\n{head}"
    );
    let (layer, reason) = refused_layer(&missing, &[1, 4, 4]);
    assert_eq!(layer, "r");
    assert!(reason.contains("nope"), "{reason}");

    let bad_concat = "name = \"x\"\n[[layers]]\nname = \"p\"\nop = \"max_pool2d\"\nkernel = 2\n\
        [[layers]]\nname = \"c\"\nop = \"concat\"\ninputs = [\"p\", \"input\"]\n";
    assert_eq!(
        refused_layer(&format!("{bad_concat}{head}"), &[1, 4, 4]).0,
        "c"
    );

    let no_head = "name = \"x\"\n[[layers]]\nname = \"g\"\nop = \"global_avg_pool\"\n";
    let (layer, reason) = refused_layer(no_head, &[3, 4, 4]);
    assert_eq!(layer, "g");
    assert!(reason.contains("classes"), "{reason}");

    let unread = format!(
        "name = \"x\"\n[[layers]]\nname = \"lost\"\nop = \"relu\"\n[[layers]]\nop = \"relu\"\ninputs = [\"input\"]\n{head}"
    );
    assert_eq!(refused_layer(&unread, &[1, 4, 4]).0, "lost");
}

/// input -> a (3x3 conv) -> sum(a, b) -> relu -> pool -> head, and
/// input -> b (1x1 conv) -> sum.
const BRANCHES: &str = r#"
name = "branches"
[[layers]]
name = "a"
op = "conv2d"
channels = 3
kernel = 3
padding = "same"
[[layers]]
name = "b"
op = "conv2d"
channels = 3
kernel = 1
inputs = ["input"]
[[layers]]
name = "sum"
op = "add"
inputs = ["a", "b"]
[[layers]]
name = "act"
op = "relu"
[[layers]]
name = "pool"
op = "global_avg_pool"
[[layers]]
name = "head"
op = "dense"
"#;

/// The same network written without the branch b (and so without the sum).
const WITHOUT_B: &str = r#"
name = "without_b"
[[layers]]
name = "a"
op = "conv2d"
channels = 3
kernel = 3
padding = "same"
[[layers]]
name = "act"
op = "relu"
[[layers]]
name = "pool"
op = "global_avg_pool"
[[layers]]
name = "head"
op = "dense"
"#;

#[test]
fn a_masked_network_costs_its_running_part() {
    let input = [2, 5, 4];
    let branches = arch(BRANCHES);
    let full = Cost::of(&branches, &input, 3, 1000.0, None).unwrap();
    let without_b = cost(WITHOUT_B, &input, 3);
    assert!(full.params > without_b.params && full.macs > without_b.macs);
    let masks = [
        Mask::none().layer_off("b"),
        Mask::none().edge_off("b", "sum"),
    ];
    for mask in masks {
        let activity = branches.activity(&mask).unwrap();
        let masked = Cost::of(&branches, &input, 3, 1000.0, Some(&activity)).unwrap();
        assert_eq!(masked.params, without_b.params, "{mask:?}");
        assert_eq!(masked.macs, without_b.macs, "{mask:?}");
        assert_eq!(masked.other, without_b.other, "{mask:?}");
        let b = layer(&masked, "b");
        assert!(!b.runs);
        assert_eq!((b.params, b.macs, b.other), (0, 0, OtherOps::default()));
        assert_eq!(b.output, [3, 5, 4]);
        for running in &without_b.layers {
            assert_eq!(layer(&masked, &running.name), running, "{mask:?}");
        }
    }
}

#[test]
fn layer_times_come_from_each_running_layers_own_dispatches() {
    let gpu = Gpu::shared();
    let branches = arch(BRANCHES);
    let mut network = Network::build(gpu, &branches, &[2, 5, 4], 3, 0).unwrap();
    network.set_mask(&Mask::none().layer_off("b")).unwrap();
    let Some(ms) = measure_layer_latency(gpu, &mut network, 1, 3).unwrap() else {
        assert!(
            !gpu.has_timestamps(),
            "an adapter with timestamps gave no times"
        );
        return;
    };
    assert_eq!(ms.len(), branches.layers.len());
    let index = |name: &str| {
        branches
            .layers
            .iter()
            .position(|l| l.name.as_deref() == Some(name))
            .unwrap()
    };
    // The masked branch records nothing and costs nothing; every layer that
    // computes something has dispatches of its own, in order, not shared.
    let dispatches = network.layer_dispatches();
    assert!(dispatches[index("b")].is_empty());
    assert_eq!(ms[index("b")], 0.0);
    let mut end = 0;
    for name in ["a", "act", "pool", "head"] {
        let range = &dispatches[index(name)];
        assert!(!range.is_empty() && range.start >= end, "{name}: {range:?}");
        end = range.end;
        assert!(ms[index(name)] > 0.0, "{name}: {} ms", ms[index(name)]);
    }
    assert!(ms.iter().all(|t| t.is_finite() && *t >= 0.0), "{ms:?}");
}

#[test]
fn descriptions_count_the_parameters_the_network_builds() {
    let gpu = Gpu::shared();
    let mut checked = 0;
    for entry in std::fs::read_dir(project("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (arch, input, clip_ms) = load_architecture(&path).unwrap();
        let cost = Cost::of(&arch, &input, 12, clip_ms, None).unwrap();
        let network = Network::build(gpu, &arch, &input, 12, 0).unwrap();
        let name = path.display();
        assert_eq!(cost.params, network.parameter_count(), "{name}");
        let shapes = network.layer_shapes();
        let outputs: Vec<Vec<usize>> = cost.layers.iter().map(|l| l.output.clone()).collect();
        assert_eq!(outputs, shapes, "{name}");
        checked += 1;
    }
    assert!(checked >= 4, "found {checked} configs");
    // The hand cases' layer kinds too.
    for (toml, input) in [(BRANCHES, [2, 5, 4]), (WITHOUT_B, [2, 5, 4])] {
        let arch = arch(toml);
        let network = Network::build(gpu, &arch, &input, 3, 0).unwrap();
        let cost = Cost::of(&arch, &input, 3, 1000.0, None).unwrap();
        assert_eq!(cost.params, network.parameter_count(), "{}", arch.name);
    }
}

/// Runs `audionas ARGS` in the project folder, on lavapipe.
fn audionas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audionas"))
        .args(args)
        .current_dir(project("."))
        .env("WGPU_BACKEND", "vulkan")
        .env("NODEVICE_SELECT", "1")
        .output()
        .unwrap()
}

#[test]
fn the_cost_command_prints_json() {
    let out = audionas(&["cost", "--config", "configs/ds_cnn_s.toml", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["params"], 23180);
    assert_eq!(report["macs"], 2_656_768);
    assert_eq!(report["layers"].as_array().unwrap().len(), 29);
    assert_eq!(report["input"], serde_json::json!([1, 49, 10]));
}

#[test]
fn the_cost_command_refuses_a_missing_file_or_a_bad_description() {
    let out = audionas(&["cost", "--arch", "no/such/arch.json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no/such/arch.json"), "{stderr}");

    let out = audionas(&["cost", "--config", "no/such/config.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no/such/config.toml"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n[[layers]]\nname = \"huge\"\nop = \"conv2d\"\nchannels = 4\nkernel = 500\n[[layers]]\nop = \"dense\"\n",
    )
    .unwrap();
    let out = audionas(&["cost", "--arch", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("huge"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_cost_command_takes_a_bare_description_on_default_features() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.json");
    std::fs::write(
        &path,
        r#"{"name": "tiny", "layers": [{"op": "global_avg_pool"}, {"op": "dense"}]}"#,
    )
    .unwrap();
    let out = audionas(&["cost", "--arch", path.to_str().unwrap(), "--classes", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // One channel pooled, then 1 x 5 weights and 5 biases.
    assert!(stdout.contains("parameters              10"), "{stdout}");

    let out = audionas(&[
        "cost",
        "--arch",
        path.to_str().unwrap(),
        "--json",
        "--measure",
        "--runs",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let batches: Vec<&serde_json::Value> = report["latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["batch"])
        .collect();
    assert_eq!(batches, [1, 64]);
    assert!(report["latency"][1]["per_clip_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn found_architectures_cost_what_their_searches_reported() {
    // configs/found/: (file, parameters, MACs) as the searches printed them,
    // on 49x10 MFCCs and the 12 keyword-spotting classes.
    let found = [
        ("darts_kws_sc.json", 20_060, 1_037_616),
        ("force_darts_kws_sc.json", 13_788, 747_696),
        ("fair_darts_kws_sc_t05.json", 16_692, 957_848),
        ("force_darts_kws_sc_w10.json", 19_272, 1_052_020),
        ("fair_darts_kws_sc_t05_c10.json", 23_162, 1_333_450),
        ("model_search_kws_sc.json", 15_500, 1_244_864),
        ("model_search_kws_sc_ds.json", 23_180, 2_656_768),
        ("model_search_kws_sc_ds_def.json", 23_180, 2_100_800),
    ];
    for (file, params, macs) in found {
        let path = project(&format!("configs/found/{file}"));
        let arch = Architecture::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let cost = Cost::of(&arch, &[1, 49, 10], 12, 1000.0, None).unwrap();
        assert_eq!((cost.params, cost.macs), (params, macs), "{file}");
        // Each is no larger than ds_cnn_s.
        assert!(cost.params <= 23_180, "{file}");
    }
}

//! `audionas bench`: training-step and inference speed of model configs (and
//! search supernets) at a fixed batch on random inputs, timed as the PyTorch
//! reference script times them (median wall time per step after warm-up
//! steps), with peak GPU memory and, on request, a per-kernel GPU time
//! breakdown from timestamp queries.

use crate::data::batch::Batch;
use crate::gpu::{Gpu, KernelTime};
use crate::model::{Architecture, Network};
use crate::nn::optim::OptimizerKind;
use crate::nn::{batched, Pass, ARCH, WEIGHTS};
use crate::search::config::SearchConfig;
use crate::train::cli::load_architecture;
use crate::train::schedule::LrSchedule;
use crate::train::session::{GroupConfig, Session, SessionConfig, StepPart};
use crate::util::rng::Rng;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The reference script's class count and seed.
const CLASSES: usize = 12;
const SEED: u64 = 1234;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model configs to time, by name in --configs (or paths to .toml files);
    /// a name in --configs/search (`darts_supernet`) times a search supernet's
    /// bi-level step.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ds_cnn_s,cnn_trad_fpool3,lstm_kws"
    )]
    pub models: Vec<String>,
    /// Folder of the model configs.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Also time one training step per kernel with timestamp queries.
    #[arg(long)]
    pub kernels: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub adapter: String,
    pub batch: usize,
    pub params: u64,
    pub fwd_flops_per_sample: u64,
    pub train_step_median_ms: f64,
    pub train_step_min_ms: f64,
    pub train_samples_per_s: f64,
    /// CPU time of a step up to its recording done (every dispatch
    /// recorded, nothing submitted), and up to its submit returning (wgpu
    /// has encoded the passes); the rest of the step waits for the GPU.
    pub train_record_median_ms: f64,
    pub train_submit_median_ms: f64,
    pub infer_batch_median_ms: f64,
    pub infer_batch_min_ms: f64,
    pub infer_samples_per_s: f64,
    /// Peak bytes held by tensors during training steps.
    pub train_peak_memory_mb: f64,
    /// Parameters, gradients and optimizer state.
    pub model_state_mb: f64,
    /// Activations a forward pass keeps for the backward.
    pub saved_activations_mb: f64,
    /// Peak over (state + saved activations).
    pub memory_ratio: f64,
    pub train_step_times_ms: Vec<f64>,
    pub infer_batch_times_ms: Vec<f64>,
    /// GPU time per kernel over one training step, largest first (`--kernels`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_ms: Vec<(String, f64, usize)>,
}

fn median_min(times: &[f64]) -> (f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[sorted.len() / 2], sorted[0])
}

const MB: f64 = 1024.0 * 1024.0;

/// What is timed: a network, its parameter groups, and whether a step is
/// bi-level (an architecture part, then a weights part, on two batches).
struct Subject {
    arch: Architecture,
    shape: Vec<usize>,
    groups: Vec<GroupConfig>,
    bilevel: bool,
}

/// A model config (`configs/NAME.toml`), trained as the reference script
/// trains it: SGD, lr 0.01, momentum 0.9, no clipping; or a search config
/// (`configs/search/NAME.toml`), whose supernet takes a first-order DARTS
/// step as the reference script's `darts_supernet`.
fn subject(name: &str, args: &BenchArgs) -> anyhow::Result<Subject> {
    let model = args.configs.join(format!("{name}.toml"));
    let search = args.configs.join("search").join(format!("{name}.toml"));
    let path = if name.ends_with(".toml") {
        PathBuf::from(name)
    } else if !model.exists() && search.exists() {
        search
    } else {
        model
    };
    let sgd = |lr: f64, weight_decay: f64, clip_norm: Option<f64>| GroupConfig {
        name: WEIGHTS,
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        lr,
        schedule: LrSchedule::default(),
        weight_decay,
        clip_norm,
    };
    if path.parent().and_then(|p| p.file_name()) == Some("search".as_ref()) {
        let config = SearchConfig::load(&path)?;
        return Ok(Subject {
            arch: config.experiment().model,
            shape: config.features.clip_shape(),
            groups: vec![sgd(0.025, 3e-4, Some(5.0)), config.arch_group()],
            bilevel: true,
        });
    }
    let (arch, shape, _) = load_architecture(&path)?;
    Ok(Subject {
        arch,
        shape,
        groups: vec![sgd(0.01, 0.0, None)],
        bilevel: false,
    })
}

/// A batch of normal noise with random labels.
fn random_batch(rng: &mut Rng, batch: usize, shape: &[usize]) -> Batch {
    Batch {
        features: (0..batch * shape.iter().product::<usize>())
            .map(|_| rng.normal())
            .collect(),
        labels: (0..batch).map(|_| rng.below(CLASSES) as u32).collect(),
        shape: crate::nn::batched(batch, shape),
    }
}

pub fn bench_model(gpu: &Gpu, name: &str, args: &BenchArgs) -> anyhow::Result<BenchResult> {
    let Subject {
        arch,
        shape,
        groups,
        bilevel,
    } = subject(name, args)?;
    let batch = args.batch;
    let network = Network::build(gpu, &arch, &shape, CLASSES, SEED)?;
    let config = SessionConfig {
        batch_size: batch,
        label_smoothing: 0.0,
        seed: SEED,
        steps_per_epoch: 1,
        epochs: 1,
        log_every: args.warmup + args.steps + 1,
    };
    let mut session = Session::new(gpu, network, &groups, config)?;
    let mut rng = Rng::new(SEED + 1);
    let host_batch = random_batch(&mut rng, batch, &shape);
    let second_batch = random_batch(&mut rng, batch, &shape);
    let bilevel_parts = [
        StepPart::new(&second_batch, &[ARCH]).frozen_stats(),
        StepPart::new(&host_batch, &[WEIGHTS]),
    ];
    let part: &[StepPart] = if bilevel {
        &bilevel_parts
    } else {
        &bilevel_parts[1..]
    };
    let state_bytes: u64 = session
        .network
        .params()
        .iter()
        .map(|p| p.value.bytes() * 3) // value, gradient, momentum
        .sum();

    for _ in 0..args.warmup {
        session.step(part)?;
        gpu.wait()?;
    }
    gpu.reset_peak_memory();
    let mut train_times = Vec::with_capacity(args.steps);
    let mut cpu_times = Vec::with_capacity(args.steps);
    for _ in 0..args.steps {
        let start = Instant::now();
        let rec = session.record(part)?;
        let recorded = start.elapsed().as_secs_f64() * 1e3;
        rec.submit()?;
        let submitted = start.elapsed().as_secs_f64() * 1e3;
        gpu.wait()?;
        train_times.push(start.elapsed().as_secs_f64() * 1e3);
        cpu_times.push((recorded, submitted));
    }
    let peak = gpu.memory().peak_bytes;
    let saved_bytes = session.network.saved_bytes();
    let kernel_ms = if args.kernels && gpu.has_timestamps() {
        kernel_breakdown(&session.step_timed(part)?)
    } else {
        Vec::new()
    };
    let mut network = session.network;
    let x = gpu.upload(&batched(batch, &shape), &host_batch.features)?;

    let mut infer_times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let start = Instant::now();
        let mut rec = gpu.recorder();
        network.forward(&mut rec, &x, Pass::eval())?;
        rec.submit_and_wait()?;
        if i >= args.warmup {
            infer_times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (train_median, train_min) = median_min(&train_times);
    let (record_median, _) = median_min(&cpu_times.iter().map(|t| t.0).collect::<Vec<_>>());
    let (submit_median, _) = median_min(&cpu_times.iter().map(|t| t.1).collect::<Vec<_>>());
    let (infer_median, infer_min) = median_min(&infer_times);
    // The peak counts what was live before the steps too: weights,
    // optimizer state and the input batch.
    let needed = (state_bytes + saved_bytes) as f64;
    Ok(BenchResult {
        model: arch.name.clone(),
        adapter: gpu.describe(),
        batch,
        params: network.parameter_count(),
        fwd_flops_per_sample: 2 * network.macs()?,
        train_step_median_ms: train_median,
        train_step_min_ms: train_min,
        train_samples_per_s: batch as f64 / (train_median / 1e3),
        train_record_median_ms: record_median,
        train_submit_median_ms: submit_median,
        infer_batch_median_ms: infer_median,
        infer_batch_min_ms: infer_min,
        infer_samples_per_s: batch as f64 / (infer_median / 1e3),
        train_peak_memory_mb: peak as f64 / MB,
        model_state_mb: state_bytes as f64 / MB,
        saved_activations_mb: saved_bytes as f64 / MB,
        memory_ratio: peak as f64 / needed,
        train_step_times_ms: train_times
            .iter()
            .map(|t| (t * 1e3).round() / 1e3)
            .collect(),
        infer_batch_times_ms: infer_times
            .iter()
            .map(|t| (t * 1e3).round() / 1e3)
            .collect(),
        kernel_ms,
    })
}

/// GPU milliseconds per kernel entry point with its dispatch count, largest first.
fn kernel_breakdown(times: &[KernelTime]) -> Vec<(String, f64, usize)> {
    let mut by_kernel: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for t in times {
        let e = by_kernel.entry(t.label.as_str()).or_default();
        e.0 += t.nanos / 1e6;
        e.1 += 1;
    }
    let mut list: Vec<(String, f64, usize)> = by_kernel
        .into_iter()
        .map(|(k, (ms, n))| (k.to_string(), (ms * 1e3).round() / 1e3, n))
        .collect();
    list.sort_by(|a, b| b.1.total_cmp(&a.1));
    list
}

pub fn run_bench(gpu: &Gpu, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0,
        "--batch and --steps must be at least 1"
    );
    println!(
        "# audionas bench on {}; batch {}, warmup {}, steps {}",
        gpu.describe(),
        args.batch,
        args.warmup,
        args.steps
    );
    let mut results = Vec::new();
    for name in &args.models {
        let r = bench_model(gpu, name, &args)?;
        println!("{}", serde_json::to_string(&r)?);
        results.push(r);
    }
    println!();
    println!(
        "{:<16} {:>9} {:>8} | {:>12} {:>8} | {:>12} {:>9} | {:>9} {:>6}",
        "model",
        "params",
        "MFLOP",
        "train med ms",
        "samp/s",
        "infer med ms",
        "samp/s",
        "peak MiB",
        "ratio"
    );
    for r in &results {
        println!(
            "{:<16} {:>9} {:>8.2} | {:>12.2} {:>8.1} | {:>12.2} {:>9.1} | {:>9.1} {:>6.2}",
            r.model,
            r.params,
            r.fwd_flops_per_sample as f64 / 1e6,
            r.train_step_median_ms,
            r.train_samples_per_s,
            r.infer_batch_median_ms,
            r.infer_samples_per_s,
            r.train_peak_memory_mb,
            r.memory_ratio
        );
        if !r.kernel_ms.is_empty() {
            let total: f64 = r.kernel_ms.iter().map(|k| k.1).sum();
            println!("  GPU time of one training step by kernel ({total:.1} ms in all):");
            for (kernel, ms, n) in r.kernel_ms.iter().take(12) {
                println!(
                    "    {kernel:<40} {ms:9.2} ms {:5.1}%  ({n} dispatches)",
                    100.0 * ms / total
                );
            }
        }
    }
    Ok(())
}

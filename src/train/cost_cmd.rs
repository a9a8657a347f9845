//! The `cost` command: parameters, multiply-accumulates and other ops of an
//! architecture from its description alone, as a table or one JSON object;
//! with `--measure`, the median inference latency on the adapter too.

use super::cli::load_architecture;
use crate::data::features::FeatureConfig;
use crate::gpu::Gpu;
use crate::model::{measure_latency, measure_layer_latency, Architecture, Cost, Network};
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Experiment config (TOML): its model on its features.
    #[arg(long, required_unless_present = "arch", conflicts_with_all = ["arch", "features"])]
    pub config: Option<PathBuf>,
    /// A bare architecture description (.json or .toml).
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Feature config giving the input of --arch.
    #[arg(long, default_value = "configs/features/logmel40.toml")]
    pub features: PathBuf,
    /// Classes, the outputs of the last layer.
    #[arg(long, default_value_t = 12)]
    pub classes: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also measure the median latency per clip at batch 1 and 64 on the adapter.
    #[arg(long)]
    pub measure: bool,
    /// Timed inferences per batch size for --measure.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

/// Batch sizes `--measure` times.
const MEASURED_BATCHES: [usize; 2] = [1, 64];

#[derive(Serialize)]
struct Report {
    /// The config or description file.
    source: PathBuf,
    architecture: String,
    input: Vec<usize>,
    classes: usize,
    clip_ms: f64,
    #[serde(flatten)]
    cost: Cost,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    latency: Vec<Latency>,
    /// Median GPU time of each layer at batch 1, from timestamp queries
    /// (`--measure`, where the adapter has them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layer_gpu_ms: Vec<LayerTime>,
}

#[derive(Serialize)]
struct LayerTime {
    layer: String,
    ms: f64,
}

#[derive(Serialize)]
struct Latency {
    adapter: String,
    batch: usize,
    /// Median wall time of one batch.
    batch_ms: f64,
    per_clip_ms: f64,
}

/// Runs `audionas cost`; `open_gpu` is called only for `--measure`.
pub fn run_cost(
    args: CostArgs,
    open_gpu: impl FnOnce() -> anyhow::Result<Gpu>,
) -> anyhow::Result<()> {
    if args.classes == 0 {
        anyhow::bail!("--classes must be at least 1");
    }
    if args.measure && args.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    let (source, arch, input, clip_ms) = match (&args.config, &args.arch) {
        (Some(config), _) => {
            let (arch, input, clip_ms) = load_architecture(config)?;
            (config.clone(), arch, input, clip_ms)
        }
        (None, Some(path)) => {
            let arch = Architecture::load(path)?;
            let features = FeatureConfig::load(&args.features)?;
            (path.clone(), arch, features.clip_shape(), features.clip_ms)
        }
        (None, None) => anyhow::bail!("give --config C.toml or --arch A.json"),
    };
    let cost = Cost::of(&arch, &input, args.classes, clip_ms, None)
        .with_context(|| source.display().to_string())?;
    let mut layer_gpu_ms = Vec::new();
    let latency = if args.measure {
        let gpu = open_gpu()?;
        let mut network = Network::build(&gpu, &arch, &input, args.classes, 0)
            .with_context(|| source.display().to_string())?;
        let mut latency = Vec::with_capacity(MEASURED_BATCHES.len());
        for batch in MEASURED_BATCHES {
            let median = measure_latency(&gpu, &mut network, batch, args.runs)?;
            let batch_ms = median.as_secs_f64() * 1e3;
            latency.push(Latency {
                adapter: gpu.describe(),
                batch,
                batch_ms,
                per_clip_ms: batch_ms / batch as f64,
            });
        }
        if let Some(times) = measure_layer_latency(&gpu, &mut network, 1, args.runs)? {
            layer_gpu_ms = times
                .into_iter()
                .enumerate()
                .map(|(i, ms)| LayerTime {
                    layer: arch.layer_name(i),
                    ms,
                })
                .collect();
        }
        latency
    } else {
        Vec::new()
    };
    let report = Report {
        source,
        architecture: arch.name.clone(),
        input: input.to_vec(),
        classes: args.classes,
        clip_ms,
        cost,
        latency,
        layer_gpu_ms,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    let cost = &report.cost;
    println!(
        "{} ({}): input {:?} per clip of {} ms, {} classes",
        report.architecture,
        report.source.display(),
        report.input,
        report.clip_ms,
        report.classes
    );
    let header = [
        "layer",
        "op",
        "output",
        "params",
        "MACs",
        "pooling",
        "batch_norm",
        "activation",
        "addition",
        "product",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for layer in &cost.layers {
        let counts = if layer.runs {
            let o = &layer.other;
            [
                layer.params,
                layer.macs,
                o.pooling,
                o.batch_norm,
                o.activation,
                o.addition,
                o.product,
            ]
            .map(|v| v.to_string())
        } else {
            ["off"; 7].map(String::from)
        };
        let mut row = vec![
            layer.name.clone(),
            layer.op.clone(),
            format!("{:?}", layer.output),
        ];
        row.extend(counts);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                // Names left-aligned, numbers right-aligned.
                if c < 3 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let o = &cost.other;
    println!("parameters              {}", cost.params);
    println!(
        "MACs per clip           {} ({:.2} M)",
        cost.macs,
        cost.macs as f64 / 1e6
    );
    println!(
        "MACs per second         {:.0} ({:.2} M)",
        cost.macs_per_second,
        cost.macs_per_second / 1e6
    );
    println!(
        "other ops per clip      pooling {}, batch_norm {}, activation {}, addition {}, product {}",
        o.pooling, o.batch_norm, o.activation, o.addition, o.product
    );
    for l in &report.latency {
        println!(
            "latency at batch {:<3}    {:.3} ms per clip ({:.3} ms per batch) on {}",
            l.batch, l.per_clip_ms, l.batch_ms, l.adapter
        );
    }
    if !report.layer_gpu_ms.is_empty() {
        let total: f64 = report.layer_gpu_ms.iter().map(|t| t.ms).sum();
        println!("GPU time per layer at batch 1 (timestamp queries, {total:.3} ms in all):");
        for t in &report.layer_gpu_ms {
            println!("  {:<24} {:.4} ms", t.layer, t.ms);
        }
    }
}

//! The audionas command line.

use audionas::bench;
use audionas::gpu::{self, AdapterOptions, BackendChoice, Gpu};
use audionas::train::{cli, cost_cmd};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "audionas",
    version,
    about = "Neural architecture search for small audio-recognition networks, on any GPU through wgpu"
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GpuArgs {
    /// Graphics backend: vulkan, metal, dx12, gl or auto.
    #[arg(long, global = true, env = "WGPU_BACKEND", default_value = "auto")]
    backend: String,
    /// Adapter to use: its index in `audionas devices` or part of its name.
    #[arg(long, global = true, env = "AUDIONAS_ADAPTER")]
    adapter: Option<String>,
}

impl GpuArgs {
    fn options(&self) -> anyhow::Result<AdapterOptions> {
        Ok(AdapterOptions {
            backend: self.backend.parse::<BackendChoice>()?,
            adapter: self.adapter.clone().filter(|a| !a.is_empty()),
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, with its key limits and features.
    Devices,
    /// Make, inspect and prepare audio data sets.
    #[command(subcommand)]
    Data(audionas::data::cli::DataCommand),
    /// Train a fixed architecture from an experiment config; the run folder
    /// keeps the config, metrics, plots, checkpoints and the best model.
    Train(cli::TrainArgs),
    /// Accuracy, per-class precision and recall, confusion matrix and cost
    /// of a trained model on a data set.
    Eval(cli::EvalArgs),
    /// Parameters, multiply-accumulates and other ops of an architecture,
    /// from its description alone; --measure adds latency on the adapter.
    Cost(cost_cmd::CostArgs),
    /// Label WAV clips with a trained model, or spot keywords in a long recording.
    Infer(cli::InferArgs),
    /// Search an architecture: train a supernet, derive a plain
    /// architecture from it (runs/NAME/architecture.json) for `train --arch`.
    Search(audionas::search::cli::SearchArgs),
    /// Join a Model Search: train the trials it proposes, sharing its archive.
    SearchWorker(audionas::search::model_search::cli::SearchWorkerArgs),
    /// Retrain a search's architecture P times from scratch and combine the
    /// replicas by a weighted average of their logits, into one model.
    Ensemble(audionas::search::cli::EnsembleArgs),
    /// A Model Search's best trials, the running ones and their workers.
    SearchStatus(audionas::search::model_search::cli::SearchStatusArgs),
    /// Training and inference speed of model configs, one JSON line per model.
    Bench(bench::BenchArgs),
    /// Write a trained model as an ONNX graph (features shape and class
    /// names in its metadata), to run it with any ONNX runtime.
    Export(audionas::export::cli::ExportArgs),
    /// Runs side by side (training, searches of any strategy, ensembles):
    /// a table, Pareto plots and compare.html, and a report.html per run.
    Compare(audionas::compare::CompareArgs),
}

fn list_devices(options: &AdapterOptions) -> anyhow::Result<()> {
    let instance = gpu::new_instance(options.backend);
    let adapters = gpu::ranked_adapters(&instance, options.backend);
    if adapters.is_empty() {
        anyhow::bail!("{}", gpu::INSTALL_HINT);
    }
    let chosen = gpu::choose_adapter(&instance, options)?.get_info();
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let mark = if info == chosen { "  <- chosen" } else { "" };
        println!("[{i}] {}{mark}", info.name);
        println!(
            "    backend {:?}, type {:?}, vendor {:#06x}, device {:#06x}",
            info.backend, info.device_type, info.vendor, info.device
        );
        println!("    driver {} {}", info.driver, info.driver_info);
        println!(
            "    storage buffers per stage {}, max storage binding {} MiB, max buffer {} MiB",
            limits.max_storage_buffers_per_shader_stage,
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_buffer_size >> 20
        );
        println!(
            "    workgroup storage {} KiB, invocations per workgroup {}, workgroup size {}x{}x{}, workgroups per dimension {}",
            limits.max_compute_workgroup_storage_size >> 10,
            limits.max_compute_invocations_per_workgroup,
            limits.max_compute_workgroup_size_x,
            limits.max_compute_workgroup_size_y,
            limits.max_compute_workgroup_size_z,
            limits.max_compute_workgroups_per_dimension
        );
        println!(
            "    subgroup size {}..{}, timestamp queries {}, subgroups {}, shader f16 {}",
            adapter.get_info().subgroup_min_size,
            adapter.get_info().subgroup_max_size,
            features.contains(wgpu::Features::TIMESTAMP_QUERY),
            features.contains(wgpu::Features::SUBGROUP),
            features.contains(wgpu::Features::SHADER_F16)
        );
    }
    Ok(())
}

/// `--stream` on an adaptive SANAS point, which streams with the
/// controller kept beside its model; `None` for any other model.
fn adaptive_stream(
    gpu: &Gpu,
    model: &std::path::Path,
    stream: &cli::StreamArgs,
) -> Option<anyhow::Result<()>> {
    use audionas::search::sanas::adaptive::{stream_eval, CONTROLLER_FILE};
    (stream.stream.is_some() && model.join(CONTROLLER_FILE).is_file())
        .then(|| stream_eval(gpu, model, stream))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devices => list_devices(&cli.gpu.options()?),
        Command::Data(command) => audionas::data::cli::run(command),
        Command::Train(args) => cli::run_train(&open_gpu(&cli.gpu)?, args),
        Command::Eval(args) => {
            let gpu = open_gpu(&cli.gpu)?;
            match adaptive_stream(&gpu, &args.model, &args.stream) {
                Some(done) => done,
                None => cli::run_eval(&gpu, args),
            }
        }
        Command::Cost(args) => cost_cmd::run_cost(args, || open_gpu(&cli.gpu)),
        Command::Infer(args) => {
            let gpu = open_gpu(&cli.gpu)?;
            match adaptive_stream(&gpu, &args.model, &args.stream) {
                Some(done) => done,
                None => cli::run_infer(&gpu, args),
            }
        }
        Command::Search(args) => audionas::search::cli::run_search(&open_gpu(&cli.gpu)?, args),
        Command::SearchWorker(args) => {
            audionas::search::model_search::cli::run_search_worker(&open_gpu(&cli.gpu)?, args)
        }
        Command::Ensemble(args) => audionas::search::cli::run_ensemble(&open_gpu(&cli.gpu)?, args),
        Command::SearchStatus(args) => audionas::search::model_search::cli::run_search_status(args),
        Command::Bench(args) => bench::run_bench(&open_gpu(&cli.gpu)?, args),
        Command::Export(args) => audionas::export::cli::run_export(args),
        Command::Compare(args) => audionas::compare::run_compare(args, || open_gpu(&cli.gpu)),
    }
}

fn open_gpu(args: &GpuArgs) -> anyhow::Result<Gpu> {
    Ok(Gpu::new(&args.options()?)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

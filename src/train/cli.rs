//! The `train`, `eval` and `infer` commands.

use super::config::Experiment;
use super::model_file::load_model;
use super::run_dir::RunDir;
use super::session::{evaluate, Evaluation};
use super::trainer::{train, TrainOptions};
use crate::data::augment::AugmentConfig;
use crate::data::batch::{BatchConfig, BatchLoader};
use crate::data::dataset::{DataSet, DataSetConfig, Split};
use crate::data::features::FeatureExtractor;
use crate::data::prepare::{default_cache_dir, prepare, PrepareOptions};
use crate::data::stream::{evaluate_stream, truth_from_text, RecognizeConfig};
use crate::data::wav::read_wav;
use crate::gpu::Gpu;
use crate::model::Network;
use crate::model::{Architecture, Cost};
use crate::nn::Pass;
use crate::train::model_file::ModelInfo;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every command that makes a run folder takes.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config (TOML): an experiment for `train` (configs/ds_cnn_s.toml), a
    /// search config for `search` (configs/search/darts_kws.toml); with
    /// --resume, the run's own config is used.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// The data set folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Run name: the run folder is <runs>/<name> [default: the config's file name].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the run folders.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Continue the run <runs>/<name> from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Override [train] epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many epochs of this call; the run stays resumable.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Feature cache folder [default: $AUDIONAS_CACHE, else ~/.cache/audionas].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The run name: `--name`, else the config's file name.
    pub(crate) fn run_name(&self) -> anyhow::Result<String> {
        Ok(match (&self.name, &self.config) {
            (Some(n), _) => n.clone(),
            (None, Some(c)) => c
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into()),
            (None, None) => bail!("--resume needs --name (the run folder's name)"),
        })
    }

    pub(crate) fn prepare_options(&self) -> PrepareOptions {
        prepare_options(&self.cache_dir)
    }
}

pub(crate) fn prepare_options(cache_dir: &Option<PathBuf>) -> PrepareOptions {
    PrepareOptions {
        cache_dir: Some(cache_dir.clone().unwrap_or_else(default_cache_dir)),
        ..PrepareOptions::default()
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Train this architecture description (.json or .toml) in place of the
    /// config's [model], e.g. one a search found.
    #[arg(long, conflicts_with = "resume")]
    pub arch: Option<PathBuf>,
    /// Start from the weights of this model file or run folder wherever a
    /// layer's tensor has the same name and shape; the rest start fresh.
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Override [train] seed: the draw of the initial weights, the data
    /// order and the augmentation (to compare architectures over seeds).
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
}

pub fn run_train(gpu: &Gpu, args: TrainArgs) -> anyhow::Result<()> {
    let name = args.run.run_name()?;
    let (run, mut experiment) = if args.run.resume {
        let run = RunDir::open_existing(&args.run.runs.join(&name))?;
        let experiment = Experiment::parse(&run.read_config()?, &run.config())?;
        (run, experiment)
    } else {
        let path = args.run.config.as_ref().expect("clap requires it");
        let mut experiment = Experiment::load(path)?;
        if let Some(arch) = &args.arch {
            experiment.model = Architecture::load(arch)?;
        }
        if let Some(e) = args.run.epochs {
            experiment.train.epochs = e;
            experiment
                .validate()
                .map_err(|r| anyhow::anyhow!("--epochs: {r}"))?;
        }
        if let Some(seed) = args.seed {
            experiment.train.seed = seed;
        }
        let run = RunDir::create(&args.run.runs, &name, &experiment.to_toml())?;
        (run, experiment)
    };
    if args.run.resume {
        if let Some(e) = args.run.epochs {
            experiment.train.epochs = e;
            run.write_config(&experiment.to_toml())?;
        }
    }
    println!("run folder {}", run.root.display());
    let options = TrainOptions {
        data_dir: args.run.data.clone(),
        prepare: args.run.prepare_options(),
        resume: args.run.resume,
        stop_after_epochs: args.run.stop_after,
        verbose: true,
        init_from: args.init_from.clone(),
    };
    let summary = match train(gpu, &experiment, &run, &options) {
        Ok(summary) => summary,
        Err(e) => {
            if !args.run.resume {
                remove_unstarted_run(&run);
            }
            return Err(e);
        }
    };
    println!(
        "{} epochs in {:.1} s, {:.1} training samples/s; best validation accuracy {:.2}% (epoch {})",
        summary.epochs_done,
        summary.seconds,
        summary.train_samples_per_s,
        100.0 * summary.best_val_accuracy.max(0.0),
        summary.best_epoch
    );
    match &summary.test {
        Some(t) => println!(
            "test accuracy {:.2}% on {} clips (best model, {})",
            100.0 * t.accuracy,
            t.samples,
            run.best_model().display()
        ),
        None if summary.epochs_done < experiment.train.epochs => println!(
            "stopped after epoch {}; continue with --resume --name {name}",
            summary.epochs_done
        ),
        None => {}
    }
    Ok(())
}

/// Removes what a new run wrote before it kept any model (its config.toml,
/// data.json and an empty metrics.jsonl), so that the corrected command can use the
/// same run name; a run that kept a checkpoint or a model stays for --resume.
pub(crate) fn remove_unstarted_run(run: &RunDir) {
    if run.last_checkpoint().exists() || run.best_model().exists() {
        return;
    }
    let _ = std::fs::remove_file(run.config());
    let _ = std::fs::remove_file(run.root.join(super::session::DATA_RECORD_FILE));
    if std::fs::metadata(run.metrics()).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(run.metrics());
    }
    // Only when empty: anything else in the folder is the user's.
    let _ = std::fs::remove_dir(&run.root);
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model file written by `audionas train` (runs/NAME/model.safetensors),
    /// or its run folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The data set folder.
    #[arg(long, required_unless_present = "stream")]
    pub data: Option<PathBuf>,
    /// Which clips: test, validation, train or all.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Use this experiment's architecture instead of the one in the model file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Streaming evaluation of a long recording.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Spot keywords in this long recording (`audionas data stream` writes one).
    #[arg(long)]
    pub stream: Option<PathBuf>,
    /// Ground truth for --stream (`label,start_ms` lines) [default: the
    /// recording's name with .txt, when it exists].
    #[arg(long, requires = "stream")]
    pub truth: Option<PathBuf>,
    /// A window every this many milliseconds (the streaming test's 30; SANAS
    /// streams 200).
    #[arg(long, default_value_t = 30, requires = "stream")]
    pub stride_ms: i64,
    /// A detection needs the averaged top score above this (the streaming
    /// test's 0.7).
    #[arg(long, default_value_t = 0.7, requires = "stream")]
    pub detection_threshold: f32,
    /// Scores are averaged over the windows of this many milliseconds (the
    /// streaming test's 500).
    #[arg(long, default_value_t = 500, requires = "stream")]
    pub average_window_ms: i64,
}

impl StreamArgs {
    /// The `RecognizeCommands` settings these arguments give; a stride or
    /// an averaging window under 1 ms, or a threshold outside [0, 1], is
    /// refused.
    fn recognize_config(&self) -> anyhow::Result<RecognizeConfig> {
        if self.stride_ms <= 0 {
            bail!("--stride-ms {} must be at least 1", self.stride_ms);
        }
        if !(0.0..=1.0).contains(&self.detection_threshold) {
            bail!(
                "--detection-threshold {} must be a score in [0, 1]",
                self.detection_threshold
            );
        }
        if self.average_window_ms <= 0 {
            bail!(
                "--average-window-ms {} must be at least 1",
                self.average_window_ms
            );
        }
        Ok(RecognizeConfig {
            clip_stride_ms: self.stride_ms,
            detection_threshold: self.detection_threshold,
            average_window_ms: self.average_window_ms,
            ..RecognizeConfig::default()
        })
    }
}

pub fn run_eval(gpu: &Gpu, args: EvalArgs) -> anyhow::Result<()> {
    let splits = match args.split.as_str() {
        "test" => vec![Split::Test],
        "validation" => vec![Split::Validation],
        "train" => vec![Split::Train],
        "all" => Split::ALL.to_vec(),
        other => bail!("--split {other:?}: use test, validation, train or all"),
    };
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let architecture = match &args.config {
        Some(c) => Some(Experiment::load(c)?.model),
        None => None,
    };
    let (mut network, info, meta) = load_model(gpu, &args.model, architecture.as_ref())?;
    if args.stream.stream.is_some() {
        return stream_eval(gpu, &mut network, &info, &args.stream);
    }
    let data = args
        .data
        .as_ref()
        .expect("clap requires --data without --stream");
    let data_config: DataSetConfig = match meta.get("data") {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("{}: metadata \"data\"", args.model.display()))?,
        None => DataSetConfig::default(),
    };
    let set = DataSet::open(data, &data_config)?;
    let prepared = Arc::new(prepare(
        &set,
        &info.features,
        &prepare_options(&args.cache_dir),
    )?);
    if prepared.classes != info.classes {
        bail!(
            "{}: the model knows the classes {:?}, but {} has {:?}; evaluate on data with the same classes",
            args.model.display(),
            info.classes,
            data.display(),
            prepared.classes
        );
    }
    let mut batches = Vec::new();
    for split in splits {
        let config = BatchConfig {
            batch_size: args.batch,
            seed: 0,
            drop_last: false,
            shuffle: false,
            augment: AugmentConfig::none(),
        };
        let loader = BatchLoader::new(&set, prepared.clone(), &info.features, split, config)?;
        batches.extend(loader.epoch(0));
    }
    if batches.is_empty() {
        bail!("{}: no clips in the {} split", data.display(), args.split);
    }
    let result = evaluate(gpu, &mut network, batches.into_iter())?;
    let cost = Cost::of(
        network.architecture(),
        network.input_shape(),
        network.classes(),
        info.features.clip_ms,
        None,
    )?;
    print_evaluation(&result, &info.classes);
    println!(
        "parameters {}, MACs per clip {}, MACs per second of audio {:.0}",
        cost.params, cost.macs, cost.macs_per_second
    );
    Ok(())
}

fn print_evaluation(result: &Evaluation, classes: &[String]) {
    println!(
        "accuracy {:.2}% ({} clips), loss {:.4}",
        100.0 * result.accuracy,
        result.samples,
        result.loss
    );
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    println!("{:width$}  precision  recall  clips", "class");
    for (c, (p, r)) in result.precision_recall().iter().enumerate() {
        let clips: u64 = result.confusion[c].iter().sum();
        println!(
            "{:width$}  {:8.1}%  {:5.1}%  {clips:5}",
            classes[c],
            100.0 * p,
            100.0 * r
        );
    }
    println!("confusion (rows: truth, columns: predicted, in class order)");
    for (c, row) in result.confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:4}")).collect();
        println!("{:width$} {}", classes[c], cells.join(""));
    }
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// A model file written by `audionas train`, or its run folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Clips to label.
    pub files: Vec<PathBuf>,
    /// Labels to show per clip.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Print one JSON object per clip instead: the file, the class names,
    /// every class's probability and the logits, at full precision.
    #[arg(long, conflicts_with = "stream")]
    pub json: bool,
    #[command(flatten)]
    pub stream: StreamArgs,
}

pub fn run_infer(gpu: &Gpu, args: InferArgs) -> anyhow::Result<()> {
    let (mut network, info, _) = load_model(gpu, &args.model, None)?;
    if args.stream.stream.is_some() {
        if !args.files.is_empty() || args.json {
            bail!("--stream labels one long recording: give no clips and no --json with it");
        }
        return stream_eval(gpu, &mut network, &info, &args.stream);
    }
    let extractor = FeatureExtractor::new(&info.features);
    let rate = info.features.sample_rate;
    let mut logits_of =
        |features: &[f32], count: usize| logits_of(gpu, &mut network, features, count);
    if args.files.is_empty() {
        bail!("give one or more WAV files to label, or --stream LONG.wav");
    }
    // A clip that cannot be read is reported at the end; the others are
    // still labelled.
    let mut unreadable = Vec::new();
    for file in &args.files {
        let audio = match read_wav(file, rate) {
            Ok(audio) => audio,
            Err(e) => {
                unreadable.push(e.to_string());
                continue;
            }
        };
        let features = extractor.clip_features(&audio.samples);
        let logits = logits_of(&features, 1)?.remove(0);
        let scores = softmax(&logits);
        if args.json {
            let line = ClipScores {
                file: file.display().to_string(),
                classes: &info.classes,
                probabilities: &scores,
                logits: &logits,
            };
            println!("{}", serde_json::to_string(&line)?);
            continue;
        }
        let mut ranked: Vec<usize> = (0..scores.len()).collect();
        ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top: Vec<String> = ranked
            .iter()
            .take(args.top.max(1))
            .map(|&c| format!("{} {:.3}", info.classes[c], scores[c]))
            .collect();
        println!("{}: {}", file.display(), top.join(", "));
    }
    if !unreadable.is_empty() {
        bail!(
            "{} of {} clips could not be labelled:\n{}",
            unreadable.len(),
            args.files.len(),
            unreadable.join("\n")
        );
    }
    Ok(())
}

/// What `infer --json` prints for one clip. serde_json writes each f32 as
/// the shortest decimal that reads back to the same bits.
#[derive(serde::Serialize)]
struct ClipScores<'a> {
    file: String,
    classes: &'a [String],
    probabilities: &'a [f32],
    logits: &'a [f32],
}

/// The probabilities of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&z| (z - top).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// The logits of `count` clips' features, one row per clip.
fn logits_of(
    gpu: &Gpu,
    network: &mut Network,
    features: &[f32],
    count: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let shape = crate::nn::batched(count, network.input_shape());
    let x = gpu.upload(&shape, features)?;
    let mut rec = gpu.recorder();
    let logits = network.forward(&mut rec, &x, Pass::eval())?;
    rec.submit()?;
    Ok(gpu
        .download(&logits)?
        .chunks_exact(network.classes())
        .map(<[f32]>::to_vec)
        .collect())
}

/// Slides the clip window along the recording every `--stride-ms`, smooths
/// the scores with `RecognizeCommands` and reports each new keyword with its
/// time, then the streaming test's statistics against the ground truth and
/// the MACs each window cost.
fn stream_eval(
    gpu: &Gpu,
    network: &mut Network,
    info: &ModelInfo,
    args: &StreamArgs,
) -> anyhow::Result<()> {
    stream_eval_with(args, info, |samples| {
        window_scores(gpu, network, info, samples, args.stride_ms)
    })
}

/// Reads `--stream`, scores its windows with `score` (the softmax of each
/// window and the mean MACs per window) and reports what it finds.
pub fn stream_eval_with(
    args: &StreamArgs,
    info: &ModelInfo,
    score: impl FnOnce(&[f32]) -> anyhow::Result<(Vec<Vec<f32>>, f64)>,
) -> anyhow::Result<()> {
    let path = args.stream.as_deref().expect("called with --stream");
    let config = args.recognize_config()?;
    let audio = read_stream(path, &info.features)?;
    let (scores, macs) = score(&audio.samples)?;
    let seconds = audio.samples.len() as f64 / info.features.sample_rate as f64;
    report_stream(path, args, &config, &info.classes, &scores, macs, seconds)
}

/// The softmax scores of every one-clip window of `samples`, a window every
/// `stride_ms`, in batches of windows, under the model `network` (`info`
/// its features and classes); and the MACs each window costs.
pub fn window_scores(
    gpu: &Gpu,
    network: &mut Network,
    info: &ModelInfo,
    samples: &[f32],
    stride_ms: i64,
) -> anyhow::Result<(Vec<Vec<f32>>, f64)> {
    const WINDOWS_PER_BATCH: usize = 64;
    let features = &info.features;
    let extractor = FeatureExtractor::new(features);
    let (clip, stride) = (features.clip_samples(), window_stride(features, stride_ms));
    let windows = window_count(samples.len(), clip, stride)?;
    let mut scores = Vec::with_capacity(windows);
    for first in (0..windows).step_by(WINDOWS_PER_BATCH) {
        let count = WINDOWS_PER_BATCH.min(windows - first);
        let mut x = Vec::new();
        for w in first..first + count {
            let start = w * stride;
            x.extend(extractor.clip_features(&samples[start..start + clip]));
        }
        scores.extend(
            logits_of(gpu, network, &x, count)?
                .iter()
                .map(|l| softmax(l)),
        );
    }
    let cost = Cost::of(
        network.architecture(),
        network.input_shape(),
        info.classes.len(),
        features.clip_ms,
        None,
    )?;
    Ok((scores, cost.macs as f64))
}

/// Samples between windows `stride_ms` apart.
pub fn window_stride(features: &crate::data::features::FeatureConfig, stride_ms: i64) -> usize {
    (stride_ms.max(1) as usize * features.sample_rate as usize / 1000).max(1)
}

/// Windows of `clip` samples every `stride` in `len` samples; none fit is an error.
pub fn window_count(len: usize, clip: usize, stride: usize) -> anyhow::Result<usize> {
    if len < clip {
        bail!("{len} samples hold no window of {clip}");
    }
    Ok((len - clip) / stride + 1)
}

/// A long recording at the features' rate; one shorter than a window is
/// refused.
fn read_stream(
    path: &Path,
    features: &crate::data::features::FeatureConfig,
) -> anyhow::Result<crate::data::wav::Audio> {
    let audio = read_wav(path, features.sample_rate)?;
    if audio.samples.len() < features.clip_samples() {
        bail!(
            "{}: {:.2} s of audio is shorter than one {:.0} ms window",
            path.display(),
            audio.samples.len() as f64 / features.sample_rate as f64,
            features.clip_ms
        );
    }
    Ok(audio)
}

/// Prints what the streaming test finds in `scores` (one softmax per
/// window, a window every `args.stride_ms`) and, against the ground truth,
/// the paper's table: Match, Correct, Wrong, False alarms (percent of the
/// truth words) and the mean MACs each window cost.
fn report_stream(
    path: &Path,
    args: &StreamArgs,
    config: &RecognizeConfig,
    classes: &[String],
    scores: &[Vec<f32>],
    macs_per_window: f64,
    seconds: f64,
) -> anyhow::Result<()> {
    let truth_path = args
        .truth
        .clone()
        .or_else(|| Some(path.with_extension("txt")).filter(|p| p.exists()));
    let truth = match &truth_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the ground truth", p.display()))?;
            truth_from_text(&text, &p.display().to_string()).map_err(anyhow::Error::msg)?
        }
        None => Vec::new(),
    };
    let (stats, found) =
        evaluate_stream(classes, scores, &truth, config).map_err(anyhow::Error::msg)?;
    for (label, time_ms) in &found {
        println!("{:9.3} s  {label}", *time_ms as f64 / 1000.0);
    }
    println!(
        "{} detections in {seconds:.1} s of audio ({} windows)",
        found.len(),
        scores.len()
    );
    println!(
        "{macs_per_window:.0} MACs per window, a window every {} ms",
        config.clip_stride_ms
    );
    if let Some(p) = truth_path {
        println!(
            "against {}: {} words; matched {:.1}%, correct {:.1}%, wrong {:.1}%, false alarms {:.1}%",
            p.display(),
            stats.ground_truth,
            stats.matched_percent(),
            stats.correct_percent(),
            stats.wrong_percent(),
            stats.false_alarm_percent()
        );
    }
    Ok(())
}

/// The architecture and input shape of an experiment config, for `bench`.
pub fn load_architecture(path: &Path) -> anyhow::Result<(Architecture, Vec<usize>, f64)> {
    let e = Experiment::load(path)?;
    Ok((e.model, e.features.clip_shape(), e.features.clip_ms))
}

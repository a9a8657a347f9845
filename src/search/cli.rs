//! `audionas search`: runs a search from a search config into a run folder.

use super::config::{SearchConfig, Strategy};
use super::darts::{search, SearchOptions};
use super::model_search::cli::{run_model_search, ModelSearchRun};
use super::model_search::config::{strategy_of, ModelSearchConfig, STRATEGY as MODEL_SEARCH};
use super::sanas::search::{search as sanas_search, SanasOptions};
use super::sanas::{SanasConfig, STRATEGY as SANAS};
use crate::gpu::Gpu;
use crate::train::cli::{remove_unstarted_run, RunArgs};
use crate::train::run_dir::RunDir;
use anyhow::bail;
use clap::Args;

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The strategy, in place of the config's [search] strategy.
    #[arg(long, conflicts_with = "resume")]
    pub strategy: Option<String>,
    /// Model Search: worker processes on this machine, sharing the archive.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Model Search: the trial archive, a SQLite file or
    /// postgres://user:password@host/db [default: runs/NAME/archive.sqlite].
    #[arg(long)]
    pub archive: Option<String>,
    /// Model Search: override [search] max_trials (also when resuming).
    #[arg(long)]
    pub max_trials: Option<usize>,
    /// FairDARTS: override [search] threshold (also when resuming: a
    /// finished search derives again from its last weights).
    #[arg(long)]
    pub threshold: Option<f64>,
}

pub fn run_search(gpu: &Gpu, args: SearchArgs) -> anyhow::Result<()> {
    let name = args.run.run_name()?;
    if args.run.epochs == Some(0) {
        bail!("--epochs must be at least 1");
    }
    // The config text, read once: the run's own when resuming.
    let (existing, config_path) = if args.run.resume {
        let run = RunDir::open_existing(&args.run.runs.join(&name))?;
        let path = run.config();
        (Some(run), path)
    } else {
        (None, args.run.config.clone().expect("clap requires it"))
    };
    let config_text = std::fs::read_to_string(&config_path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", config_path.display()))?;
    let strategy = args.strategy.clone().or_else(|| strategy_of(&config_text));
    let fair_darts = Strategy::FairDarts.name();
    if args.threshold.is_some() && strategy.as_deref() != Some(fair_darts) {
        bail!("--threshold is for --strategy {fair_darts}");
    }
    if strategy.as_deref() == Some(MODEL_SEARCH) {
        let config = ModelSearchConfig::parse(&config_text, &config_path)?;
        return model_search(gpu, &args, &name, existing, config);
    }
    if strategy.as_deref() == Some(SANAS) {
        if args.workers != 1 || args.archive.is_some() || args.max_trials.is_some() {
            bail!("--workers, --archive and --max-trials are for --strategy {MODEL_SEARCH}");
        }
        let config = SanasConfig::parse(&config_text, &config_path)?;
        return sanas(gpu, &args, &name, existing, config);
    }
    if args.workers != 1 || args.archive.is_some() || args.max_trials.is_some() {
        bail!("--workers, --archive and --max-trials are for --strategy {MODEL_SEARCH}");
    }
    let mut config = SearchConfig::parse(&config_text, &config_path)?;
    if let Some(t) = args.threshold {
        if !(0.0..1.0).contains(&t) {
            bail!("--threshold {t} must be in [0, 1)");
        }
        config.search.threshold = t;
    }
    let (run, config) = if let Some(run) = existing {
        if let Some(e) = args.run.epochs {
            config.train.epochs = e;
        }
        if args.run.epochs.is_some() || args.threshold.is_some() {
            run.write_config(&config.to_toml())?;
        }
        (run, config)
    } else {
        if let Some(s) = &args.strategy {
            config.search.strategy =
                Strategy::parse(s).map_err(|e| anyhow::anyhow!("--strategy: {e}"))?;
        }
        if let Some(e) = args.run.epochs {
            config.train.epochs = e;
        }
        let run = RunDir::create(&args.run.runs, &name, &config.to_toml())?;
        (run, config)
    };
    println!("run folder {}", run.root.display());
    let options = SearchOptions {
        data_dir: args.run.data.clone(),
        prepare: args.run.prepare_options(),
        resume: args.run.resume,
        stop_after_epochs: args.run.stop_after,
        verbose: true,
    };
    let summary = match search(gpu, &config, &run, &options) {
        Ok(summary) => summary,
        Err(e) => {
            if !args.run.resume {
                remove_unstarted_run(&run);
            }
            return Err(e);
        }
    };
    println!(
        "{} epochs in {:.1} s; derived cells keep {} skip connections; {} parameters, {} MACs per clip",
        summary.epochs_done, summary.seconds, summary.genotype.skips, summary.params, summary.macs
    );
    if summary.time_limit_reached {
        println!(
            "the time limit ([search] time_limit_minutes) ended the search before epoch {}",
            summary.epochs_done + 1
        );
    }
    match &summary.architecture {
        Some(path) => println!(
            "architecture: {} (retrain it: audionas train --config CONFIG --arch {} --data DIR)",
            path.display(),
            path.display()
        ),
        None => println!(
            "stopped after epoch {}; continue with --resume --name {name}",
            summary.epochs_done
        ),
    }
    Ok(())
}

/// `search` of a SANAS config: one search per lambda, a new run or
/// `existing` resumed.
fn sanas(
    gpu: &Gpu,
    args: &SearchArgs,
    name: &str,
    existing: Option<RunDir>,
    mut config: SanasConfig,
) -> anyhow::Result<()> {
    if let Some(e) = args.run.epochs {
        config.experiment.train.epochs = e;
    }
    let run = match existing {
        Some(run) => {
            run.write_config(&config.to_toml())?;
            run
        }
        None => RunDir::create(&args.run.runs, name, &config.to_toml())?,
    };
    println!("run folder {}", run.root.display());
    let options = SanasOptions {
        data_dir: args.run.data.clone(),
        prepare: args.run.prepare_options(),
        resume: args.run.resume,
        stop_after_epochs: args.run.stop_after,
        verbose: true,
    };
    let summary = match sanas_search(gpu, &config, &run, &options) {
        Ok(summary) => summary,
        Err(e) => {
            if !args.run.resume && !run.root.join(super::sanas::search::POINTS_DIR).exists() {
                remove_unstarted_run(&run);
            }
            return Err(e);
        }
    };
    if summary.points.len() < config.search.lambdas.len() {
        println!("stopped; continue with --resume --name {name}");
        return Ok(());
    }
    println!("lambda      cost kept  params       MACs  val acc  test acc  (supernet weights, not retrained)");
    for p in &summary.points {
        let pct = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
        println!(
            "{:<8} {:>6.1}%  {:>2}/{:<2} {:>7} {:>10} {:>8} {:>9}",
            p.lambda,
            100.0 * p.kept_cost / p.full_cost.max(f64::MIN_POSITIVE),
            p.kept.len(),
            p.probabilities.len(),
            p.params,
            p.macs,
            pct(p.val_accuracy),
            pct(p.test_accuracy)
        );
    }
    if let Some(path) = &summary.architecture {
        println!(
            "architecture: {} (retrain it: audionas train --config CONFIG --arch {} --data DIR)",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// `search` of a Model Search config: a new run, or `existing` resumed.
fn model_search(
    gpu: &Gpu,
    args: &SearchArgs,
    name: &str,
    existing: Option<RunDir>,
    mut config: ModelSearchConfig,
) -> anyhow::Result<()> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if args.max_trials == Some(0) {
        bail!("--max-trials must be at least 1");
    }
    if let Some(e) = args.run.epochs {
        config.train.epochs = e;
    }
    if let Some(t) = args.max_trials {
        config.search.max_trials = t;
    }
    let run = match existing {
        Some(run) => {
            run.write_config(&config.to_toml())?;
            run
        }
        None => RunDir::create(&args.run.runs, name, &config.to_toml())?,
    };
    println!("run folder {}", run.root.display());
    let how = ModelSearchRun {
        data_dir: args.run.data.clone(),
        prepare: args.run.prepare_options(),
        cache_dir: args.run.cache_dir.clone(),
        workers: args.workers,
        archive: args.archive.clone(),
        resume: args.run.resume,
    };
    let result = run_model_search(gpu, &config, &run, &how);
    if result.is_err() && !args.run.resume {
        remove_unstarted_search(&run);
    }
    result
}

/// A Model Search run folder with no trial in it, removed after an error
/// before the first trial (what is left is the user's).
fn remove_unstarted_search(run: &RunDir) {
    let trials = run.root.join(super::model_search::worker::TRIALS_DIR);
    if std::fs::read_dir(&trials).is_ok_and(|mut d| d.next().is_some()) {
        return;
    }
    let _ = std::fs::remove_dir(&trials);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(
            run.root
                .join(format!("{}{suffix}", super::model_search::ARCHIVE_FILE)),
        );
    }
    for file in [
        super::model_search::ARCHIVE_URL_FILE,
        super::model_search::worker::TRIALS_FILE,
    ] {
        let _ = std::fs::remove_file(run.root.join(file));
    }
    remove_unstarted_run(run);
}

#[derive(Debug, Args)]
pub struct EnsembleArgs {
    /// The search run whose architecture.json is retrained.
    #[arg(long)]
    pub run: std::path::PathBuf,
    /// How many replicas (at least 2).
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// The training of each replica: an experiment config whose model is
    /// replaced (e.g. configs/ds_cnn_s.toml) [default: the search's own].
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The data set folder.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// `weighted` (weights learned on the validation split) or `average`.
    #[arg(long, default_value = "weighted")]
    pub combine: String,
    /// The ensemble's run folder is <runs>/<name> [default: <search run>_ensemble].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the run folders.
    #[arg(long, default_value = "runs")]
    pub runs: std::path::PathBuf,
    /// Override [train] epochs of each replica.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Continue an ensemble run: finished replicas are kept, a stopped one resumes.
    #[arg(long)]
    pub resume: bool,
    /// Feature cache folder [default: $AUDIONAS_CACHE, else ~/.cache/audionas].
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
}

/// `audionas ensemble`: retrains a search's architecture P times and
/// combines the replicas into one model.
pub fn run_ensemble(gpu: &Gpu, args: EnsembleArgs) -> anyhow::Result<()> {
    use super::ensemble::{make_ensemble, replica_experiment, Combine, EnsembleOptions};
    let combine = Combine::parse(&args.combine).map_err(|e| anyhow::anyhow!("--combine: {e}"))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => format!(
            "{}_ensemble",
            args.run
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        ),
    };
    let run = if args.resume {
        RunDir::open_existing(&args.runs.join(&name))?
    } else {
        let mut experiment = replica_experiment(&args.run, args.config.as_deref())?;
        if let Some(e) = args.epochs {
            experiment.train.epochs = e;
            experiment
                .validate()
                .map_err(|r| anyhow::anyhow!("--epochs: {r}"))?;
        }
        RunDir::create(&args.runs, &name, &experiment.to_toml())?
    };
    let experiment = crate::train::config::Experiment::parse(&run.read_config()?, &run.config())?;
    println!("run folder {}", run.root.display());
    let options = EnsembleOptions {
        data_dir: args.data.clone(),
        prepare: crate::train::cli::prepare_options(&args.cache_dir),
        replicas: args.replicas,
        combine,
        verbose: true,
    };
    let summary = make_ensemble(gpu, &experiment, &run, &options)?;
    let pct = |x: Option<f64>| {
        x.map(|a| format!("{:.2}%", 100.0 * a))
            .unwrap_or_else(|| "-".into())
    };
    for (i, r) in summary.replicas.iter().enumerate() {
        println!(
            "replica {i} (seed {}): validation {:.2}%, test {}",
            r.seed,
            100.0 * r.val_accuracy,
            pct(r.test_accuracy)
        );
    }
    println!(
        "plain average: test {}; weighted ({:?}): test {}, weights {:?}",
        pct(summary.average_test.as_ref().map(|e| e.accuracy)),
        summary.combine,
        pct(summary.ensemble_test.as_ref().map(|e| e.accuracy)),
        summary.weights
    );
    println!(
        "ensemble model: {} ({} parameters, {} MACs per clip)",
        run.best_model().display(),
        summary.params,
        summary.macs
    );
    Ok(())
}

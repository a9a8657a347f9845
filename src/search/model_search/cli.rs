//! The Model Search commands: `search --strategy model-search` (with
//! `--workers N` worker processes), `search-worker` (joins a search, from
//! this machine or another) and `search-status`.

use super::archive::{now, open_archive, ArchiveUrl, TrialState};
use super::config::ModelSearchConfig;
use super::worker::{mirror_trials, run_worker, search_id, worker_name, WorkerOptions};
use super::{best_trial, summarise, ARCHIVE_FILE, ARCHIVE_URL_FILE};
use crate::data::prepare::PrepareOptions;
use crate::gpu::Gpu;
use crate::train::atomic::write_durably;
use crate::train::run_dir::RunDir;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How `search` runs a Model Search, besides the config.
#[derive(Clone, Debug)]
pub struct ModelSearchRun {
    pub data_dir: PathBuf,
    pub prepare: PrepareOptions,
    pub cache_dir: Option<PathBuf>,
    pub workers: usize,
    /// Given with `--archive`; else the run folder's SQLite file.
    pub archive: Option<String>,
    pub resume: bool,
}

/// The archive of the run in `root`: the URL it was started with, or its SQLite file.
pub fn run_archive(root: &Path, given: Option<&str>) -> anyhow::Result<ArchiveUrl> {
    if let Some(url) = given {
        return Ok(ArchiveUrl::parse(url));
    }
    let file = root.join(ARCHIVE_URL_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(ArchiveUrl::parse(text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ArchiveUrl::Sqlite(root.join(ARCHIVE_FILE)))
        }
        Err(e) => bail!("{}: {e}", file.display()),
    }
}

/// Runs the search of `config` in `run` to its end and summarises it.
pub fn run_model_search(
    gpu: &Gpu,
    config: &ModelSearchConfig,
    run: &RunDir,
    how: &ModelSearchRun,
) -> anyhow::Result<()> {
    let root = &run.root;
    let url = run_archive(root, how.archive.as_deref())?;
    if let Some(given) = &how.archive {
        write_durably(&root.join(ARCHIVE_URL_FILE), given.as_bytes())?;
    }
    let mut archive = open_archive(&url, &search_id(config))?;
    if let (true, Some(minutes)) = (how.resume, config.search.time_limit_minutes) {
        // A resumed search gets its time limit again.
        archive.set_meta("deadline", &(now() + minutes * 60.0).to_string())?;
    }
    println!(
        "archive {}; {} worker(s); up to {} trials",
        url.display(),
        how.workers,
        config.search.max_trials
    );
    if how.workers <= 1 {
        let options = WorkerOptions {
            data_dir: how.data_dir.clone(),
            prepare: how.prepare.clone(),
            archive: url.clone(),
            worker: worker_name(0),
            index: 0,
            verbose: true,
        };
        run_worker(gpu, config, root, &options)?;
    } else {
        spawn_workers(gpu, root, &url, how)?;
    }
    let trials = archive.trials()?;
    mirror_trials(root, &trials)?;
    let summary = summarise(root, config.search.algorithm.name(), &trials)?;
    println!(
        "{} trials ({} completed, {} failed) in {:.1} s",
        summary.trials, summary.completed, summary.failed, summary.seconds
    );
    match (&summary.best, &summary.architecture) {
        (Some(best), Some(path)) => println!(
            "best: trial {} [{}], score {:.4}, {} parameters, {} MACs\narchitecture: {} (retrain it: audionas train --config CONFIG --arch {} --data DIR)",
            best.id,
            best.tower.join(", "),
            best.score.unwrap_or(f64::NAN),
            best.params,
            best.macs,
            path.display(),
            path.display()
        ),
        _ => println!("no trial completed"),
    }
    Ok(())
}

/// `audionas search-worker` as a child process per worker, on this
/// machine's adapter; waits for all of them.
fn spawn_workers(
    gpu: &Gpu,
    root: &Path,
    url: &ArchiveUrl,
    how: &ModelSearchRun,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the audionas executable")?;
    let info = gpu.info();
    let backend = match info.backend {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        _ => "auto",
    };
    let mut children = Vec::with_capacity(how.workers);
    for index in 0..how.workers {
        let mut command = Command::new(&exe);
        command
            .env("WGPU_BACKEND", backend)
            .env("AUDIONAS_ADAPTER", &info.name)
            .arg("search-worker")
            .arg("--run")
            .arg(root)
            .arg("--data")
            .arg(&how.data_dir)
            .arg("--archive")
            .arg(url.to_arg())
            .arg("--index")
            .arg(index.to_string());
        if let Some(cache) = &how.cache_dir {
            command.arg("--cache-dir").arg(cache);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting worker {index} ({})", exe.display()))?;
        println!("worker {index}: process {}", child.id());
        children.push((index, child));
    }
    let mut failures = Vec::new();
    for (index, mut child) in children {
        let status = child
            .wait()
            .with_context(|| format!("waiting for worker {index}"))?;
        if !status.success() {
            failures.push(format!("worker {index} ended with {status}"));
        }
    }
    if !failures.is_empty() {
        eprintln!(
            "{}; the other workers' trials are kept",
            failures.join("; ")
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SearchWorkerArgs {
    /// The search's run folder (its config.toml is the search's config).
    #[arg(long)]
    pub run: PathBuf,
    /// The data set folder.
    #[arg(long)]
    pub data: PathBuf,
    /// The archive: a SQLite file or postgres://user:password@host/db
    /// [default: the run's own].
    #[arg(long)]
    pub archive: Option<String>,
    /// Varies this worker's proposals from the others'.
    #[arg(long, default_value_t = 0)]
    pub index: u64,
    /// Feature cache folder [default: $AUDIONAS_CACHE, else ~/.cache/audionas].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Joins the search of a run folder until it has its trials.
pub fn run_search_worker(gpu: &Gpu, args: SearchWorkerArgs) -> anyhow::Result<()> {
    let run = RunDir::open_existing(&args.run)?;
    let config = ModelSearchConfig::parse(&run.read_config()?, &run.config())?;
    let options = WorkerOptions {
        data_dir: args.data,
        prepare: crate::train::cli::prepare_options(&args.cache_dir),
        archive: run_archive(&run.root, args.archive.as_deref())?,
        worker: worker_name(args.index),
        index: args.index,
        verbose: true,
    };
    let report = run_worker(gpu, &config, &run.root, &options)?;
    println!(
        "worker {}: {} trials completed, {} failed",
        options.worker, report.completed, report.failed
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct SearchStatusArgs {
    /// The search's run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// The archive [default: the run's own].
    #[arg(long)]
    pub archive: Option<String>,
    /// How many of the best trials to list.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

/// Prints the best trials, the running ones and their workers, and
/// refreshes the run's trials.jsonl, tree and plots.
pub fn run_search_status(args: SearchStatusArgs) -> anyhow::Result<()> {
    let run = RunDir::open_existing(&args.run)?;
    let config = ModelSearchConfig::parse(&run.read_config()?, &run.config())?;
    let url = run_archive(&run.root, args.archive.as_deref())?;
    let trials = open_archive(&url, &search_id(&config))?.trials()?;
    // The run folder's mirror is brought up to date (a search whose workers
    // are elsewhere has no other).
    mirror_trials(&run.root, &trials)?;
    let count = |state| trials.iter().filter(|t| t.state == state).count();
    println!(
        "{}: {} trials of {}: {} completed, {} running, {} failed",
        url.display(),
        trials.len(),
        config.search.max_trials,
        count(TrialState::Completed),
        count(TrialState::Running),
        count(TrialState::Failed)
    );
    let mut completed: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .collect();
    completed.sort_by(|a, b| {
        let score = |t: &&super::archive::Trial| t.score.unwrap_or(f64::NEG_INFINITY);
        score(b).total_cmp(&score(a)).then(a.id.cmp(&b.id))
    });
    if !completed.is_empty() {
        println!("best:");
        for t in completed.iter().take(args.top) {
            println!(
                "  trial {:>4}  score {:.4}  {:>9} params  {:>11} MACs  parent {:>4}  [{}]",
                t.id,
                t.score.unwrap_or(f64::NAN),
                t.params,
                t.macs,
                t.parent
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                t.tower.join(", ")
            );
        }
    }
    let t_now = now();
    for t in trials.iter().filter(|t| t.state == TrialState::Running) {
        println!(
            "running: trial {} on {} for {:.0} s, last heartbeat {:.0} s ago  [{}]",
            t.id,
            t.worker,
            t_now - t.started_at,
            t_now - t.heartbeat_at,
            t.tower.join(", ")
        );
    }
    if let Some(best) = best_trial(&trials) {
        println!("best so far: trial {}", best.id);
    }
    Ok(())
}

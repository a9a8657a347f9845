//! `audionas search`: runs a search from a search config into a run folder.

use super::config::{SearchConfig, Strategy};
use super::darts::{search, SearchOptions};
use crate::gpu::Gpu;
use crate::train::cli::{prepare_options, remove_unstarted_run, run_name};
use crate::train::run_dir::RunDir;
use anyhow::bail;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Search config (TOML), e.g. configs/search/darts_kws.toml; with
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
    /// The strategy, in place of the config's [search] strategy.
    #[arg(long, conflicts_with = "resume")]
    pub strategy: Option<String>,
    /// Override [train] epochs.
    #[arg(long, conflicts_with = "resume")]
    pub epochs: Option<usize>,
    /// Continue the search <runs>/<name> from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs of this call; the run stays resumable.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Feature cache folder [default: $AUDIONAS_CACHE, else ~/.cache/audionas].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

pub fn run_search(gpu: &Gpu, args: SearchArgs) -> anyhow::Result<()> {
    let name = run_name(&args.name, &args.config)?;
    let (run, config) = if args.resume {
        let run = RunDir::open_existing(&args.runs.join(&name))?;
        let config = SearchConfig::parse(&run.read_config()?, &run.config())?;
        (run, config)
    } else {
        let path = args.config.as_ref().expect("clap requires it");
        let mut config = SearchConfig::load(path)?;
        if let Some(s) = &args.strategy {
            config.search.strategy =
                Strategy::parse(s).map_err(|e| anyhow::anyhow!("--strategy: {e}"))?;
        }
        if let Some(e) = args.epochs {
            if e == 0 {
                bail!("--epochs must be at least 1");
            }
            config.train.epochs = e;
        }
        let run = RunDir::create(&args.runs, &name, &config.to_toml())?;
        (run, config)
    };
    println!("run folder {}", run.root.display());
    let options = SearchOptions {
        data_dir: args.data.clone(),
        prepare: prepare_options(&args.cache_dir),
        resume: args.resume,
        stop_after_epochs: args.stop_after,
        verbose: true,
    };
    let summary = match search(gpu, &config, &run, &options) {
        Ok(summary) => summary,
        Err(e) => {
            if !args.resume {
                remove_unstarted_run(&run);
            }
            return Err(e);
        }
    };
    println!(
        "{} epochs in {:.1} s; derived cells keep {} skip connections; {} parameters, {} MACs per clip",
        summary.epochs_done, summary.seconds, summary.genotype.skips, summary.params, summary.macs
    );
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

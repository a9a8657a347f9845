//! `audionas search`: runs a search from a search config into a run folder.

use super::config::{SearchConfig, Strategy};
use super::darts::{search, SearchOptions};
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
}

pub fn run_search(gpu: &Gpu, args: SearchArgs) -> anyhow::Result<()> {
    let name = args.run.run_name()?;
    if args.run.epochs == Some(0) {
        bail!("--epochs must be at least 1");
    }
    let (run, config) = if args.run.resume {
        let run = RunDir::open_existing(&args.run.runs.join(&name))?;
        let mut config = SearchConfig::parse(&run.read_config()?, &run.config())?;
        if let Some(e) = args.run.epochs {
            config.train.epochs = e;
            run.write_config(&config.to_toml())?;
        }
        (run, config)
    } else {
        let path = args.run.config.as_ref().expect("clap requires it");
        let mut config = SearchConfig::load(path)?;
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

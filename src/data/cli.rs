//! The `audionas data ...` commands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Classes, counts, speakers, durations and sample rates of a data set.
    Stats {
        /// The data set folder.
        dir: std::path::PathBuf,
    },
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Stats { dir } => {
            anyhow::bail!("data stats {} is not available yet", dir.display())
        }
    }
}

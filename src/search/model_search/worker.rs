//! A Model Search worker: reads the archive, proposes a tower, trains it
//! (from its parent's weights when transfer is on), writes the result
//! back, and again, until the search has its trials or its time. Workers
//! share nothing but the archive; a worker that dies leaves a running
//! trial whose heartbeat stops, and the others mark it failed.

use super::archive::{now, open_archive, ArchiveUrl, NewTrial, Outcome, Trial, TrialState};
use super::config::{Hparams, ModelSearchConfig, Objective};
use super::plots::plot_model_search;
use super::proposal::{propose, Proposal, Scored};
use crate::data::prepare::PrepareOptions;
use crate::gpu::Gpu;
use crate::train::atomic::write_durably;
use crate::train::metrics::read_epoch_records;
use crate::train::run_dir::RunDir;
use crate::train::session::Data;
use crate::train::trainer::{train_on, TrainOptions, TrainSummary};
use crate::util::rng::Rng;
use anyhow::{bail, Context};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The trials mirrored from the archive, one JSON object per line.
pub const TRIALS_FILE: &str = "trials.jsonl";
/// The trials' run folders, `trials/<id>`, inside the search's.
pub const TRIALS_DIR: &str = "trials";
/// How many proposals may be refused (over the budget, or tried before)
/// before a worker settles or gives up.
const BUDGET_ATTEMPTS: usize = 200;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub data_dir: PathBuf,
    pub prepare: PrepareOptions,
    pub archive: ArchiveUrl,
    /// Names the worker in the archive.
    pub worker: String,
    /// Its index among the workers started together (varies the proposals).
    pub index: u64,
    pub verbose: bool,
}

/// What one worker did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerReport {
    pub completed: usize,
    pub failed: usize,
}

/// Identifies a search by its resolved config, so an archive is never
/// shared by two different searches.
/// How long a search runs (`max_trials`, `time_limit_minutes`) is not part
/// of it: a resumed search may be given more.
pub fn search_id(config: &ModelSearchConfig) -> String {
    use sha1::{Digest, Sha1};
    let mut identity = config.clone();
    identity.search.max_trials = 0;
    identity.search.time_limit_minutes = None;
    let digest = Sha1::digest(identity.to_toml().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("model-search-{}", &hex[..16])
}

/// `host:pid`, and the index when several workers start together.
pub fn worker_name(index: u64) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}:{index}", std::process::id())
}

/// Runs one worker of the search whose run folder is `root`.
pub fn run_worker(
    gpu: &Gpu,
    config: &ModelSearchConfig,
    root: &Path,
    options: &WorkerOptions,
) -> anyhow::Result<WorkerReport> {
    let id = search_id(config);
    let mut archive = open_archive(&options.archive, &id)?;
    let s = &config.search;
    let deadline = match s.time_limit_minutes {
        Some(minutes) => {
            let text = archive.meta_or_insert("deadline", &(now() + minutes * 60.0).to_string())?;
            text.parse::<f64>().with_context(|| {
                format!("archive {}: deadline {text:?}", options.archive.display())
            })?
        }
        None => f64::INFINITY,
    };
    let probe = config.trial_experiment(&s.blocks[..1], &Hparams::of(&config.train));
    let data = Data::open(&options.data_dir, &probe, &options.prepare)?;
    data.write_record(root)?;
    let classes = data.classes().len();
    config
        .check_budget(classes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut report = WorkerReport::default();
    loop {
        for stale in archive.fail_stale(s.stale_after_seconds)? {
            if options.verbose {
                println!("trial {stale}: its worker went silent; marked failed");
            }
        }
        let trials = archive.trials()?;
        if trials.len() >= s.max_trials || now() >= deadline {
            break;
        }
        let completed: Vec<Scored> = trials
            .iter()
            .filter(|t| t.state == TrialState::Completed)
            .filter_map(|t| {
                t.score.map(|score| Scored {
                    id: t.id,
                    tower: t.tower.clone(),
                    score,
                })
            })
            .collect();
        let mut rng = proposal_rng(config.train.seed, trials.len(), options.index);
        let (proposal, cost) =
            propose_within_budget(config, &trials, &completed, classes, &mut rng)?;
        let hparams = config.draw_hparams(&mut rng);
        let new = NewTrial {
            parent: proposal.parent,
            tower: proposal.tower.clone(),
            hparams: json!({
                "lr": hparams.lr,
                "optimizer": hparams.optimizer,
                "move": proposal.how.name(),
            }),
            params: cost.0,
            macs: cost.1,
            worker: options.worker.clone(),
        };
        let Some(trial_id) = archive.start_trial(&new, s.max_trials)? else {
            break;
        };
        let parent_model = match (s.transfer, proposal.parent) {
            (true, Some(parent)) => trials
                .iter()
                .find(|t| t.id == parent)
                .and_then(|t| t.model_path.as_ref())
                .map(|p| root.join(p)),
            _ => None,
        };
        if options.verbose {
            println!(
                "trial {trial_id} ({}{}): [{}], {} parameters, {} MACs",
                proposal.how.name(),
                proposal
                    .parent
                    .map(|p| format!(" of {p}"))
                    .unwrap_or_default(),
                proposal.tower.join(", "),
                cost.0,
                cost.1
            );
        }
        let outcome = with_heartbeat(options, &id, trial_id, s.heartbeat_seconds, || {
            train_trial(
                gpu,
                &data,
                config,
                root,
                trial_id,
                &proposal,
                &hparams,
                parent_model,
                options,
            )
        })?;
        match &outcome {
            Outcome::Completed { score, .. } => {
                report.completed += 1;
                if options.verbose {
                    println!("trial {trial_id}: score {score:.4}");
                }
            }
            Outcome::Failed { error } => {
                report.failed += 1;
                if options.verbose {
                    println!("trial {trial_id} failed: {error}");
                }
            }
        }
        archive.finish(trial_id, &outcome)?;
        mirror_trials(root, &archive.trials()?)?;
    }
    // Leave once no trial is running, so that a dead worker's trial is
    // marked failed before the search ends.
    while archive
        .trials()?
        .iter()
        .any(|t| t.state == TrialState::Running)
    {
        std::thread::sleep(Duration::from_secs_f64(s.heartbeat_seconds));
        archive.fail_stale(s.stale_after_seconds)?;
    }
    mirror_trials(root, &archive.trials()?)?;
    Ok(report)
}

/// Proposals until one fits the budget and is not a tower tried before
/// (a tried one only when no other turns up), with its parameters and MACs.
fn propose_within_budget(
    config: &ModelSearchConfig,
    trials: &[Trial],
    completed: &[Scored],
    classes: usize,
    rng: &mut Rng,
) -> anyhow::Result<(Proposal, (u64, u64))> {
    let rules = config.rules();
    let tried: HashSet<&Vec<String>> = trials.iter().map(|t| &t.tower).collect();
    let mut repeat = None;
    for _ in 0..BUDGET_ATTEMPTS {
        let mut proposal = propose(&rules, trials.len(), completed, rng);
        proposal.tower = config.effective_tower(&proposal.tower);
        let cost = config.tower_cost(&proposal.tower, classes)?;
        if config.within_budget(&cost) {
            let cost = (cost.params, cost.macs);
            if !tried.contains(&proposal.tower) {
                return Ok((proposal, cost));
            }
            repeat.get_or_insert((proposal, cost));
        }
    }
    if let Some(found) = repeat {
        return Ok(found);
    }
    bail!(
        "{BUDGET_ATTEMPTS} proposals in a row were over the budget (max_params {:?}, max_macs {:?}); raise it or offer smaller blocks",
        config.search.max_params,
        config.search.max_macs
    )
}

/// Runs `work` while a thread with its own archive connection beats for
/// trial `id` every `seconds`.
fn with_heartbeat<T>(
    options: &WorkerOptions,
    search: &str,
    id: i64,
    seconds: f64,
    work: impl FnOnce() -> T,
) -> anyhow::Result<T> {
    let mut beating = open_archive(&options.archive, search)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let beat = scope.spawn(move || -> anyhow::Result<()> {
            // Ends when `stop` is dropped.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_secs_f64(seconds))
            {
                beating.heartbeat(id)?;
            }
            Ok(())
        });
        let result = work();
        drop(stop);
        beat.join().expect("the heartbeat thread does not panic")?;
        Ok(result)
    })
}

/// Trains one trial in `root/trials/<id>`; any error, a diverged loss
/// included, is the trial's failure, not the worker's.
#[allow(clippy::too_many_arguments)]
fn train_trial(
    gpu: &Gpu,
    data: &Data,
    config: &ModelSearchConfig,
    root: &Path,
    id: i64,
    proposal: &Proposal,
    hparams: &Hparams,
    parent_model: Option<PathBuf>,
    options: &WorkerOptions,
) -> Outcome {
    let result = (|| -> anyhow::Result<Outcome> {
        let mut experiment = config.trial_experiment(&proposal.tower, hparams);
        experiment.model.name = format!("trial_{id}");
        let run = RunDir::create(
            &root.join(TRIALS_DIR),
            &trial_dir_name(id),
            &experiment.to_toml(),
        )?;
        let train_options = TrainOptions {
            data_dir: options.data_dir.clone(),
            prepare: options.prepare.clone(),
            resume: false,
            stop_after_epochs: None,
            verbose: false,
            init_from: parent_model.filter(|p| p.is_file()),
        };
        let summary = train_on(gpu, data, &experiment, &run, &train_options)?;
        let records = read_epoch_records(&run.metrics())?;
        let best_val_loss = records
            .iter()
            .find(|r| r.epoch == summary.best_epoch)
            .and_then(|r| r.val_loss);
        let score = match config.search.objective {
            Objective::ValAccuracy => Some(summary.best_val_accuracy),
            Objective::ValLoss => best_val_loss.map(|l| -l),
        };
        let Some(score) = score.filter(|s| s.is_finite()) else {
            return Ok(Outcome::Failed {
                error: "no finite validation score (is the validation split empty?)".into(),
            });
        };
        let model_path = run
            .best_model()
            .strip_prefix(root)
            .expect("the trial folder is inside the run folder")
            .to_string_lossy()
            .into_owned();
        Ok(Outcome::Completed {
            score,
            metrics: trial_metrics(&summary, best_val_loss),
            model_path,
        })
    })();
    result.unwrap_or_else(|e| Outcome::Failed {
        error: format!("{e:#}"),
    })
}

pub fn trial_dir_name(id: i64) -> String {
    format!("{id:04}")
}

fn trial_metrics(summary: &TrainSummary, best_val_loss: Option<f64>) -> serde_json::Value {
    json!({
        "val_accuracy": summary.best_val_accuracy,
        "val_loss": best_val_loss,
        "test_accuracy": summary.test.as_ref().map(|t| t.accuracy),
        "best_epoch": summary.best_epoch,
        "epochs": summary.epochs_done,
        "seconds": summary.seconds,
        "train_samples_per_s": summary.train_samples_per_s,
        "inherited_tensors": summary.inherited.as_ref().map(|i| i.copied),
        "inherit_seconds": summary.inherited.as_ref().map(|i| i.seconds),
    })
}

/// Mirrors the archive into `root/trials.jsonl` (written atomically), the
/// tree of parents and the plots.
pub fn mirror_trials(root: &Path, trials: &[Trial]) -> anyhow::Result<()> {
    let mut text = String::new();
    for trial in trials {
        text += &serde_json::to_string(trial)?;
        text.push('\n');
    }
    write_durably(&root.join(TRIALS_FILE), text.as_bytes())?;
    plot_model_search(root, trials)?;
    Ok(())
}

/// The generator of one proposal, seeded by the search's seed, the trials
/// so far and the worker, so one worker's search is reproducible. The key
/// is hashed into the starting state: SplitMix64 started at `k * golden`
/// would give trial k + 1 the draws of trial k shifted by one, so a
/// trial's parent pick would be its predecessor's insert-or-replace draw.
fn proposal_rng(seed: u64, started: usize, worker: u64) -> Rng {
    let key = seed
        ^ (started as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ worker.wrapping_mul(0xD1B5_4A32_D192_ED03);
    Rng::new(Rng::new(key).next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_proposals_do_not_share_draws() {
        for worker in 0..2 {
            let draws = |started| {
                let mut rng = proposal_rng(0, started, worker);
                (0..16).map(|_| rng.next_u64()).collect::<Vec<_>>()
            };
            let (a, b) = (draws(7), draws(8));
            assert!(a.iter().all(|x| !b.contains(x)), "worker {worker}");
        }
        assert_eq!(
            proposal_rng(3, 5, 1).next_u64(),
            proposal_rng(3, 5, 1).next_u64()
        );
    }
}

//! The differentiable searches: a supernet trained bi-level in one session
//! (each step an architecture part on a search-validation batch, with batch
//! norm's running statistics frozen, then a weights part on a search-train
//! batch; the two halves of the training split), the architecture weights
//! logged after each epoch, and the derived architecture written for `train`.

use super::config::SearchConfig;
use super::config::Strategy;
use super::derive::{darts_choices, derive, fair_darts_choices, force_darts_choices, Genotype};
use super::plots::plot_search;
use super::space::{NORMAL_WEIGHTS, REDUCE_WEIGHTS};
use crate::data::dataset::Split;
use crate::data::prepare::PrepareOptions;
use crate::gpu::Gpu;
use crate::kernels::mixed_edge::{weights_reference, EdgeWeighting};
use crate::model::arch::Weighting;
use crate::model::{Architecture, Cost, Network};
use crate::nn::{ARCH, WEIGHTS};
use crate::train::metrics::{read_epoch_records, truncate_after_epoch, EpochRecord, MetricsLog};
use crate::train::model_file::ModelInfo;
use crate::train::plots::plot_curves;
use crate::train::progress::Progress;
use crate::train::run_dir::RunDir;
use crate::train::session::{Data, GroupConfig, PartTotals, Session, SessionConfig, StepPart};
use crate::train::write_durably;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// How `search` runs, besides its config.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    pub data_dir: PathBuf,
    pub prepare: PrepareOptions,
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// Return after this many epochs of this call (the run stays resumable).
    pub stop_after_epochs: Option<usize>,
    pub verbose: bool,
}

/// The architecture weights of one epoch, as `arch_weights.jsonl` keeps them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsRecord {
    pub epoch: usize,
    pub ops: Vec<String>,
    /// `[edge][op]`, after the weighting.
    pub normal: Vec<Vec<f64>>,
    pub reduce: Vec<Vec<f64>>,
    /// ForceDARTS: each edge's gate, `sigmoid(beta)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_gates: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_gates: Option<Vec<f64>>,
}

/// What a finished (or stopped) search reports.
#[derive(Clone, Debug, Serialize)]
pub struct SearchSummary {
    pub strategy: String,
    pub epochs_done: usize,
    pub seconds: f64,
    pub genotype: Genotype,
    /// The derived architecture's parameters and MACs per clip.
    pub params: u64,
    pub macs: u64,
    /// Where the derived architecture is (once all epochs are done, or
    /// the time limit is reached).
    pub architecture: Option<PathBuf>,
    /// The search ended before its last epoch: one more would have run
    /// past `time_limit_minutes`.
    #[serde(default)]
    pub time_limit_reached: bool,
}

/// The file names of a search run folder.
pub const ARCHITECTURE_FILE: &str = "architecture.json";
pub const ARCH_WEIGHTS_FILE: &str = "arch_weights.jsonl";
pub const RESULTS_FILE: &str = "results.json";

/// Runs (or resumes) the search of `config` in `run`.
pub fn search(
    gpu: &Gpu,
    config: &SearchConfig,
    run: &RunDir,
    options: &SearchOptions,
) -> anyhow::Result<SearchSummary> {
    let started = Instant::now();
    let experiment = config.experiment();
    let cfg = &experiment.train;
    let data = Data::open(&options.data_dir, &experiment, &options.prepare)?;
    data.write_record(&run.root)?;
    let [search_train, search_val] = data
        .loader(&experiment, Split::Train, cfg.batch_size)?
        .halves();
    let steps_per_epoch = search_train.batches_per_epoch() as u64;
    if steps_per_epoch == 0 || search_val.batches_per_epoch() == 0 {
        bail!(
            "{}: half of the {} training clips is fewer than one batch of {}; lower [train] batch_size",
            options.data_dir.display(),
            search_train.len() + search_val.len(),
            cfg.batch_size
        );
    }
    let val_loader = data.loader(&experiment, Split::Validation, cfg.batch_size)?;
    let classes = data.classes().to_vec();
    let shape = data.prepared.clip_shape.clone();
    let network = Network::build(gpu, &experiment.model, &shape, classes.len(), cfg.seed)?;
    let mut session = Session::new(
        gpu,
        network,
        &[GroupConfig::weights(&experiment), config.arch_group()],
        SessionConfig::of(cfg, steps_per_epoch),
    )?;
    let info = ModelInfo {
        architecture: experiment.model.clone(),
        features: experiment.features.clone(),
        classes,
    };
    if options.resume && run.last_checkpoint().exists() {
        session
            .resume(&run.last_checkpoint())
            .context("resuming the search")?;
    }
    let weights_log = run.root.join(ARCH_WEIGHTS_FILE);
    for path in [run.metrics(), weights_log.clone()] {
        truncate_after_epoch(&path, session.standing.epoch)?;
    }
    let mut metrics = MetricsLog::open(&run.metrics())?;
    let mut arch_weights = MetricsLog::open(&weights_log)?;
    if options.verbose {
        let count = |group: &str| -> usize {
            session
                .network
                .named_params()
                .iter()
                .filter(|(_, p)| p.group == group)
                .map(|(_, p)| p.len())
                .sum()
        };
        println!(
            "{} search: a supernet of {} layers, {} weights and {} architecture parameters; {} steps per epoch on {} + {} clips; {}",
            config.search.strategy.name(),
            experiment.model.layers.len(),
            count(WEIGHTS),
            count(ARCH),
            steps_per_epoch,
            search_train.len(),
            search_val.len(),
            gpu.describe()
        );
    }
    let last_epoch = options
        .stop_after_epochs
        .map_or(cfg.epochs, |n| (session.standing.epoch + n).min(cfg.epochs));
    let mut train_stream = search_train.forever(session.standing.step)?;
    let mut val_stream = search_val.forever(session.standing.step)?;
    let mut budget = TimeBudget::new(config.search.time_limit_minutes, &run.metrics())?;
    for epoch in session.standing.epoch..last_epoch {
        if budget.exhausted() {
            break;
        }
        let epoch_start = Instant::now();
        let regularising = epoch >= config.search.regularise_from(cfg.epochs);
        session.network.set_regularising(regularising);
        let progress = Progress::new(epoch + 1, cfg.epochs, steps_per_epoch);
        let (mut arch_seen, mut weights_seen) = (PartTotals::default(), PartTotals::default());
        let mut lr = 0.0;
        for i in 0..steps_per_epoch {
            let (val, train) = match (val_stream.next(), train_stream.next()) {
                (Some(v), Some(t)) => (v, t),
                _ => bail!("the batch stream of the training split ended"),
            };
            lr = session.lr(WEIGHTS).unwrap_or_default();
            let arch = StepPart::new(&val, &[ARCH]).frozen_stats();
            let arch = if config.search.unrolled {
                arch.unrolled(&train, WEIGHTS)
            } else {
                arch
            };
            session.step(&[arch, StepPart::new(&train, &[WEIGHTS])])?;
            let last = i + 1 == steps_per_epoch;
            if !(i as usize + 1).is_multiple_of(cfg.log_every) && !last {
                continue;
            }
            let [arch, weights] = session.take_totals()?;
            if let Some(value) = arch.bad_loss.or(weights.bad_loss) {
                progress.finish("stopped");
                bail!(
                    "search stopped: the loss became {value} in epoch {}; {}",
                    epoch + 1,
                    resume_advice(run, session.standing.epoch)
                );
            }
            for (seen, part) in [(&mut arch_seen, arch), (&mut weights_seen, weights)] {
                seen.loss_sum += part.loss_sum;
                seen.correct += part.correct;
                seen.steps += part.steps;
            }
            let samples = (weights_seen.steps * cfg.batch_size) as f64;
            progress.update(
                i + 1,
                weights_seen.mean_loss(),
                weights_seen.correct as f64 / samples,
                2.0 * samples / epoch_start.elapsed().as_secs_f64(),
            );
        }
        gpu.wait()?;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let samples = (weights_seen.steps * cfg.batch_size) as u64;
        let validation = if val_loader.is_empty() {
            None
        } else {
            Some(session.evaluate(val_loader.epoch(0))?)
        };
        let weights = read_weights(gpu, &session.network, config, epoch + 1)?;
        let gates = weights.normal_gates.iter().chain(&weights.reduce_gates);
        if (weights.normal.iter().chain(&weights.reduce).flatten())
            .chain(gates.flatten())
            .any(|w| !w.is_finite())
        {
            bail!(
                "search stopped: the architecture weights became non-finite in epoch {}; {}",
                epoch + 1,
                resume_advice(run, session.standing.epoch)
            );
        }
        // A strategy's cells may still be empty early on (FairDARTS keeps
        // only edges above its threshold): the count is then left out.
        let skips = derive_from(config, "derived", &weights)
            .map_or("-".to_string(), |(g, _)| g.skips.to_string());
        let record = EpochRecord {
            epoch: epoch + 1,
            step: session.standing.step,
            lr,
            train_loss: weights_seen.mean_loss(),
            train_accuracy: weights_seen.correct as f64 / samples.max(1) as f64,
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
            samples_per_s: 2.0 * samples as f64 / train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        progress.finish(&format!(
            "loss {:.4} (arch {:.4}) val {} skips {} {:.0} samples/s",
            record.train_loss,
            arch_seen.mean_loss(),
            record
                .val_accuracy
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            skips,
            record.samples_per_s
        ));
        budget.spend(record.seconds);
        session.standing.epoch = epoch + 1;
        arch_weights.append(&weights)?;
        metrics.append(&record)?;
        session.save_checkpoint(&run.last_checkpoint(), &info)?;
    }
    plot_curves(&read_epoch_records(&run.metrics())?, &run.plots_dir())?;

    let weights = read_weights(gpu, &session.network, config, session.standing.epoch)?;
    let name = format!("{}_{}", run.name(), config.search.strategy.name());
    let (genotype, derived) = match derive_from(config, &name, &weights) {
        Ok(derived) => derived,
        Err(e) => {
            // The weights are worth seeing, above all when nothing was derived.
            plot_search(&run.root)?;
            return Err(e);
        }
    };
    let cost = Cost::of(
        &derived,
        &shape,
        info.classes.len(),
        experiment.features.clip_ms,
        None,
    )?;
    let time_limit_reached = session.standing.epoch < cfg.epochs && budget.exhausted();
    let done = session.standing.epoch == cfg.epochs || time_limit_reached;
    let architecture = if done {
        let path = run.root.join(ARCHITECTURE_FILE);
        write_durably(&path, derived.to_json().as_bytes())?;
        Some(path)
    } else {
        None
    };
    let summary = SearchSummary {
        strategy: config.search.strategy.name().to_string(),
        epochs_done: session.standing.epoch,
        seconds: started.elapsed().as_secs_f64(),
        genotype,
        params: cost.params,
        macs: cost.macs,
        architecture,
        time_limit_reached,
    };
    if done {
        write_durably(
            &run.root.join(RESULTS_FILE),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    plot_search(&run.root)?;
    Ok(summary)
}

/// The search's time limit: the seconds of the epochs run so far (by this
/// call and by the calls it resumes) against the limit, with the mean epoch
/// as the forecast of the next.
struct TimeBudget {
    limit_seconds: Option<f64>,
    spent_seconds: f64,
    epochs: usize,
}

impl TimeBudget {
    /// `metrics` is the search's own log, already opened (so it exists).
    fn new(limit_minutes: Option<f64>, metrics: &std::path::Path) -> anyhow::Result<TimeBudget> {
        let records = read_epoch_records(metrics)?;
        Ok(TimeBudget {
            limit_seconds: limit_minutes.map(|m| m * 60.0),
            spent_seconds: records.iter().map(|r| r.seconds).sum(),
            epochs: records.len(),
        })
    }

    fn spend(&mut self, seconds: f64) {
        self.spent_seconds += seconds;
        self.epochs += 1;
    }

    /// Whether one more epoch would end past the limit (never before the
    /// first epoch: a search always has weights to derive from).
    fn exhausted(&self) -> bool {
        match self.limit_seconds {
            Some(limit) if self.epochs > 0 => {
                self.spent_seconds + self.spent_seconds / self.epochs as f64 > limit
            }
            _ => false,
        }
    }
}

fn resume_advice(run: &RunDir, epochs_done: usize) -> String {
    if epochs_done == 0 {
        "no epoch finished, so there is no checkpoint; lower lr or arch_lr, or set clip_norm, and start again".into()
    } else {
        format!(
            "the last good checkpoint is {} (after epoch {epochs_done}); lower lr or arch_lr in {}, then resume with --resume",
            run.last_checkpoint().display(),
            run.config().display()
        )
    }
}

/// One cell type's architecture weights, `[edge][op]`, after the weighting.
type Table = Vec<Vec<f64>>;

/// The architecture weights (and gates) of both cell types after `epoch` epochs.
fn read_weights(
    gpu: &Gpu,
    network: &Network,
    config: &SearchConfig,
    epoch: usize,
) -> anyhow::Result<WeightsRecord> {
    let ops = config.space().ops;
    let k = ops.len();
    let tables = config.search.tables();
    let weighting = match tables.weighting {
        Weighting::Softmax => EdgeWeighting::Softmax,
        Weighting::Sigmoid => EdgeWeighting::Sigmoid,
    };
    let state = network.state();
    let values = |name: String| -> anyhow::Result<Vec<f64>> {
        let (_, tensor) = state
            .iter()
            .find(|(n, _)| *n == name)
            .with_context(|| format!("the supernet has no {name}"))?;
        Ok(gpu.download(tensor)?.into_iter().map(f64::from).collect())
    };
    let [has_normal, has_reduce] = config.space().cell_types();
    // A cell type the network lacks has no table: its rows stay empty.
    let table = |layer: &str, present: bool| -> anyhow::Result<Table> {
        if !present {
            return Ok(Vec::new());
        }
        let alpha = values(format!("{layer}.alpha"))?;
        Ok(weights_reference(weighting, &alpha, k)
            .chunks(k)
            .map(<[f64]>::to_vec)
            .collect())
    };
    let gates = |layer: &str, present: bool| -> anyhow::Result<Option<Vec<f64>>> {
        if tables.gates.is_none() || !present {
            return Ok(None);
        }
        let beta = values(format!("{layer}.beta"))?;
        Ok(Some(weights_reference(EdgeWeighting::Sigmoid, &beta, 1)))
    };
    Ok(WeightsRecord {
        epoch,
        ops,
        normal: table(NORMAL_WEIGHTS, has_normal)?,
        reduce: table(REDUCE_WEIGHTS, has_reduce)?,
        normal_gates: gates(NORMAL_WEIGHTS, has_normal)?,
        reduce_gates: gates(REDUCE_WEIGHTS, has_reduce)?,
    })
}

/// The genotype and architecture the strategy derives from these weights.
fn derive_from(
    config: &SearchConfig,
    name: &str,
    weights: &WeightsRecord,
) -> anyhow::Result<(Genotype, Architecture)> {
    let space = config.space();
    let choose = |rows: &[Vec<f64>], gates: &Option<Vec<f64>>| {
        if rows.is_empty() {
            // No cell of this type: nothing to choose.
            return vec![None; space.edges().len()];
        }
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        match (config.search.strategy, gates) {
            (Strategy::ForceDarts, Some(gates)) => force_darts_choices(&space, &flat, gates),
            (Strategy::FairDarts, _) => fair_darts_choices(&space, &flat, config.search.threshold),
            _ => darts_choices(&space, &flat),
        }
    };
    let normal = choose(&weights.normal, &weights.normal_gates);
    let reduce = choose(&weights.reduce, &weights.reduce_gates);
    derive(&space, name, &normal, &reduce).map_err(|e| {
        anyhow::anyhow!(
            "deriving the architecture: {e} (no edge is strong enough yet: search more epochs, \
             or derive again at a lower threshold with --resume --threshold T)"
        )
    })
}

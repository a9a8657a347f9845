//! The training loop: one submit per step (forward, loss, backward,
//! optimizer), the loss and accuracy read back every `log_every` steps,
//! validation each epoch, the best model and a resumable checkpoint kept
//! after each epoch, metrics and plots in the run folder.

use super::config::Experiment;
use super::metrics::{read_epoch_records, truncate_after_epoch, EpochRecord, MetricsLog};
use super::model_file::{describe_inheritance, inherit_from_file, save_model, ModelInfo};
use super::plots::plot_curves;
use super::progress::Progress;
use super::run_dir::RunDir;
use super::session::{evaluate, Data, Evaluation, PartTotals, Session, StepPart};
use crate::data::batch::BatchLoader;
use crate::data::dataset::Split;
use crate::data::prepare::PrepareOptions;
use crate::gpu::Gpu;
use crate::model::Network;
use crate::nn::WEIGHTS;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// How `train` runs, besides the experiment.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub prepare: PrepareOptions,
    /// Continue the run from its last checkpoint.
    pub resume: bool,
    /// Return after this many epochs of this call (the run stays resumable).
    pub stop_after_epochs: Option<usize>,
    /// Print one line per epoch.
    pub verbose: bool,
    /// Start from the tensors of this model file (or run folder) whose
    /// names and shapes match; ignored when resuming.
    pub init_from: Option<PathBuf>,
}

/// What a finished (or stopped) call of `train` reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    /// On the test split, with the best model; only when all epochs are done.
    pub test: Option<Evaluation>,
    pub seconds: f64,
    pub train_samples_per_s: f64,
    pub params: u64,
    pub macs: u64,
    /// What `init_from` copied, and how long it took.
    pub inherited: Option<InheritedSummary>,
}

/// The cost of starting from a parent's weights.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct InheritedSummary {
    /// Tensors copied (name and shape matched).
    pub copied: usize,
    /// Reading the parent's file and copying its tensors.
    pub seconds: f64,
}

/// What to do once the loss is not finite, `epochs_done` epochs into the run:
/// go back to the last checkpoint with other settings, or, when no epoch
/// finished (so there is no checkpoint), start again.
fn divergence_advice(run: &RunDir, epochs_done: usize) -> String {
    if epochs_done == 0 {
        "no epoch finished, so there is no checkpoint to go back to; lower lr or set clip_norm in [train], or check the data, and start again".into()
    } else {
        format!(
            "the last good checkpoint is kept in {} (after epoch {epochs_done}); lower lr or set clip_norm in [train] of {}, or check the data, then resume with --resume",
            run.last_checkpoint().display(),
            run.config().display()
        )
    }
}

/// Trains `experiment` in `run`, from scratch or from its last checkpoint.
pub fn train(
    gpu: &Gpu,
    experiment: &Experiment,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let data = Data::open(&options.data_dir, experiment, &options.prepare)?;
    train_on(gpu, &data, experiment, run, options)
}

/// Trains `experiment` on data already opened (a search trains many
/// networks on one `Data`).
pub fn train_on(
    gpu: &Gpu,
    data: &Data,
    experiment: &Experiment,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    data.write_record(&run.root)?;
    let cfg = &experiment.train;
    let classes = data.classes().to_vec();
    let train_loader = data.loader(experiment, Split::Train, cfg.batch_size)?;
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    if steps_per_epoch == 0 {
        bail!(
            "{}: {} training clips are fewer than one batch of {}; lower [train] batch_size",
            options.data_dir.display(),
            train_loader.len(),
            cfg.batch_size
        );
    }
    let val_loader = data.loader(experiment, Split::Validation, cfg.batch_size)?;
    let shape = data.prepared.clip_shape.clone();
    let network = Network::build(gpu, &experiment.model, &shape, classes.len(), cfg.seed)?;
    let info = ModelInfo {
        architecture: experiment.model.clone(),
        features: experiment.features.clone(),
        classes: classes.clone(),
    };
    let resuming = options.resume && run.last_checkpoint().exists();
    let mut inherited = None;
    if let (Some(parent), false) = (&options.init_from, resuming) {
        let started = Instant::now();
        let report = inherit_from_file(gpu, &network, parent)?;
        inherited = Some(InheritedSummary {
            copied: report.copied.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
        if options.verbose {
            println!("{}", describe_inheritance(&report, parent));
        }
    }
    let mut session = Session::of_weights(gpu, network, experiment, steps_per_epoch)?;
    if resuming {
        session
            .resume(&run.last_checkpoint())
            .context("resuming the run")?;
    }
    let result = epochs(
        &mut session,
        data,
        experiment,
        run,
        options,
        &train_loader,
        &val_loader,
        &info,
    );
    plot_curves(&read_epoch_records(&run.metrics())?, &run.plots_dir())?;
    let train_time = result?;
    let standing = session.standing;
    let test = if standing.epoch == cfg.epochs {
        let test_loader = data.loader(experiment, Split::Test, cfg.batch_size)?;
        if test_loader.is_empty() {
            None
        } else {
            let (mut best, _, _) = super::model_file::load_model(gpu, &run.best_model(), None)?;
            Some(evaluate(gpu, &mut best, test_loader.epoch(0))?)
        }
    } else {
        None
    };
    let summary = TrainSummary {
        epochs_done: standing.epoch,
        best_epoch: standing.best_epoch,
        best_val_accuracy: standing.best_val_accuracy,
        test,
        seconds: started.elapsed().as_secs_f64(),
        train_samples_per_s: train_time.samples as f64 / train_time.seconds.max(1e-9),
        params: session.network.parameter_count(),
        macs: session.network.macs()?,
        inherited,
    };
    if summary.test.is_some() {
        let path = run.root.join("results.json");
        super::atomic::write_durably(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    Ok(summary)
}

/// Samples trained and the seconds it took.
struct TrainTime {
    samples: u64,
    seconds: f64,
}

/// The epochs of this call: steps, validation, the best model and the
/// checkpoint after each.
#[allow(clippy::too_many_arguments)]
fn epochs(
    session: &mut Session,
    data: &Data,
    experiment: &Experiment,
    run: &RunDir,
    options: &TrainOptions,
    train_loader: &BatchLoader,
    val_loader: &BatchLoader,
    info: &ModelInfo,
) -> anyhow::Result<TrainTime> {
    let cfg = &experiment.train;
    let gpu = session.gpu();
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    if run.metrics().exists() {
        truncate_after_epoch(&run.metrics(), session.standing.epoch)?;
    }
    let mut metrics = MetricsLog::open(&run.metrics())?;
    if options.verbose {
        println!(
            "{}: {} parameters, {} MACs per clip; {} classes; {} training clips, {} steps per epoch; {}",
            experiment.model.name,
            session.network.parameter_count(),
            session.network.macs()?,
            data.classes().len(),
            train_loader.len(),
            steps_per_epoch,
            gpu.describe()
        );
        if session.standing.epoch > 0 {
            println!("resuming after epoch {}", session.standing.epoch);
        }
    }
    let batch = cfg.batch_size;
    let mut time = TrainTime {
        samples: 0,
        seconds: 0.0,
    };
    let last_epoch = match options.stop_after_epochs {
        Some(n) => (session.standing.epoch + n).min(cfg.epochs),
        None => cfg.epochs,
    };
    for epoch in session.standing.epoch..last_epoch {
        let epoch_start = Instant::now();
        let progress = Progress::new(epoch + 1, cfg.epochs, steps_per_epoch);
        let mut seen = PartTotals::default();
        let mut lr = 0.0;
        for (i, host_batch) in train_loader.epoch(epoch as u64).enumerate() {
            lr = session.lr(WEIGHTS).unwrap_or_default();
            session.step(&[StepPart::new(&host_batch, &[WEIGHTS])])?;
            let last = i as u64 + 1 == steps_per_epoch;
            if (i + 1) % cfg.log_every != 0 && !last {
                continue;
            }
            let [totals, _] = session.take_totals()?;
            if let Some(value) = totals.bad_loss {
                progress.finish("stopped");
                bail!(
                    "training stopped: the loss became {value} in epoch {} (by step {}); {}",
                    epoch + 1,
                    session.standing.step,
                    divergence_advice(run, session.standing.epoch)
                );
            }
            seen.loss_sum += totals.loss_sum;
            seen.correct += totals.correct;
            seen.steps += totals.steps;
            let samples = (seen.steps * batch) as f64;
            progress.update(
                i as u64 + 1,
                seen.mean_loss(),
                seen.correct as f64 / samples,
                samples / epoch_start.elapsed().as_secs_f64(),
            );
        }
        gpu.wait()?;
        let epoch_train_seconds = epoch_start.elapsed().as_secs_f64();
        let samples = seen.steps as u64 * batch as u64;
        time.seconds += epoch_train_seconds;
        time.samples += samples;
        let validation = if val_loader.is_empty() {
            None
        } else {
            Some(session.evaluate(val_loader.epoch(0))?)
        };
        if let Some(v) = validation.as_ref().filter(|v| !v.loss.is_finite()) {
            bail!(
                "training stopped: the validation loss became {} after epoch {}; {}",
                v.loss,
                epoch + 1,
                divergence_advice(run, session.standing.epoch)
            );
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            step: session.standing.step,
            lr,
            train_loss: seen.mean_loss(),
            train_accuracy: seen.correct as f64 / samples.max(1) as f64,
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
            samples_per_s: samples as f64 / epoch_train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        progress.finish(&format!(
            "loss {:.4} acc {:.1}% val {} {:.0} samples/s",
            record.train_loss,
            100.0 * record.train_accuracy,
            record
                .val_accuracy
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            record.samples_per_s
        ));
        // The metrics line goes first: a kill before the checkpoint below
        // makes the resumed run redo this epoch and trim the line.
        metrics.append(&record)?;
        // Without validation data, the latest model is the best one.
        let score = record.val_accuracy.unwrap_or(record.epoch as f64);
        session.standing.epoch = epoch + 1;
        if score > session.standing.best_val_accuracy {
            session.standing.best_val_accuracy = score;
            session.standing.best_epoch = epoch + 1;
            save_model(
                gpu,
                &run.best_model(),
                &session.network,
                info,
                &[
                    ("epoch", (epoch + 1).to_string()),
                    ("val_accuracy", format!("{score}")),
                    ("data", serde_json::to_string(&experiment.data)?),
                ],
            )?;
        }
        session.save_checkpoint(&run.last_checkpoint(), info)?;
        if options.verbose {
            println!("{}", serde_json::to_string(&record)?);
        }
    }
    Ok(time)
}

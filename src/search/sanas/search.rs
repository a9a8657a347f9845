//! The static SANAS search: per step, every sample draws its gates, the
//! batch trains the weights of what each sample runs (one session step),
//! the per-sample losses are read back and the gates take a REINFORCE step.
//! After each epoch the deterministic architecture (gates with p > 0.5) is
//! scored on the validation split and the epoch is checkpointed; the gates
//! go to `gates.jsonl` with the same epoch, so a killed search resumes.

use super::gates::{rewards, GateState, ReinforceStep};
use super::plots::{plot_stream_sweep, StreamPoint};
use super::streaming::{score_model, validation_stream, ReferenceScore, StreamScore};
use super::{CostKind, SanasConfig, STRATEGY};
use crate::data::dataset::Split;
use crate::gpu::Gpu;
use crate::kernels::optimizers::Adam;
use crate::model::{Architecture, Cost, Network};
use crate::nn::WEIGHTS;
use crate::train::metrics::{
    json_lines, read_epoch_records, truncate_after_epoch, EpochRecord, MetricsLog,
};
use crate::train::model_file::{describe_inheritance, inherit_from_file, save_model, ModelInfo};
use crate::train::plots::plot_curves;
use crate::train::progress::Progress;
use crate::train::run_dir::RunDir;
use crate::train::session::{Data, Session, StepPart};
use crate::train::write_durably;
use crate::util::rng::Rng;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The gate log of a search point, one line per epoch.
pub const GATES_FILE: &str = "gates.jsonl";
/// The folder of a run that holds one search per lambda.
pub const POINTS_DIR: &str = "points";
/// The measured layer times of a run whose cost is latency.
pub const LATENCY_FILE: &str = "latency.json";
/// Timed inferences behind each layer's median time.
const LATENCY_RUNS: usize = 20;

/// Each layer's median GPU time per clip at batch 1 on one adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    pub adapter: String,
    pub batch: usize,
    pub runs: usize,
    pub layers: Vec<String>,
    pub ms: Vec<f64>,
}

/// How `search` runs, besides its config: as the differentiable searches.
pub use crate::search::darts::SearchOptions as SanasOptions;

/// The gates after an epoch and what the epoch's draws cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub epoch: usize,
    /// The gated layers, in order.
    pub gates: Vec<String>,
    pub probabilities: Vec<f64>,
    /// Mean over the epoch's samples of the cost of what each one ran.
    pub mean_sampled_cost: f64,
    pub mean_reward: f64,
    pub arch_loss: f64,
    /// The cost of the deterministic architecture (p > 0.5).
    pub kept_cost: f64,
    pub state: GateState,
}

/// One search point (one lambda), as its `results.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub lambda: f64,
    pub budget: f64,
    pub cost: CostKind,
    pub epochs: usize,
    pub seconds: f64,
    /// The supernet's cost with every gate open.
    pub full_cost: f64,
    /// The kept gates and the deterministic architecture's cost.
    pub kept: Vec<String>,
    pub kept_cost: f64,
    pub probabilities: Vec<f64>,
    pub params: u64,
    pub macs: u64,
    /// Scored with the supernet's weights, p > 0.5 kept (not retrained).
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// The kept part as a plain description; none when no path is left
    /// (or when the search is adaptive: then `kept_cost` and `macs` are
    /// the mean over test windows, `probabilities` how often each gate
    /// was open, and the accuracies per window of streams).
    pub architecture: Option<PathBuf>,
    #[serde(default)]
    pub adaptive: bool,
    /// The streaming test on the sweep's validation stream, where the
    /// config asks for one (`stream_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamScore>,
}

/// What a whole SANAS run reports in its `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct SanasSummary {
    pub strategy: String,
    pub cost: CostKind,
    pub seconds: f64,
    pub points: Vec<PointSummary>,
    /// The point whose architecture the run's `architecture.json` is: the
    /// best validation accuracy (the cheaper on a tie).
    pub best: Option<usize>,
    pub params: u64,
    pub macs: u64,
    pub architecture: Option<PathBuf>,
    /// The reference models on the sweep's validation stream.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceScore>,
}

/// The folder name of the point of `lambda`.
pub fn point_name(lambda: f64) -> String {
    format!("lambda_{lambda}")
}

/// Runs (or resumes) one search per lambda of `config` in `run`, then
/// writes the run's `results.json` and `architecture.json`.
pub fn search(
    gpu: &Gpu,
    config: &SanasConfig,
    run: &RunDir,
    options: &SanasOptions,
) -> anyhow::Result<SanasSummary> {
    let started = Instant::now();
    let data = Data::open(&options.data_dir, &config.experiment, &options.prepare)?;
    data.write_record(&run.root)?;
    let layer_ms = match config.search.cost {
        CostKind::Latency => Some(latency_table(gpu, config, &data, run, options.verbose)?.ms),
        _ => None,
    };
    let stream = (config.search.stream_seconds > 0.0)
        .then(|| validation_stream(&data, config))
        .transpose()?;
    let stride_ms = config.search.window_stride_ms as i64;
    let points_dir = run.root.join(POINTS_DIR);
    let mut points = Vec::new();
    for &lambda in &config.search.lambdas {
        let name = point_name(lambda);
        let point_run = match RunDir::open_existing(&points_dir.join(&name)) {
            Ok(existing) => existing,
            Err(_) => RunDir::create(&points_dir, &name, &config.to_toml())?,
        };
        let results = point_run.root.join(crate::search::darts::RESULTS_FILE);
        let mut point = if results.is_file() {
            read_point(&results)?
        } else {
            match search_point(
                gpu,
                config,
                &data,
                lambda,
                &point_run,
                options,
                layer_ms.as_deref(),
            )? {
                Some(point) => point,
                None => break,
            }
        };
        // Scored after the point's results are written, so a search
        // killed while scoring scores the point again when resumed.
        let runnable = point.adaptive || point.architecture.is_some();
        if let (Some(stream), None, true) = (&stream, &point.stream, runnable) {
            let score = score_model(gpu, &point_run.root, stream, stride_ms)?;
            if options.verbose {
                println!(
                    "lambda {lambda} on the validation stream: matched {:.1}% of {} words, false alarms {:.1}%, {:.0} MACs per window",
                    score.matched, score.words, score.false_alarms, score.macs_per_window
                );
            }
            point.stream = Some(score);
            write_durably(&results, serde_json::to_string_pretty(&point)?.as_bytes())?;
        }
        points.push(point);
    }
    let mut references = Vec::new();
    if let Some(stream) = &stream {
        for model in &config.search.reference_models {
            let score = score_model(gpu, model, stream, stride_ms)
                .with_context(|| format!("[search] reference_models: {}", model.display()))?;
            if options.verbose {
                println!(
                    "reference {} on the validation stream: matched {:.1}%, {:.0} MACs per window",
                    model.display(),
                    score.matched,
                    score.macs_per_window
                );
            }
            references.push(ReferenceScore {
                model: model.clone(),
                score,
            });
        }
    }
    let best = (0..points.len())
        .filter(|&i| points[i].architecture.is_some())
        .max_by(|&a, &b| {
            let (pa, pb) = (&points[a], &points[b]);
            let acc = |p: &PointSummary| p.val_accuracy.unwrap_or(0.0);
            acc(pa).total_cmp(&acc(pb)).then(pb.macs.cmp(&pa.macs))
        });
    let mut architecture = None;
    if let Some(path) = best.and_then(|i| points[i].architecture.as_ref()) {
        let out = run.root.join(crate::search::darts::ARCHITECTURE_FILE);
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        write_durably(&out, &bytes)?;
        architecture = Some(out);
    }
    let summary = SanasSummary {
        strategy: STRATEGY.into(),
        cost: config.search.cost,
        seconds: points.iter().map(|p| p.seconds).sum::<f64>(),
        params: best.map_or(0, |i| points[i].params),
        macs: best.map_or(0, |i| points[i].macs),
        best,
        architecture,
        points,
        references,
    };
    let sweep = super::plots::plot_sweep(&summary.points, &run.plots_dir())?;
    let stream_sweep = plot_stream_sweep(&stream_points(&summary), &run.plots_dir())?;
    for path in sweep.iter().chain(&stream_sweep) {
        if options.verbose {
            println!("plot: {}", path.display());
        }
    }
    if summary.points.len() == config.search.lambdas.len() {
        write_durably(
            &run.root.join(crate::search::darts::RESULTS_FILE),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    if options.verbose {
        println!("{:.1} s this call", started.elapsed().as_secs_f64());
    }
    Ok(summary)
}

/// The run's table of layer times: read from its `latency.json`, or
/// measured on `gpu` (every gate open) and written there, so that every
/// point and every resumed call prices a draw the same way.
fn latency_table(
    gpu: &Gpu,
    config: &SanasConfig,
    data: &Data,
    run: &RunDir,
    verbose: bool,
) -> anyhow::Result<LatencyTable> {
    let arch = &config.experiment.model;
    let names: Vec<String> = (0..arch.layers.len()).map(|i| arch.layer_name(i)).collect();
    let path = run.root.join(LATENCY_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let table: LatencyTable = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a table of layer times", path.display()))?;
        if table.layers != names || table.ms.len() != names.len() {
            bail!(
                "{}: measured for the layers {:?}, but the model has {:?}; delete it to measure again",
                path.display(),
                table.layers,
                names
            );
        }
        return Ok(table);
    }
    let classes = data.classes().len();
    let mut network = Network::build(gpu, arch, &data.prepared.clip_shape, classes, 0)?;
    let Some(ms) = crate::model::measure_layer_latency(gpu, &mut network, 1, LATENCY_RUNS)? else {
        bail!(
            "[search] cost = \"latency\" times layers with timestamp queries, which {} lacks; use cost = \"macs\" or \"params\"",
            gpu.describe()
        );
    };
    let table = LatencyTable {
        adapter: gpu.describe(),
        batch: 1,
        runs: LATENCY_RUNS,
        layers: names,
        ms,
    };
    write_durably(&path, serde_json::to_string_pretty(&table)?.as_bytes())?;
    if verbose {
        let total: f64 = table.ms.iter().sum();
        println!(
            "layer times on {}: {total:.3} ms per clip with every gate open ({})",
            table.adapter,
            path.display()
        );
    }
    Ok(table)
}

/// The points and reference models that have a streaming score, for the
/// sweep's Match plot.
fn stream_points(summary: &SanasSummary) -> Vec<StreamPoint> {
    let points = summary.points.iter().filter_map(|p| {
        p.stream.as_ref().map(|s| StreamPoint {
            name: format!("lambda {}", p.lambda),
            macs_per_window: s.macs_per_window,
            matched: s.matched,
            reference: false,
        })
    });
    let references = summary.references.iter().map(|r| StreamPoint {
        name: r.model.file_name().map_or_else(
            || r.model.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        macs_per_window: r.score.macs_per_window,
        matched: r.score.matched,
        reference: true,
    });
    points.chain(references).collect()
}

fn read_point(path: &Path) -> anyhow::Result<PointSummary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a SANAS point summary", path.display()))
}

/// The activity of one draw of the gates and its cost, kept per draw.
pub(super) struct DrawCosts<'a> {
    arch: &'a Architecture,
    shape: Vec<usize>,
    classes: usize,
    clip_ms: f64,
    kind: CostKind,
    /// Each layer's measured time, for the latency cost.
    layer_ms: Option<&'a [f64]>,
    known: HashMap<Vec<bool>, (Vec<bool>, f64)>,
}

impl<'a> DrawCosts<'a> {
    pub(super) fn new(
        arch: &'a Architecture,
        shape: Vec<usize>,
        classes: usize,
        clip_ms: f64,
        kind: CostKind,
        layer_ms: Option<&'a [f64]>,
    ) -> Self {
        DrawCosts {
            arch,
            shape,
            classes,
            clip_ms,
            kind,
            layer_ms,
            known: HashMap::new(),
        }
    }

    /// Which layers run under `open`, and what that costs.
    pub(super) fn of(&mut self, open: &[bool]) -> anyhow::Result<&(Vec<bool>, f64)> {
        if !self.known.contains_key(open) {
            let activity = self.arch.activity(&self.arch.gate_mask(open))?;
            let counted = || {
                let shape = &self.shape;
                Cost::of(
                    self.arch,
                    shape,
                    self.classes,
                    self.clip_ms,
                    Some(&activity),
                )
            };
            let value = match (self.kind, self.layer_ms) {
                (CostKind::Macs, _) => counted()?.macs as f64,
                (CostKind::Params, _) => counted()?.params as f64,
                (CostKind::Latency, Some(ms)) => activity
                    .runs
                    .iter()
                    .zip(ms)
                    .filter(|(runs, _)| **runs)
                    .map(|(_, ms)| ms)
                    .sum(),
                (CostKind::Latency, None) => bail!("the latency cost has no table of layer times"),
            };
            self.known.insert(open.to_vec(), (activity.runs, value));
        }
        Ok(&self.known[open])
    }
}

/// A point's super network: a fresh draw, with `[search] init_from`'s
/// tensors copied in where the point starts afresh (a resumed point reads
/// its checkpoint instead).
pub(super) fn super_network(
    gpu: &Gpu,
    config: &SanasConfig,
    shape: &[usize],
    classes: usize,
    run: &RunDir,
    options: &SanasOptions,
) -> anyhow::Result<Network> {
    let experiment = &config.experiment;
    let network = Network::build(
        gpu,
        &experiment.model,
        shape,
        classes,
        experiment.train.seed,
    )?;
    let resuming = options.resume && run.last_checkpoint().exists();
    if let (Some(parent), false) = (&config.search.init_from, resuming) {
        let key = || format!("[search] init_from: {}", parent.display());
        let report = inherit_from_file(gpu, &network, parent).with_context(key)?;
        if report.copied.is_empty() {
            bail!(
                "{}: no tensor of it has the name and shape of one of the super network's",
                key()
            );
        }
        if options.verbose {
            println!("{}", describe_inheritance(&report, parent));
        }
    }
    Ok(network)
}

/// Trains the point of `lambda` to the end (or to `stop_after_epochs`) and
/// summarises it; `None` when it stopped early by request.
fn search_point(
    gpu: &Gpu,
    config: &SanasConfig,
    data: &Data,
    lambda: f64,
    run: &RunDir,
    options: &SanasOptions,
    layer_ms: Option<&[f64]>,
) -> anyhow::Result<Option<PointSummary>> {
    let experiment = &config.experiment;
    let settings = &config.search;
    let cfg = &experiment.train;
    let arch = &experiment.model;
    let train_loader = data.loader(experiment, Split::Train, cfg.batch_size)?;
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    if steps_per_epoch == 0 {
        bail!(
            "{}: the {} training clips are fewer than one batch of {}; lower [train] batch_size",
            options.data_dir.display(),
            train_loader.len(),
            cfg.batch_size
        );
    }
    let val_loader = data.loader(experiment, Split::Validation, cfg.batch_size)?;
    let test_loader = data.loader(experiment, Split::Test, cfg.batch_size)?;
    let classes = data.classes().to_vec();
    let shape = data.prepared.clip_shape.clone();
    let clip_ms = experiment.features.clip_ms;
    let gate_names: Vec<String> = arch
        .gated_layers()
        .into_iter()
        .map(|i| arch.layer_name(i))
        .collect();
    let mut costs = DrawCosts::new(
        arch,
        shape.clone(),
        classes.len(),
        clip_ms,
        settings.cost,
        layer_ms,
    );
    if settings.adaptive {
        return super::adaptive::search_point(
            gpu, config, data, lambda, run, options, costs, gate_names,
        );
    }
    let network = super_network(gpu, config, &shape, classes.len(), run, options)?;
    let mut session = Session::of_weights(gpu, network, experiment, steps_per_epoch)?;
    let info = ModelInfo {
        architecture: arch.clone(),
        features: experiment.features.clone(),
        classes: classes.clone(),
    };
    let mut gates = GateState::new(gate_names.len(), settings.gate_init);
    let gates_log = run.root.join(GATES_FILE);
    if options.resume && run.last_checkpoint().exists() {
        session
            .resume(&run.last_checkpoint())
            .context("resuming the search")?;
        gates = read_gate_state(&gates_log, session.standing.epoch)?;
    }
    for path in [run.metrics(), gates_log.clone()] {
        truncate_after_epoch(&path, session.standing.epoch)?;
    }
    let mut metrics = MetricsLog::open(&run.metrics())?;
    let mut gate_records = MetricsLog::open(&gates_log)?;
    let full_cost = costs.of(&vec![true; gate_names.len()])?.1;
    if options.verbose {
        println!(
            "sanas search, lambda {lambda}: {} gated nodes ({}), full cost {full_cost:.0} {:?}; {steps_per_epoch} steps per epoch; {}",
            gate_names.len(),
            gate_names.join(", "),
            settings.cost,
            gpu.describe()
        );
    }
    let adam = Adam::new(settings.gate_lr as f32);
    let last_epoch = options
        .stop_after_epochs
        .map_or(cfg.epochs, |n| (session.standing.epoch + n).min(cfg.epochs));
    let mut stream = train_loader.forever(session.standing.step)?;
    for epoch in session.standing.epoch..last_epoch {
        let epoch_start = Instant::now();
        let progress = Progress::new(epoch + 1, cfg.epochs, steps_per_epoch);
        let (mut cost_sum, mut seen) = (0.0, 0usize);
        let mut reinforce = ReinforceStep::default();
        let (mut loss_sum, mut correct, mut steps) = (0.0, 0u64, 0usize);
        let mut lr = 0.0;
        for i in 0..steps_per_epoch {
            let batch = stream
                .next()
                .context("the batch stream of the training split ended")?;
            let mut rng = Rng::new(
                cfg.seed ^ (session.standing.step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let draws = gates.sample(cfg.batch_size, &mut rng);
            let mut runs = Vec::with_capacity(draws.len());
            let mut draw_costs = Vec::with_capacity(draws.len());
            for open in &draws {
                let (r, c) = costs.of(open)?;
                runs.push(r.clone());
                draw_costs.push(*c);
            }
            session.network.set_sample_activity(gpu, Some(&runs))?;
            lr = session.lr(WEIGHTS).unwrap_or_default();
            session.step(&[StepPart::new(&batch, &[WEIGHTS])])?;
            let losses = session.sample_losses()?;
            let r = rewards(&losses, &draw_costs, lambda, settings.budget, full_cost);
            let step = gates.reinforce(&draws, &r, settings.baseline_decay, &adam);
            reinforce.mean_reward += step.mean_reward;
            reinforce.arch_loss += step.arch_loss;
            cost_sum += draw_costs.iter().sum::<f64>();
            seen += draws.len();
            let last = i + 1 == steps_per_epoch;
            if !(i as usize + 1).is_multiple_of(cfg.log_every) && !last {
                continue;
            }
            let [totals, _] = session.take_totals()?;
            if let Some(value) = totals.bad_loss {
                progress.finish("stopped");
                bail!(
                    "search stopped: the loss became {value} in epoch {}; lower [train] lr and start again",
                    epoch + 1
                );
            }
            loss_sum += totals.loss_sum;
            correct += totals.correct;
            steps += totals.steps;
            let samples = (steps * cfg.batch_size) as f64;
            progress.update(
                i + 1,
                loss_sum / steps.max(1) as f64,
                correct as f64 / samples,
                samples / epoch_start.elapsed().as_secs_f64(),
            );
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let kept = gates.kept();
        session.network.set_sample_activity(gpu, None)?;
        session.network.set_mask(&arch.gate_mask(&kept))?;
        let validation = if val_loader.is_empty() {
            None
        } else {
            Some(session.evaluate(val_loader.epoch(0))?)
        };
        let samples = steps * cfg.batch_size;
        let record = EpochRecord {
            epoch: epoch + 1,
            step: session.standing.step,
            lr,
            train_loss: loss_sum / steps.max(1) as f64,
            train_accuracy: correct as f64 / samples.max(1) as f64,
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
            samples_per_s: samples as f64 / train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let gate_record = GateRecord {
            epoch: epoch + 1,
            gates: gate_names.clone(),
            probabilities: gates.probabilities(),
            mean_sampled_cost: cost_sum / seen.max(1) as f64,
            mean_reward: reinforce.mean_reward / steps_per_epoch as f64,
            arch_loss: reinforce.arch_loss / steps_per_epoch as f64,
            kept_cost: costs.of(&kept)?.1,
            state: gates.clone(),
        };
        progress.finish(&format!(
            "loss {:.4} val {} sampled cost {:.0} ({:.0}% of all) kept {}/{} {:.0} samples/s",
            record.train_loss,
            record
                .val_accuracy
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
            gate_record.mean_sampled_cost,
            100.0 * gate_record.mean_sampled_cost / full_cost.max(f64::MIN_POSITIVE),
            kept.iter().filter(|&&k| k).count(),
            kept.len(),
            record.samples_per_s
        ));
        session.standing.epoch = epoch + 1;
        gate_records.append(&gate_record)?;
        metrics.append(&record)?;
        session.save_checkpoint(&run.last_checkpoint(), &info)?;
    }
    plot_curves(&read_epoch_records(&run.metrics())?, &run.plots_dir())?;
    if session.standing.epoch < cfg.epochs {
        return Ok(None);
    }

    // The deterministic architecture on the supernet's weights.
    let scoring = Instant::now();
    let kept = gates.kept();
    let mask = arch.gate_mask(&kept);
    session.network.set_sample_activity(gpu, None)?;
    session.network.set_mask(&mask)?;
    let score = |session: &mut Session, loader: &crate::data::batch::BatchLoader| {
        if loader.is_empty() {
            Ok(None)
        } else {
            session.evaluate(loader.epoch(0)).map(|e| Some(e.accuracy))
        }
    };
    let val_accuracy = score(&mut session, &val_loader)?;
    let test_accuracy = score(&mut session, &test_loader)?;
    let activity = arch.activity(&mask)?;
    let (architecture, params, macs) = match arch.pruned(&activity) {
        Ok(mut derived) => {
            derived.name = format!("sanas_{}", point_name(lambda));
            let cost = Cost::of(&derived, &shape, classes.len(), clip_ms, None)?;
            let path = run.root.join(crate::search::darts::ARCHITECTURE_FILE);
            write_durably(&path, derived.to_json().as_bytes())?;
            save_kept_model(gpu, &session.network, &derived, &info, experiment, run)?;
            (Some(path), cost.params, cost.macs)
        }
        Err(e) => {
            eprintln!("lambda {lambda}: no architecture: {e}");
            (None, 0, 0)
        }
    };
    let point = PointSummary {
        lambda,
        budget: settings.budget,
        cost: settings.cost,
        epochs: session.standing.epoch,
        seconds: point_seconds(run, scoring)?,
        full_cost,
        kept: named_where(&gate_names, kept.iter().copied()),
        kept_cost: costs.of(&kept)?.1,
        probabilities: gates.probabilities(),
        params,
        macs,
        val_accuracy,
        test_accuracy,
        architecture,
        adaptive: false,
        stream: None,
    };
    write_durably(
        &run.root.join(crate::search::darts::RESULTS_FILE),
        serde_json::to_string_pretty(&point)?.as_bytes(),
    )?;
    super::plots::plot_gates(&run.root.join(GATES_FILE), full_cost, &run.plots_dir())?;
    Ok(Some(point))
}

/// Saves the kept part with the super network's weights as the point's
/// model file, so that `eval` and `infer` (`--stream` too) take the point
/// like any trained run; its layers keep their names, so every tensor is
/// the super network's.
fn save_kept_model(
    gpu: &Gpu,
    supernet: &Network,
    derived: &Architecture,
    info: &ModelInfo,
    experiment: &crate::train::config::Experiment,
    run: &RunDir,
) -> anyhow::Result<()> {
    let kept = Network::build(
        gpu,
        derived,
        supernet.input_shape(),
        supernet.classes(),
        experiment.train.seed,
    )?;
    let inherited = kept.inherit_from(gpu, supernet)?;
    if !inherited.missing.is_empty() || !inherited.reshaped.is_empty() {
        bail!(
            "the kept part of {:?} does not match the super network's tensors: {inherited:?}",
            derived.name
        );
    }
    let info = ModelInfo {
        architecture: derived.clone(),
        ..info.clone()
    };
    save_model(
        gpu,
        &run.best_model(),
        &kept,
        &info,
        &[("data", serde_json::to_string(&experiment.data)?)],
    )
}

/// A point's search time: every epoch's (a resumed search's earlier calls
/// too) and the final scoring's since `scoring`.
pub(super) fn point_seconds(run: &RunDir, scoring: Instant) -> anyhow::Result<f64> {
    let epochs: f64 = read_epoch_records(&run.metrics())?
        .iter()
        .map(|r| r.seconds)
        .sum();
    Ok(epochs + scoring.elapsed().as_secs_f64())
}

/// The names whose flag is set.
pub(super) fn named_where(names: &[String], flags: impl Iterator<Item = bool>) -> Vec<String> {
    names
        .iter()
        .zip(flags)
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The gate state the log holds for `epoch` (the checkpoint's).
fn read_gate_state(path: &Path, epoch: usize) -> anyhow::Result<GateState> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: the gate log of the checkpoint is missing",
            path.display()
        )
    })?;
    for (number, _, value) in json_lines(path, &text)? {
        let Some(value) = value else { continue };
        if value.get("epoch").and_then(|e| e.as_u64()) == Some(epoch as u64) {
            let record: GateRecord = serde_json::from_value(value).with_context(|| {
                format!("{}: line {number} is not a gate record", path.display())
            })?;
            return Ok(record.state);
        }
    }
    bail!(
        "{}: no gate record of epoch {epoch}, the checkpoint's; the run cannot resume",
        path.display()
    )
}

//! Ensembles: an architecture retrained P times from scratch (another seed,
//! so other initial weights and another data order, each time), combined
//! by a weighted average of the replicas' logits. The weights are learned
//! on the validation split (non-negative, summing to 1: `w = softmax(v)`,
//! minimising the cross-entropy of the combined logits), or all 1/P.
//!
//! The ensemble is one plain architecture: every replica's layers, renamed
//! `r<i>.<layer>`, side by side from the input, joined by a `weighted_sum`
//! layer; one model file that `eval` and `infer` take as any other, all
//! replicas running in one submission per batch.

use crate::data::dataset::Split;
use crate::gpu::Gpu;
use crate::model::arch::{LayerSpec, Op, INPUT};
use crate::model::{Architecture, Network};
use crate::train::config::Experiment;
use crate::train::model_file::{read_model_tensors, save_model, ModelInfo};
use crate::train::run_dir::RunDir;
use crate::train::session::{evaluate, predict, Data, Evaluation, Predictions};
use crate::train::trainer::{train_on, TrainOptions};
use crate::train::write_durably;
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::Path;

/// The replicas' run folders, `replicas/<i>`, inside the ensemble's.
pub const REPLICAS_DIR: &str = "replicas";
/// The name of the combining layer.
pub const COMBINE_LAYER: &str = "ensemble";

/// How the replicas' logits are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Weights learned on the validation split.
    Weighted,
    /// The plain mean.
    Average,
}

impl Combine {
    pub fn parse(text: &str) -> Result<Combine, String> {
        match text {
            "weighted" => Ok(Combine::Weighted),
            "average" => Ok(Combine::Average),
            other => Err(format!(
                "unknown combination {other:?}; choose weighted or average"
            )),
        }
    }
}

/// The seed of replica `i`: the experiment's seed for the first, others apart.
pub fn replica_seed(base: u64, i: usize) -> u64 {
    base.wrapping_add(1_000_003u64.wrapping_mul(i as u64))
}

/// `arch` repeated `weights.len()` times, replica `i`'s layers named
/// `r<i>.<name>`, every input written out, joined by a weighted sum.
pub fn ensemble_architecture(arch: &Architecture, weights: &[f32]) -> Architecture {
    let mut layers = Vec::with_capacity(arch.layers.len() * weights.len() + 1);
    let mut outputs = Vec::with_capacity(weights.len());
    for i in 0..weights.len() {
        let rename = |name: &str| {
            if name == INPUT {
                INPUT.to_string()
            } else {
                format!("r{i}.{name}")
            }
        };
        for (j, spec) in arch.layers.iter().enumerate() {
            let inputs = if spec.inputs.is_empty() {
                vec![if j == 0 {
                    INPUT.to_string()
                } else {
                    rename(&arch.layer_name(j - 1))
                }]
            } else {
                spec.inputs.iter().map(|n| rename(n)).collect()
            };
            layers.push(LayerSpec {
                name: Some(rename(&arch.layer_name(j))),
                inputs,
                op: spec.op.clone(),
                gate: spec.gate,
            });
        }
        outputs.push(rename(&arch.layer_name(arch.layers.len() - 1)));
    }
    layers.push(LayerSpec {
        name: Some(COMBINE_LAYER.into()),
        inputs: outputs,
        op: Op::WeightedSum {
            weights: weights.to_vec(),
        },
        gate: false,
    });
    Architecture {
        name: format!("{}_ensemble_of_{}", arch.name, weights.len()),
        init: arch.init,
        layers,
    }
}

/// `sum_i w_i logits_i`, row by row.
pub fn combine_logits(replicas: &[Predictions], weights: &[f64]) -> Predictions {
    let mut logits = vec![0.0f32; replicas[0].logits.len()];
    for (p, &w) in replicas.iter().zip(weights) {
        for (acc, &z) in logits.iter_mut().zip(&p.logits) {
            *acc += w as f32 * z;
        }
    }
    Predictions {
        classes: replicas[0].classes,
        logits,
        labels: replicas[0].labels.clone(),
    }
}

/// Mean cross-entropy of `sum_i w_i z_i` and its gradient in `w`.
fn loss_and_gradient(replicas: &[Predictions], w: &[f64]) -> (f64, Vec<f64>) {
    let classes = replicas[0].classes;
    let samples = replicas[0].labels.len().max(1);
    let mut loss = 0.0;
    let mut grad = vec![0.0; w.len()];
    let mut mixed = vec![0.0f64; classes];
    for (s, &label) in replicas[0].labels.iter().enumerate() {
        let rows: Vec<&[f32]> = replicas
            .iter()
            .map(|p| &p.logits[s * classes..(s + 1) * classes])
            .collect();
        for (c, m) in mixed.iter_mut().enumerate() {
            *m = rows.iter().zip(w).map(|(r, &wi)| wi * r[c] as f64).sum();
        }
        let top = mixed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = mixed.iter().map(|m| (m - top).exp()).sum();
        loss += top + total.ln() - mixed[label as usize];
        for (i, row) in rows.iter().enumerate() {
            // d loss / d w_i = sum_c (p_c - y_c) z_ic
            let mut g = -(row[label as usize] as f64);
            for c in 0..classes {
                g += (mixed[c] - top).exp() / total * row[c] as f64;
            }
            grad[i] += g;
        }
    }
    let n = samples as f64;
    (loss / n, grad.into_iter().map(|g| g / n).collect())
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - top).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

/// Weights on the simplex that minimise the validation cross-entropy of
/// the combined logits: gradient descent on `v` with `w = softmax(v)`,
/// each step halved until it lowers the loss.
pub fn learn_weights(replicas: &[Predictions]) -> Vec<f64> {
    let p = replicas.len();
    let mut v = vec![0.0f64; p];
    let mut w = softmax(&v);
    let (mut loss, mut grad) = loss_and_gradient(replicas, &w);
    let mut step = 1.0;
    for _ in 0..300 {
        // d loss / d v_j = w_j (g_j - sum_i w_i g_i)
        let mean: f64 = w.iter().zip(&grad).map(|(a, b)| a * b).sum();
        let dv: Vec<f64> = w
            .iter()
            .zip(&grad)
            .map(|(wj, gj)| wj * (gj - mean))
            .collect();
        if dv.iter().map(|d| d * d).sum::<f64>().sqrt() < 1e-9 {
            break;
        }
        loop {
            let trial: Vec<f64> = v.iter().zip(&dv).map(|(a, d)| a - step * d).collect();
            let trial_w = softmax(&trial);
            let (trial_loss, trial_grad) = loss_and_gradient(replicas, &trial_w);
            if trial_loss < loss {
                (v, w, loss, grad) = (trial, trial_w, trial_loss, trial_grad);
                step *= 2.0;
                break;
            }
            step /= 2.0;
            if step < 1e-12 {
                return w;
            }
        }
    }
    w
}

/// One replica's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaResult {
    pub seed: u64,
    pub val_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub seconds: f64,
}

/// What `ensemble` reports, in `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct EnsembleSummary {
    pub strategy: String,
    pub combine: Combine,
    pub replicas: Vec<ReplicaResult>,
    pub weights: Vec<f64>,
    pub mean_replica_test_accuracy: Option<f64>,
    pub average_val: Evaluation,
    pub average_test: Option<Evaluation>,
    pub ensemble_val: Evaluation,
    /// The saved ensemble model run on the test split.
    pub ensemble_test: Option<Evaluation>,
    pub params: u64,
    pub macs: u64,
    pub seconds: f64,
}

/// How an ensemble is made.
#[derive(Clone, Debug)]
pub struct EnsembleOptions {
    pub data_dir: std::path::PathBuf,
    pub prepare: crate::data::prepare::PrepareOptions,
    pub replicas: usize,
    pub combine: Combine,
    pub verbose: bool,
}

/// Trains (or finishes training) `options.replicas` replicas of
/// `experiment` in `run/replicas/<i>`, combines them and saves the
/// ensemble as `run/model.safetensors`.
pub fn make_ensemble(
    gpu: &Gpu,
    experiment: &Experiment,
    run: &RunDir,
    options: &EnsembleOptions,
) -> anyhow::Result<EnsembleSummary> {
    let started = std::time::Instant::now();
    if options.replicas < 2 {
        bail!("--replicas must be at least 2, given {}", options.replicas);
    }
    let data = Data::open(&options.data_dir, experiment, &options.prepare)?;
    data.write_record(&run.root)?;
    let mut replicas = Vec::with_capacity(options.replicas);
    let mut val = Vec::with_capacity(options.replicas);
    let mut test = Vec::with_capacity(options.replicas);
    let batch = experiment.train.batch_size;
    let val_loader = data.loader(experiment, Split::Validation, batch)?;
    let test_loader = data.loader(experiment, Split::Test, batch)?;
    if val_loader.is_empty() {
        bail!(
            "{}: the validation split is empty; the ensemble's weights are learned on it",
            options.data_dir.display()
        );
    }
    for i in 0..options.replicas {
        let mut replica = experiment.clone();
        replica.train.seed = replica_seed(experiment.train.seed, i);
        let base = run.root.join(REPLICAS_DIR);
        let dir = base.join(i.to_string());
        let replica_run = if dir.join("config.toml").is_file() {
            RunDir::open_existing(&dir)?
        } else {
            RunDir::create(&base, &i.to_string(), &replica.to_toml())?
        };
        if options.verbose {
            println!("replica {i}: seed {}", replica.train.seed);
        }
        let train_options = TrainOptions {
            data_dir: options.data_dir.clone(),
            prepare: options.prepare.clone(),
            resume: true,
            stop_after_epochs: None,
            verbose: options.verbose,
            init_from: None,
        };
        let summary = train_on(gpu, &data, &replica, &replica_run, &train_options)
            .with_context(|| format!("replica {i}"))?;
        let (mut network, _, _) =
            crate::train::model_file::load_model(gpu, &replica_run.best_model(), None)?;
        val.push(predict(gpu, &mut network, val_loader.epoch(0))?);
        if !test_loader.is_empty() {
            test.push(predict(gpu, &mut network, test_loader.epoch(0))?);
        }
        replicas.push(ReplicaResult {
            seed: replica.train.seed,
            val_accuracy: summary.best_val_accuracy,
            test_accuracy: test.last().map(|p| Evaluation::of(p).accuracy),
            seconds: summary.seconds,
        });
    }
    let p = options.replicas;
    let average = vec![1.0 / p as f64; p];
    let weights = match options.combine {
        Combine::Weighted => learn_weights(&val),
        Combine::Average => average.clone(),
    };
    let weights_f32: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let arch = ensemble_architecture(&experiment.model, &weights_f32);
    let classes = data.classes().to_vec();
    let shape = data.prepared.clip_shape.clone();
    let mut network = Network::build(gpu, &arch, &shape, classes.len(), 0)?;
    for i in 0..p {
        let path = run.root.join(REPLICAS_DIR).join(i.to_string());
        let (tensors, _) = read_model_tensors(&path)?;
        let renamed: Vec<(String, &[usize], &[f32])> = tensors
            .iter()
            .map(|t| {
                (
                    format!("r{i}.{}", t.name),
                    t.shape.as_slice(),
                    t.data.as_slice(),
                )
            })
            .collect();
        let report = network.inherit(gpu, renamed.iter().map(|(n, s, d)| (n.as_str(), *s, *d)))?;
        let own: Vec<&String> = report
            .missing
            .iter()
            .filter(|m| m.starts_with(&format!("r{i}.")))
            .collect();
        if !own.is_empty() || !report.reshaped.is_empty() {
            bail!("replica {i}: its model file does not fill the ensemble (missing {own:?})");
        }
    }
    let info = ModelInfo {
        architecture: arch.clone(),
        features: experiment.features.clone(),
        classes,
    };
    save_model(gpu, &run.best_model(), &network, &info, &[])?;
    write_durably(
        &run.root.join(crate::search::darts::ARCHITECTURE_FILE),
        arch.to_json().as_bytes(),
    )?;
    let ensemble_test = if test_loader.is_empty() {
        None
    } else {
        Some(evaluate(gpu, &mut network, test_loader.epoch(0))?)
    };
    let mean = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let summary = EnsembleSummary {
        strategy: "ensemble".into(),
        combine: options.combine,
        mean_replica_test_accuracy: mean(replicas.iter().filter_map(|r| r.test_accuracy).collect()),
        replicas,
        average_val: Evaluation::of(&combine_logits(&val, &average)),
        average_test: (!test.is_empty()).then(|| Evaluation::of(&combine_logits(&test, &average))),
        ensemble_val: Evaluation::of(&combine_logits(&val, &weights)),
        ensemble_test,
        weights,
        params: network.parameter_count(),
        macs: network.macs()?,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_durably(
        &run.root.join(crate::search::darts::RESULTS_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// The experiment that retrains the architecture of `search_run` with the
/// training of `recipe` (an experiment config), or, without one, with the
/// features, data, augmentation and training of the search's own config.
pub fn replica_experiment(search_run: &Path, recipe: Option<&Path>) -> anyhow::Result<Experiment> {
    let arch_path = search_run.join(crate::search::darts::ARCHITECTURE_FILE);
    if !arch_path.is_file() {
        bail!(
            "{}: no architecture.json; has the search finished?",
            search_run.display()
        );
    }
    let arch = Architecture::load(&arch_path)?;
    let mut experiment = match recipe {
        Some(path) => Experiment::load(path)?,
        None => {
            let config_path = search_run.join("config.toml");
            let text = std::fs::read_to_string(&config_path)
                .with_context(|| format!("{}: cannot read", config_path.display()))?;
            let mut table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{}: not TOML", config_path.display()))?;
            table.retain(|k, _| ["features", "train", "data", "augment"].contains(&k));
            table.insert("model".into(), toml::Value::try_from(&arch)?);
            Experiment::parse(&toml::to_string(&table)?, &config_path)?
        }
    };
    experiment.model = arch;
    experiment.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(experiment)
}

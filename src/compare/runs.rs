//! Reading any run folder (a training run, a search of any strategy, an
//! ensemble) into one record: what it is, on which data and features, what
//! it cost and how accurate its model is.

use crate::data::features::FeatureConfig;
use crate::model::{Architecture, Cost};
use crate::train::metrics::{read_epoch_records, EpochRecord};
use crate::train::session::{DataRecord, DATA_RECORD_FILE};
use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Streaming scores, as fractions of the words of the stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamScore {
    pub matched: f64,
    pub false_alarms: f64,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub name: String,
    pub dir: PathBuf,
    /// `train`, `ensemble`, or the search strategy.
    pub kind: String,
    /// The model's architecture name.
    pub model: String,
    pub data: Option<DataRecord>,
    pub features: FeatureConfig,
    /// How many classes, where the run says (its data record or model).
    pub classes: Option<usize>,
    /// The class names of its model, where it has one.
    pub class_names: Option<Vec<String>>,
    /// Wall time of the whole run.
    pub seconds: Option<f64>,
    pub epochs: Option<usize>,
    pub trials: Option<usize>,
    pub params: Option<u64>,
    pub macs: Option<u64>,
    pub test_accuracy: Option<f64>,
    /// What the accuracy is of, when it is not a retrained model's.
    pub accuracy_note: Option<String>,
    pub stream: Option<StreamScore>,
    /// The trained model that measures latency, when the run has one.
    pub model_file: Option<PathBuf>,
    pub architecture: Option<Architecture>,
    pub curves: Vec<EpochRecord>,
    /// Median milliseconds of a batch-1 inference, when measured.
    pub latency_ms: Option<f64>,
}

impl RunRecord {
    /// Multiply-accumulates per second of audio (one inference per clip).
    pub fn macs_per_second(&self) -> Option<f64> {
        self.macs
            .map(|m| m as f64 * 1000.0 / self.features.clip_ms.max(1e-9))
    }

    /// The cost of its architecture on its features, layer by layer.
    pub fn cost(&self) -> Option<Cost> {
        let arch = self.architecture.as_ref()?;
        let classes = self.classes?;
        Cost::of(
            arch,
            &self.features.clip_shape(),
            classes,
            self.features.clip_ms,
            None,
        )
        .ok()
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

fn f64_at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// The `[features]` of a run's `config.toml` (every run writes one).
fn features_of(dir: &Path) -> anyhow::Result<FeatureConfig> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: cannot read; is {} a run folder?",
            path.display(),
            dir.display()
        )
    })?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let features = table
        .get("features")
        .ok_or_else(|| anyhow!("{}: has no [features]", path.display()))?;
    features
        .clone()
        .try_into()
        .with_context(|| format!("{}: [features]", path.display()))
}

/// The epochs of a run's `metrics.jsonl` (none when it has none).
fn curves_of(dir: &Path) -> anyhow::Result<Vec<EpochRecord>> {
    let path = dir.join("metrics.jsonl");
    match path.is_file() {
        true => Ok(read_epoch_records(&path)?),
        false => Ok(Vec::new()),
    }
}

fn architecture_at(path: &Path) -> Option<Architecture> {
    Architecture::load(path).ok()
}

/// Reads the run folder `dir`.
pub fn read_run(dir: &Path) -> anyhow::Result<RunRecord> {
    if !dir.is_dir() {
        bail!("{}: not a run folder (no such folder)", dir.display());
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let features = features_of(dir)?;
    let results_path = dir.join("results.json");
    if !results_path.is_file() {
        bail!(
            "{}: has no results.json; the run has not finished (resume it, or leave it out)",
            dir.display()
        );
    }
    let results = read_json(&results_path)?;
    let data = match dir.join(DATA_RECORD_FILE) {
        p if p.is_file() => Some(
            serde_json::from_value(read_json(&p)?)
                .with_context(|| format!("{}: not a data record", p.display()))?,
        ),
        _ => None,
    };
    let mut record = RunRecord {
        name,
        dir: dir.to_path_buf(),
        kind: String::new(),
        model: String::new(),
        classes: data.as_ref().map(|d: &DataRecord| d.classes.len()),
        class_names: None,
        data,
        features,
        seconds: f64_at(&results, "/seconds"),
        epochs: u64_at(&results, "/epochs_done").map(|e| e as usize),
        trials: None,
        params: u64_at(&results, "/params"),
        macs: u64_at(&results, "/macs"),
        test_accuracy: None,
        accuracy_note: None,
        stream: None,
        model_file: None,
        architecture: architecture_at(&dir.join("architecture.json")),
        curves: curves_of(dir)?,
        latency_ms: None,
    };
    let strategy = results["strategy"].as_str().map(str::to_string);
    match strategy.as_deref() {
        None => read_train(dir, &results, &mut record),
        Some("ensemble") => read_ensemble(dir, &results, &mut record),
        Some("model-search") => read_model_search(dir, &results, &mut record),
        Some("sanas") => read_sanas(dir, &results, &mut record),
        Some(darts) => {
            record.kind = darts.to_string();
            record.accuracy_note = Some("a search: retrain its architecture to score it".into());
            // The supernet's checkpoint names the classes.
            let checkpoint = crate::train::run_dir::RunDir {
                root: dir.to_path_buf(),
            }
            .last_checkpoint();
            if let Some((_, names)) = model_info(&checkpoint) {
                record.classes = record.classes.or(Some(names.len()));
                record.class_names = Some(names);
            }
        }
    }
    if record.model.is_empty() {
        record.model = record
            .architecture
            .as_ref()
            .map_or("-".into(), |a| a.name.clone());
    }
    Ok(record)
}

/// The architecture and class names of a model file.
fn model_info(model: &Path) -> Option<(Architecture, Vec<String>)> {
    crate::train::model_file::read_model_tensors(model)
        .ok()
        .map(|(_, info)| (info.architecture, info.classes))
}

/// Takes the model file `model` as the run's model, when it is one.
fn use_model(record: &mut RunRecord, model: PathBuf) {
    if let Some((arch, names)) = model_info(&model) {
        record.architecture = Some(arch);
        record.classes = record.classes.or(Some(names.len()));
        record.class_names = Some(names);
        record.model_file = Some(model);
    }
}

fn read_train(dir: &Path, results: &Value, record: &mut RunRecord) {
    record.kind = "train".into();
    record.test_accuracy = f64_at(results, "/test/accuracy");
    use_model(record, dir.join(crate::train::run_dir::MODEL_FILE));
}

fn read_ensemble(dir: &Path, results: &Value, record: &mut RunRecord) {
    record.kind = "ensemble".into();
    record.test_accuracy = f64_at(results, "/ensemble_test/accuracy");
    record.trials = results["replicas"].as_array().map(Vec::len);
    record.accuracy_note = results["replicas"]
        .as_array()
        .map(|r| format!("{} replicas, weighted average", r.len()));
    use_model(record, dir.join(crate::train::run_dir::MODEL_FILE));
}

fn read_model_search(dir: &Path, results: &Value, record: &mut RunRecord) {
    record.kind = "model-search".into();
    record.trials = u64_at(results, "/completed").map(|t| t as usize);
    record.test_accuracy = f64_at(results, "/best/metrics/test_accuracy");
    record.accuracy_note = Some("its best trial, trained with weight transfer".into());
    if let Some(model) = results["best"]["model_path"].as_str() {
        use_model(record, dir.join(model));
    }
}

fn read_sanas(dir: &Path, results: &Value, record: &mut RunRecord) {
    record.kind = "sanas".into();
    let best = results["best"].as_u64().unwrap_or(0) as usize;
    let point = &results["points"][best];
    record.epochs = u64_at(point, "/epochs").map(|e| e as usize);
    record.trials = results["points"].as_array().map(Vec::len);
    record.test_accuracy = f64_at(point, "/test_accuracy");
    record.accuracy_note = point["lambda"]
        .as_f64()
        .map(|l| format!("the kept sub-network of point lambda = {l}"));
    record.stream = match (
        f64_at(point, "/stream/matched"),
        f64_at(point, "/stream/false_alarms"),
    ) {
        // Written as percents of the stream's words.
        (Some(matched), Some(false_alarms)) => Some(StreamScore {
            matched: matched / 100.0,
            false_alarms: false_alarms / 100.0,
        }),
        _ => None,
    };
    // The point's folder is named in its architecture's path (written
    // relative to where the search ran): points/<point>/architecture.json.
    let point_dir = point["architecture"]
        .as_str()
        .and_then(|a| Path::new(a).parent()?.file_name())
        .map(|name| dir.join("points").join(name));
    if let Some(point_dir) = point_dir {
        // Its model is the gated network, which at inference computes only
        // the kept part; the architecture shown stays the kept sub-network.
        let kept = record.architecture.take();
        use_model(record, point_dir.join(crate::train::run_dir::MODEL_FILE));
        record.architecture = kept.or(record.architecture.take());
    }
}

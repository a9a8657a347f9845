//! Model files and checkpoints: a network's tensors in safetensors with what
//! is needed to use them again (architecture, features, class names) in the
//! metadata; checkpoints add the optimizer state and where training stood.

use super::checkpoint::{load_checkpoint, parse_checkpoint, save_checkpoint, NamedTensor};
use super::error::TrainError;
use super::run_dir::MODEL_FILE;
use crate::data::features::FeatureConfig;
use crate::gpu::Gpu;
use crate::model::{Architecture, Inheritance, Network};
use crate::nn::optim::Optimizer;
use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::path::Path;

pub const MODEL_FORMAT: &str = "audionas-model";
pub const CHECKPOINT_FORMAT: &str = "audionas-checkpoint";
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// What a model needs besides its weights.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub architecture: Architecture,
    pub features: FeatureConfig,
    pub classes: Vec<String>,
}

impl ModelInfo {
    /// The metadata entries that hold the info in a file of `format`.
    pub fn metadata(&self, format: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("format".into(), format.into());
        m.insert("architecture".into(), self.architecture.to_json());
        m.insert(
            "features".into(),
            serde_json::to_string(&self.features).expect("features serialise"),
        );
        m.insert(
            "classes".into(),
            serde_json::to_string(&self.classes).expect("names serialise"),
        );
        m
    }

    fn from_metadata(meta: &BTreeMap<String, String>, path: &Path) -> anyhow::Result<ModelInfo> {
        let field = |key: &str| {
            meta.get(key).ok_or_else(|| {
                anyhow!(
                    "{}: not an audionas model file (its metadata has no {key:?}); give a model.safetensors that `audionas train` wrote",
                    path.display()
                )
            })
        };
        let bad = |key: &str, e: serde_json::Error| {
            anyhow!("{}: metadata {key:?} unreadable: {e}", path.display())
        };
        let features: FeatureConfig =
            serde_json::from_str(field("features")?).map_err(|e| bad("features", e))?;
        // The same check as a config file's [features] gets.
        features
            .validate()
            .map_err(|e| anyhow!("{}: metadata \"features\": {e}", path.display()))?;
        Ok(ModelInfo {
            architecture: serde_json::from_str(field("architecture")?)
                .map_err(|e| bad("architecture", e))?,
            features,
            classes: serde_json::from_str(field("classes")?).map_err(|e| bad("classes", e))?,
        })
    }
}

fn network_tensors(gpu: &Gpu, network: &Network) -> anyhow::Result<Vec<NamedTensor>> {
    network
        .state()
        .into_iter()
        .map(|(name, t)| {
            Ok(NamedTensor {
                name,
                shape: t.shape().to_vec(),
                data: gpu.download(t)?,
            })
        })
        .collect()
}

/// Writes a model file (atomically) with `extra` metadata beside the info.
pub fn save_model(
    gpu: &Gpu,
    path: &Path,
    network: &Network,
    info: &ModelInfo,
    extra: &[(&str, String)],
) -> anyhow::Result<()> {
    let mut meta = info.metadata(MODEL_FORMAT);
    meta.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    save_checkpoint(path, &network_tensors(gpu, network)?, &meta)?;
    Ok(())
}

/// A model file's network (built from its own description, or from
/// `architecture` when given) with its weights, and its info. `path` is a
/// model file or a run folder (its best model).
pub fn load_model(
    gpu: &Gpu,
    path: &Path,
    architecture: Option<&Architecture>,
) -> anyhow::Result<(Network, ModelInfo, BTreeMap<String, String>)> {
    let path = &model_path(path);
    let bytes = std::fs::read(path).map_err(|e| TrainError::read(path, "model file", e))?;
    let (tensors, mut info, meta) = parse_model(&bytes, path)?;
    if let Some(a) = architecture {
        info.architecture = a.clone();
    }
    let shape = info.features.clip_shape();
    let network = Network::build(gpu, &info.architecture, &shape, info.classes.len(), 0)
        .with_context(|| format!("{}: building the network it describes", path.display()))?;
    network.load_state(gpu, network_part(&tensors), path)?;
    Ok((network, info, meta))
}

/// The tensors, info and metadata of the bytes of a model file (or
/// checkpoint), checked as far as that needs no GPU: what `load_model`
/// reads before it builds the network. `path` names it in the messages.
pub fn parse_model(bytes: &[u8], path: &Path) -> anyhow::Result<ModelTensorsInfo> {
    let (tensors, meta) = parse_checkpoint(bytes, path)?;
    refuse_non_finite(&tensors, path)?;
    let info = ModelInfo::from_metadata(&meta, path)?;
    Ok((tensors, info, meta))
}

/// A model file's tensors, its info and all its metadata.
pub type ModelTensorsInfo = (Vec<NamedTensor>, ModelInfo, BTreeMap<String, String>);

/// The tensors and metadata of a model file or checkpoint, finite.
fn read_model_file(path: &Path) -> anyhow::Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let (tensors, meta) = load_checkpoint(path)?;
    refuse_non_finite(&tensors, path)?;
    Ok((tensors, meta))
}

/// A NaN or infinite value is refused, naming the tensor: no network can use it.
fn refuse_non_finite(tensors: &[NamedTensor], path: &Path) -> anyhow::Result<()> {
    for tensor in tensors {
        if let Some(index) = tensor.data.iter().position(|v| !v.is_finite()) {
            return Err(TrainError::NonFinite {
                path: path.to_path_buf(),
                tensor: tensor.name.clone(),
                index,
                value: tensor.data[index],
            }
            .into());
        }
    }
    Ok(())
}

/// The network's tensors of a model file or checkpoint (not the optimizer's).
fn network_part(tensors: &[NamedTensor]) -> impl Iterator<Item = (&str, &[usize], &[f32])> {
    tensors
        .iter()
        .filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice()))
}

/// A model file's path, or a run folder's best model.
fn model_path(path: &Path) -> std::path::PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The network tensors and the info of a model file (or a run folder's
/// best model), without building anything.
pub fn read_model_tensors(path: &Path) -> anyhow::Result<(Vec<NamedTensor>, ModelInfo)> {
    let path = model_path(path);
    let (tensors, meta) = read_model_file(&path)?;
    let info = ModelInfo::from_metadata(&meta, &path)?;
    let tensors = tensors
        .into_iter()
        .filter(|t| !t.name.starts_with(OPTIMIZER_PREFIX))
        .collect();
    Ok((tensors, info))
}

/// Copies into `network` every tensor of a model file (or a run folder's
/// best model, or a checkpoint) whose name and shape match, and says what
/// was copied and what not.
pub fn inherit_from_file(gpu: &Gpu, network: &Network, path: &Path) -> anyhow::Result<Inheritance> {
    let path = model_path(path);
    let (tensors, _) = read_model_file(&path)?;
    Ok(network.inherit(gpu, network_part(&tensors))?)
}

/// One line on what `inherit_from_file` copied from `parent`.
pub fn describe_inheritance(report: &Inheritance, parent: &Path) -> String {
    let mut line = format!(
        "initialised from {}: {} tensors copied",
        parent.display(),
        report.copied.len()
    );
    if !report.reshaped.is_empty() {
        let names: Vec<&str> = report.reshaped.iter().map(|r| r.name.as_str()).collect();
        line += &format!("; other shape, not copied: {}", names.join(", "));
    }
    if !report.missing.is_empty() {
        line += &format!("; not in it, drawn fresh: {}", report.missing.join(", "));
    }
    line
}

/// Where a checkpoint says training stood.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    /// Finished epochs.
    pub epoch: usize,
    /// Finished steps.
    pub step: u64,
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
}

impl Standing {
    /// Before the first step.
    pub fn start() -> Standing {
        Standing {
            epoch: 0,
            step: 0,
            best_val_accuracy: f64::NEG_INFINITY,
            best_epoch: 0,
        }
    }
}

/// The name of a group's optimizer state tensor for `param_state`
/// (`layer.param.state`).
fn optimizer_tensor(group: &str, param_state: &str) -> String {
    format!("{OPTIMIZER_PREFIX}{group}.{param_state}")
}

/// Saves network, the optimizer state of every group and progress (atomically).
pub fn save_checkpoint_file(
    gpu: &Gpu,
    path: &Path,
    network: &Network,
    optimizers: &[(&str, &Optimizer)],
    info: &ModelInfo,
    standing: Standing,
) -> anyhow::Result<()> {
    let mut tensors = network_tensors(gpu, network)?;
    let mut steps = BTreeMap::new();
    for (group, optimizer) in optimizers {
        for (name, t) in optimizer.state() {
            tensors.push(NamedTensor {
                name: optimizer_tensor(group, &name),
                shape: t.shape().to_vec(),
                data: gpu.download(t)?,
            });
        }
        steps.insert(group.to_string(), optimizer.steps());
    }
    let mut meta = info.metadata(CHECKPOINT_FORMAT);
    meta.insert("epoch".into(), standing.epoch.to_string());
    meta.insert("step".into(), standing.step.to_string());
    meta.insert("optimizer_steps".into(), serde_json::to_string(&steps)?);
    meta.insert(
        "best_val_accuracy".into(),
        standing.best_val_accuracy.to_string(),
    );
    meta.insert("best_epoch".into(), standing.best_epoch.to_string());
    save_checkpoint(path, &tensors, &meta)?;
    Ok(())
}

/// Restores network and every group's optimizer from a checkpoint and says
/// where training stood. A checkpoint of another network or other groups is
/// refused, naming the first tensor that does not fit.
pub fn load_checkpoint_file(
    gpu: &Gpu,
    path: &Path,
    network: &Network,
    optimizers: &mut [(&str, &mut Optimizer)],
) -> anyhow::Result<Standing> {
    let (tensors, meta) = read_model_file(path)?;
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        anyhow::bail!(
            "{}: not an audionas training checkpoint; it cannot be resumed",
            path.display()
        );
    }
    network.load_state(gpu, network_part(&tensors), path)?;
    let mut unread: BTreeMap<&str, &NamedTensor> = tensors
        .iter()
        .filter(|t| t.name.starts_with(OPTIMIZER_PREFIX))
        .map(|t| (t.name.as_str(), t))
        .collect();
    let steps: BTreeMap<String, BTreeMap<String, u64>> = meta
        .get("optimizer_steps")
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| {
            anyhow!(
                "{}: metadata \"optimizer_steps\" missing or unreadable; it was not written by this version of audionas",
                path.display()
            )
        })?;
    for (group, optimizer) in optimizers.iter_mut() {
        for (name, t) in optimizer.state() {
            let key = optimizer_tensor(group, &name);
            let saved = unread.remove(key.as_str()).ok_or_else(|| {
                anyhow!(
                    "{}: has no optimizer state {key:?} (was the optimizer or the network changed?); start a new run",
                    path.display()
                )
            })?;
            if saved.shape != t.shape() {
                anyhow::bail!(
                    "{}: optimizer state {key:?} has shape {:?}, this network's is {:?}",
                    path.display(),
                    saved.shape,
                    t.shape()
                );
            }
            gpu.write(t, &saved.data)?;
        }
        let group_steps = steps.get(*group).ok_or_else(|| {
            anyhow!(
                "{}: has no update counts of parameter group {group:?}",
                path.display()
            )
        })?;
        optimizer
            .set_steps(group_steps)
            .map_err(|reason| anyhow!("{}: group {group:?} {reason}", path.display()))?;
    }
    if let Some(name) = unread.keys().next() {
        anyhow::bail!(
            "{}: has optimizer state {name:?}, which this run does not have (another network or other parameter groups); start a new run",
            path.display()
        );
    }
    let number = |key: &str| -> anyhow::Result<f64> {
        meta.get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "{}: metadata {key:?} missing or not a number",
                    path.display()
                )
            })
    };
    Ok(Standing {
        epoch: number("epoch")? as usize,
        step: number("step")? as u64,
        best_val_accuracy: number("best_val_accuracy")?,
        best_epoch: number("best_epoch")? as usize,
    })
}

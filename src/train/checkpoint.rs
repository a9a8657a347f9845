//! Checkpoints: named f32 tensors plus string metadata in one safetensors
//! file, written durably and atomically.
//!
//! Loading returns the tensors sorted by name (which is also the order in the
//! file: safetensors sorts f32 tensors by name when it writes them).

use super::atomic::write_durably;
use super::error::{TrainError, TrainResult};
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The key safetensors reserves for the metadata table: no tensor may have it.
const METADATA_KEY: &str = "__metadata__";

/// One tensor of a checkpoint: row-major f32 values of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The little-endian bytes of one tensor, as safetensors wants them.
struct F32Bytes<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl View for &F32Bytes<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Saves `tensors` and `metadata` to `path` (a `.safetensors` file). The file
/// is written to a temporary sibling, fsynced and renamed, so a crash leaves
/// either the old checkpoint or the new one. Names must be unique and not
/// empty; each shape's product must equal the data length.
pub fn save_checkpoint(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
) -> TrainResult<()> {
    let bad = |tensor: &str, reason: String| TrainError::BadTensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        reason,
    };
    let mut names = BTreeSet::new();
    let mut views = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        if tensor.name.is_empty() || tensor.name == METADATA_KEY {
            return Err(bad(
                &tensor.name,
                "the name is empty or reserved by safetensors; give the tensor another name".into(),
            ));
        }
        if !names.insert(tensor.name.as_str()) {
            return Err(bad(
                &tensor.name,
                "two tensors have this name; give each tensor its own name".into(),
            ));
        }
        let elements = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(tensor.data.len()) {
            return Err(bad(
                &tensor.name,
                format!(
                    "shape {:?} does not match its {} values; the product of the shape must equal the data length",
                    tensor.shape,
                    tensor.data.len()
                ),
            ));
        }
        let bytes = tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((
            tensor.name.as_str(),
            F32Bytes {
                shape: &tensor.shape,
                bytes,
            },
        ));
    }
    let info: Option<HashMap<String, String>> = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    let file = safetensors::serialize(views.iter().map(|(name, view)| (*name, view)), info)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e.to_string())))?;
    write_durably(path, &file)
}

/// Loads a checkpoint written by `save_checkpoint` (or any safetensors file
/// whose tensors are all F32). Tensors come back sorted by name; missing
/// metadata is an empty map.
pub fn load_checkpoint(path: &Path) -> TrainResult<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::read(path, "checkpoint file", e))?;
    let not_safetensors = |reason: String| TrainError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(e.to_string()))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut tensors = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(TrainError::NotF32 {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            data,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((tensors, metadata))
}

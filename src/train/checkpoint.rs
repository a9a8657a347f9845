//! Checkpoints: named f32 tensors plus string metadata in one safetensors
//! file, written durably and atomically.
//!
//! Loading returns the tensors sorted by name (which is also the order in the
//! file: safetensors sorts f32 tensors by name when it writes them).

use super::atomic::write_durably;
use super::error::{TrainError, TrainResult};
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The key safetensors reserves for the metadata table: no tensor may have it.
const METADATA_KEY: &str = "__metadata__";
/// The metadata entry holding the file's checksum (see `checksum`).
const CHECKSUM_KEY: &str = "checksum";

/// SHA-1 (hex) of every tensor (name, shape, bytes; in name order) and
/// every other metadata entry, each field length-prefixed so that no two
/// contents hash alike by shifting bytes between fields.
fn checksum(tensors: &[(&str, &[usize], &[u8])], metadata: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha1::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    let mut sorted = tensors.to_vec();
    sorted.sort_by_key(|(name, _, _)| *name);
    for (name, shape, bytes) in sorted {
        field(name.as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(bytes);
    }
    for (key, value) in metadata.iter().filter(|(k, _)| *k != CHECKSUM_KEY) {
        field(key.as_bytes());
        field(value.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
    let contents: Vec<(&str, &[usize], &[u8])> = views
        .iter()
        .map(|(name, view)| (*name, view.shape, view.bytes.as_slice()))
        .collect();
    let mut info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.insert(CHECKSUM_KEY.into(), checksum(&contents, metadata));
    let info = Some(info);
    let file = safetensors::serialize(views.iter().map(|(name, view)| (*name, view)), info)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e.to_string())))?;
    write_durably(path, &file)
}

/// Loads a checkpoint written by `save_checkpoint` (or any safetensors file
/// whose tensors are all F32). Tensors come back sorted by name; missing
/// metadata is an empty map. The checksum `save_checkpoint` adds to the
/// metadata is checked and left out of the map: a file whose content does
/// not match it is refused; one without it (not written by
/// `save_checkpoint`) is taken as it is.
pub fn load_checkpoint(path: &Path) -> TrainResult<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::read(path, "checkpoint file", e))?;
    parse_checkpoint(&bytes, path)
}

/// Reads the bytes of a checkpoint as `load_checkpoint` does; `path` names
/// it in the messages.
pub fn parse_checkpoint(
    bytes: &[u8],
    path: &Path,
) -> TrainResult<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let not_safetensors = |reason: String| TrainError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| not_safetensors(e.to_string()))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(e.to_string()))?;
    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut tensors = Vec::with_capacity(file.len());
    let mut contents = Vec::with_capacity(file.len());
    let views = file.iter().collect::<Vec<_>>();
    for (name, view) in &views {
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
        contents.push((*name, view.shape(), view.data()));
        tensors.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            data,
        });
    }
    if let Some(stored) = metadata.remove(CHECKSUM_KEY) {
        if stored != checksum(&contents, &metadata) {
            return Err(TrainError::Damaged {
                path: path.to_path_buf(),
            });
        }
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((tensors, metadata))
}

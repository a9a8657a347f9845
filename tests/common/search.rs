//! The search config of the search tests: the tiny experiment's features
//! and a small DARTS space.

/// The tiny experiment's features, `epochs` of a two-cell space of two
/// nodes, then `extra`.
pub fn tiny_search(epochs: usize, extra: &str) -> String {
    let features = super::common::TINY_CONFIG
        .split("[train]")
        .next()
        .expect("features first");
    format!(
        r#"{features}
[train]
epochs = {epochs}
batch_size = 8
lr = 0.025
optimizer = {{ kind = "sgd", momentum = 0.9 }}
weight_decay = 0.0003
clip_norm = 5.0
seed = 3
log_every = 2

[data]
split = "speaker"

[space]
stem = {{ channels = 4, kernel = [3, 3], stride = [2, 2] }}
cells = 2
reductions = [1]
nodes = 2
channels = 4
ops = ["zero", "skip", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3"]
{extra}"#
    )
}

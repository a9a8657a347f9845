//! The Model Search config of the search tests: the tiny experiment's
//! features and a few small blocks.

/// A Model Search of the tiny experiment's features: `trials` trials of
/// one epoch, then `extra` lines in `[search]`.
pub fn tiny_search(trials: usize, extra: &str) -> String {
    let features = super::common::TINY_CONFIG.split("[train]").next().unwrap();
    format!(
        r#"{features}
[train]
epochs = 1
batch_size = 8
lr = 0.01
optimizer = {{ kind = "adam" }}
seed = 3
log_every = 4

[data]
split = "speaker"

[search]
strategy = "model-search"
blocks = ["conv_3x3", "separable_3x3", "max_pool_2x2", "dense_64"]
minimum_depth = 1
maximum_depth = 4
depth_step_trials = 1
increase_probability = 1.0
min_channels = 4
max_trials = {trials}
{extra}"#
    )
}

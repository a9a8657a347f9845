//! Tiny SANAS configs on the tone data: a gated super network of a conv
//! node and two shortcut nodes, static or adaptive, and a `_silence_` class
//! for the adaptive streams.

use audionas::data::wav::{write_wav, Audio};
use audionas::util::rng::Rng;
use std::path::Path;

const TINY_SUPERNET: &str = r#"
[search]
strategy = "sanas"
lambdas = LAMBDAS
gate_lr = 0.5

[model]
name = "tiny_gated"
[[model.layers]]
name = "conv1.conv"
op = "conv2d"
channels = 8
kernel = 3
[[model.layers]]
name = "conv1"
op = "relu"
gate = true
[[model.layers]]
name = "short0.dense"
op = "dense"
units = 8
inputs = ["input"]
[[model.layers]]
name = "short0"
op = "relu"
gate = true
[[model.layers]]
name = "short1.dense"
op = "dense"
units = 8
inputs = ["conv1"]
[[model.layers]]
name = "short1"
op = "relu"
gate = true
[[model.layers]]
name = "sum"
op = "add"
inputs = ["short0", "short1"]
[[model.layers]]
name = "fc"
op = "dense"
"#;

/// The tiny experiment's features, data and training with the gated
/// supernet and `[search]` of `lambdas`.
pub fn tiny_config(lambdas: &str, epochs: usize) -> String {
    let base = super::common::TINY_CONFIG;
    let base = &base[..base.find("[model]").expect("the tiny config has a model")];
    let base = base.replace("epochs = 4", &format!("epochs = {epochs}"));
    format!("{base}\n{}", TINY_SUPERNET.replace("LAMBDAS", lambdas))
}

/// A `_silence_` class of faint noise, with the tone data's speakers, as
/// the streams' label of windows without a word.
pub fn write_silence(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(77);
    for s in 0..super::common::SPEAKERS {
        let speaker = format!("{:08x}", (s as u32 + 1).wrapping_mul(0x9E37_79B1));
        for n in 0..2 {
            let samples = (0..16000).map(|_| 0.01 * rng.normal()).collect();
            let audio = Audio {
                samples,
                sample_rate: 16000,
            };
            write_wav(&dir.join(format!("{speaker}_nohash_{n}.wav")), &audio).unwrap();
        }
    }
}

/// The tiny config made adaptive: streams of 6 windows every 200 ms (two
/// seconds, so up to two words), a small controller.
pub fn tiny_adaptive_config(lambdas: &str, epochs: usize) -> String {
    tiny_config(lambdas, epochs).replace(
        "gate_lr = 0.5",
        "gate_lr = 0.5\nadaptive = true\nstream_windows = 6\nmax_words = 2\ncontroller_hidden = 8\nstreams_per_epoch = 32\neval_streams = 16",
    )
}

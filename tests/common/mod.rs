//! A tiny tone data set and a tiny experiment, shared by the end-to-end
//! training tests and the command-line error tests.

use audionas::data::wav::{write_wav, Audio};
use audionas::util::rng::Rng;
use std::path::Path;

/// Class folders and the tone frequency of each; far apart, so a tiny
/// network tells them apart within a few epochs.
pub const CLASSES: [(&str, f32); 4] = [
    ("high", 3200.0),
    ("hum", 250.0),
    ("low", 600.0),
    ("mid", 1400.0),
];
pub const SPEAKERS: usize = 6;
pub const CLIPS_PER_SPEAKER: usize = 4;
const RATE: u32 = 16_000;

/// An 8-hex-digit speaker id, the same in every class folder.
fn speaker_id(s: usize) -> String {
    format!("{:08x}", (s as u32 + 1).wrapping_mul(0x9E37_79B1))
}

/// Writes a folder per class of 1 s, 16 kHz mono clips named
/// `<speaker>_nohash_<n>.wav`: a tone at the class frequency (jittered by
/// up to 3%) with random amplitude and phase, plus a little noise.
pub fn write_tone_data(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    for (class, freq) in CLASSES {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for s in 0..SPEAKERS {
            for n in 0..CLIPS_PER_SPEAKER {
                let amplitude = rng.uniform(0.1, 0.5);
                let phase = rng.uniform(0.0, std::f32::consts::TAU);
                let f = freq * rng.uniform(0.97, 1.03);
                let samples = (0..RATE as usize)
                    .map(|i| {
                        let t = i as f32 / RATE as f32;
                        amplitude * (std::f32::consts::TAU * f * t + phase).sin()
                            + 0.01 * rng.normal()
                    })
                    .collect();
                let audio = Audio {
                    samples,
                    sample_rate: RATE,
                };
                let path = dir.join(format!("{}_nohash_{n}.wav", speaker_id(s)));
                write_wav(&path, &audio).unwrap();
            }
        }
    }
}

/// An experiment with the quickstart's features and a very small network
/// (conv2d 8 channels stride 2, batch norm, relu, global average pool,
/// dense): 4 training speakers of 6, so 64 training clips, 8 steps an epoch.
pub const TINY_CONFIG: &str = r#"
[features]
kind = "mfcc"
sample_rate = 16000
clip_ms = 1000.0
window_ms = 40.0
hop_ms = 20.0
n_fft = 640
window = "hann"
center = false
n_mels = 40
f_min = 20.0
f_max = 7600.0
mel_scale = "htk"
mel_norm = "none"
log_offset = 1e-6
n_mfcc = 10

[train]
epochs = 4
batch_size = 8
lr = 0.01
optimizer = { kind = "adam" }
seed = 7
log_every = 4

[data]
split = "speaker"

[model]
name = "tiny"

[[model.layers]]
name = "conv1"
op = "conv2d"
channels = 8
kernel = [10, 4]
stride = [2, 2]
padding = "same"
bias = false
[[model.layers]]
op = "batch_norm"
[[model.layers]]
op = "relu"
[[model.layers]]
op = "global_avg_pool"
[[model.layers]]
name = "fc"
op = "dense"
"#;

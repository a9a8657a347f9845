//! Seeded augmentation: random time shift and background noise on the
//! waveform, SpecAugment time and frequency masks on the features.

use super::features::MAX_CLIP_MS;
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Clips move by a uniform shift in [-time_shift_ms, time_shift_ms],
    /// padded with silence.
    pub time_shift_ms: f64,
    /// Chance that a clip gets background noise mixed in.
    pub noise_probability: f64,
    /// Noise is scaled by a uniform volume in [0, noise_volume].
    pub noise_volume: f32,
    /// SpecAugment: masks over whole frames, each up to `time_mask_frames` wide.
    pub time_masks: usize,
    pub time_mask_frames: usize,
    /// SpecAugment: masks over feature bins, each up to `freq_mask_bins` wide.
    pub freq_masks: usize,
    pub freq_mask_bins: usize,
}

impl Default for AugmentConfig {
    /// The Speech Commands training defaults, with two narrow masks of each kind.
    fn default() -> Self {
        AugmentConfig {
            time_shift_ms: 100.0,
            noise_probability: 0.8,
            noise_volume: 0.1,
            time_masks: 2,
            time_mask_frames: 10,
            freq_masks: 2,
            freq_mask_bins: 5,
        }
    }
}

impl AugmentConfig {
    /// Nothing at all changes.
    pub fn none() -> Self {
        AugmentConfig {
            time_shift_ms: 0.0,
            noise_probability: 0.0,
            noise_volume: 0.0,
            time_masks: 0,
            time_mask_frames: 0,
            freq_masks: 0,
            freq_mask_bins: 0,
        }
    }

    /// Checks the values, naming the key and the value.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=MAX_CLIP_MS).contains(&self.time_shift_ms) {
            return Err(format!(
                "time_shift_ms = {} must be between 0 and {MAX_CLIP_MS} ms",
                self.time_shift_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.noise_probability) {
            return Err(format!(
                "noise_probability = {} must be between 0 and 1",
                self.noise_probability
            ));
        }
        if !(self.noise_volume.is_finite() && self.noise_volume >= 0.0) {
            return Err(format!(
                "noise_volume = {} must be a number >= 0",
                self.noise_volume
            ));
        }
        Ok(())
    }

    /// Whether the waveform changes, so features must be recomputed.
    pub fn changes_audio(&self) -> bool {
        self.time_shift_ms > 0.0 || (self.noise_probability > 0.0 && self.noise_volume > 0.0)
    }
}

/// `clip` moved by `shift` samples (later when positive), same length,
/// padded with zeros.
pub fn time_shift(clip: &[f32], shift: isize) -> Vec<f32> {
    let n = clip.len() as isize;
    (0..n)
        .map(|i| {
            let from = i - shift;
            if (0..n).contains(&from) {
                clip[from as usize]
            } else {
                0.0
            }
        })
        .collect()
}

/// Adds `volume * noise[start..]` to the clip and clamps to [-1, 1], as a
/// recording would saturate.
pub fn mix_noise(clip: &mut [f32], noise: &[f32], start: usize, volume: f32) {
    for (sample, n) in clip.iter_mut().zip(
        noise[start.min(noise.len())..]
            .iter()
            .chain(std::iter::repeat(&0.0)),
    ) {
        *sample = (*sample + volume * n).clamp(-1.0, 1.0);
    }
}

/// Applies the waveform augmentations to one clip.
pub fn augment_audio(
    clip: &[f32],
    sample_rate: u32,
    config: &AugmentConfig,
    noise: &[Vec<f32>],
    rng: &mut Rng,
) -> Vec<f32> {
    let max_shift = (config.time_shift_ms * sample_rate as f64 / 1000.0).round() as isize;
    let mut out = if max_shift > 0 {
        let shift = rng.below((2 * max_shift + 1) as usize) as isize - max_shift;
        time_shift(clip, shift)
    } else {
        clip.to_vec()
    };
    let usable: Vec<&Vec<f32>> = noise.iter().filter(|n| !n.is_empty()).collect();
    if !usable.is_empty() && rng.bernoulli(config.noise_probability) {
        let file = usable[rng.below(usable.len())];
        let room = file.len().saturating_sub(out.len());
        let start = rng.below(room + 1);
        let volume = rng.uniform(0.0, config.noise_volume);
        mix_noise(&mut out, file, start, volume);
    }
    out
}

/// SpecAugment masks on one clip's `[frames, bins, values_per_bin]`
/// features (2 values per bin for the complex STFT's (re, im) pairs, which
/// a frequency mask covers whole); masked values become the clip's mean, so
/// a mask carries no energy cue.
pub fn spec_augment(
    features: &mut [f32],
    frames: usize,
    bins: usize,
    values_per_bin: usize,
    config: &AugmentConfig,
    rng: &mut Rng,
) {
    let width = bins * values_per_bin;
    if features.is_empty() || (config.time_masks == 0 && config.freq_masks == 0) {
        return;
    }
    let mean = features.iter().sum::<f32>() / features.len() as f32;
    let mask_span = |extent: usize, widest: usize, rng: &mut Rng| {
        let size = rng.below(widest.min(extent) + 1);
        let start = rng.below(extent - size + 1);
        start..start + size
    };
    for _ in 0..config.time_masks {
        for t in mask_span(frames, config.time_mask_frames, rng) {
            features[t * width..(t + 1) * width].fill(mean);
        }
    }
    for _ in 0..config.freq_masks {
        let masked = mask_span(bins, config.freq_mask_bins, rng);
        let values = masked.start * values_per_bin..masked.end * values_per_bin;
        for row in features.chunks_exact_mut(width) {
            row[values.clone()].fill(mean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_shift_moves_and_pads() {
        assert_eq!(
            time_shift(&[1.0, 2.0, 3.0, 4.0], 1),
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            time_shift(&[1.0, 2.0, 3.0, 4.0], -2),
            vec![3.0, 4.0, 0.0, 0.0]
        );
        assert_eq!(time_shift(&[1.0, 2.0], 5), vec![0.0, 0.0]);
    }

    #[test]
    fn noise_is_scaled_and_clamped() {
        let mut clip = vec![0.5, 0.9, -0.9];
        mix_noise(&mut clip, &[9.0, 1.0, 2.0, -2.0], 1, 0.2);
        assert_eq!(clip, vec![0.7, 1.0, -1.0]);
    }

    #[test]
    fn augmentation_is_seeded() {
        let clip: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin()).collect();
        let noise = vec![(0..4000)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect::<Vec<f32>>()];
        let config = AugmentConfig {
            noise_probability: 1.0,
            ..AugmentConfig::default()
        };
        let a = augment_audio(&clip, 16000, &config, &noise, &mut Rng::new(7));
        let b = augment_audio(&clip, 16000, &config, &noise, &mut Rng::new(7));
        let c = augment_audio(&clip, 16000, &config, &noise, &mut Rng::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), clip.len());
    }

    #[test]
    fn spec_augment_masks_within_limits() {
        let (frames, width) = (20, 8);
        let mut features: Vec<f32> = (0..frames * width).map(|i| i as f32).collect();
        let mean = features.iter().sum::<f32>() / features.len() as f32;
        let config = AugmentConfig {
            time_masks: 1,
            time_mask_frames: 3,
            freq_masks: 1,
            freq_mask_bins: 2,
            ..AugmentConfig::none()
        };
        spec_augment(&mut features, frames, width, 1, &config, &mut Rng::new(3));
        let masked = features.iter().filter(|&&v| v == mean).count();
        // At most 3 whole frames and 2 whole bins.
        assert!(masked <= 3 * width + 2 * frames);
    }

    #[test]
    fn spec_augment_masks_whole_complex_pairs() {
        let (frames, bins) = (6, 9);
        let config = AugmentConfig {
            freq_masks: 3,
            freq_mask_bins: 4,
            ..AugmentConfig::none()
        };
        let mut any = false;
        for seed in 0..20 {
            // Every value distinct and far from the mean, so a masked one shows.
            let mut features: Vec<f32> =
                (0..frames * bins * 2).map(|i| 1000.0 + i as f32).collect();
            let mean = features.iter().sum::<f32>() / features.len() as f32;
            spec_augment(&mut features, frames, bins, 2, &config, &mut Rng::new(seed));
            for pair in features.chunks_exact(2) {
                assert_eq!(
                    pair[0] == mean,
                    pair[1] == mean,
                    "seed {seed}: half a pair masked"
                );
                any |= pair[0] == mean;
            }
        }
        assert!(any, "no mask drawn in 20 seeds");
    }
}

//! Features of a clip, configured in TOML: log-mel filterbank energies, MFCC
//! (DCT-II of the log-mel) and the complex STFT. Framing, windows and mel
//! filters follow librosa, so its numbers are the reference.
//!
//! A clip's features are `[channels, time, freq]` f32, row-major, with one
//! channel; the complex STFT interleaves `(re, im)` along `freq`.

use super::error::{DataError, DataResult};
use super::wav::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    LogMel,
    Mfcc,
    /// Real and imaginary parts of the short-time Fourier transform.
    Stft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Hann,
    Hamming,
    Rectangular,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelScale {
    /// `2595 log10(1 + f / 700)`.
    Htk,
    /// Linear below 1 kHz, logarithmic above (librosa's default).
    Slaney,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelNorm {
    None,
    /// Each filter scaled to unit area (librosa's default).
    Slaney,
}

/// The longest clip, window or hop: a minute, far more than a clip that is
/// classified at once needs (long recordings are streamed in clips).
pub const MAX_CLIP_MS: f64 = 60_000.0;
/// The longest FFT.
pub const MAX_N_FFT: usize = 65_536;
/// The most feature values of one clip (64 MiB of f32).
pub const MAX_CLIP_VALUES: usize = 1 << 24;

/// How to turn a clip into features. Every field has a default, so a file
/// need only name what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    pub kind: FeatureKind,
    /// Audio is resampled to this rate before anything else.
    pub sample_rate: u32,
    /// Clips are padded with silence or cut to this length.
    pub clip_ms: f64,
    pub window_ms: f64,
    pub hop_ms: f64,
    /// FFT length; the window is centred in it and must not be longer.
    pub n_fft: usize,
    pub window: WindowKind,
    /// Pad `n_fft / 2` zeros at both ends so frame `t` is centred at `t * hop`.
    pub center: bool,
    pub n_mels: usize,
    pub f_min: f32,
    /// Upper edge of the mel filters; half the sample rate when absent.
    pub f_max: Option<f32>,
    pub mel_scale: MelScale,
    pub mel_norm: MelNorm,
    /// Added to the mel energies before the natural log, so silence stays finite.
    pub log_offset: f32,
    /// MFCC coefficients kept (for `kind = "mfcc"`).
    pub n_mfcc: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            kind: FeatureKind::LogMel,
            sample_rate: 16000,
            clip_ms: 1000.0,
            window_ms: 30.0,
            hop_ms: 10.0,
            n_fft: 512,
            window: WindowKind::Hann,
            center: true,
            n_mels: 40,
            f_min: 20.0,
            f_max: None,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::Slaney,
            log_offset: 1e-6,
            n_mfcc: 10,
        }
    }
}

impl FeatureConfig {
    /// Reads and checks a TOML feature configuration.
    pub fn load(path: &Path) -> DataResult<FeatureConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` is only for the messages.
    pub fn parse(text: &str, path: &Path) -> DataResult<FeatureConfig> {
        let config: FeatureConfig = toml::from_str(text).map_err(|e| DataError::BadConfig {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        config.validate().map_err(|reason| DataError::BadConfig {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Checks the values; the message names the key and the value. Sizes
    /// are bounded so that nothing derived from them (frames, FFT plans,
    /// feature buffers) can exhaust memory.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, message: String| if ok { Ok(()) } else { Err(message) };
        check(
            (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&self.sample_rate),
            format!(
                "sample_rate = {} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz",
                self.sample_rate
            ),
        )?;
        for (key, ms) in [
            ("clip_ms", self.clip_ms),
            ("window_ms", self.window_ms),
            ("hop_ms", self.hop_ms),
        ] {
            check(
                ms > 0.0 && ms <= MAX_CLIP_MS,
                format!("{key} = {ms} must be a positive number of at most {MAX_CLIP_MS} ms"),
            )?;
        }
        check(
            (2..=MAX_N_FFT).contains(&self.n_fft),
            format!("n_fft = {} must be between 2 and {MAX_N_FFT}", self.n_fft),
        )?;
        check(
            self.clip_samples() >= 1,
            format!("clip_ms = {} is shorter than one sample", self.clip_ms),
        )?;
        check(
            self.hop_samples() >= 1,
            format!("hop_ms = {} is shorter than one sample", self.hop_ms),
        )?;
        check(
            self.window_samples() >= 2,
            format!("window_ms = {} is shorter than two samples", self.window_ms),
        )?;
        check(
            self.window_samples() <= self.n_fft,
            format!(
                "window_ms = {} is {} samples, longer than n_fft = {}; raise n_fft",
                self.window_ms,
                self.window_samples(),
                self.n_fft
            ),
        )?;
        check(
            self.frames_for(self.clip_samples()) >= 1,
            format!(
                "clip_ms = {} gives no frame: without center, a clip must hold at least n_fft = {} samples",
                self.clip_ms, self.n_fft
            ),
        )?;
        let bins = self.n_fft / 2 + 1;
        check(
            (1..=bins).contains(&self.n_mels),
            format!(
                "n_mels = {} must be between 1 and the {bins} frequency bins of n_fft = {}",
                self.n_mels, self.n_fft
            ),
        )?;
        check(
            self.f_min.is_finite() && self.f_min >= 0.0,
            format!("f_min = {} must be a number >= 0", self.f_min),
        )?;
        let nyquist = self.sample_rate as f32 / 2.0;
        check(
            self.f_max() > self.f_min && self.f_max() <= nyquist,
            format!(
                "f_max = {} must be above f_min = {} and at most half the sample rate ({nyquist})",
                self.f_max(),
                self.f_min
            ),
        )?;
        check(
            self.log_offset.is_finite() && self.log_offset > 0.0,
            format!("log_offset = {} must be a positive number", self.log_offset),
        )?;
        check(
            self.kind != FeatureKind::Mfcc || (1..=self.n_mels).contains(&self.n_mfcc),
            format!(
                "n_mfcc = {} must be between 1 and n_mels = {}",
                self.n_mfcc, self.n_mels
            ),
        )?;
        let (frames, width) = (self.frames_for(self.clip_samples()), self.width());
        check(
            frames.saturating_mul(width) <= MAX_CLIP_VALUES,
            format!(
                "a clip has {frames} frames of {width} values, more than the {MAX_CLIP_VALUES} values a clip may have; raise hop_ms, shorten clip_ms or use fewer bins"
            ),
        )?;
        Ok(())
    }

    pub fn f_max(&self) -> f32 {
        self.f_max.unwrap_or(self.sample_rate as f32 / 2.0)
    }

    fn ms_to_samples(&self, ms: f64) -> usize {
        (ms * self.sample_rate as f64 / 1000.0).round() as usize
    }

    pub fn window_samples(&self) -> usize {
        self.ms_to_samples(self.window_ms)
    }

    pub fn hop_samples(&self) -> usize {
        self.ms_to_samples(self.hop_ms)
    }

    pub fn clip_samples(&self) -> usize {
        self.ms_to_samples(self.clip_ms)
    }

    /// Frames in a signal of `samples` samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        let hop = self.hop_samples();
        if self.center {
            1 + samples / hop
        } else if samples >= self.n_fft {
            1 + (samples - self.n_fft) / hop
        } else {
            0
        }
    }

    /// Values per frame.
    pub fn width(&self) -> usize {
        match self.kind {
            FeatureKind::LogMel => self.n_mels,
            FeatureKind::Mfcc => self.n_mfcc,
            FeatureKind::Stft => 2 * (self.n_fft / 2 + 1),
        }
    }

    /// `[channels, time, freq]` of one clip; the complex STFT's is `[1,
    /// time, bins, 2]`, its (re, im) pairs as complex values (the same
    /// floats, `width` of them per frame).
    pub fn clip_shape(&self) -> Vec<usize> {
        let frames = self.frames_for(self.clip_samples());
        match self.kind {
            FeatureKind::Stft => vec![1, frames, self.width() / 2, 2],
            _ => vec![1, frames, self.width()],
        }
    }

    /// A stable text naming every setting, for cache keys.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).expect("a feature config always serialises")
    }
}

/// A window of `length` samples, periodic as in `scipy.signal.get_window`.
pub fn window(kind: WindowKind, length: usize) -> Vec<f32> {
    let n = length as f64;
    (0..length)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * i as f64 / n;
            (match kind {
                WindowKind::Hann => 0.5 - 0.5 * phase.cos(),
                WindowKind::Hamming => 0.54 - 0.46 * phase.cos(),
                WindowKind::Rectangular => 1.0,
            }) as f32
        })
        .collect()
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            let (f_sp, min_log_hz, min_log_mel) = (200.0 / 3.0, 1000.0, 15.0);
            let log_step = 6.4f64.ln() / 27.0;
            if hz >= min_log_hz {
                min_log_mel + (hz / min_log_hz).ln() / log_step
            } else {
                hz / f_sp
            }
        }
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            let (f_sp, min_log_hz, min_log_mel) = (200.0 / 3.0, 1000.0, 15.0);
            let log_step = 6.4f64.ln() / 27.0;
            if mel >= min_log_mel {
                min_log_hz * (log_step * (mel - min_log_mel)).exp()
            } else {
                mel * f_sp
            }
        }
    }
}

/// One triangular mel filter, stored from its first non-zero FFT bin.
#[derive(Clone, Debug)]
struct MelFilter {
    first_bin: usize,
    weights: Vec<f32>,
}

/// The mel filterbank as `librosa.filters.mel` builds it.
fn mel_filters(config: &FeatureConfig) -> Vec<MelFilter> {
    let bins = config.n_fft / 2 + 1;
    let scale = config.mel_scale;
    let (lo, hi) = (
        hz_to_mel(config.f_min as f64, scale),
        hz_to_mel(config.f_max() as f64, scale),
    );
    let edges: Vec<f64> = (0..config.n_mels + 2)
        .map(|i| {
            mel_to_hz(
                lo + (hi - lo) * i as f64 / (config.n_mels + 1) as f64,
                scale,
            )
        })
        .collect();
    let bin_hz = |k: usize| k as f64 * config.sample_rate as f64 / config.n_fft as f64;
    (0..config.n_mels)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = match config.mel_norm {
                MelNorm::None => 1.0,
                MelNorm::Slaney => 2.0 / (right - left),
            };
            let weight = |k: usize| {
                let f = bin_hz(k);
                let rising = (f - left) / (centre - left);
                let falling = (right - f) / (right - centre);
                (rising.min(falling).max(0.0) * norm) as f32
            };
            let all: Vec<f32> = (0..bins).map(weight).collect();
            let first = all.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = all.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
            MelFilter {
                first_bin: first,
                weights: all[first..last].to_vec(),
            }
        })
        .collect()
}

/// Orthonormal DCT-II matrix, `[n_out, n_in]` row-major (scipy's `norm="ortho"`).
fn dct2_matrix(n_out: usize, n_in: usize) -> Vec<f32> {
    let mut matrix = Vec::with_capacity(n_out * n_in);
    for k in 0..n_out {
        let scale = if k == 0 {
            (1.0 / n_in as f64).sqrt()
        } else {
            (2.0 / n_in as f64).sqrt()
        };
        for n in 0..n_in {
            let angle = std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * n_in) as f64;
            matrix.push((scale * angle.cos()) as f32);
        }
    }
    matrix
}

/// Computes one feature configuration; build once, use from many threads.
pub struct FeatureExtractor {
    config: FeatureConfig,
    /// The window, zero-padded to `n_fft` and centred, as librosa does.
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    mel: Vec<MelFilter>,
    dct: Vec<f32>,
}

impl FeatureExtractor {
    /// Panics on an invalid configuration; configurations from files are
    /// checked by [`FeatureConfig::load`].
    pub fn new(config: &FeatureConfig) -> FeatureExtractor {
        if let Err(message) = config.validate() {
            panic!("invalid feature configuration: {message}");
        }
        let length = config.window_samples();
        let mut padded = vec![0.0; config.n_fft];
        let offset = (config.n_fft - length) / 2;
        padded[offset..offset + length].copy_from_slice(&window(config.window, length));
        FeatureExtractor {
            config: config.clone(),
            window: padded,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(config.n_fft),
            mel: mel_filters(config),
            dct: dct2_matrix(config.n_mfcc, config.n_mels),
        }
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Pads with zeros or cuts `samples` to the configured clip length.
    pub fn fit_to_clip(&self, samples: &[f32]) -> Vec<f32> {
        let mut clip = samples[..samples.len().min(self.config.clip_samples())].to_vec();
        clip.resize(self.config.clip_samples(), 0.0);
        clip
    }

    /// Features of a whole signal: `frames_for(len) * width()` values.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.config.frames_for(samples.len()) * self.config.width()];
        self.compute_into(samples, &mut out);
        out
    }

    /// Like [`compute`](Self::compute), into a slice of exactly that size.
    pub fn compute_into(&self, samples: &[f32], out: &mut [f32]) {
        let config = &self.config;
        let (n_fft, hop, width) = (config.n_fft, config.hop_samples(), config.width());
        let frames = config.frames_for(samples.len());
        assert_eq!(out.len(), frames * width, "output slice has the wrong size");
        let pad = if config.center { n_fft / 2 } else { 0 };
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; spectrum.len()];
        let mut log_mel = vec![0.0f32; config.n_mels];
        for (t, row) in out.chunks_exact_mut(width).enumerate() {
            // Sample index of the frame's first value; negative inside the padding.
            let start = (t * hop) as isize - pad as isize;
            for (i, value) in frame.iter_mut().enumerate() {
                let at = start + i as isize;
                let sample = if at >= 0 && (at as usize) < samples.len() {
                    samples[at as usize]
                } else {
                    0.0
                };
                *value = sample * self.window[i];
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            if config.kind == FeatureKind::Stft {
                for (pair, c) in row.chunks_exact_mut(2).zip(&spectrum) {
                    pair[0] = c.re;
                    pair[1] = c.im;
                }
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (value, filter) in log_mel.iter_mut().zip(&self.mel) {
                let bins = &power[filter.first_bin..filter.first_bin + filter.weights.len()];
                let energy: f32 = bins.iter().zip(&filter.weights).map(|(p, w)| p * w).sum();
                *value = (energy + config.log_offset).ln();
            }
            match config.kind {
                FeatureKind::LogMel => row.copy_from_slice(&log_mel),
                FeatureKind::Mfcc => {
                    for (coefficient, basis) in
                        row.iter_mut().zip(self.dct.chunks_exact(config.n_mels))
                    {
                        *coefficient = basis.iter().zip(&log_mel).map(|(b, l)| b * l).sum();
                    }
                }
                FeatureKind::Stft => unreachable!("handled above"),
            }
        }
    }

    /// Features of one clip after fitting it to the clip length:
    /// `clip_shape()` values.
    pub fn clip_features(&self, samples: &[f32]) -> Vec<f32> {
        self.compute(&self.fit_to_clip(samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_follow_librosa() {
        let config = FeatureConfig::default();
        assert_eq!(config.clip_shape(), [1, 101, 40]);
        let uncentred = FeatureConfig {
            center: false,
            ..FeatureConfig::default()
        };
        assert_eq!(uncentred.frames_for(16000), 97);
        assert_eq!(uncentred.frames_for(100), 0);
    }

    #[test]
    fn mel_scales_round_trip() {
        for scale in [MelScale::Htk, MelScale::Slaney] {
            for hz in [0.0, 300.0, 999.0, 1000.0, 4321.0, 8000.0] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!((back - hz).abs() < 1e-6, "{scale:?} {hz} -> {back}");
            }
        }
    }

    #[test]
    fn dct_matrix_is_orthonormal() {
        let n = 12;
        let m = dct2_matrix(n, n);
        for i in 0..n {
            for j in 0..n {
                let dot: f32 = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-5);
            }
        }
    }
}

//! Features against librosa, and feature configuration errors.
//!
//! `tests/data_features_reference.json` was computed once with librosa 0.11.0
//! (numpy float64) by these lines; the test signals are regenerated here
//! identically:
//!
//! ```python
//! import json, numpy as np, librosa
//! SR, N = 16000, 3200
//! def lcg_noise(n, seed=12345):
//!     s, out = seed, []
//!     for _ in range(n):
//!         s = (s * 6364136223846793005 + 1442695040888963407) % 2**64
//!         out.append(((s >> 40) / 2**24 * 2 - 1) * 0.5)
//!     return np.array(out)
//! t = np.arange(N) / SR
//! signals = {
//!     "sine": 0.5 * np.sin(2 * np.pi * 1000 * t),
//!     "chirp": 0.5 * np.sin(2 * np.pi * (100 * t + (7000 - 100) * t**2 / (2 * N / SR))),
//!     "noise": lcg_noise(N),
//! }
//! FRAMES = [0, 1, 7, 10, 20]
//! out = {"librosa": librosa.__version__, "frames": FRAMES, "signals": {}}
//! for name, x in signals.items():
//!     x = x.astype(np.float32).astype(np.float64)
//!     a = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=512, hop_length=160, win_length=480, window="hann",
//!                                        center=True, pad_mode="constant", power=2.0, n_mels=40, fmin=20, fmax=8000)
//!     b = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=512, hop_length=160, win_length=400, window="hamming",
//!                                        center=False, power=2.0, n_mels=32, fmin=0, fmax=4000, htk=True, norm=None)
//!     mfcc = librosa.feature.mfcc(S=np.log(a + 1e-6), n_mfcc=13)
//!     stft = librosa.stft(x, n_fft=512, hop_length=160, win_length=480, window="hann", center=True, pad_mode="constant")
//!     pick = lambda m, fr: [[float("%.7g" % v) for v in m[:, f]] for f in fr]
//!     out["signals"][name] = {
//!         "log_mel_slaney": pick(np.log(a + 1e-6), FRAMES),
//!         "log_mel_htk": pick(np.log(b + 1e-6), [0, 1, 7, 10]),
//!         "mfcc": pick(mfcc, FRAMES),
//!         "stft_re": pick(stft.real, [0, 10]),
//!         "stft_im": pick(stft.imag, [0, 10]),
//!         "frames_center": int(a.shape[1]), "frames_uncentred": int(b.shape[1]),
//!     }
//! json.dump(out, open("librosa_reference.json", "w"), separators=(",", ":"))
//! ```

use audionas::data::features::{
    FeatureConfig, FeatureExtractor, FeatureKind, MelNorm, MelScale, WindowKind,
};
use audionas::data::DataError;
use std::path::Path;

const SAMPLE_RATE: f64 = 16000.0;
const SAMPLES: usize = 3200;

/// Log-mel and MFCC values may differ by this much (natural-log units):
/// f32 FFTs against librosa's f64 ones.
const LOG_TOLERANCE: f32 = 2e-3;
/// STFT values: absolute slack plus a relative share of the magnitude.
const STFT_ATOL: f32 = 2e-3;
const STFT_RTOL: f32 = 1e-4;

fn lcg_noise(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) * 0.5
        })
        .collect()
}

fn signal(name: &str) -> Vec<f32> {
    let pi = std::f64::consts::PI;
    let duration = SAMPLES as f64 / SAMPLE_RATE;
    let values: Vec<f64> = match name {
        "sine" => (0..SAMPLES)
            .map(|i| 0.5 * (2.0 * pi * 1000.0 * i as f64 / SAMPLE_RATE).sin())
            .collect(),
        "chirp" => (0..SAMPLES)
            .map(|i| {
                let t = i as f64 / SAMPLE_RATE;
                0.5 * (2.0 * pi * (100.0 * t + (7000.0 - 100.0) * t * t / (2.0 * duration))).sin()
            })
            .collect(),
        "noise" => lcg_noise(SAMPLES, 12345),
        other => panic!("no signal {other}"),
    };
    values.into_iter().map(|v| v as f32).collect()
}

fn reference() -> serde_json::Value {
    let text = include_str!("data_features_reference.json");
    serde_json::from_str(text).unwrap()
}

fn rows(value: &serde_json::Value) -> Vec<Vec<f32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn check(
    what: &str,
    ours: &[f32],
    width: usize,
    frames: &[usize],
    expected: &[Vec<f32>],
    ok: impl Fn(f32, f32) -> bool,
) {
    for (&frame, row) in frames.iter().zip(expected) {
        assert_eq!(row.len(), width, "{what}: reference width");
        for (bin, &want) in row.iter().enumerate() {
            let got = ours[frame * width + bin];
            assert!(
                ok(got, want),
                "{what}: frame {frame} bin {bin}: ours {got}, librosa {want}"
            );
        }
    }
}

fn slaney_config(kind: FeatureKind) -> FeatureConfig {
    FeatureConfig {
        kind,
        n_mfcc: 13,
        f_min: 20.0,
        f_max: Some(8000.0),
        ..FeatureConfig::default()
    }
}

#[test]
fn log_mel_mfcc_and_stft_match_librosa() {
    let reference = reference();
    let frames: Vec<usize> = serde_json::from_value(reference["frames"].clone()).unwrap();
    let close = |got: f32, want: f32| (got - want).abs() <= LOG_TOLERANCE;
    let stft_close = |got: f32, want: f32| (got - want).abs() <= STFT_ATOL + STFT_RTOL * want.abs();
    for name in ["sine", "chirp", "noise"] {
        let expected = &reference["signals"][name];
        let x = signal(name);

        let log_mel = FeatureExtractor::new(&slaney_config(FeatureKind::LogMel));
        let ours = log_mel.compute(&x);
        assert_eq!(
            ours.len() / 40,
            expected["frames_center"].as_u64().unwrap() as usize
        );
        check(
            name,
            &ours,
            40,
            &frames,
            &rows(&expected["log_mel_slaney"]),
            close,
        );

        let mfcc = FeatureExtractor::new(&slaney_config(FeatureKind::Mfcc)).compute(&x);
        check(name, &mfcc, 13, &frames, &rows(&expected["mfcc"]), close);

        let stft = FeatureExtractor::new(&slaney_config(FeatureKind::Stft)).compute(&x);
        let (re, im) = (rows(&expected["stft_re"]), rows(&expected["stft_im"]));
        for (row, &frame) in [0usize, 10].iter().enumerate() {
            for bin in 0..257 {
                let (got_re, got_im) =
                    (stft[frame * 514 + 2 * bin], stft[frame * 514 + 2 * bin + 1]);
                assert!(
                    stft_close(got_re, re[row][bin]),
                    "{name} stft re frame {frame} bin {bin}: {got_re} vs {}",
                    re[row][bin]
                );
                assert!(
                    stft_close(got_im, im[row][bin]),
                    "{name} stft im frame {frame} bin {bin}: {got_im} vs {}",
                    im[row][bin]
                );
            }
        }

        let htk = FeatureExtractor::new(&FeatureConfig {
            kind: FeatureKind::LogMel,
            window_ms: 25.0,
            window: WindowKind::Hamming,
            center: false,
            n_mels: 32,
            f_min: 0.0,
            f_max: Some(4000.0),
            mel_scale: MelScale::Htk,
            mel_norm: MelNorm::None,
            ..FeatureConfig::default()
        });
        let ours = htk.compute(&x);
        assert_eq!(
            ours.len() / 32,
            expected["frames_uncentred"].as_u64().unwrap() as usize
        );
        check(
            name,
            &ours,
            32,
            &[0, 1, 7, 10],
            &rows(&expected["log_mel_htk"]),
            close,
        );
    }
}

#[test]
fn clips_are_padded_or_cut_to_the_clip_length() {
    let extractor = FeatureExtractor::new(&FeatureConfig::default());
    let short = extractor.clip_features(&signal("sine"));
    let long = extractor.clip_features(&vec![0.1; 40000]);
    assert_eq!(short.len(), 101 * 40);
    assert_eq!(long.len(), 101 * 40);
    assert!(short.iter().chain(&long).all(|v| v.is_finite()));
}

fn parse_error(text: &str) -> String {
    match FeatureConfig::parse(text, Path::new("configs/features/bad.toml")) {
        Err(e @ DataError::BadConfig { .. }) => e.to_string(),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_misspelt_key_is_named_with_the_valid_ones() {
    let message = parse_error("n_mel = 40\n");
    assert!(message.contains("configs/features/bad.toml"), "{message}");
    assert!(message.contains("n_mel"), "{message}");
    assert!(message.contains("n_mels"), "{message}");
}

#[test]
fn bad_values_are_named() {
    let message = parse_error("kind = \"spectrogram\"\n");
    assert!(
        message.contains("spectrogram") && message.contains("log_mel"),
        "{message}"
    );
    let message = parse_error("window_ms = 40.0\nn_fft = 512\n");
    assert!(
        message.contains("window_ms = 40") && message.contains("n_fft"),
        "{message}"
    );
    let message = parse_error("f_max = 9000.0\n");
    assert!(message.contains("f_max = 9000"), "{message}");
    let message = parse_error("kind = \"mfcc\"\nn_mfcc = 50\n");
    assert!(message.contains("n_mfcc = 50"), "{message}");
}

#[test]
fn shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/features");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            FeatureConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 3);
    let logmel = FeatureConfig::load(&dir.join("logmel40.toml")).unwrap();
    assert_eq!(logmel.clip_shape(), [1, 101, 40]);
    assert_eq!((logmel.window_samples(), logmel.hop_samples()), (480, 160));
}

#[test]
fn sizes_and_numbers_out_of_their_meaning_are_named() {
    let cases = [
        ("clip_ms = inf\n", "clip_ms = inf"),
        ("clip_ms = 1e9\n", "clip_ms = 1000000000"),
        (
            "clip_ms = 0.01\n",
            "clip_ms = 0.01 is shorter than one sample",
        ),
        ("hop_ms = inf\n", "hop_ms = inf"),
        ("hop_ms = nan\n", "hop_ms = NaN"),
        ("window_ms = -30.0\n", "window_ms = -30"),
        (
            "center = false\nclip_ms = 20.0\n",
            "clip_ms = 20 gives no frame",
        ),
        ("n_fft = 1000000000\n", "n_fft = 1000000000"),
        ("n_mels = 300\n", "n_mels = 300"),
        ("sample_rate = 0\n", "sample_rate = 0"),
        ("sample_rate = 2147483647\n", "sample_rate = 2147483647"),
        ("f_min = nan\n", "f_min = NaN"),
        ("log_offset = inf\n", "log_offset = inf"),
        (
            "kind = \"stft\"\nclip_ms = 60000.0\nhop_ms = 0.0625\nn_fft = 4096\n",
            "more than the 16777216 values a clip may have",
        ),
    ];
    for (text, fragment) in cases {
        let message = parse_error(text);
        assert!(message.contains(fragment), "{text}: {message}");
    }
}

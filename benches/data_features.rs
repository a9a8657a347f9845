//! Feature extraction speed on synthetic audio: one-second clips at 16 kHz
//! into 40 log-mel bins (30 ms window, 10 ms hop), 10 MFCC and the complex
//! STFT; throughput in clips per second.

use audionas::data::features::{FeatureConfig, FeatureExtractor, FeatureKind};
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn features(c: &mut Criterion) {
    let mut rng = Rng::new(5);
    let clips: Vec<Vec<f32>> = (0..16)
        .map(|k| {
            (0..16000)
                .map(|i| 0.3 * (i as f32 * 0.01 * (k + 1) as f32).sin() + 0.05 * rng.normal())
                .collect()
        })
        .collect();
    let mut group = c.benchmark_group("features_1s_clips");
    group.throughput(Throughput::Elements(clips.len() as u64));
    for kind in [FeatureKind::LogMel, FeatureKind::Mfcc, FeatureKind::Stft] {
        let config = FeatureConfig {
            kind,
            ..FeatureConfig::default()
        };
        let extractor = FeatureExtractor::new(&config);
        let mut out = vec![0.0; config.clip_shape().iter().product()];
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{kind:?}")),
            &clips,
            |b, clips| {
                b.iter(|| {
                    for clip in clips {
                        extractor.compute_into(clip, &mut out);
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, features);
criterion_main!(benches);

//! Batches: seeded epoch order, augmentation on the background thread, and
//! the upload into GPU buffers.

use audionas::data::augment::AugmentConfig;
use audionas::data::batch::{epoch_order, BatchConfig, BatchLoader, GpuBatch};
use audionas::data::dataset::{DataSet, DataSetConfig, Split, SplitRule};
use audionas::data::features::FeatureConfig;
use audionas::data::prepare::{prepare, PrepareOptions};
use audionas::gpu::Gpu;
use std::path::Path;
use std::sync::Arc;

fn write_tone(path: &Path, hz: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..4000 {
        let v = 0.4 * (2.0 * std::f32::consts::PI * hz * i as f32 / 16000.0).sin();
        writer.write_sample((v * 32767.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

fn features() -> FeatureConfig {
    FeatureConfig {
        clip_ms: 250.0,
        n_mels: 16,
        ..FeatureConfig::default()
    }
}

/// Two classes of ten speakers each, and background noise.
fn data_set(dir: &Path) -> DataSet {
    for (class, hz) in [("high", 2000.0), ("low", 300.0)] {
        for s in 0..10 {
            write_tone(
                &dir.join(format!("{class}/spk{s}_nohash_0.wav")),
                hz + s as f32,
            );
        }
    }
    write_tone(&dir.join("_background_noise_/hum.wav"), 60.0);
    let config = DataSetConfig {
        split: SplitRule::Speaker,
        ..DataSetConfig::default()
    };
    DataSet::open(dir, &config).unwrap()
}

fn config(augment: AugmentConfig) -> BatchConfig {
    BatchConfig {
        batch_size: 4,
        seed: 11,
        drop_last: false,
        shuffle: true,
        augment,
    }
}

#[test]
fn epochs_are_shuffled_from_the_seed() {
    let indices: Vec<usize> = (0..50).collect();
    let a = epoch_order(&indices, 1, 0, true);
    assert_eq!(a, epoch_order(&indices, 1, 0, true));
    assert_ne!(a, epoch_order(&indices, 1, 1, true));
    assert_ne!(a, epoch_order(&indices, 2, 0, true));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, indices);
    assert_eq!(epoch_order(&indices, 1, 0, false), indices);
}

#[test]
fn batches_cover_the_split_and_repeat_with_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data_set = data_set(dir.path());
    let options = PrepareOptions {
        cache_dir: None,
        strict: true,
        threads: 2,
    };
    let prepared = Arc::new(prepare(&data_set, &features(), &options).unwrap());
    let loader = BatchLoader::new(
        &data_set,
        prepared.clone(),
        &features(),
        Split::Train,
        config(AugmentConfig::none()),
    )
    .unwrap();
    let train = prepared.indices_of(Split::Train).len();
    assert_eq!(loader.len(), train);
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(batches.len(), train.div_ceil(4));
    assert_eq!(batches[0].shape, [4, 1, 26, 16]);
    let labels: usize = batches.iter().map(|b| b.labels.len()).sum();
    assert_eq!(labels, train);
    // Without augmentation a batch holds the cached features unchanged.
    let first = &batches[0].features[..26 * 16];
    assert!((0..prepared.clips.len()).any(|i| prepared.clip_features(i) == first));
    assert_eq!(loader.epoch(0).collect::<Vec<_>>(), batches);
    // Dropping an epoch part-way stops its thread cleanly.
    let mut partial = loader.epoch(1);
    assert!(partial.next().is_some());
    drop(partial);

    let augmented = BatchLoader::new(
        &data_set,
        prepared,
        &features(),
        Split::Train,
        config(AugmentConfig {
            noise_probability: 1.0,
            ..AugmentConfig::default()
        }),
    )
    .unwrap();
    let a: Vec<_> = augmented.epoch(3).collect();
    assert_eq!(
        a,
        augmented.epoch(3).collect::<Vec<_>>(),
        "augmentation is seeded"
    );
    assert_ne!(a[0].features, batches[0].features);
    assert!(a.iter().all(|b| b.features.iter().all(|v| v.is_finite())));
}

#[test]
fn batches_land_in_gpu_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let data_set = data_set(dir.path());
    let options = PrepareOptions {
        cache_dir: None,
        strict: true,
        threads: 2,
    };
    let prepared = Arc::new(prepare(&data_set, &features(), &options).unwrap());
    let loader = BatchLoader::new(
        &data_set,
        prepared,
        &features(),
        Split::Train,
        config(AugmentConfig::none()),
    )
    .unwrap();
    let gpu = Gpu::shared();
    let mut batches = loader.epoch(0);
    let first = batches.next().unwrap();
    let mut on_gpu = GpuBatch::upload(gpu, &first).unwrap();
    assert_eq!(on_gpu.features.shape(), &first.shape);
    for batch in batches {
        on_gpu.load(gpu, &batch).unwrap();
        assert_eq!(gpu.download(&on_gpu.features).unwrap(), batch.features);
        assert_eq!(gpu.download_u32(&on_gpu.labels).unwrap(), batch.labels);
    }
}

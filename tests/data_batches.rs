//! Batches: seeded epoch order, augmentation on the background thread,
//! endless streams that resume where they stood, and the upload into GPU
//! buffers.

use audionas::data::augment::AugmentConfig;
use audionas::data::batch::{epoch_order, Batch, BatchConfig, BatchLoader, GpuBatch};
use audionas::data::dataset::{DataSet, DataSetConfig, Split, SplitRule};
use audionas::data::features::FeatureConfig;
use audionas::data::prepare::{prepare, PrepareOptions, Prepared};
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

/// Two classes of ten speakers each, and background noise, split by speaker.
fn data_set(dir: &Path) -> DataSet {
    write_data(dir);
    let config = DataSetConfig {
        split: SplitRule::Speaker,
        ..DataSetConfig::default()
    };
    DataSet::open(dir, &config).unwrap()
}

fn write_data(dir: &Path) {
    for (class, hz) in [("high", 2000.0), ("low", 300.0)] {
        for s in 0..10 {
            write_tone(
                &dir.join(format!("{class}/spk{s}_nohash_0.wav")),
                hz + s as f32,
            );
        }
    }
    write_tone(&dir.join("_background_noise_/hum.wav"), 60.0);
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

/// The tone set with `validation_percent` of its speakers held out for
/// validation, its features prepared in memory.
fn prepared_set(dir: &Path, validation_percent: f64) -> (DataSet, Arc<Prepared>) {
    write_data(dir);
    let config = DataSetConfig {
        split: SplitRule::Speaker,
        validation_percent,
        ..DataSetConfig::default()
    };
    let set = DataSet::open(dir, &config).unwrap();
    let options = PrepareOptions {
        cache_dir: None,
        strict: true,
        threads: 2,
    };
    let prepared = Arc::new(prepare(&set, &features(), &options).unwrap());
    (set, prepared)
}

fn train_loader(set: &DataSet, prepared: &Arc<Prepared>, config: BatchConfig) -> BatchLoader {
    BatchLoader::new(set, prepared.clone(), &features(), Split::Train, config).unwrap()
}

/// Batch size 3 leaves a partial batch at the end of an epoch.
fn config_of_three(augment: AugmentConfig, drop_last: bool) -> BatchConfig {
    BatchConfig {
        batch_size: 3,
        drop_last,
        ..config(augment)
    }
}

#[test]
fn a_forever_stream_is_the_epochs_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let (set, prepared) = prepared_set(dir.path(), 10.0);
    for drop_last in [false, true] {
        let loader = train_loader(
            &set,
            &prepared,
            config_of_three(AugmentConfig::default(), drop_last),
        );
        assert_ne!(loader.len() % 3, 0, "the split must end in a partial batch");
        let epochs: Vec<Batch> = (0..3).flat_map(|e| loader.epoch(e)).collect();
        assert_eq!(epochs.len(), 3 * loader.batches_per_epoch());
        let forever: Vec<Batch> = loader.forever(0).unwrap().take(epochs.len()).collect();
        assert!(
            forever == epochs,
            "drop_last {drop_last}: the streams differ"
        );
        let full = forever
            .iter()
            .all(|b| b.labels.len() == 3 && b.shape[0] == 3);
        assert_eq!(full, drop_last, "drop_last {drop_last}: batch sizes");
    }
}

/// A stream started after `consumed` batches is the whole stream without
/// its first `consumed`, with augmentation drawing random numbers in every
/// batch, within an epoch, at and across epoch boundaries, and far away
/// (a skip that assembled the skipped batches would not finish).
#[test]
fn a_forever_stream_resumes_after_the_consumed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (set, prepared) = prepared_set(dir.path(), 10.0);
    let augment = AugmentConfig {
        noise_probability: 0.5,
        ..AugmentConfig::default()
    };
    let loader = train_loader(&set, &prepared, config_of_three(augment, false));
    let per_epoch = loader.batches_per_epoch() as u64;
    let whole: Vec<Batch> = loader
        .forever(0)
        .unwrap()
        .take(3 * per_epoch as usize)
        .collect();
    for consumed in [
        1,
        per_epoch - 1,
        per_epoch,
        per_epoch + 1,
        2 * per_epoch + 2,
    ] {
        let resumed: Vec<Batch> = loader
            .forever(consumed)
            .unwrap()
            .take(whole.len() - consumed as usize)
            .collect();
        assert!(
            resumed == whole[consumed as usize..],
            "after {consumed} of {per_epoch} batches an epoch, the streams differ"
        );
    }
    let far_epoch = 1_000_000_000;
    let far = loader.forever(far_epoch * per_epoch + 2).unwrap();
    let want: Vec<Batch> = loader.epoch(far_epoch).skip(2).collect();
    assert!(far.take(want.len()).eq(want), "far from the start");
}

#[test]
fn a_forever_stream_needs_one_batch_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (set, prepared) = prepared_set(dir.path(), 0.0);
    let clips = prepared.indices_of(Split::Train).len();
    let too_big = BatchConfig {
        batch_size: clips + 1,
        drop_last: true,
        ..config(AugmentConfig::none())
    };
    let message = train_loader(&set, &prepared, too_big.clone())
        .forever(0)
        .err()
        .expect("no full batch")
        .to_string();
    for needle in [
        &set.root.display().to_string(),
        "train split",
        &format!("{clips} clips"),
        "fewer than one full batch",
    ] {
        assert!(message.contains(needle), "no {needle:?} in {message:?}");
    }
    // Keeping the partial batch, the split gives one batch an epoch.
    let partial = BatchConfig {
        drop_last: false,
        ..too_big
    };
    let mut stream = train_loader(&set, &prepared, partial).forever(5).unwrap();
    assert_eq!(stream.next().unwrap().labels.len(), clips);

    let validation = BatchLoader::new(
        &set,
        prepared.clone(),
        &features(),
        Split::Validation,
        config(AugmentConfig::none()),
    )
    .unwrap();
    assert!(validation.is_empty());
    let message = validation.forever(0).err().expect("no clips").to_string();
    assert!(
        message.contains("validation split has no clips"),
        "{message}"
    );
}

#[test]
fn a_batch_size_of_zero_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data_set = data_set(dir.path());
    let options = PrepareOptions {
        cache_dir: None,
        strict: true,
        threads: 2,
    };
    let prepared = Arc::new(prepare(&data_set, &features(), &options).unwrap());
    let empty = BatchConfig {
        batch_size: 0,
        ..config(AugmentConfig::none())
    };
    let result = BatchLoader::new(&data_set, prepared, &features(), Split::Train, empty);
    let message = result.err().expect("batch size 0 is refused").to_string();
    assert!(message.contains("batch size of 0"), "{message}");
}

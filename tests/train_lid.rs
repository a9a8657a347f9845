//! The language identification baseline (`configs/lid_ds_cnn.toml`, 4 s
//! log-mel features) trains through the normal train path on a tiny set
//! made by `data synth --task lid`: 2 to 4 s clips are padded to the
//! feature config's 4 s, and the test split holds only unheard voices.

use audionas::data::lid::{language, synthesize_lid, LidSynthConfig};
use audionas::data::prepare::PrepareOptions;
use audionas::gpu::Gpu;
use audionas::train::config::Experiment;
use audionas::train::trainer::{train, TrainOptions};
use audionas::train::RunDir;
use std::path::Path;

#[test]
fn the_lid_baseline_trains_on_synthesised_languages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lid");
    synthesize_lid(&LidSynthConfig {
        per_language: 4,
        speakers: 4,
        languages: ["french", "german", "spanish"]
            .map(|l| language(l).unwrap())
            .to_vec(),
        noise_seconds: 1.0,
        threads: 2,
        seed: 1,
        ..LidSynthConfig::new(&data)
    })
    .expect("espeak-ng and the word lists (Debian: apt-get install espeak-ng wfrench wngerman wspanish)");

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lid_ds_cnn.toml");
    let mut experiment = Experiment::load(&path).unwrap();
    assert_eq!(experiment.features.clip_shape(), [1, 401, 40]);
    experiment.train.epochs = 1;
    experiment.train.batch_size = 2;
    let run = RunDir::create(&dir.path().join("runs"), "lid", &experiment.to_toml()).unwrap();
    let options = TrainOptions {
        data_dir: data,
        prepare: PrepareOptions {
            cache_dir: Some(dir.path().join("cache")),
            threads: 2,
            ..PrepareOptions::default()
        },
        resume: false,
        stop_after_epochs: None,
        verbose: false,
        init_from: None,
    };
    let summary = train(Gpu::shared(), &experiment, &run, &options).unwrap();
    assert_eq!(summary.epochs_done, 1);
    // 4 speakers at 15% each: one for validation, one for test, each
    // speaking the 3 languages once.
    let test = summary.test.expect("a test speaker");
    assert_eq!(test.samples, 3);
    assert!(test.loss.is_finite());
    assert_eq!(test.confusion.len(), 3);
}

//! `audionas data synth`: a tiny data set really synthesised with the
//! text-to-speech engines. CI installs espeak-ng and flite; without any
//! engine this test fails and says what to install.

use audionas::data::dataset::{DataSet, DataSetConfig, KEYWORDS};
use audionas::data::stats::stats;
use audionas::data::synth::{installed_engines, synthesize, synthetic_noise, SynthConfig};
use audionas::util::rng::Rng;

#[test]
fn synthesises_a_small_speech_commands_set() {
    let engines = installed_engines();
    assert!(
        !engines.is_empty(),
        "no text-to-speech engine found; install one (Debian: apt-get install espeak-ng flite)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kws");
    let config = SynthConfig {
        per_class: 3,
        speakers: 3,
        noise_seconds: 2.0,
        threads: 2,
        ..SynthConfig::new(&out)
    };
    let report = synthesize(&config).unwrap();
    assert_eq!(report.clips, 10 * 3 + 10 * 2);
    assert_eq!(report.noise_files.len(), 3);
    assert!(!report.engines.is_empty());

    let data_set = DataSet::open(&out, &DataSetConfig::default()).unwrap();
    let summary = stats(&data_set, 2);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_eq!(summary.all_speakers, 3);
    // Every keyword clip, and the unknown words sampled to their share.
    let rate_16k = summary.sample_rates.get(&16000).copied().unwrap_or(0);
    assert_eq!(summary.sample_rates.len(), 1);
    assert!(rate_16k >= 10 * 3, "{rate_16k} clips at 16 kHz");
    for keyword in KEYWORDS {
        let files = std::fs::read_dir(out.join(keyword)).unwrap().count();
        assert_eq!(files, 3, "{keyword}");
    }
    // Every clip holds a word louder than its noise floor.
    for entry in std::fs::read_dir(out.join("yes")).unwrap() {
        let audio = audionas::data::wav::read_wav(&entry.unwrap().path(), 16000).unwrap();
        assert_eq!(audio.samples.len(), 16000);
        let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.2, "peak {peak}");
    }
}

#[test]
fn synthetic_noise_is_seeded_and_bounded() {
    for kind in ["white", "pink", "brown"] {
        let a = synthetic_noise(kind, 4000, &mut Rng::new(1));
        assert_eq!(a, synthetic_noise(kind, 4000, &mut Rng::new(1)));
        let peak = a.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 1e-6, "{kind}");
    }
}

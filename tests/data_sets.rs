//! Data set layouts, splits, skipped files, the feature cache and stats, on
//! small data sets written here.

use audionas::data::dataset::{
    nohash_speaker, speaker_splits, which_set, ClipSource, DataSet, DataSetConfig, Layout, Split,
    SplitRule, Task, KEYWORDS,
};
use audionas::data::features::FeatureConfig;
use audionas::data::prepare::{prepare, PrepareOptions};
use audionas::data::stats::stats;
use std::path::Path;

fn write_tone(path: &Path, seconds: f32, rate: u32, hz: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * rate as f32) as usize {
        let v = 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin();
        writer.write_sample((v * 32767.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

/// Speech Commands training layout: keywords, two other words, background noise.
fn speech_commands(root: &Path, speakers: usize) {
    for (w, word) in KEYWORDS.iter().chain(&["bed", "cat"]).enumerate() {
        for s in 0..speakers {
            let speaker = format!("{:08x}", 0x1000_0000u32 + s as u32 * 7919);
            write_tone(
                &root.join(word).join(format!("{speaker}_nohash_0.wav")),
                0.25,
                16000,
                200.0 + 50.0 * w as f32,
            );
        }
    }
    write_tone(&root.join("_background_noise_/hum.wav"), 3.0, 16000, 50.0);
}

fn small_features() -> FeatureConfig {
    FeatureConfig {
        clip_ms: 250.0,
        ..FeatureConfig::default()
    }
}

#[test]
fn hash_rule_matches_python_hashlib() {
    // From Python: the `which_set` of TensorFlow's input_data.py with 10 / 10.
    let cases = [
        ("0a7c2a8d_nohash_0.wav", Split::Train),
        ("0c40e715_nohash_1.wav", Split::Test),
        ("9a7c1f83_nohash_2.wav", Split::Test),
        ("c1d39ce8_nohash_3.wav", Split::Train),
        ("1024.wav", Split::Train),
        ("bed_0a7c2a8d_nohash_0.wav", Split::Train),
        ("00000000_nohash_0.wav", Split::Validation),
        ("9e3779b1_nohash_0.wav", Split::Validation),
        ("2e2ac0ea_nohash_5.wav", Split::Validation),
        ("yes/b83c1acf_nohash_0.wav", Split::Test),
    ];
    for (name, split) in cases {
        assert_eq!(which_set(name, 10.0, 10.0), split, "{name}");
    }
}

#[test]
fn speaker_ids_come_from_nohash_names() {
    assert_eq!(nohash_speaker("0a7c2a8d_nohash_3.wav"), Some("0a7c2a8d"));
    assert_eq!(
        nohash_speaker("bed_0a7c2a8d_nohash_0.wav"),
        Some("0a7c2a8d")
    );
    assert_eq!(nohash_speaker("1024.wav"), None);
    let splits = speaker_splits(["a", "b", "c", "d", "e", "f"], 10.0, 10.0);
    let count = |s| splits.values().filter(|&&v| v == s).count();
    assert_eq!(
        (
            count(Split::Train),
            count(Split::Validation),
            count(Split::Test)
        ),
        (4, 1, 1)
    );
}

#[test]
fn speech_commands_twelve_classes_with_silence_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 20);
    let data_set = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    assert_eq!(data_set.layout, Layout::SpeechCommands);
    assert_eq!(data_set.classes.len(), 12);
    assert_eq!(&data_set.classes[..2], &["_silence_", "_unknown_"]);
    let counts = data_set.counts();
    for split in Split::ALL {
        let keywords: usize = counts[2..].iter().map(|c| c[split as usize]).sum();
        let expected = (keywords as f64 * 0.1).ceil() as usize;
        assert_eq!(counts[0][split as usize], expected, "silence in {split:?}");
        assert!(
            counts[1][split as usize] <= expected,
            "unknown in {split:?}"
        );
    }
    assert!(data_set
        .clips
        .iter()
        .filter(|c| c.label == 0)
        .all(|c| matches!(&c.source, ClipSource::Noise { file: Some(_), .. })));
    // The hash rule keeps a speaker's clips together.
    for clip in &data_set.clips {
        if let Some(speaker) = &clip.speaker {
            assert_eq!(clip.split, which_set(speaker, 10.0, 10.0));
        }
    }

    let all_words = DataSet::open(
        dir.path(),
        &DataSetConfig {
            task: Task::AllWords,
            ..DataSetConfig::default()
        },
    )
    .unwrap();
    assert_eq!(all_words.classes.len(), 12);
    assert!(all_words.classes.contains(&"bed".to_string()));
    assert_eq!(all_words.clips.len(), 12 * 20);
}

#[test]
fn lists_decide_the_split_when_present() {
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 4);
    let first = std::fs::read_dir(dir.path().join("yes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let name = format!("yes/{}", first.file_name().to_string_lossy());
    std::fs::write(dir.path().join("validation_list.txt"), format!("{name}\n")).unwrap();
    std::fs::write(dir.path().join("testing_list.txt"), "").unwrap();
    let data_set = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    let validation: Vec<_> = data_set
        .clips
        .iter()
        .filter(|c| c.split == Split::Validation && matches!(c.source, ClipSource::File(_)))
        .collect();
    assert_eq!(validation.len(), 1);
    assert_eq!(validation[0].source, ClipSource::File(name.into()));
}

#[test]
fn test_set_layout_keeps_unknown_words_and_silence_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tone(&root.join("yes/0a7c2a8d_nohash_0.wav"), 0.25, 16000, 300.0);
    write_tone(
        &root.join("_unknown_/bed_0a7c2a8d_nohash_0.wav"),
        0.25,
        16000,
        400.0,
    );
    write_tone(
        &root.join("_unknown_/tree_1b2c3d4e_nohash_1.wav"),
        0.25,
        16000,
        500.0,
    );
    write_tone(&root.join("_silence_/1024.wav"), 0.25, 16000, 10.0);
    let data_set = DataSet::open(root, &DataSetConfig::default()).unwrap();
    let counts = data_set.counts();
    let total = |c: [usize; 3]| c.iter().sum::<usize>();
    assert_eq!(
        (total(counts[0]), total(counts[1]), total(counts[2])),
        (1, 2, 1)
    );
    let unknown_speakers: Vec<_> = data_set
        .clips
        .iter()
        .filter(|c| c.label == 1)
        .map(|c| c.speaker.clone().unwrap())
        .collect();
    assert_eq!(unknown_speakers, ["0a7c2a8d", "1b2c3d4e"]);
    let words = DataSet::open(
        root,
        &DataSetConfig {
            task: Task::AllWords,
            ..DataSetConfig::default()
        },
    )
    .unwrap();
    assert_eq!(words.classes, ["bed", "tree", "yes"]);
}

#[test]
fn fsdd_and_folders_split_by_speaker() {
    let dir = tempfile::tempdir().unwrap();
    for speaker in ["ann", "bob", "cyd", "dee", "eve"] {
        for digit in 0..10 {
            write_tone(
                &dir.path()
                    .join(format!("recordings/{digit}_{speaker}_0.wav")),
                0.1,
                8000,
                300.0,
            );
        }
    }
    let fsdd = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    assert_eq!(fsdd.layout, Layout::Fsdd);
    assert_eq!(fsdd.classes.len(), 10);
    let summary = stats(&fsdd, 2);
    assert_eq!(summary.all_speakers, 5);
    assert_eq!(summary.shared_speakers, 0);
    assert_eq!(summary.speakers, [3, 1, 1]);
    assert_eq!(summary.sample_rates.get(&8000), Some(&50));

    let folders = tempfile::tempdir().unwrap();
    for class in ["dog", "bird"] {
        for (i, speaker) in ["s1", "s2", "s3", "s4"].iter().enumerate() {
            write_tone(
                &folders
                    .path()
                    .join(format!("{class}/{speaker}_nohash_{i}.wav")),
                0.1,
                22050,
                300.0,
            );
        }
    }
    let generic = DataSet::open(folders.path(), &DataSetConfig::default()).unwrap();
    assert_eq!(generic.layout, Layout::Folders);
    assert_eq!(generic.classes, ["bird", "dog"]);
    assert_eq!(stats(&generic, 1).shared_speakers, 0);
    let by_hash = DataSet::open(
        folders.path(),
        &DataSetConfig {
            split: SplitRule::Hash,
            ..DataSetConfig::default()
        },
    )
    .unwrap();
    assert_eq!(by_hash.clips.len(), 8);
}

#[test]
fn missing_or_empty_folders_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let message = DataSet::open(&missing, &DataSetConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("nothing-here") && message.contains("no such folder"),
        "{message}"
    );
    let message = DataSet::open(dir.path(), &DataSetConfig::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("expected a folder per class"), "{message}");
    let bad = DataSetConfig {
        validation_percent: 150.0,
        ..DataSetConfig::default()
    };
    let message = DataSet::open(dir.path(), &bad).unwrap_err().to_string();
    assert!(message.contains("validation_percent = 150"), "{message}");
}

#[test]
fn broken_files_are_skipped_and_listed_or_stop_a_strict_run() {
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 3);
    std::fs::write(
        dir.path().join("yes/deadbeef_nohash_0.wav"),
        b"RIFF but not really",
    )
    .unwrap();
    std::fs::write(dir.path().join("no/README.txt"), b"notes").unwrap();
    let data_set = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    assert_eq!(data_set.skipped.len(), 1, "the .txt file");
    let cache = tempfile::tempdir().unwrap();
    let options = PrepareOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        strict: false,
        threads: 2,
    };
    let prepared = prepare(&data_set, &small_features(), &options).unwrap();
    let reasons: Vec<String> = prepared
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("deadbeef_nohash_0.wav") && r.contains("not a readable WAV")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("README.txt") && r.contains("not a .wav file")),
        "{reasons:?}"
    );
    assert_eq!(prepared.clips.len(), data_set.clips.len() - 1);
    assert_eq!(stats(&data_set, 2).skipped.len(), 2);

    let strict = PrepareOptions {
        strict: true,
        ..options.clone()
    };
    let message = prepare(&data_set, &small_features(), &strict)
        .unwrap_err()
        .to_string();
    assert!(message.contains("deadbeef_nohash_0.wav"), "{message}");
    let uncached = PrepareOptions {
        cache_dir: None,
        ..strict
    };
    let message = prepare(&data_set, &small_features(), &uncached)
        .unwrap_err()
        .to_string();
    assert!(message.contains("deadbeef_nohash_0.wav"), "{message}");
}

#[test]
fn features_are_cached_and_the_cache_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 3);
    let cache = tempfile::tempdir().unwrap();
    let options = PrepareOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        strict: true,
        threads: 2,
    };
    let data_set = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    let first = prepare(&data_set, &small_features(), &options).unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.clip_shape, [1, 26, 40]);
    assert_eq!(first.features.len(), first.clips.len() * 26 * 40);
    let second = prepare(&data_set, &small_features(), &options).unwrap();
    assert!(second.from_cache);
    assert_eq!(second.features, first.features);
    assert_eq!(second.clips, first.clips);
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        1,
        "one file, no temporaries"
    );

    // Another feature setting is another cache entry.
    let mfcc = FeatureConfig {
        kind: audionas::data::features::FeatureKind::Mfcc,
        ..small_features()
    };
    assert!(!prepare(&data_set, &mfcc, &options).unwrap().from_cache);

    // A changed file invalidates the cache.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_tone(
        &dir.path().join("yes/10000000_nohash_0.wav"),
        0.5,
        16000,
        900.0,
    );
    let reopened = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    assert!(
        !prepare(&reopened, &small_features(), &options)
            .unwrap()
            .from_cache
    );

    // A damaged cache file is reported, naming the file.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"junk").unwrap();
    }
    let message = prepare(&reopened, &small_features(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("feature cache unusable") && message.contains("delete the file"),
        "{message}"
    );
}

/// Runs `f` on a thread and fails when it takes longer than a few seconds
/// (reading a named pipe would wait for a writer forever).
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(f()));
    receiver
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("hung")
}

#[test]
fn odd_entries_are_skipped_alike_by_stats_and_prepare() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 3);
    let yes = dir.path().join("yes");
    std::os::unix::fs::symlink(yes.join("gone.wav"), yes.join("dangling.wav")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(yes.join("pipe.wav"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(yes.join("folder.wav")).unwrap();
    let first = std::fs::read_dir(&yes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_nohash_"))
        .unwrap();
    let odd_name = std::ffi::OsStr::from_bytes(b"odd\xffname.wav");
    std::fs::copy(&first, yes.join(odd_name)).unwrap();
    let expected = [
        ("dangling.wav", "a link to nothing"),
        ("pipe.wav", "named pipe"),
        ("folder.wav", "a folder, not a WAV file"),
        ("name.wav", "not valid UTF-8"),
    ];
    let check = |what: &str, skipped: &[audionas::data::dataset::Skipped]| {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect();
        for (file, reason) in expected {
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains(file) && r.contains(reason)),
                "{what}: no {file} ({reason}) in {reasons:?}"
            );
        }
        assert_eq!(reasons.len(), expected.len(), "{what}: {reasons:?}");
    };
    let root = dir.path().to_path_buf();
    let (data_set, summary, prepared) = within_seconds(move || {
        let data_set = DataSet::open(&root, &DataSetConfig::default()).unwrap();
        let summary = stats(&data_set, 2);
        let options = PrepareOptions {
            cache_dir: None,
            strict: false,
            threads: 2,
        };
        let prepared = prepare(&data_set, &small_features(), &options).unwrap();
        (data_set, summary, prepared)
    });
    check("open", &data_set.skipped);
    check("stats", &summary.skipped);
    check("prepare", &prepared.skipped);
    assert_eq!(prepared.clips.len(), data_set.clips.len());
}

#[test]
fn a_cache_header_announcing_more_values_than_the_file_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    speech_commands(dir.path(), 3);
    let cache = tempfile::tempdir().unwrap();
    let options = PrepareOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        strict: false,
        threads: 2,
    };
    let data_set = DataSet::open(dir.path(), &DataSetConfig::default()).unwrap();
    let prepared = prepare(&data_set, &small_features(), &options).unwrap();
    let file = prepared.cache_file.unwrap();
    // Magic, header length, JSON header, then the values.
    let bytes = std::fs::read(&file).unwrap();
    let length = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + length]).unwrap();
    header["clip_shape"] = serde_json::json!([1, 1u64 << 40, 40]);
    let header = serde_json::to_vec(&header).unwrap();
    let mut damaged = bytes[..8].to_vec();
    damaged.extend((header.len() as u64).to_le_bytes());
    damaged.extend(&header);
    damaged.extend(&bytes[16 + length..]);
    std::fs::write(&file, damaged).unwrap();
    let message = prepare(&data_set, &small_features(), &options)
        .unwrap_err()
        .to_string();
    assert!(message.contains("announces more values"), "{message}");
}

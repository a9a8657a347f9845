//! `audionas data synth --task lid`: a tiny spoken-language set really
//! synthesised with espeak-ng and the Debian word lists. CI installs both;
//! without them this test fails and says what to install.

use audionas::data::dataset::{ClipSource, DataSet, DataSetConfig, Split};
use audionas::data::lid::{language, synthesize_lid, LidSynthConfig, LANGUAGES};
use audionas::data::stats::stats;
use audionas::data::wav::read_wav;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn espeak_ng_installed() {
    let found = Command::new("espeak-ng").arg("--version").output().is_ok();
    assert!(
        found,
        "espeak-ng not found; install it (Debian: apt-get install espeak-ng wfrench wngerman witalian wspanish wportuguese wdutch wamerican)"
    );
}

/// Every file under `dir` with its bytes, by relative path.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for folder in std::fs::read_dir(dir).unwrap() {
        let folder = folder.unwrap().path();
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            let name = file.strip_prefix(dir).unwrap().display().to_string();
            files.insert(name, std::fs::read(&file).unwrap());
        }
    }
    files
}

#[test]
fn synthesises_a_small_language_set_split_by_voice() {
    espeak_ng_installed();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lid");
    let config = LidSynthConfig {
        per_language: 3,
        speakers: 3,
        noise_seconds: 1.0,
        threads: 2,
        seed: 3,
        ..LidSynthConfig::new(&out)
    };
    let report = synthesize_lid(&config).unwrap();
    assert_eq!(report.clips, LANGUAGES.len() * 3);
    assert_eq!(report.voices.len(), 3);

    // The folder layout reads it as it is: one class per language, split by speaker.
    let data_set = DataSet::open(&out, &DataSetConfig::default()).unwrap();
    let names: Vec<&str> = LANGUAGES.iter().map(|l| l.name).collect();
    assert!(LANGUAGES.len() >= 6);
    assert_eq!(data_set.classes, names);
    assert_eq!(data_set.clips.len(), LANGUAGES.len() * 3);
    let summary = stats(&data_set, 2);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);

    let mut split_of_speaker: BTreeMap<String, BTreeSet<Split>> = BTreeMap::new();
    let mut languages_of_split: BTreeMap<Split, BTreeSet<usize>> = BTreeMap::new();
    for clip in &data_set.clips {
        let speaker = clip
            .speaker
            .clone()
            .expect("every name carries its speaker");
        split_of_speaker
            .entry(speaker)
            .or_default()
            .insert(clip.split);
        languages_of_split
            .entry(clip.split)
            .or_default()
            .insert(clip.label);
        let ClipSource::File(file) = &clip.source else {
            panic!("only files: {clip:?}");
        };
        let audio = read_wav(&data_set.path_of(file), 16000).unwrap();
        let seconds = audio.samples.len() as f32 / 16000.0;
        assert!((2.0..=4.0).contains(&seconds), "{file:?}: {seconds} s");
        let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.2, "{file:?}: peak {peak}");
    }
    assert_eq!(split_of_speaker.len(), 3);
    for (speaker, splits) in &split_of_speaker {
        assert_eq!(splits.len(), 1, "speaker {speaker} is in {splits:?}");
    }
    // Each speaker speaks every language, so every split holds them all.
    for split in Split::ALL {
        assert_eq!(
            languages_of_split.get(&split).map_or(0, BTreeSet::len),
            LANGUAGES.len(),
            "{split:?}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_set() {
    espeak_ng_installed();
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        synthesize_lid(&LidSynthConfig {
            per_language: 2,
            speakers: 2,
            languages: vec![language("french").unwrap(), language("german").unwrap()],
            noise_seconds: 0.5,
            threads: 2,
            seed,
            ..LidSynthConfig::new(&out)
        })
        .unwrap();
        contents(&out)
    };
    let first = make("a", 11);
    assert_eq!(first.len(), 2 * 2 + 3);
    assert_eq!(first, make("b", 11));
    assert_ne!(first, make("c", 12));
}

#[test]
fn a_missing_word_list_names_the_package_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let config = LidSynthConfig {
        dict_dir: dir.path().join("no-dict"),
        languages: vec![language("italian").unwrap()],
        ..LidSynthConfig::new(&dir.path().join("lid"))
    };
    let message = synthesize_lid(&config).unwrap_err().to_string();
    if Command::new("espeak-ng").arg("--version").output().is_ok() {
        assert!(message.contains("apt-get install witalian"), "{message}");
    } else {
        assert!(message.contains("apt-get install espeak-ng"), "{message}");
    }
    assert!(!dir.path().join("lid").exists(), "nothing is written");
}

#[test]
fn an_unknown_task_or_language_is_refused() {
    for (args, named) in [
        (&["--task", "asr"][..], "\"asr\""),
        (
            &["--task", "lid", "--languages", "klingon"][..],
            "\"klingon\"",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_audionas"))
            .args(["data", "synth", "--out", "unused"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(
            stderr.contains("lid") || stderr.contains("french"),
            "{stderr}"
        );
    }
}

//! A spoken-language identification data set made with espeak-ng: sentences
//! of random words from each language's word list (the Debian `w*` word
//! list packages), 2 to 4 s clips over a little noise, a folder per
//! language and `<speaker>_nohash_<n>.wav` names, so the folder layout
//! reads it and splits it by speaker.
//!
//! A speaker is an espeak-ng voice variant with its own pitch and pace, and
//! speaks every language: splitting by speaker then keeps every language in
//! every split, and no voice of the validation or test split is heard in
//! training. Speakers alternate between two voice families: the formant
//! variants (`m3`, `f2`, `Andy`, ...) and the Klatt synthesizer's variants
//! (`klatt` to `klatt6`).

use super::error::{DataError, DataResult};
use super::synth::{
    find_program, over_noise, run_jobs, speak, write_noise_files, Engine, SynthReport, Voice,
};
use super::wav::{read_wav, write_wav, Audio};
use crate::util::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A language of the data set: its class name, espeak-ng voices (accents)
/// and word list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Language {
    /// The class (folder) name.
    pub name: &'static str,
    /// espeak-ng language voices; each clip takes one of them.
    pub accents: &'static [&'static str],
    /// The word list's file name under the dictionary folder.
    pub word_list: &'static str,
    /// The Debian package that installs the word list.
    pub package: &'static str,
    /// Whether nouns are written with a capital (German), so capitalised
    /// words are words and not names.
    pub capitalised_nouns: bool,
}

pub const LANGUAGES: [Language; 7] = [
    Language {
        name: "dutch",
        accents: &["nl"],
        word_list: "dutch",
        package: "wdutch",
        capitalised_nouns: false,
    },
    Language {
        name: "english",
        accents: &["en-us", "en-gb", "en-gb-scotland", "en-029"],
        word_list: "american-english",
        package: "wamerican",
        capitalised_nouns: false,
    },
    Language {
        name: "french",
        accents: &["fr-fr", "fr-be", "fr-ch"],
        word_list: "french",
        package: "wfrench",
        capitalised_nouns: false,
    },
    Language {
        name: "german",
        accents: &["de"],
        word_list: "ngerman",
        package: "wngerman",
        capitalised_nouns: true,
    },
    Language {
        name: "italian",
        accents: &["it"],
        word_list: "italian",
        package: "witalian",
        capitalised_nouns: false,
    },
    Language {
        name: "portuguese",
        accents: &["pt", "pt-br"],
        word_list: "portuguese",
        package: "wportuguese",
        capitalised_nouns: false,
    },
    Language {
        name: "spanish",
        accents: &["es", "es-419"],
        word_list: "spanish",
        package: "wspanish",
        capitalised_nouns: false,
    },
];

/// The language named `name` (its class name, e.g. `french`).
pub fn language(name: &str) -> Option<Language> {
    LANGUAGES.into_iter().find(|l| l.name == name)
}

/// Where Debian's word list packages put their lists.
pub const DICT_DIR: &str = "/usr/share/dict";

#[derive(Clone, Debug)]
pub struct LidSynthConfig {
    pub out: PathBuf,
    pub sample_rate: u32,
    /// Clips per language.
    pub per_language: usize,
    /// Distinct speakers (voice variant, pitch and pace); each speaks every language.
    pub speakers: usize,
    /// The languages; empty means all of `LANGUAGES`.
    pub languages: Vec<Language>,
    /// Clip lengths are drawn uniformly from this range, in seconds.
    pub min_seconds: f32,
    pub max_seconds: f32,
    /// The folder holding the word lists.
    pub dict_dir: PathBuf,
    pub noise_seconds: f32,
    pub seed: u64,
    pub threads: usize,
}

impl LidSynthConfig {
    pub fn new(out: &Path) -> Self {
        LidSynthConfig {
            out: out.to_path_buf(),
            sample_rate: 16000,
            per_language: 40,
            speakers: 20,
            languages: Vec::new(),
            min_seconds: 2.0,
            max_seconds: 4.0,
            dict_dir: PathBuf::from(DICT_DIR),
            noise_seconds: 30.0,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn languages(&self) -> Vec<Language> {
        if self.languages.is_empty() {
            LANGUAGES.to_vec()
        } else {
            self.languages.clone()
        }
    }
}

/// Plain words of a word list: letters only (no apostrophes, hyphens or
/// digits), 2 to 14 of them, lower case but for a capital first letter
/// where the language capitalises nouns; so no names or abbreviations.
pub fn plain_words(text: &str, capitalised_nouns: bool) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|word| {
            let mut letters = word.chars();
            let Some(first) = letters.next() else {
                return false;
            };
            let count = word.chars().count();
            (2..=14).contains(&count)
                && first.is_alphabetic()
                && (first.is_lowercase() || (capitalised_nouns && first.is_uppercase()))
                && letters.all(|c| c.is_alphabetic() && c.is_lowercase())
        })
        .map(str::to_string)
        .collect()
}

/// Reads a language's word list, or says which package installs it.
pub fn read_word_list(language: &Language, dict_dir: &Path) -> DataResult<Vec<String>> {
    let path = dict_dir.join(language.word_list);
    let missing = |reason: String| DataError::Synthesis {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        missing(format!(
            "cannot read the {} word list ({e}); install it: sudo apt-get install {}",
            language.name, language.package
        ))
    })?;
    let words = plain_words(&String::from_utf8_lossy(&bytes), language.capitalised_nouns);
    if words.len() < 100 {
        return Err(missing(format!(
            "the {} word list holds only {} plain words; reinstall it: sudo apt-get install --reinstall {}",
            language.name,
            words.len(),
            language.package
        )));
    }
    Ok(words)
}

/// The espeak-ng voice variants on this machine, split into the formant
/// family and the Klatt family, each sorted.
pub fn voice_families() -> DataResult<(Vec<String>, Vec<String>)> {
    let program = Engine::EspeakNg.program();
    let output = Command::new(program)
        .arg("--voices=variant")
        .output()
        .map_err(|e| DataError::Synthesis {
            path: PathBuf::from(program),
            reason: format!("cannot run {program}: {e}"),
        })?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut variants: Vec<String> = listing
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|c| c.strip_prefix("!v/"))
                .map(str::to_string)
        })
        // A test voice of espeak-ng, not a speaker.
        .filter(|v| v != "fast_test")
        .collect();
    variants.sort();
    variants.dedup();
    let (klatt, formant): (Vec<String>, Vec<String>) =
        variants.into_iter().partition(|v| v.starts_with("klatt"));
    if formant.is_empty() && klatt.is_empty() {
        return Err(DataError::Synthesis {
            path: PathBuf::from(program),
            reason: format!(
                "{program} lists no voice variants; reinstall it: sudo apt-get install --reinstall espeak-ng-data"
            ),
        });
    }
    Ok((formant, klatt))
}

/// Picks `count` speakers, alternating between the two families, each
/// variant used once while any is left.
fn choose_speakers(count: usize, rng: &mut Rng) -> DataResult<Vec<Voice>> {
    let (mut formant, mut klatt) = voice_families()?;
    rng.shuffle(&mut formant);
    rng.shuffle(&mut klatt);
    let mut families = [formant.into_iter(), klatt.into_iter()];
    let mut all: Vec<String> = Vec::new();
    loop {
        let before = all.len();
        for family in &mut families {
            all.extend(family.next());
        }
        if all.len() == before {
            break;
        }
    }
    Ok((0..count)
        .map(|i| Voice {
            engine: Engine::EspeakNg,
            // More speakers than variants reuse variants at other pitches and paces.
            name: all[i % all.len()].clone(),
            pitch: rng.uniform(0.1, 0.9),
            speed: rng.uniform(0.8, 1.2),
        })
        .collect())
}

struct Job {
    language: usize,
    speaker: usize,
    index: usize,
    seed: u64,
}

/// Makes the data set under `config.out` and says what it used.
pub fn synthesize_lid(config: &LidSynthConfig) -> DataResult<SynthReport> {
    if find_program(Engine::EspeakNg.program()).is_none() {
        return Err(DataError::Synthesis {
            path: config.out.clone(),
            reason: "language identification data needs espeak-ng, which is not installed; on Debian or Ubuntu: sudo apt-get install espeak-ng".into(),
        });
    }
    if !(config.min_seconds > 0.0 && config.min_seconds <= config.max_seconds) {
        return Err(DataError::Synthesis {
            path: config.out.clone(),
            reason: format!(
                "clip lengths {} to {} s: the shortest must be above 0 and at most the longest",
                config.min_seconds, config.max_seconds
            ),
        });
    }
    let languages = config.languages();
    // Every word list is read before anything is spoken, so a missing one
    // stops the run at once.
    let word_lists = languages
        .iter()
        .map(|l| read_word_list(l, &config.dict_dir))
        .collect::<DataResult<Vec<_>>>()?;
    let mut rng = Rng::new(config.seed);
    let speakers = choose_speakers(config.speakers.max(1), &mut rng)?;
    let mut jobs = Vec::new();
    for language in 0..languages.len() {
        for i in 0..config.per_language {
            jobs.push(Job {
                language,
                speaker: i % speakers.len(),
                index: i / speakers.len(),
                seed: rng.next_u64(),
            });
        }
    }
    run_jobs(jobs.len(), config.threads, |i, temp| {
        let job = &jobs[i];
        make_clip(
            job,
            &languages[job.language],
            &word_lists[job.language],
            &speakers[job.speaker],
            config,
            temp,
        )
    })?;
    let noise_files = write_noise_files(
        &config.out,
        config.sample_rate,
        config.noise_seconds,
        &mut rng,
    )?;
    Ok(SynthReport {
        engines: vec![Engine::EspeakNg],
        voices: speakers,
        clips: jobs.len(),
        noise_files,
    })
}

/// Speaks a sentence of random words a little longer than the clip, trims
/// the silence before it, fits it to a length drawn from the configured
/// range (cut at the end, or placed at a random point when shorter) over a
/// little noise, and writes it.
fn make_clip(
    job: &Job,
    language: &Language,
    words: &[String],
    speaker: &Voice,
    config: &LidSynthConfig,
    temp: &Path,
) -> DataResult<()> {
    let mut rng = Rng::new(job.seed);
    let rate = config.sample_rate;
    let seconds = rng.uniform(config.min_seconds, config.max_seconds);
    let clip_len = ((seconds * rate as f32).round() as usize).max(1);
    // About three words a second at the normal pace, and some to spare.
    let count = (seconds * 3.0 * speaker.speed).ceil() as usize + 2;
    let sentence: Vec<&str> = (0..count)
        .map(|_| words[rng.below(words.len())].as_str())
        .collect();
    let accent = language.accents[rng.below(language.accents.len())];
    let voice = Voice {
        name: format!("{accent}+{}", speaker.name),
        ..speaker.clone()
    };
    let pitch = (speaker.pitch + rng.uniform(-0.08, 0.08)).clamp(0.0, 1.0);
    let speed = speaker.speed * rng.uniform(0.92, 1.08);
    speak(&voice, &sentence.join(" "), pitch, speed, temp)?;
    let spoken = read_wav(temp, rate)?;
    let _ = std::fs::remove_file(temp);
    let samples = over_noise(&spoken.samples, rate, clip_len, &mut rng);
    let name = format!("{}_nohash_{}.wav", speaker.speaker_id(), job.index);
    write_wav(
        &config.out.join(language.name).join(name),
        &Audio {
            samples,
            sample_rate: rate,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_keep_letters_only() {
        let text = "a\nà\nété\nABC\nParis\nl'eau\nvingt-deux\nmot2\nchat\n";
        assert_eq!(plain_words(text, false), ["été", "chat"]);
        let german = "Haus\nhaus\nHAUS\nStraße\nUSA\n";
        assert_eq!(plain_words(german, true), ["Haus", "haus", "Straße"]);
    }

    #[test]
    fn a_missing_word_list_names_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_word_list(&language("french").unwrap(), dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("apt-get install wfrench"), "{message}");
    }
}

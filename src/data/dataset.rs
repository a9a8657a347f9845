//! Data sets on disk: the Speech Commands layout (12-class and all-words
//! tasks), a generic folder per class, and the Free Spoken Digit Dataset's
//! flat layout; with their train/validation/test splits.
//!
//! Opening a data set only lists files; decoding (and finding broken files)
//! happens when it is prepared or inspected.

use super::error::{DataError, DataResult};
use super::wav::not_a_regular_file;
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The ten keywords of the 12-class Speech Commands task, in its label order.
pub const KEYWORDS: [&str; 10] = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
];
pub const SILENCE: &str = "_silence_";
pub const UNKNOWN: &str = "_unknown_";
pub const BACKGROUND_NOISE: &str = "_background_noise_";
const VALIDATION_LIST: &str = "validation_list.txt";
const TESTING_LIST: &str = "testing_list.txt";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Found from the folder's content.
    Auto,
    SpeechCommands,
    Folders,
    Fsdd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// yes, no, up, down, left, right, on, off, stop, go, `_silence_`, `_unknown_`.
    Keywords12,
    /// Every word is its own class.
    AllWords,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// Speech Commands: the lists when present, else the hash rule.
    /// Other layouts: by speaker when every name carries one, else the hash rule.
    Auto,
    /// Speech Commands' SHA-1 rule on the file name without `_nohash_...`.
    Hash,
    /// Whole speakers go to one split, so none is in both training and test.
    Speaker,
}

/// How to read a data set folder. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSetConfig {
    pub layout: Layout,
    pub task: Task,
    pub split: SplitRule,
    pub validation_percent: f64,
    pub testing_percent: f64,
    /// Silence clips cut from the background noise, as a share of the
    /// keyword clips of each split (only when there is no `_silence_` folder).
    pub silence_percent: f64,
    /// Clips of non-keywords kept as `_unknown_`, as a share of the keyword
    /// clips of each split. A `_unknown_` folder (the test-set layout, already
    /// balanced) is kept whole.
    pub unknown_percent: f64,
    pub seed: u64,
}

impl Default for DataSetConfig {
    fn default() -> Self {
        DataSetConfig {
            layout: Layout::Auto,
            task: Task::Keywords12,
            split: SplitRule::Auto,
            validation_percent: 10.0,
            testing_percent: 10.0,
            silence_percent: 10.0,
            unknown_percent: 10.0,
            seed: 0,
        }
    }
}

impl DataSetConfig {
    /// Checks the shares, naming the key and the value.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("validation_percent", self.validation_percent),
            ("testing_percent", self.testing_percent),
            (
                "validation_percent + testing_percent",
                self.validation_percent + self.testing_percent,
            ),
            ("silence_percent", self.silence_percent),
            ("unknown_percent", self.unknown_percent),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(format!("{key} = {value} must be between 0 and 100"));
            }
        }
        Ok(())
    }
}

/// Where a clip's audio comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClipSource {
    /// A WAV file, relative to the data set root.
    File(PathBuf),
    /// A clip-long piece of a background noise file (relative to the root)
    /// starting at `position` (0 to 1) of the room the file leaves, scaled by
    /// `gain`; digital silence when there is no noise file.
    Noise {
        file: Option<PathBuf>,
        position: f32,
        gain: f32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub source: ClipSource,
    pub label: usize,
    pub speaker: Option<String>,
    pub split: Split,
}

/// A file left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct DataSet {
    pub root: PathBuf,
    pub layout: Layout,
    pub classes: Vec<String>,
    pub clips: Vec<Clip>,
    /// Long noise recordings (relative to the root) for silence and augmentation.
    pub background_noise: Vec<PathBuf>,
    /// Files in class folders that are not `.wav` files.
    pub skipped: Vec<Skipped>,
    /// How the clips were split, in words.
    pub split_note: String,
}

/// `sha1(text)` as lowercase hex.
pub fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Speech Commands' `which_set`: the file name without `_nohash_...` is
/// hashed, so every clip of one speaker and word lands in the same split.
pub fn which_set(file_name: &str, validation_percent: f64, testing_percent: f64) -> Split {
    const MAX_NUM_WAVS_PER_CLASS: u64 = (1 << 27) - 1;
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let hash_name = base.find("_nohash_").map_or(base, |at| &base[..at]);
    let digest = Sha1::digest(hash_name.as_bytes());
    // The digest as a big integer modulo 2^27 is its last 27 bits.
    let tail = u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]]) as u64;
    let percentage =
        (tail % (MAX_NUM_WAVS_PER_CLASS + 1)) as f64 * (100.0 / MAX_NUM_WAVS_PER_CLASS as f64);
    if percentage < validation_percent {
        Split::Validation
    } else if percentage < validation_percent + testing_percent {
        Split::Test
    } else {
        Split::Train
    }
}

/// Assigns whole speakers to splits: speakers ordered by the SHA-1 of their
/// id, the first share to validation, the next to test. Unlike hashing each
/// speaker independently this gives the asked shares even for few speakers
/// (at least one speaker per split once there are three).
pub fn speaker_splits<'a>(
    speakers: impl IntoIterator<Item = &'a str>,
    validation_percent: f64,
    testing_percent: f64,
) -> HashMap<String, Split> {
    let unique: BTreeSet<&str> = speakers.into_iter().collect();
    let mut ordered: Vec<(String, &str)> = unique.into_iter().map(|s| (sha1_hex(s), s)).collect();
    ordered.sort();
    let n = ordered.len();
    let share = |percent: f64| {
        let count = (n as f64 * percent / 100.0).round() as usize;
        if percent > 0.0 && n >= 3 {
            count.max(1)
        } else {
            count
        }
    };
    let validation = share(validation_percent);
    let test = share(testing_percent).min(n.saturating_sub(validation));
    ordered
        .into_iter()
        .enumerate()
        .map(|(i, (_, speaker))| {
            let split = if i < validation {
                Split::Validation
            } else if i < validation + test {
                Split::Test
            } else {
                Split::Train
            };
            (speaker.to_string(), split)
        })
        .collect()
}

/// The speaker id of a Speech Commands name: the token just before
/// `_nohash_` (`<speaker>_nohash_<n>.wav` or `<word>_<speaker>_nohash_<n>.wav`).
pub fn nohash_speaker(file_name: &str) -> Option<&str> {
    let before = &file_name[..file_name.find("_nohash_")?];
    Some(before.rsplit('_').next().unwrap_or(before)).filter(|s| !s.is_empty())
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn bad_layout(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::BadDataSet {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A folder's entries, links followed, each list sorted by name.
#[derive(Default)]
struct Listing {
    folders: Vec<String>,
    files: Vec<String>,
    /// Entries that can be neither: names that are not UTF-8, links to
    /// nothing, named pipes, sockets, devices.
    unusable: Vec<Skipped>,
}

/// Lists a folder, hidden entries left out. Links are followed, so a data
/// set may be assembled from links.
fn list_folder(dir: &Path) -> DataResult<Listing> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        // Paths are kept as text (cache keys, messages), so a name that is
        // not UTF-8 is reported under its lossy spelling.
        let unusable = |reason: String| Skipped {
            path: PathBuf::from(path.to_string_lossy().into_owned()),
            reason,
        };
        let Ok(name) = entry.file_name().into_string() else {
            listing
                .unusable
                .push(unusable("its name is not valid UTF-8; rename it".into()));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => listing.folders.push(name),
            Ok(meta) => match not_a_regular_file(&meta) {
                None => listing.files.push(name),
                Some(reason) => listing.unusable.push(unusable(reason.into())),
            },
            Err(_) if path.is_symlink() => listing
                .unusable
                .push(unusable("a link to nothing (its target is missing)".into())),
            Err(e) => listing.unusable.push(unusable(e.to_string())),
        }
    }
    listing.folders.sort();
    listing.files.sort();
    Ok(listing)
}

/// The wav files of a class folder; anything else is recorded as skipped.
fn wav_files(root: &Path, folder: &str, skipped: &mut Vec<Skipped>) -> DataResult<Vec<PathBuf>> {
    let listing = list_folder(&root.join(folder))?;
    skipped.extend(listing.unusable);
    for name in listing.folders.iter().filter(|n| is_wav(Path::new(n))) {
        skipped.push(Skipped {
            path: root.join(folder).join(name),
            reason: "a folder, not a WAV file".into(),
        });
    }
    let mut wavs = Vec::new();
    for name in listing.files {
        let relative = Path::new(folder).join(&name);
        if is_wav(&relative) {
            wavs.push(relative);
        } else {
            skipped.push(Skipped {
                path: root.join(&relative),
                reason: "not a .wav file".into(),
            });
        }
    }
    Ok(wavs)
}

fn read_list(root: &Path, name: &str) -> DataResult<Option<BTreeSet<PathBuf>>> {
    let path = root.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect(),
    ))
}

impl DataSet {
    /// Lists a data set folder according to `config`.
    pub fn open(root: &Path, config: &DataSetConfig) -> DataResult<DataSet> {
        if !root.is_dir() {
            return Err(bad_layout(
                root,
                "no such folder (give the data set's root folder)",
            ));
        }
        config
            .validate()
            .map_err(|reason| bad_layout(root, reason))?;
        let layout = match config.layout {
            Layout::Auto => detect_layout(root)?,
            chosen => chosen,
        };
        let data_set = match layout {
            Layout::SpeechCommands => open_speech_commands(root, config)?,
            Layout::Fsdd => open_fsdd(root, config)?,
            Layout::Folders | Layout::Auto => open_folders(root, config)?,
        };
        if data_set.clips.is_empty() {
            return Err(bad_layout(
                root,
                "holds no .wav clips in the expected layout",
            ));
        }
        Ok(data_set)
    }

    pub fn path_of(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }

    pub fn clips_in(&self, split: Split) -> impl Iterator<Item = (usize, &Clip)> {
        self.clips
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.split == split)
    }

    /// Clips per class and split: `counts[class][split]`.
    pub fn counts(&self) -> Vec<[usize; 3]> {
        let mut counts = vec![[0; 3]; self.classes.len()];
        for clip in &self.clips {
            counts[clip.label][clip.split as usize] += 1;
        }
        counts
    }
}

fn detect_layout(root: &Path) -> DataResult<Layout> {
    let Listing { folders, files, .. } = list_folder(root)?;
    let recordings = root.join("recordings");
    let looks_like_fsdd = |names: &[String]| {
        let wavs: Vec<&String> = names.iter().filter(|n| is_wav(Path::new(n))).collect();
        !wavs.is_empty() && wavs.iter().all(|n| parse_fsdd_name(n).is_some())
    };
    // A `_background_noise_` folder alone does not make Speech Commands:
    // generic folder-per-class sets may carry one too.
    if folders
        .iter()
        .any(|f| KEYWORDS.contains(&f.as_str()) || f == UNKNOWN)
    {
        Ok(Layout::SpeechCommands)
    } else if looks_like_fsdd(&files)
        || (recordings.is_dir() && looks_like_fsdd(&list_folder(&recordings)?.files))
    {
        Ok(Layout::Fsdd)
    } else if !folders.is_empty() {
        Ok(Layout::Folders)
    } else {
        Err(bad_layout(
            root,
            "no class folders and no digit_speaker_index.wav files; expected a folder per class, \
             the Speech Commands layout or the Free Spoken Digit Dataset layout",
        ))
    }
}

/// Splits of files by the split rule; `speaker_of` gives each file's speaker.
fn assign_splits(
    files: &[PathBuf],
    speakers: &[Option<String>],
    rule: SplitRule,
    config: &DataSetConfig,
) -> Vec<Split> {
    let (v, t) = (config.validation_percent, config.testing_percent);
    match rule {
        SplitRule::Speaker => {
            let by_speaker = speaker_splits(speakers.iter().flatten().map(String::as_str), v, t);
            files
                .iter()
                .zip(speakers)
                .map(|(file, speaker)| match speaker {
                    Some(s) => by_speaker[s],
                    None => which_set(&file_name(file), v, t),
                })
                .collect()
        }
        SplitRule::Hash | SplitRule::Auto => files
            .iter()
            .zip(speakers)
            .map(|(file, speaker)| {
                // Hashing the speaker alone equals hashing `<speaker>_nohash_n`,
                // and keeps `word_speaker_nohash_n` names with their speaker.
                let key = speaker.clone().unwrap_or_else(|| file_name(file));
                which_set(&key, v, t)
            })
            .collect(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn open_speech_commands(root: &Path, config: &DataSetConfig) -> DataResult<DataSet> {
    let folders = list_folder(root)?.folders;
    let mut skipped = Vec::new();
    let background_noise = if folders.iter().any(|f| f == BACKGROUND_NOISE) {
        wav_files(root, BACKGROUND_NOISE, &mut skipped)?
    } else {
        Vec::new()
    };
    // Every spoken clip with its word: folder name, or the prefix of the
    // `_unknown_` folder's `word_speaker_nohash_n` names.
    struct Spoken {
        file: PathBuf,
        word: String,
        from_unknown_folder: bool,
    }
    let mut spoken = Vec::new();
    let mut silence_files = Vec::new();
    for folder in &folders {
        match folder.as_str() {
            BACKGROUND_NOISE => {}
            SILENCE => silence_files = wav_files(root, folder, &mut skipped)?,
            UNKNOWN => {
                for file in wav_files(root, folder, &mut skipped)? {
                    let name = file_name(&file);
                    let word = match (name.find('_'), nohash_speaker(&name)) {
                        (Some(end), Some(speaker)) if !name.starts_with(speaker) => {
                            name[..end].to_string()
                        }
                        _ => UNKNOWN.to_string(),
                    };
                    spoken.push(Spoken {
                        file,
                        word,
                        from_unknown_folder: true,
                    });
                }
            }
            word => {
                for file in wav_files(root, folder, &mut skipped)? {
                    spoken.push(Spoken {
                        file,
                        word: word.to_string(),
                        from_unknown_folder: false,
                    });
                }
            }
        }
    }
    let validation_list = read_list(root, VALIDATION_LIST)?;
    let testing_list = read_list(root, TESTING_LIST)?;
    let use_lists =
        config.split == SplitRule::Auto && (validation_list.is_some() || testing_list.is_some());
    let files: Vec<PathBuf> = spoken.iter().map(|s| s.file.clone()).collect();
    let speakers: Vec<Option<String>> = files
        .iter()
        .map(|f| nohash_speaker(&file_name(f)).map(str::to_string))
        .collect();
    let splits: Vec<Split> = if use_lists {
        let in_list = |list: &Option<BTreeSet<PathBuf>>, file: &PathBuf| {
            list.as_ref().is_some_and(|l| l.contains(file))
        };
        files
            .iter()
            .map(|f| {
                if in_list(&validation_list, f) {
                    Split::Validation
                } else if in_list(&testing_list, f) {
                    Split::Test
                } else {
                    Split::Train
                }
            })
            .collect()
    } else {
        assign_splits(&files, &speakers, config.split, config)
    };
    let hash_left_no_training = config.split == SplitRule::Auto
        && !use_lists
        && !splits.is_empty()
        && !splits.contains(&Split::Train);
    // The official test set is exactly the clips the hash rule sends to
    // testing; splitting it by that rule again would leave nothing to train.
    let (splits, split_note) = if hash_left_no_training {
        (
            assign_splits(&files, &speakers, SplitRule::Speaker, config),
            "by speaker (the hash rule sends every clip to test, as in the official test set)"
                .to_string(),
        )
    } else if use_lists {
        (splits, format!("from {VALIDATION_LIST} and {TESTING_LIST}"))
    } else {
        let rule = if config.split == SplitRule::Speaker {
            "by speaker"
        } else {
            "by the Speech Commands hash rule"
        };
        (splits, rule.to_string())
    };
    let silence_splits = {
        let silence_speakers = vec![None; silence_files.len()];
        let rule = if config.split == SplitRule::Speaker {
            SplitRule::Hash
        } else {
            config.split
        };
        assign_splits(&silence_files, &silence_speakers, rule, config)
    };

    let mut rng = Rng::new(config.seed);
    let mut clips = Vec::new();
    let classes: Vec<String> = match config.task {
        Task::AllWords => {
            let words: BTreeSet<&str> = spoken
                .iter()
                .map(|s| s.word.as_str())
                .filter(|w| *w != UNKNOWN)
                .collect();
            let classes: Vec<String> = words.into_iter().map(str::to_string).collect();
            let index: HashMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            for ((s, speaker), split) in spoken.iter().zip(&speakers).zip(&splits) {
                if let Some(&label) = index.get(s.word.as_str()) {
                    clips.push(Clip {
                        source: ClipSource::File(s.file.clone()),
                        label,
                        speaker: speaker.clone(),
                        split: *split,
                    });
                }
            }
            classes
        }
        Task::Keywords12 => {
            let mut classes = vec![SILENCE.to_string(), UNKNOWN.to_string()];
            classes.extend(KEYWORDS.iter().map(|k| k.to_string()));
            let mut keyword_counts = [0usize; 3];
            let mut unknown_candidates: [Vec<Clip>; 3] = Default::default();
            for ((s, speaker), split) in spoken.iter().zip(&speakers).zip(&splits) {
                let keyword = KEYWORDS.iter().position(|k| *k == s.word);
                let clip = Clip {
                    source: ClipSource::File(s.file.clone()),
                    label: keyword.map_or(1, |k| k + 2),
                    speaker: speaker.clone(),
                    split: *split,
                };
                if keyword.is_some() {
                    keyword_counts[*split as usize] += 1;
                    clips.push(clip);
                } else if s.from_unknown_folder {
                    clips.push(clip);
                } else {
                    unknown_candidates[*split as usize].push(clip);
                }
            }
            for split in Split::ALL {
                let wanted = share_of(keyword_counts[split as usize], config.unknown_percent);
                let candidates = &mut unknown_candidates[split as usize];
                rng.shuffle(candidates);
                clips.extend(candidates.drain(..).take(wanted));
            }
            if silence_files.is_empty() {
                for split in Split::ALL {
                    let wanted = share_of(keyword_counts[split as usize], config.silence_percent);
                    clips.extend((0..wanted).map(|_| Clip {
                        source: noise_segment(&background_noise, &mut rng),
                        label: 0,
                        speaker: None,
                        split,
                    }));
                }
            } else {
                clips.extend(
                    silence_files
                        .iter()
                        .zip(&silence_splits)
                        .map(|(file, split)| Clip {
                            source: ClipSource::File(file.clone()),
                            label: 0,
                            speaker: None,
                            split: *split,
                        }),
                );
            }
            classes
        }
    };
    Ok(DataSet {
        root: root.to_path_buf(),
        layout: Layout::SpeechCommands,
        classes,
        clips,
        background_noise,
        skipped,
        split_note,
    })
}

/// `ceil(count * percent / 100)`, as Speech Commands' input pipeline sizes
/// its silence and unknown shares.
fn share_of(count: usize, percent: f64) -> usize {
    (count as f64 * percent / 100.0).ceil() as usize
}

/// A random piece of a random noise file at a random volume; digital silence
/// when there is no noise.
fn noise_segment(noise: &[PathBuf], rng: &mut Rng) -> ClipSource {
    if noise.is_empty() {
        return ClipSource::Noise {
            file: None,
            position: 0.0,
            gain: 0.0,
        };
    }
    ClipSource::Noise {
        file: Some(noise[rng.below(noise.len())].clone()),
        position: rng.uniform(0.0, 1.0),
        gain: rng.uniform(0.0, 1.0),
    }
}

fn rule_note(rule: SplitRule) -> String {
    match rule {
        SplitRule::Speaker => "by speaker".into(),
        SplitRule::Hash | SplitRule::Auto => {
            "by the Speech Commands hash rule on file names".into()
        }
    }
}

/// `digit_speaker_index.wav` -> (digit, speaker).
fn parse_fsdd_name(name: &str) -> Option<(String, String)> {
    let stem = name
        .strip_suffix(".wav")
        .or_else(|| name.strip_suffix(".WAV"))?;
    let mut parts = stem.split('_');
    let (digit, speaker, index) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && digit.len() == 1
        && digit.chars().all(|c| c.is_ascii_digit())
        && !speaker.is_empty()
        && index.chars().all(|c| c.is_ascii_digit())
        && !index.is_empty();
    valid.then(|| (digit.to_string(), speaker.to_string()))
}

fn open_fsdd(root: &Path, config: &DataSetConfig) -> DataResult<DataSet> {
    let folder = if root.join("recordings").is_dir() {
        "recordings"
    } else {
        ""
    };
    let listing = list_folder(&root.join(folder))?;
    let names = listing.files;
    let mut skipped = listing.unusable;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut speakers = Vec::new();
    for name in names {
        let relative = Path::new(folder).join(&name);
        match parse_fsdd_name(&name) {
            Some((digit, speaker)) => {
                files.push(relative);
                labels.push(digit.parse::<usize>().expect("one ASCII digit"));
                speakers.push(Some(speaker));
            }
            None => skipped.push(Skipped {
                path: root.join(relative),
                reason: "not a digit_speaker_index.wav file".into(),
            }),
        }
    }
    let rule = if config.split == SplitRule::Auto {
        SplitRule::Speaker
    } else {
        config.split
    };
    let splits = assign_splits(&files, &speakers, rule, config);
    let clips = files
        .into_iter()
        .zip(labels)
        .zip(speakers)
        .zip(splits)
        .map(|(((file, label), speaker), split)| Clip {
            source: ClipSource::File(file),
            label,
            speaker,
            split,
        })
        .collect();
    Ok(DataSet {
        root: root.to_path_buf(),
        layout: Layout::Fsdd,
        classes: (0..10).map(|d| d.to_string()).collect(),
        clips,
        background_noise: Vec::new(),
        skipped,
        split_note: rule_note(rule),
    })
}

fn open_folders(root: &Path, config: &DataSetConfig) -> DataResult<DataSet> {
    let folders = list_folder(root)?.folders;
    let mut skipped = Vec::new();
    let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for folder in folders.iter().filter(|f| f.as_str() != BACKGROUND_NOISE) {
        by_class.insert(folder.clone(), wav_files(root, folder, &mut skipped)?);
    }
    let background_noise = if folders.iter().any(|f| f == BACKGROUND_NOISE) {
        wav_files(root, BACKGROUND_NOISE, &mut skipped)?
    } else {
        Vec::new()
    };
    let classes: Vec<String> = by_class.keys().cloned().collect();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class_files) in by_class.into_values().enumerate() {
        labels.extend(std::iter::repeat_n(label, class_files.len()));
        files.extend(class_files);
    }
    let speakers: Vec<Option<String>> = files
        .iter()
        .map(|f| nohash_speaker(&file_name(f)).map(str::to_string))
        .collect();
    let rule = match config.split {
        SplitRule::Auto if speakers.iter().all(Option::is_some) => SplitRule::Speaker,
        SplitRule::Auto => SplitRule::Hash,
        chosen => chosen,
    };
    let splits = assign_splits(&files, &speakers, rule, config);
    let clips = files
        .into_iter()
        .zip(labels)
        .zip(speakers)
        .zip(splits)
        .map(|(((file, label), speaker), split)| Clip {
            source: ClipSource::File(file),
            label,
            speaker,
            split,
        })
        .collect();
    Ok(DataSet {
        root: root.to_path_buf(),
        layout: Layout::Folders,
        classes,
        clips,
        background_noise,
        skipped,
        split_note: rule_note(rule),
    })
}

//! What a data set holds: classes, counts per split, speakers, durations,
//! sample rates and formats, and the files that cannot be used.

use super::dataset::{ClipSource, DataSet, Layout, Skipped, Split};
use super::wav::{decode_wav, WavFormat};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Debug)]
pub struct Stats {
    pub root: String,
    pub layout: Layout,
    pub split_note: String,
    /// Class name and its clip count per split (train, validation, test).
    pub classes: Vec<(String, [usize; 3])>,
    /// Distinct speakers per split, and overall.
    pub speakers: [usize; 3],
    pub all_speakers: usize,
    /// Speakers found in more than one split (zero for a speaker-disjoint split).
    pub shared_speakers: usize,
    /// Silence clips cut from background noise rather than read from files.
    pub generated_silence: usize,
    /// Duration of the decodable clip files, in seconds: min, mean, max.
    pub durations: Option<(f64, f64, f64)>,
    pub total_hours: f64,
    /// Clip files per sample rate.
    pub sample_rates: BTreeMap<u32, usize>,
    /// Clip files per sample format ("16-bit int, 1 channel").
    pub formats: BTreeMap<String, usize>,
    /// Background noise files with their duration in seconds.
    pub background_noise: Vec<(String, f64)>,
    pub skipped: Vec<Skipped>,
}

fn describe_format(format: &WavFormat) -> String {
    let kind = if format.float { "float" } else { "int" };
    let channels = if format.channels == 1 {
        "channel"
    } else {
        "channels"
    };
    format!(
        "{}-bit {kind}, {} {channels}",
        format.bits_per_sample, format.channels
    )
}

/// Decodes every file of the data set (on all cores) and summarises it.
pub fn stats(data_set: &DataSet, threads: usize) -> Stats {
    let files: Vec<&Path> = data_set
        .clips
        .iter()
        .filter_map(|c| match &c.source {
            ClipSource::File(f) => Some(f.as_path()),
            ClipSource::Noise { .. } => None,
        })
        .collect();
    let next = AtomicUsize::new(0);
    let decoded: Vec<Option<Result<(WavFormat, f64), String>>> = {
        let results = std::sync::Mutex::new(vec![None; files.len()]);
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() {
                        break;
                    }
                    let result = decode_wav(&data_set.path_of(files[i]))
                        .map(|d| (d.format, d.audio.duration_s()))
                        .map_err(|e| e.reason());
                    results.lock().expect("no panics while holding results")[i] = Some(result);
                });
            }
        });
        results.into_inner().expect("threads finished")
    };

    let mut skipped = data_set.skipped.clone();
    let mut sample_rates = BTreeMap::new();
    let mut formats = BTreeMap::new();
    let mut durations = Vec::new();
    let mut usable = BTreeSet::new();
    for (file, result) in files.iter().zip(decoded) {
        match result.expect("every file was decoded") {
            Ok((format, duration)) => {
                *sample_rates.entry(format.sample_rate).or_insert(0) += 1;
                *formats.entry(describe_format(&format)).or_insert(0) += 1;
                durations.push(duration);
                usable.insert(*file);
            }
            Err(reason) => skipped.push(Skipped {
                path: data_set.path_of(file),
                reason,
            }),
        }
    }

    let mut counts = vec![[0usize; 3]; data_set.classes.len()];
    let mut speakers_by_split: [BTreeSet<&str>; 3] = Default::default();
    let mut generated_silence = 0;
    for clip in &data_set.clips {
        match &clip.source {
            ClipSource::File(f) if !usable.contains(f.as_path()) => continue,
            ClipSource::Noise { .. } => generated_silence += 1,
            ClipSource::File(_) => {}
        }
        counts[clip.label][clip.split as usize] += 1;
        if let Some(speaker) = &clip.speaker {
            speakers_by_split[clip.split as usize].insert(speaker);
        }
    }
    let all: BTreeSet<&str> = speakers_by_split.iter().flatten().copied().collect();
    let shared = all
        .iter()
        .filter(|s| {
            speakers_by_split
                .iter()
                .filter(|set| set.contains(*s))
                .count()
                > 1
        })
        .count();
    let background_noise = data_set
        .background_noise
        .iter()
        .map(|f| {
            let path = data_set.path_of(f);
            let name = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            match decode_wav(&path) {
                Ok(d) => (name, d.audio.duration_s()),
                Err(e) => {
                    skipped.push(Skipped {
                        path,
                        reason: e.reason(),
                    });
                    (name, 0.0)
                }
            }
        })
        .collect();
    let total: f64 = durations.iter().sum();
    Stats {
        root: data_set.root.display().to_string(),
        layout: data_set.layout,
        split_note: data_set.split_note.clone(),
        classes: data_set.classes.iter().cloned().zip(counts).collect(),
        speakers: [0, 1, 2].map(|s| speakers_by_split[s].len()),
        all_speakers: all.len(),
        shared_speakers: shared,
        generated_silence,
        durations: (!durations.is_empty()).then(|| {
            let min = durations.iter().copied().fold(f64::INFINITY, f64::min);
            let max = durations.iter().copied().fold(0.0, f64::max);
            (min, total / durations.len() as f64, max)
        }),
        total_hours: total / 3600.0,
        sample_rates,
        formats,
        background_noise,
        skipped,
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data set   {} ({:?} layout)", self.root, self.layout)?;
        writeln!(f, "split      {}", self.split_note)?;
        let totals = self.classes.iter().fold([0; 3], |acc, (_, c)| {
            [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]]
        });
        writeln!(
            f,
            "{:<14} {:>7} {:>10} {:>7} {:>7}",
            "class", "train", "validation", "test", "total"
        )?;
        for (name, c) in self
            .classes
            .iter()
            .chain(std::iter::once(&("all".to_string(), totals)))
        {
            writeln!(
                f,
                "{name:<14} {:>7} {:>10} {:>7} {:>7}",
                c[0],
                c[1],
                c[2],
                c.iter().sum::<usize>()
            )?;
        }
        if self.generated_silence > 0 {
            writeln!(
                f,
                "silence    {} clips cut from the background noise",
                self.generated_silence
            )?;
        }
        writeln!(
            f,
            "speakers   {} ({} train, {} validation, {} test; {} in more than one split)",
            self.all_speakers,
            self.speakers[Split::Train as usize],
            self.speakers[Split::Validation as usize],
            self.speakers[Split::Test as usize],
            self.shared_speakers
        )?;
        if let Some((min, mean, max)) = self.durations {
            writeln!(
                f,
                "durations  min {min:.2} s, mean {mean:.2} s, max {max:.2} s, total {:.2} h",
                self.total_hours
            )?;
        }
        let rates: Vec<String> = self
            .sample_rates
            .iter()
            .map(|(r, n)| format!("{r} Hz: {n}"))
            .collect();
        writeln!(f, "rates      {}", rates.join(", "))?;
        let formats: Vec<String> = self
            .formats
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        writeln!(f, "formats    {}", formats.join(", "))?;
        if !self.background_noise.is_empty() {
            let noise: Vec<String> = self
                .background_noise
                .iter()
                .map(|(n, d)| format!("{n} ({d:.0} s)"))
                .collect();
            writeln!(f, "noise      {}", noise.join(", "))?;
        }
        writeln!(f, "skipped    {} files", self.skipped.len())?;
        for s in &self.skipped {
            writeln!(f, "  {}: {}", s.path.display(), s.reason)?;
        }
        Ok(())
    }
}

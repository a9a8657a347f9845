//! Streaming evaluation: a long recording built from clips over background
//! noise with the ground truth of every word, and the metrics of the
//! TensorFlow Speech Commands streaming test (`test_streaming_accuracy`:
//! `RecognizeCommands` to turn per-window scores into detections, and its
//! accuracy statistics: matched, correct, wrong, false alarms).

use super::augment::mix_noise;
use super::dataset::{ClipSource, DataSet, Split, SILENCE};
use super::error::DataResult;
use super::wav::read_wav;
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// A word in a stream: its label and where it lies, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthEvent {
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub sample_rate: u32,
    pub duration_s: f64,
    /// Gap between the start of one word and the next, before jitter.
    pub word_gap_ms: f64,
    /// A uniform extra gap in [0, jitter_ms).
    pub jitter_ms: f64,
    /// Volume of the background noise under the whole stream.
    pub noise_volume: f32,
    pub seed: u64,
}

impl Default for StreamConfig {
    /// As TensorFlow's `generate_streaming_test_wav`: ten minutes, a word
    /// every two seconds or so, noise at volume 0.1.
    fn default() -> Self {
        StreamConfig {
            sample_rate: 16000,
            duration_s: 600.0,
            word_gap_ms: 2000.0,
            jitter_ms: 500.0,
            noise_volume: 0.1,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Stream {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub truth: Vec<TruthEvent>,
}

/// Builds a stream: words drawn at random from `clips` (label, audio at the
/// stream's rate) placed one after another, over a random piece of `noise`.
pub fn make_stream(
    clips: &[(String, Vec<f32>)],
    noise: &[Vec<f32>],
    config: &StreamConfig,
) -> Stream {
    let mut rng = Rng::new(config.seed);
    let rate = config.sample_rate as f64;
    let length = (config.duration_s * rate) as usize;
    let mut samples = vec![0.0f32; length];
    let usable: Vec<&Vec<f32>> = noise.iter().filter(|n| !n.is_empty()).collect();
    if !usable.is_empty() && config.noise_volume > 0.0 {
        // Noise files are looped to cover the stream.
        let mut filled = 0;
        while filled < length {
            let file = usable[rng.below(usable.len())];
            let take = file.len().min(length - filled);
            mix_noise(
                &mut samples[filled..filled + take],
                &file[..take],
                0,
                config.noise_volume,
            );
            filled += take;
        }
    }
    let mut truth = Vec::new();
    let mut at_ms = config.word_gap_ms / 2.0;
    while !clips.is_empty() {
        let (label, audio) = &clips[rng.below(clips.len())];
        let start = (at_ms * rate / 1000.0) as usize;
        if start + audio.len() > length {
            break;
        }
        for (s, a) in samples[start..start + audio.len()].iter_mut().zip(audio) {
            *s = (*s + a).clamp(-1.0, 1.0);
        }
        truth.push(TruthEvent {
            label: label.clone(),
            start_ms: (start as f64 * 1000.0 / rate) as i64,
            end_ms: ((start + audio.len()) as f64 * 1000.0 / rate) as i64,
        });
        at_ms += config.word_gap_ms + rng.uniform(0.0, config.jitter_ms as f32) as f64;
    }
    Stream {
        samples,
        sample_rate: config.sample_rate,
        truth,
    }
}

/// A stream of the words (every class but silence) of one split of `set`
/// over its background noise.
pub fn split_stream(set: &DataSet, split: Split, config: &StreamConfig) -> DataResult<Stream> {
    let rate = config.sample_rate;
    let mut clips = Vec::new();
    for (_, clip) in set.clips_in(split) {
        if let ClipSource::File(file) = &clip.source {
            if clip.label != 0 || set.classes[0] != SILENCE {
                let audio = read_wav(&set.path_of(file), rate)?;
                clips.push((set.classes[clip.label].clone(), audio.samples));
            }
        }
    }
    let noise = set
        .background_noise
        .iter()
        .map(|f| read_wav(&set.path_of(f), rate).map(|a| a.samples))
        .collect::<DataResult<Vec<_>>>()?;
    Ok(make_stream(&clips, &noise, config))
}

/// The ground truth in TensorFlow's text form: `label,start_ms` per line.
pub fn truth_to_text(truth: &[TruthEvent]) -> String {
    truth
        .iter()
        .map(|t| format!("{},{}\n", t.label, t.start_ms))
        .collect()
}

/// Parses the ground truth text (`label,start_ms` per line; blank lines
/// skipped); `what` names the source in errors. End times are not in the
/// format, so they are set to the start.
pub fn truth_from_text(text: &str, what: &str) -> Result<Vec<TruthEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let (label, start) = line.trim().rsplit_once(',').ok_or_else(|| {
                format!("{what}:{}: expected `label,start_ms`, got {line:?}", i + 1)
            })?;
            let start_ms: i64 = start.trim().parse().map_err(|_| {
                format!("{what}:{}: {start:?} is not a time in milliseconds", i + 1)
            })?;
            Ok(TruthEvent {
                label: label.trim().to_string(),
                start_ms,
                end_ms: start_ms,
            })
        })
        .collect()
}

/// `RecognizeCommands` settings, with the streaming test's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RecognizeConfig {
    pub clip_stride_ms: i64,
    pub average_window_ms: i64,
    pub detection_threshold: f32,
    pub suppression_ms: i64,
    pub minimum_count: usize,
    pub time_tolerance_ms: i64,
}

impl Default for RecognizeConfig {
    fn default() -> Self {
        RecognizeConfig {
            clip_stride_ms: 30,
            average_window_ms: 500,
            detection_threshold: 0.7,
            suppression_ms: 1500,
            minimum_count: 3,
            time_tolerance_ms: 750,
        }
    }
}

/// What one call to [`RecognizeCommands::process`] concludes.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognition {
    pub label: String,
    pub score: f32,
    pub is_new_command: bool,
}

/// Smooths per-window scores over a time window and reports a command when
/// the averaged top score passes the threshold, is a different label from
/// the last one, and the suppression time has passed.
pub struct RecognizeCommands {
    labels: Vec<String>,
    config: RecognizeConfig,
    previous: VecDeque<(i64, Vec<f32>)>,
    previous_top_label: String,
    previous_top_time: Option<i64>,
}

impl RecognizeCommands {
    pub fn new(labels: Vec<String>, config: RecognizeConfig) -> Self {
        RecognizeCommands {
            labels,
            config,
            previous: VecDeque::new(),
            previous_top_label: super::dataset::SILENCE.to_string(),
            previous_top_time: None,
        }
    }

    /// Feeds the scores of the window at `time_ms` (the streaming test
    /// passes the window's start); times must not go back.
    pub fn process(&mut self, scores: &[f32], time_ms: i64) -> Result<Recognition, String> {
        if scores.len() != self.labels.len() {
            return Err(format!(
                "{} scores given for {} labels",
                scores.len(),
                self.labels.len()
            ));
        }
        if let Some(&(last, _)) = self.previous.back() {
            if time_ms < last {
                return Err(format!(
                    "results must be fed in increasing time order: {time_ms} ms after {last} ms"
                ));
            }
        }
        self.previous.push_back((time_ms, scores.to_vec()));
        let time_limit = time_ms - self.config.average_window_ms;
        while self.previous.front().is_some_and(|(t, _)| *t < time_limit) {
            self.previous.pop_front();
        }
        let earliest = self.previous.front().map_or(time_ms, |(t, _)| *t);
        if self.previous.len() < self.config.minimum_count
            || time_ms - earliest < self.config.average_window_ms / 4
        {
            return Ok(Recognition {
                label: self.previous_top_label.clone(),
                score: 0.0,
                is_new_command: false,
            });
        }
        let count = self.previous.len() as f32;
        let mut average = vec![0.0f32; self.labels.len()];
        for (_, s) in &self.previous {
            for (a, v) in average.iter_mut().zip(s) {
                *a += v / count;
            }
        }
        // The first of equal scores wins, as a stable sort by score would.
        let (top, &top_score) =
            average
                .iter()
                .enumerate()
                .fold((0, &f32::NEG_INFINITY), |best, (i, s)| {
                    if *s > *best.1 {
                        (i, s)
                    } else {
                        best
                    }
                });
        let top_label = &self.labels[top];
        let since_last = match self.previous_top_time {
            Some(t) if self.previous_top_label != super::dataset::SILENCE => time_ms - t,
            _ => i64::MAX,
        };
        let is_new_command = top_score > self.config.detection_threshold
            && *top_label != self.previous_top_label
            && since_last > self.config.suppression_ms;
        if is_new_command {
            self.previous_top_label = top_label.clone();
            self.previous_top_time = Some(time_ms);
        }
        Ok(Recognition {
            label: top_label.clone(),
            score: top_score,
            is_new_command,
        })
    }
}

/// The streaming test's counts; percentages are of the ground-truth words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamingAccuracy {
    pub ground_truth: usize,
    pub correct: usize,
    pub wrong: usize,
    pub false_alarms: usize,
}

impl StreamingAccuracy {
    fn percent(&self, n: usize) -> f64 {
        if self.ground_truth == 0 {
            0.0
        } else {
            100.0 * n as f64 / self.ground_truth as f64
        }
    }

    /// Ground-truth words some detection fell near (correct or wrong).
    pub fn matched_percent(&self) -> f64 {
        self.percent(self.correct + self.wrong)
    }

    pub fn correct_percent(&self) -> f64 {
        self.percent(self.correct)
    }

    pub fn wrong_percent(&self) -> f64 {
        self.percent(self.wrong)
    }

    pub fn false_alarm_percent(&self) -> f64 {
        self.percent(self.false_alarms)
    }
}

impl std::fmt::Display for StreamingAccuracy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}% matched, {:.1}% correctly, {:.1}% wrongly, {:.1}% false positives ({} words)",
            self.matched_percent(),
            self.correct_percent(),
            self.wrong_percent(),
            self.false_alarm_percent(),
            self.ground_truth
        )
    }
}

/// `CalculateAccuracyStats`: each detection (label, time) is matched to the
/// first ground-truth word starting within `tolerance_ms` of it; correct if
/// the label agrees and that word was not matched before, wrong otherwise;
/// a detection near no word is a false alarm. Ground truth after
/// `up_to_ms + tolerance_ms` is not counted (`None`: all of it).
pub fn accuracy_stats(
    truth: &[(String, i64)],
    found: &[(String, i64)],
    up_to_ms: Option<i64>,
    tolerance_ms: i64,
) -> StreamingAccuracy {
    let latest_possible = up_to_ms.map_or(i64::MAX, |t| t + tolerance_ms);
    let mut stats = StreamingAccuracy {
        ground_truth: truth
            .iter()
            .take_while(|(_, t)| *t <= latest_possible)
            .count(),
        ..StreamingAccuracy::default()
    };
    let mut matched = HashSet::new();
    for (found_label, found_time) in found {
        let (earliest, latest) = (found_time - tolerance_ms, found_time + tolerance_ms);
        let hit = truth
            .iter()
            .take_while(|(_, t)| *t <= latest && *t <= latest_possible)
            .find(|(_, t)| *t >= earliest);
        match hit {
            Some((label, time)) => {
                if label == found_label && !matched.contains(time) {
                    stats.correct += 1;
                } else {
                    stats.wrong += 1;
                }
                matched.insert(*time);
            }
            None => stats.false_alarms += 1,
        }
    }
    stats
}

/// Runs the streaming test on per-window scores: `scores[i]` is the model's
/// output for the window starting at `i * clip_stride_ms`. Detections of
/// `_silence_` are not reported, as in the streaming test.
pub fn evaluate_stream(
    labels: &[String],
    scores: &[Vec<f32>],
    truth: &[TruthEvent],
    config: &RecognizeConfig,
) -> Result<(StreamingAccuracy, Vec<(String, i64)>), String> {
    let mut recognizer = RecognizeCommands::new(labels.to_vec(), config.clone());
    let mut found = Vec::new();
    for (i, window) in scores.iter().enumerate() {
        let time_ms = i as i64 * config.clip_stride_ms;
        let r = recognizer.process(window, time_ms)?;
        if r.is_new_command && r.label != super::dataset::SILENCE {
            found.push((r.label, time_ms));
        }
    }
    let truth: Vec<(String, i64)> = truth
        .iter()
        .map(|t| (t.label.clone(), t.start_ms))
        .collect();
    Ok((
        accuracy_stats(&truth, &found, None, config.time_tolerance_ms),
        found,
    ))
}

/// A word placed in a training stream: its class and its samples' extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedWord {
    pub label: usize,
    pub start: usize,
    pub end: usize,
}

/// Builds a training stream of `length` samples: the `words` (class, audio)
/// placed one per equal slot of the stream at a random offset inside it, over
/// `noise` (a random piece, looped if short) at `noise_volume`.
pub fn compose_stream(
    words: &[(usize, &[f32])],
    noise: Option<&[f32]>,
    noise_volume: f32,
    length: usize,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<PlacedWord>) {
    let mut samples = vec![0.0f32; length];
    if let Some(noise) = noise.filter(|n| !n.is_empty() && noise_volume > 0.0) {
        let offset = rng.below(noise.len());
        for (i, s) in samples.iter_mut().enumerate() {
            *s = noise[(offset + i) % noise.len()] * noise_volume;
        }
    }
    let slot = length / words.len().max(1);
    let mut placed = Vec::with_capacity(words.len());
    for (k, (label, audio)) in words.iter().enumerate() {
        let audio = &audio[..audio.len().min(slot)];
        let start = k * slot + rng.below(slot - audio.len() + 1);
        for (s, a) in samples[start..start + audio.len()].iter_mut().zip(audio) {
            *s = (*s + a).clamp(-1.0, 1.0);
        }
        placed.push(PlacedWord {
            label: *label,
            start,
            end: start + audio.len(),
        });
    }
    (samples, placed)
}

/// The label of each of `windows` windows of `window` samples every
/// `stride`: the word whose audio covers more than half of the window, else
/// `silence`.
pub fn window_labels(
    words: &[PlacedWord],
    windows: usize,
    window: usize,
    stride: usize,
    silence: usize,
) -> Vec<usize> {
    (0..windows)
        .map(|w| {
            let (from, to) = (w * stride, w * stride + window);
            words
                .iter()
                .find(|p| 2 * (p.end.min(to).saturating_sub(p.start.max(from))) > window)
                .map_or(silence, |p| p.label)
        })
        .collect()
}

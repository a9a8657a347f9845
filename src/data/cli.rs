//! The `audionas data ...` commands.

use super::dataset::{DataSet, DataSetConfig, Layout, Split, SplitRule, Task};
use super::error::write_atomically;
use super::features::FeatureConfig;
use super::lid::{language, synthesize_lid, Language, LidSynthConfig, LANGUAGES};
use super::prepare::{cache_file_for, default_cache_dir, prepare, PrepareOptions};
use super::stats::stats;
use super::stream::{split_stream, truth_to_text, StreamConfig};
use super::synth::{installed_engines, synthesize, Engine, SynthConfig};
use super::wav::{write_wav, Audio};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Make a Speech Commands-style keyword data set with the text-to-speech
    /// engines on this machine (espeak-ng, espeak, flite, festival), or with
    /// `--task lid` a spoken-language data set (espeak-ng and word lists).
    Synth {
        /// Output folder [default: data/kws-synth, data/lid-synth with --task lid].
        #[arg(long)]
        out: Option<PathBuf>,
        /// kws: keywords (Speech Commands layout); lid: languages (a folder
        /// per language, 2 to 4 s sentences of random words).
        #[arg(long, default_value = "kws", value_parser = parse_synth_task)]
        task: SynthTask,
        /// Clips per keyword (each unknown word gets a quarter), or per language.
        #[arg(long, default_value_t = 40)]
        per_class: usize,
        /// Distinct synthetic speakers (voice, pitch and speed).
        #[arg(long, default_value_t = 40)]
        speakers: usize,
        /// Sample rate of the clips.
        #[arg(long, default_value_t = 16000)]
        rate: u32,
        /// Engines to use, comma-separated (espeak-ng, espeak, flite, text2wave); default: all found.
        #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
        engines: Vec<Engine>,
        /// With --task lid: languages, comma-separated (dutch, english, french,
        /// german, italian, portuguese, spanish); default: all.
        #[arg(long, value_delimiter = ',', value_parser = parse_language)]
        languages: Vec<Language>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Build a long recording from a data set's test clips over its background
    /// noise, with the ground truth (`label,start_ms` per line) beside it.
    Stream {
        #[command(flatten)]
        data: DataArgs,
        /// Output WAV file; the ground truth goes to the same name with .txt.
        #[arg(long)]
        out: PathBuf,
        /// Length in seconds.
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        /// The split whose words the stream holds: test, or validation for
        /// choosing between models without touching the test words.
        #[arg(long, default_value = "test")]
        from: String,
    },
    /// Classes, counts, speakers, durations and sample rates of a data set.
    Stats {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Compute a data set's features once and cache them; prints timings.
    Prepare {
        #[command(flatten)]
        data: DataArgs,
        /// Feature configuration (TOML), e.g. configs/features/logmel40.toml.
        #[arg(long)]
        features: PathBuf,
        /// Cache folder [default: $AUDIONAS_CACHE, else ~/.cache/audionas].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Prepare this many times (the first may compute, the others load
        /// the cache) and report each time and the median.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Delete this data set's cache file first, so the first run computes.
        #[arg(long)]
        fresh: bool,
    },
}

/// Which data set folder, and how to read it.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// The data set folder.
    pub dir: PathBuf,
    /// Layout: auto, speech-commands, folders or fsdd.
    #[arg(long, default_value = "auto", value_parser = parse_layout)]
    pub layout: Layout,
    /// Task for the Speech Commands layout: keywords12 or all-words.
    #[arg(long, default_value = "keywords12", value_parser = parse_task)]
    pub task: Task,
    /// Split rule: auto, hash or speaker.
    #[arg(long, default_value = "auto", value_parser = parse_split)]
    pub split: SplitRule,
    /// Seed for the sampled unknown and silence clips.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop at the first unreadable file instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

fn parse_layout(text: &str) -> Result<Layout, String> {
    match text {
        "auto" => Ok(Layout::Auto),
        "speech-commands" => Ok(Layout::SpeechCommands),
        "folders" => Ok(Layout::Folders),
        "fsdd" => Ok(Layout::Fsdd),
        other => Err(format!(
            "unknown layout {other:?}; use auto, speech-commands, folders or fsdd"
        )),
    }
}

fn parse_task(text: &str) -> Result<Task, String> {
    match text {
        "keywords12" => Ok(Task::Keywords12),
        "all-words" => Ok(Task::AllWords),
        other => Err(format!(
            "unknown task {other:?}; use keywords12 or all-words"
        )),
    }
}

fn parse_split(text: &str) -> Result<SplitRule, String> {
    match text {
        "auto" => Ok(SplitRule::Auto),
        "hash" => Ok(SplitRule::Hash),
        "speaker" => Ok(SplitRule::Speaker),
        other => Err(format!(
            "unknown split rule {other:?}; use auto, hash or speaker"
        )),
    }
}

impl DataArgs {
    fn open(&self) -> anyhow::Result<DataSet> {
        let config = DataSetConfig {
            layout: self.layout,
            task: self.task,
            split: self.split,
            seed: self.seed,
            ..DataSetConfig::default()
        };
        Ok(DataSet::open(&self.dir, &config)?)
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_engine(text: &str) -> Result<Engine, String> {
    Engine::ALL
        .into_iter()
        .find(|e| e.program() == text)
        .ok_or_else(|| {
            format!("unknown engine {text:?}; use espeak-ng, espeak, flite or text2wave")
        })
}

/// What `data synth` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthTask {
    Kws,
    Lid,
}

fn parse_synth_task(text: &str) -> Result<SynthTask, String> {
    match text {
        "kws" => Ok(SynthTask::Kws),
        "lid" => Ok(SynthTask::Lid),
        other => Err(format!(
            "unknown task {other:?}; use kws (keywords) or lid (language identification)"
        )),
    }
}

fn parse_language(text: &str) -> Result<Language, String> {
    language(text).ok_or_else(|| {
        format!(
            "unknown language {text:?}; use {}",
            LANGUAGES.map(|l| l.name).join(", ")
        )
    })
}

fn run_synth_lid(config: LidSynthConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let report = synthesize_lid(&config)?;
    println!(
        "made {} clips and {} noise files in {} in {:.1} s",
        report.clips,
        report.noise_files.len(),
        config.out.display(),
        started.elapsed().as_secs_f64()
    );
    for voice in &report.voices {
        let family = if voice.name.starts_with("klatt") {
            "Klatt"
        } else {
            "formant"
        };
        println!(
            "  speaker {}: espeak-ng {family} variant {}, pitch {:.2}, speed {:.2}",
            voice.speaker_id(),
            voice.name,
            voice.pitch,
            voice.speed
        );
    }
    Ok(())
}

fn run_synth(config: SynthConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("engines found: {}", names(&installed_engines()));
    let report = synthesize(&config)?;
    println!(
        "made {} clips and {} noise files in {} in {:.1} s",
        report.clips,
        report.noise_files.len(),
        config.out.display(),
        started.elapsed().as_secs_f64()
    );
    println!("engines used: {}", names(&report.engines));
    for voice in &report.voices {
        println!(
            "  speaker {}: {} voice {}, pitch {:.2}, speed {:.2}",
            voice.speaker_id(),
            voice.engine.program(),
            voice.name,
            voice.pitch,
            voice.speed
        );
    }
    Ok(())
}

fn names(engines: &[Engine]) -> String {
    if engines.is_empty() {
        return "none".into();
    }
    engines
        .iter()
        .map(|e| e.program())
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_stream(data: DataArgs, out: PathBuf, seconds: f64, from: &str) -> anyhow::Result<()> {
    let split = match from {
        "test" => Split::Test,
        "validation" => Split::Validation,
        other => anyhow::bail!("--from {other:?}: use test or validation"),
    };
    let data_set = data.open()?;
    let config = StreamConfig {
        duration_s: seconds,
        seed: data.seed,
        ..StreamConfig::default()
    };
    let rate = config.sample_rate;
    let stream = split_stream(&data_set, split, &config)?;
    write_wav(
        &out,
        &Audio {
            samples: stream.samples,
            sample_rate: rate,
        },
    )?;
    let truth_file = out.with_extension("txt");
    write_atomically(&truth_file, |w| {
        w.write_all(truth_to_text(&stream.truth).as_bytes())
    })?;
    println!(
        "{}: {seconds} s, {} words; ground truth in {}",
        out.display(),
        stream.truth.len(),
        truth_file.display()
    );
    Ok(())
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Synth {
            out,
            task: SynthTask::Lid,
            per_class,
            speakers,
            rate,
            engines,
            languages,
            seed,
        } => {
            if !engines.is_empty() {
                anyhow::bail!("--engines is for --task kws; --task lid speaks with espeak-ng");
            }
            run_synth_lid(LidSynthConfig {
                per_language: per_class,
                speakers,
                sample_rate: rate,
                languages,
                seed,
                ..LidSynthConfig::new(&out.unwrap_or_else(|| "data/lid-synth".into()))
            })
        }
        DataCommand::Synth {
            out,
            task: SynthTask::Kws,
            per_class,
            speakers,
            rate,
            engines,
            languages,
            seed,
        } => {
            if !languages.is_empty() {
                anyhow::bail!("--languages is for --task lid");
            }
            run_synth(SynthConfig {
                per_class,
                speakers,
                sample_rate: rate,
                engines,
                seed,
                ..SynthConfig::new(&out.unwrap_or_else(|| "data/kws-synth".into()))
            })
        }
        DataCommand::Stream {
            data,
            out,
            seconds,
            from,
        } => run_stream(data, out, seconds, &from),
        DataCommand::Stats { data } => {
            let data_set = data.open()?;
            let summary = stats(&data_set, threads());
            print!("{summary}");
            if data.strict && !summary.skipped.is_empty() {
                anyhow::bail!("{} unusable files (strict mode)", summary.skipped.len());
            }
            Ok(())
        }
        DataCommand::Prepare {
            data,
            features,
            cache_dir,
            runs,
            fresh,
        } => {
            let config = FeatureConfig::load(&features)?;
            let options = PrepareOptions {
                cache_dir: Some(cache_dir.unwrap_or_else(default_cache_dir)),
                strict: data.strict,
                threads: threads(),
            };
            let mut times = Vec::new();
            for run in 0..runs.max(1) {
                let started = Instant::now();
                let data_set = data.open()?;
                if fresh && run == 0 {
                    remove_cache(&data_set, &config, &options)?;
                }
                let prepared = prepare(&data_set, &config, &options)?;
                let seconds = started.elapsed().as_secs_f64();
                times.push(seconds);
                println!(
                    "run {}: {} clips of {:?} in {seconds:.3} s ({}), {} skipped",
                    run + 1,
                    prepared.clips.len(),
                    prepared.clip_shape,
                    if prepared.from_cache {
                        "from the cache"
                    } else {
                        "computed"
                    },
                    prepared.skipped.len()
                );
                if run == 0 {
                    for s in &prepared.skipped {
                        println!("  skipped {}: {}", s.path.display(), s.reason);
                    }
                    if let Some(file) = &prepared.cache_file {
                        println!("cache: {}", file.display());
                    }
                }
            }
            if times.len() > 2 {
                let mut cached = times[1..].to_vec();
                cached.sort_by(f64::total_cmp);
                println!(
                    "median of the {} cached runs: {:.3} s",
                    cached.len(),
                    cached[cached.len() / 2]
                );
            }
            Ok(())
        }
    }
}

/// Removes a data set's cache file, so the next prepare computes.
fn remove_cache(
    data_set: &DataSet,
    config: &FeatureConfig,
    options: &PrepareOptions,
) -> anyhow::Result<()> {
    if let Some(dir) = &options.cache_dir {
        let file = cache_file_for(data_set, config, dir)?;
        if file.exists() {
            std::fs::remove_file(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        }
    }
    Ok(())
}

//! A Speech Commands-style keyword data set made with the text-to-speech
//! engines found on the machine (espeak-ng or espeak, flite, festival's
//! text2wave), with voice, pitch and speed variation and synthetic
//! background noise (white, pink, brown), so a fresh machine has data.

use super::dataset::{sha1_hex, BACKGROUND_NOISE, KEYWORDS};
use super::error::{DataError, DataResult};
use super::wav::{read_wav, write_wav, Audio};
use crate::util::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Words spoken for the `_unknown_` class (the Speech Commands auxiliary words).
pub const UNKNOWN_WORDS: [&str; 10] = [
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    EspeakNg,
    Espeak,
    Flite,
    Festival,
}

impl Engine {
    pub const ALL: [Engine; 4] = [
        Engine::EspeakNg,
        Engine::Espeak,
        Engine::Flite,
        Engine::Festival,
    ];

    pub fn program(self) -> &'static str {
        match self {
            Engine::EspeakNg => "espeak-ng",
            Engine::Espeak => "espeak",
            Engine::Flite => "flite",
            Engine::Festival => "text2wave",
        }
    }
}

/// One synthetic speaker: an engine, a voice and a base pitch and speed.
#[derive(Clone, Debug, PartialEq)]
pub struct Voice {
    pub engine: Engine,
    pub name: String,
    /// 0 to 1, mapped to the engine's pitch range.
    pub pitch: f32,
    /// Relative speaking rate, 1 = the engine's default.
    pub speed: f32,
}

impl Voice {
    /// The speaker id in file names: 8 hex digits, like Speech Commands'.
    pub fn speaker_id(&self) -> String {
        sha1_hex(&format!(
            "{:?}/{}/{:.2}/{:.2}",
            self.engine, self.name, self.pitch, self.speed
        ))[..8]
            .to_string()
    }
}

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub out: PathBuf,
    pub sample_rate: u32,
    /// Clips per keyword; each unknown word gets a quarter of this (at least two).
    pub per_class: usize,
    /// Distinct synthetic speakers.
    pub speakers: usize,
    /// Engines to use; empty means every one found.
    pub engines: Vec<Engine>,
    pub noise_seconds: f32,
    pub seed: u64,
    pub threads: usize,
}

impl SynthConfig {
    pub fn new(out: &Path) -> Self {
        SynthConfig {
            out: out.to_path_buf(),
            sample_rate: 16000,
            per_class: 40,
            speakers: 40,
            engines: Vec::new(),
            noise_seconds: 30.0,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What was made.
#[derive(Clone, Debug)]
pub struct SynthReport {
    pub engines: Vec<Engine>,
    pub voices: Vec<Voice>,
    pub clips: usize,
    pub noise_files: Vec<PathBuf>,
}

pub(super) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The engines installed on this machine.
pub fn installed_engines() -> Vec<Engine> {
    Engine::ALL
        .into_iter()
        .filter(|e| find_program(e.program()).is_some())
        .collect()
}

fn run_program(command: &mut Command, what: &Path) -> DataResult<String> {
    let output = command.output().map_err(|e| DataError::Synthesis {
        path: what.to_path_buf(),
        reason: format!("cannot run {:?}: {e}", command.get_program()),
    })?;
    if !output.status.success() {
        return Err(DataError::Synthesis {
            path: what.to_path_buf(),
            reason: format!(
                "{:?} {:?} failed ({}): {}",
                command.get_program(),
                command.get_args().collect::<Vec<_>>(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// English voice names an engine offers (with espeak's voice variants).
pub fn engine_voices(engine: Engine) -> DataResult<Vec<String>> {
    let program = Path::new(engine.program());
    match engine {
        Engine::EspeakNg | Engine::Espeak => {
            let listing = run_program(Command::new(engine.program()).arg("--voices=en"), program)?;
            // Columns: priority, language, age/gender, name, file. Mbrola
            // voices ("mb/...") need an extra package and variants ("!v/...")
            // are not accents, so both are left out.
            let mut languages: Vec<String> = listing
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let columns: Vec<&str> = l.split_whitespace().collect();
                    let language = columns.get(1)?;
                    let other = columns
                        .iter()
                        .any(|c| c.starts_with("mb/") || c.starts_with("!v/"));
                    (!other && *language != "variant").then(|| language.to_string())
                })
                .collect();
            languages.sort();
            languages.dedup();
            let variants = run_program(
                Command::new(engine.program()).arg("--voices=variant"),
                program,
            )?;
            let variants: Vec<String> = variants
                .lines()
                .skip(1)
                .filter_map(|l| {
                    l.split_whitespace()
                        .find_map(|c| c.strip_prefix("!v/"))
                        .map(str::to_string)
                })
                .collect();
            let mut voices = Vec::new();
            for (i, language) in languages.iter().enumerate() {
                voices.push(language.clone());
                // Each accent with a few of the variants, spread over the list.
                for k in 0..3 {
                    if !variants.is_empty() {
                        voices.push(format!(
                            "{language}+{}",
                            variants[(i * 7 + k * 11) % variants.len()]
                        ));
                    }
                }
            }
            Ok(voices)
        }
        Engine::Flite => {
            let listing = run_program(Command::new("flite").arg("-lv"), program)?;
            let names = listing.split_once(':').map_or("", |(_, rest)| rest);
            // `awb_time` only speaks the time of day.
            Ok(names
                .split_whitespace()
                .filter(|v| *v != "awb_time")
                .map(str::to_string)
                .collect())
        }
        Engine::Festival => Ok(vec!["default".to_string()]),
    }
}

/// Speaks `text` (a word or a sentence) into the WAV file `out` with the
/// voice at `pitch` and `speed`.
pub(super) fn speak(
    voice: &Voice,
    text: &str,
    pitch: f32,
    speed: f32,
    out: &Path,
) -> DataResult<()> {
    let mut command = Command::new(voice.engine.program());
    match voice.engine {
        Engine::EspeakNg | Engine::Espeak => {
            command
                .args(["-v", &voice.name])
                .args(["-s", &format!("{}", (175.0 * speed).round())])
                .args(["-p", &format!("{}", (20.0 + 60.0 * pitch).round())])
                .arg("-w")
                .arg(out)
                .arg(text);
        }
        Engine::Flite => {
            command
                .args(["-voice", &voice.name])
                .args(["--setf", &format!("duration_stretch={:.3}", 1.0 / speed)])
                .args([
                    "--setf",
                    &format!("int_f0_target_mean={:.0}", 80.0 + 140.0 * pitch),
                ])
                .args(["-t", text])
                .arg("-o")
                .arg(out);
        }
        Engine::Festival => {
            let text_file = out.with_extension("txt");
            std::fs::write(&text_file, text).map_err(|e| DataError::io(&text_file, e))?;
            command.arg(&text_file).arg("-o").arg(out).args([
                "-eval",
                &format!("(Parameter.set 'Duration_Stretch {:.3})", 1.0 / speed),
            ]);
        }
    }
    run_program(&mut command, out).map(|_| ())
}

/// Keeps the part of a recording louder than 2% of its peak, plus 30 ms.
pub(super) fn trim_silence(samples: &[f32], sample_rate: u32) -> &[f32] {
    let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let threshold = peak * 0.02;
    let margin = (sample_rate as usize * 30) / 1000;
    let first = samples
        .iter()
        .position(|s| s.abs() > threshold)
        .unwrap_or(0);
    let last = samples
        .iter()
        .rposition(|s| s.abs() > threshold)
        .unwrap_or(samples.len());
    &samples[first.saturating_sub(margin)..(last + margin).min(samples.len())]
}

/// White, pink (Paul Kellet's filter) and brown (leaky integrated) noise,
/// each scaled to a peak of 0.5.
pub fn synthetic_noise(kind: &str, length: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out: Vec<f32> = match kind {
        "white" => (0..length).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        "pink" => {
            let mut b = [0.0f32; 7];
            (0..length)
                .map(|_| {
                    let w = rng.uniform(-1.0, 1.0);
                    b[0] = 0.99886 * b[0] + w * 0.0555179;
                    b[1] = 0.99332 * b[1] + w * 0.0750759;
                    b[2] = 0.96900 * b[2] + w * 0.153_852;
                    b[3] = 0.86650 * b[3] + w * 0.3104856;
                    b[4] = 0.55000 * b[4] + w * 0.5329522;
                    b[5] = -0.7616 * b[5] - w * 0.0168980;
                    let v = b[..6].iter().sum::<f32>() + b[6] + w * 0.5362;
                    b[6] = w * 0.115926;
                    v
                })
                .collect()
        }
        "brown" => {
            let mut level = 0.0f32;
            (0..length)
                .map(|_| {
                    level = 0.998 * level + 0.02 * rng.uniform(-1.0, 1.0);
                    level
                })
                .collect()
        }
        other => panic!("no noise kind {other}"),
    };
    let peak = out.iter().fold(1e-9f32, |m, s| m.max(s.abs()));
    out.iter_mut().for_each(|s| *s *= 0.5 / peak);
    out
}

/// One clip to make.
struct Job {
    word: &'static str,
    voice: usize,
    index: usize,
    seed: u64,
}

/// Picks `count` speakers, alternating between engines so each is used.
fn choose_voices(engines: &[Engine], count: usize, rng: &mut Rng) -> DataResult<Vec<Voice>> {
    let mut per_engine: Vec<Vec<String>> = Vec::new();
    for &engine in engines {
        let mut names = engine_voices(engine)?;
        rng.shuffle(&mut names);
        per_engine.push(names);
    }
    let mut voices = Vec::new();
    for i in 0..count {
        let e = i % engines.len();
        let names = &per_engine[e];
        if names.is_empty() {
            continue;
        }
        voices.push(Voice {
            engine: engines[e],
            name: names[(i / engines.len()) % names.len()].clone(),
            pitch: rng.uniform(0.1, 0.9),
            speed: rng.uniform(0.8, 1.25),
        });
    }
    Ok(voices)
}

/// Makes the data set under `config.out` and says what it used.
pub fn synthesize(config: &SynthConfig) -> DataResult<SynthReport> {
    let installed = installed_engines();
    let engines: Vec<Engine> = if config.engines.is_empty() {
        // espeak is the older espeak-ng; one of the two is enough.
        installed
            .iter()
            .copied()
            .filter(|e| !(*e == Engine::Espeak && installed.contains(&Engine::EspeakNg)))
            .collect()
    } else {
        config
            .engines
            .iter()
            .copied()
            .filter(|e| installed.contains(e))
            .collect()
    };
    if engines.is_empty() {
        return Err(DataError::Synthesis {
            path: config.out.clone(),
            reason: format!(
                "no text-to-speech engine found (looked for {}); on Debian or Ubuntu: sudo apt-get install espeak-ng flite",
                Engine::ALL.map(Engine::program).join(", ")
            ),
        });
    }
    let mut rng = Rng::new(config.seed);
    let voices = choose_voices(&engines, config.speakers.max(1), &mut rng)?;
    let mut jobs = Vec::new();
    let per_unknown = (config.per_class / 4).max(2);
    for (word, count) in KEYWORDS
        .iter()
        .map(|w| (*w, config.per_class))
        .chain(UNKNOWN_WORDS.iter().map(|w| (*w, per_unknown)))
    {
        for i in 0..count {
            jobs.push(Job {
                word,
                voice: i % voices.len(),
                index: i / voices.len(),
                seed: rng.next_u64(),
            });
        }
    }

    run_jobs(jobs.len(), config.threads, |i, temp| {
        make_clip(&jobs[i], &voices, config, temp)
    })?;
    let noise_files = write_noise_files(
        &config.out,
        config.sample_rate,
        config.noise_seconds,
        &mut rng,
    )?;
    let mut used: Vec<Engine> = voices.iter().map(|v| v.engine).collect();
    used.sort();
    used.dedup();
    Ok(SynthReport {
        engines: used,
        voices,
        clips: jobs.len(),
        noise_files,
    })
}

/// Runs `job(i, temp)` for every `i` below `count` on `threads` threads,
/// each call with a temporary WAV path of its own; stops at the first error.
pub(super) fn run_jobs(
    count: usize,
    threads: usize,
    job: impl Fn(usize, &Path) -> DataResult<()> + Sync,
) -> DataResult<()> {
    // One folder per call, so syntheses running side by side in one
    // process never share temporary files.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let temp = std::env::temp_dir().join(format!(
        "audionas-synth-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&temp).map_err(|e| DataError::io(&temp, e))?;
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<DataError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || failure.lock().expect("not poisoned").is_some() {
                    break;
                }
                if let Err(e) = job(i, &temp.join(format!("{i}.wav"))) {
                    failure.lock().expect("not poisoned").get_or_insert(e);
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&temp);
    match failure.into_inner().expect("threads finished") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes `seconds` of white, pink and brown noise into `_background_noise_`.
pub(super) fn write_noise_files(
    out: &Path,
    sample_rate: u32,
    seconds: f32,
    rng: &mut Rng,
) -> DataResult<Vec<PathBuf>> {
    let length = (seconds * sample_rate as f32) as usize;
    let mut files = Vec::new();
    for kind in ["white", "pink", "brown"] {
        let path = out.join(BACKGROUND_NOISE).join(format!("{kind}_noise.wav"));
        let samples = synthetic_noise(kind, length, rng);
        write_wav(
            &path,
            &Audio {
                samples,
                sample_rate,
            },
        )?;
        files.push(path);
    }
    Ok(files)
}

/// A random kind of noise at a random low volume (0 to 0.06 of full scale).
pub(super) fn noise_floor(length: usize, rng: &mut Rng) -> Vec<f32> {
    let kinds = ["white", "pink", "brown"];
    let mut samples = synthetic_noise(kinds[rng.below(kinds.len())], length, rng);
    let noise_volume = rng.uniform(0.0, 0.06);
    samples.iter_mut().for_each(|s| *s *= noise_volume);
    samples
}

/// Speaks one word, trims it, places it at a random point of a one-second
/// clip over a little noise, and writes it.
fn make_clip(job: &Job, voices: &[Voice], config: &SynthConfig, temp: &Path) -> DataResult<()> {
    let mut rng = Rng::new(job.seed);
    let voice = &voices[job.voice];
    // Each utterance varies a little around the speaker's own pitch and pace.
    let pitch = (voice.pitch + rng.uniform(-0.08, 0.08)).clamp(0.0, 1.0);
    let speed = voice.speed * rng.uniform(0.92, 1.08);
    speak(voice, job.word, pitch, speed, temp)?;
    let spoken = read_wav(temp, config.sample_rate)?;
    let _ = std::fs::remove_file(temp);
    let rate = config.sample_rate;
    let clip_len = rate as usize;
    let samples = over_noise(&spoken.samples, rate, clip_len, &mut rng);
    let name = format!("{}_nohash_{}.wav", voice.speaker_id(), job.index);
    write_wav(
        &config.out.join(job.word).join(name),
        &Audio {
            samples,
            sample_rate: rate,
        },
    )
}

/// Speech (its silence trimmed, cut to `clip_len`) at a random place and
/// level in a clip of `clip_len` samples of faint noise.
pub(crate) fn over_noise(spoken: &[f32], rate: u32, clip_len: usize, rng: &mut Rng) -> Vec<f32> {
    let speech = trim_silence(spoken, rate);
    let speech = &speech[..speech.len().min(clip_len)];
    let peak = speech.iter().fold(1e-9f32, |m, s| m.max(s.abs()));
    let gain = rng.uniform(0.3, 0.9) / peak;
    let start = rng.below(clip_len - speech.len() + 1);
    let mut samples = noise_floor(clip_len, rng);
    for (s, w) in samples[start..start + speech.len()].iter_mut().zip(speech) {
        *s = (*s + gain * w).clamp(-1.0, 1.0);
    }
    samples
}

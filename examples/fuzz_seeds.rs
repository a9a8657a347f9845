//! Writes the seed corpus of the fuzz targets (fuzz/) into the folder given
//! as the only argument, one folder per target: the project's configs
//! (resolved, so that no path inside needs the configs folder), their
//! models as JSON and TOML descriptions, tiny WAV files of every sample
//! format the reader takes, and a model file. Run by `scripts/fuzz.sh`.

use audionas::search::config::SearchConfig;
use audionas::train::config::Experiment;
use audionas::train::model_file::{ModelInfo, MODEL_FORMAT};
use audionas::train::{save_checkpoint, NamedTensor};
use hound::{SampleFormat, WavSpec, WavWriter};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: fuzz_seeds OUT_DIR"))?;
    let out = Path::new(&out);
    let folder = |target: &str| -> anyhow::Result<std::path::PathBuf> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    };
    let mut experiments = Vec::new();
    for entry in std::fs::read_dir("configs")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            experiments.push((path.clone(), Experiment::load(&path)?));
        }
    }
    for (path, experiment) in &experiments {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let model = &experiment.model;
        std::fs::write(
            folder("experiment_config")?.join(format!("{stem}.toml")),
            experiment.to_toml(),
        )?;
        std::fs::write(
            folder("architecture_json")?.join(format!("{stem}.json")),
            model.to_json(),
        )?;
        std::fs::write(
            folder("architecture_toml")?.join(format!("{stem}.toml")),
            model.to_toml(),
        )?;
    }
    for entry in std::fs::read_dir("configs/search")? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default();
        std::fs::write(
            folder("search_config")?.join(name),
            SearchConfig::load(&path)?.to_toml(),
        )?;
    }
    write_wavs(&folder("wav")?)?;
    // A model file of the smallest experiment; its one tiny tensor keeps the
    // seed small (reading a model file does not match tensors to layers).
    let (_, smallest) = experiments
        .iter()
        .min_by_key(|(_, e)| e.model.layers.len())
        .ok_or_else(|| anyhow::anyhow!("no experiment in configs/"))?;
    let info = ModelInfo {
        architecture: smallest.model.clone(),
        features: smallest.features.clone(),
        classes: vec!["yes".into(), "no".into()],
    };
    let tensor = NamedTensor {
        name: "head.bias".into(),
        shape: vec![2],
        data: vec![0.25, -0.5],
    };
    save_checkpoint(
        &folder("model_file")?.join("model.safetensors"),
        &[tensor],
        &info.metadata(MODEL_FORMAT),
    )?;
    Ok(())
}

/// A few dozen samples of a tone in each format: 8, 16, 24 and 32-bit
/// integers and 32-bit floats, mono and stereo, at 8 and 16 kHz.
fn write_wavs(dir: &Path) -> anyhow::Result<()> {
    let tone = |i: usize| (i as f32 * 0.3).sin() * 0.5;
    for (bits, float, channels, rate) in [
        (8, false, 1, 8000),
        (16, false, 1, 16000),
        (16, false, 2, 8000),
        (24, false, 1, 16000),
        (32, false, 2, 16000),
        (32, true, 1, 8000),
    ] {
        let spec = WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                SampleFormat::Float
            } else {
                SampleFormat::Int
            },
        };
        let kind = if float { "float" } else { "int" };
        let path = dir.join(format!("{kind}{bits}_{channels}ch_{rate}.wav"));
        let mut writer = WavWriter::create(path, spec)?;
        for i in 0..40 * channels as usize {
            if float {
                writer.write_sample(tone(i))?;
            } else {
                let full = ((1i64 << (bits - 1)) - 1) as f32;
                writer.write_sample((tone(i) * full) as i32)?;
            }
        }
        writer.finalize()?;
    }
    Ok(())
}

//! Reading WAV files into mono f32 audio at the rate the features need, and
//! writing 16-bit WAV files.

use super::error::{write_atomically, DataError, DataResult};
use rubato::{FftFixedIn, Resampler};
use std::io::Read;
use std::path::Path;

/// The sample rates audio may have, in WAV headers and feature configs;
/// outside them a header is damaged, and resampling from or to such a rate
/// would need absurd amounts of memory.
pub const MIN_SAMPLE_RATE: u32 = 1000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Float samples beyond this magnitude are damage, not audio (its nominal
/// range is [-1, 1]); refusing them keeps every feature finite.
pub const MAX_AMPLITUDE: f32 = 1e6;

/// Mono audio in [-1, 1] at `sample_rate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// What a WAV header says, before any conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub float: bool,
    /// Frames (samples per channel) the header announces.
    pub frames: u32,
}

/// A decoded WAV file: its original format and its samples mixed down to mono.
#[derive(Clone, Debug)]
pub struct DecodedWav {
    pub format: WavFormat,
    pub audio: Audio,
}

fn bad_wav(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::BadWav {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// While reading samples, any I/O error means the data chunk is shorter than
/// the header says.
fn describe_sample_error(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(_) => {
            "the file ends early (truncated): its header announces more samples than it holds"
                .to_string()
        }
        other => other.to_string(),
    }
}

fn describe_hound_error(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends early (truncated)".to_string()
        }
        other => other.to_string(),
    }
}

/// Opens `path` for reading when it is a regular file (links followed): a
/// named pipe or a device given a `.wav` name would block or never end.
pub fn open_regular_file(path: &Path) -> DataResult<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if let Some(reason) = not_a_regular_file(&meta) {
        return Err(DataError::BadAudio {
            path: path.to_path_buf(),
            reason: format!("{reason}; give a WAV file"),
        });
    }
    std::fs::File::open(path).map_err(|e| DataError::io(path, e))
}

/// What a path is when it is not a regular file (links followed).
pub fn not_a_regular_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    if meta.is_file() {
        None
    } else if meta.is_dir() {
        Some("not a regular file but a folder")
    } else {
        Some("not a regular file but a named pipe, socket or device")
    }
}

/// Reads a WAV file of 8, 16, 24 or 32-bit integer or 32-bit float samples,
/// with any number of channels (averaged to mono), at its own rate.
pub fn decode_wav(path: &Path) -> DataResult<DecodedWav> {
    let file = open_regular_file(path)?;
    let length = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if length == 0 {
        return Err(bad_wav(path, "the file is empty"));
    }
    decode_wav_from(std::io::BufReader::new(file), path)
}

/// Decodes WAV data read from `input` as `decode_wav` does; `path` names it
/// in the messages.
pub fn decode_wav_from(input: impl Read, path: &Path) -> DataResult<DecodedWav> {
    let reader =
        hound::WavReader::new(input).map_err(|e| bad_wav(path, describe_hound_error(e)))?;
    let spec = reader.spec();
    let format = WavFormat {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        float: spec.sample_format == hound::SampleFormat::Float,
        frames: reader.duration(),
    };
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(bad_wav(
            path,
            "the header has no channels or a zero sample rate",
        ));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate) {
        return Err(bad_wav(
            path,
            format!(
                "the header declares a sample rate of {} Hz, outside the {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz that audio has; the file is damaged",
                spec.sample_rate
            ),
        ));
    }
    // Integer samples are scaled by 2^(bits - 1); hound accepts a header
    // declaring more bits than any sample has.
    if spec.sample_format == hound::SampleFormat::Int && spec.bits_per_sample > 32 {
        return Err(bad_wav(
            path,
            format!(
                "the header declares {}-bit samples; integer samples have at most 32 bits, so the file is damaged",
                spec.bits_per_sample
            ),
        ));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad_wav(path, describe_sample_error(e)))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad_wav(path, describe_sample_error(e)))?
        }
    };
    if interleaved.is_empty() {
        return Err(DataError::BadAudio {
            path: path.to_path_buf(),
            reason: "the file holds no samples".into(),
        });
    }
    if let Some(at) = interleaved
        .iter()
        .position(|s| !s.is_finite() || s.abs() > MAX_AMPLITUDE)
    {
        return Err(DataError::BadAudio {
            path: path.to_path_buf(),
            reason: format!(
                "sample {} of channel {} is {}; NaN, infinite or huge samples (beyond {MAX_AMPLITUDE:e} in magnitude, where audio lies in [-1, 1]) mean the file is damaged",
                at / spec.channels as usize,
                at % spec.channels as usize,
                interleaved[at]
            ),
        });
    }
    let samples = mix_to_mono(&interleaved, spec.channels as usize);
    Ok(DecodedWav {
        format,
        audio: Audio {
            samples,
            sample_rate: spec.sample_rate,
        },
    })
}

fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let scale = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * scale)
        .collect()
}

/// Reads a WAV file as mono audio at `sample_rate`, resampling when needed.
pub fn read_wav(path: &Path, sample_rate: u32) -> DataResult<Audio> {
    resampled(decode_wav(path)?, sample_rate, path)
}

/// Reads WAV data from `input` as `read_wav` does; `path` names it in the
/// messages.
pub fn read_wav_from(input: impl Read, path: &Path, sample_rate: u32) -> DataResult<Audio> {
    resampled(decode_wav_from(input, path)?, sample_rate, path)
}

fn resampled(decoded: DecodedWav, sample_rate: u32, path: &Path) -> DataResult<Audio> {
    let samples = resample(
        &decoded.audio.samples,
        decoded.audio.sample_rate,
        sample_rate,
    )
    .map_err(|reason| bad_wav(path, reason))?;
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// Band-limited resampling (rubato's FFT resampler) from `from` Hz to `to` Hz.
/// The output has `round(len * to / from)` samples and is aligned with the
/// input: the resampler's delay is removed.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    // rubato's FFT length is a multiple of `from / gcd`; an even multiple
    // centres its filter on a whole output sample, so the delay it reports
    // is exact and removing it leaves no fractional shift.
    let step = (from / gcd(from, to)) as usize;
    let chunk = 2 * step * 512usize.div_ceil(step);
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let wanted = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(wanted + delay + 2 * chunk);
    let mut position = 0;
    while out.len() < wanted + delay {
        let next = resampler.input_frames_next();
        let chunk = if position + next <= samples.len() {
            resampler.process(&[&samples[position..position + next]], None)
        } else if position < samples.len() {
            resampler.process_partial(Some(&[&samples[position..]]), None)
        } else {
            // Flushing: the input has ended but the delayed output has not.
            resampler.process_partial::<&[f32]>(None, None)
        }
        .map_err(|e| format!("resampling failed: {e}"))?;
        position += next;
        out.extend_from_slice(&chunk[0]);
    }
    out.drain(..delay);
    out.truncate(wanted);
    Ok(out)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Writes mono audio as a 16-bit PCM WAV file, atomically.
pub fn write_wav(path: &Path, audio: &Audio) -> DataResult<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_atomically(path, |out| {
        let mut writer = hound::WavWriter::new(out, spec).map_err(std::io::Error::other)?;
        for &s in &audio.samples {
            let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            writer.write_sample(v).map_err(std::io::Error::other)?;
        }
        writer.finalize().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_tone_and_its_length() {
        let from = 8000;
        let to = 16000;
        let tone: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / from as f32).sin())
            .collect();
        let out = resample(&tone, from, to).unwrap();
        assert_eq!(out.len(), 16000);
        // Away from the edges the resampled tone matches the analytic one.
        for (i, &v) in out.iter().enumerate().skip(500).take(15000) {
            let expected = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / to as f32).sin();
            assert!((v - expected).abs() < 2e-3, "sample {i}: {v} vs {expected}");
        }
    }
}

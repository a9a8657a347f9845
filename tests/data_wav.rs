//! WAV reading: every sample format, channel mixing, resampling, and each
//! kind of broken file.

use audionas::data::wav::{decode_wav, read_wav, write_wav, Audio};
use audionas::data::DataError;
use std::path::{Path, PathBuf};

fn tone(n: usize, rate: u32, hz: f32, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| amplitude * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
        .collect()
}

fn write_int(path: &Path, bits: u16, channels: u16, rate: u32, frames: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let full_scale = ((1i64 << (bits - 1)) - 1) as f32;
    for &v in frames {
        for _ in 0..channels {
            let q = (v * full_scale).round() as i32;
            if bits == 8 {
                writer.write_sample(q as i8).unwrap();
            } else {
                writer.write_sample(q).unwrap();
            }
        }
    }
    writer.finalize().unwrap();
}

fn write_float(path: &Path, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &v in samples {
        writer.write_sample(v).unwrap();
    }
    writer.finalize().unwrap();
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn every_integer_depth_and_float_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let signal = tone(1600, 16000, 440.0, 0.5);
    for bits in [8u16, 16, 24, 32] {
        let path = temp_file(&dir, &format!("int{bits}.wav"));
        write_int(&path, bits, 1, 16000, &signal);
        let decoded = decode_wav(&path).unwrap();
        assert_eq!(decoded.format.bits_per_sample, bits);
        assert_eq!(decoded.audio.samples.len(), signal.len());
        let tolerance = 1.5 / (1u64 << (bits - 1)) as f32;
        for (got, want) in decoded.audio.samples.iter().zip(&signal) {
            assert!(
                (got - want).abs() <= tolerance,
                "{bits} bits: {got} vs {want}"
            );
        }
    }
    let path = temp_file(&dir, "float.wav");
    write_float(&path, 16000, &signal);
    let decoded = decode_wav(&path).unwrap();
    assert!(decoded.format.float);
    assert_eq!(decoded.audio.samples, signal);
}

#[test]
fn stereo_is_mixed_down_to_mono() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for _ in 0..100 {
        writer.write_sample(16384i16).unwrap();
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    let audio = read_wav(&path, 16000).unwrap();
    assert_eq!(audio.samples.len(), 100);
    assert!(audio.samples.iter().all(|&s| (s - 0.25).abs() < 1e-6));
}

#[test]
fn other_rates_are_resampled_to_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [8000u32, 22050, 44100, 48000] {
        let path = temp_file(&dir, &format!("rate{rate}.wav"));
        write_int(
            &path,
            16,
            1,
            rate,
            &tone(rate as usize / 2, rate, 1000.0, 0.5),
        );
        let audio = read_wav(&path, 16000).unwrap();
        assert_eq!(audio.sample_rate, 16000);
        assert_eq!(audio.samples.len(), 8000, "{rate} Hz");
        let expected = tone(8000, 16000, 1000.0, 0.5);
        let worst = audio.samples[400..7600]
            .iter()
            .zip(&expected[400..7600])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-3, "{rate} Hz: worst error {worst}");
    }
}

#[test]
fn written_wavs_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "nested/out.wav");
    let audio = Audio {
        samples: tone(800, 16000, 300.0, 0.8),
        sample_rate: 16000,
    };
    write_wav(&path, &audio).unwrap();
    let back = read_wav(&path, 16000).unwrap();
    for (a, b) in back.samples.iter().zip(&audio.samples) {
        assert!((a - b).abs() < 1e-4);
    }
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
}

fn expect_error(path: &Path, fragment: &str) -> DataError {
    let error = read_wav(path, 16000).expect_err("a broken file must not read");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(fragment),
        "{message} should say {fragment}"
    );
    error
}

#[test]
fn broken_files_are_reported_with_their_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();

    let empty = temp_file(&dir, "empty.wav");
    std::fs::write(&empty, b"").unwrap();
    expect_error(&empty, "empty");

    let text = temp_file(&dir, "notes.wav");
    std::fs::write(&text, b"these are not the samples you are looking for").unwrap();
    assert!(matches!(
        expect_error(&text, "not a readable WAV"),
        DataError::BadWav { .. }
    ));

    let whole = temp_file(&dir, "whole.wav");
    write_int(&whole, 16, 1, 16000, &tone(1600, 16000, 440.0, 0.5));
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = temp_file(&dir, "truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1001]).unwrap();
    expect_error(&truncated, "ends early");
    let header_only = temp_file(&dir, "header_only.wav");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    expect_error(&header_only, "not a readable WAV");

    let silent = temp_file(&dir, "no_samples.wav");
    write_int(&silent, 16, 1, 16000, &[]);
    assert!(matches!(
        expect_error(&silent, "no samples"),
        DataError::BadAudio { .. }
    ));

    let nan = temp_file(&dir, "nan.wav");
    let mut samples = tone(100, 16000, 440.0, 0.5);
    samples[37] = f32::NAN;
    write_float(&nan, 16000, &samples);
    expect_error(&nan, "sample 37");
    let inf = temp_file(&dir, "inf.wav");
    samples[37] = f32::INFINITY;
    write_float(&inf, 16000, &samples);
    expect_error(&inf, "infinite");

    let missing = temp_file(&dir, "missing.wav");
    assert!(matches!(
        expect_error(&missing, "missing.wav"),
        DataError::Io { .. }
    ));
}

#[test]
fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = temp_file(&dir, "pipe.wav");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a pipe for reading blocks until a writer comes: read it on a
    // thread and give it a few seconds.
    let (sender, receiver) = std::sync::mpsc::channel();
    let path = pipe.clone();
    std::thread::spawn(move || sender.send(read_wav(&path, 16000).map(|_| ())));
    let result = receiver
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("reading a named pipe hung");
    let message = result.expect_err("a pipe is not a WAV file").to_string();
    assert!(message.contains("pipe.wav"), "{message}");
    assert!(message.contains("not a regular file"), "{message}");
    let folder = temp_file(&dir, "folder.wav");
    std::fs::create_dir(&folder).unwrap();
    expect_error(&folder, "not a regular file but a folder");
}

#[test]
fn an_absurd_sample_rate_is_refused_before_resampling() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [i32::MAX as u32, 10] {
        let path = temp_file(&dir, &format!("rate{rate}.wav"));
        write_int(&path, 16, 1, rate, &tone(100, 16000, 440.0, 0.5));
        expect_error(&path, &format!("sample rate of {rate} Hz"));
    }
}

#[test]
fn huge_float_samples_are_refused_not_turned_into_infinite_features() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = tone(1600, 16000, 440.0, 0.5);
    samples[100] = 3e38;
    let mono = temp_file(&dir, "huge.wav");
    write_float(&mono, 16000, &samples);
    expect_error(&mono, "sample 100 of channel 0");
    // Two channels that are finite alone but overflow when mixed.
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let stereo = temp_file(&dir, "stereo.wav");
    let mut writer = hound::WavWriter::create(&stereo, spec).unwrap();
    for _ in 0..800 {
        writer.write_sample(2e38f32).unwrap();
        writer.write_sample(2e38f32).unwrap();
    }
    writer.finalize().unwrap();
    expect_error(&stereo, "sample 0 of channel 0");
}

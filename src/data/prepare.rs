//! Turning a data set into features once: every clip decoded, resampled,
//! fitted to the clip length and transformed on all cores, then kept in a
//! cache file keyed by the data set's files and the feature configuration,
//! so the next run loads it at once.

use super::dataset::{Clip, ClipSource, DataSet, Skipped, Split};
use super::error::{write_atomically, DataError, DataResult};
use super::features::{FeatureConfig, FeatureExtractor};
use super::wav::read_wav;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bump when the cache layout or the feature code changes meaning.
const CACHE_VERSION: u32 = 2;
const CACHE_MAGIC: &[u8; 8] = b"ANASFEAT";

#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Where cache files go; `None` computes without caching.
    pub cache_dir: Option<PathBuf>,
    /// Stop at the first unreadable clip instead of skipping it.
    pub strict: bool,
    pub threads: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            cache_dir: Some(default_cache_dir()),
            strict: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `$AUDIONAS_CACHE`, else `$XDG_CACHE_HOME/audionas`, else `~/.cache/audionas`,
/// else `.audionas-cache` in the working folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUDIONAS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("audionas");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("audionas"),
        None => PathBuf::from(".audionas-cache"),
    }
}

/// One clip that made it into the features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreparedClip {
    /// Its index in the data set's clip list.
    pub clip: usize,
    pub label: usize,
    pub split: Split,
}

/// A data set's features: `clips.len()` blocks of `clip_shape` values.
#[derive(Debug)]
pub struct Prepared {
    pub classes: Vec<String>,
    pub clips: Vec<PreparedClip>,
    /// `[channels, time, freq]` of one clip (`[1, time, bins, 2]` for the
    /// complex STFT).
    pub clip_shape: Vec<usize>,
    pub features: Vec<f32>,
    pub skipped: Vec<Skipped>,
    pub cache_file: Option<PathBuf>,
    pub from_cache: bool,
    pub elapsed: Duration,
}

impl Prepared {
    pub fn clip_len(&self) -> usize {
        self.clip_shape.iter().product()
    }

    pub fn clip_features(&self, i: usize) -> &[f32] {
        &self.features[i * self.clip_len()..(i + 1) * self.clip_len()]
    }

    /// Positions (in `clips`) of the clips of one split.
    pub fn indices_of(&self, split: Split) -> Vec<usize> {
        (0..self.clips.len())
            .filter(|&i| self.clips[i].split == split)
            .collect()
    }
}

/// What the cache file's header records.
#[derive(Serialize, Deserialize)]
struct CacheHeader {
    key: String,
    clip_shape: Vec<usize>,
    clips: Vec<PreparedClip>,
    skipped: Vec<Skipped>,
}

/// A key naming the exact input: every source file's path, size and
/// modification time, the clip list, and every feature setting.
fn cache_key(data_set: &DataSet, config: &FeatureConfig) -> DataResult<String> {
    let mut hasher = Sha1::new();
    hasher.update(CACHE_VERSION.to_le_bytes());
    let root = data_set
        .root
        .canonicalize()
        .map_err(|e| DataError::io(&data_set.root, e))?;
    hasher.update(root.to_string_lossy().as_bytes());
    hasher.update(config.fingerprint().as_bytes());
    hasher.update(serde_json::to_vec(&data_set.clips).expect("clips serialise"));
    hasher.update(serde_json::to_vec(&data_set.skipped).expect("skipped files serialise"));
    let mut files: Vec<&Path> = data_set
        .clips
        .iter()
        .filter_map(|c| match &c.source {
            ClipSource::File(f) => Some(f.as_path()),
            ClipSource::Noise { file, .. } => file.as_deref(),
        })
        .collect();
    files.sort();
    files.dedup();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        // A file that cannot be looked at keys as such; preparing skips it
        // (or stops, in strict mode) with the reason.
        match std::fs::metadata(data_set.path_of(file)) {
            Ok(meta) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                hasher.update(meta.len().to_le_bytes());
                hasher.update(modified.to_le_bytes());
            }
            Err(_) => hasher.update(b"unreadable"),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn cache_file_in(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("features-{}.bin", &key[..20]))
}

/// The cache file that holds (or will hold) these features.
pub fn cache_file_for(
    data_set: &DataSet,
    config: &FeatureConfig,
    cache_dir: &Path,
) -> DataResult<PathBuf> {
    Ok(cache_file_in(cache_dir, &cache_key(data_set, config)?))
}

/// Features of every clip of `data_set`, from the cache when it has them.
pub fn prepare(
    data_set: &DataSet,
    config: &FeatureConfig,
    options: &PrepareOptions,
) -> DataResult<Prepared> {
    let started = Instant::now();
    let key = cache_key(data_set, config)?;
    let cache_file = options
        .cache_dir
        .as_ref()
        .map(|dir| cache_file_in(dir, &key));
    if let Some(path) = cache_file.as_ref().filter(|p| p.exists()) {
        let mut prepared = read_cache(path, &key, data_set)?;
        if options.strict {
            // Files that are not .wav files are listed but never fatal.
            if let Some(first) = prepared
                .skipped
                .iter()
                .find(|s| !data_set.skipped.contains(s))
            {
                return Err(DataError::BadAudio {
                    path: first.path.clone(),
                    reason: format!("{} (strict mode stops at unreadable clips)", first.reason),
                });
            }
        }
        prepared.elapsed = started.elapsed();
        return Ok(prepared);
    }
    let mut prepared = compute(data_set, config, options)?;
    if let Some(path) = &cache_file {
        write_cache(path, &key, &prepared)?;
    }
    prepared.cache_file = cache_file;
    prepared.elapsed = started.elapsed();
    Ok(prepared)
}

/// Decodes noise files once, resampled; a broken one maps to its reason.
fn load_noise(data_set: &DataSet, rate: u32) -> HashMap<PathBuf, Result<Vec<f32>, String>> {
    let mut noise = HashMap::new();
    for clip in &data_set.clips {
        if let ClipSource::Noise {
            file: Some(file), ..
        } = &clip.source
        {
            noise.entry(file.clone()).or_insert_with(|| {
                read_wav(&data_set.path_of(file), rate)
                    .map(|a| a.samples)
                    .map_err(|e| e.to_string())
            });
        }
    }
    noise
}

/// A clip-long piece of noise starting at `position` of the room the file leaves.
pub fn noise_piece(noise: &[f32], position: f32, gain: f32, length: usize) -> Vec<f32> {
    let room = noise.len().saturating_sub(length);
    let start = ((position.clamp(0.0, 1.0) * room as f32) as usize).min(room);
    let mut piece: Vec<f32> = noise[start..(start + length).min(noise.len())]
        .iter()
        .map(|s| s * gain)
        .collect();
    piece.resize(length, 0.0);
    piece
}

fn clip_audio(
    data_set: &DataSet,
    clip: &Clip,
    rate: u32,
    length: usize,
    noise: &HashMap<PathBuf, Result<Vec<f32>, String>>,
) -> DataResult<Vec<f32>> {
    match &clip.source {
        ClipSource::File(file) => Ok(read_wav(&data_set.path_of(file), rate)?.samples),
        ClipSource::Noise { file: None, .. } => Ok(vec![0.0; length]),
        ClipSource::Noise {
            file: Some(file),
            position,
            gain,
        } => match &noise[file] {
            Ok(samples) => Ok(noise_piece(samples, *position, *gain, length)),
            Err(reason) => Err(DataError::BadAudio {
                path: data_set.path_of(file),
                reason: format!("background noise unusable: {reason}"),
            }),
        },
    }
}

/// A block of clips' feature slots and their outcomes, owned by one thread at a time.
type ClipBlock<'a> = (&'a mut [f32], &'a mut [Option<DataError>]);

fn compute(
    data_set: &DataSet,
    config: &FeatureConfig,
    options: &PrepareOptions,
) -> DataResult<Prepared> {
    let extractor = FeatureExtractor::new(config);
    let clip_shape = config.clip_shape();
    let clip_len: usize = clip_shape.iter().product();
    let n = data_set.clips.len();
    let noise = load_noise(data_set, config.sample_rate);
    let mut features = vec![0.0f32; n * clip_len];
    let mut outcomes: Vec<Option<DataError>> = (0..n).map(|_| None).collect();
    let threads = options.threads.clamp(1, n.max(1));
    // Threads take the next block of clips from a shared counter, so a slow
    // file (a resample) does not leave the other cores idle.
    const BLOCK: usize = 16;
    let next = AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    {
        let blocks: Vec<std::sync::Mutex<ClipBlock>> = features
            .chunks_mut(BLOCK * clip_len)
            .zip(outcomes.chunks_mut(BLOCK))
            .map(std::sync::Mutex::new)
            .collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let block = next.fetch_add(1, Ordering::Relaxed);
                    if block >= blocks.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut guard = blocks[block]
                        .lock()
                        .expect("no thread panics holding a block");
                    let (out, results) = &mut *guard;
                    for (j, (slot, result)) in
                        out.chunks_mut(clip_len).zip(results.iter_mut()).enumerate()
                    {
                        let clip = &data_set.clips[block * BLOCK + j];
                        match clip_audio(
                            data_set,
                            clip,
                            config.sample_rate,
                            config.clip_samples(),
                            &noise,
                        ) {
                            Ok(audio) => {
                                extractor.compute_into(&extractor.fit_to_clip(&audio), slot)
                            }
                            Err(e) => {
                                if options.strict {
                                    stop.store(true, Ordering::Relaxed);
                                }
                                *result = Some(e);
                            }
                        }
                    }
                });
            }
        });
    }
    let mut skipped = data_set.skipped.clone();
    let mut clips = Vec::with_capacity(n);
    let mut kept = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Some(error) if options.strict => return Err(error),
            Some(error) => skipped.push(Skipped {
                path: error.path().to_path_buf(),
                reason: error.reason(),
            }),
            None => {
                if kept != i {
                    features.copy_within(i * clip_len..(i + 1) * clip_len, kept * clip_len);
                }
                let clip = &data_set.clips[i];
                clips.push(PreparedClip {
                    clip: i,
                    label: clip.label,
                    split: clip.split,
                });
                kept += 1;
            }
        }
    }
    features.truncate(kept * clip_len);
    Ok(Prepared {
        classes: data_set.classes.clone(),
        clips,
        clip_shape,
        features,
        skipped,
        cache_file: None,
        from_cache: false,
        elapsed: Duration::ZERO,
    })
}

fn write_cache(path: &Path, key: &str, prepared: &Prepared) -> DataResult<()> {
    let header = serde_json::to_vec(&CacheHeader {
        key: key.to_string(),
        clip_shape: prepared.clip_shape.clone(),
        clips: prepared.clips.clone(),
        skipped: prepared.skipped.clone(),
    })
    .expect("cache header serialises");
    write_atomically(path, |out| {
        out.write_all(CACHE_MAGIC)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for chunk in prepared.features.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes)?;
        }
        Ok(())
    })
}

fn read_cache(path: &Path, key: &str, data_set: &DataSet) -> DataResult<Prepared> {
    let bad = |reason: String| DataError::BadCache {
        path: path.to_path_buf(),
        reason: format!("{reason}; delete the file to rebuild it"),
    };
    let mut file =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| DataError::io(path, e))?);
    let mut magic = [0u8; 8];
    let mut length = [0u8; 8];
    file.read_exact(&mut magic)
        .and_then(|_| file.read_exact(&mut length))
        .map_err(|e| bad(format!("cannot read its header: {e}")))?;
    if &magic != CACHE_MAGIC {
        return Err(bad("it is not an audionas feature cache".into()));
    }
    let mut header = vec![0u8; u64::from_le_bytes(length).min(1 << 32) as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read its header: {e}")))?;
    let header: CacheHeader =
        serde_json::from_slice(&header).map_err(|e| bad(format!("its header is damaged: {e}")))?;
    if header.key != key {
        return Err(bad(
            "it was written for other data (hash prefix collision)".into()
        ));
    }
    let values = header
        .clip_shape
        .iter()
        .try_fold(header.clips.len(), |n, &d| n.checked_mul(d));
    // Checked against the file's size before allocating: a damaged header
    // may announce any number.
    let file_length = file.get_ref().metadata().map_or(0, |m| m.len());
    let len = values
        .filter(|&n| (n as u64).saturating_mul(4) <= file_length)
        .ok_or_else(|| bad("its header announces more values than the file holds".into()))?;
    let mut features = vec![0.0f32; len];
    file.read_exact(bytemuck::cast_slice_mut(&mut features))
        .map_err(|e| bad(format!("it ends early: {e}")))?;
    if cfg!(target_endian = "big") {
        for v in &mut features {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
    }
    Ok(Prepared {
        classes: data_set.classes.clone(),
        clips: header.clips,
        clip_shape: header.clip_shape,
        features,
        skipped: header.skipped,
        cache_file: Some(path.to_path_buf()),
        from_cache: true,
        elapsed: Duration::ZERO,
    })
}

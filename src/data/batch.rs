//! Batches for training and evaluation: clips shuffled per epoch from the
//! seed, augmented, assembled on a background thread while the GPU works on
//! the previous batch, and written into reused GPU buffers. A loader gives
//! one epoch's batches, or batches without end from any point of the
//! epoch sequence (a training step that draws from two splits at once
//! takes one endless stream of each).

use super::augment::{augment_audio, spec_augment, AugmentConfig};
use super::dataset::{DataSet, Split};
use super::error::{DataError, DataResult};
use super::features::{FeatureConfig, FeatureExtractor};
use super::prepare::{noise_piece, Prepared};
use super::wav::read_wav;
use crate::gpu::{Gpu, GpuResult, Tensor};
use crate::util::rng::Rng;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Batches prepared ahead of the one in use.
const PREFETCH: usize = 2;

/// One batch on the host: features `[batch, channels, time, freq]` and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct BatchConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// Leave out the last, smaller batch (training wants one shape).
    pub drop_last: bool,
    pub shuffle: bool,
    pub augment: AugmentConfig,
}

/// The clips of one split in the order an epoch visits them: shuffled from
/// `(seed, epoch)` so every epoch differs and every run repeats.
pub fn epoch_order(indices: &[usize], seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order = indices.to_vec();
    if shuffle {
        let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.shuffle(&mut order);
    }
    order
}

/// The augmentation generator of the batch at `position` in epoch `epoch`.
/// Every batch has a stream of its own, so a batch can be assembled without
/// assembling the ones before it (how a stream starts part-way).
fn batch_rng(seed: u64, epoch: u64, position: u64) -> Rng {
    let epoch_seed = Rng::new(seed ^ 0xA076_1D64_78BD_642F ^ epoch).next_u64();
    Rng::new(Rng::new(epoch_seed ^ position).next_u64())
}

/// Everything the batch thread needs, shared between epochs.
struct Source {
    prepared: Arc<Prepared>,
    extractor: FeatureExtractor,
    /// Each prepared clip's audio, fitted to the clip length; present only
    /// when augmentation changes the waveform.
    audio: Vec<Vec<f32>>,
    noise: Vec<Vec<f32>>,
}

/// Produces the batches of one split, epoch after epoch.
pub struct BatchLoader {
    source: Arc<Source>,
    indices: Vec<usize>,
    config: BatchConfig,
    /// The data set folder and the split, for messages.
    root: PathBuf,
    split: Split,
}

impl BatchLoader {
    /// A loader over `split` of `prepared`. When the augmentation changes the
    /// waveform, the clips and the background noise are read again (once) so
    /// features can be recomputed per batch; otherwise the cached features
    /// are used as they are.
    pub fn new(
        data_set: &DataSet,
        prepared: Arc<Prepared>,
        features: &FeatureConfig,
        split: Split,
        config: BatchConfig,
    ) -> DataResult<BatchLoader> {
        if config.batch_size == 0 {
            return Err(DataError::BadConfig {
                path: data_set.root.clone(),
                reason: "a batch size of 0: batches must hold at least 1 clip".into(),
            });
        }
        let (audio, noise) = if config.augment.changes_audio() {
            let rate = features.sample_rate;
            let noise: Vec<Vec<f32>> = data_set
                .background_noise
                .iter()
                .map(|f| read_wav(&data_set.path_of(f), rate).map(|a| a.samples))
                .collect::<DataResult<_>>()?;
            let audio = prepared
                .clips
                .iter()
                .map(|c| clip_audio(data_set, c.clip, features, &noise))
                .collect::<DataResult<_>>()?;
            (audio, noise)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(BatchLoader {
            indices: prepared.indices_of(split),
            source: Arc::new(Source {
                prepared,
                extractor: FeatureExtractor::new(features),
                audio,
                noise,
            }),
            config,
            root: data_set.root.clone(),
            split,
        })
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Two loaders with the settings of this one, over alternate clips of
    /// its split (so each class is split evenly): the halves a bi-level
    /// search trains weights and architecture on.
    pub fn halves(&self) -> [BatchLoader; 2] {
        [0, 1].map(|parity| BatchLoader {
            source: self.source.clone(),
            indices: self
                .indices
                .iter()
                .skip(parity)
                .step_by(2)
                .copied()
                .collect(),
            config: self.config.clone(),
            root: self.root.clone(),
            split: self.split,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    pub fn batches_per_epoch(&self) -> usize {
        if self.config.drop_last {
            self.len() / self.config.batch_size
        } else {
            self.len().div_ceil(self.config.batch_size)
        }
    }

    /// The batches of one epoch, assembled on a background thread.
    pub fn epoch(&self, epoch: u64) -> BatchStream {
        let per_epoch = self.batches_per_epoch() as u64;
        self.stream(epoch * per_epoch, Some(per_epoch))
    }

    /// Batches epoch after epoch without end, starting after `consumed`
    /// batches have been taken: at position `consumed % batches_per_epoch`
    /// of epoch `consumed / batches_per_epoch`, each batch equal to the one
    /// `epoch` gives there (a resumed run continues where it stood). The
    /// skipped batches are not assembled. Refused when the loader cannot
    /// give one batch an epoch (an empty split, or fewer clips than one
    /// batch when the last partial batch is dropped).
    pub fn forever(&self, consumed: u64) -> DataResult<BatchStream> {
        if self.batches_per_epoch() == 0 {
            let split = self.split.name();
            let reason = if self.is_empty() {
                format!("the {split} split has no clips, so it has no batches to repeat")
            } else {
                format!(
                    "the {split} split has {} clips, fewer than one full batch of {}, and the \
                     last partial batch is dropped; use a smaller batch size or more data",
                    self.len(),
                    self.config.batch_size
                )
            };
            return Err(DataError::BadDataSet {
                path: self.root.clone(),
                reason,
            });
        }
        Ok(self.stream(consumed, None))
    }

    /// `count` batches (without end for `None`) from the batch at `first`
    /// in the sequence of every epoch's batches, assembled on a background
    /// thread.
    fn stream(&self, first: u64, count: Option<u64>) -> BatchStream {
        let indices = self.indices.clone();
        let source = self.source.clone();
        let config = self.config.clone();
        let per_epoch = self.batches_per_epoch() as u64;
        let end = count.map(|c| first + c);
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            let mut order = Vec::new();
            for index in first.. {
                if Some(index) == end {
                    break;
                }
                let (epoch, position) = (index / per_epoch, index % per_epoch);
                // An epoch's order is needed where it begins, or where the stream does.
                if position == 0 || index == first {
                    order = epoch_order(&indices, config.seed, epoch, config.shuffle);
                }
                let start = position as usize * config.batch_size;
                let chunk = &order[start..(start + config.batch_size).min(order.len())];
                let mut rng = batch_rng(config.seed, epoch, position);
                if sender
                    .send(assemble(&source, chunk, &config.augment, &mut rng))
                    .is_err()
                {
                    break;
                }
            }
        });
        BatchStream {
            receiver,
            worker: Some(worker),
        }
    }
}

/// A prepared clip's audio fitted to the clip length.
fn clip_audio(
    data_set: &DataSet,
    clip: usize,
    features: &FeatureConfig,
    noise: &[Vec<f32>],
) -> DataResult<Vec<f32>> {
    use super::dataset::ClipSource;
    let length = features.clip_samples();
    let mut samples = match &data_set.clips[clip].source {
        ClipSource::File(file) => read_wav(&data_set.path_of(file), features.sample_rate)?.samples,
        ClipSource::Noise {
            file,
            position,
            gain,
        } => {
            let index = file
                .as_ref()
                .and_then(|f| data_set.background_noise.iter().position(|n| n == f));
            match index {
                Some(i) => noise_piece(&noise[i], *position, *gain, length),
                None => vec![0.0; length],
            }
        }
    };
    samples.resize(length, 0.0);
    Ok(samples)
}

fn assemble(source: &Source, chunk: &[usize], augment: &AugmentConfig, rng: &mut Rng) -> Batch {
    let prepared = &source.prepared;
    let (channels, frames, bins) = (
        prepared.clip_shape[0],
        prepared.clip_shape[1],
        prepared.clip_shape[2],
    );
    // 2 for the complex STFT's (re, im) pairs.
    let values_per_bin = prepared.clip_shape[3..].iter().product::<usize>();
    let clip_len = prepared.clip_len();
    let mut features = vec![0.0; chunk.len() * clip_len];
    let mut labels = Vec::with_capacity(chunk.len());
    let sample_rate = source.extractor.config().sample_rate;
    for (&i, out) in chunk.iter().zip(features.chunks_exact_mut(clip_len)) {
        if source.audio.is_empty() {
            out.copy_from_slice(prepared.clip_features(i));
        } else {
            let audio = augment_audio(&source.audio[i], sample_rate, augment, &source.noise, rng);
            source.extractor.compute_into(&audio, out);
        }
        spec_augment(out, channels * frames, bins, values_per_bin, augment, rng);
        labels.push(prepared.clips[i].label as u32);
    }
    Batch {
        features,
        labels,
        shape: crate::nn::batched(chunk.len(), &prepared.clip_shape),
    }
}

/// Batches in order, assembled ahead on a background thread; dropping it
/// stops the thread.
pub struct BatchStream {
    receiver: Receiver<Batch>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for BatchStream {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.receiver.recv().ok()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it ends.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, closed));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A batch in GPU buffers; the buffers are reused while the shape stays.
pub struct GpuBatch {
    pub features: Tensor,
    /// Class indices, u32.
    pub labels: Tensor,
}

impl GpuBatch {
    pub fn upload(gpu: &Gpu, batch: &Batch) -> GpuResult<GpuBatch> {
        Ok(GpuBatch {
            features: gpu.upload(&batch.shape, &batch.features)?,
            labels: gpu.upload_u32(&[batch.labels.len()], &batch.labels)?,
        })
    }

    /// Writes `batch` into the buffers, or new ones if its shape differs
    /// (the last, smaller batch of an epoch).
    pub fn load(&mut self, gpu: &Gpu, batch: &Batch) -> GpuResult<()> {
        if self.features.shape() != batch.shape.as_slice() {
            *self = GpuBatch::upload(gpu, batch)?;
            return Ok(());
        }
        gpu.write(&self.features, &batch.features)?;
        gpu.write_u32(&self.labels, &batch.labels)
    }
}

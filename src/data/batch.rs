//! Batches for training and evaluation: clips shuffled per epoch from the
//! seed, augmented, assembled on a background thread while the GPU works on
//! the previous batch, and written into reused GPU buffers.

use super::augment::{augment_audio, spec_augment, AugmentConfig};
use super::dataset::{DataSet, Split};
use super::error::DataResult;
use super::features::{FeatureConfig, FeatureExtractor};
use super::prepare::{noise_piece, Prepared};
use super::wav::read_wav;
use crate::gpu::{Gpu, GpuResult, Tensor};
use crate::util::rng::Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Batches prepared ahead of the one in use.
const PREFETCH: usize = 2;

/// One batch on the host: features `[batch, channels, time, freq]` and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub shape: [usize; 4],
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
        assert!(config.batch_size > 0, "batch size must be positive");
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
        })
    }

    pub fn len(&self) -> usize {
        self.indices.len()
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
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let order = epoch_order(&self.indices, self.config.seed, epoch, self.config.shuffle);
        let source = self.source.clone();
        let config = self.config.clone();
        let count = self.batches_per_epoch();
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            let mut rng = Rng::new(config.seed ^ 0xA076_1D64_78BD_642F ^ epoch);
            for chunk in order.chunks(config.batch_size).take(count) {
                if sender
                    .send(assemble(&source, chunk, &config.augment, &mut rng))
                    .is_err()
                {
                    break;
                }
            }
        });
        EpochBatches {
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
    let [channels, frames, width] = prepared.clip_shape;
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
        spec_augment(out, channels * frames, width, augment, rng);
        labels.push(prepared.clips[i].label as u32);
    }
    Batch {
        features,
        labels,
        shape: [chunk.len(), channels, frames, width],
    }
}

/// An epoch's batches in order; dropping it stops the background thread.
pub struct EpochBatches {
    receiver: Receiver<Batch>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for EpochBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.receiver.recv().ok()
    }
}

impl Drop for EpochBatches {
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
        if self.features.shape() != batch.shape {
            *self = GpuBatch::upload(gpu, batch)?;
            return Ok(());
        }
        gpu.write(&self.features, &batch.features)?;
        gpu.write_u32(&self.labels, &batch.labels)
    }
}

//! Tensors: a shape and a pooled storage buffer of 4-byte elements (f32, or
//! u32 for labels and counts), with upload, download and fill.

use super::error::{GpuError, GpuResult};
use super::pool::{PooledBuffer, STORAGE_USAGE};
use super::Gpu;
use std::sync::Arc;

/// A row-major array of 4-byte elements on the GPU. Cloning shares the buffer.
///
/// A placeholder (`Tensor::placeholder`) has a shape and no buffer: it stands
/// for a tensor that was let go of, where only the shape is still wanted.
/// Recording a command that uses one, writing or reading it fails.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Option<Arc<PooledBuffer>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements take (the buffer may be a little larger).
    pub fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }

    /// The buffer behind this tensor. Panics on a placeholder: code that
    /// may meet one checks `bound` first, as the recorder does.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self
            .storage
            .as_ref()
            .expect("a placeholder tensor has no buffer")
            .buffer
    }

    /// A tensor of this shape without a buffer.
    pub fn placeholder(&self) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            storage: None,
        }
    }

    pub fn is_placeholder(&self) -> bool {
        self.storage.is_none()
    }

    /// Fails, naming `what` uses it, when this is a placeholder.
    pub fn bound(&self, what: impl FnOnce() -> String) -> GpuResult<()> {
        if self.is_placeholder() {
            return Err(GpuError::Order(format!(
                "{} uses a placeholder of shape {:?}: a tensor that was let go \
                 of as unread",
                what(),
                self.shape
            )));
        }
        Ok(())
    }

    /// Whether both tensors have the same buffer (never for a placeholder).
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Some(a), Some(b)) => a.buffer == b.buffer,
            _ => false,
        }
    }

    /// Whether this handle is the only one to its buffer.
    pub(crate) fn is_sole_owner(&self) -> bool {
        self.storage
            .as_ref()
            .is_some_and(|s| Arc::strong_count(s) == 1)
    }

    /// Bytes of the buffer behind this tensor.
    pub(crate) fn capacity(&self) -> u64 {
        self.storage.as_ref().map_or(0, |s| s.size())
    }

    /// The same buffer with a new shape that fits in it.
    pub(crate) fn recast(self, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage: self.storage,
        }
    }

    /// The same elements viewed with another shape of the same size.
    pub fn reshaped(&self, shape: &[usize]) -> GpuResult<Tensor> {
        super::ensure(shape.iter().product::<usize>() == self.len(), || {
            format!("cannot reshape {:?} to {:?}", self.shape, shape)
        })?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }

    /// The bytes a binding of this tensor covers: its elements rounded up to
    /// whole vec4s so shaders may read it as `array<vec4<f32>>` (pooled
    /// buffers are sized in 256-byte steps, so the rounding stays inside the
    /// buffer).
    pub(crate) fn binding_size(&self) -> u64 {
        self.bytes().max(16).next_multiple_of(16)
    }
}

/// Fails with a `Shape` error naming the kernel call (`context`, formatted
/// only on failure), the argument and both sizes when `t` does not hold
/// exactly `want` elements.
pub fn ensure_len(
    context: std::fmt::Arguments,
    name: &str,
    t: &Tensor,
    want: usize,
) -> GpuResult<()> {
    super::ensure(t.len() == want, || {
        format!(
            "{context}: {name} has shape {:?} ({} elements), expected {want} elements",
            t.shape(),
            t.len()
        )
    })
}

impl Gpu {
    /// A tensor whose contents are whatever its pooled buffer held.
    pub fn empty(&self, shape: &[usize]) -> GpuResult<Tensor> {
        let len: usize = shape.iter().product();
        let bytes = (len as u64) * 4;
        let limit = self.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("a tensor of shape {shape:?}"),
                bytes,
                limit,
            });
        }
        let storage = self.pool.take(bytes, |size| {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tensor"),
                size,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            });
            match pollster::block_on(scope.pop()) {
                Some(e) => Err(GpuError::OutOfMemory(format!(
                    "allocating {size} bytes for shape {shape:?}: {e}"
                ))),
                None => Ok(buffer),
            }
        })?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Some(Arc::new(storage)),
        })
    }

    /// A tensor of zeros (the clear happens before the next submit).
    pub fn zeros(&self, shape: &[usize]) -> GpuResult<Tensor> {
        self.full(shape, 0.0)
    }

    /// A tensor with every element `value`.
    pub fn full(&self, shape: &[usize], value: f32) -> GpuResult<Tensor> {
        let t = self.empty(shape)?;
        self.write(&t, &vec![value; t.len()])?;
        Ok(t)
    }

    pub fn upload(&self, shape: &[usize], data: &[f32]) -> GpuResult<Tensor> {
        let t = self.empty(shape)?;
        self.write(&t, data)?;
        Ok(t)
    }

    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> GpuResult<Tensor> {
        let t = self.empty(shape)?;
        self.write_u32(&t, data)?;
        Ok(t)
    }

    /// Overwrites a tensor's elements; applied before the next submit.
    pub fn write(&self, t: &Tensor, data: &[f32]) -> GpuResult<()> {
        self.write_bytes(t, bytemuck::cast_slice(data))
    }

    pub fn write_u32(&self, t: &Tensor, data: &[u32]) -> GpuResult<()> {
        self.write_bytes(t, bytemuck::cast_slice(data))
    }

    fn write_bytes(&self, t: &Tensor, bytes: &[u8]) -> GpuResult<()> {
        t.bound(|| "a write".into())?;
        super::ensure(bytes.len() as u64 == t.bytes(), || {
            format!(
                "writing {} elements into a tensor of shape {:?}",
                bytes.len() / 4,
                t.shape()
            )
        })?;
        if !bytes.is_empty() {
            self.queue.write_buffer(t.buffer(), 0, bytes);
        }
        Ok(())
    }

    pub fn download(&self, t: &Tensor) -> GpuResult<Vec<f32>> {
        Ok(words(&self.download_bytes(t)?)
            .map(f32::from_le_bytes)
            .collect())
    }

    pub fn download_u32(&self, t: &Tensor) -> GpuResult<Vec<u32>> {
        Ok(words(&self.download_bytes(t)?)
            .map(u32::from_le_bytes)
            .collect())
    }

    /// Copies a tensor into a staging buffer, submits, and waits once.
    fn download_bytes(&self, t: &Tensor) -> GpuResult<Vec<u8>> {
        t.bound(|| "a download".into())?;
        if t.is_empty() {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: t.bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(t.buffer(), 0, &staging, 0, t.bytes());
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = sender.send(r);
        });
        self.wait()?;
        receiver
            .recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}

/// The 4-byte words of downloaded bytes (a `Vec<u8>` need not be aligned
/// for f32, and an empty one is not, so the bytes are not cast in place).
fn words(bytes: &[u8]) -> impl Iterator<Item = [u8; 4]> + '_ {
    bytes.chunks_exact(4).map(|w| [w[0], w[1], w[2], w[3]])
}

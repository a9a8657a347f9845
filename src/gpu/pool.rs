//! A pool of storage buffers keyed by size: a tensor dropped in one training
//! step hands its buffer to the same-sized tensor of the next, so a steady
//! loop allocates nothing. Free buffers of a size are handed out in a fixed
//! order (by wgpu's id), whatever order they came back in, so that a
//! repeated step gets the same buffers in the same places and finds its
//! bind groups cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Storage buffers are sized up to this granularity so that similar shapes share.
const SIZE_GRANULE: u64 = 256;

pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Device memory held through the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensors.
    pub live_bytes: u64,
    /// The most `live_bytes` has been since the device opened (or the last reset).
    pub peak_bytes: u64,
    /// Bytes of free buffers kept for reuse.
    pub pooled_bytes: u64,
    /// Buffers created since the device opened; a steady training loop
    /// stops adding to it after its first step.
    pub buffers_created: u64,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    inner: Arc<Mutex<PoolInner>>,
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<u64, BTreeSet<wgpu::Buffer>>,
    stats: MemoryStats,
}

/// A buffer on loan from the pool; it goes back when dropped.
pub(crate) struct PooledBuffer {
    pub(crate) buffer: wgpu::Buffer,
    size: u64,
    pool: Arc<Mutex<PoolInner>>,
}

impl PooledBuffer {
    /// The buffer's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

pub(crate) fn pooled_size(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(SIZE_GRANULE) * SIZE_GRANULE
}

impl BufferPool {
    /// A buffer of at least `bytes`, reused when one of that size is free.
    /// `create` makes a new one when none is.
    pub(crate) fn take(
        &self,
        bytes: u64,
        create: impl FnOnce(u64) -> Result<wgpu::Buffer, super::GpuError>,
    ) -> Result<PooledBuffer, super::GpuError> {
        let size = pooled_size(bytes);
        let reused = {
            let mut inner = self.inner.lock().unwrap();
            let b = inner.free.get_mut(&size).and_then(BTreeSet::pop_first);
            if b.is_some() {
                inner.stats.pooled_bytes -= size;
            }
            b
        };
        let buffer = match reused {
            Some(b) => b,
            None => {
                let b = create(size)?;
                self.inner.lock().unwrap().stats.buffers_created += 1;
                b
            }
        };
        let mut inner = self.inner.lock().unwrap();
        inner.stats.live_bytes += size;
        inner.stats.peak_bytes = inner.stats.peak_bytes.max(inner.stats.live_bytes);
        Ok(PooledBuffer {
            buffer,
            size,
            pool: self.inner.clone(),
        })
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        self.inner.lock().unwrap().stats
    }

    /// Starts a new peak measurement from what is live now.
    pub(crate) fn reset_peak(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.stats.peak_bytes = inner.stats.live_bytes;
    }

    /// Frees the buffers kept for reuse.
    pub(crate) fn trim(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.free.clear();
        inner.stats.pooled_bytes = 0;
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut inner = self.pool.lock().unwrap();
        inner.stats.live_bytes -= self.size;
        inner.stats.pooled_bytes += self.size;
        inner
            .free
            .entry(self.size)
            .or_default()
            .insert(self.buffer.clone());
    }
}

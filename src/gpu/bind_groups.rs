//! Bind groups kept for reuse. A training step binds the same buffers the
//! same way every step, and creating a bind group costs more than recording
//! its dispatch. A cached bind group holds its buffers, so a key can never
//! stand for another buffer that took a freed one's place; the tensor pool
//! keeps its buffers anyway, and when it frees them (`Gpu::trim_memory`)
//! the cache is emptied so that they are freed indeed.

use super::error::{GpuError, GpuResult};
use super::tensor::Tensor;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// Bind groups kept at most; a full cache starts again empty. A step of a
/// large supernet binds a few thousand distinct sets of buffers.
const CAPACITY: usize = 16_384;

/// What a bind group binds: the layout, the uniform chunk (read at dynamic
/// offsets) with the params' size, and each tensor's buffer with its size.
struct Key {
    layout: wgpu::BindGroupLayout,
    params: wgpu::Buffer,
    params_size: u64,
    tensors: Vec<(wgpu::Buffer, u64)>,
}

impl Key {
    fn is(
        &self,
        layout: &wgpu::BindGroupLayout,
        params: &wgpu::Buffer,
        params_size: u64,
        tensors: &[&Tensor],
    ) -> bool {
        self.layout == *layout
            && self.params == *params
            && self.params_size == params_size
            && self.tensors.len() == tensors.len()
            && self
                .tensors
                .iter()
                .zip(tensors)
                .all(|((buffer, size), t)| buffer == t.buffer() && *size == t.binding_size())
    }
}

#[derive(Default)]
struct Groups {
    /// Bind groups by the hash of their key, so that a lookup clones and
    /// allocates nothing.
    by_hash: HashMap<u64, Vec<(Key, wgpu::BindGroup)>>,
    count: usize,
}

#[derive(Default)]
pub(crate) struct BindGroupCache {
    groups: Mutex<Groups>,
}

impl BindGroupCache {
    /// The bind group of `layout` with `params_size` bytes of `params` at
    /// binding 0 and the tensors at bindings 1.., made on first use.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        params: &wgpu::Buffer,
        params_size: u64,
        tensors: &[&Tensor],
    ) -> GpuResult<wgpu::BindGroup> {
        let mut hasher = DefaultHasher::new();
        (layout, params, params_size).hash(&mut hasher);
        for t in tensors {
            (t.buffer(), t.binding_size()).hash(&mut hasher);
        }
        let hash = hasher.finish();
        let find = |groups: &Groups| {
            groups
                .by_hash
                .get(&hash)?
                .iter()
                .find(|(key, _)| key.is(layout, params, params_size, tensors))
                .map(|(_, group)| group.clone())
        };
        if let Some(group) = find(&self.groups.lock().unwrap()) {
            return Ok(group);
        }
        let key = Key {
            layout: layout.clone(),
            params: params.clone(),
            params_size,
            tensors: tensors
                .iter()
                .map(|t| (t.buffer().clone(), t.binding_size()))
                .collect(),
        };
        let group = create(device, &key)?;
        let mut groups = self.groups.lock().unwrap();
        if let Some(group) = find(&groups) {
            return Ok(group);
        }
        if groups.count >= CAPACITY {
            *groups = Groups::default();
        }
        groups
            .by_hash
            .entry(hash)
            .or_default()
            .push((key, group.clone()));
        groups.count += 1;
        Ok(group)
    }

    /// Drops every bind group and so the hold they have on their buffers.
    pub(crate) fn clear(&self) {
        *self.groups.lock().unwrap() = Groups::default();
    }

    /// Whether a cached bind group holds `buffer`.
    #[cfg(test)]
    pub(crate) fn holds(&self, buffer: &wgpu::Buffer) -> bool {
        self.groups
            .lock()
            .unwrap()
            .by_hash
            .values()
            .flatten()
            .any(|(k, _)| k.tensors.iter().any(|(b, _)| b == buffer))
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer, size: u64) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: std::num::NonZeroU64::new(size),
        }),
    }
}

/// Creates the bind group inside an error scope, so that a bad one is
/// reported at once and never cached.
fn create(device: &wgpu::Device, key: &Key) -> GpuResult<wgpu::BindGroup> {
    let entries: Vec<_> = std::iter::once(entry(0, &key.params, key.params_size))
        .chain(
            key.tensors
                .iter()
                .enumerate()
                .map(|(i, (b, size))| entry(i as u32 + 1, b, *size)),
        )
        .collect();
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &key.layout,
        entries: &entries,
    });
    match pollster::block_on(scope.pop()) {
        Some(e) => Err(GpuError::Validation(e.to_string())),
        None => Ok(group),
    }
}

#[cfg(test)]
mod tests {
    use crate::gpu::Gpu;
    use crate::kernels::elementwise::scale;

    #[test]
    fn trimming_the_pool_lets_go_of_the_buffers_bind_groups_held() {
        let gpu = Gpu::shared();
        let x = gpu.full(&[3_001], 1.0).unwrap();
        let buffer = x.buffer().clone();
        let mut rec = gpu.recorder();
        scale(&mut rec, &x, 2.0).unwrap();
        rec.submit_and_wait().unwrap();
        assert!(gpu.bind_groups.holds(&buffer));
        drop(x);
        gpu.trim_memory();
        assert!(!gpu.bind_groups.holds(&buffer));
    }
}

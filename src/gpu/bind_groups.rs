//! Bind groups kept for reuse. A training step binds the same buffers the
//! same way every step, and creating a bind group costs more than recording
//! its dispatch. A cached bind group holds its buffers, so a key can never
//! stand for another buffer that took a freed one's place; the tensor pool
//! keeps its buffers anyway, and when it frees them (`Gpu::trim_memory`)
//! the cache is emptied so that they are freed indeed.

use super::error::{GpuError, GpuResult};
use super::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bind groups kept at most; a full cache starts again empty. A step of a
/// large supernet binds a few thousand distinct sets of buffers.
const CAPACITY: usize = 16_384;

/// What a bind group binds: the layout, the uniform chunk (read at dynamic
/// offsets) with the params' size, and each tensor's buffer with its size.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    layout: wgpu::BindGroupLayout,
    params: wgpu::Buffer,
    params_size: u64,
    tensors: Vec<(wgpu::Buffer, u64)>,
}

#[derive(Default)]
pub(crate) struct BindGroupCache {
    groups: Mutex<HashMap<Key, wgpu::BindGroup>>,
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
        let key = Key {
            layout: layout.clone(),
            params: params.clone(),
            params_size,
            tensors: tensors
                .iter()
                .map(|t| (t.buffer().clone(), t.binding_size()))
                .collect(),
        };
        if let Some(group) = self.groups.lock().unwrap().get(&key) {
            return Ok(group.clone());
        }
        let group = create(device, &key)?;
        let mut groups = self.groups.lock().unwrap();
        if groups.len() >= CAPACITY {
            groups.clear();
        }
        groups.insert(key, group.clone());
        Ok(group)
    }

    /// Drops every bind group and so the hold they have on their buffers.
    pub(crate) fn clear(&self) {
        self.groups.lock().unwrap().clear();
    }

    /// Whether a cached bind group holds `buffer`.
    #[cfg(test)]
    pub(crate) fn holds(&self, buffer: &wgpu::Buffer) -> bool {
        self.groups
            .lock()
            .unwrap()
            .keys()
            .any(|k| k.tensors.iter().any(|(b, _)| b == buffer))
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

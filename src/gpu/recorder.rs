//! Recording: many dispatches into one command encoder and one submit. Kernel
//! parameters go into a small uniform arena written once at submit, read
//! through cached bind groups at dynamic offsets. Dispatches share one
//! compute pass until another command comes; with timing on, every dispatch
//! has a pass of its own, bracketed by timestamp queries.

use super::error::{GpuError, GpuResult};
use super::pipeline::Shader;
use super::tensor::Tensor;
use super::Gpu;
use std::collections::HashSet;

/// Bytes of one uniform arena chunk; chunks are pooled on the `Gpu`.
const UNIFORM_CHUNK: u64 = 64 * 1024;
/// Timestamp queries of one timed recording (two per dispatch).
const MAX_QUERIES: u32 = 4096;

/// The GPU time of one dispatch, from timestamp queries.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub label: String,
    pub nanos: f64,
}

/// Splits a 1-D launch of `groups` workgroups into a grid within the 65535
/// per-dimension limit. Shaders take the linear workgroup index as
/// `wid.x + wid.y * nwg.x` and guard against running past the end.
pub fn grid_1d(groups: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if groups <= MAX {
        return [groups, 1, 1];
    }
    let y = groups.div_ceil(MAX);
    [groups.div_ceil(y), y, 1]
}

struct UniformChunk {
    buffer: wgpu::Buffer,
    staged: Vec<u8>,
}

struct Timing {
    query_set: wgpu::QuerySet,
    labels: Vec<String>,
}

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    /// The compute pass untimed dispatches are recorded into; it ends before
    /// any other command (the encoder is locked while a pass is open).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: wgpu::CommandEncoder,
    chunks: Vec<UniformChunk>,
    timing: Option<Timing>,
    dispatches: usize,
    /// Every tensor a recorded command uses (once each), held until submit,
    /// so that a tensor dropped early cannot go back to the pool and be
    /// handed out, and written by a queue write, while this recording still
    /// uses it. `empty` hands such buffers to later work of this recording.
    in_use: Vec<Tensor>,
    in_use_buffers: HashSet<wgpu::Buffer>,
}

impl<'g> Recorder<'g> {
    pub(crate) fn new(gpu: &'g Gpu, timed: bool) -> Self {
        let encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("audionas step"),
            });
        let timing = timed.then(|| Timing {
            query_set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: MAX_QUERIES,
            }),
            labels: Vec::new(),
        });
        Recorder {
            gpu,
            pass: None,
            encoder,
            chunks: Vec::new(),
            timing,
            dispatches: 0,
            in_use: Vec::new(),
            in_use_buffers: HashSet::new(),
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    fn hold(&mut self, t: &Tensor) {
        if self.in_use_buffers.insert(t.buffer().clone()) {
            self.in_use.push(t.clone());
        }
    }

    /// A tensor for work recorded here. It reuses the buffer of a tensor an
    /// earlier command of this recording used and nobody holds any more
    /// (commands run in order, so that use is over), else takes one from
    /// the pool; this keeps a step's peak memory near its live set. Its
    /// contents are undefined and must be written by recorded commands: a
    /// queue write (`Gpu::write`) would land before the earlier use.
    pub fn empty(&mut self, shape: &[usize]) -> GpuResult<Tensor> {
        let bytes = (shape.iter().product::<usize>() as u64 * 4).max(4);
        let fits = |t: &Tensor| {
            t.is_sole_owner() && t.capacity() >= bytes && t.capacity() <= 2 * bytes.max(256)
        };
        if let Some(i) = self.in_use.iter().position(fits) {
            let t = self.in_use.swap_remove(i);
            self.in_use_buffers.remove(t.buffer());
            return Ok(t.recast(shape));
        }
        self.gpu.empty(shape)
    }

    /// Dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Places `params` in the uniform arena; returns its chunk and offset.
    fn stage_params(&mut self, bytes: &[u8]) -> (usize, u64, u64) {
        let align = self.gpu.limits().min_uniform_buffer_offset_alignment as usize;
        let size = bytes.len().max(16).next_multiple_of(16);
        let fits = |c: &UniformChunk| {
            c.staged.len().next_multiple_of(align) + size <= UNIFORM_CHUNK as usize
        };
        if !self.chunks.last().is_some_and(fits) {
            let buffer = self.gpu.take_uniform_chunk();
            self.chunks.push(UniformChunk {
                buffer,
                staged: Vec::new(),
            });
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let offset = chunk.staged.len().next_multiple_of(align);
        chunk.staged.resize(offset, 0);
        chunk.staged.extend_from_slice(bytes);
        chunk.staged.resize(offset + size, 0);
        (index, offset as u64, size as u64)
    }

    /// Records one compute dispatch. The shader's bindings are, in group 0:
    /// binding 0 the uniform `params`, then bindings 1.. the `tensors` in order
    /// (exactly those the entry point uses; another count is an error).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) -> GpuResult<()> {
        for (i, t) in tensors.iter().enumerate() {
            t.bound(|| format!("{}:{entry} (tensor {i})", shader.name))?;
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::Shape(format!(
                "{}:{entry} needs {groups:?} workgroups; this adapter allows {max} per dimension",
                shader.name
            )));
        }
        let kernel = self.gpu.pipeline(shader, entry, constants)?;
        if tensors.len() != kernel.layout.tensors {
            return Err(GpuError::Shape(format!(
                "{}:{entry} was given {} tensors; its shader binds {}",
                shader.name,
                tensors.len(),
                kernel.layout.tensors
            )));
        }
        let (chunk, offset, size) = self.stage_params(bytemuck::bytes_of(params));
        let bind_group = self.gpu.bind_groups.get(
            &self.gpu.device,
            &kernel.layout.bind_group_layout,
            &self.chunks[chunk].buffer,
            size,
            tensors,
        )?;
        let timestamp_writes = match &mut self.timing {
            Some(t) if (t.labels.len() as u32 + 1) * 2 <= MAX_QUERIES => {
                let first = t.labels.len() as u32 * 2;
                t.labels.push(format!("{}:{entry}", shader.name));
                Some(wgpu::ComputePassTimestampWrites {
                    query_set: &t.query_set,
                    beginning_of_pass_write_index: Some(first),
                    end_of_pass_write_index: Some(first + 1),
                })
            }
            _ => None,
        };
        let record = |pass: &mut wgpu::ComputePass| {
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[offset as u32]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        };
        if timestamp_writes.is_some() {
            self.pass = None;
            record(
                &mut self
                    .encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    }),
            );
        } else {
            let encoder = &mut self.encoder;
            record(self.pass.get_or_insert_with(|| {
                encoder
                    .begin_compute_pass(&Default::default())
                    .forget_lifetime()
            }));
        }
        self.dispatches += 1;
        for t in tensors {
            self.hold(t);
        }
        Ok(())
    }

    /// Sets every element to zero (no dispatch needed). Panics on a
    /// placeholder: only fresh tensors are cleared.
    pub fn clear(&mut self, t: &Tensor) {
        if !t.is_empty() {
            self.pass = None;
            self.encoder.clear_buffer(t.buffer(), 0, Some(t.bytes()));
            self.hold(t);
        }
    }

    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> GpuResult<()> {
        src.bound(|| "a copy from it".into())?;
        dst.bound(|| "a copy into it".into())?;
        super::ensure(src.len() == dst.len(), || {
            format!("copying {:?} into {:?}", src.shape(), dst.shape())
        })?;
        if !src.is_empty() {
            self.pass = None;
            self.encoder
                .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.bytes());
            self.hold(src);
            self.hold(dst);
        }
        Ok(())
    }

    /// Copies `len` elements of `src` from `src_at` into `dst` at `dst_at`
    /// (collecting per-step results into one tensor read back at once).
    pub fn copy_range(
        &mut self,
        src: &Tensor,
        src_at: usize,
        dst: &Tensor,
        dst_at: usize,
        len: usize,
    ) -> GpuResult<()> {
        src.bound(|| "a copy from it".into())?;
        dst.bound(|| "a copy into it".into())?;
        super::ensure(
            src_at + len <= src.len() && dst_at + len <= dst.len(),
            || {
                format!(
                    "copying {len} elements from {:?} at {src_at} into {:?} at {dst_at}",
                    src.shape(),
                    dst.shape()
                )
            },
        )?;
        if len > 0 {
            self.pass = None;
            let bytes = |n: usize| (n * 4) as u64;
            self.encoder.copy_buffer_to_buffer(
                src.buffer(),
                bytes(src_at),
                dst.buffer(),
                bytes(dst_at),
                bytes(len),
            );
            self.hold(src);
            self.hold(dst);
        }
        Ok(())
    }

    /// Writes the staged parameters, lets `last` record its final commands,
    /// submits, and recycles the uniform chunks. The tensors in use are
    /// released only once the submit has been made.
    fn submit_with(
        self,
        last: impl FnOnce(&mut wgpu::CommandEncoder, Option<&Timing>),
    ) -> (&'g Gpu, Option<Timing>) {
        let Recorder {
            gpu,
            pass,
            mut encoder,
            chunks,
            timing,
            in_use,
            in_use_buffers,
            ..
        } = self;
        drop(pass);
        for chunk in &chunks {
            gpu.queue.write_buffer(&chunk.buffer, 0, &chunk.staged);
        }
        last(&mut encoder, timing.as_ref());
        gpu.queue.submit([encoder.finish()]);
        gpu.return_uniform_chunks(chunks.into_iter().map(|c| c.buffer));
        drop(in_use_buffers);
        drop(in_use);
        (gpu, timing)
    }

    /// Submits everything recorded, without waiting for it.
    pub fn submit(self) -> GpuResult<()> {
        let (gpu, _) = self.submit_with(|_, _| {});
        gpu.take_error()
    }

    /// Submits, waits, and returns the GPU time of every dispatch (empty when
    /// the adapter has no timestamp queries).
    pub fn submit_timed(self) -> GpuResult<Vec<KernelTime>> {
        let gpu = self.gpu;
        let timed = self.timing.as_ref().map_or(0, |t| t.labels.len());
        if timed == 0 {
            self.submit()?;
            gpu.wait()?;
            return Ok(Vec::new());
        }
        let count = timed as u32 * 2;
        let bytes = count as u64 * 8;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let (_, timing) = self.submit_with(|encoder, timing| {
            let timing = timing.expect("checked above");
            encoder.resolve_query_set(&timing.query_set, 0..count, &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        });
        let timing = timing.expect("checked above");
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = sender.send(r);
        });
        gpu.wait()?;
        receiver
            .recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let ticks: Vec<u64> = bytemuck::cast_slice(
            &staging
                .get_mapped_range(..)
                .map_err(|e| GpuError::Readback(e.to_string()))?,
        )
        .to_vec();
        staging.unmap();
        let period = gpu.queue.get_timestamp_period() as f64;
        Ok(timing
            .labels
            .into_iter()
            .enumerate()
            .map(|(i, label)| KernelTime {
                label,
                nanos: ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period,
            })
            .collect())
    }

    /// Submits and blocks until the GPU is done.
    pub fn submit_and_wait(self) -> GpuResult<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait()
    }
}

impl Gpu {
    fn take_uniform_chunk(&self) -> wgpu::Buffer {
        if let Some(b) = self.uniform_chunks.lock().unwrap().pop() {
            return b;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel params"),
            size: UNIFORM_CHUNK,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Chunks may be reused at once: `write_buffer` lands before the next
    /// submit, which runs after the one that read the old contents. They go
    /// back in reverse so that the next recording takes them in the same
    /// order, and a repeated step finds its bind groups cached.
    fn return_uniform_chunks(&self, chunks: impl DoubleEndedIterator<Item = wgpu::Buffer>) {
        self.uniform_chunks.lock().unwrap().extend(chunks.rev());
    }
}

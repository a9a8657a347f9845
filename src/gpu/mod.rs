//! The GPU runtime: adapter and device choice, tensors backed by pooled
//! buffers, a process-wide pipeline cache, recording many dispatches into one
//! submit, readback, and timestamp queries.

mod adapter;
mod bind_groups;
mod error;
mod pipeline;
mod pool;
mod recorder;
mod tensor;

pub use adapter::{
    choose_adapter, describe, new_instance, ranked_adapters, AdapterOptions, BackendChoice,
};
pub use error::{ensure, GpuError, GpuResult, INSTALL_HINT};
pub use pipeline::Shader;
pub use pool::MemoryStats;
pub use recorder::{grid_1d, KernelTime, Recorder};
pub use tensor::{ensure_len, Tensor};

use std::sync::{Arc, Mutex, OnceLock};

/// Features audionas uses when the adapter has them.
const WANTED_FEATURES: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::SUBGROUP);

/// An open device with its queue, caches and pools. One per process is usual;
/// it is `Sync`, so tests share one.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    pipelines: pipeline::PipelineCache,
    bind_groups: bind_groups::BindGroupCache,
    pub(crate) pool: pool::BufferPool,
    uniform_chunks: Mutex<Vec<wgpu::Buffer>>,
    /// The first error wgpu reported outside an error scope (or the device
    /// loss); the next submit or readback returns it.
    pending_error: Arc<Mutex<Option<GpuError>>>,
}

impl Gpu {
    /// Opens the adapter the options ask for with the adapter's own limits.
    pub fn new(options: &AdapterOptions) -> GpuResult<Gpu> {
        let instance = new_instance(options.backend);
        let adapter = choose_adapter(&instance, options)?;
        Self::from_adapter(adapter)
    }

    pub fn from_adapter(adapter: wgpu::Adapter) -> GpuResult<Gpu> {
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let desc = wgpu::DeviceDescriptor {
            label: Some("audionas"),
            required_features: features,
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            GpuError::RequestDevice {
                adapter: describe(&info),
                reason: e.to_string(),
            }
        })?;
        let pending_error: Arc<Mutex<Option<GpuError>>> = Arc::default();
        let slot = pending_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match e {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
                other => GpuError::Validation(other.to_string()),
            };
            slot.lock().unwrap().get_or_insert(err);
        }));
        let slot = pending_error.clone();
        device.set_device_lost_callback(move |reason, message| {
            slot.lock()
                .unwrap()
                .get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {message}")));
        });
        let limits = device.limits();
        Ok(Gpu {
            pipelines: pipeline::PipelineCache::default(),
            bind_groups: bind_groups::BindGroupCache::default(),
            pool: pool::BufferPool::default(),
            uniform_chunks: Mutex::default(),
            device,
            queue,
            info,
            limits,
            features,
            pending_error,
        })
    }

    /// The process-wide device for tests and benches: the adapter from
    /// `WGPU_BACKEND`/`AUDIONAS_ADAPTER`, or the best one. Panics with the
    /// install hint when there is none, so such tests fail rather than skip.
    pub fn shared() -> &'static Gpu {
        static SHARED: OnceLock<Gpu> = OnceLock::new();
        SHARED.get_or_init(|| {
            let gpu = AdapterOptions::from_env()
                .and_then(|o| Gpu::new(&o))
                .unwrap_or_else(|e| panic!("{e}"));
            eprintln!("audionas: using adapter {}", gpu.describe());
            gpu
        })
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether the adapter is a CPU rasteriser (llvmpipe): it runs a
    /// workgroup as SIMD vectors of 8 lanes, and some kernels pick other
    /// shapes for it.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Lanes for a workgroup that walks one row of `row_len` elements: on a
    /// CPU adapter one SIMD vector of 8 lanes, which measured fastest (each
    /// lane then loads the row's constants once for many elements); on a
    /// GPU enough lanes to cover the row, up to 64.
    pub fn row_lanes(&self, row_len: usize) -> u32 {
        if self.is_cpu() {
            8
        } else {
            row_len.next_power_of_two().clamp(8, 64) as u32
        }
    }

    /// Whether kernels may use subgroup operations on subgroups of exactly
    /// `lanes` lanes (a workgroup of that size is then one subgroup).
    pub fn has_subgroups_of(&self, lanes: u32) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == lanes
            && self.info.subgroup_max_size == lanes
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Bytes held by tensors now, at most so far, and kept in the pool.
    pub fn memory(&self) -> MemoryStats {
        self.pool.stats()
    }

    /// Starts a new peak-memory measurement from what is live now.
    pub fn reset_peak_memory(&self) {
        self.pool.reset_peak()
    }

    /// Frees the buffers the pool keeps for reuse (and the cached bind
    /// groups, which would keep them alive).
    pub fn trim_memory(&self) {
        self.bind_groups.clear();
        self.pool.trim()
    }

    /// Starts recording dispatches for one submit.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder::new(self, false)
    }

    /// Like `recorder`, with a timestamp around every dispatch (when the
    /// adapter has timestamp queries).
    pub fn timed_recorder(&self) -> Recorder<'_> {
        Recorder::new(self, self.has_timestamps())
    }

    /// Returns (and clears) an error wgpu reported asynchronously.
    pub(crate) fn take_error(&self) -> GpuResult<()> {
        match self.pending_error.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> GpuResult<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        self.take_error()
    }

    pub(crate) fn pipeline(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> GpuResult<Arc<pipeline::Kernel>> {
        self.pipelines.get(&self.device, shader, entry, constants)
    }
}

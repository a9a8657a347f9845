//! Choosing a backend and an adapter: by name or index when the user asks,
//! otherwise the best kind (discrete, integrated, virtual, CPU).

use super::error::{GpuError, GpuResult};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::all(),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

impl FromStr for BackendChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> GpuResult<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "vulkan" | "vk" => Ok(BackendChoice::Vulkan),
            "metal" | "mtl" => Ok(BackendChoice::Metal),
            "dx12" | "d3d12" => Ok(BackendChoice::Dx12),
            "gl" | "gles" | "opengl" => Ok(BackendChoice::Gl),
            other => Err(GpuError::UnknownBackend(other.to_string())),
        }
    }
}

/// What the user asked for: `--backend` and `--adapter` (an index into the list
/// `audionas devices` prints, or a case-insensitive substring of the name).
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    pub backend: BackendChoice,
    pub adapter: Option<String>,
}

impl AdapterOptions {
    /// Options from `WGPU_BACKEND` and `AUDIONAS_ADAPTER`, as tests and benches use them.
    pub fn from_env() -> GpuResult<Self> {
        let backend = match std::env::var("WGPU_BACKEND") {
            Ok(b) => b.parse()?,
            Err(_) => BackendChoice::Auto,
        };
        let adapter = std::env::var("AUDIONAS_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        Ok(AdapterOptions { backend, adapter })
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    // Native compute APIs before the GL fallback.
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

pub fn new_instance(backend: BackendChoice) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backend.backends();
    wgpu::Instance::new(desc)
}

/// Every adapter of the chosen backends, best first. This order is the one the
/// `--adapter N` index refers to.
pub fn ranked_adapters(instance: &wgpu::Instance, backend: BackendChoice) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backend.backends()));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (type_rank(info.device_type), backend_rank(info.backend))
    });
    adapters
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// Picks the adapter the options ask for, or the best one.
pub fn choose_adapter(
    instance: &wgpu::Instance,
    options: &AdapterOptions,
) -> GpuResult<wgpu::Adapter> {
    let adapters = ranked_adapters(instance, options.backend);
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter {
            backends: format!("{:?}", options.backend),
        });
    }
    let Some(wanted) = &options.adapter else {
        return Ok(adapters.into_iter().next().expect("checked non-empty"));
    };
    let list = || {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[{i}] {}", describe(&a.get_info())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match wanted.parse::<usize>() {
        Ok(index) => adapters.get(index).cloned(),
        Err(_) => {
            let needle = wanted.to_lowercase();
            adapters
                .iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                .cloned()
        }
    };
    found.ok_or_else(|| GpuError::AdapterNotFound {
        wanted: wanted.clone(),
        available: list(),
    })
}

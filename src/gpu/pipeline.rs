//! Shader modules and compute pipelines, each created once per process on
//! first use and kept for the life of the device.

use super::error::{GpuError, GpuResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One WGSL file of `shaders/`. `trusted` shaders are compiled without wgpu's
/// bounds checks (faster on every backend); such a shader guards every index
/// itself, and its tests cover the edges.
#[derive(Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
    pub trusted: bool,
}

/// Declares a `Shader` for `shaders/<name>.wgsl`.
#[macro_export]
macro_rules! shader {
    ($name:literal) => {
        $crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
            trusted: false,
        }
    };
    ($name:literal, trusted) => {
        $crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
            trusted: true,
        }
    };
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

fn pipeline_key(shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> String {
    let mut key = format!("{}:{}", shader.name, entry);
    for (name, value) in constants {
        key.push_str(&format!(":{name}={value}"));
    }
    key
}

impl PipelineCache {
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> GpuResult<Arc<wgpu::ComputePipeline>> {
        let key = pipeline_key(shader, entry, constants);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(device, shader, entry)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                shader: shader.name.into(),
                entry: entry.into(),
                message: e.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &str,
    ) -> GpuResult<Arc<wgpu::ShaderModule>> {
        if let Some(m) = self.modules.lock().unwrap().get(shader.name) {
            return Ok(m.clone());
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        };
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = if shader.trusted {
            // SAFETY: trusted shaders guard every index themselves; their
            // tests run them on shapes at and past every tile edge.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            device.create_shader_module(desc)
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                shader: shader.name.into(),
                entry: entry.into(),
                message: e.to_string(),
            });
        }
        let module = Arc::new(module);
        self.modules
            .lock()
            .unwrap()
            .insert(shader.name, module.clone());
        Ok(module)
    }
}

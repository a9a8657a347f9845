//! Shader modules and compute pipelines, each created once per process on
//! first use and kept for the life of the device. Each entry point gets an
//! explicit bind group layout, derived from the shader itself: binding 0
//! (the kernel's params) is a uniform read at a dynamic offset, so that one
//! bind group serves every dispatch on the same tensors, whatever its params.

use super::error::{GpuError, GpuResult};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU64;
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

/// The bindings of one entry point: the params uniform at binding 0, then
/// the storage buffers it uses at bindings 1..=`tensors`.
pub(crate) struct EntryLayout {
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pub(crate) tensors: usize,
}

/// A compiled pipeline with the layout its bind groups need.
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: Arc<EntryLayout>,
    shader: &'static str,
    entry: String,
    /// Each constant's name and the bits of its value.
    constants: Vec<(String, u64)>,
}

impl Kernel {
    fn is(&self, shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> bool {
        self.shader == shader.name
            && self.entry == entry
            && self.constants.len() == constants.len()
            && self
                .constants
                .iter()
                .zip(constants)
                .all(|((name, bits), (n, v))| name == n && *bits == v.to_bits())
    }
}

/// A shader module and the layouts of its compute entry points.
struct CompiledShader {
    module: wgpu::ShaderModule,
    entries: HashMap<String, Arc<EntryLayout>>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    shaders: Mutex<HashMap<&'static str, Arc<CompiledShader>>>,
    /// Kernels by the hash of their identity (shader, entry, constants), so
    /// that a lookup formats and allocates nothing.
    kernels: Mutex<HashMap<u64, Vec<Arc<Kernel>>>>,
}

fn identity_hash(shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    shader.name.hash(&mut hasher);
    entry.hash(&mut hasher);
    for (name, value) in constants {
        name.hash(&mut hasher);
        value.to_bits().hash(&mut hasher);
    }
    hasher.finish()
}

impl PipelineCache {
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> GpuResult<Arc<Kernel>> {
        let hash = identity_hash(shader, entry, constants);
        let find = |kernels: &HashMap<u64, Vec<Arc<Kernel>>>| {
            kernels
                .get(&hash)
                .and_then(|same| same.iter().find(|k| k.is(shader, entry, constants)))
                .cloned()
        };
        if let Some(k) = find(&self.kernels.lock().unwrap()) {
            return Ok(k);
        }
        let kernel = Arc::new(self.create(device, shader, entry, constants)?);
        let mut kernels = self.kernels.lock().unwrap();
        // Another thread may have made the same kernel meanwhile; keep one.
        if let Some(k) = find(&kernels) {
            return Ok(k);
        }
        kernels.entry(hash).or_default().push(kernel.clone());
        Ok(kernel)
    }

    fn create(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> GpuResult<Kernel> {
        let shader_error = |message: String| GpuError::Shader {
            shader: shader.name.into(),
            entry: entry.into(),
            message,
        };
        let compiled = self.shader(device, shader).map_err(shader_error)?;
        let layout = compiled
            .entries
            .get(entry)
            .ok_or_else(|| shader_error(format!("there is no compute entry point `{entry}`")))?
            .clone();
        let label = format!("{}:{entry}", shader.name);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout.pipeline_layout),
            module: &compiled.module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(shader_error(e.to_string()));
        }
        Ok(Kernel {
            pipeline,
            layout,
            shader: shader.name,
            entry: entry.into(),
            constants: constants
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_bits()))
                .collect(),
        })
    }

    fn shader(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
    ) -> Result<Arc<CompiledShader>, String> {
        if let Some(s) = self.shaders.lock().unwrap().get(shader.name) {
            return Ok(s.clone());
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
            return Err(e.to_string());
        }
        let entries = entry_bindings(shader.source)?
            .into_iter()
            .map(|(name, bindings)| {
                let layout = entry_layout(device, &format!("{}:{name}", shader.name), &bindings);
                (name, Arc::new(layout))
            })
            .collect();
        let compiled = Arc::new(CompiledShader { module, entries });
        self.shaders
            .lock()
            .unwrap()
            .insert(shader.name, compiled.clone());
        Ok(compiled)
    }
}

fn entry_layout(
    device: &wgpu::Device,
    label: &str,
    bindings: &[wgpu::BindGroupLayoutEntry],
) -> EntryLayout {
    let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: bindings,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&bind_group_layout)],
        immediate_size: 0,
    });
    EntryLayout {
        bind_group_layout,
        pipeline_layout,
        tensors: bindings.len() - 1,
    }
}

/// The layout entries of every compute entry point of a WGSL source, from
/// naga's analysis of which globals each entry point uses: binding 0 the
/// params uniform (dynamic offset), bindings 1..=n storage buffers,
/// read-only where the shader only reads them. These are the layouts wgpu
/// would derive itself, apart from the dynamic offset.
fn entry_bindings(source: &str) -> Result<Vec<(String, Vec<wgpu::BindGroupLayoutEntry>)>, String> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    // wgpu has validated the module against the device; this pass is only
    // for the analysis, so it allows every capability.
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(source))?;
    let mut entries = Vec::new();
    for (index, entry) in module.entry_points.iter().enumerate() {
        if entry.stage != naga::ShaderStage::Compute {
            continue;
        }
        let uses = info.get_entry_point(index);
        let mut bindings = vec![params_binding(None)];
        for (handle, global) in module.global_variables.iter() {
            let Some(binding) = &global.binding else {
                continue;
            };
            if uses[handle].is_empty() {
                continue;
            }
            let size = NonZeroU64::new(module.types[global.ty].inner.size(module.to_ctx()) as u64);
            let problem = |what: &str| {
                format!(
                    "entry `{}`: @group({}) @binding({}) {what}; kernels take their params \
                     as a uniform at @group(0) @binding(0) and their tensors as storage \
                     buffers at @binding(1), @binding(2), ...",
                    entry.name, binding.group, binding.binding
                )
            };
            let ty = match (binding.group, binding.binding, global.space) {
                (0, 0, naga::AddressSpace::Uniform) => {
                    bindings[0] = params_binding(size);
                    continue;
                }
                (0, 1.., naga::AddressSpace::Storage { access }) => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: !access.contains(naga::StorageAccess::STORE),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: size,
                },
                _ => return Err(problem("is not such a binding")),
            };
            bindings.push(wgpu::BindGroupLayoutEntry {
                binding: binding.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty,
                count: None,
            });
        }
        bindings.sort_by_key(|b| b.binding);
        if bindings
            .iter()
            .enumerate()
            .any(|(i, b)| b.binding != i as u32)
        {
            return Err(format!(
                "entry `{}` uses storage bindings {:?}; tensors bind in order from binding 1, \
                 without gaps",
                entry.name,
                bindings[1..].iter().map(|b| b.binding).collect::<Vec<_>>(),
            ));
        }
        entries.push((entry.name.clone(), bindings));
    }
    Ok(entries)
}

/// Binding 0: the kernel's params, a slice of the recording's uniform arena
/// chosen by a dynamic offset.
fn params_binding(min_binding_size: Option<NonZeroU64>) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size,
        },
        count: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_entry_point_has_params_then_tensors_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut entries = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            let bindings =
                entry_bindings(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!bindings.is_empty(), "{}", path.display());
            entries += bindings.len();
        }
        assert!(entries > 50, "{entries} entry points");
    }

    #[test]
    fn read_only_storage_is_told_from_read_write() {
        let source = "@group(0) @binding(0) var<uniform> p: vec4<f32>;
            @group(0) @binding(1) var<storage, read> a: array<f32>;
            @group(0) @binding(2) var<storage, read_write> b: array<f32>;
            @group(0) @binding(2) var<storage, read> unused_alias: array<f32>;
            @compute @workgroup_size(1) fn main() { b[0] = a[0] * p.x; }";
        let entries = entry_bindings(source).unwrap();
        let kinds: Vec<_> = entries[0]
            .1
            .iter()
            .map(|b| match b.ty {
                wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset,
                    ..
                } => (b.binding, ty, has_dynamic_offset),
                _ => unreachable!(),
            })
            .collect();
        use wgpu::BufferBindingType::{Storage, Uniform};
        assert_eq!(
            kinds,
            vec![
                (0, Uniform, true),
                (1, Storage { read_only: true }, false),
                (2, Storage { read_only: false }, false),
            ]
        );
    }

    #[test]
    fn a_gap_in_the_tensor_bindings_is_refused() {
        let source = "@group(0) @binding(0) var<uniform> p: vec4<f32>;
            @group(0) @binding(2) var<storage, read_write> b: array<f32>;
            @compute @workgroup_size(1) fn main() { b[0] = p.x; }";
        let err = entry_bindings(source).unwrap_err();
        assert!(err.contains("without gaps"), "{err}");
    }
}

//! Every WGSL file in `shaders/` parses, validates, and translates for every
//! entry point to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL ES
//! (the GL fallback), so a shader that would break on another platform fails
//! here, without any adapter. Shaders with subgroup operations (used only
//! where the device has the SUBGROUP feature) are checked with that
//! capability, against the backend versions that have subgroups: MSL 2.1,
//! HLSL shader model 6.0 and GLSL 4.30.

use naga::back::{glsl, hlsl, msl, spv, PipelineConstants};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::path::Path;

fn translate_entry(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    subgroups: bool,
) -> Result<(), String> {
    let stage = naga::ShaderStage::Compute;
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((stage, entry)),
        &PipelineConstants::default(),
    )
    .map_err(|e| format!("overrides: {e}"))?;

    spv::write_vec(
        &module,
        &info,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: stage,
            entry_point: entry.into(),
        }),
    )
    .map_err(|e| format!("SPIR-V: {e}"))?;

    msl::write_string(
        &module,
        &info,
        &msl::Options {
            lang_version: if subgroups { (2, 1) } else { (1, 0) },
            ..Default::default()
        },
        &msl::PipelineOptions {
            entry_point: Some((stage, entry.into())),
            ..Default::default()
        },
    )
    .map_err(|e| format!("MSL: {e}"))?;

    let hlsl_options = hlsl::Options {
        shader_model: if subgroups {
            hlsl::ShaderModel::V6_0
        } else {
            hlsl::ShaderModel::V5_1
        },
        ..Default::default()
    };
    let hlsl_pipeline = hlsl::PipelineOptions {
        entry_point: Some((stage, entry.into())),
    };
    let mut hlsl_out = String::new();
    hlsl::Writer::new(&mut hlsl_out, &hlsl_options, &hlsl_pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;

    let glsl_options = glsl::Options {
        version: if subgroups {
            glsl::Version::Desktop(430)
        } else {
            glsl::Version::Embedded {
                version: 310,
                is_webgl: false,
            }
        },
        ..Default::default()
    };
    let glsl_pipeline = glsl::PipelineOptions {
        shader_stage: stage,
        entry_point: entry.into(),
        multiview: None,
    };
    let mut glsl_out = String::new();
    glsl::Writer::new(
        &mut glsl_out,
        &module,
        &info,
        &glsl_options,
        &glsl_pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| format!("GLSL: {e}"))?;
    Ok(())
}

fn check_shader(path: &Path) -> Result<usize, String> {
    let source = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    let subgroups = source.contains("subgroup");
    let capabilities = if subgroups {
        Capabilities::default() | Capabilities::SUBGROUP
    } else {
        Capabilities::default()
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| e.emit_to_string(&source))?;
    let entries: Vec<String> = module
        .entry_points
        .iter()
        .filter(|e| e.stage == naga::ShaderStage::Compute)
        .map(|e| e.name.clone())
        .collect();
    if entries.is_empty() {
        return Err("no compute entry point".into());
    }
    for entry in &entries {
        translate_entry(&module, &info, entry, subgroups)
            .map_err(|e| format!("entry `{entry}`: {e}"))?;
    }
    Ok(entries.len())
}

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no shaders found in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        match check_shader(file) {
            Ok(n) => eprintln!("{}: {n} entry points ok", file.display()),
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "shaders that fail:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_broken_shader_is_caught() {
    let source = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    let module = naga::front::wgsl::parse_str(source);
    let rejected = match module {
        Err(_) => true,
        Ok(m) => Validator::new(ValidationFlags::all(), Capabilities::default())
            .validate(&m)
            .is_err(),
    };
    assert!(rejected);
}

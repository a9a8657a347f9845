//! The runtime itself: adapter choice by name and index, errors that come
//! back as `Result`s, buffer reuse, one-submit recording and timestamps.

use audionas::gpu::{AdapterOptions, BackendChoice, Gpu, GpuError, Shader};
use audionas::kernels::elementwise::{fill, scale};

#[test]
fn backend_names_parse_and_unknown_ones_are_refused() {
    assert_eq!(
        "Vulkan".parse::<BackendChoice>().unwrap(),
        BackendChoice::Vulkan
    );
    assert_eq!("gl".parse::<BackendChoice>().unwrap(), BackendChoice::Gl);
    assert_eq!(
        "auto".parse::<BackendChoice>().unwrap(),
        BackendChoice::Auto
    );
    let err = "cuda".parse::<BackendChoice>().unwrap_err();
    assert!(err.to_string().contains("unknown backend `cuda`"), "{err}");
}

#[test]
fn adapter_chosen_by_index_or_name_and_a_missing_one_is_named() {
    let base = AdapterOptions::from_env().unwrap();
    let first = Gpu::shared().info().name.clone();
    let by_index = AdapterOptions {
        adapter: Some("0".into()),
        ..base.clone()
    };
    let instance = audionas::gpu::new_instance(base.backend);
    let chosen = audionas::gpu::choose_adapter(&instance, &by_index).unwrap();
    assert!(!chosen.get_info().name.is_empty());
    let needle = first[..first.len().min(5)].to_lowercase();
    let by_name = AdapterOptions {
        adapter: Some(needle),
        ..base.clone()
    };
    assert_eq!(
        audionas::gpu::choose_adapter(&instance, &by_name)
            .unwrap()
            .get_info()
            .name,
        first
    );
    let missing = AdapterOptions {
        adapter: Some("no-such-gpu-xyz".into()),
        ..base.clone()
    };
    let err = audionas::gpu::choose_adapter(&instance, &missing).unwrap_err();
    assert!(matches!(err, GpuError::AdapterNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("[0]"),
        "the error lists what is available: {err}"
    );
    let out_of_range = AdapterOptions {
        adapter: Some("99".into()),
        ..base
    };
    assert!(audionas::gpu::choose_adapter(&instance, &out_of_range).is_err());
}

#[test]
fn a_tensor_larger_than_a_binding_allows_is_an_error() {
    let gpu = Gpu::shared();
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let elements = (limit / 4 + 1) as usize;
    let err = gpu.empty(&[elements]).unwrap_err();
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("max_storage_buffer_binding_size"),
        "{err}"
    );
}

#[test]
fn a_broken_shader_is_an_error_not_a_panic() {
    static BROKEN: Shader = Shader {
        name: "broken",
        source: "@group(0) @binding(0) var<uniform> p: vec4<f32>;\n@compute @workgroup_size(1) fn main() { let x: f32 = p.x + 1u; }",
        trusted: false,
    };
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    let err = rec
        .dispatch(&BROKEN, "main", &[], &[0f32; 4], &[], [1, 1, 1])
        .unwrap_err();
    assert!(matches!(err, GpuError::Shader { .. }), "{err}");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn upload_download_round_trip_and_shape_errors() {
    let gpu = Gpu::shared();
    let data: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
    let t = gpu.upload(&[37], &data).unwrap();
    assert_eq!(gpu.download(&t).unwrap(), data);
    let u = gpu.upload_u32(&[3], &[1, 2, u32::MAX]).unwrap();
    assert_eq!(gpu.download_u32(&u).unwrap(), vec![1, 2, u32::MAX]);
    assert!(gpu.upload(&[4], &[1.0; 3]).is_err());
    assert!(t.reshaped(&[36]).is_err());
    assert_eq!(t.reshaped(&[1, 37]).unwrap().shape(), &[1, 37]);
    let z = gpu.full(&[5], 2.5).unwrap();
    assert_eq!(gpu.download(&z).unwrap(), vec![2.5; 5]);
    // An empty tensor reads back as nothing (no cast of an unaligned buffer).
    let empty = gpu.zeros(&[0, 3]).unwrap();
    assert!(gpu.download(&empty).unwrap().is_empty());
    assert!(gpu.download_u32(&empty).unwrap().is_empty());
}

#[test]
fn many_dispatches_in_one_submit_and_a_repeated_step_allocates_no_buffers() {
    let gpu = Gpu::shared();
    let step = || {
        let x = gpu.full(&[1000], 1.0).unwrap();
        let mut rec = gpu.recorder();
        for _ in 0..10 {
            scale(&mut rec, &x, 2.0).unwrap();
        }
        assert_eq!(rec.dispatch_count(), 10);
        rec.submit().unwrap();
        gpu.download(&x).unwrap()
    };
    assert_eq!(step(), vec![1024.0; 1000]);
    let created = gpu.memory().buffers_created;
    assert_eq!(step(), vec![1024.0; 1000]);
    // Other tests share the device; allow for their buffers but not ours.
    assert!(gpu.memory().buffers_created <= created + 1);
}

#[test]
fn timed_recording_reports_every_dispatch() {
    let gpu = Gpu::shared();
    assert!(
        gpu.has_timestamps(),
        "lavapipe and real GPUs have timestamp queries"
    );
    let x = gpu.full(&[100_000], 1.0).unwrap();
    let mut rec = gpu.timed_recorder();
    for _ in 0..3 {
        scale(&mut rec, &x, 0.5).unwrap();
    }
    let times = rec.submit_timed().unwrap();
    assert_eq!(times.len(), 3);
    assert!(
        times
            .iter()
            .all(|t| t.label == "elementwise:scale" && t.nanos > 0.0),
        "{times:?}"
    );
    assert_eq!(gpu.download(&x).unwrap()[0], 0.125);
}

#[test]
fn a_tensor_dropped_while_recording_is_not_handed_out_before_submit() {
    let gpu = Gpu::shared();
    // An unusual size, so no other test's buffers are in play.
    let len = 12_345;
    let mut rec = gpu.recorder();
    let scratch = gpu.full(&[len], 1.0).unwrap();
    scale(&mut rec, &scratch, 2.0).unwrap();
    drop(scratch);
    let fresh = gpu.full(&[len], 5.0).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.download(&fresh).unwrap(), vec![5.0; len]);
}

#[test]
fn copy_range_moves_a_slice_and_refuses_one_out_of_bounds() {
    let gpu = Gpu::shared();
    let src = gpu
        .upload(&[10], &(0..10).map(|i| i as f32).collect::<Vec<_>>())
        .unwrap();
    let dst = gpu.full(&[2, 4], -1.0).unwrap();
    let mut rec = gpu.recorder();
    rec.copy_range(&src, 3, &dst, 2, 5).unwrap();
    rec.copy_range(&src, 0, &dst, 0, 0).unwrap();
    assert!(rec.copy_range(&src, 6, &dst, 0, 5).is_err());
    assert!(rec.copy_range(&src, 0, &dst, 4, 5).is_err());
    rec.submit().unwrap();
    assert_eq!(
        gpu.download(&dst).unwrap(),
        vec![-1.0, -1.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0]
    );
}

#[test]
fn a_reused_buffer_is_bound_with_its_new_size() {
    let gpu = Gpu::shared();
    let mut rec = gpu.recorder();
    let small = rec.empty(&[3]).unwrap();
    fill(&mut rec, &small, 1.0).unwrap();
    let buffer = small.buffer().clone();
    drop(small);
    // The recording hands the small tensor's buffer to the larger one; a
    // bind group cached for the buffer alone would cover 4 elements of 61.
    let large = rec.empty(&[61]).unwrap();
    assert_eq!(large.buffer(), &buffer);
    fill(&mut rec, &large, 1.0).unwrap();
    scale(&mut rec, &large, 2.0).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.download(&large).unwrap(), vec![2.0; 61]);
}

#[test]
fn a_freed_and_reallocated_buffer_gets_a_bind_group_of_its_own() {
    let gpu = Gpu::shared();
    // An unusual size, so no other test's buffers are in play.
    let len = 23_457;
    let run = |value: f32| {
        let x = gpu.full(&[len], value).unwrap();
        let mut rec = gpu.recorder();
        scale(&mut rec, &x, 2.0).unwrap();
        rec.submit().unwrap();
        gpu.download(&x).unwrap()
    };
    assert_eq!(run(1.0), vec![2.0; len]);
    // Back in the pool and out again: the same buffer, rightly the same bind group.
    assert_eq!(run(3.0), vec![6.0; len]);
    // Freed for real, then a new buffer where the old one was.
    gpu.trim_memory();
    assert_eq!(run(5.0), vec![10.0; len]);
}

/// Writes its pipeline constant plus the first params value to `out[0]`.
static CONSTANT: Shader = Shader {
    name: "constant",
    source: "override VALUE: f32 = 0.0;\n\
             @group(0) @binding(0) var<uniform> p: vec4<f32>;\n\
             @group(0) @binding(1) var<storage, read_write> out: array<f32>;\n\
             @compute @workgroup_size(1) fn main() { out[0] = VALUE + p.x; }",
    trusted: false,
};

#[test]
fn a_pipeline_with_other_constants_is_another_pipeline() {
    let gpu = Gpu::shared();
    let outs: Vec<_> = (0..4).map(|_| gpu.zeros(&[1]).unwrap()).collect();
    let mut rec = gpu.recorder();
    for (out, value) in outs.iter().zip([1.5, 2.5, 1.5, -0.0]) {
        rec.dispatch(
            &CONSTANT,
            "main",
            &[("VALUE", value)],
            &[0.25f32; 4],
            &[out],
            [1, 1, 1],
        )
        .unwrap();
    }
    rec.submit().unwrap();
    let got: Vec<f32> = outs.iter().map(|o| gpu.download(o).unwrap()[0]).collect();
    assert_eq!(got, vec![1.75, 2.75, 1.75, 0.25]);
}

#[test]
fn a_dispatch_with_the_wrong_number_of_tensors_is_an_error() {
    let gpu = Gpu::shared();
    let x = gpu.zeros(&[4]).unwrap();
    let mut rec = gpu.recorder();
    let err = rec
        .dispatch(
            &CONSTANT,
            "main",
            &[("VALUE", 1.0)],
            &[0f32; 4],
            &[&x, &x],
            [1, 1, 1],
        )
        .unwrap_err();
    assert!(matches!(err, GpuError::Shape(_)), "{err}");
}

#[test]
fn a_placeholder_keeps_its_shape_and_refuses_every_use_of_a_buffer() {
    let gpu = Gpu::shared();
    let x = gpu.full(&[2, 3], 1.0).unwrap();
    let hole = x.placeholder();
    assert_eq!(hole.shape(), &[2, 3]);
    assert!(hole.is_placeholder() && !x.is_placeholder());
    assert!(!hole.shares_buffer(&x));
    let mut rec = gpu.recorder();
    let err = scale(&mut rec, &hole, 2.0).unwrap_err();
    assert!(matches!(err, GpuError::Order(_)), "{err}");
    assert!(
        err.to_string().contains("placeholder of shape [2, 3]"),
        "{err}"
    );
    assert!(err.to_string().contains("elementwise"), "{err}");
    assert!(rec.copy(&x, &hole).is_err());
    assert!(rec.copy_range(&hole, 0, &x, 0, 1).is_err());
    rec.submit_and_wait().unwrap();
    assert!(gpu.write(&hole, &[0.0; 6]).is_err());
    assert!(gpu.download(&hole).is_err());
}

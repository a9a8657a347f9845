//! Elementwise kernels. Shader: `shaders/elementwise.wgsl`.

use crate::gpu::{grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("elementwise");

const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    scalar: f32,
    _pad: [u32; 2],
}

fn groups(len: usize) -> [u32; 3] {
    grid_1d(len.div_ceil(WORKGROUP) as u32)
}

/// `x *= factor`
pub fn scale(rec: &mut Recorder, x: &Tensor, factor: f32) -> GpuResult<()> {
    let params = Params {
        len: x.len() as u32,
        scalar: factor,
        _pad: [0; 2],
    };
    rec.dispatch(&SHADER, "scale", &[], &params, &[x], groups(x.len()))
}

pub fn scale_reference(x: &mut [f32], factor: f32) {
    x.iter_mut().for_each(|v| *v *= factor);
}

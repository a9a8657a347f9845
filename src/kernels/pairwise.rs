//! Pairwise products for polynomial operations (`x_i * x_j` of node inputs)
//! and the square, forward and backward. Shader: `shaders/pairwise.wgsl`.
//! Backward passes write their gradients, or add to them with `accumulate`
//! (an input feeding several products collects all their gradients).

use crate::gpu::{grid_1d, GpuResult, Recorder, Shader, Tensor};
use crate::kernels::check::same_shape;

static SHADER: Shader = crate::shader!("pairwise", trusted);
/// The kernel family named in shape errors.
const KERNEL: &str = "pairwise";

const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

fn launch(
    rec: &mut Recorder,
    entry: &str,
    len: usize,
    accumulate: bool,
    tensors: &[&Tensor],
) -> GpuResult<()> {
    let params = Params {
        len: len as u32,
        accumulate: accumulate as u32,
        _pad: [0; 2],
    };
    let groups = grid_1d(len.div_ceil(WORKGROUP) as u32);
    rec.dispatch(&SHADER, entry, &[], &params, tensors, groups)
}

/// `out = a * b` elementwise.
pub fn product(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> GpuResult<()> {
    same_shape(KERNEL, "b", b, a.shape())?;
    same_shape(KERNEL, "out", out, a.shape())?;
    launch(rec, "product", a.len(), false, &[a, b, out])
}

/// `da (+)= dout * b`, `db (+)= dout * a`. For `a * a` use `square`.
pub fn product_backward(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    dout: &Tensor,
    da: &Tensor,
    db: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    for (what, t) in [("b", b), ("dout", dout), ("da", da), ("db", db)] {
        same_shape(KERNEL, what, t, a.shape())?;
    }
    launch(
        rec,
        "product_backward",
        a.len(),
        accumulate,
        &[a, b, dout, da, db],
    )
}

/// `out = x * x` elementwise.
pub fn square(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> GpuResult<()> {
    same_shape(KERNEL, "out", out, x.shape())?;
    launch(rec, "square", x.len(), false, &[x, out])
}

/// `dx (+)= 2 x dout`.
pub fn square_backward(
    rec: &mut Recorder,
    x: &Tensor,
    dout: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> GpuResult<()> {
    same_shape(KERNEL, "dout", dout, x.shape())?;
    same_shape(KERNEL, "dx", dx, x.shape())?;
    launch(rec, "square_backward", x.len(), accumulate, &[x, dout, dx])
}

/// CPU reference of `product`.
pub fn product_reference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

/// CPU reference of `product_backward` (written): `(da, db)`.
pub fn product_backward_reference(a: &[f64], b: &[f64], dout: &[f64]) -> (Vec<f64>, Vec<f64>) {
    (product_reference(dout, b), product_reference(dout, a))
}

pub fn square_reference(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v * v).collect()
}

pub fn square_backward_reference(x: &[f64], dout: &[f64]) -> Vec<f64> {
    x.iter().zip(dout).map(|(v, g)| 2.0 * v * g).collect()
}

//! Pairwise products for polynomial operations (`x_i * x_j` of node inputs)
//! and the square, forward and backward. Shader: `shaders/pairwise.wgsl`.
//! Backward passes write their gradients, or add to them with `accumulate`
//! (an input feeding several products collects all their gradients).

use crate::gpu::{ensure, grid_1d, GpuResult, Recorder, Shader, Tensor};

static SHADER: Shader = crate::shader!("pairwise", trusted);

const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

fn same_shape(what: &str, t: &Tensor, want: &Tensor) -> GpuResult<()> {
    ensure(t.shape() == want.shape(), || {
        format!(
            "pairwise: {what} has shape {:?}, expected {:?}",
            t.shape(),
            want.shape()
        )
    })
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
    same_shape("b", b, a)?;
    same_shape("out", out, a)?;
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
        same_shape(what, t, a)?;
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
    same_shape("out", out, x)?;
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
    same_shape("dout", dout, x)?;
    same_shape("dx", dx, x)?;
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

//! Layers that join several inputs: a sum of equal shapes (residual
//! connections, DAG nodes), a weighted sum (ensembles), the product of two
//! (polynomial operations) and a concatenation along the channel axis.

use super::{batch_of, BackwardReads, Layer, Pass};
use crate::gpu::{GpuResult, Recorder, Tensor};
use crate::kernels::complex::{complex_mul, complex_mul_backward};
use crate::kernels::elementwise::{add, add_assign, axpy, scale};
use crate::kernels::layout::{copy_columns, ColumnCopy};
use crate::kernels::pairwise::{product, product_backward};

pub struct Add {
    shape: Vec<usize>,
}

impl Add {
    pub fn new(shape: &[usize]) -> Self {
        Add {
            shape: shape.to_vec(),
        }
    }
}

impl Layer for Add {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    /// A sum of one input (the others masked off) is that input itself.
    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        if let [only] = inputs {
            return Ok((*only).clone());
        }
        let y = rec.empty(inputs[0].shape())?;
        add(rec, inputs[0], inputs[1], &y)?;
        for x in &inputs[2..] {
            add_assign(rec, &y, x)?;
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        _: &mut Recorder,
        _inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        Ok(need_input
            .iter()
            .map(|&n| n.then(|| dout.clone()))
            .collect())
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

/// `sum_i w_i x_i` of inputs of one shape.
pub struct WeightedSum {
    shape: Vec<usize>,
    weights: Vec<f32>,
}

impl WeightedSum {
    pub fn new(shape: &[usize], weights: &[f32]) -> Self {
        WeightedSum {
            shape: shape.to_vec(),
            weights: weights.to_vec(),
        }
    }
}

impl Layer for WeightedSum {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let y = rec.empty(inputs[0].shape())?;
        rec.copy(inputs[0], &y)?;
        scale(rec, &y, self.weights[0])?;
        for (x, &w) in inputs[1..].iter().zip(&self.weights[1..]) {
            axpy(rec, w, x, &y)?;
        }
        Ok(y)
    }

    /// `dx_i = w_i dout`.
    fn backward(
        &mut self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        let mut grads = Vec::with_capacity(need_input.len());
        for (&need, &w) in need_input.iter().zip(&self.weights) {
            grads.push(if need {
                let dx = rec.empty(dout.shape())?;
                rec.copy(dout, &dx)?;
                scale(rec, &dx, w)?;
                Some(dx)
            } else {
                None
            });
        }
        Ok(grads)
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

/// The elementwise product `a * b` of two inputs of one shape.
pub struct Multiply {
    shape: Vec<usize>,
    complex: bool,
}

impl Multiply {
    pub fn new(shape: &[usize]) -> Self {
        Multiply {
            shape: shape.to_vec(),
            complex: false,
        }
    }

    /// The complex product of interleaved pairs (`shape` ends in 2).
    pub fn complex(shape: &[usize]) -> Self {
        Multiply {
            shape: shape.to_vec(),
            complex: true,
        }
    }
}

impl Layer for Multiply {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let y = rec.empty(inputs[0].shape())?;
        match self.complex {
            true => complex_mul(rec, inputs[0], inputs[1], &y)?,
            false => product(rec, inputs[0], inputs[1], &y)?,
        }
        Ok(y)
    }

    /// `da = dout * b`, `db = dout * a` (complex: times the conjugates),
    /// each only when asked for.
    fn backward(
        &mut self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        let (a, b) = (inputs[0], inputs[1]);
        if self.complex {
            // One pass writes both; a gradient not asked for is dropped.
            let (da, db) = (rec.empty(a.shape())?, rec.empty(b.shape())?);
            complex_mul_backward(rec, a, b, dout, &da, &db)?;
            return Ok(vec![
                need_input[0].then_some(da),
                need_input[1].then_some(db),
            ]);
        }
        Ok(match need_input {
            [true, true] => {
                let (da, db) = (rec.empty(a.shape())?, rec.empty(b.shape())?);
                product_backward(rec, a, b, dout, &da, &db, false)?;
                vec![Some(da), Some(db)]
            }
            [true, false] => {
                let da = rec.empty(a.shape())?;
                product(rec, dout, b, &da)?;
                vec![Some(da), None]
            }
            [false, true] => {
                let db = rec.empty(b.shape())?;
                product(rec, dout, a, &db)?;
                vec![None, Some(db)]
            }
            _ => vec![None, None],
        })
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

/// Inputs `[batch, c_i, ...]` with equal trailing shapes, joined into
/// `[batch, sum c_i, ...]`.
pub struct Concat {
    /// Elements per sample of each input.
    widths: Vec<usize>,
    shape: Vec<usize>,
}

impl Concat {
    pub fn new(inputs: &[Vec<usize>]) -> Self {
        let mut shape = inputs[0].clone();
        shape[0] = inputs.iter().map(|s| s[0]).sum();
        Concat {
            widths: inputs.iter().map(|s| s.iter().product()).collect(),
            shape,
        }
    }

    fn copies(&self, batch: usize) -> impl Iterator<Item = ColumnCopy> + '_ {
        let total: usize = self.widths.iter().sum();
        self.widths.iter().scan(0, move |offset, &width| {
            let copy = ColumnCopy {
                rows: batch,
                src_cols: width,
                src_offset: 0,
                dst_cols: total,
                dst_offset: *offset,
                width,
                accumulate: false,
            };
            *offset += width;
            Some(copy)
        })
    }
}

impl Layer for Concat {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let batch = batch_of(inputs[0]);
        let y = rec.empty(&super::batched(batch, &self.shape))?;
        for (copy, x) in self.copies(batch).zip(inputs) {
            copy_columns(rec, &copy, x, &y)?;
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _output: &Tensor,
        dout: &Tensor,
        need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        let batch = batch_of(inputs[0]);
        let mut grads = Vec::with_capacity(inputs.len());
        for ((copy, x), &need) in self.copies(batch).zip(inputs).zip(need_input) {
            if !need {
                grads.push(None);
                continue;
            }
            // The slice of dout that this input became.
            let slice = ColumnCopy {
                src_cols: copy.dst_cols,
                src_offset: copy.dst_offset,
                dst_cols: copy.src_cols,
                dst_offset: 0,
                ..copy
            };
            let dx = rec.empty(x.shape())?;
            copy_columns(rec, &slice, dout, &dx)?;
            grads.push(Some(dx));
        }
        Ok(grads)
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

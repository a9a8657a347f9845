//! Cropping the start of the time and frequency axes: `[c, t, f]` to
//! `[c, t - dt, f - df]` (the shifted half of a factorized reduction), of
//! real values or of complex pairs (`[c, t, f, 2]`).

use super::{batch_of, batched, BackwardReads, Layer, Pass};
use crate::gpu::{GpuResult, Recorder, Tensor};
use crate::kernels::layout::{copy_columns, ColumnCopy};

pub struct Crop {
    /// The logical `[c, t, f]`.
    input: [usize; 3],
    start: [usize; 2],
    /// Floats per position: 2 for complex pairs.
    components: usize,
}

impl Crop {
    pub fn new(input: [usize; 3], start: [usize; 2]) -> Self {
        Crop {
            input,
            start,
            components: 1,
        }
    }

    /// On complex pairs; `input` is the logical `[c, t, f]`.
    pub fn complex(input: [usize; 3], start: [usize; 2]) -> Self {
        Crop {
            components: 2,
            ..Crop::new(input, start)
        }
    }

    /// `shape`, with the pair axis when complex.
    fn with_components(&self, mut shape: Vec<usize>) -> Vec<usize> {
        if self.components == 2 {
            shape.push(2);
        }
        shape
    }

    /// The two column copies that crop a batch: the first `df` of every
    /// row of `f`, then the first `dt` rows of every `[t, f - df]` plane.
    fn copies(&self, batch: usize) -> [ColumnCopy; 2] {
        let [c, t, f] = self.input;
        let k = self.components;
        let (f, df) = (f * k, self.start[1] * k);
        let dt = self.start[0];
        let width = f - df;
        let drop = |rows: usize, cols: usize, offset: usize| ColumnCopy {
            rows,
            src_cols: cols,
            src_offset: offset,
            dst_cols: cols - offset,
            dst_offset: 0,
            width: cols - offset,
            accumulate: false,
        };
        [
            drop(batch * c * t, f, df),
            drop(batch * c, t * width, dt * width),
        ]
    }

    fn shapes(&self, batch: usize) -> [Vec<usize>; 2] {
        let [c, t, f] = self.input;
        let [dt, df] = self.start;
        [
            batched(batch, &self.with_components(vec![c, t, f - df])),
            batched(batch, &self.with_components(vec![c, t - dt, f - df])),
        ]
    }
}

impl Layer for Crop {
    fn output_shape(&self) -> Vec<usize> {
        let [c, t, f] = self.input;
        self.with_components(vec![c, t - self.start[0], f - self.start[1]])
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let batch = batch_of(inputs[0]);
        let [narrow, out] = self.shapes(batch);
        let [columns, rows] = self.copies(batch);
        let narrow = rec.empty(&narrow)?;
        copy_columns(rec, &columns, inputs[0], &narrow)?;
        let y = rec.empty(&out)?;
        copy_columns(rec, &rows, &narrow, &y)?;
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
        if !need_input[0] {
            return Ok(vec![None]);
        }
        let batch = batch_of(inputs[0]);
        let [narrow, _] = self.shapes(batch);
        let [columns, rows] = self.copies(batch);
        // The cropped-off positions get no gradient: zeros.
        let dnarrow = rec.empty(&narrow)?;
        rec.clear(&dnarrow);
        copy_columns(rec, &rows.adjoint(false), dout, &dnarrow)?;
        let dx = rec.empty(inputs[0].shape())?;
        rec.clear(&dx);
        copy_columns(rec, &columns.adjoint(false), &dnarrow, &dx)?;
        Ok(vec![Some(dx)])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::NOTHING
    }
}

//! The layers of a weight-sharing supernet: the architecture weights (a
//! trained table of alphas, in their own parameter group) and the mixed
//! edges that weigh candidate outputs by them.

use super::{BackwardReads, Layer, Param, Pass};
use crate::gpu::{Gpu, GpuError, GpuResult, Recorder, Tensor};
use crate::kernels::mixed_edge::{
    arch_regulariser, edge_gate_backward, edge_gate_forward, mixed_edge_alpha_backward,
    mixed_edge_weights, mixed_terms_backward, mixed_terms_forward, multi_hot_regulariser,
    EdgeWeighting, Regulariser,
};
use crate::util::rng::Rng;

/// The parameter group of architecture weights.
pub const ARCH: &str = "arch";

/// `w = softmax(alpha)` per row, or `sigmoid(alpha)`, for the whole batch;
/// with gates, `w[r, k] = softmax(alpha)[r, k] * sigmoid(beta[r])`.
/// Its gradient is what the mixed layers reading it give back, summed.
pub struct ArchWeights {
    alpha: Param,
    weighting: EdgeWeighting,
    /// A loss on alpha, its weight, and where its value is written.
    regulariser: Option<(Regulariser, f32, Tensor)>,
    gates: Option<Gates>,
    /// Whether the losses on alpha and beta count (a search may switch
    /// them on part way).
    regularising: bool,
}

/// One gate per row and the multi-hot loss on them.
struct Gates {
    beta: Param,
    nodes: usize,
    purity: Regulariser,
    weight: f32,
    loss: Tensor,
    /// The operation weights and gates of the last forward.
    saved: Option<(Tensor, Tensor)>,
}

impl ArchWeights {
    /// Alpha drawn as `init_scale` times a standard normal (DARTS draws
    /// 1e-3 * randn; FairDARTS starts at zero).
    pub fn new(
        gpu: &Gpu,
        rows: usize,
        candidates: usize,
        weighting: EdgeWeighting,
        init_scale: f32,
        rng: &mut Rng,
    ) -> GpuResult<Self> {
        let values: Vec<f32> = (0..rows * candidates)
            .map(|_| init_scale * rng.normal())
            .collect();
        // The architecture optimizer's weight decay applies, as in the references.
        let alpha = Param::new(gpu, "alpha", &[rows, candidates], &values)?.in_group(ARCH);
        Ok(ArchWeights {
            alpha,
            weighting,
            regulariser: None,
            gates: None,
            regularising: true,
        })
    }

    /// Adds a gate `sigmoid(beta)` per row, beta from zero, and `weight`
    /// times the multi-hot loss of kind `purity` over the rows of each of
    /// `nodes` nodes (a DARTS cell's edges, node-major).
    pub fn gated(
        self,
        gpu: &Gpu,
        nodes: usize,
        purity: Regulariser,
        weight: f32,
    ) -> GpuResult<Self> {
        let rows = self.alpha.value.shape()[0];
        let beta = Param::new(gpu, "beta", &[rows, 1], &vec![0.0; rows])?.in_group(ARCH);
        let gates = Gates {
            beta,
            nodes,
            purity,
            weight,
            loss: gpu.zeros(&[1])?,
            saved: None,
        };
        Ok(ArchWeights {
            gates: Some(gates),
            ..self
        })
    }

    /// Adds `weight` times the loss `kind` on alpha to every backward.
    pub fn regularised(
        self,
        gpu: &Gpu,
        regulariser: Option<(Regulariser, f32)>,
    ) -> GpuResult<Self> {
        let regulariser = match regulariser {
            Some((kind, weight)) => Some((kind, weight, gpu.zeros(&[1])?)),
            None => None,
        };
        Ok(ArchWeights {
            regulariser,
            ..self
        })
    }
}

impl Layer for ArchWeights {
    fn output_shape(&self) -> Vec<usize> {
        self.alpha.value.shape().to_vec()
    }

    fn params(&self) -> Vec<&Param> {
        let mut params = vec![&self.alpha];
        params.extend(self.gates.as_ref().map(|g| &g.beta));
        params
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut params = vec![&mut self.alpha];
        params.extend(self.gates.as_mut().map(|g| &mut g.beta));
        params
    }

    fn set_regularising(&mut self, on: bool) {
        self.regularising = on;
    }

    fn saved_bytes(&self) -> u64 {
        let saved = self.gates.as_ref().and_then(|g| g.saved.as_ref());
        saved.map_or(0, |(p, g)| p.bytes() + g.bytes())
    }

    fn forward(&mut self, rec: &mut Recorder, _inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let w = rec.empty(self.alpha.value.shape())?;
        let Some(gates) = &mut self.gates else {
            mixed_edge_weights(rec, self.weighting, &self.alpha.value, &w)?;
            return Ok(w);
        };
        let p = rec.empty(self.alpha.value.shape())?;
        mixed_edge_weights(rec, self.weighting, &self.alpha.value, &p)?;
        let g = rec.empty(gates.beta.value.shape())?;
        mixed_edge_weights(rec, EdgeWeighting::Sigmoid, &gates.beta.value, &g)?;
        edge_gate_forward(rec, &p, &g, &w)?;
        gates.saved = Some((p, g));
        Ok(w)
    }

    fn backward(
        &mut self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        output: &Tensor,
        dout: &Tensor,
        _need_input: &[bool],
    ) -> GpuResult<Vec<Option<Tensor>>> {
        match &mut self.gates {
            None => {
                let grad = &self.alpha.grad;
                mixed_edge_alpha_backward(rec, self.weighting, output, dout, grad, false)?;
            }
            Some(gates) => {
                let (p, g) = gates.saved.take().ok_or_else(|| {
                    GpuError::Order("arch weights: backward needs a forward first".into())
                })?;
                let (dp, dg) = (rec.empty(p.shape())?, rec.empty(g.shape())?);
                edge_gate_backward(rec, &p, &g, dout, &dp, &dg)?;
                let grad = &self.alpha.grad;
                mixed_edge_alpha_backward(rec, self.weighting, &p, &dp, grad, false)?;
                let sigmoid = EdgeWeighting::Sigmoid;
                mixed_edge_alpha_backward(rec, sigmoid, &g, &dg, &gates.beta.grad, false)?;
                if self.regularising {
                    let (beta, grad) = (&gates.beta.value, &gates.beta.grad);
                    let (kind, nodes, weight) = (gates.purity, gates.nodes, gates.weight);
                    multi_hot_regulariser(rec, kind, beta, nodes, weight, &gates.loss, grad, true)?;
                }
            }
        }
        if let Some((kind, weight, loss)) = self.regulariser.as_ref().filter(|_| self.regularising)
        {
            let (value, grad) = (&self.alpha.value, &self.alpha.grad);
            arch_regulariser(rec, *kind, value, *weight, loss, grad, true)?;
        }
        Ok(vec![None])
    }

    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::OUTPUT
    }
}

/// A mixed edge: `y = sum_i w[row, columns[i]] * x_i` over the candidate
/// inputs that are on (a masked candidate is not read and costs nothing).
pub struct Mixed {
    row: usize,
    columns: Vec<usize>,
    shape: Vec<usize>,
    /// Per candidate input: whether the current mask leaves it on.
    on: Vec<bool>,
}

impl Mixed {
    /// `shape` is one candidate's per-sample shape.
    pub fn new(row: usize, columns: Vec<usize>, shape: &[usize]) -> Self {
        Mixed {
            row,
            on: vec![true; columns.len()],
            columns,
            shape: shape.to_vec(),
        }
    }

    /// The weight column of each candidate input given (those that are on).
    fn columns_on(&self) -> Vec<usize> {
        self.columns
            .iter()
            .zip(&self.on)
            .filter(|(_, &on)| on)
            .map(|(&c, _)| c)
            .collect()
    }
}

impl Layer for Mixed {
    fn output_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn read(&mut self, reads: &[bool]) {
        self.on = reads[1..].to_vec();
    }

    fn forward(&mut self, rec: &mut Recorder, inputs: &[&Tensor], _: Pass) -> GpuResult<Tensor> {
        let (w, xs) = (inputs[0], &inputs[1..]);
        let terms: Vec<(usize, &Tensor)> = self
            .columns_on()
            .into_iter()
            .zip(xs.iter().copied())
            .collect();
        let y = rec.empty(xs[0].shape())?;
        mixed_terms_forward(rec, w, self.row, &terms, &y, false)?;
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
        let (w, xs) = (inputs[0], &inputs[1..]);
        let dxs: Vec<Option<Tensor>> = xs
            .iter()
            .zip(&need_input[1..])
            .map(|(x, &need)| need.then(|| rec.empty(x.shape())).transpose())
            .collect::<GpuResult<_>>()?;
        let terms: Vec<(usize, &Tensor, Option<&Tensor>)> = self
            .columns_on()
            .into_iter()
            .zip(xs.iter().copied())
            .zip(&dxs)
            .map(|((c, x), dx)| (c, x, dx.as_ref()))
            .collect();
        // Only this edge's entries of the table get a gradient here.
        let dw = rec.empty(w.shape())?;
        rec.clear(&dw);
        mixed_terms_backward(rec, w, self.row, dout, &terms, &dw)?;
        Ok(std::iter::once(Some(dw)).chain(dxs).collect())
    }

    /// The candidates, for the gradient of their weights.
    fn backward_reads(&self) -> BackwardReads {
        BackwardReads::INPUTS
    }
}

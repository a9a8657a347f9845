//! Partial networks: a mask switches layers or the edges between them off
//! for a pass, and `Activity` says what then runs. Both the network (which
//! records kernels only for running layers) and the cost model (which counts
//! only them) read the same `Activity`, so a partial network costs what it
//! computes.
//!
//! The rules: the input is always there. A layer runs when it is not masked,
//! reads at least one source that is there through an edge that is not
//! masked (for a `mixed` layer, a candidate besides its weights), and its
//! output reaches the last layer through running layers and open edges (a
//! dead end computes nothing). An `add` or a `mixed` sums the inputs it
//! reads; a `concat` gives zeros for the parts it does not read and a
//! `multiply` reads zeros for an input it does not read (so gives zeros);
//! any other layer reads its one input. The last layer always runs: with nothing to
//! read it runs on zeros (a dense head then gives its bias).

use super::arch::{Architecture, LayerSpec, Op, INPUT};
use super::error::ModelError;
use std::collections::{BTreeSet, HashMap};

/// Where a layer reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Input,
    Layer(usize),
}

/// Layers and edges (`from` -> `to`, by layer name) switched off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mask {
    layers: BTreeSet<String>,
    edges: BTreeSet<(String, String)>,
}

impl Mask {
    /// Nothing switched off.
    pub fn none() -> Mask {
        Mask::default()
    }

    pub fn layer_off(mut self, name: &str) -> Mask {
        self.layers.insert(name.to_string());
        self
    }

    /// Switches off the edge from `from` (a layer or `input`) into `to`.
    pub fn edge_off(mut self, from: &str, to: &str) -> Mask {
        self.edges.insert((from.to_string(), to.to_string()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty() && self.edges.is_empty()
    }
}

/// What runs under a mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    /// Per layer: whether it records any kernel.
    pub runs: Vec<bool>,
    /// Per layer, per input (in `inputs` order): whether it reads it.
    pub reads: Vec<Vec<bool>>,
}

impl Activity {
    /// Everything runs and reads everything.
    pub fn full(sources: &[Vec<Source>]) -> Activity {
        Activity {
            runs: vec![true; sources.len()],
            reads: sources.iter().map(|s| vec![true; s.len()]).collect(),
        }
    }
}

impl Architecture {
    /// The sources of every layer: its `inputs` by name, or the previous
    /// layer (the input for the first). Refuses a name that is not an
    /// earlier layer and a name given twice.
    pub fn sources(&self) -> Result<Vec<Vec<Source>>, ModelError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut all = Vec::with_capacity(self.layers.len());
        for (i, spec) in self.layers.iter().enumerate() {
            let name = self.layer_name(i);
            if name == INPUT || index.contains_key(&name) {
                return Err(self.build_error(&name, "the name is taken; give each layer its own"));
            }
            let sources = if spec.inputs.is_empty() {
                vec![if i == 0 {
                    Source::Input
                } else {
                    Source::Layer(i - 1)
                }]
            } else {
                spec.inputs
                    .iter()
                    .map(|n| match n.as_str() {
                        INPUT => Ok(Source::Input),
                        other => index.get(other).map(|&j| Source::Layer(j)).ok_or_else(|| {
                            self.build_error(
                                &name,
                                &format!(
                                    "reads {other:?}, which is not an earlier layer (nor \"input\")"
                                ),
                            )
                        }),
                    })
                    .collect::<Result<_, _>>()?
            };
            all.push(sources);
            index.insert(name, i);
        }
        Ok(all)
    }

    pub(crate) fn build_error(&self, layer: &str, reason: &str) -> ModelError {
        ModelError::Build {
            arch: self.name.clone(),
            layer: layer.to_string(),
            reason: reason.to_string(),
        }
    }

    /// What runs under `mask`. Names in the mask that are not layers (or
    /// edges that do not exist) are refused, and so is masking the last layer.
    pub fn activity(&self, mask: &Mask) -> Result<Activity, ModelError> {
        let sources = self.sources()?;
        let n = self.layers.len();
        if mask.is_empty() {
            return Ok(Activity::full(&sources));
        }
        let names: Vec<String> = (0..n).map(|i| self.layer_name(i)).collect();
        let source_name = |s: &Source| match s {
            Source::Input => INPUT.to_string(),
            Source::Layer(j) => names[*j].clone(),
        };
        for layer in &mask.layers {
            if !names.contains(layer) {
                return Err(ModelError::Build {
                    arch: self.name.clone(),
                    layer: layer.clone(),
                    reason: format!(
                        "is masked but is not a layer of this network; layers: {}",
                        names.join(", ")
                    ),
                });
            }
        }
        for (from, to) in &mask.edges {
            let exists = names
                .iter()
                .position(|n| n == to)
                .is_some_and(|i| sources[i].iter().any(|s| source_name(s) == *from));
            if !exists {
                return Err(self.build_error(
                    to,
                    &format!("the masked edge {from} -> {to} does not exist: {to:?} does not read {from:?}"),
                ));
            }
        }
        if n > 0 && mask.layers.contains(&names[n - 1]) {
            return Err(self.build_error(
                &names[n - 1],
                "the last layer gives the logits and cannot be masked",
            ));
        }
        // Forward: what can run given what it reads.
        let mut runs = vec![false; n];
        let mut reads: Vec<Vec<bool>> = sources.iter().map(|s| vec![false; s.len()]).collect();
        for i in 0..n {
            for (k, s) in sources[i].iter().enumerate() {
                let there = match s {
                    Source::Input => true,
                    Source::Layer(j) => runs[*j],
                };
                reads[i][k] = there && !mask.edges.contains(&(source_name(s), names[i].clone()));
            }
            let data = &reads[i][self.layers[i].op.parameter_inputs().min(reads[i].len())..];
            runs[i] = i + 1 == n || (!mask.layers.contains(&names[i]) && data.contains(&true));
        }
        let mut activity = Activity { runs, reads };
        activity.drop_unread(&sources);
        Ok(activity)
    }

    /// The description without the layers the last layer does not read,
    /// directly or through others: what a derivation leaves when it keeps no
    /// edge from some state.
    pub fn without_unread(&self) -> Result<Architecture, ModelError> {
        let sources = self.sources()?;
        let mut activity = Activity::full(&sources);
        activity.drop_unread(&sources);
        self.pruned(&activity)
    }
}

impl Activity {
    /// Backward: stops what the last layer does not reach.
    fn drop_unread(&mut self, sources: &[Vec<Source>]) {
        let n = self.runs.len();
        let mut needed = vec![false; n];
        if n > 0 {
            needed[n - 1] = true;
        }
        for i in (0..n).rev() {
            if !needed[i] {
                self.runs[i] = false;
                self.reads[i].iter_mut().for_each(|r| *r = false);
                continue;
            }
            for (k, s) in sources[i].iter().enumerate() {
                if let (Source::Layer(j), true) = (s, self.reads[i][k]) {
                    needed[*j] = true;
                }
            }
        }
    }
}

impl Architecture {
    /// The layers marked `gate = true` (a stochastic network's nodes), in order.
    pub fn gated_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| self.layers[i].gate)
            .collect()
    }

    /// The mask of one draw of the gates: gated layer `k` (of
    /// [`gated_layers`](Self::gated_layers)) is off where `open[k]` is false.
    pub fn gate_mask(&self, open: &[bool]) -> Mask {
        self.gated_layers()
            .into_iter()
            .zip(open)
            .filter(|(_, &on)| !on)
            .fold(Mask::none(), |mask, (i, _)| {
                mask.layer_off(&self.layer_name(i))
            })
    }

    /// The plain description of what runs under `activity`: the layers that
    /// run, each reading what it reads, gates dropped. An `add` left with one
    /// input is left out (its readers read that input). A `concat` or
    /// `multiply` that lost an input, or a last layer that reads nothing, has
    /// no plain form and is refused by name.
    pub fn pruned(&self, activity: &Activity) -> Result<Architecture, ModelError> {
        let sources = self.sources()?;
        let n = self.layers.len();
        if activity.runs.len() != n {
            return Err(self.build_error("-", "the activity is for another architecture"));
        }
        let names: Vec<String> = (0..n).map(|i| self.layer_name(i)).collect();
        // What a reader of each layer reads instead of it.
        let mut alias: Vec<String> = names.clone();
        let mut layers: Vec<LayerSpec> = Vec::new();
        for i in (0..n).filter(|&i| activity.runs[i]) {
            let spec = &self.layers[i];
            let read: Vec<String> = sources[i]
                .iter()
                .zip(&activity.reads[i])
                .filter(|(_, &r)| r)
                .map(|(s, _)| match s {
                    Source::Input => INPUT.to_string(),
                    Source::Layer(j) => alias[*j].clone(),
                })
                .collect();
            if read.is_empty() {
                return Err(self.build_error(
                    &names[i],
                    "no path from the input reaches it (every gate on the way is closed), so it has no plain form",
                ));
            }
            let lost = read.len() < sources[i].len();
            match spec.op {
                Op::Add if read.len() == 1 => {
                    alias[i] = read[0].clone();
                    continue;
                }
                Op::Concat | Op::Multiply if lost => {
                    return Err(self.build_error(
                        &names[i],
                        &format!(
                            "{} reads {} of its {} inputs here, which changes what it computes; it has no plain form",
                            spec.op.name(),
                            read.len(),
                            sources[i].len()
                        ),
                    ))
                }
                _ => {}
            }
            let previous = layers
                .last()
                .and_then(|l: &LayerSpec| l.name.clone())
                .unwrap_or_else(|| INPUT.to_string());
            let inputs = if read == [previous] { Vec::new() } else { read };
            layers.push(LayerSpec {
                name: Some(names[i].clone()),
                inputs,
                op: spec.op.clone(),
                gate: false,
            });
        }
        Ok(Architecture {
            name: self.name.clone(),
            init: self.init,
            layers,
        })
    }
}

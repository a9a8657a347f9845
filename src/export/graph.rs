//! Building an ONNX graph node by node: fresh value names, float and int64
//! constants as initializers, and the few multi-node patterns the exported
//! layers share (reshapes that keep the batch axis, the parts of complex
//! values and back).

use super::proto::{
    AttributeProto, NodeProto, TensorProto, ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS, FLOAT,
    INT64,
};

/// An ONNX attribute of a node.
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
}

impl Attr {
    fn proto(self) -> AttributeProto {
        match self {
            Attr::Int(name, i) => AttributeProto {
                name: name.into(),
                r#type: ATTRIBUTE_INT,
                i,
                ..Default::default()
            },
            Attr::Ints(name, ints) => AttributeProto {
                name: name.into(),
                r#type: ATTRIBUTE_INTS,
                ints,
                ..Default::default()
            },
            Attr::Float(name, f) => AttributeProto {
                name: name.into(),
                r#type: ATTRIBUTE_FLOAT,
                f,
                ..Default::default()
            },
        }
    }
}

/// Sizes as ONNX's int64.
pub fn i64s(values: &[usize]) -> Vec<i64> {
    values.iter().map(|&v| v as i64).collect()
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// The prefix of the names made now (the layer being exported).
    scope: String,
    made: usize,
}

impl Graph {
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// A value name not used before, readable as `layer/what_n`.
    fn fresh(&mut self, what: &str) -> String {
        self.made += 1;
        format!("{}/{what}_{}", self.scope, self.made)
    }

    /// One node with one output; returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.op_n(op_type, inputs, attrs, 1).remove(0)
    }

    /// One node with `outputs` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<Attr>,
        outputs: usize,
    ) -> Vec<String> {
        let output: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op_type.to_lowercase()))
            .collect();
        let name = format!("{}/{op_type}_{}", self.scope, self.made);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op_type.into(),
            attribute: attrs.into_iter().map(Attr::proto).collect(),
        });
        output
    }

    /// A node writing to a given name (the graph's output).
    pub fn op_into(&mut self, op_type: &str, inputs: &[&str], output: &str) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: format!("{output}/{op_type}"),
            op_type: op_type.into(),
            attribute: Vec::new(),
        });
    }

    /// A float constant of `dims`.
    pub fn floats(&mut self, what: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: i64s(dims),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A float constant from f64 values.
    pub fn floats64(&mut self, what: &str, dims: &[usize], values: &[f64]) -> String {
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        self.floats(what, dims, &values)
    }

    /// A one-dimensional int64 constant (shapes, axes, indices).
    pub fn ints(&mut self, what: &str, values: &[i64]) -> String {
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A scalar int64 constant.
    pub fn scalar_int(&mut self, what: &str, value: i64) -> String {
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: Vec::new(),
            data_type: INT64,
            name: name.clone(),
            raw_data: value.to_le_bytes().to_vec(),
        });
        name
    }

    /// `x` as `[batch] + sample`: every per-sample shape change.
    pub fn reshape(&mut self, x: &str, sample: &[usize]) -> String {
        let mut shape = vec![0];
        shape.extend(i64s(sample));
        let shape = self.ints("shape", &shape);
        self.op("Reshape", &[x, &shape], vec![])
    }

    /// The real and the imaginary parts of interleaved complex values
    /// `[..., 2]`, each without the pair axis.
    pub fn parts(&mut self, x: &str) -> (String, String) {
        let index = |g: &mut Graph, k: i64| {
            let k = g.scalar_int("part", k);
            g.op("Gather", &[x, &k], vec![Attr::Int("axis", -1)])
        };
        (index(self, 0), index(self, 1))
    }

    /// Interleaved complex values from their parts.
    pub fn join(&mut self, re: &str, im: &str) -> String {
        let axis = self.ints("axes", &[-1]);
        let re = self.op("Unsqueeze", &[re, &axis], vec![]);
        let im = self.op("Unsqueeze", &[im, &axis], vec![]);
        self.op("Concat", &[&re, &im], vec![Attr::Int("axis", -1)])
    }

    /// `sum_k x_k`.
    pub fn sum(&mut self, xs: &[&str]) -> String {
        match xs {
            [one] => self.op("Identity", &[one], vec![]),
            _ => self.op("Sum", xs, vec![]),
        }
    }

    /// Squared magnitude `re^2 + im^2` of interleaved complex values.
    pub fn squared_magnitude(&mut self, x: &str) -> String {
        let square = self.op("Mul", &[x, x], vec![]);
        let axis = self.ints("axes", &[-1]);
        self.op(
            "ReduceSum",
            &[&square, &axis],
            vec![Attr::Int("keepdims", 0)],
        )
    }
}

/// The shape of a per-channel constant that broadcasts against
/// `[batch, channels, rest...]` values: `[channels, 1, ...]`.
pub fn per_channel(channels: usize, sample_rank: usize) -> Vec<usize> {
    let mut dims = vec![1; sample_rank.max(1)];
    dims[0] = channels;
    dims
}

//! A trained model as a standard ONNX graph (opset 17): every layer of its
//! description becomes the ONNX operators that compute the same thing at
//! inference (batch norm with its running statistics, dropout as the
//! identity), weights become initializers, and the feature configuration,
//! its shape and the class names go into the model's metadata, so another
//! runtime can compute the features and name the outputs.
//!
//! Values keep audionas's layouts with a leading batch axis: features
//! `[batch, 1, time, freq]` (complex STFT: `[batch, 1, time, bins, 2]`),
//! logits `[batch, classes]`. Complex layers are exported through their
//! real form: the parts of interleaved `(re, im)` values are taken apart
//! with `Gather`, computed on as real tensors (a complex convolution is four
//! real ones) and interleaved again.

use super::graph::{i64s, per_channel, Attr, Graph};
use super::proto::{
    Dimension, DimensionValue, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, FLOAT, IR_VERSION, OPSET,
};
use crate::kernels::complex_norm::whitening_reference;
use crate::model::arch::{LstmReturns, Op, Pair};
use crate::model::cost::{Cost, Field};
use crate::model::shapes::{conv_of, lstm_steps, pair_stride, separable_geometries, spatial};
use crate::model::{ModelError, Source};
use crate::nn::ConvGeometry;
use crate::train::checkpoint::NamedTensor;
use crate::train::model_file::ModelInfo;
use prost::Message;
use std::collections::HashMap;

/// The graph's input and output names.
pub const INPUT_NAME: &str = "features";
pub const OUTPUT_NAME: &str = "logits";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("layer {layer:?}: op `{op}` cannot be exported to ONNX: {reason}")]
    Unsupported {
        layer: String,
        op: String,
        reason: String,
    },
    #[error("the model has no tensor {0:?}, which its description needs; was it written by this version of audionas?")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?}, the description gives {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What an export wrote, for the command's summary.
pub struct Exported {
    pub bytes: Vec<u8>,
    pub nodes: usize,
    pub initializers: usize,
}

/// The ONNX model of a model file's tensors and info.
pub fn export_onnx(tensors: &[NamedTensor], info: &ModelInfo) -> Result<Exported, ExportError> {
    let arch = &info.architecture;
    let input_shape = info.features.clip_shape();
    let classes = info.classes.len();
    // The cost model checks every shape and setting, naming the layer, so
    // the mappings below take them as valid.
    let cost = Cost::of(arch, &input_shape, classes, info.features.clip_ms, None)?;
    let sources = arch.sources()?;
    let tensors: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut graph = Graph::default();
    let mut outputs: Vec<String> = Vec::with_capacity(arch.layers.len());
    for (i, spec) in arch.layers.iter().enumerate() {
        let name = arch.layer_name(i);
        let unsupported = |reason: &str| ExportError::Unsupported {
            layer: name.clone(),
            op: spec.op.name(),
            reason: reason.into(),
        };
        if spec.gate {
            return Err(unsupported(
                "a gated node of a stochastic super network has no fixed architecture; retrain the sub-network the search kept (its architecture.json) and export that",
            ));
        }
        let inputs: Vec<Value> = sources[i]
            .iter()
            .map(|s| match *s {
                Source::Input => Value {
                    name: INPUT_NAME.into(),
                    shape: input_shape.clone(),
                },
                Source::Layer(j) => Value {
                    name: outputs[j].clone(),
                    shape: cost.layers[j].output.clone(),
                },
            })
            .collect();
        graph.set_scope(&name);
        let layer = Layer {
            name: &name,
            op: &spec.op,
            inputs: &inputs,
            output: &cost.layers[i].output,
            classes,
            tensors: &tensors,
        };
        let out = match cost.layers[i].field {
            Field::Real => layer.real(&mut graph),
            Field::Complex => layer.complex(&mut graph),
        }
        .map_err(|e| match e {
            LayerError::Unsupported(reason) => unsupported(&reason),
            LayerError::Export(e) => e,
        })?;
        outputs.push(out);
    }
    let last = outputs.last().expect("a description has layers");
    graph.op_into("Identity", &[last], OUTPUT_NAME);
    let logits_shape = &cost.layers[cost.layers.len() - 1].output;
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "audionas".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{}: input {INPUT_NAME:?} [batch, {}] features as the metadata's \"features\" configuration computes them; output {OUTPUT_NAME:?} [batch, {}] logits in the order of the metadata's \"classes\"",
            arch.name,
            join_dims(&input_shape),
            join_dims(logits_shape),
        ),
        graph: Some(GraphProto {
            node: std::mem::take(&mut graph.nodes),
            name: arch.name.clone(),
            initializer: std::mem::take(&mut graph.initializers),
            input: vec![value_info(INPUT_NAME, &input_shape)],
            output: vec![value_info(OUTPUT_NAME, logits_shape)],
        }),
        metadata_props: metadata(info, &input_shape),
    };
    let graph_ref = model.graph.as_ref().expect("set above");
    Ok(Exported {
        nodes: graph_ref.node.len(),
        initializers: graph_ref.initializer.len(),
        bytes: model.encode_to_vec(),
    })
}

fn join_dims(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A float tensor `[batch] + sample`, the batch left free.
fn value_info(name: &str, sample: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(DimensionValue::DimParam("batch".into())),
    }];
    dim.extend(sample.iter().map(|&d| Dimension {
        value: Some(DimensionValue::DimValue(d as i64)),
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn metadata(info: &ModelInfo, input_shape: &[usize]) -> Vec<StringStringEntryProto> {
    fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
        serde_json::to_string(value).expect("metadata serialises")
    }
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: key.into(),
        value,
    };
    vec![
        entry("features", json(&info.features)),
        entry("feature_shape", json(input_shape)),
        entry("classes", json(&info.classes)),
        entry("architecture", info.architecture.to_json()),
    ]
}

/// A value of the graph and its per-sample shape.
struct Value {
    name: String,
    shape: Vec<usize>,
}

enum LayerError {
    /// The op or its setting has no ONNX form: the reason.
    Unsupported(String),
    Export(ExportError),
}

impl From<ExportError> for LayerError {
    fn from(e: ExportError) -> Self {
        LayerError::Export(e)
    }
}

impl From<String> for LayerError {
    fn from(reason: String) -> Self {
        LayerError::Unsupported(reason)
    }
}

type LayerResult<T> = Result<T, LayerError>;

/// One layer being exported.
struct Layer<'a> {
    name: &'a str,
    op: &'a Op,
    inputs: &'a [Value],
    /// Its per-sample output shape.
    output: &'a [usize],
    classes: usize,
    tensors: &'a HashMap<&'a str, &'a NamedTensor>,
}

impl Layer<'_> {
    /// The layer's tensor `what` (a parameter or a buffer), of `shape`.
    fn tensor(&self, what: &str, shape: &[usize]) -> LayerResult<&[f32]> {
        let name = format!("{}.{what}", self.name);
        let t = self
            .tensors
            .get(name.as_str())
            .ok_or_else(|| ExportError::MissingTensor(name.clone()))?;
        if t.shape != shape {
            return Err(ExportError::TensorShape {
                name,
                expected: shape.to_vec(),
                found: t.shape.clone(),
            }
            .into());
        }
        Ok(&t.data)
    }

    /// The tensor `what` as an initializer.
    fn constant(&self, g: &mut Graph, what: &str, shape: &[usize]) -> LayerResult<String> {
        let data = self.tensor(what, shape)?;
        Ok(g.floats(what, shape, data))
    }

    fn input(&self) -> &Value {
        &self.inputs[0]
    }

    fn names(&self) -> Vec<&str> {
        self.inputs.iter().map(|v| v.name.as_str()).collect()
    }

    /// The op on real values.
    fn real(&self, g: &mut Graph) -> LayerResult<String> {
        let x = self.input().name.as_str();
        let shape = &self.input().shape;
        Ok(match *self.op {
            Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } => {
                let (geometry, bias) = conv_of(self.op, spatial(shape)?).expect("a convolution");
                self.conv(g, x, geometry, "weight", bias.then_some("bias"))?
            }
            Op::SeparableConv2d { .. } => {
                let (geometry, bias) = conv_of(self.op, spatial(shape)?).expect("a convolution");
                let [depthwise, pointwise] = separable_geometries(geometry);
                let middle = self.conv(g, x, depthwise, "depthwise_weight", None)?;
                self.conv(
                    g,
                    &middle,
                    pointwise,
                    "pointwise_weight",
                    bias.then_some("bias"),
                )?
            }
            Op::Dense { units, bias } => {
                let inputs: usize = shape.iter().product();
                let units = units.unwrap_or(self.classes);
                let rows = self.rows(g, x, shape, &[inputs]);
                let w = self.constant(g, "weight", &[units, inputs])?;
                let mut args = vec![rows.as_str(), w.as_str()];
                let b = match bias {
                    true => Some(self.constant(g, "bias", &[units])?),
                    false => None,
                };
                args.extend(b.as_deref());
                g.op("Gemm", &args, vec![Attr::Int("transB", 1)])
            }
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
            } => {
                g.op("MaxPool", &[x], pool_attrs(kernel, stride, padding))
            }
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => {
                let mut attrs = pool_attrs(kernel, stride, padding);
                attrs.push(Attr::Int("count_include_pad", count_include_pad as i64));
                g.op("AveragePool", &[x], attrs)
            }
            Op::GlobalAvgPool => global_mean(g, x, shape.len() + 1, 0),
            Op::BatchNorm { affine, eps, .. } => {
                let c = shape[0];
                let (scale, shift) = match affine {
                    true => (
                        self.constant(g, "weight", &[c])?,
                        self.constant(g, "bias", &[c])?,
                    ),
                    false => (
                        g.floats("scale", &[c], &vec![1.0; c]),
                        g.floats("shift", &[c], &vec![0.0; c]),
                    ),
                };
                let mean = self.constant(g, "running_mean", &[c])?;
                let var = self.constant(g, "running_var", &[c])?;
                g.op(
                    "BatchNormalization",
                    &[x, &scale, &shift, &mean, &var],
                    vec![Attr::Float("epsilon", eps)],
                )
            }
            Op::Relu => g.op("Relu", &[x], vec![]),
            Op::Sigmoid => g.op("Sigmoid", &[x], vec![]),
            Op::Tanh => g.op("Tanh", &[x], vec![]),
            // Dropout drops nothing at inference.
            Op::Dropout { .. } => g.op("Identity", &[x], vec![]),
            Op::Flatten => g.reshape(x, self.output),
            Op::ToSequence => match shape.as_slice() {
                // Each step holds every channel's frequencies.
                [_, _, _] => {
                    let steps = g.op("Transpose", &[x], vec![Attr::Ints("perm", vec![0, 2, 1, 3])]);
                    g.reshape(&steps, self.output)
                }
                _ => g.reshape(x, self.output),
            },
            Op::Lstm { hidden, returns } => self.lstm(g, x, shape, hidden, returns)?,
            Op::Add => g.sum(&self.names()),
            Op::Multiply => self.product(g)?,
            Op::WeightedSum { ref weights } => {
                let terms: Vec<String> = self
                    .names()
                    .iter()
                    .zip(weights)
                    .map(|(x, &w)| {
                        let w = g.floats("weight", &[], &[w]);
                        g.op("Mul", &[x, &w], vec![])
                    })
                    .collect();
                let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
                g.sum(&terms)
            }
            Op::Concat => g.op("Concat", &self.names(), vec![Attr::Int("axis", 1)]),
            Op::Crop { start } => self.crop(g, x, start),
            Op::ArchWeights { .. } | Op::Mixed { .. } => {
                return Err(LayerError::Unsupported(
                    "a supernet's architecture weights and mixed edges are not a fixed architecture; derive one (`audionas search` writes architecture.json), train it, and export that".into(),
                ))
            }
            _ => {
                return Err(LayerError::Unsupported(
                    "takes complex values, but its input is real".into(),
                ))
            }
        })
    }

    /// `x` as a matrix `[batch, sample]` for a dense layer.
    fn rows(&self, g: &mut Graph, x: &str, shape: &[usize], sample: &[usize]) -> String {
        match shape == sample {
            true => x.to_string(),
            false => g.reshape(x, sample),
        }
    }

    fn conv(
        &self,
        g: &mut Graph,
        x: &str,
        geometry: ConvGeometry,
        weight: &str,
        bias: Option<&str>,
    ) -> LayerResult<String> {
        let spec = geometry.spec(1);
        let w = self.constant(g, weight, &spec.weight_shape())?;
        let mut args = vec![x.to_string(), w];
        if let Some(b) = bias {
            args.push(self.constant(g, b, &[geometry.out_channels])?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(g.op("Conv", &args, conv_attrs(&geometry)))
    }

    /// The elementwise product of two inputs (complex: the complex product).
    fn product(&self, g: &mut Graph) -> LayerResult<String> {
        match self.names().as_slice() {
            [a, b] => Ok(g.op("Mul", &[a, b], vec![])),
            other => Err(format!("multiplies two inputs, given {}", other.len()).into()),
        }
    }

    fn crop(&self, g: &mut Graph, x: &str, start: Pair) -> String {
        let starts = g.ints("starts", &i64s(&start.0));
        let ends = g.ints("ends", &[i64::MAX, i64::MAX]);
        let axes = g.ints("axes", &[2, 3]);
        g.op("Slice", &[x, &starts, &ends, &axes], vec![])
    }

    /// ONNX's LSTM is time-major with gates (i, o, f, c); ours (PyTorch's)
    /// are (i, f, g, o), so the weight blocks are reordered.
    fn lstm(
        &self,
        g: &mut Graph,
        x: &str,
        shape: &[usize],
        hidden: usize,
        returns: LstmReturns,
    ) -> LayerResult<String> {
        let (time, features) = lstm_steps(shape)?;
        let steps = g.reshape(x, &[time, features]);
        let steps = g.op(
            "Transpose",
            &[&steps],
            vec![Attr::Ints("perm", vec![1, 0, 2])],
        );
        let four = 4 * hidden;
        let reorder = |data: &[f32], row: usize| -> Vec<f32> {
            let block = hidden * row;
            [0, 3, 1, 2]
                .iter()
                .flat_map(|&k| data[k * block..(k + 1) * block].iter().copied())
                .collect()
        };
        let w = reorder(self.tensor("weight_ih", &[four, features])?, features);
        let r = reorder(self.tensor("weight_hh", &[four, hidden])?, hidden);
        let mut b = reorder(self.tensor("bias_ih", &[four])?, 1);
        b.extend(reorder(self.tensor("bias_hh", &[four])?, 1));
        let w = g.floats("w", &[1, four, features], &w);
        let r = g.floats("r", &[1, four, hidden], &r);
        let b = g.floats("b", &[1, 2 * four], &b);
        let outs = g.op_n(
            "LSTM",
            &[&steps, &w, &r, &b],
            vec![Attr::Int("hidden_size", hidden as i64)],
            2,
        );
        let (sequence, last) = (&outs[0], &outs[1]);
        Ok(match returns {
            // Y_h: [1, batch, hidden].
            LstmReturns::Last => {
                let axis = g.ints("axes", &[0]);
                g.op("Squeeze", &[last, &axis], vec![])
            }
            // Y: [time, 1, batch, hidden].
            LstmReturns::Sequence => {
                let axis = g.ints("axes", &[1]);
                let y = g.op("Squeeze", &[sequence, &axis], vec![]);
                g.op("Transpose", &[&y], vec![Attr::Ints("perm", vec![1, 0, 2])])
            }
        })
    }

    /// The op on complex values `[..., 2]`.
    fn complex(&self, g: &mut Graph) -> LayerResult<String> {
        let x = self.input().name.as_str();
        let shape = &self.input().shape;
        let logical = &shape[..shape.len() - 1];
        Ok(match *self.op {
            Op::ComplexConv2d { .. } | Op::ComplexDepthwiseConv2d { .. } => {
                let (geometry, bias) = conv_of(self.op, spatial(logical)?).expect("a convolution");
                self.complex_conv(g, x, geometry, bias)?
            }
            Op::ComplexDense { units, bias } => {
                let inputs: usize = logical.iter().product();
                let units = units.unwrap_or(self.classes);
                let rows = self.rows(g, x, shape, &[inputs, 2]);
                let (re, im) = g.parts(&rows);
                let w = self.tensor("weight", &[inputs, units, 2])?;
                let (wr, wi) = split_pairs(w);
                let wr = g.floats("weight_re", &[inputs, units], &wr);
                let wi = g.floats("weight_im", &[inputs, units], &wi);
                let (br, bi) = match bias {
                    true => {
                        let (br, bi) = split_pairs(self.tensor("bias", &[units, 2])?);
                        (
                            Some(g.floats("bias_re", &[units], &br)),
                            Some(g.floats("bias_im", &[units], &bi)),
                        )
                    }
                    false => (None, None),
                };
                // (xr + i xi)(wr + i wi) = xr wr - xi wi + i (xr wi + xi wr).
                let rr = g.op("MatMul", &[&re, &wr], vec![]);
                let ii = g.op("MatMul", &[&im, &wi], vec![]);
                let ri = g.op("MatMul", &[&re, &wi], vec![]);
                let ir = g.op("MatMul", &[&im, &wr], vec![]);
                let out_re = g.op("Sub", &[&rr, &ii], vec![]);
                let out_im = g.op("Add", &[&ri, &ir], vec![]);
                let out_re = plus_bias(g, out_re, br.as_deref());
                let out_im = plus_bias(g, out_im, bi.as_deref());
                g.join(&out_re, &out_im)
            }
            Op::ComplexBatchNorm { affine, eps, .. } => {
                self.complex_batch_norm(g, x, logical, affine, eps)?
            }
            Op::Crelu => g.op("Relu", &[x], vec![]),
            Op::Zrelu => {
                // z where re >= 0 and im >= 0.
                let (re, im) = g.parts(x);
                let zero = g.floats("zero", &[], &[0.0]);
                let re_ok = g.op("GreaterOrEqual", &[&re, &zero], vec![]);
                let im_ok = g.op("GreaterOrEqual", &[&im, &zero], vec![]);
                let keep = g.op("And", &[&re_ok, &im_ok], vec![]);
                let keep = g.op("Cast", &[&keep], vec![Attr::Int("to", FLOAT as i64)]);
                let axis = g.ints("axes", &[-1]);
                let keep = g.op("Unsqueeze", &[&keep, &axis], vec![]);
                g.op("Mul", &[x, &keep], vec![])
            }
            Op::Modrelu => {
                // relu(|z| + b) z / |z|, and 0 where |z| = 0 or |z| + b <= 0.
                let c = logical[0];
                let bias = self.tensor("bias", &[c])?;
                let bias = g.floats("bias", &per_channel(c, logical.len()), bias);
                let squared = g.squared_magnitude(x);
                let r = g.op("Sqrt", &[&squared], vec![]);
                let s = g.op("Add", &[&r, &bias], vec![]);
                let zero = g.floats("zero", &[], &[0.0]);
                let s_ok = g.op("Greater", &[&s, &zero], vec![]);
                let r_ok = g.op("Greater", &[&r, &zero], vec![]);
                let keep = g.op("And", &[&s_ok, &r_ok], vec![]);
                let ratio = g.op("Div", &[&s, &r], vec![]);
                let scale = g.op("Where", &[&keep, &ratio, &zero], vec![]);
                let axis = g.ints("axes", &[-1]);
                let scale = g.op("Unsqueeze", &[&scale, &axis], vec![]);
                g.op("Mul", &[x, &scale], vec![])
            }
            Op::Magnitude => {
                let squared = g.squared_magnitude(x);
                g.op("Sqrt", &[&squared], vec![])
            }
            Op::ReIm => {
                // Channel 2k the real parts of channel k, 2k + 1 its
                // imaginary parts: the pair axis moved next to the channels.
                let rank = shape.len() + 1;
                let mut perm: Vec<i64> = vec![0, 1, rank as i64 - 1];
                perm.extend(2..rank as i64 - 1);
                let moved = g.op("Transpose", &[x], vec![Attr::Ints("perm", perm)]);
                g.reshape(&moved, self.output)
            }
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
            } => {
                // The pair of the largest magnitude: pool the squared
                // magnitudes, and gather both parts where the maxima are.
                let squared = g.squared_magnitude(x);
                let pooled = g.op_n(
                    "MaxPool",
                    &[&squared],
                    pool_attrs(kernel, stride, padding),
                    2,
                );
                let at = &pooled[1];
                let (re, im) = g.parts(x);
                let flat = g.ints("flat", &[-1]);
                let gather = |g: &mut Graph, part: &str| {
                    let part = g.op("Reshape", &[part, &flat], vec![]);
                    g.op("Gather", &[&part, at], vec![])
                };
                let (re, im) = (gather(g, &re), gather(g, &im));
                g.join(&re, &im)
            }
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => {
                let attrs = || {
                    let mut a = pool_attrs(kernel, stride, padding);
                    a.push(Attr::Int("count_include_pad", count_include_pad as i64));
                    a
                };
                let (re, im) = g.parts(x);
                let re = g.op("AveragePool", &[&re], attrs());
                let im = g.op("AveragePool", &[&im], attrs());
                g.join(&re, &im)
            }
            Op::GlobalAvgPool => global_mean(g, x, shape.len() + 1, 1),
            Op::Flatten => g.reshape(x, self.output),
            Op::Crop { start } => self.crop(g, x, start),
            Op::Multiply => match self.names().as_slice() {
                [a, b] => {
                    let (ar, ai) = g.parts(a);
                    let (br, bi) = g.parts(b);
                    let rr = g.op("Mul", &[&ar, &br], vec![]);
                    let ii = g.op("Mul", &[&ai, &bi], vec![]);
                    let ri = g.op("Mul", &[&ar, &bi], vec![]);
                    let ir = g.op("Mul", &[&ai, &br], vec![]);
                    let re = g.op("Sub", &[&rr, &ii], vec![]);
                    let im = g.op("Add", &[&ri, &ir], vec![]);
                    g.join(&re, &im)
                }
                other => return Err(format!("multiplies two inputs, given {}", other.len()).into()),
            },
            // On the interleaved floats, the same as on real values.
            Op::Add
            | Op::WeightedSum { .. }
            | Op::Concat
            | Op::ArchWeights { .. }
            | Op::Mixed { .. } => return self.real(g),
            _ => {
                return Err(LayerError::Unsupported(
                    "takes real values, but its input is complex".into(),
                ))
            }
        })
    }

    /// A complex convolution as four real ones on the parts:
    /// `(xr + i xi) * (wr + i wi) = xr*wr - xi*wi + i (xr*wi + xi*wr)`.
    fn complex_conv(
        &self,
        g: &mut Graph,
        x: &str,
        geometry: ConvGeometry,
        bias: bool,
    ) -> LayerResult<String> {
        let spec = geometry.spec(1);
        let shape = spec.weight_shape();
        let (wr, wi) = split_pairs(self.tensor("weight", &[&shape[..], &[2]].concat())?);
        let wr = g.floats("weight_re", &shape, &wr);
        let wi = g.floats("weight_im", &shape, &wi);
        let out = geometry.out_channels;
        let (br, bi) = match bias {
            true => {
                let (br, bi) = split_pairs(self.tensor("bias", &[out, 2])?);
                (
                    Some(g.floats("bias_re", &[out], &br)),
                    Some(g.floats("bias_im", &[out], &bi)),
                )
            }
            false => (None, None),
        };
        let (re, im) = g.parts(x);
        let conv = |g: &mut Graph, x: &str, w: &str, b: Option<&str>| {
            let mut args = vec![x, w];
            args.extend(b);
            g.op("Conv", &args, conv_attrs(&geometry))
        };
        let rr = conv(g, &re, &wr, br.as_deref());
        let ii = conv(g, &im, &wi, None);
        let ri = conv(g, &re, &wi, bi.as_deref());
        let ir = conv(g, &im, &wr, None);
        let out_re = g.op("Sub", &[&rr, &ii], vec![]);
        let out_im = g.op("Add", &[&ri, &ir], vec![]);
        Ok(g.join(&out_re, &out_im))
    }

    /// At inference the complex batch norm is a fixed 2x2 map per channel,
    /// `y = G W (x - mean) + beta` with `W` the inverse square root of the
    /// running covariance (+ eps): `y = M x + (beta - M mean)`.
    fn complex_batch_norm(
        &self,
        g: &mut Graph,
        x: &str,
        logical: &[usize],
        affine: bool,
        eps: f32,
    ) -> LayerResult<String> {
        let c = logical[0];
        let mean = self.tensor("running_mean", &[c, 2])?;
        let cov = self.tensor("running_cov", &[c, 3])?;
        let (gamma, beta) = match affine {
            true => (
                Some(self.tensor("weight", &[c, 3])?),
                Some(self.tensor("bias", &[c, 2])?),
            ),
            false => (None, None),
        };
        let eps = eps as f64;
        // Per channel: M as (rr, ri, ir, ii) and the offset.
        let mut m = [vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]];
        let mut offset = [vec![0.0; c], vec![0.0; c]];
        for k in 0..c {
            let v = [
                cov[3 * k] as f64 + eps,
                cov[3 * k + 1] as f64,
                cov[3 * k + 2] as f64 + eps,
            ];
            let w = whitening_reference(v);
            let gm = gamma.map_or([1.0, 0.0, 1.0], |g| {
                [g[3 * k] as f64, g[3 * k + 1] as f64, g[3 * k + 2] as f64]
            });
            let product = [
                gm[0] * w[0] + gm[1] * w[1],
                gm[0] * w[1] + gm[1] * w[2],
                gm[1] * w[0] + gm[2] * w[1],
                gm[1] * w[1] + gm[2] * w[2],
            ];
            let mu = [mean[2 * k] as f64, mean[2 * k + 1] as f64];
            let b = beta.map_or([0.0, 0.0], |b| [b[2 * k] as f64, b[2 * k + 1] as f64]);
            for (j, p) in product.iter().enumerate() {
                m[j][k] = *p;
            }
            offset[0][k] = b[0] - (product[0] * mu[0] + product[1] * mu[1]);
            offset[1][k] = b[1] - (product[2] * mu[0] + product[3] * mu[1]);
        }
        let dims = per_channel(c, logical.len());
        let (re, im) = g.parts(x);
        let row = |g: &mut Graph, a: &[f64], b: &[f64], o: &[f64]| {
            let a = g.floats64("m", &dims, a);
            let b = g.floats64("m", &dims, b);
            let o = g.floats64("offset", &dims, o);
            let ar = g.op("Mul", &[&re, &a], vec![]);
            let bi = g.op("Mul", &[&im, &b], vec![]);
            g.op("Sum", &[&ar, &bi, &o], vec![])
        };
        let out_re = row(g, &m[0], &m[1], &offset[0]);
        let out_im = row(g, &m[2], &m[3], &offset[1]);
        Ok(g.join(&out_re, &out_im))
    }
}

fn plus_bias(g: &mut Graph, x: String, bias: Option<&str>) -> String {
    match bias {
        Some(b) => g.op("Add", &[&x, b], vec![]),
        None => x,
    }
}

/// The real and the imaginary parts of interleaved pairs.
fn split_pairs(values: &[f32]) -> (Vec<f32>, Vec<f32>) {
    values.chunks_exact(2).map(|p| (p[0], p[1])).unzip()
}

fn conv_attrs(geometry: &ConvGeometry) -> Vec<Attr> {
    let [[top, bottom], [left, right]] = geometry.padding;
    vec![
        Attr::Ints("kernel_shape", i64s(&geometry.kernel)),
        Attr::Ints("strides", i64s(&geometry.stride)),
        Attr::Ints("pads", i64s(&[top, left, bottom, right])),
        Attr::Ints("dilations", i64s(&geometry.dilation)),
        Attr::Int("group", geometry.groups as i64),
    ]
}

/// Pooling's padding is the same on both sides of an axis.
fn pool_attrs(kernel: Pair, stride: Option<Pair>, padding: Pair) -> Vec<Attr> {
    let [ph, pw] = padding.0;
    vec![
        Attr::Ints("kernel_shape", i64s(&kernel.0)),
        Attr::Ints("strides", i64s(&pair_stride(stride, kernel))),
        Attr::Ints("pads", i64s(&[ph, pw, ph, pw])),
    ]
}

/// The mean over every axis after the channels of a tensor of `rank`
/// axes, but the last `keep_last` ones.
fn global_mean(g: &mut Graph, x: &str, rank: usize, keep_last: usize) -> String {
    let axes: Vec<i64> = (2..rank - keep_last).map(|a| a as i64).collect();
    if axes.is_empty() {
        return g.op("Identity", &[x], vec![]);
    }
    g.op(
        "ReduceMean",
        &[x],
        vec![Attr::Ints("axes", axes), Attr::Int("keepdims", 0)],
    )
}

//! Networks built from descriptions: the backward of every layer kind,
//! composed through a DAG, against directional finite differences of the
//! forward on the GPU; shapes, parameter counts and description errors.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::assert_close;
use audionas::model::{Architecture, Cost, Network};
use audionas::nn::{Layer, Multiply, Pass};
use audionas::util::rng::Rng;
use std::path::Path;

fn arch(toml: &str) -> Architecture {
    Architecture::parse(toml, Path::new("test.toml")).unwrap()
}

/// `loss = sum(logits * r)` for fixed r: its gradient w.r.t. the logits is r.
fn loss(gpu: &Gpu, net: &mut Network, x: &Tensor, r: &[f32], pass: Pass) -> f64 {
    let mut rec = gpu.recorder();
    let logits = net.forward(&mut rec, x, pass).unwrap();
    rec.submit_and_wait().unwrap();
    let y = gpu.download(&logits).unwrap();
    y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Compares the analytic derivative along random directions of all the
/// parameters with central differences of the forward.
fn check_gradients(toml: &str, input: &[usize], classes: usize, batch: usize, seed: u64) {
    check_gradients_with_step(toml, input, classes, batch, seed, 1e-2);
}

/// `check_gradients` with central differences of step `h`.
fn check_gradients_with_step(
    toml: &str,
    input: &[usize],
    classes: usize,
    batch: usize,
    seed: u64,
    h: f32,
) {
    let gpu = Gpu::shared();
    let mut net = Network::build(gpu, &arch(toml), input, classes, seed).unwrap();
    let mut rng = Rng::new(seed + 100);
    let shape: Vec<usize> = std::iter::once(batch)
        .chain(input.iter().copied())
        .collect();
    let xs = rng.vec_uniform(shape.iter().product(), -1.0, 1.0);
    let x = gpu.upload(&shape, &xs).unwrap();
    let r = rng.vec_uniform(batch * classes, -1.0, 1.0);
    let dlogits = gpu.upload(&[batch, classes], &r).unwrap();
    let pass = Pass::train(7);

    let mut rec = gpu.recorder();
    net.forward(&mut rec, &x, pass).unwrap();
    net.backward(&mut rec, &dlogits).unwrap();
    rec.submit_and_wait().unwrap();
    let values: Vec<Vec<f32>> = net
        .params()
        .iter()
        .map(|p| gpu.download(&p.value).unwrap())
        .collect();
    let grads: Vec<Vec<f32>> = net
        .params()
        .iter()
        .map(|p| gpu.download(&p.grad).unwrap())
        .collect();

    for direction in 0..3 {
        let v: Vec<Vec<f32>> = values
            .iter()
            .map(|p| rng.vec_uniform(p.len(), -1.0, 1.0))
            .collect();
        let analytic: f64 = grads
            .iter()
            .zip(&v)
            .flat_map(|(g, v)| g.iter().zip(v).map(|(a, b)| *a as f64 * *b as f64))
            .sum();
        let mut at = |sign: f32| {
            for ((p, value), v) in net.params().iter().zip(&values).zip(&v) {
                let moved: Vec<f32> = value.iter().zip(v).map(|(a, b)| a + sign * h * b).collect();
                gpu.write(&p.value, &moved).unwrap();
            }
            loss(gpu, &mut net, &x, &r, pass)
        };
        let numeric = (at(1.0) - at(-1.0)) / (2.0 * h as f64);
        let scale = analytic.abs().max(numeric.abs()).max(1e-2);
        assert!(
            (analytic - numeric).abs() <= 0.03 * scale,
            "direction {direction}: analytic {analytic} vs finite difference {numeric}\n{toml}"
        );
    }
}

#[test]
fn conv_batch_norm_pool_dense_gradients() {
    check_gradients(
        r#"
        name = "convs"
        [[layers]]
        op = "conv2d"
        channels = 4
        kernel = [3, 2]
        stride = [2, 1]
        padding = "same"
        [[layers]]
        op = "batch_norm"
        [[layers]]
        op = "tanh"
        [[layers]]
        op = "depthwise_conv2d"
        kernel = 3
        dilation = [2, 1]
        padding = [2, 1]
        [[layers]]
        op = "separable_conv2d"
        channels = 5
        kernel = [3, 3]
        padding = "same"
        [[layers]]
        op = "sigmoid"
        [[layers]]
        op = "avg_pool2d"
        kernel = [2, 2]
        [[layers]]
        op = "max_pool2d"
        kernel = [1, 2]
        [[layers]]
        op = "dense"
        units = 6
        [[layers]]
        op = "tanh"
        [[layers]]
        op = "dense"
        "#,
        &[1, 9, 8],
        3,
        3,
        1,
    );
}

#[test]
fn dag_with_add_concat_and_global_pool_gradients() {
    check_gradients(
        r#"
        name = "dag"
        [[layers]]
        name = "stem"
        op = "conv2d"
        channels = 3
        kernel = 3
        padding = "same"
        bias = false
        [[layers]]
        name = "a"
        op = "conv2d"
        channels = 3
        kernel = [1, 3]
        padding = "same"
        [[layers]]
        name = "b"
        inputs = ["stem"]
        op = "tanh"
        [[layers]]
        name = "sum"
        inputs = ["a", "b", "stem"]
        op = "add"
        [[layers]]
        name = "cat"
        inputs = ["sum", "input"]
        op = "concat"
        [[layers]]
        op = "batch_norm"
        affine = false
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "dense"
        "#,
        &[1, 6, 5],
        4,
        2,
        2,
    );
}

/// Two branches of a convolution multiplied, the product squared (one
/// layer read twice by a `multiply`), then a dense head.
const PRODUCTS: &str = r#"
    name = "products"
    [[layers]]
    name = "stem"
    op = "conv2d"
    channels = 3
    kernel = [3, 2]
    padding = "same"
    [[layers]]
    name = "a"
    op = "conv2d"
    channels = 3
    kernel = [1, 3]
    padding = "same"
    [[layers]]
    name = "b"
    inputs = ["stem"]
    op = "tanh"
    [[layers]]
    name = "ab"
    inputs = ["a", "b"]
    op = "multiply"
    [[layers]]
    name = "square"
    inputs = ["ab", "ab"]
    op = "multiply"
    [[layers]]
    op = "dense"
    "#;

#[test]
fn dag_with_multiply_gradients() {
    // The square of a product is quartic in the weights: a smaller step
    // keeps the differences' truncation error well below the tolerance.
    check_gradients_with_step(PRODUCTS, &[2, 7, 5], 3, 3, 5, 3e-3);
}

/// The `multiply` layer's input gradients, for each set of inputs asked
/// for, against `dout * other` and directional differences of its forward.
#[test]
fn multiply_layer_input_gradients() {
    let gpu = Gpu::shared();
    let shape = [3, 5, 7, 3];
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(21);
    let mut draw = || rng.vec_uniform(n, -2.0, 2.0);
    let (a, b, g, va, vb) = (draw(), draw(), draw(), draw(), draw());
    let up = |v: &[f32]| gpu.upload(&shape, v).unwrap();
    let (ta, tb, tg) = (up(&a), up(&b), up(&g));
    let mut layer = Multiply::new(&shape[1..]);
    assert_eq!(layer.output_shape(), shape[1..]);
    let times =
        |x: &[f32], y: &[f32]| -> Vec<f32> { x.iter().zip(y).map(|(p, q)| p * q).collect() };

    let mut rec = gpu.recorder();
    let out = layer
        .forward(&mut rec, &[&ta, &tb], Pass::train(0))
        .unwrap();
    rec.submit_and_wait().unwrap();
    assert_close(
        "a * b",
        &gpu.download(&out).unwrap(),
        &times(&a, &b),
        1e-6,
        1e-6,
    );

    for need in [[true, true], [true, false], [false, true], [false, false]] {
        let mut rec = gpu.recorder();
        let grads = layer
            .backward(&mut rec, &[&ta, &tb], &out, &tg, &need)
            .unwrap();
        rec.submit_and_wait().unwrap();
        assert_eq!(grads.len(), 2);
        for ((grad, &asked), want) in grads.iter().zip(&need).zip([times(&g, &b), times(&g, &a)]) {
            match grad {
                Some(d) if asked => assert_close(
                    &format!("{need:?}"),
                    &gpu.download(d).unwrap(),
                    &want,
                    1e-6,
                    1e-6,
                ),
                None if !asked => {}
                _ => panic!("{need:?}: a gradient given or missing against need_input"),
            }
        }
    }

    // loss = sum(g * a * b) along (va, vb), by central differences.
    let mut rec = gpu.recorder();
    let grads = layer
        .backward(&mut rec, &[&ta, &tb], &out, &tg, &[true, true])
        .unwrap();
    rec.submit_and_wait().unwrap();
    let dot =
        |x: &[f32], y: &[f32]| -> f64 { x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum() };
    let [da, db] = [0, 1].map(|k| gpu.download(grads[k].as_ref().unwrap()).unwrap());
    let analytic = dot(&da, &va) + dot(&db, &vb);
    let h = 1e-2f32;
    let mut at = |sign: f32| {
        let moved = |x: &[f32], v: &[f32]| -> Vec<f32> {
            x.iter().zip(v).map(|(p, q)| p + sign * h * q).collect()
        };
        let (ma, mb) = (up(&moved(&a, &va)), up(&moved(&b, &vb)));
        let mut rec = gpu.recorder();
        let y = layer
            .forward(&mut rec, &[&ma, &mb], Pass::train(0))
            .unwrap();
        rec.submit_and_wait().unwrap();
        dot(&gpu.download(&y).unwrap(), &g)
    };
    let numeric = (at(1.0) - at(-1.0)) / (2.0 * h as f64);
    assert!(
        (analytic - numeric).abs() <= 1e-3 * analytic.abs().max(1.0),
        "analytic {analytic} vs finite difference {numeric}"
    );
}

#[test]
fn multiply_counts_one_product_per_element_and_refuses_other_inputs() {
    let gpu = Gpu::shared();
    let input = [2, 7, 5];
    let cost = Cost::of(&arch(PRODUCTS), &input, 3, 1000.0, None).unwrap();
    let net = Network::build(gpu, &arch(PRODUCTS), &input, 3, 0).unwrap();
    assert_eq!(cost.params, net.parameter_count());
    let products: Vec<u64> = cost
        .layers
        .iter()
        .filter(|l| l.op == "multiply")
        .map(|l| l.other.product)
        .collect();
    assert_eq!(products, [3 * 7 * 5, 3 * 7 * 5]);
    assert!(cost
        .layers
        .iter()
        .filter(|l| l.op == "multiply")
        .all(|l| l.params == 0 && l.macs == 0));

    let head = "[[layers]]\nop = \"dense\"\n";
    let cases = [
        ("[[layers]]\nname = \"lonely\"\nop = \"multiply\"\n", "lonely", "exactly two inputs of one shape, given 1"),
        (
            "[[layers]]\nname = \"triple\"\nop = \"multiply\"\ninputs = [\"input\", \"input\", \"input\"]\n",
            "triple",
            "given 3",
        ),
        (
            "[[layers]]\nname = \"p\"\nop = \"max_pool2d\"\nkernel = 2\n[[layers]]\nname = \"odd\"\nop = \"multiply\"\ninputs = [\"p\", \"input\"]\n",
            "odd",
            "two inputs of one shape, given [2, 3, 2] and [2, 7, 5]",
        ),
    ];
    for (body, layer, want) in cases {
        let a = arch(&format!("name = \"bad\"\n{body}{head}"));
        let err = Network::build(gpu, &a, &input, 3, 0)
            .err()
            .expect(body)
            .to_string();
        assert!(err.contains(layer) && err.contains(want), "{err}");
    }
}

#[test]
fn lstm_gradients_last_and_sequence() {
    check_gradients(
        r#"
        name = "recurrent"
        [[layers]]
        op = "lstm"
        hidden = 5
        returns = "sequence"
        [[layers]]
        op = "lstm"
        hidden = 4
        [[layers]]
        op = "dense"
        "#,
        &[1, 6, 3],
        3,
        2,
        3,
    );
}

#[test]
fn dropout_gradients_use_the_forward_mask() {
    check_gradients(
        r#"
        name = "dropout"
        [[layers]]
        op = "flatten"
        [[layers]]
        op = "dense"
        units = 16
        [[layers]]
        op = "dropout"
        rate = 0.5
        [[layers]]
        op = "dense"
        "#,
        &[1, 4, 3],
        3,
        4,
        4,
    );
}

#[test]
fn the_forward_keeps_only_what_backwards_read() {
    let gpu = Gpu::shared();
    let toml = r#"
        name = "kept"
        [[layers]]
        op = "conv2d"
        channels = 3
        kernel = 3
        padding = "same"
        [[layers]]
        op = "relu"
        [[layers]]
        op = "conv2d"
        channels = 2
        kernel = 1
        [[layers]]
        op = "batch_norm"
        affine = false
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "dense"
        "#;
    let mut net = Network::build(gpu, &arch(toml), &[1, 6, 5], 4, 0).unwrap();
    let batch = 2;
    let x = gpu.full(&[batch, 1, 6, 5], 0.5).unwrap();
    let dlogits = gpu.full(&[batch, 4], 1.0).unwrap();
    let mut rec = gpu.recorder();
    net.forward(&mut rec, &x, Pass::train(1)).unwrap();
    net.backward(&mut rec, &dlogits).unwrap();
    rec.submit_and_wait().unwrap();
    // The relu's output (the relu and the second convolution read it), the
    // norm's output (the norm's own backward reads it), the pooled features
    // (the dense layer reads them) and the logits; the norm's statistics
    // besides. The first convolution's input is the network's, and the
    // outputs of both convolutions are let go of.
    let per_sample = 3 * 30 + 2 * 30 + 2 + 4;
    assert_eq!(net.saved_bytes(), 4 * (batch * per_sample + 2 * 2) as u64);
}

#[test]
fn layers_applying_one_activation_to_one_input_share_its_output() {
    // Two ReLUs of the stem, each into a convolution of its own, against
    // one ReLU into both: the same function, and the same weights.
    let net = |relus: &[&str]| {
        let mut toml = String::from(
            "name = \"shared\"\n[[layers]]\nname = \"stem\"\nop = \"conv2d\"\nchannels = 3\nkernel = 3\npadding = \"same\"\n",
        );
        for r in relus {
            toml += &format!("[[layers]]\nname = \"{r}\"\ninputs = [\"stem\"]\nop = \"relu\"\n");
        }
        let last = relus.len() - 1;
        for (c, r) in ["a", "b"].iter().zip([relus[0], relus[last]]) {
            toml += &format!(
                "[[layers]]\nname = \"{c}\"\ninputs = [\"{r}\"]\nop = \"conv2d\"\nchannels = 2\nkernel = 1\n"
            );
        }
        toml += "[[layers]]\ninputs = [\"a\", \"b\"]\nop = \"add\"\n[[layers]]\nop = \"global_avg_pool\"\n[[layers]]\nop = \"dense\"\n";
        toml
    };
    let (two, one) = (net(&["r1", "r2"]), net(&["r"]));
    check_gradients(&two, &[1, 5, 4], 3, 2, 5);

    let gpu = Gpu::shared();
    let run = |toml: &str| {
        let mut net = Network::build(gpu, &arch(toml), &[1, 5, 4], 3, 5).unwrap();
        let mut rng = Rng::new(9);
        let x = gpu
            .upload(&[2, 1, 5, 4], &rng.vec_uniform(40, -1.0, 1.0))
            .unwrap();
        let dlogits = gpu.upload(&[2, 3], &rng.vec_uniform(6, -1.0, 1.0)).unwrap();
        let mut rec = gpu.recorder();
        let logits = net.forward(&mut rec, &x, Pass::train(1)).unwrap();
        net.backward(&mut rec, &dlogits).unwrap();
        let dispatches = rec.dispatch_count();
        rec.submit_and_wait().unwrap();
        let grads: Vec<Vec<f32>> = net
            .params()
            .iter()
            .map(|p| gpu.download(&p.grad).unwrap())
            .collect();
        (
            gpu.download(&logits).unwrap(),
            grads,
            net.saved_bytes(),
            dispatches,
        )
    };
    let (a, b) = (run(&two), run(&one));
    assert_eq!(a.0, b.0, "logits");
    assert_eq!(a.1, b.1, "gradients");
    assert_eq!(a.2, b.2, "saved bytes");
    // The second ReLU records its backward only.
    assert_eq!(a.3, b.3 + 1, "dispatches");
}

#[test]
fn description_round_trips_through_json_and_toml() {
    let a = arch(
        r#"
        name = "rt"
        [[layers]]
        op = "conv2d"
        name = "c"
        channels = 4
        kernel = [3, 2]
        padding = [[1, 2], [0, 1]]
        [[layers]]
        op = "lstm"
        inputs = ["c"]
        hidden = 3
        [[layers]]
        op = "dense"
        "#,
    );
    let json = a.to_json();
    assert_eq!(Architecture::parse(&json, Path::new("a.json")).unwrap(), a);
    let toml = a.to_toml();
    assert_eq!(Architecture::parse(&toml, Path::new("a.toml")).unwrap(), a);
}

#[test]
fn description_errors_name_the_key_and_list_the_valid_ones() {
    let err = Architecture::parse(
        "name = \"x\"\n[[layers]]\nop = \"conv2d\"\nchanels = 3\nkernel = 3\n",
        Path::new("bad.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.toml") && err.contains("chanels"), "{err}");
    assert!(err.contains("channels"), "lists the valid keys: {err}");
    let err = Architecture::parse(
        "name = \"x\"\n[[layers]]\nop = \"conv3d\"\n",
        Path::new("b.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("conv3d") && err.contains("separable_conv2d"),
        "{err}"
    );
    let err = Architecture::parse("name = \"x\"\nlayer = []\n", Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer") && err.contains("layers"), "{err}");
}

#[test]
fn build_errors_name_the_layer() {
    let gpu = Gpu::shared();
    let cases = [
        ("[[layers]]\nop = \"dense\"\nunits = 3\n", "last layer gives"),
        ("[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"conv2d\"\nchannels = 2\nkernel = 1\n[[layers]]\nop = \"dense\"\n", "[channels, time, freq]"),
        ("[[layers]]\nop = \"dense\"\ninputs = [\"nothing\"]\n", "not an earlier layer"),
        ("[[layers]]\nop = \"conv2d\"\nchannels = 2\nkernel = 50\n[[layers]]\nop = \"dense\"\n", "kernel"),
        ("[[layers]]\nop = \"relu\"\n[[layers]]\nop = \"dense\"\ninputs = [\"input\"]\n", "never read"),
    ];
    for (body, want) in cases {
        let a = arch(&format!("name = \"bad\"\n{body}"));
        let err = Network::build(gpu, &a, &[1, 8, 6], 4, 0)
            .err()
            .expect(body)
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn same_seed_same_weights() {
    let gpu = Gpu::shared();
    let a = arch("name = \"s\"\n[[layers]]\nop = \"conv2d\"\nchannels = 3\nkernel = 2\n[[layers]]\nop = \"dense\"\n");
    let w = |seed| {
        let net = Network::build(gpu, &a, &[1, 5, 4], 2, seed).unwrap();
        net.params()
            .iter()
            .flat_map(|p| gpu.download(&p.value).unwrap())
            .collect::<Vec<f32>>()
    };
    assert_eq!(w(3), w(3));
    assert_ne!(w(3), w(4));
}

#[test]
fn layers_too_large_for_the_adapter_are_refused_before_allocating() {
    let gpu = Gpu::shared();
    let cases = [
        (
            "name = \"wide\"\n[[layers]]\nop = \"flatten\"\n[[layers]]\nname = \"huge\"\nop = \"dense\"\nunits = 1000000000\n[[layers]]\nop = \"dense\"\n",
            "huge",
        ),
        (
            "name = \"big_kernel\"\n[[layers]]\nname = \"vast\"\nop = \"conv2d\"\nchannels = 4\nkernel = [100000, 100000]\npadding = \"same\"\n[[layers]]\nop = \"global_avg_pool\"\n[[layers]]\nop = \"dense\"\n",
            "vast",
        ),
    ];
    for (toml, layer) in cases {
        let message = match Network::build(gpu, &arch(toml), &[1, 8, 8], 3, 0) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{layer}: built"),
        };
        assert!(
            message.contains(layer) && message.contains("max_storage_buffer_binding_size"),
            "{message}"
        );
    }
}

#[test]
fn to_sequence_gradients_through_convolutions_and_an_lstm() {
    // A map to a sequence, an LSTM over it, a per-step convolution back to
    // a map and to a sequence again.
    check_gradients(
        r#"
        name = "to_sequence"
        [[layers]]
        op = "conv2d"
        channels = 3
        kernel = [3, 2]
        padding = "same"
        [[layers]]
        op = "to_sequence"
        [[layers]]
        op = "lstm"
        hidden = 4
        returns = "sequence"
        [[layers]]
        op = "to_sequence"
        [[layers]]
        op = "conv2d"
        channels = 5
        kernel = [2, 4]
        padding = [[1, 0], [0, 0]]
        [[layers]]
        op = "to_sequence"
        [[layers]]
        op = "dense"
        "#,
        &[1, 7, 5],
        3,
        3,
        11,
    );
}

#[test]
fn to_sequence_puts_each_steps_channels_side_by_side() {
    use audionas::nn::ToSequence;
    let gpu = Gpu::shared();
    let (b, c, t, f) = (3, 4, 5, 2);
    let xs: Vec<f32> = (0..b * c * t * f).map(|i| i as f32).collect();
    let x = gpu.upload(&[b, c, t, f], &xs).unwrap();
    let mut layer = ToSequence::new(&[c, t, f]);
    assert_eq!(layer.output_shape(), vec![1, t, c * f]);
    let mut rec = gpu.recorder();
    let y = layer.forward(&mut rec, &[&x], Pass::eval()).unwrap();
    let dx = layer.backward(&mut rec, &[&x], &y, &y, &[true]).unwrap();
    rec.submit_and_wait().unwrap();
    let got = gpu.download(&y).unwrap();
    for n in 0..b {
        for s in 0..t {
            for ch in 0..c {
                for k in 0..f {
                    let want = xs[((n * c + ch) * t + s) * f + k];
                    assert_eq!(got[(n * t + s) * c * f + ch * f + k], want);
                }
            }
        }
    }
    // The backward of a permutation is its inverse.
    assert_eq!(gpu.download(dx[0].as_ref().unwrap()).unwrap(), xs);
}

/// Complex layers in a chain on complex features `[1, time, freq, 2]`:
/// convolutions (strided, dilated, depthwise), complex batch norm, modReLU,
/// average pooling,
/// flatten, complex dense, and the parts into a real head. (The magnitude
/// is checked against finite differences in the kernel tests: through a
/// network its curvature near `|z| = 0` defeats a step of 1e-2.)
#[test]
fn complex_chain_gradients() {
    check_gradients(
        r#"
        name = "complex_chain"
        [[layers]]
        op = "complex_conv2d"
        channels = 3
        kernel = [3, 2]
        stride = [2, 1]
        padding = "same"
        [[layers]]
        op = "complex_batch_norm"
        [[layers]]
        op = "modrelu"
        [[layers]]
        op = "complex_depthwise_conv2d"
        kernel = 3
        dilation = [2, 1]
        padding = [2, 1]
        [[layers]]
        op = "avg_pool2d"
        kernel = [2, 2]
        [[layers]]
        op = "flatten"
        [[layers]]
        op = "complex_dense"
        units = 5
        [[layers]]
        op = "re_im"
        [[layers]]
        op = "tanh"
        [[layers]]
        op = "dense"
        "#,
        &[1, 9, 8, 2],
        3,
        3,
        11,
    );
}

/// Max pooling by magnitude jumps from one value to another where two
/// magnitudes tie (unlike a real maximum, it is not continuous there), so
/// its check takes a step small enough that no window changes its winner.
#[test]
fn complex_max_pool_gradients() {
    check_gradients_with_step(
        r#"
        name = "complex_max"
        [[layers]]
        op = "complex_conv2d"
        channels = 3
        kernel = [3, 2]
        [[layers]]
        op = "max_pool2d"
        kernel = [1, 2]
        [[layers]]
        op = "re_im"
        [[layers]]
        op = "dense"
        "#,
        &[1, 9, 8, 2],
        3,
        3,
        11,
        1e-3,
    );
}

/// A complex DAG: the complex product of two branches plus a skip, a
/// concatenation, global average pooling, and the parts as real values.
#[test]
fn complex_dag_gradients() {
    check_gradients(
        r#"
        name = "complex_dag"
        [[layers]]
        name = "c1"
        op = "complex_conv2d"
        channels = 2
        kernel = 3
        padding = 1
        [[layers]]
        name = "a"
        op = "complex_conv2d"
        channels = 2
        kernel = 1
        [[layers]]
        name = "b"
        op = "complex_depthwise_conv2d"
        inputs = ["c1"]
        kernel = [1, 3]
        padding = [0, 1]
        [[layers]]
        name = "ab"
        op = "multiply"
        inputs = ["a", "b"]
        [[layers]]
        name = "sum"
        op = "add"
        inputs = ["ab", "c1"]
        [[layers]]
        op = "concat"
        inputs = ["sum", "a"]
        [[layers]]
        op = "complex_batch_norm"
        affine = false
        [[layers]]
        op = "global_avg_pool"
        [[layers]]
        op = "re_im"
        [[layers]]
        op = "dense"
        "#,
        &[1, 6, 5, 2],
        4,
        2,
        12,
    );
}

/// CReLU and zReLU have kinks at zero parts; a small step keeps the
/// random directions from crossing many of them.
#[test]
fn complex_rectifier_gradients() {
    check_gradients_with_step(
        r#"
        name = "rectifiers"
        [[layers]]
        op = "complex_conv2d"
        channels = 3
        kernel = 2
        [[layers]]
        op = "crelu"
        [[layers]]
        op = "complex_conv2d"
        channels = 2
        kernel = 2
        [[layers]]
        op = "zrelu"
        [[layers]]
        op = "re_im"
        [[layers]]
        op = "dense"
        "#,
        &[1, 5, 4, 2],
        3,
        2,
        13,
        2e-3,
    );
}

/// A complex op on real features, and a real op on complex ones, are
/// refused when the network is built, naming the layer and the features.
#[test]
fn complex_and_real_ops_refuse_the_other_field() {
    let gpu = Gpu::shared();
    let complex_conv =
        "[[layers]]\nname = \"cc\"\nop = \"complex_conv2d\"\nchannels = 2\nkernel = 1\n";
    let real_conv = "[[layers]]\nname = \"rc\"\nop = \"conv2d\"\nchannels = 2\nkernel = 1\n";
    let head = "[[layers]]\nop = \"magnitude\"\n[[layers]]\nop = \"dense\"\n";
    let cases = [
        // Complex on the real log-mel.
        (format!("{complex_conv}{head}"), vec![1, 8, 6], "cc", "features are real"),
        // Real on the complex STFT.
        (format!("{real_conv}[[layers]]\nop = \"dense\"\n"), vec![1, 8, 6, 2], "rc", "features are complex"),
        // Real after a complex layer, without turning it real first.
        (format!("{complex_conv}{real_conv}{head}"), vec![1, 8, 6, 2], "rc", "input is complex"),
        // Complex after the magnitude.
        (format!("{complex_conv}[[layers]]\nop = \"magnitude\"\n[[layers]]\nname = \"m2\"\nop = \"crelu\"\n[[layers]]\nop = \"dense\"\n"), vec![1, 8, 6, 2], "m2", "input is real"),
    ];
    for (body, input, layer, want) in cases {
        let a = arch(&format!("name = \"fields\"\n{body}"));
        let err = Network::build(gpu, &a, &input, 3, 0)
            .err()
            .expect(&body)
            .to_string();
        assert!(err.contains(layer) && err.contains(want), "{err}");
        // Features of the wrong field name the kind that would do.
        assert_eq!(
            err.contains("stft"),
            want.starts_with("features") || want == "input is real",
            "{err}"
        );
    }
    let mixed = arch("name = \"mix\"\n[[layers]]\nname = \"c\"\nop = \"complex_conv2d\"\nchannels = 1\nkernel = 1\n[[layers]]\nname = \"m\"\nop = \"magnitude\"\n[[layers]]\nname = \"both\"\nop = \"add\"\ninputs = [\"m\", \"input\"]\n[[layers]]\nop = \"dense\"\n");
    let err = Network::build(gpu, &mixed, &[1, 4, 3, 2], 2, 0)
        .err()
        .expect("adds real and complex")
        .to_string();
    assert!(
        err.contains("both") && err.contains("mix real and complex"),
        "{err}"
    );
}

/// A complex multiply-accumulate counts as 4 real ones and a complex
/// parameter as 2 real numbers; the built network has exactly the
/// parameters the cost model counts.
#[test]
fn complex_costs_count_real_work() {
    let gpu = Gpu::shared();
    let complex = arch("name = \"c\"\n[[layers]]\nop = \"complex_conv2d\"\nchannels = 3\nkernel = [3, 2]\n[[layers]]\nop = \"modrelu\"\n[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"complex_dense\"\nunits = 4\n[[layers]]\nop = \"magnitude\"\n[[layers]]\nop = \"dense\"\n");
    let real = arch("name = \"r\"\n[[layers]]\nop = \"conv2d\"\nchannels = 3\nkernel = [3, 2]\n[[layers]]\nop = \"relu\"\n[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"dense\"\nunits = 4\n[[layers]]\nop = \"relu\"\n[[layers]]\nop = \"dense\"\n");
    let c = Cost::of(&complex, &[2, 6, 5, 2], 2, 1000.0, None).unwrap();
    let r = Cost::of(&real, &[2, 6, 5], 2, 1000.0, None).unwrap();
    for i in [0, 3] {
        assert_eq!(c.layers[i].macs, 4 * r.layers[i].macs, "layer {i}");
        assert_eq!(c.layers[i].params, 2 * r.layers[i].params, "layer {i}");
    }
    // modReLU: one real bias per channel.
    assert_eq!(c.layers[1].params, 3);
    assert_eq!(c.layers[0].output, vec![3, 4, 4, 2]);
    assert_eq!(c.layers[4].output, vec![4]);
    let net = Network::build(gpu, &complex, &[2, 6, 5, 2], 2, 0).unwrap();
    assert_eq!(net.parameter_count(), c.params);
}

/// An all-zero complex input through complex batch norm and modReLU (where
/// |z| = 0 leaves the direction undefined) gives finite outputs and
/// gradients.
#[test]
fn complex_norm_and_modrelu_stay_finite_on_zeros() {
    let gpu = Gpu::shared();
    let a = arch("name = \"zeros\"\n[[layers]]\nop = \"complex_batch_norm\"\n[[layers]]\nop = \"modrelu\"\n[[layers]]\nop = \"complex_conv2d\"\nchannels = 2\nkernel = 1\n[[layers]]\nop = \"complex_batch_norm\"\n[[layers]]\nop = \"modrelu\"\n[[layers]]\nop = \"re_im\"\n[[layers]]\nop = \"dense\"\n");
    let mut net = Network::build(gpu, &a, &[1, 4, 3, 2], 3, 0).unwrap();
    let x = gpu.zeros(&[2, 1, 4, 3, 2]).unwrap();
    let dlogits = gpu
        .upload(&[2, 3], &[1.0, -1.0, 0.5, 0.2, 0.3, -0.4])
        .unwrap();
    for pass in [Pass::train(1), Pass::eval()] {
        let mut rec = gpu.recorder();
        let logits = net.forward(&mut rec, &x, pass).unwrap();
        net.backward(&mut rec, &dlogits).unwrap();
        rec.submit_and_wait().unwrap();
        let y = gpu.download(&logits).unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{pass:?}: {y:?}");
        for (name, p) in net.named_params() {
            let g = gpu.download(&p.grad).unwrap();
            assert!(g.iter().all(|v| v.is_finite()), "{pass:?} {name}: {g:?}");
        }
    }
}

//! The CPU cost of recording a training step of many small kernels: a deep
//! stack of conv / batch norm / ReLU blocks on a tiny input with a dense
//! head, about 2,000 dispatches per step. `record` times recording one whole
//! step (forward, loss, backward, SGD step) up to just before the submit;
//! `record_submit` adds the submit (wgpu encodes the recorded passes for the
//! driver when the encoder is finished, so that CPU cost lands there) but not
//! the wait; `step` times the whole step including `submit_and_wait`. The
//! ratio of `record` to `step` is the share of a step spent recording.
//!
//! `cargo bench --bench recording`

use audionas::gpu::{Gpu, Recorder};
use audionas::kernels::softmax_xent::{softmax_cross_entropy, SoftmaxXent, XentOutputs};
use audionas::model::{Architecture, Network};
use audionas::nn::optim::{Optimizer, OptimizerKind};
use audionas::nn::{batched, Pass};
use audionas::util::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::time::{Duration, Instant};

const BLOCKS: usize = 104;
const INPUT: [usize; 3] = [1, 6, 6];
const BATCH: usize = 2;
const CLASSES: usize = 4;

fn architecture() -> Architecture {
    let mut toml = String::from("name = \"recording\"\n");
    for _ in 0..BLOCKS {
        toml.push_str(
            "[[layers]]\nop = \"conv2d\"\nchannels = 4\nkernel = [3, 3]\npadding = \"same\"\n\
             [[layers]]\nop = \"batch_norm\"\n[[layers]]\nop = \"relu\"\n",
        );
    }
    toml.push_str("[[layers]]\nop = \"global_avg_pool\"\n[[layers]]\nop = \"dense\"\n");
    Architecture::parse(&toml, Path::new("recording.toml")).unwrap()
}

/// A network, its optimizer and one batch, ready to record training steps.
struct Step {
    network: Network,
    optimizer: Optimizer,
    x: audionas::gpu::Tensor,
    labels: audionas::gpu::Tensor,
    loss: audionas::gpu::Tensor,
    dlogits: audionas::gpu::Tensor,
    correct: audionas::gpu::Tensor,
}

impl Step {
    fn new(gpu: &Gpu) -> Step {
        let network = Network::build(gpu, &architecture(), &INPUT, CLASSES, 1).unwrap();
        let sgd = OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
        let optimizer = Optimizer::new(gpu, sgd, 0.0, None, &network.params()).unwrap();
        let mut rng = Rng::new(2);
        let shape = batched(BATCH, &INPUT);
        let x = gpu
            .upload(&shape, &rng.vec_uniform(shape.iter().product(), -1.0, 1.0))
            .unwrap();
        let labels: Vec<u32> = (0..BATCH).map(|_| rng.below(CLASSES) as u32).collect();
        Step {
            network,
            optimizer,
            x,
            labels: gpu.upload_u32(&[BATCH], &labels).unwrap(),
            loss: gpu.empty(&[BATCH]).unwrap(),
            dlogits: gpu.empty(&[BATCH, CLASSES]).unwrap(),
            correct: gpu.empty(&[1]).unwrap(),
        }
    }

    /// Records forward, loss, backward and the optimizer step.
    fn record(&mut self, rec: &mut Recorder) {
        let logits = self.network.forward(rec, &self.x, Pass::train(3)).unwrap();
        let outputs = XentOutputs {
            loss: &self.loss,
            grad: &self.dlogits,
            correct: &self.correct,
            mean_loss: None,
        };
        let xent = SoftmaxXent::new(BATCH, CLASSES);
        softmax_cross_entropy(rec, &xent, &logits, &self.labels, &outputs).unwrap();
        self.network.backward(rec, &self.dlogits).unwrap();
        self.optimizer
            .step(rec, &self.network.params(), 0.01)
            .unwrap();
    }
}

fn recording(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let mut step = Step::new(gpu);
    let mut rec = gpu.recorder();
    step.record(&mut rec);
    eprintln!("recording: {} dispatches per step", rec.dispatch_count());
    rec.submit_and_wait().unwrap();

    let mut group = c.benchmark_group("recording");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("record", |bench| {
        bench.iter_custom(|iters| {
            let mut recording = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut rec = gpu.recorder();
                step.record(&mut rec);
                recording += start.elapsed();
                rec.submit_and_wait().unwrap();
            }
            recording
        })
    });
    group.bench_function("record_submit", |bench| {
        bench.iter_custom(|iters| {
            let mut recording = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut rec = gpu.recorder();
                step.record(&mut rec);
                rec.submit().unwrap();
                recording += start.elapsed();
                gpu.wait().unwrap();
            }
            recording
        })
    });
    group.bench_function("step", |bench| {
        bench.iter(|| {
            let mut rec = gpu.recorder();
            step.record(&mut rec);
            rec.submit_and_wait().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);

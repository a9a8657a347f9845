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

use audionas::data::batch::Batch;
use audionas::gpu::Gpu;
use audionas::model::{Architecture, Network};
use audionas::nn::optim::OptimizerKind;
use audionas::nn::WEIGHTS;
use audionas::train::session::{GroupConfig, Session, SessionConfig, StepPart};
use audionas::train::LrSchedule;
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

/// A session of the network and one batch, ready to record training steps
/// (SGD with momentum, as `audionas bench`).
fn session(gpu: &'static Gpu) -> (Session<'static>, Batch) {
    let network = Network::build(gpu, &architecture(), &INPUT, CLASSES, 1).unwrap();
    let weights = GroupConfig {
        name: WEIGHTS,
        optimizer: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        lr: 0.01,
        schedule: LrSchedule::default(),
        weight_decay: 0.0,
        clip_norm: None,
    };
    let config = SessionConfig {
        batch_size: BATCH,
        label_smoothing: 0.0,
        seed: 3,
        steps_per_epoch: 1,
        epochs: 1,
        log_every: 1000,
    };
    let session = Session::new(gpu, network, &[weights], config).unwrap();
    let mut rng = Rng::new(2);
    let batch = Batch {
        features: rng.vec_uniform(BATCH * INPUT.iter().product::<usize>(), -1.0, 1.0),
        labels: (0..BATCH).map(|_| rng.below(CLASSES) as u32).collect(),
        shape: vec![BATCH, INPUT[0], INPUT[1], INPUT[2]],
    };
    (session, batch)
}

fn recording(c: &mut Criterion) {
    let gpu = Gpu::shared();
    let (mut session, batch) = session(gpu);
    let part = [StepPart::new(&batch, &[WEIGHTS])];
    let mut step = || session.record(&part).unwrap();
    let rec = step();
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
                let rec = step();
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
                step().submit().unwrap();
                recording += start.elapsed();
                gpu.wait().unwrap();
            }
            recording
        })
    });
    group.bench_function("step", |bench| {
        bench.iter(|| step().submit_and_wait().unwrap())
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);

//! The cost model of a network: parameters, multiply-accumulates per
//! inference and per second of audio, and latency measured on the adapter.

use super::network::Network;
use crate::gpu::{Gpu, GpuResult};
use crate::nn::Pass;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    pub params: u64,
    /// Multiply-accumulates of one inference (one clip).
    pub macs: u64,
    /// Multiply-accumulates per second of audio when a clip is `clip_ms` long
    /// and classified once.
    pub macs_per_second: f64,
}

impl Cost {
    pub fn of(network: &Network, clip_ms: f64) -> Cost {
        let macs = network.macs();
        Cost {
            params: network.parameter_count(),
            macs,
            macs_per_second: macs as f64 * 1000.0 / clip_ms.max(f64::MIN_POSITIVE),
        }
    }
}

/// Median wall time of a batch-`batch` inference (record, submit, wait) over
/// `runs` runs after two untimed ones that compile the pipelines.
pub fn measure_latency(
    gpu: &Gpu,
    network: &mut Network,
    batch: usize,
    runs: usize,
) -> GpuResult<Duration> {
    let shape = crate::nn::batched(batch, network.input_shape());
    let x = gpu.zeros(&shape)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let start = Instant::now();
        let mut rec = gpu.recorder();
        network.forward(&mut rec, &x, Pass::eval())?;
        rec.submit_and_wait()?;
        if i >= 2 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}

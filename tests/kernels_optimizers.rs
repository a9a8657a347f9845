//! Optimizer steps on the GPU against the torch.optim update rules on the CPU,
//! over several steps with a new gradient each step, with and without
//! gradient clipping by a global norm computed on the GPU.

use audionas::gpu::{Gpu, Tensor};
use audionas::kernels::check::assert_close;
use audionas::kernels::optimizers::*;
use audionas::kernels::reductions::{global_norm_reference, SquaresPlan};
use audionas::util::rng::Rng;

const STEPS: u64 = 5;
/// Parameter tensors of awkward lengths: one element, a prime past a
/// workgroup, and a few workgroups.
const LENS: [usize; 3] = [1, 257, 1031];

fn upload(v: &[f32]) -> Tensor {
    Gpu::shared().upload(&[v.len()], v).unwrap()
}

/// Gradients for one step; `big` makes their global norm far above 1.
fn gradients(rng: &mut Rng, big: bool) -> Vec<Vec<f32>> {
    let range = if big { 3.0 } else { 0.01 };
    LENS.iter()
        .map(|&n| rng.vec_uniform(n, -range, range))
        .collect()
}

/// Runs `STEPS` steps of an optimizer on the GPU and on the CPU, one
/// `update(rec, step, tensor index, param, grad, state, clip)` per tensor;
/// the state tensors (`states` per parameter) start at zero.
fn run<G, C>(
    what: &str,
    states: usize,
    max_norm: Option<f32>,
    big: bool,
    gpu_step: G,
    mut cpu_step: C,
) where
    G: Fn(&mut audionas::gpu::Recorder, u64, &Tensor, &Tensor, &[Tensor], Option<&Clip>),
    C: FnMut(u64, &mut [f32], &[f32], &mut [Vec<f32>], f64),
{
    let gpu = Gpu::shared();
    let mut rng = Rng::new(42);
    let mut params: Vec<Vec<f32>> = LENS
        .iter()
        .map(|&n| rng.vec_uniform(n, -1.0, 1.0))
        .collect();
    let mut cpu_states: Vec<Vec<Vec<f32>>> =
        LENS.iter().map(|&n| vec![vec![0.0; n]; states]).collect();
    let t_params: Vec<Tensor> = params.iter().map(|p| upload(p)).collect();
    let t_states: Vec<Vec<Tensor>> = LENS
        .iter()
        .map(|&n| (0..states).map(|_| gpu.zeros(&[n]).unwrap()).collect())
        .collect();
    let plan = SquaresPlan::new(gpu, &LENS).unwrap();
    let norm = gpu.zeros(&[1]).unwrap();
    for step in 1..=STEPS {
        let grads = gradients(&mut rng, big);
        let t_grads: Vec<Tensor> = grads.iter().map(|g| upload(g)).collect();
        let mut rec = gpu.recorder();
        let clip = max_norm.map(|max_norm| Clip {
            norm: &norm,
            max_norm,
        });
        if clip.is_some() {
            plan.global_norm(&mut rec, &t_grads.iter().collect::<Vec<_>>(), &norm)
                .unwrap();
        }
        for i in 0..LENS.len() {
            gpu_step(
                &mut rec,
                step,
                &t_params[i],
                &t_grads[i],
                &t_states[i],
                clip.as_ref(),
            );
        }
        rec.submit_and_wait().unwrap();

        let slices: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
        let scale = max_norm.map_or(1.0, |m| {
            clip_factor_reference(global_norm_reference(&slices), m as f64)
        });
        if let Some(max_norm) = max_norm {
            let clipped = global_norm_reference(&slices) * scale;
            assert_eq!(
                big,
                clipped < global_norm_reference(&slices),
                "{what}: clipping exercised"
            );
            assert!(
                clipped <= max_norm as f64 * (1.0 + 1e-6),
                "{what}: clipped norm {clipped}"
            );
        }
        for i in 0..LENS.len() {
            cpu_step(step, &mut params[i], &grads[i], &mut cpu_states[i], scale);
        }
        for i in 0..LENS.len() {
            let label = format!("{what}, step {step}, tensor of {}", LENS[i]);
            assert_close(
                &label,
                &gpu.download(&t_params[i]).unwrap(),
                &params[i],
                1e-6,
                1e-5,
            );
            for (s, state) in t_states[i].iter().enumerate() {
                assert_close(
                    &format!("{label}, state {s}"),
                    &gpu.download(state).unwrap(),
                    &cpu_states[i][s],
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

fn sgd_case(cfg: Sgd, max_norm: Option<f32>, big: bool) {
    run(
        &format!("{cfg:?} clip {max_norm:?}"),
        1,
        max_norm,
        big,
        |rec, step, p, g, s, clip| sgd_step(rec, &cfg, step, p, g, &s[0], clip).unwrap(),
        |step, p, g, s, scale| sgd_reference(&cfg, step, p, g, &mut s[0], scale),
    );
}

fn adam_case(cfg: Adam, max_norm: Option<f32>, big: bool) {
    run(
        &format!("{cfg:?} clip {max_norm:?}"),
        2,
        max_norm,
        big,
        |rec, step, p, g, s, clip| adam_step(rec, &cfg, step, p, g, &s[0], &s[1], clip).unwrap(),
        |step, p, g, s, scale| {
            let (m, v) = s.split_at_mut(1);
            adam_reference(&cfg, step, p, g, &mut m[0], &mut v[0], scale)
        },
    );
}

#[test]
fn sgd_matches_torch_rules() {
    sgd_case(Sgd::new(0.1), None, true);
    sgd_case(
        Sgd {
            momentum: 0.9,
            ..Sgd::new(0.05)
        },
        None,
        true,
    );
    sgd_case(
        Sgd {
            momentum: 0.9,
            dampening: 0.3,
            weight_decay: 1e-2,
            ..Sgd::new(0.05)
        },
        None,
        true,
    );
    sgd_case(
        Sgd {
            momentum: 0.8,
            nesterov: true,
            weight_decay: 5e-3,
            ..Sgd::new(0.05)
        },
        None,
        true,
    );
}

#[test]
fn adam_and_adamw_match_torch_rules() {
    adam_case(Adam::new(1e-2), None, true);
    adam_case(
        Adam {
            weight_decay: 0.1,
            ..Adam::new(1e-2)
        },
        None,
        true,
    );
    adam_case(
        Adam {
            weight_decay: 0.1,
            ..Adam::adamw(1e-2)
        },
        None,
        true,
    );
    adam_case(
        Adam {
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-3,
            ..Adam::new(3e-2)
        },
        None,
        false,
    );
}

#[test]
fn fused_clipping_scales_only_large_gradients() {
    let momentum = Sgd {
        momentum: 0.9,
        ..Sgd::new(0.05)
    };
    sgd_case(momentum, Some(1.0), true);
    sgd_case(momentum, Some(1.0), false);
    adam_case(Adam::adamw(1e-2), Some(0.5), true);
    adam_case(Adam::adamw(1e-2), Some(0.5), false);
}

#[test]
fn clip_by_global_norm_leaves_small_gradients_and_scales_large_ones_to_max_norm() {
    let gpu = Gpu::shared();
    let max_norm = 2.0f32;
    for big in [false, true] {
        let mut rng = Rng::new(big as u64);
        let grads = gradients(&mut rng, big);
        let tensors: Vec<Tensor> = grads.iter().map(|g| upload(g)).collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let plan = SquaresPlan::new(gpu, &LENS).unwrap();
        let (norm, after) = (gpu.zeros(&[1]).unwrap(), gpu.zeros(&[1]).unwrap());
        let mut rec = gpu.recorder();
        plan.global_norm(&mut rec, &refs, &norm).unwrap();
        clip_by_global_norm(&mut rec, &refs, &norm, max_norm).unwrap();
        plan.global_norm(&mut rec, &refs, &after).unwrap();
        rec.submit_and_wait().unwrap();
        let before = gpu.download(&norm).unwrap()[0];
        let after = gpu.download(&after).unwrap()[0];
        if big {
            assert!(before > 10.0 * max_norm, "norm {before} is not large");
            assert_close("clipped norm", &[after], &[max_norm], 0.0, 2e-6);
        } else {
            assert!(before < max_norm, "norm {before} is not small");
            for (t, g) in tensors.iter().zip(&grads) {
                assert_eq!(&gpu.download(t).unwrap(), g, "a small gradient changed");
            }
        }
    }
}

#[test]
fn rejects_mismatched_state_and_bad_settings() {
    let gpu = Gpu::shared();
    let p = gpu.zeros(&[4]).unwrap();
    let short = gpu.zeros(&[3]).unwrap();
    let mut rec = gpu.recorder();
    let err = adam_step(&mut rec, &Adam::new(0.1), 1, &p, &p, &p, &short, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("v has shape [3]"), "{err}");
    let err = sgd_step(&mut rec, &Sgd::new(0.1), 0, &p, &p, &p, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("count from 1"), "{err}");
    let nesterov = Sgd {
        nesterov: true,
        ..Sgd::new(0.1)
    };
    assert!(sgd_step(&mut rec, &nesterov, 1, &p, &p, &p, None).is_err());
}

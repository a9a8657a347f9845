//! What to train next, from the trials so far: the reference's adaptive
//! coordinate descent (`model_search/search/coordinate_descent.py`) or
//! plain random search. Pure functions of the trials and a generator, so
//! the rules are tested without training anything.

use super::blocks::{fix_order, phase, Phase};
use crate::util::rng::Rng;

/// How towers are proposed.
#[derive(Clone, Debug, PartialEq)]
pub struct ProposalRules {
    pub blocks: Vec<String>,
    pub minimum_depth: usize,
    pub maximum_depth: usize,
    /// Completed trials per extra block of allowed depth.
    pub depth_step: usize,
    pub beam_size: usize,
    /// The chance of inserting a block (while below the allowed depth)
    /// rather than replacing one.
    pub increase_probability: f64,
    /// Random search instead of coordinate descent.
    pub random: bool,
    /// Towers trained first, in order.
    pub suggested: Vec<Vec<String>>,
}

/// A completed trial as the proposal sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub id: i64,
    pub tower: Vec<String>,
    /// Higher is better.
    pub score: f64,
}

/// How a proposal came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    Suggested,
    Random,
    Insert,
    Replace,
}

impl Move {
    pub fn name(&self) -> &'static str {
        match self {
            Move::Suggested => "suggested",
            Move::Random => "random",
            Move::Insert => "insert",
            Move::Replace => "replace",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub tower: Vec<String>,
    pub parent: Option<i64>,
    pub how: Move,
}

/// The depth a tower may reach after `completed` trials: `minimum`, and one
/// more block every `step` completed trials (the reference's thresholds
/// `5 * i`), up to `maximum`.
pub fn allowed_depth(completed: usize, minimum: usize, maximum: usize, step: usize) -> usize {
    (minimum + completed / step.max(1)).min(maximum)
}

/// A tower's depth: its blocks but the flattening one.
pub fn depth(tower: &[String]) -> usize {
    tower
        .iter()
        .filter(|b| phase(b) != Ok(Phase::Flatten))
        .count()
}

/// `depth` random blocks, in order.
pub fn random_tower(blocks: &[String], depth: usize, rng: &mut Rng) -> Vec<String> {
    let tower: Vec<String> = (0..depth)
        .map(|_| blocks[rng.below(blocks.len())].clone())
        .collect();
    fix_order(&tower).expect("blocks are checked when the config is read")
}

/// `tower` with `block` added at the end of its phase: a convolutional
/// block before the flattening block, a dense one at the end; a flattening
/// block takes the place of the tower's.
pub fn insert(tower: &[String], block: &str) -> Vec<String> {
    let new_phase = phase(block).expect("a known block");
    let mut out = tower.to_vec();
    if new_phase == Phase::Flatten {
        if let Some(i) = out.iter().position(|b| phase(b) == Ok(Phase::Flatten)) {
            out[i] = block.to_string();
            return out;
        }
    }
    let at = out
        .iter()
        .position(|b| phase(b).expect("a known block") > new_phase)
        .unwrap_or(out.len());
    out.insert(at, block.to_string());
    fix_order(&out).expect("known blocks")
}

/// `tower` with the block at `position` replaced by `block` and put in
/// order again; `position` must not be the flattening block.
pub fn replace(tower: &[String], position: usize, block: &str) -> Vec<String> {
    let mut out = tower.to_vec();
    out[position] = block.to_string();
    fix_order(&out).expect("known blocks")
}

/// The next tower to train. `started` counts every trial so far (any
/// state), `completed` the successful ones with their scores.
pub fn propose(
    rules: &ProposalRules,
    started: usize,
    completed: &[Scored],
    rng: &mut Rng,
) -> Proposal {
    if let Some(tower) = rules.suggested.get(started) {
        return Proposal {
            tower: fix_order(tower).expect("checked when the config is read"),
            parent: None,
            how: Move::Suggested,
        };
    }
    if rules.random {
        let depth = rules.minimum_depth + rng.below(rules.maximum_depth - rules.minimum_depth + 1);
        return Proposal {
            tower: random_tower(&rules.blocks, depth, rng),
            parent: None,
            how: Move::Random,
        };
    }
    let mut best: Vec<&Scored> = completed.iter().collect();
    // Best first; the earlier trial wins a tie, so the order is reproducible.
    best.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    best.truncate(rules.beam_size);
    if best.is_empty() {
        return Proposal {
            tower: random_tower(&rules.blocks, rules.minimum_depth, rng),
            parent: None,
            how: Move::Random,
        };
    }
    let parent = best[rng.below(best.len())];
    let allowed = allowed_depth(
        completed.len(),
        rules.minimum_depth,
        rules.maximum_depth,
        rules.depth_step,
    );
    let explore = rng.next_f64() < rules.increase_probability;
    let block = &rules.blocks[rng.below(rules.blocks.len())];
    let replaceable: Vec<usize> = (0..parent.tower.len())
        .filter(|&i| phase(&parent.tower[i]) != Ok(Phase::Flatten))
        .collect();
    let (tower, how) = if (depth(&parent.tower) < allowed && explore) || replaceable.is_empty() {
        (insert(&parent.tower, block), Move::Insert)
    } else {
        let position = replaceable[rng.below(replaceable.len())];
        (replace(&parent.tower, position, block), Move::Replace)
    };
    Proposal {
        tower,
        parent: Some(parent.id),
        how,
    }
}

//! Which layers run under a mask: masked layers and edges, layers left
//! without inputs, dead ends, the last layer, and refused masks.

use audionas::model::{Architecture, Mask};
use std::path::Path;

fn arch(toml: &str) -> Architecture {
    Architecture::parse(toml, Path::new("test.toml")).unwrap()
}

/// input -> a -> b -> sum(a, b) ; input -> c -> sum ; sum -> head
const BRANCHES: &str = r#"
name = "branches"
[[layers]]
name = "a"
op = "relu"
[[layers]]
name = "b"
op = "relu"
[[layers]]
name = "c"
op = "relu"
inputs = ["input"]
[[layers]]
name = "sum"
op = "add"
inputs = ["a", "b", "c"]
[[layers]]
name = "head"
op = "dense"
"#;

#[test]
fn no_mask_runs_everything() {
    let a = arch(BRANCHES);
    let act = a.activity(&Mask::none()).unwrap();
    assert_eq!(act.runs, vec![true; 5]);
    assert_eq!(act.reads[3], vec![true, true, true]);
}

#[test]
fn a_masked_layer_and_what_only_it_feeds_do_not_run() {
    let a = arch(BRANCHES);
    let act = a.activity(&Mask::none().layer_off("a")).unwrap();
    // b reads only a, so it has nothing to read.
    assert_eq!(act.runs, vec![false, false, true, true, true]);
    assert_eq!(act.reads[3], vec![false, false, true]);
    assert_eq!(act.reads[1], vec![false]);
}

#[test]
fn a_masked_edge_leaves_a_dead_end_that_does_not_run() {
    let a = arch(BRANCHES);
    // b still reads a, but nothing reads b any more.
    let act = a.activity(&Mask::none().edge_off("b", "sum")).unwrap();
    assert_eq!(act.runs, vec![true, false, true, true, true]);
    assert_eq!(act.reads[3], vec![true, false, true]);
    // a is still read through its own edge into sum.
    let act = a
        .activity(&Mask::none().edge_off("b", "sum").edge_off("a", "sum"))
        .unwrap();
    assert_eq!(act.runs, vec![false, false, true, true, true]);
}

#[test]
fn the_last_layer_runs_on_nothing_when_every_path_is_off() {
    let a = arch(BRANCHES);
    let act = a.activity(&Mask::none().layer_off("sum")).unwrap();
    assert_eq!(act.runs, vec![false, false, false, false, true]);
    assert_eq!(act.reads[4], vec![false]);
}

#[test]
fn bad_masks_are_refused_by_name() {
    let a = arch(BRANCHES);
    let e = a.activity(&Mask::none().layer_off("nope")).unwrap_err();
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("head"),
        "{e}"
    );
    let e = a.activity(&Mask::none().edge_off("c", "b")).unwrap_err();
    assert!(e.to_string().contains("c -> b"), "{e}");
    let e = a.activity(&Mask::none().layer_off("head")).unwrap_err();
    assert!(e.to_string().contains("cannot be masked"), "{e}");
}

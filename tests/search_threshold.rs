//! `search --threshold`: a FairDARTS search that its threshold left without
//! a network derives again at another one, from the weights it has, without
//! training more; a threshold out of range or for another strategy is refused.

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/search.rs"]
mod search_config;

use binary::{failed, ok, run};

#[test]
fn a_finished_fair_darts_search_derives_again_at_another_threshold() {
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    common::write_tone_data(&dir.join("data"), 3);
    let config = search_config::tiny_search(1, "[search]\nstrategy = \"fair-darts\"");
    std::fs::write(dir.join("search.toml"), &config).unwrap();
    let base = ["--data", "data", "--runs", "runs", "--name", "fair"];
    let search = |extra: &[&str]| {
        let mut args = vec!["search"];
        args.extend(base);
        args.extend(extra);
        run(dir, &args)
    };
    let metrics = || std::fs::read_to_string(dir.join("runs/fair/metrics.jsonl")).unwrap();

    // One epoch leaves every sigmoid near 0.5: nothing passes 0.85.
    let e = failed(&search(&["--config", "search.toml"]));
    assert!(e.contains("no node left"), "{e}");
    let trained = metrics();

    for (bad, needle) in [
        ("1.5", "--threshold 1.5 must be in [0, 1)"),
        ("NaN", "must be in [0, 1)"),
    ] {
        let e = failed(&search(&["--resume", "--threshold", bad]));
        assert!(e.contains(needle), "{bad}: {e}");
    }
    ok(search(&["--resume", "--threshold", "0.4"]));
    assert!(dir.join("runs/fair/architecture.json").is_file());
    assert_eq!(metrics(), trained, "deriving again trained more");
    let saved = std::fs::read_to_string(dir.join("runs/fair/config.toml")).unwrap();
    assert!(saved.contains("threshold = 0.4"), "{saved}");

    // The other strategies have no threshold.
    let e = failed(&run(
        dir,
        &[
            "search",
            "--config",
            "search.toml",
            "--strategy",
            "darts",
            "--threshold",
            "0.5",
            "--data",
            "data",
            "--runs",
            "runs",
            "--name",
            "darts",
        ],
    ));
    assert!(
        e.contains("--threshold is for --strategy fair-darts"),
        "{e}"
    );
}

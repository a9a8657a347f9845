//! `audionas compare` on real runs of the binary: two training runs and a
//! DARTS search on one data set, one training run on another, one without
//! a data record; one table per data set, a report per run, and
//! compare.html rendered by headless Chromium (`$AUDIONAS_CHROMIUM`, else
//! `chromium`; skipped without one outside CI, failing in CI).

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/search.rs"]
mod search_config;

use binary::{failed, ok, run};
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let name = std::env::var("AUDIONAS_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (found, std::env::var_os("CI").is_some()) {
        (true, _) => Some(PathBuf::from(name)),
        (false, true) => panic!("{name} not found; scripts/deps.sh installs Debian's chromium"),
        (false, false) => {
            eprintln!("skipped the rendering check: no {name} (set AUDIONAS_CHROMIUM)");
            None
        }
    }
}

/// The page as headless Chromium renders it (scripts run), as HTML.
fn rendered(chromium: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn runs_of_every_kind_compare_by_data_set_and_render() {
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    common::write_tone_data(&dir.join("data"), 1);
    common::write_tone_data(&dir.join("other"), 2);
    std::fs::write(dir.join("tiny.toml"), common::TINY_CONFIG).unwrap();
    std::fs::write(dir.join("search.toml"), search_config::tiny_search(1, "")).unwrap();
    let train = |data: &str, name: &str, epochs: &str| {
        ok(run(
            dir,
            &[
                "train",
                "--config",
                "tiny.toml",
                "--data",
                data,
                "--runs",
                "runs",
                "--name",
                name,
                "--epochs",
                epochs,
            ],
        ))
    };
    train("data", "short", "1");
    train("data", "longer", "3");
    train("other", "elsewhere", "1");
    // A run made before runs recorded their data has only its classes to go by.
    train("data", "old", "1");
    std::fs::remove_file(dir.join("runs/old/data.json")).unwrap();
    ok(run(
        dir,
        &[
            "search",
            "--config",
            "search.toml",
            "--data",
            "data",
            "--runs",
            "runs",
            "--name",
            "darts",
        ],
    ));
    let stdout = ok(run(
        dir,
        &[
            "compare",
            "runs/short",
            "runs/longer",
            "runs/darts",
            "runs/elsewhere",
            "runs/old",
            "--out",
            "out/compare.html",
        ],
    ));
    // One table per data set, in the order given, the search in the first,
    // and the run without a data record in the first whose classes it has.
    let first = stdout.split("group 2").next().unwrap();
    for name in ["short", "longer", "darts", "old"] {
        assert!(first.contains(&format!("| {name} ")), "{stdout}");
    }
    assert!(!first.contains("| elsewhere "), "{stdout}");
    assert!(stdout.contains("2 groups"), "{stdout}");
    let strategy_of = |run: &str| {
        stdout
            .lines()
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
            .find(|cells| cells.get(1) == Some(&run))
            .map(|cells| cells[2].to_string())
    };
    assert_eq!(strategy_of("darts").as_deref(), Some("darts"), "{stdout}");
    assert_eq!(strategy_of("short").as_deref(), Some("train"), "{stdout}");
    for name in ["short", "longer", "darts", "elsewhere"] {
        let report = dir.join("runs").join(name).join("report.html");
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.contains("<h2>Architecture"), "{name}: no architecture");
        assert!(text.contains("(id "), "{name}: no data record");
    }
    let longer = std::fs::read_to_string(dir.join("runs/longer/report.html")).unwrap();
    assert!(longer.contains("Training curves"));
    let page = dir.join("out/compare.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("different data sets or feature settings"));
    assert!(
        !html.contains("<script src") && !html.contains("<link"),
        "the page must not load anything"
    );
    let Some(chromium) = chromium() else { return };
    let dom = rendered(&chromium, &page);
    // Four runs with a test accuracy, each a point on both Pareto plots of
    // its group; five rows; two plots per group.
    assert!(
        dom.contains(r#"data-rendered="rows=5 plots=4 points=8""#),
        "{}",
        dom.lines()
            .find(|l| l.contains("<body"))
            .unwrap_or("no body")
    );
    // Its row, and its loss and accuracy curves.
    let report = rendered(&chromium, &dir.join("runs/longer/report.html"));
    assert!(
        report.contains(r#"data-rendered="rows=1 plots=2 points=0""#),
        "{}",
        report.lines().find(|l| l.contains("<body")).unwrap_or("")
    );
}

#[test]
fn a_folder_that_is_not_a_finished_run_is_named() {
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    std::fs::create_dir_all(dir.join("runs/empty")).unwrap();
    std::fs::write(dir.join("runs/empty/config.toml"), common::TINY_CONFIG).unwrap();
    let output = run(dir, &["compare", "runs/missing"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("runs/missing"), "{stderr}");
    let stderr = failed(&run(dir, &["compare", "runs/empty"]));
    assert!(
        stderr.contains("runs/empty") && stderr.contains("results.json"),
        "{stderr}"
    );
    assert!(!dir.join("compare.html").exists());
}

//! The pictures of a search run, drawn from synthetic arch_weights.jsonl and
//! results.json files: written, decodable, not blank; a run that stopped
//! early; damaged files refused with their names.

use audionas::search::darts::{WeightsRecord, ARCH_WEIGHTS_FILE, RESULTS_FILE};
use audionas::search::plots::{plot_search, CELLS_FILE, HEATMAP_FILE, OVER_EPOCHS_FILE};
use audionas::search::space::OPERATIONS;
use std::collections::HashSet;
use std::path::Path;

const NODES: usize = 4;
const EDGES: usize = 14;
const EPOCHS: usize = 6;

/// Softmax weights drifting towards one operation per edge.
fn table(epoch: usize, shift: usize) -> Vec<Vec<f64>> {
    (0..EDGES)
        .map(|edge| {
            let favourite = (edge + shift) % OPERATIONS.len();
            let logits: Vec<f64> = (0..OPERATIONS.len())
                .map(|o| {
                    if o == favourite {
                        0.4 * epoch as f64
                    } else {
                        0.05 * o as f64
                    }
                })
                .collect();
            let sum: f64 = logits.iter().map(|l| l.exp()).sum();
            logits.iter().map(|l| l.exp() / sum).collect()
        })
        .collect()
}

fn weights_lines(epochs: usize) -> String {
    (1..=epochs)
        .map(|epoch| {
            let record = WeightsRecord {
                normal_gates: None,
                reduce_gates: None,
                epoch,
                ops: OPERATIONS.iter().map(|o| o.to_string()).collect(),
                normal: table(epoch, 1),
                reduce: table(epoch, 4),
            };
            serde_json::to_string(&record).unwrap() + "\n"
        })
        .collect()
}

const RESULTS: &str = r#"{
  "strategy": "darts",
  "epochs_done": 6,
  "seconds": 12.5,
  "genotype": {
    "normal": [[0, 0, "sep_conv_3x3"], [0, 1, "skip"], [1, 1, "sep_conv_5x5"], [1, 2, "dil_conv_3x3"],
               [2, 0, "max_pool_3x3"], [2, 3, "sep_conv_3x3"], [3, 2, "skip"], [3, 4, "dil_conv_5x5"]],
    "reduce": [[0, 0, "max_pool_3x3"], [0, 1, "avg_pool_3x3"], [1, 0, "sep_conv_5x5"], [1, 2, "skip"],
               [2, 1, "dil_conv_3x3"], [2, 3, "max_pool_3x3"], [3, 0, "sep_conv_3x3"], [3, 4, "skip"]],
    "skips": 3
  },
  "params": 1000,
  "macs": 20000,
  "architecture": "architecture.json"
}"#;

/// Width, height and the number of distinct colours of a PNG.
fn decode(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let colours: HashSet<&[u8]> = pixels[..info.buffer_size()].chunks(channels).collect();
    (info.width, info.height, colours.len())
}

fn assert_picture(path: &Path) {
    let (width, height, colours) = decode(path);
    assert!(
        width >= 300 && height >= 200,
        "{}: {width}x{height}",
        path.display()
    );
    assert!(colours >= 8, "{}: {colours} colours", path.display());
}

#[test]
fn a_finished_run_gets_three_pictures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(ARCH_WEIGHTS_FILE), weights_lines(EPOCHS)).unwrap();
    std::fs::write(dir.path().join(RESULTS_FILE), RESULTS).unwrap();
    let written = plot_search(dir.path()).unwrap();
    let names = [HEATMAP_FILE, OVER_EPOCHS_FILE, CELLS_FILE];
    assert_eq!(written, names.map(|n| dir.path().join(n)));
    for path in &written {
        assert_picture(path);
    }
    // The weights over epochs give each of the NODES rows of edges a panel row.
    let (_, height, _) = decode(&dir.path().join(OVER_EPOCHS_FILE));
    assert!(height as usize >= 2 * NODES * 100, "{height}");
}

#[test]
fn a_run_stopped_early_gets_the_weights_it_has() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(ARCH_WEIGHTS_FILE), weights_lines(1)).unwrap();
    let written = plot_search(dir.path()).unwrap();
    assert_eq!(
        written,
        [HEATMAP_FILE, OVER_EPOCHS_FILE].map(|n| dir.path().join(n))
    );
    for path in &written {
        assert_picture(path);
    }
    assert!(!dir.path().join(CELLS_FILE).exists());

    // Before its first epoch ended there is nothing to draw.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join(ARCH_WEIGHTS_FILE), "").unwrap();
    assert!(plot_search(empty.path()).unwrap().is_empty());
}

#[test]
fn damaged_or_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join(ARCH_WEIGHTS_FILE);
    let message = |dir: &Path| plot_search(dir).unwrap_err().to_string();

    let missing = message(dir.path());
    assert!(missing.contains(ARCH_WEIGHTS_FILE), "{missing}");

    // Cut in the middle of the last line, and cut in the middle of a line
    // that another follows.
    let lines = weights_lines(3);
    let truncated = &lines[..lines.len() - 40];
    std::fs::write(&weights, truncated).unwrap();
    let cut = message(dir.path());
    assert!(
        cut.contains(ARCH_WEIGHTS_FILE) && cut.contains(":3:"),
        "{cut}"
    );
    let first_end = lines.find('\n').unwrap();
    let broken = format!("{}\n{}", &lines[..first_end / 2], &lines[first_end + 1..]);
    std::fs::write(&weights, broken).unwrap();
    let broken = message(dir.path());
    assert!(
        broken.contains(ARCH_WEIGHTS_FILE) && broken.contains(":1:"),
        "{broken}"
    );

    // An edge with fewer weights than operations.
    let short = lines.replacen("],[", "],[0.5],[", 1);
    std::fs::write(&weights, short).unwrap();
    let short = message(dir.path());
    let want = format!("weights for {} operations", OPERATIONS.len());
    assert!(short.contains(&want), "{short}");

    std::fs::write(&weights, &lines).unwrap();
    std::fs::write(dir.path().join(RESULTS_FILE), &RESULTS[..100]).unwrap();
    let results = message(dir.path());
    assert!(results.contains(RESULTS_FILE), "{results}");
}

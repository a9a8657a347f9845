//! Replays every input kept in `tests/fuzz_regressions/<target>/` through
//! the reader its fuzz target (fuzz/fuzz_targets/<target>.rs) drives: the
//! crashes the fuzzers found, and small hand-made awkward inputs. Each must
//! be read to a value or a clean error, without a panic.

#[path = "../fuzz/readers.rs"]
mod readers;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_kept_input_is_read_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut read = 0;
    let mut panicked = Vec::new();
    for target in std::fs::read_dir(&root).unwrap() {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_string_lossy().to_string();
        for input in std::fs::read_dir(&target).unwrap() {
            let input = input.unwrap().path();
            let data = std::fs::read(&input).unwrap();
            if catch_unwind(AssertUnwindSafe(|| readers::read(&name, &data))).is_err() {
                panicked.push(input.display().to_string());
            }
            read += 1;
        }
    }
    assert!(read > 0, "no inputs under {}", root.display());
    assert!(panicked.is_empty(), "the readers panicked on {panicked:#?}");
}

#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with cargo-fuzz (libFuzzer):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# runs each target of fuzz/ (all when none are named) for SECONDS (default
# 60), from a seed corpus made of the project's own configs, tiny WAV files
# and a model file, and copies every input that crashed, ran out of memory
# or hung into tests/fuzz_regressions/<target>/, where `cargo test` replays it.
# libFuzzer stops a target at its first crash: fix the reader, run again.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wav experiment_config search_config architecture_json architecture_toml model_file)
fi

# cargo-fuzz needs a nightly compiler; stable passes for one when told to.
if cargo +nightly --version >/dev/null 2>&1; then
    nightly=(+nightly)
else
    nightly=()
    export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

seeds=fuzz/seeds
rm -rf "$seeds"
cargo run --quiet --example fuzz_seeds -- "$seeds"

# Release builds with overflow checks: an overflow is a bug to find, not
# to wrap. The readers are safe Rust, so no sanitizer (it would only slow
# the runs down).
build=(-O --debug-assertions --sanitizer none)
cargo "${nightly[@]}" fuzz build "${build[@]}"

summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    kept="tests/fuzz_regressions/$target"
    mkdir -p "$corpus" "$artifacts" "$kept" fuzz/logs
    cp "$seeds/$target"/* "$kept"/* "$corpus"/ 2>/dev/null || true
    log="fuzz/logs/$target.log"
    echo "== $target: $seconds s"
    start=$SECONDS
    cargo "${nightly[@]}" fuzz run "${build[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || true
    crashes=0
    for input in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-*; do
        [ -e "$input" ] || continue
        mv "$input" "$kept/"
        echo "   kept $kept/$(basename "$input")"
        crashes=$((crashes + 1))
    done
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    summary+=("$target: ${runs:-?} runs in $((SECONDS - start)) s, $crashes crash(es); log $log")
done
printf '%s\n' "${summary[@]}"

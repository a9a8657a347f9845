#!/usr/bin/env bash
# The main job on a fresh machine: installs what audionas needs, builds it,
# shows the GPU adapter it will use, makes the embedded keyword data set
# (synthesized speech with noise) when it is absent, searches a keyword-
# spotting architecture on it (a short DARTS search), retrains what it found
# from scratch beside the hand-designed quickstart network, evaluates both,
# compares the three runs (runs/NAME-compare.html) and exports the found
# network as ONNX.
#   bash scripts/quickstart.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export NODEVICE_SELECT=1
data="${1:-data/kws-synth}"
cargo build --release --quiet
bin=./target/release/audionas
$bin devices
if [ ! -d "$data" ]; then
    $bin data synth --out "$data"
fi
$bin data stats "$data"
# New run folders each time (runs/quickstart-YYYYmmdd-HHMMSS-*), so the job can run again.
name="quickstart-$(date +%Y%m%d-%H%M%S)"
$bin search --config configs/search/quickstart.toml --data "$data" --name "$name-search"
$bin train --config configs/quickstart.toml --arch "runs/$name-search/architecture.json" \
    --data "$data" --name "$name-found"
$bin train --config configs/quickstart.toml --data "$data" --name "$name-baseline"
echo "== the architecture the search found, retrained from scratch:"
$bin eval --model "runs/$name-found" --data "$data"
echo "== the hand-designed quickstart network, trained the same way:"
$bin eval --model "runs/$name-baseline" --data "$data"
echo "== the runs side by side:"
$bin compare "runs/$name-search" "runs/$name-found" "runs/$name-baseline" \
    --out "runs/$name-compare.html"
$bin export --model "runs/$name-found" --out "runs/$name-found/model.onnx"

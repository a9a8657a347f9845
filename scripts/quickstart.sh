#!/usr/bin/env bash
# The main job on a fresh machine: installs what audionas needs, builds it,
# shows the GPU adapter it will use, makes the embedded keyword data set
# (synthesized speech with noise) when it is absent, trains the quickstart
# keyword-spotting network on it and evaluates the trained model.
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
# A new run folder each time (runs/quickstart-YYYYmmdd-HHMMSS), so the job can run again.
name="quickstart-$(date +%Y%m%d-%H%M%S)"
$bin train --config configs/quickstart.toml --data "$data" --name "$name"
$bin eval --model "runs/$name/model.safetensors" --data "$data"

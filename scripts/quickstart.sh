#!/usr/bin/env bash
# The main job on a fresh machine: installs what audionas needs, builds it,
# shows the GPU adapter it will use, makes the embedded keyword data set
# (synthesized speech with noise) when it is absent, describes it and caches
# its log-mel features.
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
$bin data prepare "$data" --features configs/features/logmel40.toml

#!/usr/bin/env bash
# Runs the whole test suite. On a machine without a GPU the tests run on
# Mesa's software Vulkan driver (lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}" NODEVICE_SELECT=1
cargo test

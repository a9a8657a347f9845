#!/usr/bin/env bash
# Runs the whole test suite. On a machine without a GPU the tests run on
# Mesa's software Vulkan driver (lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}" NODEVICE_SELECT=1
# The Model Search archive tests run against a real PostgreSQL server too.
AUDIONAS_TEST_POSTGRES="${AUDIONAS_TEST_POSTGRES:-$(bash scripts/postgres.sh)}"
export AUDIONAS_TEST_POSTGRES
# Exported ONNX models are run with onnxruntime.
AUDIONAS_ONNX_PYTHON="${AUDIONAS_ONNX_PYTHON:-$(bash scripts/onnxruntime.sh)}"
export AUDIONAS_ONNX_PYTHON
cargo test

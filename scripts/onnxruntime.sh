#!/usr/bin/env bash
# Makes a Python virtual environment with onnxruntime, onnx and numpy (for
# the tests that check and run exported ONNX models) and prints its
# interpreter. Safe to run again: an environment that imports all three is
# kept.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/onnx-venv
if ! "$venv/bin/python" -c "import onnxruntime, onnx, numpy" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime onnx numpy >&2
fi
echo "$PWD/$venv/bin/python"

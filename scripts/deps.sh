#!/usr/bin/env bash
# Installs what audionas needs on a fresh Debian/Ubuntu machine and is safe to
# run again: Mesa's software Vulkan driver (so wgpu has an adapter on machines
# without a GPU), the text-to-speech engines that make the embedded keyword
# data set, the word lists of seven languages (the language identification
# set), a font for the text of the training plots, PostgreSQL (the
# shared Model Search archive, tested against a real server), Python's
# venv (onnxruntime checks exported models) and Chromium (the tests render
# the comparison page headless).
set -euo pipefail

packages=(mesa-vulkan-drivers libvulkan1 espeak-ng flite wamerican wdutch wfrench wngerman witalian wportuguese wspanish fonts-dejavu-core postgresql python3-venv chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust from https://rustup.rs first" >&2
    exit 2
fi

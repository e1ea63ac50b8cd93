#!/usr/bin/env bash
# Creates .venv (unless it exists) and installs, in this order: the torch/torchvision pair nnU-Net 2.8
# needs (timm imports torchvision, which must match torch), then this package with its test extras.
# Override the pair (and pip options) with TORCH_PACKAGES, e.g. the CPU-only build:
# TORCH_PACKAGES="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_PACKAGES:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q ".[test]"

#!/usr/bin/env bash
# The demo: set-up (scripts/setup.sh), then a short DBCE training on a generated dataset, prediction and
# nnU-Net's evaluation, all on CPU (python -m nnunetv2_dbce.demo --help for options).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m nnunetv2_dbce.demo "$@"

#!/usr/bin/env bash
# The demo: set-up (scripts/setup.sh), then a short DBCE training on a generated dataset, prediction and
# nnU-Net's evaluation, all on CPU (nnUNetv2_dbce_demo --help for options).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/nnUNetv2_dbce_demo "$@"

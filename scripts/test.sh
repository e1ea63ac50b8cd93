#!/usr/bin/env bash
# The test command: set-up (scripts/setup.sh), then the whole suite against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pytest "$@"

#!/usr/bin/env bash
# The test command: set-up (scripts/setup.sh), the linter and type checker, then the whole suite against the installed package.
# NNUNETV2_DBCE_REQUIRE_SLURM=1 (as CI sets it; needs root) first starts a one-node SLURM cluster on this machine
# (scripts/slurm_local.sh) and makes the tests of `nnUNetv2_dbce_study --slurm` fail instead of skipping without one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${NNUNETV2_DBCE_REQUIRE_SLURM:-0}" = 1 ]; then
    bash scripts/slurm_local.sh start
fi
.venv/bin/ruff check .  # lint and import order, rules in pyproject.toml
.venv/bin/mypy  # type check of the package, settings in pyproject.toml
.venv/bin/pytest "$@"

#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite (HF_HUB_OFFLINE=1: no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# The main job on a fresh machine: set up, then load the shipped Fashion-MNIST NIF, write a
# samples grid and print test bits/dim on a slice of the test set (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/nif-zoo demo "$@"

#!/usr/bin/env bash
# Publishes the VAEs of the hyperbolic benchmark from their training workdirs
# (python -m nif_zoo.hyperbolic.train, or python -m benchmarks.hyperbolic --train): export each to
# zoo/NAME, measure it with `nif-zoo bench` (IS, K = 500), then publish again with the figures.
# Usage: scripts/publish_hyperbolic.sh RUNS_DIR [NAME ...]
#   default names: {bdp,fmnist}-{evae-nc,hvae,hvae-tc,hvae-whc}.d{2,4,6}
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: $0 RUNS_DIR [NAME ...]}
shift
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for data in bdp fmnist; do for tag in evae-nc hvae hvae-tc hvae-whc; do for d in 2 4 6; do
    names+=("$data-$tag.d$d")
  done; done; done
fi
export HF_HUB_OFFLINE=1
for name in "${names[@]}"; do
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name"
  .venv/bin/nif-zoo bench "$name" --output "benchmarks/results/$name.json" > /dev/null
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name" --bench "benchmarks/results/$name.json"
done

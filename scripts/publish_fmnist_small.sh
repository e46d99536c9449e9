#!/usr/bin/env bash
# Publishes the CPU-size Fashion-MNIST pair from their training workdirs: export each to
# zoo/NAME, measure it with `nif-zoo bench`, then publish again with the measured figures.
# Usage: scripts/publish_fmnist_small.sh RUNS_DIR   (holding fmnist-nf.small/, fmnist-nif64.small/)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: $0 RUNS_DIR}
export HF_HUB_OFFLINE=1
for name in fmnist-nf.small fmnist-nif64.small; do
  config="nif_zoo/configs/$(echo "${name%.small}" | tr - _)_small.py"
  head=$([ "$name" = fmnist-nf.small ] && echo "NF (standard normal prior)" || echo "NIF-64 (Gaussian NIF head, k = 64)")
  description="$head on 3-bit Fashion-MNIST at CPU size: Glow 2 levels x 8 steps x 64 channels, learned split; trained on a 2-core CPU (see the card for steps and time)."
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name" --train-config "$config" --description "$description"
  .venv/bin/nif-zoo bench "$name" --output "benchmarks/results/$name.json"
  notes=()
  [ -f "benchmarks/notes/$name.md" ] && notes=(--notes "benchmarks/notes/$name.md")
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name" --train-config "$config" \
    --description "$description" --bench "benchmarks/results/$name.json" "${notes[@]}"
done

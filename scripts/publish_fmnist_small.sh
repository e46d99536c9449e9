#!/usr/bin/env bash
# Publishes the CPU-size Fashion-MNIST models from their training workdirs: export each to
# zoo/NAME, measure it with `nif-zoo bench`, then publish again with the measured figures.
# Usage: scripts/publish_fmnist_small.sh RUNS_DIR [NAME ...]
#   RUNS_DIR holds fmnist-nf.small/, fmnist-nif64.small/, fmnist-nif128.small/ (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: $0 RUNS_DIR [NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fmnist-nf.small fmnist-nif64.small fmnist-nif128.small)
export HF_HUB_OFFLINE=1
for name in "${names[@]}"; do
  config="nif_zoo/configs/$(echo "${name%.small}" | tr - _)_small.py"
  k=${name#fmnist-nif}; k=${k%.small}
  head=$([ "$name" = fmnist-nf.small ] && echo "NF (standard normal prior)" || echo "NIF-$k (Gaussian NIF head, k = $k)")
  description="$head on 3-bit Fashion-MNIST at CPU size: Glow 2 levels x 8 steps x 64 channels, learned split; trained on a 2-core CPU (see the card for steps and time)."
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name" --train-config "$config" --description "$description"
  .venv/bin/nif-zoo bench "$name" --output "benchmarks/results/$name.json"
  notes=()
  [ -f "benchmarks/notes/$name.md" ] && notes=(--notes "benchmarks/notes/$name.md")
  .venv/bin/nif-zoo publish "$runs/$name" --name "$name" --train-config "$config" \
    --description "$description" --bench "benchmarks/results/$name.json" "${notes[@]}"
done

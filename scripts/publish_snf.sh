#!/usr/bin/env bash
# Publishes the Self Normalizing Flows models and their exact-gradient twins (8-bit
# Fashion-MNIST) from their training workdirs. `nif-zoo bench` does not apply to them (its FD
# classifier and figures are for 3-bit models): each card carries its training run and the notes
# benchmarks/notes/NAME.md, written by `python -m benchmarks.snf_models RUNS_DIR --notes
# benchmarks/notes` (run it first).
# Usage: scripts/publish_snf.sh RUNS_DIR [NAME ...]
#   RUNS_DIR holds snf_dense/, exact_dense/, snf_cnn/, exact_cnn/, snf_glow/, exact_glow/
#   (default: all six, as fmnist8-{snf,exact}-{dense,cnn,glow}.small)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: $0 RUNS_DIR [NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fmnist8-snf-dense.small fmnist8-exact-dense.small fmnist8-snf-cnn.small
                                 fmnist8-exact-cnn.small fmnist8-snf-glow.small fmnist8-exact-glow.small)
export HF_HUB_OFFLINE=1
for name in "${names[@]}"; do
  run=${name#fmnist8-}; run=${run%.small}; run=${run//-/_}  # fmnist8-snf-dense.small -> snf_dense
  gradient=${run%_*}; backbone=${run#*_}
  case $backbone in
    dense) model="the paper's 2-layer dense flow (two 784 x 784 linear layers, a smooth leaky ReLU between)"
           lambda=1 ;;
    cnn) model="the paper's 9-layer CNN flow (3 blocks of 3 convolutions 3x3, squeezes between)"
         lambda=1 ;;
    glow) model="a small Glow (2 levels x 4 steps x 32 channels, full 1x1 convolutions, learned split)"
          lambda=100 ;;
    *) echo "unknown model $name" >&2; exit 1 ;;
  esac
  if [ "$gradient" = snf ]; then
    how="its linear layers trained with self-normalizing gradients (learned inverses R, lambda $lambda)"
  else
    how="the exact-gradient twin of fmnist8-snf-$backbone.small (same seed, data order and initialisation)"
  fi
  description="Self Normalizing Flows on 8-bit Fashion-MNIST: $model, $how; a short run on one CPU core (see the card)."
  notes=()
  [ -f "benchmarks/notes/$name.md" ] && notes=(--notes "benchmarks/notes/$name.md")
  .venv/bin/nif-zoo publish "$runs/$run" --name "$name" --train-config "nif_zoo/configs/fmnist8_$run.py" \
    --description "$description" "${notes[@]}"
done

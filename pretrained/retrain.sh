#!/usr/bin/env bash
# Retrain the whole shipped zoo with the exact commands recorded in each card (<name>.json "command").
#
#   bash pretrained/retrain.sh            # all models, in order
#   bash pretrained/retrain.sh simclr byol  # only these
#
# Each run takes about 2-3 minutes on 2 CPU cores (10 epochs over 8,000 `shapes` images, width-16
# SmallResNet) and ends with a held-out linear-probe sweep whose results go into the card (--eval).
# `gr-explorer` is the installed console script; without it, set GR="python -m gr_explorer.cli".
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# OpenMP threads that sleep instead of spinning: on a CPU shared with other jobs, spinning makes every op
# wait for the slowest thread (10x slower steps observed); it does not change results.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
GR="${GR:-$(command -v gr-explorer || echo "python -m gr_explorer.cli")}"

# Shared by every model: data, budget, augmentations that remove colour (jitter 0.8 @ p 0.8 + grayscale 0.2)
# and left/right orientation (flips), crops keeping at least half of the image, held-out evaluation.
COMMON="--dataset shapes --n-train 8000 --epochs 10 --batch-size 128 --crop-scale 0.5,1 --eval"

declare -A RUNS=(
  [simclr]="--objective simclr --temperature 1.0 --projector 512-512-128"
  [vicreg]="--objective vicreg --projector 512-512-128"
  [byol]="--objective byol --projector 512-512-128"
  [barlow]="--objective barlow --projector 512-512-128"
  [simclr_proj_none]="--objective simclr --temperature 1.0 --projector none"
  [simclr_proj1]="--objective simclr --temperature 1.0 --projector 128"
  [simclr_proj3_wide]="--objective simclr --temperature 1.0 --projector 1024-1024-128"
  [supervised]="--objective supervised --label-task shape --projector 512-512-128"
  [label_aligned_p05]="--objective label_aligned --label-task shape --p 0.5 --temperature 1.0 --projector 512-512-128"
  [label_aligned_p1]="--objective label_aligned --label-task shape --p 1.0 --temperature 1.0 --projector 512-512-128"
)
ORDER=(simclr label_aligned_p05 label_aligned_p1 supervised simclr_proj_none simclr_proj1 simclr_proj3_wide vicreg byol barlow)

for name in "${@:-${ORDER[@]}}"; do
  [[ -n "${RUNS[$name]:-}" ]] || { echo "unknown zoo model $name; valid: ${ORDER[*]}" >&2; exit 2; }
  echo "=== $name"
  # shellcheck disable=SC2086
  $GR train ${RUNS[$name]} $COMMON --out "pretrained/$name.safetensors" --quiet
done

#!/usr/bin/env bash
# Retrain the shipped zoo with the exact commands recorded in each card (<name>.json "command"), then
# regenerate pretrained/README.md from the cards.
#
#   bash pretrained/retrain.sh                   # every model, in order (hours on 2 CPU cores)
#   bash pretrained/retrain.sh simclr byol       # only these
#   JOBS=2 bash pretrained/retrain.sh            # two trainings at a time (one thread each)
#
# shapes v2 models: width-16 SmallResNet, 20 epochs over 8,000 images, ~8 CPU-minutes each on one idle core;
# VICReg 40 epochs (~21 CPU-minutes), BYOL 200 (~105), Barlow Twins 100 (~37). CIFAR-10 models: the same
# network on 20,000 CIFAR-10 training images (a stratified subsample of ../shared/data/cifar10, 50,000 PNGs),
# 15 epochs, ~25 CPU-minutes each. Each run ends with a held-out linear-probe sweep with the random-init and
# pixel baselines (--eval), whose results go into the card.
# `gr-explorer` is the installed console script; without it, set GR="python -m gr_explorer".
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# OpenMP threads that sleep instead of spinning: on a CPU shared with other jobs, spinning makes every op
# wait for the slowest thread (10x slower steps observed); it does not change results.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
GR="${GR:-$(command -v gr-explorer || echo "python -m gr_explorer")}"

# shapes v2: augmentations that remove colour (jitter 0.8 @ p 0.8 + grayscale 0.2) and left/right light
# (flips), crops keeping at least half of the image; weights stored as float16; held-out evaluation.
SHAPES="--dataset shapes --n-train 8000 --epochs 20 --batch-size 128 --crop-scale 0.5,1 --save-dtype float16 --eval"
# VICReg's loss was still falling at epoch 20 (20.1 -> 13.4, -0.5 per epoch at the end): it gets 40 epochs.
# Barlow Twins sits on a plateau for ~17 epochs (pretrained/ABLATIONS.md): it gets 100. BYOL gets 200 and half
# of its views in grayscale (with the recipe's 0.2 it keeps colour to the last cut and learns less shape; at 60
# epochs it read shape at 0.58-0.62, at 200 0.84).
SHAPES_40="${SHAPES/--epochs 20/--epochs 40}"
SHAPES_200="${SHAPES/--epochs 20/--epochs 200}"
SHAPES_100="${SHAPES/--epochs 20/--epochs 100}"
# CIFAR-10: SimCLR's CIFAR augmentations (crops 0.2-1, jitter 0.5, grayscale 0.2, flips); evaluated on all
# 10,000 test images with probes fitted on 5,000 training images.
CIFAR="--dataset imagefolder:../shared/data/cifar10 --n-train 20000 --width 16 --epochs 15 --batch-size 256 \
--crop-scale 0.2,1 --color-jitter 0.5 --gray-p 0.2 --lr 2e-3 --warmup-epochs 1 --save-dtype float16 --eval \
--eval-n-train 5000 --eval-n-test 10000"

declare -A RUNS=(
  [simclr]="--objective simclr --temperature 0.5 --projector 512-512-128 $SHAPES"
  [supervised]="--objective supervised --label-task shape --projector 512-512-128 $SHAPES"
  [label_aligned_p1]="--objective label_aligned --label-task shape --p 1.0 --temperature 0.5 --projector 512-512-128 $SHAPES"
  [label_aligned_p05]="--objective label_aligned --label-task shape --p 0.5 --temperature 0.5 --projector 512-512-128 $SHAPES"
  [simclr_proj_none]="--objective simclr --temperature 0.5 --projector none $SHAPES"
  [simclr_proj1]="--objective simclr --temperature 0.5 --projector 128 $SHAPES"
  [simclr_proj3_wide]="--objective simclr --temperature 0.5 --projector 1024-1024-128 $SHAPES"
  [vicreg]="--objective vicreg --projector 512-512-128 $SHAPES_40"
  [byol]="--objective byol --projector 512-512-128 --gray-p 0.5 $SHAPES_200"
  [barlow]="--objective barlow --projector 512-512-128 $SHAPES_100"
  [simclr_s1]="--objective simclr --temperature 0.5 --projector 512-512-128 --seed 1 $SHAPES"
  [simclr_s2]="--objective simclr --temperature 0.5 --projector 512-512-128 --seed 2 $SHAPES"
  [simclr_proj_none_s1]="--objective simclr --temperature 0.5 --projector none --seed 1 $SHAPES"
  [simclr_proj_none_s2]="--objective simclr --temperature 0.5 --projector none --seed 2 $SHAPES"
  [simclr_proj1_s1]="--objective simclr --temperature 0.5 --projector 128 --seed 1 $SHAPES"
  [simclr_proj1_s2]="--objective simclr --temperature 0.5 --projector 128 --seed 2 $SHAPES"
  [simclr_proj3_wide_s1]="--objective simclr --temperature 0.5 --projector 1024-1024-128 --seed 1 $SHAPES"
  [simclr_proj3_wide_s2]="--objective simclr --temperature 0.5 --projector 1024-1024-128 --seed 2 $SHAPES"
  [label_aligned_p1_s1]="--objective label_aligned --label-task shape --p 1.0 --temperature 0.5 --projector 512-512-128 --seed 1 $SHAPES"
  [label_aligned_p1_s2]="--objective label_aligned --label-task shape --p 1.0 --temperature 0.5 --projector 512-512-128 --seed 2 $SHAPES"
  [label_aligned_p05_s1]="--objective label_aligned --label-task shape --p 0.5 --temperature 0.5 --projector 512-512-128 --seed 1 $SHAPES"
  [label_aligned_p05_s2]="--objective label_aligned --label-task shape --p 0.5 --temperature 0.5 --projector 512-512-128 --seed 2 $SHAPES"
  [simclr_s3]="--objective simclr --temperature 0.5 --projector 512-512-128 --seed 3 $SHAPES"
  [simclr_proj_none_s3]="--objective simclr --temperature 0.5 --projector none --seed 3 $SHAPES"
  [simclr_proj1_s3]="--objective simclr --temperature 0.5 --projector 128 --seed 3 $SHAPES"
  [simclr_proj3_wide_s3]="--objective simclr --temperature 0.5 --projector 1024-1024-128 --seed 3 $SHAPES"
  [simclr_s4]="--objective simclr --temperature 0.5 --projector 512-512-128 --seed 4 $SHAPES"
  [simclr_proj_none_s4]="--objective simclr --temperature 0.5 --projector none --seed 4 $SHAPES"
  [simclr_proj1_s4]="--objective simclr --temperature 0.5 --projector 128 --seed 4 $SHAPES"
  [simclr_proj3_wide_s4]="--objective simclr --temperature 0.5 --projector 1024-1024-128 --seed 4 $SHAPES"
  [cifar10_simclr]="--objective simclr --temperature 0.2 --projector 512-512-128 $CIFAR"
  [cifar10_vicreg]="--objective vicreg --projector 512-512-128 $CIFAR"
  [cifar10_supervised]="--objective supervised --label-task label --projector 512-512-128 $CIFAR"
  [cifar10_simclr_proj_none]="--objective simclr --temperature 0.2 --projector none $CIFAR"
  [cifar10_label_aligned_p1]="--objective label_aligned --label-task label --p 1.0 --temperature 0.2 --projector 512-512-128 $CIFAR"
  [cifar10_simclr_s1]="--objective simclr --temperature 0.2 --projector 512-512-128 --seed 1 $CIFAR"
  [cifar10_simclr_s2]="--objective simclr --temperature 0.2 --projector 512-512-128 --seed 2 $CIFAR"
  [cifar10_label_aligned_p1_s1]="--objective label_aligned --label-task label --p 1.0 --temperature 0.2 --projector 512-512-128 --seed 1 $CIFAR"
  [cifar10_label_aligned_p1_s2]="--objective label_aligned --label-task label --p 1.0 --temperature 0.2 --projector 512-512-128 --seed 2 $CIFAR"
)
ORDER=(simclr supervised label_aligned_p1 label_aligned_p05 simclr_proj_none simclr_proj1 simclr_proj3_wide vicreg byol
       barlow simclr_s1 simclr_s2 simclr_proj_none_s1 simclr_proj_none_s2 simclr_proj1_s1 simclr_proj1_s2
       simclr_proj3_wide_s1 simclr_proj3_wide_s2 label_aligned_p1_s1 label_aligned_p1_s2 label_aligned_p05_s1
       label_aligned_p05_s2 simclr_s3 simclr_proj_none_s3 simclr_proj1_s3 simclr_proj3_wide_s3 simclr_s4
       simclr_proj_none_s4 simclr_proj1_s4 simclr_proj3_wide_s4 cifar10_simclr cifar10_vicreg cifar10_supervised
       cifar10_simclr_proj_none cifar10_label_aligned_p1 cifar10_simclr_s1 cifar10_simclr_s2
       cifar10_label_aligned_p1_s1 cifar10_label_aligned_p1_s2)

names=("${@:-${ORDER[@]}}")
for name in "${names[@]}"; do
  [[ -n "${RUNS[$name]:-}" ]] || { echo "unknown zoo model $name; valid: ${ORDER[*]}" >&2; exit 2; }
done
run() {
  echo "=== $1"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" $GR train ${RUNS[$1]} --out "pretrained/$1.safetensors" --quiet
}
if [[ "${JOBS:-1}" -gt 1 ]]; then
  for name in "${names[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge "$JOBS" ]]; do wait -n; done
    run "$name" > "pretrained/.$name.log" 2>&1 &
  done
  wait
else
  for name in "${names[@]}"; do run "$name"; done
fi
python pretrained/make_readme.py

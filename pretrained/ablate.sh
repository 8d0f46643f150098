#!/usr/bin/env bash
# Short ablations behind pretrained/ABLATIONS.md: why do BYOL and Barlow Twins learn no `shape` on shapes v2
# when SimCLR and VICReg do? Each variant changes one thing of the zoo recipe, trains 6 epochs (~3 CPU-minutes
# on one idle core; the byol20_* ones 20, byol60_* 60, byol200_* 200, simclr_noproj40 40) into
# runs/ablations/<name>, and is probed like the zoo's cards (held-out shapes seed 1, 2,000 / 1,000, linear
# probe, best cut chosen on validation, 95% bootstrap interval).
#
#   bash pretrained/ablate.sh                   # every variant (about 180 CPU-minutes)
#   bash pretrained/ablate.sh barlow barlow_gray # only these
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
GR="${GR:-$(command -v gr-explorer || echo "python -m gr_explorer")}"
OUT="${OUT:-runs/ablations}"

BASE="--dataset shapes --n-train 8000 --epochs 6 --batch-size 128 --crop-scale 0.5,1 --projector 512-512-128"
declare -A RUNS=(
  [simclr]="--objective simclr --temperature 0.5"
  [byol]="--objective byol"
  [byol_gray]="--objective byol --gray-p 1.0"
  [byol_sgd]="--objective byol --optimizer sgd --lr 0.05 --weight-decay 1e-5"
  [byol_lr5e-4]="--objective byol --lr 5e-4"
  [barlow]="--objective barlow"
  [barlow_gray]="--objective barlow --gray-p 1.0"
  [barlow_sgd]="--objective barlow --optimizer sgd --lr 0.05 --weight-decay 1e-5"
  [barlow_lr5e-4]="--objective barlow --lr 5e-4"
  [barlow_crop02]="--objective barlow --crop-scale 0.2,1"
  [barlow_lambda5e-4]="--objective barlow --barlow-lambda 5e-4"
  [barlow_out16]="--objective barlow --projector 512-512-16"
  [barlow_wide1024]="--objective barlow --projector 1024-1024-1024"
  [barlow_noproj]="--objective barlow --projector none"
  [byol20_gray05]="--objective byol --epochs 20 --gray-p 0.5"
  [byol20_gray1]="--objective byol --epochs 20 --gray-p 1.0"
  [byol20_gray05_lr4e-3]="--objective byol --epochs 20 --gray-p 0.5 --lr 4e-3"
  [byol20_gray05_blur05]="--objective byol --epochs 20 --gray-p 0.5 --blur-p 0.5"
  [byol20_gray05_tau95]="--objective byol --epochs 20 --gray-p 0.5 --byol-tau 0.95"
  [simclr_noproj40]="--objective simclr --temperature 0.5 --projector none --epochs 40"
  [byol20_gray05_wd05]="--objective byol --epochs 20 --gray-p 0.5 --weight-decay 0.05"
  [byol20_gray05_sgd]="--objective byol --epochs 20 --gray-p 0.5 --optimizer sgd --lr 0.06 --weight-decay 5e-4"
  [byol20_gray05_crop02]="--objective byol --epochs 20 --gray-p 0.5 --crop-scale 0.2,1"
  [byol20_gray05_crop03]="--objective byol --epochs 20 --gray-p 0.5 --crop-scale 0.3,1"
  [byol20_gray05_pred10]="--objective byol --epochs 20 --gray-p 0.5 --byol-predictor-lr 10"
  [byol200_gray05]="--objective byol --epochs 200 --gray-p 0.5"
  [byol20_gray05_wide]="--objective byol --epochs 20 --gray-p 0.5 --projector 2048-2048-256 --byol-predictor-hidden 2048"
  [byol60_gray05_s1]="--objective byol --epochs 60 --gray-p 0.5 --seed 1"
  [byol20_gray05_w32]="--objective byol --epochs 20 --gray-p 0.5 --width 32"
)
ORDER=(simclr byol byol_gray byol_sgd byol_lr5e-4 barlow barlow_gray barlow_sgd barlow_lr5e-4 barlow_crop02
       barlow_lambda5e-4 barlow_out16 barlow_wide1024 barlow_noproj byol20_gray05 byol20_gray1 byol20_gray05_lr4e-3
       byol20_gray05_blur05 byol20_gray05_tau95 simclr_noproj40 byol20_gray05_wd05 byol20_gray05_sgd
       byol20_gray05_crop02 byol20_gray05_crop03 byol20_gray05_pred10 byol200_gray05
       byol20_gray05_wide byol60_gray05_s1 byol20_gray05_w32)
names=("${@:-${ORDER[@]}}")
for name in "${names[@]}"; do
  [[ -n "${RUNS[$name]:-}" ]] || { echo "unknown ablation $name; valid: ${ORDER[*]}" >&2; exit 2; }
done
mkdir -p "$OUT"
echo "| variant | shape: best cut, accuracy [95% CI] | colour: best / last cut |"
for name in "${names[@]}"; do
  # shellcheck disable=SC2086  # later flags override BASE's
  $GR train $BASE ${RUNS[$name]} --out "$OUT/$name.safetensors" --quiet > "$OUT/$name.train.log" 2>&1
  $GR sweep --model "file:$OUT/$name.safetensors" --dataset shapes --tasks shape,color --seed 1 --no-cache --quiet \
    --out "$OUT/$name" > "$OUT/$name.sweep.log" 2>&1
  python - "$OUT/$name/summary.csv" "$name" <<'PY'
import sys
import pandas as pd
s = pd.read_csv(sys.argv[1]).set_index("task")
a, c = s.loc["shape"], s.loc["color"]
print(f"| {sys.argv[2]} | {a.best_cut} {a.best_accuracy:.3f} [{a.best_ci_low:.3f}, {a.best_ci_high:.3f}] "
      f"| {c.best_cut} {c.best_accuracy:.3f} / {c.last_accuracy:.3f} |")
PY
done

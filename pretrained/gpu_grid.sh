#!/usr/bin/env bash
# The SimCLR recipe search of pretrained/ABLATIONS.md ("A recipe grid on a GPU"), run in one time-limited call:
# the zoo's shapes recipe with one of two levers that lift the no-projector design to 0.80 on a CPU (temperature
# 0.25 at 20 epochs, or 40 epochs at 0.5), crossed with projector designs whose output dimension is 128, 32 or
# 16, several seeds each. Many small trainings share the GPU at once; each ends with the card's held-out sweep.
# On one H200, twelve at a time, a 20-epoch run took about 200 s end to end (110 s of it training).
#
#   bash pretrained/gpu_grid.sh [out_dir] [seconds]   # default runs/gpu_grid; no new run after 380 s
#
# Every run is stopped at seconds + 140: one stopped while training leaves no card, one stopped while evaluating
# a card without "results". WORKERS (default 12) runs at a time; DEVICE (default cuda); EXTRA is appended to
# every training's flags (the last of a repeated flag wins); GRID=seeds runs more seeds of the 0.25 designs.
#
# A GPU run draws its views from a CUDA generator (bf16 autocast), so its seed N is not the CPU's seed N:
# the grid picks a recipe, and shipped weights are retrained with pretrained/retrain.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
out="${1:-runs/gpu_grid}"
seconds="${2:-380}"
workers="${WORKERS:-12}"
mkdir -p "$out"
start=$(date +%s)
base="--objective simclr --dataset shapes --n-train 8000 --batch-size 128 --crop-scale 0.5,1 --save-dtype float16
--eval --eval-tasks shape,texture,color --device ${DEVICE:-cuda} --quiet ${EXTRA:-}"
jobs=()
add() {  # add TEMPERATURE EPOCHS PROJECTOR SEEDS...
  local t=$1 e=$2 p=$3
  shift 3
  for s in "$@"; do jobs+=("t${t}_e${e}_p${p}_s${s}|--temperature $t --epochs $e --projector $p --seed $s"); done
}
# in priority order: whatever has not started by the deadline is not run; GRID=seeds runs the second call's
# more seeds of the temperature-0.25 designs instead
if [[ ${GRID:-main} == seeds ]]; then
add 0.25 20 512-512-32 3 4 5;       add 0.25 20 1024-1024-32 3 4 5;     add 0.25 20 512-512-128 3 4 5
add 0.25 20 none 3 4 5
else
add 0.5 20 none 0 1 2;              add 0.5 20 512-512-128 0 1 2        # the shipped recipe, GPU vs CPU
add 0.25 20 none 0 1 2;             add 0.25 20 512-512-32 0 1 2;       add 0.25 20 1024-1024-32 0 1 2
add 0.5 40 none 0 1 2;              add 0.5 40 512-512-32 0 1 2;        add 0.5 40 1024-1024-32 0 1 2
add 0.25 20 512-512-128 0 1 2;      add 0.25 20 1024-1024-128 0 1 2;    add 0.25 20 128 0 1 2
add 0.5 40 1024-1024-128 0 1 2;     add 0.5 40 128 0 1 2
add 0.25 20 512-512-16 0 1 2;       add 0.25 20 1024-1024-16 0 1 2;     add 0.5 40 512-512-16 0 1 2
add 0.25 20 none 3 4;               add 0.25 20 512-512-32 3 4;         add 0.25 20 1024-1024-32 3 4
add 0.5 40 none 3 4;                add 0.5 40 512-512-32 3 4;          add 0.5 40 1024-1024-32 3 4
add 0.5 20 512-512-32 0 1 2;        add 0.5 20 1024-1024-32 0 1 2
fi
run_one() {  # run_one NAME|ARGS
  local name=${1%%|*} args=${1#*|}
  if (( $(date +%s) - start > seconds )); then echo "skipped $name (deadline)"; return 0; fi
  local t0=$SECONDS
  # shellcheck disable=SC2086
  timeout $((start + seconds + 140 - $(date +%s))) python3 -m gr_explorer train $base $args --out "$out/$name.safetensors" > "$out/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s"
}
export -f run_one
export out seconds start base
printf '%s\n' "${jobs[@]}" | xargs -d '\n' -P "$workers" -I{} bash -c 'run_one "$1"' _ {}
echo "grid: ${#jobs[@]} jobs, $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# Everything the scale-out work needs measured on a GPU, in one run (a lent GPU machine's time is short):
# the tests on CUDA, the all-cuts / plain-forward ratio for ViT-B/16 and ResNet-50 at 224 px (target <= 1.10,
# with and without channels_last) and the 50,000-image ViT-B/16 sweep (target <= 30 s on one H100-class GPU).
#
#   bash benchmarks/gpu_check.sh [out_dir]      # at most about 9 minutes; logs go to out_dir (default runs/gpu_check)
#
# Each step has its own time limit and the script goes on after a failure, so one slow or broken step does not
# cost the others; the last lines say which step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
failed=()
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [[ $rc -eq 0 ]] || failed+=("$name")
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1; cat "$out/gpu.txt"
# the suites whose code has a CUDA path (the app and browser suites have none)
step tests_cuda 210 python3 -m pytest -q -p no:cacheprovider tests/test_features.py tests/test_sweep.py tests/test_scale.py \
  tests/test_probes.py tests/test_models.py tests/test_training.py tests/test_diagnostics.py tests/test_embedding.py
step extraction 200 python3 benchmarks/bench_extraction.py --data shapes --models vit_base_patch16_224,resnet50 \
  --size 224 --n 10000 --batch-size 256 --device cuda --repeats 3 --channels-last
step sweep_50k 120 python3 benchmarks/bench_gpu_sweep.py --device cuda --cache-dir "$out/cache"
rm -rf "$out/cache"
echo "failed steps: ${failed[*]:-none}"
[[ ${#failed[@]} -eq 0 ]]

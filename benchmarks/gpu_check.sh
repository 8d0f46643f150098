#!/usr/bin/env bash
# Everything issue 27 (and issue 12 before it) needs measured on a GPU, in ONE call of at most ~9 minutes on one
# lent H100/H200 (16 CPU cores), with nothing from the network:
#   forward  ViT-B/16 (13 cuts) and ResNet-50 (6 stages) at 224 px: plain forward vs all cuts, eager vs
#            torch.compile, bf16 autocast, the SDPA kernel in use, channels_last, the automatic batch size, and
#            extract_features to disk with compile off / on           (targets 15,000 and 12,000 images/s, <= 1.10x)
#   jpeg     a generated folder of 20,000 256-px JPEGs decoded on the GPU vs by PIL workers, + ViT-B/16 extraction
#                                                                      (target 5,000 images/s on the GPU path)
#   probes   linear + k-NN probes over 1,281,167 + 50,000 images x 13 cuts x 768 float16 features on local disk
#            (k-NN timed on 1 cut, the 13-cut figure extrapolated and labelled so), peak GPU memory and host RSS
#   sweep    the 50,000-image ViT-B/16 sweep of issue 12 again (21.8 s before; now with the auto settings)
#   tests    the CUDA test suites (new: forward, decode, streamed probes, torchrun with NCCL on the GPUs there are)
#   summary  the targets' table, from results.jsonl
#
# Before the call, here (PyPI reachable; the device has torch, timm, sklearn, pandas, not plotly):
#   bash benchmarks/gpu_check.sh --prepare        # the plotly wheel into .whl/ (git-ignored), for the CLI tests
# The call (device tool):  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Locally, a smoke test of the CPU-capable parts at tiny sizes:  bash benchmarks/gpu_check.sh --smoke /tmp/smoke
#
# Each step has its own time limit, shortened when the whole budget ($GPU_CHECK_BUDGET seconds, default 550) runs
# low; a step that fails or runs out of time is listed at the end and the others still run. Each figure is written
# to results.jsonl as soon as it is measured, so a step cut short keeps what it measured. What comes back under
# $OUT (8 files, the most that come back): gpu.txt, forward.log, jpeg.log, probes.log, sweep_50k.log, tests_cuda.log,
# results.jsonl, summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--prepare" ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl "plotly==${PLOTLY_VERSION:-7.1.0}"
  exit
fi
smoke=0
if [[ "${1:-}" == "--smoke" ]]; then smoke=1; shift; fi
out="${1:-${OUT:-runs/gpu_check}}"
scratch="${TMPDIR:-/tmp}/gr_gpu_check"
mkdir -p "$out" "$scratch"
rm -f "$out/results.jsonl"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
export TORCHINDUCTOR_CACHE_DIR="$scratch/inductor"  # a cold compile cache: the compile times measured are first-time
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$scratch/site" .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$scratch/site"
fi
budget=${GPU_CHECK_BUDGET:-550}
t_start=$SECONDS
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit (cut to what is left of the budget), log to $out/NAME.log
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - t_start) - 15))
  ((limit > left)) && limit=$left
  if ((limit < 20)); then
    echo "=== $name: skipped, ${left}s of the budget left"
    failed+=("$name(skipped)")
    return
  fi
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  grep -v "DeprecationWarning\|warnings.warn\|USDT\|DeviceProperties" "$out/$name.log" | tail -n 40
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  ((rc == 0)) || failed+=("$name(exit $rc)")
}
bench=(python3 benchmarks/bench_gpu_scale.py)
json=(--json "$out/results.jsonl")
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'timm', timm.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count(), 'GPUs')"
  python3 -c "import plotly; print('plotly', plotly.__version__)" 2>&1 | tail -n 1
  echo "CPU cores: $(nproc)"
} > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
if ((smoke)); then  # tiny sizes, the CPU, a stand-in compile backend: proves the script and the benchmark code run
  step forward 300 "${bench[@]}" forward "${json[@]}" --models vit_tiny_patch16_224,resnet18 --n 32 --batch 16 \
    --repeats 1 --backend aot_eager --e2e 40
  step jpeg 200 "${bench[@]}" jpeg "${json[@]}" --models resnet18 --size 64 --n 300 --batch 32 --workers 2 \
    --folder "$scratch/jpegs"
  step probes 200 "${bench[@]}" probes "${json[@]}" --n-train 20000 --n-test 2000 --cuts 3 --dim 64 --knn-cuts 1 \
    --budget-gib 0.01 --knn-budget-gib 0.002 --eval-rows 4096 --store "$scratch/probes"
  step sweep_50k 300 python3 benchmarks/bench_gpu_sweep.py --device cpu --model resnet18 --n-train 200 --n-test 100 \
    --cache-dir "$scratch/cache"
  step tests_cuda 300 python3 -m pytest -q -p no:cacheprovider tests/test_forward.py tests/test_decoders.py \
    tests/test_probe_streaming.py
else
  step forward 170 "${bench[@]}" forward "${json[@]}"
  step jpeg 70 "${bench[@]}" jpeg "${json[@]}" --n 20000 --folder "$scratch/jpegs"
  step probes 140 "${bench[@]}" probes "${json[@]}" --store "$scratch/probes"
  step sweep_50k 50 python3 benchmarks/bench_gpu_sweep.py --device cuda --cache-dir "$scratch/cache"
  # the suites whose code has a CUDA path (the app and browser suites have none); the new ones first
  step tests_cuda 110 python3 -m pytest -q -p no:cacheprovider tests/test_forward.py tests/test_decoders.py \
    tests/test_probe_streaming.py tests/test_scale.py tests/test_features.py tests/test_sweep.py tests/test_probes.py \
    tests/test_models.py tests/test_training.py tests/test_diagnostics.py tests/test_embedding.py
fi
{
  "${bench[@]}" summary "${json[@]}"
  echo "| 50,000-image ViT-B/16 sweep (target <= 30 s): $(grep -o 'sweep [0-9.]* s, process [0-9.]* s' \
    "$out/sweep_50k.log" 2>/dev/null || echo 'not measured')"
  echo "| CUDA tests: $(grep -E '[0-9]+ (passed|failed)' "$out/tests_cuda.log" 2>/dev/null | tail -n 1)"
  echo "failed or skipped steps: ${failed[*]:-none}; wall $((SECONDS - t_start)) s"
} 2>&1 | tee "$out/summary.txt"
rm -rf "$scratch"
[[ ${#failed[@]} -eq 0 ]]

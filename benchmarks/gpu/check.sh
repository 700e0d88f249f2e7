#!/usr/bin/env bash
# One device call for every figure that needs the GPU (issues 3 and 5), logs under $OUT:
#   bash benchmarks/gpu/wheels.sh        # here, once
#   device run: command "bash benchmarks/gpu/check.sh", carry [".whl"], timeout_s 580
# Order: cheapest first, so a run cut short still returns the early figures.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site" HF_HUB_OFFLINE=1 HARNESS_PNG_DECODER=${HARNESS_PNG_DECODER:-}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > "$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c "import torch, diffusers, PIL; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'pillow', PIL.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
run() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "rc=$?" >> "$OUT/$name.log"
  tail -4 "$OUT/$name.log"
}
run gpu_tests 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/generators/test_gpu_diffusers.py
# GPU_BENCH_ARGS="--gpu-device=cpu --gpu-n=4 --gpu-batch=2" checks this script on a CPU machine.
run metrics_gpu 120 python3 benchmarks/metrics_throughput.py --gpu ${GPU_BENCH_ARGS:-}
# 3 repeats (medians of 3 pairs): SD1.5 ~65 s, compile ~90 s, SD3-medium ~70 s, builds ~60 s.
run local_overhead_gpu 330 python3 benchmarks/local_overhead.py --gpu --repeats 3

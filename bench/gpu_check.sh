#!/usr/bin/env bash
# The device check, sized for one lease of the GPU machine (at most 8 minutes on one H100 /
# H200): bench/gpu_check.py's four sections, JSON and samples under $OUT.
#
# That machine's python3 has torch and transformers but no Ray, TensorFlow, MLflow, Optuna or
# pythae, and reaches no registry, so everything it needs travels in .gpucheck/ (ignored by
# git, carried by the device tool). Prepare it here once (about 45 MB):
#
#   bash bench/gpu_check.sh --prepare
#
# then, through the device tool, from the repository root:
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpucheck"], timeout_s=540)
#
# and score the four generators' samples here, on the CPU scorers, for the paper's tables:
#
#   for f in $FILES_AT/samples_*.npz; do gensweep score --dataset <its dataset> --samples $f; done
#
# Here, without a GPU: `bash bench/gpu_check.sh --dry-run` runs every section on tiny data in
# about a minute (tests/test_gpu_check.py does so).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .gpucheck/whl .gpucheck/data
  grep -qx '/.gpucheck/' .git/info/exclude 2>/dev/null || echo '/.gpucheck/' >> .git/info/exclude
  # pythae and what it needs beyond that machine's packages (pydantic and its parts),
  # as wheels for its Python 3.12 on x86-64
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d .gpucheck/whl \
    pythae==0.1.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5
  for ds in mnist fashion-mnist; do
    cp -r "${GENSWEEP_DATA_DIR:-../shared/data}/$ds" .gpucheck/data/
  done
  du -sh .gpucheck
  exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
if [ -d .gpucheck/whl ] && ! "$PY" -c "import pythae" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpucheck-site \
    .gpucheck/whl/*.whl
  export PYTHONPATH="/tmp/gpucheck-site:${PYTHONPATH:-}"
fi
# the project is not installed there: the checkout itself is on the path
export PYTHONPATH="$PWD:$PWD/bench:${PYTHONPATH:-}"
[ -d .gpucheck/data ] && export GENSWEEP_DATA_DIR="$PWD/.gpucheck/data"
export GENSWEEP_NO_DOWNLOAD=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export GENSWEEP_CACHE_DIR=${GENSWEEP_CACHE_DIR:-/tmp/gpucheck-cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
if [ "${1:-}" = "--dry-run" ]; then
  exec "$PY" bench/gpu_check.py --out "$OUT" --dry-run --deadline-s 300
fi
# 470 s: the lease's 8 minutes less the start; the script leaves each section's JSON behind
timeout 470 "$PY" bench/gpu_check.py --out "$OUT" --deadline-s 440 "$@" 2>&1 | tee "$OUT/gpu_check.log"

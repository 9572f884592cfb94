#!/usr/bin/env bash
# One call on a lent GPU machine: build the CUDA kernels, run every CUDA test, then the
# stage benchmarks, leaving logs and result JSON in $OUT (copy those JSON files into
# benchmarks/results/ and commit them).
#
#   bash scripts/gpu_session.sh                 # everything
#   STAGES="track" bash scripts/gpu_session.sh  # a subset of the benchmarks
#   PHASES="build" bash scripts/gpu_session.sh  # phases: build tests bench (default: all three)
#
# The GPU image has its own Python with torch; packages it lacks (av, facenet-pytorch,
# pynvvideocodec, kornia) travel as cp312 wheels in .whl*/ folders and are installed into
# /tmp/site. Wheels and clips together exceed the 64 MiB a call carries, so a session uses two
# calls back to back: PHASES=build carrying .whl_av, then PHASES="tests bench" carrying .whl and
# .samples (the machine keeps /tmp/site and the built extension while it stays warm).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FAIL_WITHOUT_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FORCE_CUDA=1
PY=${PY:-python3}
# Wheels carried in .whl/ install into /tmp/site, which lasts as long as the machine stays
# warm, so a first call can carry the wheels and a second one the code and sample clips.
PHASES=${PHASES:-build tests bench}
if ls .whl*/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl*/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
# ../shared does not travel: carry a few sample clips in .samples/ (see README "GPU checks")
if [ -z "${DFDC_SAMPLES:-}" ] && [ -f .samples/metadata.json ]; then export DFDC_SAMPLES=$PWD/.samples; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

if [[ " $PHASES " == *" build "* ]]; then
  echo "== build"
  MAX_JOBS=${MAX_JOBS:-16} $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
$PY -c "from dfdc_fast import extension as e; print('cuda_version', e.cuda_version())" || exit 1

if [[ " $PHASES " == *" tests "* ]]; then
  echo "== CUDA tests"
  $PY -m pytest -q -m cuda -p no:cacheprovider ${TESTS:-tests} 2>&1 | tee "$OUT/tests_cuda.log" | tail -40
fi

if [[ " $PHASES " == *" bench "* ]]; then
  echo "== benchmarks"
  for stage in ${STAGES:-track detect extract decode train infer}; do
    $PY "benchmarks/$stage.py" --device cuda --out-dir "$OUT" 2>&1 | tee "$OUT/bench_$stage.log" | tail -30
  done
fi
ls -la "$OUT"

#!/usr/bin/env bash
# Set up dfdc_fast in .venv at the repository root: pinned packages, the native
# extension (dfdc_fast._C), and an editable install. Safe to re-run: each step is
# skipped when its inputs are unchanged (requirements, csrc/, setup.py, FORCE_CUDA).
#
#   bash scripts/setup.sh              # CPU kernels (+ CUDA kernels if a GPU is visible)
#   FORCE_CUDA=1 bash scripts/setup.sh # also compile the CUDA kernels without a GPU (CI does)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

quiet_pip() {  # pip, minus the noise of this machine's unused local index folders
  "$PY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

if [ ! -x "$PY" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

req_hash=$( (hash_of requirements.txt; "$PY" -V) | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.dfdc_fast_requirements" 2>/dev/null)" != "$req_hash" ]; then
  echo "[setup] installing pinned packages (requirements.txt)"
  quiet_pip install -q --disable-pip-version-check -r requirements.txt
  # facenet-pytorch pins torch<2.3; its MTCNN weights are all we use, so no deps.
  quiet_pip install -q --disable-pip-version-check --no-deps facenet-pytorch==2.6.0
  echo "$req_hash" > "$VENV/.dfdc_fast_requirements"
else
  echo "[setup] packages up to date"
fi

export FORCE_CUDA=${FORCE_CUDA:-0}
if [ "$FORCE_CUDA" = "1" ]; then
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
ext_hash=$( (find csrc -type f | sort | xargs cat; cat setup.py; echo "$FORCE_CUDA ${TORCH_CUDA_ARCH_LIST:-}") | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.dfdc_fast_extension" 2>/dev/null)" != "$ext_hash" ] || ! ls dfdc_fast/_C*.so >/dev/null 2>&1; then
  echo "[setup] building the native extension (FORCE_CUDA=$FORCE_CUDA)"
  mkdir -p build
  if ! "$PY" setup.py build_ext --inplace > build/extension.log 2>&1; then
    tail -n 60 build/extension.log >&2
    echo "[setup] extension build failed; full log: build/extension.log" >&2
    exit 1
  fi
  grep "^dfdc_fast build:" build/extension.log || true
  echo "$ext_hash" > "$VENV/.dfdc_fast_extension"
else
  echo "[setup] native extension up to date"
fi

install_hash=$(hash_of setup.py pyproject.toml)
if [ "$(cat "$VENV/.dfdc_fast_install" 2>/dev/null)" != "$install_hash" ] || \
   ! (cd /tmp && "$PY" -c "import dfdc_fast, sys; sys.exit(not dfdc_fast.__file__.startswith('$ROOT/'))") 2>/dev/null; then
  echo "[setup] editable install of dfdc_fast (console scripts dfdc-probe, -detect, -extract, -train, -infer)"
  DFDC_FAST_NO_EXT=1 quiet_pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$install_hash" > "$VENV/.dfdc_fast_install"
fi
"$PY" -c "import dfdc_fast, dfdc_fast.extension as e; print('[setup] dfdc_fast', dfdc_fast.__version__, '| native ops:', e._has_ops(), '| CUDA kernels:', e._has_ops() and e.cuda_version() > 0)"

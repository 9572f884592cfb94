#!/usr/bin/env bash
# Build a folder of wheels for an offline Kaggle notebook (internet off, as DFDC scoring
# required): dfdc_fast itself plus the packages the Kaggle image lacks. Upload the folder
# as a Kaggle dataset and install from it with the cell written to OUT/README.txt.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash scripts/kaggle_wheels.sh [OUT_DIR] [--python 3.11] [--cuda cu121] [--pure | --sdist]
                                     [--no-pins] [--dataset NAME]

Builds OUT_DIR (default: kaggle_wheels) holding
  * dfdc_fast: a wheel built from this checkout (see "dfdc_fast itself" below);
  * wheels of facenet-pytorch==2.6.0 (no deps), av, kornia + kornia_rs, timm, tqdm for the
    notebook's Python (--python, default 3.11), manylinux x86_64, CPython, binary only.
    torch/torchvision are NOT downloaded: the Kaggle image has them;
  * README.txt with the notebook cell that installs them and runs inference.

dfdc_fast itself has a C++/CUDA extension (dfdc_fast._C), so its wheel is tied to the
Python AND the torch build it was compiled with:
  (default)  pip wheel --no-deps --no-build-isolation with the host Python ($PYTHON, else
             .venv/bin/python). The host Python must equal --python, and the native ops load
             only if the host torch matches the notebook's (same version and CUDA, --cuda).
             Add FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="6.0;7.5" to include CUDA kernels for
             Kaggle's P100/T4 when building without a GPU.
  --sdist    ship the source (dfdc_fast-VERSION.tar.gz) instead; the notebook compiles it
             against its own torch (a few minutes of the notebook's time budget).
  --pure     a py3-none-any wheel without the extension (DFDC_FAST_NO_EXT=1): installs on
             any Python; everything but the native ops (dfdc_fast.ops) works.

Options:
  --python X.Y    the notebook's Python (default 3.11; Kaggle images have 3.10 or 3.11)
  --cuda TAG      the notebook torch's CUDA (e.g. cu121): checked against the host torch
                  when the extension is built, and recorded in README.txt
  --no-pins       take the newest wheel of each dependency for the notebook's Python instead
                  of the requirements.txt pin (e.g. av==18.1.0 has no cp310 wheel)
  --dataset NAME  the Kaggle dataset the folder is uploaded as (default dfdc-fast-wheels)
  -h, --help      this text

Environment: PYTHON (building interpreter), PIP_ARGS (extra pip options), FORCE_CUDA,
TORCH_CUDA_ARCH_LIST, MAX_JOBS (passed to the extension build).
EOF
}

die() { echo "kaggle_wheels: error: $*" >&2; exit 1; }
log() { echo "[kaggle_wheels] $*"; }

OUT=kaggle_wheels
TARGET_PY=3.11
CUDA_TAG=
MODE=ext
DATASET=dfdc-fast-wheels
PINS=1
out_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --python) [ $# -ge 2 ] || die "--python needs a value (e.g. 3.11)"; TARGET_PY=$2; shift 2 ;;
    --python=*) TARGET_PY=${1#*=}; shift ;;
    --cuda) [ $# -ge 2 ] || die "--cuda needs a value (e.g. cu121)"; CUDA_TAG=$2; shift 2 ;;
    --cuda=*) CUDA_TAG=${1#*=}; shift ;;
    --dataset) [ $# -ge 2 ] || die "--dataset needs a value"; DATASET=$2; shift 2 ;;
    --dataset=*) DATASET=${1#*=}; shift ;;
    --no-pins) PINS=0; shift ;;
    --pure) [ "$MODE" = ext ] || die "--pure and --sdist exclude each other"; MODE=pure; shift ;;
    --sdist) [ "$MODE" = ext ] || die "--pure and --sdist exclude each other"; MODE=sdist; shift ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) [ "$out_given" = 0 ] || die "more than one OUT_DIR given ($OUT, $1)"; OUT=$1; out_given=1; shift ;;
  esac
done
[[ "$TARGET_PY" =~ ^3\.[0-9]+$ ]] || die "--python must look like 3.11, got '$TARGET_PY'"
[ -z "$CUDA_TAG" ] || [[ "$CUDA_TAG" =~ ^(cu[0-9]{3,4}|cpu)$ ]] || die "--cuda must look like cu121 (or cpu), got '$CUDA_TAG'"
PYTAG=cp${TARGET_PY/./}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3
fi
command -v "$PY" >/dev/null || die "no Python at '$PY' (set PYTHON)"
HOST_PY=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
HOST_TORCH=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda or "cpu")' 2>/dev/null || echo "none none")
HOST_TORCH_CUDA=${HOST_TORCH#* }
HOST_TORCH_VERSION=${HOST_TORCH% *}
if [ "$HOST_TORCH_CUDA" = cpu ]; then HOST_CUDA_TAG=cpu; else HOST_CUDA_TAG=cu${HOST_TORCH_CUDA//./}; fi
if [ "$MODE" = ext ]; then  # fail before any work when the wheel could not serve the notebook
  if [ "$HOST_PY" != "$TARGET_PY" ]; then
    die "the host Python is $HOST_PY but the notebook's is $TARGET_PY: a compiled dfdc_fast wheel
would not install there. Either build with a Python $TARGET_PY that has torch (PYTHON=/path/to/python$TARGET_PY),
or ship the source and compile on Kaggle (--sdist), or ship it without native ops (--pure)."
  fi
  [ "$HOST_TORCH_VERSION" != none ] || die "the host Python ($PY) has no torch, which building the extension needs"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

pip_() { "$PY" -m pip --disable-pip-version-check "$@" ${PIP_ARGS:-}; }
show_log() {  # the end of a pip log, minus the noise of unused local index folders some machines configure
  grep -v "is ignored: it is neither a file nor a directory" "$1" | tail -n 40 | sed 's/^/    /' >&2
}

VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/dfdc_fast/__init__.py")
[ -n "$VERSION" ] || die "cannot read __version__ from dfdc_fast/__init__.py"

# --- 1. dfdc_fast itself -----------------------------------------------------------
# Build from a copy of the tracked (and new, not ignored) files, so in-place build
# products (dfdc_fast/_C*.so, build/, *.egg-info) neither leak into nor change the checkout.
SRC=$WORK/dfdc_fast-$VERSION
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$SRC")
else
  (cd "$ROOT" && tar --exclude=./.venv --exclude=./build --exclude='*.egg-info' --exclude='*.so' \
    --exclude=./.git -cf - .) | tar -xf - -C "$SRC"
fi
rm -f "$OUT"/dfdc_fast-*  # a stale dfdc_fast build would shadow this one in --find-links

case "$MODE" in
  ext)
    if [ -n "$CUDA_TAG" ] && [ "$CUDA_TAG" != "$HOST_CUDA_TAG" ]; then
      log "WARNING: host torch $HOST_TORCH_VERSION is CUDA $HOST_TORCH_CUDA, the notebook's is $CUDA_TAG:"
      log "  dfdc_fast._C will not load there (the package still imports; native ops report missing)."
      log "  Use a host torch matching the notebook's, or --sdist to compile on Kaggle."
    fi
    log "building the dfdc_fast wheel with $PY (Python $HOST_PY, torch $HOST_TORCH_VERSION, FORCE_CUDA=${FORCE_CUDA:-0})"
    if ! (cd "$SRC" && MAX_JOBS=${MAX_JOBS:-$(nproc)} pip_ wheel --no-deps --no-build-isolation -w "$OUT" .) \
        > "$WORK/dfdc_fast.log" 2>&1; then
      show_log "$WORK/dfdc_fast.log"; die "building the dfdc_fast wheel failed (log above)"
    fi
    ;;
  pure)
    log "building a pure-Python dfdc_fast wheel (no native extension)"
    if ! (cd "$SRC" && DFDC_FAST_NO_EXT=1 pip_ wheel --no-deps --no-build-isolation -w "$OUT" .) \
        > "$WORK/dfdc_fast.log" 2>&1; then
      show_log "$WORK/dfdc_fast.log"; die "building the dfdc_fast wheel failed (log above)"
    fi
    ;;
  sdist)
    # A plain archive of the source tree: setup.py's own sdist would omit csrc/*.h.
    log "packing the dfdc_fast source as dfdc_fast-$VERSION.tar.gz (compiled in the notebook)"
    tar -czf "$OUT/dfdc_fast-$VERSION.tar.gz" -C "$WORK" "dfdc_fast-$VERSION"
    ;;
esac

# --- 2. what the Kaggle image lacks, for the notebook's Python ----------------------
pin() {  # NAME -> the requirements.txt pin (the versions the tests ran), else NAME
  local line
  [ "$PINS" = 1 ] || { echo "$1"; return; }
  line=$(grep -iE "^$1[[:space:]]*==" "$ROOT/requirements.txt" 2>/dev/null | head -n1 | tr -d '[:space:]' || true)
  echo "${line:-$1}"
}
DEPS=("facenet-pytorch==2.6.0" "$(pin av)" "$(pin kornia)" "$(pin kornia_rs)" "$(pin timm)" "$(pin tqdm)")
for spec in "${DEPS[@]}"; do
  log "downloading $spec ($PYTAG, manylinux x86_64)"
  # --no-deps for each: the image's torch/numpy stay, and facenet-pytorch's torch<2.3 pin is ignored.
  if ! pip_ download --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$OUT" "$spec" > "$WORK/download.log" 2>&1; then
    show_log "$WORK/download.log"
    die "cannot get '$spec' as a wheel for CPython $TARGET_PY on manylinux x86_64 (pip's output above).
  $([ "$PINS" = 1 ] && [ "$spec" != "${spec%%==*}" ] && echo "Try --no-pins (newest wheel for Python $TARGET_PY), or choose another --python." \
     || echo "It has no wheel for this Python/platform: choose another --python.")"
  fi
done

# --- 3. the notebook cell -----------------------------------------------------------
KAGGLE_DIR=/kaggle/input/$DATASET
BUILD_ISO=
[ "$MODE" = sdist ] && BUILD_ISO=" --no-build-isolation"
FACENET_WHEEL=$(cd "$OUT" && ls facenet_pytorch-*.whl | head -n1)
cat > "$OUT/README.txt" <<EOF
dfdc_fast wheels for an offline Kaggle notebook
===============================================
Built $(date -u +%Y-%m-%dT%H:%MZ) by scripts/kaggle_wheels.sh: dfdc_fast $VERSION ($MODE), for CPython $TARGET_PY$([ "$PINS" = 1 ] || echo ", dependencies unpinned (--no-pins)")
(notebook CUDA: ${CUDA_TAG:-not given}; built with Python $HOST_PY, torch $HOST_TORCH_VERSION / CUDA $HOST_TORCH_CUDA).

1. Upload this folder as a Kaggle dataset named "$DATASET" and add it to the notebook.
2. Run this cell (internet off). torch/torchvision come from the Kaggle image;
   facenet-pytorch goes in with --no-deps because its torch<2.3 pin is wrong for us.

!pip install --no-index --no-deps $KAGGLE_DIR/$FACENET_WHEEL
!pip install --no-index$BUILD_ISO --find-links $KAGGLE_DIR dfdc_fast av kornia timm
!python -c "import dfdc_fast, dfdc_fast.extension as e; print('dfdc_fast', dfdc_fast.__version__, 'native ops:', e._has_ops())"
!python -m dfdc_fast.infer /kaggle/input/deepfake-detection-challenge/test_videos /kaggle/input/my-checkpoints/*.pth -o /kaggle/working --time-budget 8.5h

If the second pip line stops on a requirement the image lacks, add its wheel here
(pip download --no-deps --only-binary=:all: --python-version $TARGET_PY ... NAME) or, as a last
resort, install everything without dependency checks:
!pip install --no-index --no-deps $KAGGLE_DIR/*.whl

"native ops: False" means the compiled dfdc_fast._C does not match the notebook's torch
(see scripts/kaggle_wheels.sh --help: --sdist compiles it in the notebook).

Files:
$(cd "$OUT" && ls -1 | grep -v '^README.txt$' | sed 's/^/  /')
EOF

log "wrote $OUT ($(ls -1 "$OUT" | wc -l) files)"
(cd "$OUT" && ls -lh | tail -n +2 | awk '{printf "  %8s  %s\n", $5, $9}')
log "total size: $(du -sh "$OUT" | cut -f1)"

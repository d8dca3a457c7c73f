#!/usr/bin/env bash
# Builds MinkowskiEngine 0.5.4 WITH CUDA on a machine that has no GPU, to prove that it compiles
# against the venv's torch, and caches the wheel where scripts/setup.sh looks for a CUDA build.
#   - nvcc (and the CUDA headers the venv lacks) come from NVIDIA's toolkit wheels on PyPI, at the
#     version of torch.version.cuda, installed with `pip --target` into a scratch prefix
#     (~/.cache/sole_ros/cuda-<version>); the venv's own CUDA headers and libraries (the ones torch
#     runs with) are linked into that prefix. Nothing in the venv is written.
#   - the sdist gets scripts/patches/minkowskiengine-0.5.4/*.patch, then `setup.py bdist_wheel
#     --force_cuda` (TORCH_CUDA_ARCH_LIST, default 9.0+PTX: Hopper code, PTX for newer GPUs).
#   - the wheel is installed into a scratch folder and imported from there (no GPU needed), and
#     MinkowskiEngine.is_cuda_available() must say it was compiled with CUDA.
#   - then it is cached in <wheel cache>/me-0.5.4-torch-<torch version>-cuda/ (setup.sh's naming).
# Runs at the lowest priority (SOLE_BUILD_NICE=0: as it is started; scripts/setup.sh on a GPU machine)
# with MAX_JOBS=1 unless told otherwise. The build folder is kept
# (SOLE_CUDA_BUILD_DIR, default /tmp/sole_ros-me-cuda): a rerun compiles only the objects whose
# sources or patches changed. Environment: SOLE_VENV, MAX_JOBS, TORCH_CUDA_ARCH_LIST,
# SOLE_CUDA_PREFIX, SOLE_CUDA_BUILD_DIR, SOLE_WHEEL_CACHE, XDG_CACHE_HOME.
set -euo pipefail

if [ "${SOLE_BUILD_NICE:-1}" != 0 ] && [ "$(nice)" -lt 19 ]; then
  exec nice -n $((19 - $(nice))) bash "${BASH_SOURCE[0]}" "$@"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SOLE_VENV:-$ROOT/.venv}
VPY=$VENV/bin/python
PATCHES=$ROOT/scripts/patches/minkowskiengine-0.5.4
CONSTRAINTS=$ROOT/constraints.txt
log() { printf '[check_cuda_build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
[ -x "$VPY" ] || die "no venv at $VENV (run scripts/setup.sh first)"
# pip from the venv's interpreter, only ever with --target or download (never into the venv).
PIP=("$VPY" -m pip --disable-pip-version-check)
quiet_pip() { "${PIP[@]}" "$@" 2> >(grep -v "WARNING: Location '.*' is ignored" >&2); }

export MAX_JOBS=${MAX_JOBS:-1}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0+PTX}
torch_version=$("$VPY" -c 'import torch; print(torch.__version__)')
cuda_version=$("$VPY" -c 'import torch; print(torch.version.cuda or "")')
[ -n "$cuda_version" ] || die "torch $torch_version is a CPU-only build: nothing to link CUDA code against"
cuda_major=${cuda_version%%.*}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/sole_ros
PREFIX=${SOLE_CUDA_PREFIX:-$CACHE_ROOT/cuda-$cuda_version}
BUILD=${SOLE_CUDA_BUILD_DIR:-${TMPDIR:-/tmp}/sole_ros-me-cuda}
WHEELS=${SOLE_WHEEL_CACHE:-$CACHE_ROOT/wheels}/me-0.5.4-torch-$torch_version-cuda
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
log "torch $torch_version (CUDA $cuda_version), MAX_JOBS=$MAX_JOBS, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, nice $(nice)"

# --- 1. the CUDA toolkit from PyPI wheels, in a scratch prefix -----------------------------------
if [ "$cuda_major" -ge 13 ]; then
  # CUDA 13 wheels share one tree, nvidia/cu13/{bin,include,lib,nvvm}.
  toolkit=("nvidia-cuda-nvcc==$cuda_version.*" "nvidia-cuda-crt==$cuda_version.*"
           "nvidia-nvvm==$cuda_version.*" "nvidia-curand")
else
  toolkit=("nvidia-cuda-nvcc-cu$cuda_major==$cuda_version.*" "nvidia-curand-cu$cuda_major")
fi
if [ ! -f "$PREFIX/.complete" ]; then
  log "installing ${toolkit[*]} into $PREFIX/pkgs"
  rm -rf "$PREFIX"
  quiet_pip install -q --no-deps --target "$PREFIX/pkgs" "${toolkit[@]}"
  touch "$PREFIX/.complete"
fi
nvcc=$(find "$PREFIX/pkgs/nvidia" -path '*/bin/nvcc' -type f | head -n1)
[ -n "$nvcc" ] || die "no nvcc in $PREFIX/pkgs"
export CUDA_HOME=$(dirname "$(dirname "$nvcc")")
# nvcc looks for headers in $CUDA_HOME/include and libraries in $CUDA_HOME/lib (its nvcc.profile);
# torch links $CUDA_HOME/lib64. Link in every header folder and library the wheels hold, the
# venv's first (those are what torch runs with), plus the unversioned names the linker needs.
mkdir -p "$CUDA_HOME/include" "$CUDA_HOME/lib"
[ -e "$CUDA_HOME/lib64" ] || ln -s lib "$CUDA_HOME/lib64"
for dir in "$SITE"/nvidia/*/include "$PREFIX"/pkgs/nvidia/*/include; do
  [ "$dir" = "$CUDA_HOME/include" ] && continue
  for entry in "$dir"/*; do
    [ -e "$CUDA_HOME/include/${entry##*/}" ] || ln -s "$entry" "$CUDA_HOME/include/"
  done
done
for dir in "$SITE"/nvidia/*/lib "$PREFIX"/pkgs/nvidia/*/lib; do
  [ "$dir" = "$CUDA_HOME/lib" ] && continue
  for entry in "$dir"/*.so*; do
    [ -e "$entry" ] || continue
    [ -e "$CUDA_HOME/lib/${entry##*/}" ] || ln -s "$entry" "$CUDA_HOME/lib/"
  done
done
for name in cudart cusparse cublas; do
  versioned=$(ls "$CUDA_HOME/lib/lib$name.so."* 2>/dev/null | head -n1)
  [ -n "$versioned" ] || die "lib$name.so.* not found (the venv's torch should bring it)"
  ln -sfn "${versioned##*/}" "$CUDA_HOME/lib/lib$name.so"
done
export PATH=$CUDA_HOME/bin:$PATH
# CUDA 13 keeps Thrust/CUB/libcu++ in include/cccl: nvcc adds it, the C++ compiler (for the .cpp
# sources that include Thrust headers) needs it said.
if [ -d "$CUDA_HOME/include/cccl" ]; then
  export CPLUS_INCLUDE_PATH=$CUDA_HOME/include/cccl${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}
fi
nvcc_version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\), \(V[0-9.]*\).*/\1 (\2)/p')
log "nvcc $nvcc_version at $nvcc"

# --- 2. build tools for this old setup.py, outside the venv ---------------------------------------
TOOLS=$PREFIX/buildtools
if [ ! -f "$TOOLS/.complete" ]; then
  log "installing numpy<2, setuptools<60, wheel into $TOOLS"
  rm -rf "$TOOLS"
  quiet_pip install -q --target "$TOOLS" "numpy<2" "setuptools<60" "wheel<0.43"
  touch "$TOOLS/.complete"
fi

# --- 3. sources: the sdist plus the project's patches ----------------------------------------------
mkdir -p "$BUILD"
if [ ! -f "$BUILD/MinkowskiEngine-0.5.4.tar.gz" ]; then
  quiet_pip download -q --no-deps --no-binary :all: --no-build-isolation \
    "$(grep -iE '^MinkowskiEngine==' "$CONSTRAINTS" | head -n1)" -d "$BUILD"
fi
rm -rf "$BUILD/fresh" && mkdir "$BUILD/fresh"
tar -xzf "$BUILD/MinkowskiEngine-0.5.4.tar.gz" -C "$BUILD/fresh"
for p in "$PATCHES"/*.patch; do
  log "applying ${p##*/}"
  patch -s -p1 -d "$BUILD/fresh/MinkowskiEngine-0.5.4" < "$p" || die "${p##*/} does not apply"
done
# Copy only what changed into the kept tree, so ninja recompiles only the affected objects.
SRC=$BUILD/MinkowskiEngine-0.5.4
(cd "$BUILD/fresh/MinkowskiEngine-0.5.4" && find . -type f) | while read -r f; do
  if ! cmp -s "$BUILD/fresh/MinkowskiEngine-0.5.4/$f" "$SRC/$f"; then
    mkdir -p "$(dirname "$SRC/$f")" && cp "$BUILD/fresh/MinkowskiEngine-0.5.4/$f" "$SRC/$f"
  fi
done
rm -rf "$BUILD/fresh" "$SRC/dist"

# --- 4. the wheel ----------------------------------------------------------------------------------
log "building the wheel (log: $BUILD/build.log)"
start=$(date +%s)
status=0
(cd "$SRC" && PYTHONPATH=$TOOLS "$VPY" setup.py bdist_wheel --force_cuda --blas=openblas \
   --cuda_home="$CUDA_HOME" >"$BUILD/build.log" 2>&1) || status=$?
elapsed=$(( $(date +%s) - start ))
ninja_log=$(find "$SRC/build" -name .ninja_log 2>/dev/null | head -n1)
if [ -n "$ninja_log" ]; then
  log "compile time per object this run (seconds, from ninja's log):"
  awk 'NR > 1 { t[$4] = ($2 - $1) / 1000 } END { for (o in t) printf "  %7.1f  %s\n", t[o], o }' \
    "$ninja_log" | sed 's#  /.*/#  #' | sort -k2 >&2
fi
log "setup.py bdist_wheel took ${elapsed}s (exit $status)"
if [ "$status" != 0 ]; then
  grep -nE 'error|FAILED' "$BUILD/build.log" | head -n 30 >&2 || true
  tail -n 20 "$BUILD/build.log" >&2
  die "compilation failed (full log: $BUILD/build.log)"
fi
wheel=$(ls "$SRC"/dist/MinkowskiEngine-0.5.4-*.whl)

# --- 5. import from a scratch install (no GPU here: it may warn) -----------------------------------
rm -rf "$BUILD/site"
quiet_pip install -q --no-deps --target "$BUILD/site" "$wheel"
check=$(cd / && PYTHONPATH=$BUILD/site "$VPY" - "$BUILD/site" <<'EOF'
import collections, collections.abc, sys
collections.Sequence = collections.abc.Sequence  # MinkowskiEngine 0.5.4 on Python >= 3.10
import MinkowskiEngine as ME
import MinkowskiEngineBackend._C as C
assert ME.__file__.startswith(sys.argv[1]), f"imported {ME.__file__}, not the scratch build"
print(f"imported {ME.__version__} from {ME.__file__}")
print(f"compiled with CUDA: {ME.is_cuda_available()}; CUDA version it was built with: "
      f"{C.cuda_version() if hasattr(C, 'cuda_version') else 'n/a'}")
sys.exit(0 if ME.is_cuda_available() else 3)
EOF
) || { echo "$check" >&2; die "the CUDA wheel does not import, or was built without CUDA"; }
echo "$check" | sed 's/^/  /' >&2

mkdir -p "$WHEELS"
rm -f "$WHEELS"/MinkowskiEngine-0.5.4-*.whl
cp "$wheel" "$WHEELS/"
log "OK: nvcc $nvcc_version, archs $TORCH_CUDA_ARCH_LIST, ${elapsed}s; wheel cached in $WHEELS"

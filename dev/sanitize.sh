#!/usr/bin/env bash
# The whole test suite on an AddressSanitizer + UndefinedBehaviorSanitizer build of dnnkit._core.
# Builds into build/asan (never touches build/dev or python/dnnkit/_core*.so), assembles an importable copy of the
# package in build/asan/site, and runs pytest against it with libasan preloaded (CPython itself is not
# instrumented, so ASan must be loaded first). Exits non-zero if a test fails OR any sanitizer report was written.
#   dev/sanitize.sh                 # everything
#   dev/sanitize.sh tests/test_io.py -k fuzz     # arguments go to pytest
# Notes: detect_leaks=0 (CPython's interned objects and arenas are "leaks" to LSan); torch is made unimportable
# (its own allocator and prebuilt libraries are not ASan-clean), so the PyTorch cross-checks are skipped here and
# run in the normal suite. Reports go to build/asan/reports/ (one file per process) and are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
B=build/asan
CCACHE=${CCACHE-$(command -v ccache || true)}
exec 9>/tmp/dnnkit-build.lock   # the machine's one build lock (shared with dev/build.sh)
flock 9
if [ ! -f $B/build.ninja ]; then
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNNKIT_SANITIZE=ON \
        -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
        ${CCACHE:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CCACHE} >/dev/null
fi
cmake --build $B
flock -u 9
# an importable package: the sources as they are now + the sanitized extension; a torch that refuses to import
rm -rf $B/site && mkdir -p $B/site/torch $B/reports
cp -r python/dnnkit $B/site/dnnkit
rm -f $B/site/dnnkit/_core*.so
cp $B/_core*.so $B/site/dnnkit/
printf 'raise ModuleNotFoundError("torch is skipped under AddressSanitizer (dev/sanitize.sh)", name="torch")\n' > $B/site/torch/__init__.py
rm -f $B/reports/*
CXX=${CXX:-c++}
ASAN_LIB=$($CXX -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || { echo "sanitize.sh: libasan.so not found for $CXX" >&2; exit 2; }
# libstdc++ too: python does not link it, and ASan's __cxa_throw interceptor must find the real one at start-up
# (otherwise the first C++ exception of any extension, e.g. matplotlib's, aborts in a CHECK)
STDCXX_LIB=$($CXX -print-file-name=libstdc++.so)
export LD_PRELOAD="$ASAN_LIB:$STDCXX_LIB${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$PWD/$B/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$PWD/$B/reports/ubsan"
export PYTHONPATH="$PWD/$B/site"
export DNNKIT_SANITIZED=1
set +e
"$PY" -c "import dnnkit, sys; sys.exit(0 if dnnkit.__file__.startswith('$PWD/$B/site/') else 'wrong dnnkit: ' + dnnkit.__file__)"
rc=$?
if [ $rc -eq 0 ]; then
  "$PY" -m pytest -q -p no:cacheprovider "$@"
  rc=$?
fi
set -e
reports=$(ls $B/reports 2>/dev/null | wc -l)
if [ "$reports" -gt 0 ]; then
  echo "=== sanitizer reports ($reports files in $B/reports) ===" >&2
  for f in $B/reports/*; do echo "--- $f" >&2; head -60 "$f" >&2; done
  exit 1
fi
echo "sanitize.sh: pytest exit $rc, no sanitizer reports"
exit $rc

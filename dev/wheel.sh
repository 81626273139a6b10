#!/usr/bin/env bash
# Build the sdist and a binary wheel, repair the wheel with auditwheel into a portable manylinux wheel in
# wheelhouse/, then (unless --no-test) install it into a fresh virtual environment with NO compiler
# available and run the test suite against the installed package (not the source tree).
#
#   dev/wheel.sh [--no-test] [--plat TAG]
#
# The wheel is built from the sdist (python -m build does that), so it contains exactly what a user's
# `pip install dnnkit-*.tar.gz` would compile: no in-tree _core*.so, no build/ leftovers.
# OpenBLAS: the extension links the pinned scipy-openblas32 wheel (an exact runtime dependency, see the
# README, "Threads and the BLAS"), so the repair EXCLUDES libscipy_openblas.so; libgomp (and anything else
# outside the manylinux policy) is grafted into dnnkit.libs/ by auditwheel.
# The real platform matrix (manylinux_2_28 x86_64/aarch64, macOS, Windows) is [tool.cibuildwheel] in
# pyproject.toml; this script is the same path on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TEST=1; PLAT=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-test) TEST=0 ;;
    --plat) PLAT=$2; shift ;;
    *) echo "usage: dev/wheel.sh [--no-test] [--plat TAG]" >&2; exit 2 ;;
  esac
  shift
done
rm -rf dist wheelhouse
# 1. sdist, then the wheel from the sdist (build isolation: the pinned build requirements from PyPI)
"$PY" -m build --sdist --wheel --outdir dist . 2>&1 | tail -n 3
raw=$(ls dist/dnnkit-*.whl)
sdist=$(ls dist/dnnkit-*.tar.gz)
# the sdist must not carry build products
if tar tzf "$sdist" | grep -E '\.(so|pyd|dylib)$|/build/'; then echo "sdist contains build products" >&2; exit 1; fi
# 2. repair: the best policy this host's glibc allows, unless --plat names one
"$PY" -m auditwheel show "$raw"
if [ -z "$PLAT" ]; then
  PLAT=$("$PY" - "$raw" <<'PYEOF'
import json, subprocess, sys
out = subprocess.run([sys.executable, "-m", "auditwheel", "show", sys.argv[1]], capture_output=True, text=True)
# auditwheel prints 'This constrains the platform tag to "manylinux_2_17_x86_64"' (the best it can do)
import re
m = re.search(r'constrains the platform tag to "([^"]+)"', out.stdout)
if not m:
    sys.exit("auditwheel show did not name a platform tag:\n" + out.stdout + out.stderr)
print(m.group(1))
PYEOF
)
fi
echo "repairing for $PLAT"
"$PY" -m auditwheel repair --plat "$PLAT" --exclude 'libscipy_openblas*.so*' -w wheelhouse "$raw"
cp "$sdist" wheelhouse/
whl=$(ls wheelhouse/dnnkit-*.whl)
"$PY" -m auditwheel show "$whl"
unzip -l "$whl" | grep -E 'dnnkit\.libs/|_core|py\.typed|\.pyi' || true
[ "$TEST" = 1 ] || exit 0

# 3. a fresh venv, no compiler: the install must not need one (only binary wheels allowed)
venv=$(mktemp -d /tmp/dnnkit-wheel-venv.XXXXXX)
work=$(mktemp -d /tmp/dnnkit-wheel-tests.XXXXXX)
nocc=$(mktemp -d /tmp/dnnkit-nocc.XXXXXX)      # a PATH directory that shadows every compiler with /bin/false
trap 'rm -rf "$venv" "$work" "$nocc"' EXIT
"$PY" -m venv "$venv"
for c in cc gcc g++ c++ clang clang++ cmake ninja; do ln -s /bin/false "$nocc/$c"; done
export CC=/bin/false CXX=/bin/false
# (pip must not find a compiler even if some dependency had no wheel: the install would then fail, not build)
PATH="$nocc:$venv/bin:$PATH" "$venv/bin/python" -m pip install -q --only-binary :all: "$whl[test]"
"$venv/bin/python" -m pip check
# 4. the suite against the installed wheel: tests copied away from the source tree, so python/ is not on
#    sys.path and `import dnnkit` can only find the installed package
cp -r tests "$work/tests"
cp pyproject.toml README.md "$work/"
[ -d examples ] && cp -r examples "$work/examples"
[ -d docs ] && cp -r docs "$work/docs"
cd "$work"
PATH="$nocc:$venv/bin:$PATH" "$venv/bin/python" - <<'PYEOF'
import dnnkit, os
assert "site-packages" in dnnkit.__file__, dnnkit.__file__
print("testing the installed wheel:", os.path.dirname(dnnkit.__file__), dnnkit.__version__)
PYEOF
PATH="$nocc:$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests

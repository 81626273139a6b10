#!/usr/bin/env bash
# Build the reference documentation (Sphinx + numpydoc + MyST) into docs/_build/html, warnings as errors.
# Needs the docs extra (pip install '.[docs]') and an importable dnnkit (installed, or dev/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
rm -rf docs/_build
"$PY" -m sphinx -W --keep-going -q -b html docs docs/_build/html "$@"
echo "docs: docs/_build/html/index.html"

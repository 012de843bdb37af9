#!/usr/bin/env bash
# Creates .venv with the CPU build of torch (pinned by constraints.txt) and synthviz installed.
# EXTRAS selects the optional dependencies: "notebook" for the app, "dev" for tests.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-notebook}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>/dev/null || true
# A GPU user removes "-c constraints.txt" after installing the CUDA build of torch (see README).
python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"

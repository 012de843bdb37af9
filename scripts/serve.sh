#!/usr/bin/env bash
# Sets everything up, then serves the app on http://127.0.0.1:5006/app (local only; no auth).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=notebook bash scripts/setup.sh
. .venv/bin/activate
exec panel serve app --address 127.0.0.1 --port "${PORT:-5006}" "$@"

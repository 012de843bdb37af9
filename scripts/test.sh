#!/usr/bin/env bash
# Sets everything up (Debian's Chromium for browser tests, the venv) and runs every test,
# slow 16k-scale, browser and notebook tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
EXTRAS=dev bash scripts/setup.sh
. .venv/bin/activate
python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
exec python -m pytest "$@"

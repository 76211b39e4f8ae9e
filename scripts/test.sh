#!/usr/bin/env bash
# One command: set up, install the browser the App test needs, run lint and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing Debian chromium for the browser tests"
    (apt-get update -q && apt-get install -y -q chromium) >/tmp/imgaudit-apt.log 2>&1 || \
      echo "[test] chromium install failed (see /tmp/imgaudit-apt.log); browser tests will skip"
  fi
fi
.venv/bin/ruff check imgaudit tests benchmarks
.venv/bin/mypy imgaudit
.venv/bin/python -m pytest -q "$@"

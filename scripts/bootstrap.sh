#!/usr/bin/env bash
# Create (once) and reuse .venv with everything the package, its tests and its demo need.
# Usage: source scripts/bootstrap.sh   (or: bash scripts/bootstrap.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NNUNET_LOSSES_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.nnunet_losses_installed"
REQ_HASH="$(cat "$ROOT/setup.py" "$ROOT/requirements-test.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQ_HASH" ]; then
  echo "[bootstrap] installing torch, nnU-Net and test tools into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements-test.txt" -e "$ROOT"
  echo "$REQ_HASH" > "$STAMP"
fi

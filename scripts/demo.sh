#!/usr/bin/env bash
# Run the demo in the project's .venv (created on first use). Extra arguments go to the demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "${NNUNET_LOSSES_VENV:-$ROOT/.venv}/bin/python" -m nnunet_losses.demo "$@"

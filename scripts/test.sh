#!/usr/bin/env bash
# Run the whole test suite in the project's .venv (created on first use). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "${NNUNET_LOSSES_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"

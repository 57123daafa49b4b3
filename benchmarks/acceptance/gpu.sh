#!/usr/bin/env bash
# One-command acceptance run on a GPU (see benchmarks/acceptance/gpu.py and docs/benchmarks.md):
#   bash benchmarks/acceptance/gpu.sh                      # CUDA, full sizes, writes benchmarks/results/gpu-<date>.json/.md
#   bash benchmarks/acceptance/gpu.sh --device cpu --smoke --out /tmp/acc   # CPU check of the script
# Exits non-zero if any check fails. Uses the repository's .venv when there is one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
exec "$PY" -m benchmarks.acceptance.gpu "$@"

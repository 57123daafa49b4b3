#!/usr/bin/env bash
# The nnU-Net demo in the project's .venv (created on first use): generate a dataset, plan and preprocess,
# precompute maps, train nnU-Net's default trainer and 5 loss trainers for a few short epochs, predict the
# held-out cases, compare (about 5 CPU-minutes: ~3 minutes on 2 free cores). Output: ./demo_output/ (in the
# current folder).
# Extra arguments go to nnunet_losses_demo (e.g. --quick, -o DIR, --overwrite,
# --trainers nnUNetTrainer nnUNetTrainerCWCD, --epochs 20).
#   bash scripts/demo.sh losses [ARGS]   runs the one-minute loss demo instead (python -m nnunet_losses.loss_demo)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
PY="${NNUNET_LOSSES_VENV:-$ROOT/.venv}/bin/python"
if [ "${1:-}" = "losses" ]; then
  shift
  exec "$PY" -m nnunet_losses.loss_demo "$@"
fi
exec "$PY" -m nnunet_losses.nnunet.tools.workflow_demo "$@"

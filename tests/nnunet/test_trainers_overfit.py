"""The main trainers learn: a short overfit run on one case (in-process nnU-Net training loop).

Dataset: ``vessels2d`` of conftest (thin lines, 2-4 px wide, ignore label outside a circular field
of view: the DRIVE situation in miniature), configuration 2d with the tiny plans, fold 1 = train
and validate on case 0. ``nnUNetTrainer.run_training`` runs 8 epochs of 20 iterations (seeded).

Checks: the mean training loss of the last epoch is below 60 % of the first epoch's, and nnU-Net's
own online validation Dice of the foreground (``mean_fg_dice``: the pseudo Dice on validation
patches) reaches 0.7 in one of the last two epochs.

Why 0.7: the trivial predictions score far lower. All background gives 0; all foreground gives
``2f / (1 + f)`` with f the fraction of line pixels among the counted ones, asserted below to be
< 0.35 (f is 0.16 here, so 0.28). Networks in their first epochs score 0.0-0.75. The seeded
runs (deterministic on one machine) end at 0.83 (AsymFbeta) to 0.98 (CWCD), so 0.7 leaves a margin
for other CPUs and library versions while still requiring the lines to be segmented.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402

MAIN = ["nnUNetTrainerCWCD", "nnUNetTrainerCombo", "nnUNetTrainerAsymFbeta", "nnUNetTrainerCETopKDice",
        "nnUNetTrainerOsC"]
EPOCHS, ITERS, THRESHOLD = 8, 20, 0.7


def test_trivial_predictions_score_below_threshold(nnunet_tiny):
    from PIL import Image

    folder = os.path.join(nnunet_tiny.raw, nnunet_tiny.datasets["vessels2d"], "labelsTr")
    seg = np.asarray(Image.open(os.path.join(folder, sorted(os.listdir(folder))[0])))
    counted = seg != 2
    f = float((seg[counted] == 1).mean())
    all_foreground_dice = 2 * f / (1 + f)
    assert all_foreground_dice < 0.35 < THRESHOLD


@pytest.mark.parametrize("name", MAIN)
def test_overfit_one_case(nnunet_tiny, monkeypatch, tmp_path, name):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    tr = nnunet_tiny.trainer(getattr(T, name), "vessels2d", "2d", True, fold=1, num_epochs=EPOCHS,
                      num_iterations_per_epoch=ITERS, num_val_iterations_per_epoch=2, save_every=10 ** 6)
    tr.run_training()
    log = tr.logger.local_logger.my_fantastic_logging
    losses, dice = log["train_losses"], [float(d) for d in log["mean_fg_dice"]]
    print(f"{name}: train loss {np.round(losses, 3).tolist()}, fg Dice {np.round(dice, 3).tolist()}")
    assert len(losses) == EPOCHS
    assert losses[-1] < 0.6 * losses[0], f"training loss did not fall enough: {losses}"
    assert max(dice[-2:]) >= THRESHOLD, f"validation Dice per epoch: {np.round(dice, 3).tolist()}"

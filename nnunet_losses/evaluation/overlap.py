"""Overlap metrics of one binary prediction against one binary reference (NumPy, any dimension).

With TP, FP, FN the voxel counts of true positives, false positives and false negatives:

    Dice      = 2 TP / (2 TP + FP + FN)
    IoU       = TP / (TP + FP + FN)            (Jaccard index; IoU = Dice / (2 - Dice))
    precision = TP / (TP + FP)                 (positive predictive value)
    recall    = TP / (TP + FN)                 (sensitivity, true positive rate)

Empty masks (conventions, documented in docs/compare.md):
- reference and prediction both empty: Dice and IoU are NaN, as in nnU-Net's own evaluation
  (``nnunetv2.evaluation.evaluate_predictions.compute_metrics``): there is nothing to overlap, so
  the case says nothing about the class and is left out of the means (they are NaN-means).
- only one of them empty: Dice = IoU = 0 (the worst value: a missed or an invented structure).
- precision is NaN when nothing is predicted (no positive decision to be right about), recall is
  NaN when the reference is empty (no positive to find). Dice already penalises both situations.

Voxels where ``valid`` is False (nnU-Net's ignore label) count in no term.
"""
from __future__ import annotations

import numpy as np


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def confusion(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) voxel counts of boolean ``pred`` against boolean ``ref``; ``valid`` False = not counted."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}: "
                         "both must be on the same voxel grid")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != ref.shape:
            raise ValueError(f"valid-mask shape {valid.shape} differs from reference shape {ref.shape}")
        pred = pred & valid
        ref = ref & valid
        n = int(np.count_nonzero(valid))
    else:
        n = ref.size
    tp = int(np.count_nonzero(pred & ref))
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    fp, fn = n_pred - tp, n_ref - tp
    return tp, fp, fn, n - tp - fp - fn


def overlap_metrics(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall from counts, with the empty-mask conventions of the module docstring."""
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }

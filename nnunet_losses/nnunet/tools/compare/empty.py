"""Empty masks in the tables, statistics and rankings (``--empty score``, the default, or ``--empty nan``).

The metrics (nnunet_losses.evaluation) return NaN where a ratio is undefined: both masks empty
(nothing to measure) for every metric, precision without a prediction, recall without a reference.
Left as NaN, such a case drops out of the means, the paired test and the ranking: a method that
rightly predicts nothing where the reference is empty is never credited, and one that invents a
structure there is penalised only where some other value is defined. The Metrics Reloaded
recommendations (Maier-Hein et al., Nature Methods 2024) and the BraTS challenges score these
cases instead, which is what ``score`` does:

- **both empty** (``empty`` = "both"): the perfect value: Dice, IoU, precision, recall, surface Dice,
  clDice, lesion TPR = 1; HD95, lesion FPR, Betti errors = 0 (Betti-1 error stays NaN in 3D, where
  it is not computed);
- **one empty** ("reference": nothing to find but something predicted; "prediction": nothing
  predicted but something to find): the worst value. Dice, IoU, surface Dice, clDice = 0 and HD95 =
  the image diagonal already; the ratios that are undefined (recall and lesion TPR without a
  reference, precision without a prediction) become 0 and lesion FPR without a predicted lesion 1.

``nan`` keeps the metrics' NaN (the behaviour before this option: such cases are left out). Both
ways, per_case.csv's ``empty`` column says which cases these are.
"""
from __future__ import annotations

import math

EMPTY_CONVENTIONS = ("score", "nan")
PERFECT = {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "nsd": 1.0, "cldice": 1.0, "lesion_tpr": 1.0,
           "hd95": 0.0, "lesion_fpr": 0.0, "betti0_error": 0.0, "betti1_error": 0.0}
WORST_UNDEFINED = {"reference": {"recall": 0.0, "lesion_tpr": 0.0},      # nothing to find, something predicted
                   "prediction": {"precision": 0.0, "lesion_fpr": 1.0}}  # nothing predicted, something to find


def empty_kind(n_ref: int, n_pred: int) -> str:
    """"both", "reference", "prediction" (the mask that is empty) or "" (neither)."""
    if n_ref == 0:
        return "both" if n_pred == 0 else "reference"
    return "prediction" if n_pred == 0 else ""


def score_empty(metrics: dict, kind: str, ndim: int) -> dict:
    """``metrics`` (one class of one case) with the ``score`` convention applied (module docstring).

    Only values that are NaN are replaced, except for "both", where every metric takes its perfect value.
    ``ndim``: the image's dimension without length-1 axes (Betti-1 error is NaN unless 2D).
    """
    out = dict(metrics)
    if kind == "both":
        for name, value in PERFECT.items():
            if name in out and not (name == "betti1_error" and ndim != 2):
                out[name] = value
    for name, value in WORST_UNDEFINED.get(kind, {}).items():
        if name in out and math.isnan(out[name]):
            out[name] = value
    return out

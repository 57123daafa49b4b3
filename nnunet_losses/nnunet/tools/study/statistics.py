"""Run-level statistics and the degenerate-solution screen, from the compare tool's ``per_case.csv``.

Two levels, never mixed:

* **case level** (the compare tool's ``paired.csv`` / ``ranking.csv``): the trained models are fixed, the
  test cases are resampled; it says whether *these models* differ on cases like these;
* **run level** (here): one value per run (mean over cases and foreground classes of one (fold, seed)
  training) and arm; each arm is paired with the baseline run by run, two-sided Wilcoxon signed-rank test
  over the runs, Holm's correction over every arm the study compares with the baseline (arms not compared
  yet count as p = 1, so a later result can only lower a corrected p). It says whether *training with this
  loss* differs, training randomness included. With n runs (no ties) the smallest reachable two-sided p is
  2 / 2^n: with 3 runs p >= 0.25, so a run-level test needs about 6 runs (p >= 0.031) to ever reach 0.05.

Screen (per run and foreground class): median over cases of the predicted / reference foreground volume,
mean precision, and the predicted components that touch no reference structure (the compare tool's
``n_false_lesions``). A run is flagged when its median volume ratio is outside [0.5, 2] or its precision is
below half the baseline's in the same (fold, seed): how a loss that paints background as foreground shows.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_losses.nnunet.tools.compare.paired import TIE, holm, wilcoxon_p

__all__ = ["as_float", "run_values", "run_level_tests", "holm_planned", "smallest_p", "screen", "VOLUME_RANGE",
           "PRECISION_FACTOR"]

VOLUME_RANGE = (0.5, 2.0)
PRECISION_FACTOR = 0.5


def as_float(v) -> float:
    """``float(v)``, NaN for an empty or missing CSV cell."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _nanmean(xs) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def run_values(rows: Sequence[dict], runs: Sequence[tuple], metric: str = "dice",
               skip_classes: Sequence[str] = ("mean",)) -> Dict[str, Dict[tuple, float]]:
    """{arm: {(fold, seed): mean of ``metric`` over cases and classes}} from per_case.csv rows.

    ``runs[i]`` is the (fold, seed) of the i-th prediction folder of every method (the compare tool's
    ``fold`` column is that position)."""
    acc: Dict[str, Dict[tuple, list]] = {}
    for r in rows:
        if r["class_name"] in skip_classes:
            continue
        key = runs[int(r["fold"])]
        acc.setdefault(r["method_name"], {}).setdefault(key, []).append(as_float(r[metric]))
    return {m: {k: _nanmean(v) for k, v in by.items()} for m, by in acc.items()}


def smallest_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test reaches with ``n`` non-zero differences."""
    return 2.0 / 2 ** n if n >= 1 else 1.0


def holm_planned(p_values: Sequence[float], family_size: int) -> np.ndarray:
    """Holm-adjusted ``p_values`` in a family of ``family_size`` planned tests, those without a (finite) p yet
    counted as p = 1: an adjusted p can then only fall as the other tests arrive, so a difference that holds
    now still holds when the family is complete.

    >>> [round(float(p), 4) for p in holm_planned([0.002, 0.01], 4)]  # Holm over 4: 4 x 0.002, 3 x 0.01
    [0.008, 0.03]
    """
    p = np.asarray(p_values, dtype=np.float64)
    missing = max(0, int(family_size) - int(np.isfinite(p).sum()))
    return holm(np.concatenate([p, np.ones(missing)]))[:p.size]


def run_level_tests(values: Dict[str, Dict[tuple, float]], baseline: str, arms: Sequence[str],
                    higher_is_better: bool = True) -> List[dict]:
    """Per arm: mean difference to the baseline over the runs both have, runs better / equal / worse,
    Wilcoxon p, Holm-adjusted p over the arms compared here (``family_size``; a study's report widens the
    family with :func:`holm_planned`), the smallest reachable p."""
    rows = []
    for arm in arms:
        if arm == baseline or arm not in values or baseline not in values:
            continue
        common = [k for k in values[arm] if k in values[baseline]
                  and not math.isnan(values[arm][k]) and not math.isnan(values[baseline][k])]
        d = np.array([values[arm][k] - values[baseline][k] for k in common])
        sign = 1 if higher_is_better else -1
        tie = np.abs(d) <= TIE
        rows.append({"arm": arm, "baseline": baseline, "n_runs": len(common),
                     "mean_diff": float(d.mean()) if d.size else float("nan"),
                     "better": int(np.sum((sign * d > 0) & ~tie)), "equal": int(np.sum(tie)),
                     "worse": int(np.sum((sign * d < 0) & ~tie)), "p_value": wilcoxon_p(d),
                     "smallest_p": smallest_p(int(np.sum(~tie)))})
    for r, p in zip(rows, holm([r["p_value"] for r in rows])):
        r["p_holm"], r["family_size"] = float(p), len(rows)
    return rows


def screen(rows: Sequence[dict], runs: Sequence[tuple], baseline: str,
           classes_skip: Sequence[str] = ("mean",)) -> List[dict]:
    """One row per (arm, run, class): volume ratio, precision, false components, flags (module docstring)."""
    acc: Dict[Tuple[str, tuple, str], dict] = {}
    for r in rows:
        if r["class_name"] in classes_skip:
            continue
        key = (r["method_name"], runs[int(r["fold"])], r["class_name"])
        a = acc.setdefault(key, {"ratios": [], "precision": [], "false": 0.0})
        n_ref, n_pred = as_float(r.get("n_ref")), as_float(r.get("n_pred"))
        if n_ref > 0:
            a["ratios"].append(n_pred / n_ref)
        a["precision"].append(as_float(r.get("precision")))
        f = as_float(r.get("n_false_lesions"))
        if not math.isnan(f):
            a["false"] += f
    out = []
    for (arm, run, cls), a in acc.items():
        ratio = float(np.median(a["ratios"])) if a["ratios"] else float("nan")
        out.append({"arm": arm, "fold": run[0], "seed": run[1], "class": cls, "volume_ratio": ratio,
                    "precision": _nanmean(a["precision"]), "false_components": int(a["false"])})
    base = {(r["fold"], r["seed"], r["class"]): r["precision"] for r in out if r["arm"] == baseline}
    for r in out:
        reasons = []
        if not math.isnan(r["volume_ratio"]) and not VOLUME_RANGE[0] <= r["volume_ratio"] <= VOLUME_RANGE[1]:
            reasons.append(f"volume ratio {r['volume_ratio']:.2f} outside [{VOLUME_RANGE[0]}, {VOLUME_RANGE[1]}]")
        b: Optional[float] = base.get((r["fold"], r["seed"], r["class"]))
        if r["arm"] != baseline and b is not None and not math.isnan(b) and r["precision"] < PRECISION_FACTOR * b:
            reasons.append(f"precision {r['precision']:.3f} below half the baseline's {b:.3f}")
        r["flag"] = "; ".join(reasons)
    return out

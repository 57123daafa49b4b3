"""Every pair of methods, one-sided (``--ranking``): pairwise.csv and challengeR's significance map.

Per metric, on the "mean" row of each case (the values the ranking uses: mean over the classes, a
method's folds averaged; cases where some method has no value left out), for every ordered pair
(method, other):

- **p_value**: one-sided Wilcoxon signed-rank test (paired.py's :func:`wilcoxon_p`: exact below 50
  non-zero differences, zeros dropped) that ``method`` is *better* than ``other``: the differences
  method - other tend to be positive (higher is better) or negative (lower is better);
- **p_holm**: Holm's correction over the M (M - 1) ordered pairs of the metric (one family per
  metric, as in challengeR's significance maps);
- **better**: p_holm < 0.05: ``method`` is significantly better than ``other`` on these cases.

Wiesenfarth et al., Scientific Reports 2021 (challengeR): "significance maps" show, for every pair,
whether the row method is significantly superior to the column method.
"""
from __future__ import annotations

import numpy as np

from nnunet_losses.evaluation import METRICS

from .paired import ALPHA, TIE, holm, wilcoxon_p
from .ranking import case_values

PAIRWISE_COLUMNS = ["metric", "method", "other", "n", "n_nonzero", "p_value", "p_holm", "better"]


def pairwise_table(df, metrics, methods):
    """pairwise.csv as a DataFrame (PAIRWISE_COLUMNS): every ordered pair of methods, every metric."""
    import pandas as pd

    rows = []
    for metric in metrics:
        values = case_values(df, metric, len(methods))
        if values.shape[0] == 0:
            continue
        alternative = "greater" if METRICS[metric][1] else "less"
        family = []
        for i, a in enumerate(methods):
            for j, b in enumerate(methods):
                if i != j:
                    d = values[:, i] - values[:, j]
                    family.append({"metric": metric, "method": a.name, "other": b.name, "n": d.size,
                                   "n_nonzero": int(np.count_nonzero(np.abs(d) > TIE)),
                                   "p_value": wilcoxon_p(d, alternative)})
        p_holm = holm([r["p_value"] for r in family])
        for r, ph in zip(family, p_holm):
            rows.append({**r, "p_holm": float(ph), "better": bool(np.isfinite(ph) and ph < ALPHA)})
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def pairwise_section(pairwise, metric: str) -> str:
    """One line per method: the methods it is significantly better than (``## Pairwise: <title>``)."""
    p = pairwise[pairwise.metric == metric]
    lines = [f"## Pairwise: {METRICS[metric][0]} (one-sided Wilcoxon, Holm over the {len(p)} ordered pairs)", ""]
    for name in dict.fromkeys(p.method):
        better = p[(p.method == name) & p.better].other.tolist()
        lines.append(f"- {name}: significantly better than {', '.join(better) if better else 'no other method'}")
    return "\n".join(lines)

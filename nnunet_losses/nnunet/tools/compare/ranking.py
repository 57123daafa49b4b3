"""Ranking of the methods with its stability (``--ranking``): ranking.csv, its tables and plots.

Per metric, on the "mean" row of each case (the mean over the classes defined for the case; a
method with several folds of a case: the mean over its folds):

- the methods are ranked per case (1 = best, by the metric's direction; ties share the mean of the
  ranks they span, ``scipy.stats.rankdata(method="average")``); cases where some method has no
  value (NaN) are left out;
- **mean_rank**: the mean over cases of each method's rank; **rank**: the rank of the mean ranks
  (1 = best; equal mean ranks share the better rank);
- stability: ``draws`` bootstrap samples of the cases (default 1 000; ``numpy.random.default_rng(seed)
  .integers(0, n, size=(draws, n))``), the mean ranks and the rank recomputed on each;
  **p_rank_k** is the fraction of samples in which the method takes rank k (a method sharing rank 1
  with another counts as rank 1 in that sample).

This is the "rank then aggregate" scheme of challenge rankings (e.g. the Medical Segmentation
Decathlon), with the bootstrap rank frequencies of Wiesenfarth et al., "Methods and open-source
toolkit for analyzing and visualizing challenge results", Scientific Reports 2021.
"""
from __future__ import annotations

import numpy as np

from nnunet_losses.evaluation import METRICS

from .paired import draw_counts
from .table import MEAN

RANK_DRAWS = 1_000


def case_values(df, metric: str, n_methods: int) -> np.ndarray:
    """(cases, methods) matrix of the "mean" row values (mean over a method's folds), cases with a NaN dropped."""
    sel = df[df["class"] == MEAN]
    table = sel.groupby(["case", "method"], sort=True)[metric].mean().unstack("method")
    table = table.reindex(columns=range(n_methods))
    values = table.to_numpy(dtype=np.float64)
    return values[np.all(np.isfinite(values), axis=1)]


def rank_rows(values: np.ndarray, higher: bool) -> np.ndarray:
    """Per-case ranks (1 = best) of a (cases, methods) matrix; ties share the mean rank."""
    from scipy.stats import rankdata

    return rankdata(-values if higher else values, axis=1, method="average")


def rank_stability(values: np.ndarray, higher: bool, draws: int = RANK_DRAWS, seed: int = 0):
    """(mean ranks, ranks, (methods, methods) matrix of rank frequencies [method, rank - 1])."""
    from scipy.stats import rankdata

    n, n_methods = values.shape
    per_case = rank_rows(values, higher)
    mean_rank = per_case.mean(axis=0)
    rank = rankdata(mean_rank, method="min").astype(int)
    w = draw_counts(n, draws, seed)
    boot_rank = rankdata((w @ per_case) / n, axis=1, method="min").astype(int)
    freq = np.stack([(boot_rank == k).mean(axis=0) for k in range(1, n_methods + 1)], axis=1)
    return mean_rank, rank, freq


def ranking_table(df, metrics, methods, draws: int = RANK_DRAWS, seed: int = 0):
    """ranking.csv as a DataFrame: metric, method, mean_rank, rank, p_rank_1 ... p_rank_M."""
    import pandas as pd

    n_methods = len(methods)
    cols = ["metric", "method", "mean_rank", "rank"] + [f"p_rank_{k}" for k in range(1, n_methods + 1)]
    rows = []
    for metric in metrics:
        values = case_values(df, metric, n_methods)
        if values.shape[0] == 0:
            continue  # no case where every method has a value
        mean_rank, rank, freq = rank_stability(values, METRICS[metric][1], draws, seed)
        for i, m in enumerate(methods):
            rows.append([metric, m.name, float(mean_rank[i]), int(rank[i]), *freq[i].tolist()])
    return pd.DataFrame(rows, columns=cols)


def ranking_section(ranking, metric: str) -> str:
    """``## Ranking: <title>``: methods by rank, mean rank and the bootstrap rank frequencies."""
    title, higher = METRICS[metric]
    r = ranking[ranking.metric == metric].sort_values(["rank", "method"], kind="stable")
    n_methods = len(r)
    lines = [f"## Ranking: {title} (per case, mean over classes; {'higher' if higher else 'lower'} is better)", "",
             "Methods ranked per case, ranks averaged over cases; columns 1..M: how often the method takes that "
             "rank over bootstrap samples of the cases.", "",
             "| Rank | Method | Mean rank | " + " | ".join(str(k) for k in range(1, n_methods + 1)) + " |",
             "|" + "---|" * (n_methods + 3)]
    for _, row in r.iterrows():
        freq = [f"{100 * row[f'p_rank_{k}']:.0f}%" for k in range(1, n_methods + 1)]
        lines.append(f"| {row['rank']} | {row['method']} | {row['mean_rank']:.2f} | " + " | ".join(freq) + " |")
    return "\n".join(lines)

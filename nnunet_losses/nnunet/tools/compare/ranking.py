"""Ranking of the methods with its stability (``--ranking``): ranking.csv, consensus.csv, their tables.

Per metric and per row (each foreground class, and the "mean" row: the mean over the classes of
the case), on the value of each case (a method with several folds of a case: the mean over its
folds):

- the methods are ranked per case (1 = best, by the metric's direction; ties share the mean of the
  ranks they span, ``scipy.stats.rankdata(method="average")``); cases where some method has no
  value (NaN: only with ``--empty nan``) are left out, **n_cases** says how many are ranked;
- **mean_rank**: the mean over cases of each method's rank; **rank**: the rank of the mean ranks
  (1 = best; equal mean ranks share the better rank);
- stability: ``draws`` bootstrap samples of the cases (default 1 000; ``numpy.random.default_rng(seed)
  .integers(0, n, size=(draws, n))``), the mean ranks and the rank recomputed on each;
  **p_rank_k** is the fraction of samples in which the method takes rank k (a method sharing rank 1
  with another counts as rank 1 in that sample); **rank_q025, rank_median, rank_q975**: the 2.5,
  50 and 97.5 % quantiles of the method's bootstrap ranks (``numpy.percentile``, linear
  interpolation): a 95 % interval of where the method would rank on other cases like these;
  **kendall_tau_mean, kendall_tau_q025**: Kendall's tau-b between the full-data ranking and each
  bootstrap ranking, its mean and 2.5 % quantile over the samples (1 = every sample ranks the
  methods as the full data; the same value on every row of a metric and class);
- **consensus** (:func:`consensus_table`, consensus.csv): per method, the mean over the metrics of
  its rank on the "mean" row, ranked again. This is *one* way of aggregating metrics (Metrics
  Reloaded's recommendation of a mean of ranks; challengeR offers others, and weighting or choosing
  metrics changes the result): it is labelled as such wherever it is shown.

This is the "rank then aggregate" scheme of challenge rankings (e.g. the Medical Segmentation
Decathlon), with the bootstrap rank analysis of Wiesenfarth et al., "Methods and open-source toolkit
for analyzing and visualizing challenge results", Scientific Reports 2021 (challengeR).
"""
from __future__ import annotations

import numpy as np

from nnunet_losses.evaluation import METRICS

from .paired import draw_counts
from .table import MEAN

RANK_DRAWS = 1_000


def case_values(df, metric: str, n_methods: int, cls: str = MEAN) -> np.ndarray:
    """(cases, methods) matrix of one row's values (mean over a method's folds), cases with a NaN dropped."""
    sel = df[df["class"] == cls]
    table = sel.groupby(["case", "method"], sort=True)[metric].mean().unstack("method")
    table = table.reindex(columns=range(n_methods))
    values = table.to_numpy(dtype=np.float64)
    return values[np.all(np.isfinite(values), axis=1)]


def rank_rows(values: np.ndarray, higher: bool) -> np.ndarray:
    """Per-case ranks (1 = best) of a (cases, methods) matrix; ties share the mean rank."""
    from scipy.stats import rankdata

    return rankdata(-values if higher else values, axis=1, method="average")


def kendall_tau_b(full, boot: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between one ranking ``full`` (methods,) and each row of ``boot`` (draws, methods).

    tau_b = sum_{i<j} s_ij t_ij / sqrt((P - T_full)(P - T_boot)), s and t the signs of the rank
    differences, P the number of pairs, T the tied pairs (``scipy.stats.kendalltau``'s default);
    NaN where a ranking ties every method.
    """
    i, j = np.triu_indices(len(full))
    s = np.sign(np.asarray(full, dtype=np.float64)[i] - np.asarray(full, dtype=np.float64)[j])
    t = np.sign(boot[:, i] - boot[:, j])
    denom = np.sqrt(np.count_nonzero(s) * np.count_nonzero(t, axis=1).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (t @ s) / denom, np.nan)


def rank_stability(values: np.ndarray, higher: bool, draws: int = RANK_DRAWS, seed: int = 0) -> dict:
    """Full-data and bootstrap ranking of a (cases, methods) matrix: mean_rank, rank, freq [method, rank - 1],
    quantiles (3, methods: 2.5 / 50 / 97.5 %), tau (draws,) and the bootstrap ranks (draws, methods)."""
    from scipy.stats import rankdata

    n, n_methods = values.shape
    per_case = rank_rows(values, higher)
    mean_rank = per_case.mean(axis=0)
    rank = rankdata(mean_rank, method="min").astype(int)
    w = draw_counts(n, draws, seed)
    boot_rank = rankdata((w @ per_case) / n, axis=1, method="min").astype(int)
    freq = np.stack([(boot_rank == k).mean(axis=0) for k in range(1, n_methods + 1)], axis=1)
    return {"mean_rank": mean_rank, "rank": rank, "freq": freq, "boot_rank": boot_rank,
            "quantiles": np.percentile(boot_rank, [2.5, 50, 97.5], axis=0), "tau": kendall_tau_b(rank, boot_rank)}


def ranking_table(df, metrics, methods, draws: int = RANK_DRAWS, seed: int = 0, class_order=None):
    """ranking.csv as a DataFrame: metric, class, method, n_cases, mean_rank, rank, rank_q025, rank_median,
    rank_q975, kendall_tau_mean, kendall_tau_q025, p_rank_1 ... p_rank_M; ``class_order``: the rows ranked
    (default: every class of ``df``, then "mean")."""
    import pandas as pd

    if class_order is None:
        class_order = [c for c in dict.fromkeys(df["class"]) if c != MEAN] + [MEAN]
    n_methods = len(methods)
    cols = ["metric", "class", "method", "n_cases", "mean_rank", "rank", "rank_q025", "rank_median", "rank_q975",
            "kendall_tau_mean", "kendall_tau_q025"] + [f"p_rank_{k}" for k in range(1, n_methods + 1)]
    rows = []
    for metric in metrics:
        for cls in class_order:
            values = case_values(df, metric, n_methods, cls)
            if values.shape[0] == 0:
                continue  # no case where every method has a value
            r = rank_stability(values, METRICS[metric][1], draws, seed)
            tau = r["tau"][np.isfinite(r["tau"])]
            tau_mean, tau_low = (float(tau.mean()), float(np.percentile(tau, 2.5))) if tau.size else (np.nan, np.nan)
            for i, m in enumerate(methods):
                rows.append([metric, cls, m.name, values.shape[0], float(r["mean_rank"][i]), int(r["rank"][i]),
                             *r["quantiles"][:, i].tolist(), tau_mean, tau_low, *r["freq"][i].tolist()])
    return pd.DataFrame(rows, columns=cols)


def consensus_table(ranking, metrics):
    """consensus.csv: method, mean_rank_over_metrics, consensus_rank, then rank_<metric> (the "mean" rows)."""
    import pandas as pd
    from scipy.stats import rankdata

    r = ranking[ranking["class"] == MEAN]
    table = r.pivot(index="method", columns="metric", values="rank")
    table = table[[m for m in metrics if m in table.columns]]
    table = table.reindex(list(dict.fromkeys(r.method)))
    mean = table.mean(axis=1)
    out = pd.DataFrame({"method": table.index, "mean_rank_over_metrics": mean.to_numpy(),
                        "consensus_rank": rankdata(mean.to_numpy(), method="min").astype(int)})
    for m in table.columns:
        out[f"rank_{m}"] = table[m].to_numpy().astype(int)
    return out.sort_values(["consensus_rank", "method"], kind="stable").reset_index(drop=True)


def ranking_section(ranking, metric: str) -> str:
    """``## Ranking: <title>``: methods by rank ("mean" row), mean rank, 95% rank interval, rank frequencies."""
    title, higher = METRICS[metric]
    r = ranking[(ranking.metric == metric) & (ranking["class"] == MEAN)].sort_values(["rank", "method"],
                                                                                      kind="stable")
    n_methods = len(r)
    first = r.iloc[0]
    lines = [f"## Ranking: {title} (per case, mean over classes; {'higher' if higher else 'lower'} is better)", "",
             f"Methods ranked per case, ranks averaged over the {first['n_cases']} cases; 95% interval: 2.5-97.5 % "
             "quantiles of the method's rank over bootstrap samples of the cases; columns 1..M: how often the "
             f"method takes that rank. Kendall's tau between this ranking and the bootstrap rankings: mean "
             f"{first['kendall_tau_mean']:.2f}, 2.5 % quantile {first['kendall_tau_q025']:.2f} (1: stable). "
             "Per-class rankings: ranking.csv.", "",
             "| Rank | Method | Mean rank | 95% interval | " + " | ".join(str(k) for k in range(1, n_methods + 1))
             + " |", "|" + "---|" * (n_methods + 4)]
    for _, row in r.iterrows():
        freq = [f"{100 * row[f'p_rank_{k}']:.0f}%" for k in range(1, n_methods + 1)]
        lines.append(f"| {row['rank']} | {row['method']} | {row['mean_rank']:.2f} | "
                     f"{row['rank_q025']:g}-{row['rank_q975']:g} | " + " | ".join(freq) + " |")
    return "\n".join(lines)


def consensus_section(consensus) -> str:
    """``## Consensus ranking``: one way of combining the metrics, said so."""
    metrics = [c[5:] for c in consensus.columns if c.startswith("rank_")]
    lines = ["## Consensus ranking over the metrics shown (one choice among several)", "",
             "Mean over the metrics of each method's rank on the mean row (Metrics Reloaded's mean of ranks). "
             "Other aggregations (median of ranks, weights, another set of metrics) can order the methods "
             "differently: read it with the per-metric rankings above.", "",
             "| Consensus rank | Method | Mean of ranks | " + " | ".join(METRICS[m][0] for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 3)]
    for _, row in consensus.iterrows():
        lines.append(f"| {row['consensus_rank']} | {row['method']} | {row['mean_rank_over_metrics']:.2f} | "
                     + " | ".join(str(row[f'rank_{m}']) for m in metrics) + " |")
    return "\n".join(lines)

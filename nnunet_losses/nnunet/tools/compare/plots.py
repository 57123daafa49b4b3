"""The plots: per-class bars and box plots of each metric, and the rank frequencies of the ranking.

All PNGs, drawn with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import numpy as np

from nnunet_losses.evaluation import METRICS


def pyplot():
    """matplotlib.pyplot with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def plot_bars(summary, metric, methods, class_order, names, path):
    """Per-class bars (mean over cases) with std error bars, one bar per method."""
    plt = pyplot()
    s = summary[summary.metric == metric].set_index(["class", "method"])
    x = np.arange(len(class_order))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(class_order) * max(1, len(methods)) / 2 + 2), 3.6))
    for i, m in enumerate(methods):
        mean = [s.loc[(c, i), "mean"] if (c, i) in s.index else np.nan for c in class_order]
        sd = [s.loc[(c, i), "std"] if (c, i) in s.index else np.nan for c in class_order]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=np.nan_to_num(sd), capsize=3, label=m.name)
    ax.set_xticks(x, [names.get(c, c) for c in class_order], rotation=30, ha="right")
    ax.set_ylabel(METRICS[metric][0])
    ax.legend(fontsize=7)
    ax.set_title(f"{METRICS[metric][0]}: mean ± std over cases")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_boxes(df, metric, methods, class_order, names, path):
    """Per-class box plots of the per-case values, one box per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(class_order) * max(1, len(methods)) / 2 + 2), 3.6))
    width = 0.8 / len(methods)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(methods):
        data = []
        for c in class_order:
            v = df.loc[(df.method == i) & (df["class"] == c), metric].to_numpy(dtype=float)
            data.append(v[np.isfinite(v)])
        pos = np.arange(len(class_order)) + (i - (len(methods) - 1) / 2) * width
        keep = [k for k, v in enumerate(data) if v.size]
        if keep:
            bp = ax.boxplot([data[k] for k in keep], positions=pos[keep], widths=width * 0.9, patch_artist=True,
                            manage_ticks=False)
            for b in bp["boxes"]:
                b.set_facecolor(colors[i % len(colors)])
        ax.plot([], [], "s", color=colors[i % len(colors)], label=m.name)
    ax.set_xticks(np.arange(len(class_order)), [names.get(c, c) for c in class_order], rotation=30, ha="right")
    ax.set_ylabel(METRICS[metric][0])
    ax.legend(fontsize=7)
    ax.set_title(f"{METRICS[metric][0]} per case")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)



def _ranked_methods(ranking, metric):
    """The "mean" rows of ``metric`` in ranking.csv, best first."""
    r = ranking[(ranking.metric == metric) & (ranking["class"] == "mean")]
    return r.sort_values(["rank", "mean_rank", "method"], kind="stable")


def plot_ranking(ranking, metric, path):
    """challengeR's blob plot: x = methods by rank, y = rank; a disc per (method, rank) whose area is the share
    of bootstrap samples in which the method takes that rank; the median rank (x) and the 2.5-97.5 %
    quantiles (bar) over the samples. Fixed margins instead of ``tight_layout`` (half the drawing time)."""
    plt = pyplot()
    r = _ranked_methods(ranking, metric)
    n = len(r)
    freq = r[[f"p_rank_{k}" for k in range(1, n + 1)]].to_numpy(dtype=float)
    width, height = 0.55 * n + 2.4, 0.35 * n + 1.9
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.2 / width, bottom=1.0 / height, top=1 - 0.4 / height)
    x, k = np.nonzero(freq > 0)
    ax.scatter(x, k + 1, s=300 * freq[x, k], color="tab:blue", alpha=0.6, linewidths=0)
    pos = np.arange(n)
    ax.vlines(pos, r.rank_q025, r.rank_q975, color="black", linewidth=1)
    ax.scatter(pos, r.rank_median, marker="x", color="black", s=25, zorder=3)
    ax.plot([-0.5, n - 0.5], [0.5, n + 0.5], color="grey", linewidth=0.5, linestyle=":")
    ax.set_xticks(pos, list(r.method), rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(1, n + 1), [str(v) for v in range(1, n + 1)], fontsize=7)
    ax.set_ylim(n + 0.5, 0.5)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylabel("rank (1 = best)", fontsize=7)
    ax.set_title(f"{METRICS[metric][0]}: ranks over bootstrap samples", fontsize=8)
    ax.set_xlabel("disc area: share of samples; x: median rank; bar: 95% interval", fontsize=6)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_significance(pairwise, ranking, metric, path):
    """challengeR's significance map: methods by rank on both axes; a dark cell (row, column) where the row
    method is significantly better than the column method (one-sided Wilcoxon, Holm; pairwise.csv)."""
    plt = pyplot()
    names = list(_ranked_methods(ranking, metric).method)
    n = len(names)
    p = pairwise[pairwise.metric == metric].set_index(["method", "other"])
    grid = np.zeros((n, n))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            grid[i, j] = np.nan if i == j else float(p.loc[(a, b), "better"])
    side = 0.35 * n + 1.8
    fig, ax = plt.subplots(figsize=(side, side))
    fig.subplots_adjust(left=1.2 / side, right=1 - 0.2 / side, bottom=1.2 / side, top=1 - 0.5 / side)
    ax.imshow(np.ma.masked_invalid(grid), cmap="YlGnBu", vmin=-0.3, vmax=1.3, interpolation="nearest")
    ax.set_xticks(range(n), names, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("... is better than (column)", fontsize=7)
    ax.set_ylabel("row method", fontsize=7)
    ax.set_title(f"{METRICS[metric][0]}: significantly better (dark)", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)

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



def plot_ranking(ranking, metric, path):
    """Heat map of how often each method takes each rank in the bootstrap (rows sorted by mean rank).

    Every cell is written out as a percentage, so there is no colour bar; fixed margins instead of
    ``tight_layout`` (half the drawing time).
    """
    plt = pyplot()
    r = ranking[ranking.metric == metric].sort_values(["mean_rank", "method"], kind="stable")
    cols = [c for c in r.columns if c.startswith("p_rank_")]
    freq = r[cols].to_numpy(dtype=float)
    n_methods, n_ranks = freq.shape
    labels = [f"{m} ({v:.2f})" for m, v in zip(r.method, r.mean_rank)]
    label_in = 0.3 + 0.052 * max(len(s) for s in labels)  # inches for the method names at font size 7
    width, height = label_in + 0.55 * n_ranks + 0.4, 0.3 * n_methods + 1.1
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=label_in / width, right=1 - 0.3 / width, bottom=0.6 / height, top=1 - 0.45 / height)
    ax.imshow(freq, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for i in range(n_methods):
        for k in range(n_ranks):
            if freq[i, k] >= 0.005:
                ax.text(k, i, f"{100 * freq[i, k]:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if freq[i, k] > 0.6 else "black")
    ax.set_xticks(range(n_ranks), [str(k + 1) for k in range(n_ranks)], fontsize=7)
    ax.set_yticks(range(n_methods), labels, fontsize=7)
    ax.set_xlabel("rank (1 = best); cells: share of bootstrap samples", fontsize=7)
    ax.set_title(f"{METRICS[metric][0]}: rank stability (mean rank in brackets)", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Paired comparison of every method against a baseline (``--baseline NAME``): paired.csv and its tables.

For every other method, class (and the "mean" row) and metric, over the cases both methods have:

- **pairs**: the two methods' per-case rows of the same case and fold; when one of the two has a
  single prediction of a case (one fold: e.g. the second observer, or one test-set prediction), it
  is paired with every fold of the other. Pairs where either value is NaN (empty-mask conventions)
  are left out; ``n`` is the number of cases that keep at least one pair.
- **mean_diff**: mean over all pairs of (method - baseline), in the metric's own unit.
- **ci_low, ci_high**: 95% percentile bootstrap interval of that mean. A bootstrap sample draws
  ``n`` case ids with replacement and takes *all* pairs of each drawn case (a case's folds stay
  together: they are not independent). Draws: ``numpy.random.default_rng(seed).integers(0, n,
  size=(draws, n))`` over the cases in sorted order, the same for every comparison with the same
  ``n``; 10 000 draws by default; percentiles with linear interpolation (``numpy.percentile``).
- **p_value**: two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` with its defaults:
  zero differences dropped, exact distribution for small samples without ties) on the per-case
  differences (mean over the case's pairs: one value per case, the independent unit). 1 when every
  difference is zero; NaN with fewer than two cases.
- **p_holm**: Holm's step-down correction over all methods x classes of one metric.
- **wins, ties, losses**: cases where the method is better than, equal to, worse than the baseline,
  by the per-case difference and the metric's direction (lower is better for HD95, lesion FPR and
  the Betti errors). Differences within 1e-12 of zero are ties (and zero for the Wilcoxon test).

A difference **holds** when its CI excludes 0 and ``p_holm < 0.05``; it holds *in favour* of the
method when its sign is the better direction of the metric, else *against* it.
"""
from __future__ import annotations

import warnings

import numpy as np

from nnunet_losses.evaluation import METRICS

from .table import MEAN, digits

PAIRED_COLUMNS = ["metric", "class", "method", "baseline", "n", "mean_diff", "ci_low", "ci_high", "p_value",
                  "p_holm", "wins", "ties", "losses"]
ALPHA = 0.05
BOOTSTRAP_DRAWS = 10_000
TIE = 1e-12


def draw_counts(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) matrix: how often each of ``n`` cases is drawn in each bootstrap sample (documented draws)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    flat = (idx + n * np.arange(draws)[:, None]).ravel()
    return np.bincount(flat, minlength=draws * n).reshape(draws, n).astype(np.float64)


def bootstrap_ci(case_sums, case_counts, draws: int = BOOTSTRAP_DRAWS, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of sum(values) / count(values), resampling cases (each with all its values).

    ``case_sums[i]``, ``case_counts[i]``: sum and number of case i's values (NaN for fewer than 2 cases).
    """
    s = np.asarray(case_sums, dtype=np.float64)
    c = np.asarray(case_counts, dtype=np.float64)
    if s.size < 2:
        return float("nan"), float("nan")
    w = draw_counts(s.size, draws, seed)
    means = (w @ s) / (w @ c)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-case differences (1 if all are zero, NaN for n < 2)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    if not np.any(d):
        return 1.0
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value is still the documented one
        return float(wilcoxon(d).pvalue)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN and do not count."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _pair_rows(case, fold, rows_m, rows_b):
    """Row indices (method, baseline) of the pairs of one comparison: same case and fold, or a single row broadcast."""
    import pandas as pd

    a = pd.DataFrame({"case": case[rows_m], "fold": fold[rows_m], "ra": rows_m})
    b = pd.DataFrame({"case": case[rows_b], "fold": fold[rows_b], "rb": rows_b})
    na, nb = np.bincount(a.case, minlength=case.max() + 1), np.bincount(b.case, minlength=case.max() + 1)
    m = a.merge(b, on="case", suffixes=("_m", "_b"))
    keep = (m.fold_m.to_numpy() == m.fold_b.to_numpy()) | (na[m.case] == 1) | (nb[m.case] == 1)
    return m.ra.to_numpy()[keep], m.rb.to_numpy()[keep]


def _case_sums(values, case, ra, rb):
    """Per-case sums and counts of the finite differences values[ra] - values[rb], in case order (cases
    without a finite difference left out)."""
    d = values[ra] - values[rb]
    ok = np.isfinite(d)
    n = int(case.max()) + 1
    sums = np.bincount(case[ra][ok], weights=d[ok], minlength=n)
    counts = np.bincount(case[ra][ok], minlength=n).astype(np.float64)
    has = counts > 0
    return sums[has], counts[has]


def compare_pair(case_sums, case_counts, higher: bool, ci=(np.nan, np.nan)) -> dict:
    """n, mean_diff, ci_low, ci_high, p_value, wins, ties, losses of one method against the baseline.

    ``ci``: the bootstrap interval (:func:`bootstrap_ci`, computed by the caller, several at once).
    """
    s = np.asarray(case_sums, dtype=np.float64)
    c = np.asarray(case_counts, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        return {"n": 0, "mean_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
                "wins": 0, "ties": 0, "losses": 0}
    per_case = s / c
    per_case[np.abs(per_case) <= TIE] = 0.0
    better = per_case > 0 if higher else per_case < 0
    worse = per_case < 0 if higher else per_case > 0
    return {"n": n, "mean_diff": float(s.sum() / c.sum()), "ci_low": float(ci[0]), "ci_high": float(ci[1]),
            "p_value": wilcoxon_p(per_case), "wins": int(better.sum()), "ties": int((per_case == 0).sum()),
            "losses": int(worse.sum())}


def _bootstrap_many(sums, counts, draws: int, seed: int):
    """Bootstrap CIs of many comparisons at once: one matrix product per number of cases."""
    cis = [(np.nan, np.nan)] * len(sums)
    by_n = {}
    for k, s in enumerate(sums):
        if s.size >= 2:
            by_n.setdefault(s.size, []).append(k)
    for n, ks in by_n.items():
        w = draw_counts(n, draws, seed)
        means = (w @ np.stack([sums[k] for k in ks], axis=1)) / (w @ np.stack([counts[k] for k in ks], axis=1))
        lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
        for j, k in enumerate(ks):
            cis[k] = (lo[j], hi[j])
    return cis


def paired_comparison(df, metrics, methods, baseline: int, class_order, draws: int = BOOTSTRAP_DRAWS,
                      seed: int = 0):
    """paired.csv as a DataFrame (PAIRED_COLUMNS): every method but ``baseline`` (an index into ``methods``)."""
    import pandas as pd

    case = pd.factorize(df["case"], sort=True)[0]
    fold = pd.factorize(df["fold"])[0]
    method_of, class_of = df["method"].to_numpy(), df["class"].to_numpy()
    pairs = {}  # (method, class) -> row indices of the pairs: the same for every metric
    for mi in range(len(methods)):
        for cls in class_order:
            if mi != baseline:
                in_class = class_of == cls
                pairs[(mi, cls)] = _pair_rows(case, fold, np.flatnonzero(in_class & (method_of == mi)),
                                              np.flatnonzero(in_class & (method_of == baseline)))
    keys, sums, counts = [], [], []
    for metric in metrics:
        values = df[metric].to_numpy(dtype=np.float64)
        for (mi, cls), (ra, rb) in pairs.items():
            s, c = _case_sums(values, case, ra, rb)
            keys.append((metric, mi, cls))
            sums.append(s)
            counts.append(c)
    cis = _bootstrap_many(sums, counts, draws, seed)
    rows = [{"metric": metric, "class": cls, "method": methods[mi].name, "baseline": methods[baseline].name,
             **compare_pair(s, c, METRICS[metric][1], ci)}
            for (metric, mi, cls), s, c, ci in zip(keys, sums, counts, cis)]
    out = pd.DataFrame(rows, columns=[c for c in PAIRED_COLUMNS if c != "p_holm"])
    out["p_holm"] = np.nan
    for metric in metrics:  # one family per metric: every method x class
        sel = (out.metric == metric).to_numpy()
        out.loc[sel, "p_holm"] = holm(out.loc[sel, "p_value"].to_numpy())
    return out[PAIRED_COLUMNS]


def verdict(row) -> int:
    """+1: the difference holds in favour of the method; -1: it holds against it; 0: it does not hold."""
    if not (np.isfinite(row["p_holm"]) and row["p_holm"] < ALPHA):
        return 0
    if row["ci_low"] > 0:
        up = 1
    elif row["ci_high"] < 0:
        up = -1
    else:
        return 0
    return up if METRICS[row["metric"]][1] else -up


def paired_section(paired, metric: str, methods, baseline: int, class_order, names) -> str:
    """``## Paired differences: <title>`` with one row per class, one column per method."""
    title, higher = METRICS[metric]
    d = digits(metric)
    base = methods[baseline].name
    others = [m.name for i, m in enumerate(methods) if i != baseline]
    p = paired[paired.metric == metric].set_index(["class", "method"])
    lines = [f"## Paired differences: {title} (method − {base}; {'higher' if higher else 'lower'} is better)", "",
             f"Mean difference over the paired cases [95% bootstrap CI], Holm-corrected Wilcoxon p, "
             f"wins/ties/losses against {base}. **▲** / **▼**: the difference holds (CI excludes 0 and "
             f"p_holm < {ALPHA:g}) in favour of / against the method.", "",
             "| " + " | ".join(["Class"] + others) + " |", "|" + "---|" * (len(others) + 1)]
    for cls in class_order:
        cells = []
        for name in others:
            r = p.loc[(cls, name)] if (cls, name) in p.index else None
            if r is None or not np.isfinite(r["mean_diff"]):
                cells.append("n/a")
                continue
            ci = f" [{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]" if np.isfinite(r["ci_low"]) else ""
            pv = f", p {r['p_holm']:.2g}" if np.isfinite(r["p_holm"]) else ""
            cell = f"{r['mean_diff']:+.{d}f}{ci}{pv}, {r['wins']}/{r['ties']}/{r['losses']}"
            v = verdict({**r, "metric": metric})
            cells.append(f"**{cell} {'▲' if v > 0 else '▼'}**" if v else cell)
        label = "**mean**" if cls == MEAN else names.get(cls, cls)
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def holds_lines(paired, methods, baseline: int, names) -> list[str]:
    """One console line per method: which differences hold, in its favour and against it."""
    out = []
    base = methods[baseline].name
    for i, m in enumerate(methods):
        if i == baseline:
            continue
        favour, against = [], []
        for _, r in paired[paired.method == m.name].iterrows():
            v = verdict(r)
            if v:
                label = "mean" if r["class"] == MEAN else names.get(r["class"], r["class"])
                diff = f"{r['mean_diff']:+.{digits(r['metric'])}f}"
                (favour if v > 0 else against).append(f"{r['metric']} {label} ({diff})")
        if favour or against:
            parts = ([f"better in {', '.join(favour)}"] if favour else []) + \
                    ([f"worse in {', '.join(against)}"] if against else [])
            out.append(f"{m.name} vs {base}: " + "; ".join(parts))
        else:
            out.append(f"{m.name} vs {base}: no difference holds (95% CI excluding 0 and Holm p < {ALPHA:g})")
    return out

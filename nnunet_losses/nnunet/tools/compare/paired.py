"""Paired comparison of every method against a baseline (``--baseline NAME``): paired.csv and its tables.

For every other method, class (and the "mean" row) and metric, over the cases both methods have:

- **pairs**: the two methods' per-case rows of the same case and fold; when one of the two has a
  single prediction of a case (one fold: e.g. the second observer, or one test-set prediction), it
  is paired with every fold of the other. Pairs where either value is NaN (an empty mask with
  ``--empty nan``, empty.py) are left out; ``n`` is the number of cases that keep at least one pair.
- **mean_diff**: mean over all pairs of (method - baseline), in the metric's own unit.
- **ci_low, ci_high**: 95% percentile bootstrap interval of that mean. A bootstrap sample draws
  ``n`` case ids with replacement and takes *all* pairs of each drawn case (a case's folds stay
  together: they are not independent). Draws: ``numpy.random.default_rng(seed).integers(0, n,
  size=(draws, n))`` over the cases in sorted order, the same for every comparison with the same
  ``n``; 10 000 draws by default; percentiles with linear interpolation (``numpy.percentile``).
- **n_nonzero**: the cases whose per-case difference is not zero (within 1e-12): the Wilcoxon
  test's effective sample size. Below 6 no two-sided exact p can reach 0.05 (the smallest is
  2 / 2^n_nonzero), so ``note`` says so instead of a silent "no difference".
- **hl**: the Hodges-Lehmann estimate of the paired difference, the median of the Walsh averages
  ``(d_i + d_j) / 2, i <= j`` of the per-case differences (Hodges & Lehmann 1963; the estimate that
  goes with the Wilcoxon test); **hl_ci_low, hl_ci_high**: its distribution-free 95% interval, the
  Walsh averages of order C and M + 1 - C (M = n(n+1)/2; C from the exact signed-rank distribution
  below 50 cases, the normal approximation from 50 on; Hollander & Wolfe, "Nonparametric Statistical
  Methods", ch. 3.3; R's ``wilcox.test(conf.int=TRUE)``): a bootstrap of the HL estimate would cost
  O(draws x n^2) per comparison (about 8 s for 100 cases and 10 000 draws). NaN when n is too small
  for a 95% interval (n < 6).
- **p_value**: two-sided Wilcoxon signed-rank test on the per-case differences (mean over the
  case's pairs: one value per case, the independent unit), zero differences dropped (Wilcoxon's
  convention), with an explicit method so that the p-value does not depend on the SciPy version
  (:func:`wilcoxon_p`): the exact null distribution below 50 non-zero differences (SciPy rounds a
  non-integral statistic conservatively when |differences| tie), the normal approximation without
  continuity correction from 50 on. 1 when every difference is zero; NaN with fewer than two cases.
- **p_holm**: Holm's step-down correction (Holm 1979) over one *family* (:func:`holm_families`):
  per metric, every method x foreground class; the "mean" rows form their own family (one per
  method). With a single foreground class the "mean" row repeats the class row, and so does its
  p_holm (a family of the same size). Each metric is its own family (no control across metrics)
  unless ``across_metrics``: then one family over every metric shown (class rows), and one for the
  "mean" rows. Only p-values are adjusted: the CIs stay plain 95% intervals.
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

PAIRED_COLUMNS = ["metric", "class", "method", "baseline", "n", "n_nonzero", "mean_diff", "ci_low", "ci_high", "hl",
                  "hl_ci_low", "hl_ci_high", "p_value", "p_holm", "wins", "ties", "losses", "note"]
ALPHA = 0.05
BOOTSTRAP_DRAWS = 10_000
TIE = 1e-12
EXACT_BELOW = 50  # non-zero differences: exact Wilcoxon distribution below, normal approximation from here on
MIN_NONZERO = 6   # below: no two-sided exact p reaches 0.05 (2 / 2**5 = 0.0625)
FEW_NONZERO = f"n_nonzero < {MIN_NONZERO}: no two-sided p can reach {ALPHA:g}"


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


def wilcoxon_p(differences, alternative: str = "two-sided") -> float:
    """Wilcoxon signed-rank p-value of per-case differences, the same with every SciPy >= 1.15.

    Differences within 1e-12 of zero are dropped (Wilcoxon's zero method); with fewer than 50 left the
    exact null distribution (``method="exact"``), else the normal approximation without continuity
    correction (``method="asymptotic"``). 1 if every difference is zero, NaN for fewer than 2 differences.
    ``alternative``: "two-sided", or "greater" / "less" (the differences tend to be positive / negative).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    nonzero = d[np.abs(d) > TIE]
    if nonzero.size == 0:
        return 1.0
    from scipy.stats import wilcoxon

    method = "exact" if nonzero.size < EXACT_BELOW else "asymptotic"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value is still the documented one
        return float(wilcoxon(nonzero, zero_method="wilcox", correction=False, alternative=alternative,
                              method=method).pvalue)


def hodges_lehmann(differences) -> float:
    """Median of the Walsh averages ``(d_i + d_j) / 2, i <= j`` (NaN for no difference)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= t), t = 0 .. n(n+1)/2: the exact null distribution of Wilcoxon's signed-rank statistic
    (every subset of the ranks 1..n equally likely; counted by dynamic programming)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0 ** n


def hodges_lehmann_interval(differences, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the Hodges-Lehmann estimate: Walsh averages of order C and M + 1 - C.

    C = the largest integer with P(T+ <= C - 1) <= (1 - level) / 2 (exact below 50 differences, normal
    approximation from 50 on); (NaN, NaN) when no such C >= 1 exists (n < 6 at 95%).
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    alpha = (1 - level) / 2
    m = n * (n + 1) // 2
    if n == 0:
        return float("nan"), float("nan")
    if n < EXACT_BELOW:
        c = int(np.count_nonzero(signed_rank_cdf(n) <= alpha))  # P(T+ <= c - 1) <= alpha
    else:
        from scipy.stats import norm

        c = int(np.floor(m / 2 - norm.ppf(1 - alpha) * np.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    if c < 1:
        return float("nan"), float("nan")
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    return float(walsh[c - 1]), float(walsh[m - c])


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


def holm_families(paired, across_metrics: bool = False) -> np.ndarray:
    """p_holm of every row of ``paired`` (columns metric, class, p_value), family by family.

    Families: the class rows of one metric (every method x foreground class), and the "mean" rows of
    one metric (every method); with ``across_metrics`` the class rows of every metric form one family
    and the "mean" rows of every metric another.
    """
    out = np.full(len(paired), np.nan)
    is_mean = (paired["class"] == MEAN).to_numpy()
    metric = paired["metric"].to_numpy()
    p = paired["p_value"].to_numpy(dtype=np.float64)
    for mean_rows in (False, True):
        for m in ([None] if across_metrics else list(dict.fromkeys(metric))):
            sel = np.flatnonzero((is_mean == mean_rows) & (True if m is None else metric == m))
            out[sel] = holm(p[sel])
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
    """Every column of paired.csv but the names and p_holm, for one method against the baseline.

    ``ci``: the bootstrap interval (:func:`bootstrap_ci`, computed by the caller, several at once).
    """
    s = np.asarray(case_sums, dtype=np.float64)
    c = np.asarray(case_counts, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        return {"n": 0, "n_nonzero": 0, "mean_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "hl": np.nan,
                "hl_ci_low": np.nan, "hl_ci_high": np.nan, "p_value": np.nan, "wins": 0, "ties": 0, "losses": 0,
                "note": ""}
    per_case = s / c
    per_case[np.abs(per_case) <= TIE] = 0.0
    better = per_case > 0 if higher else per_case < 0
    worse = per_case < 0 if higher else per_case > 0
    n_nonzero = int(np.count_nonzero(per_case))
    hl_lo, hl_hi = hodges_lehmann_interval(per_case)
    return {"n": n, "n_nonzero": n_nonzero, "mean_diff": float(s.sum() / c.sum()), "ci_low": float(ci[0]),
            "ci_high": float(ci[1]), "hl": hodges_lehmann(per_case), "hl_ci_low": hl_lo, "hl_ci_high": hl_hi,
            "p_value": wilcoxon_p(per_case), "wins": int(better.sum()), "ties": int((per_case == 0).sum()),
            "losses": int(worse.sum()), "note": FEW_NONZERO if 0 < n_nonzero < MIN_NONZERO else ""}


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
                      seed: int = 0, across_metrics: bool = False):
    """paired.csv as a DataFrame (PAIRED_COLUMNS): every method but ``baseline`` (an index into ``methods``);
    ``across_metrics``: one Holm family over every metric (:func:`holm_families`)."""
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
    out["p_holm"] = holm_families(out, across_metrics)
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
             f"p_holm < {ALPHA:g}) in favour of / against the method. †: fewer than {MIN_NONZERO} cases differ "
             f"(n_nonzero), so no two-sided p can reach {ALPHA:g}. Hodges-Lehmann estimates: paired.csv.", "",
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
            cell += " †" if r["note"] else ""
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
        favour, against, few = [], [], []
        for _, r in paired[paired.method == m.name].iterrows():
            v = verdict(r)
            if r["note"]:
                few.append(f"{r['metric']} {'mean' if r['class'] == MEAN else names.get(r['class'], r['class'])}")
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
        if few:
            out[-1] += (f"; fewer than {MIN_NONZERO} cases differ (no p can reach {ALPHA:g}, more cases needed) in: "
                        + ", ".join(few))
    return out

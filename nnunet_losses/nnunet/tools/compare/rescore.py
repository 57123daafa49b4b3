""":func:`rescore`: the tables and statistics of a compare run again, from per-case rows instead of predictions.

The per-case rows (``per_case.csv`` of one or several compare runs, merged) hold every metric of every
(method, fold, case, class); the summary, the paired comparison, the ranking, the pairwise table and the
consensus are computed from them alone, with the same functions as :func:`compare`. A study uses it to score
runs whose predictions are on another machine (or gone) together with the runs predicted here.

    >>> import pandas as pd, tempfile
    >>> rows = pd.DataFrame([{"method_name": m, "fold": 0, "case": c, "class_name": "organ", "class": "1",
    ...                       "dice": d} for m, ds in (("A", (0.5, 0.6, 0.7)), ("B", (0.6, 0.8, 0.9)))
    ...                      for c, d in zip("xyz", ds)])
    >>> result = rescore(rows, tempfile.mkdtemp(), metrics=["dice"], baseline="A")
    >>> round(float(result.paired.query("`class` == '1'").mean_diff.iloc[0]), 3)
    0.167

No plots: overlays need the images and predictions, and the study draws its own run-level plots.
"""
from __future__ import annotations

import os

from nnunet_losses.evaluation import METRICS

from .output import check_output, staging_folder
from .paired import BOOTSTRAP_DRAWS, holds_lines
from .ranking import RANK_DRAWS
from .reading import Method
from .run import CompareResult, Inputs, statistics_tables, summary_markdown, write_tables
from .table import MEAN, MetricOptions, aggregate, mean_rows

__all__ = ["rescore"]


def _frame(per_case, methods_order):
    """(DataFrame with the method index, [Method], {class: name}, class order) from per-case rows."""
    import pandas as pd

    df = per_case.copy() if isinstance(per_case, pd.DataFrame) else pd.read_csv(per_case, dtype={"class": str})
    if "method_name" not in df.columns or "class" not in df.columns:
        raise ValueError("per-case rows need the compare tool's method_name and class columns (its per_case.csv)")
    names = list(methods_order or dict.fromkeys(df.method_name))
    unknown = sorted(set(df.method_name) - set(names))
    if unknown:
        raise ValueError(f"the rows name method(s) {unknown} not in {names}")
    df["class"] = df["class"].astype(str)
    df["fold"] = df["fold"].astype(str)
    df.insert(0, "method", [names.index(n) for n in df.method_name])
    classes = {str(c): n for c, n in zip(df["class"], df.get("class_name", df["class"])) if str(c) != MEAN}
    if "empty" in df.columns:  # "" (a mask that is not empty) reads back as NaN
        df["empty"] = df["empty"].fillna("")
    df = df.drop(columns=[c for c in ("method_name", "class_name") if c in df.columns])
    first = ["method", "fold", "case", "class"]  # evaluate()'s column order
    df = df[first + [c for c in df.columns if c not in first]]
    folds = {i: sorted(set(df.fold[df.method == i]), key=lambda f: (len(f), f)) for i in range(len(names))}
    methods = [Method(n, [(f, "(per-case rows)") for f in folds[i]]) for i, n in enumerate(names)]
    order = sorted(classes, key=lambda c: (len(c), c))
    return df, methods, classes, order


def rescore(per_case, out_dir: str, *, metrics, baseline: str | None = None, ranking: bool = False,
            methods_order=None, bootstrap: int = BOOTSTRAP_DRAWS, rank_bootstrap: int = RANK_DRAWS, seed: int = 0,
            holm_across_metrics: bool = False, overwrite: bool = True, source: str = "") -> CompareResult:
    """Write ``summary.md``, ``per_case.csv``, ``summary.csv``, ``paired.csv`` (with ``baseline``),
    ``ranking.csv``, ``pairwise.csv``, ``consensus.csv`` (with ``ranking``) and ``settings.json`` into
    ``out_dir`` from ``per_case`` (a per_case.csv path or its DataFrame; "mean" rows are computed again when
    missing). ``methods_order``: the methods' order in the tables (default: as they first appear).
    ``source``: what the rows are, for summary.md."""
    df, methods, classes, order = _frame(per_case, methods_order)
    metrics = [m for m in metrics if m in df.columns]
    if not metrics:
        raise ValueError("none of the metrics asked for is a column of the per-case rows")
    metric_cols = [m for m in METRICS if m in df.columns]  # evaluate()'s order
    if not (df["class"] == MEAN).any():
        import pandas as pd

        df = pd.concat([df, mean_rows(df, metric_cols)], ignore_index=True)
    names = [m.name for m in methods]
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the methods {names}")
    base = None if baseline is None else names.index(baseline)
    out_dir = os.path.abspath(out_dir)
    check_output(out_dir, overwrite)
    summary = aggregate(df, metric_cols)
    stats = statistics_tables(df, metrics, methods, base, ranking, order + [MEAN], bootstrap, rank_bootstrap, seed,
                              holm_across_metrics)
    inputs = Inputs(list(order), classes, None, order + [MEAN], "", [], None, [])
    md = summary_markdown(df, summary, stats, metrics, methods, base, inputs, "(per-case rows)", MetricOptions(),
                          "std", f"rescored from per-case rows{': ' + source if source else ''}")
    settings = {"rescored_from": source, "metrics": metrics, "baseline": baseline, "ranking": ranking,
                "bootstrap": bootstrap, "rank_bootstrap": rank_bootstrap, "seed": seed,
                "holm_across_metrics": holm_across_metrics, "classes": classes,
                "methods": [{"name": m.name, "folds": dict(m.folds)} for m in methods]}
    with staging_folder(out_dir) as staging:
        write_tables(staging, df, summary, stats, methods, classes, md, settings)
    holds = [] if stats.paired is None else holds_lines(stats.paired, methods, base, classes)
    return CompareResult(df, summary, md, stats.paired, stats.ranking, holds, [], stats.pairwise, stats.consensus)

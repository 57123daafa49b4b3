"""The metrics table: every case evaluated, aggregated per method and class, written as Markdown and CSV.

- :func:`evaluate` runs :func:`evaluate_case` over all cases (in ``num_processes`` worker processes;
  the skeletons of the topology metrics are the costliest part), scores empty masks (empty.py) and
  adds, per (method, fold, case), a "mean" row: the NaN-mean over the classes defined for that case.
- :func:`aggregate`: mean and sample std over all cases of all folds (NaN left out), n, and the std of
  the per-fold means (``std_folds``) with the number of folds.
- :func:`markdown_table`: rows = classes + mean, columns = methods, ``mean ± std``, the best mean of a
  row in bold; :func:`write_per_case_csv` and :func:`write_summary_csv` the two CSV files.

Metrics and their conventions: nnunet_losses.evaluation.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from nnunet_losses.evaluation import METRICS, TOPOLOGY_METRICS, case_metrics
from nnunet_losses.evaluation.surface import squeeze_spacing

from .empty import empty_kind, score_empty
from .reading import read_seg

DEFAULT_METRICS = ["dice", "iou", "hd95", "nsd", "precision", "recall"]
MEAN = "mean"
COUNT_DIGITS = ("hd95", "betti0_error", "betti1_error")  # shown with 2 decimals (mm, counts); others with 4


@dataclass(frozen=True)
class MetricOptions:
    """What :func:`nnunet_losses.evaluation.case_metrics` computes for every case (picklable for the workers)."""
    tolerance: float = 1.0            # surface Dice tolerance in mm
    percentile: float = 95.0          # Hausdorff percentile
    lesions: bool = False             # lesion-wise TPR / FPR
    topology: tuple = ()              # topology metrics to compute (subset of TOPOLOGY_METRICS)
    surface_convention: str = "monai"  # "monai" or "deepmind" for hd95 and nsd
    empty: str = "score"              # empty masks: "score" (perfect / worst values) or "nan" (empty.py)

    @classmethod
    def for_metrics(cls, metrics, **kwargs) -> "MetricOptions":
        """Options that compute the topology metrics named in ``metrics`` (and only those)."""
        return cls(topology=tuple(m for m in TOPOLOGY_METRICS if m in metrics), **kwargs)


def evaluate_case(job, reader_class, classes, ignore, options: MetricOptions):
    """Metric rows of every (method, fold) prediction of one case (runs in worker processes).

    The files were checked first (checks.py: shapes, spacings, labels, origins); ``empty`` of each row
    says which mask is empty (empty.py), and with ``options.empty == "score"`` those values are scored.
    """
    case, ref_path, preds = job
    reader = reader_class()
    ref, props = read_seg(reader, ref_path)
    spacing = tuple(float(v) for v in props["spacing"])
    ndim = len(squeeze_spacing(ref.shape, spacing)[0])
    rows = []
    for mi, fold, path in preds:
        pred, _ = read_seg(reader, path)
        per_class = case_metrics(pred, ref, classes, spacing, ignore, options.tolerance, options.percentile,
                                 options.lesions, topology=options.topology,
                                 surface_convention=options.surface_convention)
        for c, m in per_class.items():
            kind = empty_kind(m["n_ref"], m["n_pred"])
            if options.empty == "score":
                m = score_empty(m, kind, ndim)
            rows.append({"method": mi, "fold": fold, "case": case, "class": str(c), **m, "empty": kind})
    return rows


def run_cases(work, jobs, num_processes: int = 1, progress: bool = True, desc: str = "compare: cases"):
    """``work(job)`` for every job, in order, in ``num_processes`` spawned worker processes (1: in this one)."""
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc=desc, disable=not progress) as bar:
        if num_processes > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
                for r in pool.imap(work, jobs):
                    yield r
                    bar.update()
        else:
            for job in jobs:
                yield work(job)
                bar.update()


def evaluate(jobs, reader_class, classes, ignore, options: MetricOptions, num_processes: int = 1,
             progress: bool = True):
    """(per-case DataFrame with the "mean" rows, metric columns): every job of :func:`reading.build_jobs`."""
    from functools import partial

    import pandas as pd

    work = partial(evaluate_case, reader_class=reader_class, classes=classes, ignore=ignore, options=options)
    rows = [row for rows in run_cases(work, jobs, num_processes, progress) for row in rows]
    df = pd.DataFrame(rows)
    metric_cols = [m for m in METRICS if m in df.columns]
    return pd.concat([df, mean_rows(df, metric_cols)], ignore_index=True), metric_cols


def mean_rows(df, metric_cols):
    """One "mean" row per (method, fold, case): the NaN-mean over classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = df.groupby(["method", "fold", "case"], sort=False)[metric_cols].mean().reset_index()
    mean["class"] = MEAN
    mean["empty"] = ""
    return mean


def aggregate(df, metric_cols):
    """summary rows: method, class, metric, mean, std (over cases), std_folds (of fold means), n, n_folds."""
    import pandas as pd

    long = df.melt(id_vars=["method", "fold", "case", "class"], value_vars=metric_cols, var_name="metric")
    keys = ["method", "class", "metric"]
    g = long.groupby(keys, sort=False)["value"]
    summary = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})
    fold_means = long.groupby(keys + ["fold"], sort=False)["value"].mean().groupby(level=keys, sort=False)
    summary["std_folds"] = fold_means.std(ddof=1)
    summary["n_folds"] = fold_means.count()
    return summary.reset_index()


def digits(metric: str) -> int:
    """Decimals shown for ``metric`` in the tables."""
    return 2 if metric in COUNT_DIGITS else 4


def markdown_table(summary, metric: str, methods, class_order, names, std: str = "std") -> str:
    """Rows = classes + mean, columns = methods, ``mean ± std``, best mean of each row in bold (none when all tie)."""
    higher = METRICS[metric][1]
    d = digits(metric)
    s = summary[summary.metric == metric].set_index(["class", "method"])
    lines = ["| " + " | ".join(["Class"] + [m.name for m in methods]) + " |",
             "|" + "---|" * (len(methods) + 1)]
    for c in class_order:
        means = [s.loc[(c, i), "mean"] if (c, i) in s.index else np.nan for i in range(len(methods))]
        rounded = [round(float(v), d) for v in means]
        finite = [v for v in rounded if np.isfinite(v)]
        best = (max(finite) if higher else min(finite)) if finite and len(methods) > 1 else None
        if best is not None and all(v == best for v in finite):
            best = None  # a tie of every method is no "best"
        cells = []
        for i, v in enumerate(rounded):
            if not np.isfinite(v):
                cells.append("n/a")
                continue
            sd = s.loc[(c, i), std]
            cell = f"{v:.{d}f}" + (f" ± {sd:.{d}f}" if np.isfinite(sd) else "")
            cells.append(f"**{cell}**" if best is not None and v == best else cell)
        label = "**mean**" if c == MEAN else names.get(c, c)
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def summary_header(methods, n_cases: int, reference: str, options: MetricOptions, std: str = "std",
                   command: str | None = None) -> str:
    """The top of summary.md: what was compared, how, and with which command."""
    folds = sorted({f for m in methods for f, _ in m.folds})
    spread = "std over cases" if std == "std" else "std of the per-fold means"
    convention = " (DeepMind's surfel convention)" if options.surface_convention == "deepmind" else ""
    md = ["# nnunet_losses_compare", "",
          f"{len(methods)} method(s), {n_cases} case evaluations per method ({len(folds)} fold(s)); "
          f"cells: mean ± {spread}; best mean per row in bold. Surface Dice at {options.tolerance:g} mm, "
          f"HD{options.percentile:g} in mm{convention}. Conventions: docs/compare.md.", ""]
    if command:
        md += ["Command:", "", "```", command, "```", ""]
    for m in methods:
        md.append(f"- {m.name}: " + ", ".join(f"fold {f}: `{d}`" for f, d in m.folds))
    md.append(f"- reference: `{reference}`")
    return "\n".join(md)


def metric_section(summary, metric: str, methods, class_order, names, std: str = "std") -> str:
    """``## <title> (higher/lower is better)`` and the metric's table."""
    title, higher = METRICS[metric]
    return (f"## {title} ({'higher' if higher else 'lower'} is better)\n\n"
            + markdown_table(summary, metric, methods, class_order, names, std))


def write_per_case_csv(df, methods, names, path: str) -> None:
    """per_case.csv: method_name first, class_name after class, the method index dropped."""
    out = df.copy()
    out.insert(0, "method_name", [methods[i].name for i in out.method])
    out.insert(4, "class_name", [names.get(c, c) for c in out["class"]])
    out.drop(columns="method").to_csv(path, index=False, na_rep="nan")


def write_summary_csv(summary, methods, names, path: str) -> None:
    """summary.csv: method_name, class, class_name, metric, mean, std, n, std_folds, n_folds."""
    out = summary.copy()
    out.insert(0, "method_name", [methods[i].name for i in out.method])
    out.insert(2, "class_name", [names.get(c, c) for c in out["class"]])
    out.drop(columns="method").to_csv(path, index=False, na_rep="nan")

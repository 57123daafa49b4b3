""":func:`compare`: check everything, evaluate every case, aggregate, run the statistics, write the output folder."""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Optional

from nnunet_losses.evaluation import CONVENTIONS, LESION_METRICS, METRICS

from .checks import check_inputs
from .empty import EMPTY_CONVENTIONS
from .output import check_output, staging_folder
from .paired import BOOTSTRAP_DRAWS, holds_lines, paired_comparison, paired_section
from .pairwise import pairwise_section, pairwise_table
from .ranking import RANK_DRAWS, consensus_section, consensus_table, ranking_section, ranking_table
from .reading import build_jobs, missing_cases, parse_labels
from .table import (DEFAULT_METRICS, MEAN, MetricOptions, aggregate, evaluate, metric_section, summary_header,
                    write_per_case_csv, write_summary_csv)


class CompareResult(NamedTuple):
    """What :func:`compare` computed (also written to the output folder)."""
    per_case: Any            # DataFrame: per_case.csv (method as an index into ``methods``)
    summary: Any             # DataFrame: summary.csv
    markdown: str            # summary.md
    paired: Optional[Any]    # DataFrame: paired.csv (None without a baseline)
    ranking: Optional[Any]   # DataFrame: ranking.csv (None without ranking)
    holds: list              # console lines: which paired differences hold, one per method
    warnings: list = []      # input problems let through by allow_missing / warn_bad_input (also in summary.md)
    pairwise: Optional[Any] = None   # DataFrame: pairwise.csv (None without ranking)
    consensus: Optional[Any] = None  # DataFrame: consensus.csv (None without ranking or with one metric)


def check_metrics(metrics, lesions: bool) -> list:
    """The metrics of the tables (defaults, plus the lesion metrics with ``lesions``), checked against METRICS."""
    metrics = list(dict.fromkeys(list(metrics or DEFAULT_METRICS) + (list(LESION_METRICS) if lesions else [])))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if any(m in LESION_METRICS for m in metrics) and not lesions:
        raise ValueError("lesion metrics need --lesions")
    return metrics


def _check_options(methods, reference, dataset_json, std, tolerance, percentile, surface_convention, baseline,
                   ranking, bootstrap, rank_bootstrap, empty):
    """Every check that needs no file content; returns the baseline's index (or None)."""
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"--empty must be one of {list(EMPTY_CONVENTIONS)}, got {empty!r}")
    if std not in ("std", "std_folds"):
        raise ValueError(f"std must be 'std' (over cases) or 'std_folds', got {std!r}")
    if surface_convention not in CONVENTIONS:
        raise ValueError(f"--surface-convention must be one of {list(CONVENTIONS)}, got {surface_convention!r}")
    if not (0 <= percentile <= 100):
        raise ValueError(f"--percentile must be in [0, 100], got {percentile}")
    if not (tolerance >= 0 and tolerance < float("inf")):
        raise ValueError(f"--tolerance must be a finite number of mm >= 0, got {tolerance}")
    if not methods:
        raise ValueError("nothing to compare: name trainers (-tr) or prediction folders (-i)")
    if dataset_json is None:
        raise ValueError("no dataset.json found: pass --dataset-json or -d")
    if not os.path.isdir(reference):
        raise ValueError(f"reference folder {reference} does not exist")
    for name, value in (("--bootstrap", bootstrap), ("--rank-bootstrap", rank_bootstrap)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} is a number of bootstrap samples >= 1, got {value}")
    names = [m.name for m in methods]
    index = None
    if baseline is not None:
        if baseline not in names:
            raise ValueError(f"--baseline {baseline!r} is not one of the methods {names}")
        if len(methods) < 2:
            raise ValueError("--baseline needs at least one other method to compare with it")
        index = names.index(baseline)
    if ranking and len(methods) < 2:
        raise ValueError("--ranking needs at least two methods")
    return index


def compare(methods, reference: str, *, dataset_json: dict, out_dir: str, images: str | None = None,
            metrics=None, lesions: bool = False, tolerance: float = 1.0, percentile: float = 95.0,
            surface_convention: str = "monai", std: str = "std", baseline: str | None = None,
            ranking: bool = False, bootstrap: int = BOOTSTRAP_DRAWS, rank_bootstrap: int = RANK_DRAWS,
            seed: int = 0, n_overlays: int = 3, num_processes: int = 1, overwrite: bool = False,
            progress: bool = True, command: str | None = None, empty: str = "score",
            holm_across_metrics: bool = False, allow_missing: bool = False, warn_bad_input: bool = False,
            all_references: bool = True) -> CompareResult:
    """Evaluate ``methods`` against the reference folder and write tables, CSVs, statistics and plots to ``out_dir``.

    Args:
        methods: :class:`reading.Method` list (names and prediction folders, one per fold).
        reference: folder of reference segmentations (one file per case, dataset.json's file ending).
        dataset_json: nnU-Net's dataset.json content (labels, ignore label, file ending).
        out_dir: output folder; must be new or empty unless ``overwrite`` (which keeps other files).
        images: folder of the images (``<case>_0000<ending>``) drawn under the overlays; None: black.
        metrics: metrics of the tables, plots and statistics (default: dice iou hd95 nsd precision
            recall); the topology metrics (cldice, betti0_error, betti1_error) are computed only when named.
        lesions: add lesion-wise TPR / FPR.
        tolerance, percentile: surface Dice tolerance (mm) and Hausdorff percentile.
        surface_convention: "monai" (edge voxels) or "deepmind" (surfels weighted by area) for hd95 and nsd.
        std: spread in the tables: "std" (over cases) or "std_folds" (of the per-fold means).
        baseline: name of the method the others are compared with, pair by pair (paired.csv).
        ranking: rank the methods per case, with bootstrap rank frequencies (ranking.csv).
        bootstrap, rank_bootstrap, seed: bootstrap samples of the paired CIs and of the ranking, and the seed.
        n_overlays: overlay PNGs of the cases where the methods differ most (0: none).
        num_processes: worker processes for the checks and the evaluation of the cases.
        overwrite, progress, command: replace this tool's files in ``out_dir``; progress bars; the
            command line recorded in summary.md and settings.json.
        empty: "score" (empty masks scored: both empty = perfect, one empty = worst) or "nan" (left out); empty.py.
        holm_across_metrics: one Holm family over every metric instead of one per metric (paired.py).
        allow_missing: a reference case without prediction, or a fold without a case its other folds
            have, is a warning instead of an error (nnU-Net's ``--chill``).
        warn_bad_input: undeclared labels and differing origins / directions are warnings, not errors.
        all_references: every reference case must be predicted (False for cross-validation results,
            whose reference folder holds every training case).

    Every argument is checked, and every file read and checked (checks.py), before any metric is
    computed; errors are ValueErrors with a clear message.
    """
    metrics = check_metrics(metrics, lesions)
    base = _check_options(methods, reference, dataset_json, std, tolerance, percentile, surface_convention,
                          baseline, ranking, bootstrap, rank_bootstrap, empty)
    out_dir = os.path.abspath(out_dir)
    check_output(out_dir, overwrite)
    inputs = _inputs(methods, reference, dataset_json, base is not None or ranking, allow_missing, all_references,
                     warn_bad_input, num_processes, progress)
    options = MetricOptions.for_metrics(metrics, tolerance=tolerance, percentile=percentile, lesions=lesions,
                                        surface_convention=surface_convention, empty=empty)

    df, metric_cols = evaluate(inputs.jobs, inputs.reader_class, inputs.classes, inputs.ignore, options,
                               num_processes, progress)
    summary = aggregate(df, metric_cols)
    stats = statistics_tables(df, metrics, methods, base, ranking, inputs.class_order, bootstrap, rank_bootstrap,
                              seed, holm_across_metrics)
    holds = [] if stats.paired is None else holds_lines(stats.paired, methods, base, inputs.names)
    md_text = summary_markdown(df, summary, stats, metrics, methods, base, inputs, reference, options, std, command)
    settings = {"command": command, "reference": reference, "images": images, "tolerance_mm": tolerance,
                "percentile": percentile, "surface_convention": surface_convention, "lesions": lesions,
                "metrics": metrics, "std": std, "baseline": baseline, "ranking": ranking,
                "bootstrap": bootstrap, "rank_bootstrap": rank_bootstrap, "seed": seed, "empty": empty,
                "holm_across_metrics": holm_across_metrics, "allow_missing": allow_missing,
                "warn_bad_input": warn_bad_input, "warnings": inputs.warnings, "classes": dict(inputs.names),
                "ignore_label": inputs.ignore, "methods": [{"name": m.name, "folds": dict(m.folds)} for m in methods]}
    with staging_folder(out_dir) as staging:
        write_tables(staging, df, summary, stats, methods, inputs.names, md_text, settings)
        _write_plots(staging, df, summary, stats, metrics, methods, inputs, images, n_overlays, progress)
    return CompareResult(df, summary, md_text, stats.paired, stats.ranking, holds, inputs.warnings, stats.pairwise,
                         stats.consensus)


class Inputs(NamedTuple):
    """What :func:`_inputs` found: labels, the checked cases and the reader of their files."""
    classes: list            # foreground labels or regions (reading.parse_labels)
    names: dict              # {str(class): name}
    ignore: Optional[int]    # nnU-Net's ignore label
    class_order: list        # str(class) for every class, then "mean": the rows of the tables
    ending: str              # dataset.json's file ending
    jobs: list               # reading.build_jobs
    reader_class: Any        # nnU-Net's reader for the file ending
    warnings: list           # problems let through by allow_missing / warn_bad_input


def _inputs(methods, reference, dataset_json, statistics: bool, allow_missing: bool, all_references: bool,
            warn_bad_input: bool, num_processes: int, progress: bool) -> Inputs:
    """Labels, cases and every file checked (checks.py), before any metric is computed."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    classes, names, ignore = parse_labels(dataset_json)
    ending = dataset_json.get("file_ending")
    if not ending:
        raise ValueError("dataset.json has no 'file_ending'")
    jobs, warnings = _cases(methods, reference, ending, allow_missing, all_references)
    if statistics and len(jobs) < 2:
        raise ValueError(f"paired statistics and rankings need at least two cases that every method predicts; "
                         f"found {len(jobs)}")
    reader_class = determine_reader_writer_from_dataset_json(dataset_json, jobs[0][1], verbose=False)
    warnings += _check_files(jobs, reader_class, dataset_json, methods, warn_bad_input, num_processes, progress)
    return Inputs(classes, {str(c): n for c, n in names.items()}, ignore, [str(c) for c in classes] + [MEAN], ending,
                  jobs, reader_class, warnings)


class Statistics(NamedTuple):
    """The statistics tables of one run (None where not asked for)."""
    paired: Optional[Any]
    ranking: Optional[Any]
    pairwise: Optional[Any]
    consensus: Optional[Any]


def statistics_tables(df, metrics, methods, base, ranking: bool, class_order, bootstrap, rank_bootstrap, seed,
                      holm_across_metrics) -> Statistics:
    """paired.csv (with a baseline); ranking.csv, pairwise.csv and consensus.csv (with ranking)."""
    paired = None if base is None else paired_comparison(df, metrics, methods, base, class_order, bootstrap, seed,
                                                         holm_across_metrics)
    if not ranking:
        return Statistics(paired, None, None, None)
    ranks = ranking_table(df, metrics, methods, rank_bootstrap, seed, class_order)
    ranked = [m for m in metrics if (ranks.metric == m).any()]
    consensus = consensus_table(ranks, ranked) if len(ranked) > 1 else None
    return Statistics(paired, ranks, pairwise_table(df, ranked, methods), consensus)


def _cases(methods, reference, ending, allow_missing: bool, all_references: bool):
    """(jobs of :func:`reading.build_jobs`, warnings): missing predictions fail unless ``allow_missing``."""
    missing = missing_cases(methods, reference, ending, all_references)
    if missing and not allow_missing:
        raise ValueError(f"{len(missing)} prediction(s) missing: " + "; ".join(missing[:10]) +
                         ("; ..." if len(missing) > 10 else "") + ". Predict these cases, or pass --allow-missing "
                         "to compare the cases that are there (nnU-Net's --chill)")
    return build_jobs(methods, reference, ending), [f"missing: {m}" for m in missing]


def _check_files(jobs, reader_class, dataset_json, methods, warn_bad_input: bool, num_processes: int,
                 progress: bool) -> list:
    """Warnings of :func:`checks.check_inputs`; a ValueError listing every problem that is an error."""
    hard, soft = check_inputs(jobs, reader_class, dataset_json, [m.name for m in methods], num_processes, progress)
    errors = hard + ([] if warn_bad_input else soft)
    if errors:
        raise ValueError(f"{len(errors)} problem(s) in the input files, found before any metric was computed:\n  "
                         + "\n  ".join(errors))
    return soft


def summary_markdown(df, summary, stats: Statistics, metrics, methods, base, inputs: Inputs, reference, options,
                     std, command) -> str:
    """summary.md: header, warnings, one table per metric, then the paired, ranking and consensus tables."""
    class_order, names, warnings = inputs.class_order, inputs.names, inputs.warnings
    n_cases = df[df["class"] == MEAN].groupby("method").size().max()
    sections = [metric_section(summary, m, methods, class_order, names, std) for m in metrics]
    if stats.paired is not None:
        sections += [paired_section(stats.paired, m, methods, base, class_order, names) for m in metrics]
    if stats.ranking is not None:
        for m in metrics:
            if (stats.ranking.metric == m).any():
                sections += [ranking_section(stats.ranking, m), pairwise_section(stats.pairwise, m)]
    if stats.consensus is not None:
        sections.append(consensus_section(stats.consensus))
    header = summary_header(methods, n_cases, reference, options, std, command)
    if warnings:
        header += "\n\n## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings)
    return header + "\n\n" + "\n\n".join(sections) + "\n"


def write_tables(staging, df, summary, stats: Statistics, methods, names, md_text, settings):
    """per_case.csv, summary.csv, paired.csv, ranking.csv, pairwise.csv, consensus.csv, summary.md, settings.json."""
    write_per_case_csv(df, methods, names, os.path.join(staging, "per_case.csv"))
    write_summary_csv(summary, methods, names, os.path.join(staging, "summary.csv"))
    for name, table in stats._asdict().items():
        if table is not None:
            table.to_csv(os.path.join(staging, f"{name}.csv"), index=False, na_rep="nan")
    with open(os.path.join(staging, "summary.md"), "w") as f:
        f.write(md_text)
    with open(os.path.join(staging, "settings.json"), "w") as f:
        json.dump(settings, f, indent=2)


def _write_plots(staging, df, summary, stats: Statistics, metrics, methods, inputs: Inputs, images, n_overlays,
                 progress):
    """plots/<metric>_bars.png, <metric>_box.png, ranking_<metric>.png, significance_<metric>.png; overlays/<case>.png."""
    from tqdm import tqdm

    from .overlays import pick_overlay_cases, write_overlay
    from .plots import plot_bars, plot_boxes, plot_ranking, plot_significance

    class_order, names = inputs.class_order, inputs.names
    plots = os.path.join(staging, "plots")
    steps = [lambda m=m: plot_bars(summary, m, methods, class_order, names, os.path.join(plots, f"{m}_bars.png"))
             for m in metrics]
    steps += [lambda m=m: plot_boxes(df, m, methods, class_order, names, os.path.join(plots, f"{m}_box.png"))
              for m in metrics]
    if stats.ranking is not None:
        ranks, pairs = stats.ranking, stats.pairwise
        ranked = [m for m in metrics if (ranks.metric == m).any()]
        steps += [lambda m=m: plot_ranking(ranks, m, os.path.join(plots, f"ranking_{m}.png")) for m in ranked]
        steps += [lambda m=m: plot_significance(pairs, ranks, m, os.path.join(plots, f"significance_{m}.png"))
                  for m in ranked]
    reader = inputs.reader_class()
    by_case = {job[0]: job for job in inputs.jobs}
    overlays = os.path.join(staging, "overlays")
    for case in pick_overlay_cases(df, len(methods), n_overlays):
        steps.append(lambda c=case: (os.makedirs(overlays, exist_ok=True),
                                     write_overlay(c, by_case[c], df, methods, reader, images, inputs.ending,
                                                   inputs.classes, inputs.ignore, os.path.join(overlays, f"{c}.png"))))
    for step in tqdm(steps, desc="compare: plots", disable=not progress):
        step()

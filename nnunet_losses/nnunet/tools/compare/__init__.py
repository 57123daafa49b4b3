"""``nnunet_losses_compare``: compare nnU-Net trainers' predictions (tables, statistics, plots); docs/compare.md.

- reading.py: methods and their prediction folders, cases, missing predictions, dataset.json labels;
- checks.py: every file checked before any metric (undeclared labels, shape, spacing, origin, direction);
- table.py: every case evaluated (nnunet_losses.evaluation), aggregated, Markdown tables, CSV files;
- empty.py: cases with an empty mask scored (both empty = perfect, one empty = worst) or left as NaN;
- paired.py: paired comparison against a baseline (bootstrap CI, Hodges-Lehmann, Wilcoxon + Holm, wins/ties/losses);
- ranking.py: per-case rankings (every class and the mean row) with bootstrap rank distribution and consensus;
- pairwise.py: every ordered pair of methods, one-sided Wilcoxon + Holm (significance maps);
- plots.py, overlays.py: the PNGs; output.py: the output folder (staging, overwrite rules);
- run.py: :func:`compare`, one whole run; cli.py: the command line (``entry_point``);
- rescore.py: :func:`rescore`, the tables and statistics again from per-case rows (merged runs, no predictions).

nnU-Net is imported lazily (its image readers), the trainers never.
"""
from .reading import Method, build_jobs, methods_from_folders, methods_from_results, parse_labels
from .rescore import rescore
from .run import CompareResult, compare

__all__ = ["Method", "CompareResult", "build_jobs", "compare", "methods_from_folders", "methods_from_results",
           "parse_labels", "rescore"]

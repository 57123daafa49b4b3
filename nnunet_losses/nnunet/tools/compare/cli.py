"""``nnunet_losses_compare``: the papers' tables for your own nnU-Net runs (docs/compare.md).

Two ways to name what to compare:

- trainers of one dataset: ``-d DATASET -c CONFIG -tr nnUNetTrainer nnUNetTrainerCWCD [-p PLANS] [-f 0 1 2]``
  reads ``$nnUNet_results/<Dataset>/<trainer>__<plans>__<config>/fold_X/validation`` (nnU-Net's
  cross-validation predictions) against ``$nnUNet_preprocessed/<Dataset>/gt_segmentations`` (the
  reference nnU-Net itself validates against; ``$nnUNet_raw/<Dataset>/labelsTr`` if absent);
- prediction folders: ``-i NAME=DIR[,DIR...] ... -ref LABELS_DIR`` (several DIRs = several folds'
  predictions of the same cases, e.g. each fold's model on a test set).

Files are read with nnU-Net's own reader for the dataset's file ending (dataset.json), so the
spacing is the one nnU-Net uses. For every case and every label (or region) of dataset.json:
Dice, IoU, HD95 and surface Dice in mm (``--surface-convention monai|deepmind``), precision,
recall, with ``--lesions`` lesion-wise TPR / FPR, and the topology metrics clDice and Betti errors
when named in ``--metrics`` (nnunet_losses.evaluation, where the formulas and conventions are
documented); nnU-Net's ignore label is respected. Aggregation: mean +- std over all cases of all
folds (``--std folds``: std of the per-fold means instead; both are in summary.csv). The "mean" row
averages, per case, the classes that are defined for it, then over cases.

Statistics: ``--baseline NAME`` compares every other method with NAME case by case (bootstrap CI,
Hodges-Lehmann estimate, Wilcoxon test with Holm's correction per metric, wins/ties/losses: paired.csv);
``--ranking`` ranks the methods per case with their bootstrap rank distribution (ranking.csv), tests
every pair (pairwise.csv) and combines the metrics (consensus.csv). Empty masks are scored
(``--empty nan``: left out); every file is checked before any metric (``--allow-missing``,
``--warn-bad-input`` turn some errors into warnings).

Output folder (``-o``; an existing non-empty folder is an error unless ``--overwrite``, which
replaces only the files listed here): summary.md (tables, best value per row in bold), summary.csv,
per_case.csv, paired.csv, ranking.csv, pairwise.csv, consensus.csv, settings.json,
plots/<metric>_bars.png, plots/<metric>_box.png, plots/ranking_<metric>.png,
plots/significance_<metric>.png and overlays/<case>.png for the cases where the methods differ most.

Modules: reading.py (methods, cases, labels), checks.py (input files), table.py (evaluation,
aggregation, tables, CSV), empty.py (empty masks), paired.py, ranking.py and pairwise.py
(statistics), plots.py and overlays.py (PNGs), output.py (output folder), run.py (:func:`compare`,
the whole run), this file (the command line).
"""
from __future__ import annotations

import argparse
import os
import sys

from nnunet_losses.evaluation import CONVENTIONS, LESION_METRICS, METRICS

from .empty import EMPTY_CONVENTIONS
from .paired import BOOTSTRAP_DRAWS
from .ranking import RANK_DRAWS
from .reading import dataset_json_for_folders, load_json, methods_from_folders, methods_from_results
from .run import compare
from .table import DEFAULT_METRICS


def parser() -> argparse.ArgumentParser:
    """The command line of ``nnunet_losses_compare``."""
    p = argparse.ArgumentParser(prog="nnunet_losses_compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Examples:\n  nnunet_losses_compare -d 4 -c 3d_fullres -tr nnUNetTrainer "
                                       "nnUNetTrainerCWCD -o cmp\n  nnunet_losses_compare -i base=predA "
                                       "CWCD=predB -ref labelsTs -d 501 -o cmp --baseline base --ranking\n"
                                       "See docs/compare.md.")
    p.add_argument("-d", "--dataset", help="dataset id or DatasetXXX_Name")
    p.add_argument("-tr", "--trainers", nargs="+", help="trainer class names (or TRAINER__PLANS__CONFIG)")
    p.add_argument("-c", "--configuration", help="nnU-Net configuration, e.g. 2d or 3d_fullres")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-f", "--folds", nargs="+", help="folds (default: every fold_X with predictions)")
    p.add_argument("--subfolder", default="validation", help="folder inside fold_X with the predictions")
    p.add_argument("-i", "--predictions", nargs="+", help="prediction folders: DIR or NAME=DIR[,DIR...] "
                                                          "(several DIRs = folds)")
    p.add_argument("-ref", "--reference", help="reference segmentations (required with -i)")
    p.add_argument("--images", help="images for the overlays (default with -tr: $nnUNet_raw/<Dataset>/imagesTr)")
    p.add_argument("--dataset-json", help="dataset.json (default: from the results, -d, or the prediction folder)")
    p.add_argument("--names", nargs="+", help="display names, one per trainer / prediction spec")
    p.add_argument("-o", "--output", required=True, help="output folder for tables, CSV and PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace this tool's files in an existing -o folder")
    p.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS, choices=[m for m in METRICS
                                                                             if m not in LESION_METRICS],
                   help=f"tables, plots and statistics (default: {' '.join(DEFAULT_METRICS)}); every metric but "
                        "the topology ones (cldice betti0_error betti1_error: computed only when named) is in the CSVs")
    p.add_argument("--lesions", action="store_true", help="add lesion-wise TPR / FPR (connected components)")
    p.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance in mm (default 1)")
    p.add_argument("--percentile", type=float, default=95.0, help="Hausdorff percentile (default 95)")
    p.add_argument("--surface-convention", choices=list(CONVENTIONS), default="monai",
                   help="HD95 and surface Dice as MONAI (edge voxels, default) or as DeepMind's surface-distance "
                        "(surfels weighted by area)")
    p.add_argument("--std", choices=["cases", "folds"], default="cases", help="spread shown in the tables")
    p.add_argument("--baseline", help="compare every other method with this one, case by case (paired.csv)")
    p.add_argument("--ranking", action="store_true", help="rank the methods per case with their bootstrap rank "
                                                          "distribution (ranking.csv), test every pair (pairwise.csv), "
                                                          "combine the metrics (consensus.csv)")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP_DRAWS,
                   help=f"bootstrap samples of the paired CIs (default {BOOTSTRAP_DRAWS})")
    p.add_argument("--rank-bootstrap", type=int, default=RANK_DRAWS,
                   help=f"bootstrap samples of the ranking (default {RANK_DRAWS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument("--holm-across-metrics", action="store_true",
                   help="one Holm family over every metric shown (default: each metric its own family)")
    p.add_argument("--empty", choices=list(EMPTY_CONVENTIONS), default="score",
                   help="empty masks: 'score' (both empty = perfect, one empty = worst; Metrics Reloaded / BraTS; "
                        "default) or 'nan' (left out of means, tests and rankings)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a reference case without prediction, or a fold missing a case, is a warning, not an error "
                        "(like nnU-Net's --chill)")
    p.add_argument("--warn-bad-input", action="store_true",
                   help="labels that dataset.json does not declare and predictions with another origin or direction "
                        "than their reference are warnings (in summary.md), not errors")
    p.add_argument("--overlays", type=int, default=3, help="overlay PNGs of the N most different cases (0: none)")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    """Run the command line; returns (per-case DataFrame, summary DataFrame). Errors are ValueErrors."""
    a = parser().parse_args(argv)
    if bool(a.trainers) == bool(a.predictions):
        raise ValueError("name either trainers (-d DATASET -c CONFIG -tr T1 T2 ...) or prediction folders "
                         "(-i DIR1 DIR2 ... -ref LABELS), not both")
    images = a.images
    if a.trainers:
        if not a.dataset:
            raise ValueError("-tr needs -d DATASET")
        methods, dataset_json, reference, default_images = methods_from_results(
            a.dataset, a.trainers, a.configuration, a.plans, a.folds, a.subfolder)
        reference = a.reference or reference
        images = images or default_images
    else:
        if not a.reference:
            raise ValueError("-i needs -ref with the reference segmentations")
        methods, reference = methods_from_folders(a.predictions), a.reference
        dataset_json = None if a.dataset_json else dataset_json_for_folders(methods, reference, a.dataset)
    if a.dataset_json:
        dataset_json = load_json(a.dataset_json)
    if a.names:
        if len(a.names) != len(methods):
            raise ValueError(f"--names has {len(a.names)} names for {len(methods)} methods")
        for m, n in zip(methods, a.names):
            m.name = n
    if len({m.name for m in methods}) != len(methods):
        raise ValueError(f"two methods have the same name ({[m.name for m in methods]}): use --names")
    command = "nnunet_losses_compare " + " ".join(argv if argv is not None else sys.argv[1:])
    result = compare(methods, reference, dataset_json=dataset_json, out_dir=a.output, images=images,
                     metrics=a.metrics, lesions=a.lesions, tolerance=a.tolerance, percentile=a.percentile,
                     surface_convention=a.surface_convention, std="std" if a.std == "cases" else "std_folds",
                     baseline=a.baseline, ranking=a.ranking, bootstrap=a.bootstrap, rank_bootstrap=a.rank_bootstrap,
                     seed=a.seed, n_overlays=a.overlays, num_processes=a.num_processes, overwrite=a.overwrite,
                     progress=not a.no_progress, command=command, empty=a.empty,
                     holm_across_metrics=a.holm_across_metrics, allow_missing=a.allow_missing,
                     warn_bad_input=a.warn_bad_input, all_references=not a.trainers)
    print(result.markdown)
    for line in result.holds:
        print(line)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"Tables, CSV and plots: {os.path.abspath(a.output)}")
    return result.per_case, result.summary


def entry_point():
    """Console script: a ValueError becomes one ``error:`` line and exit status 1, without a traceback."""
    try:
        main()
    except ValueError as e:
        sys.exit(f"nnunet_losses_compare: error: {e}")


if __name__ == "__main__":
    entry_point()

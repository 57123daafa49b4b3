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
Dice, IoU, HD95 and surface Dice in mm, precision, recall and, with ``--lesions``, lesion-wise
TPR / FPR (nnunet_losses.evaluation, where the formulas and conventions are documented); nnU-Net's
ignore label is respected. Aggregation: mean +- std over all cases of all folds (``--std folds``:
std of the per-fold means instead; both are in summary.csv). The "mean" row averages, per case,
the classes that are defined for it, then over cases.

Output folder (``-o``; an existing non-empty folder is an error unless ``--overwrite``, which
replaces only the files listed here): summary.md (tables, best value per row in bold), summary.csv,
per_case.csv, settings.json, plots/<metric>_bars.png, plots/<metric>_box.png and
overlays/<case>.png for the cases where the methods differ most.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from nnunet_losses.evaluation import LESION_METRICS, METRICS, case_metrics

DEFAULT_METRICS = ["dice", "iou", "hd95", "nsd", "precision", "recall"]
MEAN = "mean"


@dataclass
class Method:
    """One column of the tables: a name and its prediction folders, one per fold."""
    name: str
    folds: list = field(default_factory=list)  # [(fold name, folder)]


# ----------------------------------------------------------------------------------------- inputs
def parse_labels(dataset_json: dict):
    """(classes, {class: name}, ignore label) from dataset.json, as nnU-Net's LabelManager sees them.

    Label datasets: the foreground label values; region datasets (some value is a list of several
    labels): the regions (tuples), background and ignore excluded.
    """
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or "background" not in labels:
        raise ValueError("dataset.json needs a 'labels' dict with a 'background' entry")
    ignore = labels.get("ignore")
    if ignore is not None and not isinstance(ignore, int):
        raise ValueError(f"the ignore label must be an integer, got {ignore!r}")
    regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    names = {}
    for name, value in labels.items():
        if name == "ignore":
            continue
        if isinstance(value, (list, tuple)):
            value = tuple(int(v) for v in value) if regions else int(value[0])
        else:
            value = int(value)
        if value == 0 or (isinstance(value, tuple) and set(value) == {0}):
            continue
        names[value] = name
    classes = list(names) if regions else sorted(names)
    if not classes:
        raise ValueError("dataset.json declares no foreground label: nothing to compare")
    return classes, names, ignore


def _load_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e


def _env_dir(var: str, hint: str) -> str:
    value = os.environ.get(var)
    if not value or not os.path.isdir(value):
        raise ValueError(f"${var} is not set or not a folder: set it as for nnU-Net, or {hint}")
    return value


def resolve_dataset_name(dataset: str, *roots: str) -> str:
    """``DatasetXXX_Name`` from an id ("4", "004") or a full name, looked up in ``roots``."""
    if dataset.startswith("Dataset"):
        return dataset
    if not dataset.isdigit():
        raise ValueError(f"-d takes a dataset id or a name DatasetXXX_Name, got {dataset!r}")
    prefix = f"Dataset{int(dataset):03d}_"
    found = sorted({d for r in roots if r and os.path.isdir(r) for d in os.listdir(r) if d.startswith(prefix)})
    if len(found) != 1:
        raise ValueError(f"dataset id {dataset}: found {found or 'nothing'} in {[r for r in roots if r]}")
    return found[0]


def methods_from_results(dataset: str, trainers, configuration: str | None, plans: str = "nnUNetPlans",
                         folds=None, subfolder: str = "validation"):
    """Methods, dataset.json, reference folder and image folder for trained nnU-Net models."""
    results = _env_dir("nnUNet_results", "pass prediction folders with -i and a reference folder with -ref")
    raw, pre = os.environ.get("nnUNet_raw"), os.environ.get("nnUNet_preprocessed")
    name = resolve_dataset_name(dataset, results, raw, pre)
    specs = []
    for t in trainers:
        parts = t.split("__")
        if len(parts) == 3:
            specs.append(tuple(parts))
        elif len(parts) == 1:
            if not configuration:
                raise ValueError(f"trainer {t!r}: give the configuration with -c (or write TRAINER__PLANS__CONFIG)")
            specs.append((t, plans, configuration))
        else:
            raise ValueError(f"trainer {t!r}: write TRAINER or TRAINER__PLANS__CONFIG")
    several_configs = len({s[1:] for s in specs}) > 1
    methods, dataset_json = [], None
    for trainer, p, c in specs:
        out = os.path.join(results, name, f"{trainer}__{p}__{c}")
        if not os.path.isdir(out):
            raise ValueError(f"{out} does not exist: train it first (nnUNetv2_train {name} {c} FOLD -tr {trainer} "
                             f"-p {p})")
        if folds:
            fold_dirs = [f"fold_{f}" for f in folds]
        else:
            fold_dirs = sorted(d for d in os.listdir(out) if d.startswith("fold_")
                               and os.path.isdir(os.path.join(out, d, subfolder)))
            if not fold_dirs:
                raise ValueError(f"no fold_X/{subfolder} folder in {out}: run the training to its end, or "
                                 f"nnUNetv2_train ... --val to write the validation predictions")
        fold_list = []
        for d in fold_dirs:
            pred = os.path.join(out, d, subfolder)
            if not os.path.isdir(pred):
                raise ValueError(f"{pred} does not exist: finish fold {d[5:]} or write its validation with "
                                 f"nnUNetv2_train {name} {c} {d[5:]} -tr {trainer} -p {p} --val")
            fold_list.append((d[5:], pred))
        methods.append(Method(f"{trainer} ({c})" if several_configs else trainer, fold_list))
        if dataset_json is None and os.path.isfile(os.path.join(out, "dataset.json")):
            dataset_json = _load_json(os.path.join(out, "dataset.json"))
    ref = None
    for cand in ((pre, name, "gt_segmentations"), (raw, name, "labelsTr")):
        if cand[0] and os.path.isdir(os.path.join(*cand)):
            ref = os.path.join(*cand)
            break
    if ref is None:
        raise ValueError(f"no reference: neither $nnUNet_preprocessed/{name}/gt_segmentations nor "
                         f"$nnUNet_raw/{name}/labelsTr exists; pass -ref")
    if dataset_json is None:
        for cand in ((pre, name, "dataset.json"), (raw, name, "dataset.json")):
            if cand[0] and os.path.isfile(os.path.join(*cand)):
                dataset_json = _load_json(os.path.join(*cand))
                break
    images = os.path.join(raw, name, "imagesTr") if raw else None
    return methods, dataset_json, ref, images if images and os.path.isdir(images) else None


def methods_from_folders(specs):
    """Methods from ``DIR`` or ``NAME=DIR[,DIR...]`` strings (several DIRs: one per fold)."""
    methods = []
    for s in specs:
        name, _, dirs = s.rpartition("=") if "=" in s else ("", "", s)
        dirs = [d for d in dirs.split(",") if d]
        for d in dirs:
            if not os.path.isdir(d):
                raise ValueError(f"prediction folder {d} does not exist")
        if not dirs:
            raise ValueError(f"no folder in {s!r}")
        name = name or os.path.basename(os.path.normpath(dirs[0]))
        methods.append(Method(name, [(str(i), d) for i, d in enumerate(dirs)]))
    return methods


def _case_files(folder: str, ending: str) -> dict:
    return {f[: -len(ending)]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
            if f.endswith(ending) and not f.startswith(".")}


def build_jobs(methods, ref_dir: str, ending: str):
    """[(case, reference file, [(method index, fold, prediction file)])], checking that the case sets match."""
    refs = _case_files(ref_dir, ending)
    if not refs:
        raise ValueError(f"no reference file ending in {ending!r} in {ref_dir}")
    per_case, case_sets = {}, []
    for mi, m in enumerate(methods):
        seen = set()
        for fold, folder in m.folds:
            preds = _case_files(folder, ending)
            if not preds:
                raise ValueError(f"no prediction ending in {ending!r} in {folder}")
            missing = sorted(set(preds) - set(refs))
            if missing:
                raise ValueError(f"{len(missing)} predictions in {folder} have no reference in {ref_dir} "
                                 f"(first: {missing[0]}{ending})")
            for case, path in preds.items():
                per_case.setdefault(case, []).append((mi, fold, path))
            seen |= set(preds)
        case_sets.append(seen)
    for m, s in zip(methods, case_sets):
        if s != case_sets[0]:
            diff = sorted(s ^ case_sets[0])
            raise ValueError(f"{m.name} and {methods[0].name} were evaluated on different cases ({len(diff)} differ, "
                             f"first: {diff[0]}): compare the same folds / the same test cases")
    return [(case, refs[case], per_case[case]) for case in sorted(per_case)]


# ------------------------------------------------------------------------------------- evaluation
def _read_seg(reader, path: str):
    seg, props = reader.read_seg(path)
    return np.rint(np.asarray(seg[0])).astype(np.int32), props


def evaluate_case(job, reader_class, classes, ignore, tolerance, percentile, lesions):
    """Metric rows of every (method, fold) prediction of one case (runs in worker processes)."""
    case, ref_path, preds = job
    reader = reader_class()
    ref, props = _read_seg(reader, ref_path)
    spacing = tuple(float(v) for v in props["spacing"])
    rows = []
    for mi, fold, path in preds:
        pred, pprops = _read_seg(reader, path)
        if pred.shape != ref.shape:
            raise ValueError(f"{path} has shape {pred.shape}, its reference {ref_path} {ref.shape}")
        if not np.allclose(pprops["spacing"], spacing, rtol=1e-3):
            raise ValueError(f"{path} has spacing {tuple(float(v) for v in pprops['spacing'])}, its reference "
                             f"{ref_path} {spacing}: predictions must be on the reference's grid")
        per_class = case_metrics(pred, ref, classes, spacing, ignore, tolerance, percentile, lesions)
        for c, m in per_class.items():
            rows.append({"method": mi, "fold": fold, "case": case, "class": str(c), **m})
    return rows


def _mean_rows(df, metric_cols):
    """One "mean" row per (method, fold, case): the NaN-mean over classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = df.groupby(["method", "fold", "case"], sort=False)[metric_cols].mean().reset_index()
    mean["class"] = MEAN
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


def _digits(metric: str) -> int:
    return 2 if metric == "hd95" else 4


def markdown_table(summary, metric: str, methods, class_order, names, std: str = "std") -> str:
    """Rows = classes + mean, columns = methods, ``mean ± std``, best mean of each row in bold (none when all tie)."""
    title, higher = METRICS[metric]
    d = _digits(metric)
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


# ------------------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(summary, metric, methods, class_order, names, path):
    plt = _plt()
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
    plt = _plt()
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


def pick_overlay_cases(df, n_methods: int, n: int):
    """Cases where the methods' mean Dice differs most (one method: the worst cases)."""
    if n <= 0:
        return []
    d = df[df["class"] == MEAN].groupby(["case", "method"])["dice"].mean().unstack()
    score = (d.max(axis=1) - d.min(axis=1)) if n_methods > 1 else 1 - d.iloc[:, 0]
    score = score[np.isfinite(score)].sort_values(ascending=False, kind="stable")
    return list(score.index[:n])


def _image_for_overlay(reader, images_dir, case, ending):
    """Background for the overlays: the case's first image file scaled to [0, 1], shape (x, y, z) for a grey
    image or (x, y, z, 3) for an RGB natural image; None when there is no image folder or file."""
    if not images_dir:
        return None
    name = f"{case}_0000{ending}"
    if not os.path.isfile(os.path.join(images_dir, name)):
        return None
    img, _ = reader.read_images([os.path.join(images_dir, name)])
    img = np.asarray(img, dtype=np.float32)
    if img.shape[0] in (3, 4) and ending in (".png", ".bmp", ".tif"):
        return np.moveaxis(np.clip(img[:3] / 255.0, 0, 1), 0, -1)
    lo, hi = np.percentile(img[0], (1, 99))
    return np.clip((img[0] - lo) / max(hi - lo, 1e-8), 0, 1)


CLASS_COLOURS = np.array([[44, 160, 44], [255, 127, 14], [148, 103, 189], [140, 86, 75], [227, 119, 194],
                          [188, 189, 34], [23, 190, 207], [127, 127, 127]]) / 255.0
FALSE_POSITIVE, MISSED, IGNORED = np.array([214, 39, 40]) / 255.0, np.array([31, 119, 180]) / 255.0, 0.35


def overlay_rgb(seg, ref, values, ignore, image=None, alpha=0.75):
    """RGB picture of one slice: the image (grey or RGB, else black) with ``seg`` painted on it.

    ``seg is ref`` (the reference panel): each label in its colour. Otherwise: voxels labelled as in the
    reference in the label's colour, wrongly labelled foreground (false positive / wrong class) red,
    missed reference foreground blue; the reference's ignore region is darkened.
    """
    base = np.zeros(ref.shape + (3,)) if image is None else (image if image.ndim == 3 else
                                                             np.repeat(image[..., None], 3, -1))
    out = np.array(base, dtype=np.float64)
    fg_seg, fg_ref = np.isin(seg, values), np.isin(ref, values)
    for i, v in enumerate(values):
        m = (seg == v) & (seg == ref) if seg is not ref else seg == v
        out[m] = (1 - alpha) * out[m] + alpha * CLASS_COLOURS[i % len(CLASS_COLOURS)]
    if seg is not ref:
        for m, colour in ((fg_seg & (seg != ref), FALSE_POSITIVE), (fg_ref & ~fg_seg, MISSED)):
            out[m] = (1 - alpha) * out[m] + alpha * colour
    if ignore is not None:
        out[ref == ignore] *= IGNORED
    return np.clip(out, 0, 1)


def plot_overlay(case, reader, ref_path, preds, image, classes, ignore, dice, path):
    """Reference and each method's prediction on the slice where they disagree most (3D) or the image (2D)."""
    plt = _plt()
    ref, _ = _read_seg(reader, ref_path)
    segs = [_read_seg(reader, p)[0] for _, p in preds]
    if image is not None and image.shape[: ref.ndim] != ref.shape:
        image = None  # an image on another grid is no background for these labels
    squeeze = tuple(n for n in ref.shape if n > 1)
    if image is not None:
        image = image.reshape(squeeze + image.shape[ref.ndim:])  # grey: squeeze; RGB: squeeze + (3,)
    ref = ref.reshape(squeeze)
    segs = [s.reshape(squeeze) for s in segs]
    where = ""
    if ref.ndim == 3:
        valid = ref != ignore if ignore is not None else np.ones(ref.shape, bool)
        disagree = sum(((s != ref) & valid).sum(axis=(1, 2)) for s in segs)
        score = np.asarray(disagree, dtype=np.float64) * (ref.size + 1) + (ref > 0).sum(axis=(1, 2))
        k = int(np.argmax(score))
        ref, segs = ref[k], [s[k] for s in segs]
        image = image[k] if image is not None else None
        where = f", slice {k} of axis 0"
    values = sorted({v for c in classes for v in (c if isinstance(c, tuple) else (c,))})
    ncol = 1 + len(segs)
    h, w = ref.shape[:2]
    panel = 4.0 if max(h, w) >= 256 else 3.0
    fig, axes = plt.subplots(1, ncol, figsize=(panel * ncol, panel * h / w + 0.8), squeeze=False)
    titles = ["reference"] + [f"{name}: Dice {d:.3f}" for (name, _), d in zip(preds, dice)]
    for ax, seg, title in zip(axes[0], [ref] + segs, titles):
        ax.imshow(overlay_rgb(seg, ref, values, ignore, image), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{case}{where} - colour: label as in the reference; red: false positive or wrong label; "
                 f"blue: missed; dark: ignored", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- output
def _check_output(out_dir: str, overwrite: bool) -> None:
    if os.path.isfile(out_dir):
        raise ValueError(f"-o {out_dir} is a file; give a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ValueError(f"output folder {out_dir} exists and is not empty: choose another -o, or pass --overwrite "
                         "to replace the files this tool writes there (other files are kept)")


def _publish(staging: str, out_dir: str) -> None:
    """Move the finished staging folder into place (rename, or file by file into an existing folder)."""
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return
    for base, _, files in os.walk(staging):
        dest = os.path.join(out_dir, os.path.relpath(base, staging))
        os.makedirs(dest, exist_ok=True)
        for f in files:
            os.replace(os.path.join(base, f), os.path.join(dest, f))
    shutil.rmtree(staging)


def compare(methods, reference: str, dataset_json: dict, out_dir: str, images: str | None = None,
            metrics=None, lesions: bool = False, tolerance: float = 1.0, percentile: float = 95.0,
            std: str = "std", n_overlays: int = 3, num_processes: int = 1, overwrite: bool = False,
            progress: bool = True, command: str | None = None):
    """Evaluate, aggregate and write everything; returns (per-case DataFrame, summary DataFrame, Markdown)."""
    import pandas as pd
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from tqdm import tqdm

    metrics = list(dict.fromkeys(list(metrics or DEFAULT_METRICS) + (list(LESION_METRICS) if lesions else [])))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if any(m in LESION_METRICS for m in metrics) and not lesions:
        raise ValueError("lesion metrics need --lesions")
    if std not in ("std", "std_folds"):
        raise ValueError(f"std must be 'std' (over cases) or 'std_folds', got {std!r}")
    if not methods:
        raise ValueError("nothing to compare: name trainers (-tr) or prediction folders (-i)")
    if dataset_json is None:
        raise ValueError("no dataset.json found: pass --dataset-json or -d")
    if not os.path.isdir(reference):
        raise ValueError(f"reference folder {reference} does not exist")
    out_dir = os.path.abspath(out_dir)
    _check_output(out_dir, overwrite)
    classes, names, ignore = parse_labels(dataset_json)
    names = {str(c): n for c, n in names.items()}
    ending = dataset_json.get("file_ending")
    if not ending:
        raise ValueError("dataset.json has no 'file_ending'")
    jobs = build_jobs(methods, reference, ending)
    reader_class = determine_reader_writer_from_dataset_json(dataset_json, jobs[0][1], verbose=False)
    args = (reader_class, classes, ignore, tolerance, percentile, lesions)

    rows = []
    bar = tqdm(total=len(jobs), desc="compare: cases", disable=not progress)
    if num_processes > 1:
        import multiprocessing
        from functools import partial

        with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
            for r in pool.imap(partial(evaluate_case, reader_class=args[0], classes=classes, ignore=ignore,
                                       tolerance=tolerance, percentile=percentile, lesions=lesions), jobs):
                rows += r
                bar.update()
    else:
        for job in jobs:
            rows += evaluate_case(job, *args)
            bar.update()
    bar.close()

    df = pd.DataFrame(rows)
    metric_cols = [m for m in METRICS if m in df.columns]
    df = pd.concat([df, _mean_rows(df, metric_cols)], ignore_index=True)
    class_order = [str(c) for c in classes] + [MEAN]
    summary = aggregate(df, metric_cols)

    n_cases = df[df["class"] == MEAN].groupby("method").size().max()
    folds = sorted({f for m in methods for f, _ in m.folds})
    spread = "std over cases" if std == "std" else "std of the per-fold means"
    md = ["# nnunet_losses_compare", "",
          f"{len(methods)} method(s), {n_cases} case evaluations per method ({len(folds)} fold(s)); "
          f"cells: mean ± {spread}; best mean per row in bold. Surface Dice at {tolerance:g} mm, "
          f"HD{percentile:g} in mm. Conventions: docs/compare.md.", ""]
    if command:
        md += ["Command:", "", "```", command, "```", ""]
    for m in methods:
        md.append(f"- {m.name}: " + ", ".join(f"fold {f}: `{d}`" for f, d in m.folds))
    md.append(f"- reference: `{reference}`")
    tables = []
    for metric in metrics:
        t = f"## {METRICS[metric][0]} ({'higher' if METRICS[metric][1] else 'lower'} is better)\n\n" + \
            markdown_table(summary, metric, methods, class_order, names, std)
        tables.append(t)
    md_text = "\n".join(md) + "\n\n" + "\n\n".join(tables) + "\n"

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "plots"))
    try:
        out_df = df.copy()
        out_df.insert(0, "method_name", [methods[i].name for i in out_df.method])
        out_df.insert(4, "class_name", [names.get(c, c) for c in out_df["class"]])
        out_df.drop(columns="method").to_csv(os.path.join(staging, "per_case.csv"), index=False, na_rep="nan")
        summ = summary.copy()
        summ.insert(0, "method_name", [methods[i].name for i in summ.method])
        summ.insert(2, "class_name", [names.get(c, c) for c in summ["class"]])
        summ.drop(columns="method").to_csv(os.path.join(staging, "summary.csv"), index=False, na_rep="nan")
        with open(os.path.join(staging, "summary.md"), "w") as f:
            f.write(md_text)
        settings = {"command": command, "reference": reference, "images": images, "tolerance_mm": tolerance,
                    "percentile": percentile, "lesions": lesions, "metrics": metrics, "std": std,
                    "classes": {str(c): n for c, n in names.items()}, "ignore_label": ignore,
                    "methods": [{"name": m.name, "folds": dict(m.folds)} for m in methods]}
        with open(os.path.join(staging, "settings.json"), "w") as f:
            json.dump(settings, f, indent=2)
        steps = [("bars", m) for m in metrics] + [("box", m) for m in metrics]
        overlay_cases = pick_overlay_cases(df, len(methods), n_overlays)
        reader = reader_class()
        by_case = {c: (r, p) for c, r, p in jobs}
        for kind, metric in tqdm(steps + [("overlay", c) for c in overlay_cases], desc="compare: plots",
                                 disable=not progress):
            if kind == "bars":
                plot_bars(summary, metric, methods, class_order, names,
                          os.path.join(staging, "plots", f"{metric}_bars.png"))
            elif kind == "box":
                plot_boxes(df, metric, methods, class_order, names,
                           os.path.join(staging, "plots", f"{metric}_box.png"))
            else:
                case = metric
                ref_path, preds = by_case[case]
                first = {}
                for mi, fold, p in preds:
                    first.setdefault(mi, (fold, p))
                chosen = [(methods[mi].name, first[mi][1]) for mi in sorted(first)]
                sel = df[(df["class"] == MEAN) & (df.case == case)]
                dice = [float(sel[(sel.method == mi) & (sel.fold == first[mi][0])]["dice"].iloc[0])
                        for mi in sorted(first)]
                os.makedirs(os.path.join(staging, "overlays"), exist_ok=True)
                plot_overlay(case, reader, ref_path, chosen, _image_for_overlay(reader, images, case, ending),
                             classes, ignore, dice, os.path.join(staging, "overlays", f"{case}.png"))
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return df, summary, md_text


# -------------------------------------------------------------------------------------------- CLI
def main(argv=None):
    p = argparse.ArgumentParser(prog="nnunet_losses_compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Examples:\n  nnunet_losses_compare -d 4 -c 3d_fullres -tr nnUNetTrainer "
                                       "nnUNetTrainerCWCD -o cmp\n  nnunet_losses_compare -i base=predA "
                                       "CWCD=predB -ref labelsTs -d 501 -o cmp\nSee docs/compare.md.")
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
                   help=f"tables and plots (default: {' '.join(DEFAULT_METRICS)}); every metric is in the CSVs")
    p.add_argument("--lesions", action="store_true", help="add lesion-wise TPR / FPR (connected components)")
    p.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance in mm (default 1)")
    p.add_argument("--percentile", type=float, default=95.0, help="Hausdorff percentile (default 95)")
    p.add_argument("--std", choices=["cases", "folds"], default="cases", help="spread shown in the tables")
    p.add_argument("--overlays", type=int, default=3, help="overlay PNGs of the N most different cases (0: none)")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)

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
        methods, reference, dataset_json = methods_from_folders(a.predictions), a.reference, None
        if a.dataset and not a.dataset_json:
            raw = _env_dir("nnUNet_raw", "pass --dataset-json instead of -d")
            candidate = os.path.join(raw, resolve_dataset_name(a.dataset, raw), "dataset.json")
            dataset_json = _load_json(candidate) if os.path.isfile(candidate) else None
        if dataset_json is None and not a.dataset_json:
            for cand in [os.path.join(m.folds[0][1], "dataset.json") for m in methods] + \
                        [os.path.join(os.path.dirname(os.path.normpath(reference)), "dataset.json")]:
                if os.path.isfile(cand):
                    dataset_json = _load_json(cand)
                    break
    if a.dataset_json:
        dataset_json = _load_json(a.dataset_json)
    if a.names:
        if len(a.names) != len(methods):
            raise ValueError(f"--names has {len(a.names)} names for {len(methods)} methods")
        for m, n in zip(methods, a.names):
            m.name = n
    if len({m.name for m in methods}) != len(methods):
        raise ValueError(f"two methods have the same name ({[m.name for m in methods]}): use --names")
    command = "nnunet_losses_compare " + " ".join(argv if argv is not None else sys.argv[1:])
    df, summary, md = compare(methods, reference, dataset_json, a.output, images, a.metrics, a.lesions,
                              a.tolerance, a.percentile, "std" if a.std == "cases" else "std_folds", a.overlays,
                              a.num_processes, a.overwrite, not a.no_progress, command)
    print(md)
    print(f"Tables, CSV and plots: {os.path.abspath(a.output)}")
    return df, summary


def entry_point():
    try:
        main()
    except ValueError as e:
        sys.exit(f"nnunet_losses_compare: error: {e}")


if __name__ == "__main__":
    entry_point()

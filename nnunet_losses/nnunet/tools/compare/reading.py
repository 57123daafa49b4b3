"""Reading what to compare: methods and their prediction folders, cases, reference files, dataset.json labels.

Two ways to name the methods (docs/compare.md):

- trained nnU-Net models of one dataset (:func:`methods_from_results`): each trainer's
  ``$nnUNet_results/<Dataset>/<trainer>__<plans>__<config>/fold_X/validation`` folders, against
  ``$nnUNet_preprocessed/<Dataset>/gt_segmentations`` (``$nnUNet_raw/<Dataset>/labelsTr`` if absent);
- prediction folders (:func:`methods_from_folders`): ``NAME=DIR[,DIR...]``, several folders being
  several folds' predictions of the same cases.

:func:`build_jobs` pairs every prediction file with its reference file and checks that all
methods were evaluated on the same cases. Nothing here imports nnU-Net; :func:`read_seg` uses the
reader object it is given (nnU-Net's reader for the dataset's file ending).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Method:
    """One column of the tables: a name and its prediction folders, one per fold."""
    name: str
    folds: list = field(default_factory=list)  # [(fold name, folder)]


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


def load_json(path: str) -> dict:
    """The JSON content of ``path``; a ValueError naming the file if it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e


def env_dir(var: str, hint: str) -> str:
    """The folder in environment variable ``var``; a ValueError with ``hint`` if it is unset or not a folder."""
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
    results = env_dir("nnUNet_results", "pass prediction folders with -i and a reference folder with -ref")
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
            dataset_json = load_json(os.path.join(out, "dataset.json"))
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
                dataset_json = load_json(os.path.join(*cand))
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


def case_files(folder: str, ending: str) -> dict:
    """``{case id: path}`` of the files in ``folder`` ending in ``ending`` (hidden files left out)."""
    return {f[: -len(ending)]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
            if f.endswith(ending) and not f.startswith(".")}


def build_jobs(methods, ref_dir: str, ending: str):
    """[(case, reference file, [(method index, fold, prediction file)])], checking that the case sets match."""
    refs = case_files(ref_dir, ending)
    if not refs:
        raise ValueError(f"no reference file ending in {ending!r} in {ref_dir}")
    per_case, case_sets = {}, []
    for mi, m in enumerate(methods):
        seen = set()
        for fold, folder in m.folds:
            preds = case_files(folder, ending)
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


def missing_cases(methods, ref_dir: str, ending: str, all_references: bool = True) -> list[str]:
    """One message per missing prediction (empty list: nothing missing).

    - with ``all_references`` (prediction folders against a test set's labels): a reference case
      that no method predicted;
    - a method whose folds share cases (each fold's model predicting the same test set) must have
      every one of its cases in every fold; folds without a common case (a cross-validation: every
      case in one fold) are not checked.
    """
    refs = set(case_files(ref_dir, ending))
    fold_cases = [[(fold, folder, set(case_files(folder, ending))) for fold, folder in m.folds] for m in methods]
    out = []
    if all_references:
        predicted = set().union(*(c for folds in fold_cases for _, _, c in folds))
        for case in sorted(refs - predicted):
            out.append(f"reference case {case} ({os.path.join(ref_dir, case + ending)}) has no prediction in any "
                       f"method's folder")
    for m, folds in zip(methods, fold_cases):
        shared = any(a[2] & b[2] for i, a in enumerate(folds) for b in folds[i + 1:])
        if not shared:
            continue
        union = set().union(*(c for _, _, c in folds))
        for fold, folder, cases in folds:
            for case in sorted(union - cases):
                out.append(f"method {m.name}: fold {fold} ({folder}) has no prediction of case {case}, which its "
                           f"other folds predicted")
    return out


def read_seg(reader, path: str):
    """(label image as int32 (nnU-Net's layout, channel dropped), properties) of one segmentation file."""
    seg, props = reader.read_seg(path)
    return np.rint(np.asarray(seg[0])).astype(np.int32), props


def dataset_json_for_folders(methods, reference: str, dataset: str | None = None) -> dict | None:
    """dataset.json for prediction folders: ``$nnUNet_raw/<dataset>/dataset.json`` with ``dataset``, else the
    first prediction folder's (nnUNetv2_predict writes one), else the one next to the reference folder."""
    if dataset:
        raw = env_dir("nnUNet_raw", "pass --dataset-json instead of -d")
        candidate = os.path.join(raw, resolve_dataset_name(dataset, raw), "dataset.json")
        if os.path.isfile(candidate):
            return load_json(candidate)
    for cand in [os.path.join(m.folds[0][1], "dataset.json") for m in methods] + \
                [os.path.join(os.path.dirname(os.path.normpath(reference)), "dataset.json")]:
        if os.path.isfile(cand):
            return load_json(cand)
    return None

"""Every input file read once and checked before any metric is computed.

Per case, the reference and every prediction:

- **labels**: every value must be one that dataset.json declares (background, the labels, the
  members of the regions, the ignore label); an undeclared one (a label 7 in a 3-label dataset) would
  otherwise count as background. Error, or a warning with ``warn_only`` (``--warn-bad-input``).
- **grid**: a prediction's shape and spacing must be its reference's (always an error); its origin
  and direction (SimpleITK's) or affine (NiBabel's) too: a prediction 50 mm away from its reference
  is on another grid even with the same shape. Error, or a warning with ``warn_only``.

:func:`check_inputs` runs :func:`check_case` over all cases (in worker processes like the
evaluation) and returns the problems, each naming the file, the case, the method and the fix.
"""
from __future__ import annotations

import numpy as np

from .reading import read_seg

GEOMETRY_ATOL = 1e-3  # mm for origins and affines, unitless for directions (float32 storage in NIfTI headers)
WARN_FLAG = "--warn-bad-input"


def declared_labels(dataset_json: dict) -> np.ndarray:
    """Every label value dataset.json declares: background, labels, region members, the ignore label."""
    values = set()
    for v in dataset_json["labels"].values():
        values.update(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    return np.array(sorted(values))


def undeclared_labels(seg: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The values of integer array ``seg`` that are not in ``labels`` (sorted; empty when all are declared).

    A bincount when the values lie in [0, max label] (one pass, about 3x faster than ``np.unique``).
    """
    low, high = int(seg.min()), int(seg.max())
    if low >= 0 and high <= labels[-1]:
        found = np.flatnonzero(np.bincount(seg.ravel(), minlength=high + 1))
    else:
        found = np.unique(seg)
    return found[~np.isin(found, labels)]


def geometry(props: dict) -> dict:
    """{name: array} of the position of an image in space, from nnU-Net's reader properties (may be empty)."""
    out = {}
    for group in ("sitk_stuff", "nibabel_stuff"):
        for key in ("origin", "direction", "original_affine"):
            value = props.get(group, {}).get(key)
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float64)
    return out


def check_case(job, reader_class, labels: np.ndarray, names) -> tuple[list, list]:
    """(errors, warnings-or-errors) of one case: ``errors`` always fail (shape, spacing); the second list
    (undeclared labels, origin/direction) fails unless ``--warn-bad-input``. ``names``: method names."""
    case, ref_path, preds = job
    reader = reader_class()
    hard, soft = [], []

    def undeclared(seg, path, who):
        extra = undeclared_labels(seg, labels)
        if extra.size:
            soft.append(f"{path} ({who}) holds label(s) {extra.tolist()} that dataset.json does not "
                        f"declare ({labels.tolist()}): fix the file or dataset.json's 'labels' (or pass {WARN_FLAG}: "
                        f"they then count as background)")

    ref, props = read_seg(reader, ref_path)
    spacing, ref_geo = np.asarray(props["spacing"], dtype=np.float64), geometry(props)
    undeclared(ref, ref_path, f"reference, case {case}")
    for mi, fold, path in preds:
        who = f"method {names[mi]}, fold {fold}, case {case}"
        pred, pprops = read_seg(reader, path)
        if pred.shape != ref.shape:
            hard.append(f"{path} ({who}) has shape {pred.shape}, its reference {ref_path} {ref.shape}: "
                        f"predictions must be on the reference's grid")
            continue
        if not np.allclose(pprops["spacing"], spacing, rtol=1e-3):
            hard.append(f"{path} ({who}) has spacing {tuple(float(v) for v in pprops['spacing'])}, its reference "
                        f"{ref_path} {tuple(spacing.tolist())}: predictions must be on the reference's grid")
            continue
        for key, value in geometry(pprops).items():
            if key in ref_geo and (value.shape != ref_geo[key].shape or
                                   not np.allclose(value, ref_geo[key], rtol=0, atol=GEOMETRY_ATOL)):
                soft.append(f"{path} ({who}) has {key} {np.round(value, 4).tolist()}, its reference {ref_path} "
                            f"{np.round(ref_geo[key], 4).tolist()}: the prediction lies elsewhere in space; resample "
                            f"it onto the reference (or pass {WARN_FLAG} to compare the voxel arrays as they are)")
        undeclared(pred, path, who)
    return hard, soft


def check_inputs(jobs, reader_class, dataset_json: dict, names, num_processes: int = 1,
                 progress: bool = True) -> tuple[list, list]:
    """(errors, warnings-or-errors) of every case (:func:`check_case`), in ``num_processes`` processes."""
    from functools import partial

    from .table import run_cases

    work = partial(check_case, reader_class=reader_class, labels=declared_labels(dataset_json), names=list(names))
    hard, soft = [], []
    for h, s in run_cases(work, jobs, num_processes, progress, "compare: checking inputs"):
        hard += h
        soft += s
    return hard, soft

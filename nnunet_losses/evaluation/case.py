"""All metrics of one case, per class (label) or region, from two label images.

``classes`` holds nnU-Net labels (int: mask = ``seg == label``) or regions (tuple of labels: mask =
``seg in region``, nnU-Net's region training). Voxels whose *reference* label is ``ignore_label``
are removed from both masks before anything is computed (nnU-Net's ignore label: in no count, in
no surface, no skeleton, no component). The formulas and the empty-mask conventions are in the
docstrings of overlap.py, surface.py (surfels.py for DeepMind's surface convention), lesions.py and
topology.py.
"""
from __future__ import annotations

import numpy as np

from .lesions import lesion_detection
from .overlap import confusion, overlap_metrics
from .surface import squeeze_spacing, surface_metrics
from .topology import TOPOLOGY_METRICS, topology_metrics

# name -> (column title, True when higher is better). The order is the order of the tables.
METRICS = {
    "dice": ("Dice", True),
    "iou": ("IoU", True),
    "hd95": ("HD95 (mm)", False),
    "nsd": ("Surface Dice", True),
    "precision": ("Precision", True),
    "recall": ("Recall", True),
    "lesion_tpr": ("Lesion TPR", True),
    "lesion_fpr": ("Lesion FPR", False),
    "cldice": ("clDice", True),
    "betti0_error": ("Betti-0 error", False),
    "betti1_error": ("Betti-1 error", False),
}
LESION_METRICS = ("lesion_tpr", "lesion_fpr")
# TOPOLOGY_METRICS (topology.py): computed only when asked for (skeletons cost more than every other metric)


def class_mask(seg: np.ndarray, label_or_region) -> np.ndarray:
    """Boolean mask of a label (int) or a region (tuple/list of labels) in a label image."""
    if isinstance(label_or_region, (tuple, list)):
        return np.isin(seg, np.asarray(label_or_region))
    return seg == label_or_region


def case_metrics(pred: np.ndarray, ref: np.ndarray, classes, spacing=None, ignore_label: int | None = None,
                 tolerance: float = 1.0, percentile: float = 95.0, lesions: bool = False, *,
                 topology=(), surface_convention: str = "monai") -> dict:
    """``{class: {metric: value}}`` for one case; ``spacing`` in mm per axis of ``ref``.

    Metrics: dice, iou, precision, recall, hd95 (mm), nsd (surface Dice at ``tolerance`` mm), the
    counts tp, fp, fn, n_ref, n_pred (voxels); with ``lesions=True``, lesion_tpr, lesion_fpr and
    the lesion counts; the topology metrics named in ``topology`` (a subset of TOPOLOGY_METRICS:
    cldice, betti0_error, betti1_error; True = all three). ``surface_convention``: "monai" (default)
    or "deepmind" for hd95 and nsd.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if len(classes) == 0:
        raise ValueError("classes is empty: name at least one foreground label or region")
    topology = TOPOLOGY_METRICS if topology is True else tuple(topology or ())
    unknown = [t for t in topology if t not in TOPOLOGY_METRICS]
    if unknown:
        raise ValueError(f"unknown topology metric(s) {unknown}; choose from {list(TOPOLOGY_METRICS)}")
    valid = None if ignore_label is None else ref != ignore_label
    shape, spacing = squeeze_spacing(ref.shape, spacing)  # validated; length-1 axes dropped
    out = {}
    for c in classes:
        p, r = class_mask(pred, c), class_mask(ref, c)
        if valid is not None:
            p &= valid
            r &= valid
        tp, fp, fn, _ = confusion(p, r)
        m = overlap_metrics(tp, fp, fn)
        p, r = p.reshape(shape), r.reshape(shape)
        m["hd95"], m["nsd"] = surface_metrics(p, r, spacing, tolerance, percentile, surface_convention)
        if lesions:
            m.update(lesion_detection(p, r))
        if topology:
            m.update(topology_metrics(p, r, topology))
        m.update(tp=tp, fp=fp, fn=fn, n_ref=tp + fn, n_pred=tp + fp)
        out[c] = m
    return out

"""Topology metrics of one binary prediction against one binary reference, 2D and 3D.

clDice (Shit et al., "clDice - a novel topology-preserving loss function for tubular structure
segmentation", CVPR 2021), with S(X) the skeleton of mask X, P the prediction and L the reference:

    Tprec  = |S(P) ∩ L| / |S(P)|          (topology precision: predicted centrelines inside the reference)
    Tsens  = |S(L) ∩ P| / |S(L)|          (topology sensitivity: reference centrelines that are found)
    clDice = 2 Tprec Tsens / (Tprec + Tsens)

Skeletons come from scikit-image's ``skeletonize`` (Zhang's thinning in 2D, Lee's in 3D), on the
voxel grid: the spacing plays no part (topology does not depend on it). Lee's 3D thinning can
remove a small compact object entirely (a 2x2x2 cube has an empty skeleton); a non-empty mask whose
skeleton is empty is its own skeleton, so that a found object always counts.

Betti numbers and their errors:

- b0 = number of connected components, with full connectivity (8 in 2D, 26 in 3D: the objects of
  lesions.py and of the DWCE weight map); ``betti0_error = |b0(P) - b0(L)|``.
- b1 (2D only) = number of holes = connected components of the background that do not touch the
  image border (the outside of the array counts as background), found with 4-connectivity. The
  background must use the dual connectivity of the foreground: with 8-connected foreground, two
  diagonal foreground pixels touch, so background may not pass between them; a ring drawn with
  diagonal steps then encloses a hole, as it should (with 8-connected background it would leak).
  ``betti1_error = |b1(P) - b1(L)|``. In 3D, b1 counts tunnels, which need the Euler characteristic
  as well; it is not computed: ``betti1_error`` is NaN for 3D masks.

Empty masks (what we return, and why):
- both empty: NaN for all three metrics (nothing to measure; the case is left out of the
  NaN-means, as for Dice).
- exactly one empty: clDice = 0 (no centreline is matched); the Betti errors are the other mask's
  Betti numbers (an empty mask has none: b0 = b1 = 0).

Axes of length 1 are dropped first (nnU-Net's 2D layout (1, X, Y) is a 2D image).
"""
from __future__ import annotations

import numpy as np

from ..morphology.skeletons import skeleton_of
from .lesions import components
from .surface import prepare

TOPOLOGY_METRICS = ("cldice", "betti0_error", "betti1_error")


def _box(mask: np.ndarray):
    """Slices of the bounding box of ``mask`` (which must not be empty)."""
    idx = np.argwhere(mask)
    return tuple(slice(lo, hi + 1) for lo, hi in zip(idx.min(0), idx.max(0)))


def metric_skeleton(mask: np.ndarray) -> np.ndarray:
    """Skeleton of boolean ``mask`` (2D: Zhang, 3D: Lee; other dimensions: the mask); empty skeleton -> the mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3) or not mask.any():
        return mask.copy()
    skel = skeleton_of(mask)
    return skel if skel.any() else mask.copy()


def cldice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """clDice of boolean ``pred`` against boolean ``ref`` (module docstring, empty-mask conventions included)."""
    pred, ref, _ = prepare(pred, ref)
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not (has_p or has_r):
        return float("nan")
    if not (has_p and has_r):
        return 0.0
    s_pred, s_ref = metric_skeleton(pred), metric_skeleton(ref)
    tprec = np.count_nonzero(s_pred & ref) / np.count_nonzero(s_pred)
    tsens = np.count_nonzero(s_ref & pred) / np.count_nonzero(s_ref)
    return 0.0 if tprec + tsens == 0 else float(2 * tprec * tsens / (tprec + tsens))


def betti0(mask: np.ndarray) -> int:
    """Number of connected components (full connectivity)."""
    return components(np.asarray(mask, dtype=bool))[1]


def betti1_2d(mask: np.ndarray) -> int:
    """Number of holes of a 2D mask: 4-connected background components that do not touch the border."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"betti1_2d needs a 2D mask, got shape {mask.shape}")
    if not mask.any():
        return 0
    import cc3d

    # pad by one background pixel: every background region that touches the border joins the outer one
    background = ~np.pad(mask[_box(mask)], 1)
    return int(cc3d.connected_components(background, connectivity=4, return_N=True)[1]) - 1


def betti_errors(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(betti0_error, betti1_error) of boolean masks; betti1_error is NaN unless the masks are 2D."""
    pred, ref, _ = prepare(pred, ref)
    if not (pred.any() or ref.any()):
        return float("nan"), float("nan")
    e0 = float(abs(betti0(pred) - betti0(ref)))
    e1 = float(abs(betti1_2d(pred) - betti1_2d(ref))) if pred.ndim == 2 else float("nan")
    return e0, e1


def topology_metrics(pred: np.ndarray, ref: np.ndarray, names=TOPOLOGY_METRICS) -> dict[str, float]:
    """The topology metrics in ``names`` (a subset of TOPOLOGY_METRICS) of one binary prediction."""
    unknown = [n for n in names if n not in TOPOLOGY_METRICS]
    if unknown:
        raise ValueError(f"unknown topology metric(s) {unknown}; choose from {list(TOPOLOGY_METRICS)}")
    out = {}
    if "cldice" in names:
        out["cldice"] = cldice_score(pred, ref)
    if "betti0_error" in names or "betti1_error" in names:
        e0, e1 = betti_errors(pred, ref)
        out.update({k: v for k, v in (("betti0_error", e0), ("betti1_error", e1)) if k in names})
    return out

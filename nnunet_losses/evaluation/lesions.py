"""Lesion-wise detection rates (connected components), as used for MS lesions by Hashemi et al.,
"Asymmetric loss functions and deep densely connected networks for highly imbalanced medical image
segmentation", IEEE Access 2018 (arXiv 1803.11078), and the MSSEG / ISBI lesion challenges:

    lesion TPR (LTPR) = #reference lesions overlapped by the prediction / #reference lesions
    lesion FPR (LFPR) = #predicted lesions overlapping no reference lesion / #predicted lesions

A lesion is a connected component with full connectivity (8 in 2D, 26 in 3D; the same objects as
the DWCE weight map), found with ``connected-components-3d`` (cc3d). "Overlapped"
means at least ``min_overlap`` voxels in common (default 1: any overlap, the usual definition).
LTPR is NaN when the reference has no lesion, LFPR is NaN when the prediction has none (the ratios
are undefined; the case drops out of the NaN-means). The counts are returned as well.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .surface import prepare


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label image of the connected components of boolean ``mask`` (full connectivity) and their number."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim in (2, 3):
        import cc3d

        labels, n = cc3d.connected_components(mask, connectivity=8 if mask.ndim == 2 else 26, return_N=True)
        return labels, int(n)
    if mask.ndim == 1:
        labels, n = components(mask[None])
        return labels[0], n
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return labels, int(n)


def lesion_detection(pred: np.ndarray, ref: np.ndarray, min_overlap: int = 1) -> dict[str, float]:
    """Lesion-wise TPR and FPR of boolean ``pred`` against boolean ``ref`` (module docstring), plus counts."""
    if int(min_overlap) < 1:
        raise ValueError(f"min_overlap is a number of voxels >= 1, got {min_overlap}")
    pred, ref, _ = prepare(pred, ref)
    ref_cc, n_ref = components(ref)
    pred_cc, n_pred = components(pred)
    both = pred & ref
    hit_ref = np.bincount(ref_cc[both], minlength=n_ref + 1)[1:] >= min_overlap
    hit_pred = np.bincount(pred_cc[both], minlength=n_pred + 1)[1:] >= min_overlap
    n_detected = int(np.count_nonzero(hit_ref))
    n_false = int(n_pred - np.count_nonzero(hit_pred))
    return {
        "lesion_tpr": n_detected / n_ref if n_ref else float("nan"),
        "lesion_fpr": n_false / n_pred if n_pred else float("nan"),
        "n_ref_lesions": n_ref,
        "n_pred_lesions": n_pred,
        "n_detected_lesions": n_detected,
        "n_false_lesions": n_false,
    }

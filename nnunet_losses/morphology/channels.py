"""Label maps to binary channels, in NumPy (no torch): the class one-hot, regions and the ignore mask.

Shared by the NumPy map functions (:mod:`.numpy_ops`) and the tubed skeletons (:mod:`.skeletons`) so
that both read labels, classes, regions and the ignore label in the same way. The torch losses build
their channels in :mod:`nnunet_losses._core` (one-hot of a batch) and :mod:`.torch_ops`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["ignored_mask", "int_labels", "count_classes", "label_channels"]


def ignored_mask(label: np.ndarray, ignore_label: Optional[int]) -> Optional[np.ndarray]:
    """Bool mask of the voxels equal to ``ignore_label``; None when there is no ignore label or no such voxel."""
    if ignore_label is None:
        return None
    ign = label == ignore_label
    return ign if ign.any() else None


def int_labels(label) -> np.ndarray:
    """``label`` as an integer array (bool viewed as uint8; whole-numbered floats cast to int64), else ValueError."""
    label = np.asarray(label)
    if np.issubdtype(label.dtype, np.bool_):
        return label.view(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.mod(label, 1) == 0):
            raise ValueError("label must hold integer labels (it has fractional values)")
        label = label.astype(np.int64)
    return label


def count_classes(label: np.ndarray, num_classes: Optional[int], ignore_label: Optional[int]) -> int:
    """``num_classes``, or (None) the largest counted label + 1; ValueError below 1."""
    if num_classes is None:
        valid = label[label != ignore_label] if ignore_label is not None else label
        num_classes = int(valid.max()) + 1 if valid.size else 1
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return int(num_classes)


def label_channels(label: np.ndarray, num_classes: Optional[int], regions, ignore_label: Optional[int],
                   with_background: bool) -> np.ndarray:
    """Binary channels (C, *sp): one-hot classes (1..C-1, or 0..C-1) or regions (+ their complements)."""
    label = int_labels(label)
    if regions is not None:
        chans = [np.isin(label, np.atleast_1d(np.asarray(r))) for r in regions]
        if with_background:
            counted = np.ones(label.shape, bool) if ignore_label is None else label != ignore_label
            chans = chans + [counted & ~c for c in chans]
        return np.stack(chans) if chans else np.zeros((0, *label.shape), bool)
    num_classes = count_classes(label, num_classes, ignore_label)
    first = 0 if with_background else 1
    classes = np.arange(first, num_classes).reshape((-1,) + (1,) * label.ndim)
    return label[None] == classes

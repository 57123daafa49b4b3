"""Tubed skeletons for Skeleton Recall, in NumPy / scikit-image (no torch).

The tubed skeleton of a binary mask (docs/losses.md, section 3.9; Kirchhoff et al.,
"Skeleton Recall Loss for Connectivity Conserving and Resource Efficient Segmentation of Thin
Tubular Structures", ECCV 2024, and the authors' code MIC-DKFZ/Skeleton-Recall):

    T = dilate^dilations(skeletonize(mask), cross element) AND mask

``skeletonize`` is scikit-image's (2D: Zhang's method; 3D: Lee's method), the cross is the
connectivity-1 element (4-neighbourhood in 2D, 6 in 3D, what ``skimage.morphology.dilation`` uses
by default); the dilation treats the outside of the array as background. One skeleton per
foreground class (label training) or per region (region training); voxels of the ignore label
belong to no class, so they are background for the skeleton. ``per_slice``: axis 0 is a stack of
independent 2D images (nnU-Net's ``2d`` configuration of a 3D case).

Used by the ``skeleton`` map kind (``nnunet_losses_precompute``) and, per sample on the CPU, by the
losses of :mod:`nnunet_losses.skeleton` when no skeleton is passed (online).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .maps import _channels

__all__ = ["tubed_skeleton", "skeleton_map"]


def _check_dilations(dilations) -> int:
    if isinstance(dilations, bool) or int(dilations) != dilations or dilations < 0:
        raise ValueError(f"dilations must be a whole number >= 0, got {dilations!r}")
    return int(dilations)


def _tube_nd(mask: np.ndarray, dilations: int) -> np.ndarray:
    from skimage.morphology import skeletonize

    if not mask.any():
        return np.zeros(mask.shape, bool)
    skel = np.asarray(skeletonize(mask), dtype=bool)
    if dilations:
        cross = ndimage.generate_binary_structure(mask.ndim, 1)
        skel = ndimage.binary_dilation(skel, cross, iterations=dilations, border_value=0)
    return skel & mask


def tubed_skeleton(mask: np.ndarray, dilations: int = 2, per_slice: bool = False) -> np.ndarray:
    """The tubed skeleton of one binary ``mask`` (2D or 3D; ``per_slice``: each 2D slice along axis 0), bool."""
    mask = np.asarray(mask).astype(bool, copy=False)
    dilations = _check_dilations(dilations)
    if mask.ndim not in (2, 3) or (per_slice and mask.ndim != 3):
        raise ValueError(f"mask must be 2D or 3D (per_slice: 3D), got shape {mask.shape}")
    if per_slice:
        return np.stack([_tube_nd(s, dilations) for s in mask]) if len(mask) else np.zeros(mask.shape, bool)
    return _tube_nd(mask, dilations)


def skeleton_map(label: np.ndarray, num_classes: Optional[int] = None, regions=None,
                 ignore_label: Optional[int] = None, dilations: int = 2, per_slice: bool = False) -> np.ndarray:
    """Tubed skeleton of every foreground class (or region), bool (C_fg, *spatial), from one label map.

    ``label`` holds integer labels (no channel axis); ``regions`` as nnU-Net's ``foreground_regions``;
    voxels equal to ``ignore_label`` are in no class and no region.
    """
    label = np.asarray(label)
    chans = _channels(label, num_classes, regions, ignore_label, with_background=False)
    if ignore_label is not None and regions is not None:
        chans = chans & (label != ignore_label)[None]
    return np.stack([tubed_skeleton(c, dilations, per_slice) for c in chans]) if len(chans) \
        else np.zeros((0, *label.shape), bool)

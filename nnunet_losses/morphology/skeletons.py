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
losses of :mod:`nnunet_losses.skeleton_recall` when no skeleton is passed (online).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from .channels import label_channels

__all__ = ["skeleton_of", "tubed_skeleton", "skeleton_map"]


def _check_dilations(dilations) -> int:
    if isinstance(dilations, bool) or int(dilations) != dilations or dilations < 0:
        raise ValueError(f"dilations must be a whole number >= 0, got {dilations!r}")
    return int(dilations)


@lru_cache(maxsize=None)
def _l1_ball(radius: int, ndim: int) -> np.ndarray:
    """Offsets (n, ndim) of the L1 ball of ``radius``: ``radius`` dilations by the cross element."""
    grid = np.stack(np.meshgrid(*[np.arange(-radius, radius + 1)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    return grid[np.abs(grid).sum(1) <= radius]


def _dilate_l1(skel: np.ndarray, radius: int) -> np.ndarray:
    """``radius`` cross dilations of ``skel`` (outside = background), i.e. every voxel within L1 distance
    ``radius`` of a skeleton voxel; computed from the (few) skeleton voxels' coordinates."""
    pts = (np.argwhere(skel)[:, None, :] + _l1_ball(radius, skel.ndim)[None]).reshape(-1, skel.ndim)
    pts = pts[np.all((pts >= 0) & (pts < np.asarray(skel.shape)), axis=1)]
    out = np.zeros(skel.shape, bool)
    out[tuple(pts.T)] = True
    return out


def _box(mask: np.ndarray) -> tuple:
    """The bounding box of ``mask``'s voxels plus one voxel on each side (clipped to the array)."""
    out = []
    for ax in range(mask.ndim):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        out.append(slice(max(int(idx[0]) - 1, 0), int(idx[-1]) + 2))
    return tuple(out)


def skeleton_of(mask: np.ndarray) -> np.ndarray:
    """scikit-image's skeleton of the boolean ``mask`` (2D: Zhang's method, 3D: Lee's), bool, same shape.

    Computed in the mask's bounding box plus a one-voxel background frame: thinning is local and treats
    the outside as background, so the skeleton is the same, and much faster for a small structure in a
    large array. An empty mask gives an empty skeleton.
    """
    from skimage.morphology import skeletonize

    out = np.zeros(mask.shape, bool)
    if mask.any():
        box = _box(mask)
        out[box] = skeletonize(mask[box])
    return out


def _tube_nd(mask: np.ndarray, dilations: int) -> np.ndarray:
    skel = skeleton_of(mask)
    if dilations and skel.any():
        skel = _dilate_l1(skel, dilations)
    return skel & mask  # every tube voxel lies in the mask


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
    chans = label_channels(label, num_classes, regions, ignore_label, with_background=False)
    if ignore_label is not None and regions is not None:
        chans = chans & (label != ignore_label)[None]
    return np.stack([tubed_skeleton(c, dilations, per_slice) for c in chans]) if len(chans) \
        else np.zeros((0, *label.shape), bool)

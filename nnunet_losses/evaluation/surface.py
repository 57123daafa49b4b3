"""Surface-distance metrics in mm: HD95 and surface Dice (NSD), for binary masks of any dimension.

Surface (the same convention as MONAI's ``get_mask_edges`` without sub-voxels, against which
tests/test_metrics.py checks these numbers): the edge voxels of a mask, ``m AND NOT erode(m)``
with the face-connected cross (4-neighbourhood in 2D, 6 in 3D); the outside of the array counts as
background, so a mask touching the image border has a surface there.

Distances: ``d(x, S)`` = Euclidean distance in mm (voxel index differences times ``spacing``)
from the centre of edge voxel x to the nearest edge voxel of the other mask, exact, on the bounding
box of both masks plus a one-voxel margin: a k-d tree of the edge voxels (SciPy) when they are few
(under 1/20 of the box), else a distance transform of the box (``edt``; SciPy beyond 3D).

- HD95 (``hd95``; Huttenlocher et al. 1993, robust variant): the larger of the two *directed*
  95th percentiles, ``max(P95{d(x, S_ref) : x in S_pred}, P95{d(y, S_pred) : y in S_ref})``,
  percentile with linear interpolation (``numpy.percentile``'s default). This is MONAI's
  ``compute_hausdorff_distance(percentile=95)``; DeepMind's ``compute_robust_hausdorff`` takes the
  same maximum but weights surface points by surfel area and uses a nearest-rank percentile
  (``convention="deepmind"``, surfels.py, reproduces it), and MedPy's ``hd95`` takes one percentile
  of both directions pooled (never larger than ours), so numbers differ slightly between tools.
- Surface Dice at tolerance tau mm (``surface_dice``; Nikolov et al. 2018, "normalised surface
  distance"): ``(#{x in S_pred : d(x, S_ref) <= tau} + #{y in S_ref : d(y, S_pred) <= tau}) /
  (|S_pred| + |S_ref|)``: the fraction of both surfaces within tau of the other (MONAI's
  ``compute_surface_dice`` with ``use_subvoxels=False``).

Empty masks (what we return and why):
- both empty: NaN for both metrics (no surface, nothing to measure; the case is left out of the
  NaN-mean, as nnU-Net does for Dice).
- exactly one empty: HD95 = the image diagonal in mm, ``||(shape - 1) * spacing||``, i.e. the largest
  distance two voxels of this image can have, a finite worst case (the BraTS challenge convention;
  MONAI returns inf, which would make every mean infinite); surface Dice = 0 (no surface point is
  matched).

Axes of length 1 are dropped together with their spacing before anything is computed: nnU-Net
stores a 2D image as (1, X, Y) with a dummy spacing of 999 on the first axis, and an erosion along
that axis would turn every voxel into an edge voxel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


KDTREE_BELOW = 0.05  # k-d tree when the edge voxels are fewer than this fraction of the box (measured: faster)


def squeeze_spacing(shape, spacing=None):
    """Validated spacing (float64, one value per axis of ``shape``) and the shape and spacing without length-1 axes."""
    shape = tuple(int(n) for n in shape)
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, dtype=np.float64).ravel()
    if spacing.size == 1 and len(shape) > 1:
        spacing = np.full(len(shape), float(spacing[0]))
    if spacing.size != len(shape) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing must hold {len(shape)} finite positive numbers (one per axis of an array "
                         f"of shape {shape}), got {spacing.tolist()}")
    keep = [i for i, n in enumerate(shape) if n > 1] or [len(shape) - 1]
    return tuple(shape[i] for i in keep), spacing[keep]


def prepare(pred: np.ndarray, ref: np.ndarray, spacing=None):
    """Boolean arrays with the length-1 axes dropped, and the matching spacing (float64 array)."""
    pred = np.asarray(pred).astype(bool, copy=False)
    ref = np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}: "
                         "both must be on the same voxel grid")
    shape, spacing = squeeze_spacing(ref.shape, spacing)
    return pred.reshape(shape), ref.reshape(shape), spacing


def diagonal(shape, spacing) -> float:
    """Largest distance in mm between two voxel centres of an array of ``shape``."""
    return float(np.linalg.norm((np.asarray(shape, dtype=np.float64) - 1) * np.asarray(spacing, dtype=np.float64)))


def edges(mask: np.ndarray) -> np.ndarray:
    """Edge voxels: ``mask AND NOT erode(mask)`` (face-connected cross; outside = background)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _distance_to(edge: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from every voxel to the nearest True voxel of ``edge`` (which must not be empty)."""
    if edge.ndim <= 3:
        import edt

        anisotropy = float(spacing[0]) if edge.ndim == 1 else tuple(float(s) for s in spacing)
        return edt.edt(np.ascontiguousarray(~edge), anisotropy=anisotropy, black_border=False, parallel=1)
    return ndimage.distance_transform_edt(~edge, sampling=spacing)


def _crop(pred: np.ndarray, ref: np.ndarray):
    """Both masks cut to the bounding box of their union, padded by one background voxel."""
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(hit[0], hit[-1] + 1))
    box = tuple(box)
    return np.pad(pred[box], 1), np.pad(ref[box], 1)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing=None):
    """Directed surface distances in mm: (from each edge voxel of pred to ref's surface, from ref's to pred's).

    Both masks must be non-empty (see ``hd95`` / ``surface_dice`` for the empty cases).
    """
    pred, ref, spacing = prepare(pred, ref, spacing)
    if not pred.any() or not ref.any():
        raise ValueError("surface_distances needs two non-empty masks; hd95/surface_dice handle empty ones")
    pred, ref = _crop(pred, ref)
    e_pred, e_ref = edges(pred), edges(ref)
    if np.count_nonzero(e_pred) + np.count_nonzero(e_ref) < KDTREE_BELOW * pred.size:
        # few surface voxels in a large box (the usual case): nearest neighbours in a k-d tree of the voxel
        # centres in mm are faster than a distance transform of the whole box, and just as exact
        from scipy.spatial import cKDTree

        c_pred, c_ref = np.argwhere(e_pred) * spacing, np.argwhere(e_ref) * spacing
        return cKDTree(c_ref).query(c_pred)[0], cKDTree(c_pred).query(c_ref)[0]
    return (_distance_to(e_ref, spacing)[e_pred].astype(np.float64),
            _distance_to(e_pred, spacing)[e_ref].astype(np.float64))


CONVENTIONS = ("monai", "deepmind")


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing=None, tolerance: float = 1.0,
                    percentile: float = 95.0, convention: str = "monai") -> tuple[float, float]:
    """(HD at ``percentile`` in mm, surface Dice at ``tolerance`` mm) from one distance computation.

    ``convention``: "monai" (edge voxels, this module's docstring) or "deepmind" (surfels weighted by
    their area, surfels.py). The empty-mask conventions are the same for both.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"surface convention must be one of {list(CONVENTIONS)}, got {convention!r}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number of mm >= 0, got {tolerance}")
    pred, ref, spacing = prepare(pred, ref, spacing)
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not (has_p or has_r):
        return float("nan"), float("nan")
    if not (has_p and has_r):
        return diagonal(ref.shape, spacing), 0.0
    if convention == "deepmind":
        from .surfels import surfel_metrics

        return surfel_metrics(pred, ref, spacing, tolerance, percentile)
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    hd = max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile))
    nsd = (np.count_nonzero(d_pr <= tolerance) + np.count_nonzero(d_rp <= tolerance)) / (d_pr.size + d_rp.size)
    return float(hd), float(nsd)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing=None, percentile: float = 95.0,
         convention: str = "monai") -> float:
    """Robust Hausdorff distance in mm: max of the two directed ``percentile``-th percentiles (module docstring)."""
    return surface_metrics(pred, ref, spacing, 1.0, percentile, convention)[0]


def surface_dice(pred: np.ndarray, ref: np.ndarray, spacing=None, tolerance: float = 1.0,
                 convention: str = "monai") -> float:
    """Surface Dice (NSD) at ``tolerance`` mm: fraction of both surfaces within tolerance of the other."""
    return surface_metrics(pred, ref, spacing, tolerance, convention=convention)[1]

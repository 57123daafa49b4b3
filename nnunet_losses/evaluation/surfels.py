"""HD95 and surface Dice with DeepMind's surfel convention (``--surface-convention deepmind``).

This reproduces the ``surface-distance`` package (DeepMind; Nikolov et al. 2018, "Deep learning to
achieve clinically applicable segmentation of head and neck anatomy for radiotherapy", which
introduced the surface Dice), for 2D and 3D masks:

- Surface points are the *corners* of the voxel grid, not voxel centres: corner x gets the 2^d
  voxels around it as a neighbourhood code (2x2 in 2D, 2x2x2 in 3D; outside the array =
  background); a corner whose code is neither all-outside nor all-inside is a surface element.
- Each surface element has a size in mm (2D: contour length, 3D: area, "surfel area"): the
  marching-squares / marching-cubes surface through the edge midpoints of its cell. 2D: a corner
  cut gives half a cell diagonal, a straight cut one cell side, a saddle two half diagonals. 3D: the
  triangles of the classic marching cubes (Lorensen & Cline 1987), which we take from
  scikit-image's ``marching_cubes(method="lorensen")`` run on each of the 256 cells; DeepMind's table
  triangulates every cell as the one of its complement pair with at most four inside corners, and
  so do we (with exactly four, both members of the pair have the same area). Areas scale with the spacing exactly as
  DeepMind's (each triangle's area vector scaled by the products of the other two spacings).
- Distances: exact Euclidean distance in mm from each surface element to the nearest surface
  element of the other mask (SciPy's distance transform on the corner grid, float64).
- HD (``percentile``, default 95): per direction, the distances sorted (ties by area), the
  cumulative area fraction, and the first distance whose cumulative fraction reaches
  ``percentile / 100`` (a nearest-rank percentile weighted by surfel area); HD = the larger of the
  two directions. (The MONAI convention of surface.py interpolates linearly between unweighted
  voxel-centre distances, hence the small differences between tools.)
- Surface Dice at tolerance tau: (area of both surfaces within tau of the other) / (total area of
  both surfaces).

Empty masks follow surface.py (DeepMind returns inf for the HD with one empty mask; we return the
image diagonal for both conventions): both empty NaN, one empty HD = diagonal and surface Dice 0.
Axes of length 1 are dropped first, so nnU-Net's (1, X, Y) is measured with 2D contours.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
from scipy import ndimage


def _offsets(ndim: int):
    """Corner offsets of a cell in DeepMind's bit order: offset (0, ..., 0) is the highest bit."""
    return list(itertools.product((0, 1), repeat=ndim))


@lru_cache(maxsize=None)
def _triangle_area_vectors():
    """For each of the 256 2x2x2 codes: the (k, 3) area vectors (half cross products) of its triangles, unit spacing."""
    from skimage.measure import marching_cubes

    offsets = _offsets(3)
    out = []
    for code in range(256):
        cell = code if bin(code).count("1") <= 4 else 255 - code
        if cell in (0, 255):
            out.append(np.zeros((0, 3)))
            continue
        values = np.zeros((2, 2, 2))
        for i, o in enumerate(offsets):
            values[o] = (cell >> (7 - i)) & 1
        verts, faces, _, _ = marching_cubes(values, 0.5, method="lorensen", allow_degenerate=True)
        t = verts[faces].astype(np.float64)
        out.append(0.5 * np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]))
    return tuple(out)


def surfel_table(spacing) -> np.ndarray:
    """Size in mm (2D: contour length, 3D: area in mm^2) of the surface element of each neighbourhood code."""
    s = [float(v) for v in spacing]
    if len(s) == 2:
        diag = 0.5 * math.sqrt(s[0] ** 2 + s[1] ** 2)
        table = np.zeros(16)
        for code in range(1, 15):
            corners = [o for i, o in enumerate(_offsets(2)) if (code >> (3 - i)) & 1]
            if len(corners) in (1, 3):
                table[code] = diag                      # a corner cut off
            elif corners[0][0] == corners[1][0]:
                table[code] = s[1]                      # two corners of one row: a horizontal cut
            elif corners[0][1] == corners[1][1]:
                table[code] = s[0]                      # two corners of one column: a vertical cut
            else:
                table[code] = 2 * diag                  # diagonal corners (saddle): two cuts
        return table
    if len(s) == 3:
        scale = np.array([s[1] * s[2], s[0] * s[2], s[0] * s[1]])
        return np.array([float(np.linalg.norm(v * scale, axis=1).sum()) for v in _triangle_area_vectors()])
    raise ValueError(f"the DeepMind surface convention is defined for 2D and 3D masks, got {len(s)}D")


def _codes(mask: np.ndarray) -> np.ndarray:
    """Neighbourhood code of every corner of ``mask`` (already padded by one background voxel on each side)."""
    n = tuple(k - 1 for k in mask.shape)
    code = np.zeros(n, dtype=np.int32)
    bits = len(_offsets(mask.ndim)) - 1
    for i, o in enumerate(_offsets(mask.ndim)):
        code |= mask[tuple(slice(a, a + k) for a, k in zip(o, n))].astype(np.int32) << (bits - i)
    return code


def surfel_distances(pred: np.ndarray, ref: np.ndarray, spacing):
    """((distances pred -> ref, pred surfel sizes), (distances ref -> pred, ref surfel sizes)); both masks non-empty.

    ``pred`` and ``ref`` are boolean 2D or 3D arrays (length-1 axes already dropped), ``spacing`` in mm.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    table = surfel_table(spacing)
    union = pred | ref
    idx = np.argwhere(union)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    full = len(table) - 1
    out = []
    borders, codes = [], []
    for m in (pred, ref):
        c = _codes(np.pad(m[box], 1))
        codes.append(c)
        borders.append((c != 0) & (c != full))
    dist = [ndimage.distance_transform_edt(~b, sampling=spacing) for b in borders]
    for own, other in ((0, 1), (1, 0)):
        b = borders[own]
        out.append((dist[other][b].astype(np.float64), table[codes[own][b]]))
    return tuple(out)


def weighted_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    """DeepMind's area-weighted nearest-rank percentile of one direction's distances."""
    order = np.lexsort((areas, distances))
    d, a = distances[order], areas[order]
    cum = np.cumsum(a) / np.sum(a)
    i = int(np.searchsorted(cum, percentile / 100.0))
    return float(d[min(i, len(d) - 1)])


def surfel_metrics(pred: np.ndarray, ref: np.ndarray, spacing, tolerance: float = 1.0,
                   percentile: float = 95.0) -> tuple[float, float]:
    """(HD at ``percentile``, surface Dice at ``tolerance``) in DeepMind's convention; both masks non-empty."""
    (d_pr, a_p), (d_rp, a_r) = surfel_distances(pred, ref, spacing)
    hd = max(weighted_percentile(d_pr, a_p, percentile), weighted_percentile(d_rp, a_r, percentile))
    nsd = (np.sum(a_r[d_rp <= tolerance]) + np.sum(a_p[d_pr <= tolerance])) / (np.sum(a_r) + np.sum(a_p))
    return hd, float(nsd)

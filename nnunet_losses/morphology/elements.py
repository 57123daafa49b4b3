"""Box structuring elements: the arithmetic shared by the NumPy maps and the torch morphology.

Plain Python (no torch, no NumPy), used by :mod:`nnunet_losses.morphology.numpy_ops` (per case, NumPy) and
:mod:`nnunet_losses.morphology.torch_ops` (on the fly, torch), so both build exactly the same element.

* ``kernel_size`` is an int (a cube of that side) or one int per spatial axis (a box; side 1 = no
  change along that axis). Every side is a whole number >= 1.
* Composition: a box of side ``k`` applied ``n`` times equals ONE box of side ``(k - 1) * n + 1``
  (:func:`composed_side`). A box is separable, so erosion / dilation by it is one 1D running max per
  axis, whatever ``n``.
* Anchoring (SciPy's ``origin=0``): a side ``k`` spans the offsets ``-(k // 2) .. (k - 1) // 2`` around
  a voxel (symmetric for odd ``k``; for even ``k``, such as the CWCD authors' 2x2x2 element, one more
  voxel before than after). Dilation uses the reflected element. Applied ``n`` times the offsets add
  up: before / after padding ``n * (k // 2)`` / ``n * ((k - 1) // 2)`` (:func:`composed_pads`), so the
  result equals ``scipy.ndimage.binary_erosion`` / ``binary_dilation`` with ``iterations=n``.
* Anisotropic data: :func:`anisotropic_kernel` derives a per-axis element from the case spacing
  (docs/losses.md, section 3.3, "Choice (anisotropic data)").
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Tuple, Union

KernelSize = Union[int, Sequence[int]]

#: nnU-Net treats a case as anisotropic when max(spacing) / min(spacing) > 3
ANISOTROPY_THRESHOLD = 3.0


def _whole(name: str, value, low: int) -> int:
    """``value`` as an int: a whole number (not a bool) >= ``low``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        f = float(value)
        if not (math.isfinite(f) and f.is_integer()):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        v = int(f)
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return v


def check_iterations(iterations, low: int = 0) -> int:
    """Number of times the element is applied: a whole number >= ``low`` (0 leaves a mask unchanged)."""
    return _whole("iterations", iterations, low)


def per_axis(kernel_size: KernelSize, ndim: int) -> Tuple[int, ...]:
    """One side per spatial axis from an int (cube) or a sequence (box), every side a whole number >= 1."""
    if isinstance(kernel_size, numbers.Real):
        return (_whole("kernel_size", kernel_size, 1),) * ndim
    if isinstance(kernel_size, (str, bytes)) or not hasattr(kernel_size, "__iter__"):
        raise ValueError(f"kernel_size must be an int or one int per axis, got {kernel_size!r}")
    ks = tuple(_whole(f"kernel_size[{i}]", k, 1) for i, k in enumerate(kernel_size))
    if len(ks) != ndim:
        raise ValueError(f"kernel_size {ks} has {len(ks)} axes but the data has {ndim} spatial axes")
    return ks


def check_spacing(spacing: Sequence[float], ndim: Optional[int] = None) -> List[float]:
    """The voxel spacing as floats: at least one axis (``ndim`` axes if given), every entry finite and > 0."""
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise ValueError(f"spacing must be one positive number per axis, got {spacing!r}")
    values = []
    for s in spacing:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(float(s)) or float(s) <= 0:
            raise ValueError(f"spacing must be positive finite numbers, got {tuple(spacing)!r}")
        values.append(float(s))
    if not values:
        raise ValueError("spacing must have at least one axis, got an empty sequence")
    if ndim is not None and len(values) != ndim:
        raise ValueError(f"spacing {tuple(values)} has {len(values)} axes but the data has {ndim} spatial axes")
    return values


def anisotropic_kernel(spacing: Sequence[float], kernel_size: int = 3,
                       threshold: float = ANISOTROPY_THRESHOLD) -> Union[int, Tuple[int, ...]]:
    """Spacing-aware structuring element (docs/losses.md, section 3.3, "Choice (anisotropic data)").

    If ``max(spacing) / min(spacing) <= threshold`` (nnU-Net's anisotropy rule, 3) the cube
    ``kernel_size`` is kept (returned as an int). Otherwise the reach ``kernel_size - 1`` along each
    axis is scaled by ``min(spacing) / spacing[axis]`` (rounded) so the element covers about the same
    physical distance in every direction, and a tuple of sides is returned; a coarse axis gets side 1
    (no erosion across slices), like nnU-Net's in-plane treatment of anisotropic data.

    Args:
        spacing: voxel spacing per spatial axis, every entry finite and > 0.
        kernel_size: side of the cube for isotropic data, a whole number >= 1 (3).
        threshold: anisotropy ratio above which the element is scaled per axis, > 0 (3.0).
    """
    sp = check_spacing(spacing)
    k = _whole("kernel_size", kernel_size, 1)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not float(threshold) > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    if max(sp) / min(sp) <= threshold:
        return k
    reach = k - 1
    return tuple(max(0, int(round(reach * min(sp) / s))) + 1 for s in sp)


def element(ndim: int, kernel_size: KernelSize = 3, spacing: Optional[Sequence[float]] = None) -> Tuple[int, ...]:
    """Per-axis sides of the element: ``kernel_size`` as given, or, with ``spacing``, the element
    :func:`anisotropic_kernel` derives from the int ``kernel_size`` (passing a per-axis
    ``kernel_size`` together with ``spacing`` is an error)."""
    if spacing is not None:
        sp = check_spacing(spacing, ndim)
        if not isinstance(kernel_size, numbers.Real):
            raise ValueError("pass either a per-axis kernel_size or spacing (which derives one), not both")
        kernel_size = anisotropic_kernel(sp, kernel_size)
    return per_axis(kernel_size, ndim)


def composed_side(k: int, iterations: int) -> int:
    """Side of the box of side ``k`` applied ``iterations`` times: ``(k - 1) * iterations + 1``."""
    return (k - 1) * iterations + 1


def composed_pads(k: int, iterations: int, dilation: bool) -> Tuple[int, int]:
    """(before, after) reach of the box of side ``k`` applied ``iterations`` times, SciPy's anchoring:
    erosion ``(n * (k // 2), n * ((k - 1) // 2))``, dilation (reflected element) the two swapped.
    ``before + after + 1`` is :func:`composed_side`; output voxel i is the max over input voxels
    ``i - before .. i + after`` (of the array padded by ``before`` / ``after``)."""
    before, after = iterations * (k // 2), iterations * ((k - 1) // 2)
    return (after, before) if dilation else (before, after)


def composed(kernel_size: KernelSize, iterations: int, ndim: int, dilation: bool
             ) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Per-axis sides and (before, after) pads of ``kernel_size`` applied ``iterations`` times (validated)."""
    ks = per_axis(kernel_size, ndim)
    n = check_iterations(iterations)
    return [composed_side(k, n) for k in ks], [composed_pads(k, n, dilation) for k in ks]

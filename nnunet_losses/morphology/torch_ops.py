"""The torch twin of :mod:`.numpy_ops`: binary erosion/dilation by max-pooling, contours and bands, per
batch on the fly (CPU and GPU), plus the soft (differentiable) morphology of clDice.

``erode``, ``dilate``, ``inner_contour``, ``class_contours``, ``boundary_band``, ``contours_and_band`` and
``offset_band`` have the same names and give the same results as the NumPy functions of one case
(tests/library/test_maps.py); they take batched tensors (N, C, *spatial), the NumPy ones one case's arrays.

Border rules (docs/losses.md, sections 3.3 and 3.8):

* erosion treats everything outside the array as foreground, so the edge of an image or patch is
  never a contour; voxels passed as ``ignored`` are treated the same way (an unlabelled region
  does not create a contour in its neighbours);
* dilation treats the outside (and ignored voxels) as background.

The element arithmetic lives in :mod:`nnunet_losses.morphology.elements` (shared with the NumPy
:mod:`nnunet_losses.morphology.numpy_ops`): iterating a box ``iterations`` times equals one box of side
``(k - 1) * iterations + 1``, and a box is separable, so each operation is one 1D sliding max per
axis: cost independent of the number of iterations, no Python loop over voxels, classes or iterations.

``kernel_size`` is an int (cube) or one int per axis (box; 1 = no change along that axis, which
:func:`anisotropic_kernel` uses for strongly anisotropic spacing). Even sizes (the CWCD authors'
2x2x2 element) are anchored as in SciPy (``scipy.ndimage.binary_erosion``, origin 0).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .elements import ANISOTROPY_THRESHOLD, KernelSize, anisotropic_kernel, composed

__all__ = ["ANISOTROPY_THRESHOLD", "KernelSize", "anisotropic_kernel", "erode", "dilate", "inner_contour",
           "class_contours", "boundary_band", "contours_and_band", "offset_band",
           "offset_band_bits", "soft_erode", "soft_dilate",
           "soft_open", "soft_skeleton"]


def _sliding_max(x: torch.Tensor, dim: int, side: int) -> torch.Tensor:
    """Max over every window of ``side`` consecutive entries along ``dim`` (length shrinks by side - 1).

    Doubling: after j steps entry i holds the max of ``2^j`` entries from i; two overlapping windows
    of the largest power of two p <= side then cover any window of ``side`` (max is idempotent).
    log2(side) + 1 elementwise maxima instead of ``side`` comparisons per output (max-pooling),
    exact, and fast on CPU and GPU.
    """
    return _sliding_reduce(x, dim, side, torch.maximum)


def _sliding_reduce(x: torch.Tensor, dim: int, side: int, op) -> torch.Tensor:
    """The doubling window reduction of :func:`_sliding_max` for any idempotent elementwise ``op``."""
    out_len = x.shape[dim] - side + 1
    p = 1
    while 2 * p <= side:
        n = x.shape[dim] - p
        x = op(x.narrow(dim, 0, n), x.narrow(dim, p, n))
        p *= 2
    if p == side:
        return x.narrow(dim, 0, out_len)
    return op(x.narrow(dim, 0, out_len), x.narrow(dim, side - p, out_len))


def _box_pool(x: torch.Tensor, sides: Sequence[int], pads: Sequence[Tuple[int, int]], pad_value: float) -> torch.Tensor:
    """Max over a box: separable 1D sliding maxima, padding with ``pad_value`` outside the array."""
    nd = x.ndim - 2
    for axis in range(nd):
        side = sides[axis]
        if side <= 1:
            continue
        lo, hi = pads[axis]
        pad = [0, 0] * nd
        # F.pad lists pads from the last axis backwards
        pad[2 * (nd - 1 - axis)] = lo
        pad[2 * (nd - 1 - axis) + 1] = hi
        x = _sliding_max(F.pad(x, pad, value=pad_value), 2 + axis, side)
    return x


def _as_float(mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype in (torch.float32, torch.float64) or (mask.is_cuda and mask.dtype in (torch.float16, torch.bfloat16)):
        return mask
    return mask.view(torch.uint8).float() if mask.dtype == torch.bool else mask.float()  # via uint8: faster


def erode(mask: torch.Tensor, kernel_size: KernelSize = 3, iterations: int = 1,
          ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary erosion of ``mask`` (N, C, *sp) by a box, ``iterations`` times; outside = foreground.

    ``ignored`` (N, 1 or C, *sp) voxels also count as foreground. Returns a bool tensor.
    """
    x = _as_float(mask)
    if ignored is not None:
        x = torch.maximum(x, ignored.to(x.dtype))
    sides, pads = composed(kernel_size, iterations, x.ndim - 2, dilation=False)
    # erosion = NOT dilation of NOT: min-pool with outside = 1  <=>  max-pool of (1 - x) with outside = 0
    return _box_pool(1.0 - x, sides, pads, 0.0) < 0.5


def dilate(mask: torch.Tensor, kernel_size: KernelSize = 3, iterations: int = 1,
           ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary dilation of ``mask`` (N, C, *sp) by a box, ``iterations`` times; outside = background."""
    x = _as_float(mask)
    if ignored is not None:
        x = x * (~ignored.bool()).to(x.dtype)
    sides, pads = composed(kernel_size, iterations, x.ndim - 2, dilation=True)
    return _box_pool(x, sides, pads, 0.0) > 0.5


def inner_contour(mask: torch.Tensor, kernel_size: KernelSize = 3, iterations: int = 1,
                  ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``mask AND NOT erode(mask)`` (docs/losses.md, section 3.3): the inner rim of each object, bool."""
    m = mask.bool()
    return m & ~erode(m, kernel_size, iterations, ignored)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, 1, *sp) integer labels -> (B, C, *sp) float one-hot."""
    oh = torch.zeros((labels.shape[0], num_classes, *labels.shape[2:]), dtype=torch.float32, device=labels.device)
    return oh.scatter_(1, labels.long().clamp(0, num_classes - 1), 1.0)


def _binary_channels(target: torch.Tensor, num_classes: Optional[int], sigmoid: bool,
                     ignored: Optional[torch.Tensor]) -> torch.Tensor:
    if sigmoid:
        g = target.float()
    else:
        if num_classes is None:
            raise ValueError("num_classes is needed to build class masks from a label map")
        g = _one_hot(target, num_classes)
    if ignored is not None:
        g = g * (~ignored.bool()).float()
    return g


def _label_window_range(labels: torch.Tensor, num_classes: int, kernel_size: KernelSize, iterations: int,
                        ignored: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(largest, minus smallest) counted label in the erosion window of every voxel, float (B, 1, *sp) each.

    Ignored voxels and the outside of the array hold no label (as in :func:`erode`); a window without
    any label gives ``-(num_classes + 1)`` for both. One max-pool of a 2-channel tensor (labels and
    negated labels) instead of one channel per class.
    """
    lab = labels.long().clamp(0, num_classes - 1).to(torch.float32)
    both = torch.cat([lab, -lab], 1)
    none = -float(num_classes + 1)  # below every label and every negated label
    if ignored is not None:
        both = both.masked_fill(ignored.bool(), none)
    sides, pads = composed(kernel_size, iterations, lab.ndim - 2, dilation=False)
    pooled = _box_pool(both, sides, pads, none)
    return pooled[:, :1], pooled[:, 1:]


def _label_window_band(labels: torch.Tensor, num_classes: int, kernel_size: KernelSize, iterations: int,
                       ignored: Optional[torch.Tensor], at_ignored: bool = False) -> torch.Tensor:
    """Voxels whose erosion window holds two different counted labels, bool (B, 1, *sp); False where
    ignored unless ``at_ignored``.

    For a label map this is exactly the union over classes of the inner contours (softmax mode): a
    counted voxel of class c is on the inner contour of c iff its window (the element of
    :func:`erode`) holds a counted voxel of another class, i.e. iff window max > window min.
    """
    hi, minus_lo = _label_window_range(labels, num_classes, kernel_size, iterations, ignored)
    band = (hi + minus_lo) > 0  # max label - min label > 0 (no label: -2C - 2 < 0)
    if ignored is not None and not at_ignored:
        band &= ~ignored.bool()
    return band


def _fg_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Bool (B, C-1, *sp): label == c for the foreground classes c = 1..C-1 (labels clamped as one-hot does)."""
    classes = torch.arange(1, num_classes, device=labels.device).view(1, -1, *([1] * (labels.ndim - 2)))
    return labels.long().clamp(0, num_classes - 1) == classes


@torch.no_grad()
def contours_and_band(target: torch.Tensor, num_classes: Optional[int] = None, sigmoid: bool = False,
                      kernel_size: KernelSize = 3, iterations: int = 6,
                      ignored: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(class_contours(...), boundary_band(...))`` with the shared work done once (CWCD needs both)."""
    if sigmoid:
        return (class_contours(target, num_classes, True, kernel_size, iterations, ignored),
                boundary_band(target, num_classes, True, kernel_size, iterations, ignored))
    if num_classes is None:
        raise ValueError("num_classes is needed to build class masks from a label map")
    band = _label_window_band(target, num_classes, kernel_size, iterations, ignored)
    return _fg_classes(target, num_classes) & band, band


@torch.no_grad()
def class_contours(target: torch.Tensor, num_classes: Optional[int] = None, sigmoid: bool = False,
                   kernel_size: KernelSize = 3, iterations: int = 6,
                   ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Inner contours of every foreground class (docs/losses.md, section 3.3), bool (B, C_fg, *sp).

    softmax mode: ``target`` (B, 1, *sp) labels, classes 1..num_classes-1;
    sigmoid mode: ``target`` (B, C, *sp) binary regions, every region.
    """
    if not sigmoid:
        return contours_and_band(target, num_classes, False, kernel_size, iterations, ignored)[0]
    g = _binary_channels(target, num_classes, sigmoid, ignored)
    return inner_contour(g, kernel_size, iterations, ignored)


@torch.no_grad()
def boundary_band(target: torch.Tensor, num_classes: Optional[int] = None, sigmoid: bool = False,
                  kernel_size: KernelSize = 3, iterations: int = 6,
                  ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Union of the inner contours of every class incl. background (docs/losses.md, section 3.3), bool (B, 1, *sp).

    sigmoid mode: of every region and of its complement. These are the voxels on both sides of
    every boundary (the CWCE weight band).
    """
    if not sigmoid:
        if num_classes is None:
            raise ValueError("num_classes is needed to build class masks from a label map")
        return _label_window_band(target, num_classes, kernel_size, iterations, ignored)
    g = _binary_channels(target, num_classes, sigmoid, ignored)
    counted = torch.ones_like(g) if ignored is None else (~ignored.bool()).float().expand_as(g)
    g = torch.cat([g, counted - g], 1)
    return inner_contour(g, kernel_size, iterations, ignored).any(1, keepdim=True)


@torch.no_grad()
def offset_band(target: torch.Tensor, num_classes: Optional[int] = None, sigmoid: bool = False, band: int = 3,
                ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Offset-curves band of every foreground class (docs/losses.md, section 3.8), bool (B, C_fg, *sp):
    ``dilate(g_c, cube3, band) AND NOT erode(g_c, cube3, band)``.

    softmax mode: with the symmetric cube, ``NOT erode(g_c)`` may be replaced by "the window holds
    two different counted labels" wherever ``dilate(g_c)`` holds (if the window's only label were
    c, the voxel would be eroded; if it were another, c would not be in the window), so the
    erosion runs once on the label map (window max and min) instead of once per class; and the
    largest class is in the window iff the window max is that class, so it needs no dilation either.
    """
    if sigmoid:
        g = _binary_channels(target, num_classes, sigmoid, ignored)
        return dilate(g, 3, band, ignored) & ~erode(g, 3, band, ignored)
    if num_classes is None:
        raise ValueError("num_classes is needed to build class masks from a label map")
    hi, minus_lo = _label_window_range(target, num_classes, 3, band, ignored)
    mixed = (hi + minus_lo) > 0
    # the largest class is in the window iff the window's largest label is that class: no dilation for it
    # (binary segmentation: no dilation at all)
    top = hi == float(num_classes - 1)
    if num_classes == 2:
        return top & mixed
    present = dilate(_fg_classes(target, num_classes)[:, :-1], 3, band, ignored)
    return torch.cat([present, top], 1) & mixed


def _sliding_or(x: torch.Tensor, dim: int, side: int) -> torch.Tensor:
    """Bitwise OR over every window of ``side`` consecutive entries along ``dim`` (integer ``x``); the
    doubling of :func:`_sliding_max` (OR is idempotent too)."""
    return _sliding_reduce(x, dim, side, torch.bitwise_or)


#: most classes :func:`offset_band_bits` handles (one bit per class in an int64, sign bit unused)
_MAX_BIT_CLASSES = 63


@torch.no_grad()
def offset_band_bits(labels: torch.Tensor, num_classes: int, band: int = 3,
                     ignored: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`offset_band` in softmax mode (same values), with one window pass for all classes.

    Every counted voxel holds the bit ``1 << label``; the bitwise OR over the voxel's window (the
    cube3 element iterated ``band`` times; outside and ignored voxels hold no bit) is the set S of
    labels in the window. ``dilate(g_c)`` is ``c in S``; the window is the erosion window as well
    (odd, symmetric element), so ``NOT erode(g_c)`` where ``dilate(g_c)`` holds is "S has two labels".
    Hence ``B_c = c in S AND |S| >= 2``. One integer channel through the separable pool instead of
    a float channel per class. ``num_classes`` <= 63; bool (B, C-1, *sp).
    """
    if num_classes > _MAX_BIT_CLASSES:
        return offset_band(labels, num_classes, False, band, ignored)
    dtype = torch.int32 if num_classes <= 31 else torch.int64
    lab = labels.long().clamp(0, num_classes - 1).to(dtype)
    bits = torch.bitwise_left_shift(torch.ones((), dtype=dtype, device=labels.device), lab)
    if ignored is not None:
        bits = bits.masked_fill(ignored.bool(), 0)
    nd = bits.ndim - 2
    sides, pads = composed(3, band, nd, dilation=True)
    for axis in range(nd):
        lo, hi = pads[axis]
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = lo
        pad[2 * (nd - 1 - axis) + 1] = hi
        bits = _sliding_or(F.pad(bits, pad, value=0), 2 + axis, sides[axis])
    mixed = torch.bitwise_and(bits, bits - 1) != 0  # two labels or more in the window
    s = bits * mixed.to(dtype)
    fg = torch.bitwise_left_shift(torch.ones((), dtype=dtype, device=labels.device),
                                  torch.arange(1, num_classes, device=labels.device, dtype=dtype))
    return torch.bitwise_and(s, fg.view(1, -1, *([1] * nd))) != 0


# ----------------------------------------------------------------------------- soft (differentiable) morphology
# Shit et al., "clDice", CVPR 2021 (docs/losses.md, section 3.10): grey-value erosion / dilation of
# probabilities by min / max pooling, the same border rules as above (the outside counts as
# foreground for the erosion, as background for the dilation).
#
# Two implementations with the same values: PyTorch's pooling (the authors' code; used on GPUs and
# inside torch.compile, which fuse it) and, on the CPU in eager mode, :class:`_NeighbourExtremum`:
# elementwise minima / maxima of shifted views with the backward written out, about 5x faster there
# than ``max_pool*_with_indices`` (docs/benchmarks.md). Both send the gradient of each output to one
# input holding the extremum; where several inputs tie they may pick different ones.


class _NeighbourExtremum(torch.autograd.Function):
    """``out = min`` (or ``max``) of each entry and its neighbours at +-1 along the given axes (none
    outside the array). Backward: each output's gradient goes to the centre if it holds the extremum,
    else to the first neighbour (in the given order) that does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, neighbours: Tuple[Tuple[int, int], ...], take_max: bool) -> torch.Tensor:
        op = torch.maximum if take_max else torch.minimum
        out = x.clone()
        for dim, shift in neighbours:
            n = x.shape[dim] - 1
            here = out.narrow(dim, 0 if shift > 0 else 1, n)
            op(here, x.narrow(dim, 1 if shift > 0 else 0, n), out=here)
        ctx.neighbours, ctx.take_max = neighbours, take_max
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, out = ctx.saved_tensors
        # "holds the extremum" = exactly equal to the output (min / max return one of their inputs), written
        # as 0/1 floats into one scratch tensor; in-place arithmetic (fresh tensors and bool masks cost
        # several times more on CPU)
        step = torch.empty_like(x)
        grad_x = torch.mul(torch.eq(x, out, out=step), grad)
        rest = torch.sub(grad, grad_x)  # the part of each output's gradient not yet sent to an input
        last = len(ctx.neighbours) - 1
        for i, (dim, shift) in enumerate(ctx.neighbours):
            n = x.shape[dim] - 1
            at, src = (0, 1) if shift > 0 else (1, 0)  # output entries that have this neighbour; the neighbour
            r = rest.narrow(dim, at, n)
            if i == last:  # nothing else is left to hold the extremum
                grad_x.narrow(dim, src, n).add_(r)
                break
            share = torch.eq(x.narrow(dim, src, n), out.narrow(dim, at, n), out=step.narrow(dim, at, n)).mul_(r)
            r.sub_(share)
            grad_x.narrow(dim, src, n).add_(share)
        return grad_x, None, None


def _stencil_path(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    try:
        return not torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover - very old torch
        return True


def _soft_nd(x: torch.Tensor, what: str) -> int:
    nd = x.ndim - 2
    if nd not in (2, 3):
        raise ValueError(f"{what} needs (N, C, X, Y) or (N, C, X, Y, Z), got {tuple(x.shape)}")
    return nd


def soft_erode(x: torch.Tensor) -> torch.Tensor:
    """Min over the cross (connectivity-1) element: the minimum of 3-long min-pools along each axis."""
    nd = _soft_nd(x, "soft_erode")
    if _stencil_path(x):
        return _NeighbourExtremum.apply(x, tuple((2 + a, s) for a in range(nd) for s in (1, -1)), False)
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    out = None
    for axis in range(nd):
        k = [1] * nd
        k[axis] = 3
        pad = [0] * nd
        pad[axis] = 1
        e = -pool(-x, tuple(k), 1, tuple(pad))
        out = e if out is None else torch.minimum(out, e)
    return out


def soft_dilate(x: torch.Tensor) -> torch.Tensor:
    """Max over the 3x3(x3) box (separable: one 3-long max per axis)."""
    nd = _soft_nd(x, "soft_dilate")
    if _stencil_path(x):
        for axis in range(nd):
            x = _NeighbourExtremum.apply(x, ((2 + axis, 1), (2 + axis, -1)), True)
        return x
    return (F.max_pool2d if nd == 2 else F.max_pool3d)(x, 3, 1, 1)


def soft_open(x: torch.Tensor) -> torch.Tensor:
    """Soft opening: ``soft_dilate(soft_erode(x))``."""
    return soft_dilate(soft_erode(x))


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft skeleton of probabilities ``x`` (N, C, *sp) (the clDice authors' ``soft_skel``)::

        S = relu(x - open(x));  repeat iterations times: x = erode(x); D = relu(x - open(x)); S = S + relu(D - S D)

    Differentiable, no loop over voxels or channels (a loop over the iterations only). The erosion
    inside each opening is the next round's eroded ``x``: it is computed once (``iterations + 1``
    erosions instead of ``2 iterations + 1``; the same values as the authors' code).
    """
    eroded = soft_erode(x)
    skel = F.relu(x - soft_dilate(eroded))
    for _ in range(int(iterations)):
        x = eroded
        eroded = soft_erode(x)
        delta = F.relu(x - soft_dilate(eroded))
        skel = skel + F.relu(delta - skel * delta)
    return skel

"""The NumPy twin of :mod:`.torch_ops`: weight maps for one case (no torch): contours, bands and the U-Net
weight map.

These are the reference (CPU, per case) versions used by ``nnunet_losses_precompute``; the torch
versions for the GPU (on-the-fly mode) live in :mod:`nnunet_losses.morphology.torch_ops` under the same
names and give the same result bit for bit (tests/library/test_maps.py). Every function takes one label array of any dimension
(spatial axes only, no channel axis) holding integer labels.

Morphology (docs/losses.md, sections 3.3 and 3.8)
    ``erode`` treats everything outside the array as foreground (the edge of an image or patch is
    never a contour), ``dilate`` treats it as background. The element arithmetic is shared with the
    torch version in :mod:`nnunet_losses.morphology.elements`: a box of side ``k`` applied ``iterations`` times
    equals one box of side ``(k - 1) * iterations + 1``, and a box is separable, so each operation is
    one 1D running max per axis (log2(side) + 1 vectorised maxima), whatever the number of
    iterations; even sides (the CWCD authors' 2x2x2 element) are anchored as in
    ``scipy.ndimage.binary_erosion`` (origin 0). Label maps take no per-class erosion at all: one
    running OR of per-voxel label bits gives the labels in every window, hence the contours, the
    boundary band and the offset band of every class at once (:class:`_Window`). ``kernel_size``
    may be one int per axis; pass ``spacing`` to use the spacing-aware element of
    :func:`anisotropic_kernel` (cube unless max/min spacing > 3, nnU-Net's anisotropy threshold).

Ignore label
    Voxels equal to ``ignore_label`` are unlabelled: they belong to no class and no object. For
    erosion they count as foreground (like the outside of the array), so the border of an
    unlabelled region never makes a contour in its neighbours; for dilation they count as
    background. Contours and the boundary band are 0 on them; the U-Net weight map is 0 on them
    (they count in no loss term).

Regions (nnU-Net region training, sigmoid mode)
    Pass ``regions`` (a list of label tuples, as nnU-Net's ``foreground_regions``): channel r is
    ``isin(label, regions[r])``; the boundary band then unites the inner contours of every region
    and of its complement.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import elements
from .channels import count_classes, ignored_mask, int_labels, label_channels
from .elements import KernelSize

#: the spacing-aware element and nnU-Net's anisotropy threshold, defined once in :mod:`nnunet_losses.morphology.elements`
anisotropic_kernel = elements.anisotropic_kernel
ANISOTROPY_THRESHOLD = elements.ANISOTROPY_THRESHOLD

#: border terms smaller than ``w0 * BORDER_TERM_CUTOFF`` are dropped (far from any object pair)
BORDER_TERM_CUTOFF = 1e-8


# ----------------------------------------------------------------------------- box erosion / dilation
def _sliding_max(x: np.ndarray, axis: int, side: int, op=np.maximum) -> np.ndarray:
    """Max over every window of ``side`` consecutive entries along ``axis`` (the axis shrinks by side - 1).

    Doubling: after j steps entry i holds the max of ``2^j`` entries from i; two overlapping windows
    of the largest power of two p <= side then cover any window of ``side`` (max is idempotent):
    log2(side) + 1 vectorised maxima, exact (same scheme as :mod:`nnunet_losses.morphology.torch_ops`). ``op``
    may be any idempotent ufunc (``np.bitwise_or``: the union of label bits).
    """
    def part(start: int, n: int):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(start, start + n)
        return tuple(sl)

    out_len = x.shape[axis] - side + 1
    p = 1
    while 2 * p <= side:
        n = x.shape[axis] - p
        x = op(x[part(0, n)], x[part(p, n)])
        p *= 2
    if p == side:
        return x[part(0, out_len)]
    return op(x[part(0, out_len)], x[part(side - p, out_len)])


def _box_max(x: np.ndarray, ks: Sequence[int], iterations: int, reflected: bool, axes_offset: int = 0,
             op=np.maximum) -> np.ndarray:
    """Max (or ``op``) of unsigned ``x`` over the box ``ks`` applied ``iterations`` times, outside = 0.

    Sides and anchoring as :func:`nnunet_losses.morphology.elements.composed_pads` (SciPy's origin 0); dilation
    uses the reflected element. Spatial axes start at ``axes_offset`` (leading channel axes).
    """
    for a, k in enumerate(ks):
        if k <= 1 or iterations == 0:
            continue
        axis = a + axes_offset
        lo, hi = elements.composed_pads(k, iterations, dilation=reflected)
        n = x.shape[axis]
        shape = list(x.shape)
        shape[axis] = n + lo + hi
        xp = np.zeros(shape, x.dtype)
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(lo, lo + n)
        xp[tuple(sl)] = x
        # output i must be the max of xp[i : i + lo + hi + 1]
        x = _sliding_max(xp, axis, lo + hi + 1, op)
    return x


def _check_iterations(iterations) -> int:
    return elements.check_iterations(iterations, 0)


def erode(mask: np.ndarray, kernel_size: KernelSize = 3, iterations: int = 1, spacing=None,
          ignored: Optional[np.ndarray] = None, channel_axis: bool = False) -> np.ndarray:
    """Binary erosion by a box, ``iterations`` times; outside the array (and ``ignored``) = foreground.

    Equals ``scipy.ndimage.binary_erosion(mask | ignored, np.ones(kernel), iterations, border_value=1)``.
    With ``channel_axis`` the first axis of ``mask`` holds independent channels.
    """
    m = np.asarray(mask, dtype=bool)
    if ignored is not None:
        m = m | np.asarray(ignored, dtype=bool)
    nd = m.ndim - int(channel_axis)
    ks = elements.element(nd, kernel_size, spacing)
    inv = (~m).view(np.uint8)
    return _box_max(inv, ks, _check_iterations(iterations), False, int(channel_axis)) == 0


def dilate(mask: np.ndarray, kernel_size: KernelSize = 3, iterations: int = 1, spacing=None,
           ignored: Optional[np.ndarray] = None, channel_axis: bool = False) -> np.ndarray:
    """Binary dilation by a box, ``iterations`` times; outside the array (and ``ignored``) = background."""
    m = np.asarray(mask, dtype=bool)
    if ignored is not None:
        m = m & ~np.asarray(ignored, dtype=bool)
    nd = m.ndim - int(channel_axis)
    ks = elements.element(nd, kernel_size, spacing)
    return _box_max(m.view(np.uint8), ks, _check_iterations(iterations), True, int(channel_axis)) > 0


def inner_contour(mask: np.ndarray, kernel_size: KernelSize = 3, iterations: int = 6, spacing=None,
                  ignored: Optional[np.ndarray] = None, channel_axis: bool = False) -> np.ndarray:
    """Inner contour ``m AND NOT erode(m, box kernel_size, iterations)`` (Huang et al., ICIP 2024, CWCD).

    The erosion treats the outside of the array and ``ignored`` voxels as foreground (docs/losses.md,
    section 3.3).
    Defaults follow the paper's text (3x3(x3) element, 6 iterations); the authors' code uses a
    2x2x2 element and one iteration (``kernel_size=2, iterations=1``).
    """
    m = np.asarray(mask, dtype=bool)
    if ignored is not None:
        m = m & ~np.asarray(ignored, dtype=bool)
    return m & ~erode(m, kernel_size, iterations, spacing, ignored, channel_axis)


class _Window:
    """Which counted labels each voxel's window holds, for all classes at once.

    A label map needs no per-class erosion: a counted voxel of class c is on the inner contour of c
    iff its erosion window (the element of :func:`erode`) holds a counted voxel of another label
    (``mixed``); ignored voxels and the outside of the array hold no label, exactly as they count as
    foreground for :func:`erode`. Up to 64 distinct label values (``lo`` .. ``hi``): label l is bit
    ``l - lo`` of one unsigned integer per voxel and one separable running OR over the window gives
    the set of labels in it (mixed = two or more bits; class c present = its bit). Wider label
    ranges: one running max of a 2-channel array (labels and reversed labels) gives the window's
    largest and smallest label (mixed = they differ). Cost independent of classes and iterations.
    """

    def __init__(self, label: np.ndarray, ks: Sequence[int], iterations: int, ign: Optional[np.ndarray]):
        counted = label if ign is None else label[~ign]
        self.lo = int(counted.min()) if counted.size else 0
        self.hi = int(counted.max()) if counted.size else -1
        self.span = self.hi - self.lo
        shift = np.subtract(label, self.lo, dtype=np.int64) if self.lo or label.dtype.kind not in "iu" \
            or label.dtype.itemsize > 8 else label
        if self.span < 64:
            dt = next(t for t, bits in ((np.uint8, 8), (np.uint16, 16), (np.uint32, 32), (np.uint64, 64))
                      if self.span < bits)
            v = np.left_shift(dt(1), shift, dtype=dt, casting="unsafe") if counted.size else np.zeros(label.shape, dt)
            if ign is not None:
                v[ign] = 0
            self.bits = _box_max(v, ks, iterations, False, 0, np.bitwise_or)
            self.dtype = dt
        else:
            self.bits = None
            dt = np.uint16 if self.span < 65534 else np.uint64
            v = np.empty((2, *label.shape), dt)
            np.add(shift, 1, out=v[0], casting="unsafe")                  # counted labels -> 1 .. span + 1
            np.subtract(self.span + 1, shift, out=v[1], casting="unsafe")  # reversed: hi -> 1, lo -> span + 1
            if ign is not None:
                v[:, ign] = 0
            self.top, self.bottom = _box_max(v, ks, iterations, False, 1)

    def mixed(self) -> np.ndarray:
        """The window holds two different counted labels."""
        if self.bits is not None:
            return (self.bits & (self.bits - self.dtype(1))) != 0  # more than one bit set (0 - 1 wraps: 0 & max)
        return self.top.astype(np.int64) + self.bottom > self.span + 2  # max > min (no label: 0 + 0)

    def has(self, c: int) -> np.ndarray:
        """The window holds a counted voxel of label ``c``."""
        if not self.lo <= c <= self.hi:
            return np.zeros(self.bits.shape if self.bits is not None else self.top.shape, bool)
        if self.bits is not None:
            return (self.bits & self.dtype(1 << (c - self.lo))) != 0
        if c == self.hi:
            return self.top == self.span + 1
        if c == self.lo:
            return self.bottom == self.span + 1
        raise NotImplementedError("label range over 64: only the smallest and largest label")


def contours_and_band(label: np.ndarray, num_classes: Optional[int] = None, regions=None,
                      kernel_size: KernelSize = 3, iterations: int = 6, spacing=None,
                      ignore_label: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(class_contours(...), boundary_band(...))`` with the shared work done once (CWCD needs both).

    Label maps (no ``regions``): one window max/min of the label map (:class:`_Window`) gives the
    boundary band of every class at once, and class c's contour is the band restricted to class c.
    Regions may overlap, so they take the per-channel erosion.
    """
    label = int_labels(label)
    if regions is not None:
        return (class_contours(label, num_classes, regions, kernel_size, iterations, spacing, ignore_label),
                boundary_band(label, num_classes, regions, kernel_size, iterations, spacing, ignore_label))
    num_classes = count_classes(label, num_classes, ignore_label)
    ign = ignored_mask(label, ignore_label)
    win = _Window(label, elements.element(label.ndim, kernel_size, spacing), _check_iterations(iterations), ign)
    band = win.mixed()
    if ign is not None:
        band &= ~ign
    classes = np.arange(1, num_classes).reshape((-1,) + (1,) * label.ndim)
    contours = (label[None] == classes) & band
    if win.lo < 0 or win.hi >= num_classes:   # labels of no class: on no class's contour, in no channel
        band &= (label >= 0) & (label < num_classes)
    return contours, band


def class_contours(label: np.ndarray, num_classes: Optional[int] = None, regions=None, kernel_size: KernelSize = 3,
                   iterations: int = 6, spacing=None, ignore_label: Optional[int] = None) -> np.ndarray:
    """Inner contour of every foreground class, bool (C_fg, *sp): CWCD's contour map K for SDL
    (docs/losses.md, section 3.3).

    ``K_c = g_c AND NOT erode(g_c, box kernel_size, iterations)`` for classes 1..num_classes-1
    (``num_classes`` None: max label + 1), or for every region if ``regions`` is given.
    """
    if regions is None:
        return contours_and_band(label, num_classes, None, kernel_size, iterations, spacing, ignore_label)[0]
    label = int_labels(label)
    ign = ignored_mask(label, ignore_label)
    g = label_channels(label, num_classes, regions, ignore_label, with_background=False)
    return inner_contour(g, kernel_size, iterations, spacing, None if ign is None else ign[None], True)


def boundary_band(label: np.ndarray, num_classes: Optional[int] = None, regions=None, kernel_size: KernelSize = 3,
                  iterations: int = 6, spacing=None, ignore_label: Optional[int] = None) -> np.ndarray:
    """Boundary band for CWCE (docs/losses.md, section 3.3), bool (*sp): the union of the inner
    contours of every class including background (regions: of every region and of its complement),
    i.e. the voxels on both sides of every boundary, as the weight band of Huang et al.'s code."""
    if regions is None:
        return contours_and_band(label, num_classes, None, kernel_size, iterations, spacing, ignore_label)[1]
    label = int_labels(label)
    ign = ignored_mask(label, ignore_label)
    g = label_channels(label, num_classes, regions, ignore_label, with_background=True)
    return inner_contour(g, kernel_size, iterations, spacing, None if ign is None else ign[None], True).any(0)


def offset_band(label: np.ndarray, num_classes: Optional[int] = None, regions=None, band: int = 3,
                kernel_size: KernelSize = 3, ignore_label: Optional[int] = None) -> np.ndarray:
    """Offset-curves band of every foreground class (docs/losses.md, section 3.8; a reconstruction of
    Le et al., ICPR 2020), bool (C_fg, *sp): ``B_c = dilate(g_c, cube3, band) AND NOT erode(g_c,
    cube3, band)``, the voxels within ``band`` offset curves on either side of the boundary.

    ``kernel_size`` per axis (e.g. ``(1, 3, 3)``) serves nnU-Net 2d configurations of 3D data
    (slice by slice); the default is the cube of side 3. Like the torch version, ignored voxels are not
    zeroed here (the loss masks them).

    Label maps with an odd (symmetric) element: where class c is in the window (``dilate``), ``NOT
    erode`` holds iff the window also holds another counted label, i.e. iff it is ``mixed``; both
    come from one :class:`_Window` of the label map, for every class at once.
    """
    label = int_labels(label)
    ign = ignored_mask(label, ignore_label)
    band = _check_iterations(band)
    ks = elements.per_axis(kernel_size, label.ndim)
    if regions is None and all(k % 2 for k in ks):
        num_classes = count_classes(label, num_classes, ignore_label)
        win = _Window(label, ks, band, ign)
        mixed = win.mixed()
        out = np.zeros((num_classes - 1, *label.shape), bool)
        middle = []
        for c in range(max(1, win.lo), min(num_classes - 1, win.hi) + 1):  # classes outside lo..hi are absent
            if win.bits is not None or c in (win.lo, win.hi):
                np.logical_and(win.has(c), mixed, out=out[c - 1])
            else:
                middle.append(c)
        if middle:  # label range over 64: the classes between the smallest and largest label are dilated
            g = label[None] == np.asarray(middle).reshape((-1,) + (1,) * label.ndim)
            out[np.asarray(middle) - 1] = dilate(g, ks, band, None, None if ign is None else ign[None], True) & mixed
        return out
    g = label_channels(label, num_classes, regions, ignore_label, with_background=False)
    ign = None if ign is None else ign[None]
    return dilate(g, kernel_size, band, None, ign, True) & ~erode(g, kernel_size, band, None, ign, True)


# ----------------------------------------------------------------------------- U-Net weight map
def _components(objects: np.ndarray) -> Tuple[np.ndarray, int]:
    """Connected components of each label of ``objects`` (0 = none), full connectivity, any dimension.

    Different labels never join (cc3d's multi-label mode)."""
    nd = objects.ndim
    if nd in (2, 3):
        import cc3d
        lab, n = cc3d.connected_components(np.ascontiguousarray(objects), connectivity=8 if nd == 2 else 26,
                                           return_N=True)
        return lab, int(n)
    # 1D or > 3D: SciPy, one label at a time (no cc3d kernel for these dimensions)
    lab = np.zeros(objects.shape, np.int64)
    n = 0
    struct = ndimage.generate_binary_structure(nd, nd)
    for v in np.unique(objects[objects != 0]):
        lv, nv = ndimage.label(objects == v, struct)
        lab[lv > 0] = lv[lv > 0] + n
        n += nv
    return lab, n


def _edt(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance of every nonzero voxel of ``mask`` to the nearest zero voxel (edt, SciPy beyond 3D)."""
    if mask.ndim <= 3:
        import edt
        aniso = float(spacing[0]) if mask.ndim == 1 else tuple(float(s) for s in spacing)
        mask = np.ascontiguousarray(mask)
        if mask.dtype == np.bool_:
            mask = mask.view(np.uint8)  # edt's bool path is about 3x slower than uint8 (edt 3.1)
        return edt.edt(mask, anisotropy=aniso, black_border=False, parallel=1)
    return ndimage.distance_transform_edt(mask, sampling=spacing)


def _two_nearest(comp: np.ndarray, n: int, spacing: Sequence[float], reach: float) -> Tuple[np.ndarray, np.ndarray]:
    """d1, d2: distance of every voxel to its nearest and second-nearest component (inf beyond ``reach``).

    One edt per component, restricted to its bounding box grown by ``reach`` (a voxel farther than
    ``reach`` from a component cannot have it as a relevant neighbour), and the two smallest values
    are kept incrementally: ``d2 = min(d2, max(d1, d)); d1 = min(d1, d)``.
    """
    d1 = np.full(comp.shape, np.inf, np.float32)
    d2 = np.full(comp.shape, np.inf, np.float32)
    grow = [int(math.ceil(reach / s)) for s in spacing]
    boxes = [None] + ndimage.find_objects(comp)  # one pass, cheaper than cc3d.statistics (no centroids)
    for k in range(1, n + 1):
        box = tuple(slice(max(0, b.start - g), min(sz, b.stop + g)) for b, g, sz in zip(boxes[k], grow, comp.shape))
        d = _edt(comp[box] != k, spacing)
        a1, a2 = d1[box], d2[box]
        np.minimum(a2, np.maximum(a1, d), out=a2)
        np.minimum(a1, d, out=a1)
    return d1, d2


def unet_weight_map(label: np.ndarray, w0: float = 10.0, sigma: float = 5.0, spacing=None,
                    ignore_label: Optional[int] = None, per_slice: bool = False) -> np.ndarray:
    """U-Net weight map (Ronneberger et al., MICCAI 2015, eq. 2; docs/losses.md, section 3.7), float32,
    shape of ``label``:

        W(x) = w_class(y(x)) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))     (border term: y(x) = 0 only)

    * ``w_class(c) = N / (n_present * n_c)``: inverse class frequency of the case, normalised so the
      mean of ``w_class`` over the (counted) voxels of the case is 1;
    * objects: the connected components (full connectivity: 8 in 2D, 26 in 3D) of each foreground
      label (touching objects of different labels stay separate); d1, d2: Euclidean distance to the
      nearest and second-nearest object, in voxels, or in the units of ``spacing`` if given (then
      ``sigma`` is in those units too); fewer than two objects: no border term;
    * ``ignore_label`` voxels count nowhere: not in the class frequencies, not as objects, and their
      weight is 0;
    * ``per_slice``: axis 0 is a stack of independent 2D images (nnU-Net's 2d configuration of 3D
      data): objects and distances per slice, class frequencies over the whole case.

    Border terms below ``w0 * 1e-8`` are dropped, which lets every component's distance transform
    run on its bounding box only. Region (sigmoid) training uses the same map of the label image.
    """
    label = np.asarray(label)
    if label.ndim < 1:
        raise ValueError("label must have at least one axis")
    if not w0 >= 0 or not sigma > 0:
        raise ValueError(f"need w0 >= 0 and sigma > 0, got w0={w0!r}, sigma={sigma!r}")
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.mod(label, 1) == 0):
            raise ValueError("label must hold integer labels (it has fractional values)")
        label = label.astype(np.int64)
    if label.size and label.min() < 0:
        raise ValueError("label must be >= 0 (negative values found); pass the ignore value as ignore_label")
    counted = None if ignore_label is None else label != ignore_label
    sp_nd = label.ndim - int(per_slice)
    spacing = (1.0,) * sp_nd if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != sp_nd or min(spacing) <= 0:
        raise ValueError(f"spacing must have {sp_nd} positive entries, got {spacing}")

    # class term (objects = counted labels, 0 elsewhere)
    objects = label if counted is None else np.where(counted, label, 0)
    counts = np.bincount(objects.ravel(), weights=None if counted is None else counted.ravel()).astype(np.float64)
    n_counted = counts.sum()
    w = np.zeros(label.shape, np.float32)
    if n_counted == 0:
        return w
    present = counts > 0
    w_class = np.zeros(counts.shape, np.float64)
    w_class[present] = n_counted / (present.sum() * counts[present])
    w[...] = w_class.astype(np.float32)[objects]
    if counted is not None:
        w[~counted] = 0

    # border term on (counted) background voxels
    if w0 > 0:
        reach = sigma * math.sqrt(2.0 * math.log(1.0 / BORDER_TERM_CUTOFF))
        for sl in (range(label.shape[0]) if per_slice else [Ellipsis]):
            obj = objects[sl]
            comp, n = _components(obj if obj.ndim > 1 else obj[None])
            if n < 2:
                continue
            comp = comp.reshape(obj.shape)
            d1, d2 = _two_nearest(comp, n, spacing, reach)
            s = d1 + d2
            bg = obj == 0
            if counted is not None:
                bg &= counted[sl]
            bg &= np.isfinite(s)
            ws = w[sl]
            ws[bg] += (w0 * np.exp(-(s[bg].astype(np.float64) ** 2) / (2.0 * sigma ** 2))).astype(np.float32)
    return w

"""Independent float64 NumPy/SciPy reference of every loss of docs/losses.md.

Written from the specification of the losses (docs/losses.md: the shared conventions and
sections 3.1-3.8) alone, without looking at the library, so that tests comparing the two can
catch mistakes in either. Plain loops over samples and classes:
this is a reference, not the product. Morphology uses SciPy (binary_erosion with border_value=1:
the outside of the array counts as foreground; binary_dilation with border_value=0).

Every function takes NumPy arrays (or anything np.asarray accepts):
  logits (B, C, *spatial); target (B, 1, *spatial) or (B, *spatial) integer labels (softmax mode)
  or (B, C, *spatial) binary regions (sigmoid mode); mask (B, 1, *spatial), 1 = counts.
and returns a Python float.

Where the formulas leave a case open, the reference makes these choices (docs/losses.md states the same):
* voxels that do not count (ignore label, mask 0) are "unknown" for the morphology of on-the-fly
  maps: like the outside of the array, foreground for erosion and background for dilation, and
  in no class (so the edge of an unlabelled region is never a contour);
* OffsetCurves length term: averaged over interior voxels that count and whose forward neighbours
  all count.
"""
import math
from fractions import Fraction

import numpy as np
from scipy import ndimage

SMOOTH = 1e-5
DEN_CLIP = 1e-8


# ----------------------------------------------------------------------------- preparation
class Prepared:
    """Probabilities, log-probabilities, one-hot target and the counted-voxel mask."""

    def __init__(self, logits, target, sigmoid=False, ignore_index=None, mask=None):
        x = np.asarray(logits, dtype=np.float64)
        self.sigmoid = sigmoid
        self.B, self.C = x.shape[:2]
        self.spatial = x.shape[2:]
        t = np.asarray(target)
        counted = np.ones((self.B,) + self.spatial, dtype=bool)
        if sigmoid:
            t = t.astype(np.float64)
            assert t.shape == x.shape, "sigmoid mode: target must be (B, C, *spatial)"
            if ignore_index is not None:
                counted &= ~np.any(t == ignore_index, axis=1)
            # g = the target itself; ignored voxels hold no target (zero everywhere)
            self.g = np.where(counted[:, None], t, 0.0)
            self.labels = None
            # log p and log(1 - p), stable: log sigmoid(x) = -log(1 + exp(-x))
            self.logp = -np.logaddexp(0.0, -x)
            self.log1mp = -np.logaddexp(0.0, x)
        else:
            if t.ndim == x.ndim:
                assert t.shape[1] == 1
                t = t[:, 0]
            labels = np.rint(t.astype(np.float64)).astype(np.int64)
            if ignore_index is not None:
                counted &= labels != ignore_index
            self.labels = np.where(counted, labels, -1)  # -1: no class
            self.g = np.zeros(x.shape, dtype=np.float64)
            for c in range(self.C):
                self.g[:, c] = (self.labels == c)
            lse = _logsumexp(x, axis=1)
            self.logp = x - lse[:, None]
            # log(1 - p_c) = logsumexp over the other classes - logsumexp over all
            self.log1mp = np.empty_like(x)
            for c in range(self.C):
                others = np.delete(x, c, axis=1)
                self.log1mp[:, c] = _logsumexp(others, axis=1) - lse
        if mask is not None:
            m = np.asarray(mask)
            if m.ndim == x.ndim:
                m = m[:, 0]
            counted &= m != 0
        self.counted = counted
        self.m = counted.astype(np.float64)  # (B, *spatial)
        self.p = np.exp(self.logp)
        self.n_counted = int(counted.sum())

    def dice_classes(self, include_background):
        if self.sigmoid or include_background:
            return list(range(self.C))
        return list(range(1, self.C))

    def foreground_classes(self):
        return list(range(self.C)) if self.sigmoid else list(range(1, self.C))

    def groups(self, batch_dice):
        """Index lists of samples summed together before a ratio."""
        if batch_dice:
            return [list(range(self.B))]
        return [[b] for b in range(self.B)]

    def voxel_ce(self):
        """(B, *spatial) CE per voxel (softmax) or (B, C, *spatial) BCE per voxel and channel."""
        if self.sigmoid:
            return -(self.g * self.logp + (1.0 - self.g) * self.log1mp)
        return -np.sum(self.g * self.logp, axis=1)

    def counted_mean(self, per_voxel):
        """Mean over counted voxels (and channels when per_voxel has a channel axis)."""
        if self.n_counted == 0:
            return 0.0
        if per_voxel.ndim == self.m.ndim + 1:  # (B, C, *spatial)
            return float(np.sum(per_voxel * self.m[:, None]) / (self.n_counted * per_voxel.shape[1]))
        return float(np.sum(per_voxel * self.m) / self.n_counted)


def _logsumexp(x, axis):
    mx = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(mx, axis=axis) + np.log(np.sum(np.exp(x - mx), axis=axis))


def _ratio(num, den, smooth):
    return (num + smooth) / max(den + smooth, DEN_CLIP)


# ----------------------------------------------------------------------------- morphology
def _cube(ndim, side):
    return np.ones((side,) * ndim, dtype=bool)


def erode(m, kernel_size=3, iterations=1, unknown=None):
    """Binary erosion by a cube; the outside of the array counts as foreground.

    ``unknown`` voxels (not counted: ignore label or mask 0) are treated like the outside, i.e. as
    foreground, so the edge of an unlabelled region is never a contour: the natural extension of
    "the edge of an image or of a patch is never a contour" (docs/losses.md, section 3.3, "Choice
    (ignore label)")."""
    m = np.asarray(m, dtype=bool)
    if unknown is not None:
        m = m | unknown
    if iterations < 1:
        return m.copy()
    return ndimage.binary_erosion(m, structure=_cube(m.ndim, kernel_size), iterations=iterations,
                                  border_value=1)


def dilate(m, kernel_size=3, iterations=1, unknown=None):
    """Binary dilation by a cube; the outside of the array (and ``unknown`` voxels) count as background."""
    m = np.asarray(m, dtype=bool)
    if unknown is not None:
        m = m & ~unknown
    if iterations < 1:
        return m.copy()
    return ndimage.binary_dilation(m, structure=_cube(m.ndim, kernel_size), iterations=iterations,
                                   border_value=0)


def inner_contour(m, kernel_size=3, iterations=6, unknown=None):
    """Inner contour (section 3.3): m AND NOT erode(m)."""
    m = np.asarray(m, dtype=bool)
    if unknown is not None:
        m = m & ~unknown
    return m & ~erode(m, kernel_size, iterations, unknown)


def _binary_classes(target, C, sigmoid):
    """(B, C, *spatial) boolean membership per class/region, from the raw target.

    softmax mode: target (B, *spatial) labels without a channel axis; labels outside 0..C-1 (the
    ignore label) belong to no class. sigmoid mode: target (B, C, *spatial); a region is target == 1."""
    t = np.asarray(target)
    if sigmoid:
        return t == 1
    labels = np.rint(t.astype(np.float64)).astype(np.int64)
    return np.stack([labels == c for c in range(C)], axis=1)


def _unknown(unknown, b, shape):
    return np.zeros(shape, dtype=bool) if unknown is None else np.asarray(unknown, dtype=bool)[b]


def class_contours(target, C, sigmoid=False, kernel_size=3, iterations=6, unknown=None):
    """Class contours (section 3.3), (B, C_fg, *spatial): inner contour of each foreground class/region.

    target: softmax (B, *spatial) labels, sigmoid (B, C, *spatial); unknown: (B, *spatial) bool or None."""
    members = _binary_classes(target, C, sigmoid)
    fg = range(C) if sigmoid else range(1, C)
    B = members.shape[0]
    out = np.zeros((B, len(fg)) + members.shape[2:], dtype=np.float64)
    for b in range(B):
        u = _unknown(unknown, b, members.shape[2:])
        for j, c in enumerate(fg):
            out[b, j] = inner_contour(members[b, c], kernel_size, iterations, u)
    return out


def boundary_band(target, C, sigmoid=False, kernel_size=3, iterations=6, unknown=None):
    """Boundary band (section 3.3), (B, 1, *spatial): union of the inner contours of every class
    including background (sigmoid: of every region and of its complement)."""
    members = _binary_classes(target, C, sigmoid)
    B = members.shape[0]
    out = np.zeros((B, 1) + members.shape[2:], dtype=np.float64)
    for b in range(B):
        u = _unknown(unknown, b, members.shape[2:])
        band = np.zeros(members.shape[2:], dtype=bool)
        for c in range(C):
            band |= inner_contour(members[b, c], kernel_size, iterations, u)
            if sigmoid:  # the complement of the region (unknown voxels are in neither)
                band |= inner_contour(~members[b, c] & ~u, kernel_size, iterations, u)
        out[b, 0] = band
    return out


def offset_band(g_c, band, unknown=None):
    """Offset band (section 3.8): dilate(g, cube3, band) AND NOT erode(g, cube3, band)."""
    g_c = np.asarray(g_c, dtype=bool)
    if unknown is not None:
        g_c = g_c & ~unknown
    return dilate(g_c, 3, band, unknown) & ~erode(g_c, 3, band, unknown)


# ----------------------------------------------------------------------------- Dice family
def _soft_dice_scores(P, classes, batch_dice, smooth, p=None, g=None, m=None):
    """nnU-Net soft Dice per (group, class): (2 tp + s) / clip(2 tp + fp + fn + s, 1e-8)."""
    p = P.p if p is None else p
    g = P.g if g is None else g
    m = P.m if m is None else m
    scores = []
    for grp in P.groups(batch_dice):
        row = []
        for c in classes:
            pc, gc, mc = p[grp, c], g[grp, c], m[grp]
            tp = np.sum(pc * gc * mc)
            fp = np.sum(pc * (1 - gc) * mc)
            fn = np.sum((1 - pc) * gc * mc)
            row.append(_ratio(2 * tp, 2 * tp + fp + fn, smooth))
        scores.append(row)
    return np.array(scores)


def _mean_dice_loss(P, include_background, batch_dice, smooth):
    return 1.0 - float(np.mean(_soft_dice_scores(P, P.dice_classes(include_background), batch_dice, smooth)))


def soft_dice_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                   include_background=False, batch_dice=False, smooth=SMOOTH):
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return _mean_dice_loss(P, include_background, batch_dice, smooth)


def ce_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None):
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return P.counted_mean(P.voxel_ce())


def dice_ce_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                 include_background=False, batch_dice=False, smooth=SMOOTH, weight_ce=1.0, weight_dice=1.0):
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return weight_ce * P.counted_mean(P.voxel_ce()) + weight_dice * _mean_dice_loss(
        P, include_background, batch_dice, smooth)


def combo_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
               include_background=False, batch_dice=False, smooth=SMOOTH, alpha=0.5, beta=0.5):
    """Combo (section 3.2): alpha * WCE + (1 - alpha) * (1 - meanDice); WCE over all channels."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    wce = -(beta * P.g * P.logp + (1 - beta) * (1 - P.g) * P.log1mp)  # (B, C, *spatial)
    return alpha * P.counted_mean(wce) + (1 - alpha) * _mean_dice_loss(P, include_background, batch_dice, smooth)


def cwce_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, contour_weight=1.0,
              kernel_size=3, iterations=6, band=None):
    """CWCE (section 3.3): mean_i (1 + contour_weight * band_i) * CE_i over counted voxels."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    if band is None:
        band = boundary_band(_contour_target(target, P), P.C, sigmoid, kernel_size, iterations, ~P.counted)
    band = np.asarray(band, dtype=np.float64)[:, 0]  # (B, *spatial)
    w = 1.0 + contour_weight * band
    ce = P.voxel_ce()
    if sigmoid:
        return P.counted_mean(w[:, None] * ce)
    return P.counted_mean(w * ce)


def sdl_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, batch_dice=False,
             smooth=SMOOTH, lam=0.5, kernel_size=3, iterations=6, contour=None):
    """Separable Dice (section 3.3): per foreground class, Dice on the contour and on the rest."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    fg = P.foreground_classes()
    if contour is None:
        contour = class_contours(_contour_target(target, P), P.C, sigmoid, kernel_size, iterations, ~P.counted)
    K = np.asarray(contour, dtype=np.float64)  # (B, C_fg, *spatial)
    assert K.shape[1] == len(fg)
    pK = np.zeros_like(P.p)
    gK = np.zeros_like(P.g)
    pI = np.zeros_like(P.p)
    gI = np.zeros_like(P.g)
    for j, c in enumerate(fg):
        pK[:, c] = P.p[:, c] * K[:, j]
        gK[:, c] = P.g[:, c] * K[:, j]
        pI[:, c] = P.p[:, c] * (1 - K[:, j])
        gI[:, c] = P.g[:, c] * (1 - K[:, j])
    d_contour = _soft_dice_scores(P, fg, batch_dice, smooth, p=pK, g=gK)
    d_inner = _soft_dice_scores(P, fg, batch_dice, smooth, p=pI, g=gI)
    return lam * (1 - float(np.mean(d_contour))) + (1 - lam) * (1 - float(np.mean(d_inner)))


def _contour_target(target, P):
    """Target for on-the-fly maps: softmax (B, *spatial) labels, sigmoid (B, C, *spatial).

    Uncounted voxels (ignore label or mask 0) are passed separately as ``unknown = ~P.counted``."""
    t = np.asarray(target)
    if not P.sigmoid and t.ndim == len(P.spatial) + 2:
        t = t[:, 0]
    return t


def cwcd_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, batch_dice=False,
              smooth=SMOOTH, weight_ce=1.0, weight_dice=1.0, kernel_size=3, iterations=6,
              contour_weight=1.0, lam=0.5, contour=None, band=None):
    """CWCD (section 3.3): weight_ce * CWCE + weight_dice * SDL."""
    if band is None:
        P = Prepared(logits, target, sigmoid, ignore_index, mask)
        band = boundary_band(_contour_target(target, P), P.C, sigmoid, kernel_size, iterations, ~P.counted)
    cwce = cwce_loss(logits, target, mask, sigmoid=sigmoid, ignore_index=ignore_index,
                     contour_weight=contour_weight, band=band)
    sdl = sdl_loss(logits, target, mask, sigmoid=sigmoid, ignore_index=ignore_index, batch_dice=batch_dice,
                   smooth=smooth, lam=lam, kernel_size=kernel_size, iterations=iterations, contour=contour)
    return weight_ce * cwce + weight_dice * sdl


def asym_fbeta_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                    include_background=False, batch_dice=False, smooth=SMOOTH, beta=1.5):
    """Asymmetric F-beta (section 3.4): 1 - mean F_beta, F = ((1+b^2) tp + s) / ((1+b^2) tp + b^2 fn + fp + s)."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    b2 = beta ** 2
    scores = []
    for grp in P.groups(batch_dice):
        for c in P.dice_classes(include_background):
            pc, gc, mc = P.p[grp, c], P.g[grp, c], P.m[grp]
            tp = np.sum(pc * gc * mc)
            fp = np.sum(pc * (1 - gc) * mc)
            fn = np.sum((1 - pc) * gc * mc)
            scores.append(_ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp, smooth))
    return 1.0 - float(np.mean(scores))


def tversky_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                 include_background=False, batch_dice=False, smooth=SMOOTH, alpha=0.3, beta=0.7):
    """Tversky (section 3.4): 1 - mean TI, TI = (tp + s) / (tp + alpha fp + beta fn + s)."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    scores = []
    for grp in P.groups(batch_dice):
        for c in P.dice_classes(include_background):
            pc, gc, mc = P.p[grp, c], P.g[grp, c], P.m[grp]
            tp = np.sum(pc * gc * mc)
            fp = np.sum(pc * (1 - gc) * mc)
            fn = np.sum((1 - pc) * gc * mc)
            scores.append(_ratio(tp, tp + alpha * fp + beta * fn, smooth))
    return 1.0 - float(np.mean(scores))


def topk_keep_mask(P, k):
    """(B, *spatial) bool: per sample the ceil(k/100 * n_counted) counted voxels of highest CE."""
    ce = P.voxel_ce()
    if P.sigmoid:
        ce = ce.sum(axis=1)  # BCE summed over channels
    keep = np.zeros(P.counted.shape, dtype=bool)
    for b in range(P.B):
        idx = np.flatnonzero(P.counted[b])
        n_keep = math.ceil(Fraction(k) * len(idx) / 100)  # exact: 7% of 100 is 7, not ceil(7.000000000000001)
        hard = ce[b].ravel()[idx]
        order = np.argsort(-hard, kind="stable")
        kb = np.zeros(keep[b].size, dtype=bool)
        kb[idx[order[:n_keep]]] = True
        keep[b] = kb.reshape(keep[b].shape)
    return keep


def _topk_dice_part(P, k, include_background, batch_dice, smooth):
    keep = topk_keep_mask(P, k).astype(np.float64)
    scores = []
    for grp in P.groups(batch_dice):
        for c in P.dice_classes(include_background):
            pc, gc, kc = P.p[grp, c], P.g[grp, c], keep[grp]
            num = 2 * np.sum(pc * gc * kc)
            den = np.sum(gc ** 2 * kc) + np.sum(pc ** 2 * kc)
            scores.append(_ratio(num, den, smooth))
    return 1.0 - float(np.mean(scores))


def topk_dice_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                   include_background=False, batch_dice=False, smooth=SMOOTH, k=10):
    """top-K Dice (section 3.5): Dice with sum(g^2) + sum(p^2) on the top-k% hardest counted voxels per sample."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return _topk_dice_part(P, k, include_background, batch_dice, smooth)


def ce_topk_dice_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                      include_background=False, batch_dice=False, smooth=SMOOTH, k=10,
                      weight_ce=1.0, weight_dice=1.0):
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return weight_ce * P.counted_mean(P.voxel_ce()) + weight_dice * _topk_dice_part(
        P, k, include_background, batch_dice, smooth)


def generalized_dice_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                          include_background=True, batch_dice=False, smooth=SMOOTH):
    """Generalised Dice (section 3.6): w_c = 1/(sum g_c)^2, absent classes get the largest finite weight of the row."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    classes = P.dice_classes(include_background)
    losses = []
    for grp in P.groups(batch_dice):
        sg = np.array([np.sum(P.g[grp, c] * P.m[grp]) for c in classes])
        sp = np.array([np.sum(P.p[grp, c] * P.m[grp]) for c in classes])
        tp = np.array([np.sum(P.p[grp, c] * P.g[grp, c] * P.m[grp]) for c in classes])
        w = np.full(len(classes), np.inf)
        w[sg > 0] = 1.0 / sg[sg > 0] ** 2
        finite = np.isfinite(w)
        w[~finite] = w[finite].max() if finite.any() else 0.0
        num = 2 * np.sum(w * tp)
        den = np.sum(w * (sp + sg))
        losses.append(1.0 - _ratio(num, den, smooth))
    return float(np.mean(losses))


def _focal_per_voxel(P, gamma, alpha):
    if P.sigmoid:
        log_pt = P.g * P.logp + (1 - P.g) * P.log1mp  # (B, C, *spatial)
        a = 1.0 if alpha is None else alpha * P.g + (1 - alpha) * (1 - P.g)
        return -a * (1 - np.exp(log_pt)) ** gamma * log_pt
    log_py = np.sum(P.g * P.logp, axis=1)  # (B, *spatial); 0 for uncounted voxels
    if alpha is None:
        a = 1.0
    else:
        alpha = np.asarray(alpha, dtype=np.float64)
        a = np.sum(P.g * alpha.reshape((1, -1) + (1,) * len(P.spatial)), axis=1)
    return -a * (1 - np.exp(log_py)) ** gamma * log_py


def focal_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, gamma=2.0, alpha=None):
    """Focal (section 3.7): -alpha_y (1 - p_y)^gamma log p_y, mean over counted voxels (and channels)."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return P.counted_mean(_focal_per_voxel(P, gamma, alpha))


def focal_dice_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None,
                    include_background=False, batch_dice=False, smooth=SMOOTH, gamma=2.0, alpha=None):
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    return P.counted_mean(_focal_per_voxel(P, gamma, alpha)) + _mean_dice_loss(
        P, include_background, batch_dice, smooth)


def dwce_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, weight_map=None):
    """DWCE (section 3.7): mean_i W_i CE_i over counted voxels, W given (B, 1, *spatial)."""
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    W = np.asarray(weight_map, dtype=np.float64)[:, 0]
    ce = P.voxel_ce()
    if sigmoid:
        return P.counted_mean(W[:, None] * ce)
    return P.counted_mean(W * ce)


def offset_curves_loss(logits, target, mask=None, *, sigmoid=False, ignore_index=None, smooth=SMOOTH,
                       band=3, lambda_band=1.0, lambda_length=0.01, eps=1e-8):
    """Offset Curves (section 3.8, a reconstruction): CE + lambda_band * band term + lambda_length * length term.

    Band term per (sample, foreground class): sum over counted voxels of B_c (p_c - g_c)^2 divided
    by (number of counted band voxels + s). Length term: mean over interior voxels x (the array
    cropped by one at the end of every axis) of sqrt(sum_axes (p_c(x + e_a) - p_c(x))^2 + eps),
    where, with an ignore label or mask, only voxels x that count AND whose forward neighbours
    x + e_a all count are averaged (a difference touching an ignored voxel would use its
    prediction; docs/losses.md, section 3.8, "Choice (ignore label)"). A (sample,
    class) with no such voxel contributes 0. Uncounted voxels are "unknown" for the band morphology.
    """
    P = Prepared(logits, target, sigmoid, ignore_index, mask)
    ce = P.counted_mean(P.voxel_ce())
    members = _binary_classes(_contour_target(target, P), P.C, sigmoid)
    nd = len(P.spatial)
    interior = tuple(slice(0, n - 1) for n in P.spatial)
    band_terms, length_terms = [], []
    for b in range(P.B):
        m = P.m[b]
        m_int = m[interior].copy()
        for a in range(nd):  # x counts and every forward neighbour x + e_a counts
            fwd = tuple(slice(1, n) if ax == a else slice(0, n - 1) for ax, n in enumerate(P.spatial))
            m_int = m_int * m[fwd]
        for c in P.foreground_classes():
            Bc = offset_band(members[b, c], band, ~P.counted[b]).astype(np.float64)
            pc, gc = P.p[b, c], P.g[b, c]
            band_terms.append(np.sum(Bc * m * (pc - gc) ** 2) / (np.sum(Bc * m) + smooth))
            sq = np.zeros(m_int.shape)
            for a in range(nd):
                fwd = tuple(slice(1, n) if ax == a else slice(0, n - 1) for ax, n in enumerate(P.spatial))
                sq += (pc[fwd] - pc[interior]) ** 2
            length = np.sqrt(sq + eps)
            length_terms.append(np.sum(length * m_int) / np.sum(m_int) if m_int.sum() > 0 else 0.0)
    if P.n_counted == 0:
        return 0.0
    return ce + lambda_band * float(np.mean(band_terms)) + lambda_length * float(np.mean(length_terms))

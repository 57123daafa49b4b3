"""Offset Curves loss (Le et al., "Offset Curves Loss for Imbalanced Problem in Medical
Segmentation", ICPR 2020, arXiv 2012.02463). RECONSTRUCTION: the authors published no code; this
formula is rebuilt from the abstract (pixel-wise term + attention band of offset curves around
the boundary + boundary-length regulariser), see docs/losses.md.

    B_c = dilate(g_c, cube3, w) AND NOT erode(g_c, cube3, w)      (per foreground class, w = contour_width)
    OsC = CE
        + lambda_band   * mean_{b,c} [ sum(B_c (p_c - g_c)^2) / (sum(B_c) + s) ]
        + lambda_length * mean_{b,c} mean_x sqrt( sum_axes (forward difference of p_c)^2 + eps )

Forward differences are taken on the common interior (every axis cropped by one at its end).
With an ignore label or mask, the length term averages over interior voxels whose forward
neighbours all count (our choice). forward takes ``offset_band=`` (B, C_fg, *sp) or None.
The width ``contour_width`` was called ``band`` before this release (the old keyword works for one
more release, with a DeprecationWarning): the same name as the contour width of CWCE / SDL / CWCD.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_map, check_number, renamed_arguments
from ._core import LossBase, Prepared, as_dtype, cross_entropy
from .dice import SMOOTH
from .morphology import torch_ops


def _interior(t: torch.Tensor, axis: Optional[int] = None) -> torch.Tensor:
    """Crop every spatial axis by one at its end; with ``axis``, shift that axis by one first."""
    nd = t.ndim - 2
    idx = [slice(None), slice(None)]
    for a in range(nd):
        idx.append(slice(1, None) if a == axis else slice(None, -1))
    return t[tuple(idx)]


def _flat_strides(shape) -> list:
    """Flat strides of a contiguous array of spatial ``shape`` (C order)."""
    strides, s = [], 1
    for n in reversed(shape):
        strides.insert(0, s)
        s *= n
    return strides


def interior_weight(m: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Weight of every voxel in the length term's mean, (1 or B, 1, *sp): 1 on the common interior
    (every axis cropped by one at its end), 0 elsewhere; with a mask ``m`` (B, 1, *sp), only where the
    voxel and its forward neighbours all count."""
    shape = (1, 1, *like.shape[2:]) if m is None else m.shape
    w = torch.zeros(shape, dtype=like.dtype, device=like.device)
    if m is None:
        _interior(w).fill_(1.0)
    else:
        inner = _interior(m)
        for a in range(m.ndim - 2):
            inner = inner * _interior(m, a)
        _interior(w).copy_(inner)
    return w


class _BandAndLength(torch.autograd.Function):
    """``lambda_band * band_term + lambda_length * length_term`` of the foreground channels of ``p``, one
    node with a written-out backward (same value and gradient as autograd's).

    * band term: ``B (p_c - g_c)`` without a one-hot target (softmax mode: ``B p`` with ``B`` subtracted
      at each voxel's label, one scatter); it is saved, its squared norm is the sum (``B`` is 0/1), the
      gradient is it times a per-(sample, class) factor: one pass;
    * length term on the flattened array: the forward difference along axis ``a`` is ``p[i + s_a] - p[i]``
      (``s_a`` the flat stride) over one contiguous range of ``i`` that holds the whole interior, so
      every pass runs over long contiguous rows (cropped 3D views are several times slower on CPU);
      positions outside the interior get weight 0 (:func:`interior_weight`), which also zeroes their
      gradient. The differences are saved, not recomputed; their gradient is added in place, one
      ``addcmul_`` per axis and side;
    * the gradient is written straight into one tensor of ``p``'s full shape (no slice copy, no
      accumulation of two gradients by autograd) and returned for ``log p`` (times ``p``, in place), so
      autograd runs no ``exp`` backward either (``p`` is ``exp(log p)`` in both modes).
    """

    @staticmethod
    def forward(ctx, logp: torch.Tensor, p: torch.Tensor, labels: Optional[torch.Tensor],
                g: Optional[torch.Tensor], bmap: torch.Tensor, w: torch.Tensor, count: Optional[float], fg0: int,
                lam_band: float, lam_len: float, eps: float, smooth: float) -> torch.Tensor:
        nb, nc = p.shape[:2]
        nk = nc - fg0
        n = p[0, 0].numel()
        pf = p[:, fg0:]
        out = p.new_zeros(())
        bd = den = length = wd = None
        diffs = []
        if lam_band != 0:
            if g is not None:
                bd = (pf - g).mul_(bmap)
            elif nk == 1:  # two classes: p_1 - [label == 1]
                bd = (pf - as_dtype(labels == 1, p.dtype)).mul_(bmap)
            else:  # B_c p_c, then - B_c at each voxel's label c >= 1 (label 0, background, adds 0)
                bd = bmap * pf
                at = (labels - 1).clamp_min(0)
                bd.scatter_add_(1, at, bmap.gather(1, at) * -(labels > 0).to(p.dtype))
            axes = tuple(range(2, p.ndim))
            den = bmap.sum(axes) + smooth
            num = torch.linalg.vector_norm(bd, dim=axes).square()  # sum B (p - g)^2 (B is 0/1): no temporary
            out = out + lam_band * (num / den).mean()
        if lam_len != 0:
            strides = _flat_strides(p.shape[2:])
            size = n - strides[0]  # i + s_a < n for every interior i and axis a
            pv = p.reshape(nb, nc, n)[:, fg0:]
            base = pv[..., :size]
            sq = None
            for s in strides:  # squares as products, not pow; eps added with the first one
                da = pv[..., s:s + size] - base
                diffs.append(da)
                sq = torch.addcmul(p.new_full((), eps), da, da) if sq is None else sq.addcmul_(da, da)
            length = sq.sqrt_()
            wv = w.reshape(w.shape[0], 1, n)[..., :size]
            total = wv.sum(-1, keepdim=True).clamp_min(1.0) if count is None else count
            wd = wv / total  # (1 or B, 1, size)
            if wd.shape[0] == 1:  # one weight row for every sample: a matrix-vector product
                len_sum = torch.mv(length.view(nb * nk, size), wd.view(size))
            else:
                len_sum = torch.bmm(length, wd.transpose(1, 2))
            out = out + lam_len * len_sum.mean()
        ctx.fg0, ctx.lam_band, ctx.lam_len, ctx.p_shape = fg0, lam_band, lam_len, p.shape
        ctx.save_for_backward(p, bd, den, length, wd, *diffs)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        p, bd, den, length, wd, *diffs = ctx.saved_tensors
        nb, nc = ctx.p_shape[:2]
        nk = nc - ctx.fg0
        grad = torch.zeros(ctx.p_shape, dtype=grad_out.dtype, device=grad_out.device)
        gv = grad.view(nb, nc, -1)[:, ctx.fg0:]
        if bd is not None:
            coef = (grad_out * (2.0 * ctx.lam_band / (nb * nk))) / den
            gv.addcmul_(bd.reshape(nb, nk, -1), coef.view(nb, nk, 1))
        if length is not None:
            scale = (wd * (grad_out * (ctx.lam_len / (nb * nk)))) / length  # 0 outside the interior
            size = length.shape[-1]
            base = gv[..., :size]
            for s, da in zip(_flat_strides(ctx.p_shape[2:]), diffs):  # d(length)/d(difference) = difference / length
                gv[..., s:s + size].addcmul_(da, scale)
                base.addcmul_(da, scale, value=-1.0)
        return grad.mul_(p), None, None, None, None, None, None, None, None, None, None, None  # d p / d log p = p


@renamed_arguments(band="contour_width")
class OffsetCurvesLoss(LossBase):
    """Offset Curves loss (OsC), a RECONSTRUCTION from the paper's abstract (no code is public).

    ``B_c = dilate(g_c, cube3, contour_width) AND NOT erode(g_c, cube3, contour_width)`` per foreground class c (sigmoid
    mode: every region)::

        OsC = CE + lambda_band   * mean_{b,c} [ sum(B_c (p_c - g_c)^2) / (sum(B_c) + smooth) ]
                 + lambda_length * mean_{b,c} mean_x sqrt( sum_axes (forward difference of p_c)^2 + eps )

    sums over counted voxels; forward differences on the common interior (each axis cropped by one at its
    end), averaged over interior voxels whose forward neighbours all count. CE as in :class:`DiceCELoss`.
    Le et al., "Offset Curves Loss for Imbalanced Problem in Medical Segmentation", ICPR 2020 (arXiv
    2012.02463); docs/losses.md, section 3.8. ``forward(logits, target, mask=None, offset_band=None)``:
    a precomputed binary band (B, C_fg, *sp), or None to build it from the target.

    Args:
        contour_width: number of offset curves on each side of the boundary (iterations of the cube of side 3;
            called ``band`` before this release), a
            whole number >= 1. Default: ``3``.
        lambda_band: weight of the band term, >= 0. Default: ``1.0``.
        lambda_length: weight of the length term, >= 0. Default: ``0.01``.
        eps: added under the square root of the length term (finite gradient where p is flat), > 0.
            Default: ``1e-8``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        smooth: added to the band term's denominator, >= 0. Default: ``1e-5``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import OffsetCurvesLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = OffsetCurvesLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # CE (ln 2) + band term (0.5^2) + 0.01 * length term (about 0)
        0.9431
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)  # the length term stays: the contour has a length
        0.0007
    """

    map_names = ("offset_band",)

    def __init__(self, contour_width: int = 3, lambda_band: float = 1.0, lambda_length: float = 0.01, eps: float = 1e-8,
                 sigmoid: bool = False, ignore_index: Optional[int] = None, smooth: float = SMOOTH):
        super().__init__(sigmoid, ignore_index)
        self.contour_width = check_number("contour_width", contour_width, 1, integer=True)
        self.lambda_band = check_number("lambda_band", lambda_band, 0)
        self.lambda_length = check_number("lambda_length", lambda_length, 0)
        self.eps = check_number("eps", eps, 0, low_inclusive=False)
        self.smooth = check_number("smooth", smooth, 0)

    def compute(self, prep: Prepared, offset_band: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        b, c = prep.x.shape[:2]
        p = prep.p
        k = c if prep.sigmoid else c - 1
        if offset_band is None:
            if prep.sigmoid:
                bmap = torch_ops.offset_band(prep.g, c, True, self.contour_width, prep.ignored)
            else:  # one window pass for all classes, same band as torch_ops.offset_band
                bmap = torch_ops.offset_band_bits(prep.labels, c, self.contour_width, prep.ignored)
        else:
            bmap = check_map("offset_band", offset_band, (b, k, *prep.x.shape[2:]), binary=True)
        bmap = as_dtype(bmap, p.dtype, p.device)
        if prep.m is not None:
            bmap = bmap * prep.m
        w = interior_weight(prep.m, p)
        count = None if prep.m is not None else float(_interior(p[:1, :1]).numel())
        labels, g = (None, prep.g) if prep.sigmoid else (prep.labels, None)
        terms = _BandAndLength.apply(prep.logp, p.detach(), labels, g, bmap, w, count, 0 if prep.sigmoid else 1,
                                     self.lambda_band, self.lambda_length, self.eps, self.smooth)
        return cross_entropy(prep) + terms

    def extra_repr(self) -> str:
        return (f"contour_width={self.contour_width}, lambda_band={self.lambda_band}, lambda_length={self.lambda_length}, "
                f"eps={self.eps}, {super().extra_repr()}")

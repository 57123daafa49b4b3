"""Contour-weighted losses (Huang et al., "Contour-weighted loss for class-imbalanced image
segmentation", ICIP 2024, arXiv 2407.06176): CWCE, separable Dice (SDL) and their sum CWCD.

Maps (docs/losses.md, section 3.3; built by :mod:`nnunet_losses.morphology.torch_ops` or precomputed):

* class contours K (B, C_fg, *sp): inner contour ``g_c AND NOT erode(g_c, box k, contour_width)`` of
  every foreground class (sigmoid mode: every region); the image/patch edge is never a contour.
* boundary band (B, 1, *sp): union of the inner contours of every class incl. background
  (sigmoid: of every region and its complement), i.e. both sides of every boundary.

    CWCE = mean_i (1 + contour_weight * band_i) CE_i
    SDL  = lam (1 - mean_c Dice(p_c K_c, g_c K_c)) + (1 - lam)(1 - mean_c Dice(p_c (1 - K_c), g_c (1 - K_c)))
    CWCD = weight_ce * CWCE + weight_dice * SDL

Our choices where the paper and the authors' code differ (see docs/losses.md): 3x3(x3) element
with 6 iterations (paper text; the code uses 2x2x2 and 1 iteration); SDL per class then mean (the
paper's equations; the code pools all classes into one Dice per set); CWCE weight 1 + band (the
code's ``mean((1 + 2 band) CE) + mean(CE)`` is twice ``mean((1 + band) CE)``: the same ratio).
With ``contour=None`` / ``boundary_band=None`` the maps are computed from the target on its device.

Names: ``contour_width`` (the erosion depth, element steps; called ``iterations`` before) is the
same width that :class:`~nnunet_losses.OffsetCurvesLoss` calls ``contour_width``; the map keyword
``boundary_band`` (called ``band`` before) is CWCE's band of every class's contour, not OsC's
``offset_band``. The old names work for one more release, with a DeprecationWarning.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_kernel_size, check_map, check_number, renamed_arguments
from ._core import (LABEL_SUMS_MIN_CLASSES, LossBase, Prepared, as_dtype, cross_entropy_map, masked_mean,
                    spatial_sum)
from ._distributed import sum_across_ranks
from .dice import SMOOTH, DiceOptions, dice_from_sums
from .morphology.torch_ops import boundary_band, class_contours, contours_and_band


class _ContourMaps:
    """Shared settings and on-the-fly construction of the contour maps."""

    def _init_maps(self, kernel_size, contour_width):
        self.kernel_size = check_kernel_size(kernel_size)
        self.contour_width = check_number("contour_width", contour_width, 1, integer=True)

    def _target(self, prep: Prepared) -> torch.Tensor:
        return prep.g if prep.sigmoid else prep.labels

    def contours_for(self, prep: Prepared, contour: Optional[torch.Tensor]) -> torch.Tensor:
        b, c = prep.x.shape[:2]
        c_fg = c if prep.sigmoid else c - 1
        if contour is None:
            contour = class_contours(self._target(prep), c, prep.sigmoid, self.kernel_size, self.contour_width,
                                     prep.ignored)
        else:
            contour = check_map("contour", contour, (b, c_fg, *prep.x.shape[2:]), binary=True)
        return as_dtype(contour, prep.x.dtype, prep.x.device)

    def band_for(self, prep: Prepared, band: Optional[torch.Tensor]) -> torch.Tensor:
        """The boundary band: ``band`` checked, or built from the target when None."""
        b, c = prep.x.shape[:2]
        if band is None:
            band = boundary_band(self._target(prep), c, prep.sigmoid, self.kernel_size, self.contour_width,
                                 prep.ignored)
        else:
            band = check_map("boundary_band", band, (b, 1, *prep.x.shape[2:]), binary=True)
        return as_dtype(band, prep.x.dtype, prep.x.device)

    def _maps_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, contour_width={self.contour_width}"


def contour_weighted_ce(prep: Prepared, band: torch.Tensor, contour_weight: float) -> torch.Tensor:
    """``mean_i (1 + contour_weight * band_i) CE_i`` over counted voxels."""
    return masked_mean((1.0 + contour_weight * band) * cross_entropy_map(prep), prep.m)


@renamed_arguments(iterations="contour_width")
class ContourWeightedCELoss(LossBase, _ContourMaps):
    """Contour-weighted CE (CWCE): ``mean_i (1 + contour_weight * band_i) CE_i`` over the counted voxels.

    ``boundary_band`` is the boundary band (B, 1, *sp): the union of the inner contours of every class including
    background (sigmoid mode: of every region and its complement), inner contour = ``g AND NOT
    erode(g, box kernel_size, contour_width)``. CE as in :class:`DiceCELoss`. Huang et al.,
    "Contour-weighted loss for class-imbalanced image segmentation", ICIP 2024 (arXiv 2407.06176);
    docs/losses.md, section 3.3. ``forward(logits, target, mask=None, boundary_band=None)``: a precomputed
    binary band, or None to build it from the target on its device.

    Args:
        kernel_size: side of the box structuring element: an int >= 2 (a cube) or one int >= 1 per spatial
            axis (2 or 3 of them, at least one >= 2; 1 = no erosion along that axis, see
            :func:`nnunet_losses.morphology.elements.anisotropic_kernel`). Even sides are anchored as in SciPy.
            Default: ``3``.
        contour_width: times the element is applied (erosion depth of the contour), a whole number >= 1
            (called ``iterations`` before this release). Default: ``6``.
        contour_weight: extra weight of the voxels on the band, >= 0. Default: ``1.0``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term and
            act like the outside of the image for the erosion; an integer, or None when every voxel
            counts. Default: ``None``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import ContourWeightedCELoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = ContourWeightedCELoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # ln 2 * (1 + 768 band voxels / 1024)
        1.213
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    map_names = ("boundary_band",)
    renamed_maps = {"band": "boundary_band"}

    def __init__(self, kernel_size=3, contour_width: int = 6, contour_weight: float = 1.0, sigmoid: bool = False,
                 ignore_index: Optional[int] = None):
        super().__init__(sigmoid, ignore_index)
        self._init_maps(kernel_size, contour_width)
        self.contour_weight = check_number("contour_weight", contour_weight, 0)

    def compute(self, prep: Prepared, boundary_band: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        return contour_weighted_ce(prep, self.band_for(prep, boundary_band), self.contour_weight)

    def extra_repr(self) -> str:
        return f"{self._maps_repr()}, contour_weight={self.contour_weight}, {super().extra_repr()}"


@renamed_arguments(iterations="contour_width")
class SeparableDiceLoss(LossBase, _ContourMaps, DiceOptions):
    """Separable Dice (SDL): ``lam (1 - mean_c Dice_contour_c) + (1 - lam)(1 - mean_c Dice_inner_c)``.

    Per foreground class c (sigmoid mode: every region) with its inner contour ``K_c = g_c AND NOT
    erode(g_c, box kernel_size, contour_width)``: ``Dice_contour_c = Dice(p_c K_c, g_c K_c)`` and
    ``Dice_inner_c = Dice(p_c (1 - K_c), g_c (1 - K_c))``, soft Dice as in :class:`SoftDiceLoss`.
    Huang et al., ICIP 2024 (arXiv 2407.06176); docs/losses.md, section 3.3.
    ``forward(logits, target, mask=None, contour=None)``: precomputed binary contours (B, C_fg, *sp), or
    None to build them from the target. There is no ``include_background`` (contours are defined for
    the foreground classes only).

    Args:
        kernel_size: side of the box structuring element: an int >= 2 (a cube) or one int >= 1 per spatial
            axis (2 or 3 of them, at least one >= 2; 1 = no erosion along that axis, see
            :func:`nnunet_losses.morphology.elements.anisotropic_kernel`). Even sides are anchored as in SciPy.
            Default: ``3``.
        contour_width: times the element is applied (erosion depth of the contour), a whole number >= 1
            (called ``iterations`` before this release). Default: ``6``.
        lam: weight of the contour Dice (the inner Dice gets ``1 - lam``), in [0, 1]. Default: ``0.5``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term and
            act like the outside of the image for the erosion; an integer, or None when every voxel
            counts. Default: ``None``.
        batch_dice: one Dice per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerator and denominator of both Dice ratios, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import SeparableDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = SeparableDiceLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # (1 - 2/3) / 2 + (1 - 16/408) / 2: 240 contour voxels, 784 others
        0.6471
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    map_names = ("contour",)

    def __init__(self, kernel_size=3, contour_width: int = 6, lam: float = 0.5, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(sigmoid, ignore_index)
        self._init_maps(kernel_size, contour_width)
        self._init_dice_options(False, batch_dice, smooth, ddp)
        self.lam = check_number("lam", lam, 0, 1)

    def sdl(self, prep: Prepared, contour: Optional[torch.Tensor], logp_y: Optional[torch.Tensor] = None
            ) -> torch.Tensor:
        """SDL from the contour map; ``logp_y`` (log p at the label, (B, 1, *sp)) is reused when given."""
        k = self.contours_for(prep, contour)
        bd = self.batch_dice
        if prep.sigmoid or prep.x.shape[1] <= LABEL_SUMS_MIN_CLASSES:
            sums_contour, sums_inner = self._sums_one_hot(prep, k)
        else:
            sums_contour, sums_inner = self._sums_labels(prep, k, logp_y)
        if bd:
            sums_contour = [t.sum(0, keepdim=True) for t in sums_contour]
            sums_inner = [t.sum(0, keepdim=True) for t in sums_inner]
        if self.ddp and bd:
            sums_contour = [sum_across_ranks(t) for t in sums_contour]
            sums_inner = [sum_across_ranks(t) for t in sums_inner]
        d_contour = dice_from_sums(*sums_contour, self.smooth)
        d_inner = dice_from_sums(*sums_inner, self.smooth)
        return self.lam * (1.0 - d_contour.mean()) + (1.0 - self.lam) * (1.0 - d_inner.mean())

    @staticmethod
    def _sums_one_hot(prep: Prepared, k: torch.Tensor):
        """(tp, P, G) per (sample, foreground class / region) on the contour and on the rest, from g."""
        p, g = prep.p_fg, prep.g[:, prep.fg]
        # Dice(p K, g K) and Dice(p (1 - K), g (1 - K)) from the soft-Dice sums. K, g and the mask are 0/1, so
        # folding them into one weight per sum (without gradient) gives exactly the same products, with a
        # single multiplication of p per sum: tp = sum(p g K m), P = sum(p K m), G = sum(g K m), alike for 1 - K.
        with torch.no_grad():
            gk = g * k
            g_in = g - gk
            k_in = 1.0 - k
            if prep.m is not None:
                gk, g_in, k, k_in = gk * prep.m, g_in * prep.m, k * prep.m, k_in * prep.m
        return ([spatial_sum(p * gk), spatial_sum(p * k), spatial_sum(gk)],
                [spatial_sum(p * g_in), spatial_sum(p * k_in), spatial_sum(g_in)])

    @staticmethod
    def _sums_labels(prep: Prepared, k: torch.Tensor, logp_y: Optional[torch.Tensor]):
        """(tp, P, G) per (sample, foreground class) on the contour and on the rest, softmax mode.

        The one-hot target is never built: ``g_c`` is 1 only at voxels labelled c, so
        ``tp_c = sum(p_c g_c K_c m) = sum over voxels labelled c of p_y K_y m`` and ``G_c`` likewise: a
        per-voxel product at the label (B, 1, *sp) and one ``scatter_add`` into (B, C) bins per sum.
        Only ``P = sum(p_c K_c m)`` and ``sum(p_c (1 - K_c) m)`` need all classes. ``p_y = exp(log p_y)``
        shares the gather (and its backward) with the CE term of CWCD.
        """
        b, c = prep.x.shape[:2]
        labels = prep.labels
        if logp_y is None:
            logp_y = prep.logp.gather(1, labels)
        p_y = logp_y.exp()
        p = prep.p_channels(slice(1, None))
        with torch.no_grad():
            fg = as_dtype(labels > 0, k.dtype)
            k_y = k.gather(1, (labels - 1).clamp_min(0)) * fg  # contour at the label (0 on background)
            in_y = fg - k_y
            k_in = 1.0 - k
            if prep.m is not None:
                k_y, in_y, k, k_in = k_y * prep.m, in_y * prep.m, k * prep.m, k_in * prep.m
        idx = labels.reshape(b, -1)
        zeros = torch.zeros((b, c), dtype=p.dtype, device=p.device)

        def per_class(w: torch.Tensor) -> torch.Tensor:  # (B, 1, *sp) -> (B, C - 1): sum over voxels of each class
            return zeros.scatter_add(1, idx, w.reshape(b, -1))[:, 1:]

        return ([per_class(p_y * k_y), spatial_sum(p * k), per_class(k_y)],
                [per_class(p_y * in_y), spatial_sum(p * k_in), per_class(in_y)])

    def compute(self, prep: Prepared, contour: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        return self.sdl(prep, contour)

    def extra_repr(self) -> str:
        return (f"{self._maps_repr()}, lam={self.lam}, batch_dice={self.batch_dice}, smooth={self.smooth}, "
                f"{super().extra_repr()}")


@renamed_arguments(iterations="contour_width")
class CWCDLoss(SeparableDiceLoss):
    """CWCD: ``weight_ce * CWCE + weight_dice * SDL`` (:class:`ContourWeightedCELoss` plus
    :class:`SeparableDiceLoss` on one softmax; maps built on the fly share their common work).

    Huang et al., ICIP 2024 (arXiv 2407.06176), the paper's training loss; docs/losses.md, section 3.3.
    ``forward(logits, target, mask=None, contour=None, boundary_band=None)``: precomputed maps, or None to build
    them from the target.

    Args:
        weight_ce: weight of CWCE, >= 0. Default: ``1.0``.
        weight_dice: weight of SDL, >= 0. Default: ``1.0``.
        kernel_size: side of the box structuring element: an int >= 2 (a cube) or one int >= 1 per spatial
            axis (2 or 3 of them, at least one >= 2; 1 = no erosion along that axis, see
            :func:`nnunet_losses.morphology.elements.anisotropic_kernel`). Even sides are anchored as in SciPy.
            Default: ``3``.
        contour_width: times the element is applied (erosion depth of the contour), a whole number >= 1
            (called ``iterations`` before this release). Default: ``6``.
        contour_weight: CWCE's extra weight of the voxels on the boundary band, >= 0. Default: ``1.0``.
        lam: SDL's weight of the contour Dice (the inner Dice gets ``1 - lam``), in [0, 1]. Default: ``0.5``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term and
            act like the outside of the image for the erosion; an integer, or None when every voxel
            counts. Default: ``None``.
        batch_dice: one Dice per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerator and denominator of both Dice ratios, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import CWCDLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = CWCDLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # CWCE + SDL
        1.8601
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    map_names = ("contour", "boundary_band")
    renamed_maps = {"band": "boundary_band"}

    def __init__(self, weight_ce: float = 1.0, weight_dice: float = 1.0, kernel_size=3, contour_width: int = 6,
                 contour_weight: float = 1.0, lam: float = 0.5, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(kernel_size, contour_width, lam, sigmoid, ignore_index, batch_dice, smooth, ddp)
        self.weight_ce = check_number("weight_ce", weight_ce, 0)
        self.weight_dice = check_number("weight_dice", weight_dice, 0)
        self.contour_weight = check_number("contour_weight", contour_weight, 0)

    def compute(self, prep: Prepared, contour: Optional[torch.Tensor] = None,
                boundary_band: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        band = boundary_band
        if contour is None and band is None:  # on the fly: build both maps with the shared work done once
            contour, band = contours_and_band(self._target(prep), prep.x.shape[1], prep.sigmoid, self.kernel_size,
                                              self.contour_width, prep.ignored)
        band = self.band_for(prep, band)
        if prep.sigmoid:
            return (self.weight_ce * contour_weighted_ce(prep, band, self.contour_weight)
                    + self.weight_dice * self.sdl(prep, contour))
        logp_y = prep.logp.gather(1, prep.labels)  # one gather for the CE and the SDL sums
        cwce = masked_mean((1.0 + self.contour_weight * band) * -logp_y, prep.m)
        return self.weight_ce * cwce + self.weight_dice * self.sdl(prep, contour, logp_y)

    def extra_repr(self) -> str:
        return (f"weight_ce={self.weight_ce}, weight_dice={self.weight_dice}, "
                f"contour_weight={self.contour_weight}, {super().extra_repr()}")

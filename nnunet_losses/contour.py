"""Contour-weighted losses (Huang et al., "Contour-weighted loss for class-imbalanced image
segmentation", ICIP 2024, arXiv 2407.06176): CWCE, separable Dice (SDL) and their sum CWCD.

Maps (SPEC 3.3, built by :mod:`nnunet_losses.morphology` or precomputed):

* class contours K (B, C_fg, *sp): inner contour ``g_c AND NOT erode(g_c, box k, iterations)`` of
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
With ``contour=None`` / ``band=None`` the maps are computed from the target on its device.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_kernel_size, check_map, check_number
from ._core import LossBase, Prepared, as_dtype, cross_entropy_map, masked_mean, spatial_sum
from ._distributed import sum_across_ranks
from .dice import SMOOTH, DiceOptions, dice_from_sums
from .morphology import boundary_band, class_contours, contours_and_band


class _ContourMaps:
    """Shared settings and on-the-fly construction of the contour maps."""

    def _init_maps(self, kernel_size, iterations):
        self.kernel_size = check_kernel_size(kernel_size)
        self.iterations = check_number("iterations", iterations, 1, integer=True)

    def _target(self, prep: Prepared) -> torch.Tensor:
        return prep.g if prep.sigmoid else prep.labels

    def contours_for(self, prep: Prepared, contour: Optional[torch.Tensor]) -> torch.Tensor:
        b, c = prep.x.shape[:2]
        c_fg = c if prep.sigmoid else c - 1
        if contour is None:
            contour = class_contours(self._target(prep), c, prep.sigmoid, self.kernel_size, self.iterations,
                                     prep.ignored)
        else:
            contour = check_map("contour", contour, (b, c_fg, *prep.x.shape[2:]), binary=True)
        return as_dtype(contour, prep.x.dtype, prep.x.device)

    def band_for(self, prep: Prepared, band: Optional[torch.Tensor]) -> torch.Tensor:
        b, c = prep.x.shape[:2]
        if band is None:
            band = boundary_band(self._target(prep), c, prep.sigmoid, self.kernel_size, self.iterations,
                                 prep.ignored)
        else:
            band = check_map("band", band, (b, 1, *prep.x.shape[2:]), binary=True)
        return as_dtype(band, prep.x.dtype, prep.x.device)

    def _maps_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, iterations={self.iterations}"


def contour_weighted_ce(prep: Prepared, band: torch.Tensor, contour_weight: float) -> torch.Tensor:
    """``mean_i (1 + contour_weight * band_i) CE_i`` over counted voxels."""
    return masked_mean((1.0 + contour_weight * band) * cross_entropy_map(prep), prep.m)


class ContourWeightedCELoss(LossBase, _ContourMaps):
    """CWCE: ``mean_i (1 + contour_weight * band_i) CE_i``; forward takes ``band=`` (B, 1, *sp) or None."""

    map_names = ("band",)

    def __init__(self, kernel_size=3, iterations: int = 6, contour_weight: float = 1.0, sigmoid: bool = False,
                 ignore_index: Optional[int] = None):
        super().__init__(sigmoid, ignore_index)
        self._init_maps(kernel_size, iterations)
        self.contour_weight = check_number("contour_weight", contour_weight, 0)

    def compute(self, prep: Prepared, band: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        return contour_weighted_ce(prep, self.band_for(prep, band), self.contour_weight)

    def extra_repr(self) -> str:
        return f"{self._maps_repr()}, contour_weight={self.contour_weight}, {super().extra_repr()}"


class SeparableDiceLoss(LossBase, _ContourMaps, DiceOptions):
    """SDL: ``lam (1 - mean Dice_contour) + (1 - lam)(1 - mean Dice_inner)`` over foreground classes.

    forward takes ``contour=`` (B, C_fg, *sp) or None. ``include_background`` does not apply
    (contours are defined for foreground classes only).
    """

    map_names = ("contour",)

    def __init__(self, kernel_size=3, iterations: int = 6, lam: float = 0.5, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(sigmoid, ignore_index)
        self._init_maps(kernel_size, iterations)
        self._init_dice_options(False, batch_dice, smooth, ddp)
        self.lam = check_number("lam", lam, 0, 1)

    def sdl(self, prep: Prepared, contour: Optional[torch.Tensor]) -> torch.Tensor:
        k = self.contours_for(prep, contour)
        p, g = prep.p[:, prep.fg], prep.g[:, prep.fg]
        # Dice(p K, g K) and Dice(p (1 - K), g (1 - K)) from the soft-Dice sums. K, g and the mask are 0/1, so
        # folding them into one weight per sum (without gradient) gives exactly the same products, with a
        # single multiplication of p per sum: tp = sum(p g K m), P = sum(p K m), G = sum(g K m), alike for 1 - K.
        with torch.no_grad():
            gk = g * k
            g_in = g - gk
            k_in = 1.0 - k
            if prep.m is not None:
                gk, g_in, k, k_in = gk * prep.m, g_in * prep.m, k * prep.m, k_in * prep.m
        bd = self.batch_dice
        sums_contour = [spatial_sum(p * gk, bd), spatial_sum(p * k, bd), spatial_sum(gk, bd)]
        sums_inner = [spatial_sum(p * g_in, bd), spatial_sum(p * k_in, bd), spatial_sum(g_in, bd)]
        if self.ddp and bd:
            sums_contour = [sum_across_ranks(t) for t in sums_contour]
            sums_inner = [sum_across_ranks(t) for t in sums_inner]
        d_contour = dice_from_sums(*sums_contour, self.smooth)
        d_inner = dice_from_sums(*sums_inner, self.smooth)
        return self.lam * (1.0 - d_contour.mean()) + (1.0 - self.lam) * (1.0 - d_inner.mean())

    def compute(self, prep: Prepared, contour: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        return self.sdl(prep, contour)

    def extra_repr(self) -> str:
        return (f"{self._maps_repr()}, lam={self.lam}, batch_dice={self.batch_dice}, smooth={self.smooth}, "
                f"{super().extra_repr()}")


class CWCDLoss(SeparableDiceLoss):
    """CWCD = ``weight_ce * CWCE + weight_dice * SDL``; forward takes ``contour=`` and ``band=``."""

    map_names = ("contour", "band")

    def __init__(self, weight_ce: float = 1.0, weight_dice: float = 1.0, kernel_size=3, iterations: int = 6,
                 contour_weight: float = 1.0, lam: float = 0.5, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(kernel_size, iterations, lam, sigmoid, ignore_index, batch_dice, smooth, ddp)
        self.weight_ce = check_number("weight_ce", weight_ce, 0)
        self.weight_dice = check_number("weight_dice", weight_dice, 0)
        self.contour_weight = check_number("contour_weight", contour_weight, 0)

    def compute(self, prep: Prepared, contour: Optional[torch.Tensor] = None, band: Optional[torch.Tensor] = None,
                **maps) -> torch.Tensor:
        if contour is None and band is None:  # on the fly: build both maps with the shared work done once
            contour, band = contours_and_band(self._target(prep), prep.x.shape[1], prep.sigmoid, self.kernel_size,
                                              self.iterations, prep.ignored)
        cwce = contour_weighted_ce(prep, self.band_for(prep, band), self.contour_weight)
        return self.weight_ce * cwce + self.weight_dice * self.sdl(prep, contour)

    def extra_repr(self) -> str:
        return (f"weight_ce={self.weight_ce}, weight_dice={self.weight_dice}, "
                f"contour_weight={self.contour_weight}, {super().extra_repr()}")

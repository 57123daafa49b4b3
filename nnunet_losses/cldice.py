"""Soft clDice (Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure
Segmentation", CVPR 2021, arXiv 2003.07311; the authors' code jocpae/clDice).

Soft skeletons S(.) by iterated min/max pooling (:func:`nnunet_losses.morphology.torch_ops.soft_skeleton`,
``iterations`` = 3). Per class c (and per sample unless ``batch_dice``), over the counted voxels m:

    Tprec_c = (sum(S(p_c) g_c m) + smooth) / (sum(S(p_c) m) + smooth)
    Tsens_c = (sum(S(g_c) p_c m) + smooth) / (sum(S(g_c) m) + smooth)
    clDice_c = 2 Tprec_c Tsens_c / (Tprec_c + Tsens_c)
    loss = (1 - alpha) (1 - mean_c Dice_c) + alpha (1 - mean_c clDice_c)

Dice_c is the soft-Dice core of :mod:`nnunet_losses.dice`. alpha = 0.5, iterations = 3 and
smooth = 1 are the authors' code's defaults. docs/losses.md, section 3.10.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_number
from ._core import LossBase, Prepared, spatial_sum
from ._distributed import sum_across_ranks
from .dice import DENOMINATOR_CLIP, DiceOptions, soft_dice
from .morphology.torch_ops import soft_skeleton

__all__ = ["SoftclDiceLoss"]


class SoftclDiceLoss(LossBase, DiceOptions):
    """Soft clDice: ``(1 - alpha) (1 - mean_c Dice_c) + alpha (1 - mean_c clDice_c)``.

    ``clDice_c`` is the harmonic mean of the topology precision ``Tprec_c`` (soft skeleton of the
    prediction inside the target) and the topology sensitivity ``Tsens_c`` (soft skeleton of the
    target inside the prediction); soft skeletons by ``iterations`` rounds of min/max pooling
    (:func:`nnunet_losses.morphology.torch_ops.soft_skeleton`). Shit et al., "clDice", CVPR 2021
    (arXiv 2003.07311); docs/losses.md, section 3.10.

    Args:
        alpha: weight of the clDice term (the soft Dice gets ``1 - alpha``), in [0, 1]. Default: ``0.5``.
        iterations: soft-skeleton iterations (about the largest radius of the structures, in voxels),
            a whole number >= 0. Default: ``3``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term and
            are in no class for both soft skeletons; an integer, or None when every voxel counts.
            Default: ``None``.
        include_background: include class 0 in both means (softmax mode only). Default: ``False``.
        batch_dice: one Dice and one clDice per class over the whole batch instead of one per
            (sample, class). Default: ``False``.
        smooth: added to the numerators and denominators of Dice, Tprec and Tsens, >= 0. Default: ``1.0``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients) before the ratios.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import SoftclDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = SoftclDiceLoss(iterations=8)  # about the square's radius
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # (1 - 257/769) / 2 + (1 - 0.75) / 2: Tprec = 1, Tsens = 3/5
        0.4579
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, alpha: float = 0.5, iterations: int = 3, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, include_background: bool = False, batch_dice: bool = False,
                 smooth: float = 1.0, ddp: bool = False):
        super().__init__(sigmoid, ignore_index)
        self._init_dice_options(include_background, batch_dice, smooth, ddp)
        self.alpha = check_number("alpha", alpha, 0, 1)
        self.iterations = check_number("iterations", iterations, 0, integer=True)

    def cldice_per_class(self, prep: Prepared) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        p, g, m = prep.p_channels(ch), prep.g[:, ch], prep.m
        if m is not None:  # ignored voxels are in no class for both skeletons: their logits have no influence
            p, g = p * m, g * m
        skel_p = soft_skeleton(p, self.iterations)
        with torch.no_grad():
            skel_g = soft_skeleton(g, self.iterations)
        if m is not None:
            skel_p, skel_g = skel_p * m, skel_g * m
        bd = self.batch_dice
        sums = [spatial_sum(skel_p * g, bd), spatial_sum(skel_p, bd), spatial_sum(skel_g * p, bd),
                spatial_sum(skel_g, bd)]
        if self.ddp and bd:
            sums = [sum_across_ranks(t) for t in sums]
        s = self.smooth
        tprec = (sums[0] + s) / torch.clamp(sums[1] + s, min=DENOMINATOR_CLIP)
        tsens = (sums[2] + s) / torch.clamp(sums[3] + s, min=DENOMINATOR_CLIP)
        return 2.0 * tprec * tsens / torch.clamp(tprec + tsens, min=DENOMINATOR_CLIP)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        dice = soft_dice(prep.p_channels(ch), prep.g[:, ch], prep.m, self.batch_dice, self.smooth, ddp=self.ddp)
        return (1.0 - self.alpha) * (1.0 - dice.mean()) + self.alpha * (1.0 - self.cldice_per_class(prep).mean())

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, iterations={self.iterations}, {self._dice_repr()}, {super().extra_repr()}"

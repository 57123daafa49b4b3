"""Generalised Dice loss (Sudre et al., "Generalised Dice overlap as a deep learning loss function
for highly unbalanced segmentations", DLMIA 2017).

    w_c = 1 / (sum g_c)^2
    GDL = 1 - (2 sum_c w_c sum(p_c g_c) + s) / (sum_c w_c sum(p_c + g_c) + s),  mean over samples

A class without ground truth (infinite weight) gets the largest finite weight of its row (per
sample, or of the batch with batch_dice); a row with no ground truth at all gets weight 0, so the
ratio is s / s = 1 and the loss 0 (the same choice as MONAI's ``w_type="square"`` handling).
include_background defaults to True here, as in Sudre et al.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._core import Prepared
from .dice import DENOMINATOR_CLIP, SMOOTH, SoftDiceLoss, dice_sums


class GeneralizedDiceLoss(SoftDiceLoss):
    """Generalised Dice loss (GDL) with squared inverse-volume class weights.

    Per sample (or over the batch with ``batch_dice``), over the classes c of the mean::

        w_c = 1 / G_c^2,  GDL = 1 - (2 sum_c w_c tp_c + s) / max(sum_c w_c (P_c + G_c) + s, 1e-8)

    with ``tp_c = sum(p_c g_c m)``, ``P_c = sum(p_c m)``, ``G_c = sum(g_c m)``; the loss is the mean over
    samples. A class without ground truth gets the largest finite weight of its row; a row without any
    ground truth gets weight 0 (loss 0). Sudre et al., "Generalised Dice overlap as a deep learning loss
    function for highly unbalanced segmentations", DLMIA 2017; docs/losses.md, section 3.6.

    Args:
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 (softmax mode only; in sigmoid mode every channel counts).
            Default: ``True`` (as Sudre et al.).
        batch_dice: one ratio over the whole batch instead of one per sample. Default: ``False``.
        smooth: added to the numerator and the denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import GeneralizedDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = GeneralizedDiceLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # weights 1/768^2 and 1/256^2: GD = 0.375 (plus smooth)
        0.6246
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, sigmoid: bool = False, ignore_index: Optional[int] = None, include_background: bool = True,
                 batch_dice: bool = False, smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        tp, sp, sg = dice_sums(prep.p_channels(ch), prep.g[:, ch], prep.m, self.batch_dice, ddp=self.ddp)
        sg_d = sg.detach()
        w = 1.0 / (sg_d * sg_d)
        finite = torch.isfinite(w)
        row_max = torch.where(finite, w, torch.zeros_like(w)).amax(1, keepdim=True)
        w = torch.where(finite, w, row_max)
        num = 2.0 * (w * tp).sum(1) + self.smooth
        den = torch.clamp((w * (sp + sg)).sum(1) + self.smooth, min=DENOMINATOR_CLIP)
        return 1.0 - (num / den).mean()

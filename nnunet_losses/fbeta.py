"""Asymmetric F-beta loss (Hashemi et al., IEEE Access 2018, arXiv 1803.11078) and Tversky loss
(Salehi et al., MLMI 2017). Both are computed from the soft-Dice core's sums
``tp = sum(p g)``, ``P = sum(p)``, ``G = sum(g)``: ``fp = sum(p (1 - g)) = P - tp``,
``fn = sum((1 - p) g) = G - tp``.

    F_beta = ((1 + b^2) tp + s) / ((1 + b^2) tp + b^2 fn + fp + s)
    TI     = (tp + s) / (tp + alpha fp + beta fn + s)

loss = 1 - mean over classes (and samples unless batch_dice). beta > 1 weighs recall (fewer false
negatives) above precision; the paper's choice for MS lesions is beta = 1.5. Tversky's alpha
weighs false positives and beta false negatives (defaults 0.3 / 0.7).
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_number
from ._core import Prepared
from .dice import DENOMINATOR_CLIP, SMOOTH, SoftDiceLoss, dice_sums


class AsymmetricFbetaLoss(SoftDiceLoss):
    """Asymmetric F-beta loss: ``1 - mean_c F_beta,c`` (mean over samples too unless ``batch_dice``).

    ``F_beta = ((1 + b^2) tp + s) / max((1 + b^2) tp + b^2 fn + fp + s, 1e-8)`` per class, from the soft
    sums ``tp = sum(p g m)``, ``fp = sum(p m) - tp``, ``fn = sum(g m) - tp``. Hashemi et al., "Asymmetric
    loss functions and deep densely connected networks for highly imbalanced medical image
    segmentation", IEEE Access 2018 (arXiv 1803.11078); docs/losses.md, section 3.4.

    Args:
        beta: b, > 0; above 1 weighs recall (fewer false negatives) above precision, 1 gives the Dice
            loss. Default: ``1.5`` (the paper's choice for MS lesions).
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 (softmax mode only; in sigmoid mode every channel counts).
            Default: ``False``.
        batch_dice: one score per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerator and the denominator of every ratio, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import AsymmetricFbetaLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = AsymmetricFbetaLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # F = 3.25 * 128 / (3.25 * 128 + 2.25 * 128 + 384)
        0.6176
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, beta: float = 1.5, sigmoid: bool = False, ignore_index: Optional[int] = None,
                 include_background: bool = False, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.beta = check_number("beta", beta, 0, low_inclusive=False)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        tp, sp, sg = dice_sums(prep.p_channels(ch), prep.g[:, ch], prep.m, self.batch_dice, ddp=self.ddp)
        b2 = self.beta ** 2
        fp, fn = sp - tp, sg - tp
        f = ((1 + b2) * tp + self.smooth) / torch.clamp((1 + b2) * tp + b2 * fn + fp + self.smooth,
                                                        min=DENOMINATOR_CLIP)
        return 1.0 - f.mean()

    def extra_repr(self) -> str:
        return f"beta={self.beta}, {super().extra_repr()}"


class TverskyLoss(SoftDiceLoss):
    """Tversky loss: ``1 - mean_c TI_c`` (mean over samples too unless ``batch_dice``).

    ``TI = (tp + s) / max(tp + alpha fp + beta fn + s, 1e-8)`` per class, with the soft sums of
    :class:`AsymmetricFbetaLoss`. Salehi et al., "Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", MLMI 2017; docs/losses.md, section 3.4.

    Args:
        alpha: weight of the false positives, >= 0. Default: ``0.3``.
        beta: weight of the false negatives, >= 0 (alpha = beta = 0.5 gives the Dice loss).
            Default: ``0.7``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 (softmax mode only; in sigmoid mode every channel counts).
            Default: ``False``.
        batch_dice: one score per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerator and the denominator of every ratio, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import TverskyLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = TverskyLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # TI = 128 / (128 + 0.3 * 384 + 0.7 * 128)
        0.6154
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, include_background: bool = False, batch_dice: bool = False,
                 smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.alpha = check_number("alpha", alpha, 0)
        self.beta = check_number("beta", beta, 0)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        tp, sp, sg = dice_sums(prep.p_channels(ch), prep.g[:, ch], prep.m, self.batch_dice, ddp=self.ddp)
        fp, fn = sp - tp, sg - tp
        ti = (tp + self.smooth) / torch.clamp(tp + self.alpha * fp + self.beta * fn + self.smooth,
                                              min=DENOMINATOR_CLIP)
        return 1.0 - ti.mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, {super().extra_repr()}"

"""Combo loss (Taghanaki et al., "Combo Loss: Handling Input and Output Imbalance in Multi-Organ
Segmentation", CMIG 2019, arXiv 1805.02798).

    Combo = alpha * WCE + (1 - alpha) * (1 - mean Dice)
    WCE   = mean_{i counted, c} -[beta g_ic log p_ic + (1 - beta)(1 - g_ic) log(1 - p_ic)]

beta > 0.5 penalises false negatives more, beta < 0.5 false positives. ``log(1 - p)`` is computed
stably (softmax: logsumexp over the other classes minus logsumexp over all; sigmoid: logsigmoid(-x)).

Our choice: the paper's formula, for any number of classes. The authors' public code negates only
the foreground term (so it rewards false positives) and is binary only; we do not copy that.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._checks import check_number
from ._core import Prepared, masked_mean, sum_log1m_p_other_classes
from .dice import SMOOTH, SoftDiceLoss


class ComboLoss(SoftDiceLoss):
    """Combo loss: ``alpha * WCE + (1 - alpha) * (1 - mean Dice)``.

    ``WCE = mean_{i counted, c} -[beta g_ic log p_ic + (1 - beta)(1 - g_ic) log(1 - p_ic)]`` (mean over
    the counted voxels and all C channels, background included); the Dice term is
    :class:`SoftDiceLoss`. Taghanaki et al., "Combo Loss", CMIG 2019 (arXiv 1805.02798);
    docs/losses.md, section 3.2.

    Args:
        alpha: weight of WCE (the Dice term gets ``1 - alpha``), in [0, 1]. Default: ``0.5``.
        beta: weight of the positive part of WCE (``1 - beta`` for the negative part), in [0, 1]; above
            0.5 penalises false negatives more, below 0.5 false positives. Default: ``0.5``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only; WCE always covers every
            channel). Default: ``False``.
        batch_dice: one Dice per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the Dice numerator and denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import ComboLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = ComboLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # 0.5 * WCE (= 0.5 ln 2) + 0.5 * (1 - Dice_1)
        0.5066
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, include_background: bool = False, batch_dice: bool = False,
                 smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.alpha = check_number("alpha", alpha, 0, 1)
        self.beta = check_number("beta", beta, 0, 1)

    def weighted_ce(self, prep: Prepared) -> torch.Tensor:
        if prep.sigmoid:
            wce = -(self.beta * prep.g * prep.logp + (1.0 - self.beta) * (1.0 - prep.g) * F.logsigmoid(-prep.x))
            return masked_mean(wce, prep.m)
        # softmax: g is one-hot, so the sum over channels is beta log p_y + (1 - beta) sum_{c != y} log(1 - p_c)
        # (a gather instead of products with the one-hot target); mean over voxels and channels
        logp_y = prep.logp.gather(1, prep.labels)
        if prep.x.shape[1] == 2:  # two classes: sum_{c != y} log(1 - p_c) = log p_y, so WCE is CE / 2
            per_voxel = -logp_y
        else:
            per_voxel = -(self.beta * logp_y + (1.0 - self.beta) * sum_log1m_p_other_classes(prep, logp_y))
        return masked_mean(per_voxel, prep.m) / prep.x.shape[1]

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return self.alpha * self.weighted_ce(prep) + (1.0 - self.alpha) * super().compute(prep)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, {super().extra_repr()}"

"""top-K Dice loss (Hosseini et al., "topK Dice loss", BMVC 2024) and CE + top-K Dice.

Hardness of voxel i = its cross-entropy (sigmoid: BCE summed over channels), detached. Per sample
the ``K_b = ceil(k / 100 * n_counted_b)`` hardest counted voxels are kept (ties broken
arbitrarily, exactly K_b voxels). On the kept voxels only, per class:

    Dice_c = (2 sum(p g) + s) / max(sum(g^2) + sum(p^2) + s, 1e-8),   loss = 1 - mean Dice_c

CETopKDice = weight_ce * CE(all counted voxels) + weight_dice * TopKDice. ``k`` is a percentage in
(0, 100]; k = 100 gives the squared-denominator soft Dice on every counted voxel.
Selection uses one ``torch.topk`` per batch (k of the largest sample), no sort per class.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional

import torch

from ._checks import check_number
from ._core import LABEL_SUMS_MIN_CLASSES, Prepared, bce_map, cross_entropy_map, masked_mean, spatial_sum
from ._distributed import sum_across_ranks
from .dice import SMOOTH, SoftDiceLoss, dice_from_sums, soft_dice


def hardest_voxels(hardness: torch.Tensor, counted: Optional[torch.Tensor], k_percent: float) -> torch.Tensor:
    """Float mask (B, 1, *sp) of the ceil(k% * n_counted) hardest counted voxels of each sample."""
    b = hardness.shape[0]
    h = hardness.detach().reshape(b, -1)
    # K = ceil(k/100 * n) in exact integer arithmetic (7% of 100 must be 7, not 8)
    frac = Fraction(k_percent).limit_denominator(10 ** 6) / 100
    num, den = frac.numerator, frac.denominator
    # one topk with the largest possible K (no device sync, compile-friendly); per sample keep its own K_b
    k_max = min(h.shape[1], -(-h.shape[1] * num // den))
    if counted is None:
        k_b = torch.full((b,), k_max, device=h.device, dtype=torch.long)
    else:
        c = counted.reshape(b, -1) > 0
        h = torch.where(c, h, torch.full_like(h, float("-inf")))
        k_b = torch.div(c.sum(1) * num + (den - 1), den, rounding_mode="floor").clamp_max(h.shape[1])
    keep = torch.zeros_like(h)
    if k_max > 0:
        # sorted only when samples keep different counts (the first K_b of each row); unsorted is faster
        idx = torch.topk(h, k_max, dim=1, sorted=counted is not None).indices
        take = (torch.arange(k_max, device=h.device)[None, :] < k_b[:, None]).to(h.dtype)
        keep.scatter_(1, idx, take)
    return keep.reshape(hardness.shape[0], 1, *hardness.shape[2:])


class TopKDiceLoss(SoftDiceLoss):
    """top-K Dice: ``1 - mean_c Dice_c`` on the k% hardest counted voxels of each sample.

    Hardness = the voxel's CE (sigmoid mode: BCE summed over the channels), detached; per sample the
    ``ceil(k / 100 * n_counted)`` hardest counted voxels are kept (ties broken arbitrarily). On them
    ``Dice_c = (2 sum(p_c g_c) + s) / max(sum(g_c^2) + sum(p_c^2) + s, 1e-8)``. Hosseini et al., "topK
    Dice loss", BMVC 2024; docs/losses.md, section 3.5.

    Args:
        k: percentage of the counted voxels of each sample kept (the hardest ones), in (0, 100]; 100
            gives the squared-denominator soft Dice on every counted voxel. Default: ``10``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only; in sigmoid mode every
            channel counts). Default: ``False``.
        batch_dice: one Dice per class over the kept voxels of the whole batch instead of one per
            (sample, class) (the voxels are still chosen per sample).
            Default: ``False``.
        smooth: added to the Dice numerator and denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import TopKDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = TopKDiceLoss(k=100)
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # k = 100 %: every voxel; Dice_1 = 2 * 128 / (sum p^2 + 256) = 0.5
        0.5
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, k: float = 10, sigmoid: bool = False, ignore_index: Optional[int] = None,
                 include_background: bool = False, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.k = check_number("k", k, 0, 100, low_inclusive=False)

    def hardness(self, prep: Prepared) -> torch.Tensor:
        if prep.sigmoid:
            return bce_map(prep).sum(1, keepdim=True)
        return cross_entropy_map(prep)

    def topk_dice(self, prep: Prepared, hardness: Optional[torch.Tensor] = None,
                  logp_y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.hardness(prep) if hardness is None else hardness
        keep = hardest_voxels(h, prep.m, self.k)
        ch = prep.dice_channels(self.include_background)
        if prep.sigmoid or prep.x.shape[1] <= LABEL_SUMS_MIN_CLASSES:
            dice = soft_dice(prep.p_channels(ch), prep.g[:, ch], keep, self.batch_dice, self.smooth, square=True,
                             ddp=self.ddp)
        else:
            dice = dice_from_sums(*self._label_sums(prep, keep, ch, logp_y), self.smooth)
        return 1.0 - dice.mean()

    def _label_sums(self, prep: Prepared, keep: torch.Tensor, ch: slice, logp_y: Optional[torch.Tensor]):
        """``(sum(p g K), sum(p^2 K), sum(g K))`` per (sample, class) without the one-hot target (softmax mode):
        ``g_c`` is 1 only at voxels labelled c, so the sums with g are per-voxel values at the label added
        into (B, C) bins by ``scatter_add``; only ``sum(p_c^2 K)`` needs every class. K (the kept voxels)
        is 0 at voxels that do not count."""
        b, c = prep.x.shape[:2]
        if logp_y is None:
            logp_y = prep.logp.gather(1, prep.labels)
        idx = prep.labels.reshape(b, -1)
        zeros = torch.zeros((b, c), dtype=keep.dtype, device=keep.device)
        tp = zeros.scatter_add(1, idx, (logp_y.exp() * keep).reshape(b, -1))[:, ch]
        sg = zeros.scatter_add(1, idx, keep.reshape(b, -1))[:, ch]
        p = prep.p_channels(ch)
        sp = spatial_sum(p * p * keep)
        if self.batch_dice:
            tp, sp, sg = tp.sum(0, keepdim=True), sp.sum(0, keepdim=True), sg.sum(0, keepdim=True)
            if self.ddp:
                tp, sp, sg = (sum_across_ranks(t) for t in (tp, sp, sg))
        return tp, sp, sg

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return self.topk_dice(prep)

    def extra_repr(self) -> str:
        return f"k={self.k}, {super().extra_repr()}"


class CETopKDiceLoss(TopKDiceLoss):
    """CE + top-K Dice: ``weight_ce * CE + weight_dice * TopKDice`` (the paper's training loss).

    CE over all counted voxels as in :class:`DiceCELoss`; TopKDice as :class:`TopKDiceLoss`, with the same
    per-voxel CE as hardness. Hosseini et al., BMVC 2024; docs/losses.md, section 3.5.

    Args:
        k: percentage of the counted voxels of each sample kept (the hardest ones), in (0, 100]; 100
            gives the squared-denominator soft Dice on every counted voxel. Default: ``10``.
        weight_ce: weight of the CE term, >= 0. Default: ``1.0``.
        weight_dice: weight of the top-K Dice term, >= 0. Default: ``1.0``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only; in sigmoid mode every
            channel counts). Default: ``False``.
        batch_dice: one Dice per class over the kept voxels of the whole batch instead of one per
            (sample, class) (the voxels are still chosen per sample).
            Default: ``False``.
        smooth: added to the Dice numerator and denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import CETopKDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = CETopKDiceLoss(k=100, weight_dice=2.0)
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # ln 2 + 2 * (1 - 0.5)
        1.6931
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, k: float = 10, weight_ce: float = 1.0, weight_dice: float = 1.0, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, include_background: bool = False, batch_dice: bool = False,
                 smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(k, sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.weight_ce = check_number("weight_ce", weight_ce, 0)
        self.weight_dice = check_number("weight_dice", weight_dice, 0)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        if prep.sigmoid:
            bce = bce_map(prep)
            ce = bce.mean(1, keepdim=True)
            hardness = bce.sum(1, keepdim=True)
            logp_y = None
        else:
            ce = hardness = cross_entropy_map(prep)
            logp_y = -ce
        ce_mean = masked_mean(ce, prep.m)
        return self.weight_ce * ce_mean + self.weight_dice * self.topk_dice(prep, hardness, logp_y)

    def extra_repr(self) -> str:
        return f"weight_ce={self.weight_ce}, weight_dice={self.weight_dice}, {super().extra_repr()}"

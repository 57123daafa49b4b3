"""Skeleton Recall (Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving and Resource
Efficient Segmentation of Thin Tubular Structures", ECCV 2024, arXiv 2404.03010; the authors' code
MIC-DKFZ/Skeleton-Recall).

With T_c the tubed skeleton of foreground class c (sigmoid mode: of region c;
:func:`nnunet_losses.morphology.skeletons.tubed_skeleton`) and the counted-voxel mask m, per class (and per
sample unless ``batch_dice``):

    recall_c = (sum(p_c T_c m) + smooth) / max(sum(T_c m) + smooth, 1e-8)
    SR       = 1 - mean_c recall_c
    DiceCESkeletonRecall = weight_ce * CE + weight_dice * (1 - mean Dice) + weight_skeleton * SR

``SR`` is the authors' ``-mean recall`` plus 1 (the same gradient; our losses are >= 0, as our soft
Dice is nnU-Net's plus 1). The background is never included. With ``skeleton=None`` the tubed
skeletons are computed from the target (CPU, scikit-image, per sample) and moved to its device:
the authors' behaviour of computing it from the augmented target. docs/losses.md, section 3.9.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ._checks import check_map, check_number
from ._core import LossBase, Prepared, as_dtype, spatial_sum
from ._distributed import sum_across_ranks
from .dice import DENOMINATOR_CLIP, SMOOTH, DiceCELoss, DiceOptions

__all__ = ["SkeletonRecallLoss", "DiceCESkeletonRecallLoss", "tubed_skeletons"]


@torch.compiler.disable  # NumPy / scikit-image on the CPU: outside any compiled graph
@torch.no_grad()
def tubed_skeletons(target: torch.Tensor, num_classes: Optional[int] = None, sigmoid: bool = False,
                    ignored: Optional[torch.Tensor] = None, dilations: int = 2) -> torch.Tensor:
    """Tubed skeleton of every foreground class / region of a batch, bool (B, C_fg, *sp) on ``target``'s device.

    softmax: ``target`` (B, 1, *sp) labels 0..num_classes-1; sigmoid: (B, C, *sp) binary regions.
    ``ignored`` (B, 1, *sp) voxels belong to no class (background for the skeleton). Computed per
    sample and channel on the CPU with :func:`nnunet_losses.morphology.skeletons.tubed_skeleton`.
    """
    from .morphology.skeletons import tubed_skeleton

    t = target.detach()
    if not sigmoid:
        if num_classes is None:
            raise ValueError("num_classes is needed to build class masks from a label map")
        t = (t.long() == torch.arange(1, num_classes, device=t.device).view(1, -1, *([1] * (t.ndim - 2))))
    else:
        t = t > 0.5
    if ignored is not None:
        t = t & ~ignored.bool()
    arr = t.cpu().numpy()
    out = np.zeros(arr.shape, dtype=bool)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            if arr[i, c].any():
                out[i, c] = tubed_skeleton(arr[i, c], dilations)
    return torch.from_numpy(out).to(target.device)


class _SkeletonRecall(DiceOptions):
    """The Skeleton Recall term shared by :class:`SkeletonRecallLoss` and :class:`DiceCESkeletonRecallLoss`."""

    def _init_skeleton(self, dilations) -> None:
        self.dilations = check_number("dilations", dilations, 0, integer=True)

    def skeleton_for(self, prep: Prepared, skeleton: Optional[torch.Tensor]) -> torch.Tensor:
        b, c = prep.x.shape[:2]
        c_fg = c if prep.sigmoid else c - 1
        if skeleton is None:
            target = prep._target if prep.sigmoid else prep.labels
            skeleton = tubed_skeletons(target, c, prep.sigmoid, prep.ignored, self.dilations)
        else:
            skeleton = check_map("skeleton", skeleton, (b, c_fg, *prep.x.shape[2:]), binary=True)
        return as_dtype(skeleton, prep.x.dtype, prep.x.device)

    def recall_per_class(self, prep: Prepared, skeleton: Optional[torch.Tensor]) -> torch.Tensor:
        """``(sum(p T m) + smooth) / max(sum(T m) + smooth, 1e-8)`` per (sample, class) or (1, class)."""
        t = self.skeleton_for(prep, skeleton)
        if prep.m is not None:
            t = t * prep.m
        tp = spatial_sum(prep.p_fg * t, self.batch_dice)
        st = spatial_sum(t, self.batch_dice)
        if self.ddp and self.batch_dice:
            tp, st = sum_across_ranks(tp), sum_across_ranks(st)
        return (tp + self.smooth) / torch.clamp(st + self.smooth, min=DENOMINATOR_CLIP)

    def skeleton_recall(self, prep: Prepared, skeleton: Optional[torch.Tensor]) -> torch.Tensor:
        return 1.0 - self.recall_per_class(prep, skeleton).mean()


class SkeletonRecallLoss(LossBase, _SkeletonRecall):
    """Skeleton Recall: ``1 - mean_c recall_c``, the soft recall of the tubed skeleton of each foreground class.

    ``recall_c = (sum(p_c T_c m) + smooth) / max(sum(T_c m) + smooth, 1e-8)`` per foreground class c
    (sigmoid mode: every region) and per sample unless ``batch_dice``; T_c is the tubed skeleton
    (scikit-image skeleton, ``dilations`` cross dilations, restricted to the class). Kirchhoff et al.,
    ECCV 2024 (arXiv 2404.03010); docs/losses.md, section 3.9.
    ``forward(logits, target, mask=None, skeleton=None)``: a precomputed binary skeleton
    (B, C_fg, *sp), or None to compute it from the target (CPU, per sample).

    Args:
        dilations: cross (connectivity-1) dilations of the skeleton, a whole number >= 0. Default: ``2``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term and
            belong to no class for the skeleton; an integer, or None when every voxel counts.
            Default: ``None``.
        batch_dice: one recall per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerator and the denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients) before the ratio.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import SkeletonRecallLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = SkeletonRecallLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # 1 - soft recall of the tubed skeleton (0.5)
        0.5
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    map_names = ("skeleton",)

    def __init__(self, dilations: int = 2, sigmoid: bool = False, ignore_index: Optional[int] = None,
                 batch_dice: bool = False, smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index)
        self._init_dice_options(False, batch_dice, smooth, ddp)
        self._init_skeleton(dilations)

    def compute(self, prep: Prepared, skeleton: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        return self.skeleton_recall(prep, skeleton)

    def extra_repr(self) -> str:
        return (f"dilations={self.dilations}, batch_dice={self.batch_dice}, smooth={self.smooth}, "
                f"{super().extra_repr()}")


class DiceCESkeletonRecallLoss(DiceCELoss, _SkeletonRecall):
    """nnU-Net's CE + Dice plus Skeleton Recall: ``weight_ce * CE + weight_dice * (1 - mean Dice) +
    weight_skeleton * SR`` on one softmax (the authors' training loss, ``DC_SkelREC_and_CE_loss``).

    CE and Dice as in :class:`DiceCELoss`, SR as in :class:`SkeletonRecallLoss` (same ``batch_dice``,
    ``smooth`` and ``ddp``). Kirchhoff et al., ECCV 2024 (arXiv 2404.03010); docs/losses.md, section 3.9.
    ``forward(logits, target, mask=None, skeleton=None)``.

    Args:
        weight_ce: weight of the CE term, >= 0. Default: ``1.0``.
        weight_dice: weight of the Dice term, >= 0. Default: ``1.0``.
        weight_skeleton: weight of the Skeleton Recall term, >= 0. Default: ``1.0``.
        dilations: cross (connectivity-1) dilations of the skeleton, a whole number >= 0. Default: ``2``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only; never in SR).
            Default: ``False``.
        batch_dice: one Dice / recall per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the numerators and denominators of Dice and recall, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import DiceCESkeletonRecallLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = DiceCESkeletonRecallLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # ln 2 + (1 - 1/3) + (1 - 0.5)
        1.8598
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    map_names = ("skeleton",)

    def __init__(self, weight_ce: float = 1.0, weight_dice: float = 1.0, weight_skeleton: float = 1.0,
                 dilations: int = 2, sigmoid: bool = False, ignore_index: Optional[int] = None,
                 include_background: bool = False, batch_dice: bool = False, smooth: float = SMOOTH,
                 ddp: bool = False):
        super().__init__(weight_ce, weight_dice, sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.weight_skeleton = check_number("weight_skeleton", weight_skeleton, 0)
        self._init_skeleton(dilations)

    def compute(self, prep: Prepared, skeleton: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        loss = super().compute(prep)
        if self.weight_skeleton:
            loss = loss + self.weight_skeleton * self.skeleton_recall(prep, skeleton)
        return loss

    def extra_repr(self) -> str:
        return f"weight_skeleton={self.weight_skeleton}, dilations={self.dilations}, {super().extra_repr()}"

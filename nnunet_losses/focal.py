"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) and Focal + Dice.

softmax mode:  FL_i = -alpha_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}
sigmoid mode:  FL_ic = -alpha_t (1 - p_t)^gamma log p_t,  p_t = p if g = 1 else 1 - p,
               alpha_t = alpha if g = 1 else 1 - alpha (alpha None: 1)
Mean over counted voxels (and channels in sigmoid mode). Softmax mode: the loss is a function of
``log p_y`` alone, evaluated on (B, 1, *sp) with its derivative written out (finite at ``p_y = 1``
for any gamma, logits of 1e4 included); sigmoid mode: ``exp(gamma * log(1 - p))`` with
``log(1 - p) = logsigmoid(-x)``. gamma = 0 and alpha = None give plain CE.
FocalDice = Focal + (1 - mean Dice) (Dice options as :class:`SoftDiceLoss`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ._checks import check_class_weights, check_number
from ._core import LossBase, Prepared, masked_mean
from .dice import SMOOTH, SoftDiceLoss


def _check_alpha(alpha, sigmoid: bool):
    if alpha is None:
        return None
    if sigmoid:
        return check_number("alpha", alpha, 0, 1)
    if isinstance(alpha, (int, float)):
        raise ValueError("softmax mode: alpha must be None or one weight per class (a list of length C)")
    return check_class_weights("alpha", alpha)


class _FocalOfLogPt(torch.autograd.Function):
    """``-(1 - p)^gamma log p`` per voxel from ``log p`` of the true class, (B, 1, *sp).

    The loss depends on the logits only through ``log p_y``, so its gradient is
    ``dFL/dlog p_y * d log p_y / dx``: autograd's gather / log-softmax backward (as for CE) times
    ``dFL/dlog p_y = (1 - p)^gamma (gamma p log p / (1 - p) - 1)``, written out here so it stays finite
    at ``p = 1`` for any gamma (``log p / (1 - p) -> -1``). No (B, C, *sp) work beyond CE's.
    """

    @staticmethod
    def forward(ctx, logpt: torch.Tensor, gamma: float) -> torch.Tensor:
        u = logpt.exp().neg_().add_(1.0).clamp_min_(0.0)  # 1 - p
        w = u.pow(gamma)
        ctx.save_for_backward(logpt, u, w)
        ctx.gamma = gamma
        return -w * logpt

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logpt, u, w = ctx.saved_tensors
        pos = u > 0
        one = torch.ones((), dtype=u.dtype, device=u.device)
        ratio = torch.where(pos, logpt / torch.where(pos, u, one), -one)  # log p / (1 - p)
        return grad * w * (ctx.gamma * (1.0 - u) * ratio - 1.0), None


def focal_term(prep: Prepared, gamma: float, alpha) -> torch.Tensor:
    """Mean focal loss over counted voxels (see module docstring)."""
    if prep.sigmoid:
        pos = prep.g > 0.5
        logpt = torch.where(pos, prep.logp, F.logsigmoid(-prep.x))
        log1m_pt = torch.where(pos, F.logsigmoid(-prep.x), prep.logp)
        fl = -torch.exp(gamma * log1m_pt) * logpt if gamma else -logpt
        if alpha is not None:
            fl = fl * torch.where(pos, torch.full_like(fl, alpha), torch.full_like(fl, 1.0 - alpha))
        return masked_mean(fl, prep.m)
    logpt = prep.logp.gather(1, prep.labels)
    fl = _FocalOfLogPt.apply(logpt, gamma) if gamma else -logpt
    if alpha is not None:
        if len(alpha) != prep.x.shape[1]:
            raise ValueError(f"alpha has {len(alpha)} class weights but the logits have C={prep.x.shape[1]} channels")
        a = torch.tensor(alpha, dtype=prep.x.dtype, device=prep.x.device)
        fl = fl * a[prep.labels]
    return masked_mean(fl, prep.m)


class FocalLoss(LossBase):
    """Focal loss, mean over the counted voxels (sigmoid mode: and the channels).

    Softmax mode: ``FL_i = -alpha_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}``. Sigmoid mode, per channel:
    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t = p`` where g = 1 and ``1 - p`` where g = 0,
    ``alpha_t = alpha`` resp. ``1 - alpha`` (1 when alpha is None). Lin et al., "Focal Loss for Dense
    Object Detection", ICCV 2017; docs/losses.md, section 3.7.

    Args:
        gamma: focusing exponent, >= 0 (0 with ``alpha=None`` gives plain CE). Default: ``2.0``.
        alpha: class weights. Softmax mode: None (no weighting) or one weight >= 0 per class (a sequence
            of length C, checked against the logits at the call). Sigmoid mode: None or the weight of the
            positives in [0, 1] (``1 - alpha`` for the negatives). Default: ``None``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import FocalLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = FocalLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # (1 - 0.5)^2 * ln 2
        0.1733
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[Union[float, Sequence[float]]] = None,
                 sigmoid: bool = False, ignore_index: Optional[int] = None):
        super().__init__(sigmoid, ignore_index)
        self.gamma = check_number("gamma", gamma, 0)
        self.alpha = _check_alpha(alpha, self.sigmoid)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return focal_term(prep, self.gamma, self.alpha)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, {super().extra_repr()}"


class FocalDiceLoss(SoftDiceLoss):
    """Focal + Dice: ``Focal + (1 - mean Dice)``, the focal term of :class:`FocalLoss` and the Dice term
    of :class:`SoftDiceLoss`. Lin et al., ICCV 2017; docs/losses.md, section 3.7.

    Args:
        gamma: focusing exponent, >= 0 (0 with ``alpha=None`` gives plain CE). Default: ``2.0``.
        alpha: class weights. Softmax mode: None (no weighting) or one weight >= 0 per class (a sequence
            of length C, checked against the logits at the call). Sigmoid mode: None or the weight of the
            positives in [0, 1] (``1 - alpha`` for the negatives). Default: ``None``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only; in sigmoid mode every
            channel counts). Default: ``False``.
        batch_dice: one Dice per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the Dice numerator and denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import FocalDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = FocalDiceLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # focal (0.25 ln 2) + 1 - Dice_1
        0.84
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[Union[float, Sequence[float]]] = None,
                 sigmoid: bool = False, ignore_index: Optional[int] = None, include_background: bool = False,
                 batch_dice: bool = False, smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.gamma = check_number("gamma", gamma, 0)
        self.alpha = _check_alpha(alpha, self.sigmoid)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return focal_term(prep, self.gamma, self.alpha) + super().compute(prep)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, {super().extra_repr()}"

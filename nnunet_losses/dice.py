"""The soft-Dice core every Dice-type loss reuses, plus ``SoftDiceLoss`` and ``DiceCELoss``.

Per class c (and per sample unless ``batch_dice``), with the counted-voxel mask m:

    tp_c = sum(p_c g_c m),  P_c = sum(p_c m)  (or sum(p_c^2 m)),  G_c = sum(g_c m)
    Dice_c = (2 tp_c + smooth) / max(P_c + G_c + smooth, 1e-8)

``SoftDiceLoss = 1 - mean_c Dice_c`` (mean over samples too if not ``batch_dice``); this equals
nnU-Net's ``MemoryEfficientSoftDiceLoss`` (which returns ``-mean Dice``) plus 1.
``DiceCELoss = weight_ce * CE + weight_dice * SoftDiceLoss`` is nnU-Net's default loss (CEDL).
Milletari et al., V-Net, 3DV 2016; Isensee et al., nnU-Net, Nature Methods 2021.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._checks import check_number
from ._core import LossBase, Prepared, cross_entropy, spatial_sum
from ._distributed import sum_across_ranks

SMOOTH = 1e-5
DENOMINATOR_CLIP = 1e-8


def dice_sums(p: torch.Tensor, g: torch.Tensor, m: Optional[torch.Tensor], batch_dice: bool = False,
              square: bool = False, ddp: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(tp, P, G)``, each (B, C) or (1, C) with ``batch_dice``.

    ``square`` uses ``sum(p^2)`` for P (top-K Dice). With ``ddp`` and ``batch_dice`` the sums are
    added over all DDP ranks with gradients, as nnU-Net does.
    """
    pm = p if m is None else p * m
    gm = g if m is None else g * m
    tp = spatial_sum(pm * g, batch_dice)
    sp = spatial_sum(pm * p if square else pm, batch_dice)
    sg = spatial_sum(gm, batch_dice)
    if ddp and batch_dice:
        tp, sp, sg = (sum_across_ranks(t) for t in (tp, sp, sg))
    return tp, sp, sg


def dice_from_sums(tp: torch.Tensor, sp: torch.Tensor, sg: torch.Tensor, smooth: float) -> torch.Tensor:
    """``(2 tp + smooth) / max(P + G + smooth, 1e-8)``, elementwise."""
    return (2 * tp + smooth) / torch.clamp(sp + sg + smooth, min=DENOMINATOR_CLIP)


def soft_dice(p: torch.Tensor, g: torch.Tensor, m: Optional[torch.Tensor], batch_dice: bool, smooth: float,
              square: bool = False, ddp: bool = False) -> torch.Tensor:
    """Dice per (sample, class) or (1, class); see :func:`dice_sums`."""
    return dice_from_sums(*dice_sums(p, g, m, batch_dice, square, ddp), smooth)


class DiceOptions:
    """Validation of the options every Dice-type loss shares (docs/losses.md, "Conventions shared by every loss")."""

    def _init_dice_options(self, include_background: bool, batch_dice: bool, smooth: float, ddp: bool) -> None:
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.smooth = check_number("smooth", smooth, 0)
        self.ddp = bool(ddp)

    def _dice_repr(self) -> str:
        return (f"include_background={self.include_background}, batch_dice={self.batch_dice}, "
                f"smooth={self.smooth}")


class SoftDiceLoss(LossBase, DiceOptions):
    """Soft Dice loss ``1 - mean Dice`` (nnU-Net's soft Dice, shifted by +1 so it is >= 0).

    Per class c, and per sample unless ``batch_dice``, over the counted voxels (mask m)::

        Dice_c = (2 sum(p_c g_c m) + smooth) / max(sum(p_c m) + sum(g_c m) + smooth, 1e-8)
        loss   = 1 - mean Dice_c

    Milletari et al., "V-Net", 3DV 2016; Isensee et al., "nnU-Net", Nature Methods 2021 (equal to
    nnU-Net's ``MemoryEfficientSoftDiceLoss`` plus 1). docs/losses.md, section 3.1.

    Args:
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode (nnU-Net region training), a sigmoid per channel and a binary
            ``target`` (B, C, *sp). Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the mean (softmax mode only; in sigmoid mode every channel
            counts). Default: ``False``.
        batch_dice: sum over the batch before the ratio (one Dice per class) instead of one Dice per
            (sample, class); nnU-Net's plans choose it per configuration. Default: ``False``.
        smooth: added to the numerator and the denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the sums over all DDP ranks (with gradients) before the ratio, as
            nnU-Net does; no effect without ``batch_dice`` or outside DDP. Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import SoftDiceLoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = SoftDiceLoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # Dice_1 = 2 * 128 / (512 + 256) = 1/3
        0.6667
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, sigmoid: bool = False, ignore_index: Optional[int] = None, include_background: bool = False,
                 batch_dice: bool = False, smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index)
        self._init_dice_options(include_background, batch_dice, smooth, ddp)

    def dice_per_class(self, prep: Prepared) -> torch.Tensor:
        ch = prep.dice_channels(self.include_background)
        return soft_dice(prep.p_channels(ch), prep.g[:, ch], prep.m, self.batch_dice, self.smooth, ddp=self.ddp)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return 1.0 - self.dice_per_class(prep).mean()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._dice_repr()}"


class DiceCELoss(SoftDiceLoss):
    """nnU-Net's default loss (CEDL): ``weight_ce * CE + weight_dice * (1 - mean Dice)``.

    CE is ``-log p_y`` averaged over the counted voxels (sigmoid mode: BCE averaged over the counted
    voxels and the channels); the Dice term is :class:`SoftDiceLoss`. Isensee et al., "nnU-Net",
    Nature Methods 2021 (equal to nnU-Net's ``DC_and_CE_loss`` / ``DC_and_BCE_loss`` plus
    ``weight_dice``). docs/losses.md, section 3.1.

    Args:
        weight_ce: weight of the CE term, >= 0. Default: ``1.0``.
        weight_dice: weight of the Dice term, >= 0. Default: ``1.0``.
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.
        include_background: include class 0 in the Dice mean (softmax mode only). Default: ``False``.
        batch_dice: one Dice per class over the whole batch instead of one per (sample, class).
            Default: ``False``.
        smooth: added to the Dice numerator and denominator, >= 0. Default: ``1e-5``.
        ddp: with ``batch_dice``, add the Dice sums over all DDP ranks (with gradients), as nnU-Net does.
            Default: ``False``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import DiceCELoss
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> loss_fn = DiceCELoss()
        >>> loss = loss_fn(logits, target)
        >>> round(loss.item(), 4)  # CE = ln 2, plus 1 - Dice_1 = 2/3
        1.3598
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target).item(), 4)
        0.0
    """

    def __init__(self, weight_ce: float = 1.0, weight_dice: float = 1.0, sigmoid: bool = False,
                 ignore_index: Optional[int] = None, include_background: bool = False, batch_dice: bool = False,
                 smooth: float = SMOOTH, ddp: bool = False):
        super().__init__(sigmoid, ignore_index, include_background, batch_dice, smooth, ddp)
        self.weight_ce = check_number("weight_ce", weight_ce, 0)
        self.weight_dice = check_number("weight_dice", weight_dice, 0)

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:
        return self.weight_ce * cross_entropy(prep) + self.weight_dice * super().compute(prep)

    def extra_repr(self) -> str:
        return f"weight_ce={self.weight_ce}, weight_dice={self.weight_dice}, {super().extra_repr()}"

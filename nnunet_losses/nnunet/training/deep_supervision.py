"""Deep supervision as nnU-Net does it, with per-scale maps.

nnU-Net's network returns one output per decoder scale (full resolution first) and its data loader
one target per scale. The loss is ``sum_i w_i * loss(output_i, target_i)`` with
``w_i = 2^-i``, the lowest resolution's weight set to 0 (1e-6 under DDP without torch.compile,
where a zero weight leaves parameters without gradients), normalised to sum 1
(``nnUNetTrainer._build_loss`` and ``DeepSupervisionWrapper``, nnunetv2 2.8.1).

:class:`DeepSupervisionLoss` applies the same weights and additionally passes, per scale, a ``mask``
and any map of the loss (``contour=``, ``band=``, ``weight_map=``, ...) given as one tensor per scale.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["nnunet_deep_supervision_weights", "DeepSupervisionLoss"]


def nnunet_deep_supervision_weights(num_outputs: int, is_ddp: bool = False, compiled: bool = False) -> tuple:
    """nnU-Net's weights for ``num_outputs`` deep-supervision outputs (full resolution first)."""
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    weights = np.array([1 / (2 ** i) for i in range(num_outputs)])
    if is_ddp and not compiled:
        weights[-1] = 1e-6
    else:
        weights[-1] = 0
    if weights.sum() == 0:  # a single output: nnU-Net would divide by zero; keep the one output
        weights[0] = 1.0
    weights = weights / weights.sum()
    return tuple(float(w) for w in weights)


class DeepSupervisionLoss(nn.Module):
    """``sum_i w_i * loss(outputs[i], targets[i], mask=masks[i], **{name: maps[name][i]})``.

    Args:
        loss: any ``nnunet_losses`` loss (or a callable with the same signature).
        weight_factors: one weight per scale (see :func:`nnunet_deep_supervision_weights`);
            scales with weight 0 are not evaluated, as in nnU-Net.

    ``forward(outputs, targets, mask=None, **maps)``: ``outputs`` and ``targets`` are sequences of
    equal length; ``mask`` and each map are None or a sequence with one tensor (or None) per scale.
    """

    def __init__(self, loss: nn.Module, weight_factors: Sequence[float]):
        super().__init__()
        weights = tuple(float(w) for w in weight_factors)
        if not weights or not any(w != 0 for w in weights):
            raise ValueError(f"weight_factors must contain at least one non-zero weight, got {weight_factors!r}")
        if any(w < 0 for w in weights):
            raise ValueError(f"weight_factors must be >= 0, got {weight_factors!r}")
        self.weight_factors = weights
        self.loss = loss

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                mask: Optional[Sequence[Optional[torch.Tensor]]] = None, **maps) -> torch.Tensor:
        n = len(self.weight_factors)
        if not isinstance(outputs, (list, tuple)) or not isinstance(targets, (list, tuple)):
            raise ValueError("DeepSupervisionLoss expects a list of outputs and a list of targets (one per scale); "
                             "without deep supervision call the loss itself")
        per_scale = {"targets": targets, **({"mask": mask} if mask is not None else {}),
                     **{k: v for k, v in maps.items() if v is not None}}
        for name, seq in per_scale.items():
            if not isinstance(seq, (list, tuple)) or len(seq) != len(outputs):
                got = len(seq) if isinstance(seq, (list, tuple)) else type(seq).__name__
                raise ValueError(f"{name} must be a list with one entry per output scale ({len(outputs)}), got {got}")
        if len(outputs) > n:
            raise ValueError(f"got {len(outputs)} outputs but only {n} deep-supervision weights")
        total = None
        for i, w in enumerate(self.weight_factors[:len(outputs)]):
            if w == 0.0:
                continue
            kwargs = {k: v[i] for k, v in per_scale.items() if k != "targets"}
            term = w * self.loss(outputs[i], targets[i], **kwargs)
            total = term if total is None else total + term
        return total

"""What the trainer calls as ``self.loss(output, target)``: nnU-Net's target conventions in, one
``nnunet_losses`` loss (per deep-supervision scale) out."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .deep_supervision import DeepSupervisionLoss

__all__ = ["NnUNetLoss", "split_region_ignore"]


def split_region_ignore(target: torch.Tensor):
    """nnU-Net region target with the ignore channel last -> (regions, mask with 1 = counts).

    Same convention as nnU-Net's ``DC_and_BCE_loss(use_ignore_label=True)``.
    """
    ignore = target[:, -1:]
    mask = ~ignore if ignore.dtype == torch.bool else (ignore == 0)
    return target[:, :-1], mask


class NnUNetLoss(nn.Module):
    """nnU-Net's ``(output, target)`` -> one ``nnunet_losses`` loss, with deep supervision and maps.

    Args:
        loss: the loss module (possibly ``torch.compile``-d).
        weights: deep-supervision weights, or None without deep supervision.
        region_ignore: the target carries nnU-Net's ignore channel last (region training).
        map_fn: None or ``map_fn(targets, masks) -> {name: [tensor per scale]}`` for maps computed per
            batch outside the loss (a map kind's ``online`` computation, e.g. DWCE's ``weight_map``).
        stored: None or a :class:`nnunet_losses.nnunet.maps.transforms.StoredMapSplit`: the target
            carries stored maps as extra channels (training loader with ``maps="stored"``); a target
            without them (the validation loader) falls back to ``map_fn`` / the loss's own maps.
    """

    def __init__(self, loss: nn.Module, weights: Optional[tuple] = None, region_ignore: bool = False,
                 map_fn=None, stored=None):
        super().__init__()
        self.loss = loss
        self.ds = None if weights is None else DeepSupervisionLoss(loss, weights)
        self.region_ignore = region_ignore
        self.map_fn = map_fn
        self.stored = stored

    @property
    def weight_factors(self):
        return None if self.ds is None else self.ds.weight_factors

    def forward(self, output, target) -> torch.Tensor:
        multi = isinstance(output, (list, tuple))
        outputs = list(output) if multi else [output]
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        masks, maps = None, {}
        if self.stored is not None:
            targets, maps = self.stored(targets)
        if self.region_ignore:
            split = [split_region_ignore(t) for t in targets]
            targets, masks = [s[0] for s in split], [s[1] for s in split]
        if not maps and self.map_fn is not None:
            maps = self.map_fn(targets, masks)
        if multi and self.ds is not None:
            return self.ds(outputs, targets, mask=masks, **maps)
        return self.loss(outputs[0], targets[0], mask=None if masks is None else masks[0],
                         **{k: v[0] for k, v in maps.items()})

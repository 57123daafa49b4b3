"""Distance-weighted cross-entropy (Ronneberger et al., U-Net, MICCAI 2015).

    DWCE = mean_{i counted} W_i CE_i

with the U-Net weight map ``W = w_class(y) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` (border term on
background voxels only), precomputed per case by :func:`nnunet_losses.morphology.numpy_ops.unet_weight_map`
(w0 = 10, sigma = 5 voxels) and passed as ``weight_map`` (B, 1, *spatial). sigmoid mode: CE is the
BCE averaged over channels.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._checks import check_map
from ._core import LossBase, Prepared, cross_entropy_map, masked_mean


class DistanceWeightedCELoss(LossBase):
    """Distance-weighted CE (DWCE): ``mean_i W_i CE_i`` over the counted voxels.

    ``W`` is the U-Net weight map ``w_class(y) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` of the target,
    precomputed by :func:`nnunet_losses.morphology.numpy_ops.unet_weight_map`; CE as in :class:`DiceCELoss`.
    Ronneberger et al., "U-Net", MICCAI 2015; docs/losses.md, section 3.7.
    ``forward(logits, target, mask=None, weight_map=...)``: ``weight_map`` (B, 1, *sp), >= 0, is required.

    Args:
        sigmoid: ``False``: softmax over the channels, ``target`` holds labels 0..C-1 as (B, 1, *sp) or
            (B, *sp). ``True``: region mode, a sigmoid per channel and a binary ``target`` (B, C, *sp).
            Default: ``False``.
        ignore_index: label value (sigmoid mode: value in any channel) whose voxels count in no term; an
            integer, or None when every voxel counts. Default: ``None``.

    Examples:
        >>> import torch
        >>> from nnunet_losses import DistanceWeightedCELoss
        >>> from nnunet_losses.morphology.numpy_ops import unet_weight_map
        >>> target = torch.zeros(1, 1, 32, 32, dtype=torch.long)    # (B, 1, X, Y) labels
        >>> target[..., 8:24, 8:24] = 1                             # a 16 x 16 square of class 1
        >>> logits = torch.zeros(1, 2, 32, 32, requires_grad=True)  # (B, C, X, Y): p = 0.5 everywhere
        >>> w = torch.from_numpy(unet_weight_map(target[0, 0].numpy()))[None, None]  # (B, 1, X, Y)
        >>> loss_fn = DistanceWeightedCELoss()
        >>> loss = loss_fn(logits, target, weight_map=w)
        >>> round(loss.item(), 4)  # ln 2 * mean W (= 1: one object, no border term)
        0.6931
        >>> loss.backward()  # plain autograd: logits.grad holds the gradient
        >>> right = 20 * torch.cat([1 - target, target], 1) - 10.0  # confident and right
        >>> round(loss_fn(right, target, weight_map=w).item(), 4)
        0.0
    """

    map_names = ("weight_map",)

    def compute(self, prep: Prepared, weight_map: Optional[torch.Tensor] = None, **maps) -> torch.Tensor:
        if weight_map is None:
            raise ValueError(
                "DistanceWeightedCELoss needs weight_map=(B, 1, *spatial), the U-Net weight map of the target: "
                "compute it with nnunet_losses.morphology.numpy_ops.unet_weight_map or precompute it with "
                "`nnunet_losses_precompute --maps dwce`")
        b = prep.x.shape[0]
        weight_map = check_map("weight_map", weight_map, (b, 1, *prep.x.shape[2:]))
        w = weight_map.to(device=prep.x.device, dtype=prep.x.dtype)
        return masked_mean(w * cross_entropy_map(prep), prep.m)

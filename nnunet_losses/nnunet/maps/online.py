"""Map kinds computed per batch from the (augmented) target, for losses that cannot derive them
themselves (the map kind's ``online`` computation in the registry).

DWCE's weight map: computed per sample on the CPU from the full-resolution target with
:func:`nnunet_losses.morphology.numpy_ops.unet_weight_map` (``w0`` = 10, ``sigma`` = 5 voxels by default) and resized
to every deep-supervision scale by linear interpolation (continuous maps interpolate linearly, as
stored ones do). Contour losses need nothing here: they compute their maps on the fly.

What the weight map sees:

* label training: the label map; nnU-Net's ignore label counts nowhere (``ignore_label`` of
  ``unet_weight_map``: not in the class frequencies, not an object, weight 0);
* region training: each distinct combination of regions is one label (for nested regions such as
  BraTS' whole tumour / tumour core / enhancing this is the original label map); voxels of the
  ignore channel are ignored as above.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["labels_for_weight_map", "unet_weight_maps", "UNetWeightMapFn"]


def labels_for_weight_map(target: torch.Tensor, sigmoid: bool, ignore_label: Optional[int] = None,
                          mask: Optional[torch.Tensor] = None):
    """``(labels, ignore)``: one integer label array per sample, (B, *spatial), and the label value
    that marks ignored voxels (None if nothing is ignored).

    ``target``: (B, 1, *sp) labels (softmax) or (B, R, *sp) binary regions (sigmoid); ``mask``
    (B, 1, *sp) with 0 = ignored (region training's ignore channel, inverted).
    """
    t = target.detach()
    if sigmoid:
        bits = (t > 0).to(torch.int64)
        code = (bits << torch.arange(t.shape[1], device=t.device).view(1, -1, *([1] * (t.ndim - 2)))).sum(1)
        code = code.cpu().numpy()
        uniq, labels = np.unique(code, return_inverse=True)  # distinct combinations -> 0..K-1, sorted
        labels = labels.reshape(code.shape)
        if uniq[0] != 0:  # no voxel without a region: keep 0 for background anyway
            labels = labels + 1
        ignore_label = None
    else:
        labels = t[:, 0].to(torch.int64).cpu().numpy()
    if mask is not None:
        m = mask.detach()[:, 0].cpu().numpy() > 0
        if not m.all():
            ignore_label = int(labels.max()) + 1 if ignore_label is None else ignore_label
            labels = np.where(m, labels, ignore_label)
    return labels.astype(np.int64, copy=False), ignore_label


def unet_weight_maps(targets: Sequence[torch.Tensor], sigmoid: bool, ignore_label: Optional[int] = None,
                     masks: Optional[Sequence[Optional[torch.Tensor]]] = None, w0: float = 10.0,
                     sigma: float = 5.0) -> List[torch.Tensor]:
    """DWCE weight maps (B, 1, *sp_i) for every scale i of ``targets`` (full resolution first)."""
    from nnunet_losses.morphology.numpy_ops import unet_weight_map

    full = targets[0]
    labels, ignore = labels_for_weight_map(full, sigmoid, ignore_label, None if masks is None else masks[0])
    w = np.stack([np.asarray(unet_weight_map(lab, w0=w0, sigma=sigma, ignore_label=ignore), dtype=np.float32)
                  for lab in labels])
    wmap = torch.from_numpy(w)[:, None].to(full.device)
    out = [wmap]
    mode = "bilinear" if wmap.ndim == 4 else "trilinear"
    for t in targets[1:]:
        if tuple(t.shape[2:]) == tuple(wmap.shape[2:]):
            out.append(wmap)
        else:
            out.append(F.interpolate(wmap, size=tuple(t.shape[2:]), mode=mode, align_corners=False))
    return out


class UNetWeightMapFn:
    """``map_fn`` for :class:`nnunet_losses.nnunet.training.loss_wrapper.NnUNetLoss`: DWCE's ``weight_map`` per scale."""

    def __init__(self, sigmoid: bool, ignore_label: Optional[int] = None, w0: float = 10.0, sigma: float = 5.0):
        self.sigmoid, self.ignore_label, self.w0, self.sigma = sigmoid, ignore_label, w0, sigma

    def __call__(self, targets, masks=None):
        return {"weight_map": unet_weight_maps(targets, self.sigmoid, self.ignore_label, masks, self.w0, self.sigma)}

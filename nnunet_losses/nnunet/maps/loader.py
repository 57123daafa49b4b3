"""Maps computed in the data-loader workers from the augmented patch (the trainers' ``maps="loader"``).

For a binary map kind that declares a ``loader`` computation (the tubed skeleton of Skeleton
Recall), :func:`with_loader_maps` takes the ``ComposeTransforms`` that the trainer's
``get_training_transforms`` built (nnU-Net's default or a variant's, e.g. ``nnUNetTrainerDA5``) and
puts a :class:`LoaderMapsTransform` right before nnU-Net's ``DownsampleSegForDSTransform`` (at the
end without deep supervision), wherever that sits in the tree. So the map is computed from the
target after every spatial and intensity transform, as the target the loss sees, and is then
downsampled per deep-supervision scale exactly like the target (``nearest-exact``, in the same
call). The transform returns the float32 tensor ``[target channels..., packed map bytes...]``
(bit-packed, 8 map channels per byte: :func:`~nnunet_losses.nnunet.maps.packing.pack_bits`), the
layout of stored maps: :class:`~nnunet_losses.nnunet.maps.transforms.StoredMapSplit` separates and
unpacks the map in the loss. This is what the Skeleton Recall authors' code does (a transform after the
augmentation, before the deep-supervision downsampling).
"""
from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from .declaration import ResolvedMap
from .packing import pack_bits
from .registry import map_kind
from .transforms import rewrite_tree

__all__ = ["LoaderMapsTransform", "with_loader_maps"]


class LoaderMapsTransform(BasicTransform):
    """segmentation (C, *sp) -> float32 ``[segmentation, pack_bits(kind.loader(segmentation, rp))]``
    (C + ceil(n / 8), *sp).

    ``rp``: the kind's :class:`~nnunet_losses.nnunet.maps.declaration.ResolvedMap` for the dataset;
    the kind is looked up by name when applied (the transform pickles into spawned workers)."""

    def __init__(self, name: str, rp: ResolvedMap):
        super().__init__()
        kind = map_kind(name)
        if kind.loader is None:
            raise ValueError(f"map kind {name!r} has no loader computation")
        self.name, self.rp, self.n = name, rp, len(rp.channels)

    def apply(self, data_dict, **params):
        seg = data_dict["segmentation"]
        maps = np.asarray(map_kind(self.name).loader(seg.numpy(), self.rp))
        if maps.shape != (self.n, *seg.shape[1:]):
            raise ValueError(f"map {self.name!r}: the loader computation returned shape {maps.shape}, expected "
                             f"{(self.n, *seg.shape[1:])}")
        packed = pack_bits(maps)
        out = torch.empty((seg.shape[0] + len(packed), *seg.shape[1:]), dtype=torch.float32)
        out[:seg.shape[0]] = seg
        out[seg.shape[0]:] = torch.from_numpy(packed)
        data_dict["segmentation"] = out
        return data_dict

    def __repr__(self):
        return f"LoaderMapsTransform({self.name!r}, {self.rp.params})"


def _insert_before_downsampling(t, make, state: dict):
    """``make()`` followed by ``t`` where ``t`` is nnU-Net's ``DownsampleSegForDSTransform``, else ``t``."""
    if isinstance(t, DownsampleSegForDSTransform):
        state["inserted"] = True
        return ComposeTransforms([make(), t])
    return t


def with_loader_maps(transforms, name: str, rp: ResolvedMap) -> ComposeTransforms:
    """nnU-Net's training (or validation) transforms, of any trainer variant, that also compute the
    map ``name`` (resolved parameters ``rp``) from the augmented target (see the module docstring)."""
    state = {"inserted": False}
    inner = transforms.transforms if isinstance(transforms, ComposeTransforms) else [transforms]
    out = [rewrite_tree(t, lambda leaf: _insert_before_downsampling(leaf, lambda: LoaderMapsTransform(name, rp), state))
           for t in inner]
    if not state["inserted"]:
        out.append(LoaderMapsTransform(name, rp))
    return ComposeTransforms(out)

"""Stored maps through nnU-Net's training transforms (batchgeneratorsv2), SPEC section 4.

:func:`with_maps` turns the ``ComposeTransforms`` that ``nnUNetTrainer.get_training_transforms``
built into a :class:`MapComposeTransforms` holding the same transform objects, except:

1. first, :class:`SplitMapsTransform` moves the map channels that
   :class:`nnunet_losses.nnunet.map_data.SegWithMaps` appended to the segmentation into
   ``regression_target`` (float32; nnU-Net's crop padding -1 becomes 0);
2. nnU-Net's ``SpatialTransform`` becomes a :class:`MapSpatialTransform` (same parameters, same
   random draw per sample): binary maps are resampled by nearest neighbour, continuous maps
   linearly (``grid_sample``), with zero padding; without a spatial transformation both are
   cropped like the image;
3. ``MirrorTransform`` and the pseudo-2D conversions already move ``regression_target``; every
   other transform (intensity, ``RemoveLabelTansform``, masking, regions) never sees the maps;
4. nnU-Net's ``DownsampleSegForDSTransform`` becomes :class:`PackMapsTransform`, which downsamples
   the segmentation as nnU-Net does, the binary maps the same way (``nearest-exact``, like the
   seg), the continuous maps linearly, and returns per scale ONE float32 tensor
   ``[target channels..., map channels...]``: nnU-Net's loader collates it unchanged, and
   :class:`StoredMapSplit` separates it again in the loss.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.cropping import crop_tensor
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform

from .map_data import MapSpec, order_specs

__all__ = ["SplitMapsTransform", "MapSpatialTransform", "PackMapsTransform", "MapComposeTransforms", "with_maps",
           "StoredMapSplit", "resize_maps"]

#: transforms that move ``regression_target`` correctly (the maps); all others never see it
_MAP_AWARE = (SpatialTransform, MirrorTransform, Convert3DTo2DTransform, Convert2DTo3DTransform)


def resize_maps(maps: torch.Tensor, n_binary: int, shape: Sequence[int]) -> torch.Tensor:
    """(C, *sp) maps -> (C, *shape): binary channels by ``nearest-exact`` (as nnU-Net downsamples the
    seg), continuous ones linearly (``align_corners=False``)."""
    if tuple(maps.shape[1:]) == tuple(shape):
        return maps
    parts = []
    if n_binary:
        parts.append(F.interpolate(maps[None, :n_binary], size=list(shape), mode="nearest-exact")[0])
    if maps.shape[0] > n_binary:
        mode = "bilinear" if len(shape) == 2 else "trilinear"
        parts.append(F.interpolate(maps[None, n_binary:], size=list(shape), mode=mode, align_corners=False)[0])
    return torch.cat(parts, 0)


class SplitMapsTransform(BasicTransform):
    """segmentation ``[seg (n_seg ch), binary maps, continuous maps (float16 bits as int16)]`` ->
    segmentation ``[seg]`` and ``regression_target`` float32 maps (padding -1 -> 0)."""

    def __init__(self, n_seg: int, n_binary: int, n_continuous: int):
        super().__init__()
        self.n_seg, self.n_binary, self.n_continuous = n_seg, n_binary, n_continuous

    def apply(self, data_dict, **params):
        seg = data_dict["segmentation"]
        n = self.n_seg + self.n_binary + self.n_continuous
        if seg.shape[0] != n:
            raise ValueError(f"expected a segmentation with {n} channels (seg + maps), got {seg.shape[0]}")
        b = seg[self.n_seg:self.n_seg + self.n_binary].float().clamp_min_(0)
        c = seg[self.n_seg + self.n_binary:].contiguous().view(torch.float16).float()
        c = torch.nan_to_num(c, nan=0.0)  # 0xFFFF = nnU-Net's pad value -1
        data_dict["segmentation"] = seg[:self.n_seg]
        data_dict["regression_target"] = torch.cat([b, c], 0)
        return data_dict


class MapSpatialTransform(SpatialTransform):
    """nnU-Net's ``SpatialTransform`` (same parameters) that resamples ``regression_target`` maps:
    the first ``n_binary`` channels by nearest neighbour, the rest linearly, zero padding."""

    n_binary: int = 0

    @classmethod
    def like(cls, t: SpatialTransform, n_binary: int) -> "MapSpatialTransform":
        obj = cls.__new__(cls)
        obj.__dict__.update(t.__dict__)
        obj.n_binary = n_binary
        return obj

    def _apply_to_regr_target(self, regression_target, **params) -> torch.Tensor:
        rt = regression_target.float()
        if params["grid"] is None:
            return crop_tensor(rt, [math.floor(i) for i in params["center_location_in_pixels"]], self.patch_size,
                               pad_mode="constant", pad_kwargs={"value": 0})
        out = []
        for sl, mode in ((slice(0, self.n_binary), "nearest"), (slice(self.n_binary, None), "bilinear")):
            part = rt[sl]
            if part.shape[0]:
                out.append(F.grid_sample(part[None], params["grid"][None], mode=mode, padding_mode="zeros",
                                         align_corners=self.align_corners)[0])
        return torch.cat(out, 0)


class PackMapsTransform(DownsampleSegForDSTransform):
    """nnU-Net's deep-supervision downsampling of the segmentation (``ds_scales`` None: none) plus
    the maps per scale (:func:`resize_maps`); per scale one float32 tensor ``[target, maps]``."""

    def __init__(self, ds_scales, n_binary: int):
        super().__init__(ds_scales)
        self.n_binary = n_binary

    def apply(self, data_dict, **params):
        seg = data_dict["segmentation"]
        maps = data_dict.pop("regression_target")
        segs = [seg] if self.ds_scales is None else self._apply_to_segmentation(seg)
        packed = [torch.cat([s.float(), resize_maps(maps, self.n_binary, s.shape[1:])], 0) for s in segs]
        data_dict["segmentation"] = packed[0] if self.ds_scales is None else packed
        return data_dict


class MapComposeTransforms(ComposeTransforms):
    """``ComposeTransforms`` where only the map-aware transforms see ``regression_target``."""

    def apply(self, data_dict, **params):
        for t in self.transforms:
            if isinstance(t, _MAP_AWARE + (SplitMapsTransform, PackMapsTransform)) or "regression_target" not in data_dict:
                data_dict = t(**data_dict)
            else:
                maps = data_dict.pop("regression_target")
                data_dict = t(**data_dict)
                data_dict["regression_target"] = maps
        return data_dict


def with_maps(transforms: ComposeTransforms, specs: Sequence[MapSpec], n_seg: int = 1) -> MapComposeTransforms:
    """nnU-Net's training (or validation) transforms, extended to carry ``specs`` (see the module docstring)."""
    specs = order_specs(specs)
    nb = sum(s.channels for s in specs if s.binary)
    nc = sum(s.channels for s in specs if not s.binary)
    out: List[BasicTransform] = [SplitMapsTransform(n_seg, nb, nc)]
    packed = False
    for t in transforms.transforms:
        if isinstance(t, SpatialTransform):
            t = MapSpatialTransform.like(t, nb)
        elif isinstance(t, DownsampleSegForDSTransform):
            t, packed = PackMapsTransform(t.ds_scales, nb), True
        out.append(t)
    if not packed:
        out.append(PackMapsTransform(None, nb))
    return MapComposeTransforms(out)


#: the loss keyword of each channel group of a stored map
LOSS_MAPS = {"contour": (("band", 0, 1), ("contour", 1, None)), "osc": (("offset_band", 0, None),),
             "dwce": (("weight_map", 0, 1),)}


class StoredMapSplit:
    """Separates ``[target, maps]`` (from :class:`PackMapsTransform`) in the loss.

    ``n_target``: channels of nnU-Net's target (1 for labels; regions + 1 with an ignore label);
    ``region``: region training (the target goes back to bool, else int16). ``__call__(targets)`` ->
    ``(targets, {loss keyword: [tensor per scale]})``; a target without map channels (nnU-Net's
    validation loader) gives ``(targets, {})``.
    """

    def __init__(self, specs: Sequence[MapSpec], n_target: int, region: bool, wanted: Sequence[str]):
        self.specs, self.n_target, self.region = order_specs(specs), int(n_target), bool(region)
        self.n_maps = sum(s.channels for s in self.specs)
        self.slices: Dict[str, slice] = {}
        start = self.n_target
        for s in self.specs:
            for key, a, b in LOSS_MAPS[s.name]:
                if key in wanted:
                    self.slices[key] = slice(start + a, start + (s.channels if b is None else b))
            start += s.channels

    def __call__(self, targets: List[torch.Tensor]):
        c = targets[0].shape[1]
        if c == self.n_target:
            return targets, {}
        if c != self.n_target + self.n_maps:
            raise ValueError(f"target has {c} channels; expected {self.n_target} (no maps) or "
                             f"{self.n_target + self.n_maps} (with stored maps)")
        dtype = torch.bool if self.region else torch.int16
        maps = {k: [t[:, sl] for t in targets] for k, sl in self.slices.items()}
        tgt = [(t[:, :self.n_target] > 0.5) if self.region else t[:, :self.n_target].round().to(dtype)
               for t in targets]
        return tgt, maps

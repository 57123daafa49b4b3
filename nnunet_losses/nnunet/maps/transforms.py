"""Stored maps through nnU-Net's training transforms (batchgeneratorsv2).

:func:`with_maps` takes the ``ComposeTransforms`` that the trainer's ``get_training_transforms``
built (nnU-Net's default or a variant's, e.g. ``nnUNetTrainerDA5``) and returns one holding the same
transform objects, except:

1. first, :class:`SplitMapsTransform` moves the map channels that
   :class:`nnunet_losses.nnunet.maps.dataset.SegWithMaps` appended to the segmentation into
   ``regression_target``, still raw int16 (a view, no copy): binary maps bit-packed (one channel
   per byte, 8 map channels each), continuous maps as float16 bits. They are decoded to float32
   (:func:`decode_maps`: nnU-Net's crop padding -1 becomes 0) only where needed: before a
   ``grid_sample``, else on the final patch in step 4; binary maps stay packed up to the loss;
2. nnU-Net's ``SpatialTransform`` becomes a :class:`MapSpatialTransform` (same parameters, same
   random draw per sample): the packed bytes of binary maps are resampled by nearest neighbour
   (exact: it picks whole bytes), continuous maps linearly (``grid_sample``), with zero padding;
   without a spatial transformation both are cropped like the image (no ``grid_sample``);
3. transforms that move ``regression_target`` themselves (mirroring, rot90, transposes, the pseudo-2D
   conversions: :func:`moves_regression_target`) move the maps, exactly (they permute whole bytes);
   every other transform (intensity, ``RemoveLabelTansform``, masking, regions) runs without them
   (:class:`HideMaps`), also inside ``RandomTransform`` and ``OneOfTransform``;
4. nnU-Net's ``DownsampleSegForDSTransform`` becomes :class:`PackMapsTransform`, which downsamples
   the segmentation as nnU-Net does, the packed bytes of the binary maps with it in the same call
   (``nearest-exact`` picks whole bytes: exact), the continuous maps linearly, and returns per scale
   ONE float32 tensor ``[target channels..., packed bytes..., continuous map channels...]``: nnU-Net's
   loader collates it unchanged, and :class:`StoredMapSplit` separates it again in the loss, where
   the binary maps are unpacked (``(byte >> bit) & 1``) on the training device. One channel per 8
   binary maps through downsampling, collation and the transfer, instead of one per map.
"""
from __future__ import annotations

import copy
import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.cropping import crop_tensor
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform

from .dataset import MapSpec, order_specs
from .registry import map_kind

__all__ = ["decode_maps", "SplitMapsTransform", "MapSpatialTransform", "PackMapsTransform", "HideMaps", "moves_regression_target", "with_maps",
           "StoredMapSplit", "resize_maps"]

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


def decode_maps(maps: torch.Tensor, n_binary: int) -> torch.Tensor:
    """Raw int16 maps ``[packed bytes (n_binary), float16 bits]`` -> float32 (byte values 0..255,
    map values); nnU-Net's padding -1 (0xFFFF, a float16 NaN) becomes 0. Float input is returned as is."""
    if maps.dtype == torch.float32:
        return maps
    out = torch.empty(maps.shape, dtype=torch.float32)
    if n_binary:
        out[:n_binary] = maps[:n_binary]
        out[:n_binary].clamp_min_(0)
    if maps.shape[0] > n_binary:
        out[n_binary:] = maps[n_binary:].contiguous().view(torch.float16)
        torch.nan_to_num_(out[n_binary:], nan=0.0)
    return out


class SplitMapsTransform(BasicTransform):
    """segmentation ``[seg (n_seg ch), packed binary maps (n_binary bytes), continuous maps (float16
    bits as int16)]`` -> segmentation ``[seg]`` and ``regression_target`` the raw int16 map channels
    (views; decoded later by :func:`decode_maps`)."""

    def __init__(self, n_seg: int, n_binary: int, n_continuous: int):
        super().__init__()
        self.n_seg, self.n_binary, self.n_continuous = n_seg, n_binary, n_continuous

    def apply(self, data_dict, **params):
        seg = data_dict["segmentation"]
        n = self.n_seg + self.n_binary + self.n_continuous
        if seg.shape[0] != n:
            raise ValueError(f"expected a segmentation with {n} channels (seg + maps), got {seg.shape[0]}")
        if seg.dtype != torch.int16:
            raise ValueError(f"expected nnU-Net's int16 segmentation with map channels, got {seg.dtype}")
        data_dict["segmentation"] = seg[:self.n_seg]
        data_dict["regression_target"] = seg[self.n_seg:]
        return data_dict


class MapSpatialTransform(SpatialTransform):
    """nnU-Net's ``SpatialTransform`` (same parameters) that resamples ``regression_target`` maps:
    the first ``n_binary`` channels (packed bytes) by nearest neighbour, the rest linearly, zero padding."""

    n_binary: int = 0

    @classmethod
    def like(cls, t: SpatialTransform, n_binary: int) -> "MapSpatialTransform":
        obj = cls.__new__(cls)
        obj.__dict__.update(t.__dict__)
        obj.n_binary = n_binary
        return obj

    def _apply_to_regr_target(self, regression_target, **params) -> torch.Tensor:
        if params["grid"] is None:  # raw int16 crop; 0 pads as 0 (no bit set / float16 0.0)
            return crop_tensor(regression_target, [math.floor(i) for i in params["center_location_in_pixels"]],
                               self.patch_size, pad_mode="constant", pad_kwargs={"value": 0})
        rt = decode_maps(regression_target, self.n_binary)
        grid = params["grid"][None]
        parts = [(rt[:self.n_binary], "nearest"), (rt[self.n_binary:], "bilinear")]
        parts = [(p, m) for p, m in parts if p.shape[0]]
        if len(parts) == 1:
            p, m = parts[0]
            return F.grid_sample(p[None], grid, mode=m, padding_mode="zeros", align_corners=self.align_corners)[0]
        out = torch.empty((rt.shape[0], *grid.shape[1:-1]), dtype=torch.float32)
        for (p, m), sl in zip(parts, (slice(0, self.n_binary), slice(self.n_binary, None))):
            out[sl] = F.grid_sample(p[None], grid, mode=m, padding_mode="zeros", align_corners=self.align_corners)[0]
        return out


class PackMapsTransform(DownsampleSegForDSTransform):
    """nnU-Net's deep-supervision downsampling of the segmentation (``ds_scales`` None: none) plus
    the maps per scale; per scale one float32 tensor ``[target, packed binary maps, continuous maps]``.

    ``binary_bits``: the channels of each binary map (their packed bytes come first in
    ``regression_target``, ceil(n / 8) per map). The bytes are downsampled with the segmentation by
    ``nearest-exact`` (one ``interpolate`` call per scale: the same voxels are picked as in nnU-Net's
    downsampling of the seg, whole bytes) and unpacked in the loss (:class:`StoredMapSplit`); the
    continuous maps are downsampled linearly (:func:`resize_maps`)."""

    def __init__(self, ds_scales, binary_bits: Sequence[int] = ()):
        super().__init__(ds_scales)
        self.binary_bits = tuple(int(b) for b in binary_bits)
        self.n_bytes = sum((b + 7) // 8 for b in self.binary_bits)

    def _scales(self, ndim: int):
        if self.ds_scales is None:
            return [[1] * ndim]
        return [list(s) if isinstance(s, (tuple, list)) else [s] * ndim for s in self.ds_scales]

    def apply(self, data_dict, **params):
        seg = data_dict["segmentation"]
        n_t, nb = seg.shape[0], self.n_bytes
        maps = decode_maps(data_dict.pop("regression_target"), nb)
        n_c = maps.shape[0] - nb
        nearest = n_t + nb  # channels downsampled by nearest-exact: the target and the packed bytes
        full = torch.empty((nearest + n_c, *seg.shape[1:]), dtype=torch.float32)
        full[:n_t] = seg
        full[n_t:] = maps
        out = []
        for s in self._scales(seg.ndim - 1):
            if all(i == 1 for i in s):
                out.append(full)
                continue
            shape = [round(i * j) for i, j in zip(seg.shape[1:], s)]
            small = F.interpolate(full[None, :nearest], shape, mode="nearest-exact")[0]
            if n_c:
                small = torch.cat([small, resize_maps(full[nearest:], 0, shape)], 0)
            out.append(small)
        data_dict["segmentation"] = out[0] if self.ds_scales is None else out
        return data_dict


class HideMaps(BasicTransform):
    """Runs ``transform`` without ``regression_target`` (the maps) and puts the maps back: for every
    transform that does not move a regression target (intensity, label and region transforms, whose
    base class would replace it by None)."""

    def __init__(self, transform: BasicTransform):
        super().__init__()
        self.transform = transform

    def __call__(self, **data_dict):
        maps = data_dict.pop("regression_target", None)
        data_dict = self.transform(**data_dict)
        if maps is not None:
            data_dict["regression_target"] = maps
        return data_dict

    def __repr__(self):
        return f"HideMaps({self.transform!r})"


def moves_regression_target(t) -> bool:
    """The transform's class implements ``_apply_to_regr_target``: it moves the maps with the
    segmentation (nnU-Net's spatial transforms: mirroring, rot90, transposes, pseudo-2D conversions)."""
    impl = getattr(type(t), "_apply_to_regr_target", None)
    return impl is not None and impl is not BasicTransform._apply_to_regr_target


def rewrite_tree(t, leaf):
    """``t`` with every transform that is not one of nnU-Net's wrappers (``ComposeTransforms``,
    ``RandomTransform``, ``OneOfTransform``) replaced by ``leaf(transform)``; the wrappers are copied
    around their rewritten contents (the input tree is not modified)."""
    if isinstance(t, RandomTransform):
        out = copy.copy(t)
        out.transform = rewrite_tree(t.transform, leaf)
        return out
    if isinstance(t, OneOfTransform):
        out = copy.copy(t)
        out.list_of_transforms = [rewrite_tree(c, leaf) for c in t.list_of_transforms]
        return out
    if isinstance(t, ComposeTransforms):
        return ComposeTransforms([rewrite_tree(c, leaf) for c in t.transforms])
    return leaf(t)


def _with_maps_leaf(t, nb: int, bits, state: dict):
    """One transform, rewritten so that the maps follow the patch."""
    if isinstance(t, SpatialTransform):
        return MapSpatialTransform.like(t, nb)
    if isinstance(t, DownsampleSegForDSTransform):
        state["packed"] = True
        return PackMapsTransform(t.ds_scales, bits)
    if moves_regression_target(t):
        return t
    return HideMaps(t)


def with_maps(transforms: ComposeTransforms, specs: Sequence[MapSpec], n_seg: int = 1) -> ComposeTransforms:
    """nnU-Net's training (or validation) transforms, of any trainer variant, extended to carry
    ``specs`` (see the module docstring)."""
    specs = order_specs(specs)
    bits = [s.channels for s in specs if s.binary]
    nb = sum(s.stored_channels for s in specs if s.binary)
    nc = sum(s.channels for s in specs if not s.binary)
    state = {"packed": False}
    inner = transforms.transforms if isinstance(transforms, ComposeTransforms) else [transforms]
    out: List[BasicTransform] = [SplitMapsTransform(n_seg, nb, nc)]
    out += [rewrite_tree(t, lambda leaf: _with_maps_leaf(leaf, nb, bits, state)) for t in inner]
    if not state["packed"]:
        out.append(PackMapsTransform(None, bits))
    return ComposeTransforms(out)


class StoredMapSplit:
    """Separates ``[target, packed binary maps, continuous maps]`` (from :class:`PackMapsTransform` or
    :class:`~nnunet_losses.nnunet.maps.loader.LoaderMapsTransform`) in the loss, on the target's device,
    and unpacks the binary maps (channel k of a map: ``(byte[k // 8] >> (k % 8)) & 1``, float 0/1).

    ``n_target``: channels of nnU-Net's target (1 for labels; regions + 1 with an ignore label);
    ``region``: region training (the target goes back to bool, else int16). ``__call__(targets)`` ->
    ``(targets, {loss keyword: [tensor per scale]})``; a target without map channels (nnU-Net's
    validation loader) gives ``(targets, {})``.
    """

    def __init__(self, specs: Sequence[MapSpec], n_target: int, region: bool, wanted: Sequence[str]):
        self.specs, self.n_target, self.region = order_specs(specs), int(n_target), bool(region)
        self.n_maps = sum(s.stored_channels for s in self.specs)
        self.maps = []  # (spec, first channel in the target, {keyword: slice of the spec's unpacked channels})
        start = self.n_target
        for s in self.specs:
            keys = {key: slice(a, s.channels if b is None else b)
                    for key, a, b in map_kind(s.name).loss_keywords if key in wanted}
            self.maps.append((s, start, keys))
            start += s.stored_channels

    @staticmethod
    def _unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
        """(B, ceil(n / 8), *sp) byte values -> (B, n, *sp) 0/1 in ``packed``'s dtype."""
        k = torch.arange(n, device=packed.device)
        shape = (1, n) + (1,) * (packed.ndim - 2)
        bits = packed.to(torch.uint8)[:, k // 8] >> (k % 8).to(torch.uint8).view(shape)
        return (bits & 1).to(packed.dtype)
    def __call__(self, targets: List[torch.Tensor]):
        c = targets[0].shape[1]
        if c == self.n_target:
            return targets, {}
        if c != self.n_target + self.n_maps:
            raise ValueError(f"target has {c} channels; expected {self.n_target} (no maps) or "
                             f"{self.n_target + self.n_maps} (with stored maps)")
        dtype = torch.bool if self.region else torch.int16
        maps = {}
        for spec, start, keys in self.maps:
            per_scale = [t[:, start:start + spec.stored_channels] for t in targets]
            if spec.binary:
                per_scale = [self._unpack(p, spec.channels) for p in per_scale]
            for key, sl in keys.items():
                maps[key] = [p[:, sl] for p in per_scale]
        tgt = [(t[:, :self.n_target] > 0.5) if self.region else t[:, :self.n_target].round().to(dtype)
               for t in targets]
        return tgt, maps

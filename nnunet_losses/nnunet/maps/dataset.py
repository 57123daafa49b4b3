"""Stored maps loaded with each case by nnU-Net's own dataset and data loader.

Design: the maps travel as extra channels of the segmentation until the transforms take them over.
:class:`nnUNetDatasetBlosc2WithMaps` (a subclass of nnU-Net's ``nnUNetDatasetBlosc2``) returns, from
``load_case``, the segmentation wrapped in :class:`SegWithMaps`: an array-like with channels
``[seg, binary map channels..., continuous map channels...]`` that decompresses only the crop
nnU-Net's unmodified ``nnUNetDataLoader`` asks for (``crop_and_pad_nd``). The loader then crops and
pads the maps exactly like the segmentation (pad value -1). Encoding inside the int16 segmentation:

* binary maps (``contour``, ``osc``): still bit-packed, one channel per stored byte (bit k of byte
  k // 8 is map channel k; 8 channels per byte), i.e. usually ONE channel whatever the number of
  classes. Cropping, padding, mirroring and nearest resampling pick whole bytes, so they are exact on
  the packed byte, and so is the deep-supervision downsampling
  (:class:`~nnunet_losses.nnunet.maps.transforms.PackMapsTransform`); the bytes are unpacked in the
  loss (:class:`~nnunet_losses.nnunet.maps.transforms.StoredMapSplit`; nnU-Net's pad value -1 becomes
  0 before: no bit set);
* continuous maps (``dwce``): the float16 bit pattern viewed as int16 (lossless). nnU-Net's pad
  value -1 is 0xFFFF, a float16 NaN, which :mod:`nnunet_losses.nnunet.maps.transforms` turns back
  into the pad value 0.

:mod:`nnunet_losses.nnunet.maps.transforms` splits the map channels off before any transform that
interprets the segmentation. Cascades (``seg_prev``) are not supported with stored maps.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from .declaration import ResolvedMap
from .map_files import load_map, map_error
from .registry import map_kind

__all__ = ["MapSpec", "SegWithMaps", "nnUNetDatasetBlosc2WithMaps"]

_F16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class MapSpec:
    """One stored map in the loader: ``name`` (the map kind), ``resolved`` (its :class:`ResolvedMap`,
    checked against the manifest), ``channels`` (number of channels after unpacking) and ``binary``
    (bit-packed 0/1 channels, else continuous float channels), both from the registry."""

    name: str
    resolved: ResolvedMap
    channels: int
    binary: bool

    @property
    def stored_channels(self) -> int:
        """Channels in the loader's segmentation: packed bytes for binary maps, else ``channels``."""
        return (self.channels + 7) // 8 if self.binary else self.channels

    @classmethod
    def from_resolved(cls, resolved: ResolvedMap) -> "MapSpec":
        return cls(resolved.kind, resolved, len(resolved.channels), map_kind(resolved.kind).binary)


def order_specs(specs: Sequence[MapSpec]) -> List[MapSpec]:
    """Binary maps first, then continuous ones (the channel order used everywhere)."""
    return [s for s in specs if s.binary] + [s for s in specs if not s.binary]


class SegWithMaps:
    """``seg`` (1, *sp) plus the maps of one case as extra int16 channels (binary maps: the packed bytes;
    continuous: float16 bits), decompressed lazily per crop."""

    def __init__(self, seg, maps: Sequence, specs: Sequence[MapSpec], folder: str, case: str):
        self.seg, self.maps, self.specs, self.folder, self.case = seg, list(maps), list(specs), folder, case
        self.shape = (int(seg.shape[0]) + sum(s.stored_channels for s in specs), *seg.shape[1:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.int16)

    def __getitem__(self, item):
        if not isinstance(item, tuple) or not item or item[0] != slice(None):
            raise IndexError("SegWithMaps only supports crops that keep every channel (as nnU-Net's loader does)")
        seg = np.asarray(self.seg[item])
        out = np.empty(self.shape[:1] + seg.shape[1:], np.int16)
        out[:seg.shape[0]] = seg
        start = seg.shape[0]
        for spec, arr in zip(self.specs, self.maps):
            try:
                crop = np.asarray(arr[item])
            except Exception as e:  # decompression of a damaged chunk
                raise map_error(self.folder, self.case, spec.name,
                                f"cannot be decompressed ({type(e).__name__}: {e}): truncated or corrupt",
                                dict(spec.resolved.params), spec.resolved.fingerprint) from e
            n = spec.stored_channels
            if spec.binary:
                out[start:start + n] = crop  # uint8 0..255 -> int16, lossless
            elif crop.dtype == np.float16:  # as precompute stores it: the bits as they are
                out[start:start + n] = crop.view(np.int16)
            else:
                out[start:start + n] = np.clip(crop, -_F16_MAX, _F16_MAX).astype(np.float16).view(np.int16)
            start += n
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[(slice(None),)]
        return out if dtype is None else out.astype(dtype)


class nnUNetDatasetBlosc2WithMaps(nnUNetDatasetBlosc2):
    """nnU-Net's blosc2 dataset whose ``load_case`` also opens the stored maps of the case
    (:func:`.map_files.load_map`: validated against the manifest, the checksum of the file's bytes
    verified once per process before blosc2 decodes it; a bad file raises :class:`.errors.MapFileError`
    naming the file and the command that rebuilds it). The opened map files are kept per process (the
    last :attr:`HANDLES` ones) and reused.

    ``map_specs``: the maps, in channel order (:func:`order_specs`).
    """

    def __init__(self, folder: str, identifiers: Optional[List[str]] = None,
                 folder_with_segs_from_previous_stage: Optional[str] = None,
                 map_specs: Sequence[MapSpec] = ()):
        if folder_with_segs_from_previous_stage is not None:
            raise ValueError("stored maps are not supported for cascade stages (3d_cascade_fullres): "
                             "use the option maps=\"online\"")
        super().__init__(folder, identifiers, folder_with_segs_from_previous_stage)
        self.map_specs = order_specs(map_specs)
        self._handles = OrderedDict()  # case -> its opened, checked maps (LRU, per process)

    HANDLES = 256

    def __getstate__(self):  # opened files stay in their process (workers open their own)
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()
        return state

    def load_case(self, identifier):
        data, seg, seg_prev, properties = super().load_case(identifier)
        if not self.map_specs:
            return data, seg, seg_prev, properties
        maps = self._handles.get(identifier)
        if maps is not None and all(tuple(m.shape[1:]) == tuple(seg.shape[1:]) for m in maps):
            self._handles.move_to_end(identifier)
        else:
            maps = self._open(identifier, seg)
        return data, SegWithMaps(seg, maps, self.map_specs, self.source_folder, identifier), seg_prev, properties

    def _open(self, identifier: str, seg) -> list:
        """Open (manifest and checksum checks) and check the shape."""
        maps = [load_map(self.source_folder, identifier, s.name, s.resolved) for s in self.map_specs]
        for s, m in zip(self.map_specs, maps):
            if tuple(m.shape[1:]) != tuple(seg.shape[1:]):
                raise map_error(self.source_folder, identifier, s.name,
                                f"has spatial shape {tuple(m.shape[1:])}, the segmentation {tuple(seg.shape[1:])} "
                                f"(stale)", dict(s.resolved.params), s.resolved.fingerprint)
        self._handles[identifier] = maps
        while len(self._handles) > self.HANDLES:
            self._handles.popitem(last=False)
        return maps


def ensure_maps(ctx, requested: dict, log=print, is_rank0: bool = True, barrier=None,
                num_processes: int = 1):
    """At training start: register this process's use (rank 0) of the requested parameter sets
    (:func:`.usage.register_use`: ``--prune`` keeps them while it runs; returns the
    :class:`.usage.MapsUse` to release at the end of training, None where the folder cannot be
    written), then build missing, stale or damaged maps (rank 0, with a log line naming the
    reason and the command that does it beforehand; the other ranks wait at ``barrier``). Damaged
    files are found by the checksum of their bytes, without decoding them. While another process
    builds the same maps this one logs that it waits for that PID (the lock, :mod:`.lock`) and then
    uses what it built; a folder that cannot be written is an error only when maps are missing.
    Damaged files are named in the log by the build (:func:`.build.precompute`)."""
    from .build import precompute
    from .check import find_missing_or_stale
    from .errors import fix_command
    from .registry import requested as as_request
    from .request import resolve_map
    from .usage import register_use

    def announce(todo):
        n = {name: len(c) for name, c in todo.items() if c}
        reasons = sorted({r for c in todo.values() for r in c.values()})
        log(f"nnunet-losses: computing stored maps {n} (cases: {', '.join(reasons)}) in {ctx.maps_dir}; "
            f"to do this beforehand: {fix_command(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, requested)}")

    use = None
    if is_rank0:       # under DDP the other ranks live and die with rank 0 of their node
        use = register_use(ctx.maps_dir, [resolve_map(ctx, n, p) for n, p in as_request(requested).items()], log=log)
    try:
        if is_rank0 and any(find_missing_or_stale(ctx, requested).values()):
            precompute(ctx, requested, num_processes=num_processes, progress=False, log=log, on_build=announce)
        if barrier is not None:
            barrier()
    except BaseException:
        if use is not None:
            use.release()
        raise
    return use

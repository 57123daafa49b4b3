"""Weight maps stored alongside nnU-Net's preprocessed data (SPEC section 4).

Command line::

    nnunet_losses_precompute -d DATASET -c CONFIG [-p PLANS] --maps contour dwce osc [-np N] [--force] [--verify]

For every case of ``nnUNet_preprocessed/DatasetXXX_Name/<plans>_<config>/`` this writes
``<case>_<map>.b2nd`` (blosc2 with nnU-Net's chunking rule ``comp_blosc2_params`` for the
configuration's patch size; LZ4, see ``_CODEC``) into the subfolder ``nnunet_losses_maps/`` of that folder, plus
``nnunet_losses_maps/manifest.json`` (map parameters, package version, a fingerprint of each case's
segmentation, size and content hash of every map file). The subfolder (not the folder itself) keeps
nnU-Net's own tools working: ``nnUNetDatasetBlosc2.get_identifiers`` would take ``<case>_contour.b2nd``
for a case and ``infer_dataset_class`` rejects a folder holding a ``.json`` file.

Maps (the stored array always has nnU-Net's (c, x, y, z) layout and the spatial shape of the seg):

* ``contour`` (CWCE / SDL / CWCD, SPEC 3.3): channel 0 = boundary band, channels 1.. = class
  contours of classes 1..C-1 (region training: of every region); bits packed along the channel axis
  (``np.packbits(..., axis=0, bitorder='little')``): uint8, ceil((C_fg + 1) / 8) channels.
* ``osc`` (Offset Curves, SPEC 3.8): the offset band of every foreground class / region, packed alike.
* ``dwce`` (SPEC 3.7): the U-Net weight map, float16 (float32 if a weight exceeds float16's range).

nnU-Net 2d configurations are computed slice by slice (axis 0), as the network sees them. The
contour element is the cube unless ``element='auto'`` and the configuration's spacing is anisotropic
(max/min > 3), then :func:`nnunet_losses.maps.anisotropic_kernel`.

Safety: every file is written under a temporary name in the same folder and moved into place with
``os.replace``; the manifest (also replaced atomically) lists a file only after it is complete, and
entries about to be rebuilt are removed from it first, so an interrupted run never leaves a file
that passes as valid. A run holds a lock on the maps folder. Up-to-date maps are skipped; changed
parameters or a changed segmentation (content hash) make exactly those cases stale; ``--force``
rebuilds everything requested; ``--verify`` decompresses and hashes every stored file and rebuilds
the ones that fail. Map parameters have flags (``--kernel-size --iterations --element`` for contour,
``--w0 --sigma --sigma-unit`` for dwce, ``--osc-band`` for osc); the ignore label, nnU-Net's -1
(outside the crop mask = background) and regions are handled as in :mod:`nnunet_losses.maps`.

Python API for the training data path: :class:`MapContext`, :func:`find_missing_or_stale`,
:func:`precompute`, :func:`load_map`, :func:`unpack_bits`, :class:`MapFileError`.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import blosc2
import numpy as np

from nnunet_losses import maps as _maps

MAP_NAMES = ("contour", "dwce", "osc")
#: user-facing parameters of each map and their defaults (the losses' defaults)
DEFAULT_PARAMS: Dict[str, dict] = {
    "contour": {"kernel_size": 3, "iterations": 6, "element": "auto"},
    "dwce": {"w0": 10.0, "sigma": 5.0, "sigma_unit": "voxel"},
    "osc": {"band": 3},
}
#: bump when a map's computation changes: stored maps of an older version become stale
ALGORITHM_VERSION = {"contour": 1, "dwce": 1, "osc": 1}
MAPS_SUBFOLDER = "nnunet_losses_maps"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_TMP_MARK = ".tmp-"
#: LZ4: nnU-Net's preprocessing uses LZ4HC (same decoder, same read speed), whose compressor is
#: 4-10x slower on these maps (it dominated the precompute time); the files are 10-30% larger
_CODEC = blosc2.Codec.LZ4
_CLEVEL = 5
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class MapFileError(ValueError):
    """A stored map is missing, stale, truncated or corrupt; the message names the file and the fix."""


@functools.lru_cache(maxsize=None)
def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("nnunet-losses")
    except Exception:  # not installed as a distribution
        import nnunet_losses
        return getattr(nnunet_losses, "__version__", "unknown")


def _sha(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def array_fingerprint(arr: np.ndarray) -> str:
    """Content hash of an array (dtype, shape and values): blake2b-128, hex."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


# ----------------------------------------------------------------------------- bit packing
def pack_bits(channels: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    """(n, *sp) binary (an array or a sequence of n arrays) -> (ceil(n / 8), *sp) uint8; bit k of byte
    k // 8 holds channel k (``np.packbits(..., axis=0, bitorder='little')``, which is about 10x slower
    along the first axis than these n shifted ORs)."""
    chans = [np.asarray(c, dtype=bool) for c in channels]
    if not chans:
        return np.zeros((0, *np.shape(channels)[1:]), np.uint8)
    out = np.zeros(((len(chans) + 7) // 8, *chans[0].shape), np.uint8)
    for k, c in enumerate(chans):
        byte = out[k // 8]
        byte |= c.view(np.uint8) << np.uint8(k % 8) if k % 8 else c.view(np.uint8)
    return out


def unpack_bits(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (ceil(n / 8), *sp) uint8 -> (n, *sp) bool.

    torch equivalent: ``(packed[k // 8] >> (k % 8)) & 1`` for channel k."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=0, count=n, bitorder="little").view(bool)


# ----------------------------------------------------------------------------- context
@dataclass
class MapContext:
    """Everything about one preprocessed dataset/configuration that the maps depend on."""

    folder: str                                  # nnUNet_preprocessed/DatasetXXX/<data_identifier>
    dataset_name: str
    plans_identifier: str
    configuration: str
    spacing: Tuple[float, ...]                   # the configuration's target spacing
    patch_size: Tuple[int, ...]                  # the configuration's patch size (2 or 3 axes)
    num_classes: int                             # softmax heads (labels incl. background, excl. ignore)
    regions: Optional[List[Tuple[int, ...]]] = None
    ignore_label: Optional[int] = None
    labels: Dict[str, object] = field(default_factory=dict)

    @property
    def maps_dir(self) -> str:
        return os.path.join(self.folder, MAPS_SUBFOLDER)

    @property
    def slicewise(self) -> bool:
        """2d configuration: maps are computed per slice of axis 0."""
        return len(self.patch_size) == 2

    @classmethod
    def from_nnunet(cls, plans, configuration: str, dataset_json, folder: Optional[str] = None,
                    dataset_name: Optional[str] = None) -> "MapContext":
        """Build from nnU-Net objects or files: ``plans`` (PlansManager, dict or path), ``dataset_json``
        (dict or path), ``folder`` (default: ``nnUNet_preprocessed/<dataset>/<data_identifier>``)."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        if isinstance(plans, str):
            with open(plans) as f:
                plans = json.load(f)
        pm = plans if isinstance(plans, PlansManager) else PlansManager(plans)
        if isinstance(dataset_json, str):
            with open(dataset_json) as f:
                dataset_json = json.load(f)
        if configuration not in pm.available_configurations:
            raise ValueError(f"configuration {configuration!r} is not in the plans {pm.plans_name!r}; available: "
                             f"{pm.available_configurations}")
        cm = pm.get_configuration(configuration)
        lm = pm.get_label_manager(dataset_json)
        dataset_name = dataset_name or pm.dataset_name
        if folder is None:
            from nnunetv2.paths import nnUNet_preprocessed
            if nnUNet_preprocessed is None:
                raise ValueError("nnUNet_preprocessed is not set: export it or pass folder=")
            folder = os.path.join(nnUNet_preprocessed, dataset_name, cm.data_identifier)
        regions = None
        if lm.has_regions:
            regions = [tuple(int(i) for i in np.atleast_1d(r)) for r in lm.foreground_regions]
        return cls(folder=str(folder), dataset_name=dataset_name, plans_identifier=pm.plans_name,
                   configuration=configuration, spacing=tuple(float(s) for s in cm.spacing),
                   patch_size=tuple(int(p) for p in cm.patch_size), num_classes=int(lm.num_segmentation_heads)
                   if not lm.has_regions else len(lm.all_labels), regions=regions,
                   ignore_label=lm.ignore_label, labels=dict(dataset_json["labels"]))

    @classmethod
    def from_ids(cls, dataset: Union[int, str], configuration: str, plans: str = "nnUNetPlans") -> "MapContext":
        """Resolve ``-d``/``-c``/``-p`` like nnU-Net's commands (uses ``nnUNet_preprocessed``)."""
        from nnunetv2.paths import nnUNet_preprocessed
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
        if nnUNet_preprocessed is None:
            raise ValueError("nnUNet_preprocessed is not set: export it as for nnU-Net's own commands")
        name = maybe_convert_to_dataset_name(dataset)
        base = os.path.join(nnUNet_preprocessed, name)
        plans_file = os.path.join(base, plans + ".json")
        if not os.path.isfile(plans_file):
            raise ValueError(f"plans file {plans_file} not found: run nnUNetv2_plan_and_preprocess -d {dataset} first")
        ctx = cls.from_nnunet(plans_file, configuration, os.path.join(base, "dataset.json"), dataset_name=name)
        if not os.path.isdir(ctx.folder):
            raise ValueError(f"preprocessed folder {ctx.folder} not found: run nnUNetv2_plan_and_preprocess -d "
                             f"{dataset} -c {configuration} -p {plans} first")
        return ctx

    def identifiers(self) -> List[str]:
        """Cases of the preprocessed folder (nnU-Net's blosc2 layout)."""
        if not os.path.isdir(self.folder):
            raise ValueError(f"preprocessed folder {self.folder} does not exist")
        ids = sorted(f[:-5] for f in os.listdir(self.folder) if f.endswith(".b2nd") and not f.endswith("_seg.b2nd"))
        if not ids and any(f.endswith(".npz") for f in os.listdir(self.folder)):
            raise ValueError(f"{self.folder} holds .npz files (an older nnU-Net format); re-run "
                             f"nnUNetv2_preprocess with nnU-Net >= 2.6 to get blosc2 (.b2nd) files")
        return ids


# ----------------------------------------------------------------------------- parameters
def _check_params(name: str, params: Optional[Mapping]) -> dict:
    if name not in DEFAULT_PARAMS:
        raise ValueError(f"unknown map {name!r}; choose from {MAP_NAMES}")
    p = dict(DEFAULT_PARAMS[name])
    for k, v in (params or {}).items():
        if k not in p:
            raise ValueError(f"unknown parameter {k!r} for map {name!r}; allowed: {sorted(p)}")
        p[k] = v
    if name == "contour":
        for k in ("kernel_size", "iterations"):
            if isinstance(p[k], bool) or int(p[k]) != p[k] or p[k] < 1:
                raise ValueError(f"contour {k} must be a whole number >= 1, got {p[k]!r}")
            p[k] = int(p[k])
        if p["element"] not in ("auto", "cube"):
            raise ValueError(f"contour element must be 'auto' or 'cube', got {p['element']!r}")
    elif name == "dwce":
        p["w0"], p["sigma"] = float(p["w0"]), float(p["sigma"])
        if not (p["w0"] >= 0 and math.isfinite(p["w0"])) or not (p["sigma"] > 0 and math.isfinite(p["sigma"])):
            raise ValueError(f"dwce needs w0 >= 0 and sigma > 0, got w0={p['w0']}, sigma={p['sigma']}")
        if p["sigma_unit"] not in ("voxel", "mm"):
            raise ValueError(f"dwce sigma_unit must be 'voxel' or 'mm', got {p['sigma_unit']!r}")
    elif name == "osc":
        if isinstance(p["band"], bool) or int(p["band"]) != p["band"] or p["band"] < 1:
            raise ValueError(f"osc band must be a whole number >= 1, got {p['band']!r}")
        p["band"] = int(p["band"])
    return p


def resolve_params(ctx: MapContext, name: str, params: Optional[Mapping] = None) -> dict:
    """User parameters + everything of the dataset they depend on: the dict whose hash decides staleness."""
    p = _check_params(name, params)
    r = {"map": name, "params": p, "algorithm": ALGORITHM_VERSION[name], "slicewise": ctx.slicewise,
         "num_classes": ctx.num_classes, "regions": [list(x) for x in ctx.regions] if ctx.regions else None,
         "ignore_label": ctx.ignore_label}
    lead = (1,) if ctx.slicewise else ()
    if name == "contour":
        k = p["kernel_size"]
        if p["element"] == "auto":
            k = _maps.anisotropic_kernel(ctx.spacing, k)
        r["kernel"] = list(lead + (tuple(k) if isinstance(k, tuple) else (k,) * len(ctx.spacing)))
    elif name == "osc":
        r["kernel"] = list(lead + (3,) * len(ctx.spacing))
    elif name == "dwce":
        r["spacing"] = list(ctx.spacing) if p["sigma_unit"] == "mm" else None
    if name in ("contour", "osc"):
        fg = [f"region{list(x)}" for x in ctx.regions] if ctx.regions else [str(c) for c in range(1, ctx.num_classes)]
        r["channels"] = (["band"] if name == "contour" else []) + [("contour:" if name == "contour" else "band:") + c
                                                                     for c in fg]
    else:
        r["channels"] = ["weight"]
    return r


def _requested(names_or_params) -> Dict[str, Optional[dict]]:
    if isinstance(names_or_params, str):
        names_or_params = [names_or_params]
    if isinstance(names_or_params, Mapping):
        req = dict(names_or_params)
    else:
        req = {n: None for n in names_or_params}
    for n in req:
        if n not in MAP_NAMES:
            raise ValueError(f"unknown map {n!r}; choose from {MAP_NAMES}")
    if not req:
        raise ValueError(f"no map requested; choose from {MAP_NAMES}")
    return req


# ----------------------------------------------------------------------------- computation
def compute_map(seg: np.ndarray, rp: dict) -> np.ndarray:
    """The array stored for one case: ``seg`` (1, *sp) nnU-Net segmentation, ``rp`` from :func:`resolve_params`.

    nnU-Net marks voxels outside the nonzero crop mask with -1 and its training transforms turn them
    into background (``RemoveLabelTansform(-1, 0)``); the maps see them as background too.
    """
    lab = np.asarray(seg)[0]
    lab = np.where(lab < 0, 0, lab)
    name = rp["map"]
    kw = dict(num_classes=rp["num_classes"], regions=rp["regions"], ignore_label=rp["ignore_label"])
    if name == "contour":
        cc, band = _maps.contours_and_band(lab, kernel_size=rp["kernel"], iterations=rp["params"]["iterations"], **kw)
        return pack_bits([band, *cc])
    if name == "osc":
        return pack_bits(_maps.offset_band(lab, band=rp["params"]["band"], kernel_size=rp["kernel"], **kw))
    if name == "dwce":
        p = rp["params"]
        w = _maps.unet_weight_map(lab, p["w0"], p["sigma"], spacing=rp["spacing"], ignore_label=rp["ignore_label"],
                                  per_slice=rp["slicewise"])
        return w[None].astype(np.float16 if float(w.max(initial=0)) <= _FLOAT16_MAX else np.float32)
    raise ValueError(f"unknown map {name!r}")


def _paths(maps_dir: str, case: str, name: str) -> str:
    return os.path.join(maps_dir, f"{case}_{name}.b2nd")


def _filter(arr: np.ndarray) -> "blosc2.Filter":
    """Bit-packed maps (uint8): BITSHUFFLE (about 40% smaller, as fast); float maps: SHUFFLE. Fixed per
    dtype, measured on MSD Hippocampus, instead of nnU-Net's trial compression (``_select_filter``,
    two extra compressions per file)."""
    return blosc2.Filter.BITSHUFFLE if arr.dtype == np.uint8 else blosc2.Filter.SHUFFLE


def _write_b2nd(arr: np.ndarray, path: str, patch_size: Sequence[int], meta: dict) -> None:
    """Atomic blosc2 write with nnU-Net's chunking (``comp_blosc2_params``): temp name in the same
    folder, then os.replace. Not fsynced here: :func:`precompute` fsyncs every file (in a background
    thread) before the manifest lists it."""
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    arr = np.ascontiguousarray(arr)
    blocks, chunks = comp_blosc2_params(arr.shape, tuple(patch_size), arr.itemsize)
    # compressed in memory, written in one go: the same .b2nd frame as blosc2.asarray(urlpath=...), fewer syscalls
    out = blosc2.asarray(arr, chunks=chunks, blocks=blocks, contiguous=True,  # contiguous: to_cframe copies nothing
                         cparams={"codec": _CODEC, "clevel": _CLEVEL, "filters": [_filter(arr)], "nthreads": 1})
    out.schunk.vlmeta["nnunet_losses"] = meta
    frame = out.to_cframe()
    tmp = f"{path}{_TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(frame)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync_files(paths: Sequence[str]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _seg_path(folder: str, case: str) -> str:
    return os.path.join(folder, f"{case}_seg.b2nd")


def _stat(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_seg(folder: str, case: str) -> Tuple[np.ndarray, dict]:
    path = _seg_path(folder, case)
    if not os.path.isfile(path):
        raise ValueError(f"segmentation {path} not found: the preprocessed folder is incomplete; re-run "
                         f"nnUNetv2_preprocess")
    st = _stat(path)
    try:
        seg = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1})[:]
    except Exception as e:
        raise ValueError(f"cannot read segmentation {path} ({e}); re-run nnUNetv2_preprocess") from e
    return seg, {**st, "sha": array_fingerprint(seg), "shape": list(seg.shape)}


def _build_case(folder: str, maps_dir: str, case: str, rps: List[dict], patch_size: Sequence[int]) -> Tuple[str, dict]:
    """Worker: compute and write the requested maps of one case; returns the manifest entries."""
    blosc2.set_nthreads(1)
    seg, seg_info = _read_seg(folder, case)
    entries = {}
    for rp in rps:
        arr = compute_map(seg, rp)
        sha = array_fingerprint(arr)
        meta = {"map": rp["map"], "params_sha": _sha(rp), "seg_sha": seg_info["sha"], "sha": sha}
        path = _paths(maps_dir, case, rp["map"])
        _write_b2nd(arr, path, patch_size, meta)
        entries[rp["map"]] = {"file": os.path.basename(path), "shape": list(arr.shape), "dtype": arr.dtype.str,
                              "size": os.path.getsize(path), **meta}
    return case, {"seg": seg_info, "maps": entries}


# ----------------------------------------------------------------------------- manifest
def manifest_path(folder: str) -> str:
    return os.path.join(folder, MAPS_SUBFOLDER, MANIFEST_NAME)


def read_manifest(folder: str) -> dict:
    """The manifest of a preprocessed configuration folder ({} structure if there is none yet)."""
    path = manifest_path(folder)
    if not os.path.isfile(path):
        return {"format": MANIFEST_FORMAT, "params": {}, "cases": {}}
    try:
        with open(path) as f:
            man = json.load(f)
        if man.get("format") != MANIFEST_FORMAT or "cases" not in man:
            raise ValueError(f"unknown manifest format {man.get('format')!r}")
    except ValueError as e:
        raise MapFileError(f"map manifest {path} is corrupt ({e}); delete it and re-run nnunet_losses_precompute "
                           f"(every map is then rebuilt)") from e
    man.setdefault("params", {})
    return man


_MANIFEST_CACHE: Dict[str, Tuple[tuple, dict]] = {}


def _cached_manifest(folder: str) -> dict:
    path = manifest_path(folder)
    try:
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        key = None
    hit = _MANIFEST_CACHE.get(path)
    if hit is None or hit[0] != key or key is None:
        hit = (key, read_manifest(folder))
        _MANIFEST_CACHE[path] = hit
    return hit[1]


def _write_manifest(ctx: MapContext, man: dict, keep: Iterable[str] = ()) -> None:
    """Atomic write; parameter sets used by no map file (and not in ``keep``) are dropped."""
    used = {e["params_sha"] for c in man["cases"].values() for e in c.get("maps", {}).values()} | set(keep)
    man["params"] = {k: v for k, v in man["params"].items() if k in used}
    man.update(format=MANIFEST_FORMAT, package="nnunet-losses", version=_package_version(),
               dataset=ctx.dataset_name, plans=ctx.plans_identifier, configuration=ctx.configuration)
    path = manifest_path(ctx.folder)
    tmp = f"{path}{_TMP_MARK}{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fix_command(dataset: str, configuration: str, plans: str,
                maps: Union[str, Iterable[str], Mapping[str, Optional[Mapping]]], verify: bool = False) -> str:
    """The command that (re)builds ``maps`` (names or {name: params}) with their parameters."""
    req = _requested(maps)
    cmd = f"nnunet_losses_precompute -d {dataset} -c {configuration} -p {plans} --maps {' '.join(req)}"
    flags = {"kernel_size": "--kernel-size", "iterations": "--iterations", "element": "--element",
             "w0": "--w0", "sigma": "--sigma", "sigma_unit": "--sigma-unit", "band": "--osc-band"}
    for name, params in req.items():
        params = params or {}
        for k, default in DEFAULT_PARAMS[name].items():
            if k in params and params[k] != default:
                cmd += f" {flags[k]} {params[k]}"
    return cmd + (" --verify" if verify else "")


# ----------------------------------------------------------------------------- checks
def _deep_check(path: str, entry: dict) -> Optional[str]:
    """Open and decompress a map file; compare with its manifest entry. Returns a problem or None."""
    try:
        arr = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1})
        data = arr[:]
        meta = arr.schunk.vlmeta["nnunet_losses"]
    except Exception as e:
        return f"cannot be read ({type(e).__name__}: {e}): truncated or corrupt"
    if list(data.shape) != entry["shape"] or data.dtype.str != entry["dtype"]:
        return f"holds {data.dtype.str} {list(data.shape)}, the manifest says {entry['dtype']} {entry['shape']}"
    if meta.get("sha") != entry["sha"] or array_fingerprint(data) != entry["sha"]:
        return "content differs from the manifest (corrupt or replaced)"
    return None


def find_missing_or_stale(ctx: MapContext, maps: Union[str, Iterable[str], Mapping[str, Optional[dict]]],
                          identifiers: Optional[Sequence[str]] = None, deep: bool = False) -> Dict[str, Dict[str, str]]:
    """Which stored maps must be (re)built: ``{map: {case: reason}}`` (empty inner dicts when all is fine).

    ``maps``: names, or ``{name: params}`` with non-default parameters. A map is missing when the
    manifest has no entry or the file is absent; stale when its parameters, the case's segmentation
    (content hash; only re-hashed when its size or mtime changed) or the file size differ from the
    manifest. ``deep`` also decompresses every file and checks its content hash (``--verify``).
    Read-only.
    """
    req = _requested(maps)
    rps = {n: resolve_params(ctx, n, p) for n, p in req.items()}
    ids = ctx.identifiers() if identifiers is None else list(identifiers)
    return _check(ctx, rps, read_manifest(ctx.folder), ids, deep)[0]


def _check(ctx: MapContext, rps: Dict[str, dict], man: dict, ids: Sequence[str], deep: bool):
    """(todo {map: {case: reason}}, {case: refreshed seg info} for segs touched but unchanged)."""
    out: Dict[str, Dict[str, str]] = {n: {} for n in rps}
    touched: Dict[str, dict] = {}
    for case in ids:
        centry = man["cases"].get(case)
        seg_changed = None
        if centry is not None:
            seg_file = _seg_path(ctx.folder, case)
            st = _stat(seg_file) if os.path.isfile(seg_file) else None
            if st is None:
                raise ValueError(f"segmentation {seg_file} not found; re-run nnUNetv2_preprocess")
            old = centry["seg"]
            if st["size"] != old["size"] or st["mtime_ns"] != old["mtime_ns"]:
                info = _read_seg(ctx.folder, case)[1]
                seg_changed = info["sha"] != old["sha"]
                if not seg_changed:
                    touched[case] = info
            else:
                seg_changed = False
        for n, rp in rps.items():
            e = None if centry is None else centry.get("maps", {}).get(n)
            path = _paths(ctx.maps_dir, case, n)
            if e is None:
                out[n][case] = "missing"
            elif not os.path.isfile(path):
                out[n][case] = "missing (file deleted)"
            elif seg_changed or e["seg_sha"] != centry["seg"]["sha"]:
                out[n][case] = "stale (segmentation changed)"
            elif e["params_sha"] != _sha(rp):
                out[n][case] = "stale (parameters changed)"
            elif os.path.getsize(path) != e["size"]:
                out[n][case] = "corrupt (file size differs from the manifest: truncated or replaced)"
            elif deep:
                problem = _deep_check(path, e)
                if problem:
                    out[n][case] = "corrupt (" + problem + ")"
    return out, touched


# ----------------------------------------------------------------------------- loading
def load_map(folder: str, case: str, name: str, check_params: Optional[Mapping] = None) -> "blosc2.NDArray":
    """Open a stored map like nnU-Net opens its data (read-only, memory-mapped), after validation.

    Raises :class:`MapFileError` naming the file and the command that fixes it when the map is not
    in the manifest, absent, of the wrong size (truncated), unreadable, or (``check_params``: the
    dict from :func:`resolve_params`) built with other parameters. Decompression errors when the
    caller later reads a crop can be wrapped with :func:`map_error`.
    """
    man = _cached_manifest(folder)
    path = _paths(os.path.join(folder, MAPS_SUBFOLDER), case, name)
    entry = man["cases"].get(case, {}).get("maps", {}).get(name)
    if entry is None:
        raise map_error(folder, case, name, "is missing (not in the manifest: never built or interrupted)")
    if not os.path.isfile(path):
        raise map_error(folder, case, name, "is missing (file deleted)")
    if check_params is not None and entry["params_sha"] != _sha(dict(check_params)):
        raise map_error(folder, case, name, "was built with other parameters (stale)", check_params.get("params"))
    if os.path.getsize(path) != entry["size"]:
        raise map_error(folder, case, name, f"is truncated or corrupt ({os.path.getsize(path)} bytes, the manifest "
                                            f"says {entry['size']})")
    try:
        arr = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1},
                          **({} if os.name == "nt" else {"mmap_mode": "r"}))
        meta = arr.schunk.vlmeta["nnunet_losses"]
    except Exception as e:
        raise map_error(folder, case, name, f"cannot be opened ({type(e).__name__}: {e}): truncated or corrupt") from e
    if list(arr.shape) != entry["shape"] or meta.get("sha") != entry["sha"]:
        raise map_error(folder, case, name, "does not match the manifest (replaced or corrupt)")
    return arr


def map_channels(folder: str, name: str, case: Optional[str] = None) -> List[str]:
    """Channel names of a stored map (from the manifest), e.g. ['band', 'contour:1', 'contour:2']."""
    man = _cached_manifest(folder)
    cases = [case] if case else list(man["cases"])
    for c in cases:
        e = man["cases"].get(c, {}).get("maps", {}).get(name)
        if e is not None:
            return list(man["params"][e["params_sha"]]["channels"])
    raise map_error(folder, case or "<any case>", name, "is missing (not in the manifest)")


def map_error(folder: str, case: str, name: str, problem: str, params: Optional[Mapping] = None) -> MapFileError:
    """The error for a bad map file: names the file and the command that rebuilds it."""
    man = _cached_manifest(folder) if os.path.isfile(manifest_path(folder)) else {}
    ident = os.path.basename(os.path.normpath(folder))
    dataset = man.get("dataset") or os.path.basename(os.path.dirname(os.path.normpath(folder)))
    plans = man.get("plans") or (ident.split("_", 1)[0] if "_" in ident else "nnUNetPlans")
    config = man.get("configuration") or (ident.split("_", 1)[1] if "_" in ident else ident)
    if params is None:
        e = man.get("cases", {}).get(case, {}).get("maps", {}).get(name)
        params = man.get("params", {}).get(e["params_sha"], {}).get("params") if e else None
    path = _paths(os.path.join(folder, MAPS_SUBFOLDER), case, name)
    return MapFileError(f"map file {path} {problem}. Fix: {fix_command(dataset, config, plans, {name: params})}")


# ----------------------------------------------------------------------------- the run
def _mp_context():
    """fork is cheap (workers need no torch); spawn once CUDA is initialised in this process (a trainer)."""
    import multiprocessing as mp
    torch = sys.modules.get("torch")
    cuda = torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized()
    if cuda or "fork" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    return mp.get_context("fork")


@contextlib.contextmanager
def _lock(maps_dir: str):
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(os.path.join(maps_dir, ".lock"), "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def precompute(ctx: MapContext, maps: Union[str, Iterable[str], Mapping[str, Optional[dict]]],
               num_processes: int = 1, force: bool = False, verify: bool = False, progress: bool = True,
               identifiers: Optional[Sequence[str]] = None, mp_context=None, log=print) -> dict:
    """Compute the missing or stale maps of every case; returns a summary.

    ``maps``: names or ``{name: params}``; ``force`` rebuilds everything requested; ``verify`` also
    decompresses and hashes every existing file and rebuilds the ones that fail. Workers:
    ``num_processes`` (1 = in this process). If a worker dies the finished cases are recorded and a
    ``RuntimeError`` says to re-run.
    """
    from tqdm import tqdm
    t0 = time.perf_counter()
    req = _requested(maps)
    rps = {n: resolve_params(ctx, n, p) for n, p in req.items()}
    ids = ctx.identifiers() if identifiers is None else list(identifiers)
    os.makedirs(ctx.maps_dir, exist_ok=True)
    with _lock(ctx.maps_dir):
        for f in os.listdir(ctx.maps_dir):       # leftovers of an interrupted run
            if _TMP_MARK in f:
                os.remove(os.path.join(ctx.maps_dir, f))
        try:
            man = read_manifest(ctx.folder)
        except MapFileError as e:               # our own index: rebuild it (every map is recomputed)
            log(f"nnunet_losses_precompute: {e}; starting a new manifest")
            man = {"format": MANIFEST_FORMAT, "params": {}, "cases": {}}
        todo, touched = _check(ctx, rps, man, ids, verify)
        if force:
            todo = {n: dict.fromkeys(ids, "forced") for n in req}
        for c, info in touched.items():           # same content, new mtime: remember the new stat
            man["cases"][c]["seg"] = info
        if identifiers is None:                   # cases gone from the preprocessed folder: drop their maps
            for c in [c for c in man["cases"] if c not in set(ids)]:
                for e in man["cases"].pop(c).get("maps", {}).values():
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(ctx.maps_dir, e["file"]))
        for n, rp in rps.items():
            man["params"][_sha(rp)] = rp
        # forget what is about to be rebuilt before touching any file
        for n, cases in todo.items():
            for c in cases:
                man["cases"].get(c, {}).get("maps", {}).pop(n, None)
        keep = [_sha(rp) for rp in rps.values()]
        _write_manifest(ctx, man, keep)
        jobs: Dict[str, List[dict]] = {}
        for n, cases in todo.items():
            for c in cases:
                jobs.setdefault(c, []).append(rps[n])
        problems = {n: {c: r for c, r in cs.items() if not r.startswith("missing") and r != "forced"}
                    for n, cs in todo.items()}
        for n, cs in problems.items():
            for c, r in cs.items():
                if r.startswith("corrupt"):
                    log(f"nnunet_losses_precompute: {_paths(ctx.maps_dir, c, n)} {r}; rebuilding")
        n_skipped = sum(len(ids) - len(todo[n]) for n in req)
        done: List[str] = []
        last_flush = time.monotonic()
        # a file enters the manifest only once it is on disk (fsync), in a thread, off the critical path
        syncer = ThreadPoolExecutor(1, thread_name_prefix="nnunet_losses_fsync")
        pending: List[tuple] = []

        def record(case, entry):
            paths = [os.path.join(ctx.maps_dir, e["file"]) for e in entry["maps"].values()]
            pending.append((syncer.submit(_fsync_files, paths), case, entry))
            if time.monotonic() - last_flush > 2.0:
                flush()

        def flush():
            nonlocal last_flush
            while pending:
                fut, case, entry = pending.pop(0)
                fut.result()
                apply(case, entry)
            _write_manifest(ctx, man, keep)
            last_flush = time.monotonic()

        def apply(case, entry):
            c = man["cases"].setdefault(case, {"maps": {}})
            c["seg"] = entry["seg"]
            c.setdefault("maps", {})
            for n, e in list(c["maps"].items()):     # maps built against an older segmentation
                if e["seg_sha"] != entry["seg"]["sha"]:
                    c["maps"].pop(n)
            c["maps"].update(entry["maps"])
            done.append(case)

        order = sorted(jobs)
        desc = f"nnunet_losses_precompute {','.join(req)}"
        bar = None
        try:
            if num_processes <= 1 or len(order) <= 1:
                bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="case")
                for c in order:
                    record(*_build_case(ctx.folder, ctx.maps_dir, c, jobs[c], ctx.patch_size))
                    bar.update()
            else:
                ex = ProcessPoolExecutor(min(num_processes, len(order)), mp_context=mp_context or _mp_context())
                try:
                    futs = [ex.submit(_build_case, ctx.folder, ctx.maps_dir, c, jobs[c], ctx.patch_size) for c in order]
                    bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="case")
                    for fut in as_completed(futs):
                        record(*fut.result())
                        bar.update()
                except BrokenProcessPool as e:
                    raise RuntimeError(
                        f"nnunet_losses_precompute was interrupted: a worker process died (killed or out of "
                        f"memory) after {len(done) + len(pending)} of {len(order)} cases. Finished maps are recorded, nothing "
                        f"half-written is ever used. Re-run to finish: "
                        f"{fix_command(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, req)}") from e
                finally:
                    ex.shutdown(wait=True, cancel_futures=True)
        finally:
            if bar is not None:
                bar.close()
            try:
                flush()
            finally:
                syncer.shutdown(wait=True)
    sizes = {n: sum(man["cases"].get(c, {}).get("maps", {}).get(n, {}).get("size", 0) for c in ids) for n in req}
    return {"built": {n: sorted(todo[n]) for n in req}, "skipped": n_skipped, "problems": problems,
            "bytes": sizes, "seconds": time.perf_counter() - t0, "cases": len(ids)}


def preprocessed_bytes(ctx: MapContext, identifiers: Optional[Sequence[str]] = None) -> int:
    """Size of nnU-Net's own files (data + seg + pkl) of the configuration folder."""
    ids = ctx.identifiers() if identifiers is None else identifiers
    return sum(os.path.getsize(os.path.join(ctx.folder, c + s)) for c in ids for s in (".b2nd", "_seg.b2nd", ".pkl")
               if os.path.isfile(os.path.join(ctx.folder, c + s)))


# ----------------------------------------------------------------------------- command line
def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def main(argv: Optional[Sequence[str]] = None) -> int:
    from nnunetv2.configuration import default_num_processes
    ap = argparse.ArgumentParser(
        prog="nnunet_losses_precompute",
        description="Precompute the loss weight maps (contours/band for CWCE, SDL, CWCD; U-Net weight map for DWCE; "
                    "offset band for OsC) next to nnU-Net's preprocessed data, in its blosc2 format.")
    ap.add_argument("-d", required=True, help="dataset name or id, as for nnUNetv2_train")
    ap.add_argument("-c", required=True, nargs="+", help="configuration(s), e.g. 3d_fullres 2d")
    ap.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    ap.add_argument("--maps", required=True, nargs="+", choices=MAP_NAMES, help="maps to compute")
    ap.add_argument("-np", type=int, default=default_num_processes, help=f"worker processes ({default_num_processes})")
    ap.add_argument("--force", action="store_true", help="rebuild every requested map")
    ap.add_argument("--verify", action="store_true",
                    help="decompress and hash every stored map, rebuild the ones that fail")
    g = ap.add_argument_group("map parameters (stored maps with other values are stale and rebuilt)")
    g.add_argument("--kernel-size", type=int, default=3, help="contour: structuring element side (3; authors' code: 2)")
    g.add_argument("--iterations", type=int, default=6, help="contour: erosion iterations (6; authors' code: 1)")
    g.add_argument("--element", choices=("auto", "cube"), default="auto",
                   help="contour: 'auto' = spacing-aware element when max/min spacing > 3, else cube (auto)")
    g.add_argument("--w0", type=float, default=10.0, help="dwce: border weight w0 (10)")
    g.add_argument("--sigma", type=float, default=5.0, help="dwce: border width sigma (5)")
    g.add_argument("--sigma-unit", choices=("voxel", "mm"), default="voxel", help="dwce: unit of sigma and distances")
    g.add_argument("--osc-band", type=int, default=3, help="osc: number of offset curves on each side (3)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    all_params = {"contour": {"kernel_size": a.kernel_size, "iterations": a.iterations, "element": a.element},
                  "dwce": {"w0": a.w0, "sigma": a.sigma, "sigma_unit": a.sigma_unit}, "osc": {"band": a.osc_band}}
    req = {n: all_params[n] for n in dict.fromkeys(a.maps)}
    status = 0
    for config in a.c:
        try:
            ctx = MapContext.from_ids(a.d, config, a.p)
            res = precompute(ctx, req, num_processes=a.np, force=a.force, verify=a.verify, progress=not a.no_progress)
        except (ValueError, RuntimeError) as e:
            print(f"nnunet_losses_precompute: error: {e}", file=sys.stderr)
            status = 1
            continue
        built = {n: len(c) for n, c in res["built"].items()}
        pre = preprocessed_bytes(ctx)
        total = sum(res["bytes"].values())
        print(f"{ctx.dataset_name} {config}: {res['cases']} cases, built {built}, {res['skipped']} up to date, "
              f"{res['seconds']:.1f} s; maps {_human(total)} = {100.0 * total / max(pre, 1):.1f}% of the "
              f"preprocessed data ({_human(pre)}) in {ctx.maps_dir}")
        if a.verify:
            bad = sum(r.startswith("corrupt") for v in res["problems"].values() for r in v.values())
            print(f"verify: {bad} map file(s) failed and were rebuilt" if bad else "verify: all map files OK")
    return status


if __name__ == "__main__":
    sys.exit(main())

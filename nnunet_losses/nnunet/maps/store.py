"""Stored map files and their manifest: names, writing, checksums, opening, errors.

For every case of ``nnUNet_preprocessed/DatasetXXX_Name/<plans>_<config>/`` a map kind is stored as
``nnunet_losses_maps/<case>_<kind>.b2nd`` (blosc2 with nnU-Net's chunking rule
``comp_blosc2_params`` for the configuration's patch size), listed in
``nnunet_losses_maps/manifest.json``: the resolved parameters of every kind (by fingerprint), and
per case the segmentation's content hash and, per map file, its shape, dtype, size, the content hash
of the array (``sha``) and the checksum of the file's bytes (``file_sha``).

Why two hashes: blosc2 frames carry no checksum, and some damaged frames crash its decoder. The
file checksum is verified on the raw bytes *before* blosc2 reads the file (once per process and
file), so a damaged file is reported (:class:`MapFileError`, naming the file and the command that
rebuilds it) and never decoded; equal bytes give the recorded content, so the loader decodes no
file twice. The content hash of the decoded array is what ``nnunet_losses_precompute --verify``
checks.

Safety: every file is written under a temporary name in the same folder and moved into place with
``os.replace`` (:mod:`nnunet_losses._io`); the manifest lists a file only after it is on disk.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import blosc2
import numpy as np

from nnunet_losses._io import TMP_MARK, atomic_write_bytes, atomic_write_json

from .context import MAPS_SUBFOLDER
from .packing import pack_bits
from .registry import map_kind

__all__ = ["MapFileError", "MANIFEST_NAME", "MANIFEST_FORMAT", "array_fingerprint", "bytes_checksum", "fingerprint",
           "map_path", "manifest_path", "read_manifest", "write_manifest", "cached_manifest", "encode",
           "write_map_file", "load_map", "map_channels", "map_error", "fix_command", "requested", "maps_lock",
           "read_seg", "seg_path", "file_stat", "verify_file_checksum"]

MANIFEST_NAME = "manifest.json"
#: 2: map entries carry ``file_sha`` (checksum of the file's bytes). Older manifests are recognised
#: and every map is rebuilt (with a log line).
MANIFEST_FORMAT = 2
#: LZ4: nnU-Net's preprocessing uses LZ4HC (same decoder, same read speed), whose compressor is
#: 4-10x slower on these maps (it dominated the precompute time); the files are 10-30% larger
_CODEC = blosc2.Codec.LZ4
_CLEVEL = 5
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class MapFileError(ValueError):
    """A stored map is missing, stale, truncated or corrupt; the message names the file and the fix."""


@functools.lru_cache(maxsize=None)
def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("nnunet-losses")
    except Exception:  # not installed as a distribution
        from nnunet_losses import __version__
        return __version__


def fingerprint(obj) -> str:
    """Short hash of a JSON-able object (the resolved parameters of a kind)."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def array_fingerprint(arr: np.ndarray) -> str:
    """Content hash of an array (dtype, shape and values): blake2b-128, hex."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def bytes_checksum(data: bytes) -> str:
    """Checksum of a file's bytes: blake2b-128, hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def map_path(maps_dir: str, case: str, name: str) -> str:
    return os.path.join(maps_dir, f"{case}_{name}.b2nd")


def manifest_path(folder: str) -> str:
    return os.path.join(folder, MAPS_SUBFOLDER, MANIFEST_NAME)


def seg_path(folder: str, case: str) -> str:
    return os.path.join(folder, f"{case}_seg.b2nd")


def file_stat(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def requested(names_or_params) -> Dict[str, Optional[dict]]:
    """``"contour"``, ``["contour", "dwce"]`` or ``{"contour": {...}}`` -> ``{kind: params or None}``."""
    if isinstance(names_or_params, str):
        names_or_params = [names_or_params]
    req = dict(names_or_params) if isinstance(names_or_params, Mapping) else {n: None for n in names_or_params}
    for n in req:
        map_kind(n)
    if not req:
        from .registry import map_kinds
        raise ValueError(f"no map requested; choose from {tuple(map_kinds())}")
    return req


# ----------------------------------------------------------------------------- manifest
def _empty_manifest(previous_format=None) -> dict:
    man = {"format": MANIFEST_FORMAT, "params": {}, "cases": {}}
    if previous_format is not None:
        man["_previous_format"] = previous_format
    return man


def read_manifest(folder: str) -> dict:
    """The manifest of a preprocessed configuration folder (an empty one if there is none yet).

    A manifest of an older format is returned empty with ``_previous_format`` set (every map is then
    rebuilt); an unreadable one raises :class:`MapFileError`.
    """
    path = manifest_path(folder)
    if not os.path.isfile(path):
        return _empty_manifest()
    try:
        with open(path) as f:
            man = json.load(f)
        if not isinstance(man, dict) or "cases" not in man:
            raise ValueError("no 'cases'")
    except ValueError as e:
        raise MapFileError(f"map manifest {path} is corrupt ({e}); delete it and re-run nnunet_losses_precompute "
                           f"(every map is then rebuilt)") from e
    if man.get("format") != MANIFEST_FORMAT:
        if isinstance(man.get("format"), int) and man["format"] < MANIFEST_FORMAT:
            return _empty_manifest(man["format"])
        raise MapFileError(f"map manifest {path} has format {man.get('format')!r}, newer than this nnunet-losses "
                           f"understands ({MANIFEST_FORMAT}): upgrade nnunet-losses, or delete the folder "
                           f"{os.path.dirname(path)} to rebuild the maps")
    man.setdefault("params", {})
    return man


_MANIFEST_CACHE: Dict[str, Tuple[tuple, dict]] = {}


def cached_manifest(folder: str) -> dict:
    """:func:`read_manifest`, re-read only when the file changed (per process)."""
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


def write_manifest(ctx, man: dict, keep: Iterable[str] = ()) -> None:
    """Atomic write; parameter sets used by no map file (and not in ``keep``) are dropped."""
    man.pop("_previous_format", None)
    used = {e["params_sha"] for c in man["cases"].values() for e in c.get("maps", {}).values()} | set(keep)
    man["params"] = {k: v for k, v in man["params"].items() if k in used}
    man.update(format=MANIFEST_FORMAT, package="nnunet-losses", version=package_version(),
               dataset=ctx.dataset_name, plans=ctx.plans_identifier, configuration=ctx.configuration)
    atomic_write_json(manifest_path(ctx.folder), man, indent=1, sort_keys=True)


@contextlib.contextmanager
def maps_lock(maps_dir: str):
    """Exclusive lock on a maps folder (one precompute run at a time; no lock on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(os.path.join(maps_dir, ".lock"), "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- writing
def encode(kind_name: str, arr: np.ndarray) -> np.ndarray:
    """The array as stored: binary kinds bit-packed (uint8), continuous ones float16 (float32 if a value
    exceeds float16's range)."""
    if map_kind(kind_name).binary:
        return pack_bits(arr)
    arr = np.asarray(arr)
    return arr.astype(np.float16 if float(np.abs(arr).max(initial=0)) <= _FLOAT16_MAX else np.float32)


def _filter(arr: np.ndarray) -> "blosc2.Filter":
    """Bit-packed maps (uint8): BITSHUFFLE (about 40% smaller, as fast); float maps: SHUFFLE. Fixed per
    dtype, measured on MSD Hippocampus, instead of nnU-Net's trial compression (two extra compressions)."""
    return blosc2.Filter.BITSHUFFLE if arr.dtype == np.uint8 else blosc2.Filter.SHUFFLE


def write_map_file(arr: np.ndarray, path: str, patch_size: Sequence[int], meta: dict) -> str:
    """Atomic blosc2 write with nnU-Net's chunking (``comp_blosc2_params``); returns the checksum of the
    written bytes. Not fsynced here: the build fsyncs every file before the manifest lists it."""
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    arr = np.ascontiguousarray(arr)
    blocks, chunks = comp_blosc2_params(arr.shape, tuple(patch_size), arr.itemsize)
    out = blosc2.asarray(arr, chunks=chunks, blocks=blocks, contiguous=True,
                         cparams={"codec": _CODEC, "clevel": _CLEVEL, "filters": [_filter(arr)], "nthreads": 1})
    out.schunk.vlmeta["nnunet_losses"] = meta
    frame = bytes(out.to_cframe())
    atomic_write_bytes(path, frame, fsync=False)
    return bytes_checksum(frame)


# ----------------------------------------------------------------------------- reading
def read_seg(folder: str, case: str) -> Tuple[np.ndarray, dict]:
    """nnU-Net's preprocessed segmentation of a case and its stat + content hash."""
    path = seg_path(folder, case)
    if not os.path.isfile(path):
        raise ValueError(f"segmentation {path} not found: the preprocessed folder is incomplete; re-run "
                         f"nnUNetv2_preprocess")
    st = file_stat(path)
    try:
        seg = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1})[:]
    except Exception as e:
        raise ValueError(f"cannot read segmentation {path} ({e}); re-run nnUNetv2_preprocess") from e
    return seg, {**st, "sha": array_fingerprint(seg), "shape": list(seg.shape)}


#: (path, size, mtime_ns, file_sha) of map files whose bytes were checked in this process
_CHECKED_FILES: set = set()


def verify_file_checksum(path: str, entry: Mapping) -> Optional[str]:
    """Check the file's bytes against the manifest's ``file_sha`` without decoding anything; a
    problem (str) or None. Each unchanged file is read once per process."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "is missing (file deleted)"
    key = (path, st.st_size, st.st_mtime_ns, entry.get("file_sha"))
    if key in _CHECKED_FILES:
        return None
    if st.st_size != entry["size"]:
        return f"is truncated or corrupt ({st.st_size} bytes, the manifest says {entry['size']})"
    with open(path, "rb") as f:
        data = f.read()
    if bytes_checksum(data) != entry.get("file_sha"):
        return "is corrupt (its bytes do not match the manifest's checksum)"
    _CHECKED_FILES.add(key)
    return None


def load_map(folder: str, case: str, name: str, check_params: Optional[Mapping] = None) -> "blosc2.NDArray":
    """Open a stored map like nnU-Net opens its data (read-only, memory-mapped), after validation.

    Raises :class:`MapFileError` naming the file and the command that fixes it when the map is not
    in the manifest, absent, built with other parameters (``check_params``: the dict of
    :meth:`MapKind.resolve`), truncated, or its bytes fail the checksum. The checksum is verified
    before blosc2 decodes anything, so a damaged file can never crash the decoder.
    """
    man = cached_manifest(folder)
    path = map_path(os.path.join(folder, MAPS_SUBFOLDER), case, name)
    entry = man["cases"].get(case, {}).get("maps", {}).get(name)
    if entry is None:
        raise map_error(folder, case, name, "is missing (not in the manifest: never built or interrupted)")
    if check_params is not None and entry["params_sha"] != fingerprint(dict(check_params)):
        raise map_error(folder, case, name, "was built with other parameters (stale)", check_params.get("params"))
    problem = verify_file_checksum(path, entry)
    if problem:
        raise map_error(folder, case, name, problem)
    try:
        arr = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1},
                          **({} if os.name == "nt" else {"mmap_mode": "r"}))
        meta = arr.schunk.vlmeta["nnunet_losses"]
    except Exception as e:
        raise map_error(folder, case, name, f"cannot be opened ({type(e).__name__}: {e}): truncated or corrupt") from e
    if list(arr.shape) != entry["shape"] or meta.get("sha") != entry["sha"]:
        raise map_error(folder, case, name, "does not match the manifest (replaced or corrupt)")
    return arr


def map_channels(folder: str, name: str, case: Optional[str] = None) -> list:
    """Channel names of a stored map (from the manifest), e.g. ['band', 'contour:1', 'contour:2']."""
    man = cached_manifest(folder)
    for c in ([case] if case else list(man["cases"])):
        e = man["cases"].get(c, {}).get("maps", {}).get(name)
        if e is not None:
            return list(man["params"][e["params_sha"]]["channels"])
    raise map_error(folder, case or "<any case>", name, "is missing (not in the manifest)")


def fix_command(dataset: str, configuration: str, plans: str,
                maps: Union[str, Iterable[str], Mapping[str, Optional[Mapping]]], verify: bool = False) -> str:
    """The command that (re)builds ``maps`` (names or {name: params}) with their parameters."""
    req = requested(maps)
    cmd = f"nnunet_losses_precompute -d {dataset} -c {configuration} -p {plans} --maps {' '.join(req)}"
    for name, params in req.items():
        cmd += map_kind(name).command_flags(params or {})
    return cmd + (" --verify" if verify else "")


def map_error(folder: str, case: str, name: str, problem: str, params: Optional[Mapping] = None) -> MapFileError:
    """The error for a bad map file: names the file and the command that rebuilds it."""
    try:
        man = cached_manifest(folder) if os.path.isfile(manifest_path(folder)) else {}
    except MapFileError:
        man = {}
    ident = os.path.basename(os.path.normpath(folder))
    dataset = man.get("dataset") or os.path.basename(os.path.dirname(os.path.normpath(folder)))
    plans = man.get("plans") or (ident.split("_", 1)[0] if "_" in ident else "nnUNetPlans")
    config = man.get("configuration") or (ident.split("_", 1)[1] if "_" in ident else ident)
    if params is None:
        e = man.get("cases", {}).get(case, {}).get("maps", {}).get(name)
        params = man.get("params", {}).get(e["params_sha"], {}).get("params") if e else None
    path = map_path(os.path.join(folder, MAPS_SUBFOLDER), case, name)
    return MapFileError(f"map file {path} {problem}. Fix: {fix_command(dataset, config, plans, {name: params})}")


def is_temporary(filename: str) -> bool:
    return TMP_MARK in filename

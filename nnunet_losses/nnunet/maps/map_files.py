"""The stored map files: names, encoding, atomic writing, checksums, opening, the error naming the fix.

For every case of ``nnUNet_preprocessed/DatasetXXX_Name/<plans>_<config>/`` a map kind with one
parameter set is stored as ``nnunet_losses_maps/<case>_<kind>_<parameter-set sha>.b2nd`` (blosc2 with
nnU-Net's chunking rule ``comp_blosc2_params`` for the configuration's patch size), listed in the
manifest (:mod:`.manifest`); maps of manifest format 2 keep their older names ``<case>_<kind>.b2nd``.
The folder is :func:`.context.maps_dir_for` (``NNUNET_LOSSES_MAPS_DIR`` moves it).

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

import os
from typing import Mapping, Optional, Sequence

import blosc2
import numpy as np

from nnunet_losses._io import TMP_MARK, atomic_write_bytes

from .context import maps_dir_for
from .declaration import ResolvedMap
from .errors import MapFileError, fix_command
from .fingerprints import bytes_checksum
from .manifest import cached_manifest, find_entry, manifest_path
from .packing import pack_bits
from .registry import map_kind

__all__ = ["map_path", "encode", "write_map_file", "verify_file_checksum", "load_map", "map_channels", "map_error",
           "is_temporary"]

#: LZ4: nnU-Net's preprocessing uses LZ4HC (same decoder, same read speed), whose compressor is
#: 4-10x slower on these maps (it dominated the precompute time); the files are 10-30% larger
_CODEC = blosc2.Codec.LZ4
_CLEVEL = 5
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def map_path(maps_dir: str, case: str, name: str, sha: str) -> str:
    """The file of map kind ``name`` with parameter set ``sha`` for ``case``."""
    return os.path.join(maps_dir, f"{case}_{name}_{sha}.b2nd")


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


def load_map(folder: str, case: str, name: str, resolved: Optional[ResolvedMap] = None) -> "blosc2.NDArray":
    """Open a stored map like nnU-Net opens its data (read-only, memory-mapped), after validation.

    ``resolved``: the parameter set (without it, the only one stored). Raises :class:`MapFileError`
    naming the file and the command that fixes it when the map is not in the manifest (never built,
    interrupted, or only built with other parameters), absent, truncated, or its bytes fail the
    checksum. The checksum is verified before blosc2 decodes anything, so a damaged file can never
    crash the decoder.
    """
    man = cached_manifest(folder)
    params = None if resolved is None else dict(resolved.params)
    entry = find_entry(man, case, name, None if resolved is None else resolved.fingerprint)
    if entry is None:
        stored = man["cases"].get(case, {}).get("maps", {}).get(name, {})
        if stored and resolved is not None:
            problem = f"is missing (only built with other parameters: {len(stored)} other parameter set(s) stored)"
        elif stored:
            problem = f"is ambiguous ({len(stored)} parameter sets stored; give the parameters)"
        else:
            problem = "is missing (not in the manifest: never built or interrupted)"
        raise map_error(folder, case, name, problem, params, resolved.fingerprint if resolved is not None else None)
    path = os.path.join(maps_dir_for(folder), entry["file"])
    problem = verify_file_checksum(path, entry)
    if problem:
        raise map_error(folder, case, name, problem, params, entry["params_sha"])
    try:
        arr = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1},
                          **({} if os.name == "nt" else {"mmap_mode": "r"}))
        meta = arr.schunk.vlmeta["nnunet_losses"]
    except Exception as e:
        raise map_error(folder, case, name, f"cannot be opened ({type(e).__name__}: {e}): truncated or corrupt", params,
                        entry["params_sha"]) from e
    if list(arr.shape) != entry["shape"] or meta.get("sha") != entry["sha"]:
        raise map_error(folder, case, name, "does not match the manifest (replaced or corrupt)", params,
                        entry["params_sha"])
    return arr


def map_channels(folder: str, name: str, case: Optional[str] = None) -> list:
    """Channel names of a stored map (from the manifest), e.g. ['band', 'contour:1', 'contour:2']."""
    man = cached_manifest(folder)
    for c in ([case] if case else list(man["cases"])):
        for e in man["cases"].get(c, {}).get("maps", {}).get(name, {}).values():
            return list(man["params"][e["params_sha"]]["channels"])
    raise map_error(folder, case or "<any case>", name, "is missing (not in the manifest)")


def map_error(folder: str, case: str, name: str, problem: str, params: Optional[Mapping] = None,
              sha: Optional[str] = None) -> MapFileError:
    """The error for a bad map file: names the file and the command that rebuilds it (``params``, ``sha``:
    the parameter set, when known; else the manifest's only one of the kind)."""
    try:
        man = cached_manifest(folder) if os.path.isfile(manifest_path(folder)) else {}
    except MapFileError:
        man = {}
    ident = os.path.basename(os.path.normpath(folder))
    dataset = man.get("dataset") or os.path.basename(os.path.dirname(os.path.normpath(folder)))
    plans = man.get("plans") or (ident.split("_", 1)[0] if "_" in ident else "nnUNetPlans")
    config = man.get("configuration") or (ident.split("_", 1)[1] if "_" in ident else ident)
    e = find_entry(man, case, name, sha) if man.get("cases") else None
    if params is None and e is not None:
        params = man.get("params", {}).get(e["params_sha"], {}).get("params")
    maps_dir = maps_dir_for(folder)
    path = (os.path.join(maps_dir, e["file"]) if e is not None else
            map_path(maps_dir, case, name, sha) if sha else os.path.join(maps_dir, f"{case}_{name}_*.b2nd"))
    return MapFileError(f"map file {path} {problem}. Fix: {fix_command(dataset, config, plans, {name: params})}")


def is_temporary(filename: str) -> bool:
    """A file an interrupted write left behind (removed by the next build)."""
    return TMP_MARK in filename

"""The stored map files: names, encoding, atomic writing, checksums, opening, the error naming the fix.

For every case of ``nnUNet_preprocessed/DatasetXXX_Name/<plans>_<config>/`` a map kind is stored as
``nnunet_losses_maps/<case>_<kind>.b2nd`` (blosc2 with nnU-Net's chunking rule
``comp_blosc2_params`` for the configuration's patch size), listed in the manifest (:mod:`.manifest`).

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

from .context import MAPS_SUBFOLDER
from .declaration import ResolvedMap
from .errors import MapFileError, fix_command
from .fingerprints import bytes_checksum
from .manifest import cached_manifest, manifest_path
from .packing import pack_bits
from .registry import map_kind

__all__ = ["map_path", "encode", "write_map_file", "verify_file_checksum", "load_map", "map_channels", "map_error",
           "is_temporary"]

#: LZ4: nnU-Net's preprocessing uses LZ4HC (same decoder, same read speed), whose compressor is
#: 4-10x slower on these maps (it dominated the precompute time); the files are 10-30% larger
_CODEC = blosc2.Codec.LZ4
_CLEVEL = 5
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def map_path(maps_dir: str, case: str, name: str) -> str:
    return os.path.join(maps_dir, f"{case}_{name}.b2nd")


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

    Raises :class:`MapFileError` naming the file and the command that fixes it when the map is not
    in the manifest, absent, built with other parameters than ``resolved``, truncated, or its bytes fail the checksum. The checksum is verified
    before blosc2 decodes anything, so a damaged file can never crash the decoder.
    """
    man = cached_manifest(folder)
    path = map_path(os.path.join(folder, MAPS_SUBFOLDER), case, name)
    entry = man["cases"].get(case, {}).get("maps", {}).get(name)
    if entry is None:
        raise map_error(folder, case, name, "is missing (not in the manifest: never built or interrupted)")
    if resolved is not None and entry["params_sha"] != resolved.fingerprint:
        raise map_error(folder, case, name, "was built with other parameters (stale)", dict(resolved.params))
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
    """A file an interrupted write left behind (removed by the next build)."""
    return TMP_MARK in filename

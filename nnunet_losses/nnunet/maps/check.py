"""Which stored maps must be (re)built: missing, stale or damaged (read-only)."""
from __future__ import annotations

import os
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import blosc2

from .declaration import ResolvedMap
from .fingerprints import array_fingerprint
from .manifest import find_entry, read_manifest
from .map_files import verify_file_checksum
from .registry import requested
from .request import resolve_map
from .segmentations import file_stat, read_seg, seg_path

__all__ = ["find_missing_or_stale", "check_cases", "deep_check"]


def deep_check(path: str, entry: dict) -> Optional[str]:
    """Checksum, then decompress and compare the content hash with the manifest. A problem or None."""
    problem = verify_file_checksum(path, entry)
    if problem:
        return problem
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


def find_missing_or_stale(ctx, maps: Union[str, Iterable[str], Mapping[str, Optional[dict]]],
                          identifiers: Optional[Sequence[str]] = None, deep: bool = False) -> Dict[str, Dict[str, str]]:
    """``{kind: {case: reason}}`` of the maps to (re)build (empty inner dicts when all is fine).

    A map is missing when the manifest has no entry for its parameter set or the file is absent;
    stale when the case's segmentation (content hash; re-hashed only when its size or mtime changed)
    differs; corrupt when its size or the checksum of its bytes differ from the manifest.
    ``deep`` also decompresses every file and checks its content hash (``--verify``).
    """
    req = requested(maps)
    rps = {n: resolve_map(ctx, n, p) for n, p in req.items()}
    ids = ctx.identifiers() if identifiers is None else list(identifiers)
    return check_cases(ctx, rps, read_manifest(ctx.folder), ids, deep)[0]


def check_cases(ctx, rps: Dict[str, ResolvedMap], man: dict, ids: Sequence[str], deep: bool):
    """(todo ``{kind: {case: reason}}``, ``{case: refreshed seg info}`` for segs touched but unchanged)."""
    out: Dict[str, Dict[str, str]] = {n: {} for n in rps}
    touched: Dict[str, dict] = {}
    older = man.get("_previous_format")
    for case in ids:
        centry = man["cases"].get(case)
        seg_changed = None
        if centry is not None:
            seg_file = seg_path(ctx.folder, case)
            if not os.path.isfile(seg_file):
                raise ValueError(f"segmentation {seg_file} not found; re-run nnUNetv2_preprocess")
            st, old = file_stat(seg_file), centry["seg"]
            if st["size"] != old["size"] or st["mtime_ns"] != old["mtime_ns"]:
                info = read_seg(ctx.folder, case)[1]
                seg_changed = info["sha"] != old["sha"]
                if not seg_changed:
                    touched[case] = info
            else:
                seg_changed = False
        for n, rp in rps.items():
            e = find_entry(man, case, n, rp.fingerprint)
            path = None if e is None else os.path.join(ctx.maps_dir, e["file"])
            if e is None:
                out[n][case] = (f"missing (maps of an older nnunet-losses, manifest format {older})" if older
                                else "missing")
            elif not os.path.isfile(path):
                out[n][case] = "missing (file deleted)"
            elif seg_changed or e["seg_sha"] != centry["seg"]["sha"]:
                out[n][case] = "stale (segmentation changed)"
            else:
                problem = deep_check(path, e) if deep else verify_file_checksum(path, e)
                if problem:
                    out[n][case] = f"corrupt (the file {problem})"
    return out, touched

"""The manifest of the stored maps, ``<preprocessed configuration folder>/nnunet_losses_maps/manifest.json``:
the resolved parameters of every kind (by fingerprint, :meth:`ResolvedMap.record`), and per case the
segmentation's stat and content hash and, per map file, its shape, dtype, size, the content hash of
the array (``sha``) and the checksum of the file's bytes (``file_sha``). Written atomically
(:mod:`nnunet_losses._io`); the build lists a file only after it is on disk.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Dict, Iterable, Tuple

from nnunet_losses._io import atomic_write_json

from .context import MAPS_SUBFOLDER
from .errors import MapFileError

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "manifest_path", "read_manifest", "cached_manifest", "write_manifest",
           "empty_manifest", "package_version"]

MANIFEST_NAME = "manifest.json"
#: 2: map entries carry ``file_sha`` (checksum of the file's bytes). Older manifests are recognised
#: and every map is rebuilt (with a log line).
MANIFEST_FORMAT = 2
@functools.lru_cache(maxsize=None)
def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("nnunet-losses")
    except Exception:  # not installed as a distribution
        from nnunet_losses import __version__
        return __version__


def manifest_path(folder: str) -> str:
    return os.path.join(folder, MAPS_SUBFOLDER, MANIFEST_NAME)


def empty_manifest(previous_format=None) -> dict:
    """A manifest with no maps (``_previous_format``: the format of the older manifest it replaces)."""
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
        return empty_manifest()
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
            return empty_manifest(man["format"])
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

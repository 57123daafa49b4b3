"""The manifest of the stored maps, ``<maps folder>/manifest.json`` (:func:`.context.maps_dir_for`):
the resolved parameters of every parameter set (by fingerprint, :meth:`ResolvedMap.record`), and per
case the segmentation's stat and content hash and, per kind and parameter set, the map file's name,
shape, dtype, size, the content hash of the array (``sha``) and the checksum of the file's bytes
(``file_sha``)::

    {"format": 3, "params": {sha: record}, "cases": {case: {"seg": {...}, "maps": {kind: {sha: entry}}}}}

Several parameter sets of one kind live side by side (a width study: ``iterations`` 1 and 2), each in
its own files ``<case>_<kind>_<sha>.b2nd``. Written atomically (:mod:`nnunet_losses._io`); the build
lists a file only after it is on disk.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Dict, Iterable, Iterator, Optional, Tuple

from nnunet_losses._io import atomic_write_json

from .context import maps_dir_for
from .errors import MapFileError

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "manifest_path", "read_manifest", "cached_manifest", "write_manifest",
           "empty_manifest", "package_version", "map_entries", "find_entry", "set_entry", "pop_entry"]

MANIFEST_NAME = "manifest.json"
#: 3: a case's maps by kind, then by parameter set (``{kind: {sha: entry}}``), so that parameter sets
#: of one kind live side by side. 2 (``{kind: entry}``, files ``<case>_<kind>.b2nd``) is read as 3
#: and its files are reused; 1 (no ``file_sha``) is recognised and every map is rebuilt (a log line).
MANIFEST_FORMAT = 3


@functools.lru_cache(maxsize=None)
def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("nnunet-losses")
    except Exception:  # not installed as a distribution
        from nnunet_losses import __version__
        return __version__


def manifest_path(folder: str) -> str:
    """The manifest of the preprocessed configuration ``folder``."""
    return os.path.join(maps_dir_for(folder), MANIFEST_NAME)


def empty_manifest(previous_format=None) -> dict:
    """A manifest with no maps (``_previous_format``: the format of the older manifest it replaces)."""
    man = {"format": MANIFEST_FORMAT, "params": {}, "cases": {}}
    if previous_format is not None:
        man["_previous_format"] = previous_format
    return man


def read_manifest(folder: str) -> dict:
    """The manifest of a preprocessed configuration folder (an empty one if there is none yet).

    Format 2 is converted (its files are reused); an older one is returned empty with
    ``_previous_format`` set (every map is then rebuilt); an unreadable one raises :class:`MapFileError`.
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
    if man.get("format") == 2:
        man = _from_format_2(man)
    if man.get("format") != MANIFEST_FORMAT:
        if isinstance(man.get("format"), int) and man["format"] < MANIFEST_FORMAT:
            return empty_manifest(man["format"])
        raise MapFileError(f"map manifest {path} has format {man.get('format')!r}, newer than this nnunet-losses "
                           f"understands ({MANIFEST_FORMAT}): upgrade nnunet-losses, or delete the folder "
                           f"{os.path.dirname(path)} to rebuild the maps")
    man.setdefault("params", {})
    return man


def _from_format_2(man: dict) -> dict:
    """Format 2 (``{kind: entry}`` per case) as format 3 (``{kind: {sha: entry}}``); entries keep their files."""
    for c in man["cases"].values():
        c["maps"] = {kind: {e["params_sha"]: e} for kind, e in c.get("maps", {}).items()}
    man["format"] = MANIFEST_FORMAT
    man["_converted_from"] = 2
    return man


# ----------------------------------------------------------------------------- entries
def map_entries(man: dict, case: str) -> Iterator[Tuple[str, str, dict]]:
    """``(kind, parameter-set sha, entry)`` of every map of ``case``."""
    for kind, sets in man["cases"].get(case, {}).get("maps", {}).items():
        for sha, e in sets.items():
            yield kind, sha, e


def find_entry(man: dict, case: str, kind: str, sha: Optional[str] = None) -> Optional[dict]:
    """The entry of ``kind`` with parameter set ``sha`` for ``case``; without ``sha`` the only one stored
    (None when there is none, or several: then the parameters must be given)."""
    sets = man["cases"].get(case, {}).get("maps", {}).get(kind, {})
    if sha is not None:
        return sets.get(sha)
    return next(iter(sets.values())) if len(sets) == 1 else None


def set_entry(man: dict, case: str, kind: str, entry: dict) -> None:
    """Record ``entry`` (its ``params_sha`` says the parameter set)."""
    c = man["cases"].setdefault(case, {"maps": {}})
    c.setdefault("maps", {}).setdefault(kind, {})[entry["params_sha"]] = entry


def pop_entry(man: dict, case: str, kind: str, sha: str) -> Optional[dict]:
    """Forget one map; returns its entry (None if there was none)."""
    sets = man["cases"].get(case, {}).get("maps", {}).get(kind)
    if not sets or sha not in sets:
        return None
    e = sets.pop(sha)
    if not sets:
        man["cases"][case]["maps"].pop(kind)
    return e


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
    man.pop("_converted_from", None)
    used = {sha for c in man["cases"] for _, sha, _ in map_entries(man, c)} | set(keep)
    man["params"] = {k: v for k, v in man["params"].items() if k in used}
    man.update(format=MANIFEST_FORMAT, package="nnunet-losses", version=package_version(),
               dataset=ctx.dataset_name, plans=ctx.plans_identifier, configuration=ctx.configuration)
    atomic_write_json(manifest_path(ctx.folder), man, indent=1, sort_keys=True)

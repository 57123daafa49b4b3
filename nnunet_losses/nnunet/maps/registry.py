"""The registry of map kinds: every consumer (the precompute command, the manifest, the dataset and
transforms, the trainers, docs/trainers.md) looks kinds up here. It starts with the built-in kinds of
:mod:`.kinds`; :func:`register_map_kind` adds one (see docs/ARCHITECTURE.md). What a kind is:
:mod:`.declaration` (its names are re-exported here, the documented import path).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from . import kinds
from .declaration import (AUTO, MapKind, Param, ResolvedMap, Values, loss_default, non_negative_number, one_of,
                          positive_number, whole_number)

__all__ = ["AUTO", "Param", "MapKind", "ResolvedMap", "Values", "register_map_kind", "map_kind", "map_kinds",
           "map_kind_for_loss", "requested", "loss_default", "markdown_table", "unregister_map_kind", "whole_number",
           "positive_number", "non_negative_number", "one_of"]

_KINDS: Dict[str, MapKind] = {}


def register_map_kind(kind: MapKind, replace: bool = False) -> MapKind:
    """Add a kind to the registry (``replace`` to redefine one, e.g. in a test)."""
    if kind.loader is not None and not kind.binary:
        raise ValueError(f"map kind {kind.name!r}: a loader computation needs a binary kind (the map travels with "
                         f"the target and is downsampled with it by nearest neighbour)")
    if kind.name in _KINDS and not replace:
        raise ValueError(f"map kind {kind.name!r} is already registered")
    flags = {p.flag for k in _KINDS.values() if k.name != kind.name for p in k.params}
    clash = sorted(flags & {p.flag for p in kind.params})
    if clash:
        raise ValueError(f"map kind {kind.name!r}: command-line flags {clash} are used by another kind")
    _KINDS[kind.name] = kind
    return kind


def unregister_map_kind(name: str) -> None:
    """Remove a kind (tests)."""
    _KINDS.pop(name, None)


def map_kinds() -> Dict[str, MapKind]:
    """Every registered kind, by name."""
    return dict(_KINDS)


def map_kind(name: str) -> MapKind:
    """The kind called ``name``; ValueError listing the known ones."""
    kinds = map_kinds()
    if name not in kinds:
        raise ValueError(f"unknown map {name!r}; choose from {tuple(kinds)}")
    return kinds[name]


def map_kind_for_loss(loss_class: type) -> Optional[MapKind]:
    """The kind that feeds ``loss_class``'s map arguments (``loss_class.map_names``), or None."""
    names = set(getattr(loss_class, "map_names", ()) or ())
    if not names:
        return None
    found = [k for k in map_kinds().values() if names & set(k.keywords)]
    if len(found) > 1:
        raise ValueError(f"{loss_class.__name__}'s maps {sorted(names)} are fed by several kinds "
                         f"{[k.name for k in found]}")
    return found[0] if found else None


def markdown_table() -> str:
    """The table of map kinds in docs/trainers.md (a test keeps the docs equal to it)."""
    rows = ["| map kind | what | stored as, resampled | `maps=loader` | loss keywords | parameters: flag = default |",
            "|---|---|---|---|---|---|"]
    for k in map_kinds().values():
        stored = "bit-packed uint8, nearest" if k.binary else "float16, linear"
        params = ", ".join(f"`{p.flag}` = `{p.default}`" + (" (trainer option)" if p.trainer_option else "")
                           for p in k.params)
        loader = "yes" if k.loader is not None else "no"
        rows.append(f"| `{k.name}` | {k.description} | {stored} | {loader} | {', '.join(f'`{w}`' for w in k.keywords)} | "
                    f"{params} |")
    return "\n".join(rows)


def requested(names_or_params) -> Dict[str, Optional[dict]]:
    """``"contour"``, ``["contour", "dwce"]`` or ``{"contour": {...}}`` -> ``{kind: params or None}``."""
    if isinstance(names_or_params, str):
        names_or_params = [names_or_params]
    req = dict(names_or_params) if isinstance(names_or_params, Mapping) else {n: None for n in names_or_params}
    for n in req:
        map_kind(n)
    if not req:
        raise ValueError(f"no map requested; choose from {tuple(map_kinds())}")
    return req


for _kind in kinds.BUILTIN:
    register_map_kind(_kind)

"""A map request (``{parameter: value}``, possibly ``"auto"``) resolved for one dataset configuration."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from .auto_width import fill_auto
from .declaration import ResolvedMap
from .registry import map_kind

__all__ = ["resolve_map"]


def resolve_map(ctx, name: str, params: Optional[Mapping[str, Any]] = None,
                log: Optional[Callable[[str], None]] = None) -> ResolvedMap:
    """Map kind ``name`` with ``params`` (defaults for the others) resolved for ``ctx`` (a
    :class:`MapContext`): parameters checked, ``"auto"`` values replaced by the dataset's
    (:func:`.auto_width.fill_auto`), the dataset's element, spacing, labels and channels added."""
    kind = map_kind(name)
    values = kind.check_params(params)
    fill_auto(values, kind.auto_rules(), ctx, log, what=f"map {name}: ")
    return kind.resolve(ctx, values)

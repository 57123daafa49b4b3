"""Packages whose public names load on first use (importing the package stays cheap)."""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping, Tuple

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` (name -> submodule relative to
    the package, e.g. ``"dice"`` or ``"maps.registry"``) are imported on first access and then cached
    in the package's namespace."""

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later accesses skip __getattr__
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__

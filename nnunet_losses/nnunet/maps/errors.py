"""The error of a bad stored map and the command that fixes it."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

from .registry import map_kind, requested

__all__ = ["MapFileError", "MapsFolderNotWritable", "fix_command"]


class MapFileError(ValueError):
    """A stored map is missing, stale, truncated or corrupt; the message names the file and the fix."""


def fix_command(dataset: str, configuration: str, plans: str,
                maps: Union[str, Iterable[str], Mapping[str, Optional[Mapping]]], verify: bool = False) -> str:
    """The command that (re)builds ``maps`` (names or {name: params}) with their parameters.

    >>> fix_command("Dataset001_X", "3d_fullres", "nnUNetPlans", {"contour": {"iterations": 2}})
    'nnunet_losses_precompute -d Dataset001_X -c 3d_fullres -p nnUNetPlans --maps contour --iterations 2'
    """
    req = requested(maps)
    cmd = f"nnunet_losses_precompute -d {dataset} -c {configuration} -p {plans} --maps {' '.join(req)}"
    for name, params in req.items():
        cmd += map_kind(name).command_flags(params or {})
    return cmd + (" --verify" if verify else "")


class MapsFolderNotWritable(MapFileError):
    """Maps must be built but their folder cannot be written (a read-only ``nnUNet_preprocessed``); the
    message names the folder, the command to run where it is writable, ``NNUNET_LOSSES_MAPS_DIR`` and
    ``maps=online``."""

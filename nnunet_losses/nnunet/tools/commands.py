"""Where the nnU-Net and nnunet-losses commands are: next to the running interpreter first, then on PATH.

    from nnunet_losses.nnunet.tools.commands import command_path
    subprocess.run([command_path("nnUNetv2_train"), "990", "3d_fullres", "0"])
"""
from __future__ import annotations

import os
import shutil
import sys

__all__ = ["command_path"]


def command_path(name: str) -> str:
    """The executable ``name`` of the running environment (its ``bin`` folder), else the one on PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found next to {sys.executable} or on PATH: install nnunetv2 >= 2.8.1 and "
                           f"this package (pip install -e .) into the running environment")
    return found

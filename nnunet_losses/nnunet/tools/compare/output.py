"""The output folder: checked before any work, written in a hidden staging folder, moved into place at the end.

An existing non-empty folder is an error unless ``overwrite``, which replaces only the files this
tool writes and keeps every other file; an interrupted run leaves the output folder as it was.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager


def check_output(out_dir: str, overwrite: bool) -> None:
    """ValueError if ``out_dir`` is a file, or a non-empty folder without ``overwrite``."""
    if os.path.isfile(out_dir):
        raise ValueError(f"-o {out_dir} is a file; give a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ValueError(f"output folder {out_dir} exists and is not empty: choose another -o, or pass --overwrite "
                         "to replace the files this tool writes there (other files are kept)")


def publish(staging: str, out_dir: str) -> None:
    """Move the finished staging folder into place (rename, or file by file into an existing folder)."""
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return
    for base, _, files in os.walk(staging):
        dest = os.path.join(out_dir, os.path.relpath(base, staging))
        os.makedirs(dest, exist_ok=True)
        for f in files:
            os.replace(os.path.join(base, f), os.path.join(dest, f))
    shutil.rmtree(staging)


@contextmanager
def staging_folder(out_dir: str):
    """A fresh hidden folder next to ``out_dir`` (with ``plots/``), published on success, removed on any error."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "plots"))
    try:
        yield staging
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""Shared by the converters: where a new nnU-Net raw dataset goes, and writing it without ever
overwriting anything or leaving a half-written dataset behind.

A dataset is built in a hidden staging folder next to its target
(``<root>/.DatasetXXX_Name.partial-<pid>``) and renamed into place only when complete (a rename on
one file system is atomic): an interrupted conversion leaves no ``DatasetXXX_Name`` folder, and a
re-run starts clean.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager


def raw_root(output_root: str | None) -> str:
    """The folder that receives ``DatasetXXX_Name``: ``output_root`` or ``$nnUNet_raw``."""
    root = output_root or os.environ.get("nnUNet_raw")
    if not root:
        raise ValueError("no output folder: pass -o/--output-root or set the nnUNet_raw environment variable "
                         "(see nnU-Net's documentation/setting_up_paths.md)")
    return os.path.abspath(root)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetXXX_Name`` after checking the id (1..999) and the name (letters, digits, '-')."""
    if not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer in 1..999, got {dataset_id!r}")
    if not re.fullmatch(r"[A-Za-z0-9-]+", name or ""):
        raise ValueError(f"dataset name must use letters, digits and '-' only (nnU-Net splits on '_'), got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def check_id_free(root: str, dataset_id: int) -> None:
    """ValueError if a dataset with this id exists in ``root`` or in nnU-Net's raw/preprocessed/results folders."""
    prefix = f"Dataset{dataset_id:03d}_"
    folders = [root] + [os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
    taken = sorted({os.path.join(f, d) for f in folders if f and os.path.isdir(f)
                    for d in os.listdir(f) if d.startswith(prefix)})
    if taken:
        raise ValueError(f"dataset id {dataset_id} is already used by {taken}: choose another id with -d "
                         "(existing data is never overwritten)")


@contextmanager
def staged_dataset(root: str, folder_name: str):
    """Yield an empty staging folder; on success rename it to ``root/folder_name``, on error remove it."""
    target = os.path.join(root, folder_name)
    if os.path.exists(target):
        raise ValueError(f"{target} already exists: choose another dataset id or remove it yourself "
                         "(existing data is never overwritten)")
    os.makedirs(root, exist_ok=True)
    staging = os.path.join(root, f".{folder_name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        if os.path.exists(target):
            raise ValueError(f"{target} appeared while converting; the converted data stays in {staging}")
        os.rename(staging, target)
    except BaseException:
        if os.path.isdir(staging) and not os.path.exists(target):
            shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(obj, path: str) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=4, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)

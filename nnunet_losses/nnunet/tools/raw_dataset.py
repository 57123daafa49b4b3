"""Shared by the converters and the demo: where a new nnU-Net raw dataset goes, and writing it without ever
overwriting anything or leaving a half-written dataset behind.

A dataset is built in a hidden staging folder next to its target
(``<root>/.DatasetXXX_Name.partial-<pid>``) and renamed into place only when complete (a rename on
one file system is atomic): an interrupted conversion leaves no ``DatasetXXX_Name`` folder, and a
re-run starts clean.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from nnunet_losses._io import atomic_write_json


def raw_root(output_root: str | None) -> str:
    """The folder that receives ``DatasetXXX_Name``: ``output_root`` or ``$nnUNet_raw``."""
    root = output_root or os.environ.get("nnUNet_raw")
    if not root:
        raise ValueError("no output folder: pass -o/--output-root or set the nnUNet_raw environment variable "
                         "(see nnU-Net's documentation/setting_up_paths.md)")
    return os.path.abspath(root)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetXXX_Name`` after checking the id (an integer 1..999, three digits)
    and the name (letters, digits, '_' and '-'; nnU-Net reads the id from the first ten characters, so
    the name may hold underscores, as in ``Dataset137_BraTS_2021``)."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer in 1..999 (nnU-Net uses three digits), got {dataset_id!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        raise ValueError(f"dataset name must use letters, digits, '_' and '-' only, got {name!r}")
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
    """Write JSON atomically (:func:`nnunet_losses._io.atomic_write_json`)."""
    atomic_write_json(path, obj, indent=4)


# ----------------------------------------------------------------------------- generated datasets
def prepare_folder(root: str, dataset_id: int, name: str, overwrite: bool) -> str:
    """An empty ``<root>/DatasetXXX_Name`` with ``imagesTr`` and ``labelsTr``. An existing folder is an
    error unless ``overwrite`` (only for folders this package generated, e.g. the demo's own output)."""
    folder = os.path.join(os.fspath(root), dataset_folder_name(dataset_id, name))
    if os.path.exists(folder):
        if not overwrite:
            raise ValueError(f"{folder} already exists; pass overwrite=True to replace it or choose another dataset id")
        shutil.rmtree(folder)
    os.makedirs(os.path.join(folder, "imagesTr"))
    os.makedirs(os.path.join(folder, "labelsTr"))
    return folder


def write_dataset_json(folder: str, labels: Dict[str, object], num_cases: int, file_ending: str,
                       regions_class_order: Optional[Sequence[int]] = None, description: str = "",
                       channel_name: str = "synthetic") -> None:
    """nnU-Net's ``dataset.json`` for a one-channel generated dataset."""
    ds = {"channel_names": {"0": channel_name}, "labels": labels, "numTraining": num_cases,
          "file_ending": file_ending, "description": description,
          "licence": "generated by nnunet-losses (public domain)"}
    if regions_class_order is not None:
        ds["regions_class_order"] = list(regions_class_order)
    write_json(ds, os.path.join(folder, "dataset.json"))


def image_from_labels(seg: np.ndarray, intensities: Sequence[float], noise: float,
                      rng: np.random.Generator) -> np.ndarray:
    """A float32 image: each label's intensity plus Gaussian noise of standard deviation ``noise``."""
    return np.asarray(intensities, dtype=np.float32)[seg] + rng.normal(0.0, noise, seg.shape).astype(np.float32)


def ball(shape: Tuple[int, ...], center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid (any dimension) of the given centre and radii (voxels)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    return d <= 1.0


def write_png(arr: np.ndarray, path: str) -> None:
    """Write a 2D uint8 array as PNG (nnU-Net's ``NaturalImage2DIO`` reads it)."""
    from PIL import Image

    Image.fromarray(arr).save(path)

"""Tiny generated datasets in nnU-Net's raw format (no downloads), for the tests, the benchmarks and
the acceptance run (``benchmarks/acceptance/gpu.py``).

Three generators, all deterministic for a given ``seed``:

* :func:`make_label_dataset_3d`: 3D label training (softmax). Label 1 is one large ellipsoid,
  label 2 a handful of small spheres (radius 1-2 voxels, well under 1% of the volume: the
  class-imbalance case), label 3 (optional) nnU-Net's ``ignore`` label on a slab of voxels whose
  true class is unknown (as in sparse annotation). Written as NIfTI (``.nii.gz``).
* :func:`make_region_dataset_2d`: 2D region-based training (sigmoid, as BraTS): nested discs,
  label 1 the rim and label 2 the core, trained as the overlapping regions ``whole`` = {1, 2}
  and ``core`` = {2}; optional ``ignore`` label on a band of columns. Written as PNG.
* :func:`make_label_dataset_2d`: 2D label training with thin lines, 2-4 px wide (a DRIVE-like
  vessel toy), label 1 = lines, optional ignore label (2) outside a circular field of view.

The image is the label map's class intensity plus Gaussian noise, so a tiny network learns the
task in a few hundred iterations. Every function returns the dataset folder
``<raw_root>/DatasetXXX_Name`` holding ``imagesTr``, ``labelsTr`` and ``dataset.json``; it
refuses to overwrite an existing folder unless ``overwrite=True``.
"""
from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

from nnunet_losses.nnunet.tools.raw_dataset import ball as _ball
from nnunet_losses.nnunet.tools.raw_dataset import dataset_folder_name
from nnunet_losses.nnunet.tools.raw_dataset import image_from_labels as _image_from_labels
from nnunet_losses.nnunet.tools.raw_dataset import prepare_folder as _prepare_folder
from nnunet_losses.nnunet.tools.raw_dataset import write_dataset_json as _write_dataset_json

__all__ = ["make_label_dataset_3d", "make_region_dataset_2d", "make_label_dataset_2d", "dataset_folder_name"]


def _write_nifti(arr: np.ndarray, path: str, spacing: Sequence[float]) -> None:
    import SimpleITK as sitk

    im = sitk.GetImageFromArray(arr)
    im.SetSpacing([float(s) for s in spacing][::-1])
    sitk.WriteImage(im, path, useCompression=True)


def _write_png(arr: np.ndarray, path: str) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


def make_label_dataset_3d(raw_root: str, dataset_id: int = 990, name: str = "SynthLabels3D", num_cases: int = 4,
                          shape: Tuple[int, int, int] = (32, 32, 32), num_small: int = 4, ignore: bool = True,
                          noise: float = 0.3, seed: int = 0, overwrite: bool = False) -> str:
    """3D label dataset: large ellipsoid (1), small spheres (2), optional ignore label (3).

    Args:
        raw_root: the ``nnUNet_raw`` folder.
        shape: volume shape (z, y, x), spacing 1 mm.
        num_small: small spheres per case (radius 1-2 voxels).
        ignore: mark a 3-voxel slab along the first axis as nnU-Net's ``ignore`` label (3).
    Returns the dataset folder.
    """
    if len(shape) != 3 or min(shape) < 12:
        raise ValueError(f"shape must be three sizes >= 12, got {shape!r}")
    rng = np.random.default_rng(seed)
    folder = _prepare_folder(raw_root, dataset_id, name, overwrite)
    shape = tuple(int(s) for s in shape)
    for i in range(num_cases):
        seg = np.zeros(shape, dtype=np.uint8)
        center = [rng.uniform(0.35, 0.65) * s for s in shape]
        radii = [rng.uniform(0.15, 0.25) * s for s in shape]
        seg[_ball(shape, center, radii)] = 1
        placed = 0
        for _ in range(200):
            if placed == num_small:
                break
            r = float(rng.integers(1, 3))
            c = [rng.uniform(r + 1, s - r - 2) for s in shape]
            ball = _ball(shape, c, [r + 0.5] * 3)
            grown = _ball(shape, c, [r + 2.5] * 3)
            if seg[grown].any():
                continue
            seg[ball] = 2
            placed += 1
        img = _image_from_labels(seg, (0.0, 1.0, 2.0), noise, rng)
        if ignore:
            z0 = int(rng.integers(0, shape[0] - 3))
            seg[z0:z0 + 3] = 3
        case = f"{name.lower()}_{i:03d}"
        _write_nifti(img, os.path.join(folder, "imagesTr", f"{case}_0000.nii.gz"), (1.0, 1.0, 1.0))
        _write_nifti(seg, os.path.join(folder, "labelsTr", f"{case}.nii.gz"), (1.0, 1.0, 1.0))
    labels = {"background": 0, "large": 1, "small": 2}
    if ignore:
        labels["ignore"] = 3
    _write_dataset_json(folder, labels, num_cases, ".nii.gz",
                        description="synthetic 3D labels: one large ellipsoid, small spheres, ignore slab")
    return folder


def make_region_dataset_2d(raw_root: str, dataset_id: int = 991, name: str = "SynthRegions2D", num_cases: int = 4,
                           shape: Tuple[int, int] = (64, 64), num_objects: int = 3, ignore: bool = True,
                           noise: float = 0.3, seed: int = 0, overwrite: bool = False) -> str:
    """2D region dataset: nested discs; regions ``whole`` = labels (1, 2) and ``core`` = label 2.

    ``dataset.json`` declares the regions and ``regions_class_order`` [1, 2] as nnU-Net's BraTS
    example does; with ``ignore`` a 4-column band is nnU-Net's ``ignore`` label (3).
    Returns the dataset folder.
    """
    if len(shape) != 2 or min(shape) < 24:
        raise ValueError(f"shape must be two sizes >= 24, got {shape!r}")
    rng = np.random.default_rng(seed)
    folder = _prepare_folder(raw_root, dataset_id, name, overwrite)
    shape = tuple(int(s) for s in shape)
    for i in range(num_cases):
        seg = np.zeros(shape, dtype=np.uint8)
        for _ in range(num_objects):
            r = rng.uniform(0.08, 0.14) * min(shape)
            c = [rng.uniform(r + 1, s - r - 1) for s in shape]
            seg[_ball(shape, c, [r, r])] = np.maximum(seg[_ball(shape, c, [r, r])], 1)
            seg[_ball(shape, c, [0.5 * r, 0.5 * r])] = 2
        img = _image_from_labels(seg, (0.0, 1.0, 2.0), noise, rng)
        img = np.clip(img * 80 + 40, 0, 255).astype(np.uint8)
        if ignore:
            x0 = int(rng.integers(0, shape[1] - 4))
            seg[:, x0:x0 + 4] = 3
        case = f"{name.lower()}_{i:03d}"
        _write_png(img, os.path.join(folder, "imagesTr", f"{case}_0000.png"))
        _write_png(seg, os.path.join(folder, "labelsTr", f"{case}.png"))
    labels = {"background": 0, "whole": [1, 2], "core": 2}
    if ignore:
        labels["ignore"] = 3
    _write_dataset_json(folder, labels, num_cases, ".png", regions_class_order=[1, 2],
                        description="synthetic 2D regions: nested discs (whole = rim + core, core), ignore band")
    return folder


def make_label_dataset_2d(raw_root: str, dataset_id: int = 992, name: str = "SynthVessels2D", num_cases: int = 4,
                          shape: Tuple[int, int] = (64, 64), num_lines: int = 5, ignore: bool = True,
                          noise: float = 0.3, seed: int = 0, overwrite: bool = False) -> str:
    """2D label dataset of thin lines (2-4 px wide, label 1), optional ignore label (2) outside a disc.

    A toy version of DRIVE (thin vessels, about 15% of the field of view, an unlabelled outside of
    the field of view). Returns the dataset folder.
    """
    if len(shape) != 2 or min(shape) < 24:
        raise ValueError(f"shape must be two sizes >= 24, got {shape!r}")
    rng = np.random.default_rng(seed)
    folder = _prepare_folder(raw_root, dataset_id, name, overwrite)
    shape = tuple(int(s) for s in shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for i in range(num_cases):
        seg = np.zeros(shape, dtype=np.uint8)
        for _ in range(num_lines):
            p0 = rng.uniform(0, 1, 2) * shape
            angle = rng.uniform(0, np.pi)
            width = rng.uniform(1.0, 2.0)  # half-width: lines 2-4 px wide
            dist = np.abs((yy - p0[0]) * np.cos(angle) - (xx - p0[1]) * np.sin(angle))
            seg[dist <= width] = 1
        img = _image_from_labels(seg, (0.0, 1.5), noise, rng)
        img = np.clip(img * 80 + 40, 0, 255).astype(np.uint8)
        if ignore:
            fov = _ball(shape, [(s - 1) / 2 for s in shape], [0.48 * s for s in shape])
            seg[~fov] = 2
        case = f"{name.lower()}_{i:03d}"
        _write_png(img, os.path.join(folder, "imagesTr", f"{case}_0000.png"))
        _write_png(seg, os.path.join(folder, "labelsTr", f"{case}.png"))
    labels = {"background": 0, "line": 1}
    if ignore:
        labels["ignore"] = 2
    _write_dataset_json(folder, labels, num_cases, ".png",
                        description="synthetic 2D thin lines with an ignore label outside a circular field of view")
    return folder

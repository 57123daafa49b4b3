"""The demo's dataset: 2D images with structures of very different sizes (class imbalance), generated
in nnU-Net's raw format (no download)."""
from __future__ import annotations

import os
from typing import List

import numpy as np

from nnunet_losses.nnunet.tools import raw_dataset

__all__ = ["make_imbalance_dataset_2d", "label_fractions", "DATASET_ID", "DATASET_NAME"]

DATASET_ID = 950
DATASET_NAME = "DemoImbalance2D"


def _imbalance_case(size: int, rng: np.random.Generator, num_lesions: int) -> np.ndarray:
    ball = raw_dataset.ball
    shape = (size, size)
    seg = np.zeros(shape, dtype=np.uint8)
    center = rng.uniform(0.4, 0.6, 2) * size
    seg[ball(shape, center, rng.uniform(0.2, 0.3, 2) * size)] = 1            # organ: ~20 %
    for _ in range(100):                                                      # nodule: ~1 %, outside the organ
        r = rng.uniform(0.05, 0.07) * size
        c = rng.uniform(r + 2, size - r - 2, 2)
        if not seg[ball(shape, c, [r + 2, r + 2])].any():
            seg[ball(shape, c, [r, r])] = 2
            break
    placed = 0
    for _ in range(300):                                                      # lesions: radius 1-2 px, anywhere
        if placed == num_lesions:
            break
        r = rng.uniform(1.0, 2.0)
        c = rng.uniform(r + 2, size - r - 3, 2)
        if (seg[ball(shape, c, [r + 3, r + 3])] >= 2).any():
            continue
        seg[ball(shape, c, [r, r])] = 3
        placed += 1
    return seg


def make_imbalance_dataset_2d(raw_root: str, dataset_id: int = DATASET_ID, name: str = DATASET_NAME,
                              num_train: int = 16, num_test: int = 6, size: int = 96, num_lesions: int = 4,
                              noise: float = 0.5, seed: int = 0, overwrite: bool = False) -> str:
    """2D label dataset with structures of very different sizes (PNG, nnU-Net raw format).

    Labels: 1 ``organ`` (one ellipse, ~20 % of the image), 2 ``nodule`` (one disc, ~1 %), 3
    ``lesion`` (``num_lesions`` discs of radius 1-2 px, ~0.3 % at 96x96, ~0.8 % at 64x64, also inside
    the organ). Image = class intensity (0, 1, 2, 3) + Gaussian noise (``noise``), scaled to uint8. Training cases go to
    ``imagesTr``/``labelsTr``, ``num_test`` held-out cases to ``imagesTs``/``labelsTs``.
    Returns the dataset folder; refuses an existing one unless ``overwrite``.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    if num_train < 3 or num_test < 1:
        raise ValueError(f"need num_train >= 3 and num_test >= 1, got {num_train} and {num_test}")
    rng = np.random.default_rng(seed)
    folder = raw_dataset.prepare_folder(raw_root, dataset_id, name, overwrite)
    os.makedirs(os.path.join(folder, "imagesTs"))
    os.makedirs(os.path.join(folder, "labelsTs"))
    for i in range(num_train + num_test):
        seg = _imbalance_case(size, rng, num_lesions)
        img = raw_dataset.image_from_labels(seg, (0.0, 1.0, 2.0, 3.0), noise, rng)
        img = np.clip(img * 50 + 40, 0, 255).astype(np.uint8)
        split = "Tr" if i < num_train else "Ts"
        case = f"{name.lower()}_{i:03d}"
        raw_dataset.write_png(img, os.path.join(folder, f"images{split}", f"{case}_0000.png"))
        raw_dataset.write_png(seg, os.path.join(folder, f"labels{split}", f"{case}.png"))
    raw_dataset.write_dataset_json(folder, {"background": 0, "organ": 1, "nodule": 2, "lesion": 3}, num_train,
                                  ".png", description="nnunet_losses_demo: large organ, medium nodule, tiny "
                                                      "lesions (class imbalance)")
    return folder


def label_fractions(labels_dir: str, num_classes: int) -> List[float]:
    """Percentage of the pixels of every label over the PNG label maps of a folder."""
    from PIL import Image

    counts = np.zeros(num_classes, dtype=np.int64)
    for name in sorted(os.listdir(labels_dir)):
        seg = np.asarray(Image.open(os.path.join(labels_dir, name)))
        counts += np.bincount(seg.ravel(), minlength=num_classes)[:num_classes]
    return (100.0 * counts / max(1, counts.sum())).tolist()

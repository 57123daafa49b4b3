"""Reading nnU-Net's preprocessed segmentations (``<folder>/<case>_seg.b2nd``): the input of every
stored map and of the thickness measure behind ``"auto"`` widths."""
from __future__ import annotations

import os
from typing import Tuple

import blosc2
import numpy as np

from .fingerprints import array_fingerprint

__all__ = ["seg_path", "file_stat", "read_seg"]


def seg_path(folder: str, case: str) -> str:
    """nnU-Net's preprocessed segmentation file of ``case``."""
    return os.path.join(folder, f"{case}_seg.b2nd")


def file_stat(path: str) -> dict:
    """``{"size", "mtime_ns"}`` of a file: what tells a changed segmentation without reading it."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_seg(folder: str, case: str) -> Tuple[np.ndarray, dict]:
    """nnU-Net's preprocessed segmentation of a case and its stat + content hash + shape."""
    path = seg_path(folder, case)
    if not os.path.isfile(path):
        raise ValueError(f"segmentation {path} not found: the preprocessed folder is incomplete; re-run "
                         f"nnUNetv2_preprocess")
    st = file_stat(path)
    try:
        seg = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1})[:]
    except Exception as e:
        raise ValueError(f"cannot read segmentation {path} ({e}); re-run nnUNetv2_preprocess") from e
    return seg, {**st, "sha": array_fingerprint(seg), "shape": list(seg.shape)}

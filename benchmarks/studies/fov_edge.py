"""False positives along DRIVE's field-of-view edge, per test case, from a study's predictions at a halving stop.

The degenerate-solution screen measures how much a run predicts (volume ratio, precision), not where: a thin ring
of false positives along the edge of the field of view (FOV) is a small share of the image and passes it. This
measures the ring. Per case, with ``fov`` = reference label != 2 (DRIVE's ignore label, outside the FOV mask) and
``w`` = 6 pixels:

* ``edge_fp_rate``: share of the background pixels in the band of ``w`` pixels inside the FOV edge
  (``fov & ~erode(fov, w)``) that the run predicts as vessel;
* ``interior_fp_rate``: the same share in the rest of the FOV (``erode(fov, w)``);
* ``outside_positive_rate``: share of the band of ``w`` pixels outside the FOV (``dilate(fov, w) & ~fov``)
  predicted as vessel (ignored by every metric, visible in the overlays).

Descriptive only; the runs are those whose predictions are on the machine (a restored run keeps its per-case
metrics, not its predictions)::

    python -m benchmarks.studies.fov_edge STUDY/predictions_at_stop/epoch_5 nnUNet_raw/Dataset501_DRIVE/labelsTs \\
        docs/data/drive_fov_edge_epoch5.csv
"""
from __future__ import annotations

import argparse
import glob
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from nnunet_losses.nnunet.tools.study.csv_files import write_csv

WIDTH = 6
IGNORE = 2
COLUMNS = ["arm", "fold", "seed", "case", "edge_fp_rate", "interior_fp_rate", "outside_positive_rate"]


def case_rates(prediction: np.ndarray, reference: np.ndarray, width: int = WIDTH) -> Dict[str, float]:
    """The three rates of one case (module docstring); ``prediction`` 0/1, ``reference`` 0/1/2 (2 = outside FOV).

    >>> ref = np.full((20, 20), 2); ref[2:18, 2:18] = 0
    >>> pred = np.zeros((20, 20), int); pred[2, 2:18] = 1
    >>> r = case_rates(pred, ref, width=2)
    >>> round(r["edge_fp_rate"], 3), r["interior_fp_rate"], r["outside_positive_rate"]
    (0.143, 0.0, 0.0)
    """
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
    p = prediction == 1
    fov = reference != IGNORE
    core = ndi.binary_erosion(fov, iterations=width)
    edge, outside = fov & ~core, ndi.binary_dilation(fov, iterations=width) & ~fov
    bg = reference == 0

    def share(mask):
        return float(p[mask].mean()) if mask.any() else float("nan")

    return {"edge_fp_rate": share(edge & bg), "interior_fp_rate": share(core & bg),
            "outside_positive_rate": share(outside)}


def measure(predictions: str, labels: str) -> List[dict]:
    """Rows (COLUMNS) for every ``<arm>/seed_<s>/fold_<f>`` folder under ``predictions`` that holds a PNG for
    every reference in ``labels``."""
    refs = {f: np.asarray(Image.open(os.path.join(labels, f))) for f in sorted(os.listdir(labels))
            if f.endswith(".png")}
    rows = []
    for folder in sorted(glob.glob(os.path.join(predictions, "*", "seed_*", "fold_*"))):
        arm, seed, fold = re.match(r".*/([^/]+)/seed_(\d+)/fold_(\d+)$", folder).groups()
        if not all(os.path.isfile(os.path.join(folder, f)) for f in refs):
            continue
        for f, ref in refs.items():
            r = case_rates(np.asarray(Image.open(os.path.join(folder, f))), ref)
            rows.append({"arm": arm, "fold": int(fold), "seed": int(seed), "case": f[:-4],
                         **{k: f"{v:.6f}" for k, v in r.items()}})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("predictions", help="a study's predictions_at_stop/epoch_N folder (<arm>/seed_S/fold_F)")
    ap.add_argument("labels", help="the test references (nnU-Net's labelsTs, DRIVE converted)")
    ap.add_argument("out", help="CSV to write (refuses to overwrite a different file without --overwrite)")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    rows = measure(a.predictions, a.labels)
    if not rows:
        raise SystemExit(f"no complete <arm>/seed_S/fold_F prediction folder under {a.predictions}")
    if os.path.exists(a.out) and not a.overwrite:
        raise SystemExit(f"{a.out} exists; pass --overwrite to replace it")
    write_csv(a.out, rows, COLUMNS)
    runs = sorted({(r["arm"], r["fold"], r["seed"]) for r in rows})
    print(f"{len(rows)} cases of {len(runs)} runs -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""benchmarks/studies/fov_edge.py: the share of background predicted as vessel along the field-of-view edge,
against a hand count, and the committed CSV against the command that wrote it."""
import csv
import doctest
import os

import numpy as np
import pytest
from PIL import Image

from benchmarks.studies import fov_edge

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _disc_case():
    """A 12x12 FOV square inside a 16x16 image, one vessel column; a ring predicted on the FOV's outermost
    pixels, two pixels inside, two pixels outside."""
    ref = np.full((16, 16), 2, np.uint8)
    ref[2:14, 2:14] = 0
    ref[2:14, 8] = 1
    pred = np.zeros((16, 16), np.uint8)
    pred[2:14, 2] = pred[2:14, 13] = pred[2, 2:14] = pred[13, 2:14] = 1  # the ring on the FOV's outer pixels
    pred[6, 5] = pred[7, 5] = 1  # two false positives in the interior
    pred[0, 0] = pred[1, 1] = 1  # outside the FOV, in the band of width 2
    pred[2:14, 8] = 1
    return pred, ref


def test_rates_equal_a_hand_count():
    pred, ref = _disc_case()
    r = fov_edge.case_rates(pred, ref, width=2)
    # edge band: 12*12 - 8*8 = 80 pixels, 4 of them vessel (column 8, rows 2, 3, 12, 13) -> 76 background;
    # the ring covers 44 pixels, 2 of them vessel -> 42 false positives
    assert r["edge_fp_rate"] == pytest.approx(42 / 76)
    # interior: 8*8 = 64 pixels, 8 vessel -> 56 background, 2 false positives
    assert r["interior_fp_rate"] == pytest.approx(2 / 56)
    # outside band: dilating the 12x12 square by 2 (cross element, 2 steps) adds 4*2*12 + 4*1 = 100 pixels;
    # predicted there: (1, 1) only ((0, 0) is 3 steps away)
    assert r["outside_positive_rate"] == pytest.approx(1 / 100)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        fov_edge.case_rates(np.zeros((4, 4)), np.zeros((4, 5)))


def test_docstring_example():
    assert doctest.testmod(fov_edge).failed == 0


def test_command_reads_study_folders_and_refuses_to_overwrite(tmp_path):
    pred, ref = _disc_case()
    labels = tmp_path / "labelsTs"
    labels.mkdir()
    Image.fromarray(ref).save(labels / "DRIVE_001.png")
    for arm, p in (("A", pred), ("nnU-Net", np.zeros_like(pred))):
        d = tmp_path / "stop" / arm / "seed_1" / "fold_3"
        d.mkdir(parents=True)
        Image.fromarray(p).save(d / "DRIVE_001.png")
    (tmp_path / "stop" / "B" / "seed_0" / "fold_0").mkdir(parents=True)  # no predictions: skipped
    out = tmp_path / "edge.csv"
    assert fov_edge.main([str(tmp_path / "stop"), str(labels), str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [(r["arm"], r["fold"], r["seed"], r["case"]) for r in rows] == [("A", "3", "1", "DRIVE_001"),
                                                                           ("nnU-Net", "3", "1", "DRIVE_001")]
    assert float(rows[0]["edge_fp_rate"]) == pytest.approx(fov_edge.case_rates(pred, ref)["edge_fp_rate"], abs=1e-6)
    assert float(rows[1]["edge_fp_rate"]) == 0
    with pytest.raises(SystemExit, match="exists"):
        fov_edge.main([str(tmp_path / "stop"), str(labels), str(out)])


def test_committed_data_has_whole_runs_of_the_stopped_arms_and_the_baseline():
    path = os.path.join(ROOT, "docs", "data", "drive_fov_edge_epoch5.csv")
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == fov_edge.COLUMNS
    runs = {}
    for r in rows:
        runs.setdefault((r["arm"], r["fold"], r["seed"]), set()).add(r["case"])
    assert all(len(cases) == 10 for cases in runs.values())
    assert {"nnU-Net", "AsymFbeta", "Tversky"} <= {a for a, _, _ in runs}
    assert all(0 <= float(r[c]) <= 1 for r in rows for c in fov_edge.COLUMNS[4:])

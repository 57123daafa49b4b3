"""Topology metrics (clDice, Betti-number errors) on hand-drawn 2D and 3D shapes, worked out by hand."""
import math

import numpy as np
import pytest

from nnunet_losses.evaluation import (betti0, betti1_2d, betti_errors, case_metrics, cldice_score, metric_skeleton,
                                      topology_metrics)


def _line(shape=(21, 31), row=10, cols=(5, 26)):
    m = np.zeros(shape, bool)
    m[row, cols[0]:cols[1]] = True
    return m


def _tube(radius, shape=(30, 31, 31), z=(2, 28)):
    """A cylinder along axis 0 around the column (15, 15)."""
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    m = np.broadcast_to((y - 15) ** 2 + (x - 15) ** 2 <= radius ** 2, shape).copy()
    m[: z[0]] = False
    m[z[1]:] = False
    return m


# ------------------------------------------------------------------------------------ clDice, 2D
def test_cldice_of_hand_drawn_lines():
    ref = _line()
    assert (metric_skeleton(ref) == ref).all()  # a one-pixel line is its own skeleton (end points kept)
    gap = ref.copy()
    gap[10, 14:17] = False  # 3 of 21 pixels missing
    # Tprec = 1 (every predicted skeleton pixel is in the reference), Tsens = 18 / 21
    assert cldice_score(gap, ref) == pytest.approx(2 * (18 / 21) / (1 + 18 / 21))
    assert cldice_score(ref, gap) == pytest.approx(2 * (18 / 21) / (1 + 18 / 21))  # symmetric roles
    # a 3-pixel and a 5-pixel thick bar on the same axis: each skeleton (the centre line, give or take a
    # pixel at one end) lies inside the other bar, so clDice = 1 although Dice = 2 * 63 / (63 + 105) = 0.75
    bar3, bar5 = np.zeros_like(ref), np.zeros_like(ref)
    bar3[9:12, 5:26] = True
    bar5[8:13, 5:26] = True
    assert not (metric_skeleton(bar3) & ~bar5).any() and not (metric_skeleton(bar5) & ~bar3).any()
    assert cldice_score(bar5, bar3) == 1.0
    assert case_metrics(bar5.astype(np.uint8), bar3.astype(np.uint8), [1])[1]["dice"] == pytest.approx(0.75)
    # a parallel line 5 rows away: no centreline matched
    assert cldice_score(_line(row=15), ref) == 0.0


def test_cldice_of_a_3d_tube():
    ref = _tube(3)
    s = metric_skeleton(ref)
    zs, ys, xs = np.nonzero(s)
    assert set(ys) == {15} and set(xs) == {15} and s.sum() >= 20  # the centre line, most of the length
    thin = _tube(1)  # a thin tube on the same axis: the topology is right, the volume is not
    assert cldice_score(thin, ref) == pytest.approx(1.0)
    cut = ref.copy()
    cut[13:17] = False  # a 4-slice gap: 4 centre-line voxels of the reference are missed
    k = int(s.sum())
    assert cldice_score(cut, ref) == pytest.approx(2 * ((k - 4) / k) / (1 + (k - 4) / k))


def test_cldice_empty_and_tiny_masks():
    empty = np.zeros((10, 10, 10), bool)
    cube = empty.copy()
    cube[4:6, 4:6, 4:6] = True  # Lee's thinning removes it entirely: the mask is its own skeleton
    assert (metric_skeleton(cube) == cube).all()
    assert cldice_score(cube, cube) == 1.0
    assert math.isnan(cldice_score(empty, empty))
    assert cldice_score(cube, empty) == 0.0 and cldice_score(empty, cube) == 0.0


# ------------------------------------------------------------------------------------ Betti numbers
def test_betti_of_two_blobs_and_a_ring():
    two = np.zeros((20, 30), bool)
    two[2:6, 2:6] = True
    two[10:15, 20:25] = True
    one = np.zeros_like(two)
    one[2:6, 2:6] = True
    assert betti0(two) == 2 and betti0(one) == 1
    assert betti_errors(one, two) == (1.0, 0.0)
    diagonal = np.zeros((6, 6), bool)
    diagonal[1, 1] = diagonal[2, 2] = True  # touching corners: one component with full connectivity
    assert betti0(diagonal) == 1
    ring = np.zeros((20, 20), bool)
    ring[4:15, 4:15] = True
    ring[7:12, 7:12] = False
    disc = np.zeros_like(ring)
    disc[4:15, 4:15] = True
    assert betti1_2d(ring) == 1 and betti1_2d(disc) == 0
    assert betti_errors(disc, ring) == (0.0, 1.0)
    e = topology_metrics(disc, ring)
    # the disc's skeleton is a small blob at its centre, in the ring's hole: Tprec = 0, so clDice = 0
    assert e == {"cldice": 0.0, "betti0_error": 0.0, "betti1_error": 1.0}
    assert cldice_score(ring, disc) == 0.0 and cldice_score(ring, ring) == 1.0


def test_betti1_connectivity_and_the_image_border():
    # a diamond drawn with diagonal steps: 8-connected, it encloses its centre (4-connected background)
    diamond = np.zeros((9, 9), bool)
    for i in range(4):
        diamond[4 - i, i] = diamond[4 + i, i] = diamond[i, 4 + i] = diamond[8 - i, 4 + i] = True
    diamond[0, 4] = diamond[8, 4] = diamond[4, 8] = True
    assert betti0(diamond) == 1 and betti1_2d(diamond) == 1
    # a U open towards the image border encloses nothing; the same shape closed at the top does
    u = np.zeros((10, 10), bool)
    u[:, 0:3] = u[:, 7:10] = u[7:, :] = True
    assert betti1_2d(u) == 0
    u[0, :] = True
    assert betti1_2d(u) == 1
    two_holes = np.ones((9, 15), bool)
    two_holes[3:6, 3:6] = two_holes[3:6, 9:12] = False
    assert betti1_2d(two_holes) == 2


def test_betti_in_3d_and_empty_masks():
    a = np.zeros((12, 12, 12), bool)
    a[1:4, 1:4, 1:4] = True
    b = a.copy()
    b[7:10, 7:10, 7:10] = True
    e0, e1 = betti_errors(a, b)
    assert e0 == 1 and math.isnan(e1)  # no Betti-1 in 3D
    empty = np.zeros_like(a)
    assert all(math.isnan(v) for v in betti_errors(empty, empty))
    assert betti_errors(empty, b)[0] == 2  # one empty: the other's number of components
    flat = np.zeros((1, 20, 20), bool)  # nnU-Net's 2D layout: measured as 2D, Betti-1 included
    flat[0, 4:15, 4:15] = True
    flat[0, 7:12, 7:12] = False
    assert betti_errors(np.zeros_like(flat), flat) == (1.0, 1.0)


def test_case_metrics_topology_columns_and_ignore_label():
    ref = np.zeros((20, 30), np.uint8)
    ref[5, 2:28] = 1           # a vessel
    ref[12:, :] = 2            # ignore label
    pred = ref.copy()
    pred[pred == 2] = 0
    noisy = pred.copy()
    noisy[15, 3:8] = 1         # a false vessel inside the ignored rows: no effect
    noisy[18, 20:25] = 1
    a = case_metrics(pred, ref, [1], ignore_label=2, topology=True)[1]
    b = case_metrics(noisy, ref, [1], ignore_label=2, topology=("cldice", "betti0_error", "betti1_error"))[1]
    for k in ("cldice", "betti0_error", "betti1_error"):
        assert a[k] == b[k]
    assert a["cldice"] == 1 and a["betti0_error"] == 0
    c = case_metrics(noisy, ref, [1], topology=["betti0_error"])[1]  # without the ignore label they count
    assert c["betti0_error"] == 2 and "cldice" not in c and "betti1_error" not in c
    assert "cldice" not in case_metrics(pred, ref, [1])[1]  # computed only when asked for
    with pytest.raises(ValueError, match="topology"):
        case_metrics(pred, ref, [1], topology=["betti2_error"])

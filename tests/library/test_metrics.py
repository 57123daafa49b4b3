"""nnunet_losses.evaluation against hand computation, MONAI's and DeepMind's surface metrics, SciPy and nnU-Net."""
import math

import numpy as np
import pytest
from scipy import ndimage

from nnunet_losses.evaluation import (case_metrics, components, confusion, diagonal, hd95, lesion_detection,
                                      overlap_metrics, surface_dice, surface_distances)


def _squares(shift=2):
    """Reference: 10x10 square at rows/cols 10..19; prediction: the same square moved down by ``shift`` rows."""
    ref = np.zeros((40, 30), bool)
    ref[10:20, 10:20] = True
    pred = np.roll(ref, shift, axis=0)
    return pred, ref


def _blobs(shape, seed, threshold=0.6, sigma=2.0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return field > np.quantile(field, threshold)


# ---------------------------------------------------------------- hand-made cases
def test_overlap_by_hand():
    pred, ref = _squares()
    tp, fp, fn, tn = confusion(pred, ref)
    assert (tp, fp, fn, tn) == (80, 20, 20, 40 * 30 - 120)
    m = overlap_metrics(tp, fp, fn)
    assert m["dice"] == pytest.approx(160 / 200)
    assert m["iou"] == pytest.approx(80 / 120)
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(0.8)


def test_surface_metrics_by_hand():
    # Edges are the 36-voxel outlines. Worked out by hand (see the square's geometry):
    # HD = 2 rows; 16 + 16 of the 36 + 36 edge voxels lie on the other outline (tolerance 0),
    # 20 + 20 lie within 1 voxel (tolerance 1), all lie within 2.
    pred, ref = _squares()
    assert hd95(pred, ref, percentile=100) == pytest.approx(2.0)
    assert hd95(pred, ref, spacing=(3.0, 1.0), percentile=100) == pytest.approx(6.0)  # 2 rows of 3 mm
    assert hd95(pred, ref, spacing=(1.0, 3.0), percentile=100) == pytest.approx(2.0)  # the shift is along rows
    assert surface_dice(pred, ref, tolerance=0) == pytest.approx(32 / 72)
    assert surface_dice(pred, ref, tolerance=1) == pytest.approx(40 / 72)
    assert surface_dice(pred, ref, tolerance=2) == pytest.approx(1.0)
    # rows 2 mm apart, columns 1 mm: within 2 mm are the side columns' voxels 1 row from the other outline
    # (18 + 18) and the bottom/top rows' voxels 1 or 2 columns from the other outline's sides (4 + 4)
    assert surface_dice(pred, ref, spacing=(2.0, 1.0), tolerance=2) == pytest.approx(44 / 72)
    d_pr, d_rp = surface_distances(pred, ref)
    assert d_pr.size == 36 and d_rp.size == 36
    assert hd95(ref, ref) == 0.0 and surface_dice(ref, ref, tolerance=0) == 1.0


def test_hd95_percentile_is_max_of_directed_percentiles():
    # a one-pixel reference and a 1 x 21 line prediction through it: distances 0..10 (twice each except 0)
    ref = np.zeros((1, 41), bool)
    ref[0, 20] = True
    pred = np.zeros((1, 41), bool)
    pred[0, 10:31] = True
    d_pr, d_rp = surface_distances(pred, ref)
    assert sorted(d_pr.tolist()) == [10.0, 10.0]  # the line's edge voxels are its two end points
    assert d_rp.tolist() == [10.0]
    pred2 = np.zeros((3, 3, 41), bool)
    ref2 = np.zeros((3, 3, 41), bool)
    pred2[1, 1, 10:31] = True
    ref2[1, 1, 20] = True  # in 3D every voxel of a thin line is an edge voxel: distances |x - 20|
    expected = max(np.percentile(np.abs(np.arange(10, 31) - 20.0), 95), 0.0)
    assert hd95(pred2, ref2) == pytest.approx(expected)


def test_empty_mask_conventions():
    ref = np.zeros((20, 30), bool)
    pred = ref.copy()
    m = case_metrics(pred.astype(np.uint8), ref.astype(np.uint8), [1])[1]
    assert all(math.isnan(m[k]) for k in ("dice", "iou", "precision", "recall", "hd95", "nsd"))
    pred[5:8, 5:8] = True
    m = case_metrics(pred.astype(np.uint8), ref.astype(np.uint8), [1], spacing=(2.0, 0.5))[1]
    assert m["dice"] == 0 and m["iou"] == 0 and m["precision"] == 0 and math.isnan(m["recall"])
    assert m["hd95"] == pytest.approx(math.hypot(19 * 2.0, 29 * 0.5)) == diagonal((20, 30), (2.0, 0.5))
    assert m["nsd"] == 0
    m = case_metrics(ref.astype(np.uint8), pred.astype(np.uint8), [1])[1]  # prediction empty
    assert m["dice"] == 0 and math.isnan(m["precision"]) and m["recall"] == 0 and m["nsd"] == 0


def test_length_one_axes_are_dropped():
    pred, ref = _squares()
    flat = case_metrics(pred.astype(np.uint8), ref.astype(np.uint8), [1], spacing=(3.0, 1.0))[1]
    # nnU-Net's 2D layout: (1, X, Y) with a dummy spacing of 999 on the first axis
    stacked = case_metrics(pred[None].astype(np.uint8), ref[None].astype(np.uint8), [1], spacing=(999, 3.0, 1.0))[1]
    for k in ("dice", "hd95", "nsd"):
        assert stacked[k] == pytest.approx(flat[k])
    assert flat["hd95"] == pytest.approx(6.0)


def test_touching_the_border_makes_a_surface():
    ref = np.zeros((10, 10), bool)
    ref[:, :5] = True  # touches three borders
    pred = np.zeros((10, 10), bool)
    pred[:, :4] = True
    d_pr, d_rp = surface_distances(pred, ref)
    assert d_pr.size == 2 * 4 + 2 * 8  # outline of the 10 x 4 block, image border included: 24 voxels
    assert hd95(pred, ref, percentile=100) == pytest.approx(1.0)


# ---------------------------------------------------------------- MONAI as the independent library
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("shape,spacing,tol", [((48, 40), (0.7, 1.3), 1.0), ((24, 28, 20), (2.5, 0.8, 1.0), 1.5),
                                               ((16, 20, 18), (1.0, 1.0, 1.0), 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_surface_metrics_match_monai(shape, spacing, tol, seed):
    ref = _blobs(shape, seed)
    pred = _blobs(shape, seed + 100)
    pred[..., : shape[-1] // 3] = ref[..., : shape[-1] // 3]  # partial agreement, touching the border
    _check_against_monai(pred, ref, spacing, tol)


def _check_against_monai(pred, ref, spacing, tol):
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    y = torch.from_numpy(np.stack([~ref, ref])[None].astype(np.float32))
    yp = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    with np.errstate(all="ignore"):
        hd_monai = monai_metrics.compute_hausdorff_distance(yp, y, include_background=False, percentile=95,
                                                            spacing=list(spacing))[0, 0].item()
        hd100_monai = monai_metrics.compute_hausdorff_distance(yp, y, include_background=False,
                                                               spacing=list(spacing))[0, 0].item()
        nsd_monai = monai_metrics.compute_surface_dice(yp, y, class_thresholds=[tol], include_background=False,
                                                       spacing=list(spacing))[0, 0].item()
    assert hd95(pred, ref, spacing) == pytest.approx(hd_monai, rel=1e-5, abs=1e-5)
    assert hd95(pred, ref, spacing, percentile=100) == pytest.approx(hd100_monai, rel=1e-5, abs=1e-5)
    assert surface_dice(pred, ref, spacing, tolerance=tol) == pytest.approx(nsd_monai, abs=1e-6)
    assert 0 < surface_dice(pred, ref, spacing, tol) < 1 and hd95(pred, ref, spacing) > 0  # not trivial


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_sparse_surfaces_match_monai():
    # thin surfaces in a large box: the k-d tree path (the blobs above take the distance transform)
    z, y, x = np.ogrid[:60, :60, :60]
    ref = (z - 40) ** 2 * 4 + (y - 40) ** 2 + (x - 40) ** 2 < 14 ** 2
    pred = (z - 39) ** 2 * 4 + (y - 42) ** 2 + (x - 40) ** 2 < 13 ** 2
    pred[1, 1, 1] = True  # a far outlier: a large box with little surface
    from nnunet_losses.evaluation.surface import KDTREE_BELOW, _crop, edges

    p, r = _crop(pred, ref)
    assert edges(p).sum() + edges(r).sum() < KDTREE_BELOW * p.size
    _check_against_monai(pred, ref, (2.0, 0.7, 0.9), 1.5)


@pytest.mark.parametrize("below", [0.0, 1.0])  # distance transform only / k-d tree only
def test_both_distance_algorithms_agree(monkeypatch, below):
    import nnunet_losses.evaluation.surface as surface

    z, y, x = np.ogrid[:30, :40, :36]
    ref = (z - 15) ** 2 * 4 + (y - 20) ** 2 + (x - 18) ** 2 < 12 ** 2
    pred = (z - 14) ** 2 * 4 + (y - 22) ** 2 + (x - 18) ** 2 < 11 ** 2
    ref[2, 2, 2] = True  # an outlier voxel far from everything
    spacing = (2.0, 0.7, 0.9)
    expected = surface_distances(pred, ref, spacing)  # default choice
    monkeypatch.setattr(surface, "KDTREE_BELOW", below)
    got = surface_distances(pred, ref, spacing)
    for e, g in zip(expected, got):
        assert np.allclose(np.sort(e), np.sort(g), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- DeepMind's surface-distance package
@pytest.mark.parametrize("shape,spacing,tol", [((48, 40), (0.7, 1.3), 1.0), ((24, 28, 20), (2.5, 0.8, 1.0), 1.5),
                                               ((20, 22, 18), (1.0, 1.0, 1.0), 1.0), ((40, 30), (1.0, 1.0), 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deepmind_convention_matches_surface_distance(shape, spacing, tol, seed):
    sd = pytest.importorskip("surface_distance", reason="test-only dependency surface-distance (requirements-test.txt)")
    ref = _blobs(shape, seed)
    pred = _blobs(shape, seed + 100)
    pred[..., : shape[-1] // 3] = ref[..., : shape[-1] // 3]  # partial agreement, touching the border
    d = sd.compute_surface_distances(ref, pred, spacing)  # DeepMind's order: (ground truth, prediction)
    for percentile in (95, 100, 50):
        assert hd95(pred, ref, spacing, percentile, convention="deepmind") == pytest.approx(
            sd.compute_robust_hausdorff(d, percentile), abs=1e-6)
    nsd = surface_dice(pred, ref, spacing, tol, convention="deepmind")
    assert nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(d, tol), abs=1e-6)
    assert 0 < nsd < 1
    # nnU-Net's 2D layout (1, X, Y) with a dummy spacing is measured as the 2D image
    if len(shape) == 2:
        assert hd95(pred[None], ref[None], (999.0,) + spacing, convention="deepmind") == pytest.approx(
            sd.compute_robust_hausdorff(d, 95), abs=1e-6)


def test_deepmind_surfel_sizes_and_ties_match_surface_distance():
    sd = pytest.importorskip("surface_distance", reason="test-only dependency surface-distance (requirements-test.txt)")
    from nnunet_losses.evaluation.surfels import surfel_table

    for spacing in [(1.0, 1.0, 1.0), (2.5, 0.8, 1.1), (0.3, 4.0, 0.7)]:  # all 256 cells, anisotropic
        assert np.allclose(surfel_table(spacing), sd.lookup_tables.create_table_neighbour_code_to_surface_area(
            spacing), rtol=1e-12, atol=1e-12)
    for spacing in [(1.0, 1.0), (0.7, 1.9)]:
        assert np.allclose(surfel_table(spacing), sd.lookup_tables.create_table_neighbour_code_to_contour_length(
            spacing), rtol=1e-12, atol=1e-12)
    # small shifted rectangles, unit spacing: many equal distances and sizes, so the cumulative size hits the
    # percentile exactly; DeepMind takes the first distance whose cumulative fraction reaches it
    for h, w, dy, dx in [(2, 2, 0, 1), (2, 2, 1, 2), (2, 2, 1, 3), (3, 5, 1, 1), (4, 4, 2, 0)]:
        ref = np.zeros((16, 16), bool)
        ref[4:4 + h, 4:4 + w] = True
        pred = np.zeros_like(ref)
        pred[4 + dy:4 + dy + h, 4 + dx:4 + dx + w] = True
        d = sd.compute_surface_distances(ref, pred, (1.0, 1.0))
        for percentile in (50, 75, 90):
            assert hd95(pred, ref, (1.0, 1.0), percentile, convention="deepmind") == pytest.approx(
                sd.compute_robust_hausdorff(d, percentile), abs=1e-6)


def test_deepmind_convention_differs_from_monai_and_keeps_the_empty_mask_conventions():
    pred, ref = _squares()
    # two ways to measure the same shift: voxel-centre distances vs surfel corners weighted by length
    assert surface_dice(pred, ref, (2.0, 1.0), 2.0) != surface_dice(pred, ref, (2.0, 1.0), 2.0, convention="deepmind")
    empty = np.zeros_like(ref)
    m = case_metrics(ref.astype(np.uint8), empty.astype(np.uint8), [1], spacing=(2.0, 0.5),
                     surface_convention="deepmind")[1]
    assert m["hd95"] == pytest.approx(diagonal(ref.shape, (2.0, 0.5))) and m["nsd"] == 0
    m = case_metrics(empty.astype(np.uint8), empty.astype(np.uint8), [1], surface_convention="deepmind")[1]
    assert math.isnan(m["hd95"]) and math.isnan(m["nsd"])
    with pytest.raises(ValueError, match="convention"):
        hd95(pred, ref, convention="medpy")


# ---------------------------------------------------------------- lesions
def test_lesions_by_hand():
    ref = np.zeros((30, 30), bool)
    ref[2:5, 2:5] = True          # lesion A: found
    ref[10:12, 10:12] = True      # lesion B: found (through a diagonal neighbour, see below)
    ref[20:23, 20:23] = True      # lesion C: missed
    pred = np.zeros_like(ref)
    pred[3:6, 3:6] = True         # overlaps A
    pred[11, 11] = True           # overlaps B ...
    pred[12, 12] = True           # ... and this pixel touches it diagonally: the same lesion (8-connectivity)
    pred[25:28, 2:5] = True       # a false positive lesion
    r = lesion_detection(pred, ref)
    assert (r["n_ref_lesions"], r["n_pred_lesions"], r["n_detected_lesions"], r["n_false_lesions"]) == (3, 3, 2, 1)
    assert r["lesion_tpr"] == pytest.approx(2 / 3) and r["lesion_fpr"] == pytest.approx(1 / 3)
    r2 = lesion_detection(pred, ref, min_overlap=4)  # A overlaps by 4 voxels, B by 1
    assert r2["n_detected_lesions"] == 1 and r2["n_false_lesions"] == 2
    empty = lesion_detection(np.zeros_like(ref), np.zeros_like(ref))
    assert math.isnan(empty["lesion_tpr"]) and math.isnan(empty["lesion_fpr"])


@pytest.mark.parametrize("shape", [(60, 50), (20, 24, 22)])
def test_components_match_scipy(shape):
    mask = np.random.default_rng(3).random(shape) > 0.8
    labels, n = components(mask)
    ref_labels, ref_n = ndimage.label(mask, structure=np.ones((3,) * len(shape), bool))
    assert n == ref_n > 10
    # the same partition up to renumbering: a one-to-one map between labels
    pairs = np.unique(np.stack([labels[mask], ref_labels[mask]]), axis=1)
    assert pairs.shape[1] == n


# ---------------------------------------------------------------- nnU-Net's own counts, ignore label, regions
def test_counts_match_nnunet_with_ignore_label():
    ev = pytest.importorskip("nnunetv2.evaluation.evaluate_predictions")
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 4, (1, 30, 31, 12))  # 3 = ignore label
    pred = rng.integers(0, 3, (1, 30, 31, 12))
    ours = case_metrics(pred, ref, [1, 2, (1, 2)], ignore_label=3)
    ignore = ref == 3
    for c in (1, 2, (1, 2)):
        mr = ev.region_or_label_to_mask(ref, c)
        mp = ev.region_or_label_to_mask(pred, c)
        tp, fp, fn, _ = ev.compute_tp_fp_fn_tn(mr, mp, ignore)
        assert (ours[c]["tp"], ours[c]["fp"], ours[c]["fn"]) == (tp, fp, fn)
        assert ours[c]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_ignored_voxels_change_nothing():
    pred, ref = _squares()
    ref_l = ref.astype(np.uint8)
    ref_l[30:, :] = 2  # ignore region in the reference
    pred_l = pred.astype(np.uint8)
    noisy = pred_l.copy()
    noisy[32:38, 5:25] = 1  # a false positive blob inside the ignored region
    a = case_metrics(pred_l, ref_l, [1], ignore_label=2, lesions=True)[1]
    b = case_metrics(noisy, ref_l, [1], ignore_label=2, lesions=True)[1]
    for k in ("dice", "hd95", "nsd", "lesion_fpr", "fp"):
        assert a[k] == b[k]
    c = case_metrics(noisy, ref_l, [1], lesions=True)[1]  # without the ignore label it does count
    assert c["fp"] > a["fp"] and c["lesion_fpr"] > 0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((3, 4)), np.zeros((3, 5)), [1])
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(np.zeros((3, 4)), np.zeros((3, 4)), [1], spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(np.zeros((3, 4)), np.zeros((3, 4)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="classes"):
        case_metrics(np.zeros((3, 4)), np.zeros((3, 4)), [])
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(np.ones((3, 4)), np.ones((3, 4)), tolerance=-1)

"""Every loss of nnunet_losses against the independent float64 NumPy reference (tests/reference.py).

Random 2D (2x3x9x11) and 3D (2x3x5x6x7) inputs, softmax and sigmoid mode, blob targets (so contours
exist) and random labels, batch_dice, include_background, ignore_index (with voxels carrying the
ignore label), loss masks and the loss-specific hyper-parameters. The reference itself is checked
against torch.nn.functional and against identities between the losses at the end of this file.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

import reference as R  # noqa: E402

import nnunet_losses as NL  # noqa: E402

RTOL = 2e-6
ATOL = 1e-6
SHAPES = {2: (2, 3, 9, 11), 3: (2, 3, 5, 6, 7)}
#: shapes of the many-class cases (C is replaced by the number of classes): a little larger, so that
#: with 7 or 16 classes most classes still hold voxels off their contour
MANY_CLASS_SHAPES = {2: (2, 0, 12, 13), 3: (2, 0, 6, 7, 8)}
#: above LABEL_SUMS_MIN_CLASSES (4) classes, SDL / CWCD and the top-K losses take their label-sum code paths
MANY_CLASSES = (7, 16)


# ----------------------------------------------------------------------------- data
def make_data(dim, mode, target_kind, use_ignore, use_mask, seed, num_classes=None):
    """logits (float64), target, ignore_index, mask (or None) as NumPy arrays; ``num_classes``: C
    classes / regions on the (larger) many-class shapes instead of the 3 of ``SHAPES``."""
    rng = np.random.default_rng(seed)
    if num_classes is None:
        B, C, *spatial = SHAPES[dim]
    else:
        B, _, *spatial = MANY_CLASS_SHAPES[dim]
        C = num_classes
    logits = rng.normal(scale=2.0, size=(B, C, *spatial))
    if mode == "softmax":
        if target_kind == "blobs":
            noise = ndimage.gaussian_filter(rng.normal(size=(B, C, *spatial)), sigma=[0, 0] + [1.2] * dim)
            target = np.argmax(noise, axis=1)[:, None]
        else:
            target = rng.integers(0, C, size=(B, 1, *spatial))
        ignore_index = C if use_ignore else None
        if use_ignore:
            target[rng.random(target.shape) < 0.15] = ignore_index
        target = target.astype(np.int64)
    else:
        if target_kind == "blobs":
            noise = ndimage.gaussian_filter(rng.normal(size=(B, C, *spatial)), sigma=[0, 0] + [1.2] * dim)
            target = (noise > 0.1 * noise.std()).astype(np.float64)
        else:
            target = (rng.random((B, C, *spatial)) < 0.4).astype(np.float64)
        ignore_index = 2 if use_ignore else None
        if use_ignore:  # the ignore value in one random channel of ~15% of the voxels
            sel = rng.random((B, *spatial)) < 0.15
            ch = rng.integers(0, C, size=(B, *spatial))
            for c in range(C):
                target[:, c][sel & (ch == c)] = ignore_index
    mask = (rng.random((B, 1, *spatial)) < 0.8).astype(np.float64) if use_mask else None
    return logits, target, ignore_index, mask


def random_maps(rng, shape_fg, shape_band):
    """Arbitrary binary maps: tests the loss formula independently of the morphology."""
    return ((rng.random(shape_fg) < 0.3).astype(np.float64), (rng.random(shape_band) < 0.4).astype(np.float64))


def focal_alpha(mode, C):
    return ([0.2, 0.5, 1.3, 0.7, 2.0, 0.1, 1.0] * (C // 7 + 1))[:C] if mode == "softmax" else 0.25


# ----------------------------------------------------------------------------- the cases
# name -> (reference function, family, list of loss-specific hyper-parameter sets)
LOSSES = {
    "SoftDiceLoss": (R.soft_dice_loss, "dice", [{}, {"smooth": 1.0}]),
    "DiceCELoss": (R.dice_ce_loss, "dice", [{}, {"weight_ce": 0.3, "weight_dice": 1.7}]),
    "ComboLoss": (R.combo_loss, "dice", [{}, {"alpha": 0.3, "beta": 0.8}, {"alpha": 0.9, "beta": 0.2}]),
    "ContourWeightedCELoss": (R.cwce_loss, "contour_ce", [
        {}, {"contour_weight": 2.5, "iterations": 1}, {"iterations": 2, "kernel_size": 5}]),
    "SeparableDiceLoss": (R.sdl_loss, "contour_dice", [
        {}, {"lam": 0.2, "iterations": 1}, {"lam": 0.8, "iterations": 2, "kernel_size": 5}]),
    "CWCDLoss": (R.cwcd_loss, "contour_dice", [
        {}, {"weight_ce": 0.5, "weight_dice": 2.0, "iterations": 1, "contour_weight": 3.0, "lam": 0.3}]),
    "AsymmetricFbetaLoss": (R.asym_fbeta_loss, "dice", [{}, {"beta": 1.0}, {"beta": 2.5}]),
    "TverskyLoss": (R.tversky_loss, "dice", [{}, {"alpha": 0.5, "beta": 0.5}, {"alpha": 0.9, "beta": 0.1}]),
    "TopKDiceLoss": (R.topk_dice_loss, "dice", [{}, {"k": 37}, {"k": 100}, {"k": 1}]),
    "CETopKDiceLoss": (R.ce_topk_dice_loss, "dice", [{}, {"k": 25, "weight_ce": 0.4, "weight_dice": 1.3}]),
    "GeneralizedDiceLoss": (R.generalized_dice_loss, "gdl", [{}]),
    "FocalLoss": (R.focal_loss, "ce", [{}, {"gamma": 0.0}, {"gamma": 0.5}, {"alpha": "per-mode"},
                                      {"gamma": 3.0, "alpha": "per-mode"}]),
    "FocalDiceLoss": (R.focal_dice_loss, "dice", [{}, {"gamma": 1.0, "alpha": "per-mode"}]),
    "DistanceWeightedCELoss": (R.dwce_loss, "ce", [{}]),
    "OffsetCurvesLoss": (R.offset_curves_loss, "ce", [
        {}, {"band": 1}, {"band": 2, "lambda_band": 0.5, "lambda_length": 0.3}]),
}

# per family: variants (constructor options + whether to use ignore label / mask)
VARIANTS = {
    "dice": [dict(), dict(batch_dice=True), dict(include_background=True), dict(ignore=True),
             dict(mask=True), dict(ignore=True, mask=True, batch_dice=True, include_background=True)],
    "gdl": [dict(), dict(include_background=False), dict(batch_dice=True), dict(ignore=True),
            dict(mask=True), dict(ignore=True, mask=True, batch_dice=True)],
    "ce": [dict(), dict(ignore=True), dict(mask=True), dict(ignore=True, mask=True)],
    "contour_ce": [dict(), dict(ignore=True), dict(mask=True), dict(ignore=True, mask=True)],
    "contour_dice": [dict(), dict(batch_dice=True), dict(ignore=True), dict(mask=True),
                     dict(ignore=True, mask=True, batch_dice=True)],
}


def build_cases():
    cases = []
    for name, (_, family, hps) in LOSSES.items():
        variants = VARIANTS[family]
        for hp_i, hp in enumerate(hps):
            # the first hyper-parameter set meets every variant; the others the plainest and the busiest
            # (the contour losses meet every variant: ignored / masked voxels change their maps)
            vs = variants if (hp_i == 0 or family.startswith("contour")) else [variants[0], variants[-1]]
            for v in vs:
                for dim in (2, 3):
                    for mode in ("softmax", "sigmoid"):
                        kinds = ["blobs", "random"] if (v == variants[0] and hp_i == 0) else ["blobs"]
                        for kind in kinds:
                            maps_opts = [None]
                            if family.startswith("contour"):
                                maps_opts = ["fly", "given"] if hp_i == 0 else ["fly"]
                            for maps in maps_opts:
                                vid = "-".join(f"{k}" for k in v) or "plain"
                                hid = "-".join(f"{k}={x}" for k, x in hp.items()) or "default"
                                mid = f"-maps_{maps}" if maps else ""
                                cases.append(pytest.param(name, hp, v, dim, mode, kind, maps,
                                                          id=f"{name}-{hid}-{vid}-{dim}d-{mode}-{kind}{mid}"))
    return cases


def run_case(name, hp, variant, dim, mode, kind, maps, seed=0, dtype=np.float64, num_classes=None):
    ref_fn, family, _ = LOSSES[name]
    logits, target, ignore_index, mask = make_data(dim, mode, kind, variant.get("ignore", False),
                                                   variant.get("mask", False), seed, num_classes)
    logits = logits.astype(dtype).astype(np.float64)  # the reference sees the rounded logits
    B, C = logits.shape[:2]
    spatial = logits.shape[2:]
    kwargs = dict(hp)
    if kwargs.get("alpha") == "per-mode":
        kwargs["alpha"] = focal_alpha(mode, C)
    for opt in ("batch_dice", "include_background"):
        if opt in variant:
            kwargs[opt] = variant[opt]
    sigmoid = mode == "sigmoid"
    forward_maps = {}
    rng = np.random.default_rng(seed + 1)
    if name == "DistanceWeightedCELoss":
        forward_maps["weight_map"] = rng.uniform(0.5, 12.0, size=(B, 1, *spatial))
    if maps == "given":
        n_fg = C if sigmoid else C - 1
        contour, band = random_maps(rng, (B, n_fg, *spatial), (B, 1, *spatial))
        if name in ("SeparableDiceLoss", "CWCDLoss"):
            forward_maps["contour"] = contour
        if name in ("ContourWeightedCELoss", "CWCDLoss"):
            forward_maps["band"] = band

    expected = ref_fn(logits, target, mask, sigmoid=sigmoid, ignore_index=ignore_index, **kwargs, **forward_maps)

    loss = getattr(NL, name)(sigmoid=sigmoid, ignore_index=ignore_index, **kwargs)
    t_maps = {k: torch.from_numpy(v) for k, v in forward_maps.items()}
    t_mask = None if mask is None else torch.from_numpy(mask)
    got = loss(torch.from_numpy(logits.astype(dtype)), torch.from_numpy(target), mask=t_mask, **t_maps)
    return got, expected


@pytest.mark.parametrize("name,hp,variant,dim,mode,kind,maps", build_cases())
def test_loss_matches_reference(name, hp, variant, dim, mode, kind, maps):
    got, expected = run_case(name, hp, variant, dim, mode, kind, maps)
    # float64 logits compute in float64 (documented, for gradcheck); float32 ones give float32
    assert got.dtype in (torch.float32, torch.float64) and got.dim() == 0
    assert math.isfinite(expected) and expected >= 0
    assert_close(got, expected)


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("name", list(LOSSES))
def test_float32_logits_match_reference(name, dim, mode):
    """The production path: float32 logits give a float32 scalar within ~1e-6 of the reference
    (busiest variant of each loss: ignore label, mask, batch_dice where it applies)."""
    variant = VARIANTS[LOSSES[name][1]][-1]
    got, expected = run_case(name, {}, variant, dim, mode, "blobs", None, seed=11, dtype=np.float32)
    assert got.dtype == torch.float32 and got.dim() == 0
    np.testing.assert_allclose(got.item(), expected, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- many classes
#: per loss, the hyper-parameters of its many-class cases: one erosion iteration (so that classes keep
#: an interior on these small images), enough kept top-K voxels for most classes to be among them
MANY_CLASS_HP = {
    "ComboLoss": {"alpha": 0.3, "beta": 0.8},
    "ContourWeightedCELoss": {"iterations": 1, "contour_weight": 2.5},
    "SeparableDiceLoss": {"iterations": 1, "lam": 0.3},
    "CWCDLoss": {"iterations": 1, "lam": 0.3, "weight_ce": 0.5, "weight_dice": 2.0},
    "TopKDiceLoss": {"k": 37},
    "CETopKDiceLoss": {"k": 25, "weight_ce": 0.4, "weight_dice": 1.3},
    "FocalLoss": {"alpha": "per-mode"},
    "FocalDiceLoss": {"gamma": 1.0, "alpha": "per-mode"},
    "OffsetCurvesLoss": {"band": 1},
}


def build_many_class_cases():
    """Every loss with 7 and 16 classes (regions), 2D and 3D, softmax and sigmoid: the ignore label
    alone and the busiest variant of its family (mask, batch_dice, include_background where they
    apply); the contour losses also with given (random) maps."""
    cases = []
    for name, (_, family, _) in LOSSES.items():
        busiest = VARIANTS[family][-1]
        variants = [dict(ignore=True)] + ([busiest] if busiest != dict(ignore=True) else [])
        hp = MANY_CLASS_HP.get(name, {})
        for num_classes in MANY_CLASSES:
            for v in variants:
                for dim in (2, 3):
                    for mode in ("softmax", "sigmoid"):
                        maps_opts = [None]
                        if family.startswith("contour"):
                            maps_opts = ["fly", "given"] if v is variants[0] else ["fly"]
                        for maps in maps_opts:
                            vid = "-".join(v)
                            mid = f"-maps_{maps}" if maps else ""
                            cases.append(pytest.param(name, hp, v, dim, mode, maps, num_classes,
                                                      id=f"{name}-C{num_classes}-{vid}-{dim}d-{mode}{mid}"))
    return cases


@pytest.mark.parametrize("name,hp,variant,dim,mode,maps,num_classes", build_many_class_cases())
def test_many_classes_match_reference(name, hp, variant, dim, mode, maps, num_classes):
    """More than LABEL_SUMS_MIN_CLASSES (4) classes: SDL, CWCD and the top-K losses compute their sums with
    the target from per-voxel values at the label (softmax mode), a code path the 3-class cases never take."""
    got, expected = run_case(name, hp, variant, dim, mode, "blobs", maps, seed=num_classes + dim,
                             num_classes=num_classes)
    assert math.isfinite(expected) and expected >= 0
    assert_close(got, expected)


def assert_close(got, expected):
    """float64 results must match the float64 reference almost exactly; float32 ones to ~1e-6."""
    if got.dtype == torch.float64:
        np.testing.assert_allclose(got.item(), expected, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(got.item(), expected, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- target formats
@pytest.mark.parametrize("name", ["SoftDiceLoss", "DiceCELoss", "CWCDLoss", "TopKDiceLoss", "OffsetCurvesLoss"])
@pytest.mark.parametrize("fmt", ["no_channel_axis", "float32", "uint8"])
def test_softmax_target_formats(name, fmt):
    """(B, *spatial) targets and float / uint8 label dtypes give the same loss."""
    logits, target, _, _ = make_data(2, "softmax", "blobs", False, False, seed=3)
    expected = LOSSES[name][0](logits, target)
    t = {"no_channel_axis": target[:, 0], "float32": target.astype(np.float32),
         "uint8": target.astype(np.uint8)}[fmt]
    got = getattr(NL, name)()(torch.from_numpy(logits), torch.from_numpy(t))
    assert_close(got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_logits(dtype):
    """Logits of any float dtype: computed in float32, same value as the reference on the rounded logits."""
    logits, target, _, _ = make_data(3, "softmax", "blobs", False, False, seed=4)
    x = torch.from_numpy(logits).to(dtype)
    expected = R.dice_ce_loss(x.double().numpy(), target)
    got = NL.DiceCELoss()(x, torch.from_numpy(target))
    assert got.dtype == torch.float32  # any float dtype but float64 gives a float32 scalar
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- TopK count
@pytest.mark.parametrize("how", ["all_count", "mask", "ignore"])
@pytest.mark.parametrize("k,n", [(7, 100), (10, 30), (14, 50), (28, 25), (29, 100), (57, 100)])
def test_topk_keeps_exactly_ceil_k_percent(k, n, how):
    """top-K (docs/losses.md, section 3.5): ceil(k/100 * n_counted) voxels, computed exactly (k = 7,
    n_counted = 100 keeps 7, although 100 * (7 / 100.0) = 7.000000000000001 in floating point). With
    "mask" / "ignore", 13 extra voxels do not count, so n_counted is still n."""
    rng = np.random.default_rng(k * n)
    extra = 0 if how == "all_count" else 13
    logits = rng.normal(scale=2.0, size=(1, 2, 1, n + extra))
    target = rng.integers(0, 2, size=(1, 1, 1, n + extra))
    mask, ignore_index = None, None
    if how == "mask":
        mask = np.ones((1, 1, 1, n + extra))
        mask[..., n:] = 0
    elif how == "ignore":
        ignore_index = 2
        target[..., n:] = 2
    P = R.Prepared(logits, target, ignore_index=ignore_index, mask=mask)
    assert P.n_counted == n
    assert R.topk_keep_mask(P, k).sum() == math.ceil(k * n / 100)  # integers: exact
    expected = R.topk_dice_loss(logits, target, mask, k=k, ignore_index=ignore_index)
    got = NL.TopKDiceLoss(k=k, ignore_index=ignore_index)(
        torch.from_numpy(logits), torch.from_numpy(target), mask=None if mask is None else torch.from_numpy(mask))
    assert_close(got, expected)


# ----------------------------------------------------------------------------- GDL absent classes
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_gdl_absent_classes(mode, batch_dice):
    """GDL (docs/losses.md, section 3.6): a class without ground truth gets the largest finite weight of its row; a row
    without any ground truth gets weight 0 (sigmoid: sample 1 has empty regions)."""
    logits, target, _, _ = make_data(2, mode, "blobs", False, False, seed=9)
    if mode == "softmax":
        target[0][target[0] == 2] = 0  # sample 0: class 2 absent
        target[1][target[1] != 0] = 0  # sample 1: only background
        target[1, 0, 0, 0] = 1
    else:
        target[0, 1] = 0  # sample 0: region 1 empty
        target[1] = 0  # sample 1: every region empty -> all weights infinite -> 0
    for include_background in (True, False):
        expected = R.generalized_dice_loss(logits, target, batch_dice=batch_dice, sigmoid=mode == "sigmoid",
                                           include_background=include_background)
        got = NL.GeneralizedDiceLoss(batch_dice=batch_dice, sigmoid=mode == "sigmoid",
                                     include_background=include_background)(torch.from_numpy(logits),
                                                                            torch.from_numpy(target))
        assert_close(got, expected)


# ----------------------------------------------------------------------------- nothing counted
@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
@pytest.mark.parametrize("how", ["mask", "ignore"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_nothing_counted_gives_zero(name, how, mode):
    """A batch where nothing counts returns 0 with a gradient of zeros, never NaN (docs/losses.md,
    "Conventions shared by every loss")."""
    logits, target, _, _ = make_data(2, mode, "blobs", False, False, seed=5)
    B, C = logits.shape[:2]
    sigmoid = mode == "sigmoid"
    ignore_index = (C if not sigmoid else 2) if how == "ignore" else None
    mask = None
    if how == "ignore":
        target = np.full_like(target, ignore_index)
    else:
        mask = torch.zeros((B, 1) + logits.shape[2:], dtype=torch.float64)
    maps = {}
    if name == "DistanceWeightedCELoss":
        maps["weight_map"] = torch.ones((B, 1) + logits.shape[2:], dtype=torch.float64)
    x = torch.from_numpy(logits).requires_grad_(True)
    loss = getattr(NL, name)(sigmoid=sigmoid, ignore_index=ignore_index)
    value = loss(x, torch.from_numpy(target), mask=mask, **maps)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()
    # the reference agrees
    assert LOSSES[name][0](logits, target, None if mask is None else mask.numpy(), sigmoid=sigmoid,
                           ignore_index=ignore_index,
                           **({"weight_map": maps["weight_map"].numpy()} if maps else {})) == 0.0


# ----------------------------------------------------------------------------- the reference itself
def test_reference_ce_bce_match_torch():
    """The reference's CE / BCE agree with torch.nn.functional (independent code paths)."""
    logits, target, ii, _ = make_data(2, "softmax", "blobs", True, False, seed=6)
    ref = R.ce_loss(logits, target, ignore_index=ii)
    tor = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target[:, 0]), ignore_index=ii)
    np.testing.assert_allclose(ref, tor.item(), rtol=1e-12)
    logits, target, _, _ = make_data(3, "sigmoid", "blobs", False, False, seed=6)
    ref = R.ce_loss(logits, target, sigmoid=True)
    tor = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(target))
    np.testing.assert_allclose(ref, tor.item(), rtol=1e-12)


def test_reference_identities():
    """Relations between losses that the formulas of docs/losses.md imply."""
    for mode in ("softmax", "sigmoid"):
        s = mode == "sigmoid"
        x, t, ii, m = make_data(2, mode, "blobs", True, True, seed=7)
        kw = dict(sigmoid=s, ignore_index=ii)
        dice = R.soft_dice_loss(x, t, m, **kw)
        ce = R.ce_loss(x, t, m, **kw)
        # F_1 == Dice == Tversky(0.5, 0.5)
        np.testing.assert_allclose(R.asym_fbeta_loss(x, t, m, beta=1.0, **kw), dice, rtol=1e-12)
        np.testing.assert_allclose(R.tversky_loss(x, t, m, alpha=0.5, beta=0.5, smooth=0.0, **kw),
                                   R.soft_dice_loss(x, t, m, smooth=0.0, **kw), rtol=1e-12)
        # focal with gamma 0 is CE; CWCE with zero weight is CE; DWCE with W = 1 is CE
        np.testing.assert_allclose(R.focal_loss(x, t, m, gamma=0.0, **kw), ce, rtol=1e-12)
        np.testing.assert_allclose(R.cwce_loss(x, t, m, contour_weight=0.0, **kw), ce, rtol=1e-12)
        np.testing.assert_allclose(R.dwce_loss(x, t, m, weight_map=np.ones_like(x[:, :1]), **kw), ce, rtol=1e-12)
        # OsC without its extra terms is CE; DiceCE = CE + Dice; FocalDice(gamma 0) = DiceCE
        np.testing.assert_allclose(R.offset_curves_loss(x, t, m, lambda_band=0, lambda_length=0, **kw), ce,
                                   rtol=1e-12)
        np.testing.assert_allclose(R.dice_ce_loss(x, t, m, **kw), ce + dice, rtol=1e-12)
        np.testing.assert_allclose(R.focal_dice_loss(x, t, m, gamma=0.0, **kw), ce + dice, rtol=1e-12)
        # SDL with an empty contour map and lam=0 is the plain foreground Dice loss
        n_fg = x.shape[1] if s else x.shape[1] - 1
        empty = np.zeros((x.shape[0], n_fg) + x.shape[2:])
        np.testing.assert_allclose(R.sdl_loss(x, t, m, lam=0.0, contour=empty, **kw),
                                   R.soft_dice_loss(x, t, m, include_background=s, **kw), rtol=1e-12)
        # GDL with one class equals Dice on that class (weights cancel); checked on channel slices
        # CETopKDice = CE + TopKDice
        np.testing.assert_allclose(R.ce_topk_dice_loss(x, t, m, k=30, **kw),
                                   ce + R.topk_dice_loss(x, t, m, k=30, **kw), rtol=1e-12)


def test_reference_combo_beta_half_is_mean_channel_bce():
    """Combo with beta = 0.5: WCE = 0.5 * mean over voxels and channels of per-channel BCE(p_c, g_c)."""
    x, t, _, _ = make_data(2, "softmax", "random", False, False, seed=8)
    P = R.Prepared(x, t)
    p = torch.from_numpy(P.p)
    g = torch.from_numpy(P.g)
    bce = F.binary_cross_entropy(p, g)  # mean over B, C, voxels of -[g log p + (1 - g) log(1 - p)]
    combo_wce_only = R.combo_loss(x, t, alpha=1.0, beta=0.5)
    np.testing.assert_allclose(combo_wce_only, 0.5 * bce.item(), rtol=1e-10)


def test_reference_morphology():
    """The reference's contours on a hand-drawn example (erosion: the outside counts as foreground)."""
    img = np.zeros((6, 7), dtype=bool)
    img[1:5, 2:7] = True  # a 4x5 block touching the right edge
    c1 = R.inner_contour(img, 3, 1)
    expected = np.zeros_like(img)
    expected[1, 2:7] = expected[4, 2:7] = True
    expected[1:5, 2] = True  # no contour along the right edge of the image
    assert (c1 == expected).all()
    # two iterations: a 2-wide rim, still not along the image edge
    c2 = R.inner_contour(img, 3, 2)
    assert c2.sum() == img.sum()  # the block is only 4 rows high: everything is within 2 of a boundary
    band = R.offset_band(img, 1)
    exp_band = ndimage.binary_dilation(img, np.ones((3, 3))) & ~ndimage.binary_erosion(img, np.ones((3, 3)),
                                                                                      border_value=1)
    assert (band == exp_band).all() and band[0, 1:7].all() and not band[2, 4]
    # unknown (ignored) voxels act like the outside: the block's left side next to them is no contour
    unknown = np.zeros_like(img)
    unknown[:, 0:2] = True
    c3 = R.inner_contour(img, 3, 1, unknown)
    assert not c3[2:4, 2].any() and c3[1, 2:7].all() and c3[4, 2:7].all()

"""Tiny hand-worked examples, one or more per loss, with the expected value written as a literal.

Notation used in the comments (all values rounded in the text, exact in the literals):
  a   = sigmoid(1)  = e/(1+e)     = 0.7310585786   (so 1 - a = sigmoid(-1) = 0.2689414214)
  s2  = sigmoid(2)                = 0.8807970780
  l1  = -log(a)     = log(1+e^-1) = 0.3132616875
  lp  = -log(1-a)   = log(1+e)    = 1.3132616875
  l2  = -log(s2)    = log(1+e^-2) = 0.1269280110
  L2  = log(2)                    = 0.6931471806
  s   = smooth = 1e-5
With two classes and logits (0, z) the softmax gives p1 = sigmoid(z), p0 = 1 - p1.

Example A (softmax, logits 1x2x2x2): channel 0 = 0, channel 1 = [[1, 0], [-1, 0]], target [[1, 1], [0, 0]]
  p1 = [[a, .5], [1-a, .5]], p0 = [[1-a, .5], [a, .5]]
  CE per voxel: l1, L2, l1 (label 0, p0 = a), L2  -> CE = (l1 + L2)/2 = 0.5032044340
  class 1: tp = a + .5, sum p1 = 2, sum g1 = 2 -> Dice = (2a + 1 + s)/(4 + s) -> 1 - Dice = 0.3844697495
Example A' : as A with target [[1, 0], [0, 0]]
  class 1: tp = a, fp = .5 + (1-a) + .5 = 2 - a, fn = 1 - a
Example R (1x4 row, softmax logits (0, z) with z = [1, 0, -1, 2], target [0, 0, 1, 1])
  p1 = [a, .5, 1-a, s2]; CE per voxel = [lp, L2, lp, l2]
  cube 3x3 erosion, 1 iteration, outside = foreground: background {0,1} keeps voxel 0 -> contour {1};
  foreground {2,3} keeps voxel 3 -> contour {2}; boundary band = {1, 2}.
  With 6 iterations both classes erode away completely: band = all four voxels.
"""
import math

import pytest
import torch

import nnunet_losses as NL

REL = 2e-6


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def lab(x):
    return torch.tensor(x, dtype=torch.int64)


def check(value, expected):
    """Inputs here are float64: the library then computes in float64 (its documented choice, for
    gradcheck; float32 logits compute in float32), so the literal must match to ~1e-9; float32 to ~2e-6."""
    assert value.dtype in (torch.float32, torch.float64) and value.dim() == 0
    rel = 1e-9 if value.dtype == torch.float64 else REL
    assert value.item() == pytest.approx(expected, rel=rel, abs=1e-12)


def example_a():
    logits = t([[[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]]]])  # (1, 2, 2, 2)
    target = lab([[[[1, 1], [0, 0]]]])  # (1, 1, 2, 2)
    return logits, target


def example_a_prime():
    logits, _ = example_a()
    return logits, lab([[[[1, 0], [0, 0]]]])


def example_r():
    z = [1.0, 0.0, -1.0, 2.0]
    logits = t([[[[0.0] * 4], [z]]])  # (1, 2, 1, 4)
    target = lab([[[[0, 0, 1, 1]]]])  # (1, 1, 1, 4)
    return logits, target


def example_r_sigmoid():
    # one region, logits z: BCE and contours equal the two-class softmax example R
    return t([[[[1.0, 0.0, -1.0, 2.0]]]]), t([[[[0.0, 0.0, 1.0, 1.0]]]])


# ----------------------------------------------------------------------------- 3.1 Dice, DiceCE
def test_soft_dice_example_a():
    # 1 - (2a + 1 + s)/(4 + s) = 1 - 2.4621271573/4.00001
    check(NL.SoftDiceLoss()(*example_a()), 0.38446974951062374)


def test_soft_dice_example_a_with_background():
    # background: tp0 = a + .5 (voxels (1,0), (1,1)), sum p0 = 2, sum g0 = 2: same Dice as class 1
    check(NL.SoftDiceLoss(include_background=True)(*example_a()), 0.38446974951062374)


def test_soft_dice_batch_dice():
    # sample 1 = example A; sample 2: logits 0 (p1 = .5 everywhere), target all background
    # sample 2, class 1: tp = 0, sum p1 = 2, sum g1 = 0 -> Dice = s/(2 + s)
    # per sample: 1 - ((2a+1+s)/(4+s) + s/(2+s))/2 = 0.6922323748
    # batch:     tp = a + .5, sum p1 = 4, sum g1 = 2 -> 1 - (2a+1+s)/(6+s) = 0.5896461577
    la, ta = example_a()
    logits = torch.cat([la, torch.zeros_like(la)])
    target = torch.cat([ta, torch.zeros_like(ta)])
    check(NL.SoftDiceLoss()(logits, target), 0.6922323747678119)
    check(NL.SoftDiceLoss(batch_dice=True)(logits, target), 0.5896461577130688)


def test_dice_ce_example_a():
    # CE + Dice loss = 0.5032044340 + 0.3844697495
    check(NL.DiceCELoss()(*example_a()), 0.8876741835497078)


def test_dice_ce_example_a_weights():
    # 2 * CE + 0.5 * Dice loss = 1.0064088681 + 0.1922348748
    check(NL.DiceCELoss(weight_ce=2.0, weight_dice=0.5)(*example_a()),
          2 * 0.5032044340390841 + 0.5 * 0.38446974951062374)


def test_dice_ce_ignore_index():
    # example A with voxel (1,1) labelled 2 = ignore_index: it counts nowhere
    # CE = (l1 + L2 + l1)/3; class 1: tp = a + .5, sum p1 = a + .5 + (1-a) = 1.5, sum g1 = 2
    # -> (2 l1 + L2)/3 + 1 - (2a + 1 + s)/(3.5 + s) = 0.4398901852 + 0.2965371078
    logits, _ = example_a()
    target = lab([[[[1, 1], [0, 2]]]])
    check(NL.DiceCELoss(ignore_index=2)(logits, target), 0.7364272930184863)
    # the same through a loss mask
    mask = t([[[[1.0, 1.0], [1.0, 0.0]]]])
    check(NL.DiceCELoss()(logits, example_a()[1], mask=mask), 0.7364272930184863)


def test_dice_ce_sigmoid():
    # one region, logits [[1, 0]], target [[1, 0]]: p = [a, .5]
    # BCE = (l1 + L2)/2 = 0.5032044340; Dice = (2a + s)/(a + .5 + 1 + s) -> 1 - Dice = 0.3446516296
    logits = t([[[[1.0, 0.0]]]])
    target = t([[[[1.0, 0.0]]]])
    check(NL.DiceCELoss(sigmoid=True)(logits, target), 0.8478560636372051)


# ----------------------------------------------------------------------------- 3.2 Combo
def test_combo_softmax_two_classes():
    # two classes: at every voxel the channel of the true class gives -beta log p_y and the other
    # channel -(1 - beta) log(1 - p_other) = -(1 - beta) log p_y, so the sum over the 2 channels is
    # CE_i and the mean over voxels AND channels is CE/2, whatever beta.
    # Combo = .5 * CE/2 + .5 * Dice loss = .5 * 0.2516022170 + .5 * 0.3844697495 = 0.3180359833
    for beta in (0.5, 0.8, 0.1):
        check(NL.ComboLoss(beta=beta)(*example_a()), 0.31803598326508287)


def test_combo_sigmoid_beta():
    # one region, logits [[1, 0]], target [[1, 0]]; beta = 0.8
    # WCE = (0.8 * l1 + 0.2 * L2)/2 = (0.2506093500 + 0.1386294361)/2 = 0.1946193931
    # Dice loss = 1 - (2a + s)/(a + 1.5 + s) = 0.3446516296
    # Combo = .5 * 0.1946193931 + .5 * 0.3446516296 = 0.2696355113
    logits = t([[[[1.0, 0.0]]]])
    target = t([[[[1.0, 0.0]]]])
    check(NL.ComboLoss(beta=0.8, sigmoid=True)(logits, target), 0.2696355113307024)


# ----------------------------------------------------------------------------- 3.3 CWCE, SDL, CWCD
def test_cwce_example_r_one_iteration():
    # band {1, 2}: weights [1, 2, 2, 1]; (lp + 2 L2 + 2 lp + l2)/4 = 1.3632518587
    check(NL.ContourWeightedCELoss(iterations=1)(*example_r()), 1.3632518586793827)


def test_cwce_example_r_default_iterations():
    # 6 iterations: band = all four voxels, weights 2: 2 * (lp + L2 + lp + l2)/4 = 1.7232992833
    check(NL.ContourWeightedCELoss()(*example_r()), 1.7232992833196816)


def test_cwce_example_r_sigmoid():
    # one region: BCE of logit z equals the softmax CE of (0, z); region {2,3} and complement {0,1}
    # give the same band {1, 2}
    check(NL.ContourWeightedCELoss(iterations=1, sigmoid=True)(*example_r_sigmoid()), 1.3632518586793827)


def test_cwce_given_band():
    # band given as [0, 0, 0, 1], contour_weight 3: weights [1, 1, 1, 4]
    # (lp + L2 + lp + 4 l2)/4 = (1.3132616875 + 0.6931471806 + 1.3132616875 + 0.5077120442)/4
    logits, target = example_r()
    band = t([[[[0.0, 0.0, 0.0, 1.0]]]])
    expected = (1.3132616875182228 + 0.6931471805599453 + 1.3132616875182228 + 4 * 0.1269280110429726) / 4
    check(NL.ContourWeightedCELoss(contour_weight=3.0)(logits, target, band=band), expected)  # 0.9568456427


def test_sdl_example_r():
    # class 1 contour K = {2}
    # contour Dice: p1 K = [0,0,1-a,0], g1 K = [0,0,1,0]: (2(1-a) + s)/((1-a) + 1 + s) = 0.4237645  (1 - D = 0.5762355)
    # inner Dice: voxels {0,1,3}: tp = s2, sum p = a + .5 + s2, sum g = 1
    #   (2 s2 + s)/(a + .5 + s2 + 1 + s) = 0.5662158  (1 - D = 0.4337842)
    # SDL = .5 * 0.5762355 + .5 * 0.4337842 = 0.5050098666
    check(NL.SeparableDiceLoss(iterations=1)(*example_r()), 0.5050098666189744)
    check(NL.SeparableDiceLoss(iterations=1, sigmoid=True)(*example_r_sigmoid()), 0.5050098666189744)


def test_sdl_lam_one_given_contour():
    # contour given = {3}; lam = 1: only the contour Dice: tp = s2, sum p = s2, sum g = 1
    # 1 - (2 s2 + s)/(s2 + 1 + s) = 1 - 1.7615941560/1.8807970780 = 0.0633788...
    logits, target = example_r()
    contour = t([[[[0.0, 0.0, 0.0, 1.0]]]])
    s2 = 0.8807970779778823
    check(NL.SeparableDiceLoss(lam=1.0)(logits, target, contour=contour), 1 - (2 * s2 + 1e-5) / (s2 + 1 + 1e-5))


def test_cwcd_example_r():
    # CWCE (1 iteration) + SDL (1 iteration) = 1.3632518587 + 0.5050098666
    check(NL.CWCDLoss(iterations=1)(*example_r()), 1.868261725298357)


# ----------------------------------------------------------------------------- 3.4 F-beta, Tversky
def test_asymmetric_fbeta_example_a_prime():
    # tp = a, fp = 2 - a, fn = 1 - a, beta^2 = 2.25:
    # F = (3.25 a + s)/(3.25 a + 2.25 (1 - a) + (2 - a) + s) = (3.25 a + s)/(4.25 + s)  (a cancels below)
    # 1 - F = 1 - 2.3759403805/4.25001 = 0.4409541670
    check(NL.AsymmetricFbetaLoss()(*example_a_prime()), 0.4409541670378384)


def test_tversky_example_a_prime():
    # TI = (a + s)/(a + .3 (2 - a) + .7 (1 - a) + s) = (a + s)/(1.3 + s) -> 1 - TI = 0.4376438807
    check(NL.TverskyLoss()(*example_a_prime()), 0.43764388071629845)
    # alpha = .7 (false positives), beta = .3: (a + s)/(a + .7 (2 - a) + .3 (1 - a) + s) = (a + s)/(1.7 + s)
    check(NL.TverskyLoss(alpha=0.7, beta=0.3)(*example_a_prime()), 0.5699621892635898)


# ----------------------------------------------------------------------------- 3.5 TopK
def example_topk():
    # logits (0, z), z = [2, 0, -1, 1], target [1, 1, 0, 0]: p1 = [s2, .5, 1-a, a]
    # CE = [l2, L2, l1, lp] = [0.127, 0.693, 0.313, 1.313]: hardest first: voxel 3, 1, 2, 0
    return t([[[[0.0] * 4], [[2.0, 0.0, -1.0, 1.0]]]]), lab([[[[1, 1, 0, 0]]]])


def test_topk_dice_k50():
    # keep ceil(.5 * 4) = 2: voxels 3 (p1 = a, g = 0) and 1 (p1 = .5, g = 1)
    # Dice = (2 * .5 + s)/(1 + .25 + a^2 + s) = 1.00001/1.7844566 -> 1 - Dice = 0.4395997221
    check(NL.TopKDiceLoss(k=50)(*example_topk()), 0.4395997220866794)


def test_topk_dice_k25_and_k60():
    # k = 25: keep 1 voxel (3): Dice = s/(a^2 + s) -> 1 - Dice = 0.9999812894
    check(NL.TopKDiceLoss(k=25)(*example_topk()), 0.999981289408437)
    # k = 60: keep ceil(2.4) = 3 voxels (3, 1, 2): Dice = (1 + s)/(1.25 + a^2 + (1-a)^2 + s) = 0.5385704
    check(NL.TopKDiceLoss(k=60)(*example_topk()), 0.46142962727439774)


def test_topk_dice_sigmoid():
    # one region with logits z: BCE per voxel = the softmax CE above, same selection, same Dice
    logits = t([[[[2.0, 0.0, -1.0, 1.0]]]])
    target = t([[[[1.0, 1.0, 0.0, 0.0]]]])
    check(NL.TopKDiceLoss(k=50, sigmoid=True)(logits, target), 0.4395997220866794)


def test_ce_topk_dice_k50():
    # CE over all voxels (l2 + L2 + l1 + lp)/4 = 0.6117496416 + TopK Dice loss 0.4395997221
    check(NL.CETopKDiceLoss(k=50)(*example_topk()), 1.0512493637465203)


# ----------------------------------------------------------------------------- 3.6 GDL
def test_gdl_example_a_prime():
    # with background: sum g0 = 3 -> w0 = 1/9, sum g1 = 1 -> w1 = 1
    # tp0 = .5 + a + .5 = 1 + a, tp1 = a; sum p0 = sum p1 = 2
    # num = 2 ((1 + a)/9 + a) = 1.9465723081; den = (2 + 3)/9 + (2 + 1) = 3.5555555556
    # 1 - (num + s)/(den + s) = 0.4805870367
    check(NL.GeneralizedDiceLoss()(*example_a_prime()), 0.4805870367052062)


def test_gdl_absent_class_gets_largest_weight():
    # 3 classes, logits 0 -> p = 1/3 everywhere; 1x4 target [0, 0, 0, 1]; class 2 absent
    # w0 = 1/9, w1 = 1, w2 = largest finite weight = 1
    # tp = [1, 1/3, 0]; sum p_c = 4/3; sum g = [3, 1, 0]
    # num = 2 (1/9 + 1/3) = 8/9; den = (4/3 + 3)/9 + (4/3 + 1) + 4/3 = 112/27
    # 1 - (8/9 + s)/(112/27 + s) ~ 1 - 3/14 = 0.7857123916
    logits = torch.zeros((1, 3, 1, 4), dtype=torch.float64)
    target = lab([[[[0, 0, 0, 1]]]])
    check(NL.GeneralizedDiceLoss()(logits, target), 0.7857123915861989)


# ----------------------------------------------------------------------------- 3.7 Focal, FocalDice, DWCE
def test_focal_example_a():
    # -(1 - p_y)^2 log p_y: [(1-a)^2 l1, .25 L2, (1-a)^2 l1, .25 L2] -> mean = ((1-a)^2 l1 + .25 L2)/2
    # = (0.0226578 + 0.1732868)/2 = 0.0979724263
    check(NL.FocalLoss()(*example_a()), 0.09797242632422683)


def test_focal_alpha_example_a_prime():
    # alpha = [.25, .75]; labels [[1, 0], [0, 0]]:
    # .75 (1-a)^2 l1 + .25 * .25 L2 + .25 (1-a)^2 l1 + .25 * .25 L2 = (1-a)^2 l1 + .125 L2; / 4 = 0.0273253638
    check(NL.FocalLoss(alpha=[0.25, 0.75])(*example_a_prime()), 0.027325363769615123)


def test_focal_sigmoid_alpha():
    # one region, logits [[1, 0]], target [[1, 0]], alpha = .25 for positives, gamma 2
    # voxel 0: p_t = a, alpha_t = .25: .25 (1-a)^2 l1; voxel 1: p_t = .5, alpha_t = .75: .75 * .25 L2
    # mean = (0.0056645 + 0.1299651)/2 = 0.0678148054
    logits = t([[[[1.0, 0.0]]]])
    target = t([[[[1.0, 0.0]]]])
    check(NL.FocalLoss(alpha=0.25, sigmoid=True)(logits, target), 0.06781480536605328)


def test_focal_dice_example_a():
    # Focal 0.0979724263 + Dice loss 0.3844697495
    check(NL.FocalDiceLoss()(*example_a()), 0.48244217583485055)


def test_dwce_example_a():
    # W = [[1, 2], [3, 4]]: (1 l1 + 2 L2 + 3 l1 + 4 L2)/4 = (4 l1 + 6 L2)/4 = 1.3529824584
    w = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    check(NL.DistanceWeightedCELoss()(*example_a(), weight_map=w), 1.3529824583581407)


# ----------------------------------------------------------------------------- 3.8 Offset curves
def test_offset_curves_example_a():
    # band = 1 on a 2x2 image, g1 = top row: dilation covers everything, erosion removes everything
    # (each foreground voxel sees a background voxel): B_1 = all 4 voxels
    # band term: ((a-1)^2 + .25 + (1-a)^2 + .25)/(4 + s) = (2 (1-a)^2 + .5)/(4 + s) = 0.1611602
    # length term: interior = voxel (0,0): d_row = p1(1,0) - p1(0,0) = 1 - 2a, d_col = .5 - a
    #   sqrt((1-2a)^2 + (.5-a)^2 + 1e-8) = 0.5170785
    # OsC = CE + 1 * 0.1611602 + 0.01 * 0.5170785 = 0.5032044 + 0.1611602 + 0.0051708 = 0.6695354022
    check(NL.OffsetCurvesLoss(band=1)(*example_a()), 0.6695354021752745)
    # sigmoid, one region with logits z = [[1, 0], [-1, 0]]: the same p, g, CE and terms
    logits = t([[[[1.0, 0.0], [-1.0, 0.0]]]])
    target = t([[[[1.0, 1.0], [0.0, 0.0]]]])
    check(NL.OffsetCurvesLoss(band=1, sigmoid=True)(logits, target), 0.6695354021752745)


def test_offset_curves_band_width():
    # 2x5 image, both rows: logits (0, z), z = [-1, 0, 1, 0, 2], target [0, 0, 0, 1, 1]
    # p1 = [1-a, .5, a, .5, s2]; CE per row = [l1, L2, lp, L2, l2] -> CE = 0.6279491494
    # band = 1: dilation cols {2,3,4}, erosion cols {4} -> B = cols {2, 3} (2 rows, 4 voxels)
    #   band term = 2 (a^2 + (.5 - 1)^2)/(4 + s) = 0.3922223 -> OsC = 1.0201714916 (lambda_length = 0)
    # band = 2: dilation cols {1..4}, erosion empty -> B = cols {1..4} (8 voxels)
    #   band term = 2 (.25 + a^2 + .25 + (1 - s2)^2)/(8 + s) = 0.2621637 -> OsC = 0.8901128172
    row = [-1.0, 0.0, 1.0, 0.0, 2.0]
    logits = t([[[[0.0] * 5] * 2, [row, row]]])
    target = lab([[[[0, 0, 0, 1, 1]] * 2]])
    check(NL.OffsetCurvesLoss(band=1, lambda_length=0.0)(logits, target), 1.0201714915782678)
    check(NL.OffsetCurvesLoss(band=2, lambda_length=0.0)(logits, target), 0.8901128172370605)


def test_constants_in_comments():
    """The abbreviations of the module docstring (guards the comments against typos)."""
    a = 1 / (1 + math.exp(-1))
    assert a == pytest.approx(0.7310585786)
    assert -math.log(a) == pytest.approx(0.3132616875)
    assert -math.log(1 - a) == pytest.approx(1.3132616875)
    assert math.log(1 + math.exp(-2)) == pytest.approx(0.1269280110)

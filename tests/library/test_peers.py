"""Cross-checks with peer implementations: nnU-Net's own losses and MONAI's (test-only dependency)."""
import pytest
import torch

import nnunet_losses as nl
from loss_catalogue import make_inputs

monai_losses = pytest.importorskip("monai.losses")
nnunet_loss = pytest.importorskip("nnunetv2.training.loss.compound_losses")
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss  # noqa: E402

DIMS = [2, 3]


def _nnunet_dc_ce(batch_dice, ignore_label=None):
    return nnunet_loss.DC_and_CE_loss(
        {"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1, weight_dice=1,
        ignore_label=ignore_label, dice_class=MemoryEfficientSoftDiceLoss)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore", [None, 4])
def test_dice_ce_equals_nnunet_dc_and_ce(dim, batch_dice, ignore):
    logits, target = make_inputs(False, dim=dim, b=2, c=4, size=10, dtype=torch.float32, seed=1, ignore=ignore)
    ours = nl.DiceCELoss(batch_dice=batch_dice, ignore_index=ignore)(logits, target)
    theirs = _nnunet_dc_ce(batch_dice, ignore)(logits, target.float())
    # nnU-Net returns CE - Dice; we return CE + 1 - Dice
    assert ours.item() == pytest.approx(theirs.item() + 1.0, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("batch_dice", [False, True])
def test_sigmoid_dice_ce_equals_nnunet_dc_and_bce(dim, batch_dice):
    logits, target = make_inputs(True, dim=dim, b=2, c=3, size=10, dtype=torch.float32, seed=2)
    ours = nl.DiceCELoss(sigmoid=True, batch_dice=batch_dice)(logits, target)
    theirs = nnunet_loss.DC_and_BCE_loss(
        {}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
        dice_class=MemoryEfficientSoftDiceLoss)(logits, target)
    assert ours.item() == pytest.approx(theirs.item() + 1.0, rel=1e-5)


def test_sigmoid_ignore_matches_nnunet_dice_and_documented_bce_normalisation():
    """nnU-Net's region loss with an ignore channel divides the masked BCE sum by the number of counted
    voxels only (not voxels x channels); we take the mean over voxels and channels (docs/losses.md,
    "Choice (region BCE with an ignore channel)"). The Dice parts agree exactly and the BCE parts
    differ by exactly the factor C."""
    logits, target = make_inputs(True, dim=2, b=2, c=3, size=10, dtype=torch.float32, seed=3)
    ign = torch.zeros((2, 1, 10, 10))
    ign[:, :, :3] = 1
    theirs_dice = MemoryEfficientSoftDiceLoss(apply_nonlin=torch.sigmoid, batch_dice=False, do_bg=True, smooth=1e-5)(
        logits, target, loss_mask=(1 - ign).bool())
    ours_dice = nl.SoftDiceLoss(sigmoid=True)(logits, target, mask=1 - ign)
    assert ours_dice.item() == pytest.approx(theirs_dice.item() + 1.0, rel=1e-5)
    full = nnunet_loss.DC_and_BCE_loss({}, {"batch_dice": False, "do_bg": True, "smooth": 1e-5, "ddp": False},
                                       use_ignore_label=True, dice_class=MemoryEfficientSoftDiceLoss)
    theirs_total = full(logits, torch.cat([target, ign], 1))
    theirs_bce = theirs_total.item() - theirs_dice.item()
    ours_bce = nl.DiceCELoss(sigmoid=True, weight_dice=0)(logits, target, mask=1 - ign).item()
    assert ours_bce * 3 == pytest.approx(theirs_bce, rel=1e-5)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_equals_monai(dim, sigmoid, batch_dice, include_background):
    c = 3
    logits, target = make_inputs(sigmoid, dim=dim, b=2, c=c, size=9, seed=4)
    ours = nl.SoftDiceLoss(sigmoid=sigmoid, batch_dice=batch_dice, include_background=include_background)
    monai_kwargs = dict(sigmoid=sigmoid, softmax=not sigmoid, to_onehot_y=not sigmoid, batch=batch_dice,
                        include_background=include_background or sigmoid, smooth_nr=1e-5, smooth_dr=1e-5)
    theirs = monai_losses.DiceLoss(**monai_kwargs)
    assert ours(logits, target).item() == pytest.approx(theirs(logits, target).item(), rel=1e-9)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_generalized_dice_equals_monai(dim, sigmoid, batch_dice):
    logits, target = make_inputs(sigmoid, dim=dim, b=3, c=3, size=9, seed=5)
    if not sigmoid:
        target[1] = 0  # a sample without foreground: exercises the infinite-weight rule
    ours = nl.GeneralizedDiceLoss(sigmoid=sigmoid, batch_dice=batch_dice)
    theirs = monai_losses.GeneralizedDiceLoss(sigmoid=sigmoid, softmax=not sigmoid, to_onehot_y=not sigmoid,
                                              batch=batch_dice, smooth_nr=1e-5, smooth_dr=1e-5)
    assert ours(logits, target).item() == pytest.approx(theirs(logits, target).item(), rel=1e-9)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("alpha,beta", [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_tversky_equals_monai(dim, sigmoid, alpha, beta):
    logits, target = make_inputs(sigmoid, dim=dim, b=2, c=3, size=9, seed=6)
    ours = nl.TverskyLoss(alpha=alpha, beta=beta, sigmoid=sigmoid)
    theirs = monai_losses.TverskyLoss(alpha=alpha, beta=beta, sigmoid=sigmoid, softmax=not sigmoid,
                                      to_onehot_y=not sigmoid, include_background=sigmoid,
                                      smooth_nr=1e-5, smooth_dr=1e-5)
    assert ours(logits, target).item() == pytest.approx(theirs(logits, target).item(), rel=1e-9)


@pytest.mark.parametrize("dim", DIMS)
def test_fbeta_is_tversky_with_matching_weights(dim):
    """F_beta = Tversky with alpha = 1/(1+b^2), beta = b^2/(1+b^2) (numerator and denominator scaled by 1+b^2),
    up to the smoothing constant: compare with smooth=0."""
    logits, target = make_inputs(False, dim=dim, b=2, c=3, size=9, seed=7)
    b2 = 1.5 ** 2
    f = nl.AsymmetricFbetaLoss(beta=1.5, smooth=0)(logits, target)
    t = nl.TverskyLoss(alpha=1 / (1 + b2), beta=b2 / (1 + b2), smooth=0)(logits, target)
    assert f.item() == pytest.approx(t.item(), rel=1e-12)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_equals_monai(dim, gamma):
    c = 4
    logits, target = make_inputs(False, dim=dim, b=2, c=c, size=9, seed=8)
    ours = nl.FocalLoss(gamma=gamma)(logits, target)
    theirs = monai_losses.FocalLoss(gamma=gamma, use_softmax=True, to_onehot_y=True)(logits, target)
    # MONAI averages over voxels AND classes (zeros for the non-target classes); we average over voxels
    assert ours.item() == pytest.approx(theirs.item() * c, rel=1e-6)  # MONAI computes in float32


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (2.0, 0.25), (1.0, 0.8)])
def test_sigmoid_focal_equals_monai(dim, gamma, alpha):
    logits, target = make_inputs(True, dim=dim, b=2, c=3, size=9, seed=9)
    ours = nl.FocalLoss(gamma=gamma, alpha=alpha, sigmoid=True)(logits, target)
    theirs = monai_losses.FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)(logits, target)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)  # MONAI computes in float32


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = make_inputs(False, dim=2, b=2, c=3, size=9, seed=10)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert nl.FocalLoss(gamma=0).forward(logits, target).item() == pytest.approx(ce.item(), rel=1e-12)

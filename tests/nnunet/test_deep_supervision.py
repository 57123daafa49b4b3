"""Deep supervision and nnU-Net's target conventions: our wrapper against nnU-Net's own loss code.

* weights: nnunet_deep_supervision_weights == nnUNetTrainer._build_loss().weight_factors
  (real nnU-Net trainer on the tiny plans, with and without DDP);
* values: NnUNetLoss(DiceCELoss) == nnU-Net's DeepSupervisionWrapper(DC_and_CE_loss) + 1 (our Dice
  term is 1 - Dice, nnU-Net's -Dice), with the ignore label, batch Dice on and off, 2D and 3D; the
  same for region training with DC_and_BCE_loss and its ignore channel;
* per-scale maps and masks reach the loss of their scale.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("nnunetv2")
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss  # noqa: E402
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper  # noqa: E402
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss  # noqa: E402

from nnunet_losses import CWCDLoss, DiceCELoss, DistanceWeightedCELoss  # noqa: E402
from nnunet_losses.nnunet.training.deep_supervision import DeepSupervisionLoss, nnunet_deep_supervision_weights  # noqa: E402
from nnunet_losses.nnunet.training.trainer_base import NnUNetLoss, split_region_ignore  # noqa: E402


def _scales(shape, n):
    return [tuple(max(1, s // 2 ** i) for s in shape) for i in range(n)]


def _label_batch(gen, b, c, shape, n_scales, ignore=None):
    outs, tgts = [], []
    for sp in _scales(shape, n_scales):
        outs.append(torch.randn(b, c, *sp, generator=gen, requires_grad=True))
        t = torch.randint(0, c, (b, 1, *sp), generator=gen)
        if ignore is not None:
            t[torch.rand(t.shape, generator=gen) < 0.2] = ignore
        tgts.append(t)
    return outs, tgts


# ----------------------------------------------------------------------------- weights
@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_weights_formula(n):
    w = nnunet_deep_supervision_weights(n)
    assert w[-1] == 0 or n == 1
    assert sum(w) == pytest.approx(1.0)
    if n > 2:
        assert w[0] == pytest.approx(2 * w[1])
    wd = nnunet_deep_supervision_weights(n, is_ddp=True, compiled=False)
    if n > 1:
        assert 0 < wd[-1] < 1e-5


@pytest.mark.parametrize("key,config", [("labels3d", "3d_fullres"), ("labels3d", "2d"), ("regions2d", "2d")])
@pytest.mark.parametrize("ddp", [False, True])
def test_weights_equal_nnunet_trainer(nnunet_tiny, monkeypatch, tmp_path, key, config, ddp):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_losses_trainers import nnUNetTrainerCWCD

    nnunet_tiny.use(monkeypatch, str(tmp_path))
    got = {}
    for cls in (nnUNetTrainer, nnUNetTrainerCWCD):
        tr = nnunet_tiny.trainer(cls, key, config)
        tr.is_ddp = ddp  # only the weights and the loss arguments depend on it here
        got[cls.__name__] = tr._build_loss()
    ours = got["nnUNetTrainerCWCD"]
    theirs = got["nnUNetTrainer"]
    assert len(ours.weight_factors) == len(theirs.weight_factors) >= 3
    np.testing.assert_array_equal(np.array(ours.weight_factors), np.array(theirs.weight_factors, dtype=np.float64))
    assert ours.loss.ddp is ddp
    assert ours.loss.batch_dice is bool(tr.configuration_manager.batch_dice)


# ----------------------------------------------------------------------------- values vs nnU-Net
@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore", [None, 3])
def test_dice_ce_equals_nnunet(shape, batch_dice, ignore):
    gen = torch.Generator().manual_seed(0)
    c, n = 3, 3
    weights = nnunet_deep_supervision_weights(n)
    outs, tgts = _label_batch(gen, 2, c, shape, n, ignore)
    ours = NnUNetLoss(DiceCELoss(batch_dice=batch_dice, ignore_index=ignore), weights)(outs, tgts)
    ref_loss = DeepSupervisionWrapper(
        DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                       weight_dice=1, ignore_label=ignore, dice_class=MemoryEfficientSoftDiceLoss),
        np.array(weights))
    outs2 = [o.detach().clone().requires_grad_(True) for o in outs]
    theirs = ref_loss(outs2, [t.clone() for t in tgts])
    # ours: 1 - Dice per scale; nnU-Net: -Dice; the weights sum to 1
    torch.testing.assert_close(ours, theirs.float() + 1.0, rtol=1e-6, atol=1e-6)
    ours.backward()
    theirs.backward()
    for a, b in zip(outs, outs2):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def _region_batch(gen, b, r, shape, n_scales, ignore):
    outs, tgts = [], []
    for sp in _scales(shape, n_scales):
        outs.append(torch.randn(b, r, *sp, generator=gen, requires_grad=True))
        t = torch.rand(b, r, *sp, generator=gen) < 0.3
        if ignore:
            t = torch.cat([t, torch.rand(b, 1, *sp, generator=gen) < 0.2], 1)  # nnU-Net's ignore channel, last
        tgts.append(t)
    return outs, tgts


def _bce_dice_ref(batch_dice, ignore, weight_ce, weight_dice, weights):
    return DeepSupervisionWrapper(
        DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
                        weight_ce=weight_ce, weight_dice=weight_dice, use_ignore_label=ignore,
                        dice_class=MemoryEfficientSoftDiceLoss), np.array(weights))


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)])
@pytest.mark.parametrize("batch_dice", [False, True])
def test_regions_equal_nnunet(shape, batch_dice):
    gen = torch.Generator().manual_seed(1)
    weights = nnunet_deep_supervision_weights(3)
    outs, tgts = _region_batch(gen, 2, 2, shape, 3, ignore=False)
    ours = NnUNetLoss(DiceCELoss(sigmoid=True, batch_dice=batch_dice), weights)(outs, tgts)
    theirs = _bce_dice_ref(batch_dice, False, 1, 1, weights)([o.detach() for o in outs], tgts)
    torch.testing.assert_close(ours, theirs.float() + 1.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch_dice", [False, True])
def test_regions_ignore_channel_equals_nnunet(batch_dice):
    """With nnU-Net's ignore channel the Dice terms agree exactly. nnU-Net's masked BCE divides the
    sum over voxels AND channels by the number of counted voxels only (C times our mean over counted
    voxels and channels, docs/losses.md); without ignore label both are the plain mean."""
    gen = torch.Generator().manual_seed(2)
    r = 3
    weights = nnunet_deep_supervision_weights(3)
    outs, tgts = _region_batch(gen, 2, r, (16, 16), 3, ignore=True)
    det = [o.detach() for o in outs]
    dice_ours = NnUNetLoss(DiceCELoss(sigmoid=True, batch_dice=batch_dice, weight_ce=0), weights, True)(det, tgts)
    dice_theirs = _bce_dice_ref(batch_dice, True, 0, 1, weights)(det, tgts)
    torch.testing.assert_close(dice_ours, dice_theirs.float() + 1.0, rtol=1e-6, atol=1e-6)
    ce_ours = NnUNetLoss(DiceCELoss(sigmoid=True, batch_dice=batch_dice, weight_dice=0), weights, True)(det, tgts)
    ce_theirs = _bce_dice_ref(batch_dice, True, 1, 0, weights)(det, tgts)
    torch.testing.assert_close(ce_ours * r, ce_theirs.float(), rtol=1e-6, atol=1e-6)


def test_split_region_ignore_matches_nnunet_convention():
    t = torch.tensor([[[[1, 0]], [[0, 1]], [[0, 1]]]], dtype=torch.bool)  # (1, 3 = 2 regions + ignore, 1, 2)
    regions, mask = split_region_ignore(t)
    assert regions.shape == (1, 2, 1, 2)
    assert mask.tolist() == [[[[True, False]]]]
    regions_f, mask_f = split_region_ignore(t.float())
    assert mask_f.tolist() == mask.tolist()


# ----------------------------------------------------------------------------- maps per scale
def test_maps_and_masks_reach_their_scale():
    from nnunet_losses.morphology.torch_ops import boundary_band, class_contours

    gen = torch.Generator().manual_seed(3)
    weights = nnunet_deep_supervision_weights(3)
    outs, tgts = _label_batch(gen, 2, 3, (16, 16), 3)
    loss = CWCDLoss(iterations=1)
    masks = [(torch.rand(t.shape, generator=gen) > 0.1) for t in tgts]
    contours = [class_contours(t, 3, kernel_size=3, iterations=1, ignored=~m) for t, m in zip(tgts, masks)]
    bands = [boundary_band(t, 3, kernel_size=3, iterations=1, ignored=~m) for t, m in zip(tgts, masks)]
    got = DeepSupervisionLoss(loss, weights)(outs, tgts, mask=masks, contour=contours, band=bands)
    want = sum(w * loss(o, t, mask=m, contour=c, band=b)
               for w, o, t, m, c, b in zip(weights, outs, tgts, masks, contours, bands) if w != 0)
    torch.testing.assert_close(got, want)
    # maps given per scale equal the maps computed on the fly at each scale
    on_the_fly = DeepSupervisionLoss(loss, weights)(outs, tgts, mask=masks)
    torch.testing.assert_close(got, on_the_fly, rtol=1e-6, atol=1e-6)
    # swapping the scales' maps is caught (the shapes differ)
    with pytest.raises(ValueError):
        DeepSupervisionLoss(loss, weights)(outs, tgts, contour=contours[::-1])
    with pytest.raises(ValueError, match="one entry per output scale"):
        DeepSupervisionLoss(loss, weights)(outs, tgts, contour=contours[:2])


def test_zero_weight_scale_is_not_evaluated():
    calls = []

    def loss(o, t, **kw):
        calls.append(o.shape)
        return o.sum() * 0 + 1.0

    outs = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    out = DeepSupervisionLoss(loss, (0.75, 0.25, 0.0))(outs, outs)
    assert float(out) == pytest.approx(1.0)
    assert [tuple(s) for s in calls] == [(1, 2, 8, 8), (1, 2, 4, 4)]


def test_dwce_map_fn_uses_unet_weight_map_per_sample():
    from nnunet_losses.morphology.numpy_ops import unet_weight_map
    from nnunet_losses.nnunet.maps.online import UNetWeightMapFn

    gen = torch.Generator().manual_seed(4)
    weights = nnunet_deep_supervision_weights(3)
    outs, tgts = _label_batch(gen, 2, 3, (16, 16), 3, ignore=5)
    wrapper = NnUNetLoss(DistanceWeightedCELoss(ignore_index=5), weights, map_fn=UNetWeightMapFn(False, 5))
    got = wrapper(outs, tgts)
    wm = torch.from_numpy(np.stack([unet_weight_map(t[0].numpy(), ignore_label=5) for t in tgts[0]]))[:, None]
    maps = [wm] + [F.interpolate(wm, size=t.shape[2:], mode="bilinear", align_corners=False) for t in tgts[1:]]
    loss = DistanceWeightedCELoss(ignore_index=5)
    want = sum(w * loss(o, t, weight_map=m) for w, o, t, m in zip(weights, outs, tgts, maps) if w != 0)
    torch.testing.assert_close(got, want)

"""Every kind of bad input raises a ValueError whose message says what was wrong."""
import pytest
import torch

import nnunet_losses as nl
from loss_catalogue import NAMES, make, make_inputs, maps_for


def _inputs(sigmoid=False):
    return make_inputs(sigmoid, dim=2, b=2, c=3, size=6, dtype=torch.float32, seed=0)


@pytest.mark.parametrize("name", NAMES)
def test_logits_with_wrong_number_of_dimensions(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C, X, Y\)"):
        make(name)(logits[0], target[0], **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_target_with_wrong_spatial_shape(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match="target must hold integer labels with shape"):
        make(name)(logits, target[..., :-1], **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_sigmoid_target_with_wrong_channels(name):
    logits, target = _inputs(sigmoid=True)
    with pytest.raises(ValueError, match="sigmoid \\(region\\) mode: target must have the logits' shape"):
        make(name, sigmoid=True)(logits, target[:, :2], **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_label_equal_to_number_of_classes(name):
    logits, target = _inputs()
    target[0, 0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"target holds values \[3\] outside the allowed range: expected labels 0..2"):
        make(name)(logits, target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_negative_label_that_is_not_the_ignore_index(name):
    logits, target = _inputs()
    target[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match=r"values \[-1\] outside the allowed range.*or the ignore_index 255"):
        make(name, ignore_index=255)(logits, target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_negative_ignore_index_is_accepted(name):
    logits, target = _inputs()
    target[0, 0, 0, 0] = -1
    assert torch.isfinite(make(name, ignore_index=-1)(logits, target, **maps_for(name, logits)))


@pytest.mark.parametrize("name", NAMES)
def test_fractional_labels(name):
    logits, target = _inputs()
    target = target.float()
    target[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="whole-number labels"):
        make(name)(logits, target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_non_binary_region_target(name):
    logits, target = _inputs(sigmoid=True)
    target[0, 0, 0, 0] = 2
    with pytest.raises(ValueError, match="binary values 0/1 per region"):
        make(name, sigmoid=True)(logits, target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits(name, bad):
    logits, target = _inputs()
    logits[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match="logits contain 1 non-finite values"):
        make(name)(logits, target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_single_channel_softmax(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match="softmax mode needs at least 2 channels"):
        make(name)(logits[:, :1], torch.zeros_like(target), **maps_for(name, logits[:, :1]))


@pytest.mark.parametrize("name", NAMES)
def test_integer_logits(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match="logits must be a floating point tensor"):
        make(name)(logits.long(), target, **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_mask_with_wrong_shape(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match="mask must have shape"):
        make(name)(logits, target, mask=torch.ones(2, 2, 6, 6), **maps_for(name, logits))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_map_argument(name):
    logits, target = _inputs()
    with pytest.raises(ValueError, match="unknown map argument"):
        make(name)(logits, target, distance=torch.ones(2, 1, 6, 6), **maps_for(name, logits))


def test_missing_weight_map():
    logits, target = _inputs()
    with pytest.raises(ValueError, match="needs weight_map"):
        nl.DistanceWeightedCELoss()(logits, target)


@pytest.mark.parametrize("kw,msg", [
    ({"weight_map": torch.ones(2, 1, 5, 6)}, "weight_map must have shape"),
    ({"weight_map": torch.full((2, 1, 6, 6), float("nan"))}, "weight_map contains NaN"),
    ({"weight_map": -torch.ones(2, 1, 6, 6)}, "weight_map contains negative values"),
])
def test_bad_weight_map(kw, msg):
    logits, target = _inputs()
    with pytest.raises(ValueError, match=msg):
        nl.DistanceWeightedCELoss()(logits, target, **kw)


@pytest.mark.parametrize("cls,kw,msg", [
    (nl.CWCDLoss, {"contour": torch.zeros(2, 3, 6, 6)}, r"contour must have shape \(2, 2, 6, 6\)"),
    (nl.CWCDLoss, {"band": torch.zeros(2, 2, 6, 6)}, r"band must have shape \(2, 1, 6, 6\)"),
    (nl.SeparableDiceLoss, {"contour": torch.full((2, 2, 6, 6), 0.5)}, "contour must be binary"),
    (nl.ContourWeightedCELoss, {"band": torch.full((2, 1, 6, 6), 2.0)}, "band must be binary"),
    (nl.OffsetCurvesLoss, {"offset_band": torch.zeros(2, 3, 6, 6)}, "offset_band must have shape"),
])
def test_bad_precomputed_maps(cls, kw, msg):
    logits, target = _inputs()
    with pytest.raises(ValueError, match=msg):
        cls()(logits, target, **kw)


def test_focal_alpha_length_must_match_classes():
    logits, target = _inputs()
    with pytest.raises(ValueError, match="alpha has 2 class weights but the logits have C=3"):
        nl.FocalLoss(alpha=[0.5, 0.5])(logits, target)


BAD_HYPER = [
    (nl.SoftDiceLoss, {"smooth": -1}, "smooth must be in"),
    (nl.DiceCELoss, {"weight_ce": -0.1}, "weight_ce must be in"),
    (nl.DiceCELoss, {"weight_dice": float("nan")}, "weight_dice must be finite"),
    (nl.ComboLoss, {"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    (nl.ComboLoss, {"beta": -0.1}, r"beta must be in \[0, 1\]"),
    (nl.ContourWeightedCELoss, {"contour_weight": -1}, "contour_weight must be in"),
    (nl.ContourWeightedCELoss, {"kernel_size": 1}, "kernel_size must be in"),
    (nl.SeparableDiceLoss, {"lam": 2}, r"lam must be in \[0, 1\]"),
    (nl.CWCDLoss, {"contour_width": 0}, "contour_width must be in"),
    (nl.CWCDLoss, {"iterations": 2.5}, "contour_width must be a whole number"),  # the old name: the new one named
    (nl.CWCDLoss, {"kernel_size": (1, 1)}, "has no axis >= 2"),
    (nl.AsymmetricFbetaLoss, {"beta": 0}, r"beta must be in \(0, inf\)"),
    (nl.TverskyLoss, {"alpha": -1}, "alpha must be in"),
    (nl.TopKDiceLoss, {"k": 0}, r"k must be in \(0, 100\]"),
    (nl.CETopKDiceLoss, {"k": 101}, r"k must be in \(0, 100\]"),
    (nl.FocalLoss, {"gamma": -2}, "gamma must be in"),
    (nl.FocalLoss, {"alpha": 0.25}, "softmax mode: alpha must be None or one weight per class"),
    (nl.FocalLoss, {"alpha": 1.5, "sigmoid": True}, r"alpha must be in \[0, 1\]"),
    (nl.FocalDiceLoss, {"alpha": [1, -1, 1]}, r"alpha\[1\] must be in"),
    (nl.OffsetCurvesLoss, {"contour_width": 0}, "contour_width must be in"),
    (nl.OffsetCurvesLoss, {"lambda_length": -1}, "lambda_length must be in"),
    (nl.OffsetCurvesLoss, {"eps": 0}, "eps must be in"),
    (nl.SoftDiceLoss, {"ignore_index": "255"}, "ignore_index must be an integer"),
    (nl.TopKDiceLoss, {"k": "10"}, "k must be a number"),
]


@pytest.mark.parametrize("cls,kw,msg", BAD_HYPER, ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _ in BAD_HYPER])
def test_out_of_range_hyper_parameters(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


def test_input_checks_can_be_switched_off():
    logits, target = _inputs()
    target[0, 0, 0, 0] = 7
    nl.set_input_checks(False)
    try:
        with pytest.raises(Exception):  # torch's own error (scatter index out of range), not ours
            nl.SoftDiceLoss()(logits, target)
    finally:
        nl.set_input_checks(True)

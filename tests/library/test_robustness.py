"""Finite values and gradients in hard cases: extreme logits, autocast, empty / full / ignored patches."""
import pytest
import torch

from loss_catalogue import LOSSES, NAMES, make, make_inputs, maps_for


def _value_and_grad(loss, logits, target, **kw):
    x = logits.detach().clone().requires_grad_(True)
    v = loss(x, target, **kw)
    v.backward()
    return v, x.grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_are_finite(name, sigmoid, scale):
    logits, target = make_inputs(sigmoid, dim=2, b=2, c=3, size=8, dtype=torch.float32, seed=1)
    logits = torch.sign(logits) * scale  # saturated predictions, right and wrong ones
    loss = make(name, sigmoid=sigmoid)
    v, grad = _value_and_grad(loss, logits, target, **maps_for(name, logits))
    assert torch.isfinite(v) and v >= 0
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
def test_perfect_saturated_prediction_has_finite_gradient(name, sigmoid):
    logits, target = make_inputs(sigmoid, dim=2, b=2, c=3, size=8, dtype=torch.float32, seed=2)
    if sigmoid:
        logits = (target * 2 - 1) * 1e4
    else:
        logits = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float() * 1e4
    v, grad = _value_and_grad(make(name, sigmoid=sigmoid), logits, target, **maps_for(name, logits))
    assert torch.isfinite(v) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
def test_bfloat16_autocast_on_cpu(name, sigmoid):
    logits, target = make_inputs(sigmoid, dim=3, b=2, c=3, size=8, dtype=torch.float32, seed=3)
    loss = make(name, sigmoid=sigmoid)
    maps = maps_for(name, logits)
    ref = loss(logits, target, **maps)
    conv = torch.nn.Conv3d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1, 1))
        conv.bias.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(logits)  # bfloat16 activations, as a network under AMP produces
        assert out.dtype == torch.bfloat16
        v = loss(out, target, **maps)
    assert v.dtype == torch.float32
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(conv.weight.grad).all()
    assert v.item() == pytest.approx(ref.item(), rel=0.05, abs=0.02)  # only the bf16 rounding of the logits


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fill", [0, 2])
def test_all_background_and_all_foreground_patches(name, fill):
    logits, _ = make_inputs(False, dim=3, b=2, c=3, size=6, dtype=torch.float32, seed=4)
    target = torch.full((2, 1, *logits.shape[2:]), fill, dtype=torch.long)
    v, grad = _value_and_grad(make(name), logits, target, **maps_for(name, logits))
    assert torch.isfinite(v) and v >= 0 and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
def test_fully_ignored_batch_gives_zero_and_zero_gradient(name, sigmoid):
    logits, target = make_inputs(sigmoid, dim=2, b=2, c=3, size=6, dtype=torch.float32, seed=5)
    target = torch.full_like(target, 9)
    v, grad = _value_and_grad(make(name, sigmoid=sigmoid, ignore_index=9), logits, target, **maps_for(name, logits))
    assert v.item() == 0.0
    assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("name", NAMES)
def test_zero_mask_gives_zero_and_zero_gradient(name):
    logits, target = make_inputs(False, dim=2, b=2, c=3, size=6, dtype=torch.float32, seed=6)
    mask = torch.zeros((2, 1, 6, 6))
    v, grad = _value_and_grad(make(name), logits, target, mask=mask, **maps_for(name, logits))
    assert v.item() == 0.0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("name", NAMES)
def test_ignored_voxels_do_not_change_the_loss(name):
    """Whatever the logits at ignored voxels, the value and the other gradients stay the same."""
    logits, target = make_inputs(False, dim=2, b=2, c=3, size=8, dtype=torch.float64, seed=7, ignore=5)
    ign = target == 5
    loss = make(name, ignore_index=5)
    maps = maps_for(name, logits)
    other = torch.where(ign.expand_as(logits), torch.randn_like(logits) * 10, logits)
    v1, g1 = _value_and_grad(loss, logits, target, **maps)
    v2, g2 = _value_and_grad(loss, other, target, **maps)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-12)
    assert torch.count_nonzero(g1 * ign) == 0
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES[n][2]])
def test_empty_count_value_of_dice(name):
    """A class absent from target and prediction has Dice smooth/smooth = 1 (the soft-Dice formula, section 3.1)."""
    logits = torch.full((1, 3, 4, 4), -1e4)
    logits[:, 0] = 1e4  # predicts background everywhere
    target = torch.zeros((1, 1, 4, 4), dtype=torch.long)
    assert make(name)(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    # the same for a foreground class missing from a sample of a batch with batch_dice=False
    target2 = torch.zeros((2, 1, 4, 4), dtype=torch.long)
    target2[1, :, :2] = 1
    logits2 = torch.nn.functional.one_hot(target2[:, 0], 3).movedim(-1, 1).float() * 2e4 - 1e4
    assert make(name)(logits2, target2).item() == pytest.approx(0.0, abs=1e-6)


def test_log1m_softmax_is_exact_and_finite():
    from nnunet_losses._core import log1m_softmax

    x = torch.randn(4, 5, 7, dtype=torch.float64) * 3
    ref = torch.log1p(-torch.softmax(x, 1))
    torch.testing.assert_close(log1m_softmax(x), ref)
    x = torch.tensor([[1e4, 0.0, -1e4], [3.0, 3.0, -2.0]]).T.unsqueeze(0).contiguous()  # (B=1, C=3, 2 voxels)
    x.requires_grad_(True)
    out = log1m_softmax(x)
    assert torch.isfinite(out).all()
    assert out[0, 0, 0].item() == pytest.approx(-1e4, rel=1e-6)  # log(1 - p_max) = 0 - 1e4
    assert out[0, 1, 1].item() == pytest.approx(torch.log1p(-torch.softmax(torch.tensor([3.0, 3.0, -2.0]), 0))[1].item(), rel=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()

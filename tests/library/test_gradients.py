"""torch.autograd.gradcheck in float64 for every loss, 2D and 3D, softmax and sigmoid mode."""
import pytest
import torch

from loss_catalogue import NAMES, make, make_inputs, maps_for


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_gradcheck(name, sigmoid, dim):
    logits, target = make_inputs(sigmoid, dim=dim, b=2, c=3, size=6 if dim == 2 else 5, seed=dim)
    loss = make(name, sigmoid=sigmoid)
    maps = maps_for(name, logits)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target, **maps), (logits,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_with_ignore_and_batch_dice(name):
    logits, target = make_inputs(False, dim=2, b=2, c=3, size=6, seed=5, ignore=7)
    kwargs = {"ignore_index": 7}
    if "batch_dice" in make(name).__dict__ or hasattr(make(name), "batch_dice"):
        kwargs["batch_dice"] = True
    loss = make(name, **kwargs)
    maps = maps_for(name, logits)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target, **maps), (logits,), eps=1e-6, atol=1e-5)

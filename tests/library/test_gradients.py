"""torch.autograd.gradcheck in float64 for every loss, 2D and 3D, softmax and sigmoid mode."""
import pytest
import torch

from loss_catalogue import NAMES, make, make_inputs, many_class_inputs, maps_for


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



#: the losses whose softmax mode switches to label-sum code paths above LABEL_SUMS_MIN_CLASSES (4) classes
LABEL_SUM_LOSSES = ["CETopKDiceLoss", "CWCDLoss", "SeparableDiceLoss", "TopKDiceLoss"]


def _with_batch_dice(name, **kwargs):
    """``kwargs`` plus batch_dice=True for the losses that have a batch Dice."""
    return {**kwargs, **({"batch_dice": True} if hasattr(make(name), "batch_dice") else {})}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("c", [7, 16])
def test_gradcheck_many_classes(name, sigmoid, dim, c):
    """7 and 16 classes (regions), ignore label (value 255) and batch Dice, where SDL, CWCD and the top-K
    losses take their label-sum paths (softmax mode). torch's fast gradcheck (random projections of the
    Jacobian, seeded): a full check of 500-1000 inputs per case would cost minutes; the full check of
    the label-sum paths on fewer inputs follows."""
    logits, target = many_class_inputs(sigmoid, dim, c, b=2, size=8 if dim == 2 else 6, seed=c + dim, ignore=255)
    loss = make(name, **_with_batch_dice(name, sigmoid=sigmoid, ignore_index=255))
    maps = maps_for(name, logits)
    logits.requires_grad_(True)
    torch.manual_seed(c + dim)
    # one projection of the Jacobian: a wrong term is diluted over all inputs, hence tight tolerances
    assert torch.autograd.gradcheck(lambda x: loss(x, target, **maps), (logits,), eps=1e-6, atol=1e-9,
                                    rtol=1e-6, fast_mode=True)


@pytest.mark.parametrize("name", LABEL_SUM_LOSSES)
@pytest.mark.parametrize("dim,c,batch_dice", [(2, 7, True), (2, 16, False), (3, 7, False)])
def test_gradcheck_label_sum_paths(name, dim, c, batch_dice):
    """The full gradcheck (every input) of the label-sum paths: one sample, softmax mode, ignore label."""
    logits, target = many_class_inputs(False, dim, c, b=1, size=6 if dim == 2 else 5, seed=c + 2 * dim, ignore=255)
    loss = make(name, ignore_index=255, batch_dice=batch_dice)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", LABEL_SUM_LOSSES)
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("c", [7, 16])
@pytest.mark.parametrize("options", [{}, {"batch_dice": True, "include_background": True}])
def test_label_sum_paths_equal_one_hot_paths(monkeypatch, name, dim, c, options):
    """Above four classes (softmax mode) SDL / CWCD and the top-K losses form their sums from per-voxel
    values at the label; the one-hot products they replace (taken below five classes, gradchecked with
    three) must give the same value and the same gradient. The test also asserts that the label-sum
    path ran, so that it keeps covering it if the threshold moves."""
    import nnunet_losses.contour as contour
    import nnunet_losses.topk as topk

    if name in ("SeparableDiceLoss", "CWCDLoss"):
        options = {k: v for k, v in options.items() if k != "include_background"}  # SDL has none
    logits, target = many_class_inputs(False, dim, c, b=2, size=8 if dim == 2 else 6, seed=3 * c + dim, ignore=255)
    mask = (torch.rand((2, 1, *logits.shape[2:]), generator=torch.Generator().manual_seed(c)) < 0.9).double()
    loss = make(name, ignore_index=255, **options)
    calls = []
    for cls, method in ((contour.SeparableDiceLoss, "_sums_labels"), (topk.TopKDiceLoss, "_label_sums")):
        original = getattr(cls, method)
        if isinstance(cls.__dict__[method], staticmethod):
            monkeypatch.setattr(cls, method, staticmethod(lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)))
        else:
            monkeypatch.setattr(cls, method, lambda self, *a, _f=original, **k: calls.append(1) or _f(self, *a, **k))

    def value_and_grad():
        x = logits.clone().requires_grad_(True)
        v = loss(x, target, mask=mask)
        v.backward()
        return v.detach(), x.grad

    v_labels, g_labels = value_and_grad()
    assert calls, f"{name} with C={c} did not take its label-sum path"
    calls.clear()
    monkeypatch.setattr(contour, "LABEL_SUMS_MIN_CLASSES", 10 ** 9)
    monkeypatch.setattr(topk, "LABEL_SUMS_MIN_CLASSES", 10 ** 9)
    v_one_hot, g_one_hot = value_and_grad()
    assert not calls
    torch.testing.assert_close(v_labels, v_one_hot, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_labels, g_one_hot, rtol=1e-10, atol=1e-14)

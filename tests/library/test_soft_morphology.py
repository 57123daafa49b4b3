"""Soft (grey-value) erosion, dilation and skeleton of the clDice loss: the CPU stencil path and the pooling
path (GPU, torch.compile) against SciPy's grey morphology, against each other, and their gradients."""
import contextlib
from unittest import mock

import numpy as np
import pytest
import torch
from scipy import ndimage

from nnunet_losses.morphology import torch_ops as mo

CROSS = {2: ndimage.generate_binary_structure(2, 1), 3: ndimage.generate_binary_structure(3, 1)}


def _pooling_path():
    """The implementation used on GPUs and inside torch.compile, forced on the CPU."""
    return mock.patch.object(mo, "_stencil_path", lambda x: False)


def _inputs(dim, seed, ties=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, 9, 8) if dim == 2 else (2, 2, 7, 6, 5)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    if ties:  # a few grey levels, a saturated block and a zero block: many equal neighbours
        x = (x * 3).round() / 3
        x[..., :3, :3] = 1.0
        x[..., -2:, -3:] = 0.0
    return x.to(dtype)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_soft_erode_and_dilate_match_scipy_grey_morphology(dim, ties):
    x = _inputs(dim, seed=dim, ties=ties, dtype=torch.float64)
    box = np.ones((3,) * dim, bool)
    ref_e = np.stack([[ndimage.grey_erosion(c, footprint=CROSS[dim], mode="constant", cval=np.inf) for c in s]
                      for s in x.numpy()])
    ref_d = np.stack([[ndimage.grey_dilation(c, footprint=box, mode="constant", cval=-np.inf) for c in s]
                      for s in x.numpy()])
    for path in (contextlib.nullcontext(), _pooling_path()):  # stencil (default on CPU), then pooling
        with path:
            np.testing.assert_array_equal(mo.soft_erode(x).numpy(), ref_e)
            np.testing.assert_array_equal(mo.soft_dilate(x).numpy(), ref_d)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_stencil_and_pooling_skeletons_are_equal(dim, ties):
    x = _inputs(dim, seed=10 + dim, ties=ties).requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    stencil = mo.soft_skeleton(x, 3)
    (g_stencil,) = torch.autograd.grad((stencil * w).sum(), x)
    with _pooling_path():
        pooled = mo.soft_skeleton(x, 3)
        (g_pooled,) = torch.autograd.grad((pooled * w).sum(), x)
    torch.testing.assert_close(stencil, pooled, rtol=0, atol=0)
    if not ties:  # one extremum per window: the gradients are the same function
        torch.testing.assert_close(g_stencil, g_pooled, rtol=1e-5, atol=1e-6)
    else:  # ties: each path picks one of the tied inputs; the total gradient is the same
        torch.testing.assert_close(g_stencil.sum(), g_pooled.sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", [mo.soft_erode, mo.soft_dilate])
@pytest.mark.parametrize("dim", [2, 3])
def test_each_output_gradient_goes_to_one_input_holding_the_extremum(op, dim):
    """Ties everywhere: the gradient of each output arrives whole at one input equal to that output."""
    x = _inputs(dim, seed=20 + dim, ties=True, dtype=torch.float64)
    out = op(x)
    nd = x.ndim - 2
    for flat in (0, 7, 29, out[0, 0].numel() - 1):
        idx = np.unravel_index(flat, out.shape[2:])
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(op(xi)[(0, 0) + idx], xi)
        hit = g.nonzero()
        assert g.sum().item() == 1.0 and len(hit) == 1, "the gradient is split or lost"
        src = tuple(int(v) for v in hit[0])
        assert src[:2] == (0, 0) and max(abs(a - b) for a, b in zip(src[2:], idx)) <= 1
        assert x[src].item() == out[(0, 0) + idx].item(), "the gradient went to an input that is not the extremum"
        if op is mo.soft_erode:  # the cross: at most one axis differs
            assert sum(a != b for a, b in zip(src[2:], idx)) <= 1
    assert nd in (2, 3)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("pooling", [False, True])
def test_soft_skeleton_gradcheck(dim, pooling):
    x = _inputs(dim, seed=30 + dim, dtype=torch.float64)[:1].requires_grad_(True)
    with _pooling_path() if pooling else contextlib.nullcontext():
        assert torch.autograd.gradcheck(lambda t: mo.soft_skeleton(t, 2), (x,))


def test_soft_morphology_rejects_other_ranks():
    for op in (mo.soft_erode, mo.soft_dilate, mo.soft_skeleton):
        with pytest.raises(ValueError, match=r"\(N, C, X, Y\) or \(N, C, X, Y, Z\)"):
            op(torch.rand(2, 3, 4))


def test_stencil_path_is_cpu_eager_only():
    assert mo._stencil_path(torch.zeros(1))
    meta = torch.zeros(1, device="meta")
    assert not mo._stencil_path(meta)

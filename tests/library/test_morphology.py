"""Torch max-pool morphology against SciPy (the independent computation)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from nnunet_losses.morphology import torch_ops as mo


def _random_mask(shape, seed, p=0.6):
    rng = np.random.default_rng(seed)
    m = rng.random(shape) < p
    return ndimage.binary_opening(m) | (rng.random(shape) < 0.05)


@pytest.mark.parametrize("shape", [(17, 13), (9, 8, 7)])
@pytest.mark.parametrize("kernel_size", [2, 3, 5])
@pytest.mark.parametrize("iterations", [1, 2, 6])
def test_erode_and_dilate_match_scipy(shape, kernel_size, iterations):
    m = _random_mask(shape, seed=kernel_size * 10 + iterations)
    st = np.ones((kernel_size,) * len(shape), bool)
    ref_e = ndimage.binary_erosion(m, st, iterations=iterations, border_value=1)
    ref_d = ndimage.binary_dilation(m, st, iterations=iterations, border_value=0)
    t = torch.from_numpy(m)[None, None]
    np.testing.assert_array_equal(mo.erode(t, kernel_size, iterations)[0, 0].numpy(), ref_e)
    np.testing.assert_array_equal(mo.dilate(t, kernel_size, iterations)[0, 0].numpy(), ref_d)


def test_box_element_per_axis_matches_scipy():
    m = _random_mask((8, 12, 11), seed=1)
    st = np.ones((1, 3, 3), bool)
    ref = ndimage.binary_erosion(m, st, iterations=2, border_value=1)
    out = mo.erode(torch.from_numpy(m)[None, None], (1, 3, 3), 2)[0, 0].numpy()
    np.testing.assert_array_equal(out, ref)


def test_image_edge_is_never_a_contour():
    m = torch.ones((1, 1, 6, 6), dtype=torch.bool)
    assert not mo.inner_contour(m, 3, 2).any()


def test_class_contours_and_band_match_scipy_definition():
    rng = np.random.default_rng(4)
    lab = np.zeros((2, 16, 15), np.int64)
    lab[:, 3:10, 2:9] = 1
    lab[:, 8:14, 7:13] = 2
    lab[1] = np.where(rng.random((16, 15)) < 0.02, 2, lab[1])
    t = torch.from_numpy(lab)[:, None]
    k, it = 3, 2
    st = np.ones((3, 3), bool)
    contours = mo.class_contours(t, 3, kernel_size=k, iterations=it).numpy()
    band = mo.boundary_band(t, 3, kernel_size=k, iterations=it).numpy()
    for b in range(2):
        per_class = [(lab[b] == c) & ~ndimage.binary_erosion(lab[b] == c, st, it, border_value=1) for c in range(3)]
        for c in (1, 2):
            np.testing.assert_array_equal(contours[b, c - 1], per_class[c])
        np.testing.assert_array_equal(band[b, 0], np.any(per_class, 0))


def test_sigmoid_band_includes_complement_contours():
    g = np.zeros((1, 2, 12, 12), np.float32)
    g[0, 0, 2:8, 2:8] = 1
    g[0, 1, 4:11, 5:11] = 1  # overlapping regions
    st = np.ones((3, 3), bool)
    band = mo.boundary_band(torch.from_numpy(g), sigmoid=True, kernel_size=3, iterations=1)[0, 0].numpy()
    parts = []
    for c in range(2):
        for m in (g[0, c] > 0, g[0, c] == 0):
            parts.append(m & ~ndimage.binary_erosion(m, st, 1, border_value=1))
    np.testing.assert_array_equal(band, np.any(parts, 0))


def test_ignored_voxels_behave_like_the_outside():
    lab = torch.zeros((1, 1, 10, 10), dtype=torch.long)
    lab[..., 3:7, 3:7] = 1
    ignored = torch.zeros_like(lab, dtype=torch.bool)
    ignored[..., :, 6:] = True  # the right part of the object touches unlabelled voxels
    c = mo.class_contours(lab, 2, kernel_size=3, iterations=1, ignored=ignored)[0, 0]
    # the object's rim next to ignored voxels is no contour; the left, top and bottom rims are
    assert not c[4:6, 5].any()
    assert c[3, 3] and c[4, 3] and c[6, 4]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("band", [1, 3])
def test_offset_band_matches_scipy(dim, band):
    shape = (14, 13) if dim == 2 else (9, 10, 8)
    lab = (_random_mask(shape, seed=band + dim, p=0.5)).astype(np.int64)
    st = np.ones((3,) * dim, bool)
    ref = (ndimage.binary_dilation(lab == 1, st, band, border_value=0)
           & ~ndimage.binary_erosion(lab == 1, st, band, border_value=1))
    out = mo.offset_band(torch.from_numpy(lab)[None, None], 2, band=band)[0, 0].numpy()
    np.testing.assert_array_equal(out, ref)


def test_anisotropic_kernel():
    assert mo.anisotropic_kernel([1, 1, 1.5]) == 3
    assert mo.anisotropic_kernel([5.0, 0.8, 0.8]) == (1, 3, 3)
    assert mo.anisotropic_kernel([4.0, 1.0, 1.0], kernel_size=5) == (2, 5, 5)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("num_classes,band", [(2, 1), (3, 3), (5, 2), (31, 1), (40, 2), (70, 1)])
@pytest.mark.parametrize("with_ignore", [False, True])
def test_offset_band_bits_equals_offset_band(dim, num_classes, band, with_ignore):
    """The one-pass bit-set band (int32 up to 31 classes, int64 up to 63, fallback above) is the
    per-class definition, with ignored voxels."""
    g = torch.Generator().manual_seed(num_classes * 10 + band + dim)
    shape = (2, 1) + ((13, 12) if dim == 2 else (7, 8, 6))
    # blocky labels so that bands are not everywhere
    small = torch.randint(0, num_classes, (2, 1) + tuple((s + 2) // 3 for s in shape[2:]), generator=g)
    lab = small.repeat_interleave(3, 2).repeat_interleave(3, 3)
    if dim == 3:
        lab = lab.repeat_interleave(3, 4)
    lab = lab[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape[2:])]
    ignored = (torch.rand(shape, generator=g) < 0.1) if with_ignore else None
    ref = mo.offset_band(lab, num_classes, False, band, ignored)
    out = mo.offset_band_bits(lab, num_classes, band, ignored)
    assert out.dtype == torch.bool and out.shape == ref.shape
    assert torch.equal(out, ref)
    assert ref.any()

"""NumPy map functions (nnunet_losses.morphology.numpy_ops) against SciPy and against the torch morphology."""
import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from nnunet_losses.morphology import numpy_ops as maps

torch = pytest.importorskip("torch")
from nnunet_losses.morphology import torch_ops as morphology  # noqa: E402


def blobs(shape, num_classes, seed, ignore_label=None, sigma=1.5):
    """Random label image with blob-shaped classes (plus an ignored region if asked)."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((num_classes, *shape)), sigma)
    lab = f.argmax(0).astype(np.int16)
    if ignore_label is not None:
        ign = ndimage.gaussian_filter(rng.standard_normal(shape), sigma * 2) > 0.6
        lab[ign] = ignore_label
    return lab


# ----------------------------------------------------------------------------- SciPy references
def ref_inner_contour(m, ignored, kernel, iterations):
    structure = np.ones(kernel, bool)
    er = ndimage.binary_erosion(m | ignored, structure, iterations=iterations, border_value=1) \
        if iterations else (m | ignored)
    return m & ~ignored & ~er


def ref_dilate(m, ignored, kernel, iterations):
    return ndimage.binary_dilation(m & ~ignored, np.ones(kernel, bool), iterations=iterations, border_value=0)


CASES = [((23, 19), 3, (3, 3), 6), ((23, 19), 2, (2, 2), 1), ((23, 19), 4, (3, 3), 2),
         ((11, 13, 9), 3, (3, 3, 3), 2), ((11, 13, 9), 3, (2, 2, 2), 1), ((11, 13, 9), 2, (1, 3, 3), 3),
         ((11, 13, 9), 3, (3, 1, 2), 2), ((7, 6, 5, 4), 2, (3, 3, 3, 3), 1)]


@pytest.mark.parametrize("shape,num_classes,kernel,iterations", CASES)
@pytest.mark.parametrize("ignore", [False, True])
def test_contours_match_scipy_binary_erosion(shape, num_classes, kernel, iterations, ignore):
    ign_label = num_classes if ignore else None
    lab = blobs(shape, num_classes, seed=len(shape) * 10 + iterations, ignore_label=ign_label)
    ignored = lab == num_classes if ignore else np.zeros(shape, bool)
    k = kernel[0] if len(set(kernel)) == 1 else kernel
    cc = maps.class_contours(lab, num_classes, kernel_size=k, iterations=iterations, ignore_label=ign_label)
    band = maps.boundary_band(lab, num_classes, kernel_size=k, iterations=iterations, ignore_label=ign_label)
    assert cc.shape == (num_classes - 1, *shape) and cc.dtype == bool and band.shape == shape
    refs = [ref_inner_contour(lab == c, ignored, kernel, iterations) for c in range(num_classes)]
    for c in range(1, num_classes):
        np.testing.assert_array_equal(cc[c - 1], refs[c])
    np.testing.assert_array_equal(band, np.any(refs, 0))
    assert band.any() and (iterations > 2 or not band.all())
    # the contour is a proper subset of the class, never on the array edge unless the class touches it
    ob = maps.offset_band(lab, num_classes, band=2, kernel_size=k, ignore_label=ign_label)
    for c in range(1, num_classes):
        m = lab == c
        er = ndimage.binary_erosion(m | ignored, np.ones(kernel, bool), iterations=2, border_value=1)
        np.testing.assert_array_equal(ob[c - 1], ref_dilate(m, ignored, kernel, 2) & ~er)


def test_edge_is_never_a_contour_and_regions():
    lab = np.zeros((9, 9), np.int16)
    lab[:, :4] = 1                              # touches three array edges
    cc = maps.class_contours(lab, 2, iterations=1)[0]
    assert cc[:, 3].all() and cc[:, :3].sum() == 0   # only the inner side of the real boundary
    band = maps.boundary_band(lab, 2, iterations=1)
    np.testing.assert_array_equal(np.where(band.any(0))[0], [3, 4])
    # regions: (1, 2) overlaps 2; region contours equal the binary inner contours of the region masks
    lab = blobs((15, 17), 3, seed=3)
    regions = [(1, 2), (2,)]
    rc = maps.class_contours(lab, regions=regions, iterations=2)
    rb = maps.boundary_band(lab, regions=regions, iterations=2)
    none = np.zeros(lab.shape, bool)
    exp = [ref_inner_contour(np.isin(lab, r), none, (3, 3), 2) for r in regions]
    np.testing.assert_array_equal(rc, exp)
    exp_b = exp + [ref_inner_contour(~np.isin(lab, r), none, (3, 3), 2) for r in regions]
    np.testing.assert_array_equal(rb, np.any(exp_b, 0))


def test_anisotropic_kernel_same_rule_as_torch():
    for sp, k in itertools.product([(1, 1, 1), (3, 1, 1), (5, 0.8, 0.8), (1.5, 1, 0.3), (1, 2)], [2, 3, 5]):
        assert maps.anisotropic_kernel(sp, k) == morphology.anisotropic_kernel(sp, k)
    assert maps.anisotropic_kernel((5, 1, 1), 3) == (1, 3, 3)
    lab = blobs((8, 12, 12), 2, seed=4)
    np.testing.assert_array_equal(maps.class_contours(lab, 2, spacing=(5, 1, 1), iterations=2),
                                  maps.class_contours(lab, 2, kernel_size=(1, 3, 3), iterations=2))
    with pytest.raises(ValueError, match="spacing"):
        maps.class_contours(lab, 2, spacing=(1, 1))


# ----------------------------------------------------------------------------- torch agreement
TORCH_CASES = [((40, 37), 3, 3, 6), ((40, 37), 2, 2, 1), ((40, 37), 4, (3, 2), 3),
               ((14, 17, 15), 3, 3, 6), ((14, 17, 15), 3, 2, 1), ((14, 17, 15), 2, (1, 3, 3), 2)]


@pytest.mark.parametrize("shape,num_classes,kernel,iterations", TORCH_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_torch_agree_exactly(shape, num_classes, kernel, iterations, seed):
    ign_label = num_classes if seed == 1 else None
    lab = blobs(shape, num_classes, seed=seed + 100, ignore_label=ign_label, sigma=1.0)
    t = torch.from_numpy(lab.astype(np.int64))[None, None]
    ign_t = None if ign_label is None else (t == ign_label)
    kw = dict(kernel_size=kernel, iterations=iterations)
    np.testing.assert_array_equal(
        maps.class_contours(lab, num_classes, ignore_label=ign_label, **kw),
        morphology.class_contours(t, num_classes, False, ignored=ign_t, **kw)[0].numpy())
    np.testing.assert_array_equal(
        maps.boundary_band(lab, num_classes, ignore_label=ign_label, **kw),
        morphology.boundary_band(t, num_classes, False, ignored=ign_t, **kw)[0, 0].numpy())
    np.testing.assert_array_equal(
        maps.offset_band(lab, num_classes, band=iterations, ignore_label=ign_label),
        morphology.offset_band(t, num_classes, False, band=iterations, ignored=ign_t)[0].numpy())
    # sigmoid mode: overlapping regions as binary channels
    regions = [tuple(range(1, num_classes)), (num_classes - 1,)]
    g = torch.stack([torch.from_numpy(np.isin(lab, r)) for r in regions])[None].float()
    np.testing.assert_array_equal(
        maps.class_contours(lab, regions=regions, ignore_label=ign_label, **kw),
        morphology.class_contours(g, None, True, ignored=ign_t, **kw)[0].numpy())
    np.testing.assert_array_equal(
        maps.boundary_band(lab, regions=regions, ignore_label=ign_label, **kw),
        morphology.boundary_band(g, None, True, ignored=ign_t, **kw)[0, 0].numpy())
    np.testing.assert_array_equal(
        maps.offset_band(lab, regions=regions, band=2, ignore_label=ign_label),
        morphology.offset_band(g, None, True, band=2, ignored=ign_t)[0].numpy())


# ----------------------------------------------------------------------------- U-Net weight map
def ref_unet_weight_map(lab, w0, sigma, spacing=None, ignore_label=None):
    """Direct computation: every object's full-array distance_transform_edt, sorted per voxel."""
    lab = np.asarray(lab)
    counted = np.ones(lab.shape, bool) if ignore_label is None else lab != ignore_label
    classes = [c for c in np.unique(lab[counted])]
    n = counted.sum()
    w = np.zeros(lab.shape)
    for c in classes:
        sel = counted & (lab == c)
        w[sel] = n / (len(classes) * sel.sum())
    struct = ndimage.generate_binary_structure(lab.ndim, lab.ndim)
    dists = []
    for c in classes:
        if c == 0:
            continue
        comp, k = ndimage.label(counted & (lab == c), struct)
        for i in range(1, k + 1):
            dists.append(ndimage.distance_transform_edt(comp != i, sampling=spacing))
    if len(dists) >= 2:
        d = np.sort(np.stack(dists), 0)
        border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2))
        bg = counted & (lab == 0)
        w[bg] += border[bg]
    return w


def sparse_objects(shape, seed, n_labels=2, ignore_label=None):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int16)
    for _ in range(7):
        c = rng.integers(1, n_labels + 1)
        lo = [rng.integers(0, s - 2) for s in shape]
        ext = [rng.integers(1, max(2, s // 4)) for s in shape]
        lab[tuple(slice(a, a + e) for a, e in zip(lo, ext))] = c
    if ignore_label is not None:
        lab[tuple(slice(0, s // 5) for s in shape)] = ignore_label
    return lab


@pytest.mark.parametrize("shape,spacing", [((48, 41), None), ((48, 41), (0.7, 1.9)), ((19, 23, 17), None),
                                           ((19, 23, 17), (3.0, 1.0, 0.8)), ((37,), None)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unet_weight_map_matches_direct_computation(shape, spacing, seed):
    ign = 3 if seed == 2 else None
    lab = sparse_objects(shape, seed, ignore_label=ign)
    sigma = 5.0 if spacing is None else 4.0
    got = maps.unet_weight_map(lab, w0=10.0, sigma=sigma, spacing=spacing, ignore_label=ign)
    exp = ref_unet_weight_map(lab, 10.0, sigma, spacing, ign)
    assert got.dtype == np.float32 and got.shape == lab.shape
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)
    if ign is not None:
        assert (got[lab == ign] == 0).all()
    # w_class alone (w0 = 0) has mean 1 over the counted voxels and is constant per class
    wc = maps.unet_weight_map(lab, w0=0.0, spacing=spacing, ignore_label=ign)
    counted = lab != ign
    assert math.isclose(wc[counted].mean(), 1.0, rel_tol=1e-6)
    for c in np.unique(lab[counted]):
        assert np.ptp(wc[lab == c]) == 0


def test_unet_weight_map_far_objects_cutoff_and_edge_cases():
    # big image, far apart objects: the bounding-box restriction must not change the result
    lab = np.zeros((200, 180), np.int16)
    lab[10:14, 10:15] = 1
    lab[20:25, 60:62] = 1
    lab[150:160, 150:170] = 2
    lab[100, 5] = 1
    np.testing.assert_allclose(maps.unet_weight_map(lab), ref_unet_weight_map(lab, 10.0, 5.0), atol=1e-6)
    # touching objects of different labels are two objects
    lab = np.zeros((9, 9), np.int16)
    lab[2:5, 2:5], lab[5:7, 2:5] = 1, 2
    np.testing.assert_allclose(maps.unet_weight_map(lab), ref_unet_weight_map(lab, 10.0, 5.0), atol=1e-6)
    # one object: class term only; all background: ones; all ignored: zeros
    lab = np.zeros((9, 9), np.int16)
    lab[2:5, 2:5] = 1
    w = maps.unet_weight_map(lab)
    np.testing.assert_allclose(w, np.where(lab == 1, 81 / 18, 81 / (2 * 72)), rtol=1e-6)
    np.testing.assert_array_equal(maps.unet_weight_map(np.zeros((5, 5), np.int8)), np.ones((5, 5)))
    np.testing.assert_array_equal(maps.unet_weight_map(np.full((5, 5), 4), ignore_label=4), np.zeros((5, 5)))
    # per_slice: objects and distances per slice, class weights over the case
    lab3 = sparse_objects((4, 30, 28), 5)
    w3 = maps.unet_weight_map(lab3, per_slice=True)
    wc = ref_unet_weight_map(lab3, 0.0, 5.0)
    for z in range(4):
        border = ref_unet_weight_map(lab3[z], 10.0, 5.0) - ref_unet_weight_map(lab3[z], 0.0, 5.0)
        np.testing.assert_allclose(w3[z], wc[z] + border, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        maps.unet_weight_map(lab, sigma=0)
    with pytest.raises(ValueError, match="spacing"):
        maps.unet_weight_map(lab, spacing=(1, 1, 1))


# ----------------------------------------------------------------------------- label-window fast paths: edge cases
def ref_maps(lab, num_classes, kernel, iterations, ignore_label=None, band_iters=2):
    """Per-channel SciPy references: class contours (1..C-1), boundary band (0..C-1), offset band (1..C-1)."""
    ignored = (lab == ignore_label) if ignore_label is not None else np.zeros(lab.shape, bool)
    inner = [ref_inner_contour(lab == c, ignored, kernel, iterations) for c in range(num_classes)]
    osc = []
    for c in range(1, num_classes):
        m = lab == c
        er = ndimage.binary_erosion(m | ignored, np.ones(kernel, bool), iterations=band_iters, border_value=1) \
            if band_iters else (m | ignored)
        dil = ref_dilate(m, ignored, kernel, band_iters) if band_iters else (m & ~ignored)  # SciPy: 0 = until stable
        osc.append(dil & ~er)
    fg = np.stack(inner[1:]) if num_classes > 1 else np.zeros((0, *lab.shape), bool)
    osc = np.stack(osc) if osc else np.zeros((0, *lab.shape), bool)
    return fg, np.any(inner, 0), osc


def check_all(lab, num_classes, kernel, iterations, ignore_label=None, band_iters=2):
    k = kernel[0] if len(set(kernel)) == 1 else kernel
    fg, band, osc = ref_maps(lab, num_classes, kernel, iterations, ignore_label, band_iters)
    cc, bb = maps.contours_and_band(lab, num_classes, kernel_size=k, iterations=iterations, ignore_label=ignore_label)
    np.testing.assert_array_equal(cc, fg)
    np.testing.assert_array_equal(bb, band)
    np.testing.assert_array_equal(maps.class_contours(lab, num_classes, kernel_size=k, iterations=iterations,
                                                      ignore_label=ignore_label), fg)
    np.testing.assert_array_equal(maps.boundary_band(lab, num_classes, kernel_size=k, iterations=iterations,
                                                     ignore_label=ignore_label), band)
    np.testing.assert_array_equal(maps.offset_band(lab, num_classes, band=band_iters, kernel_size=k,
                                                   ignore_label=ignore_label), osc)


@pytest.mark.parametrize("kernel", [(3, 3, 3), (2, 2, 2), (1, 3, 3), (3, 1, 5)])
def test_many_classes_absent_classes_and_labels_of_no_class(kernel):
    lab = blobs((13, 15, 11), 7, seed=7)
    check_all(lab, 7, kernel, 2)                       # classes in the middle need their own dilation (offset band)
    check_all(np.where(lab == 3, 0, lab), 7, kernel, 2)  # a class absent from the case
    check_all(lab, 4, kernel, 2)                       # labels >= num_classes belong to no class
    neg = np.where(lab == 6, -1, lab).astype(np.int16)
    check_all(neg, 6, kernel, 2)                       # negative labels belong to no class
    check_all(lab, 7, kernel, 2, ignore_label=2)       # ignore label inside the class range: no contour on it
    check_all(np.where(lab > 3, lab + 300, lab), 307, kernel, 1)  # label span beyond uint8 (wider window dtype)
    check_all(lab * 2, 13, kernel, 1)                  # label bits in uint16
    check_all(np.where(lab > 3, lab + 50, lab), 57, kernel, 1)  # label bits in uint64


@pytest.mark.parametrize("fill", ["background", "foreground", "ignored", "single voxel"])
def test_empty_all_foreground_and_all_ignored(fill):
    lab = np.zeros((9, 8, 7), np.uint8)
    if fill == "foreground":
        lab[:] = 1
    elif fill == "ignored":
        lab[:] = 4
    elif fill == "single voxel":
        lab[4, 4, 3] = 2
    for kernel, it in (((3, 3, 3), 6), ((2, 2, 2), 1), ((3, 3, 3), 0)):
        check_all(lab, 3, kernel, it, ignore_label=4, band_iters=min(it, 2))
    cc, band = maps.contours_and_band(lab, 3, ignore_label=4)
    assert cc.shape == (2, 9, 8, 7) and band.shape == (9, 8, 7)
    if fill != "single voxel":
        assert not cc.any() and not band.any()        # no boundary anywhere (the array edge is none)


def test_spacing_aware_element_and_bool_labels():
    lab = blobs((8, 20, 18), 3, seed=11)
    # max/min spacing > 3: element (1, 3, 3) derived from the spacing, same as passing it
    for iters in (1, 3):
        fg, band, _ = ref_maps(lab, 3, (1, 3, 3), iters)
        cc, bb = maps.contours_and_band(lab, 3, spacing=(4.0, 1.0, 1.0), iterations=iters)
        np.testing.assert_array_equal(cc, fg)
        np.testing.assert_array_equal(bb, band)
    # mildly anisotropic (ratio <= 3): the cube
    fg, band, _ = ref_maps(lab, 3, (3, 3, 3), 2)
    np.testing.assert_array_equal(maps.contours_and_band(lab, 3, spacing=(2.5, 1.0, 1.0), iterations=2)[1], band)
    # bool labels are classes 0/1
    m = lab == 1
    np.testing.assert_array_equal(maps.class_contours(m, iterations=2)[0], ref_maps(m.astype(np.uint8), 2, (3, 3, 3), 2)[0][0])
    with pytest.raises(ValueError, match="fractional"):
        maps.class_contours(lab + 0.5)
    with pytest.raises(ValueError, match="iterations"):
        maps.contours_and_band(lab, 3, iterations=-1)


def test_pack_bits_matches_numpy_packbits():
    try:  # the bit packing of the map store (its own module since the maps layer was split)
        from nnunet_losses.nnunet.maps.packing import pack_bits, unpack_bits
    except ImportError:
        from nnunet_losses.nnunet.maps import pack_bits, unpack_bits
    rng = np.random.default_rng(0)
    for n in (1, 3, 8, 9, 17):
        ch = rng.random((n, 5, 6, 4)) > 0.5
        exp = np.packbits(ch, axis=0, bitorder="little")
        np.testing.assert_array_equal(pack_bits(ch), exp)
        np.testing.assert_array_equal(pack_bits(list(ch)), exp)
        np.testing.assert_array_equal(unpack_bits(pack_bits(ch), n), ch)
    assert pack_bits(np.zeros((0, 4, 4), bool)).shape == (0, 4, 4)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, bool])
def test_unet_weight_map_label_dtypes_and_ignore(dtype):
    lab = sparse_objects((31, 27, 19), 4, n_labels=1 if dtype is bool else 2)
    exp = ref_unet_weight_map(lab, 10.0, 5.0)
    np.testing.assert_allclose(maps.unet_weight_map(lab.astype(dtype)), exp, rtol=1e-5, atol=1e-5)
    if dtype is not bool:
        lab_i = lab.copy()
        lab_i[:5] = 7
        np.testing.assert_allclose(maps.unet_weight_map(lab_i.astype(dtype), ignore_label=7),
                                   ref_unet_weight_map(lab_i, 10.0, 5.0, ignore_label=7), rtol=1e-5, atol=1e-5)

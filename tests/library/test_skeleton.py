"""Skeleton Recall and soft clDice (docs/losses.md, sections 3.9 and 3.10): NumPy re-derivations, the tubed
skeleton of a hand-made bar, gradients, bad input, degenerate patches and a short training on a vessel tree."""
import math

import numpy as np
import pytest
import torch
from skimage.morphology import dilation, skeletonize

import nnunet_losses as nl
from loss_catalogue import make_inputs
from nnunet_losses.skeleton_recall import tubed_skeletons
from nnunet_losses.morphology.skeletons import skeleton_map, tubed_skeleton

SMOOTH = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded machine, more threads make these tests 10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- NumPy re-derivations
def ref_tube(mask, dilations=2):
    """skimage skeleton, ``dilations`` skimage dilations with the default (cross) footprint, AND the mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, bool)
    t = skeletonize(mask).astype(np.uint8)
    for _ in range(dilations):
        t = dilation(t)
    return (t > 0) & mask


def _probs_and_channels(logits, target, sigmoid, ignore_index):
    """p, g, counted (B, *sp) and the foreground channels as NumPy float64."""
    x = np.asarray(logits, np.float64)
    t = np.asarray(target)
    if sigmoid:
        p = 1.0 / (1.0 + np.exp(-x))
        counted = np.ones((x.shape[0],) + x.shape[2:], bool)
        if ignore_index is not None:
            counted &= ~np.any(t == ignore_index, axis=1)
        g = np.where(counted[:, None], t, 0).astype(np.float64)
        return p, g, counted, list(range(x.shape[1]))
    e = np.exp(x - x.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    lab = t[:, 0] if t.ndim == x.ndim else t
    counted = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    g = np.stack([(lab == c) & counted for c in range(x.shape[1])], 1).astype(np.float64)
    return p, g, counted, list(range(1, x.shape[1]))


def ref_skeleton_recall(logits, target, sigmoid=False, ignore_index=None, batch_dice=False, skeleton=None,
                        dilations=2):
    p, g, counted, fg = _probs_and_channels(logits, target, sigmoid, ignore_index)
    b = p.shape[0]
    if skeleton is None:
        skeleton = np.stack([np.stack([ref_tube(g[i, c] > 0, dilations) for c in fg]) for i in range(b)])
    skeleton = np.asarray(skeleton, np.float64)
    tp = np.zeros((b, len(fg)))
    st = np.zeros((b, len(fg)))
    for i in range(b):
        for k, c in enumerate(fg):
            tp[i, k] = np.sum(p[i, c] * skeleton[i, k] * counted[i])
            st[i, k] = np.sum(skeleton[i, k] * counted[i])
    if batch_dice:
        tp, st = tp.sum(0, keepdims=True), st.sum(0, keepdims=True)
    return 1.0 - np.mean((tp + SMOOTH) / np.maximum(st + SMOOTH, 1e-8))


def ref_dice_ce(logits, target, sigmoid=False, ignore_index=None, batch_dice=False):
    p, g, counted, fg = _probs_and_channels(logits, target, sigmoid, ignore_index)
    n = max(counted.sum(), 1)
    if sigmoid:
        bce = np.logaddexp(0, -np.asarray(logits, np.float64)) * g + np.logaddexp(0, np.asarray(logits, np.float64)) * (1 - g)
        ce = np.sum(bce * counted[:, None]) / (n * p.shape[1])
    else:
        ce = -np.sum(np.log(np.where(counted, np.sum(p * g, 1), 1.0))) / n
    b = p.shape[0]
    tp, sp_, sg = (np.zeros((b, len(fg))) for _ in range(3))
    for i in range(b):
        for k, c in enumerate(fg):
            tp[i, k] = np.sum(p[i, c] * g[i, c] * counted[i])
            sp_[i, k] = np.sum(p[i, c] * counted[i])
            sg[i, k] = np.sum(g[i, c] * counted[i])
    if batch_dice:
        tp, sp_, sg = (a.sum(0, keepdims=True) for a in (tp, sp_, sg))
    dice = (2 * tp + SMOOTH) / np.maximum(sp_ + sg + SMOOTH, 1e-8)
    return ce + 1.0 - dice.mean()


def _np_erode(x):
    """min over the cross; outside = +inf (foreground)."""
    nd = x.ndim
    pad = np.pad(x, 1, constant_values=np.inf)
    out = np.full(x.shape, np.inf)
    centre = tuple(slice(1, 1 + s) for s in x.shape)
    for axis in range(nd):
        for d in (-1, 0, 1):
            sl = list(centre)
            sl[axis] = slice(1 + d, 1 + d + x.shape[axis])
            out = np.minimum(out, pad[tuple(sl)])
    return out


def _np_dilate(x):
    """max over the 3^nd box; outside = -inf (background)."""
    pad = np.pad(x, 1, constant_values=-np.inf)
    out = np.full(x.shape, -np.inf)
    for shift in np.ndindex(*(3,) * x.ndim):
        out = np.maximum(out, pad[tuple(slice(s, s + n) for s, n in zip(shift, x.shape))])
    return out


def ref_soft_skel(x, iterations):
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    skel = relu(x - _np_dilate(_np_erode(x)))
    for _ in range(iterations):
        x = _np_erode(x)
        delta = relu(x - _np_dilate(_np_erode(x)))
        skel = skel + relu(delta - skel * delta)
    return skel


def ref_cldice(logits, target, sigmoid=False, ignore_index=None, batch_dice=False, alpha=0.5, iterations=3, s=1.0):
    p, g, counted, fg = _probs_and_channels(logits, target, sigmoid, ignore_index)
    b = p.shape[0]
    sums = np.zeros((7, b, len(fg)))
    for i in range(b):
        for k, c in enumerate(fg):
            m = counted[i]
            sp_, sg_ = ref_soft_skel(p[i, c] * m, iterations), ref_soft_skel(g[i, c] * m, iterations)
            sums[:, i, k] = [np.sum(p[i, c] * g[i, c] * m), np.sum(p[i, c] * m), np.sum(g[i, c] * m),
                             np.sum(sp_ * g[i, c] * m), np.sum(sp_ * m), np.sum(sg_ * p[i, c] * m), np.sum(sg_ * m)]
    if batch_dice:
        sums = sums.sum(1, keepdims=True)
    dice = (2 * sums[0] + s) / np.maximum(sums[1] + sums[2] + s, 1e-8)
    tprec = (sums[3] + s) / (sums[4] + s)
    tsens = (sums[5] + s) / (sums[6] + s)
    cl = 2 * tprec * tsens / (tprec + tsens)
    return (1 - alpha) * (1 - dice.mean()) + alpha * (1 - cl.mean())


# ----------------------------------------------------------------------------- the tubed skeleton
def _bar(width, shape=(15, 30), cols=(2, 28)):
    m = np.zeros(shape, bool)
    top = shape[0] // 2 - width // 2
    m[top:top + width, cols[0]:cols[1]] = True
    return m, shape[0] // 2


@pytest.mark.parametrize("width", [5, 3, 9])
def test_tubed_skeleton_of_a_bar_is_its_centre_line_dilated_twice_inside_the_bar(width):
    """Away from the bar's ends (where the thinning leaves short spurs): the centre row dilated twice with the
    cross is rows centre-2..centre+2, restricted to the bar (a 3-wide bar clips it, a 9-wide bar keeps 5 rows)."""
    m, centre = _bar(width)
    t = tubed_skeleton(m)
    assert not (t & ~m).any()
    inner = slice(8, 22)
    expected = np.zeros(m.shape, bool)
    expected[centre - 2:centre + 3, inner] = True
    expected &= m
    np.testing.assert_array_equal(t[:, inner], expected[:, inner])
    assert np.array_equal(skeletonize(m)[:, inner], np.eye(1, m.shape[0], centre, dtype=bool).T.repeat(14, 1))
    # fewer dilations: a thinner tube; none: the skeleton itself
    assert np.array_equal(tubed_skeleton(m, dilations=0), skeletonize(m))
    assert tubed_skeleton(m, dilations=1)[:, inner].sum() == 14 * min(3, width)


def test_tubed_skeleton_3d_per_slice_and_maps():
    vol = np.zeros((6, 20, 20), np.int64)
    vol[:, 8:13, 2:18] = 1
    vol[1:5, 2:18, 2:5] = 2
    vol[0, 0, 0] = 3  # ignore label
    np.testing.assert_array_equal(tubed_skeleton(vol == 1), ref_tube(vol == 1))
    per = tubed_skeleton(vol == 2, per_slice=True)
    np.testing.assert_array_equal(per, np.stack([ref_tube(s) for s in vol == 2]))
    sk = skeleton_map(vol, num_classes=3, ignore_label=3)
    assert sk.shape == (2, *vol.shape) and sk.dtype == bool
    np.testing.assert_array_equal(sk[0], ref_tube(vol == 1))
    np.testing.assert_array_equal(sk[1], ref_tube(vol == 2))
    reg = skeleton_map(vol, regions=[(1, 2), (2,)], ignore_label=3)
    np.testing.assert_array_equal(reg[0], ref_tube((vol == 1) | (vol == 2)))
    # the online (torch) skeletons are the NumPy ones
    lab = torch.from_numpy(vol[None, None] % 3)
    np.testing.assert_array_equal(tubed_skeletons(lab, 3).numpy()[0], sk)
    # the registered map kind computes the same, slice by slice for nnU-Net 2d configurations
    from nnunet_losses.nnunet.maps.declaration import ResolvedMap, Values
    from nnunet_losses.nnunet.maps.kinds import SKELETON
    rp = ResolvedMap(kind="skeleton", params=Values({"dilations": 2}), algorithm=1, slicewise=True, num_classes=3,
                     regions=None, ignore_label=3, derived=Values({}), channels=("skeleton:1", "skeleton:2"))
    np.testing.assert_array_equal(SKELETON.compute(vol, rp)[1], per)


# ----------------------------------------------------------------------------- against the re-derivations
CASES = [(sigmoid, dim, bd, ign) for sigmoid in (False, True) for dim in (2, 3) for bd in (False, True)
         for ign in (None, 3)]


@pytest.mark.parametrize("sigmoid,dim,batch_dice,ignore", CASES)
def test_skeleton_recall_matches_reference(sigmoid, dim, batch_dice, ignore):
    logits, target = make_inputs(sigmoid, dim=dim, size=10, ignore=ignore)
    got = nl.SkeletonRecallLoss(sigmoid=sigmoid, ignore_index=ignore, batch_dice=batch_dice)(logits, target)
    want = ref_skeleton_recall(logits.numpy(), target.numpy(), sigmoid, ignore, batch_dice)
    assert math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-12)
    combo = nl.DiceCESkeletonRecallLoss(weight_skeleton=0.7, sigmoid=sigmoid, ignore_index=ignore,
                                        batch_dice=batch_dice)(logits, target)
    want_combo = ref_dice_ce(logits.numpy(), target.numpy(), sigmoid, ignore, batch_dice) + 0.7 * want
    assert math.isclose(float(combo), want_combo, rel_tol=1e-9)


@pytest.mark.parametrize("sigmoid,dim,batch_dice,ignore", CASES)
def test_soft_cldice_matches_reference(sigmoid, dim, batch_dice, ignore):
    logits, target = make_inputs(sigmoid, dim=dim, size=10, ignore=ignore)
    loss = nl.SoftclDiceLoss(sigmoid=sigmoid, ignore_index=ignore, batch_dice=batch_dice, alpha=0.3, iterations=2)
    want = ref_cldice(logits.numpy(), target.numpy(), sigmoid, ignore, batch_dice, alpha=0.3, iterations=2)
    assert math.isclose(float(loss(logits, target)), want, rel_tol=1e-9)


def test_given_skeleton_is_used_and_ignored_voxels_count_nowhere():
    logits, target = make_inputs(False, dim=2, size=10)
    sk = torch.zeros((2, 2, 10, 10), dtype=torch.bool)
    sk[:, 0, 3:6, 3:6] = True
    got = nl.SkeletonRecallLoss()(logits, target, skeleton=sk)
    assert math.isclose(float(got), ref_skeleton_recall(logits.numpy(), target.numpy(), skeleton=sk.numpy()),
                        rel_tol=1e-9)
    # changing logits on ignored voxels changes nothing
    t = target.clone()
    t[:, :, :3] = 9
    a = nl.DiceCESkeletonRecallLoss(ignore_index=9)(logits, t)
    l2 = logits.clone()
    l2[:, :, :3] = torch.randn_like(l2[:, :, :3]) * 5
    assert math.isclose(float(a), float(nl.DiceCESkeletonRecallLoss(ignore_index=9)(l2, t)), rel_tol=1e-12)
    b = nl.SoftclDiceLoss(ignore_index=9)
    assert math.isclose(float(b(logits, t)), ref_cldice(logits.numpy(), t.numpy(), ignore_index=9), rel_tol=1e-9)
    assert math.isclose(float(b(logits, t)), float(b(l2, t)), rel_tol=1e-12)


# ----------------------------------------------------------------------------- gradients, bad input, edge cases
@pytest.mark.parametrize("sigmoid", [False, True])
def test_gradcheck(sigmoid):
    logits, target = make_inputs(sigmoid, dim=2, b=2, c=2, size=6)
    x = logits.clone().requires_grad_(True)
    # the skeleton is a constant of the target: computed once (the online path is checked against it)
    sk = tubed_skeletons(target if sigmoid else target.long(), None if sigmoid else 2, sigmoid)
    sr = nl.SkeletonRecallLoss(sigmoid=sigmoid, batch_dice=True)
    assert float(sr(logits, target)) == float(sr(logits, target, skeleton=sk))
    for loss, maps in ((sr, {"skeleton": sk}),
                       (nl.DiceCESkeletonRecallLoss(sigmoid=sigmoid, ignore_index=3), {"skeleton": sk})):
        assert torch.autograd.gradcheck(lambda v: loss(v, target, **maps), (x,), eps=1e-6, atol=1e-6)
    logits, target = make_inputs(sigmoid, dim=2, b=1, c=2, size=5)
    x = logits.clone().requires_grad_(True)
    cl = nl.SoftclDiceLoss(sigmoid=sigmoid, iterations=2)
    assert torch.autograd.gradcheck(lambda v: cl(v, target), (x,), eps=1e-6, atol=1e-6)


def test_bad_input_raises_clear_errors():
    logits, target = make_inputs(False, dim=2, size=8)
    with pytest.raises(ValueError, match=r"skeleton must have shape \(2, 2, 8, 8\)"):
        nl.SkeletonRecallLoss()(logits, target, skeleton=torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="skeleton must be binary"):
        nl.DiceCESkeletonRecallLoss()(logits, target, skeleton=torch.full((2, 2, 8, 8), 0.5))
    bad = logits.clone()
    bad[0, 0, 0, 0] = float("nan")
    for loss in (nl.SkeletonRecallLoss(), nl.DiceCESkeletonRecallLoss(), nl.SoftclDiceLoss()):
        with pytest.raises(ValueError, match="non-finite"):
            loss(bad, target)
    with pytest.raises(ValueError, match="unknown map"):
        nl.SoftclDiceLoss()(logits, target, skeleton=torch.zeros(2, 2, 8, 8))
    for kwargs, cls in (({"dilations": -1}, nl.SkeletonRecallLoss), ({"dilations": 1.5}, nl.SkeletonRecallLoss),
                        ({"weight_skeleton": -1}, nl.DiceCESkeletonRecallLoss), ({"alpha": 2}, nl.SoftclDiceLoss),
                        ({"iterations": -1}, nl.SoftclDiceLoss)):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            cls(**kwargs)


@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("fill", [0, 1])
def test_empty_and_all_foreground_patches_are_finite(sigmoid, fill):
    for dim in (2, 3):
        shape = (2, 3) + (8,) * dim
        x = (torch.randn(shape, dtype=torch.float32) * 3).requires_grad_(True)
        target = torch.full(shape, float(fill)) if sigmoid else torch.full((2, 1) + shape[2:], fill)
        for loss in (nl.SkeletonRecallLoss(sigmoid=sigmoid), nl.DiceCESkeletonRecallLoss(sigmoid=sigmoid),
                     nl.SoftclDiceLoss(sigmoid=sigmoid)):
            v = loss(x, target)
            v.backward()
            assert torch.isfinite(v) and float(v.detach()) >= 0 and torch.isfinite(x.grad).all()
            x.grad = None


# ----------------------------------------------------------------------------- a vessel tree
def _vessel_tree(n=48):
    """A binary 2D tree of 1-2 voxel wide branches (the trunk 2 wide), label 1 on 0."""
    img = np.zeros((n, n), bool)
    img[4:44, 23:25] = True                                        # trunk
    for r, c0, d in ((12, 24, -1), (20, 24, 1), (30, 24, -1), (36, 24, 1)):
        for k in range(16):                                        # diagonal branches, 1 wide
            rr, cc = r + k // 2, c0 + d * k
            if 0 <= cc < n:
                img[rr, cc] = True
    return img


def test_skeleton_recall_on_a_vessel_tree_improves_recall():
    """A tiny conv net, trained for a few dozen steps with CE + Dice + Skeleton Recall, covers more of the tree's
    skeleton than at the start, and soft clDice likewise."""
    tree = _vessel_tree()
    rng = np.random.default_rng(0)
    image = torch.from_numpy(tree.astype(np.float32) * 0.8 + rng.normal(0, 0.35, tree.shape).astype(np.float32))
    image = image[None, None]
    target = torch.from_numpy(tree.astype(np.int64))[None, None]
    skel = torch.from_numpy(skeletonize(tree))

    def hard_recall(net):
        with torch.no_grad():
            pred = net(image).argmax(1)[0].bool()
        return float((pred & skel).sum()) / float(skel.sum())

    for loss, steps in ((nl.DiceCESkeletonRecallLoss(), 60), (nl.SoftclDiceLoss(), 80)):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(8, 2, 3, padding=1))
        with torch.no_grad():
            net[-1].bias.copy_(torch.tensor([2.0, -2.0]))           # starts predicting background everywhere
        opt = torch.optim.Adam(net.parameters(), lr=2e-2)
        sk = None
        if isinstance(loss, nl.DiceCESkeletonRecallLoss):
            sk = tubed_skeletons(target, 2)                          # fixed target: the skeleton once
        before = hard_recall(net)
        for _ in range(steps):
            opt.zero_grad()
            out = net(image)
            v = loss(out, target) if sk is None else loss(out, target, skeleton=sk)
            v.backward()
            opt.step()
        after = hard_recall(net)
        assert before < 0.05 and after > 0.75, (type(loss).__name__, before, after)

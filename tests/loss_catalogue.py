"""Every public loss with the settings the generic tests iterate over (one place for the list)."""
import torch

import nnunet_losses as nl

#: name -> (class, extra constructor kwargs used by generic tests, is Dice-type (batch_dice etc.))
LOSSES = {
    "SoftDiceLoss": (nl.SoftDiceLoss, {}, True),
    "DiceCELoss": (nl.DiceCELoss, {}, True),
    "ComboLoss": (nl.ComboLoss, {"alpha": 0.4, "beta": 0.7}, True),
    "ContourWeightedCELoss": (nl.ContourWeightedCELoss, {"iterations": 1}, False),
    "SeparableDiceLoss": (nl.SeparableDiceLoss, {"iterations": 1}, False),
    "CWCDLoss": (nl.CWCDLoss, {"iterations": 1}, False),
    "AsymmetricFbetaLoss": (nl.AsymmetricFbetaLoss, {}, True),
    "TverskyLoss": (nl.TverskyLoss, {}, True),
    "TopKDiceLoss": (nl.TopKDiceLoss, {"k": 30}, True),
    "CETopKDiceLoss": (nl.CETopKDiceLoss, {"k": 30}, True),
    "GeneralizedDiceLoss": (nl.GeneralizedDiceLoss, {}, True),
    "FocalLoss": (nl.FocalLoss, {}, False),
    "FocalDiceLoss": (nl.FocalDiceLoss, {}, True),
    "DistanceWeightedCELoss": (nl.DistanceWeightedCELoss, {}, False),
    "OffsetCurvesLoss": (nl.OffsetCurvesLoss, {"band": 1}, False),
    "SkeletonRecallLoss": (nl.SkeletonRecallLoss, {}, False),
    "DiceCESkeletonRecallLoss": (nl.DiceCESkeletonRecallLoss, {}, True),
    "SoftclDiceLoss": (nl.SoftclDiceLoss, {"iterations": 2}, True),
}
NAMES = sorted(LOSSES)


def make(name, **kwargs):
    cls, extra, _ = LOSSES[name]
    return cls(**{**extra, **kwargs})


def maps_for(name, logits):
    """Extra forward arguments a loss needs (only DWCE: a positive weight map)."""
    if name == "DistanceWeightedCELoss":
        b = logits.shape[0]
        g = torch.Generator().manual_seed(3)
        w = 1.0 + 3.0 * torch.rand((b, 1, *logits.shape[2:]), generator=g, dtype=torch.float64)
        return {"weight_map": w.to(logits.dtype)}
    return {}


def blob_labels(shape, num_classes, seed=0):
    """Integer labels (B, 1, *sp) made of boxes of each class, so contours and bands exist."""
    g = torch.Generator().manual_seed(seed)
    b, sp = shape[0], shape[1:]
    lab = torch.zeros((b, 1, *sp), dtype=torch.long)
    for i in range(b):
        for c in range(1, num_classes):
            lo = [int(torch.randint(0, max(1, s - 3), (1,), generator=g)) for s in sp]
            size = [max(2, s // 2) for s in sp]
            idx = (i, 0) + tuple(slice(l, l + z) for l, z in zip(lo, size))
            lab[idx] = c
    return lab


def make_inputs(sigmoid, dim=2, b=2, c=3, size=8, dtype=torch.float64, seed=0, ignore=None):
    g = torch.Generator().manual_seed(seed)
    sp = (size,) * dim if dim == 2 else (size, size - 1, size - 2)
    logits = torch.randn((b, c, *sp), generator=g, dtype=dtype) * 2
    if sigmoid:
        regions = [blob_labels((b, *sp), 2, seed + k)[:, 0] for k in range(c)]
        target = torch.stack(regions, 1).to(dtype)
    else:
        target = blob_labels((b, *sp), c, seed)
    if ignore is not None:
        region = (slice(None), slice(None)) + (slice(0, 2),) * dim
        target[region] = ignore
    return logits, target


def many_class_inputs(sigmoid, dim, c, b=2, size=8, seed=0, ignore=None, dtype=torch.float64):
    """Logits and a target for many classes (regions) that keeps classes apart on small images.

    softmax: blocks of side 3 (cropped at the end of each axis), each of a random class 0..C-1, so
    that classes have contour voxels (next to another block) and interior voxels (at the image edge,
    which is never a contour); sigmoid: one random box per region and sample. ``ignore``: about 10% of
    the voxels (sigmoid mode: in one random channel) carry that value. Spatial shape ``(size, size - 1)``
    in 2D, ``(size, size - 1, size - 2)`` in 3D.
    """
    g = torch.Generator().manual_seed(seed)
    sp = (size, size - 1) if dim == 2 else (size, size - 1, size - 2)
    logits = torch.randn((b, c, *sp), generator=g, dtype=dtype) * 2
    crop = (slice(None), slice(None)) + tuple(slice(0, s) for s in sp)
    if sigmoid:
        target = torch.zeros((b, c, *sp), dtype=dtype)
        for i in range(b):
            for r in range(c):
                lo = [int(torch.randint(0, s - 1, (1,), generator=g)) for s in sp]
                hi = [int(torch.randint(l + 2, s + 1, (1,), generator=g)) if l + 2 <= s else s for l, s in zip(lo, sp)]
                target[(i, r) + tuple(slice(l, h) for l, h in zip(lo, hi))] = 1
    else:
        target = torch.randint(0, c, (b, 1, *[-(-s // 3) for s in sp]), generator=g)
        for axis in range(dim):
            target = target.repeat_interleave(3, 2 + axis)
        target = target[crop].contiguous()
    if ignore is not None:
        sel = torch.rand((b, 1, *sp), generator=g) < 0.1
        if sigmoid:
            ch = torch.randint(0, c, (b, 1, *sp), generator=g)
            sel = sel & (ch == torch.arange(c).view(1, c, *([1] * dim)))
        target = torch.where(sel, torch.full_like(target, ignore), target)
    return logits, target

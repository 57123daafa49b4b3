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

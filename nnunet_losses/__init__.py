"""nnunet-losses: class-imbalance losses for nnU-Net v2 (formulas, papers and our choices: docs/losses.md).

Every loss is an ``nn.Module`` called as ``loss(logits, target, mask=None, **maps)`` and returns a
scalar >= 0. The pure-PyTorch part (this package except ``nnunet_losses.nnunet``) imports nothing
from nnU-Net.

Importing the package is cheap: the losses (and torch) load on first access, so
``import nnunet_losses.morphology.numpy_ops`` (the NumPy maps used by preprocessing) does not import torch.
``from nnunet_losses import CWCDLoss`` and ``nnunet_losses.CWCDLoss`` work as usual.
"""
from ._lazy import lazy_exports

__version__ = "0.1.0"

#: public name -> module (in this package) that defines it
_LAZY = {
    "SoftDiceLoss": "dice",
    "DiceCELoss": "dice",
    "ComboLoss": "combo",
    "ContourWeightedCELoss": "contour",
    "SeparableDiceLoss": "contour",
    "CWCDLoss": "contour",
    "AsymmetricFbetaLoss": "fbeta",
    "TverskyLoss": "fbeta",
    "TopKDiceLoss": "topk",
    "CETopKDiceLoss": "topk",
    "GeneralizedDiceLoss": "generalized_dice",
    "FocalLoss": "focal",
    "FocalDiceLoss": "focal",
    "DistanceWeightedCELoss": "distance_weighted",
    "OffsetCurvesLoss": "offset_curves",
    "SkeletonRecallLoss": "skeleton_recall",
    "DiceCESkeletonRecallLoss": "skeleton_recall",
    "SoftclDiceLoss": "cldice",
    "set_input_checks": "_checks",
}

#: the public losses
__all__ = [
    "SoftDiceLoss",
    "DiceCELoss",
    "ComboLoss",
    "ContourWeightedCELoss",
    "SeparableDiceLoss",
    "CWCDLoss",
    "AsymmetricFbetaLoss",
    "TverskyLoss",
    "TopKDiceLoss",
    "CETopKDiceLoss",
    "GeneralizedDiceLoss",
    "FocalLoss",
    "FocalDiceLoss",
    "DistanceWeightedCELoss",
    "OffsetCurvesLoss",
    "SkeletonRecallLoss",
    "DiceCESkeletonRecallLoss",
    "SoftclDiceLoss",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

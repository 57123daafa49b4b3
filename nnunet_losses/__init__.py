"""nnunet-losses: class-imbalance losses for nnU-Net v2 (see docs/losses.md and SPEC section 3).

Every loss is an ``nn.Module`` called as ``loss(logits, target, mask=None, **maps)`` and returns a
scalar >= 0. The pure-PyTorch part (this package except ``nnunet_losses.nnunet``) imports nothing
from nnU-Net.
"""
from ._checks import set_input_checks
from .combo import ComboLoss
from .contour import ContourWeightedCELoss, CWCDLoss, SeparableDiceLoss
from .dice import DiceCELoss, SoftDiceLoss
from .distance_weighted import DistanceWeightedCELoss
from .fbeta import AsymmetricFbetaLoss, TverskyLoss
from .focal import FocalDiceLoss, FocalLoss
from .generalized_dice import GeneralizedDiceLoss
from .offset_curves import OffsetCurvesLoss
from .topk import CETopKDiceLoss, TopKDiceLoss

__version__ = "0.1.0"

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
]

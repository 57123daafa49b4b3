"""nnUNetTrainerCWCD: contour-weighted cross-entropy + separable Dice (Huang et al., ICIP 2024,
arXiv 2407.06176).

Loss: :class:`nnunet_losses.CWCDLoss` (docs/losses.md); class contours and boundary band are computed on
the fly from the target at every deep-supervision scale. Everything else is nnU-Net's default
trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerCWCD
"""
from nnunet_losses import CWCDLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerCWCD(nnUNetTrainerLossBase):
    loss_class = CWCDLoss
    auto_options = {"contour_width": "contour_iterations"}  # default "auto": from the thickness of the structures

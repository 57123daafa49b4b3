"""nnUNetTrainerCWCE: contour-weighted cross-entropy alone (Huang et al., ICIP 2024).

Loss: :class:`nnunet_losses.ContourWeightedCELoss` (docs/losses.md); the boundary band is computed on the
fly from the target at every scale. Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerCWCE
"""
from nnunet_losses import ContourWeightedCELoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerCWCE(nnUNetTrainerLossBase):
    loss_class = ContourWeightedCELoss
    auto_options = {"contour_width": "contour_iterations"}  # default "auto": from the thickness of the structures

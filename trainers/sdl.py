"""nnUNetTrainerSDL: separable (contour / inner) Dice alone (Huang et al., ICIP 2024).

Loss: :class:`nnunet_losses.SeparableDiceLoss` (docs/losses.md); class contours are computed on the fly
from the target at every scale. Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerSDL
"""
from nnunet_losses import SeparableDiceLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerSDL(nnUNetTrainerLossBase):
    loss_class = SeparableDiceLoss
    auto_options = {"contour_width": "contour_iterations"}  # default "auto": from the thickness of the structures

"""nnUNetTrainerGDL: generalised Dice loss (Sudre et al., DLMIA 2017).

Loss: :class:`nnunet_losses.GeneralizedDiceLoss` (docs/losses.md). Unlike nnU-Net's Dice, GDL includes
the background by default, as in Sudre et al. (its squared inverse-volume weights make the
background's share small); ``NNUNET_LOSSES_OPTIONS='include_background=false'`` excludes it.
Everything else is nnU-Net's default trainer. Options: docs/trainers.md.

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerGDL
"""
from nnunet_losses import GeneralizedDiceLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerGDL(nnUNetTrainerLossBase):
    loss_class = GeneralizedDiceLoss

"""nnUNetTrainerFocalDice: focal loss + soft Dice.

Loss: :class:`nnunet_losses.FocalDiceLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerFocalDice
"""
from nnunet_losses import FocalDiceLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerFocalDice(nnUNetTrainerLossBase):
    loss_class = FocalDiceLoss

"""nnUNetTrainerCETopKDice: cross-entropy + top-K Dice, k = 10 % (Hosseini et al., BMVC 2024).

Loss: :class:`nnunet_losses.CETopKDiceLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerCETopKDice
"""
from nnunet_losses import CETopKDiceLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerCETopKDice(nnUNetTrainerLossBase):
    loss_class = CETopKDiceLoss

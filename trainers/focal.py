"""nnUNetTrainerFocal: focal loss, gamma = 2 (Lin et al., ICCV 2017).

Loss: :class:`nnunet_losses.FocalLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerFocal
"""
from nnunet_losses import FocalLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerFocal(nnUNetTrainerLossBase):
    loss_class = FocalLoss

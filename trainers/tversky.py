"""nnUNetTrainerTversky: Tversky loss, alpha = 0.3 (false positives), beta = 0.7 (false negatives).

Loss: :class:`nnunet_losses.TverskyLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerTversky
"""
from nnunet_losses import TverskyLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerTversky(nnUNetTrainerLossBase):
    loss_class = TverskyLoss

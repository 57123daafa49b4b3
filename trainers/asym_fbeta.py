"""nnUNetTrainerAsymFbeta: asymmetric F-beta loss, beta = 1.5 (Hashemi et al., IEEE Access 2018,
arXiv 1803.11078).

Loss: :class:`nnunet_losses.AsymmetricFbetaLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerAsymFbeta
"""
from nnunet_losses import AsymmetricFbetaLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerAsymFbeta(nnUNetTrainerLossBase):
    loss_class = AsymmetricFbetaLoss

"""nnUNetTrainerCombo: Combo loss, weighted BCE + Dice (Taghanaki et al., CMIG 2019, arXiv 1805.02798).

Loss: :class:`nnunet_losses.ComboLoss` (docs/losses.md). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerCombo
"""
from nnunet_losses import ComboLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerCombo(nnUNetTrainerLossBase):
    loss_class = ComboLoss

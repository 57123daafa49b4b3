"""nnUNetTrainerclDice: soft clDice, (1 - alpha) soft Dice + alpha (1 - clDice), alpha = 0.5 (Shit et al.,
CVPR 2021, arXiv 2003.07311).

Loss: :class:`nnunet_losses.SoftclDiceLoss` (docs/losses.md, section 3.10); soft skeletons by min/max
pooling on the loss's device at every deep-supervision scale. Everything else is nnU-Net's default
trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerclDice
"""
from nnunet_losses import SoftclDiceLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerclDice(nnUNetTrainerLossBase):
    loss_class = SoftclDiceLoss

"""nnUNetTrainerOsC: Offset Curves loss (Le et al., ICPR 2020, arXiv 2012.02463; our documented
reconstruction).

Loss: :class:`nnunet_losses.OffsetCurvesLoss` (docs/losses.md); the offset-curve band is computed on the
fly from the target at every scale. Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerOsC
"""
from nnunet_losses import OffsetCurvesLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerOsC(nnUNetTrainerLossBase):
    loss_class = OffsetCurvesLoss
    auto_options = {"contour_width": "osc_band"}  # default "auto": from the thickness of the structures

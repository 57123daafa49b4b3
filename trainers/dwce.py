"""nnUNetTrainerDWCE: distance-weighted cross-entropy with the U-Net weight map (Ronneberger et al.,
MICCAI 2015).

Loss: :class:`nnunet_losses.DistanceWeightedCELoss` (docs/losses.md). The weight map (``w0`` = 10,
``sigma`` = 5 voxels; options ``w0`` and ``sigma``) is by default the stored map of
``nnunet_losses_precompute --maps dwce`` (built at training start when missing or stale), carried through
nnU-Net's crop, augmentation and deep-supervision downsampling (option ``maps=stored``); with
``maps=online`` it is computed from the augmented target of each batch on the CPU and resized to every
deep-supervision scale (the map kind's online computation, :mod:`nnunet_losses.nnunet.maps.online`). Everything else is nnU-Net's default
trainer.

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerDWCE
"""
from nnunet_losses import DistanceWeightedCELoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerDWCE(nnUNetTrainerLossBase):
    loss_class = DistanceWeightedCELoss
    default_maps = "stored"  # "online": computed from the augmented target of each batch

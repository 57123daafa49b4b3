"""nnUNetTrainerDWCE: distance-weighted cross-entropy with the U-Net weight map (Ronneberger et al.,
MICCAI 2015).

Loss: :class:`nnunet_losses.DistanceWeightedCELoss` (SPEC 3.7). The weight map (``w0`` = 10,
``sigma`` = 5 voxels; options ``w0`` and ``sigma``) is by default the stored map of
``nnunet_losses_precompute --maps dwce`` (built at training start when missing or stale), carried through
nnU-Net's crop, augmentation and deep-supervision downsampling (option ``maps=stored``); with
``maps=online`` it is computed from the augmented target of each batch on the CPU and resized to every
deep-supervision scale (:mod:`nnunet_losses.nnunet.maps.online`). Everything else is nnU-Net's default
trainer.

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerDWCE
"""
from nnunet_losses import DistanceWeightedCELoss
from nnunet_losses._checks import check_number
from nnunet_losses.nnunet.maps.online import UNetWeightMapFn
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerDWCE(nnUNetTrainerLossBase):
    loss_class = DistanceWeightedCELoss
    trainer_options = {"w0": 10.0, "sigma": 5.0, "maps": "stored"}  # "online": computed per batch

    def check_trainer_options(self, values):
        check_number("w0", values["w0"], 0)
        check_number("sigma", values["sigma"], 0, low_inclusive=False)

    def make_map_fn(self, values):
        lm = self.label_manager
        return UNetWeightMapFn(lm.has_regions, None if lm.has_regions else lm.ignore_label,
                               float(values["w0"]), float(values["sigma"]))

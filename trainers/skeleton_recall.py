"""nnUNetTrainerSkeletonRecall: nnU-Net's CE + Dice plus Skeleton Recall, weight 1 (Kirchhoff et al.,
ECCV 2024, arXiv 2404.03010).

Loss: :class:`nnunet_losses.DiceCESkeletonRecallLoss` (docs/losses.md, section 3.9). The tubed
skeleton is by default computed by the loss from the augmented target of each batch, per sample on
the CPU with scikit-image, at every deep-supervision scale (option ``maps=online``, the authors'
behaviour); with ``maps=stored`` it is the stored map of ``nnunet_losses_precompute --maps skeleton``
(built at training start when missing or stale), carried through nnU-Net's crop, augmentation and
deep-supervision downsampling (nearest). Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerSkeletonRecall
"""
from nnunet_losses import DiceCESkeletonRecallLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerSkeletonRecall(nnUNetTrainerLossBase):
    loss_class = DiceCESkeletonRecallLoss
    default_maps = "online"  # "stored": nnunet_losses_precompute --maps skeleton

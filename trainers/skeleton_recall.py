"""nnUNetTrainerSkeletonRecall: nnU-Net's CE + Dice plus Skeleton Recall, weight 1 (Kirchhoff et al.,
ECCV 2024, arXiv 2404.03010).

Loss: :class:`nnunet_losses.DiceCESkeletonRecallLoss` (docs/losses.md, section 3.9). The tubed
skeleton is by default computed in nnU-Net's data-loader workers from each augmented training patch,
before the deep-supervision downsampling, and downsampled with the target (option ``maps=loader``,
what the authors' code does). ``maps=online``: the loss computes it per sample on the CPU from each
scale's target, in the training step; ``maps=stored``: the stored map of ``nnunet_losses_precompute
--maps skeleton`` (built at training start when missing or stale), carried through nnU-Net's crop,
augmentation and deep-supervision downsampling (nearest). Why the default: docs/losses.md, section
3.9. Everything else is nnU-Net's default trainer.
Options: docs/trainers.md (set with NNUNET_LOSSES_OPTIONS, saved to loss_options.json).

    nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerSkeletonRecall
"""
from nnunet_losses import DiceCESkeletonRecallLoss
from nnunet_losses.nnunet.training.trainer_base import nnUNetTrainerLossBase


class nnUNetTrainerSkeletonRecall(nnUNetTrainerLossBase):
    loss_class = DiceCESkeletonRecallLoss
    default_maps = "loader"  # the skeleton of the augmented patch, in the loader workers

"""nnU-Net trainers for the nnunet-losses losses (installed as the package ``nnunet_losses_trainers``).

``nnUNetv2_train DATASET CONFIG FOLD -tr nnUNetTrainerCWCD`` finds them with no further step (see
docs/trainers.md, "Discovery"). Each trainer is a thin subclass of
:class:`nnunet_losses.nnunet.training.trainer_base.nnUNetTrainerLossBase` that only chooses its loss.

Importing this package is cheap (it runs at interpreter start-up to register the trainers' folder,
see :mod:`nnunet_losses_trainers._discovery`); the trainer classes load on first access.
"""
import importlib

#: trainer name -> module (file in this folder)
TRAINERS = {
    "nnUNetTrainerCWCD": "cwcd",
    "nnUNetTrainerCWCE": "cwce",
    "nnUNetTrainerSDL": "sdl",
    "nnUNetTrainerCombo": "combo",
    "nnUNetTrainerOsC": "osc",
    "nnUNetTrainerAsymFbeta": "asym_fbeta",
    "nnUNetTrainerTversky": "tversky",
    "nnUNetTrainerCETopKDice": "ce_topk_dice",
    "nnUNetTrainerGDL": "gdl",
    "nnUNetTrainerDWCE": "dwce",
    "nnUNetTrainerFocal": "focal",
    "nnUNetTrainerFocalDice": "focal_dice",
    "nnUNetTrainerSkeletonRecall": "skeleton_recall",
    "nnUNetTrainerclDice": "cldice",
}

__all__ = list(TRAINERS)


def __getattr__(name):
    if name in TRAINERS:
        cls = getattr(importlib.import_module(f"{__name__}.{TRAINERS[name]}"), name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)

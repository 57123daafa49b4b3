"""Everything that touches nnU-Net v2 internals (the rest of ``nnunet_losses`` never imports nnunetv2),
one folder per job:

* ``training``: the trainers' base class (:class:`nnUNetTrainerLossBase`), nnU-Net's target
  conventions and deep supervision, the options (``NNUNET_LOSSES_OPTIONS``, ``loss_options.json``);
* ``maps``: the registry of map kinds and the stored maps (``nnunet_losses_precompute``, manifest,
  checksums, the dataset and transforms that carry them), online map computations;
* ``inference``: B-spline / constant / Gaussian fusion of sliding windows (``nnunet_losses_predict``);
* ``tools``: ``nnunet_losses_compare``, the DRIVE / MSD converters, the demo;
* ``testing``: tiny generated datasets, tiny plans, the short-schedule trainer generator.

Imports go down or sideways, never up: ``training`` uses ``maps``; ``maps``, ``inference``,
``tools`` and ``testing`` use only the pure library below them; nothing here imports the trainers
(``nnunet_losses_trainers``, repository folder ``trainers/``), which sit on top.

Importing this package is cheap; the names below load on first use.
"""
from nnunet_losses._lazy import lazy_exports

_API = {
    "nnUNetTrainerLossBase": "training.trainer_base",
    "NnUNetLoss": "training.loss_wrapper",
    "DeepSupervisionLoss": "training.deep_supervision",
    "nnUNetFusionPredictor": "inference.predictor",
    "MapKind": "maps.registry",
    "register_map_kind": "maps.registry",
    "MapContext": "maps.context",
    "precompute": "maps.build",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)

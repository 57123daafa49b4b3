"""Everything that touches nnU-Net v2 internals (the rest of ``nnunet_losses`` never imports nnunetv2).

* ``trainer_base``: :class:`~nnunet_losses.nnunet.training.trainer_base.nnUNetTrainerLossBase`, the base of
  the trainers in ``nnunet_losses_trainers`` (repository folder ``trainers/``).
* ``deep_supervision``: nnU-Net's deep-supervision weighting, with per-scale maps.
* ``online_maps``: maps computed from the target during training (DWCE's weight map, interim).
* ``options``: loss hyper-parameters from the environment (``NNUNET_LOSSES_OPTIONS``),
  validated and saved to ``<output_folder>/loss_options.json``.
* discovery (how ``nnUNetv2_train -tr nnUNetTrainerCWCD`` finds the trainers) lives with the
  trainers: ``nnunet_losses_trainers._discovery`` (repository ``trainers/_discovery.py``).
* ``synthetic`` and ``tiny_plans``: tiny raw datasets and shrunken plans for tests and the demo.

Importing this package is cheap; the submodules import nnunetv2 as needed.
"""

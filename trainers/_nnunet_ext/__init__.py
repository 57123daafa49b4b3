"""The folder nnU-Net searches for our trainers (appended to ``nnUNet_extTrainer``).

nnU-Net imports every module of an external trainer folder as a top-level module and looks for
the class by name. The only module here re-exports the trainers from ``nnunet_losses_trainers``,
so nnU-Net gets the same class objects as ``import nnunet_losses_trainers`` (picklable, one
identity) and nothing else of ours is imported as a top-level module.
"""

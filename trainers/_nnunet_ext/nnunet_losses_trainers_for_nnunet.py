"""Re-export of the nnunet-losses trainers for nnU-Net's external-trainer search (see __init__)."""
from nnunet_losses_trainers import *  # noqa: F401,F403

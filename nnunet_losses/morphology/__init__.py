"""Morphology shared by the losses and the map pipeline: NumPy and torch twins side by side.

- elements.py: the structuring-element arithmetic both twins use (plain Python: no NumPy, no torch).
- channels.py: label maps to binary channels in NumPy (classes, regions, the ignore mask).
- numpy_ops.py: the NumPy twin, per case (preprocessing, no torch): erode, dilate, contours, bands,
  offset band, U-Net weight map.
- torch_ops.py: the torch twin, per batch on the fly (CPU and GPU): the same functions with the same
  results (tests/library/test_maps.py), plus the soft min/max-pool skeleton of clDice.
- skeletons.py: tubed skeletons for Skeleton Recall (NumPy / scikit-image).
- thickness.py: local thickness of structures (skeleton + distance transform), for "auto" widths.

Nothing is imported here, so ``import nnunet_losses.morphology.numpy_ops`` pulls in no torch.
"""

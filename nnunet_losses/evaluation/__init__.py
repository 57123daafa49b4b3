"""Segmentation metrics for nnunet_losses_compare: pure NumPy/SciPy (plus edt and cc3d), no nnU-Net.

- overlap.py: Dice, IoU, precision, recall from voxel counts.
- surface.py: HD95 and surface Dice (NSD) in mm, spacing-aware.
- lesions.py: lesion-wise TPR / FPR from connected components.
- case.py: every metric of one case, per label or region, with nnU-Net's ignore label.

Conventions (percentile definition, empty masks) are in each module's docstring and docs/compare.md.
"""
from .case import LESION_METRICS, METRICS, case_metrics, class_mask
from .lesions import components, lesion_detection
from .overlap import confusion, overlap_metrics
from .surface import diagonal, edges, hd95, surface_dice, surface_distances, surface_metrics

__all__ = ["METRICS", "LESION_METRICS", "case_metrics", "class_mask", "components", "lesion_detection",
           "confusion", "overlap_metrics", "diagonal", "edges", "hd95", "surface_dice", "surface_distances",
           "surface_metrics"]

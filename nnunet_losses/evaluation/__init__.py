"""Segmentation metrics for nnunet_losses_compare: pure NumPy/SciPy (plus edt, cc3d, scikit-image), no nnU-Net.

- overlap.py: Dice, IoU, precision, recall from voxel counts.
- surface.py: HD95 and surface Dice (NSD) in mm, spacing-aware (MONAI's convention: edge voxels).
- surfels.py: the same two metrics in DeepMind's convention (surfels weighted by their area).
- lesions.py: lesion-wise TPR / FPR from connected components.
- topology.py: clDice (skeletons) and Betti-number errors.
- case.py: every metric of one case, per label or region, with nnU-Net's ignore label.

Conventions (percentile definition, empty masks) are in each module's docstring and docs/compare.md.
"""
from .case import LESION_METRICS, METRICS, case_metrics, class_mask
from .lesions import components, lesion_detection
from .overlap import confusion, overlap_metrics
from .surface import CONVENTIONS, diagonal, edges, hd95, surface_dice, surface_distances, surface_metrics
from .surfels import surfel_distances, surfel_metrics
from .topology import TOPOLOGY_METRICS, betti0, betti1_2d, betti_errors, cldice_score, metric_skeleton, topology_metrics

__all__ = ["METRICS", "LESION_METRICS", "TOPOLOGY_METRICS", "CONVENTIONS", "case_metrics", "class_mask",
           "components", "lesion_detection", "confusion", "overlap_metrics", "diagonal", "edges", "hd95",
           "surface_dice", "surface_distances", "surface_metrics", "surfel_distances", "surfel_metrics",
           "betti0", "betti1_2d", "betti_errors", "cldice_score", "metric_skeleton", "topology_metrics"]

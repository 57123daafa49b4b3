"""Training studies and figures (docs/quality.md, docs/inference.md).

* ``quality``: short trainings of every trainer, predicted and compared (docs/quality.md);
* ``width_ablation``: the contour-width ablation (docs/quality.md);
* ``fusion_windows``: the figure of the fusion weighting windows (docs/inference.md).
"""

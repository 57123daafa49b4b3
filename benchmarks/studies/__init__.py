"""Training studies and figures (docs/quality.md, docs/inference.md).

* ``drive_quality.json``, ``hippocampus_width.json``: the repository's studies as definitions for
  ``nnunet_losses_study`` (docs/study.md): the DRIVE quality study and the contour-width ablation;
* ``prepare``: builds a definition's dataset from ../shared/data (converters, test split, shrunk plans);
* ``fusion_windows``: the figure of the fusion weighting windows (docs/inference.md).
"""

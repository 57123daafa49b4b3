"""Speed and memory against nnU-Net's own code (``python -m benchmarks.speed.run`` -> docs/benchmarks.md).

* ``run``: entry point, runs the sections and writes ``benchmarks/results/<device>.json``;
* ``report``: renders docs/benchmarks.md from the results files;
* ``loss``: loss forward + backward with deep supervision against nnU-Net's ``DC_and_CE_loss``;
* ``maps``: map precompute and nnU-Net's data loader with maps (subprocess worker);
* ``step``: whole training steps of every trainer against ``nnUNetTrainer`` (subprocess worker);
* ``fusion``: inference with the fusion predictor against nnU-Net's (docs/inference.md);
* ``compare``: the compare tool's evaluation speed (docs/compare.md).
"""

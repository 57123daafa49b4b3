"""Benchmarks of nnunet-losses, grouped by kind (docs/benchmarks.md, docs/quality.md).

* ``speed/``: speed and memory against nnU-Net's own code, as ratios measured in one run. Entry point
  ``python -m benchmarks.speed.run`` (see ``--help``): writes ``benchmarks/results/<device>.json`` (raw
  numbers) and renders ``docs/benchmarks.md`` from every results file.
* ``studies/``: training studies (segmentation quality, contour-width ablation) and the figures they draw.
* ``acceptance/``: the one-command GPU acceptance run (``python -m benchmarks.acceptance.gpu``) and its
  workers.

Inside a folder a file is named after its subject (``speed/loss.py`` times the losses, ``acceptance/gpu.py``
is the GPU acceptance run); ``worker.py`` (running a module in a subprocess with nnU-Net's folders) is
shared by all three. Nothing here is imported by the library or by the test suite (except the smoke tests,
which run the entry points on tiny sizes).
"""

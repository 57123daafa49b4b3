"""Benchmarks of nnunet-losses against nnU-Net's own loss and preprocessing (docs/benchmarks.md).

Entry point: ``python -m benchmarks.run`` (see ``--help``); it writes ``benchmarks/results/<device>.json``
(raw numbers) and renders ``docs/benchmarks.md`` from every results file. Nothing here is imported by the
library or by the test suite (except the smoke test, which runs the entry point on tiny sizes).
"""

"""The GPU acceptance run (docs/benchmarks.md, "GPU acceptance run").

* ``gpu``: the run (``python -m benchmarks.acceptance.gpu``; ``gpu.sh`` picks the repository's .venv);
* ``e2e``: its worker that trains, resumes and predicts with every trainer in nnU-Net's code paths.
"""

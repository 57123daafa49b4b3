"""The GPU acceptance run and the kit that takes it to a lent GPU machine (docs/benchmarks.md).

* ``gpu``: the run (``python -m benchmarks.acceptance.gpu``; ``gpu.sh`` picks the repository's .venv);
* ``e2e``: its worker that trains, resumes and predicts with every trainer in nnU-Net's code paths;
* ``budget``: the run's time budget (``--budget``) and the hard stop of in-process work;
* ``kit``: the wheelhouse of what the machine's image lacks (``device_packages.txt``), split into parts
  that travel under the size limit, its manifest ``gpu_kit.json`` and the plan of calls;
* ``dry_run``: the plan played here in a fresh Python 3.12 environment.
"""

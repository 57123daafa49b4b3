"""Small datasets, plans and schedules for the tests, the demo, the benchmarks and short studies (no downloads).

- synthetic.py: tiny generated raw datasets (3D labels, 2D regions, 2D thin lines) in nnU-Net's format;
- tiny_plans.py: nnU-Net plans shrunk so that an iteration takes well under a second on a CPU, tiny splits;
- short_schedule.py: the ONE generator of ``<Trainer>_<suffix>`` subclasses with fewer epochs / iterations,
  a seed (Python, NumPy, torch, loader workers), a thread count, an optional pause.

Nothing here is imported by the trainers or the training code; it sits beside ``tools``.
"""

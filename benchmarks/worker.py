"""Run a benchmark worker module in a subprocess with nnU-Net's folders inside a work folder.

nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` when it is imported, so
every benchmark that plans, preprocesses or trains runs as ``python -m <module> --work DIR ...`` with
those variables pointing into ``DIR``; the worker prints one JSON value on its last stdout line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env(work: str, **overrides: str) -> Dict[str, str]:
    """The environment of a worker: nnU-Net's folders in ``work``, one thread, no loss options;
    ``nnUNet_n_proc_DA`` = 1 (nnU-Net's planner needs >= 1; workers set 0 for their own loaders)."""
    env = dict(os.environ, nnUNet_raw=os.path.join(work, "raw"),
               nnUNet_preprocessed=os.path.join(work, "preprocessed"),
               nnUNet_results=os.path.join(work, "results"), OMP_NUM_THREADS="1", nnUNet_n_proc_DA="1",
               PYTHONWARNINGS="ignore", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NNUNET_LOSSES_OPTIONS", None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_worker(module: str, work: str, args: Sequence[str], timeout: Optional[float] = None,
               env: Optional[Dict[str, str]] = None):
    """Run ``python -m <module> --work <work> args...`` (environment: :func:`worker_env` unless ``env``);
    return the JSON value of its last stdout line, with ``wall_s`` added to a dict, or
    ``{"error": ..., "wall_s": ...}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", module, "--work", work, *args], cwd=REPO,
                              env=env or worker_env(work), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{module} timed out after {timeout} s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    try:
        res = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    except json.JSONDecodeError:
        res = None
    if res is None:
        return {"error": f"{module} failed (exit {proc.returncode}): {proc.stderr[-2500:]}", "wall_s": wall}
    if isinstance(res, dict):
        res["wall_s"] = wall
    return res

"""Executors through ``submitit``: ``local`` (this machine, N runs at a time, one per device) and ``slurm``
(one job per run, submitted as a job array).

The local executor is submitit's ``LocalExecutor``: each run is a separate process started the way submitit
starts a SLURM job, so the submission code path that a cluster uses also runs on a laptop and in CI. For
tests, ``make_executor("slurm", ..., cluster="local")`` builds submitit's ``AutoExecutor`` with the SLURM
parameters on its local back end (the SLURM flags are then ignored, the rest of the path is the same).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import List, Optional, Sequence

__all__ = ["SlurmOptions", "Executor", "make_executor", "parse_devices"]


@dataclass(frozen=True)
class SlurmOptions:
    partition: Optional[str] = None
    time_min: int = 24 * 60
    gpus: int = 1
    mem_gb: Optional[int] = None
    cpus: Optional[int] = None
    account: Optional[str] = None


def parse_devices(devices: Optional[Sequence[str]], device: str, jobs: int) -> List[str]:
    """The slots of the local executor: one per device of ``devices`` (``cuda:0 cuda:1``), else ``jobs``
    slots of ``device`` (``cpu``, ``cuda``, ``mps``)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if devices:
        slots = []
        for d in devices:
            kind, _, index = d.partition(":")
            if kind != "cuda" or not index.isdigit():
                raise ValueError(f"--devices takes CUDA devices like cuda:0 cuda:1, got {d!r}; for the CPU use "
                                 f"--device cpu --jobs N")
            slots.append(d)
        if len(set(slots)) != len(slots):
            raise ValueError(f"a device is listed twice: {list(devices)}")
        return slots
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be cpu, cuda or mps (nnUNetv2_train -device), got {device!r}")
    return [device] * jobs


class Executor:
    """A submitit executor and how many runs it holds at a time (``slots``; ``None``: all, as an array)."""

    def __init__(self, submitit_executor, kind: str, slots: Optional[List[str]], device: str):
        self.ex, self.kind, self.slots, self.device = submitit_executor, kind, slots, device

    def submit(self, fn, spec: dict, slot: Optional[str] = None):
        if self.kind == "local":
            if slot and slot.startswith("cuda:"):
                self.ex.update_parameters(visible_gpus=[int(slot.split(":")[1])], gpus_per_node=1)
            else:
                self.ex.update_parameters(visible_gpus=[], gpus_per_node=0)
        return self.ex.submit(fn, spec)

    def submit_array(self, fn, specs: List[dict]) -> list:
        with self.ex.batch():
            jobs = [self.ex.submit(fn, s) for s in specs]
        return jobs


def make_executor(kind: str, folder: str, slots: List[str], slurm: Optional[SlurmOptions] = None,
                  cluster: Optional[str] = None) -> Executor:
    """The executor of ``--executor kind``; submitit keeps its files (pickles, job logs) in ``folder``."""
    try:
        import submitit
    except ImportError:
        raise RuntimeError("nnunet_losses_study needs submitit (pip install submitit; it is a dependency of "
                           "nnunet-losses)") from None
    os.makedirs(folder, exist_ok=True)
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=60 * 24 * 365, signal_delay_s=30)
        return Executor(ex, "local", slots, slots[0].split(":")[0])
    if kind != "slurm":
        raise ValueError(f"--executor must be local or slurm, got {kind!r}")
    cluster = cluster or "slurm"
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--executor slurm: SLURM's sbatch is not on this machine's PATH; run the command on a "
                         "node that submits SLURM jobs (a login node), or use --executor local")
    slurm = slurm or SlurmOptions()
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"name": "nnunet_losses_study", "timeout_min": slurm.time_min, "gpus_per_node": slurm.gpus,
              "mem_gb": slurm.mem_gb, "cpus_per_task": slurm.cpus, "slurm_partition": slurm.partition,
              "slurm_account": slurm.account, "slurm_array_parallelism": len(slots)}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return Executor(ex, "slurm", None, "cuda" if slurm.gpus else "cpu")

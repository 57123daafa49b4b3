"""Short-schedule trainers: ``<Trainer>_<suffix>`` = a real trainer with fewer epochs, a seed, one thread count.

The ONE generator of such subclasses, shared by the demo (``nnunet_losses_demo``), the study command
(``nnunet_losses_study --epochs/--iterations``), the benchmarks and the tests. A generated trainer is the
base trainer (loss, data, network, augmentation unchanged) with, where the :class:`Schedule` says so:

* ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch`` replaced (nnU-Net's
  defaults are 1000 x 250 and 50; the learning-rate schedule follows ``num_epochs`` as in nnU-Net);
* a seed: Python's, NumPy's and torch's generators are seeded before the base trainer builds the network
  (weights) and the loaders (patch sampling, augmentation), and nnU-Net's loader workers get the seeds
  ``seed * 1000 + worker`` (train) and ``seed * 1000 + 500 + worker`` (validation). With
  ``nnUNet_n_proc_DA=0`` a run is repeatable bit for bit on one machine; with workers each worker's draws
  are fixed, the order in which their batches arrive is not (nnU-Net's ``NonDetMultiThreadedAugmenter``).
  The environment variable ``NNUNET_LOSSES_SEED`` overrides the schedule's seed (one generated class serves
  every seed of a study), and the seed used is written to the training log;
* torch's thread count (``nnUNetv2_train -device cpu`` sets one thread per core; ``NNUNET_LOSSES_THREADS``
  overrides the schedule's, for runners that share the cores between runs), how often
  ``checkpoint_latest.pth`` is saved (nnU-Net: every 50 epochs; a short schedule that should resume
  after an interruption saves more often);
* deep supervision switched off (``deep_supervision=False``), as nnU-Net's ``nnUNetTrainerNoDeepSupervision``;
* nnU-Net's final validation of the fold skipped (when only a held-out test set is evaluated);
* for tests and tools that reuse one generated class with several schedules, the environment variables
  ``NNUNET_LOSSES_EPOCHS`` and ``NNUNET_LOSSES_ITERATIONS`` override the epochs and iterations, and
  ``NNUNET_LOSSES_FINAL_VALIDATION`` (``0`` or ``1``) whether the final validation runs (the study command
  removes all three from its runs' environment: there the study's definition is the schedule);
* a pause (``NNUNET_LOSSES_PAUSE_AT_EPOCH=E``): after epoch ``E`` the run saves ``checkpoint_latest.pth``
  and stops with exit code 0; ``nnUNetv2_train --c`` continues it with the same learning-rate schedule.

nnU-Net finds the classes by name in the folders of ``nnUNet_extTrainer``, so they are written as a small
module into such a folder (:func:`write_short_schedule_trainers`)::

    from nnunet_losses.nnunet.testing.short_schedule import Schedule, write_short_schedule_trainers
    write_short_schedule_trainers("ext", "demo_trainers", {"nnUNetTrainerCWCD_demo": "nnUNetTrainerCWCD"},
                                  Schedule(epochs=10, iterations=40, seed=0))
    # nnUNet_extTrainer=ext nnUNetv2_train 990 3d_fullres 0 -tr nnUNetTrainerCWCD_demo
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

from nnunet_losses._io import atomic_write_bytes

__all__ = ["Schedule", "SEED_VARIABLE", "PAUSE_VARIABLE", "THREADS_VARIABLE", "EPOCHS_VARIABLE", "ITERATIONS_VARIABLE",
           "FINAL_VALIDATION_VARIABLE", "SCHEDULE_VARIABLES", "short_schedule_trainer",
           "define_short_schedule_trainers", "write_short_schedule_trainers", "find_base_trainer"]

SEED_VARIABLE = "NNUNET_LOSSES_SEED"
PAUSE_VARIABLE = "NNUNET_LOSSES_PAUSE_AT_EPOCH"
THREADS_VARIABLE = "NNUNET_LOSSES_THREADS"
EPOCHS_VARIABLE = "NNUNET_LOSSES_EPOCHS"
ITERATIONS_VARIABLE = "NNUNET_LOSSES_ITERATIONS"
FINAL_VALIDATION_VARIABLE = "NNUNET_LOSSES_FINAL_VALIDATION"
#: the variables that change what a run trains (not how fast)
SCHEDULE_VARIABLES = (EPOCHS_VARIABLE, ITERATIONS_VARIABLE, FINAL_VALIDATION_VARIABLE)


@dataclass(frozen=True)
class Schedule:
    """What a generated trainer changes; ``None`` keeps the base trainer's value."""

    epochs: Optional[int] = None
    iterations: Optional[int] = None
    val_iterations: Optional[int] = None
    seed: Optional[int] = None
    threads: Optional[int] = None
    save_every: Optional[int] = None  # epochs between checkpoint_latest.pth saves (nnU-Net: 50)
    deep_supervision: Optional[bool] = None  # False: off, as nnUNetTrainerNoDeepSupervision
    final_validation: bool = True
    note: str = "short schedule"  # the text the log shows when the final validation is skipped

    def __post_init__(self):
        for name in ("epochs", "iterations", "val_iterations", "threads", "save_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"Schedule.{name} must be a whole number >= 1 or None, got {value!r}")
        if self.deep_supervision not in (None, True, False):
            raise ValueError(f"Schedule.deep_supervision must be True, False or None, got {self.deep_supervision!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"Schedule.seed must be a whole number >= 0 or None, got {self.seed!r}")


def _env_int(name: str) -> Optional[int]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


def _env_final_validation(default: bool) -> bool:
    raw = os.environ.get(FINAL_VALIDATION_VARIABLE, "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"{FINAL_VALIDATION_VARIABLE}={raw!r}: use 1 (run nnU-Net's final validation) or 0 (skip it)")
    return default if raw == "" else raw == "1"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the ones nnU-Net's trainer draws from)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def short_schedule_trainer(base: type, name: str, schedule: Schedule, module: str = __name__) -> type:
    """The subclass ``name`` of the trainer class ``base`` with ``schedule`` (see the module docstring)."""
    import torch

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        env_seed = _env_int(SEED_VARIABLE)
        seed = env_seed if env_seed is not None else schedule.seed
        if seed is not None:
            seed_everything(seed)
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.short_schedule_seed = seed
        epochs = _env_int(EPOCHS_VARIABLE) or schedule.epochs
        if epochs is not None:
            self.num_epochs = epochs
        iterations = _env_int(ITERATIONS_VARIABLE) or schedule.iterations
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
        if schedule.val_iterations is not None:
            self.num_val_iterations_per_epoch = schedule.val_iterations
        if schedule.save_every is not None:
            self.save_every = schedule.save_every
        if schedule.deep_supervision is not None:
            self.enable_deep_supervision = schedule.deep_supervision
        threads = _env_int(THREADS_VARIABLE) or schedule.threads
        if threads is not None:
            torch.set_num_threads(threads)

    def on_train_start(self):
        base.on_train_start(self)
        self.print_to_log_file(f"{name}: {base.__name__} with {self.num_epochs} epochs x "
                               f"{self.num_iterations_per_epoch} iterations, seed {self.short_schedule_seed}")

    def get_dataloaders(self):
        seed = self.short_schedule_seed
        if seed is None:
            return base.get_dataloaders(self)
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

        original = trainer_module.NonDetMultiThreadedAugmenter
        offsets = iter((0, 500))  # nnU-Net builds the training augmenter first, then the validation one

        def seeded(*args, **kwargs):
            offset = next(offsets, 500)
            kwargs["seeds"] = [seed * 1000 + offset + i for i in range(kwargs["num_processes"])]
            return original(*args, **kwargs)

        trainer_module.NonDetMultiThreadedAugmenter = seeded
        try:
            return base.get_dataloaders(self)
        finally:
            trainer_module.NonDetMultiThreadedAugmenter = original

    def on_epoch_end(self):
        base.on_epoch_end(self)
        pause = _env_int(PAUSE_VARIABLE)
        if pause is not None and self.current_epoch == pause and self.current_epoch < self.num_epochs:
            self.current_epoch -= 1  # nnU-Net's save_checkpoint stores current_epoch + 1 (it runs before the +1)
            try:
                self.save_checkpoint(os.path.join(self.output_folder, "checkpoint_latest.pth"))
            finally:
                self.current_epoch += 1
            self.print_to_log_file(f"{name}: paused after epoch {pause} ({PAUSE_VARIABLE}); continue with --c")
            for loader in (self.dataloader_train, self.dataloader_val):
                if hasattr(loader, "_finish"):
                    loader._finish()
            raise SystemExit(0)

    def perform_actual_validation(self, save_probabilities=False):
        if not _env_final_validation(schedule.final_validation):
            self.print_to_log_file(f"{name}: final validation skipped ({schedule.note})")
            return None
        return base.perform_actual_validation(self, save_probabilities)

    attrs = {"__init__": __init__, "__module__": module, "on_train_start": on_train_start,
             "get_dataloaders": get_dataloaders, "on_epoch_end": on_epoch_end,
             "perform_actual_validation": perform_actual_validation, "short_schedule": schedule}
    return type(name, (base,), attrs)


def find_base_trainer(name: str) -> type:
    """The trainer class ``name``: nnU-Net's own trainers, then this package's (``nnunet_losses_trainers``)."""
    import importlib

    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    if name != "nnUNetTrainer":
        try:
            package = importlib.import_module("nnunet_losses_trainers")  # by name: the trainers sit on top
        except ImportError:
            package = None
        if package is not None and name in getattr(package, "__all__", ()):
            return getattr(package, name)
    if name == "nnUNetTrainer":
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        return nnUNetTrainer
    import nnunetv2

    folder = os.path.join(os.path.dirname(nnunetv2.__file__), "training", "nnUNetTrainer")
    cls = recursive_find_python_class(folder, name, "nnunetv2.training.nnUNetTrainer")
    if cls is None:
        raise ValueError(f"trainer {name!r} not found among nnU-Net's and nnunet-losses' trainers")
    return cls


def define_short_schedule_trainers(namespace: dict, trainers: Mapping[str, str], schedule: Mapping) -> None:
    """Define ``{new name: base trainer name}`` in ``namespace`` (a generated module's ``globals()``)."""
    sched = Schedule(**schedule)
    for new, base in trainers.items():
        namespace[new] = short_schedule_trainer(find_base_trainer(base), new, sched, namespace["__name__"])


def write_short_schedule_trainers(folder: str, module: str, trainers: Mapping[str, str], schedule: Schedule,
                                  writer: str = "nnunet_losses") -> str:
    """Write ``<folder>/<module>.py`` defining ``{new name: base trainer name}`` with ``schedule``; its path.

    ``folder`` goes on ``nnUNet_extTrainer``. New names must be Python identifiers and differ from the base.
    """
    if not module.isidentifier():
        raise ValueError(f"module name {module!r} is not a Python identifier")
    for new, base in trainers.items():
        if not new.isidentifier() or new == base:
            raise ValueError(f"trainer name {new!r} must be a Python identifier different from its base {base!r}")
    os.makedirs(folder, exist_ok=True)
    fields = {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)}
    text = (f'"""Short-schedule trainers written by {writer} '
            f'(nnunet_losses.nnunet.testing.short_schedule)."""\n'
            "from nnunet_losses.nnunet.testing.short_schedule import define_short_schedule_trainers\n\n"
            f"TRAINERS = {json.dumps(dict(trainers), indent=1)}\n"
            f"SCHEDULE = {fields!r}\n\n"
            "define_short_schedule_trainers(globals(), TRAINERS, SCHEDULE)\n")
    return atomic_write_bytes(os.path.join(folder, f"{module}.py"), text.encode())


def short_names(trainers, suffix: str) -> Dict[str, str]:
    """``{<trainer><suffix>: <trainer>}`` for a list of trainer names."""
    return {f"{t}{suffix}": t for t in trainers}

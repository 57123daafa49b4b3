"""The short-schedule trainer generator: the written module, the classes it defines, bad names refused."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

pytest.importorskip("nnunetv2")

from nnunet_losses.nnunet.testing.short_schedule import Schedule, short_names, write_short_schedule_trainers  # noqa


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_written_module_defines_subclasses_with_the_schedule(tmp_path):
    pytest.importorskip("nnunet_losses_trainers")
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    import nnunet_losses_trainers as T

    schedule = Schedule(epochs=3, iterations=7, val_iterations=1, seed=5, threads=1, final_validation=False)
    path = write_short_schedule_trainers(str(tmp_path), "my_trainers",
                                         short_names(["nnUNetTrainer", "nnUNetTrainerCWCD"], "_x"), schedule)
    module = _load(path)
    assert issubclass(module.nnUNetTrainer_x, nnUNetTrainer) and module.nnUNetTrainer_x.__bases__ == (nnUNetTrainer,)
    assert module.nnUNetTrainerCWCD_x.__bases__ == (T.nnUNetTrainerCWCD,)
    assert module.nnUNetTrainerCWCD_x.short_schedule == schedule
    assert module.nnUNetTrainerCWCD_x.__name__ == "nnUNetTrainerCWCD_x"
    assert module.nnUNetTrainerCWCD_x.__module__ == "my_trainers"


def test_nnunet_finds_a_generated_trainer(tmp_path):
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    write_short_schedule_trainers(str(tmp_path), "found_trainers", {"nnUNetTrainer_q": "nnUNetTrainer"}, Schedule())
    before = set(sys.modules)
    cls = recursive_find_python_class(str(tmp_path), "nnUNetTrainer_q", None, base_folder=str(tmp_path),
                                      cleanup_imports_from_base_folder=True)
    assert cls is not None and cls.__name__ == "nnUNetTrainer_q"
    for name in set(sys.modules) - before:
        if name == "found_trainers":
            del sys.modules[name]


def test_bad_names_and_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="identifier"):
        write_short_schedule_trainers(str(tmp_path), "m", {"bad-name": "nnUNetTrainer"}, Schedule())
    with pytest.raises(ValueError, match="different from its base"):
        write_short_schedule_trainers(str(tmp_path), "m", {"nnUNetTrainer": "nnUNetTrainer"}, Schedule())
    with pytest.raises(ValueError, match="epochs"):
        Schedule(epochs=0)
    with pytest.raises(ValueError, match="seed"):
        Schedule(seed=-1)
    assert not os.listdir(tmp_path)


class _FakeTrainer:
    """Stands in for nnU-Net's trainer: builds two loader augmenters the way nnUNetTrainer.get_dataloaders does."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None):
        import numpy as np

        self.first_draw = np.random.random()  # what the base trainer draws while it builds the network

    def get_dataloaders(self):
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as m

        train = m.NonDetMultiThreadedAugmenter(data_loader=None, transform=None, num_processes=3, seeds=None)
        val = m.NonDetMultiThreadedAugmenter(data_loader=None, transform=None, num_processes=2, seeds=None)
        return train, val


def test_seed_reaches_the_generators_and_the_loader_workers(monkeypatch):
    import numpy as np
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as m

    from nnunet_losses.nnunet.testing.short_schedule import SEED_VARIABLE, short_schedule_trainer

    original = m.NonDetMultiThreadedAugmenter
    monkeypatch.setattr(m, "NonDetMultiThreadedAugmenter", lambda **kw: kw["seeds"])
    monkeypatch.delenv(SEED_VARIABLE, raising=False)
    cls = short_schedule_trainer(_FakeTrainer, "Fake_x", Schedule(seed=7))
    a, b = cls(None, "2d", 0, None), cls(None, "2d", 0, None)
    np.random.seed(7)
    assert a.first_draw == b.first_draw == np.random.random()  # seeded before the base trainer's draws
    assert a.get_dataloaders() == ([7000, 7001, 7002], [7500, 7501])
    assert m.NonDetMultiThreadedAugmenter is not original and m.NonDetMultiThreadedAugmenter(seeds=1) == 1  # restored
    monkeypatch.setenv(SEED_VARIABLE, "3")  # one generated class serves every seed of a study
    c = cls(None, "2d", 0, None)
    assert c.short_schedule_seed == 3 and c.get_dataloaders() == ([3000, 3001, 3002], [3500, 3501])
    unseeded = short_schedule_trainer(_FakeTrainer, "Fake_y", Schedule())
    monkeypatch.delenv(SEED_VARIABLE)
    assert unseeded(None, "2d", 0, None).get_dataloaders() == (None, None)


class _Base:
    """The attributes of nnU-Net's trainer a schedule changes, with nnU-Net's defaults."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None):
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1000, 250, 50
        self.enable_deep_supervision = True
        self.validated = False

    def print_to_log_file(self, *args):
        pass

    def perform_actual_validation(self, save_probabilities=False):
        self.validated = True


def test_environment_overrides_and_deep_supervision(monkeypatch):
    from nnunet_losses.nnunet.testing.short_schedule import short_schedule_trainer

    for name in ("NNUNET_LOSSES_EPOCHS", "NNUNET_LOSSES_ITERATIONS", "NNUNET_LOSSES_FINAL_VALIDATION"):
        monkeypatch.delenv(name, raising=False)
    tiny = short_schedule_trainer(_Base, "B_tiny", Schedule(epochs=1, iterations=2, val_iterations=1))
    no_ds = short_schedule_trainer(_Base, "B_nods", Schedule(epochs=1, deep_supervision=False, final_validation=False))
    t = tiny(None, None, 0, None)
    assert (t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch) == (1, 2, 1)
    assert t.enable_deep_supervision is True
    assert no_ds(None, None, 0, None).enable_deep_supervision is False
    t.perform_actual_validation()
    assert t.validated
    monkeypatch.setenv("NNUNET_LOSSES_EPOCHS", "4")
    monkeypatch.setenv("NNUNET_LOSSES_ITERATIONS", "3")
    monkeypatch.setenv("NNUNET_LOSSES_FINAL_VALIDATION", "0")
    t = tiny(None, None, 0, None)
    assert (t.num_epochs, t.num_iterations_per_epoch) == (4, 3)
    t.perform_actual_validation()
    assert not t.validated
    monkeypatch.setenv("NNUNET_LOSSES_FINAL_VALIDATION", "1")
    v = no_ds(None, None, 0, None)
    v.perform_actual_validation()
    assert v.validated  # the variable wins over the schedule's final_validation=False
    monkeypatch.setenv("NNUNET_LOSSES_FINAL_VALIDATION", "yes")
    with pytest.raises(ValueError, match="NNUNET_LOSSES_FINAL_VALIDATION='yes'"):
        t.perform_actual_validation()
    with pytest.raises(ValueError, match="deep_supervision"):
        Schedule(deep_supervision="off")


def test_study_runs_ignore_the_schedule_variables(monkeypatch):
    """A study's definition is its schedule: a stray variable in the user's shell must not change it."""
    from nnunet_losses.nnunet.tools.study.run import run_environment

    monkeypatch.setenv("NNUNET_LOSSES_EPOCHS", "1")
    monkeypatch.setenv("NNUNET_LOSSES_FINAL_VALIDATION", "0")
    env = run_environment({"nnunet_paths": {}, "results": "/r", "trainers_dir": "/t", "seed": 0, "options": {}})
    assert "NNUNET_LOSSES_EPOCHS" not in env and "NNUNET_LOSSES_FINAL_VALIDATION" not in env

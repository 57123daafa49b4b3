"""Shared fixtures: tiny nnU-Net datasets, really planned and preprocessed by nnU-Net (session-scoped).

``nnunet_tiny`` (session): three synthetic datasets in nnU-Net's raw format
(:mod:`nnunet_losses.nnunet.testing.synthetic`), planned and preprocessed once with the real
``nnUNetv2_plan_and_preprocess`` CLI, with shrunk plans ``nnUNetTinyPlans``
(:mod:`nnunet_losses.nnunet.testing.tiny_plans`: 4 stages, 4-16 features, patch 32x32 / 16^3, batch 2)
and a ``splits_final.json`` with fold 0 (3 train / 1 val) and fold 1 (train = val = case 0):

========== ============================ ======= ====================================================
key        folder                       configs content
========== ============================ ======= ====================================================
labels3d   Dataset990_SynthLabels3D     2d,     4 cases 32^3, labels 1 (large), 2 (small spheres),
                                        3d_fullres  ignore label 3 (label training, ignore label)
regions2d  Dataset991_SynthRegions2D    2d      4 cases 64x64 PNG, regions whole = (1, 2), core = 2,
                                                ignore label 3 (region training, ignore channel)
vessels2d  Dataset992_SynthVessels2D    2d      4 cases 64x64 PNG, thin lines 1, ignore 2 outside a disc
========== ============================ ======= ====================================================

Usage: ``nnunet_tiny.env(results_dir)`` is an environment for subprocesses of nnU-Net's CLIs
(``nnUNet_raw``/``_preprocessed``/``_results``, one thread, no data-augmentation workers);
``nnunet_tiny.cli("nnUNetv2_predict")`` the path of a CLI of this environment;
``nnunet_tiny.use(monkeypatch, results_dir)`` sets the same variables in-process and
``nnunet_tiny.trainer(cls, key, config)`` makes an in-process trainer on the tiny plans.
Never write into ``nnunet_tiny.raw`` or ``.preprocessed`` from a test (shared by the session).

``tiny_trainers_dir`` (session): a folder, for ``nnUNet_extTrainer``, holding test-only subclasses
of every trainer: ``<name>_tiny`` (deep supervision on) and ``<name>_tinyNoDS`` (off), written by the
package's short-schedule generator (``nnunet_losses.nnunet.testing.short_schedule``): 1 epoch of 2
iterations unless ``NNUNET_LOSSES_EPOCHS`` / ``NNUNET_LOSSES_ITERATIONS`` say otherwise;
``NNUNET_LOSSES_FINAL_VALIDATION=0`` skips the final validation. Using it also proves that a user's own
``nnUNet_extTrainer`` coexists with ours.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict

import pytest

#: subprocesses (nnU-Net's CLIs, worker processes, scripts run by tests) import the fixtures too
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p and p != TESTS_DIR])

DATASETS = {"labels3d": (990, "SynthLabels3D"), "regions2d": (991, "SynthRegions2D"),
            "vessels2d": (992, "SynthVessels2D")}
TINY_PLANS = "nnUNetTinyPlans"


def cli_path(name: str) -> str:
    """Path of a console script of the running interpreter's environment."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not installed next to {sys.executable}")
    return path


@dataclass
class TinyNnUNet:
    root: str
    raw: str
    preprocessed: str
    datasets: Dict[str, str] = field(default_factory=dict)  # key -> DatasetXXX_Name
    plans: str = TINY_PLANS

    def env(self, results: str, **extra) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({"nnUNet_raw": self.raw, "nnUNet_preprocessed": self.preprocessed, "nnUNet_results": str(results),
                    "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1",
                    "nnUNet_compile": "0", "PYTHONWARNINGS": "ignore"})
        env.pop("NNUNET_LOSSES_OPTIONS", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def use(self, monkeypatch, results: str) -> None:
        for k, v in self.env(results).items():
            if k.startswith("nnUNet") or k == "OMP_NUM_THREADS":
                monkeypatch.setenv(k, v)
        monkeypatch.delenv("NNUNET_LOSSES_OPTIONS", raising=False)

    @staticmethod
    def cli(name: str) -> str:
        return cli_path(name)

    def folder(self, key: str) -> str:
        return os.path.join(self.preprocessed, self.datasets[key])

    def trainer(self, cls, key: str, config: str, deep_supervision: bool = True, fold: int = 0, **attrs):
        """An in-process instance of trainer class ``cls`` on the tiny plans, on the CPU; deep
        supervision and ``attrs`` (e.g. ``num_epochs``) are set before ``initialize()``. Call
        :meth:`use` first so that nnU-Net's paths point at this dataset and a results folder."""
        import torch
        from batchgenerators.utilities.file_and_folder_operations import join, load_json

        folder = self.folder(key)
        plans = load_json(join(folder, f"{self.plans}.json"))
        plans["continue_training"] = False

        class Variant(cls):
            def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.enable_deep_supervision = deep_supervision
                for k, v in attrs.items():
                    setattr(self, k, v)

        Variant.__name__ = f"{cls.__name__}_{'ds' if deep_supervision else 'nods'}"
        return Variant(plans=plans, configuration=config, fold=fold,
                       dataset_json=load_json(join(folder, "dataset.json")), device=torch.device("cpu"))


@pytest.fixture(scope="session")
def nnunet_tiny(tmp_path_factory) -> TinyNnUNet:
    pytest.importorskip("nnunetv2")
    from nnunet_losses.nnunet.testing import synthetic
    from nnunet_losses.nnunet.testing.tiny_plans import write_tiny_plans, write_tiny_splits

    root = tmp_path_factory.mktemp("nnunet_tiny")
    tiny = TinyNnUNet(str(root), str(root / "raw"), str(root / "preprocessed"))
    os.makedirs(tiny.raw)
    os.makedirs(tiny.preprocessed)
    makers = {"labels3d": synthetic.make_label_dataset_3d, "regions2d": synthetic.make_region_dataset_2d,
              "vessels2d": synthetic.make_label_dataset_2d}
    for key, (did, name) in DATASETS.items():
        makers[key](tiny.raw, dataset_id=did, name=name)
        tiny.datasets[key] = synthetic.dataset_folder_name(did, name)
    ids = [str(d) for d, _ in DATASETS.values()]
    proc = subprocess.run([cli_path("nnUNetv2_plan_and_preprocess"), "-d", *ids, "-c", "2d", "3d_fullres",
                           "-np", "1", "-npfp", "1"],
                          # the planner calls torch.set_num_threads(nnUNet_n_proc_DA): must be >= 1 here
                          env=tiny.env(str(root / "results"), nnUNet_n_proc_DA=1),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in DATASETS:
        write_tiny_plans(tiny.folder(key))
        write_tiny_splits(tiny.folder(key))
    # nnUNetTrainerDWCE trains with stored maps by default: build them here, once, with the real CLI, so
    # that no test writes into the shared folder (tests of missing/stale maps work on copies)
    for key, (did, _) in DATASETS.items():
        configs = ["2d", "3d_fullres"] if key.endswith("3d") else ["2d"]  # nnU-Net plans no 3d for 2D data
        proc = subprocess.run([cli_path("nnunet_losses_precompute"), "-d", str(did), "-c", *configs,
                               "-p", tiny.plans, "--maps", "dwce", "-np", "1", "--no-progress"],
                              env=tiny.env(str(root / "results")), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tiny


@pytest.fixture(scope="session")
def tiny_trainers_dir(tmp_path_factory) -> str:
    import nnunet_losses_trainers
    from nnunet_losses.nnunet.testing.short_schedule import Schedule, short_names, write_short_schedule_trainers

    folder = str(tmp_path_factory.mktemp("user_ext_trainers"))
    tiny = dict(epochs=1, iterations=2, val_iterations=1, note="NNUNET_LOSSES_FINAL_VALIDATION=0")
    for module, suffix, deep_supervision in (("tiny_test_trainers", "_tiny", None),
                                             ("tiny_test_trainers_nods", "_tinyNoDS", False)):
        write_short_schedule_trainers(folder, module, short_names(nnunet_losses_trainers.__all__, suffix),
                                      Schedule(**tiny, deep_supervision=deep_supervision), writer="the tests")
    return folder

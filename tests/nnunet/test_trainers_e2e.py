"""Every trainer through nnU-Net's own commands: nnUNetv2_train, --c (resume), nnUNetv2_predict.

Tiny datasets and plans come from ``conftest.nnunet_tiny`` (real nnUNetv2_plan_and_preprocess).
The trainers run as test-only subclasses (``<name>_tiny``: 1-2 epochs of 2 iterations) from a
folder in the user's own ``nnUNet_extTrainer``; the package's ``.pth`` appends our folder after it,
so this also shows that a user's external trainers and ours coexist. The chains run two at a time
(two CPU cores); each trainer then has its own test of the results.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

nnunet_losses_trainers = pytest.importorskip("nnunet_losses_trainers")
pytest.importorskip("nnunetv2")

TRAINERS = list(nnunet_losses_trainers.TRAINERS)
# trainer -> (dataset key, configuration, deep supervision): every trainer once, and every
# combination of {3D labels + ignore label, 2D regions + ignore channel} x {DS on, off} x {2d, 3d}
# covered by at least three trainers (tests/test_trainers_matrix.py runs the full matrix in-process).
PLAN = {
    "nnUNetTrainerCWCD": ("labels3d", "3d_fullres", True),
    "nnUNetTrainerCombo": ("labels3d", "3d_fullres", True),
    "nnUNetTrainerCETopKDice": ("labels3d", "3d_fullres", True),
    "nnUNetTrainerGDL": ("labels3d", "2d", False),
    "nnUNetTrainerDWCE": ("labels3d", "2d", False),
    "nnUNetTrainerOsC": ("labels3d", "2d", False),
    "nnUNetTrainerCWCE": ("regions2d", "2d", True),
    "nnUNetTrainerSDL": ("regions2d", "2d", True),
    "nnUNetTrainerAsymFbeta": ("regions2d", "2d", True),
    "nnUNetTrainerFocal": ("regions2d", "2d", False),
    "nnUNetTrainerTversky": ("regions2d", "2d", False),
    "nnUNetTrainerFocalDice": ("regions2d", "2d", False),
    "nnUNetTrainerSkeletonRecall": ("labels3d", "3d_fullres", True),
    "nnUNetTrainerclDice": ("regions2d", "2d", True),
}
ALLOWED = {"labels3d": {0, 1, 2}, "regions2d": {0, 1, 2}}  # prediction values (regions: regions_class_order)
# also: --val --npz with nnU-Net's real validation. (nnUNetv2_find_best_configuration works from the
# result folders' names and never imports a trainer class, so it needs nothing from us.)
FULL_VALIDATION = "nnUNetTrainerCWCD"


def test_plan_covers_every_trainer():
    assert sorted(PLAN) == sorted(TRAINERS)
    assert len(TRAINERS) == 14


def _run(cmd, env, timeout=600):
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return {"cmd": " ".join(cmd), "rc": p.returncode, "out": (p.stdout + p.stderr)[-6000:], "s": time.time() - t0}


def _chain(name, tiny, ext_dir, root):
    key, config, ds = PLAN[name]
    tr = name + ("_tiny" if ds else "_tinyNoDS")
    did = tiny.datasets[key][7:10]
    results = os.path.join(root, name)
    env = tiny.env(results, nnUNet_extTrainer=ext_dir, NNUNET_LOSSES_ITERATIONS=2, NNUNET_LOSSES_FINAL_VALIDATION=0)
    train = [tiny.cli("nnUNetv2_train"), did, config, "0", "-p", tiny.plans, "-tr", tr, "-device", "cpu"]
    steps = {"train": _run(train, {**env, "NNUNET_LOSSES_EPOCHS": "1"})}
    if steps["train"]["rc"] == 0:
        steps["resume"] = _run(train + ["--c"], {**env, "NNUNET_LOSSES_EPOCHS": "2"})
    if steps.get("resume", {}).get("rc") == 0 and name == FULL_VALIDATION:
        env_val = {**env, "NNUNET_LOSSES_EPOCHS": "2"}
        env_val.pop("NNUNET_LOSSES_FINAL_VALIDATION")
        steps["val"] = _run(train + ["--val", "--npz"], env_val)
    if steps.get("resume", {}).get("rc") == 0:
        raw = os.path.join(tiny.raw, tiny.datasets[key], "imagesTr")
        case = sorted(os.listdir(raw))[-1]  # the validation case of fold 0
        inp, out = os.path.join(root, name + "_in"), os.path.join(root, name + "_pred")
        os.makedirs(inp)
        shutil.copy(os.path.join(raw, case), inp)
        steps["predict"] = _run([tiny.cli("nnUNetv2_predict"), "-i", inp, "-o", out, "-d", did, "-c", config, "-f", "0",
                                 "-p", tiny.plans, "-tr", tr, "-device", "cpu", "-npp", "0", "-nps", "0",
                                 "--disable_tta", "--disable_progress_bar", "-chk", "checkpoint_final.pth"], env)
        steps["case"], steps["pred_dir"] = case, out
    steps["output_folder"] = os.path.join(results, tiny.datasets[key], f"{tr}__{tiny.plans}__{config}", "fold_0")
    return steps


@pytest.fixture(scope="module")
def e2e(nnunet_tiny, tiny_trainers_dir, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("e2e"))
    with ThreadPoolExecutor(max_workers=2) as ex:
        runs = dict(zip(TRAINERS, ex.map(lambda n: _chain(n, nnunet_tiny, tiny_trainers_dir, root), TRAINERS)))
    with open(os.path.join(root, "timings.json"), "w") as f:  # seconds per command, for the record
        json.dump({n: {k: round(v["s"], 1) for k, v in r.items() if isinstance(v, dict)} for n, r in runs.items()}, f,
                  indent=1)
    return runs


def _read(path):
    if path.endswith(".png"):
        from PIL import Image
        return np.asarray(Image.open(path))
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _check_step(steps, step):
    assert step in steps, f"{step} did not run; earlier steps: " + "; ".join(
        f"{k}: rc={v['rc']}\n{v['out'][-3000:]}" for k, v in steps.items() if isinstance(v, dict))
    s = steps[step]
    assert s["rc"] == 0, f"{s['cmd']} failed (rc={s['rc']}):\n{s['out']}"


@pytest.mark.parametrize("name", TRAINERS)
def test_train_resume_predict(e2e, nnunet_tiny, name):
    import torch

    steps = e2e[name]
    key, config, ds = PLAN[name]
    for step in ("train", "resume", "predict"):
        _check_step(steps, step)
    # nnU-Net found the user's trainer folder first, then ours (both in nnUNet_extTrainer)
    assert "tiny_test_trainers" in steps["train"]["out"]
    folder = steps["output_folder"]
    ckpt = torch.load(os.path.join(folder, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert ckpt["current_epoch"] == 2, "resume did not continue to the second epoch"
    logs = []
    for f in sorted(os.listdir(folder)):
        if f.startswith("training_log"):
            with open(os.path.join(folder, f)) as fh:
                logs.append(fh.read())
    def epochs(log):
        return [int(e) for e in re.findall(r": Epoch (\d+)\s*$", log, re.M)]

    assert [epochs(log) for log in logs if epochs(log)] == [[0], [1]], "the resumed run did not start at epoch 1"
    with open(os.path.join(folder, "loss_options.json")) as f:
        record = json.load(f)
    assert record["trainer"].startswith(name)
    assert record["fixed"]["sigmoid"] is (key == "regions2d")
    assert record["fixed"]["ignore_index"] == (3 if key == "labels3d" else None)
    # prediction: a label image of the input's shape with the dataset's label values
    case = steps["case"].replace("_0000", "")
    pred = _read(os.path.join(steps["pred_dir"], case))
    image = _read(os.path.join(nnunet_tiny.raw, nnunet_tiny.datasets[key], "imagesTr", steps["case"]))
    assert pred.shape == image.shape
    assert set(np.unique(pred).tolist()) <= ALLOWED[key]


def test_full_validation(e2e):
    steps = e2e[FULL_VALIDATION]
    _check_step(steps, "val")
    val = os.path.join(steps["output_folder"], "validation")
    with open(os.path.join(val, "summary.json")) as f:
        summary = json.load(f)
    assert set(summary["mean"]) == {"1", "2"}
    assert any(f.endswith(".npz") for f in os.listdir(val))
    # --val rebuilt the trainer from the checkpoint: the loss options were restored, not rewritten
    assert "loss: CWCDLoss" in steps["val"]["out"]

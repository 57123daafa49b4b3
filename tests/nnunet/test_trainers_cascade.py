"""The 3d_lowres -> 3d_cascade_fullres cascade through nnU-Net's own commands, with our trainers.

The tiny 3D dataset (``conftest.nnunet_tiny``, 4 cases of 32^3) is too small for nnU-Net's planner
to make a ``3d_lowres`` stage, so :func:`fixtures.cascade_plans.write_cascade_plans` adds
one the way ``ExperimentPlanner`` writes it (spacing x2, median shape 16^3, own data identifier,
``next_stage``) plus ``3d_cascade_fullres`` (inherits ``3d_fullres``, ``previous_stage``), in a
private copy of the preprocessed folder; ``nnUNetv2_preprocess -c 3d_lowres`` then preprocesses it.

Per trainer, as nnU-Net documents: nnUNetTrainerCWCD (contours computed online),
nnUNetTrainerDWCE (its weight map is computed per batch, or stored when its ``maps`` option says so:
a cascade stage then falls back to online maps, because stored maps do not follow ``seg_prev``) and
nnUNetTrainerSkeletonRecall (its default ``maps=loader``: the skeleton computed in the loader workers,
after nnU-Net has moved ``seg_prev`` into the input channels):

1. ``nnUNetv2_train 990 3d_lowres 0`` (2 epochs and nnU-Net's final validation, which writes
   ``predicted_next_stage/3d_cascade_fullres``). nnU-Net's cascade needs a lowres prediction of
   *every* case (normally from the validation of all five folds); to need one lowres run only, the
   private split's fold 0 trains on 2 cases and validates on all 4.
2. ``nnUNetv2_train 990 3d_cascade_fullres 0`` (reads those predictions as ``seg_prev``, one-hot
   input channels), then ``--c`` for a second epoch.
3. ``nnUNetv2_predict -c 3d_lowres``, then ``nnUNetv2_predict -c 3d_cascade_fullres
   -prev_stage_predictions <lowres output>``.

Also: ``maps="stored"`` asked for on a cascade stage is refused with a clear error before any work.
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

pytest.importorskip("nnunetv2")
pytest.importorskip("nnunet_losses_trainers")

from fixtures.cascade_plans import CASCADE_PLANS, add_cascade, write_cascade_plans  # noqa: E402

KEY = "labels3d"
TRAINERS = ("nnUNetTrainerCWCD", "nnUNetTrainerDWCE", "nnUNetTrainerSkeletonRecall")
ALLOWED = {0, 1, 2}  # labels of the prediction (3 is the ignore label, never predicted)
N_FOREGROUND = 2  # labels 1 and 2: the cascade adds one input channel each (seg_prev one-hot)


def _run(cmd, env, timeout=600):
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return {"cmd": " ".join(cmd), "rc": p.returncode, "out": (p.stdout + p.stderr)[-6000:], "s": time.time() - t0}


def _check(steps, step):
    assert step in steps, f"{step} did not run; earlier steps: " + "; ".join(
        f"{k}: rc={v['rc']}\n{v['out'][-3000:]}" for k, v in steps.items() if isinstance(v, dict) and "rc" in v)
    s = steps[step]
    assert s["rc"] == 0, f"{s['cmd']} failed (rc={s['rc']}):\n{s['out']}"


def _children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _read(path):
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


class _Setup:
    def __init__(self, tiny, root, ext_dir):
        self.tiny, self.root, self.ext_dir = tiny, root, ext_dir
        self.name = tiny.datasets[KEY]
        self.did = self.name[7:10]
        self.pre = os.path.join(root, "pre")
        self.folder = os.path.join(self.pre, self.name)

    def env(self, results, pre=None, **extra):
        return self.tiny.env(results, nnUNet_preprocessed=pre or self.pre, nnUNet_extTrainer=self.ext_dir,
                             NNUNET_LOSSES_ITERATIONS=2, **extra)

    def train(self, tr, config, *extra):
        return [self.tiny.cli("nnUNetv2_train"), self.did, config, "0", "-p", CASCADE_PLANS, "-tr", tr,
                "-device", "cpu", *extra]

    def predict(self, tr, config, inp, out, *extra):
        return [self.tiny.cli("nnUNetv2_predict"), "-i", inp, "-o", out, "-d", self.did, "-c", config, "-f", "0",
                "-p", CASCADE_PLANS, "-tr", tr, "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta",
                "--disable_progress_bar", "-chk", "checkpoint_final.pth", *extra]


def _chain(s: _Setup, name: str):
    tr = name + "_tiny"
    results = os.path.join(s.root, "results_" + name)
    env = s.env(results)
    steps = {"lowres": _run(s.train(tr, "3d_lowres"), {**env, "NNUNET_LOSSES_EPOCHS": "2"})}
    if steps["lowres"]["rc"] == 0:
        steps["cascade"] = _run(s.train(tr, "3d_cascade_fullres"), {**env, "NNUNET_LOSSES_EPOCHS": "1", "NNUNET_LOSSES_FINAL_VALIDATION": "0"})
    if steps.get("cascade", {}).get("rc") == 0:
        steps["resume"] = _run(s.train(tr, "3d_cascade_fullres", "--c"),
                               {**env, "NNUNET_LOSSES_EPOCHS": "2", "NNUNET_LOSSES_FINAL_VALIDATION": "0"})
    if steps.get("resume", {}).get("rc") == 0:
        raw = os.path.join(s.tiny.raw, s.name, "imagesTr")
        case = sorted(os.listdir(raw))[-1]
        inp = os.path.join(s.root, name + "_in")
        os.makedirs(inp)
        shutil.copy(os.path.join(raw, case), inp)
        low, casc = os.path.join(s.root, name + "_pred_lowres"), os.path.join(s.root, name + "_pred_cascade")
        steps["predict_lowres"] = _run(s.predict(tr, "3d_lowres", inp, low), env)
        if steps["predict_lowres"]["rc"] == 0:
            steps["predict_cascade"] = _run(s.predict(tr, "3d_cascade_fullres", inp, casc,
                                                      "-prev_stage_predictions", low), env)
        steps["paths"] = {"case": case, "lowres": low, "cascade": casc}
    base = os.path.join(results, s.name)
    steps["folders"] = {c: os.path.join(base, f"{tr}__{CASCADE_PLANS}__{c}") for c in ("3d_lowres",
                                                                                     "3d_cascade_fullres")}
    return steps


def _stored_maps_run(s: _Setup, pre: str):
    """nnUNetTrainerCWCD with maps="stored" on 3d_cascade_fullres, in its own copy ``pre`` of the data."""
    env = s.env(os.path.join(s.root, "results_stored"), pre=pre, NNUNET_LOSSES_EPOCHS=1, NNUNET_LOSSES_FINAL_VALIDATION=0,
                NNUNET_LOSSES_OPTIONS='{"maps": "stored"}')
    step = _run(s.train("nnUNetTrainerCWCD_tiny", "3d_cascade_fullres"), env)
    step["maps_dir"] = os.path.join(pre, s.name, "nnUNetPlans_3d_fullres", "nnunet_losses_maps")
    return step


@pytest.fixture(scope="module")
def cascade(nnunet_tiny, tiny_trainers_dir, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cascade"))
    s = _Setup(nnunet_tiny, root, tiny_trainers_dir)
    t0, cpu0 = time.time(), _children_cpu()
    # never write into the session's shared folders; no stored maps another test may have left there
    shutil.copytree(nnunet_tiny.folder(KEY), s.folder, ignore=shutil.ignore_patterns("nnunet_losses_maps"))
    cases = sorted(f[: -len(".nii.gz")] for f in os.listdir(os.path.join(s.folder, "gt_segmentations")))
    with open(os.path.join(s.folder, "splits_final.json"), "w") as f:  # see the module docstring
        json.dump([{"train": cases[:2], "val": cases}], f)
    write_cascade_plans(s.folder)
    prep = _run([nnunet_tiny.cli("nnUNetv2_preprocess"), "-d", s.did, "-c", "3d_lowres", "-plans_name",
                 CASCADE_PLANS, "-np", "1"], s.env(os.path.join(root, "unused"), nnUNet_n_proc_DA=1))
    assert prep["rc"] == 0, prep["out"]
    pre_stored = os.path.join(root, "pre_stored")
    shutil.copytree(s.folder, os.path.join(pre_stored, s.name))
    jobs = {n: (lambda n=n: _chain(s, n)) for n in TRAINERS}
    jobs["stored"] = lambda: _stored_maps_run(s, pre_stored)
    with ThreadPoolExecutor(max_workers=2) as ex:
        futures = {k: ex.submit(f) for k, f in jobs.items()}
        runs = {k: f.result() for k, f in futures.items()}
    timings = {"preprocess_3d_lowres": round(prep["s"], 1), "total": round(time.time() - t0, 1),
               "cpu_s_all_commands": round(_children_cpu() - cpu0, 1),
               "stored": round(runs["stored"]["s"], 1),
               **{n: {k: round(v["s"], 1) for k, v in runs[n].items() if isinstance(v, dict) and "s" in v}
                  for n in TRAINERS}}
    with open(os.path.join(root, "timings.json"), "w") as f:  # seconds per command, for the record
        json.dump(timings, f, indent=1)
    return s, runs, prep


# ---------------------------------------------------------------- plans


def test_cascade_plans_are_nnunet_plans(cascade):
    """nnU-Net's PlansManager reads the stages as the planner's would be read; lowres data is half size."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    s, _, _ = cascade
    pm = PlansManager(os.path.join(s.folder, f"{CASCADE_PLANS}.json"))
    low, full, casc = (pm.get_configuration(c) for c in ("3d_lowres", "3d_fullres", "3d_cascade_fullres"))
    assert low.next_stage_names == ["3d_cascade_fullres"] and low.previous_stage_name is None
    assert casc.previous_stage_name == "3d_lowres" and casc.next_stage_names is None
    assert casc.data_identifier == full.data_identifier == "nnUNetPlans_3d_fullres"  # shared fullres data
    assert low.data_identifier == f"{CASCADE_PLANS}_3d_lowres"
    assert list(low.spacing) == [2 * x for x in full.spacing]
    assert (low.batch_dice, full.batch_dice, casc.batch_dice) == (False, True, True)  # the planner's choice
    import blosc2
    data = os.path.join(s.folder, low.data_identifier)
    segs = sorted(f for f in os.listdir(data) if f.endswith("_seg.b2nd"))
    assert len(segs) == 4
    for f in segs:
        full_shape = blosc2.open(os.path.join(s.folder, full.data_identifier, f), mode="r").shape
        assert blosc2.open(os.path.join(data, f), mode="r").shape == (1, *[n // 2 for n in full_shape[1:]])


def test_add_cascade_rejects_bad_input():
    full = {"spacing": [1, 1, 1], "patch_size": [16, 16, 16], "median_image_size_in_voxels": [32, 32, 32],
            "data_identifier": "P_3d_fullres", "architecture": {"arch_kwargs": {"strides": [[1, 1, 1], [2, 2, 2]]}}}
    plans = {"plans_name": "P", "configurations": {"3d_fullres": full}}
    out = add_cascade(plans)
    assert list(out["configurations"]) == ["3d_lowres", "3d_fullres", "3d_cascade_fullres"]
    assert out["configurations"]["3d_lowres"]["patch_size"] == [16, 16, 16]
    assert "3d_lowres" not in plans["configurations"]  # the input is not modified
    with pytest.raises(ValueError, match="3d_fullres"):
        add_cascade({"plans_name": "P", "configurations": {"2d": {}}})
    with pytest.raises(ValueError, match="already"):
        add_cascade(out)
    with pytest.raises(ValueError, match="spacing_factor"):
        add_cascade(plans, spacing_factor=1)


# ---------------------------------------------------------------- the cascade, per trainer


def _epochs(folder):
    logs = [open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.startswith("training_log")]
    return [e for e in ([int(x) for x in re.findall(r": Epoch (\d+)\s*$", log, re.M)] for log in logs) if e]


@pytest.mark.parametrize("name", TRAINERS)
def test_lowres_writes_next_stage(cascade, name):
    s, runs, _ = cascade
    steps = runs[name]
    _check(steps, "lowres")
    folder = steps["folders"]["3d_lowres"]
    assert _epochs(os.path.join(folder, "fold_0")) == [[0, 1]]
    with open(os.path.join(folder, "fold_0", "loss_options.json")) as f:
        assert json.load(f)["resolved"].get("batch_dice", False) is False  # from the 3d_lowres plans
    nxt = os.path.join(folder, "predicted_next_stage", "3d_cascade_fullres")
    import blosc2
    files = sorted(os.listdir(nxt))
    assert files == sorted(f.replace("_seg", "") for f in os.listdir(os.path.join(s.folder, "nnUNetPlans_3d_fullres"))
                           if f.endswith("_seg.b2nd"))
    for f in files:  # resampled to the fullres grid: the cascade's seg_prev
        prev = blosc2.open(os.path.join(nxt, f), mode="r")[:]
        seg = blosc2.open(os.path.join(s.folder, "nnUNetPlans_3d_fullres", f.replace(".b2nd", "_seg.b2nd")), mode="r")
        assert prev.shape == seg.shape[1:]  # nnU-Net stores seg_prev without the channel axis
        assert set(np.unique(prev).tolist()) <= ALLOWED


@pytest.mark.parametrize("name", TRAINERS)
def test_cascade_trains_and_resumes_on_seg_prev(cascade, name):
    import torch

    _, runs, _ = cascade
    steps = runs[name]
    for step in ("cascade", "resume"):
        _check(steps, step)
    fold = os.path.join(steps["folders"]["3d_cascade_fullres"], "fold_0")
    ckpt = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert ckpt["current_epoch"] == 2
    first = next(v for k, v in ckpt["network_weights"].items() if k.endswith("weight") and v.ndim == 5)
    assert first.shape[1] == 1 + N_FOREGROUND, "the cascade network did not get seg_prev as one-hot input channels"
    assert _epochs(fold) == [[0], [1]], "the resumed run did not start at epoch 1"
    with open(os.path.join(fold, "loss_options.json")) as f:
        record = json.load(f)
    assert record["trainer"] == name + "_tiny" and record["fixed"]["ignore_index"] == 3
    assert record["resolved"].get("batch_dice", True) is True  # 3d_cascade_fullres inherits 3d_fullres' one
    losses = [float(x) for x in re.findall(r"train_loss (\S+)", "".join(
        open(os.path.join(fold, f)).read() for f in sorted(os.listdir(fold)) if f.startswith("training_log")))]
    assert len(losses) == 2 and all(np.isfinite(losses)) and min(losses) >= 0


@pytest.mark.parametrize("name", TRAINERS)
def test_two_step_prediction(cascade, name):
    s, runs, _ = cascade
    steps = runs[name]
    for step in ("predict_lowres", "predict_cascade"):
        _check(steps, step)
    p = steps["paths"]
    image = _read(os.path.join(s.tiny.raw, s.name, "imagesTr", p["case"]))
    out = p["case"].replace("_0000", "")
    for stage in ("lowres", "cascade"):
        pred = _read(os.path.join(p[stage], out))
        assert pred.shape == image.shape, stage
        assert set(np.unique(pred).tolist()) <= ALLOWED, stage


# ---------------------------------------------------------------- stored maps are refused


def test_stored_maps_refused_for_cascade(cascade):
    _, runs, _ = cascade
    step = runs["stored"]
    assert step["rc"] != 0
    assert "ValueError" in step["out"] and "not supported for cascade stages" in step["out"]
    assert 'maps="online"' in step["out"]  # says what to do


def test_stored_maps_refused_before_any_work(cascade):
    _, runs, _ = cascade
    step = runs["stored"]
    assert step["rc"] != 0
    assert "computing stored maps" not in step["out"] and not os.path.exists(step["maps_dir"])


# ---------------------------------------------------------------- DWCE: stored maps on lowres, online on the cascade


def _logs(folder):
    return "".join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder))
                   if f.startswith("training_log"))


def _dwce_default_stored(steps):
    """Whether nnUNetTrainerDWCE's ``maps`` (default, no option set here) is "stored" (its lowres record)."""
    with open(os.path.join(steps["folders"]["3d_lowres"], "fold_0", "loss_options.json")) as f:
        return json.load(f)["resolved"].get("maps") == "stored"


def test_dwce_cascade_uses_online_maps(cascade):
    _, runs, _ = cascade
    steps = runs["nnUNetTrainerDWCE"]
    for step in ("lowres", "cascade", "resume"):
        _check(steps, step)
    low = _logs(os.path.join(steps["folders"]["3d_lowres"], "fold_0"))
    casc = _logs(os.path.join(steps["folders"]["3d_cascade_fullres"], "fold_0"))
    assert ("maps: stored dwce" in low) is _dwce_default_stored(steps)  # the default: stored where possible
    assert "maps: stored" not in casc  # never stored maps on seg_prev stages (training and --c)
    if _dwce_default_stored(steps):
        assert casc.count("computed online") == 2, casc[-3000:]  # said so, at the start and on --c


def test_dwce_cascade_records_the_maps_used(cascade):
    """loss_options.json holds the values used (online maps on the cascade stage, also after --c)."""
    _, runs, _ = cascade
    steps = runs["nnUNetTrainerDWCE"]
    _check(steps, "resume")
    if not _dwce_default_stored(steps):
        pytest.skip("nnUNetTrainerDWCE defaults to online maps")
    with open(os.path.join(steps["folders"]["3d_cascade_fullres"], "fold_0", "loss_options.json")) as f:
        assert json.load(f)["resolved"]["maps"] == "online"


# ---------------------------------------------------------------- Skeleton Recall: skeletons from the loader


def test_skeleton_recall_cascade_computes_skeletons_in_the_loader(cascade):
    """The default ``maps=loader`` holds on the cascade stage (training and --c): the skeleton is made in the loader
    from the augmented target, after nnU-Net moved seg_prev into the input, and is recorded as used."""
    _, runs, _ = cascade
    steps = runs["nnUNetTrainerSkeletonRecall"]
    _check(steps, "resume")
    casc = os.path.join(steps["folders"]["3d_cascade_fullres"], "fold_0")
    log = _logs(casc)
    assert log.count("maps: skeleton") == 2 and log.count("computed in the data loader") == 2, log[-3000:]
    with open(os.path.join(casc, "loss_options.json")) as f:
        assert json.load(f)["resolved"]["maps"] == "loader"

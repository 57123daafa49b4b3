"""``nnunet_losses_study adopt``: runs shared between two studies, on fake study folders (no training).

Each study folder holds a ``study.json`` record as ``prepare_study`` writes it and fake runs: a fold folder
with a small file as checkpoint (and ``loss_options.json`` for loss trainers, where CWCD's ``"auto"``
contour width resolved to 3 unless a test says otherwise), the model folder's ``plans.json``/``dataset.json``,
test predictions, a log and a state file.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from nnunet_losses.nnunet.tools.study.adopt import adopt, effective_options, pair_arms
from nnunet_losses.nnunet.tools.study.definition import StudyDefinition, parse_arm
from nnunet_losses.nnunet.tools.study.folder import SUFFIX, StudyFolder, StudyLocked, run_id

DATASET = "Dataset990_Fake"
PLANS = {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {"batch_size": 2, "patch_size": [16, 16, 16]}}}
#: the every-trainer study (the source) and the contour-width study (the target)
OTHER_ARMS = ["nnUNetTrainer", "nnUNetTrainerCWCD", 'CWCD_i2=nnUNetTrainerCWCD:{"contour_width": 2}']
THIS_ARMS = ["nnUNetTrainer", 'CWCD_i1=nnUNetTrainerCWCD:{"contour_width": 1}',
             'CWCD_i2=nnUNetTrainerCWCD:{"contour_width": 2}', 'CWCD_auto=nnUNetTrainerCWCD:{"contour_width": "auto"}']


def make_study(root, arms, tmp_path, epochs=8, test_images="imagesTs", tta=True, folds=(0, 1)):
    """A prepared study folder (study.json only); its StudyFolder and definition."""
    d = StudyDefinition(dataset="990", configuration="3d_fullres", arms=[parse_arm(a) for a in arms],
                        folds=list(folds), seeds=[0], epochs=epochs, iterations=5, val_iterations=2, tta=tta)
    pre = tmp_path / "pre"
    (pre / DATASET).mkdir(parents=True, exist_ok=True)
    if not (pre / DATASET / "nnUNetPlans.json").exists():
        (pre / DATASET / "nnUNetPlans.json").write_text(json.dumps(PLANS))
    images = test_images and str(tmp_path / test_images)
    record = {"definition": d.to_json(), "nnunet_paths": {"nnUNet_raw": None, "nnUNet_preprocessed": str(pre)},
              "dataset": {"name": DATASET, "file_ending": ".nii.gz", "test_images": images,
                          "test_labels": images and images + "_labels", "gt": str(pre / DATASET / "gt")},
              "schedule": {"epochs": epochs, "iterations": 5, "val_iterations": 2, "threads": None, "save_every": 1},
              "trainers": {a.name: a.trainer + SUFFIX for a in d.arms}, "versions": {}}
    folder = StudyFolder(str(root))
    folder.write_study(record)
    return folder, d


def resolved_width(width):
    """The ``resolved`` entry of ``loss_options.json`` of a CWCD run whose "auto" contour width became ``width``."""
    return {"contour_width": width, "contour_width_source": f"auto: median thickness 3.5 voxels -> {width}",
            "contour_weight": 1.0, "kernel_size": 3, "lam": 0.5, "maps": "online", "weight_ce": 1.0}


def make_run(folder, d, arm, fold, status, epoch=None, plans=PLANS, options=None, resolved=None,
             options_file=True):
    """A fake run of ``arm`` in ``folder`` with the given status (``options_file=False``: no
    ``loss_options.json``, as for runs of older versions)."""
    a = d.arm(arm)
    fold_dir = folder.fold_dir(d, arm, fold, 0, DATASET)
    os.makedirs(fold_dir)
    ckpt = "checkpoint_final.pth" if status == "done" else "checkpoint_latest.pth"
    with open(os.path.join(fold_dir, ckpt), "wb") as f:
        f.write(os.urandom(256))
    if a.trainer != "nnUNetTrainer" and options_file:
        with open(os.path.join(fold_dir, "loss_options.json"), "w") as f:
            json.dump({"trainer": a.trainer + SUFFIX, "options": a.options if options is None else options,
                       "resolved": resolved_width(3) if resolved is None else resolved}, f)
    model = folder.model_dir(d, arm, 0, DATASET)
    with open(os.path.join(model, "plans.json"), "w") as f:
        json.dump(plans, f)
    with open(os.path.join(model, "dataset.json"), "w") as f:
        json.dump({"file_ending": ".nii.gz"}, f)
    if status == "done":
        pred = folder.prediction_dir(arm, fold, 0)
        os.makedirs(pred)
        with open(os.path.join(pred, "case_0.nii.gz"), "wb") as f:
            f.write(b"prediction")
    rid = run_id(arm, fold, 0)
    os.makedirs(os.path.dirname(folder.log_path(rid)), exist_ok=True)
    with open(folder.log_path(rid), "w") as f:
        f.write(f"training log of {rid}\n")
    extra = {"epoch": epoch} if epoch is not None else {}
    if status == "stopped":
        extra["stopped_at"] = epoch
    folder.write_state(rid, status=status, attempts=1, seconds={"train": 12.5}, **extra)


def tree_hashes(root):
    """{relative path: sha1} of every file under ``root`` but the lock."""
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            path = os.path.join(base, n)
            if n != ".lock":
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
    return out


@pytest.fixture
def studies(tmp_path):
    """The every-trainer study with every run done, and an empty contour-width study."""
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path)
    for arm in ("nnU-Net", "CWCD", "CWCD_i2"):
        for fold in (0, 1):
            make_run(other, od, arm, fold, "done")
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path)
    return other, od, this, td


def quiet(lines):
    return lines.append


def test_effective_options_resolve_the_trainer_defaults():
    cwcd = "nnUNetTrainerCWCD"
    assert effective_options(cwcd, {}) == effective_options(cwcd, {"contour_width": "auto"})
    assert effective_options(cwcd, {}) != effective_options(cwcd, {"contour_width": 2})
    assert effective_options(cwcd, {"iterations": 2}) == effective_options(cwcd, {"contour_width": 2})  # old name
    assert effective_options(cwcd, {}) != effective_options(cwcd, {"batch_dice": False})  # the plans decide it
    assert effective_options("nnUNetTrainer", {}) == {}


def test_default_cwcd_fills_cwcd_auto_and_done_stays_done(studies):
    other, od, this, td = studies
    before = tree_hashes(other.root)
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    got = {a.run: a.source_run for a in adopted}
    assert got == {run_id(t, f, 0): run_id(s, f, 0) for t, s in (("nnU-Net", "nnU-Net"), ("CWCD_auto", "CWCD"),
                                                                 ("CWCD_i2", "CWCD_i2")) for f in (0, 1)}, lines
    assert "adopted 6 runs: 6 done, 0 paused; 2 runs of" in lines[-1] and "have no match" in lines[-1]
    rid = run_id("CWCD_auto", 0, 0)
    st = this.read_state(rid)
    assert st["status"] == "done" and st["attempts"] == 1 and st["seconds"] == {"train": 12.5}
    assert st["adopted_from"] == {"study": other.root, "run": run_id("CWCD", 0, 0), "status": "done"}
    src_fold, dst_fold = other.fold_dir(od, "CWCD", 0, 0, DATASET), this.fold_dir(td, "CWCD_auto", 0, 0, DATASET)
    assert open(os.path.join(dst_fold, "checkpoint_final.pth"), "rb").read() == \
        open(os.path.join(src_fold, "checkpoint_final.pth"), "rb").read()
    assert json.load(open(os.path.join(dst_fold, "loss_options.json")))["options"] == {"contour_width": "auto"}
    assert os.path.isfile(os.path.join(this.model_dir(td, "CWCD_auto", 0, DATASET), "plans.json"))
    assert os.listdir(this.prediction_dir("CWCD_auto", 0, 0)) == ["case_0.nii.gz"]
    assert "training log of CWCD__fold0__seed0" in open(this.log_path(rid)).read()
    assert not os.path.exists(this.fold_dir(td, "CWCD_i1", 0, 0, DATASET))  # contour width 1 != the default
    assert this.read_state(run_id("CWCD_i1", 0, 0))["status"] == "pending"
    assert tree_hashes(other.root) == before  # the source study is unchanged


def restored_study(tmp_path, arms=("nnU-Net", "CWCD", "CWCD_i2"), folds=(0, 1), auto_resolved=None):
    """The every-trainer study as ``restore`` leaves it on a new machine: every run done, no fold folder or
    checkpoint, its test-set rows in ``restored/test.csv`` (one row per case and class, mean rows too);
    ``auto_resolved``: CWCD's ``per_run.csv`` value (not recorded when None, as in data collected before)."""
    from nnunet_losses.nnunet.tools.study.restore import RESTORED, _state
    from nnunet_losses.nnunet.tools.study.csv_files import write_csv

    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path, folds=folds)
    rows = [{"method_name": arm, "case": case, "class_name": "fg", "class": cl, "dice": 0.5 + 0.1 * i + 0.01 * fold,
             "recall": 0.7, "run_fold": fold, "run_seed": 0}
            for i, arm in enumerate(arms) for fold in folds for case in ("c1", "c2") for cl in ("1", "mean")]
    os.makedirs(other.path(RESTORED))
    write_csv(other.path(RESTORED, "test.csv"), rows, list(rows[0]))
    for arm in arms:
        for fold in folds:
            row = {"status": "done", "epochs": "8", "val_dice": "0.8", "train_s": "900", "attempts": "1",
                   "auto_resolved": auto_resolved if arm == "CWCD" and auto_resolved else ""}
            state = _state(row, ["test"], str(tmp_path / "data"))
            other.write_state(run_id(arm, fold, 0), run=run_id(arm, fold, 0), **state)
    return other, od


def test_runs_held_only_as_restored_data_are_adopted_as_data(tmp_path):
    """On a new machine the source study is restored: no checkpoints, only its rows. Those of arms that train
    alike become this study's restored rows (under this study's arm names); an arm paired through "auto"
    (CWCD -> CWCD_i1) is left to train, as nothing records what its "auto" resolved to."""
    from nnunet_losses.nnunet.tools.study.restore import RESTORED, restored_rows

    from nnunet_losses.nnunet.tools.study.restore import _state

    other, od = restored_study(tmp_path)
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path)
    # this study restored too: a run paused at epoch 4 whose checkpoint is lost is filled; one that has
    # trained here since (an attempt) is not
    for fold, attempts in ((0, 0), (1, 1)):
        paused = _state({"status": "pending", "epochs": "4", "val_dice": "0.3"}, [], str(tmp_path / "data"))
        assert paused["status"] == "paused"
        this.write_state(run_id("nnU-Net", fold, 0), **{**paused, "attempts": attempts})
    before = tree_hashes(other.root)
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert {a.run: a.source_run for a in adopted} == {
        run_id(t, f, 0): run_id(s, f, 0) for t, s in (("nnU-Net", "nnU-Net"), ("CWCD_auto", "CWCD"),
                                                      ("CWCD_i2", "CWCD_i2")) for f in (0, 1)
        if (t, f) != ("nnU-Net", 1)}, lines
    assert all(a.restored and a.status == "done" and not a.predictions for a in adopted)
    assert "adopted 5 runs: 5 done, 0 paused" in lines[-1] and "1 started already" in lines[-1]
    assert this.read_state(run_id("nnU-Net", 1, 0))["status"] == "paused"
    assert any("CWCD_i1__fold0__seed0: CWCD__fold0__seed0 is done there only as restored data" in x
               and "'auto' options resolved to is not recorded" in x for x in lines), lines
    rows = restored_rows(this, "test")
    assert sorted(rows) == sorted((a, f, 0) for a in ("nnU-Net", "CWCD_auto", "CWCD_i2") for f in (0, 1)
                                  if (a, f) != ("nnU-Net", 1))
    assert this.read_state(run_id("nnU-Net", 0, 0))["status"] == "done"
    assert [float(r["dice"]) for r in rows[("CWCD_auto", 1, 0)]] == [0.61] * 4  # CWCD's rows, renamed
    st = this.read_state(run_id("CWCD_auto", 1, 0))
    assert st["status"] == "done" and st["epoch"] == 8 and st["restored"]["screen"] == {"8": 0.8}
    assert st["adopted_from"] == {"study": other.root, "run": run_id("CWCD", 1, 0), "status": "done"}
    assert not os.path.exists(this.fold_dir(td, "CWCD_auto", 1, 0, DATASET))
    assert this.read_state(run_id("CWCD_i1", 0, 0))["status"] == "pending"
    assert tree_hashes(other.root) == before
    assert adopt(this.root, other.root, echo=quiet(lines)) == []  # adopted once: this study's runs are done
    assert len(restored_rows(this, "test")[("nnU-Net", 0, 0)]) == 4


@pytest.mark.parametrize("recorded, adopted", [('{"contour_width": 1}', True), ('{"contour_width": 2}', False)])
def test_restored_data_that_records_what_auto_resolved_to_fills_the_explicit_arm(tmp_path, recorded, adopted):
    """per_run.csv's ``auto_resolved`` says what CWCD's "auto" contour width was: 1 fills CWCD_i1 as data;
    2 does not, and says why."""
    from nnunet_losses.nnunet.tools.study.restore import restored_rows

    other, od = restored_study(tmp_path, arms=("nnU-Net", "CWCD"), folds=(0,), auto_resolved=recorded)
    assert other.read_state(run_id("CWCD", 0, 0))["restored"]["auto_resolved"] == json.loads(recorded)
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=(0,))
    lines = []
    runs = {a.run: a.source_run for a in adopt(this.root, other.root, echo=quiet(lines))}
    assert (runs.get(run_id("CWCD_i1", 0, 0)) == run_id("CWCD", 0, 0)) is adopted, lines
    assert runs[run_id("CWCD_auto", 0, 0)] == run_id("CWCD", 0, 0)
    assert (("CWCD_i1", 0, 0) in restored_rows(this, "test")) is adopted
    if not adopted:
        assert any("CWCD_i1__fold0__seed0: CWCD__fold0__seed0 is done there only as restored data (no checkpoint): "
                   "contour_width resolved to 2 there, 1 here" in x for x in lines), lines


def test_per_run_csv_records_what_auto_resolved_to(tmp_path):
    """``auto_resolved``: the resolved options whose source is ``auto``, from the run's loss_options.json."""
    from nnunet_losses.nnunet.tools.study.report import auto_resolved

    assert auto_resolved(str(tmp_path)) == {}  # no file (nnU-Net's own trainer)
    json.dump({"options": {}, "resolved": {"contour_width": 1, "contour_width_source": "auto: median thickness 3.5",
                                           "kernel_size": 3, "lam": 0.5, "lam_source": "nnUNetTrainerCWCD default"}},
              open(tmp_path / "loss_options.json", "w"))
    assert auto_resolved(str(tmp_path)) == {"contour_width": 1}
    (tmp_path / "loss_options.json").write_text("{broken")
    assert auto_resolved(str(tmp_path)) == {}
    # restore reads it back; a cell that is not JSON names the file and the run
    from nnunet_losses.nnunet.tools.study.restore import _state

    row = {"arm": "CWCD", "fold": "0", "seed": "1", "status": "done", "epochs": "8"}
    assert _state({**row, "auto_resolved": '{"contour_width": 1}'}, ["test"], "d")["restored"]["auto_resolved"] == \
        {"contour_width": 1}
    assert "auto_resolved" not in _state({**row, "auto_resolved": ""}, ["test"], "d")["restored"]
    with pytest.raises(ValueError, match="auto_resolved '{x' of run CWCD fold 0 seed 1 is not JSON"):
        _state({**row, "auto_resolved": "{x"}, ["test"], "d")


def test_restored_data_scored_with_other_metrics_is_not_adopted(tmp_path):
    other, od = restored_study(tmp_path, arms=("nnU-Net",), folds=(0,))
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=(0,))
    record = this.read_study()
    record["definition"]["metrics"] = ["dice"]
    this.write_study(record)
    lines = []
    assert adopt(this.root, other.root, echo=quiet(lines)) == []
    assert any("scored with metrics" in x for x in lines), lines


def test_restored_rows_with_other_columns_than_this_study_s_are_not_adopted(tmp_path):
    """This study's own restored rows (here without ``recall``) and the other's cannot share one CSV."""
    from nnunet_losses.nnunet.tools.study.csv_files import write_csv
    from nnunet_losses.nnunet.tools.study.restore import RESTORED

    other, od = restored_study(tmp_path, arms=("nnU-Net",), folds=(0, 1))
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=(0, 1))
    own = [{"method_name": "nnU-Net", "case": "c1", "class_name": "fg", "class": "1", "dice": 0.4, "run_fold": 1,
            "run_seed": 0}]
    os.makedirs(this.path(RESTORED))
    write_csv(this.path(RESTORED, "test.csv"), own, list(own[0]))
    lines = []
    assert adopt(this.root, other.root, echo=quiet(lines)) == []
    assert any("its rows have other columns than this study's restored/test.csv" in x for x in lines), lines


def test_a_restored_run_whose_checkpoint_was_lost_is_filled_and_forgets_its_restore(studies, tmp_path):
    """This study was restored on this machine: its nnU-Net run paused at epoch 4 lost its checkpoint and
    would train from the start. The other study's done run fills it, and the state no longer says restored
    (else the report would name it so and a halving screen would read the old epoch-4 value)."""
    from nnunet_losses.nnunet.tools.study.restore import _state

    other, od, this, td = studies
    paused = _state({"status": "pending", "epochs": "4", "val_dice": "0.3"}, ["test_epoch4"], str(tmp_path / "d"))
    this.write_state(run_id("nnU-Net", 0, 0), **paused)
    adopted = {a.run: a for a in adopt(this.root, other.root, echo=quiet([]))}
    assert adopted[run_id("nnU-Net", 0, 0)].status == "done" and not adopted[run_id("nnU-Net", 0, 0)].restored
    st = this.read_state(run_id("nnU-Net", 0, 0))
    assert st["status"] == "done" and not st.get("restored") and not st.get("at_stop")
    assert os.path.isfile(os.path.join(this.fold_dir(td, "nnU-Net", 0, 0, DATASET), "checkpoint_final.pth"))


def test_options_that_differ_are_not_adopted_even_when_paired(studies):
    other, od, this, td = studies
    lines = []
    adopted = adopt(this.root, other.root, pairs=["nnU-Net=nnU-Net"], echo=quiet(lines))
    assert {a.arm for a in adopted} == {"nnU-Net"}  # --arm restricts the pairing
    with pytest.raises(ValueError, match=r"do not train alike \(options differ: contour_width 2 there, 1 here\)"):
        adopt(this.root, other.root, pairs=["CWCD_i2=CWCD_i1"], echo=quiet(lines))
    with pytest.raises(ValueError, match="'nope' is no arm of this study"):
        adopt(this.root, other.root, pairs=["CWCD=nope"], echo=quiet(lines))


def test_a_forced_pair_of_other_names_is_adopted(studies):
    other, od, this, td = studies
    adopted = adopt(this.root, other.root, pairs=["CWCD=CWCD_auto"], echo=quiet([]))
    assert sorted(a.run for a in adopted) == [run_id("CWCD_auto", f, 0) for f in (0, 1)]


def test_a_different_schedule_is_refused(tmp_path):
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path, epochs=8)
    make_run(other, od, "nnU-Net", 0, "done")
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, epochs=16)
    with pytest.raises(ValueError, match=r"differ in epochs 8 there, 16 here"):
        adopt(this.root, other.root, echo=quiet([]))
    assert not os.path.exists(this.path("results"))


def test_runs_trained_with_other_plans_are_refused(tmp_path):
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path)
    changed = {**PLANS, "configurations": {"3d_fullres": {"batch_size": 4, "patch_size": [16, 16, 16]}}}
    make_run(other, od, "nnU-Net", 0, "done", plans=changed)  # plans.json of the model folder: every fold's
    make_run(other, od, "CWCD", 0, "done")
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path)
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert [a.run for a in adopted] == [run_id("CWCD_auto", 0, 0)]
    assert any("nnU-Net__fold0__seed0" in line and "other plans" in line for line in lines), lines
    assert not os.path.exists(this.fold_dir(td, "nnU-Net", 0, 0, DATASET))


def test_stopped_becomes_paused_with_its_epoch_and_failed_running_pending_are_never_adopted(tmp_path):
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path, folds=(0, 1, 2, 3))
    make_run(other, od, "CWCD", 0, "stopped", epoch=2)
    make_run(other, od, "CWCD", 1, "paused", epoch=4)
    make_run(other, od, "CWCD", 2, "failed")
    make_run(other, od, "CWCD", 3, "running")
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=(0, 1, 2, 3))
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert {a.run: (a.status, a.epoch) for a in adopted} == {run_id("CWCD_auto", 0, 0): ("paused", 2),
                                                             run_id("CWCD_auto", 1, 0): ("paused", 4)}
    st = this.read_state(run_id("CWCD_auto", 0, 0))
    assert st["status"] == "paused" and st["epoch"] == 2 and st["adopted_from"]["status"] == "stopped"
    dst = this.fold_dir(td, "CWCD_auto", 0, 0, DATASET)
    assert os.path.isfile(os.path.join(dst, "checkpoint_latest.pth"))  # 'run' continues it with --c
    assert not os.path.exists(this.prediction_dir("CWCD_auto", 0, 0))
    for fold in (2, 3):
        assert this.read_state(run_id("CWCD_auto", fold, 0))["status"] == "pending"
        assert not os.path.exists(this.fold_dir(td, "CWCD_auto", fold, 0, DATASET))
    assert "adopted 2 runs: 0 done, 2 paused" in lines[-1]


def test_a_started_run_of_this_study_is_never_touched(studies):
    other, od, this, td = studies
    mine = this.fold_dir(td, "nnU-Net", 0, 0, DATASET)
    os.makedirs(mine)
    with open(os.path.join(mine, "checkpoint_latest.pth"), "wb") as f:
        f.write(b"my own training")
    this.write_state(run_id("CWCD_auto", 1, 0), status="done", attempts=1)
    lines = []
    adopted = {a.run for a in adopt(this.root, other.root, echo=quiet(lines))}
    assert run_id("nnU-Net", 0, 0) not in adopted and run_id("CWCD_auto", 1, 0) not in adopted
    assert os.listdir(mine) == ["checkpoint_latest.pth"] and open(os.path.join(mine, "checkpoint_latest.pth"),
                                                                   "rb").read() == b"my own training"
    assert this.read_state(run_id("CWCD_auto", 1, 0)).get("adopted_from") is None
    assert "2 started already (left alone)" in lines[-1]


def test_another_test_set_leaves_the_predictions_out(tmp_path):
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path, test_images="otherTs")
    make_run(other, od, "nnU-Net", 0, "done")
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=(0,))
    lines = []
    (a,) = adopt(this.root, other.root, echo=quiet(lines))
    assert a.status == "pending" and not a.predictions  # the next 'run' predicts this study's test set
    assert not os.path.exists(this.prediction_dir("nnU-Net", 0, 0))
    assert os.path.isfile(os.path.join(this.fold_dir(td, "nnU-Net", 0, 0, DATASET), "checkpoint_final.pth"))
    assert "1 trained (test set predicted by the next 'run')" in lines[-1]


def test_dry_run_copies_nothing(studies):
    other, od, this, td = studies
    before_this, before_other = tree_hashes(this.root), tree_hashes(other.root)
    lines = []
    adopted = adopt(this.root, other.root, dry_run=True, echo=quiet(lines))
    assert len(adopted) == 6 and lines[-1].startswith("would adopt 6 runs")
    assert tree_hashes(this.root) == before_this and tree_hashes(other.root) == before_other


def test_locked_studies_are_refused(studies):
    other, od, this, td = studies
    for holder in (other, this):
        holder.lock()
        try:
            with pytest.raises(StudyLocked, match="another study command works on"):
                adopt(this.root, other.root, echo=quiet([]))
        finally:
            holder.unlock()
    assert not os.path.exists(this.path("results"))


def test_a_study_without_study_json_is_refused_with_advice(studies, tmp_path):
    other, od, this, td = studies
    with pytest.raises(ValueError, match=r"no study.json.*--definition FILE"):
        adopt(str(tmp_path / "new"), other.root, echo=quiet([]))
    with pytest.raises(ValueError, match=r"holds no study \(no study.json\): --from"):
        adopt(this.root, str(tmp_path / "nothing"), echo=quiet([]))


def test_status_and_report_name_the_adopted_runs(studies, capsys):
    from nnunet_losses.nnunet.tools.study.cli import main, status_lines
    from nnunet_losses.nnunet.tools.study.report import _status_table

    other, od, this, td = studies
    assert main(["adopt", this.root, "--from", other.root, "--arm", "CWCD=CWCD_auto"]) == 0
    assert "adopted 2 runs: 2 done" in capsys.readouterr().out
    note = f"adopted from {other.root}/{run_id('CWCD', 0, 0)}"
    line = next(x for x in status_lines(this) if run_id("CWCD_auto", 0, 0) in x)
    assert note in line
    table = _status_table(this, {run_id("CWCD_auto", 0, 0): {}, run_id("CWCD_i1", 0, 0): {}})
    assert note in table[2] and "adopted" not in table[3]


def test_a_copy_never_overwrites(tmp_path):
    from nnunet_losses.nnunet.tools.study.adopt import _copy_tree

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("new")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "a").write_text("mine")
    with pytest.raises(FileExistsError, match="never overwrites"):
        _copy_tree(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert (tmp_path / "dst" / "a").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    _copy_tree(str(tmp_path / "src"), str(tmp_path / "empty"))  # an empty folder is no file
    assert (tmp_path / "empty" / "a").read_text() == "new"


def test_definition_prepares_a_new_study_before_adopting(studies, tmp_path, monkeypatch):
    """``--definition``: adopt writes study.json as 'run' would (here a stand-in for prepare_study, which needs
    a preprocessed dataset), then fills the new study."""
    from nnunet_losses.nnunet.tools.study import grid

    other, od, this, td = studies
    prepared = []

    def fake_prepare(folder, definition):
        prepared.append(definition)
        make_study(folder.root, THIS_ARMS, tmp_path)

    monkeypatch.setattr(grid, "prepare_study", fake_prepare)
    adopted = adopt(str(tmp_path / "new"), other.root, definition=td, echo=quiet([]))
    assert prepared == [td] and len(adopted) == 6
    assert StudyFolder(str(tmp_path / "new")).read_state(run_id("nnU-Net", 0, 0))["status"] == "done"


# ------------------------------------------------------------------ "auto" there, resolved to the value set here
def auto_studies(tmp_path, widths, options_file=True, other_status="done"):
    """The every-trainer study whose CWCD ({}) runs resolved "auto" to ``widths`` (one per fold), and an empty
    contour-width study."""
    other, od = make_study(tmp_path / "other", OTHER_ARMS, tmp_path, folds=range(len(widths)))
    for fold, width in enumerate(widths):
        make_run(other, od, "CWCD", fold, other_status, epoch=3, resolved=resolved_width(width),
                 options_file=options_file)
    this, td = make_study(tmp_path / "this", THIS_ARMS, tmp_path, folds=range(len(widths)))
    return other, od, this, td


def test_auto_that_resolved_to_the_explicit_value_is_adopted(tmp_path):
    other, od, this, td = auto_studies(tmp_path, [1])
    before = tree_hashes(other.root)
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert {a.run: a.source_run for a in adopted} == {run_id("CWCD_i1", 0, 0): run_id("CWCD", 0, 0),
                                                      run_id("CWCD_auto", 0, 0): run_id("CWCD", 0, 0)}, lines
    assert "CWCD_i1 <- CWCD (runs whose contour_width auto resolved to 1)" in lines[0], lines[0]
    st = this.read_state(run_id("CWCD_i1", 0, 0))
    assert st["status"] == "done" and st["adopted_from"]["run"] == run_id("CWCD", 0, 0)
    dst = this.fold_dir(td, "CWCD_i1", 0, 0, DATASET)
    assert os.path.isfile(os.path.join(dst, "checkpoint_final.pth"))
    saved = json.load(open(os.path.join(dst, "loss_options.json")))
    assert saved["options"] == {"contour_width": 1} and saved["options_before_adoption"] == {}
    assert saved["resolved"]["contour_width"] == 1
    assert tree_hashes(other.root) == before
    # --arm takes such a pair too
    again, _ = make_study(tmp_path / "again", THIS_ARMS, tmp_path, folds=(0,))
    assert [a.run for a in adopt(again.root, other.root, pairs=["CWCD=CWCD_i1"], echo=quiet([]))] == \
        [run_id("CWCD_i1", 0, 0)]


def test_auto_that_resolved_to_another_value_is_not_adopted(tmp_path):
    other, od, this, td = auto_studies(tmp_path, [3, 1])
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert sorted(a.run for a in adopted if a.arm == "CWCD_i1") == [run_id("CWCD_i1", 1, 0)], lines
    assert sorted(a.run for a in adopted if a.arm == "CWCD_auto") == [run_id("CWCD_auto", f, 0) for f in (0, 1)]
    assert f"  not adopted: {run_id('CWCD_i1', 0, 0)}: {run_id('CWCD', 0, 0)}: contour_width resolved to 3 there, " \
           f"1 here" in lines, lines
    assert this.read_state(run_id("CWCD_i1", 0, 0))["status"] == "pending"
    assert not os.path.exists(this.fold_dir(td, "CWCD_i1", 0, 0, DATASET))
    assert not os.path.exists(this.fold_dir(td, "CWCD_i2", 0, 0, DATASET))  # auto -> 3, but CWCD_i2 is 2


def test_auto_without_a_saved_options_file_is_not_adopted(tmp_path):
    other, od, this, td = auto_studies(tmp_path, [1], options_file=False)
    lines = []
    adopted = adopt(this.root, other.root, echo=quiet(lines))
    assert [a.run for a in adopted] == [run_id("CWCD_auto", 0, 0)], lines  # alike: no file needed
    assert any(line.startswith(f"  not adopted: {run_id('CWCD_i1', 0, 0)}: ") and "has no loss_options.json" in line
               for line in lines), lines
    assert not os.path.exists(this.fold_dir(td, "CWCD_i1", 0, 0, DATASET))


def test_auto_here_is_never_paired_with_an_explicit_value_there(tmp_path):
    """The reverse: what "auto" resolves to in this study is known only when it trains."""
    arms = ['CWCD_i1=nnUNetTrainerCWCD:{"contour_width": 1}', 'CWCD_i3=nnUNetTrainerCWCD:{"contour_width": 3}']
    other, od = make_study(tmp_path / "other", arms, tmp_path, folds=(0,))
    for arm, width in (("CWCD_i1", 1), ("CWCD_i3", 3)):
        make_run(other, od, arm, 0, "done", resolved={**resolved_width(width), "contour_width_source": "given"})
    this, td = make_study(tmp_path / "this", ["nnUNetTrainerCWCD", THIS_ARMS[3]], tmp_path, folds=(0,))
    assert pair_arms(td, od) == {}
    lines = []
    assert adopt(this.root, other.root, echo=quiet(lines)) == []
    assert "no match for CWCD; no match for CWCD_auto" in lines[0], lines
    with pytest.raises(ValueError, match=r"contour_width 1 there, 'auto' here \(contour_width 'auto' here is "
                                         r"resolved only when this study trains"):
        adopt(this.root, other.root, pairs=["CWCD_i1=CWCD_auto"], echo=quiet([]))
    with pytest.raises(ValueError, match=r"do not train alike .*contour_width 3 there, 'auto' here"):
        adopt(this.root, other.root, pairs=["CWCD_i3=CWCD"], echo=quiet([]))


def test_an_adopted_auto_run_continues_under_the_explicit_options(tmp_path):
    """The copied loss_options.json says {"contour_width": 1}: ``--c`` with the arm's NNUNET_LOSSES_OPTIONS (as
    the study's run sets it) is accepted and trains on with contour width 1."""
    from types import SimpleNamespace

    from nnunet_losses.nnunet.testing.short_schedule import find_base_trainer
    from nnunet_losses.nnunet.training import options as opt

    other, od, this, td = auto_studies(tmp_path, [1], other_status="stopped")
    (a, _) = sorted(adopt(this.root, other.root, echo=quiet([])), key=lambda x: x.arm != "CWCD_i1")
    assert (a.arm, a.status, a.epoch) == ("CWCD_i1", "paused", 3)
    cls = find_base_trainer("nnUNetTrainerCWCD")
    renames = cls.loss_class.renamed_arguments
    env = json.dumps(td.arm("CWCD_i1").options)  # what 'run' puts in NNUNET_LOSSES_OPTIONS

    def restore(fold_dir):
        saved = opt.rename_record(opt.load_options(fold_dir), renames)
        return saved, opt.resolve_options(env, saved, True, cls.tunable_options(), cls.__name__, renames)

    saved, user = restore(this.fold_dir(td, "CWCD_i1", 0, 0, DATASET))
    assert user == {"contour_width": 1}
    values = {**cls.tunable_options(), **user}
    trainer = SimpleNamespace(auto_options=cls.auto_options, _nnunet_losses_restoring=True)
    sources = cls._resolve_auto_options(trainer, values, user, saved)  # no dataset needed: nothing is "auto"
    assert values["contour_width"] == 1 and sources == {"contour_width_source": opt.ENV_VAR}
    with pytest.raises(ValueError, match="contradicts the options this training was started with"):
        restore(other.fold_dir(od, "CWCD", 0, 0, DATASET))  # the source's own {} would be refused

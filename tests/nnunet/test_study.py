"""``nnunet_losses_study`` on the tiny generated 3D dataset (``nnunet_tiny``: Dataset990, 3d_fullres, two folds).

* the whole command, 2 arms x 2 folds x 1 seed, ``--jobs 2``, killed with SIGTERM in the middle and finished
  by the same command without retraining finished runs; the report's run- and case-level tables and screen;
  ``report`` rebuilds the files from the folder;
* ``--halving`` on 4 arms through the SLURM code path on submitit's local back end, with a stub metric that
  forces the ranking (the only place a stub is used);
* the lock, the missing ``sbatch``, a changed definition; the run-level statistics against hand-worked values.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from nnunet_losses.nnunet.tools.study.definition import StudyDefinition, parse_arm
from nnunet_losses.nnunet.tools.study.folder import StudyFolder, StudyLocked
from nnunet_losses.nnunet.tools.study.statistics import holm_planned, run_level_tests, screen, smallest_p

SCHEDULE = ["--epochs", "2", "--iterations", "2", "--val-iterations", "1"]


def _grid_args(arms, folds=("0", "1")):
    return ["-d", "990", "-c", "3d_fullres", "-p", "nnUNetTinyPlans", "--arms", *arms, "--folds", *folds,
            "--seeds", "0", *SCHEDULE]


def _env(nnunet_tiny, tmp_path):
    env = nnunet_tiny.env(str(tmp_path / "unused_results"))
    env.pop("nnUNet_results")
    return env


def _study(env, *args, **kw):
    return subprocess.Popen([nnunet_tiny_cli("nnunet_losses_study"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def nnunet_tiny_cli(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not installed next to {sys.executable}")
    return path


def _states(root):
    folder = os.path.join(root, "runs")
    if not os.path.isdir(folder):
        return {}
    out = {}
    for n in os.listdir(folder):
        try:
            with open(os.path.join(folder, n)) as f:
                out[n[:-5]] = json.load(f)
        except (json.JSONDecodeError, OSError):
            pass
    return out


def _fold_dir(root, rid):
    arm, fold = rid.split("__")[0], rid.split("__")[1][4:]
    trainer = "nnUNetTrainer_study" if arm == "nnU-Net" else "nnUNetTrainerCWCD_study"
    return os.path.join(root, "results", arm, "seed_0", "Dataset990_SynthLabels3D",
                        f"{trainer}__nnUNetTinyPlans__3d_fullres", f"fold_{fold}")


def _training(root, rid):
    """Whether run ``rid`` is inside its training: its log started, no final checkpoint yet."""
    d = _fold_dir(root, rid)
    return os.path.isdir(d) and any(n.startswith("training_log") for n in os.listdir(d)) and not os.path.isfile(
        os.path.join(d, "checkpoint_final.pth"))


def _train_commands(log_path):
    with open(log_path) as f:
        return [line for line in f if "$ " in line and "nnUNetv2_train" in line]


@pytest.fixture(scope="module")
def interrupted_study(nnunet_tiny, tmp_path_factory):
    pytest.importorskip("submitit")
    pytest.importorskip("nnunet_losses_trainers")
    tmp = tmp_path_factory.mktemp("study")
    root = str(tmp / "s")
    env = _env(nnunet_tiny, tmp)
    args = ["run", root, *_grid_args(["nnUNetTrainer", "nnUNetTrainerCWCD"]), "--jobs", "2"]
    proc = _study(env, *args)
    seen = {}
    t0 = time.time()
    training = []
    while proc.poll() is None and time.time() - t0 < 900:  # kill once a run is done and another one trains
        states = _states(root)
        training = [r for r, v in states.items() if v.get("status") == "running" and _training(root, r)]
        if any(v.get("status") == "done" for v in states.values()) and training:
            seen = {k: dict(v) for k, v in states.items()}
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    first_out = proc.communicate(timeout=300)[0]
    done_first = sorted(k for k, v in seen.items() if v.get("status") == "done")
    mtimes = {rid: os.path.getmtime(os.path.join(_fold_dir(root, rid), "checkpoint_final.pth")) for rid in done_first}
    after_kill = _states(root)
    second = _study(env, "run", root, "--jobs", "2")
    second_out = second.communicate(timeout=1200)[0]
    return {"root": root, "env": env, "first": (proc.returncode, first_out), "second": (second.returncode, second_out),
            "done_first": done_first, "mtimes": mtimes, "after_kill": after_kill, "training": training}


def test_killed_study_finishes_on_the_second_call_without_retraining(interrupted_study):
    s = interrupted_study
    rc, out = s["first"]
    assert s["done_first"], f"the study was not caught with a finished and a running run:\n{out[-3000:]}"
    assert rc != 0 and "run the same command again" in out, out[-2000:]
    assert not any(v.get("status") == "running" for v in s["after_kill"].values()), s["after_kill"]
    rc, out = s["second"]
    assert rc == 0, out[-4000:]
    states = _states(s["root"])
    assert len(states) == 4 and all(v["status"] == "done" for v in states.values()), states
    for rid in s["done_first"]:  # finished runs were not trained again
        assert len(_train_commands(states[rid]["log"])) == 1, rid
        assert os.path.getmtime(os.path.join(_fold_dir(s["root"], rid), "checkpoint_final.pth")) == s["mtimes"][rid]
    assert s["training"], s["after_kill"]
    for rid in s["training"]:  # stopped inside its training: trained again (the attempt is not counted)
        assert s["after_kill"][rid]["interrupted"] and s["after_kill"][rid]["status"] == "pending"
        assert states[rid]["attempts"] == 1 and len(_train_commands(states[rid]["log"])) == 2, rid
    record = json.loads(open(os.path.join(s["root"], "study.json")).read())
    assert record["versions"]["nnunetv2"] and record["dataset"]["name"] == "Dataset990_SynthLabels3D"
    assert all(v["seed"] == 0 and "numpy" in v["seeding"] for v in states.values())
    fold0 = os.path.join(s["root"], "results", "nnU-Net", "seed_0", "Dataset990_SynthLabels3D",
                         "nnUNetTrainer_study__nnUNetTinyPlans__3d_fullres", "fold_0")
    logs = "".join(open(os.path.join(fold0, n)).read() for n in os.listdir(fold0) if n.startswith("training_log"))
    assert "nnUNetTrainer_study: nnUNetTrainer with 2 epochs x 2 iterations, seed 0" in logs


def test_report_has_both_levels_and_the_screen(interrupted_study):
    root = interrupted_study["root"]
    report = open(os.path.join(root, "report.md")).read()
    assert "## Run level, cross-validation" in report and "## Case level, cross-validation" in report
    assert "smallest reachable p" in report and "| CWCD |" in report
    assert "## Degenerate-solution screen" in report
    with open(os.path.join(root, "per_run.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {(r["arm"], r["fold"]) for r in rows} == {(a, f) for a in ("nnU-Net", "CWCD") for f in ("0", "1")}
    assert all(0.0 <= float(r["cv_dice"]) <= 1.0 for r in rows)
    # each run's log relative to the study folder, so a moved or committed report still points at it
    assert all(os.path.isfile(os.path.join(root, r["log"])) and not os.path.isabs(r["log"]) for r in rows), rows
    # how far each run trained and nnU-Net's validation pseudo Dice (EMA) it ended with, from its checkpoint
    assert all(r["epochs"] == "2" and 0.0 <= float(r["val_ema_dice"]) <= 1.0 for r in rows), rows
    with open(os.path.join(root, "run_level.csv")) as f:
        level = list(csv.DictReader(f))
    assert len(level) == 1 and level[0]["arm"] == "CWCD" and level[0]["n_runs"] == "2"
    assert float(level[0]["smallest_p"]) in (0.5, 1.0)  # 2 / 2^(non-zero differences)
    for name in ("per_case.csv", "paired.csv", "ranking.csv", "screen.csv", "plots/runs_cv_dice.png"):
        assert os.path.getsize(os.path.join(root, name)) > 0, name
    # the report step rebuilds the files from the folder alone (no training)
    for name in ("report.md", "per_run.csv", "paired.csv"):
        os.remove(os.path.join(root, name))
    p = subprocess.run([nnunet_tiny_cli("nnunet_losses_study"), "report", root, "--no-evaluate"],
                       env=interrupted_study["env"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert open(os.path.join(root, "report.md")).read() == report
    assert os.path.isfile(os.path.join(root, "paired.csv")) and os.path.isfile(os.path.join(root, "per_run.csv"))
    status = subprocess.run([nnunet_tiny_cli("nnunet_losses_study"), "status", root], capture_output=True, text=True,
                            env=interrupted_study["env"], timeout=120)
    assert "4 done" in status.stdout, status.stdout


def test_collect_copies_the_report_or_a_snapshot_while_the_study_runs(interrupted_study, tmp_path, monkeypatch):
    """benchmarks/studies/quality.py collect: the study's files into docs/data/studies/NAME; when another
    command holds the study (a runner still training) it scores a snapshot elsewhere, writing nothing into
    the study folder."""
    from benchmarks.studies import quality

    for k, v in interrupted_study["env"].items():
        monkeypatch.setenv(k, v)
    root = interrupted_study["root"]
    out = quality.collect(root, "hippocampus_contour_width", root=str(tmp_path), echo=lambda *_: None)
    record = json.load(open(os.path.join(out, "study.json")))
    assert record["report"] is True and record["definition"]["arms"].keys() == {"nnU-Net", "CWCD"}
    for name in ("per_run.csv", "run_level.csv", "per_case.csv", "paired.csv", "screen.csv"):
        assert open(os.path.join(out, name)).read() == open(os.path.join(root, name)).read(), name
    with pytest.raises(ValueError, match="unknown study name"):
        quality.collect(root, "no_such_study", root=str(tmp_path))

    locked_root = tmp_path / "while_running"
    def mtimes():  # the lock file excepted: taking the lock writes the holder into it
        return {os.path.join(d, n): os.path.getmtime(os.path.join(d, n))
                for d, _, names in os.walk(root) for n in names if n != ".lock"}

    before = mtimes()
    with StudyFolder(root):  # what a running study command holds
        snap = quality.collect(root, "hippocampus_contour_width", root=str(locked_root), echo=lambda *_: None)
    assert mtimes() == before  # the study folder was only read
    assert json.load(open(os.path.join(snap, "study.json")))["report"] == "snapshot"
    assert sorted(os.listdir(snap)) == sorted(os.listdir(out))
    for name in ("per_run.csv", "run_level.csv", "per_case.csv", "screen.csv"):
        assert open(os.path.join(snap, name)).read() == open(os.path.join(out, name)).read(), name


def test_halving_stops_the_expected_arms_through_the_slurm_path(nnunet_tiny, tmp_path, monkeypatch):
    """4 arms, 4 epochs: pause at 1 and 2; the stub ranks A > B > C (the baseline always goes on). With a test
    set, the stopped arms and the baseline predict it at each stop, and the report scores them there."""
    pytest.importorskip("submitit")
    pytest.importorskip("nnunet_losses_trainers")
    from nnunet_losses.nnunet.tools.study.cli import run_study
    from nnunet_losses.nnunet.tools.study.executor import SlurmOptions

    for k, v in _env(nnunet_tiny, tmp_path).items():
        monkeypatch.setenv(k, v)
    definition = StudyDefinition(dataset="990", configuration="3d_fullres", plans="nnUNetTinyPlans", folds=[0],
                                 seeds=[0], epochs=4, iterations=1, val_iterations=1,
                                 arms=[parse_arm("nnUNetTrainer"), parse_arm('A=nnUNetTrainerCWCD:{"contour_width": 1}'),
                                       parse_arm('B=nnUNetTrainerCWCD:{"contour_width": 2}'),
                                       parse_arm("C=nnUNetTrainerCombo")],
                                 test_images=os.path.join(nnunet_tiny.raw, "Dataset990_SynthLabels3D", "imagesTr"),
                                 test_labels=os.path.join(nnunet_tiny.raw, "Dataset990_SynthLabels3D", "labelsTr"),
                                 tta=False)
    scores = {"nnU-Net": 0.0, "A": 0.9, "B": 0.5, "C": 0.1}
    seen = []

    def stub(spec, epoch):
        seen.append((spec["arm"], epoch))
        return scores[spec["arm"]]

    lines = []
    folder = StudyFolder(str(tmp_path / "h"))
    run_study(folder, definition, "slurm", jobs=4, halving=True, cluster="local", halving_metric=stub,
              echo=lines.append, report=False, slurm=SlurmOptions(gpus=0, time_min=30))
    states = _states(folder.root)
    status = {k.split("__")[0]: v for k, v in states.items()}
    assert status["C"]["status"] == "stopped" and status["C"]["stopped_at"] == 1, lines
    assert status["B"]["status"] == "stopped" and status["B"]["stopped_at"] == 2, lines
    assert status["A"]["status"] == "done" and status["nnU-Net"]["status"] == "done", lines
    import torch

    for arm, trainer, epochs in (("A", "nnUNetTrainerCWCD_study", 4), ("C", "nnUNetTrainerCombo_study", 1),
                                 ("B", "nnUNetTrainerCWCD_study", 2)):
        fold = os.path.join(folder.root, "results", arm, "seed_0", "Dataset990_SynthLabels3D",
                            f"{trainer}__nnUNetTinyPlans__3d_fullres", "fold_0")
        name = "checkpoint_final.pth" if arm == "A" else "checkpoint_latest.pth"
        assert torch.load(os.path.join(fold, name), map_location="cpu", weights_only=False)["current_epoch"] == epochs
    assert len(_train_commands(status["A"]["log"])) == 3  # epochs 0-1, --c to 2, --c to the end
    assert sum("--c" in c for c in _train_commands(status["A"]["log"])) == 2
    assert os.listdir(os.path.join(folder.root, "submitit"))  # the jobs went through submitit
    decisions = folder.read_halving()
    assert sorted(decisions) == [1, 2] and decisions[1]["stopped"] == ["C"] and decisions[2]["stopped"] == ["B"]
    assert decisions[1]["scores"]["C"] == scores["C"], decisions
    from nnunet_losses.nnunet.tools.study.grid import SCREEN

    assert decisions[1]["screen"] == SCREEN and "superseded" not in decisions[1], decisions
    assert ("C", 1) in seen and ("B", 2) in seen and ("C", 2) not in seen, seen

    # predictions at the stops: C and the baseline at epoch 1, B and the baseline at epoch 2, A only at the end
    n_cases = len(os.listdir(definition.test_images))
    assert set(status["C"]["at_stop"]) == {"1"} and set(status["B"]["at_stop"]) == {"2"}, lines
    assert set(status["nnU-Net"]["at_stop"]) == {"1", "2"} and "at_stop" not in status["A"], lines
    for arm, epoch in (("C", 1), ("B", 2), ("nnU-Net", 1), ("nnU-Net", 2)):
        out = folder.stop_prediction_dir(arm, 0, 0, epoch)
        assert status[arm]["at_stop"][str(epoch)]["prediction"] == out
        assert len([n for n in os.listdir(out) if n.endswith(".nii.gz")]) == n_cases, (arm, epoch)
    assert status["C"]["status"] == "stopped" and status["nnU-Net"]["status"] == "done"  # no status changed

    from nnunet_losses.nnunet.tools.study.report import build_report

    report = open(build_report(folder, echo=lines.append)).read()
    assert "## Arms stopped by successive halving after epoch 1 of 4, scored at their stop" in report
    assert "## Run level, test set at epoch 2:" in report and "## Run level, test set:" in report
    with open(folder.path("run_level.csv")) as f:
        level = {(r["evaluation"], r["arm"]) for r in csv.DictReader(f)}
    assert level == {("test", "A"), ("test_epoch1", "C"), ("test_epoch2", "B")}, level
    # one Holm family over the test set: each of the 3 arms compared once, at the end or at its stop
    with open(folder.path("run_level.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["family_size"] for r in rows} == {"3"}
    expected = holm_planned([float(r["p_value"]) for r in rows], 3)
    assert [float(r["p_holm"]) for r in rows] == pytest.approx(list(expected), nan_ok=True)  # 1 run: no p
    assert "Holm's correction over 3 arms" in report
    with open(folder.path("per_run.csv")) as f:
        per_run = {r["arm"]: r for r in csv.DictReader(f)}
    assert 0.0 <= float(per_run["C"]["test_epoch1_dice"]) <= 1.0 and per_run["C"]["test_dice"] == ""
    assert per_run["nnU-Net"]["test_epoch1_dice"] and per_run["nnU-Net"]["test_epoch2_dice"]
    assert per_run["nnU-Net"]["test_dice"] and per_run["B"]["test_epoch1_dice"] == ""
    with open(folder.path("screen.csv")) as f:
        screened = {(r["evaluation"], r["arm"]) for r in csv.DictReader(f)}
    assert {("test_epoch1", "C"), ("test_epoch2", "B"), ("test", "A"), ("test_epoch1", "nnU-Net")} <= screened
    for name in ("per_case_test_epoch1.csv", "paired_test_epoch2.csv", "plots/runs_test_epoch1_dice.png"):
        assert os.path.getsize(folder.path(name)) > 0, name

    _restored_study_scores_the_same(folder, definition, tmp_path, lines)


def _restored_study_scores_the_same(folder, definition, tmp_path, lines):
    """The study folder lost: 'restore' from the report's files (what collect commits) gives a folder whose
    report has the same numbers without a single prediction, and a run that goes on trains from the start."""
    import shutil

    from nnunet_losses.nnunet.tools.study.grid import run_specs, validation_dice
    from nnunet_losses.nnunet.tools.study.report import build_report
    from nnunet_losses.nnunet.tools.study.restore import restore

    data = tmp_path / "collected"
    data.mkdir()
    for name in ("per_run.csv", "per_case.csv", "per_case_test_epoch1.csv", "per_case_test_epoch2.csv",
                 "halving.json"):
        shutil.copyfile(folder.path(name), data / name)
    again = StudyFolder(str(tmp_path / "new_machine"))
    assert restore(again, definition, str(data), echo=lines.append) == {"done": 2, "stopped": 2}
    assert again.read_halving() == folder.read_halving()
    assert not os.path.isdir(again.path("results")) and not os.path.isdir(again.path("predictions_at_stop"))
    build_report(again, echo=lines.append)
    for name in ("run_level.csv", "per_run.csv", "screen.csv", "per_case.csv", "per_case_test_epoch1.csv"):
        with open(folder.path(name)) as f, open(again.path(name)) as g:
            old, new = list(csv.DictReader(f)), list(csv.DictReader(g))
        drop = {"log", "val_dice", "val_ema_dice", "predict_s", "device", "attempts"}  # of the training, not scores
        key = lambda r: sorted((k, v) for k, v in r.items() if k not in drop)  # noqa: E731
        assert sorted(map(key, old)) == sorted(map(key, new)), name
    report = open(again.path("report.md")).read()
    assert "restored from collected" in report and "## Run level, test set at epoch 2:" in report
    assert restore(again, definition, str(data), echo=lines.append) == {"kept": 4}  # nothing overwritten

    # a paused run restored: its screen stands in for the lost checkpoint, and it goes on from the start
    rows = list(csv.DictReader(open(data / "per_run.csv")))
    for r in rows:
        if r["arm"] == "A":
            r.update(status="paused", epochs="2", val_dice="0.61")
    with open(data / "per_run.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paused = StudyFolder(str(tmp_path / "paused"))
    restore(paused, definition, str(data), echo=lines.append)
    state = paused.read_state("A__fold0__seed0")
    assert state["status"] == "paused" and state["epoch"] == 2 and "seconds" not in state
    spec = run_specs(paused, paused.read_study(), definition)["A__fold0__seed0"]
    assert validation_dice(spec, 2) == pytest.approx(0.61) and math.isnan(validation_dice(spec, 1))

    _restored_stopped_arm_trains_to_its_stop_again(folder, definition, tmp_path, lines)

    rows[0]["test_dice"] = "0.123"  # per_run.csv and per_case.csv of different reports
    with open(data / "per_run.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match="not from the same report"):
        restore(StudyFolder(str(tmp_path / "mismatch")), definition, str(data), echo=lines.append)
    with pytest.raises(ValueError, match="has no per_run.csv"):
        restore(StudyFolder(str(tmp_path / "empty")), definition, str(tmp_path), echo=lines.append)


def _restored_stopped_arm_trains_to_its_stop_again(folder, definition, tmp_path, lines):
    """C's scores at its stop (epoch 1) are not in the data: restored without its checkpoint, C trains to
    epoch 1 again, predicts the test set there, and the report scores it beside the baseline's restored rows."""
    import shutil

    from nnunet_losses.nnunet.tools.study.cli import run_study
    from nnunet_losses.nnunet.tools.study.restore import restore

    data = tmp_path / "collected_without_C"
    data.mkdir()
    for name in ("per_case.csv", "per_case_test_epoch2.csv", "halving.json"):
        shutil.copyfile(folder.path(name), data / name)
    for name, keep in (("per_run.csv", None), ("per_case_test_epoch1.csv", lambda r: r["method_name"] != "C")):
        with open(folder.path(name)) as f:
            rows = list(csv.DictReader(f))
        if keep is None:
            for r in rows:
                if r["arm"] == "C":
                    r.update({k: "" for k in r if k.startswith("test_epoch1_")})
        with open(data / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows([r for r in rows if keep is None or keep(r)])
    lost = StudyFolder(str(tmp_path / "lost_C"))
    restore(lost, definition, str(data), echo=lines.append)
    assert "at_stop" not in lost.read_state("C__fold0__seed0")
    t0 = time.time()
    run_study(lost, definition, "local", jobs=1, halving=True, halving_metric=lambda spec, epoch: 0.0,
              echo=lines.append)
    state = lost.read_state("C__fold0__seed0")
    assert state["status"] == "stopped" and state["at_stop"]["1"]["prediction"], lines
    assert 0 < state["seconds"]["train"] < time.time() - t0  # the new training only
    assert [c for c in _train_commands(state["log"]) if "--c" not in c] and len(_train_commands(state["log"])) == 1
    with open(lost.path("per_run.csv")) as f:
        c = next(r for r in csv.DictReader(f) if r["arm"] == "C")
    assert 0.0 <= float(c["test_epoch1_dice"]) <= 1.0
    with open(lost.path("run_level.csv")) as f:
        assert ("test_epoch1", "C") in {(r["evaluation"], r["arm"]) for r in csv.DictReader(f)}
    assert not any(os.path.isdir(lost.path("results", arm)) for arm in ("nnU-Net", "A", "B"))  # nothing else trained


def test_threads_are_a_speed_setting_the_definition_does_not_hold(nnunet_tiny, tmp_path, monkeypatch):
    """--threads reaches every run; the default is cores / runs at a time; continuing with another value is
    allowed (it changes no result), unlike any change to the definition."""
    from nnunet_losses.nnunet.tools.study import grid
    from nnunet_losses.nnunet.tools.study.cli import run_study

    for k, v in _env(nnunet_tiny, tmp_path).items():
        monkeypatch.setenv(k, v)
    seen = []
    monkeypatch.setattr(grid, "run_grid", lambda folder, definition, specs, *a, **kw: seen.append(specs))
    definition = StudyDefinition(dataset="990", configuration="3d_fullres", plans="nnUNetTinyPlans", folds=[0, 1],
                                 seeds=[0], epochs=1, iterations=1, arms=[parse_arm("nnUNetTrainer")])
    folder = StudyFolder(str(tmp_path / "t"))
    run_study(folder, definition, jobs=2, report=False, echo=lambda *_: None)
    assert [s["threads"] for s in seen[0].values()] == [max(1, (os.cpu_count() or 1) // 2)] * 2
    run_study(folder, None, jobs=1, report=False, echo=lambda *_: None, threads=1)
    assert [s["threads"] for s in seen[1].values()] == [1, 1]
    assert "threads" not in json.load(open(folder.definition_path))["definition"] or \
        json.load(open(folder.definition_path))["definition"]["threads"] is None


def test_second_concurrent_command_is_refused(tmp_path):
    root = tmp_path / "locked"
    holder = StudyFolder(str(root))
    holder.lock()
    try:
        with pytest.raises(StudyLocked, match="another study command"):
            StudyFolder(str(root)).lock()
        p = subprocess.run([nnunet_tiny_cli("nnunet_losses_study"), "run", str(root),
                            *_grid_args(["nnUNetTrainer", "nnUNetTrainerCWCD"])],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 3 and "another study command works on" in p.stderr, p.stderr
        assert not (root / "study.json").exists()
    finally:
        holder.unlock()


def test_slurm_without_sbatch_fails_at_once(tmp_path):
    pytest.importorskip("submitit")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable)  # no sbatch there
    p = subprocess.run([nnunet_tiny_cli("nnunet_losses_study"), "run", str(tmp_path / "x"), "--executor", "slurm",
                        *_grid_args(["nnUNetTrainer", "nnUNetTrainerCWCD"])], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "sbatch is not on this machine's PATH" in p.stderr, p.stderr
    assert not (tmp_path / "x" / "study.json").exists()


def test_a_changed_definition_is_refused(tmp_path, nnunet_tiny, monkeypatch):
    for k, v in _env(nnunet_tiny, tmp_path).items():
        monkeypatch.setenv(k, v)
    from nnunet_losses.nnunet.tools.study.grid import prepare_study

    folder = StudyFolder(str(tmp_path / "c"))
    d = StudyDefinition(dataset="990", configuration="3d_fullres", plans="nnUNetTinyPlans",
                        arms=[parse_arm("nnUNetTrainer"), parse_arm("nnUNetTrainerCWCD")], folds=[0])
    prepare_study(folder, d)
    prepare_study(folder, d)  # the same study again: fine
    other = StudyDefinition(**{**d.__dict__, "seeds": [0, 1]})
    with pytest.raises(ValueError, match=r"another study \(it differs in \['seeds'\]\)"):
        prepare_study(folder, other)


def test_arm_parsing_and_definition_errors():
    assert parse_arm('CWCD_i2=nnUNetTrainerCWCD:{"contour_width": 2}').options == {"contour_width": 2}
    assert parse_arm("nnUNetTrainerOsC").name == "OsC"
    with pytest.raises(ValueError, match="not JSON"):
        parse_arm("nnUNetTrainerCWCD:{iterations: 2}")
    with pytest.raises(ValueError, match="arm names must differ"):
        StudyDefinition(dataset="1", configuration="2d", arms=[parse_arm("nnUNetTrainerCWCD")] * 2)
    with pytest.raises(ValueError, match="baseline"):
        StudyDefinition(dataset="1", configuration="2d", arms=[parse_arm("nnUNetTrainer")], baseline="X")
    with pytest.raises(ValueError, match="unknown keys"):
        StudyDefinition.from_json({"dataset": 1, "configuration": "2d", "arms": {"a": "nnUNetTrainer"}, "epoch": 3})


def test_run_level_statistics_by_hand():
    # 3 runs; arm X better in every run (+0.1, +0.2, +0.3): exact two-sided Wilcoxon p = 2 / 2^3 = 0.25
    values = {"base": {(0, 0): 0.5, (1, 0): 0.6, (2, 0): 0.7},
              "X": {(0, 0): 0.6, (1, 0): 0.8, (2, 0): 1.0},
              "Y": {(0, 0): 0.5, (1, 0): 0.5, (2, 0): 0.8}}  # equal, worse (-0.1), better (+0.1)
    rows = {r["arm"]: r for r in run_level_tests(values, "base", ["base", "X", "Y"])}
    assert rows["X"]["better"] == 3 and rows["X"]["worse"] == 0 and rows["X"]["mean_diff"] == pytest.approx(0.2)
    assert rows["X"]["p_value"] == pytest.approx(0.25) and rows["X"]["smallest_p"] == pytest.approx(0.25)
    assert (rows["Y"]["better"], rows["Y"]["equal"], rows["Y"]["worse"]) == (1, 1, 1)
    assert rows["Y"]["smallest_p"] == pytest.approx(0.5)  # two non-zero differences
    # Holm over 2 arms: the smaller p times 2, the larger max(previous, p)
    ps = sorted([rows["X"]["p_value"], rows["Y"]["p_value"]])
    assert rows["X"]["p_holm"] == pytest.approx(min(1.0, 2 * ps[0]))
    assert rows["Y"]["p_holm"] == pytest.approx(min(1.0, max(2 * ps[0], ps[1])))
    assert smallest_p(6) == pytest.approx(0.03125)
    assert rows["X"]["family_size"] == rows["Y"]["family_size"] == 2


def test_holm_over_a_planned_family_counts_the_tests_still_missing_as_p_one():
    # 2 of 4 planned tests done: Holm over 4, sorted p 0.002, 0.01 -> 4 x 0.002 = 0.008, max(0.008, 3 x 0.01) = 0.03
    assert holm_planned([0.01, 0.002], 4) == pytest.approx([0.03, 0.008])
    # a NaN p (no pair to test) counts as missing, not as a test: the same family of 4
    assert holm_planned([0.01, float("nan"), 0.002], 4)[[0, 2]] == pytest.approx([0.03, 0.008])
    assert math.isnan(holm_planned([0.01, float("nan"), 0.002], 4)[1])
    # the complete family is plain Holm; a family smaller than the tests given cannot shrink it
    assert holm_planned([0.01, 0.002, 0.3, 0.04], 4) == pytest.approx([0.03, 0.008, 0.3, 0.08])
    assert holm_planned([0.01, 0.002], 1) == pytest.approx([0.01, 0.004])
    # a later test can only lower the corrected p of the earlier ones
    before = holm_planned([0.01, 0.002], 4)
    assert all(holm_planned([0.01, 0.002, 0.001], 4)[:2] <= before)


def test_report_corrects_the_test_set_at_the_end_and_at_the_stops_as_one_family(tmp_path):
    """A kept at the end, C stopped at epoch 1, both better than the baseline in 3 of 3 runs (p = 0.25 each):
    Holm over the study's 3 arms (B not compared yet counts as p = 1) gives 3 x 0.25 = 0.75 to both, not 0.25
    per evaluation; the cross-validation is a family of its own."""
    from nnunet_losses.nnunet.tools.study.report import _run_level, read_csv, write_csv

    runs = [(0, 0), (1, 0), (2, 0)]
    cases, evaluations = {}, []
    for which, arm in (("test", "A"), ("cv", "A"), ("test_epoch1", "C")):
        rows = [{"method_name": m, "fold": i, "case": "c", "class_name": "fg", "dice": 0.5 + 0.1 * i + d}
                for m, d in (("base", 0.0), (arm, 0.1)) for i in range(3)]
        write_csv(str(tmp_path / f"{which}.csv"), rows, list(rows[0]))
        cases[which] = read_csv(str(tmp_path / f"{which}.csv"))  # strings, as the report reads them
        evaluations.append((which, which, ["base", arm], runs))
    tests = _run_level(cases, evaluations, "base", family_size=3)
    for which in ("test", "test_epoch1"):
        (t,) = tests[which]
        assert t["p_value"] == pytest.approx(0.25) and t["p_holm"] == pytest.approx(0.75) and t["family_size"] == 3
    (cv,) = tests["cv"]  # alone in its family of 3: 3 x 0.25
    assert cv["p_holm"] == pytest.approx(0.75) and cv["family_size"] == 3
    tests = _run_level(cases, evaluations, "base", family_size=1)  # no larger plan: the 2 test-set arms
    assert tests["test"][0]["p_holm"] == pytest.approx(0.5) and tests["cv"][0]["p_holm"] == pytest.approx(0.25)


def test_report_merges_runs_predicted_here_with_restored_ones(tmp_path, monkeypatch):
    """A restored study: run (0, 0) has only restored rows, run (1, 0) was predicted here, run (2, 0) has
    neither (its predictions stopped after one of two cases). The evaluation scores the first two as one, in the
    report's order, and leaves the third out."""
    import pandas as pd

    from nnunet_losses.nnunet.tools.study import report
    from nnunet_losses.nnunet.tools.study.restore import RESTORED

    folder = StudyFolder(str(tmp_path / "s"))
    definition = StudyDefinition(dataset="990", configuration="2d", arms=[parse_arm("base=nnUNetTrainer"),
                                                                          parse_arm("A=nnUNetTrainerCWCD")],
                                 folds=[0, 1, 2], seeds=[0], metrics=["dice"])

    def rows(arm, run, fold_value, extra):
        return [{"method_name": arm, **fold_value, "case": c, "class_name": "fg", "class": cl,
                 "dice": 0.5 + 0.1 * run[0] + extra + (0.01 * i if cl == "1" else 0.005 * i)}
                for i, c in enumerate(("c1", "c2")) for cl in ("1", "mean")]

    os.makedirs(folder.path(RESTORED))
    restored = rows("base", (0, 0), {"run_fold": 0, "run_seed": 0}, 0.0) + \
        rows("A", (0, 0), {"run_fold": 0, "run_seed": 0}, 0.2)
    report.write_csv(folder.path(RESTORED, "test.csv"), restored, list(restored[0]))
    images = tmp_path / "imagesTs"
    images.mkdir()
    for c in ("c1", "c2"):
        (images / f"{c}_0000.nii.gz").write_bytes(b"")
    specs = {}
    for arm in ("base", "A"):
        for f in (0, 1, 2):
            prediction = tmp_path / "pred" / arm / str(f)
            prediction.mkdir(parents=True)
            for c in {0: (), 1: ("c1", "c2"), 2: ("c1",)}[f]:
                (prediction / f"{c}.nii.gz").write_bytes(b"")
            specs[f"{arm}{f}"] = {"arm": arm, "fold": f, "seed": 0, "prediction": str(prediction),
                                  "fold_dir": str(tmp_path / "none"), "test_images": str(images),
                                  "file_ending": ".nii.gz"}
    compared = []

    def fake_compare(folder_, record, definition_, arms, runs, specs_, which, echo, epoch=None, dest=None,
                     name=None):
        compared.append((arms, runs, name))
        out = tmp_path / "here"
        out.mkdir()
        here = rows("base", (1, 0), {"fold": 0}, 0.0) + rows("A", (1, 0), {"fold": 0}, -0.1)
        report.write_csv(str(out / "per_case.csv"), here, list(here[0]))
        return str(out)

    monkeypatch.setattr(report, "_compare", fake_compare)
    lines = []
    out, runs = report._evaluate(folder, {}, definition, ["base", "A"], [(0, 0), (1, 0), (2, 0)], specs, "test",
                                 lines.append)
    assert compared == [(["base", "A"], [(1, 0)], "test_here")]
    assert runs == [(0, 0), (1, 0)] and any("1 of 3 run(s) have neither" in x for x in lines)
    merged = pd.read_csv(os.path.join(out, "per_case.csv"), dtype={"class": str})
    by_run = merged[merged["class"] == "1"].groupby(["method_name", "fold"]).dice.mean()
    assert by_run[("A", 0)] == pytest.approx(0.705) and by_run[("A", 1)] == pytest.approx(0.505)
    assert by_run[("base", 1)] == pytest.approx(0.605)
    paired = pd.read_csv(os.path.join(out, "paired.csv"), dtype={"class": str})
    row = paired[(paired.metric == "dice") & (paired["class"] == "1")].iloc[0]
    assert row["mean_diff"] == pytest.approx((0.2 - 0.1) / 2) and row["n"] == 2  # both runs' pairs, 2 cases


def test_screen_flags_a_loss_that_paints_background():
    def row(method, fold, case, n_ref, n_pred, precision, false=0):
        return {"method_name": method, "fold": str(fold), "case": case, "class_name": "small", "n_ref": n_ref,
                "n_pred": n_pred, "precision": precision, "n_false_lesions": false}

    rows = [row("base", 0, "a", 100, 90, 0.9), row("base", 0, "b", 100, 110, 0.8),
            row("paint", 0, "a", 100, 400, 0.25, 3), row("paint", 0, "b", 100, 300, 0.3, 2),
            row("ok", 0, "a", 100, 100, 0.85), row("ok", 0, "b", 100, 120, 0.8),
            {**row("base", 0, "a", 0, 0, 0.0), "class_name": "mean"}]
    out = {r["arm"]: r for r in screen(rows, [(0, 0)], "base")}
    assert out["paint"]["volume_ratio"] == pytest.approx(3.5) and out["paint"]["false_components"] == 5
    assert "volume ratio 3.50" in out["paint"]["flag"] and "below half the baseline" in out["paint"]["flag"]
    assert out["ok"]["flag"] == "" and out["base"]["flag"] == ""
    assert out["base"]["volume_ratio"] == pytest.approx(1.0) and out["base"]["precision"] == pytest.approx(0.85)


def test_a_one_arm_study_is_scored_without_case_level_statistics():
    """A pilot of one trainer: the compare tool refuses --baseline/--ranking without a second method."""
    from nnunet_losses.nnunet.tools.study.report import statistics_flags

    assert statistics_flags(["nnU-Net"], "nnU-Net") == []
    assert statistics_flags(["nnU-Net", "CWCD"], "nnU-Net") == ["--baseline", "nnU-Net", "--ranking"]


def test_a_failed_attempt_counts_its_training_seconds(tmp_path, monkeypatch):
    """The seconds a failed (or interrupted) training attempt spent are added to the run's ``train`` time,
    which the progress table and the study's budget read."""
    from nnunet_losses.nnunet.tools.study import run as run_module

    folder = StudyFolder(str(tmp_path / "s"))
    os.makedirs(folder.root)
    folder.write_state("A__fold0__seed0", seconds={"train": 10.0})
    monkeypatch.setattr(run_module, "run_environment", lambda spec: dict(os.environ))
    monkeypatch.setattr(run_module, "train_command", lambda spec, resume: [
        sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])
    spec = {"root": folder.root, "run": "A__fold0__seed0", "log": str(tmp_path / "s" / "logs" / "A.log"),
            "attempt": 2, "seed": 0, "device": "cpu", "fold_dir": str(tmp_path / "fold_0"), "pause_at": None}
    with pytest.raises(run_module.RunFailed, match="exited with code 3"):
        run_module.execute_run(spec)
    assert 10.3 <= folder.read_state("A__fold0__seed0")["seconds"]["train"] < 60


def test_training_progress_prefers_the_final_checkpoint(tmp_path):
    """A run stopped between nnU-Net's writing checkpoint_final.pth and removing checkpoint_latest.pth keeps an
    older latest checkpoint: the progress is the final one's."""
    import torch

    from nnunet_losses.nnunet.tools.study.grid import training_progress

    spec = {"fold_dir": str(tmp_path)}
    assert training_progress(spec)[0] == 0
    torch.save({"logging": {"ema_fg_dice": [0.1, 0.2], "mean_fg_dice": [0.1, 0.3]}}, tmp_path / "checkpoint_latest.pth")
    assert training_progress(spec) == (2, 0.2, pytest.approx(0.2))
    torch.save({"logging": {"ema_fg_dice": [0.1, 0.2, 0.3], "mean_fg_dice": [0.1, 0.3, 0.7]}},
               tmp_path / "checkpoint_final.pth")
    assert training_progress(spec) == (3, 0.3, pytest.approx(0.5))


def test_the_halving_screen_is_the_mean_of_the_last_two_epochs_not_the_ema(tmp_path):
    """nnU-Net's logged pseudo Dice 0, 0, 0.1, 0.5, 0.7: its EMA after epoch 5 is 0.123 (the early zeros
    still weigh), the screen 0.6; read at epoch 4 from a run that trained on to 7, it is (0.1 + 0.5) / 2."""
    import torch

    from nnunet_losses.nnunet.tools.study.grid import validation_dice

    dice = [0.0, 0.0, 0.1, 0.5, 0.7, 0.8, 0.9]
    ema = [dice[0]]
    for x in dice[1:]:
        ema.append(0.9 * ema[-1] + 0.1 * x)
    assert ema[4] == pytest.approx(0.1231)
    torch.save({"logging": {"mean_fg_dice": dice, "ema_fg_dice": ema}}, tmp_path / "checkpoint_latest.pth")
    spec = {"fold_dir": str(tmp_path)}
    assert validation_dice(spec, 5) == pytest.approx(0.6)
    assert validation_dice(spec, 4) == pytest.approx(0.3)
    assert validation_dice(spec, 1) == pytest.approx(0.0)
    assert math.isnan(validation_dice(spec, 8))  # not reached
    assert math.isnan(validation_dice({"fold_dir": str(tmp_path / "none")}, 5))


def _halving_setup(tmp_path, arms=("nnU-Net", "A", "B", "C", "D")):
    from types import SimpleNamespace

    folder = StudyFolder(str(tmp_path / "s"))
    definition = SimpleNamespace(baseline_arm="nnU-Net", arms=[SimpleNamespace(name=a) for a in arms])
    specs = {}
    for a in arms:
        for fold in (0, 1):
            rid = f"{a}__fold{fold}__seed0"
            specs[rid] = {"run": rid, "arm": a, "fold": fold, "seed": 0, "fold_dir": str(tmp_path / rid)}
            folder.write_state(rid, status="paused", epoch=5)
    return folder, definition, specs


def test_a_decision_taken_with_the_ema_is_made_again_with_the_screen(tmp_path):
    """The first decision (no "screen": nnU-Net's EMA) stopped C and D; the screen ranks A, C, B, D: C is
    reinstated, B is stopped (its runs are still at the pause), D stays stopped, and the old decision is kept."""
    from nnunet_losses.nnunet.tools.study.grid import SCREEN, _halve

    folder, definition, specs = _halving_setup(tmp_path)
    folder.write_halving(5, {"nnU-Net": 0.06, "A": 0.2, "B": 0.24, "C": 0.13, "D": 0.0}, ["C", "D"])
    for rid, sp in specs.items():
        if sp["arm"] in ("C", "D"):
            folder.write_state(rid, status="stopped", stopped_at=5, reason="EMA")
    scores = {"nnU-Net": 0.4, "A": 0.9, "B": 0.5, "C": 0.8, "D": 0.1}
    lines = []
    going_on = _halve(folder, definition, specs, ["nnU-Net", "A", "B"], lambda sp, e: scores[sp["arm"]], 5,
                      lines.append)
    assert going_on == ["nnU-Net", "A", "C"], lines
    d = folder.read_halving()[5]
    assert d["stopped"] == ["B", "D"] and d["screen"] == SCREEN and d["scores"]["C"] == 0.8
    assert d["superseded"] == {"scores": {"nnU-Net": 0.06, "A": 0.2, "B": 0.24, "C": 0.13, "D": 0.0},
                               "stopped": ["C", "D"]}
    st = {rid: folder.read_state(rid) for rid in specs}
    assert st["C__fold0__seed0"]["status"] == "paused" and st["C__fold1__seed0"]["stopped_at"] is None
    assert st["C__fold0__seed0"]["reinstated"] == {"epoch": 5, "screen": SCREEN}
    assert st["B__fold1__seed0"]["status"] == "stopped" and st["B__fold1__seed0"]["stopped_at"] == 5
    assert st["D__fold0__seed0"]["reason"] == "EMA"  # stopped before, left as it was
    assert any("keeps them" in line for line in lines), lines
    # recorded with the screen now: reused as it is, whatever the metric says
    assert _halve(folder, definition, specs, ["nnU-Net", "A", "B", "C", "D"], lambda sp, e: 0.0, 5,
                  lines.append) == ["nnU-Net", "A", "C"]


def test_an_arm_that_trained_past_the_stop_goes_on_when_the_decision_is_made_again(tmp_path):
    import torch

    from nnunet_losses.nnunet.tools.study.grid import _halve

    folder, definition, specs = _halving_setup(tmp_path)
    folder.write_halving(5, {"nnU-Net": 0.06, "A": 0.2, "B": 0.24, "C": 0.13, "D": 0.0}, ["C", "D"])
    os.makedirs(specs["B__fold0__seed0"]["fold_dir"])
    torch.save({"logging": {"ema_fg_dice": [0.1] * 7, "mean_fg_dice": [0.1] * 7}},
               os.path.join(specs["B__fold0__seed0"]["fold_dir"], "checkpoint_latest.pth"))
    scores = {"nnU-Net": 0.4, "A": 0.9, "B": 0.5, "C": 0.8, "D": 0.1}
    lines = []
    going_on = _halve(folder, definition, specs, ["nnU-Net", "A", "B"], lambda sp, e: scores[sp["arm"]], 5,
                      lines.append)
    assert going_on == ["nnU-Net", "A", "B", "C"], lines
    d = folder.read_halving()[5]
    assert d["stopped"] == ["D"] and d["went_on"] == ["B"]
    assert folder.read_state("B__fold1__seed0")["status"] == "paused"


def test_halving_decisions_are_kept_round_by_round(tmp_path):
    """Each decision is added to ``halving.json`` without touching earlier ones; the epochs come back as
    integers (JSON keys are strings)."""
    folder = StudyFolder(str(tmp_path / "s"))
    assert folder.read_halving() == {}
    folder.write_halving(5, {"nnU-Net": 0.5, "A": 0.4, "B": None}, ["B"])
    folder.write_halving(10, {"nnU-Net": 0.6, "A": 0.55}, [])
    assert folder.read_halving() == {5: {"scores": {"nnU-Net": 0.5, "A": 0.4, "B": None}, "stopped": ["B"]},
                                     10: {"scores": {"nnU-Net": 0.6, "A": 0.55}, "stopped": []}}
    with open(folder.path("halving.json")) as f:
        assert set(json.load(f)) == {"5", "10"}


def test_a_run_interrupted_in_a_later_halving_round_is_not_sent_back_to_an_earlier_pause(tmp_path):
    """A session that ends during round 2 leaves the run pending with a checkpoint past the first pause. Round
    1 must count it as paused there: continued with the first pause, nnU-Net would never meet that epoch
    again and would train the run to the end."""
    import torch

    from nnunet_losses.nnunet.tools.study.grid import _finished

    folder = StudyFolder(str(tmp_path / "s"))
    spec = {"run": "A__fold0__seed0", "fold_dir": str(tmp_path / "fold_0")}
    os.makedirs(spec["fold_dir"])
    assert not _finished(folder, spec, 5)  # never started
    folder.write_state(spec["run"], status="pending", attempts=1, interrupted=True, epoch=5)
    torch.save({"logging": {"ema_fg_dice": [0.1] * 7}}, os.path.join(spec["fold_dir"], "checkpoint_latest.pth"))
    assert _finished(folder, spec, 5)  # past the first pause: round 1 leaves it alone
    assert not _finished(folder, spec, 10) and not _finished(folder, spec, None)  # round 2 continues it
    torch.save({"logging": {"ema_fg_dice": [0.1] * 3}}, os.path.join(spec["fold_dir"], "checkpoint_latest.pth"))
    assert not _finished(folder, spec, 5)  # interrupted before the first pause: round 1 continues it
    folder.write_state(spec["run"], status="paused", epoch=5)
    assert _finished(folder, spec, 5) and not _finished(folder, spec, 10)


def test_a_restored_run_trained_again_reports_both_screens_where_the_lost_one_paused(tmp_path):
    """Restored at epoch 2 with screen 0.5 and trained again here to epoch 4 (logged pseudo Dice 0.1, 0.3, 0.6,
    0.7): at epoch 1 per_run.csv still gives the restored epoch 2 and its screen; at epoch 4 it gives the
    rerun's screen at epoch 2, (0.1 + 0.3) / 2, beside the lost 0.5, and a second restore from that row keeps
    the pair although no checkpoint is left."""
    import torch

    from nnunet_losses.nnunet.tools.study.report import progress_rows
    from nnunet_losses.nnunet.tools.study.restore import _state

    rid = "A__fold0__seed0"
    spec = {"run": rid, "arm": "A", "fold": 0, "seed": 0, "fold_dir": str(tmp_path / rid),
            "log": str(tmp_path / "s" / "logs" / f"{rid}.log")}
    folder = StudyFolder(str(tmp_path / "s"))
    folder.write_state(rid, **_state({"status": "paused", "epochs": "2", "val_dice": "0.5"}, [], "data"))
    row = progress_rows(folder, {rid: spec})[("A", 0, 0)]
    assert (row["epochs"], row["val_dice"]) == (2, 0.5)
    assert (row["rerun_epoch"], row["lost_val_dice"], row["rerun_val_dice"]) == ("", "", "")  # not trained here yet
    os.makedirs(spec["fold_dir"])
    torch.save({"logging": {"mean_fg_dice": [0.1], "ema_fg_dice": [0.1]}},
               os.path.join(spec["fold_dir"], "checkpoint_latest.pth"))
    row = progress_rows(folder, {rid: spec})[("A", 0, 0)]  # trained again here, not yet as far as the data went
    assert (row["epochs"], row["val_dice"], row["rerun_epoch"]) == (2, 0.5, "")
    torch.save({"logging": {"mean_fg_dice": [0.1, 0.3, 0.6, 0.7], "ema_fg_dice": [0.1, 0.12, 0.17, 0.22]}},
               os.path.join(spec["fold_dir"], "checkpoint_latest.pth"))
    row = progress_rows(folder, {rid: spec})[("A", 0, 0)]
    assert row["epochs"] == 4 and row["val_dice"] == pytest.approx(0.65)
    assert (row["rerun_epoch"], row["lost_val_dice"]) == (2, 0.5) and row["rerun_val_dice"] == pytest.approx(0.2)
    again = _state({k: str(v) for k, v in row.items()}, [], "data")
    assert again["restored"]["rerun"] == {"epoch": 2, "lost": 0.5, "again": pytest.approx(0.2)}
    other = StudyFolder(str(tmp_path / "t"))
    other.write_state(rid, **again)
    row = progress_rows(other, {rid: {**spec, "fold_dir": str(tmp_path / "gone")}})[("A", 0, 0)]
    assert (row["rerun_epoch"], row["lost_val_dice"]) == (2, 0.5) and row["rerun_val_dice"] == pytest.approx(0.2)


def test_halving_drops_the_worse_half_of_the_arms_other_than_the_baseline():
    from nnunet_losses.nnunet.tools.study.grid import halving_drop

    scores = {"nnU-Net": 0.0, "A": 0.9, "B": 0.5, "C": 0.7, "D": float("-inf")}
    assert halving_drop(scores, "nnU-Net") == ["B", "D"]  # 4 others: 2 go on, the baseline always does
    assert halving_drop({**scores, "E": 0.6}, "nnU-Net") == ["B", "D"]  # 5 others: 3 go on


def test_a_restored_run_interrupted_on_its_way_to_the_stop_trains_on_and_predicts_there(tmp_path, monkeypatch):
    """A session ended while B's restored run trained to its stop (epoch 5) again: its checkpoint is at epoch 4,
    and an earlier version recorded that as "checkpoint at epoch 4", final. It trains on from there (``--c``),
    its earlier seconds count, and it predicts at the stop; a run that lost its checkpoint starts over. A
    checkpoint past the stop, a prediction made, and a failure for good leave a run alone."""
    import torch

    from nnunet_losses.nnunet.tools.study import run as run_module
    from nnunet_losses.nnunet.tools.study.grid import stop_prediction_runs

    folder, definition, specs = _halving_setup(tmp_path)
    folder.write_halving(5, {"nnU-Net": 0.5, "A": 0.6, "B": 0.2, "C": 0.1, "D": 0.7}, ["B", "C"])

    def checkpoint(rid, epochs):
        os.makedirs(specs[rid]["fold_dir"], exist_ok=True)
        logged = {"ema_fg_dice": [0.1] * epochs, "mean_fg_dice": [0.1] * epochs}
        torch.save({"current_epoch": epochs, "logging": logged},
                   os.path.join(specs[rid]["fold_dir"], "checkpoint_latest.pth"))

    restored = {"from": "data", "status": "stopped", "epochs": 5}
    for rid, sp in specs.items():
        sp.update(test_images=str(tmp_path / "imagesTs"), root=folder.root, log=str(tmp_path / "logs" / f"{rid}.log"))
        if sp["arm"] in ("B", "C"):
            folder.write_state(rid, status="stopped", restored=restored)
    folder.write_state("B__fold0__seed0", at_stop={"5": {"error": "checkpoint at epoch 4"}}, seconds={"train": 100.0})
    checkpoint("B__fold0__seed0", 4)  # interrupted on its way to the stop
    checkpoint("C__fold0__seed0", 4)  # the same, but its training failed twice: for good
    folder.write_state("C__fold0__seed0", at_stop={"5": {"error": "nnUNetv2_train exited with code 1"}})
    folder.write_state("C__fold1__seed0", at_stop={"5": {"prediction": "somewhere", "seconds": 1.0}})
    checkpoint("nnU-Net__fold0__seed0", 5)
    checkpoint("nnU-Net__fold1__seed0", 7)  # went on past the stop: too late
    assert stop_prediction_runs(folder, definition, specs, 5) == [
        "nnU-Net__fold0__seed0", "B__fold0__seed0", "B__fold1__seed0"]
    assert folder.read_state("nnU-Net__fold1__seed0")["at_stop"] == {"5": {"error": "checkpoint at epoch 7"}}

    commands = []

    def run_logged(cmd, env, log):
        commands.append(cmd)
        if cmd[0] == "train":
            checkpoint(cmd[1], 5)  # the trainer pauses at the stop

    monkeypatch.setattr(run_module, "_run_logged", run_logged)
    monkeypatch.setattr(run_module, "run_environment", lambda spec: {})
    monkeypatch.setattr(run_module, "train_command", lambda spec, resume: ["train", spec["run"], resume])
    monkeypatch.setattr(run_module, "predict_command", lambda spec, out, chk: ["predict", spec["run"], chk])
    monkeypatch.setattr(run_module, "predictions_complete", lambda out, spec: False)
    for rid in ("B__fold0__seed0", "B__fold1__seed0"):
        run_module.predict_at_stop({**specs[rid], "predict_at": 5, "stop_prediction": str(tmp_path / "out" / rid)})
        assert folder.read_state(rid)["at_stop"]["5"]["prediction"] == str(tmp_path / "out" / rid)
    assert commands == [["train", "B__fold0__seed0", True], ["predict", "B__fold0__seed0", "checkpoint_latest.pth"],
                        ["train", "B__fold1__seed0", False], ["predict", "B__fold1__seed0", "checkpoint_latest.pth"]]
    assert 100.0 <= folder.read_state("B__fold0__seed0")["seconds"]["train"] < 160
    assert folder.read_state("B__fold1__seed0")["seconds"]["train"] < 60
    assert stop_prediction_runs(folder, definition, specs, 5) == ["nnU-Net__fold0__seed0"]

    loads, load = [], run_module.checkpoint_epoch
    monkeypatch.setattr(run_module, "checkpoint_epoch", lambda path: loads.append(path) or load(path))
    commands.clear()
    run_module.predict_at_stop({**specs["B__fold0__seed0"], "predict_at": 5, "stop_prediction": str(tmp_path / "o")})
    assert [c[0] for c in commands] == ["predict"] and len(loads) == 1  # at the stop already: read once

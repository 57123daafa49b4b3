"""One run of a study (arm, fold, seed): ``nnUNetv2_train`` (``--c`` when a checkpoint exists), then
``nnUNetv2_predict`` of the test set; the state file says where it is. This is the function an executor
runs (:func:`execute_run`, on this machine or as a SLURM job). :func:`predict_at_stop` predicts the test set
with a run's checkpoint at a successive-halving stop (the arms stopped there and the baseline), so that
stopped arms are scored and screened at the epoch they reached.

Everything goes through nnU-Net's own commands with the run's environment: ``nnUNet_results`` of the arm and
seed, ``nnUNet_extTrainer`` with the study's generated trainers, ``NNUNET_LOSSES_SEED`` (Python, NumPy, torch,
loader workers), ``NNUNET_LOSSES_OPTIONS`` (the arm's loss options) and, with ``--halving``,
``NNUNET_LOSSES_PAUSE_AT_EPOCH``. The commands die with the run (Linux: parent-death signal), so stopping
a job stops its training.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from nnunet_losses.nnunet.testing.short_schedule import (PAUSE_VARIABLE, SCHEDULE_VARIABLES, SEED_VARIABLE,
                                                         THREADS_VARIABLE)
from nnunet_losses.nnunet.tools.commands import command_path
from nnunet_losses.nnunet.tools.study.folder import StudyFolder

__all__ = ["execute_run", "predict_at_stop", "run_environment", "train_command", "predict_command", "RunFailed"]


class RunFailed(RuntimeError):
    """A command of a run exited with an error; the message names the log."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_environment(spec: Dict[str, Any]) -> Dict[str, str]:
    """The environment of a run's nnU-Net commands."""
    env = dict(os.environ)
    env.update({k: v for k, v in spec["nnunet_paths"].items() if v})
    env["nnUNet_results"] = spec["results"]
    env["nnUNet_extTrainer"] = os.pathsep.join([spec["trainers_dir"]] + [
        p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p])
    env[SEED_VARIABLE] = str(spec["seed"])
    env.pop("NNUNET_LOSSES_OPTIONS", None)
    if spec["options"]:
        env["NNUNET_LOSSES_OPTIONS"] = json.dumps(spec["options"])
    for name in (PAUSE_VARIABLE, *SCHEDULE_VARIABLES):  # the definition is the schedule
        env.pop(name, None)
    if spec.get("pause_at") is not None:
        env[PAUSE_VARIABLE] = str(spec["pause_at"])
    if spec.get("threads"):  # torch threads and nnU-Net's export workers (final validation) per run
        env["OMP_NUM_THREADS"] = env[THREADS_VARIABLE] = str(spec["threads"])
        env.setdefault("nnUNet_def_n_proc", str(spec["threads"]))
    env.update(spec.get("env") or {})
    return env


def train_command(spec: Dict[str, Any], resume: bool) -> List[str]:
    cmd = [command_path("nnUNetv2_train"), spec["dataset"], spec["configuration"], str(spec["fold"]), "-p",
           spec["plans"], "-tr", spec["trainer"], "-device", spec["device"]]
    return cmd + (["--c"] if resume else [])


def predict_command(spec: Dict[str, Any], output: Optional[str] = None,
                    checkpoint: str = "checkpoint_final.pth") -> List[str]:
    """``nnUNetv2_predict`` of the test set into ``output`` (default: the run's prediction folder)."""
    cmd = [command_path("nnUNetv2_predict"), "-i", spec["test_images"], "-o", output or spec["prediction"], "-d",
           spec["dataset"], "-c", spec["configuration"], "-p", spec["plans"], "-tr", spec["trainer"], "-f",
           str(spec["fold"]), "-device", spec["device"], "-chk", checkpoint, "--disable_progress_bar"]
    if spec["device"] == "cpu":  # no worker processes: their start-up costs more than tiny CPU predictions
        cmd += ["-npp", "0", "-nps", "0"]
    return cmd + ([] if spec.get("tta", True) else ["--disable_tta"])


def _run_logged(cmd: List[str], env: Dict[str, str], log_path: str) -> None:
    with open(log_path, "ab") as log:
        log.write(f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] $ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            rc = proc.wait()
        except BaseException:  # KeyboardInterrupt (a cancelled job), SystemExit: stop the command too
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise RunFailed(f"{os.path.basename(cmd[0])} exited with code {rc}; see {log_path}")


def _n_cases(folder: str, ending: Optional[str] = None) -> int:
    if not os.path.isdir(folder):
        return 0
    names = [n for n in os.listdir(folder) if not n.startswith(".") and not n.endswith(".json")
             and not n.endswith(".pkl") and not n.endswith(".npz")]
    if ending:
        names = [n for n in names if n.endswith(ending)]
    return len(names)


def test_cases(images: str, ending: str) -> int:
    """Cases of a test-image folder (channel 0000 files)."""
    return len([n for n in os.listdir(images) if n.endswith("_0000" + ending)])


def predictions_complete(out: str, spec: Dict[str, Any]) -> bool:
    """Whether folder ``out`` holds a prediction of every case of the run's test images (one that was stopped
    while it predicted does not)."""
    return _n_cases(out, spec["file_ending"]) >= test_cases(spec["test_images"], spec["file_ending"])


def execute_run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Train (or continue) and predict one run; returns its final state (also in its state file)."""
    folder = StudyFolder(spec["root"])
    rid, log = spec["run"], spec["log"]
    os.makedirs(os.path.dirname(log), exist_ok=True)
    folder.write_state(rid, status="running", pid=os.getpid(), host=socket.gethostname(), attempts=spec["attempt"],
                       started=time.time(), seed=spec["seed"], device=spec["device"], log=log,
                       seeding="python random, numpy, torch, loader workers (NNUNET_LOSSES_SEED)",
                       python=sys.executable)
    env = run_environment(spec)
    fold_dir = spec["fold_dir"]
    final = os.path.join(fold_dir, "checkpoint_final.pth")
    seconds: Dict[str, float] = dict(folder.read_state(rid).get("seconds") or {})
    if not os.path.isfile(final):
        resume = os.path.isfile(os.path.join(fold_dir, "checkpoint_latest.pth"))
        t0 = time.time()
        try:
            _run_logged(train_command(spec, resume), env, log)
        finally:  # a failed or interrupted attempt's time counts too (its epochs are trained again)
            seconds["train"] = round(seconds.get("train", 0.0) + time.time() - t0, 2)
            folder.write_state(rid, seconds=seconds)
        if not os.path.isfile(final):
            if spec.get("pause_at") is not None:
                return folder.write_state(rid, status="paused", epoch=spec["pause_at"], seconds=seconds,
                                          finished=time.time())
            raise RunFailed(f"nnUNetv2_train ended without {final}; see {log}")
    if not os.path.isfile(os.path.join(fold_dir, "validation", "summary.json")):
        # stopped during nnU-Net's final validation (it runs after checkpoint_final.pth is written): only that
        t0 = time.time()
        _run_logged(train_command(spec, False) + ["--val"], env, log)
        seconds["validation"] = round(time.time() - t0, 2)
    if spec.get("test_images") and not predictions_complete(spec["prediction"], spec):
        t0 = time.time()
        _run_logged(predict_command(spec), env, log)
        seconds["predict"] = round(time.time() - t0, 2)
    return folder.write_state(rid, status="done", seconds=seconds, finished=time.time(), error=None)


def checkpoint_epoch(path: str) -> int:
    """Epochs a checkpoint has trained (nnU-Net's ``current_epoch``)."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["current_epoch"])


def _train_to_stop(folder: StudyFolder, spec: Dict[str, Any], epoch: int, resume: bool) -> None:
    """A restored run (``nnunet_losses_study restore``) lost its checkpoint: train it again to the stop ``epoch``
    (the study's schedule and seed, paused there), so that it can predict at the stop; from the start, or with
    ``resume`` on from the checkpoint of such a retraining that was interrupted before the stop."""
    os.makedirs(os.path.dirname(spec["log"]), exist_ok=True)
    # the training that makes the model scored (the lost one's is in state["restored"]); an interrupted
    # retraining's time counts too
    seconds: Dict[str, float] = dict(folder.read_state(spec["run"]).get("seconds") or {}) if resume else {}
    t0 = time.time()
    try:
        _run_logged(train_command(spec, resume=resume), run_environment({**spec, "pause_at": epoch}), spec["log"])
    finally:
        seconds["train"] = round(seconds.get("train", 0.0) + time.time() - t0, 2)
        folder.write_state(spec["run"], seconds=seconds, log=spec["log"])


def predict_at_stop(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Predict the test set with the run's ``checkpoint_latest.pth`` at the halving stop ``spec["predict_at"]``
    into ``spec["stop_prediction"]``; the run's status does not change. Its state gains
    ``at_stop[<epoch>] = {"prediction": folder, "seconds": s}``. A restored run without its checkpoint trains
    to the stop again first (on from its checkpoint when that retraining was interrupted before the stop)."""
    folder = StudyFolder(spec["root"])
    rid, log, epoch = spec["run"], spec["log"], int(spec["predict_at"])
    latest = os.path.join(spec["fold_dir"], "checkpoint_latest.pth")

    def trained() -> Optional[int]:
        return checkpoint_epoch(latest) if os.path.isfile(latest) else None

    found = trained()
    if folder.read_state(rid).get("restored") and (found or 0) < epoch:
        _train_to_stop(folder, spec, epoch, resume=found is not None)
        found = trained()
    if found is None:
        raise RunFailed(f"{rid} has no checkpoint_latest.pth to predict with at epoch {epoch} ({spec['fold_dir']})")
    if found != epoch:
        raise RunFailed(f"{rid}'s checkpoint_latest.pth is at epoch {found}, not at the stop {epoch}: its "
                        f"predictions at the stop can no longer be made")
    out = spec["stop_prediction"]
    t0 = time.time()
    if not predictions_complete(out, spec):
        _run_logged(predict_command(spec, out, "checkpoint_latest.pth"), run_environment(spec), log)
    at_stop = dict(folder.read_state(rid).get("at_stop") or {})
    at_stop[str(epoch)] = {"prediction": out, "seconds": round(time.time() - t0, 2)}
    return folder.write_state(rid, at_stop=at_stop)

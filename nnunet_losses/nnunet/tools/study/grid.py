"""The grid: prepare a study folder, build each run's spec, run the runs through an executor (retry once,
resume, interrupt), and successive halving.

Successive halving (``--halving``): every arm starts with the full schedule and pauses after 1/4 of its
epochs (a checkpoint; the learning-rate schedule is the full one); the worse half of the arms other than
the baseline, by the mean over their runs of the validation pseudo Dice nnU-Net logs after each epoch,
averaged over the last ``SCREEN_EPOCHS`` epochs up to the pause (:func:`validation_dice`), stops; the others
continue to 1/2, the worse half stops again, and the survivors finish. A survivor's training is the training
of a full run (same epochs, same schedule, resumed with ``--c``).
After each decision, when the study has a test set, the runs of the arms stopped there and the baseline's
runs predict the test set with their checkpoint at that epoch (``predictions_at_stop/``), so a stopped arm
is scored and screened at its stop beside the baseline at that epoch.

The screen is not nnU-Net's EMA of that Dice (``0.9 ema + 0.1 x``, the value it picks ``checkpoint_best``
by): a few epochs into training the EMA still weighs the first, near-zero epochs and ranks arms by when they
left zero rather than where they are (on MSD Hippocampus after 5 epochs it put an arm at 0.13 whose last two
epochs averaged 0.53, below one at 0.24 whose last two averaged 0.45). A decision recorded with another screen
(``halving.json`` without this ``SCREEN``) is made again from the runs' logged history when the study
continues: arms it stopped that the screen keeps are reinstated (paused, they continue), and arms the screen
stops are stopped where every run of theirs is still at that epoch (an arm that already trained past it
goes on); the first decision is kept in the record as ``superseded``.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any, Callable, Dict, List, Optional, Tuple

from nnunet_losses.nnunet.testing.short_schedule import Schedule, write_short_schedule_trainers
from nnunet_losses.nnunet.tools.study.definition import StudyDefinition
from nnunet_losses.nnunet.tools.study.folder import SUFFIX, StudyFolder, run_id
from nnunet_losses.nnunet.tools.study.run import execute_run, predict_at_stop, test_cases

__all__ = ["prepare_study", "run_specs", "run_grid", "halving_milestones", "halving_drop", "validation_dice",
           "training_progress", "training_log", "progress_in_log", "screen_in_log", "Interrupted",
           "NNUNET_EPOCHS"]

NNUNET_EPOCHS = 1000  # nnU-Net's default schedule: 1000 epochs of 250 iterations
POLL_S = 0.5


class Interrupted(KeyboardInterrupt):
    """The study command received SIGTERM / SIGINT."""


# ------------------------------------------------------------------------------------------ preparation
def _versions() -> Dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("nnunet-losses", "nnunetv2", "torch", "numpy", "submitit"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out["commit"] = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                       timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out


def _dataset(definition: StudyDefinition, paths: Dict[str, str]) -> Dict[str, Any]:
    """Dataset name, file ending, test images/labels (given, or imagesTs/labelsTs of the raw dataset)."""
    import json

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(definition.dataset)
    pre = os.path.join(paths["nnUNet_preprocessed"], name)
    plans = os.path.join(pre, f"{definition.plans}.json")
    if not os.path.isfile(plans):
        raise ValueError(f"{plans} not found: run nnUNetv2_plan_and_preprocess -d {definition.dataset} first "
                         f"(or give the plans of the study with --plans)")
    with open(plans) as f:
        if definition.configuration not in json.load(f)["configurations"]:
            raise ValueError(f"configuration {definition.configuration!r} is not in {plans}")
    with open(os.path.join(pre, "dataset.json")) as f:
        ending = json.load(f)["file_ending"]
    raw = os.path.join(paths["nnUNet_raw"] or "", name)
    images = definition.test_images or (os.path.join(raw, "imagesTs") if os.path.isdir(os.path.join(raw, "imagesTs"))
                                        else None)
    labels = definition.test_labels or (os.path.join(raw, "labelsTs") if os.path.isdir(os.path.join(raw, "labelsTs"))
                                        else None)
    if images and not labels:
        images = None  # no labels: nothing to score the test predictions against
    if images and test_cases(images, ending) == 0:
        raise ValueError(f"{images} holds no images ending in _0000{ending}")
    return {"name": name, "file_ending": ending, "test_images": images, "test_labels": labels,
            "gt": os.path.join(pre, "gt_segmentations")}


def prepare_study(folder: StudyFolder, definition: StudyDefinition) -> Dict[str, Any]:
    """Write (or check) ``study.json`` and the generated trainers; the study record."""
    paths = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed")}
    if not paths["nnUNet_preprocessed"]:
        raise ValueError("nnUNet_preprocessed is not set: set nnU-Net's folders (nnUNet_raw, nnUNet_preprocessed) as "
                         "for nnUNetv2_train")
    epochs = definition.epochs
    schedule = Schedule(epochs=epochs, iterations=definition.iterations, val_iterations=definition.val_iterations,
                        threads=definition.threads, seed=None,
                        save_every=1 if epochs is not None and epochs <= 50 else None)
    record = {"definition": definition.to_json(), "dataset": _dataset(definition, paths), "nnunet_paths": paths,
              "schedule": {k: getattr(schedule, k) for k in ("epochs", "iterations", "val_iterations", "threads",
                                                               "save_every")},
              "trainers": {a.name: a.trainer + SUFFIX for a in definition.arms}, "versions": _versions(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if folder.exists():
        old = folder.read_study()
        if old["definition"] != record["definition"]:
            changed = [k for k in record["definition"] if old["definition"].get(k) != record["definition"][k]]
            raise ValueError(f"{folder.root} holds another study (it differs in {changed}): run the same definition "
                             f"to continue it, or choose a new folder")
        record["created"] = old.get("created", record["created"])
        record["versions_first"] = old.get("versions_first", old.get("versions"))
    write_short_schedule_trainers(folder.trainers_dir, "nnunet_losses_study_trainers",
                                  {a.trainer + SUFFIX: a.trainer for a in definition.arms}, schedule,
                                  writer="nnunet_losses_study")
    folder.write_study(record)
    return record


# ------------------------------------------------------------------------------------------ specs
def run_specs(folder: StudyFolder, record: Dict[str, Any], definition: StudyDefinition) -> Dict[str, dict]:
    """The spec of every run (what :func:`execute_run` needs), by run id."""
    ds = record["dataset"]
    specs = {}
    for arm, fold, seed, rid in folder.iter_runs(definition):
        a = definition.arm(arm)
        specs[rid] = {"root": folder.root, "run": rid, "arm": arm, "fold": fold, "seed": seed,
                      "trainer": a.trainer + SUFFIX, "options": a.options, "dataset": definition.dataset,
                      "configuration": definition.configuration, "plans": definition.plans,
                      "results": folder.results_dir(arm, seed), "trainers_dir": folder.trainers_dir,
                      "fold_dir": folder.fold_dir(definition, arm, fold, seed, ds["name"]),
                      "prediction": folder.prediction_dir(arm, fold, seed), "log": folder.log_path(rid),
                      "test_images": ds["test_images"], "file_ending": ds["file_ending"], "tta": definition.tta,
                      "nnunet_paths": record["nnunet_paths"], "threads": definition.threads}
    return specs


# ------------------------------------------------------------------------------------------ halving
def halving_milestones(epochs: int) -> List[Optional[int]]:
    """Pause epochs of successive halving: 1/4 and 1/2 of the schedule, then the end (``None``)."""
    out = sorted({max(1, epochs // 4), max(1, epochs // 2)} - {epochs})
    return out + [None]


#: the epochs up to a pause whose validation pseudo Dice the halving screen averages
SCREEN_EPOCHS = 2
#: the screen's name, recorded with each decision
SCREEN = f"validation pseudo Dice, mean of the last {SCREEN_EPOCHS} epochs up to the pause"


def training_log(spec: dict) -> Dict[str, list]:
    """nnU-Net's training log (``mean_fg_dice``, ``ema_fg_dice``, ... one value per epoch) from the run's newest
    checkpoint; ``{}`` before the first."""
    import torch

    # the final checkpoint first: a run stopped between writing it and removing checkpoint_latest.pth (nnU-Net's
    # order at the end of training) leaves an older latest one behind
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        path = os.path.join(spec["fold_dir"], name)
        if os.path.isfile(path):
            return torch.load(path, map_location="cpu", weights_only=False).get("logging") or {}
    return {}


def training_progress(spec: dict) -> Tuple[int, float, float]:
    """(epochs trained, nnU-Net's last validation pseudo Dice EMA, :func:`validation_dice` at the last epoch)
    of a run, from its newest checkpoint; ``(0, nan, nan)`` before the first one. The EMA is ``0.9 ema + 0.1 x``
    of the foreground Dice nnU-Net logs after each epoch."""
    return progress_in_log(training_log(spec))


def progress_in_log(log: Dict[str, list]) -> Tuple[int, float, float]:
    """:func:`training_progress` of a training log already read (:func:`training_log`)."""
    ema = log.get("ema_fg_dice") or []
    epochs = len(ema)
    return epochs, (float(ema[-1]) if ema else float("nan")), screen_in_log(log, epochs)


def screen_in_log(log: Dict[str, list], epoch: int) -> float:
    """The halving screen at ``epoch`` of a training log (:func:`validation_dice`); ``nan`` before it."""
    values = (log.get("mean_fg_dice") or [])[:epoch]
    if epoch < 1 or len(values) < epoch:
        return float("nan")
    last = [float(v) for v in values[-SCREEN_EPOCHS:]]
    return sum(last) / len(last)


def validation_dice(spec: dict, epoch: int) -> float:
    """The halving screen of one run at ``epoch``: the mean of nnU-Net's validation pseudo Dice (the foreground
    Dice on the fold's own validation patches it logs after each epoch, ``mean_fg_dice``) over the last
    ``SCREEN_EPOCHS`` epochs up to ``epoch``. Read from the logged history of the newest checkpoint, so it is
    the same after the run trained on; ``nan`` when the run has not reached ``epoch``.

    A restored run (``nnunet_losses_study restore``) that has not trained here yet has the screen its data
    recorded at the epoch it had reached.

    >>> validation_dice({"fold_dir": "/no/such/folder"}, 5)
    nan
    """
    value = screen_in_log(training_log(spec), epoch)
    if math.isnan(value) and spec.get("root") and spec.get("run"):
        restored = StudyFolder(spec["root"]).read_state(spec["run"]).get("restored") or {}
        value = float((restored.get("screen") or {}).get(str(epoch), value))
    return value


# ------------------------------------------------------------------------------------------ running
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(folder: StudyFolder, specs: Dict[str, dict], echo: Callable[[str], None]) -> None:
    """Runs left "running" by a study command that was killed: stop their process if it still lives here,
    then they count as interrupted (continued with ``--c``)."""
    for rid in specs:
        st = folder.read_state(rid)
        if st.get("status") != "running":
            continue
        pid = st.get("pid")
        if st.get("host") == socket.gethostname() and pid and _pid_alive(int(pid)):
            echo(f"  {rid}: stopping its process {pid} left by an earlier study command")
            for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(int(pid), sig)
                except ProcessLookupError:
                    break
                t0 = time.time()
                while time.time() - t0 < wait and _pid_alive(int(pid)):
                    time.sleep(0.2)
        folder.write_state(rid, status="pending", interrupted=True, attempts=max(0, int(st.get("attempts") or 1) - 1))


def _finished(folder: StudyFolder, spec: dict, pause_at: Optional[int]) -> bool:
    """Whether run ``spec`` has nothing to do before the pause ``pause_at`` (``None``: the end)."""
    st = folder.read_state(spec["run"])
    if st.get("status") in ("done", "stopped"):  # a failed run is tried again by the next command
        return True
    if pause_at is None:
        return False
    if st.get("status") == "paused" and (st.get("epoch") or 0) >= pause_at:
        return True
    # interrupted (or failed) in a later round: its checkpoint is past this pause already, and nnU-Net would
    # train it to the end if it were continued with this pause
    return st.get("status") in ("pending", "failed") and bool(st.get("attempts") or st.get("interrupted")) \
        and training_progress(spec)[0] >= pause_at


def _execute(folder: StudyFolder, executor, specs: Dict[str, dict], rids: List[str], pause_at: Optional[int],
             echo: Callable[[str], None], predict_at: Optional[int] = None) -> None:
    """Run ``rids`` (each at most twice); the executor's slots bound how many run at a time. With
    ``predict_at``: only predict the test set of each at that halving stop (:func:`predict_at_stop`; the
    runs' status does not change)."""
    predicting = predict_at is not None
    job_function = predict_at_stop if predicting else execute_run
    queue = deque(rids)
    active: Dict[Any, tuple] = {}
    tries: Dict[str, int] = {}  # submissions of each run by this call (a failure is retried once)
    free = list(executor.slots) if executor.slots else []

    def spec_for(rid: str, slot: Optional[str]) -> dict:
        attempt = int(folder.read_state(rid).get("attempts") or 0) + 1
        device = (slot or executor.device).split(":")[0]
        if predicting:
            sp = specs[rid]
            return {**sp, "device": device, "attempt": attempt, "predict_at": predict_at,
                    "stop_prediction": folder.stop_prediction_dir(sp["arm"], sp["fold"], sp["seed"], predict_at)}
        return {**specs[rid], "pause_at": pause_at, "device": device, "attempt": attempt}

    def submitting(rid: str, spec: dict) -> None:  # before the job can write its own pid
        if not predicting:
            folder.write_state(rid, status="running", attempts=spec["attempt"], submitted=time.time(),
                               log=spec["log"], pid=None, host=None)

    def submitted(job, rid: str, slot: Optional[str], spec: dict) -> None:
        tries[rid] = tries.get(rid, 0) + 1
        active[job] = (rid, slot, spec["attempt"])
        what = f"predicting the test set at epoch {predict_at}" if predicting else f"attempt {spec['attempt']}"
        echo(f"  started {rid} ({what}{', on ' + slot if slot else ''}, job {job.job_id}; log {spec['log']})")

    if executor.slots is None and queue:  # SLURM: one job array for everything that is ready
        batch = [spec_for(r, None) for r in queue]
        for spec in batch:
            submitting(spec["run"], spec)
        for job, spec in zip(executor.submit_array(job_function, batch), batch):
            submitted(job, spec["run"], None, spec)
        queue.clear()
    try:
        while queue or active:
            while queue and (free or executor.slots is None):  # SLURM: retries go in as they come
                rid, slot = queue.popleft(), (free.pop(0) if free else None)
                spec = spec_for(rid, slot)
                submitting(rid, spec)
                submitted(executor.submit(job_function, spec, slot), rid, slot, spec)
            for job in [j for j in active if j.done()]:
                rid, slot, attempt = active.pop(job)
                if slot is not None:
                    free.append(slot)
                error = None
                try:
                    job.result()
                except Exception as e:  # the run's exception, re-raised by submitit
                    error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                st = folder.read_state(rid)
                if error is None and (predicting or st.get("status") in ("done", "paused")):
                    echo(f"  {'predicted at epoch ' + str(predict_at) if predicting else st['status']}: {rid}")
                    continue
                log = specs[rid]["log"]
                if tries[rid] < 2:
                    echo(f"  failed: {rid} ({error}); retrying once (log {log})")
                    if not predicting:
                        folder.write_state(rid, status="pending", error=error)
                    queue.append(rid)
                elif predicting:  # the run itself is fine: its scores at this stop are missing, and say why
                    echo(f"  FAILED twice: predicting {rid} at epoch {predict_at} ({error}); log {log}")
                    at_stop = dict(st.get("at_stop") or {})
                    at_stop[str(predict_at)] = {"error": error}
                    folder.write_state(rid, at_stop=at_stop)
                else:
                    echo(f"  FAILED twice: {rid} ({error}); log {log}")
                    folder.write_state(rid, status="failed", error=error, finished=time.time())
            time.sleep(POLL_S)
    finally:
        for job, (rid, _, _) in list(active.items()):  # interrupted: stop what runs, it continues next time
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass
        t0 = time.time()
        while active and time.time() - t0 < 20 and not all(j.done() for j in active):
            time.sleep(0.2)
        for job, (rid, _, attempt) in active.items():  # an interrupted attempt does not count
            if not predicting and folder.read_state(rid).get("status") == "running":
                folder.write_state(rid, status="pending", interrupted=True, attempts=attempt - 1)


def run_grid(folder: StudyFolder, definition: StudyDefinition, specs: Dict[str, dict], executor,
             halving: bool = False, halving_metric: Callable[[dict, int], float] = validation_dice,
             echo: Callable[[str], None] = print) -> None:
    """Run every unfinished run of the grid (see the module docstring for ``halving``)."""
    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        recover_stale(folder, specs, echo)
        arms = [a.name for a in definition.arms]
        milestones = halving_milestones(definition.epochs or NNUNET_EPOCHS) if halving else [None]
        for i, pause_at in enumerate(milestones):
            stopped = {r for r in specs if folder.read_state(r).get("status") == "stopped"}
            rids = [r for r in specs if specs[r]["arm"] in arms and r not in stopped
                    and not _finished(folder, specs[r], pause_at)]
            if rids:
                what = f"to epoch {pause_at} (halving round {i + 1})" if pause_at else "to the end"
                echo(f"{len(rids)} run(s) {what}")
                _execute(folder, executor, specs, rids, pause_at, echo)
            if pause_at is None:
                break
            arms = _halve(folder, definition, specs, arms, halving_metric, pause_at, echo)
            _predict_stops(folder, definition, specs, executor, pause_at, echo)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def halving_drop(scores: Dict[str, float], baseline: str) -> List[str]:
    """The arms one successive-halving decision stops: the worse half (rounded down) of the arms other than the
    baseline, by ``scores`` (the arm means of the screen; ``-inf`` for an arm without one), best first.

    >>> halving_drop({"nnU-Net": 0.1, "A": 0.9, "B": 0.5, "C": 0.7}, "nnU-Net")
    ['B']
    """
    others = sorted([a for a in scores if a != baseline], key=lambda a: scores[a], reverse=True)
    return others[math.ceil(len(others) / 2):]


def _halve(folder, definition, specs, arms, metric, pause_at, echo) -> List[str]:
    """Stop the worse half of the arms other than the baseline by ``metric(spec, pause_at)``; the arms that go
    on. A decision is recorded in ``halving.json`` and reused when the study continues; one recorded with
    another screen is made again where it still can be (module docstring)."""
    decided = folder.read_halving().get(pause_at)
    if decided and decided.get("screen") == SCREEN:
        return [a for a in arms if a not in decided["stopped"]]
    base = definition.baseline_arm
    candidates = list(arms) + [a for a in (decided or {}).get("stopped", []) if a not in arms]
    candidates = [a.name for a in definition.arms if a.name in candidates]
    scores = {}
    for arm in candidates:
        values = [metric(s, pause_at) for s in specs.values() if s["arm"] == arm]
        values = [v for v in values if not math.isnan(v)]
        scores[arm] = sum(values) / len(values) if values else float("-inf")
    drop = halving_drop(scores, base)
    went_on = []
    if decided:  # an arm told to go on that trained past the stop can no longer be stopped there
        went_on = [a for a in drop if a not in decided["stopped"] and any(
            training_progress(s)[0] > pause_at for s in specs.values() if s["arm"] == a)]
        drop = [a for a in drop if a not in went_on]
    echo(f"halving after epoch {pause_at} ({SCREEN}): " + ", ".join(f"{a} {scores[a]:.4f}" for a in candidates)
         + f"; stopping {drop or 'none'}" + (f"; {went_on} trained past epoch {pause_at} already and go on"
                                              if went_on else ""))
    superseded = None
    if decided:
        superseded = {k: v for k, v in decided.items() if k != "superseded"}
        back = [a for a in decided["stopped"] if a not in drop]
        if back:
            echo(f"the decision recorded after epoch {pause_at} ({decided.get('screen', 'nnU-Net EMA')}) stopped "
                 f"{back}; this screen keeps them: they continue")
        for s in specs.values():
            if s["arm"] in back and folder.read_state(s["run"]).get("status") == "stopped":
                folder.write_state(s["run"], status="paused", stopped_at=None, reason=None,
                                   reinstated={"epoch": pause_at, "screen": SCREEN})
    folder.write_halving(pause_at, {a: (None if math.isinf(v) else v) for a, v in scores.items()}, drop,
                         screen=SCREEN, superseded=superseded, went_on=went_on)
    for s in specs.values():
        if s["arm"] in drop and folder.read_state(s["run"]).get("status") != "stopped":
            folder.write_state(s["run"], status="stopped", stopped_at=pause_at,
                               reason=f"successive halving after epoch {pause_at}: {SCREEN} "
                                      f"{scores[s['arm']]:.4f}")
    return [a for a in candidates if a not in drop]


def stop_prediction_runs(folder: StudyFolder, definition: StudyDefinition, specs: Dict[str, dict],
                         epoch: int) -> List[str]:
    """Runs that predict the test set at the halving stop ``epoch``: those of the arms stopped there and the
    baseline's, unless done (or failed twice) already. A restored run whose checkpoint was lost is one of
    them: it trains to the stop again first (:func:`~nnunet_losses.nnunet.tools.study.run.predict_at_stop`)."""
    decision = folder.read_halving().get(epoch)
    if not decision:
        return []
    arms = set(decision["stopped"]) | {definition.baseline_arm}
    out = []
    for rid, spec in specs.items():
        st = folder.read_state(rid)
        if spec["arm"] not in arms or not spec.get("test_images") or st.get("status") not in ("paused", "stopped"):
            continue
        trained = training_progress(spec)[0]
        if _stop_settled(st, epoch, trained):
            continue
        if trained < epoch and st.get("restored"):
            # restored without its checkpoint: it trains to the stop again (on, if that was interrupted)
            out.append(rid)
            continue
        if trained != epoch:  # continued past the stop (or never reached it): too late to predict there
            folder.write_state(rid, at_stop={**(st.get("at_stop") or {}),
                                             str(epoch): {"error": f"checkpoint at epoch {trained}"}})
            continue
        out.append(rid)
    return out


def _stop_settled(st: dict, epoch: int, trained: int) -> bool:
    """Whether a run's predictions at the stop ``epoch`` are made, restored, or failed for good. A restored
    run whose retraining was interrupted before the stop was once recorded as "checkpoint at epoch N" (a
    checkpoint past the stop reads the same); it is not settled: it trains on to the stop."""
    entry = (st.get("at_stop") or {}).get(str(epoch))
    if not entry:
        return False
    interrupted = st.get("restored") and trained < epoch and str(entry.get("error", "")).startswith("checkpoint at")
    return not interrupted


def _predict_stops(folder, definition, specs, executor, epoch, echo) -> None:
    rids = stop_prediction_runs(folder, definition, specs, epoch)
    if rids:
        echo(f"{len(rids)} run(s) predict the test set with their checkpoint at epoch {epoch} (the arms stopped "
             f"there and the baseline)")
        _execute(folder, executor, specs, rids, None, echo, predict_at=epoch)


def run_ids(definition: StudyDefinition) -> List[str]:
    return [run_id(a, f, s) for a, f, s in definition.runs()]
